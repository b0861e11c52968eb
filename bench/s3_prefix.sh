#!/usr/bin/env bash
# S3 prefix import benchmark (issue 20). Run from the repo root: `make bench-s3-prefix`.
# 10,000 small PNG/JPEG objects (32 px, 100 class folders) under one prefix of a real
# S3-compatible server (s3s-fs on 127.0.0.1), imported by `ocellus-dataset import` from
# `s3://photos/pets/`: cold (empty object cache: list + fetch + decode + normalized copy) and
# again (listing only; every object unchanged), with peak RSS; against boto3 listing and
# downloading the same prefix with 16 threads (download only, no decode), same run.
set -euo pipefail
work=${BENCH_DIR:-$PWD/.bench}/s3-prefix
importer=${IMPORTER:-${CARGO_TARGET_DIR:-$PWD/target}/debug/ocellus-dataset}
python=${PYTHON:-$PWD/.venv/bin/python}
s3s=${OCELLUS_S3S_FS:-$PWD/.tools/bin/s3s-fs}
mkdir -p "$work/data/photos"
[ -d "$work/data/photos/pets" ] || {
  "$python" bench/make_images.py folders "$work/gen" --count 10000 --size 32
  # 100 classes instead of make_images' 10: move class<k>/<i>.* to class<i % 100>/.
  mkdir -p "$work/data/photos/pets"
  for file in "$work"/gen/class*/*; do
    name=$(basename "$file"); i=${name%.*}
    mkdir -p "$work/data/photos/pets/class$((i % 100))"
    mv "$file" "$work/data/photos/pets/class$((i % 100))/$name"
  done
  rm -rf "$work/gen"
}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret-0123456789 AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
"$s3s" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
  "$work/data" > "$work/s3s.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
endpoint=http://127.0.0.1:$port
printf 'apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: pets}\nspec:\n  source: {s3: {uri: "s3://photos/pets/", endpoint: "%s"}}\n' \
  "$endpoint" > "$work/pets.yaml"
"$python" -c 'import boto3' 2>/dev/null || "$python" -m pip install --quiet --disable-pip-version-check boto3
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== 10,000 objects under s3://photos/pets/: 3 alternating rounds"
rate() { python3 -c "import sys; print(f'{10000 / float(sys.argv[1]):.0f}')" "$1"; }
seconds() { grep 'Elapsed (wall' "$1" | awk '{print $NF}' | awk -F: '{ if (NF == 3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
rss() { grep 'Maximum resident' "$1" | awk '{printf "%.0f MB", $NF / 1024}'; }
for round in 1 2 3; do
  rm -rf "$work/boto3"
  reference=$("$python" bench/s3_prefix_reference.py "$endpoint" photos pets/ "$work/boto3")
  rm -rf "$work/out"
  /usr/bin/time -v "$importer" import "$work/pets.yaml" --out "$work/out" > /dev/null 2> "$work/cold.txt"
  /usr/bin/time -v "$importer" import "$work/pets.yaml" --out "$work/out" > /dev/null 2> "$work/warm.txt"
  grep -q '0 of 10000 objects fetched, 10000 unchanged' "$work/warm.txt" || { cat "$work/warm.txt"; exit 1; }
  cold=$(seconds "$work/cold.txt"); warm=$(seconds "$work/warm.txt")
  echo "round $round: $reference | ocellus-dataset cold import $(rate "$cold") objects/s ($(rss "$work/cold.txt") peak)," \
    "re-import $(rate "$warm") objects/s ($(rss "$work/warm.txt") peak)"
done
rm -rf "$work/out" "$work/boto3"
