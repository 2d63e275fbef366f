#!/usr/bin/env bash
# Runs every fuzz target (or those named) under libFuzzer for RUNS inputs
# each (default a million), growing fuzz/corpus/<target>/, and prints the
# inputs run, the time and the corpus size. A crash leaves its input in
# fuzz/artifacts/<target>/: fix it, then copy it to
# fuzz/regressions/<target>/, which the e2e suite replays on every run.
#
#   fuzz/run.sh [target ...]          RUNS=100000 fuzz/run.sh sql
#
# Needs cargo-fuzz (installed here if missing) and libFuzzer's nightly
# flags on the stable toolchain (RUSTC_BOOTSTRAP=1). No sanitizer: Sluice
# has no unsafe code of its own, and ASan would slow DataFusion tenfold.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000000}
JOBS=${JOBS:-1}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
[ -d fuzz/corpus ] || python3 fuzz/seed.py
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(records pgwire storage http sql)
for target in "${targets[@]}"; do
  started=$(date +%s)
  cargo fuzz run --sanitizer none --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
    -runs="$RUNS" -max_len=4096 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    2>&1 | tee "/tmp/sluice-fuzz-$target.log" | grep -E "^(Done|stat::number_of_executed_units|==[0-9]+== ERROR|thread .* panicked)" || true
  status=${PIPESTATUS[0]}
  echo "$target: exit $status, $(( $(date +%s) - started )) s, corpus $(ls "fuzz/corpus/$target" | wc -l) inputs (log /tmp/sluice-fuzz-$target.log)"
done
