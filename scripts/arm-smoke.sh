#!/usr/bin/env bash
# Cross-builds the broker for 64-bit ARM Linux (Raspberry Pi) and runs a smoke test of the
# aarch64 binary under qemu-aarch64, where io_uring is absent (the epoll fallback runs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p runtime-uring --target aarch64-unknown-linux-gnu
cargo build --release -p runtime-uring --target armv7-unknown-linux-gnueabihf
bin=target/aarch64-unknown-linux-gnu/release/petrel
cp "$bin" /tmp/petrel-aarch64 && aarch64-linux-gnu-strip /tmp/petrel-aarch64 2>/dev/null || true
echo "stripped aarch64 binary: $(stat -c %s /tmp/petrel-aarch64) bytes"
port=$((20000 + RANDOM % 10000))
log=$(mktemp)
qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin" broker --bind "127.0.0.1:$port" --threads 1 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  if mosquitto_pub -p "$port" -t probe -m x 2>/dev/null; then break; fi
  sleep 0.1
done
out=$(timeout 10 mosquitto_sub -p "$port" -t smoke -C 1 & sleep 1; mosquitto_pub -p "$port" -t smoke -m from-qemu -q 1; wait)
grep -q "falling back to epoll" "$log" || { cat "$log"; echo "expected the epoll fallback under qemu"; exit 1; }
[ "$out" = "from-qemu" ] || { cat "$log"; echo "smoke test failed: got '$out'"; exit 1; }
echo "aarch64 smoke test passed (epoll fallback under qemu-user)"
