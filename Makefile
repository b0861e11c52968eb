# Ocellus: everything a fresh machine needs is set up by these targets.
#   make demo   set up, build, and run what exists end to end on real data
#   make test   set up and run every test
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := $(CURDIR)/.venv
PYTHON    := $(VENV)/bin/python
BACKBONES := $(CURDIR)/backbones
LITE0     := $(BACKBONES)/efficientnet_lite0/manifest.json
# The ten standard architectures with random weights, for the shape tests (git-ignored).
RANDOM_BACKBONES := $(CURDIR)/testdata/random-backbones
ARCHITECTURES    := densenet121 efficientnetb0 efficientnetb2 inception_v3 mobilenetv2 \
                    resnet34 resnet50 seresnet50 seresnext50 xception
RANDOM_MANIFESTS := $(foreach a,$(ARCHITECTURES),$(RANDOM_BACKBONES)/$(a)/manifest.json)
# Where cargo builds; .ci/run points it at a cache outside the clone (see docs/testing.md).
export CARGO_TARGET_DIR ?= $(CURDIR)/target
OCELLUS   := $(CARGO_TARGET_DIR)/debug/ocellus
TOOLS     := $(CURDIR)/.tools
S3S_FS    := $(TOOLS)/bin/s3s-fs

# tch builds against the virtualenv's PyTorch (torch-sys runs `python` when VIRTUAL_ENV is set).
export VIRTUAL_ENV       := $(VENV)
export PATH              := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export OCELLUS_BACKBONES ?= $(BACKBONES)
export CARGO_TERM_COLOR  ?= never
# The S3-compatible server the dataset fetch tests spawn on 127.0.0.1.
export OCELLUS_S3S_FS    := $(S3S_FS)

.PHONY: help setup venv native-deps backbones random-backbones testdata tools build crds api-docs test test-cluster test-cuda demo lint clean bench bench-import bench-embed bench-quality bench-gbm bench-auto bench-s3-prefix bench-serve

help:
	@echo "make demo       set up and run the demo (validate the examples, classify real photos)"
	@echo "make test       set up and run every test"
	@echo "make backbones  convert the pretrained test backbone into backbones/"
	@echo "make random-backbones  export the ten standard architectures with random weights"
	@echo "                into testdata/random-backbones/ (shape tests; ~1-2 min)"
	@echo "make crds       regenerate crds/*.yaml, the chart's CRD templates and docs/api-reference.md"
	@echo "make api-docs   regenerate docs/api-reference.md from the CRD schemas"
	@echo "make tools      install the test tools (s3s-fs) into .tools/"
	@echo "make test-cuda  the tests that need a GPU (on a GPU machine)"
	@echo "make bench      every benchmark (release build; see BENCHMARKS.md)"
	@echo "make bench-gbm  LightGBM (ocellus-tabular) against scikit-learn's HistGradientBoosting"
	@echo "make bench-serve  ocellus serve against a minimal Python v2 server around the same model"
	@echo "make test-cluster      the cluster tests (process node, tutorial end to end) on the dev cluster"
	@echo "make dev-cluster       a real control plane + chart + process node + S3 store on this machine"
	@echo "make dev-cluster-down  stop it and remove what it made"

setup: venv native-deps backbones random-backbones testdata

venv: $(VENV)/.installed

$(VENV)/.installed: trainer-image/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r trainer-image/requirements.txt
	touch $@

# LightGBM (ocellus-tabular, through lightgbm3) is built from source: bindgen needs libclang,
# and CMake >= 3.28 comes from the virtualenv (requirements.txt), Debian's 3.25 being too old.
# Chromium renders the experiment report in its browser test, and Prometheus (with promtool)
# checks the chart's alerts and dashboard (Debian's packages, no download).
native-deps:
	@dpkg -s libclang-dev >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libclang-dev; }
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }
	@test -x /usr/bin/prometheus || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }

backbones: $(LITE0)

