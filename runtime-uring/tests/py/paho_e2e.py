#!/usr/bin/env python3
"""End-to-end scenarios with paho-mqtt against a live broker (Petrel or Mosquitto).

Run by the Rust tests in runtime-uring/tests/e2e_*.rs:

    python3 paho_e2e.py SCENARIO --port P [--version 3|5] [--tls ...] [--ws] ...

Each scenario prints what it saw and exits 0 on success; any failed expectation raises,
which prints a traceback and exits 1. Every wait is bounded (TIMEOUT seconds).
"""

import argparse
import queue
import socket
import ssl
import sys
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10.0
ARGS = None


def log(*a):
    print(*a, flush=True)


def fail(msg):
    raise AssertionError(msg)


def props(packet, **kv):
    p = Properties(packet)
    for k, v in kv.items():
        setattr(p, k, v)
    return p


def rc_value(rc):
    """An int for a paho ReasonCode (v5) or a plain int (3.1.1)."""
    return rc.value if hasattr(rc, "value") else int(rc)


class C:
    """A connected paho client whose callbacks feed queues."""

    def __init__(self, cid=None, clean=True, user=None, password=None, will=None,
                 connect_props=None, manual_ack=False, version=None, expect_rc=0,
                 keepalive=30, max_inflight=None):
        self.v5 = (version or ARGS.version) == 5
        self.cid = cid or ("paho-" + uuid.uuid4().hex[:12])
        proto = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        kw = dict(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=self.cid,
                  protocol=proto, manual_ack=manual_ack,
                  transport="websockets" if ARGS.ws else "tcp")
        if not self.v5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(**kw)
        if ARGS.ws:
            self.c.ws_set_options(path="/mqtt")
        if ARGS.ca:
            self.c.tls_set(ca_certs=ARGS.ca, certfile=ARGS.cert, keyfile=ARGS.key,
                           cert_reqs=ssl.CERT_REQUIRED)
        if max_inflight is not None:
            # 0: no limit (paho queues nothing, everything goes out at once).
            self.c.max_inflight_messages_set(max_inflight)
            self.c.max_queued_messages_set(0)
        if user is not None:
            self.c.username_pw_set(user, password)
        if will is not None:
            self.c.will_set(**will)
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = queue.Queue()
        self.pubacks = {}
        self.puback_cv = threading.Condition()
        self.disconnects = queue.Queue()
        self.c.on_connect = lambda c, u, flags, rc, p: self.connack.put((flags, rc, p))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put((mid, rcs))
        self.c.on_disconnect = lambda c, u, flags, rc, p: self.disconnects.put(rc)

        def on_publish(c, u, mid, rc, p):
            with self.puback_cv:
                self.pubacks[mid] = rc
                self.puback_cv.notify_all()
        self.c.on_publish = on_publish
        cp = connect_props
        if self.v5:
            kwc = dict(clean_start=clean, properties=cp)
        else:
            kwc = {}
        self.c.connect(ARGS.host, ARGS.port, keepalive, **kwc)
        self.c.loop_start()
        try:
            flags, rc, p = self.connack.get(timeout=TIMEOUT)
        except queue.Empty:
            self.c.loop_stop()
            fail(f"{self.cid}: no CONNACK within {TIMEOUT}s")
        self.session_present = bool(flags.session_present)
        self.connack_props = p
        self.rc = rc_value(rc)
        if expect_rc is not None and self.rc != expect_rc:
            self.c.loop_stop()
            fail(f"{self.cid}: CONNACK code {self.rc:#x}, expected {expect_rc:#x}")

    def sub(self, topic, qos=1, sub_props=None, expect=None):
        if self.v5:
            opts = mqtt.SubscribeOptions(qos=qos)
            _, mid = self.c.subscribe(topic, options=opts, properties=sub_props)
        else:
            _, mid = self.c.subscribe(topic, qos)
        got_mid, rcs = self.subacks.get(timeout=TIMEOUT)
        if got_mid != mid:
            fail(f"SUBACK for mid {got_mid}, expected {mid}")
        codes = [rc_value(r) for r in rcs]
        if expect is not None and codes != expect:
            fail(f"SUBACK codes for {topic!r}: {[hex(c) for c in codes]}, expected {[hex(c) for c in expect]}")
        return codes

    def pub(self, topic, payload, qos=1, retain=False, pub_props=None, wait=True):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=pub_props)
        if wait:
            self.wait_published(info.mid)
        return info.mid

    def wait_published(self, mid):
        deadline = time.monotonic() + TIMEOUT
        with self.puback_cv:
            while mid not in self.pubacks:
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"{self.cid}: publish {mid} not acknowledged within {TIMEOUT}s")
                self.puback_cv.wait(left)
            return rc_value(self.pubacks[mid])

    def get(self, timeout=TIMEOUT, what="a message"):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            fail(f"{self.cid}: no {what} within {timeout}s")

    def nothing(self, secs, what="message"):
        try:
            m = self.messages.get(timeout=secs)
        except queue.Empty:
            return
        fail(f"{self.cid}: unexpected {what}: {m.topic!r} {m.payload!r}")

    def close(self):
        """Clean DISCONNECT."""
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self):
        """Closes the socket without DISCONNECT (the broker must treat it as a loss)."""
        self.c.loop_stop()
        s = self.c.socket()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def topic(name):
    return f"e2e/{ARGS.run}/{name}"


