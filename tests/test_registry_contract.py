"""Every registered extractor honours its spec: shape, dtype, batching, determinism, weights handling.

Pretrained models run with random weights here (``random_init=True``); ``test_real_models.py`` checks
the real checkpoints. The loader tests rebuild each published checkpoint layout from a random model.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import re
from contextlib import nullcontext
from typing import Callable

import numpy as np
import pytest
import torch

from extract.extractor import Extractor, create_extractor
from extract.models import openl3
from extract.registry import ExtractorSpec, TrainedWeights, get_class, get_spec, list_extractors
from extract.weights import MissingWeightsError, expected_path
from published_layouts import (
    csail_densenet161_keys, csail_name, csail_resnet50_keys, filled, open_clip_keys, open_clip_name,
    torchvision_vit_keys, torchvision_vit_name,
)
from tests.conftest import require_shared
from tests.keras_files import write_keras_weights

NAMES = list_extractors()
PRETRAINED = [n for n in NAMES if get_spec(n).weights is not None]
# The 12 OpenL3 variants are one module with one checkpoint layout, differing only in shapes: the forward-pass
# and loader contracts run on one representative (OpenL3 costs ~0.7 s per 1-s frame on 2 CPU cores, 10 frames
# per second); tests/test_openl3.py checks every variant's output shape and weight layout without computing.
OPENL3_REPRESENTATIVE = "openl3_mel128_env_512"
FORWARD = [n for n in NAMES if not n.startswith("openl3_") or n == OPENL3_REPRESENTATIVE]
LOADERS = [n for n in PRETRAINED if n in FORWARD]
PUBLISHED = [n for n in LOADERS if not isinstance(get_spec(n).weights, TrainedWeights)]  # not trained here

# The contract runs these at a smaller square input on CPU: the real architecture (every layer and
# width), with position embeddings built for that size; tests/test_seed_visual.py runs the full size (slow).
CONTRACT_CROP_PX = {
    "vit_h14.swag_e2e_in1k": 28, "vit_h14.swag_e2e_in1k_logits": 28, "clip_vit_h14.laion2b_s32b_b79k": 28,
    "vit_b16.in1k": 64, "clip_vit_b32.laion2b_s34b_b79k": 64, "resnet50.places365": 64, "densenet161.places365": 64,
    "densenet161.places365_f1f15": 64,
}
# ~630M parameters: built one at a time (never in the module-scoped fixture); loader layouts on the meta device.
LARGE = {"vit_h14.swag_e2e_in1k", "vit_h14.swag_e2e_in1k_logits", "clip_vit_h14.laion2b_s32b_b79k"}
SMALL = [n for n in FORWARD if n not in LARGE]


def _contract_spec(name: str) -> ExtractorSpec:
    """The registered spec, with the crop of ``CONTRACT_CROP_PX`` where one is given."""
    spec = get_spec(name)
    if name not in CONTRACT_CROP_PX:
        return spec
    side = CONTRACT_CROP_PX[name]
    return dataclasses.replace(spec, visual=dataclasses.replace(spec.visual, resize_shorter_px=side, crop_px=side))


def _build(name: str) -> Extractor:
    return create_extractor(name, random_init=True, spec=_contract_spec(name))


def _batch(spec: ExtractorSpec, batch_size: int, seed: int = 0) -> np.ndarray:
    """Visual: ``(B, crop, crop, 3)`` uint8; audio: one window of noise ``(B, C, window_samples)`` float32."""
    rng = np.random.default_rng(seed)
    if spec.visual is not None:
        side = spec.visual.crop_px
        return rng.integers(0, 256, (batch_size, side, side, 3), dtype=np.uint8)
    assert spec.audio is not None
    channels = 1 if spec.audio.channels == "mono" else 2
    return (0.1 * rng.standard_normal((batch_size, channels, spec.audio.window_samples))).astype(np.float32)


@pytest.fixture(scope="module")
def built() -> dict[str, Extractor]:
    return {name: _build(name) for name in SMALL}


def test_registry_holds_the_first_extractors():
    assert {"debug_visual", "debug_audio", "mobilenet_v2.imagenet", "efficientat_mn04.audioset"} <= set(NAMES)


def _check_output(extractor: Extractor) -> None:
    spec = extractor.spec
    out = extractor.embed(_batch(spec, 2))
    assert out.shape == (2, spec.embedding_dim)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def _check_batch_invariance(extractor: Extractor) -> None:
    batch = _batch(extractor.spec, 2)
    together = extractor.embed(batch)
    apart = np.concatenate([extractor.embed(batch[i : i + 1]) for i in range(2)])
    # float32 kernels sum in a batch-size-dependent order: an element near zero may differ by ~1e-6 of the output's
    # scale (ResNet50's random-init features reach ~10, and 1.5e-5 was seen), so the absolute part is relative to it
    scale = max(1.0, float(np.abs(together).max()))
    np.testing.assert_allclose(together, apart, rtol=1e-4, atol=1e-5 * scale)


def _check_deterministic(extractor: Extractor, again: Extractor) -> None:
    batch = _batch(extractor.spec, 2, seed=1)
    np.testing.assert_array_equal(extractor.embed(batch), again.embed(batch))
    assert again.fingerprint == extractor.fingerprint


@pytest.mark.parametrize("name", SMALL)
def test_output_shape_dtype_finite(name, built):
    _check_output(built[name])


@pytest.mark.parametrize("name", SMALL)
def test_batch_of_two_equals_two_batches_of_one(name, built):
    _check_batch_invariance(built[name])


@pytest.mark.parametrize("name", SMALL)
def test_deterministic_across_builds(name, built):
    _check_deterministic(built[name], _build(name))


@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_model_contract(name):
    """All three checks on one build at a time (two for determinism), freed before the next model."""
    extractor = _build(name)
    _check_output(extractor)
    _check_batch_invariance(extractor)
    _check_deterministic(extractor, _build(name))
    del extractor
    gc.collect()


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


def _openl3_published(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The random net's weights under the Keras names and shapes of the official .h5 files."""
    return {k: torch.from_numpy(v) for k, v in openl3.torch_to_keras(module.net.state_dict()).items()}


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

