#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Hive-editing benchmarks (release build), side by side in one run:
#  1. import a generated .reg (10,000 keys + 100 parent keys, 30,000 values) into an empty hive:
#     `hivetool import --create` vs `hivexregedit --merge` (best of $RUNS wall-clock runs each);
#     both results are checked and their hivexregedit exports compared;
#  2. one set-value on a 12 MB SYSTEM hive, including commit: `hivetool set --timings`
#     (open + edit + commit, i.e. everything past reading the file; and the whole process).
# Usage: benches/hive-edit.sh [KEYS]   (env: IMGPREP_HIVE_CORPUS for part 2, RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-10000}
RUNS=${RUNS:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p hivetool
HT=$CARGO_TARGET_DIR/release/hivetool
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

now() { date +%s.%N; }
best() { sort -g | head -1; }

python3 benches/gen-reg.py "$KEYS" > "$T/gen.reg"
echo "generated: $(grep -c '^\[' "$T/gen.reg") keys, $(grep -c '^"' "$T/gen.reg") values, $(stat -c %s "$T/gen.reg") bytes"

# run LABEL CMD...: best wall-clock and best CPU (user+sys) time over $RUNS runs.
# The setup of each run is in PRE (a shell snippet run before every timed command).
run() {
  local label=$1; shift
  local walls=() cpus=()
  for i in $(seq "$RUNS"); do
    eval "$PRE"
    /usr/bin/time -f "%e %U %S" -o "$T/time" "$@" >/dev/null
    read -r w u s < "$T/time"
    walls+=("$w"); cpus+=("$(echo "$u + $s" | bc)")
  done
  W=$(printf '%s\n' "${walls[@]}" | best); C=$(printf '%s\n' "${cpus[@]}" | best)
  printf '%-22s wall %6.3f s   cpu %6.3f s   (best of %d)\n' "$label" "$W" "$C" "$RUNS"
}

PRE='rm -f "$T/ours.hive"'
run "hivetool import" "$HT" import --create "$T/ours.hive" "$T/gen.reg" --prefix 'HKEY_LOCAL_MACHINE\BENCH'
OW=$W; OC=$C
echo "  hive $(stat -c %s "$T/ours.hive") bytes"

if command -v hivexregedit >/dev/null; then
  PRE='rm -f "$T/hivex.hive"; "$HT" new "$T/hivex.hive" >/dev/null'
  run "hivexregedit --merge" hivexregedit --merge "$T/hivex.hive" "$T/gen.reg" --prefix 'HKEY_LOCAL_MACHINE\BENCH'
  echo "  hive $(stat -c %s "$T/hivex.hive") bytes"
  echo "speed-up: wall $(echo "scale=1; $W / $OW" | bc)x, cpu $(echo "scale=1; $C / $OC" | bc)x"
  "$HT" check "$T/hivex.hive" | tail -1
  hivexregedit --export "$T/ours.hive" '\' > "$T/ours.exp"
  hivexregedit --export "$T/hivex.hive" '\' > "$T/hivex.exp"
  if cmp -s "$T/ours.exp" "$T/hivex.exp"; then echo "exports of both hives are identical"; else echo "EXPORTS DIFFER"; fi
fi
"$HT" check "$T/ours.hive" | tail -1

if [ -n "${IMGPREP_HIVE_CORPUS:-}" ]; then
  SRC=$IMGPREP_HIVE_CORPUS/regipy-SYSTEM_B.recovered-by-yarp.hive
  cp "$SRC" "$T/big.hive"; chmod u+w "$T/big.hive"
  echo "single set-value on $(basename "$SRC") ($(stat -c %s "$SRC") bytes), fixed size, $RUNS+ runs:"
  for i in $(seq $((RUNS + 2))); do
    s=$(now)
    "$HT" set "$T/big.hive" 'ControlSet001\Services\Tcpip' Start --type dword --data "$i" \
      --fixed-size --timings 2>&1 >/dev/null | sed 's/^/  /'
    e=$(now)
    echo "  whole process (read + edit + crash-safe save of 12 MB with fsync): $(echo "$e - $s" | bc) s"
  done
  "$HT" check "$T/big.hive" | tail -1
else
  echo "skipped: single set-value on a 12 MB hive (set IMGPREP_HIVE_CORPUS)"
fi
