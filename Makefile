# avscene: thin targets over `python -m extract|classify|vadd`. `make help` lists them.
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

DATA ?= cache/demo/data
STORE ?= cache/embeddings.zarr
EXTRACTORS ?= mobilenet_v2.imagenet,efficientat_mn04.audioset
DEVICE ?= auto
CLASSES ?=
GROUPS ?=
SHARD ?= 0/1
PROTOCOL ?= generated
VADD_OUT ?=
VIDEO ?=
AUDIO ?=
HEADS ?=
HEAD_RUN ?=
PYTEST_ARGS ?=
EPOCHS ?= 10
HEAD ?= ls
PRESET ?= adam
QUICK ?=
BENCH_MODELS ?= resnet50.places365,mobilenet_v2.imagenet

.PHONY: help install demo test docs crosscheck bench bench-gpu extract weights-list weights-import weights train-ls train ablation vadd-eval vadd-check real-audio-check info verify clean-demo

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 22

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## create .venv (first use) and reinstall only when pyproject.toml changes

demo: $(STAMP) ## whole pipeline on a small synthetic TAU-layout dataset -> cache/demo/report.json
	$(PY) -m avscene demo run --device $(DEVICE)

test: $(STAMP) ## offline CPU test suite (the command CI runs)
	$(PY) -m pytest -q $(PYTEST_ARGS)

docs: $(STAMP) ## build the docs site from docs/ (extra 'docs'; offline, mkdocs build --strict) -> site/
	$(PY) -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || $(PY) -m pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

crosscheck: $(STAMP) ## install the reference implementations (extra 'crosscheck') and compare every port with them -> cache/crosscheck/report.md
	$(PY) -m pip install -q -e '.[test,crosscheck]'
	TF_USE_LEGACY_KERAS=1 $(PY) -m pytest -q -m crosscheck tests/crosscheck $(PYTEST_ARGS)

bench: $(STAMP) ## benchmarks vs the papers' way -> bench/results.{json,md} [QUICK=1] [DEVICE=cuda] [BENCH_MODELS=a,b] [ONLY=decode,e2e]
	$(PY) -c "import cv2" 2>/dev/null || $(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench --device $(DEVICE) --models $(BENCH_MODELS) $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY))

bench-gpu: ## on a GPU machine: the end-to-end GPU benchmark in one run (bench/gpu.sh: ~8 min) -> bench/results-cuda-<gpu>.md [DRY_RUN=1]
	bench/gpu.sh $(if $(DRY_RUN),--dry-run)

extract: $(STAMP) ## DATA=... STORE=... EXTRACTORS=a,b [DEVICE=auto] [SHARD=i/n] [GROUPS=grouping.csv] [RETRY_FAILED=1] [FAIL_ON_ERROR=1]: embed into the store
	$(PY) -m extract run --data $(DATA) --store $(STORE) --extractors $(EXTRACTORS) --device $(DEVICE) --shard $(SHARD) \
		$(if $(GROUPS),--groups $(GROUPS)) $(if $(RETRY_FAILED),--retry-failed) $(if $(FAIL_ON_ERROR),--fail-on-error)

.PHONY: train-iov
train-iov: $(STAMP) ## DATA=... STORE=... [EPOCHS=10]: train iov_cnn420 on the train split, install, extract
	$(PY) -m extract train-iov --data $(DATA) --store $(STORE) --epochs $(EPOCHS) --device $(DEVICE)

.PHONY: train-fcnn finetune ablation-wang
train-fcnn: $(STAMP) ## DATA=... STORE=... [EPOCHS=10]: train fcnn.tau (paper augmentations) on the train split, extract
	$(PY) -m extract train-extractor fcnn.tau --data $(DATA) --store $(STORE) --epochs $(EPOCHS) --augment paper --device $(DEVICE)