# ------------------------------------------------------------------------------------------
# Scenarios


def s_roundtrip():
    sub = C()
    sub.sub(topic("rt/#"), qos=ARGS.qos)
    pub = C()
    for i in range(5):
        pub.pub(topic(f"rt/{i}"), f"m{i}", qos=ARGS.qos)
    for i in range(5):
        m = sub.get()
        if m.payload != f"m{i}".encode() or m.topic != topic(f"rt/{i}"):
            fail(f"got {m.topic} {m.payload!r}, expected m{i}")
    pub.close()
    sub.close()
    log("roundtrip ok")


def s_retained():
    t = topic("retained")
    pub = C()
    pub.pub(t, b"kept", qos=1, retain=True)
    s1 = C()
    s1.sub(t, qos=1)
    m = s1.get(what="retained message")
    if m.payload != b"kept" or not m.retain:
        fail(f"retained: got {m.payload!r} retain={m.retain}")
    # A live subscriber gets new publications without the retain flag.
    pub.pub(t, b"live", qos=1, retain=True)
    m = s1.get()
    if m.payload != b"live" or m.retain:
        fail(f"live copy: got {m.payload!r} retain={m.retain} (must be 0 for a live subscriber)")
    # Empty retained payload clears it.
    pub.pub(t, b"", qos=1, retain=True)
    s1.get(what="the clearing message")
    s2 = C()
    s2.sub(t, qos=1)
    s2.nothing(0.5, "retained message after clearing")
    if s2.v5:
        # Retain Handling 2: no retained messages at subscribe time.
        pub.pub(t, b"again", qos=1, retain=True)
        s3 = C()
        _, mid = s3.c.subscribe(t, options=mqtt.SubscribeOptions(qos=1, retainHandling=2))
        s3.subacks.get(timeout=TIMEOUT)
        s3.nothing(0.5, "retained message with retain handling 2")
        s3.close()
        pub.pub(t, b"", qos=1, retain=True)
    for c in (pub, s1, s2):
        c.close()
    log("retained ok")


def s_will():
    t = topic("will")
    watcher = C()
    watcher.sub(t, qos=1)
    dying = C(will=dict(topic=t, payload=b"gone", qos=1, retain=False))
    # A clean DISCONNECT discards the will.
    polite = C(will=dict(topic=t, payload=b"polite", qos=1))
    polite.close()
    watcher.nothing(0.5, "will after a clean DISCONNECT")
    dying.drop()
    m = watcher.get(what="will message")
    if m.payload != b"gone":
        fail(f"will: got {m.payload!r}")
    watcher.close()
    log("will ok")


