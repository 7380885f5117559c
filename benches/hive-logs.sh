#!/usr/bin/env bash
# Times the transaction-log replay of regipy-SYSTEM_B (Windows 10 1709 SYSTEM, 24 HvLE entries,
# 2.6 MB of dirty pages) with hivetool, and with regipy's replay when regipy is importable.
#
#   benches/hive-logs.sh                 # corpus from $IMGPREP_HIVE_CORPUS or ../shared/hives
#   PYTHON=/path/to/venv/bin/python benches/hive-logs.sh   # a python with `pip install regipy`
#
# Prints: in-process replay time (mean of 20 runs, file reading excluded), end-to-end process
# time (read hive + logs, replay, write the result) via hyperfine if installed, regipy's
# end-to-end time and how its output differs from ours.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${IMGPREP_HIVE_CORPUS:-../shared/hives}
hive="$corpus/regipy-SYSTEM_B.hive"
[ -f "$hive" ] || { echo "corpus hive $hive not found" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --quiet --release -p hivetool --example replay
bin="$CARGO_TARGET_DIR/release/examples/replay"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== hivetool: in-process replay (20 runs)"
"$bin" "$hive" "$out/ours.hive" --repeat 20

echo "== hivetool: end-to-end (read, replay, write)"
if command -v hyperfine >/dev/null; then
  hyperfine --warmup 2 --runs 10 -N "$bin $hive $out/ours.hive"
else
  /usr/bin/time -f '%e s, max RSS %M KiB' "$bin" "$hive" "$out/ours.hive" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if "$PYTHON" -c 'import regipy.recovery' 2>/dev/null; then
  echo "== regipy $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("regipy"))'): apply_transaction_logs (LOG1 then LOG2), 3 runs"
  "$PYTHON" - "$hive" "$out/regipy.hive" "$out/ours.hive" <<'PY'
import sys, time, shutil, logging
logging.disable(logging.CRITICAL)
from regipy.recovery import apply_transaction_logs
hive, dst, ours = sys.argv[1:4]
times = []
for _ in range(3):
    t = time.perf_counter()
    # regipy applies the "secondary" log first: pass LOG1 as secondary so the order is right
    apply_transaction_logs(hive, hive + ".LOG2", secondary_log_path=hive + ".LOG1",
                           restored_hive_path=dst)
    times.append(time.perf_counter() - t)
print(f"regipy: {min(times):.3f} s best, {sum(times)/len(times):.3f} s mean")
a = open(ours, "rb").read(); b = open(dst, "rb").read()
n = min(len(a), len(b))
d = [i for i in range(n) if a[i] != b[i]]
print(f"regipy output: {len(b)} bytes (ours {len(a)}), {len(d)} differing bytes"
      + (f", first at {d[0]:#x}, last at {d[-1]:#x}" if d else ""))
hb = [i for i in d if i >= 4096]
print(f"  of which in hive bins: {len(hb)}; 4 KiB pages: {len(set((i-4096)//4096 for i in hb))}")
PY
else
  echo "== regipy not importable with $PYTHON: skipped (pip install regipy)"
fi
