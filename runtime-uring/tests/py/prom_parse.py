"""Parses Prometheus text (stdin) with the reference parser (pip prometheus-client) and
prints one JSON object: {"<name>{<sorted labels>}": value}. Exits non-zero on a parse
error, so a malformed exposition fails the test that feeds it."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
json.dump(out, sys.stdout)
