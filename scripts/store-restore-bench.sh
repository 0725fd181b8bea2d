#!/usr/bin/env bash
# By hand (not in CI): time to restore N queued messages (default 1,000,000) after kill -9.
# An offline persistent subscriber, N QoS 1 messages of 64 B published to it with
# petrel pub -l (which exits once all are acknowledged), kill -9, restart: the broker logs how many records
# it read and how long that took; the subscriber then drains and counts them.
# Usage: bash scripts/store-restore-bench.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
PETREL=${PETREL:-target/release/petrel}
dir=$(mktemp -d)
trap 'pkill -9 -f "petrel broker -c $dir/petrel.toml" || true; rm -rf "$dir"' EXIT
port=$((20000 + RANDOM % 20000))
cat > "$dir/petrel.toml" <<CONF
allow_anonymous = true
persistence = true
persistence_location = "$dir"
max_queued_messages = 0
max_queued_bytes = 0
[[listener]]
bind = "127.0.0.1:$port"
CONF
# Ready once it logs "listening on" (after the store is read back).
start() {
  "$PETREL" broker -c "$dir/petrel.toml" 2>"$dir/log$1" &
  for _ in $(seq 1 600); do grep -q "listening on" "$dir/log$1" 2>/dev/null && return; sleep 0.2; done
  echo "the broker did not start"; cat "$dir/log$1"; exit 1
}
start 1
mosquitto_sub -p "$port" -c -i restore-sub -q 1 -t 'r/#' -W 1 >/dev/null || true
python3 -c "
import sys
p = 'x' * 56
for i in range($N): sys.stdout.write(f'{i:07d}{p}\n')
" > "$dir/lines"
t0=$(date +%s.%N)
"$PETREL" pub -L "tcp://127.0.0.1:$port" -q 1 -t r/x -l < "$dir/lines"
t1=$(date +%s.%N)
echo "published $N QoS 1 messages (all acknowledged) in $(echo "$t1 - $t0" | bc) s"
du -sh "$dir/petrel.db"
pkill -9 -f "petrel broker -c $dir/petrel.toml"
sleep 0.5
start 2
grep -E "restored from" "$dir/log2" | sed 's/.*store /store /' || true
got=$(timeout 300 mosquitto_sub -p "$port" -c -i restore-sub -q 1 -t 'r/#' -W 60 2>/dev/null | wc -l || true)
echo "the subscriber received $got of $N after the restart"
