#!/usr/bin/env bash
# The auto image model (`ocellus run`, pipeline AutoImage) against a fixed plain-PyTorch
# fine-tuning recipe with the same wall-clock budget, same split and backbone; then training
# throughput of ocellus (train_bench) against PyTorch, alternating rounds (see BENCHMARKS.md).
# Two data sets: digits (classification) and photo-values (regression).
#   bash bench/auto_image.sh     (BUDGET=300 DIGITS_PER_CLASS=100 PHOTO_ROWS=1000 ROUNDS=3 to change)
# Needs target/debug/ocellus and target/debug/examples/train_bench built, and the virtualenv's
# python first on PATH (as the Makefile sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-300}; ROUNDS=${ROUNDS:-3}
export OCELLUS_BACKBONES=${OCELLUS_BACKBONES:-$PWD/backbones}
BACKBONE=$OCELLUS_BACKBONES/efficientnet_lite0
OCELLUS=${CARGO_TARGET_DIR:-target}/debug/ocellus
TRAIN_BENCH=${CARGO_TARGET_DIR:-target}/debug/examples/train_bench
DIR=.bench/auto
RUN=$DIR/last-run.jsonl  # this run's lines, for the summary; results.jsonl keeps every run
mkdir -p $DIR
: > $RUN
python trainer-image/make_test_datasets.py --out $DIR/sets --digits-per-class "${DIGITS_PER_CLASS:-100}" \
  --photo-rows "${PHOTO_ROWS:-1000}"

# compare SET TARGET TASK: the search on examples/local/SET-auto-image.yaml, then the recipe on
# the same train/test split, both with BUDGET seconds.
compare() {
  local set=$1 target=$2 task=$3
  sed -e "s#../../testdata/sets#$PWD/$DIR/sets#" -e "s#timeBudgetSeconds: *[0-9]*#timeBudgetSeconds: $BUDGET#" \
    examples/local/$set-auto-image.yaml > $DIR/$set-auto.yaml
  grep -q "timeBudgetSeconds: $BUDGET" $DIR/$set-auto.yaml || { echo "no timeBudgetSeconds in the manifest" >&2; exit 1; }
  echo "== ocellus run (AutoImage on $set, budget ${BUDGET}s, $(nproc) cores)"
  rm -rf $DIR/out-$set  # a run into an existing folder resumes; this one starts fresh
  /usr/bin/time -o $DIR/time.txt -f "%e %M" $OCELLUS run $DIR/$set-auto.yaml --out $DIR/out-$set --cpu
  python -c "
import json, sys
r = json.load(open(sys.argv[1]))
wall, rss = open(sys.argv[2]).read().split()[-2:]
print(json.dumps({'impl': 'ocellus-auto-image', 'set': sys.argv[4], 'budget': int(sys.argv[3]),
                  'test': {m['name']: round(m['value'], 6) for m in r['metrics']['test']},
                  'best': r['bestModel'], 'trials': r['trials']['total'],
                  'seconds': float(wall), 'peak_rss_mb': round(int(rss) / 1024, 1)}))
" $DIR/out-$set/result.json $DIR/time.txt "$BUDGET" "$set" | tee -a $RUN $DIR/results.jsonl
  echo "== PyTorch fixed recipe on $set (same split, budget ${BUDGET}s)"
  python bench/train_reference.py recipe --task $task --target $target --backbone "$BACKBONE" --seconds "$BUDGET" \
    --train $DIR/out-$set/datasets/$set-train --test $DIR/out-$set/datasets/$set-test \
    | python -c "import json, sys; l = json.loads(sys.stdin.read()); l['set'] = sys.argv[1]; print(json.dumps(l))" "$set" \
    | tee -a $RUN $DIR/results.jsonl
}
compare digits label classification
compare photo-values value regression

# On a CUDA machine both sides train in float16 mixed precision with loss scaling.
AMP=$(python -c "import torch; print('--amp' if torch.cuda.is_available() else '')")
echo "== training throughput, batch 16, 224 px ${AMP}"
for round in $(seq "$ROUNDS"); do
  $TRAIN_BENCH throughput efficientnet_lite0 --batch 16 --size 224 --steps 20 | grep '^{' | tail -n 1 | tee -a $RUN $DIR/results.jsonl
  python bench/train_reference.py throughput "$BACKBONE" --batch 16 --size 224 --steps 20 --warmup 3 $AMP | tee -a $RUN $DIR/results.jsonl
done

python -c "
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
speed = lambda impl: statistics.median(l['images_per_s'] for l in lines if l.get('bench') == 'train-throughput' and l['impl'] == impl)
test = {l['set'] + ' ' + l['impl']: l['test'] for l in lines if 'test' in l}
ours, torch = speed('ocellus'), speed('pytorch')
print(json.dumps({'bench': 'auto-image-summary', 'train_images_per_s': {'ocellus': ours, 'pytorch': torch},
                  'train_throughput_ratio': round(ours / torch, 3), 'test': test}))
" $RUN | tee -a $DIR/results.jsonl
