#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# strip-lwf end to end: imgprep against the unmounted peer pipeline on a 32 GiB sparse image.
#
#   benches/strip-lwf.sh            (RUNS=5 by default; RUNS=10 benches/strip-lwf.sh;
#                                    NO_HYPERFINE=1: a plain timing loop instead of hyperfine)
#
# Builds (under $BENCH_TMP, default /tmp; ~150 MB of real data, the rest is holes):
#   * a 32 GiB sparse MBR disk image, one NTFS partition from 1 MiB to the end;
#   * Windows/System32/config/SYSTEM = the real Windows 7 hive regipy-SYSTEM.hive (11.7 MB) from
#     $IMGPREP_HIVE_CORPUS (default ../shared/hives), written through ntfs-3g in 1-cluster
#     appends each followed by a 1-cluster filler file (fillers deleted afterwards); ntfs-3g
#     groups 3 appends per run, so the file has ~960 runs over an $ATTRIBUTE_LIST (done on a
#     64 MiB volume, then grown to 32 GiB with ntfsresize, see below).
# Then, side by side (hyperfine if present), each run on a fresh copy (cp --sparse=always, then
# sync FILE so that neither side pays for flushing the copy):
#   imgprep: imgprep strip-lwf IMG                               (release build)
#   peer:    losetup -o 1MiB IMG; ntfscat the hive out; hivexregedit --merge a .reg with the same
#            edits (generated from imgprep's plan: FilterList without B70D6460, Start=0,
#            BootFlags=1 for the NIC service, Start=0 for iScsiPrt); ntfscp it back; losetup -d
# and the bytes each side reads (rchar of /proc/PID/io, read before the process is reaped).
# Needs root (losetup), ntfs-3g, mkntfs, ntfsprogs, hivex (libhivex-bin), sfdisk, python3.
set -euo pipefail

RUNS=${RUNS:-5}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
corpus=${IMGPREP_HIVE_CORPUS:-$top/../shared/hives}
hive_src=$corpus/regipy-SYSTEM.hive
[ -r "$hive_src" ] || { echo "strip-lwf.sh: $hive_src missing (set IMGPREP_HIVE_CORPUS)" >&2; exit 2; }
for t in losetup mkntfs ntfs-3g ntfsresize ntfsfix ntfsinfo ntfscat ntfscp hivexregedit sfdisk python3 bc; do
  command -v "$t" >/dev/null || { echo "strip-lwf.sh: $t missing" >&2; exit 2; }
done

