"""Every registered extractor honours its spec: shape, dtype, batching, determinism, weights handling.

Pretrained models run with random weights here (``random_init=True``); ``test_real_models.py`` checks
the real checkpoints. The loader tests rebuild each published checkpoint layout from a random model.
"""
from __future__ import annotations

import json
import re
from typing import Callable

import numpy as np
import pytest
import torch

from extract.extractor import Extractor, create_extractor
from extract.paths import shared_dir
from extract.registry import ExtractorSpec, TrainedWeights, get_spec, list_extractors
from extract.weights import MissingWeightsError, expected_path

NAMES = list_extractors()
PRETRAINED = [n for n in NAMES if get_spec(n).weights is not None]
PUBLISHED = [n for n in PRETRAINED if not isinstance(get_spec(n).weights, TrainedWeights)]


def _batch(spec: ExtractorSpec, batch_size: int, seed: int = 0) -> np.ndarray:
    """Visual: ``(B, crop, crop, 3)`` uint8; audio: 1 s of noise ``(B, C, sample_rate)`` float32."""
    rng = np.random.default_rng(seed)
    if spec.visual is not None:
        side = spec.visual.crop_px
        return rng.integers(0, 256, (batch_size, side, side, 3), dtype=np.uint8)
    assert spec.audio is not None
    channels = 1 if spec.audio.channels == "mono" else 2
    return (0.1 * rng.standard_normal((batch_size, channels, spec.audio.sample_rate_hz))).astype(np.float32)


@pytest.fixture(scope="module")
def built() -> dict[str, Extractor]:
    return {name: create_extractor(name, random_init=True) for name in NAMES}


def test_registry_holds_the_first_extractors():
    assert {"debug_visual", "debug_audio", "mobilenet_v2.imagenet", "efficientat_mn04.audioset"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_dtype_finite(name, built):
    spec = get_spec(name)
    out = built[name].embed(_batch(spec, 2))
    assert out.shape == (2, spec.embedding_dim)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_batch_of_two_equals_two_batches_of_one(name, built):
    batch = _batch(get_spec(name), 2)
    together = built[name].embed(batch)
    apart = np.concatenate([built[name].embed(batch[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(together, apart, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_across_builds(name, built):
    batch = _batch(get_spec(name), 2, seed=1)
    again = create_extractor(name, random_init=True)
    np.testing.assert_array_equal(built[name].embed(batch), again.embed(batch))
    assert again.fingerprint == built[name].fingerprint


@pytest.mark.parametrize("name", NAMES)
def test_spec_round_trips_through_json(name):
    spec = get_spec(name)
    assert ExtractorSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_weights_ids_say_where_parameters_came_from(built):
    for name, extractor in built.items():
        expected = "builtin-seeded" if get_spec(name).weights is None else "random-init"
        assert extractor.weights_id == expected, name


@pytest.mark.parametrize("name", PRETRAINED)
def test_missing_weights_message_says_how_to_get_them(name, tmp_path, monkeypatch):
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "empty"))
    spec = get_spec(name)
    with pytest.raises(MissingWeightsError) as caught:
        create_extractor(name)
    message = str(caught.value)
    if isinstance(spec.weights, TrainedWeights):  # no URL: the message names the training command
        hints = (spec.weights.train_command, "train it with", spec.weights.record_filename)
    else:
        hints = (spec.weights.url, "weights fetch")
    for needed in (spec.weights.filename, str(expected_path(spec)), "weights import", *hints):
        assert needed in message, f"{needed!r} missing from: {message}"


# --- loaders: each published checkpoint layout, rebuilt from a random model -------------------------------

_TV_SE_KEY = re.compile(r"^(features\.\d+\.block\.\d+\.)(fc[12]\.(weight|bias))$")
_TV_TO_EFFICIENTAT_CLASSIFIER = {"classifier.0.": "classifier.2.", "classifier.3.": "classifier.5."}


def _efficientat_published(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The random net's parameters under EfficientAT's key names and shapes (inverse of the loader's map)."""
    out = {}
    for key, value in module.net.state_dict().items():
        se = _TV_SE_KEY.match(key)
        if se:
            key = f"{se.group(1)}conc_se_layers.0.{se.group(2)}"
            value = value.flatten(1) if se.group(3) == "weight" else value
        for old, new in _TV_TO_EFFICIENTAT_CLASSIFIER.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value.clone()
    return out


PUBLISHED_LAYOUT: dict[str, Callable[[torch.nn.Module], dict[str, torch.Tensor]]] = {
    "mobilenet_v2.imagenet": lambda module: {k: v.clone() for k, v in module.state_dict().items()},
    "efficientat_mn04.audioset": _efficientat_published,
    "iov_cnn420": lambda module: {k: v.clone() for k, v in module.state_dict().items()},  # saved by train-iov
}


def _published(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    if name not in PUBLISHED_LAYOUT:
        pytest.fail(f"{name}: add its published checkpoint layout to PUBLISHED_LAYOUT")
    module = create_extractor(name, random_init=True).module
    return module, PUBLISHED_LAYOUT[name](module)


def _perturbed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Distinct values, so a successful load is visible in the module."""
    return {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}


@pytest.mark.parametrize("name", PRETRAINED)
def test_loader_accepts_the_published_layout_strictly(name, tmp_path):
    module, published = _published(name)
    path = tmp_path / "checkpoint.pt"
    torch.save(_perturbed(published), path)
    fresh = type(module)(get_spec(name))
    fresh.load_checkpoint(path)
    assert PUBLISHED_LAYOUT[name](fresh).keys() == published.keys()
    for key, value in PUBLISHED_LAYOUT[name](fresh).items():
        torch.testing.assert_close(value, _perturbed(published)[key], msg=key)


@pytest.mark.parametrize("name", PRETRAINED)
def test_loader_rejects_a_renamed_key(name, tmp_path):
    module, published = _published(name)
    first = next(iter(published))
    published["renamed." + first] = published.pop(first)
    path = tmp_path / "checkpoint.pt"
    torch.save(published, path)
    with pytest.raises(RuntimeError, match="renamed"):
        module.load_checkpoint(path)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_layout_matches_the_real_file(name):
    real_path = shared_dir() / "weights" / get_spec(name).weights.filename
    if not real_path.exists():
        pytest.skip(f"real checkpoint {real_path} not available (set AVSCENE_SHARED to the shared folder)")
    real = torch.load(real_path, map_location="cpu", weights_only=True)
    _, published = _published(name)
    assert {k: tuple(v.shape) for k, v in published.items()} == {k: tuple(v.shape) for k, v in real.items()}
