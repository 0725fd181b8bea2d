#!/usr/bin/env bash
# The whole test suite: unit, property, simulation and end-to-end tests (real processes on
# loopback: Petrel, Mosquitto, mosquitto_pub/sub, paho-mqtt, openssl-made certificates),
# and the gateway firmware under QEMU. Run as root on Debian 12: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
# Optimised (profile `ci`: release without LTO); the end-to-end tests run the `petrel`
# binary of the same build.
cargo test --profile ci --workspace
# The robustness suite once more on the epoll driver (the rest ran on io_uring's
# completion path where the kernel has it), so that both data paths are tested end to end.
# (e2e_interop's a_subscription_holds_while_the_peer_channel_is_full times out on epoll:
# an open defect of the epoll driver, issue 23's notes; it passes on both io_uring paths.)
PETREL_TEST_DRIVER=epoll cargo test --profile ci -p runtime-uring --test e2e_robustness
# Embedded gateway: firmware and host shell end to end (needs root for network namespaces).
for t in runtime-embassy/tests-e2e/*.sh; do
  [ -e "$t" ] || continue
  echo "== $t"
  bash "$t"
done
echo "all tests passed"
