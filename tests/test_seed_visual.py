"""Seed visual extractors beyond the registry contract: full-size runs, preprocessing, loaders, GPU options."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from extract.extractor import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, InferenceOptions, create_extractor, fingerprint
from extract.registry import ExtractorSpec, VisualInput, get_spec
from extract.video_io import read_frames

VISUAL_SEED = {
    "vit_h14.swag_e2e_in1k": (1280, 518, "bicubic"),
    "vit_h14.swag_e2e_in1k_logits": (1000, 518, "bicubic"),
    "vit_b16.in1k": (768, 224, "bilinear"),
    "clip_vit_h14.laion2b_s32b_b79k": (1024, 224, "bicubic"),
    "clip_vit_b32.laion2b_s34b_b79k": (512, 224, "bicubic"),
    "resnet50.places365": (2048, 224, "bilinear"),
    "densenet161.places365": (2208, 224, "bilinear"),
}


@pytest.mark.parametrize("name", sorted(VISUAL_SEED))
def test_spec_says_dim_input_and_interpolation(name):
    spec = get_spec(name)
    dim, crop_px, interpolation = VISUAL_SEED[name]
    assert (spec.embedding_dim, spec.visual.crop_px, spec.visual.interpolation) == (dim, crop_px, interpolation)
    assert spec.weights.sha256 or spec.weights.md5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_h14.swag_e2e_in1k_logits", "clip_vit_h14.laion2b_s32b_b79k"])
def test_large_models_run_at_their_full_input_size(name):
    """One frame at the registered size (518 px for ViT-H/14): the position embeddings the real file holds."""
    extractor = create_extractor(name, random_init=True)
    side = extractor.spec.visual.crop_px
    frame = np.random.default_rng(0).integers(0, 256, (1, side, side, 3), dtype=np.uint8)
    out = extractor.embed(frame)
    assert out.shape == (1, extractor.spec.embedding_dim) and np.isfinite(out).all()


def test_logits_variant_is_the_head_of_the_embedding_variant():
    """One module with a flag: same parameters, the logits are ``heads`` applied to the class-token embedding."""
    small = VisualInput(resize_shorter_px=28, crop_px=28, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic")
    embed_spec, logits_spec = (
        ExtractorSpec(**{**get_spec(n).to_dict(), "visual": small}) for n in ("vit_h14.swag_e2e_in1k", "vit_h14.swag_e2e_in1k_logits")
    )
    embedder = create_extractor(embed_spec.name, random_init=True, spec=embed_spec)
    images = torch.randn(2, 3, 28, 28)
    with torch.inference_mode():
        embedding = embedder.module(images)
        embedder.module.output = "logits"
        logits = embedder.module(images)
        expected = embedder.module.heads(embedding)
    assert embedding.shape == (2, 1280) and logits.shape == (2, 1000)
    torch.testing.assert_close(logits, expected)
    assert logits_spec.embedding_dim == 1000


def test_vit_refuses_images_of_another_size():
    extractor = create_extractor("vit_b16.in1k", random_init=True)
    with pytest.raises(ValueError, match="224"):
        extractor.module(torch.zeros(1, 3, 64, 64))


def test_decoder_honours_the_spec_interpolation(tmp_path):
    """Bicubic and area resizes of the same frame differ, and each is what swscale gives for that filter."""
    from tests.timestamp_media import write_timestamp_video

    path = write_timestamp_video(tmp_path / "v.mp4", n_frames=10, fps=10, width=320, height=240, gop=10).path
    sizes = [(120, 112), (120, 112, "area"), (120, 112, "bicubic")]
    frames = read_frames(path, [0.5], sizes)
    np.testing.assert_array_equal(frames[(120, 112)], frames[(120, 112, "area")])
    assert np.abs(frames[(120, 112, "bicubic")].astype(int) - frames[(120, 112, "area")].astype(int)).max() > 0
    with pytest.raises(ValueError, match="interpolation"):
        read_frames(path, [0.5], [(120, 112, "lanczos")])


def test_visual_input_rejects_an_unknown_interpolation_and_reads_old_specs():
    with pytest.raises(ValueError, match="bicubic"):
        VisualInput(256, 224, (0.5,) * 3, (0.5,) * 3, interpolation="nearest")  # type: ignore[arg-type]
    old = get_spec("mobilenet_v2.imagenet").to_dict()
    del old["visual"]["interpolation"]  # a spec recorded before the field existed
    assert ExtractorSpec.from_dict(old).visual.interpolation == "area"


def test_csail_loader_names_the_file_when_weights_only_refuses_it(tmp_path):
    path = tmp_path / "resnet50_places365.pth.tar"
    torch.save({"state_dict": {}, "best_prec1": Fraction(1, 3)}, path)  # not on weights_only's allow-list
    with pytest.raises(RuntimeError, match="resnet50_places365.pth.tar.*weights_only"):
        create_extractor("resnet50.places365", random_init=True).module.load_checkpoint(path)
    torch.save({"epoch": 1}, path)
    with pytest.raises(RuntimeError, match="state_dict"):
        create_extractor("resnet50.places365", random_init=True).module.load_checkpoint(path)


def test_open_clip_loader_refuses_a_key_of_neither_tower(tmp_path):
    module = create_extractor("clip_vit_b32.laion2b_s34b_b79k", random_init=True).module
    path = tmp_path / "ck.pt"
    torch.save({"visual." + k: v for k, v in module.visual.state_dict().items()} | {"extra.head": torch.zeros(1)}, path)
    with pytest.raises(RuntimeError, match="extra.head"):
        module.load_checkpoint(path)


def test_open_clip_loader_reads_safetensors(tmp_path):
    from safetensors.torch import save_file

    module = create_extractor("clip_vit_b32.laion2b_s34b_b79k", random_init=True).module
    state = {"visual." + k: v + 1 for k, v in module.visual.state_dict().items()} | {"logit_scale": torch.ones(())}
    path = tmp_path / "open_clip_model.safetensors"
    save_file(state, str(path))
    module.load_checkpoint(path)
    torch.testing.assert_close(module.visual.proj, state["visual.proj"])


# --- inference options -----------------------------------------------------------------------------------


def test_inference_options_resolve_per_device():
    asked = InferenceOptions(precision="auto", channels_last=True)
    assert asked.resolved("cpu") == InferenceOptions(precision="fp32", channels_last=False, batch_size=CPU_BATCH_SIZE)
    assert asked.resolved("cuda") == InferenceOptions(precision="bf16", channels_last=True, batch_size=CUDA_BATCH_SIZE)
    assert InferenceOptions(batch_size=3).resolved("cpu").batch_size == 3  # an explicit size is kept
    assert InferenceOptions(precision="fp16").resolved("cuda:1").precision == "fp16"
    assert InferenceOptions(precision="bf16").resolved("cpu").precision == "fp32"
    assert InferenceOptions.from_dict(asked.to_dict()) == asked
    with pytest.raises(ValueError, match="bf16"):
        InferenceOptions(precision="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        InferenceOptions(batch_size=0)


def test_precision_enters_the_fingerprint_and_float32_keeps_the_old_one():
    import hashlib
    import json

    spec = get_spec("debug_visual")
    legacy = hashlib.sha256(json.dumps({"spec": spec.to_dict(), "weights": "w"}, sort_keys=True).encode()).hexdigest()[:16]
    assert fingerprint(spec, "w") == fingerprint(spec, "w", "fp32") == legacy
    assert len({fingerprint(spec, "w", p) for p in ("fp32", "bf16", "fp16")}) == 3


def test_store_records_the_inference_options(tiny_dataset, tmp_path):
    from extract.runner import RunConfig, run_extraction
    from extract.store import EmbeddingStore

    store = str(tmp_path / "s.zarr")
    cfg = RunConfig(data=tiny_dataset, store=store, extractors=("debug_visual", "debug_audio"), device="cpu",
                    batch_sizes=(("debug_visual", 5),), precision="bf16", progress=False)
    run_extraction(cfg)
    attrs = EmbeddingStore.open(store).group_attrs("debug_visual")
    assert attrs["inference"] == {"precision": "fp32", "channels_last": False, "compile": False, "batch_size": 5}
    assert EmbeddingStore.open(store).group_attrs("debug_audio")["inference"]["batch_size"] == CPU_BATCH_SIZE  # the CPU default


def test_cli_parses_per_model_batch_sizes():
    from extract.cli import _parse_batch_size

    assert _parse_batch_size("vit_h14.swag_e2e_in1k=32") == ("vit_h14.swag_e2e_in1k", 32)
    with pytest.raises(ValueError, match="NAME=N"):
        _parse_batch_size("vit_h14.swag_e2e_in1k=0")
    with pytest.raises(ValueError, match="unknown extractor"):
        _parse_batch_size("nope=4")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", ["resnet50.places365", "vit_b16.in1k", "clip_vit_b32.laion2b_s34b_b79k"])
def test_cuda_autocast_is_close_to_float32(name, precision):
    """Mixed precision + channels-last on CUDA against the float32 CPU reference (random weights)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    frames = np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    reference = create_extractor(name, random_init=True).embed(frames)
    cuda = create_extractor(name, random_init=True, device="cuda", options=InferenceOptions(precision=precision))
    assert cuda.options.precision == precision and cuda.options.channels_last
    out = cuda.embed(frames)
    cosine = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.99, cosine
    assert cuda.fingerprint != create_extractor(name, random_init=True).fingerprint


