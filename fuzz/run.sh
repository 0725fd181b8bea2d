#!/bin/sh
# Runs one cargo-fuzz target on stable Rust (no sanitizer), starting from the committed
# seeds. New inputs go to fuzz/corpus/<target>/ (git-ignored); crashes to fuzz/artifacts/.
#
#   fuzz/run.sh decode            # 60 s
#   fuzz/run.sh roundtrip 600     # 10 min
#   RUSTC_BOOTSTRAP=1 SANITIZER=address fuzz/run.sh decode 60   # with AddressSanitizer
set -eu
target=${1:?usage: fuzz/run.sh decode|roundtrip [seconds]}
secs=${2:-60}
cd "$(dirname "$0")/.."
mkdir -p "fuzz/corpus/$target"
exec cargo fuzz run -s "${SANITIZER:-none}" "$target" "fuzz/corpus/$target" fuzz/corpus/seed -- \
    -max_total_time="$secs" -max_len=4096 -timeout=10 -print_final_stats=1
