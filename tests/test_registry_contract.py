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
from extract.registry import ExtractorSpec, get_spec, list_extractors
from extract.weights import MissingWeightsError, expected_path

NAMES = list_extractors()
PRETRAINED = [n for n in NAMES if get_spec(n).weights is not None]


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
    for needed in (spec.weights.filename, spec.weights.url, str(expected_path(spec)), "weights fetch",
                   "weights import"):
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


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{n}": (channels,) for n in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def _panns_shapes(blocks: list[tuple[int, int]], wavegram: bool) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an official PANNs ``model`` state dict, written from audioset_tagging_cnn's models.py
    (torchlibrosa front end, bn0 over 64 mel bins, ConvBlock(in, out) = conv1/bn1/conv2/bn2 3x3 without bias,
    fc1, fc_audioset; Wavegram_Logmel_Cnn14 adds pre_conv0/pre_bn0 and ConvPreWavBlocks)."""
    shapes: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (513, 1, 1024),
        "spectrogram_extractor.stft.conv_imag.weight": (513, 1, 1024),
        "logmel_extractor.melW": (513, 64),
    } | _bn_shapes("bn0", 64)

    def block(prefix: str, c_in: int, c_out: int, kernel: tuple[int, ...]) -> None:
        shapes[f"{prefix}.conv1.weight"] = (c_out, c_in, *kernel)
        shapes[f"{prefix}.conv2.weight"] = (c_out, c_out, *kernel)
        shapes.update(_bn_shapes(f"{prefix}.bn1", c_out) | _bn_shapes(f"{prefix}.bn2", c_out))

    for i, (c_in, c_out) in enumerate(blocks, start=1):
        block(f"conv_block{i}", c_in, c_out, (3, 3))
    if wavegram:
        shapes["pre_conv0.weight"] = (64, 1, 11)
        shapes.update(_bn_shapes("pre_bn0", 64))
        for i, (c_in, c_out) in enumerate([(64, 64), (64, 128), (128, 128)], start=1):
            block(f"pre_block{i}", c_in, c_out, (3,))
        block("pre_block4", 4, 64, (3, 3))
    dim = blocks[-1][1]
    return shapes | {"fc1.weight": (dim, dim), "fc1.bias": (dim,), "fc_audioset.weight": (527, dim),
                     "fc_audioset.bias": (527,)}


def _layout_from_shapes(shapes: dict[str, tuple[int, ...]]) -> Callable[[torch.nn.Module], dict[str, torch.Tensor]]:
    """The module's tensors under the published keys; a missing key or another shape fails."""

    def layout(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        state = module.state_dict()
        missing = sorted(set(shapes) - set(state))
        assert not missing, f"published keys missing from the module: {missing[:5]}"
        for key, shape in shapes.items():
            assert tuple(state[key].shape) == shape, f"{key}: module {tuple(state[key].shape)} != published {shape}"
        return {key: state[key].clone() for key in shapes}

    return layout


_CNN14_BLOCKS = [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 2048)]

PUBLISHED_LAYOUT: dict[str, Callable[[torch.nn.Module], dict[str, torch.Tensor]]] = {
    "mobilenet_v2.imagenet": lambda module: {k: v.clone() for k, v in module.state_dict().items()},
    "efficientat_mn04.audioset": _efficientat_published,
    "panns_cnn10.audioset": _layout_from_shapes(_panns_shapes(_CNN14_BLOCKS[:4], wavegram=False)),
    "panns_cnn14.audioset": _layout_from_shapes(_panns_shapes(_CNN14_BLOCKS, wavegram=False)),
    "panns_wavegram_logmel_cnn14.audioset": _layout_from_shapes(
        _panns_shapes([(1, 64), (128, 128)] + _CNN14_BLOCKS[2:], wavegram=True)),
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


@pytest.mark.parametrize("name", PRETRAINED)
def test_published_layout_matches_the_real_file(name):
    real_path = shared_dir() / "weights" / get_spec(name).weights.filename
    if not real_path.exists():
        pytest.skip(f"real checkpoint {real_path} not available (set AVSCENE_SHARED to the shared folder)")
    real = torch.load(real_path, map_location="cpu", weights_only=True)
    real = real.get("model", real)  # PANNs files wrap their state dict: {"model": ..., "iteration": ...}
    _, published = _published(name)
    assert {k: tuple(v.shape) for k, v in published.items()} == {k: tuple(v.shape) for k, v in real.items()}