work=$(mktemp -d "${BENCH_TMP:-/tmp}/strip-lwf-bench.XXXXXX")
mnt=$work/mnt loop="" fuse_pid=""
cleanup() {
  if [ -n "$fuse_pid" ]; then umount "$mnt" 2>/dev/null || true; wait "$fuse_pid" 2>/dev/null || true; fi
  if [ -n "$loop" ]; then losetup -d "$loop" 2>/dev/null || true; fi
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "== build (release)" >&2
target=${CARGO_TARGET_DIR:-$top/target}
cargo build -q --release --manifest-path "$top/Cargo.toml" -p imgprep
bin=$target/release/imgprep

GiB=$((1024 * 1024 * 1024)) MiB=$((1024 * 1024))
size=$((32 * GiB)) off=$MiB
base=$work/base.img
echo "== 32 GiB sparse image with a fragmented 11.7 MB SYSTEM" >&2
truncate -s "$size" "$base"
echo "start=2048, size=$(((size - off) / 512)), type=7, bootable" |
  sfdisk -q --no-reread --no-tell-kernel "$base" >/dev/null
# The partition is built as its own file, first as a 64 MiB volume: ntfs-3g on a big volume
# (or on a loop device) puts new files far from the growing hive and extends the hive
# contiguously; on a small one the appends interleave with the fillers. The volume is then
# grown to the whole partition with ntfsresize (which schedules a check: ntfsfix -d clears it).
part=$work/win.part
truncate -s $((64 * MiB)) "$part"
mkntfs -F -Q -q -p 2048 -H 255 -S 63 -c 4096 -L Windows "$part" >/dev/null 2>&1
mkdir -p "$mnt"
ntfs-3g -o no_detach,big_writes "$part" "$mnt" 2>/dev/null &
fuse_pid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt"
python3 - "$hive_src" "$mnt" <<'EOF'
import os, sys
src, mnt = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
d = os.path.join(mnt, "Windows/System32/config")
os.makedirs(d, exist_ok=True)
fill = os.path.join(mnt, "fill")
os.makedirs(fill, exist_ok=True)
run, cluster = 4096, 4096
fd = os.open(os.path.join(d, "SYSTEM"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
fillers = []
for i, o in enumerate(range(0, len(data), run)):
    os.write(fd, data[o:o + run]); os.fsync(fd)
    p = os.path.join(fill, "f%05d" % i)
    g = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644); os.write(g, b"F" * cluster); os.fsync(g); os.close(g)
    fillers.append(p)
os.close(fd)
for p in fillers:
    os.unlink(p)
os.rmdir(fill)
EOF
sync
umount "$mnt"; wait "$fuse_pid" || true; fuse_pid=""
truncate -s $((size - off)) "$part"
ntfsresize -f -f -s $((size - off)) "$part" >/dev/null
ntfsfix -d "$part" >/dev/null
runs_in_file=$(ntfsinfo -v -F /Windows/System32/config/SYSTEM "$part" 2>/dev/null |
  awk 'NF == 3 && $1 ~ /^0x/ && $2 ~ /^0x/ && $3 ~ /^0x/ {n++} END {print n + 0}')
# Into the disk image at 1 MiB, data segments only (SEEK_DATA/SEEK_HOLE).
python3 - "$part" "$base" "$off" <<'EOF'
import os, sys
src, dst, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
i, o = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY)
end, pos = os.fstat(i).st_size, 0
while pos < end:
    try:
        pos = os.lseek(i, pos, os.SEEK_DATA)
    except OSError:
        break
    hole = os.lseek(i, pos, os.SEEK_HOLE)
    while pos < hole:
        n = min(hole - pos, 1 << 20)
        os.pwrite(o, os.pread(i, n, pos), off + pos)
        pos += n
os.fsync(o)
EOF
rm -f "$part"
hive_bytes=$(stat -c %s "$hive_src")
echo "SYSTEM: $hive_bytes bytes in $runs_in_file runs; image $(du -h --apparent-size "$base" | cut -f1) apparent, $(du -h "$base" | cut -f1) allocated" >&2

# The same edits for the peer, from imgprep's plan.
"$bin" strip-lwf --dry-run --json "$base" > "$work/plan.json"
python3 - "$work/plan.json" > "$work/edits.reg" <<'EOF'
import json, sys
plan = json.load(open(sys.argv[1]))["prepared"]["plan"]["changes"]
print("Windows Registry Editor Version 5.00\n")
for c in plan:
    key = "HKEY_LOCAL_MACHINE\\SYSTEM\\" + c["key"]
    if c["op"] == "delete_key":
        print("[-%s]\n" % key); continue
    assert c["op"] == "set_value", c
    if c["ty"] == 4:
        data = "dword:%08x" % int(c["new"].split()[0], 16)
    elif c["ty"] == 7:
        raw = b"".join(s.encode("utf-16-le") + b"\0\0" for s in json.loads(c["new"])) + b"\0\0"
        data = "hex(7):" + ",".join("%02x" % b for b in raw)
    else:
        raise SystemExit("unsupported type %r" % c["ty"])
    print("[%s]\n\"%s\"=%s\n" % (key, c["name"], data))
EOF
nchanges=$(grep -c '^"' "$work/edits.reg")
echo "plan: $nchanges value changes (the .reg for the peer: $work/edits.reg)" >&2

run_img=$work/run.img
fresh="rm -f $run_img $run_img.imgprep-journal && cp --sparse=always $base $run_img && sync $run_img"
cat > "$work/peer.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
l=\$(losetup --find --show -o $off --sizelimit $((size - off)) $run_img)
trap 'losetup -d \$l' EXIT
ntfscat \$l Windows/System32/config/SYSTEM > $work/SYSTEM.peer
hivexregedit --merge $work/SYSTEM.peer --prefix 'HKEY_LOCAL_MACHINE\\SYSTEM' $work/edits.reg
ntfscp -f \$l $work/SYSTEM.peer Windows/System32/config/SYSTEM >/dev/null
EOF
chmod +x "$work/peer.sh"
# The peer with the durability imgprep gives (imgprep fsyncs its journal and the image).
printf '#!/usr/bin/env bash\nset -e\n%s\nsync %s\n' "$work/peer.sh" "$run_img" > "$work/peer-sync.sh"
chmod +x "$work/peer-sync.sh"
imgprep_cmd="$bin strip-lwf $run_img"
peer_cmd="$work/peer.sh"

# Bytes read: rchar (every byte returned by read/pread, page cache or not) of the process
# (for the peer: of bash plus its reaped children), taken before the zombie is reaped.
measure() { # CMD...
  python3 - "$@" <<'EOF'
import os, sys, time
t = time.monotonic()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY); os.dup2(fd, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
dt = time.monotonic() - t
io = dict(l.split(": ") for l in open("/proc/%d/io" % pid).read().split("\n") if l)
_, st = os.waitpid(pid, 0)
print("%s %s %s %.3f %d" % (io["rchar"], io["read_bytes"], io["wchar"], dt, os.waitstatus_to_exitcode(st)))
EOF
}

echo "== I/O (one run each, fresh copy)" >&2
bash -c "$fresh"
read -r i_rchar i_rb i_wchar i_t i_rc < <(measure $imgprep_cmd)
[ "$i_rc" = 0 ] || { echo "imgprep strip-lwf failed ($i_rc)" >&2; exit 1; }
loop=$(losetup --find --show -o "$off" --sizelimit $((size - off)) "$run_img")
ntfscat "$loop" Windows/System32/config/SYSTEM > "$work/SYSTEM.imgprep"
losetup -d "$loop"; loop=""
bash -c "$fresh"
read -r p_rchar p_rb p_wchar p_t p_rc < <(measure "$peer_cmd")
[ "$p_rc" = 0 ] || { echo "peer pipeline failed ($p_rc)" >&2; exit 1; }
# Both sides made the same registry content.
if cmp -s <(hivexregedit --export "$work/SYSTEM.imgprep" '\') <(hivexregedit --export "$work/SYSTEM.peer" '\'); then
  echo "results: identical hivexregedit exports" >&2
else
  echo "results: hivexregedit exports DIFFER" >&2; exit 1
fi
peer_size=$(stat -c %s "$work/SYSTEM.peer")
limit=$((2 * hive_bytes + 4 * MiB))
printf 'imgprep: read %d bytes (rchar; %.2f x hive), wrote %d; target <= %d (2 x hive + 4 MiB): %s\n' \
  "$i_rchar" "$(echo "$i_rchar / $hive_bytes" | bc -l)" "$i_wchar" "$limit" \
  "$([ "$i_rchar" -le "$limit" ] && echo met || echo MISSED)"
printf 'peer:    read %d bytes (rchar), wrote %d; hive after hivexregedit: %d bytes (was %d)\n' \
  "$p_rchar" "$p_wchar" "$peer_size" "$hive_bytes"

echo "== time ($RUNS runs each)" >&2
if [ -z "${NO_HYPERFINE:-}" ] && command -v hyperfine >/dev/null; then
  hyperfine -N --runs "$RUNS" --warmup 1 --export-json "$work/hyperfine.json" \
    --prepare "bash -c '$fresh'" -n imgprep "$imgprep_cmd" -n peer "$peer_cmd" \
    -n peer+sync "$work/peer-sync.sh" >&2
  read -r ti tp tps < <(python3 -c "
import json,sys; r={x['command']:x for x in json.load(open('$work/hyperfine.json'))['results']}
print(r['imgprep']['mean'], r['peer']['mean'], r['peer+sync']['mean'])")
  # CPU time (user + system) is steadier than wall time on a shared machine.
  python3 -c "
import json; r={x['command']:x for x in json.load(open('$work/hyperfine.json'))['results']}
c={k: v['user'] + v['system'] for k, v in r.items()}
print('cpu (user+sys): imgprep %.1f ms, peer %.1f ms, peer+sync %.1f ms: peer/imgprep %.1fx' % (
    c['imgprep'] * 1e3, c['peer'] * 1e3, c['peer+sync'] * 1e3, c['peer'] / c['imgprep']))"
  printf 'mean: peer with sync of the image %.3f s (%.1fx imgprep)\n' "$tps" "$(echo "$tps / $ti" | bc -l)"
else
  tot_i=0 tot_p=0
  for _ in $(seq "$RUNS"); do
    bash -c "$fresh"; a=$(date +%s.%N); $imgprep_cmd >/dev/null; b=$(date +%s.%N)
    tot_i=$(echo "$tot_i + $b - $a" | bc -l)
    bash -c "$fresh"; a=$(date +%s.%N); "$peer_cmd" >/dev/null; b=$(date +%s.%N)
    tot_p=$(echo "$tot_p + $b - $a" | bc -l)
  done
  ti=$(echo "$tot_i / $RUNS" | bc -l) tp=$(echo "$tot_p / $RUNS" | bc -l)
fi
printf 'mean: imgprep %.3f s, peer %.3f s: imgprep is %.1fx faster (target >= 10x: %s)\n' \
  "$ti" "$tp" "$(echo "$tp / $ti" | bc -l)" \
  "$([ "$(echo "$tp >= 10 * $ti" | bc -l)" = 1 ] && echo met || echo MISSED)"
