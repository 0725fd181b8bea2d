#!/usr/bin/env python3
"""Records real MQTT traffic between real peers for mqtt-proto's golden-vector tests.

What it does:
  * starts two private mosquitto brokers on 127.0.0.1 (a plain one with an ACL, and one
    with tests/data/auth_plugin.c loaded for MQTT 5 enhanced authentication), each behind a
    small TCP relay that logs the bytes of both directions;
  * runs clients through the relays: mosquitto_pub / mosquitto_sub (MQTT 3.1, 3.1.1, 5.0),
    paho-mqtt (3.1, 3.1.1, 5.0 with properties), and, for AUTH, a raw socket sending packets
    hand-built from the specification (no client library sends AUTH);
  * splits each direction into packets by the fixed header and writes one annotated file
    per scenario to tests/data/captured/<scenario>.txt.

The tests only read the stored files; CI never runs this script. Re-run it with
    python3 mqtt-proto/tests/data/capture.py            # all scenarios
    python3 mqtt-proto/tests/data/capture.py pub_v5_props paho_v5_session
It needs: mosquitto, mosquitto-clients, mosquitto-dev (for the AUTH plugin), gcc,
paho-mqtt (pip). Brokers are started and stopped by this script (by PID); the system
service is not used.

File format: '#' lines are provenance. Each other line is
    <connection> <c2s|s2c> <PACKET-TYPE> <hex of the whole packet>
in the order the relay saw the bytes (interleaved across directions).
"""

import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "captured")
HOST = "127.0.0.1"
BROKER_PORT = 18830
RELAY_PORT = 18831
AUTH_BROKER_PORT = 18840
AUTH_RELAY_PORT = 18841

NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}
VERSIONS = {"v31": ("mqttv31", 3), "v311": ("mqttv311", 4), "v5": ("mqttv5", 5)}