_VIT_H14 = dict(patch_px=14, layers=32, width=1280, mlp_dim=5120, image_px=518)
_CLIP_H14 = dict(patch_px=14, layers=32, width=1280, embed_dim=1024, text_layers=24, text_width=1024)
# MobileNetV2's and EfficientAT's layouts come from our modules here; their real files (in ../shared/weights) are
# loaded strictly by tests/test_real_models.py, which is where a layout mismatch of those two shows.
PUBLISHED_LAYOUT: dict[str, Callable[[torch.nn.Module], dict[str, torch.Tensor]]] = {
    "mobilenet_v2.imagenet": lambda module: {k: v.clone() for k, v in module.state_dict().items()},
    "efficientat_mn04.audioset": _efficientat_published,
    "vit_h14.swag_e2e_in1k": lambda m: filled(m, torchvision_vit_keys(**_VIT_H14), torchvision_vit_name),
    "vit_h14.swag_e2e_in1k_logits": lambda m: filled(m, torchvision_vit_keys(**_VIT_H14), torchvision_vit_name),
    "vit_b16.in1k": lambda m: filled(
        m, torchvision_vit_keys(patch_px=16, layers=12, width=768, mlp_dim=3072, image_px=224), torchvision_vit_name
    ),
    "clip_vit_h14.laion2b_s32b_b79k": lambda m: filled(m, open_clip_keys(**_CLIP_H14), open_clip_name),
    "clip_vit_b32.laion2b_s34b_b79k": lambda m: filled(
        m, open_clip_keys(patch_px=32, layers=12, width=768, embed_dim=512, text_layers=12, text_width=512),
        open_clip_name,
    ),
    "resnet50.places365": lambda m: filled(m, csail_resnet50_keys(), csail_name),
    "densenet161.places365": lambda m: filled(m, csail_densenet161_keys(), csail_name),
    **{name: _openl3_published for name in openl3.CONFIGS},
    "panns_cnn10.audioset": _layout_from_shapes(_panns_shapes(_CNN14_BLOCKS[:4], wavegram=False)),
    "panns_cnn14.audioset": _layout_from_shapes(_panns_shapes(_CNN14_BLOCKS, wavegram=False)),
    "panns_wavegram_logmel_cnn14.audioset": _layout_from_shapes(
        _panns_shapes([(1, 64), (128, 128)] + _CNN14_BLOCKS[2:], wavegram=True)),
    "iov_cnn420": lambda module: {k: v.clone() for k, v in module.state_dict().items()},  # saved by train-iov
    "densenet161.places365_f1f15": lambda m: filled(m, csail_densenet161_keys(), csail_name),
    "fcnn.tau": lambda module: {k: v.clone() for k, v in module.state_dict().items()},  # saved by train-extractor
}
# Files that wrap the state dict (CSAIL's and PANNs' training checkpoints): how the publisher saved it.
FILE_CONTAINER: dict[str, Callable[[dict[str, torch.Tensor]], object]] = {
    "resnet50.places365": lambda state: {"epoch": 89, "arch": "resnet50", "state_dict": state, "best_prec1": 54.65},
    "densenet161.places365": lambda state: {"epoch": 89, "arch": "densenet161", "state_dict": state,
                                            "best_prec1": 56.1},
    "densenet161.places365_f1f15": lambda state: {"epoch": 89, "arch": "densenet161", "state_dict": state,
                                                  "best_prec1": 56.1},
    **{name: (lambda state: {"iteration": 600000, "model": state}) for name in
       ("panns_cnn10.audioset", "panns_cnn14.audioset", "panns_wavegram_logmel_cnn14.audioset")},
}


