#!/usr/bin/env bash
# Import benchmark (issue: datasets). Run from the repo root: `make bench-import`.
#  1. throughput: 10,000 PNG/JPEG files (256 px) imported by `ocellus-dataset import`
#     (decode + validate + normalized copy) vs Pillow opening and decoding each file in one
#     Python process, same files, same run;
#  2. memory: peak RSS of importing a 2 GiB tar of noise PNGs (GNU time's maxresident).
set -euo pipefail
work=${BENCH_DIR:-$PWD/.bench}
importer=${IMPORTER:-${CARGO_TARGET_DIR:-$PWD/target}/release/ocellus-dataset}
python=${PYTHON:-$PWD/.venv/bin/python}
mkdir -p "$work"
manifest() { printf 'apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: %s}\nspec:\n  source: {path: %s}\n' "$1" "$2" > "$work/$1.yaml"; }

[ -d "$work/folders" ] || "$python" bench/make_images.py folders "$work/folders" --count 10000 --size 256
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== throughput, 10,000 images: 3 alternating rounds (shared machines drift; compare within a round)"
manifest folders "$work/folders"
for round in 1 2 3; do
  sync
  pillow=$("$python" bench/pillow_reference.py "$work/folders")
  rm -rf "$work/out"; sync
  start=$(date +%s.%N)
  "$importer" import "$work/folders.yaml" --out "$work/out" > /dev/null
  end=$(date +%s.%N)
  python3 - "$pillow" "$start" "$end" "$round" <<'PY'
import re, sys
pillow, start, end, round_ = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
reference = float(re.search(r"= (\d+) images/s", pillow).group(1))
ours = 10000 / (end - start)
print(f"round {round_}: pillow {reference:.0f} images/s, ocellus-dataset {ours:.0f} images/s, ratio {ours / reference:.2f}x")
PY
done
rm -rf "$work/out"

echo "== peak memory, 2 GiB archive"
[ -f "$work/big.tar" ] || "$python" bench/make_images.py archive "$work/big.tar" --megabytes 2048 --size 512
manifest big "$work/big.tar"
rm -rf "$work/out"
/usr/bin/time -v "$importer" import "$work/big.yaml" --out "$work/out" 2> "$work/time.txt" > /dev/null
grep -E 'Maximum resident|Elapsed' "$work/time.txt"
rm -rf "$work/out"
