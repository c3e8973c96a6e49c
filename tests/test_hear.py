"""The HEAR API (extract/hear.py) against HEAR 2021's contract, for every registered audio extractor.

The real forward pass runs for the debug extractor, EfficientAT (random weights, and its real ones when the shared
file is there), iov_cnn420, fcnn.tau and PANNs Cnn10; the 12 OpenL3 variants, Cnn14 and Wavegram-Logmel-Cnn14
(~15 s of CPU per second of audio for OpenL3) are checked for shapes and dtypes on the meta device.
"""
from __future__ import annotations

import importlib
import math

import pytest
import torch

from extract.hear import HearModel, get_scene_embeddings, get_timestamp_embeddings, load_model
from extract.registry import get_class, get_spec, list_extractors
from extract.weights import MissingWeightsError
from tests.conftest import require_shared

AUDIO = [n for n in list_extractors() if get_spec(n).audio is not None]
RUN = ["debug_audio", "efficientat_mn04.audioset", "iov_cnn420", "fcnn.tau", "panns_cnn10.audioset"]
META = [n for n in AUDIO if n not in RUN]
SECONDS = 1.37  # not a whole number of seconds, nor of hops
HOP_MS = 250.0


def _sounds(rate_hz: int, n_sounds: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n_sounds, round(SECONDS * rate_hz), generator=generator)


def _n_timestamps(rate_hz: int) -> int:
    return round(SECONDS * rate_hz) // round(HOP_MS * rate_hz / 1000) + 1


def test_every_audio_extractor_is_covered():
    assert set(RUN) <= set(AUDIO) and len(AUDIO) == len(RUN) + len(META) and len(META) >= 14


@pytest.fixture(scope="module")
def models() -> dict[str, HearModel]:
    """Built as hear-eval-kit does: import the module by name, ``load_model(**model_options)``, ``.to(device)``."""
    module = importlib.import_module("extract.hear")
    return {n: module.load_model(extractor=n, random_init=get_spec(n).weights is not None, hop_ms=HOP_MS).to("cpu")
            for n in RUN}


@pytest.mark.parametrize("name", RUN)
def test_hear_contract_with_the_real_forward_pass(models, name):
    model, spec = models[name], get_spec(name)
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == spec.audio.sample_rate_hz
    assert model.scene_embedding_size == model.timestamp_embedding_size == spec.embedding_dim
    audio = _sounds(model.sample_rate)
    with torch.no_grad():
        embeddings, timestamps = get_timestamp_embeddings(audio, model)
        one_by_one = [get_timestamp_embeddings(audio[i : i + 1], model) for i in range(2)]
        scene = get_scene_embeddings(audio, model)
    n = _n_timestamps(model.sample_rate)
    assert embeddings.shape == (2, n, spec.embedding_dim) and embeddings.dtype == torch.float32
    assert timestamps.shape == (2, n) and timestamps.dtype == torch.float32
    assert torch.isfinite(embeddings).all() and not torch.equal(embeddings[0], embeddings[1])
    # milliseconds, increasing by the hop, from the sound's start to at most its end
    assert timestamps[0, 0] == 0 and torch.allclose(timestamps.diff(dim=1), torch.tensor(HOP_MS))
    assert timestamps[0, -1] <= 1000 * SECONDS and torch.equal(timestamps[0], timestamps[1])
    # a batch of two == two batches of one
    torch.testing.assert_close(torch.cat([e for e, _ in one_by_one]), embeddings, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([t for _, t in one_by_one]), timestamps)
    assert scene.shape == (2, spec.embedding_dim) and scene.dtype == torch.float32
    torch.testing.assert_close(scene, embeddings.mean(dim=1))


@pytest.mark.parametrize("name", META)
def test_hear_contract_shapes_on_the_meta_device(name):
    spec = get_spec(name)
    model = HearModel(spec, get_class(name)(spec).to("meta"), HOP_MS)  # built on CPU: front ends come from numpy
    audio = torch.zeros(2, round(SECONDS * spec.audio.sample_rate_hz), device="meta")  # shapes only, no arithmetic
    embeddings, timestamps = get_timestamp_embeddings(audio, model)
    scene = get_scene_embeddings(audio, model)
    assert model.sample_rate == spec.audio.sample_rate_hz
    assert model.scene_embedding_size == model.timestamp_embedding_size == spec.embedding_dim
    n = _n_timestamps(spec.audio.sample_rate_hz)
    assert embeddings.shape == (2, n, spec.embedding_dim) and embeddings.dtype == torch.float32
    assert timestamps.shape == (2, n) and timestamps.dtype == torch.float32
    assert scene.shape == (2, spec.embedding_dim) and scene.dtype == torch.float32


