#!/usr/bin/env bash
# End-to-end test of the Petrel gateway firmware (runtime-embassy on the LM3S6965) under QEMU.
#
# Inside a private network namespace (created here, deleted on exit): tap0 at 192.168.69.1/24,
# Mosquitto on 192.168.69.1:1883 as the upstream broker, the firmware in qemu-system-arm's
# lm3s6965evb model on tap0 (192.168.69.2). Then, with mosquitto_pub/mosquitto_sub and a few
# raw sockets (bad_input.py), every check compares what was received with what was expected:
# QoS 0/1/2, retained and will messages, 8 clients at once and a 9th refused, `up/...`
# forwarded upstream as `petrel-gw/up/...`, `petrel-gw/down/...` delivered locally as
# `down/...`, QoS 1 messages published while the upstream is stopped arriving once it is back,
# and garbage / oversized / half-open connections not stopping the firmware.
# Needs root. Exits non-zero on the first failed check; every wait is bounded.
#
# Environment: ELF=prebuilt firmware (default: build it with cargo);
#              GATEWAY_CMD="cmd args" runs that instead of QEMU (e.g. the host example, which
#              opens tap0 itself: see host_gateway.sh);
#              KEEP_LOG=1 prints the gateway's console log even on success.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BOARD="$HERE/../boards/lm3s6965"
ELF="${ELF:-}"
GATEWAY_CMD="${GATEWAY_CMD:-}"
NS="petrel-gw-$$"
TAP="tap0"
UP="192.168.69.1"   # this namespace's end of the TAP: the upstream Mosquitto
GW="192.168.69.2"   # the gateway
NAME="qemu_gateway"
[ -n "$GATEWAY_CMD" ] && NAME="host_gateway"

die() { echo "$NAME: FAIL: $*" >&2; exit 1; }
pass() { echo "$NAME: ok: $*"; }

[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces and TAP devices)"
tools=(ip python3 timeout stdbuf /usr/sbin/mosquitto mosquitto_pub mosquitto_sub)
[ -z "$GATEWAY_CMD" ] && tools+=(qemu-system-arm)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done

if [ -z "$GATEWAY_CMD" ] && [ -z "$ELF" ]; then
    echo "$NAME: building firmware"
    (cd "$BOARD" && cargo build --release --quiet) || die "firmware build failed"
    ELF="$BOARD/target/thumbv7m-none-eabi/release/petrel-gateway"
fi
[ -n "$GATEWAY_CMD" ] || [ -f "$ELF" ] || die "firmware not found: $ELF"

# The flash budget (issue: at most 128 KiB of text + rodata, vectors included).
if [ -z "$GATEWAY_CMD" ] && command -v arm-none-eabi-size >/dev/null; then
    flash=$(arm-none-eabi-size -A "$ELF" | awk '$1==".vector_table"||$1==".text"||$1==".rodata"{s+=$2} END{print s}')
    [ "$flash" -le 131072 ] || die "flash $flash B is over the 128 KiB budget"
    pass "flash $flash B of 131072"
fi

WORK="$(mktemp -d)"
GLOG="$WORK/gateway.log"
MLOG="$WORK/mosquitto.log"
GW_PID=""
MQ_PID=""
BG_PIDS=()

