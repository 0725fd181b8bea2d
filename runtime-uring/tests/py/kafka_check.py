#!/usr/bin/env python3
"""The Kafka side of runtime-uring/tests/e2e_kafka.rs, with kafka-python as the independent
client (tansu's consumer groups are unreliable: partitions are assigned and read from 0).

create PORT TOPICS PARTITIONS: creates the comma-separated topics; prints "created".
read PORT TOPIC: every record of every partition as one JSON list of
  {"p", "offset", "key", "value", "headers", "expected_p"}, where expected_p is the
  partition kafka-python's default partitioner (Java's murmur2) gives the key.
"""

import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2


def main():
    mode, port = sys.argv[1], sys.argv[2]
    bs = f"127.0.0.1:{port}"
    if mode == "create":
        parts = int(sys.argv[4])
        deadline = time.time() + 20
        while True:
            try:
                a = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=5000)
                a.create_topics([NewTopic(t, parts, 1) for t in sys.argv[3].split(",")])
                a.close()
                break
            except TopicAlreadyExistsError:
                # An earlier attempt got through but its answer did not.
                break
            except Exception:  # not up yet
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        print("created", flush=True)
        return 0
    topic = sys.argv[3]
    c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, consumer_timeout_ms=3000)
    parts = sorted(c.partitions_for_topic(topic) or {0})
    tps = [TopicPartition(topic, p) for p in parts]
    c.assign(tps)
    for tp in tps:
        c.seek(tp, 0)
    out = []
    for m in c:
        key = m.key or b""
        out.append(
            {
                "p": m.partition,
                "offset": m.offset,
                "key": key.decode(),
                "value": m.value.decode(errors="replace"),
                "headers": {k: v.decode(errors="replace") for k, v in m.headers},
                "expected_p": (murmur2(key) & 0x7FFFFFFF) % len(parts),
            }
        )
    c.close()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
