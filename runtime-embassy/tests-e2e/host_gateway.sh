#!/usr/bin/env bash
# The gateway end-to-end test (qemu_gateway.sh: the same checks) against the same shell
# running on Linux: runtime-embassy's `host` example, embassy-net over tap0 through
# embassy-net-tuntap, instead of the firmware under QEMU. Fast to debug. Needs root.
#
# Environment: HOST_BIN=prebuilt example binary (default: build it with cargo; honours
#              CARGO_TARGET_DIR); KEEP_LOG=1 as in qemu_gateway.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
HOST_BIN="${HOST_BIN:-}"
if [ -z "$HOST_BIN" ]; then
    echo "host_gateway: building the host example"
    (cd "$ROOT" && cargo build --quiet -p runtime-embassy --example host) \
        || { echo "host_gateway: FAIL: build" >&2; exit 1; }
    HOST_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/host"
fi
[ -x "$HOST_BIN" ] || { echo "host_gateway: FAIL: no binary at $HOST_BIN" >&2; exit 1; }
GATEWAY_CMD="$HOST_BIN tap0" exec bash "$HERE/qemu_gateway.sh"
