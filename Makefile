# avscene: thin targets over `python -m extract|classify|vadd`. `make help` lists them.
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

DATA ?= cache/demo/data
STORE ?= cache/embeddings.zarr
EXTRACTORS ?= mobilenet_v2.imagenet,efficientat_mn04.audioset
DEVICE ?= auto
CLASSES ?= 10
SHARD ?= 0/1
PROTOCOL ?= generated
PYTEST_ARGS ?=
QUICK ?=
BENCH_MODELS ?= resnet50.places365,mobilenet_v2.imagenet

.PHONY: help install demo test bench extract weights-list weights-import weights train-ls vadd-eval real-audio-check info clean-demo

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 22

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## create .venv (first use) and reinstall only when pyproject.toml changes

demo: $(STAMP) ## whole pipeline on a small synthetic TAU-layout dataset -> cache/demo/report.json
	$(PY) -m vadd demo --device $(DEVICE)

test: $(STAMP) ## offline CPU test suite (the command CI runs)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP) ## benchmarks vs the papers' way -> bench/results.{json,md} [QUICK=1] [DEVICE=cuda] [BENCH_MODELS=a,b]
	$(PY) -c "import cv2" 2>/dev/null || $(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench --device $(DEVICE) --models $(BENCH_MODELS) $(if $(QUICK),--quick)

extract: $(STAMP) ## DATA=... STORE=... EXTRACTORS=a,b [DEVICE=auto] [SHARD=i/n]: embed into the store
	$(PY) -m extract run --data $(DATA) --store $(STORE) --extractors $(EXTRACTORS) --device $(DEVICE) --shard $(SHARD)

info: $(STAMP) ## STORE=...: what the store holds and its recorded errors
	$(PY) -m extract info --store $(STORE)

weights-list: $(STAMP) ## every extractor spec, its URL, sha256, license, presence
	$(PY) -m extract weights list

weights-import: $(STAMP) ## copy real weights from $(AVSCENE_SHARED)/weights (default ../shared/weights)
	$(PY) -m extract weights import $${AVSCENE_SHARED:-../shared}/weights

weights: $(STAMP) ## EXTRACTORS=...: download official weights (needs internet)
	$(PY) -m extract weights fetch $(subst $(comma), ,$(EXTRACTORS))

train-ls: $(STAMP) ## baseline head on STORE, CLASSES=10|3 (replaced by the LS head of #4)
	$(PY) -m classify train --store $(STORE) --classes $(CLASSES)

vadd-eval: $(STAMP) ## VADD on STORE: CLASSES=10|3 PROTOCOL=generated|<csv>
	$(PY) -m vadd eval --store $(STORE) --classes $(CLASSES) --protocol $(PROTOCOL)

real-audio-check: $(STAMP) ## efficientat on the 42 real TAU wavs: train on 32 fold1_train, score 10 fold1_evaluate
	$(PY) -m extract tau-audio-manifest --audio $${AVSCENE_SHARED:-../shared}/tau/audio --out cache/real-audio
	$(PY) -m extract run --data cache/real-audio/manifest.csv --classes tau --store cache/real-audio/embeddings.zarr \
		--extractors efficientat_mn04.audioset --device $(DEVICE)
	$(PY) -m classify train --store cache/real-audio/embeddings.zarr --classes 10 --out cache/runs/real-audio

clean-demo: ## delete the demo data, store and runs
	rm -rf cache/demo

comma := ,
