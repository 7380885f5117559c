#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Hive reading benchmark: a full walk decoding every value (hivetool's examples/walk.rs) vs the
# same walk with nt-hive (examples/nt_hive_walk.rs) vs `hivexml FILE > /dev/null`, side by side
# in one hyperfine run per hive; then peak memory (max RSS) of each, with the process baseline
# (the walk on an 8 KiB hive) measured separately.
#
# Usage: benches/hive-read.sh [CORPUS_DIR]   (default: $IMGPREP_HIVE_CORPUS or ../shared/hives)
# Needs: hyperfine, hivexml (libhivex-bin), GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-${IMGPREP_HIVE_CORPUS:-../shared/hives}}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p hivetool --example walk --example nt_hive_walk
bin=$CARGO_TARGET_DIR/release/examples
hives=(regipy-SYSTEM_B.recovered-by-yarp.hive regipy-SYSTEM.hive)

for h in "${hives[@]}"; do
    f=$corpus/$h
    echo "== $h ($(stat -c %s "$f") bytes)"
    hyperfine -N --warmup 3 --runs "${RUNS:-20}" --output=null \
        -n hivetool "$bin/walk $f" \
        -n nt-hive "$bin/nt_hive_walk $f" \
        -n hivexml "hivexml $f"
done

echo "== CPU time of 20 walks in one process (no process start, file read once)"
for h in "${hives[@]}"; do
    f=$corpus/$h
    for t in walk nt_hive_walk; do
        /usr/bin/time -f "$h $t: %U s user, %S s sys for 20 walks" "$bin/$t" "$f" 20 >/dev/null
    done
done

echo "== peak memory (max RSS)"
/usr/bin/time -f "baseline (walk of hivex-minimal.hive, 8 KiB): %M KiB" \
    "$bin/walk" "$corpus/hivex-minimal.hive" >/dev/null
for h in "${hives[@]}"; do
    f=$corpus/$h
    echo "$h: file $(( $(stat -c %s "$f") / 1024 )) KiB"
    /usr/bin/time -f "  hivetool walk: %M KiB" "$bin/walk" "$f" >/dev/null
    /usr/bin/time -f "  nt-hive walk:  %M KiB" "$bin/nt_hive_walk" "$f" >/dev/null
    /usr/bin/time -f "  hivexml:       %M KiB" hivexml "$f" >/dev/null
done
