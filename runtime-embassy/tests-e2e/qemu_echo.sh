#!/usr/bin/env bash
# End-to-end test of the phase-1 gateway firmware (TCP echo on 1883) under QEMU.
#
# Boots runtime-embassy/boards/lm3s6965 in qemu-system-arm's lm3s6965evb model, its Ethernet
# on a TAP device inside a private network namespace, then runs echo_client.py against it:
# 8 concurrent 10 KiB echoes, misbehaving connections (garbage, RST, floods, idle), and the
# concurrent echoes again to show nothing wedged. Needs root (netns, tuntap).
#
# Environment: ELF=path to a prebuilt firmware (default: build it with cargo);
#              KEEP_LOG=1 to print the board's console log even on success.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BOARD="$HERE/../boards/lm3s6965"
ELF="${ELF:-}"
NS="petrel-gw-$$"
TAP="tap0"
HOST_IP="192.168.69.1"
BOARD_IP="192.168.69.2"
BOOT_TIMEOUT=30      # s until the board accepts a TCP connection
TEST_TIMEOUT=300     # s for the whole client run

die() { echo "qemu_echo: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces and TAP devices)"
for tool in ip qemu-system-arm python3 timeout; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done

if [ -z "$ELF" ]; then
    echo "qemu_echo: building firmware"
    (cd "$BOARD" && cargo build --release --quiet) || die "firmware build failed"
    ELF="$BOARD/target/thumbv7m-none-eabi/release/petrel-gateway"
fi
[ -f "$ELF" ] || die "firmware not found: $ELF"

WORK="$(mktemp -d)"
QLOG="$WORK/qemu.log"
QEMU_PID=""
CLIENT_PID=""

cleanup() {
    local rc=$?
    set +e
    # `timeout` passes the signal on to the client.
    if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then
        kill "$CLIENT_PID" 2>/dev/null
        wait "$CLIENT_PID" 2>/dev/null
    fi
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$QEMU_PID" 2>/dev/null
        wait "$QEMU_PID" 2>/dev/null
    fi
    ip netns del "$NS" 2>/dev/null
    if [ "$rc" -ne 0 ] || [ "${KEEP_LOG:-0}" = 1 ]; then
        echo "---- board console ($QLOG) ----"
        cat "$QLOG" 2>/dev/null
        echo "---- end of board console ----"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add name "$TAP" mode tap
ip -n "$NS" addr add "$HOST_IP/24" dev "$TAP"
ip -n "$NS" link set "$TAP" up

# -nographic: UART0 (the console) on stdout, which goes to the log; stdin closed.
ip netns exec "$NS" qemu-system-arm -cpu cortex-m3 -M lm3s6965evb -nographic \
    -kernel "$ELF" \
    -nic "tap,ifname=$TAP,script=no,downscript=no,model=stellaris" \
    </dev/null >"$QLOG" 2>&1 &
QEMU_PID=$!    # `ip netns exec` execs qemu, so this is qemu's PID

sleep 0.5
kill -0 "$QEMU_PID" 2>/dev/null || die "qemu exited at start"

# In the background and then `wait`ed for, so that INT/TERM reach the trap at once (bash
# defers traps while a foreground child runs).
timeout --kill-after=5 "$TEST_TIMEOUT" \
    ip netns exec "$NS" python3 "$HERE/echo_client.py" "$BOARD_IP" --tap "$TAP" \
    --ready-timeout "$BOOT_TIMEOUT" &
CLIENT_PID=$!
rc=0
wait "$CLIENT_PID" || rc=$?
CLIENT_PID=""

kill -0 "$QEMU_PID" 2>/dev/null || die "qemu died during the test"
if grep -q "panic" "$QLOG"; then
    die "firmware panicked"
fi
[ "$rc" -eq 0 ] || { [ "$rc" -eq 124 ] && die "client timed out after ${TEST_TIMEOUT}s"; die "client checks failed (exit $rc)"; }
echo "qemu_echo: PASS"
