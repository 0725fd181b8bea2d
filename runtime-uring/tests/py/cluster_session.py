#!/usr/bin/env python3
"""Persistent sessions across cluster nodes (runtime-uring/tests/e2e_cluster.rs), with
paho-mqtt 2 as the independent client.

offline: a persistent subscriber on --sub-port subscribes and goes offline; --count
messages are published on --pub-port and acknowledged; the subscriber comes back on
--resume-port and must find its session (session present) and every message.

kill: a persistent subscriber on --sub-port; publishers on --pub-port publish without
waiting for acknowledgements (up to 100 in flight, the Receive Maximum); after --kill-after messages the node
with pid --kill-pid is killed with SIGKILL; the subscriber reconnects to --resume-port as
soon as it can, and must get every message a publisher got PUBACK for.

move: as kill, but after --kill-after messages the subscriber connects to --resume-port
while connected (its session moves between two live nodes while messages keep coming).

Prints one JSON line.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes


def client(name, v5):
    proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    kw = {} if v5 else {"clean_session": False}
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=proto, **kw)


def connect(c, port, v5, deadline):
    """Connects (retrying while refused or unreachable); returns session present."""
    state = {}
    ev = threading.Event()

    def on_connect(c, u, flags, rc, props=None):
        state["rc"] = rc
        state["present"] = bool(flags.session_present)
        ev.set()

    c.on_connect = on_connect
    while time.time() < deadline:
        ev.clear()
        state.clear()
        try:
            if v5:
                p = Properties(PacketTypes.CONNECT)
                p.SessionExpiryInterval = 3600
                c.connect("127.0.0.1", port, clean_start=False, properties=p)
            else:
                c.connect("127.0.0.1", port)
        except OSError:
            time.sleep(0.2)
            continue
        c.loop_start()
        ev.wait(10)
        if state.get("rc") is not None and not state["rc"].is_failure:
            return state["present"]
        c.loop_stop()
        try:
            c.disconnect()
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"could not connect to {port}: {state}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["offline", "kill", "move"])
    ap.add_argument("--pub-port", type=int, required=True)
    ap.add_argument("--sub-port", type=int, required=True)
    ap.add_argument("--resume-port", type=int, required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--v5", action="store_true")
    ap.add_argument("--prefix", default="sess")
    ap.add_argument("--kill-pid", type=int)
    ap.add_argument("--kill-after", type=int, default=300)
    # Seconds between two publishes (kill, move).
    ap.add_argument("--gap", type=float, default=0.002)
    ap.add_argument("--timeout", type=float, default=60)
    # offline: the subscriber stays connected; its comeback takes the session over.
    ap.add_argument("--live", action="store_true")
    a = ap.parse_args()
    deadline = time.time() + a.timeout
    stage = ["start"]

    def hung():
        print(json.dumps({"hung_at": stage[0]}), flush=True)
        os._exit(3)

    # Whatever blocks (a paho call that never returns), the test hears where.
    watchdog = threading.Timer(a.timeout + 5, hung)
    watchdog.daemon = True
    watchdog.start()

    def at(s):
        stage[0] = s
        print(f"{time.time() - deadline + a.timeout:.2f}s {s}", file=sys.stderr, flush=True)

    lock = threading.Lock()
    got = []
    probed = threading.Event()

    def on_message(c, u, m):
        if m.topic.endswith("/probe"):
            probed.set()
            return
        with lock:
            got.append(int(m.payload.decode()))

    sub = client(f"{a.prefix}-sub", a.v5)
    sub.on_message = on_message
    at("subscriber connects")
    first_present = connect(sub, a.sub_port, a.v5, deadline)
    sub.subscribe(f"{a.prefix}/#", qos=a.qos)

    pub = client(f"{a.prefix}-pub", a.v5)
    # The broker's Receive Maximum (100): more is a protocol error in MQTT 5.
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    acked = set()
    mid_to_n = {}

    def on_publish(c, u, mid, rc=None, props=None):
        with lock:
            acked.add(mid)

    pub.on_publish = on_publish
    at("publisher connects")
    connect(pub, a.pub_port, a.v5, deadline)
    at("probing")
    # The subscription's route reaches the publishing node shortly after the SUBACK.
    while not probed.is_set() and time.time() < deadline:
        pub.publish(f"{a.prefix}/probe", b"p", qos=0)
        probed.wait(0.1)

    present = None
    if a.mode == "offline":
        at("publishing")
        if not a.live:
            sub.disconnect()
            sub.loop_stop()
            time.sleep(0.3)
        for n in range(a.count):
            # Not under `lock`: paho calls on_publish holding its own lock.
            mid = pub.publish(f"{a.prefix}/data", str(n).encode(), qos=a.qos).mid
            with lock:
                mid_to_n[mid] = n
        while time.time() < deadline:
            with lock:
                if all(m in acked for m in mid_to_n):
                    break
            time.sleep(0.05)
        old = sub
        at("subscriber comes back")
        sub = client(f"{a.prefix}-sub", a.v5)
        sub.on_message = on_message
        present = connect(sub, a.resume_port, a.v5, deadline)
        at("back")
        if a.live:
            old.loop_stop()
    else:
        lost = threading.Event()

        def on_disconnect(c, u, flags, rc, props=None):
            lost.set()

        sub.on_disconnect = on_disconnect
        comeback = {}

        def move():
            # The old connection must not come back by itself (it would take the session
            # back).
            sub.reconnect_delay_set(3600, 3600)
            c = client(f"{a.prefix}-sub", a.v5)
            c.on_message = on_message
            comeback["present"] = connect(c, a.resume_port, a.v5, deadline)
            comeback["client"] = c
            sub.loop_stop()

        moved = threading.Thread(target=move, daemon=True)
        for n in range(a.count):
            # Not under `lock`: paho calls on_publish holding its own lock.
            mid = pub.publish(f"{a.prefix}/data", str(n).encode(), qos=a.qos).mid
            with lock:
                mid_to_n[mid] = n
            if n == a.kill_after and a.mode == "move":
                # On a thread of its own: publishing goes on while the session moves.
                moved.start()
            elif n == a.kill_after:
                os.kill(a.kill_pid, signal.SIGKILL)
            if a.mode == "kill" and n > a.kill_after and lost.is_set() and present is None:
                # Back at once, on another node, while the publisher goes on.
                sub.loop_stop()
                sub = client(f"{a.prefix}-sub", a.v5)
                sub.on_message = on_message
                present = connect(sub, a.resume_port, a.v5, deadline)
            time.sleep(a.gap)
        if a.mode == "move":
            moved.join(max(0.0, deadline - time.time()))
            present = comeback.get("present")
            sub = comeback.get("client", sub)
        if present is None:
            lost.wait(max(0.0, deadline - time.time()))
            sub.loop_stop()
            sub = client(f"{a.prefix}-sub", a.v5)
            sub.on_message = on_message
            present = connect(sub, a.resume_port, a.v5, deadline)
        while time.time() < deadline:
            with lock:
                if all(m in acked for m in mid_to_n):
                    break
            time.sleep(0.05)

    at("receiving")
    with lock:
        want = sorted(mid_to_n[m] for m in mid_to_n if m in acked)
    while time.time() < deadline:
        with lock:
            if set(want) <= set(got):
                break
        time.sleep(0.05)
    time.sleep(0.3)
    with lock:
        have = set(got)
        missing = [n for n in want if n not in have]
        out = {
            "published": len(mid_to_n),
            "acknowledged": len(want),
            "received": len(got),
            "distinct": len(have),
            "missing": missing[:20],
            "missing_count": len(missing),
            "duplicates": len(got) - len(have),
            # Where duplicates are (hundreds of message numbers: count).
            "duplicates_by_hundred": {
                str(h): c
                for h, c in sorted(
                    __import__("collections").Counter(
                        n // 100 for n, k in __import__("collections").Counter(got).items()
                        for _ in range(k - 1)
                    ).items()
                )
            },
            "first_present": first_present,
            "session_present": present,
        }
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
