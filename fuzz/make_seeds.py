#!/usr/bin/env python3
"""Writes fuzz/corpus/seed/ from the golden vectors in mqtt-proto/tests/data/captured/.

Each seed is one input of the `decode` target: a selector byte (0 = MQTT 3.1, 1 = 3.1.1,
2 = 5.0; see fuzz_targets/decode.rs) followed by packet bytes. Seeds are single packets and,
per connection and direction, the whole stream of packets. The `roundtrip` target reads the
same seeds as raw `arbitrary` input. Re-run after re-capturing:

    python3 fuzz/make_seeds.py
"""

import hashlib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTURED = os.path.join(ROOT, "mqtt-proto", "tests", "data", "captured")
SEED = os.path.join(ROOT, "fuzz", "corpus", "seed")
SELECTOR = {3: 0, 4: 1, 5: 2}

# Spec examples (see mqtt-proto/tests/golden_spec.rs), as (level, hex).
SPEC = [
    (4, "10 19 00 04 4D 51 54 54 04 CE 00 0A 00 01 63 00 01 77 00 01 6D 00 01 75 00 01 70"),
    (5, "32 08 00 03 61 2F 62 00 0A 00"),
    (4, "82 0E 00 0A 00 03 61 2F 62 01 00 03 63 2F 64 02"),
    (4, "90 05 00 0A 00 02 80"),
    (4, "A2 0C 00 0A 00 03 61 2F 62 00 03 63 2F 64"),
    (5, "30 08 00 05 41 F0 AA 9B 94 00"),
]


def main():
    os.makedirs(SEED, exist_ok=True)
    for f in os.listdir(SEED):
        os.remove(os.path.join(SEED, f))
    seeds = {}
    for name in sorted(os.listdir(CAPTURED)):
        level = None
        streams = {}
        for line in open(os.path.join(CAPTURED, name)):
            if line.startswith("# protocol level:"):
                level = int(line.split(":")[1])
                continue
            if line.startswith("#") or not line.strip():
                continue
            conn, d, _kind, hx = line.split()
            pkt = bytes.fromhex(hx)
            sel = SELECTOR[level]
            if b"MQIsdp" in pkt[:12]:  # a 3.1 CONNECT in a mixed file
                sel = 0
            seeds[bytes([sel]) + pkt] = name
            streams.setdefault((conn, d, sel), bytearray()).extend(pkt)
        for (_c, _d, sel), data in streams.items():
            seeds[bytes([sel]) + bytes(data)] = name
    for level, hx in SPEC:
        seeds[bytes([SELECTOR[level]]) + bytes.fromhex(hx.replace(" ", ""))] = "spec"
    for data, origin in seeds.items():
        h = hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(SEED, "%s-%s" % (origin.removesuffix(".txt"), h)), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), os.path.relpath(SEED)))


if __name__ == "__main__":
    main()
