#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Benchmark: map a fragmented 12 MiB SYSTEM (>= 1,500 runs over an $ATTRIBUTE_LIST, 512-byte
# clusters) with diskimg::ntfs and with the ntfs crate (attribute-list workaround).
# Usage: benches/ntfs-map.sh [IMAGE]   (builds the image with fixtures/make-image.sh if missing)
# Needs: what fixtures/make-image.sh needs (mkntfs, ntfs-3g FUSE, python3), cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-ntfs}
img=${1:-}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ -z "$img" ]; then
  img="$tmp/frag.img"
  python3 - "$tmp/SYSTEM" <<'PY'
import sys
out = bytearray()
i = 0
while len(out) < 12 << 20:
    s = ("SYSTEM sector %08d\n" % i).encode()
    out += s + b"." * (512 - len(s))
    i += 1
open(sys.argv[1], "wb").write(out)
PY
  fixtures/make-image.sh --table none --size 48 --cluster-size 512 \
    --put "$tmp/SYSTEM:Windows/System32/config/SYSTEM" --fragment "$img" 2>/dev/null
fi
echo "image: $img ($(stat -c %s "$img") bytes)"
IMGPREP_NTFS_BENCH_IMAGE="$img" cargo test --release -q -p diskimg --test ntfs \
  bench_map_fragmented_system -- --ignored --nocapture 2>&1 | grep BENCH