def s_will_delay():
    """MQTT 5 Will Delay Interval: sent after the delay, not sent if the client returns."""
    t = topic("willdelay")
    watcher = C()
    watcher.sub(t, qos=1)
    cid = "paho-wd-" + uuid.uuid4().hex[:8]
    will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)
    conn_props = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    w = dict(topic=t, payload=b"delayed", qos=1, properties=will_props)
    a = C(cid=cid, clean=True, will=w, connect_props=conn_props)
    t0 = time.monotonic()
    a.drop()
    watcher.nothing(1.2, "will before its delay")
    m = watcher.get(timeout=6, what="delayed will")
    dt = time.monotonic() - t0
    if m.payload != b"delayed" or dt < 1.5:
        fail(f"will delay: {m.payload!r} after {dt:.2f}s")
    # Reconnecting within the delay cancels the will.
    w2 = dict(topic=t, payload=b"cancelled", qos=1, properties=will_props)
    b = C(cid=cid, clean=False, will=w2, connect_props=conn_props)
    b.drop()
    time.sleep(0.3)
    b2 = C(cid=cid, clean=False, connect_props=conn_props)
    watcher.nothing(3.0, "will of a client that came back")
    b2.close()
    watcher.close()
    log(f"will delay ok ({dt:.2f}s)")


def s_persistent():
    """Offline queue of a persistent session; session present on return."""
    t = topic("persist")
    cid = "paho-ps-" + uuid.uuid4().hex[:8]
    cp = props(PacketTypes.CONNECT, SessionExpiryInterval=300) if ARGS.version == 5 else None
    # 3.1.1: clean session 0 from the start; 5.0: clean start with a session expiry.
    s = C(cid=cid, clean=ARGS.version == 5, connect_props=cp)
    s.sub(t, qos=2)
    s.close()
    pub = C()
    for i in range(5):
        pub.pub(t, f"q{i}", qos=1)
    # QoS 0 before the QoS 2 message whose PUBCOMP is awaited: it is then routed (and
    # dropped, the session being offline) before the subscriber comes back. Sent last,
    # it could still be on its way between shards when the subscriber reconnects, and
    # arrive live.
    pub.pub(t, b"q0-not-queued", qos=0)
    pub.pub(t, b"q2-exactly-once", qos=2)
    pub.close()
    s = C(cid=cid, clean=False, connect_props=cp)
    if not s.session_present:
        fail("session present = 0 after reconnecting to a persistent session")
    got = [s.get(what=f"queued message {i}").payload for i in range(6)]
    want = [f"q{i}".encode() for i in range(5)] + [b"q2-exactly-once"]
    if got != want:
        fail(f"offline queue: {got}, expected {want}")
    s.nothing(0.5, "extra message (QoS 0 is not queued, nothing twice)")
    s.close()
    # Clean start discards the session.
    s = C(cid=cid, clean=True)
    if s.session_present:
        fail("session present = 1 after a clean start")
    s.close()
    log("persistent session ok")


def s_qos2():
    t = topic("qos2")
    sub = C()
    sub.sub(t, qos=2)
    pub = C()
    n = 50
    mids = [pub.pub(t, f"x{i}", qos=2, wait=False) for i in range(n)]
    for mid in mids:
        pub.wait_published(mid)
    got = [sub.get().payload for _ in range(n)]
    if got != [f"x{i}".encode() for i in range(n)]:
        fail(f"QoS 2: got {got}")
    sub.nothing(0.5, "duplicate")
    pub.close()
    sub.close()
    log("qos2 ok")


