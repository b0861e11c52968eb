#!/usr/bin/env bash
# Embedding speed and memory against PyTorch, same machine, same run (see BENCHMARKS.md).
#   make bench-embed            (ROUNDS=3 IMAGES=512 BIG=10000 BATCH=16 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; IMAGES=${IMAGES:-512}; BIG=${BIG:-10000}; BATCH=${BATCH:-16}
BACKBONE=${BACKBONE:-efficientnet_lite0}
BIN=${CARGO_TARGET_DIR:-target}/debug/examples/embed_bench
DIR=.bench/embed
mkdir -p $DIR
python bench/make_bench_images.py $DIR/photos-$IMAGES "$IMAGES"
echo "== $(nproc) cores, $(python -c 'import torch; print("torch", torch.__version__)'), backbone $BACKBONE, batch $BATCH"
for round in $(seq "$ROUNDS"); do
  echo "-- round $round: network only (decoded tensors)"
  $BIN model $BACKBONE --batch "$BATCH" --images 256 | tee -a $DIR/results.jsonl
  python bench/embed_reference.py model "$OCELLUS_BACKBONES/$BACKBONE" --batch "$BATCH" --images 256 | tee -a $DIR/results.jsonl
  echo "-- round $round: files on disk -> embeddings ($IMAGES 640x480 JPEGs)"
  $BIN files $BACKBONE $DIR/photos-$IMAGES --batch "$BATCH" | tee -a $DIR/results.jsonl
  python bench/embed_reference.py files "$OCELLUS_BACKBONES/$BACKBONE" $DIR/photos-$IMAGES --batch "$BATCH" | tee -a $DIR/results.jsonl
done
if [ "$BIG" -gt 0 ]; then
  echo "-- peak memory while embedding $BIG images"
  python bench/make_bench_images.py $DIR/photos-$BIG "$BIG"
  $BIN files $BACKBONE $DIR/photos-$BIG --batch "$BATCH" | tee -a $DIR/results.jsonl
fi