stop_pid() {  # stop_pid PID: TERM, wait up to 5 s, then KILL
    local pid="$1"
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    for p in "${BG_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    stop_pid "$GW_PID"
    stop_pid "$MQ_PID"
    # Anything else still running in the namespace (stray clients).
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
    if [ "$rc" -ne 0 ] || [ "${KEEP_LOG:-0}" = 1 ]; then
        echo "---- gateway console ----"; cat "$GLOG" 2>/dev/null
        echo "---- mosquitto log (tail) ----"; tail -n 30 "$MLOG" 2>/dev/null
        echo "---- end ----"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { ip netns exec "$NS" "$@"; }
# Bounded client commands (every one of them can hang on a dead peer otherwise).
pub() { timeout -k 2 15 ip netns exec "$NS" mosquitto_pub "$@"; }
sub() { timeout -k 2 30 ip netns exec "$NS" mosquitto_sub "$@"; }

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add name "$TAP" mode tap
ip -n "$NS" addr add "$UP/24" dev "$TAP"
ip -n "$NS" link set "$TAP" up

cat >"$WORK/mosquitto.conf" <<EOF
user root
listener 1883 $UP
allow_anonymous true
persistence true
persistence_location $WORK/
autosave_interval 1
max_queued_messages 1000
log_dest file $MLOG
log_type error
log_type warning
log_type notice
log_type information
EOF

start_mosquitto() {
    ip netns exec "$NS" /usr/sbin/mosquitto -c "$WORK/mosquitto.conf" </dev/null >>"$MLOG" 2>&1 &
    MQ_PID=$!
    for _ in $(seq 50); do
        if nsx bash -c "exec 3<>/dev/tcp/$UP/1883" 2>/dev/null; then return 0; fi
        kill -0 "$MQ_PID" 2>/dev/null || die "mosquitto exited at start"
        sleep 0.1
    done
    die "mosquitto does not listen on $UP:1883"
}
start_mosquitto

if [ -n "$GATEWAY_CMD" ]; then
    # shellcheck disable=SC2086
    ip netns exec "$NS" $GATEWAY_CMD </dev/null >"$GLOG" 2>&1 &
else
    # -nographic: UART0 (the console) on stdout, into the log; stdin closed.
    ip netns exec "$NS" qemu-system-arm -cpu cortex-m3 -M lm3s6965evb -nographic -kernel "$ELF" \
        -nic "tap,ifname=$TAP,script=no,downscript=no,model=stellaris" \
        </dev/null >"$GLOG" 2>&1 &
fi
GW_PID=$!   # `ip netns exec` execs the command, so this is its PID

alive() { kill -0 "$GW_PID" 2>/dev/null || die "the gateway process died"; }

# expect FILE EXPECTED-TEXT WHAT: the file's lines, sorted, must equal the expected lines.
expect() {
    local got want
    got="$(messages "$1" | sort)"
    want="$(printf '%s\n' "$2" | sort)"
    if [ "$got" != "$want" ]; then
        echo "expected:"; printf '%s\n' "$want" | sed 's/^/  /'
        echo "received:"; printf '%s\n' "$got" | sed 's/^/  /'
        die "$3"
    fi
    pass "$3"
}

# A subscriber in the background, returning once its SUBACK arrived (-d prints it; stdbuf
# makes the debug lines arrive in the file as they happen; `expect` filters them out).
bg_sub() {  # bg_sub OUTFILE ARGS...: starts mosquitto_sub, records its PID in BG
    local out="$1"; shift
    timeout -k 2 30 ip netns exec "$NS" stdbuf -oL mosquitto_sub -d "$@" >"$out" 2>"$out.err" &
    BG=$!
    BG_PIDS+=("$BG")
    for _ in $(seq 100); do
        grep -q '^Subscribed' "$out" 2>/dev/null && return 0
        kill -0 "$BG" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^Subscribed' "$out" 2>/dev/null || {
        sed 's/^/  /' "$out" "$out.err"; die "subscriber ($*) not subscribed within 10 s"; }
}
# The messages a subscriber printed, without mosquitto_sub's debug lines.
messages() { grep -vE '^(Client |Subscribed \(mid)' "$1" || true; }
wait_bg() {  # wait_bg PID WHAT: the subscriber must exit 0 (got its -C count in time)
    local rc=0
    wait "$1" || rc=$?
    [ "$rc" -eq 0 ] || {
        echo "received:"; messages "$3" | sed 's/^/  /'; cat "$3.err" 2>/dev/null
        die "$2 (subscriber exit $rc)"; }
}
settle() { sleep "${1:-1}"; }

# ---------------------------------------------------------------------------------------
echo "$NAME: waiting for the gateway at $GW:1883"
ready=0
for _ in $(seq 60); do
    alive
    if timeout 3 ip netns exec "$NS" mosquitto_pub -h "$GW" -t ping -m x -q 1 2>/dev/null; then
        ready=1; break
    fi
    sleep 0.5
done
[ "$ready" = 1 ] || die "gateway does not answer MQTT within 30 s"
pass "gateway answers MQTT"

# The bridge must have its uplink before the bridge checks.
for _ in $(seq 100); do
    grep -q "uplink connected" "$GLOG" && break
    sleep 0.1
done
grep -q "uplink connected" "$GLOG" || die "bridge did not connect to the upstream broker"
pass "bridge connected upstream"

# --- QoS 0, 1, 2 -------------------------------------------------------------------------
for q in 0 1 2; do
    bg_sub "$WORK/q$q" -h "$GW" -q "$q" -t "t/qos$q" -C 3 -W 20
    for m in a b c; do pub -h "$GW" -q "$q" -t "t/qos$q" -m "qos$q-$m" || die "publish at QoS $q"; done
    wait_bg "$BG" "QoS $q delivery" "$WORK/q$q"
    expect "$WORK/q$q" "$(printf 'qos%s-a\nqos%s-b\nqos%s-c' "$q" "$q" "$q")" "QoS $q publish/subscribe"
