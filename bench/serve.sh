#!/usr/bin/env bash
# `ocellus serve` against a minimal Python v2 server around the same model on the same runtime
# (bench/serve_reference.py), driven by the same loopback load generator (bench/serve_load.py),
# alternating in one run (see BENCHMARKS.md).
#   make bench-serve            (ROUNDS=2 REQUESTS=100 CLIENTS=8 LOAD_SECONDS=20 to change)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}; REQUESTS=${REQUESTS:-100}; CLIENTS=${CLIENTS:-8}; LOAD_SECONDS=${LOAD_SECONDS:-20}
OCELLUS=${CARGO_TARGET_DIR:-target}/debug/ocellus
DIR=.bench/serve
mkdir -p $DIR
python bench/make_bench_images.py $DIR/photos 64
# An image-only classifier (digits: frozen embeddings, PCA, logistic regression), the model
# both servers score.
[ -f $DIR/run/scoring/bundle.json ] || $OCELLUS run examples/local/digits.yaml --out $DIR/run --gbm-seconds 5 --cpu > $DIR/run.log
BUNDLE=$DIR/run/scoring

wait_listening() {  # LOG: the address a server printed once it listens
  for _ in $(seq 600); do
    url=$(grep -o 'http://[0-9.:]*' "$1" | head -1 || true)
    [ -n "$url" ] && curl -sf "$url/v2/health/ready" > /dev/null && { echo "$url"; return; }
    sleep 0.1
  done
  echo "no server in $1" >&2; exit 1
}
$OCELLUS serve --bundle $BUNDLE --address 127.0.0.1:0 --cpu > $DIR/ocellus.log 2>&1 &
OCELLUS_PID=$!
python bench/serve_reference.py $BUNDLE > $DIR/python.log 2>&1 &
PYTHON_PID=$!
trap 'kill $OCELLUS_PID $PYTHON_PID 2>/dev/null || true' EXIT
OCELLUS_URL=$(wait_listening $DIR/ocellus.log)
PYTHON_URL=$(wait_listening $DIR/python.log)
LOAD="python bench/serve_load.py"
echo "== $(nproc) cores, $(python -c 'import torch; print("torch", torch.__version__)'), ocellus $OCELLUS_URL, python $PYTHON_URL"
$LOAD answers $OCELLUS_URL digits $DIR/photos --impl ocellus > $DIR/answers-ocellus.json
$LOAD answers $PYTHON_URL digits $DIR/photos --impl python > $DIR/answers-python.json
python - $DIR/answers-ocellus.json $DIR/answers-python.json <<'PY'
import json, sys
a, b = (json.load(open(f))["answers"] for f in sys.argv[1:])
# Pillow resizes 8-bit pixels, Ocellus resizes float RGB (the backbone manifest's rule): the
# probabilities differ by about 1e-2, the predicted class must not.
diff = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x)
same = all(max(x, key=x.get) == max(y, key=y.get) for x, y in zip(a, b))
print(json.dumps({"check": "same model", "max_probability_difference": round(diff, 4), "same_classes": same}))
assert diff < 0.05 and same, "the servers do not compute the same model"
PY
for round in $(seq "$ROUNDS"); do
  echo "-- round $round"
  for impl in ocellus python; do
    url=$([ $impl = ocellus ] && echo $OCELLUS_URL || echo $PYTHON_URL)
    $LOAD latency $url digits $DIR/photos --impl $impl --requests "$REQUESTS" | tee -a $DIR/results.jsonl
  done
  for impl in ocellus python; do
    url=$([ $impl = ocellus ] && echo $OCELLUS_URL || echo $PYTHON_URL)
    $LOAD load $url digits $DIR/photos --impl $impl --clients "$CLIENTS" --seconds "$LOAD_SECONDS" | tee -a $DIR/results.jsonl
  done
done
curl -s $OCELLUS_URL/metrics | grep -E '^ocellus_serve_batch_size_rows_(sum|count)'