finetune: $(STAMP) ## DATA=... [HEAD_RUN=run folder]: second paper's Fine_A+Fine_V from media (GPU) -> cache/runs/finetune
	$(PY) -m classify finetune --data $(DATA) --device $(DEVICE) $(if $(HEAD_RUN),--head-run "$(HEAD_RUN)")

ablation-wang: $(STAMP) ## STORE=...: second paper's Tables 1/3 cache rows (MLP) beside the paper -> cache/runs/ablation-wang
	$(PY) -m classify ablation --paper wang --store $(STORE)

info: $(STAMP) ## STORE=...: what the store holds and its recorded errors
	$(PY) -m extract info --store $(STORE)

verify: $(STAMP) ## STORE=... [REPAIR=1]: check every written block (checksums, missing chunks, NaN/inf); REPAIR resets damaged clips to pending
	$(PY) -m extract verify --store $(STORE) $(if $(REPAIR),--repair)

weights-list: $(STAMP) ## every extractor spec, its URL, sha256, license, presence
	$(PY) -m extract weights list

weights-import: $(STAMP) ## copy real weights from $(AVSCENE_SHARED)/weights (default ../shared/weights)
	$(PY) -m extract weights import $${AVSCENE_SHARED:-../shared}/weights

weights: $(STAMP) ## EXTRACTORS=...: download official weights (needs internet)
	$(PY) -m extract weights fetch $(subst $(comma), ,$(EXTRACTORS))

train-ls: $(STAMP) ## the paper's LS head on STORE [CLASSES=10|3|grouping] [PRESET=adam] -> cache/runs/ls-<C>cls
	$(PY) -m classify train --store $(STORE) $(if $(CLASSES),--classes $(CLASSES)) --head ls --preset $(PRESET)

train: $(STAMP) ## HEAD=ls|ns|es|ms|...|mlp PRESET=paper-text|paper-code|adam|adam-mixup [CLASSES=10|3|grouping] on STORE
	$(PY) -m classify train --store $(STORE) $(if $(CLASSES),--classes $(CLASSES)) --head $(HEAD) --preset $(PRESET)

ablation: $(STAMP) ## Table 2 rows + VASC/ASC/VSC, the store's classes and groupings, beside the paper -> cache/runs/ablation
	$(PY) -m classify ablation --store $(STORE) --preset $(PRESET)

vadd-eval: $(STAMP) ## VADD on STORE: [CLASSES=10|3|grouping] PROTOCOL=generated|official|FILE [STRICT=1] -> cache/runs/vadd-<C>cls
	$(PY) -m vadd eval --store $(STORE) $(if $(CLASSES),--classes $(CLASSES)) --protocol $(PROTOCOL) --head $(HEAD) \
		--preset $(PRESET) $(if $(STRICT),--strict) $(if $(VADD_OUT),--out $(VADD_OUT))

vadd-check: $(STAMP) ## VIDEO=... [AUDIO=...] [HEADS=run folder]: does the picture match the sound? JSON + PNG
	$(PY) -m vadd check "$(VIDEO)" $(if $(AUDIO),--audio "$(AUDIO)") $(if $(HEADS),--heads "$(HEADS)")

real-audio-check: $(STAMP) ## efficientat on the 42 real TAU wavs: train on 32 fold1_train, score 10 fold1_evaluate
	$(PY) -m extract weights import $${AVSCENE_SHARED:-../shared}/weights efficientat_mn04.audioset
	$(PY) -m extract tau-audio-manifest --audio $${AVSCENE_SHARED:-../shared}/tau/audio --out cache/real-audio
	$(PY) -m extract run --data cache/real-audio/manifest.csv --classes tau --store cache/real-audio/embeddings.zarr \
		--extractors efficientat_mn04.audioset --device $(DEVICE)
	$(PY) -m classify train --store cache/real-audio/embeddings.zarr --classes 10 --out cache/runs/real-audio

clean-demo: ## delete the demo data, store and runs
	rm -rf cache/demo

comma := ,