$(LITE0): $(VENV)/.installed trainer-image/convert_efficientnet_lite0.py
	$(PYTHON) trainer-image/convert_efficientnet_lite0.py --out $(BACKBONES)/efficientnet_lite0 --testdata $(CURDIR)/testdata

random-backbones: $(RANDOM_MANIFESTS)

# One run exports all ten (&: a grouped target): importing torch and timm once is cheaper.
$(RANDOM_MANIFESTS) &: $(VENV)/.installed trainer-image/export_backbones.py
	$(PYTHON) trainer-image/export_backbones.py $(ARCHITECTURES) --random-weights --out $(RANDOM_BACKBONES)

tools: $(S3S_FS)

# The S3-compatible server of the fetch tests. Pinned: 0.17 needs rustc 1.96, 0.14.1 needs 1.92.
# Built in cargo's own temporary target dir, never a shared CARGO_TARGET_DIR.
$(S3S_FS):
	env -u CARGO_TARGET_DIR cargo install s3s-fs@0.14.1 --features binary --locked --root $(TOOLS)

# Real-image datasets built from packages: digits (scikit-learn) and photo-prices (scikit-image photos).
testdata: testdata/sets/.built

testdata/sets/.built: $(VENV)/.installed trainer-image/make_test_datasets.py
	$(PYTHON) trainer-image/make_test_datasets.py --out testdata/sets --digits-per-class 20 --photo-rows 160
	touch $@

testdata/photos: $(VENV)/.installed trainer-image/make_demo_photos.py
	$(PYTHON) trainer-image/make_demo_photos.py $@

build: venv
	cargo build --workspace --all-targets

crds:
	cargo run --quiet -p ocellus-crds --bin crdgen
	cargo run --quiet -p ocellus-tests --bin derived-files

# The chart's CRD templates and docs/api-reference.md, both derived from crds/*.yaml.
api-docs:
	cargo run --quiet -p ocellus-tests --bin derived-files

# Every test, on the dev cluster (a real control plane built from Go modules, the chart installed
# by Helm, the process node, an S3 store), which is started once the tests are built and stopped
# after them, also on failure. Chromium and Prometheus were installed by setup and the cluster
# is up, so the browser, Prometheus and cluster tests must run, not skip.
test: setup tools cluster-tools
	cargo test --workspace --no-run
	OCELLUS_REQUIRE_CHROMIUM=1 OCELLUS_REQUIRE_CLUSTER=1 bash tests/cluster/with-dev-cluster.sh \
		cargo test --workspace

# Every cluster test with the dev cluster up (real control plane, chart, process node, S3 store):
# the process node's own tests and the tutorial from `kubectl apply`.
test-cluster: setup tools cluster-tools
	cargo test --workspace --no-run
	OCELLUS_REQUIRE_CLUSTER=1 bash tests/cluster/with-dev-cluster.sh \
		cargo test --workspace --test cluster --test cluster_e2e --test helm --test prometheus

test-cuda: setup
	cargo test -p ocellus-trainer --features cuda-tests

