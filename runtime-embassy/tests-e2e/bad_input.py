#!/usr/bin/env python3
"""Bad input for the gateway's MQTT port (run by qemu_gateway.sh inside its namespace).

Every check expects the gateway to end the offending connection within a bounded time, and
a well-formed client to be served afterwards. Exit status 0 only if all checks passed.
"""

import os
import socket
import struct
import sys
import time

HOST = sys.argv[1] if len(sys.argv) > 1 else "192.168.69.2"
PORT = 1883
CLOSE_WITHIN = 12.0  # s: connect timeout (5 s) or keep alive (1.5 x) plus slack


def log(msg):
    print(f"[bad_input {time.monotonic():8.2f}] {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    sys.exit(1)


def connect(retry_s=10.0):
    deadline = time.monotonic() + retry_s
    while True:
        try:
            s = socket.create_connection((HOST, PORT), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def connect_packet(client_id, keep_alive=30):
    body = mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", keep_alive) + mqtt_str(client_id)
    return b"\x10" + varint(len(body)) + body


def read_exact(s, n, timeout=5.0):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def closed_by_peer(s, within=CLOSE_WITHIN):
    """True if the peer closes (FIN or RST) within `within` s; data before that is ignored."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if not s.recv(4096):
                return True
        except socket.timeout:
            return False
        except OSError:
            return True
    return False


def handshake(client_id, keep_alive=30):
    s = connect()
    s.sendall(connect_packet(client_id, keep_alive))
    ack = read_exact(s, 4)
    if ack != b"\x20\x02\x00\x00":
        fail(f"{client_id}: CONNACK expected, got {ack!r}")
    return s


def round_trip(tag):
    """A subscriber and a publisher on one connection each: a QoS 1 message must arrive."""
    sub = handshake(f"rt-sub-{tag}")
    topic = f"bad/rt/{tag}"
    body = struct.pack(">H", 1) + mqtt_str(topic) + b"\x01"
    sub.sendall(b"\x82" + varint(len(body)) + body)
    if read_exact(sub, 5) != b"\x90\x03\x00\x01\x01":
        fail(f"{tag}: SUBACK expected")
    pub = handshake(f"rt-pub-{tag}")
    payload = b"hello-" + tag.encode()
    body = mqtt_str(topic) + struct.pack(">H", 7) + payload
    pub.sendall(b"\x32" + varint(len(body)) + body)
    if read_exact(pub, 4) != b"\x40\x02\x00\x07":
        fail(f"{tag}: PUBACK expected")
    hdr = read_exact(sub, 2)
    if len(hdr) != 2 or hdr[0] & 0xF0 != 0x30:
        fail(f"{tag}: PUBLISH expected at the subscriber, got {hdr!r}")
    rest = read_exact(sub, hdr[1])
    if not rest.endswith(payload):
        fail(f"{tag}: wrong message {rest!r}")
    for s in (sub, pub):
        s.sendall(b"\xe0\x00")
        s.close()
    log(f"round trip ok ({tag})")


def main():
    round_trip("before")

    # 1. Garbage instead of a CONNECT.
    s = connect()
    s.sendall(os.urandom(64) + b"\xff" * 64)
    if not closed_by_peer(s):
        fail("garbage: connection not closed")
    s.close()
    log("garbage closed")

    # 2. A packet type that may not come first, and a malformed remaining length.
    for junk in (b"\x30\x00", b"\x10\xff\xff\xff\xff\x7f", b"\x00\x00"):
        s = connect()
        s.sendall(junk)
        if not closed_by_peer(s):
            fail(f"malformed {junk!r}: connection not closed")
        s.close()
    log("malformed packets closed")

    # 3. Oversized packets: a CONNECT and (after a good CONNECT) a PUBLISH far beyond the
    #    gateway's maximum packet size, announced by the remaining length.
    s = connect()
    s.sendall(b"\x10" + varint(200_000) + b"\x00\x04MQTT\x04\x02\x00\x1e")
    if not closed_by_peer(s):
        fail("oversized CONNECT: connection not closed")
    s.close()
    s = handshake("oversize")
    body = mqtt_str("bad/big") + b"x" * 4000
    try:
        s.sendall(b"\x30" + varint(len(body)) + body)
    except OSError:
        pass  # reset while sending: closed, as expected
    if not closed_by_peer(s):
        fail("oversized PUBLISH: connection not closed")
    s.close()
    log("oversized packets closed")

    # 4. Half-open and silent connections on every slot at once: 4 that never send, 3 that
    #    stop in the middle of a CONNECT, 1 that connects with keep alive 2 s and goes silent.
    #    The gateway must reclaim all of them (connect timeout / keep alive).
    quiet = handshake("quiet", keep_alive=2)
    idle = [connect() for _ in range(4)]
    half = []
    for i in range(3):
        h = connect()
        h.sendall(connect_packet(f"half{i}")[:7])
        half.append(h)
    t0 = time.monotonic()
    for i, h in enumerate(idle + half + [quiet]):
        if not closed_by_peer(h, within=max(1.0, CLOSE_WITHIN - (time.monotonic() - t0))):
            fail(f"silent/half-open connection {i} not closed within {CLOSE_WITHIN} s")
        h.close()
    log(f"silent and half-open connections reclaimed in {time.monotonic() - t0:.1f} s")

    # 5. A burst of connections reset right away.
    for _ in range(20):
        s = connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    log("connection burst with resets done")

    # 6. A client that vanishes mid-packet with a reset.
    s = handshake("vanish")
    s.sendall(b"\x32\x40\x00\x07bad/van")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()

    round_trip("after")
    log("all bad input checks passed")


if __name__ == "__main__":
    main()
