"""The torchcodec decode backend (``--decode-device cuda``): frame selection against the PyAV path with torchcodec's
CPU decoder, the device choice without a GPU, and (``gpu`` marker, a CUDA machine) frame equality and embedding drift
of NVDEC frames for every seed visual model."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from avscene.demo.synthetic import write_video
from avscene.errors import DeviceError
from extract.video_io import read_frames
from tests.timestamp_media import read_timestamp, timestamp_frame

SIZES = [(128, 112), (128, 112, "bicubic", "square")]


def _torchcodec_or_skip():
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception as err:  # ImportError, or its FFmpeg libraries failing to load
        pytest.skip(f"torchcodec is not usable here (extra 'gpu'): {err}")


@pytest.fixture(scope="module")
def bframe_clock(tmp_path_factory) -> Path:
    """3-s 30 fps timestamp video, x264 superfast (B-frames), keyframe every 30 frames."""
    path = tmp_path_factory.mktemp("tc") / "clock.mp4"
    write_video(path, lambda i: timestamp_frame(i, 192, 144), 90, 30, 192, 144, gop=30, x264_preset="superfast")
    return path


def test_torchcodec_picks_the_frames_pyav_picks(bframe_clock):
    _torchcodec_or_skip()
    from extract.gpu_decode import read_frames_torchcodec

    times_s = [2.5, 0.5, 29 / 30, 1 + 29 / 30, 0.0, -0.3, 7.0]  # any order, before the start, past the end
    ours = read_frames_torchcodec(bframe_clock, times_s, SIZES, device="cpu")
    pyav = read_frames(bframe_clock, times_s, SIZES)
    for size in SIZES:
        got = ours[size].numpy()
        assert got.shape == pyav[size].shape
        assert [read_timestamp(f) for f in got] == [read_timestamp(f) for f in pyav[size]] == [75, 15, 29, 59, 0, 0, 89]
        assert np.abs(got.astype(np.int16) - pyav[size]).mean() < 3.0  # another resizer, the same picture


def test_cuda_decoding_without_a_gpu_stops_and_auto_says_it_uses_the_cpu(caplog):
    import torch

    from extract.gpu_decode import resolve_decode_device

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_decode_device("cuda")
    with caplog.at_level(logging.INFO, logger="extract.gpu_decode"):
        assert resolve_decode_device("auto") == "cpu"
    assert "decode device: cpu (torch sees no CUDA device)" in caplog.text
    assert resolve_decode_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="--decode-device"):
        resolve_decode_device("nvdec")


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.gpu
def test_nvdec_frames_and_embeddings_match_the_cpu_path(tmp_path):
    """NVDEC frames vs PyAV's (max / mean difference, PSNR) and each seed visual model's embeddings (random weights)
    from both (cosine per second); the figures are printed (pytest -s) for the benchmark page."""
    import torch

    from bench.media import TauLikeMedia, write_tau_like_video
    from extract.extractor import create_extractor
    from extract.gpu_decode import read_frames_torchcodec
    from extract.registry import get_spec, resolve_names

    path = write_tau_like_video(tmp_path / "tau_like.mp4", TauLikeMedia(seconds=4), seed=0)
    times_s = [k + 0.5 for k in range(4)]
    for name in [n for n in resolve_names("seed") if get_spec(n).visual is not None]:
        size = get_spec(name).visual.frame_size
        cpu = read_frames(path, times_s, [size])[size]
        gpu = read_frames_torchcodec(path, times_s, [size], device="cuda")[size]
        assert gpu.is_cuda
        diff = np.abs(gpu.cpu().numpy().astype(np.int16) - cpu)
        extractor = create_extractor(name, random_init=True, device="cuda")
        with torch.no_grad():
            a, b = extractor.embed(cpu), extractor.embed(gpu)
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        print(f"{name}: max diff {diff.max()}, mean diff {diff.mean():.3f}, PSNR {psnr_db(gpu.cpu().numpy(), cpu):.1f} dB, "
              f"cosine per second {np.round(cosine, 4).tolist()}")
        assert psnr_db(gpu.cpu().numpy(), cpu) >= 30.0
        assert cosine.min() >= 0.98


def test_frames_decoded_as_tensors_flow_through_the_plan_and_the_runner_s_embedding(bframe_clock, monkeypatch):
    """The ``cuda`` decode path's plumbing, on torchcodec's CPU decoder: decode_clip gives tensors (stacked per second),
    the runner's batching embeds them, and the embeddings are those of the PyAV frames up to the resizer."""
    _torchcodec_or_skip()
    import torch

    from extract import gpu_decode
    from extract.decode_plan import DecodePlan, decode_clip
    from extract.extractor import create_extractor
    from extract.manifest import Clip
    from extract.runner import embed_block

    open_decoder = gpu_decode._open_decoder
    monkeypatch.setattr(gpu_decode, "_open_decoder", lambda path, device: open_decoder(path, "cpu"))
    extractor = create_extractor("debug_visual", device="cpu")
    plan = DecodePlan.for_specs([extractor.spec])
    clip = Clip("clock", "", "", bframe_clock, None)
    on_device, pyav = decode_clip(clip, 3, plan, decode_device="cuda"), decode_clip(clip, 3, plan)
    assert not on_device.errors and not pyav.errors
    tensors, arrays = on_device.input_for(extractor.spec), pyav.input_for(extractor.spec)
    assert isinstance(tensors, torch.Tensor) and tuple(tensors.shape) == arrays.shape == (3, 32, 32, 3)
    assert np.abs(tensors.numpy().astype(np.int16) - arrays).mean() < 3.0
    ours, theirs = (embed_block(extractor, [d], 3) for d in (on_device, pyav))
    assert (ours.status == theirs.status).all() and ours.valid.all()
    assert np.abs(ours.embeddings - theirs.embeddings).max() < 0.05


def test_extraction_asking_for_cuda_decoding_without_a_gpu_stops_before_writing(tiny_dataset, tmp_path):
    import torch

    from extract.runner import RunConfig, run_extraction

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    store = tmp_path / "never.zarr"
    with pytest.raises(DeviceError, match="--decode-device cuda: torch sees no CUDA device"):
        run_extraction(RunConfig(data=tiny_dataset, store=str(store), extractors=("debug_visual",), device="cpu",
                                 decode_device="cuda", progress=False))
    assert not store.exists()


def test_auto_decodes_on_the_cpu_where_cuda_decoding_would_be_refused(monkeypatch, caplog):
    """As if NVDEC worked here: ``auto`` falls back to the CPU for models off the GPU or augmented views (logged);
    ``cuda`` refuses them with the reason."""
    from extract import gpu_decode
    from extract.extractor import create_extractor
    from extract.runner import RunConfig, _decode_device
    from extract.views import parse_views

    monkeypatch.setattr(gpu_decode, "resolve_decode_device", lambda requested: "cuda")
    extractors = [create_extractor("debug_visual", device="cpu")]
    for views in ("", "paper_aug:1"):
        cfg = RunConfig(data=Path("x"), store="s", extractors=("debug_visual",), views=parse_views(views, 0),
                        decode_device="auto")
        with caplog.at_level(logging.INFO, logger="extract.runner"):
            assert _decode_device(cfg, extractors) == ("cpu", "thread")
        assert "decode device: cpu" in caplog.text
        with pytest.raises(DeviceError, match="--decode-device cuda: .*; decode with --decode-device cpu"):
            _decode_device(replace(cfg, decode_device="cuda"), extractors)