def s_shared():
    t = topic("shared")
    a = C()
    a.sub(f"$share/g1/{t}", qos=1)
    b = C()
    b.sub(f"$share/g1/{t}", qos=1)
    plain = C()
    plain.sub(t, qos=1)
    pub = C()
    n = 20
    for i in range(n):
        pub.pub(t, f"s{i}", qos=1)
    got = {}
    for name, c in (("a", a), ("b", b)):
        got[name] = []
    deadline = time.monotonic() + TIMEOUT
    total = []
    while len(total) < n and time.monotonic() < deadline:
        for name, c in (("a", a), ("b", b)):
            try:
                m = c.messages.get(timeout=0.05)
                got[name].append(m.payload)
                total.append(m.payload)
            except queue.Empty:
                pass
    if sorted(total) != sorted(f"s{i}".encode() for i in range(n)):
        fail(f"shared group got {sorted(total)}")
    if not got["a"] or not got["b"]:
        fail(f"shared group: one member got nothing: a={len(got['a'])} b={len(got['b'])}")
    a.nothing(0.3)
    b.nothing(0.1)
    plain_got = [plain.get().payload for _ in range(n)]
    if len(plain_got) != n:
        fail("non-shared subscriber missed messages")
    for c in (a, b, plain, pub):
        c.close()
    log(f"shared ok (a={len(got['a'])}, b={len(got['b'])})")