demo: setup testdata/photos
	cargo build --quiet -p ocellus-trainer --bin ocellus
	@echo "== libtorch on this machine"
	$(OCELLUS) info
	@echo "== the example manifests, checked as the API server would"
	$(OCELLUS) validate examples/*.yaml examples/local/*.yaml
	@echo "== a real dataset (scikit-image's photos in class folders) imported and split 75/25"
	$(OCELLUS) dataset import examples/local/photos.yaml --out out/datasets
	@head -c 600 out/datasets/photos/profile.json; echo
	@echo "== the pretrained test backbone, classifying real photos (ImageNet 281-285 are cats, 967 is espresso)"
	$(OCELLUS) backbone list
	$(OCELLUS) backbone classify efficientnet_lite0 testdata/chelsea.png testdata/coffee.png
	@echo "== the embeddings pipeline end to end: real photos + mileage, colour, description -> price"
	$(OCELLUS) run examples/local/photo-prices.yaml --out out/photo-prices --gbm-seconds 20
	@head -c 1500 out/photo-prices/result.json; echo
	@echo "== scoring rows with the bundle (image cells are paths relative to the CSV)"
	$(OCELLUS) predict --bundle out/photo-prices/scoring --input testdata/sets/photo-prices/table.csv --output out/photo-prices/all-rows.csv
	@head -5 out/photo-prices/all-rows.csv
	@echo "== serving the bundle over the KServe v2 protocol, scored by examples/serving/client.py"
	@$(OCELLUS) serve --bundle out/photo-prices/scoring --address 127.0.0.1:0 > out/photo-prices/serve.log & pid=$$!; \
	  for i in $$(seq 100); do grep -q listening out/photo-prices/serve.log && break; sleep 0.1; done; \
	  url=$$(grep -o 'http://[0-9.:]*' out/photo-prices/serve.log); \
	  python3 examples/serving/client.py $$url photo-prices testdata/sets/photo-prices/table.csv --rows 3 --wait 120; \
	  status=$$?; kill -TERM $$pid; wait $$pid; cat out/photo-prices/serve.log; exit $$status
	@echo "== the experiment report: open out/photo-prices/report.html in a browser"

bench: bench-import bench-s3-prefix bench-embed bench-quality bench-gbm bench-auto bench-serve

bench-import: setup
	cargo build --release -p ocellus-dataset --bin ocellus-dataset
	bash bench/import.sh

# The debug importer: dependencies are optimised in dev builds, and the time is in requests.
bench-s3-prefix: setup tools
	cargo build -p ocellus-dataset --bin ocellus-dataset
	bash bench/s3_prefix.sh

bench-embed: setup
	cargo build -p ocellus-trainer --example embed_bench
	bash bench/embed.sh

bench-serve: setup
	cargo build -p ocellus-trainer --bin ocellus
	bash bench/serve.sh

bench-auto: setup
	cargo build -p ocellus-trainer --bin ocellus --example train_bench
	bash bench/auto_image.sh

bench-quality: setup
	cargo build -p ocellus-trainer --bin ocellus
	bash bench/quality.sh

# The dev profile is enough here: the time is spent in LightGBM's C++ (always built in Release by
# lightgbm3-sys) and dependencies are optimised in dev builds (Cargo.toml).
BENCH_GBM := $(CARGO_TARGET_DIR)/debug/examples/bench_gbm

bench-gbm: setup
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	cargo build -p ocellus-tabular --example bench_gbm
	$(PYTHON) bench/gbm/bench_gbm.py --binary $(BENCH_GBM) --work $(CURDIR)/target/bench-gbm --budget 20

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV) $(BACKBONES) testdata $(TOOLS)

# ---------------------------------------------------------------------------------------------
# Test control plane: a real etcd + kube-apiserver + kube-controller-manager + kube-scheduler on
# 127.0.0.1, built from the Go modules in tests/controlplane/ into .tools/bin (see docs/testing.md).
#   make cluster-tools   build etcd, kube-*, kubectl and helm (first build ~minutes; then cached)
#   make cluster-up      start it; then: source .tools/cluster/env.sh
#   make cluster-down    stop it (CLUSTER_DOWN_FLAGS=--clean also removes its state dir)
# ---------------------------------------------------------------------------------------------
.PHONY: cluster-tools cluster-up cluster-down dev-cluster dev-cluster-down

cluster-tools:
	bash tests/cluster/build-tools.sh

cluster-up: cluster-tools
	bash tests/cluster/up.sh

cluster-down:
	bash tests/cluster/down.sh $(CLUSTER_DOWN_FLAGS)

# The whole product on that control plane, for a person: an S3 store (s3s-fs), the process node
# (tests/node) running every pod as a local process, and the chart installed by Helm. Prints the
# KUBECONFIG and the store's endpoint and keys. `make test` uses the same entry point.
dev-cluster: setup tools cluster-tools
	cargo test --workspace --no-run
	bash tests/cluster/dev-cluster.sh up

dev-cluster-down:
	bash tests/cluster/dev-cluster.sh down