done

# Exactly once also from a v5 client, both ways.
bg_sub "$WORK/q2v5" -V 5 -h "$GW" -q 2 -t t/v5 -C 2 -W 20
pub -V 5 -h "$GW" -q 2 -t t/v5 -m v5-one || die "publish v5"
pub -V 311 -h "$GW" -q 1 -t t/v5 -m v311-two || die "publish 3.1.1"
wait_bg "$BG" "MQTT 5 delivery" "$WORK/q2v5"
expect "$WORK/q2v5" "$(printf 'v5-one\nv311-two')" "MQTT 5 and 3.1.1 clients together"

# --- retained ----------------------------------------------------------------------------
pub -h "$GW" -q 1 -r -t t/ret -m retained-1 || die "publish retained"
pub -h "$GW" -q 1 -r -t t/ret -m retained-2 || die "publish retained"
sub -h "$GW" -t t/ret -C 1 -W 10 >"$WORK/ret" || die "retained message not delivered"
expect "$WORK/ret" "retained-2" "retained message (the latest) delivered to a new subscriber"
pub -h "$GW" -q 1 -r -t t/ret -n || die "clear retained"
sub -h "$GW" -t t/ret --retained-only -W 2 >"$WORK/ret2" || true
expect "$WORK/ret2" "" "retained message cleared by an empty retained publish"

# --- will --------------------------------------------------------------------------------
bg_sub "$WORK/will" -h "$GW" -t t/will -C 1 -W 20
WILL_SUB=$BG
# A clean disconnect does not publish the will ...
pub -h "$GW" -i clean-leaver --will-topic t/will --will-payload wrong --will-qos 1 \
    -t t/x -m x || die "publish with a will"
# ... an abrupt end does.
ip netns exec "$NS" mosquitto_sub -h "$GW" -i will-client --will-topic t/will --will-payload will-fired \
    --will-qos 1 -t t/none >/dev/null 2>&1 &
WC=$!
BG_PIDS+=("$WC")
settle
kill -9 "$WC"
wait_bg "$WILL_SUB" "will message" "$WORK/will"
expect "$WORK/will" "will-fired" "will message on an abrupt disconnect (none on a clean one)"

# --- uplink: up/# -> petrel-gw/up/# ------------------------------------------------------
bg_sub "$WORK/up" -h "$UP" -q 1 -t 'petrel-gw/#' -v -C 3 -W 20
pub -h "$GW" -q 1 -t up/sensor/1 -m u1 || die "publish up"
pub -h "$GW" -q 0 -t up/sensor/2 -m u2 || die "publish up"
pub -h "$GW" -q 1 -t notup/x -m local-only || die "publish local"
pub -h "$GW" -q 2 -t up -m u3 || die "publish up"
wait_bg "$BG" "messages forwarded upstream" "$WORK/up"
expect "$WORK/up" "$(printf 'petrel-gw/up/sensor/1 u1\npetrel-gw/up/sensor/2 u2\npetrel-gw/up u3')" \
    "local up/... arrives upstream as petrel-gw/up/... (and nothing else)"

# --- downlink: petrel-gw/down/# -> down/# -------------------------------------------------
bg_sub "$WORK/down" -h "$GW" -q 1 -t '#' -v -C 2 -W 20
pub -h "$UP" -q 1 -t petrel-gw/down/cmd/1 -m d1 || die "publish down"
pub -h "$UP" -q 1 -t petrel-gw/other -m not-down || die "publish upstream"
pub -h "$UP" -q 0 -t petrel-gw/down -m d2 || die "publish down"
wait_bg "$BG" "messages delivered down" "$WORK/down"
expect "$WORK/down" "$(printf 'down/cmd/1 d1\ndown d2')" \
    "upstream petrel-gw/down/... arrives locally as down/..."

# --- 8 clients at once, a 9th refused ---------------------------------------------------
EIGHT=()
for i in $(seq 8); do
    bg_sub "$WORK/c$i" -h "$GW" -i "c$i" -q 1 -t down/all -C 1 -W 30
    EIGHT+=("$BG")
done
settle
for i in $(seq 8); do
    kill -0 "${EIGHT[$((i - 1))]}" 2>/dev/null || {
        cat "$WORK/c$i.err"; die "client $i of 8 did not stay connected"; }
