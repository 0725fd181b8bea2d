#!/usr/bin/env bash
# The layout rules ARCHITECTURE.md states, checked: no source file over 900 lines, the proxy
# depends only on the shared network layer and logging, and the shells neither parse MQTT
# framing nor write MQTT bytes themselves (that is mqtt-proto's and broker-core's work).
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
while read -r n f; do
  if [ "$f" != total ] && [ "$n" -gt 900 ]; then echo "$f: $n lines (over 900)"; fail=1; fi
done < <(find mqtt-proto/src broker-core/src runtime-uring/src runtime-embassy/src benches/src \
  -name '*.rs' -print0 | xargs -0 wc -l)
if grep -rnoE 'crate::[a-z_]+' runtime-uring/src/proxy | grep -vE 'crate::(net|logging|proxy)\b'; then
  echo "the proxy reaches beyond net, logging and itself"; fail=1
fi
shells=(runtime-uring/src runtime-embassy/src)
if grep -rnE 'FixedHeader::parse|Packet::parse|PacketType::|ConnAck \{|split\(.\/.\)|\[0x[0-9a-fA-F]{2}, *0x|b"\\x[1-9a-fA-F]0' \
  "${shells[@]}"; then
  echo "MQTT framing, packets or topic levels handled in a shell"; fail=1
fi
[ "$fail" = 0 ] && echo "structure: ok"
exit "$fail"
