#!/usr/bin/env bash
# Cluster throughput (issue 21), run by hand (RESULTS.md): one etcd, one nats-server and
# three Petrel nodes (one shard each) on this machine, against a node that is in no
# cluster, in the same run. petrel-load's pairs and fan-out at QoS 0 and 1:
#   single   - a Petrel node without [cluster] (publishers and subscribers on it)
#   local    - node n1 of the cluster, publishers and subscribers on n1 (the cost of
#              being a node: routes, the link, nothing crosses)
#   cross    - publishers on n1, subscribers on n2 (every message crosses NATS once)
# Usage: bash scripts/cluster-bench.sh [seconds]   (after cargo build --release)
#   ONLY=single|local|cross, SCENARIOS=pairs,fanout and QOS=0,1 narrow it down;
#   SCENARIOS=durable QOS=1: persistent subscribers (their records in the node's store, and
#   in a cluster in JetStream too, before each PUBACK).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
bin=target/release/petrel
load=target/release/petrel-load
[ -x "$bin" ] && [ -x "$load" ] || { echo "cargo build --release first"; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
etcd_port=$(port); peer_port=$(port); nats_port=$(port)
etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" --log-level error >"$dir/etcd.log" 2>&1 &
pids+=($!)
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$dir/js" >"$dir/nats.log" 2>&1 &
pids+=($!)
sleep 1
declare -A node_port node_pid
for n in n0 n1 n2 n3; do
  p=$(port)
  node_port[$n]=$p
  {
    echo "threads = 1"
    echo "allow_anonymous = true"
    echo "sys_interval = 0"
    # Every cluster node has a store (petrel-<node_id>.db); the single node gets one too,
    # so that the durable scenario compares the store alone with store + JetStream.
    echo "persistence = true"
    echo "persistence_location = \"$dir\""
    echo "[[listener]]"
    echo "bind = \"127.0.0.1:$p\""
    if [ "$n" != n0 ]; then
      echo "[cluster]"
      echo "node_id = \"$n\""
      echo "etcd = [\"http://127.0.0.1:$etcd_port\"]"
      echo "nats = [\"nats://127.0.0.1:$nats_port\"]"
    fi
  } >"$dir/$n.toml"
  "$bin" broker -c "$dir/$n.toml" --log-level warn >"$dir/$n.log" 2>&1 &
  node_pid[$n]=$!
  pids+=($!)
done
sleep 2
for n in n0 n1 n2 n3; do
  kill -0 "${node_pid[$n]}" 2>/dev/null || { echo "node $n did not start:"; cat "$dir/$n.log"; exit 1; }
done
run() {
  local name=$1; shift
  echo "== $name"
  "$load" --scenarios "${SCENARIOS:-pairs,fanout}" --qos "${QOS:-0,1}" --seconds "$secs" --brokers petrel "$@" 2>&1 \
    | grep -E "^(pairs|fanout|durable) qos" | sed "s/^/$name: /"
}
[ -n "${ONLY:-}" ] && [ "$ONLY" != single ] || run single --target "127.0.0.1:${node_port[n0]}" --target-pid "${node_pid[n0]}" --client-prefix s
[ -n "${ONLY:-}" ] && [ "$ONLY" != local ] || run local --target "127.0.0.1:${node_port[n1]}" --target-pid "${node_pid[n1]}" --client-prefix l
[ -n "${ONLY:-}" ] && [ "$ONLY" != cross ] || run cross --target "127.0.0.1:${node_port[n1]}" --sub-target "127.0.0.1:${node_port[n2]}" \
  --target-pid "${node_pid[n1]}" --client-prefix c
