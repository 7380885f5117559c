#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Streaming-copy benchmark: diskimg's copier against dd bs=1M and ntfsclone -o on a 2 GiB NTFS
# image with ~15 % in use, plus peak RSS on a 32 GiB sparse image.
#
#   RUNS=3 benches/stream-copy.sh            # needs mkntfs, ntfscp, ntfscat, ntfsclone
#   BENCH_DIR=/var/tmp/b RUNS=1 benches/stream-copy.sh
#
# Drops the page cache before each timed command when run as root (cold); otherwise warm.
# Deletes its big files at the end. Takes about 1-2 minutes per run.
set -euo pipefail

RUNS=${RUNS:-3}
BENCH_DIR=${BENCH_DIR:-/tmp/imgprep-stream-copy-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release/examples/stream_copy

for t in mkntfs ntfscp ntfscat ntfsclone /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done

(cd "$ROOT" && cargo build --release -q -p diskimg --example stream_copy)

mkdir -p "$BENCH_DIR"
trap 'rm -rf "$BENCH_DIR"' EXIT
cd "$BENCH_DIR"

if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
  CACHE=cold
  drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
else
  CACHE=warm
  drop() { sync; }
fi

echo "== building the 2 GiB NTFS image"
truncate -s 2G ntfs.img
# Stale data in what will be free space (a used disk has it): 200 MiB at 1.5 GiB.
head -c 200M /dev/urandom | dd of=ntfs.img bs=1M seek=1536 conv=notrunc status=none
mkntfs -F -Q -q -c 4096 ntfs.img 2>/dev/null
for i in 1 2 3; do
  head -c 100M /dev/urandom > f$i.bin
  ntfscp -q ntfs.img f$i.bin big$i.bin
  rm f$i.bin
done
head -c 8K /dev/urandom > small.bin
for i in $(seq 1 50); do ntfscp -q ntfs.img small.bin small$i.bin; done
rm small.bin
ntfscat ntfs.img '$Bitmap' > bitmap.bin
SIZE=$(stat -c %s ntfs.img)
echo "image: $SIZE bytes, allocated $(du -m ntfs.img | cut -f1) MiB; cache: $CACHE"

# run NAME CMD... : times CMD (bash -c) with /usr/bin/time, prints seconds and max RSS.
run() {
  local name=$1; shift
  rm -f out.img
  drop
  /usr/bin/time -f "%e %M" -o time.txt bash -c "$*" 2>report.txt
  read -r secs rss < time.txt
  local alloc=-
  [ -f out.img ] && alloc=$(( $(stat -c %b out.img) * 512 / 1048576 ))
  printf '%-34s %7s s  %7s KiB RSS  %6s MiB allocated\n' "$name" "$secs" "$rss" "$alloc"
  echo "$name $secs $rss $alloc" >> results.txt
}

for r in $(seq 1 "$RUNS"); do
  echo "== run $r/$RUNS"
  run "copier -> sparse file (bitmap)" \
    "$BIN ntfs.img out.img --ntfs-bitmap bitmap.bin --cluster-size 4096"
  run "copier -> sparse file (no bitmap)" "$BIN ntfs.img out.img"
  run "copier -> stdout | cat (bitmap)" \
    "$BIN ntfs.img - --ntfs-bitmap bitmap.bin --cluster-size 4096 | cat > /dev/null"
  run "copier -> stdout | cat (no bitmap)" "$BIN ntfs.img - | cat > /dev/null"
  run "ntfsclone -o (sparse file)" "ntfsclone -q -O out.img ntfs.img"
  run "ntfsclone -o - | cat" "ntfsclone -q -o - ntfs.img | cat > /dev/null"
  run "dd bs=1M -> file" "dd if=ntfs.img of=out.img bs=1M status=none"
  run "dd bs=1M | cat" "dd if=ntfs.img bs=1M status=none | cat > /dev/null"
done

echo "== correctness: copier (bitmap) vs ntfsclone -o"
$BIN ntfs.img ours.img --ntfs-bitmap bitmap.bin --cluster-size 4096 2>/dev/null
ntfsclone -q -O theirs.img ntfs.img 2>/dev/null
if cmp -s ours.img theirs.img; then echo "byte-identical to ntfsclone -o"; else
  echo "DIFFERS from ntfsclone -o: $(cmp ours.img theirs.img | head -1)"; fi
$BIN ntfs.img plain.img 2>/dev/null
cmp -s plain.img ntfs.img && echo "copier (no bitmap) byte-identical to the source"
rm -f ours.img theirs.img plain.img

echo "== peak RSS, 32 GiB sparse image (256 MiB of data in 8 places)"
rm -f ntfs.img
truncate -s 32G big.img
for i in 0 1 2 3 4 5 6 7; do
  head -c 32M /dev/urandom | dd of=big.img bs=1M seek=$((i * 4096 + 7)) conv=notrunc status=none
done
run "32G copier -> sparse file" "$BIN big.img out.img"
run "32G copier -> stdout | cat" "$BIN big.img - | cat > /dev/null"
rm -f big.img out.img

echo "== summary (median of $RUNS runs; cache $CACHE)"
awk '{ name=$0; sub(/ [^ ]+ [^ ]+ [^ ]+$/, "", name); n[name]++; t[name, n[name]]=$(NF-2);
       if ($(NF-1)+0 > rss[name]+0) rss[name]=$(NF-1); al[name]=$NF }
     END { for (k in n) { m=n[k]; # sort times
             for (i=1;i<=m;i++) for (j=i+1;j<=m;j++) if (t[k,j]+0 < t[k,i]+0) { x=t[k,i]; t[k,i]=t[k,j]; t[k,j]=x }
             printf "%-34s median %6s s (min %s, max %s)  max RSS %s KiB  alloc %s MiB\n", k, t[k, int((m+1)/2)], t[k,1], t[k,m], rss[k], al[k] } }' \
  results.txt | sort