def _new_module(name: str) -> torch.nn.Module:
    """A random module of ``name`` at its registered size; large ones on the meta device (no memory)."""
    torch.manual_seed(0)
    with torch.device("meta") if name in LARGE else nullcontext():
        return get_class(name)(get_spec(name))


def _is_keras(name: str) -> bool:
    return get_spec(name).weights.filename.endswith((".h5", ".h5.gz"))


def _save_published(name: str, state: dict[str, torch.Tensor], path) -> None:
    """Write ``state`` as ``name``'s published file does: Keras h5, else a torch file (meta tensors allowed)."""
    if _is_keras(name):
        write_keras_weights(path, {k: v.numpy() for k, v in state.items()})
    else:
        torch.save(FILE_CONTAINER.get(name, lambda s: s)(state), path)


def _checkpoint_path(name: str, folder) -> object:
    """Where a test writes ``name``'s checkpoint: the Keras file name (read by suffix), else a torch file."""
    return folder / (get_spec(name).weights.filename if _is_keras(name) else "checkpoint.pt")


def _load_real(name: str, path) -> dict[str, torch.Tensor]:
    """A published file's state dict, unwrapped from its container."""
    if _is_keras(name):
        return {k: torch.from_numpy(v) for k, v in openl3.read_keras_weights(path).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    real = torch.load(path, map_location="cpu", weights_only=True)
    if name not in FILE_CONTAINER:
        return real
    return real["state_dict"] if "state_dict" in real else real["model"]


def _published(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    if name not in PUBLISHED_LAYOUT:
        pytest.fail(f"{name}: add its published checkpoint layout to PUBLISHED_LAYOUT")
    module = _new_module(name)
    return module, PUBLISHED_LAYOUT[name](module)


def _perturbed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Distinct values, so a successful load is visible in the module."""
    return {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}


def _assert_same(value: torch.Tensor, expected: torch.Tensor, key: str) -> None:
    """Equal values; tensors on the meta device (large models, skipped text towers) only by shape and dtype."""
    if value.is_meta or expected.is_meta:
        assert (value.shape, value.dtype) == (expected.shape, expected.dtype), key
    else:
        torch.testing.assert_close(value, expected, msg=key)


@pytest.mark.parametrize("name", LOADERS)
def test_loader_accepts_the_published_layout_strictly(name, tmp_path):
    module, published = _published(name)
    path = _checkpoint_path(name, tmp_path)
    expected = _perturbed(published)
    _save_published(name, expected, path)
    fresh = _new_module(name)
    fresh.load_checkpoint(path)
    assert PUBLISHED_LAYOUT[name](fresh).keys() == published.keys()
    for key, value in PUBLISHED_LAYOUT[name](fresh).items():
        _assert_same(value, expected[key], key)


@pytest.mark.parametrize("name", LOADERS)
def test_loader_rejects_a_renamed_key(name, tmp_path):
    module, published = _published(name)
    first = next(iter(published))
    published["renamed." + first] = published.pop(first)
    path = _checkpoint_path(name, tmp_path)
    _save_published(name, published, path)
    with pytest.raises(RuntimeError, match="renamed"):
        module.load_checkpoint(path)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_layout_matches_the_real_file(name):
    real_path = require_shared("weights", get_spec(name).weights.filename)
    real = _load_real(name, real_path)
    _, published = _published(name)
    assert {k: tuple(v.shape) for k, v in published.items()} == {k: tuple(v.shape) for k, v in real.items()}


def test_seed_alias_names_the_first_papers_six_with_its_widths():
    from extract.registry import resolve_names

    names = resolve_names("seed")
    assert [get_spec(n).modality for n in names] == ["visual"] * 3 + ["audio"] * 3
    assert [get_spec(n).embedding_dim for n in names] == [1000, 1024, 2048, 512, 512, 256]
