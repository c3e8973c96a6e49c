"""extract.hear through HEAR 2021's own API validator (hearvalidator 2021.0.2, ``hearvalidator/validate.py``).

The validator is run as hear-validator runs it: ``ValidateModel(module, weights file, device)``, its ``load_model``,
sample-rate, embedding-size, timestamp-embedding (16 x 2 s of white noise) and scene-embedding (8 x 3.74 s) checks.
One extractor per architecture family; random weights except EfficientAT mn04, whose real file is passed the
validator's way (``load_model(FILE)`` alone). The validator accepts 16, 22.05, 44.1 and 48 kHz only; for the 32 kHz
models (EfficientAT, PANNs) every check but the sample rate's runs, and the refusal is asserted, not hidden.
"""
from __future__ import annotations

import importlib

import pytest

from xc_common import require_shared
from extract.hear import load_model

hearvalidator = pytest.importorskip("hearvalidator.validate", reason="the 'crosscheck' extra installs hearvalidator")

RANDOM_WEIGHTS = ("debug_audio", "iov_cnn420", "fcnn.tau", "openl3_mel128_env_512", "panns_cnn10.audioset")


def _checks(validator, accepted: bool) -> None:
    if accepted:
        validator.validate_model()  # sample rate, embedding sizes, timestamp and scene embeddings
        return
    assert validator.model.sample_rate not in validator.ACCEPTABLE_SAMPLE_RATE
    validator.check_embedding_size()
    validator.check_timestamp_embeddings()
    validator.check_scene_embeddings()


@pytest.mark.parametrize("name", RANDOM_WEIGHTS)
def test_hear_validator_accepts_the_module(name):
    validator = hearvalidator.ValidateModel("extract.hear", "", "cpu")
    validator.import_model()
    validator.model = load_model(extractor=name, random_init=name != "debug_audio").to("cpu")  # options it cannot pass
    validator.model_type = "torch"
    _checks(validator, validator.model.sample_rate in validator.ACCEPTABLE_SAMPLE_RATE)


def test_hear_validator_loads_real_efficientat_weights_from_the_file_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "weights"))
    validator = hearvalidator.ValidateModel("extract.hear", str(require_shared("weights", "mn04_as_mAP_432.pt")), "cpu")
    validator.import_model()
    validator.check_load_model()  # load_model(FILE): the extractor is picked by the file's name, the digest checked
    assert validator.model.spec.name == "efficientat_mn04.audioset" and validator.model_type == "torch"
    _checks(validator, accepted=False)  # 32 kHz
    assert importlib.import_module("extract.weights").is_present(validator.model.spec)  # imported into the cache
