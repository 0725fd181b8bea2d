#!/usr/bin/env python3
"""Bridge tests' clients (runtime-uring/tests/e2e_bridge.rs), with paho-mqtt 2 as the
independent client.

pub: publishes --count numbered messages (payload "<prefix><n>") at --qos to --topic
without waiting (up to --inflight in flight), and prints {"acked": n} once every one is
acknowledged, or when --timeout passes (--rate: at most that many per second).

sub: a persistent subscriber (--id, clean session false) to --topic at --qos; prints
"ready" after SUBACK, then {"got": distinct, "dups": n, "missing": [...]} once it has
--count distinct payloads "<prefix><n>" or --timeout passes. With --present it expects
its session to be there already and does not subscribe.
"""

import argparse
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["pub", "sub"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--prefix", default="m")
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--id", default="")
    ap.add_argument("--present", action="store_true")
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--rate", type=float, default=0, help="messages per second (0: no limit)")
    a = ap.parse_args()
    deadline = time.time() + a.timeout
    done = threading.Event()
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=a.id,
        protocol=mqtt.MQTTv311,
        clean_session=(a.mode == "pub"),
    )
    c.max_inflight_messages_set(a.inflight)
    c.max_queued_messages_set(0)
    if a.mode == "pub":
        acked = set()

        def on_publish(c, u, mid, rc=None, props=None):
            acked.add(mid)
            if len(acked) >= a.count:
                done.set()

        c.on_publish = on_publish
        c.connect("127.0.0.1", a.port)
        c.loop_start()
        for i in range(a.count):
            c.publish(a.topic, f"{a.prefix}{i}", qos=a.qos)
            if a.rate > 0:
                time.sleep(1.0 / a.rate)
        if a.qos == 0:
            done.set()
        done.wait(max(0.0, deadline - time.time()))
        c.loop_stop()
        c.disconnect()
        print(json.dumps({"acked": a.count if a.qos == 0 else len(acked)}), flush=True)
        return 0

    seen = {}
    subscribed = threading.Event()

    def on_connect(c, u, flags, rc, props=None):
        if a.present:
            if not flags.session_present:
                print("no session", flush=True)
            subscribed.set()
        else:
            c.subscribe(a.topic, qos=a.qos)

    def on_subscribe(c, u, mid, codes, props=None):
        subscribed.set()

    def on_message(c, u, m):
        p = m.payload.decode(errors="replace")
        seen[p] = seen.get(p, 0) + 1
        wanted = sum(1 for i in range(a.count) if f"{a.prefix}{i}" in seen)
        if wanted >= a.count:
            done.set()

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.connect("127.0.0.1", a.port)
    c.loop_start()
    if not subscribed.wait(10):
        print("no SUBACK", flush=True)
        return 1
    print("ready", flush=True)
    done.wait(max(0.0, deadline - time.time()))
    c.loop_stop()
    c.disconnect()
    names = [f"{a.prefix}{i}" for i in range(a.count)]
    missing = [n for n in names if n not in seen]
    dups = sum(v - 1 for k, v in seen.items() if k in names)
    print(json.dumps({"got": a.count - len(missing), "dups": dups, "missing": missing[:20]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
