#!/usr/bin/env python3
"""Cross-node delivery for the cluster tests (runtime-uring/tests/e2e_cluster.rs), with
paho-mqtt 2 as the independent client.

Opens --subs subscribers on each of --sub-ports (filter <prefix>/#), waits until a probe
published on --pub-port reaches every one of them (the routes have reached the publishing
node), then publishes --count numbered messages at --qos and waits for every PUBACK /
PUBCOMP. Prints one JSON line: published, acknowledged, received in all, the fewest and
most any subscriber got, duplicates, and whether every subscriber saw them in order.
"""

import argparse
import json
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pub-port", type=int, required=True)
    ap.add_argument("--sub-ports", required=True)
    ap.add_argument("--subs", type=int, default=1)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--v5", action="store_true")
    ap.add_argument("--prefix", default="fan")
    ap.add_argument("--timeout", type=float, default=60)
    # Subscribe as members of one shared group instead: each message to one of them.
    ap.add_argument("--share")
    a = ap.parse_args()
    proto = mqtt.MQTTv5 if a.v5 else mqtt.MQTTv311
    lock = threading.Lock()
    got = {}  # client -> list of sequence numbers
    probed = set()
    subs = []
    deadline = time.time() + a.timeout

    def on_message(c, userdata, m):
        name = userdata
        with lock:
            if m.topic.endswith("/probe"):
                probed.add(name)
            else:
                got.setdefault(name, []).append(int(m.payload.decode()))

    subacked = set()

    def on_subscribe(c, userdata, mid, reason_codes, properties=None):
        with lock:
            subacked.add(userdata)

    for port in [int(p) for p in a.sub_ports.split(",")]:
        for i in range(a.subs):
            name = f"{a.prefix}-s{port}-{i}"
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=proto,
                            userdata=name)
            c.on_message = on_message
            c.on_subscribe = on_subscribe
            c.connect("127.0.0.1", port)
            c.loop_start()
            f = f"{a.prefix}/#"
            c.subscribe(f"$share/{a.share}/{f}" if a.share else f, qos=a.qos)
            subs.append((name, c))
    names = {n for n, _ in subs}
    while time.time() < deadline:
        with lock:
            if subacked >= names:
                break
        time.sleep(0.02)

    p = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{a.prefix}-pub", protocol=proto)
    p.max_inflight_messages_set(100)
    acked = set()

    def on_publish(c, userdata, mid, reason_code=None, properties=None):
        with lock:
            acked.add(mid)

    p.on_publish = on_publish
    p.connect("127.0.0.1", a.pub_port)
    p.loop_start()
    # The routes reach the publishing node shortly after the SUBACKs.
    probes = 0
    while time.time() < deadline:
        p.publish(f"{a.prefix}/probe", b"probe", qos=0)
        probes += 1
        time.sleep(0.05 if a.share else 0.1)
        with lock:
            if probed >= names:
                break
    mids = []
    for n in range(a.count):
        info = p.publish(f"{a.prefix}/data", str(n).encode(), qos=a.qos)
        mids.append(info.mid)
    expected = a.count
    while time.time() < deadline:
        with lock:
            done_pub = a.qos == 0 or all(m in acked for m in mids)
            if a.share:
                done_sub = len(set().union(*got.values())) >= expected if got else False
            else:
                done_sub = all(len(set(got.get(n, []))) >= expected for n in names)
        if done_pub and done_sub:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # late duplicates would show up now
    with lock:
        counts = [len(got.get(n, [])) for n in names]
        distinct = [len(set(got.get(n, []))) for n in names]
        in_order = all(got.get(n, []) == sorted(got.get(n, [])) for n in names)
        out = {
            "published": a.count,
            "acknowledged": len([m for m in mids if m in acked]) if a.qos else a.count,
            "received": sum(counts),
            "min": min(distinct) if distinct else 0,
            "max": max(counts) if counts else 0,
            "duplicates": sum(counts) - sum(distinct),
            "in_order": in_order,
            "probed": len(probed),
            "probes": probes,
            "subscribers": len(names),
            "distinct_total": len(set().union(*got.values())) if got else 0,
            "members_used": len([n for n in names if got.get(n)]),
        }
    print(json.dumps(out), flush=True)
    # paho's loop_stop waits up to a second per client: the process just ends (the
    # brokers see the connections close).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
