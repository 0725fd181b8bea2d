#!/usr/bin/env python3
"""Drives the gateway's TCP echo server (phase 1 firmware) from the host side.

Run inside the test's network namespace by qemu_echo.sh. Every wait is bounded; the exit
status says whether all checks passed. Talks only to the address given on the command line
(the emulated board on a TAP device in a private namespace).
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import threading
import time

PORT = 1883
SOCKETS = 8  # the firmware's SOCKETS


def log(msg):
    print(f"[echo-client {time.monotonic():8.2f}] {msg}", flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    sys.exit(1)


def connect(host, timeout, refused_retry_s=5.0):
    """Connect; a refusal is retried for a bounded time, because the server re-arms a
    listening socket only after the previous connection on that slot has finished closing."""
    deadline = time.monotonic() + refused_retry_s
    while True:
        try:
            s = socket.create_connection((host, PORT), timeout=timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def reset_close(s):
    """Close with RST instead of FIN (SO_LINGER 0): the peer sees an abort."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def wait_ready(host, deadline_s):
    """Retry TCP connects until the board answers (or the deadline passes)."""
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            s = connect(host, timeout=1.0, refused_retry_s=0)
        except OSError:
            time.sleep(0.25)
            continue
        s.close()
        log(f"board answers after {attempt} connect attempt(s)")
        return
    fail(f"board did not accept a TCP connection within {deadline_s} s")


def echo_one(host, size, timeout, results, idx, half_close=True):
    """One connection: send `size` random bytes while reading them back; then check EOF."""
    data = os.urandom(size)
    try:
        s = connect(host, timeout)
        s.settimeout(timeout)
        send_err = []

        def sender():
            try:
                view = memoryview(data)
                while view:
                    n = s.send(view[:1460])
                    view = view[n:]
                if half_close:
                    s.shutdown(socket.SHUT_WR)
            except OSError as e:
                send_err.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        got = bytearray()
        while len(got) < size:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        t.join(timeout)
        if send_err:
            raise send_err[0]
        if bytes(got) != data:
            raise RuntimeError(f"echo mismatch: sent {size} B, got {len(got)} B back")
        if half_close:
            # After our FIN the server must close its side too: EOF, not a hang.
            if s.recv(1) != b"":
                raise RuntimeError("extra bytes after the echo")
        s.close()
        results[idx] = None
    except Exception as e:  # noqa: BLE001 - reported per connection
        results[idx] = e


def echo_concurrent(host, n, size, timeout):
    results = [RuntimeError("did not finish")] * n
    threads = [
        threading.Thread(target=echo_one, args=(host, size, timeout, results, i), daemon=True)
        for i in range(n)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    errors = [(i, e) for i, e in enumerate(results) if e is not None]
    if errors:
        for i, e in errors:
            log(f"connection {i}: {e!r}")
        fail(f"{len(errors)} of {n} concurrent echo connections failed")
    elapsed = time.monotonic() - start
    log(f"{n} concurrent echoes of {size} B OK in {elapsed:.2f} s "
        f"({2 * n * size / elapsed / 1024:.0f} KiB/s both ways)")


def abuse(host, timeout):
    """Connections that misbehave. None of this may wedge the server."""
    # 1. Garbage then an abortive close (RST), without reading anything back.
    for _ in range(2 * SOCKETS):
        s = connect(host, timeout)
        s.sendall(os.urandom(3000))
        reset_close(s)
    log("garbage + RST connections done")

    # 2. Connect and vanish immediately with RST (half-open from the server's point of view
    #    until the RST arrives).
    for _ in range(2 * SOCKETS):
        reset_close(connect(host, timeout))
    log("connect + RST connections done")

    # 3. Flood without reading: the server's TX buffer and our receive window fill up and the
    #    server's write blocks; then abort.
    floods = []
    for _ in range(SOCKETS // 2):
        s = connect(host, timeout)
        s.setblocking(False)
        sent = 0
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                sent += s.send(os.urandom(4096))
            except BlockingIOError:
                time.sleep(0.05)
        floods.append((s, sent))
    log("flooding connections (never reading) sent " +
        ", ".join(f"{sent} B" for _, sent in floods))
    for s, _ in floods:
        reset_close(s)

    # 4. All slots held by idle clients: the server must still answer; the slots free again
    #    once the clients leave (a graceful FIN this time).
    idle = [connect(host, timeout) for _ in range(SOCKETS)]
    time.sleep(0.5)
    for s in idle:
        s.shutdown(socket.SHUT_WR)
        s.settimeout(timeout)
        if s.recv(1) != b"":
            fail("server sent data on an idle connection")
        s.close()
    log("idle connections closed cleanly (server answered FIN with FIN)")


def half_open(host, tap, aux_ip, timeout, recover_s):
    """Peers that vanish without a word: connect from a second address, then delete that
    address, so the board's segments (keep-alives) go unanswered and no RST ever comes. The
    board must time these connections out (IDLE_TIMEOUT plus keep-alive slack) and serve new
    clients again, without any help from the peers."""
    subprocess.run(["ip", "addr", "add", f"{aux_ip}/24", "dev", tap], check=True)
    ghosts = []
    try:
        for _ in range(SOCKETS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(timeout)
            s.bind((aux_ip, 0))
            s.connect((host, PORT))
            s.sendall(b"ghost")
            if s.recv(5) != b"ghost":
                fail("ghost connection did not echo")
            ghosts.append(s)
    finally:
        subprocess.run(["ip", "addr", "del", f"{aux_ip}/24", "dev", tap], check=True)
    log(f"{len(ghosts)} peers vanished while connected (all slots held)")
    # While the ghosts hold every slot, a new client is refused (not accepted and stalled).
    try:
        connect(host, timeout, refused_retry_s=0).close()
        log("note: a slot was free right away")
    except ConnectionRefusedError:
        pass
    start = time.monotonic()
    deadline = start + recover_s
    while True:
        try:
            s = connect(host, timeout, refused_retry_s=0)
            break
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                fail(f"no slot freed {recover_s} s after the peers vanished")
            time.sleep(0.5)
    s.close()
    log(f"board freed the half-open slots after {time.monotonic() - start:.1f} s")
    for g in ghosts:
        g.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("--ready-timeout", type=float, default=30.0)
    ap.add_argument("--size", type=int, default=10 * 1024)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--tap", default="tap0")
    ap.add_argument("--aux-ip", default="192.168.69.3",
                    help="second host address used (then removed) for the half-open check")
    ap.add_argument("--recover", type=float, default=60.0,
                    help="bound on the board's idle timeout (firmware: 30 s + keep-alive)")
    args = ap.parse_args()

    wait_ready(args.host, args.ready_timeout)
    echo_concurrent(args.host, SOCKETS, args.size, args.timeout)
    abuse(args.host, args.timeout)
    # Slots are freed asynchronously (RST handling, close grace); give the server a moment,
    # bounded by the retries inside echo_concurrent's connects.
    time.sleep(1.0)
    echo_concurrent(args.host, SOCKETS, args.size, args.timeout)
    echo_concurrent(args.host, SOCKETS, 4 * args.size, args.timeout)
    half_open(args.host, args.tap, args.aux_ip, args.timeout, args.recover)
    time.sleep(1.0)
    echo_concurrent(args.host, SOCKETS, args.size, args.timeout)
    log("all checks passed")


if __name__ == "__main__":
    main()