def test_windows_are_centred_on_the_timestamps():
    model = load_model(extractor="debug_audio", hop_ms=500)
    rate = model.sample_rate
    audio = torch.arange(1, 2 * rate + 1, dtype=torch.float32)[None]  # sample i holds i + 1
    windows = model.windows(audio)
    assert windows.shape == (1, 5, rate)  # centres 0, 0.5, 1, 1.5, 2 s
    assert windows[0, 2, 0] == 1 + rate // 2 and windows[0, 2, -1] == rate + rate // 2  # [0.5 s, 1.5 s)
    assert (windows[0, 0, : rate // 2] == 0).all() and (windows[0, 4, rate // 2 :] == 0).all()  # zeros beyond the sound


def test_load_model_needs_an_extractor_weights_or_an_explicit_random_init(tmp_path):
    with pytest.raises(ValueError, match="name the extractor"):
        load_model()
    with pytest.raises(MissingWeightsError, match="mn04_as_mAP_432.pt"):
        load_model(extractor="efficientat_mn04.audioset")
    with pytest.raises(ValueError, match="audio extractors only"):
        load_model(extractor="debug_visual")
    (tmp_path / "other.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="reads its weights file 'mn04_as_mAP_432.pt'"):
        load_model(str(tmp_path / "other.pt"), extractor="efficientat_mn04.audioset")


def test_real_efficientat_weights_through_model_file_path(models):
    weights = require_shared("weights", "mn04_as_mAP_432.pt")
    model = load_model(str(weights), extractor="efficientat_mn04.audioset", hop_ms=HOP_MS)
    audio = _sounds(model.sample_rate, seed=1)
    with torch.no_grad():
        real = get_scene_embeddings(audio, model)
        random = get_scene_embeddings(audio, models["efficientat_mn04.audioset"])
    assert real.shape == (2, 384) and torch.isfinite(real).all()
    assert not torch.allclose(real, random)  # the file was loaded, not the random parameters
    assert math.isclose(float(get_timestamp_embeddings(audio, model)[1][0, 1]), HOP_MS)


def test_embeddings_need_no_autograd(models):
    """hearvalidator calls the embedding functions outside ``torch.no_grad``: they must not build a graph."""
    model = models["efficientat_mn04.audioset"]
    audio = _sounds(model.sample_rate)
    embeddings, timestamps = get_timestamp_embeddings(audio, model)
    assert not embeddings.requires_grad and not timestamps.requires_grad
    assert not get_scene_embeddings(audio, model).requires_grad


def test_the_weights_file_name_alone_picks_its_extractor():
    """hearvalidator calls ``load_model(FILE)`` with no options."""
    weights = require_shared("weights", "mn04_as_mAP_432.pt")
    model = load_model(str(weights), hop_ms=HOP_MS)
    assert model.spec.name == "efficientat_mn04.audioset"
    with pytest.raises(ValueError, match=r"openl3_audio_mel128_env-v0_4_0.h5.gz is the weights file of "
                                         r"openl3_mel128_env_512, openl3_mel128_env_6144; name one"):
        load_model("/elsewhere/openl3_audio_mel128_env-v0_4_0.h5.gz")


def test_triton_is_hidden_only_where_tensorflow_was_imported_first():
    """hear-eval-kit imports TensorFlow before ``extract.hear``; triton loaded after it segfaults (TF 2.20, triton
    3.8), so the module hides triton from torch in that case only. Run in fresh interpreters, with a stand-in
    TensorFlow: the check is on ``sys.modules``, not on TensorFlow itself."""
    import subprocess
    import sys

    probe = ("import sys, types; {tf}import extract.hear, torch.utils._triton as t; "
             "print(sys.modules.get('triton', 'absent') is None, t.has_triton_package() if {tf_first} else '')")
    after_tf = subprocess.run([sys.executable, "-c", probe.format(tf="sys.modules['tensorflow'] = types.ModuleType("
                                                                       "'tensorflow'); ", tf_first=True)],
                              capture_output=True, text=True, check=True)
    assert after_tf.stdout.split() == ["True", "False"]
    alone = subprocess.run([sys.executable, "-c", probe.format(tf="", tf_first=False)],
                           capture_output=True, text=True, check=True)
    assert alone.stdout.split() == ["False"]