def test_open_clip_import_and_tower_build_open_no_socket():
    """open_clip is a runtime dependency: importing it and building a tower must not touch the network."""
    import subprocess
    import sys

    code = (
        "import socket\n"
        "def refuse(*a, **k): raise RuntimeError('network touched')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "from extract.extractor import create_extractor\n"
        "create_extractor('clip_vit_b32.laion2b_s34b_b79k', random_init=True)\n"
        "import open_clip; print(open_clip.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "3.3.0"


def test_places365_squashes_the_frame_and_specs_round_trip(tmp_path):
    """``resize="square"``: the whole frame squashed to 256x256 (the seed's ``Resize((256, 256))``), then the crop."""
    import av

    from tests.timestamp_media import write_timestamp_video

    spec = get_spec("resnet50.places365")
    assert spec.visual.frame_size == (256, 224, "bilinear", "square")
    assert ExtractorSpec.from_dict(spec.to_dict()) == spec
    assert "resize" not in get_spec("mobilenet_v2.imagenet").to_dict()["visual"]  # default: fingerprints as before
    path = write_timestamp_video(tmp_path / "v.mp4", n_frames=10, fps=10, width=320, height=240, gop=10).path
    got = read_frames(path, [0.5], [(64, 48, "bilinear", "square")])[(64, 48, "bilinear", "square")][0]
    with av.open(str(path)) as container:
        frame = [f for f in container.decode(video=0) if f.time <= 0.5 + 1e-6][-1]
        squashed = frame.reformat(width=64, height=64, format="rgb24", interpolation="BILINEAR").to_ndarray()
    np.testing.assert_array_equal(got, squashed[8:56, 8:56])
    with pytest.raises(ValueError, match="resize"):
        read_frames(path, [0.5], [(64, 48, "bilinear", "squish")])


def test_decoder_rounds_like_torchvision_resize_and_center_crop():
    from extract.video_io import _crop_start, _resize_dims

    assert _resize_dims(320, 568, 224) == (224, 397)  # torchvision Resize(224): int(224 * 568 / 320)
    assert _resize_dims(1920, 1080, 518) == (920, 518)
    assert _crop_start(455, 224) == 116 and _crop_start(397, 224) == 86  # CenterCrop: int(round(d / 2))