def tool_versions():
    def first_line(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
        except FileNotFoundError:
            return "missing"
        for line in out.splitlines():
            if "version" in line:
                return line.strip()
        return "unknown"

    import paho.mqtt

    return {
        "mosquitto": first_line(["mosquitto", "-h"]),
        "mosquitto_pub": first_line(["mosquitto_pub", "--help"]),
        "mosquitto_sub": first_line(["mosquitto_sub", "--help"]),
        "paho": "paho-mqtt %s (Python %s)" % (paho.mqtt.__version__, sys.version.split()[0]),
    }


def split_packets(data):
    """Splits a byte stream into (offset, packet) by the fixed header (2.1)."""
    out, i = [], 0
    while i < len(data):
        j, mult, rem = i + 1, 1, 0
        while True:
            if j >= len(data):
                raise ValueError("truncated fixed header at %d" % i)
            b = data[j]
            rem += (b & 0x7F) * mult
            mult *= 128
            j += 1
            if b & 0x80 == 0:
                break
        end = j + rem
        if end > len(data):
            raise ValueError("truncated packet at %d" % i)
        out.append((i, data[i:end]))
        i = end
    return out


class Conn:
    def __init__(self, relay, idx):
        self.relay, self.idx = relay, idx
        self.chunks = {"c2s": [], "s2c": []}  # (seq, bytes)
        self.done = 0

    def packets(self):
        """All packets of both directions, ordered by when their first byte arrived."""
        rows = []
        for d in ("c2s", "s2c"):
            data = b"".join(c for _, c in self.chunks[d])
            starts, pos = [], 0
            for seq, c in self.chunks[d]:
                starts.append((pos, seq))
                pos += len(c)
            for off, pkt in split_packets(data):
                seq = max(s for p, s in starts if p <= off)
                rows.append((seq, off, d, pkt))
        rows.sort(key=lambda r: (r[0], r[1]))
        return [(d, pkt) for _, _, d, pkt in rows]


class Relay:
    """A TCP relay that logs every chunk with a global sequence number. A chunk is logged
    before it is forwarded, so an answer is always logged after what caused it."""

    def __init__(self, listen_port, upstream_port):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.seq = 0
        self.conns = []
        self.sock = socket.create_server((HOST, listen_port), reuse_port=False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        threading.Thread(target=self._accept, daemon=True).start()

    def begin(self):
        with self.lock:
            self.conns = []

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection((HOST, self.upstream_port))
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                conn = Conn(self, len(self.conns))
                self.conns.append(conn)
            threading.Thread(target=self._pump, args=(conn, client, up, "c2s"), daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, up, client, "s2c"), daemon=True).start()

    def _pump(self, conn, src, dst, direction):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with self.lock:
                self.seq += 1
                conn.chunks[direction].append((self.seq, data))
            try:
                dst.sendall(data)
            except OSError:
                break
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass
        with self.lock:
            conn.done += 1
            if conn.done == 2:
                src.close()
                dst.close()

    def wait_closed(self, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if self.conns and all(c.done == 2 for c in self.conns):
                    return list(self.conns)
            time.sleep(0.05)
        with self.lock:
            raise RuntimeError("connections still open: %s" % [c.done for c in self.conns])


class Broker:
    def __init__(self, port, workdir, extra=""):
        acl = os.path.join(workdir, "acl-%d" % port)
        with open(acl, "w") as f:
            # Everything under petrel/ for every client; anything else (denied/...) refused,
            # which makes the broker answer with SUBACK/PUBACK failure codes.
            f.write("pattern readwrite petrel/#\n")
        conf = os.path.join(workdir, "mosquitto-%d.conf" % port)
        self.conf_text = (
            "listener %d %s\nallow_anonymous true\npersistence false\nlog_dest %s\n"
            "acl_file %s\n%s" % (port, HOST, "stderr\nlog_type all" if os.environ.get("CAPTURE_LOG") else "none", acl, extra)
        )
        with open(conf, "w") as f:
            f.write(self.conf_text)
        self.proc = subprocess.Popen(["mosquitto", "-c", conf])
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection((HOST, port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start on %d" % port)

    def stop(self):
        self.proc.terminate()  # by PID: only the broker this script started
        self.proc.wait(5)


# ---------------------------------------------------------------------------------------
# Scenarios. Each returns a list of human-readable command lines / descriptions that went
# into the capture, and the relay records what the peers actually sent.

SCENARIOS = {}


def scenario(name, level, tool, relay="plain"):
    def deco(fn):
        SCENARIOS[name] = (level, tool, relay, fn)
        return fn

    return deco


def run(cmd, **kw):
    if not kw.get("capture_output"):
        kw.setdefault("stdout", subprocess.DEVNULL)
    subprocess.run(cmd, check=True, timeout=20, **kw)
    return " ".join(shlex.quote(c) for c in cmd)


def direct_pub(args):
    """A publish straight to the broker (not through the relay: not part of the capture)."""
    run(["mosquitto_pub", "-h", HOST, "-p", str(BROKER_PORT)] + args)


def pub(v):
    return ["mosquitto_pub", "-h", HOST, "-p", str(RELAY_PORT), "-V", VERSIONS[v][0]]


def sub(v):
    return ["mosquitto_sub", "-h", HOST, "-p", str(RELAY_PORT), "-V", VERSIONS[v][0]]


for _v in VERSIONS:

    def _mk(v):
        @scenario("pub_%s_qos0" % v, VERSIONS[v][1], "mosquitto_pub")
        def _q0():
            return [run(pub(v) + ["-i", "petrel-pub-" + v, "-t", "petrel/test", "-m", "hello", "-q", "0"])]

        @scenario("pub_%s_qos1" % v, VERSIONS[v][1], "mosquitto_pub")
        def _q1():
            return [run(pub(v) + ["-i", "petrel-pub-" + v, "-t", "petrel/test", "-m", "hello qos1", "-q", "1"])]

        @scenario("pub_%s_qos2_retain" % v, VERSIONS[v][1], "mosquitto_pub")
        def _q2():
            cmd = run(pub(v) + ["-i", "petrel-pub-" + v, "-t", "petrel/retained", "-m", "hello qos2", "-q", "2", "-r"])
            direct_pub(["-t", "petrel/retained", "-r", "-n"])  # clear it again (not captured)
            return [cmd]

        @scenario("pub_%s_will_login" % v, VERSIONS[v][1], "mosquitto_pub")
        def _will():
            return [run(pub(v) + [
                "-i", "petrel-will-" + v, "-u", "petrel-user", "-P", "secret", "-c", "-k", "30",
                "--will-topic", "petrel/will", "--will-payload", "offline", "--will-qos", "1",
                "--will-retain", "-t", "petrel/empty", "-n", "-q", "1",
            ])]

        @scenario("sub_%s_retained" % v, VERSIONS[v][1], "mosquitto_sub")
        def _sub():
            direct_pub(["-t", "petrel/retained/a", "-m", "retained payload", "-q", "1", "-r"])
            cmd = run(sub(v) + ["-i", "petrel-sub-" + v, "-q", "1", "-t", "petrel/retained/a", "-C", "1"])
            direct_pub(["-t", "petrel/retained/a", "-r", "-n"])
            return ["(not captured) mosquitto_pub -t petrel/retained/a -m 'retained payload' -q 1 -r", cmd]

        @scenario("sub_%s_filters" % v, VERSIONS[v][1], "mosquitto_sub")
        def _filters():
            return [run(sub(v) + [
                "-i", "petrel-sub2-" + v, "-c", "-q", "2", "-t", "petrel/a", "-t", "petrel/+/b",
                "-t", "petrel/#", "-U", "petrel/old", "-U", "petrel/older/#", "-E",
            ])]

    _mk(_v)


@scenario("pub_v5_props", 5, "mosquitto_pub")
def _pub_v5_props():
    # Properties listed in ascending identifier order (as paho and mqtt-proto emit them).
    return [run(pub("v5") + [
        "-i", "petrel-props", "-q", "1", "-t", "petrel/props", "-m", "{\"t\":21.5}",
        "-D", "connect", "session-expiry-interval", "60",
        "-D", "connect", "request-problem-information", "0",
        "-D", "connect", "request-response-information", "1",
        "-D", "connect", "receive-maximum", "20",
        "-D", "connect", "topic-alias-maximum", "5",
        "-D", "connect", "user-property", "client", "petrel",
        "-D", "connect", "maximum-packet-size", "10000",
        "-D", "publish", "payload-format-indicator", "1",
        "-D", "publish", "message-expiry-interval", "30",
        "-D", "publish", "content-type", "application/json",
        "-D", "publish", "response-topic", "petrel/reply",
        "-D", "publish", "correlation-data", "req-42",
        "-D", "publish", "topic-alias", "1",
        "-D", "publish", "user-property", "unit", "celsius",
        "-D", "publish", "user-property", "unit", "kelvin",
        "-D", "will", "payload-format-indicator", "1",
        "-D", "will", "message-expiry-interval", "120",
        "-D", "will", "content-type", "text/plain",
        "-D", "will", "will-delay-interval", "5",
        "-D", "will", "user-property", "why", "gone",
        "--will-topic", "petrel/will", "--will-payload", "offline",
    ])]


@scenario("pub_v5_denied", 5, "mosquitto_pub")
def _pub_v5_denied():
    return [
        run(pub("v5") + ["-i", "petrel-denied", "-q", "1", "-t", "denied/q1", "-m", "x"], capture_output=True),
        run(pub("v5") + ["-i", "petrel-denied", "-q", "2", "-t", "denied/q2", "-m", "x"], capture_output=True),
    ]


@scenario("sub_v5_props", 5, "mosquitto_sub")
def _sub_v5_props():
    direct_pub(["-V", "mqttv5", "-t", "petrel/v5/retained", "-m", "r", "-q", "1", "-r",
                "-D", "publish", "message-expiry-interval", "3600",
                "-D", "publish", "user-property", "origin", "direct"])
    cmd = run(sub("v5") + [
        "-i", "petrel-sub5", "-q", "1", "-t", "petrel/v5/retained", "-C", "1",
        "-D", "connect", "session-expiry-interval", "0",
        "-D", "subscribe", "subscription-identifier", "42",
        "-D", "subscribe", "user-property", "sub", "prop",
    ])
    direct_pub(["-t", "petrel/v5/retained", "-r", "-n"])
    return ["(not captured) mosquitto_pub -V mqttv5 -t petrel/v5/retained -m r -q 1 -r "
            "-D publish message-expiry-interval 3600 -D publish user-property origin direct", cmd]


# --- paho-mqtt -------------------------------------------------------------------------

def paho_session(v):
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode
    from paho.mqtt.subscribeoptions import SubscribeOptions

    proto = {"v31": mqtt.MQTTv31, "v311": mqtt.MQTTv311, "v5": mqtt.MQTTv5}[v]
    v5 = v == "v5"
    log = []
    ev = {k: threading.Event() for k in ("conn", "sub", "unsub", "msg1", "msg2")}
    kw = {} if v5 else {"clean_session": True}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="petrel-paho", protocol=proto, **kw)
    c.on_connect = lambda *a: ev["conn"].set()
    c.on_subscribe = lambda *a: ev["sub"].set()
    c.on_unsubscribe = lambda *a: ev["unsub"].set()

    def on_message(_c, _u, msg):
        ev["msg%d" % msg.qos].set()

    c.on_message = on_message
    c.username_pw_set("petrel-user", "secret")
    wp = None
    if v5:
        wp = Properties(PacketTypes.WILLMESSAGE)
        wp.PayloadFormatIndicator = 1
        wp.MessageExpiryInterval = 300
        wp.ContentType = "text/plain"
        wp.ResponseTopic = "petrel/will/reply"
        wp.CorrelationData = b"\x00\x01\xfe\xff"
        wp.WillDelayInterval = 10
        wp.UserProperty = [("k", "v")]
    c.will_set("petrel/will", b"paho gone", qos=2, retain=True, properties=wp)
    log.append("Client(CallbackAPIVersion.VERSION2, client_id='petrel-paho', protocol=%s)" % proto)
    log.append("username_pw_set('petrel-user', 'secret'); will_set('petrel/will', b'paho gone', qos=2, "
               "retain=True%s)" % (", properties=<PFI 1, MEI 300, CT text/plain, RT petrel/will/reply, "
                                    "CD 0001feff, WDI 10, UP k=v>" if v5 else ""))
    if v5:
        cp = Properties(PacketTypes.CONNECT)
        cp.SessionExpiryInterval = 0
        cp.ReceiveMaximum = 100
        cp.TopicAliasMaximum = 0
        cp.UserProperty = [("lib", "paho"), ("lib", "python")]
        c.connect(HOST, RELAY_PORT, keepalive=2, clean_start=True, properties=cp)
        log.append("connect(keepalive=2, clean_start=True, properties=<SEI 0, RM 100, TAM 0, UP lib=paho, lib=python>)")
    else:
        c.connect(HOST, RELAY_PORT, keepalive=2)
        log.append("connect(keepalive=2)")
    c.loop_start()
    assert ev["conn"].wait(5)

    if v5:
        sp = Properties(PacketTypes.SUBSCRIBE)
        sp.SubscriptionIdentifier = 42
        sp.UserProperty = [("s", "1")]
        topics = [
            ("petrel/paho/in1", SubscribeOptions(qos=1, noLocal=False, retainAsPublished=True,
                                                 retainHandling=SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE)),
            ("petrel/paho/in2", SubscribeOptions(qos=2, noLocal=True, retainAsPublished=False,
                                                 retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)),
            ("petrel/paho/+/x", SubscribeOptions(qos=0, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)),
        ]
        c.subscribe(topics, properties=sp)
        log.append("subscribe([('petrel/paho/in1', qos1 RAP rh0), ('petrel/paho/in2', qos2 NL rh1), "
                   "('petrel/paho/+/x', qos0 rh2)], properties=<SubId 42, UP s=1>)")
    else:
        c.subscribe([("petrel/paho/in1", 1), ("petrel/paho/in2", 2), ("petrel/paho/+/x", 0)])
        log.append("subscribe([('petrel/paho/in1', 1), ('petrel/paho/in2', 2), ('petrel/paho/+/x', 0)])")
    assert ev["sub"].wait(5)

    pp = None
    if v5:
        pp = Properties(PacketTypes.PUBLISH)
        pp.PayloadFormatIndicator = 0
        pp.MessageExpiryInterval = 60
        pp.ContentType = "application/octet-stream"
        pp.ResponseTopic = "petrel/paho/reply"
        pp.CorrelationData = b"corr"
        pp.TopicAlias = 3
        pp.UserProperty = [("a", "1"), ("b", "2")]
    for qos in (0, 1, 2):
        c.publish("petrel/paho/out", b"paho qos%d" % qos, qos=qos, properties=pp).wait_for_publish(5)
    log.append("publish('petrel/paho/out', b'paho qos{0,1,2}', qos={0,1,2}%s).wait_for_publish()"
               % (", properties=<PFI 0, MEI 60, CT application/octet-stream, RT petrel/paho/reply, "
                  "CD corr, TA 3, UP a=1, b=2>" if v5 else ""))
    if v5:
        ap = Properties(PacketTypes.PUBLISH)
        ap.TopicAlias = 3
        c.publish("", b"via alias", qos=1, properties=ap).wait_for_publish(5)
        log.append("publish('', b'via alias', qos=1, properties=<TA 3>)  # topic from alias 3")

    # Messages from the broker to paho, published directly (not captured) by mosquitto_pub.
    direct_pub(["-t", "petrel/paho/in1", "-m", "to paho q1", "-q", "1"])
    assert ev["msg1"].wait(5)
    direct_pub(["-t", "petrel/paho/in2", "-m", "to paho q2", "-q", "2"])
    assert ev["msg2"].wait(5)
    log.append("(not captured) mosquitto_pub -t petrel/paho/in1 -m 'to paho q1' -q 1; "
               "mosquitto_pub -t petrel/paho/in2 -m 'to paho q2' -q 2")
    time.sleep(2.8)  # keepalive 2 s: paho sends PINGREQ
    log.append("sleep 2.8 s (keepalive 2: PINGREQ/PINGRESP)")

    if v5:
        up = Properties(PacketTypes.UNSUBSCRIBE)
        up.UserProperty = [("u", "x")]
        c.unsubscribe(["petrel/paho/in1", "petrel/paho/in2", "petrel/paho/nope"], properties=up)
        log.append("unsubscribe(['petrel/paho/in1', 'petrel/paho/in2', 'petrel/paho/nope'], properties=<UP u=x>)")
    else:
        c.unsubscribe(["petrel/paho/in1", "petrel/paho/in2", "petrel/paho/nope"])
        log.append("unsubscribe(['petrel/paho/in1', 'petrel/paho/in2', 'petrel/paho/nope'])")
    assert ev["unsub"].wait(5)
    time.sleep(0.2)
    if v5:
        dp = Properties(PacketTypes.DISCONNECT)
        dp.SessionExpiryInterval = 0
        dp.ReasonString = "done"
        dp.UserProperty = [("bye", "now")]
        c.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"), properties=dp)
        log.append("disconnect(reasoncode=0x04 Disconnect with will message, properties=<SEI 0, RS done, UP bye=now>)")
    else:
        c.disconnect()
        log.append("disconnect()")
    c.loop_stop()
    direct_pub(["-t", "petrel/will", "-r", "-n"])  # clear the retained will (not captured)
    return log


for _v in VERSIONS:
    scenario("paho_%s_session" % _v, VERSIONS[_v][1], "paho")(lambda v=_v: paho_session(v))


@scenario("paho_v5_assigned_id", 5, "paho")
def _assigned():
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    c.on_connect = lambda *a: done.set()
    cp = Properties(PacketTypes.CONNECT)
    cp.RequestResponseInformation = 1
    c.connect(HOST, RELAY_PORT, keepalive=0, properties=cp)
    c.loop_start()
    assert done.wait(5)
    c.disconnect()
    c.loop_stop()
    return ["Client(client_id='', protocol=MQTTv5); connect(keepalive=0, properties=<RRI 1>); disconnect()"
            "  # the broker assigns a client identifier"]


@scenario("paho_v5_bad_auth_method", 5, "paho")
def _bad_auth():
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="petrel-auth", protocol=mqtt.MQTTv5)
    c.on_connect = lambda *a: done.set()
    c.reconnect_delay_set(60, 60)
    cp = Properties(PacketTypes.CONNECT)
    cp.AuthenticationMethod = "SCRAM-SHA-1"
    cp.AuthenticationData = b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
    c.connect(HOST, RELAY_PORT, keepalive=60, properties=cp)
    c.loop_start()
    assert done.wait(5)
    time.sleep(0.3)
    c.loop_stop()
    c.disconnect()
    return ["connect(properties=<AM SCRAM-SHA-1, AD 'n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL'>)"
            "  # broker without that method: CONNACK 0x8C"]


# --- AUTH: a raw socket, packets hand-built from the MQTT 5 specification ---------------

def _vbi(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(b):
    b = b.encode() if isinstance(b, str) else b
    return len(b).to_bytes(2, "big") + b


def _pkt(first, body):
    return bytes([first]) + _vbi(len(body)) + body


def _props(*items):
    body = b"".join(items)
    return _vbi(len(body)) + body


def _exchange(port, packets):
    """Sends each packet, waiting after each for the broker's answers (or close)."""
    s = socket.create_connection((HOST, port))
    s.settimeout(0.5)
    for p in packets:
        s.sendall(p)
        try:
            while s.recv(4096):
                pass
            break  # closed by the broker
        except socket.timeout:
            pass
    s.close()


def _recv_packet(sock):
    buf = b""
    while True:
        try:
            return split_packets(buf)[0][1]
        except (ValueError, IndexError):
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("closed")
            buf += chunk


@scenario("raw_v5_auth", 5, "raw socket + mosquitto auth plugin", relay="auth")
def _auth():
    method = b"\x15" + _s("petrel-challenge")  # 0x15 Authentication Method (3.1.2.11.9)
    connect = _pkt(0x10, _s("MQTT") + b"\x05\x02" + (60).to_bytes(2, "big")
                   + _props(method, b"\x16" + _s("hello")) + _s("petrel-auth"))
    auth_continue = _pkt(0xF0, b"\x18" + _props(method, b"\x16" + _s("response")))
    reauth = _pkt(0xF0, b"\x19" + _props(method, b"\x16" + _s("again")))
    s = socket.create_connection((HOST, AUTH_RELAY_PORT))
    s.sendall(connect)
    assert _recv_packet(s)[0] == 0xF0  # AUTH 0x18 "challenge"
    s.sendall(auth_continue)
    assert _recv_packet(s)[0] == 0x20  # CONNACK
    s.sendall(reauth)
    assert _recv_packet(s)[0] == 0xF0  # AUTH 0x18 "challenge"
    s.sendall(auth_continue)
    assert _recv_packet(s)[0] == 0xF0  # AUTH 0x00
    s.sendall(b"\xe0\x00")
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    s.close()
    return ["raw socket: CONNECT v5 <AM petrel-challenge, AD hello> -> AUTH 0x18 <AM, AD response> -> "
            "AUTH 0x19 <AM, AD again> -> AUTH 0x18 <AM, AD response> -> DISCONNECT; the client packets "
            "are hand-built in capture.py from MQTT 5.0 3.1 / 3.15, the broker's are mosquitto's",
            "broker plugin: tests/data/auth_plugin.c"]


@scenario("raw_v311_auth_rejected", 4, "raw socket")
def _auth311():
    connect = _pkt(0x10, _s("MQTT") + b"\x04\x02" + (60).to_bytes(2, "big") + _s("petrel-311"))
    s = socket.create_connection((HOST, RELAY_PORT))
    s.sendall(connect)
    assert _recv_packet(s)[0] == 0x20
    s.sendall(b"\xf0\x00")  # packet type 15 is reserved in 3.1.1
    while s.recv(4096):  # the broker closes the connection without an answer
        pass
    s.close()
    return ["raw socket: CONNECT 3.1.1 then F0 00 (AUTH does not exist in 3.1.1); "
            "mosquitto closes the connection without answering"]


@scenario("raw_connack_refused", 4, "raw socket")
def _refused():
    name311 = _s("MQTT") + b"\x04"
    # 3.1.1, Clean Session 0 with an empty client identifier: [MQTT-3.1.3-8] CONNACK 0x02.
    _exchange(RELAY_PORT, [_pkt(0x10, name311 + b"\x00\x00\x3c" + _s(""))])
    # Protocol level 6 (unknown): [MQTT-3.1.2-2] CONNACK 0x01 and close.
    _exchange(RELAY_PORT, [_pkt(0x10, _s("MQTT") + b"\x06\x02\x00\x3c" + _s("petrel-l6"))])
    # MQTT 3.1 (MQIsdp, level 3) with an empty client identifier (3.1 requires 1..23 chars).
    _exchange(RELAY_PORT, [_pkt(0x10, _s("MQIsdp") + b"\x03\x02\x00\x3c" + _s(""))])
    return ["raw socket, three connections, client packets hand-built in capture.py: "
            "(0) 3.1.1 CONNECT, clean session 0, empty client id; (1) CONNECT with protocol level 6; "
            "(2) 3.1 CONNECT with an empty client id"]


@scenario("raw_v5_auth_protocol_error", 5, "raw socket + mosquitto auth plugin", relay="auth")
def _auth_error():
    method = b"\x15" + _s("petrel-challenge")
    connect = _pkt(0x10, _s("MQTT") + b"\x05\x02" + (60).to_bytes(2, "big")
                   + _props(method) + _s("petrel-auth2"))
    auth_continue = _pkt(0xF0, b"\x18" + _props(method, b"\x16" + _s("response")))
    # The second 0x18 arrives while no authentication is in progress: the broker answers
    # DISCONNECT 0x82 Protocol Error (MQTT 5.0 4.12).
    _exchange(AUTH_RELAY_PORT, [connect, auth_continue, auth_continue])
    return ["raw socket: CONNECT v5 <AM petrel-challenge> -> AUTH 0x18 <AM, AD response> -> "
            "(after CONNACK) AUTH 0x18 again: mosquitto sends DISCONNECT 0x82. Client packets hand-built."]


def main():
    wanted = sys.argv[1:] or list(SCENARIOS)
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        sys.exit("unknown scenarios: %s\nknown: %s" % (unknown, " ".join(SCENARIOS)))
    versions = tool_versions()
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        # mosquitto started as root drops to the "mosquitto" user, which must read these.
        os.chmod(work, 0o755)
        plugin = os.path.join(work, "auth_plugin.so")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", plugin, os.path.join(HERE, "auth_plugin.c")], check=True)
        brokers = {
            "plain": Broker(BROKER_PORT, work),
            "auth": Broker(AUTH_BROKER_PORT, work, "plugin %s\n" % plugin),
        }
        relays = {"plain": Relay(RELAY_PORT, BROKER_PORT), "auth": Relay(AUTH_RELAY_PORT, AUTH_BROKER_PORT)}
        try:
            for name in wanted:
                level, tool, which, fn = SCENARIOS[name]
                relay = relays[which]
                relay.begin()
                cmds = fn()
                conns = relay.wait_closed()
                path = os.path.join(OUT, name + ".txt")
                with open(path, "w") as f:
                    f.write("# scenario: %s\n" % name)
                    f.write("# protocol level: %d\n" % level)
                    f.write("# client: %s\n" % {
                        "mosquitto_pub": versions["mosquitto_pub"],
                        "mosquitto_sub": versions["mosquitto_sub"],
                        "paho": versions["paho"],
                    }.get(tool, tool))
                    f.write("# broker: %s, config: %s\n" % (
                        versions["mosquitto"], brokers[which].conf_text.strip().replace("\n", "; ")
                        .replace(work, "$TMP")))
                    f.write("# captured by mqtt-proto/tests/data/capture.py (TCP relay on %s:%d -> %d)\n"
                            % (HOST, relay.sock.getsockname()[1], relay.upstream_port))
                    for c in cmds:
                        f.write("# command: %s\n" % c)
                    f.write("# format: <connection> <c2s|s2c> <type> <hex>\n")
                    for conn in conns:
                        for d, pkt in conn.packets():
                            f.write("%d %s %s %s\n" % (conn.idx, d, NAMES.get(pkt[0] >> 4, "?"), pkt.hex()))
                print("wrote %s (%d connections)" % (os.path.relpath(path), len(conns)))
        finally:
            for b in brokers.values():
                b.stop()


if __name__ == "__main__":
    main()