done
rc=0
timeout -k 2 15 ip netns exec "$NS" mosquitto_sub -h "$GW" -i ninth -t t/x -C 1 -W 8 \
    >"$WORK/ninth" 2>"$WORK/ninth.err" || rc=$?
[ "$rc" -ne 0 ] || die "a 9th client was accepted"
grep -qiE "unavailable|refused|busy" "$WORK/ninth.err" || {
    cat "$WORK/ninth.err"; die "the 9th client was not refused with a CONNACK (exit $rc)"; }
pass "9th client refused cleanly: $(head -n1 "$WORK/ninth.err")"
# The 8 are still served: one message from upstream reaches all of them.
pub -h "$UP" -q 1 -t petrel-gw/down/all -m to-all || die "publish to all"
for i in $(seq 8); do
    wait_bg "${EIGHT[$((i - 1))]}" "client $i of 8" "$WORK/c$i"
    expect "$WORK/c$i" "to-all" "client $i of 8 connected at once got the message"
done

# --- bad input -----------------------------------------------------------------------------
timeout -k 2 60 ip netns exec "$NS" python3 "$HERE/bad_input.py" "$GW" \
    || die "bad input checks (bad_input.py)"
pass "garbage, oversized packets and half-open connections handled"
alive
# Still fully working afterwards: 8 clients at once again, and a round trip at QoS 2.
EIGHT=()
for i in $(seq 8); do
    bg_sub "$WORK/d$i" -h "$GW" -q 2 -t t/after -C 1 -W 30
    EIGHT+=("$BG")
done
settle
# Free one slot for the publisher.
kill "${EIGHT[7]}" 2>/dev/null || true; wait "${EIGHT[7]}" 2>/dev/null || true
settle
pub -h "$GW" -q 2 -t t/after -m after || die "publish after bad input"
for i in $(seq 7); do
    wait_bg "${EIGHT[$((i - 1))]}" "client $i after bad input" "$WORK/d$i"
    expect "$WORK/d$i" "after" "client $i served after the bad input"
done

# --- upstream outage: QoS 1 messages held, none lost -----------------------------------
# A persistent upstream subscriber (mosquitto_sub reconnects by itself; Mosquitto keeps its
# session across the restart through persistence).
OUT_N=10
ip netns exec "$NS" mosquitto_sub -h "$UP" -c -i outage-check -q 1 -t 'petrel-gw/up/outage/#' \
    >"$WORK/outage" 2>/dev/null &
OUT_SUB=$!
BG_PIDS+=("$OUT_SUB")
settle
pub -h "$GW" -q 1 -t up/outage/0 -m o0 || die "publish before the outage"
for _ in $(seq 100); do grep -qx o0 "$WORK/outage" && break; sleep 0.1; done
grep -qx o0 "$WORK/outage" || die "message before the outage did not arrive upstream"
stop_pid "$MQ_PID"; MQ_PID=""
sleep 0.5
for i in $(seq "$OUT_N"); do
    pub -h "$GW" -q 1 -t "up/outage/$i" -m "o$i" || die "local publish during the outage"
done
pass "$OUT_N QoS 1 messages accepted locally while the upstream is down"
sleep 1
start_mosquitto
want="$(seq 0 "$OUT_N" | sed 's/^/o/')"
for _ in $(seq 300); do
    [ "$(sort -u "$WORK/outage")" = "$(printf '%s\n' "$want" | sort)" ] && break
    sleep 0.1
done
sort -u "$WORK/outage" >"$WORK/outage.u"
expect "$WORK/outage.u" "$want" "no QoS 1 message lost across an upstream restart"
kill "$OUT_SUB" 2>/dev/null

# --- after all that: 8 clients at once still fit (heap and sockets came back) -------------
EIGHT=()
for i in $(seq 8); do
    bg_sub "$WORK/e$i" -h "$GW" -i "e$i" -q 1 -t down/end -C 1 -W 30
    EIGHT+=("$BG")
done
settle
pub -h "$UP" -q 1 -t petrel-gw/down/end -m end || die "publish upstream at the end"
for i in $(seq 8); do
    wait_bg "${EIGHT[$((i - 1))]}" "client $i of 8 at the end" "$WORK/e$i"
    expect "$WORK/e$i" "end" "client $i of 8 served at the end"
done

alive
if grep -qi "panic" "$GLOG"; then die "the gateway panicked"; fi
grep "gateway: heap\|board:" "$GLOG" | tail -n 2 || true
echo "$NAME: PASS"