def s_alias_in():
    """Client -> broker topic aliases (MQTT 5)."""
    t = topic("alias/in")
    sub = C()
    sub.sub(t, qos=1)
    pub = C()
    maxalias = getattr(pub.connack_props, "TopicAliasMaximum", 0)
    if maxalias < 1:
        fail(f"broker announced Topic Alias Maximum {maxalias}")
    pub.pub(t, b"first", qos=1, pub_props=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.pub("", b"second", qos=1, pub_props=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.pub("", b"third", qos=0, pub_props=props(PacketTypes.PUBLISH, TopicAlias=1), wait=False)
    for want in (b"first", b"second", b"third"):
        m = sub.get()
        if m.payload != want or m.topic != t:
            fail(f"alias in: got {m.topic!r} {m.payload!r}, expected {t} {want!r}")
    pub.close()
    sub.close()
    log(f"alias in ok (broker max {maxalias})")


def s_alias_out():
    """Broker -> client topic aliases (MQTT 5): the client allows 5 aliases."""
    t = topic("alias/out")
    sub = C(connect_props=props(PacketTypes.CONNECT, TopicAliasMaximum=5))
    sub.sub(t, qos=1)
    pub = C()
    for i in range(4):
        pub.pub(t, f"a{i}", qos=1)
    aliases = {}
    used_alias_only = 0
    for i in range(4):
        m = sub.get()
        alias = getattr(m.properties, "TopicAlias", None)
        name = m.topic
        if alias is not None:
            if not (1 <= alias <= 5):
                fail(f"alias {alias} beyond the client's maximum 5")
            if name:
                aliases[alias] = name
            else:
                used_alias_only += 1
                if alias not in aliases:
                    fail(f"alias {alias} used before it was set")
                name = aliases[alias]
        if name != t or m.payload != f"a{i}".encode():
            fail(f"alias out: got {name!r} {m.payload!r}")
    log(f"alias out ok (messages sent with the alias only: {used_alias_only})")
    if ARGS.require_alias_out and used_alias_only == 0:
        fail("the broker never used an outgoing topic alias")
    # A client that allows none never gets one.
    s2 = C()
    s2.sub(t, qos=1)
    pub.pub(t, b"plain", qos=1)
    m = s2.get()
    if getattr(m.properties, "TopicAlias", None) is not None or m.topic != t:
        fail("topic alias sent to a client with Topic Alias Maximum 0")
    for c in (pub, sub, s2):
        c.close()


def s_subid():
    base = topic("subid")
    sub = C()
    sub.sub(f"{base}/#", qos=1, sub_props=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    sub.sub(f"{base}/x", qos=1, sub_props=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=300))
    sub.sub(f"{base}/none", qos=1)
    pub = C()
    pub.pub(f"{base}/x", b"both", qos=1)
    ids = set()
    m = sub.get()
    ids.update(getattr(m.properties, "SubscriptionIdentifier", []))
    try:
        m2 = sub.messages.get(timeout=0.5)
        ids.update(getattr(m2.properties, "SubscriptionIdentifier", []))
    except queue.Empty:
        pass
    if ids != {7, 300}:
        fail(f"subscription identifiers {ids}, expected {{7, 300}}")
    pub.pub(f"{base}/y", b"one", qos=1)
    m = sub.get()
    if list(getattr(m.properties, "SubscriptionIdentifier", [])) != [7]:
        fail(f"identifiers for {base}/y: {m.properties}")
    pub.close()
    sub.close()
    log("subscription identifiers ok")


def s_flow():
    """Receive Maximum (MQTT 5) or the broker's max_inflight_messages (3.1.1): the broker
    never has more than N unacknowledged QoS 1 messages out to this client."""
    t = topic("flow")
    n = ARGS.inflight
    cp = props(PacketTypes.CONNECT, ReceiveMaximum=n) if ARGS.version == 5 else None
    sub = C(manual_ack=True, connect_props=cp)
    sub.sub(t, qos=1)
    pub = C()
    total = n + 3
    for i in range(total):
        pub.pub(t, f"f{i}", qos=1)
    held = [sub.get(what=f"in-flight message {i}") for i in range(n)]
    sub.nothing(0.7, f"message beyond the {n} in flight")
    sub.c.ack(held[0].mid, 1)
    nxt = sub.get(what="the next message after an ack")
    if nxt.payload != f"f{n}".encode():
        fail(f"after one ack got {nxt.payload!r}")
    sub.nothing(0.4, "a second message after a single ack")
    for m in held[1:] + [nxt]:
        sub.c.ack(m.mid, 1)
    rest = []
    for _ in range(total - n - 1):
        m = sub.get()
        rest.append(m.payload)
        sub.c.ack(m.mid, 1)
    want = [f"f{i}".encode() for i in range(n + 1, total)]
    if rest != want:
        fail(f"remaining: {rest}, expected {want}")
    pub.close()
    sub.close()
    log(f"flow control ok (limit {n})")


def s_session_expiry():
    t = topic("sexp")
    cid = "paho-se-" + uuid.uuid4().hex[:8]
    exp = ARGS.expiry
    cp = props(PacketTypes.CONNECT, SessionExpiryInterval=exp) if ARGS.version == 5 else None
    s = C(cid=cid, clean=ARGS.version == 5, connect_props=cp)
    s.sub(t, qos=1)
    s.close()
    s = C(cid=cid, clean=False, connect_props=cp)
    if not s.session_present:
        fail("session gone before its expiry")
    s.close()
    time.sleep(exp + 1.5)
    s = C(cid=cid, clean=False, connect_props=cp)
    if s.session_present:
        fail(f"session still present {exp + 1.5}s after disconnecting (expiry {exp}s)")
    s.close()
    log("session expiry ok")


def s_message_expiry():
    t = topic("mexp")
    cid = "paho-me-" + uuid.uuid4().hex[:8]
    cp = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    s = C(cid=cid, clean=True, connect_props=cp)
    s.sub(t, qos=1)
    s.close()
    pub = C()
    pub.pub(t, b"short", qos=1, pub_props=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.pub(t, b"long", qos=1, pub_props=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    pub.pub(t, b"forever", qos=1)
    pub.close()
    time.sleep(2.5)
    s = C(cid=cid, clean=False, connect_props=cp)
    m = s.get()
    if m.payload != b"long":
        fail(f"expired message delivered: {m.payload!r}")
    left = getattr(m.properties, "MessageExpiryInterval", None)
    if left is None or not (50 <= left <= 58):
        fail(f"Message Expiry Interval not counted down: {left} (sent 60, 2.5 s ago)")
    m = s.get()
    if m.payload != b"forever" or getattr(m.properties, "MessageExpiryInterval", None) is not None:
        fail(f"message without expiry: {m.payload!r} {m.properties}")
    s.nothing(0.3)
    s.close()
    log(f"message expiry ok (remaining {left}s)")


def s_acl():
    """Needs an ACL where user 'alice' may readwrite acl/alice/#, read acl/public/#,
    is denied acl/public/secret, and 'bob' may readwrite acl/#."""
    v5 = ARGS.version == 5
    refused = 0x87 if v5 else 0x80
    alice = C(user="alice", password=ARGS.password)
    codes = alice.sub("acl/bob/#", qos=1)
    if codes != [refused]:
        fail(f"SUBSCRIBE acl/bob/# -> {[hex(c) for c in codes]}, expected {refused:#x}")
    alice.sub("acl/public/#", qos=1, expect=[1])
    alice.sub("acl/alice/in", qos=1, expect=[1])
    bob = C(user="bob", password=ARGS.password)
    bob.sub("acl/alice/#", qos=1, expect=[1])
    # Refused publish: MQTT 5 gets PUBACK 0x87; 3.1.1 is acknowledged but not delivered.
    mid = alice.pub("acl/bob/x", b"forbidden", qos=1, wait=False)
    rc = alice.wait_published(mid)
    if v5 and rc != 0x87:
        fail(f"PUBACK for a refused publish: {rc:#x}, expected 0x87")
    bob.nothing(0.5, "message published against the ACL")
    alice.pub("acl/alice/out", b"allowed", qos=1)
    m = bob.get()
    if m.payload != b"allowed":
        fail(f"bob got {m.payload!r}")
    # Delivery is filtered by read access.
    bob.pub("acl/public/news", b"news", qos=1)
    bob.pub("acl/public/secret", b"secret", qos=1)
    bob.pub("acl/public/more", b"more", qos=1)
    got = [alice.get().payload, alice.get().payload]
    if got != [b"news", b"more"]:
        fail(f"alice got {got} (acl/public/secret must be filtered)")
    alice.nothing(0.3, "message alice may not read")
    # Still connected after all the refusals.
    alice.pub("acl/alice/in", b"self", qos=1)
    if alice.get().payload != b"self":
        fail("alice stopped receiving")
    alice.close()
    bob.close()
    log("acl ok")


def s_bad_password():
    v5 = ARGS.version == 5
    c = C(user=ARGS.user, password="wrong-" + ARGS.password, expect_rc=None)
    c.c.loop_stop()
    log(f"refused with {c.rc:#x}")
    if ARGS.expect_code is not None:
        if c.rc != ARGS.expect_code:
            fail(f"CONNACK {c.rc:#x}, expected {ARGS.expect_code:#x}")
    elif c.rc not in ((0x86, 0x87) if v5 else (4, 5)):
        fail(f"CONNACK {c.rc:#x} for a wrong password")
    ok = C(user=ARGS.user, password=ARGS.password)
    ok.close()
    log("bad password ok")


def s_hold():
    """Stays subscribed, prints each payload, and exits after --count messages. Used to
    check that a connection survives something (a SIGHUP reload)."""
    sub = C(user=ARGS.user, password=ARGS.password)
    sub.sub(ARGS.topic, qos=1)
    log("SUBSCRIBED")
    for _ in range(ARGS.count):
        m = sub.get(timeout=ARGS.hold_timeout)
        log("MSG " + m.payload.decode())
    sub.close()


def s_shutdown():
    """Waits for the broker's DISCONNECT (graceful shutdown): prints its reason code."""
    c = C()
    c.sub(topic("shutdown"), qos=1)
    log("READY")
    try:
        rc = c.disconnects.get(timeout=ARGS.hold_timeout)
    except queue.Empty:
        fail("no disconnect")
    log(f"DISCONNECT {rc_value(rc):#x}")
    c.c.loop_stop()


def s_flood():
    """Eight publishers that never wait for their acknowledgements (paho with no in-flight
    limit: 3.1.1 sends everything at once, 5.0 keeps to the server's Receive Maximum) flood
    one slow subscriber at --qos. Every message a publisher got its PUBACK/PUBCOMP for must
    arrive: QoS 1 at least once, QoS 2 exactly once, each publisher's in order."""
    n = ARGS.count
    t = topic("flood")
    sub = C(cid="flood-sub-" + ARGS.run)
    sub.sub(t + "/#", qos=ARGS.qos)
    got = []
    done = threading.Event()

    def on_message(c, u, m):
        # A slow reader: while it sleeps the broker's queue for it fills.
        time.sleep(ARGS.slow)
        got.append(m.payload.decode())
        if len(got) >= 8 * n:
            done.set()
    sub.c.on_message = on_message
    # 5.0: as many unacknowledged as the server's Receive Maximum allows (paho does not
    # read it from CONNACK itself); 3.1.1: no limit at all.
    window = 0
    if sub.v5:
        window = getattr(sub.connack_props, "ReceiveMaximum", 65535)
    pubs = []
    for k in range(8):
        pubs.append(C(cid=f"flood-pub{k}-" + ARGS.run, max_inflight=window))
    mids = []
    for i in range(n):
        for k, p in enumerate(pubs):
            mids.append((p, p.pub(f"{t}/{k}", f"{k}:{i}", qos=ARGS.qos, wait=False)))
    log(f"published {len(mids)} without waiting")
    for p, mid in mids:
        rc = p.wait_published(mid)
        if rc not in (0, 16):
            fail(f"publish refused: {rc:#x}")
    log("every publish acknowledged")
    if not done.wait(ARGS.hold_timeout):
        fail(f"subscriber got {len(got)} of {8 * n} acknowledged messages")
    time.sleep(0.5)
    counts = {}
    last = {}
    for x in got:
        counts[x] = counts.get(x, 0) + 1
        k, i = (int(v) for v in x.split(":"))
        if counts[x] == 1:
            if last.get(k, -1) >= i:
                fail(f"publisher {k} out of order at {i}")
            last[k] = i
    missing = [f"{k}:{i}" for k in range(8) for i in range(n) if f"{k}:{i}" not in counts]
    if missing:
        fail(f"acknowledged and lost: {len(missing)}, e.g. {missing[:5]}")
    if ARGS.qos == 2:
        dup = [x for x, c in counts.items() if c > 1]
        if dup:
            fail(f"QoS 2 delivered twice: {dup[:5]}")
    log(f"FLOOD OK {len(got)} deliveries of {8 * n}")
    for p in pubs:
        p.close()
    sub.close()


def s_stall():
    """A subscriber that reads but never acknowledges (MQTT 5) while a publisher that never
    waits floods it: once its queue and overflow are full the publisher is held, and after
    the broker's stall_timeout the subscriber is disconnected with 0x97 (Quota exceeded).
    The publisher is released: every PUBLISH gets its acknowledgement."""
    t = topic("stall")
    sub = C(cid="stall-sub-" + ARGS.run, manual_ack=True, version=5)
    sub.sub(t, qos=1)
    window = getattr(sub.connack_props, "ReceiveMaximum", 65535)
    p = C(cid="stall-pub-" + ARGS.run, max_inflight=window, version=5)
    mids = [p.pub(t, f"m{i}", qos=1, wait=False) for i in range(ARGS.count)]
    try:
        rc = sub.disconnects.get(timeout=ARGS.hold_timeout)
    except queue.Empty:
        fail("the stalled subscriber was not disconnected")
    if rc_value(rc) != 0x97:
        fail(f"stalled subscriber disconnected with {rc_value(rc):#x}, expected 0x97")
    sub.c.loop_stop()
    log("subscriber disconnected 0x97")
    for mid in mids:
        code = p.wait_published(mid)
        if code not in (0, 16):
            fail(f"publish refused: {code:#x}")
    log(f"STALL OK: {len(mids)} acknowledged after the subscriber was disconnected")
    p.close()


def s_flow_control2():
    """Paho's interoperability test_flow_control2 (v5), on a raw socket: more QoS 2
    PUBLISH packets than the server's Receive Maximum, sent without reading, then PUBREC
    answered with PUBREL until the server's DISCONNECT 0x93, which must be readable (not
    lost to a connection reset)."""
    s = socket.create_connection((ARGS.host, ARGS.port), timeout=TIMEOUT)

    def utf8(x):
        b = x.encode()
        return len(b).to_bytes(2, "big") + b

    def varint(n):
        out = b""
        while True:
            d, n = n % 128, n // 128
            out += bytes([d | (0x80 if n else 0)])
            if not n:
                return out

    def packet(first, body):
        return bytes([first]) + varint(len(body)) + body

    cid = "flowcontrol-" + ARGS.run
    s.sendall(packet(0x10, utf8("MQTT") + b"\x05\x02\x00\x3c\x00" + utf8(cid)))
    buf = b""

    def read_packet():
        nonlocal buf
        while True:
            if len(buf) >= 2:
                n, mult, i = 0, 1, 1
                while i < len(buf) and i <= 4:
                    n += (buf[i] & 0x7F) * mult
                    mult *= 128
                    if not buf[i] & 0x80:
                        break
                    i += 1
                else:
                    i = None
                if i is not None and i < len(buf) and len(buf) >= i + 1 + n:
                    p, buf = buf[: i + 1 + n], buf[i + 1 + n:]
                    return p[0], p[i + 1:]
            chunk = s.recv(65536)
            if not chunk:
                fail("connection closed before DISCONNECT 0x93")
            buf += chunk

    first, body = read_packet()
    if first != 0x20 or body[1] != 0:
        fail(f"no CONNACK: {first:#x} {body!r}")
    # CONNACK properties: Receive Maximum (0x21), default 65535.
    props = body[3:]
    recv_max, j = 65535, 0
    while j < len(props):
        pid = props[j]
        if pid == 0x21:
            recv_max = int.from_bytes(props[j + 1:j + 3], "big")
            break
        if pid in (0x24, 0x25, 0x28, 0x29, 0x2A):
            j += 2
        elif pid in (0x21, 0x22, 0x23, 0x13):
            j += 3
        elif pid in (0x11, 0x27):
            j += 5
        elif pid in (0x12, 0x1A, 0x1C, 0x1F):
            j += 3 + int.from_bytes(props[j + 1:j + 3], "big")
        else:
            break
    t = utf8(topic("flow2"))
    burst = b"".join(
        packet(0x34, t + (i % 65535 + 1).to_bytes(2, "big") + b"\x00" + f"message {i}".encode())
        for i in range(1, recv_max + 2))
    s.sendall(burst)
    log(f"sent {recv_max + 1} QoS 2 PUBLISH (Receive Maximum {recv_max}) without reading")
    try:
        while True:
            first, body = read_packet()
            if first == 0x50:
                s.sendall(packet(0x62, body[:2]))
            elif first == 0xE0:
                code = body[0] if body else 0
                if code != 0x93:
                    fail(f"DISCONNECT {code:#x}, expected 0x93")
                log("DISCONNECT 0x93 read")
                break
    except ConnectionResetError:
        fail("connection reset before the DISCONNECT could be read")
    s.close()


SCENARIOS = {name[2:]: f for name, f in globals().items() if name.startswith("s_")}


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--version", type=int, default=5, choices=(3, 5))
    p.add_argument("--qos", type=int, default=1)
    p.add_argument("--ws", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user", default="alice")
    p.add_argument("--password", default="secret")
    p.add_argument("--expect-code", type=lambda s: int(s, 0))
    p.add_argument("--inflight", type=int, default=2)
    p.add_argument("--expiry", type=int, default=2)
    p.add_argument("--require-alias-out", action="store_true")
    p.add_argument("--topic", default="e2e/hold")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--hold-timeout", type=float, default=20)
    p.add_argument("--slow", type=float, default=0.0005)
    ARGS = p.parse_args()
    ARGS.run = uuid.uuid4().hex[:8]
    if ARGS.user == "":
        ARGS.user = None
    SCENARIOS[ARGS.scenario]()


if __name__ == "__main__":
    main()
