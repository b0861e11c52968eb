#!/usr/bin/env bash
# Test scores of `ocellus run` against a Python reference on the same split and backbone
# (see BENCHMARKS.md): digits (classification) and photo-prices (mixed regression).
#   make bench-quality          (DIGITS_PER_CLASS=180 PHOTO_ROWS=2000 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.bench/quality
OCELLUS=${CARGO_TARGET_DIR:-target}/debug/ocellus
mkdir -p $DIR
python trainer-image/make_test_datasets.py --out $DIR/sets --digits-per-class "${DIGITS_PER_CLASS:-180}" --photo-rows "${PHOTO_ROWS:-2000}"
# digits-wide: the digits example with embedding dimensions [100, 300] instead of [10, 25].
for run in digits digits-wide photo-prices; do
  example=${run%-wide}
  sed "s#../../testdata/sets#$PWD/$DIR/sets#" examples/local/$example.yaml > $DIR/$run.yaml
  [ "$run" = digits-wide ] && sed -i 's/dimensions: \[10, 25\]/dimensions: [100, 300]/' $DIR/$run.yaml
  echo "== $run"
  /usr/bin/time -f "ocellus run: %e s, peak RSS %M KB" $OCELLUS run $DIR/$run.yaml --out $DIR/out-$run --cpu --gbm-seconds 60
  python -c "import json,sys; r=json.load(open(sys.argv[1])); t={m['name']:m['value'] for m in r['metrics']['test']}; t.update({'AccuracyStdErr': (t['Accuracy']*(1-t['Accuracy'])/int(sys.argv[2]))**0.5} if 'Accuracy' in t else {}); print(json.dumps({'impl':'ocellus','test':{k:round(v,6) for k,v in t.items()},'best':r['bestModel'],'candidates':[(t.get('embeddingDimension'),t.get('learner'),round(t['score'],4)) for t in r['trials']['top']]}))" $DIR/out-$run/result.json "$(( $(wc -l < $DIR/out-$run/predictions.csv) - 1 ))"
done
python bench/quality_reference.py --task classification --target label --backbone "$OCELLUS_BACKBONES/efficientnet_lite0" \
  --train $DIR/out-digits/datasets/digits-train --test $DIR/out-digits/datasets/digits-test
python bench/quality_reference.py --task regression --target price --backbone "$OCELLUS_BACKBONES/efficientnet_lite0" \
  --train $DIR/out-photo-prices/datasets/photo-prices-train --test $DIR/out-photo-prices/datasets/photo-prices-test
