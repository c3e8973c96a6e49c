"""Frame decoding with torchcodec, on NVDEC (``--decode-device cuda``) or its CPU decoder: the frames
:func:`extract.video_io.iter_frames` picks, as torch uint8 tensors on the decode device.

Decoding is one sequential pass from the first frame to the last wanted one (sparse seeks are slower than the CPU on
NVDEC: torchcodec issues 536 and 765); frames that are not wanted are dropped as they come. Wanted frames are turned as
displayed, resized on the device (``torch.nn.functional.interpolate``, antialiased; ``area`` is ``mode="area"``)
and centre-cropped, so they reach the models without a trip through host memory. The resize is not swscale's: the
pixels differ slightly from the CPU path (tests/test_gpu_decode.py measures by how much). Needs the ``gpu`` extra
(torchcodec).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from avscene.errors import DeviceError, MediaError
from extract.video_io import (DEFAULT_INTERPOLATION, Orientation, VideoInfo, _crop_start, _resize_dims, probe_video,
                              shown_frame_index)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DECODE_DEVICES = ("cpu", "cuda", "auto")
"""``cpu``: PyAV (:mod:`extract.video_io`); ``cuda``: torchcodec on NVDEC; ``auto``: cuda when it works, else cpu."""
PTS_TOLERANCE_S = 1e-3
"""A decoded frame's time may differ from the probe's by this much (torchcodec and PyAV round pts differently)."""
TORCH_MODES = {"area": "area", "bilinear": "bilinear", "bicubic": "bicubic"}


def resolve_decode_device(requested: str) -> str:
    """``cpu`` or ``cuda``: the decoder that will run for ``requested`` (``auto`` falls back to ``cpu``, logged).

    Raises:
        DeviceError: ``cuda`` asked for without a CUDA device or without torchcodec (the ``gpu`` extra).
        ValueError: not one of ``DECODE_DEVICES``.
    """
    if requested not in DECODE_DEVICES:
        raise ValueError(f"--decode-device must be one of {', '.join(DECODE_DEVICES)}; got {requested!r}")
    if requested == "cpu":
        return "cpu"
    missing = cuda_decoder_missing()
    if missing and requested == "cuda":
        raise DeviceError(f"--decode-device cuda: {missing}")
    chosen = "cpu" if missing else "cuda"
    logger.info("decode device: %s%s", chosen, f" ({missing})" if missing else " (torchcodec on NVDEC)")
    return chosen


def cuda_decoder_missing() -> str:
    """Why torchcodec's CUDA decoder cannot run here ('' when it can)."""
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, RuntimeError, OSError) as err:  # RuntimeError/OSError: its FFmpeg libraries failed to load
        return f"torchcodec is not usable ({err}); install the gpu extra: pip install -e '.[gpu]'"
    return ""


def _open_decoder(path: Path, device: str):
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(str(path), device=device, seek_mode="exact", dimension_order="NCHW")
    except (RuntimeError, ValueError) as err:
        raise MediaError(f"{path}: torchcodec cannot open it ({err})") from err
    if device.startswith("cuda") and decoder.cpu_fallback:
        raise MediaError(f"{path}: NVDEC cannot decode this stream ({decoder.cpu_fallback}); use --decode-device cpu")
    return decoder


def _oriented(frame: "torch.Tensor", orientation: Orientation) -> "torch.Tensor":
    """``(3, H, W)`` turned as displayed (the same operations as :meth:`Orientation.apply`)."""
    out = frame.transpose(1, 2) if orientation.transpose else frame
    out = out.flip(1) if orientation.flip_rows else out
    return out.flip(2) if orientation.flip_cols else out


def resize_crop(frame: "torch.Tensor", shorter_px: int, crop_px: int, interpolation: str = DEFAULT_INTERPOLATION,
                resize: str = "shorter_side") -> "torch.Tensor":
    """``(3, H, W)`` uint8 -> resized on its device (``square``: to ``shorter_px`` square) and centre-cropped to uint8
    ``(crop_px, crop_px, 3)``, the window :func:`extract.video_io._to_array` cuts."""
    import torch.nn.functional as F

    height, width = frame.shape[1:]
    if resize == "square":
        out_w, out_h = shorter_px, shorter_px
    else:
        out_w, out_h = _resize_dims(width, height, shorter_px)
    mode = TORCH_MODES[interpolation]
    x = frame[None].float()
    x = F.interpolate(x, size=(out_h, out_w), mode=mode, **({} if mode == "area" else {"antialias": True}))
    top, left = _crop_start(out_h, crop_px), _crop_start(out_w, crop_px)
    x = x[0, :, top : top + crop_px, left : left + crop_px]
    return x.round_().clamp_(0, 255).to(frame.dtype).permute(1, 2, 0).contiguous()


def iter_frames_torchcodec(
    path: Path,
    times_s: Sequence[float],
    sizes: Sequence[tuple],
    device: str = "cuda",
    info: VideoInfo | None = None,
) -> Iterator[tuple[int, dict[tuple, "torch.Tensor"]]]:
    """:func:`extract.video_io.iter_frames` on torchcodec: ``(index into times_s, {size: uint8 (crop, crop, 3)
    tensor on device})`` in time order, from one sequential pass (every frame up to the last wanted one is decoded).

    Raises:
        MediaError: unreadable or undecodable file, a stream NVDEC cannot take, or frames whose times disagree with
            the probe's.
    """
    path = Path(path)
    info = info or probe_video(path)
    if not times_s:
        return
    order = sorted(range(len(times_s)), key=lambda i: times_s[i])
    frame_of = [shown_frame_index(info, times_s[i]) for i in order]
    decoder = _open_decoder(path, device)
    first_s = None
    converted: tuple[int, dict[tuple, torch.Tensor]] = (-1, {})
    position = 0
    try:
        for index in range(frame_of[-1] + 1):
            frame = decoder.get_frame_at(index)  # the next frame: torchcodec decodes on without seeking
            first_s = frame.pts_seconds if first_s is None else first_s
            expected_s = info.frame_times_s[index] - info.frame_times_s[0]
            if abs(frame.pts_seconds - first_s - expected_s) > PTS_TOLERANCE_S:
                raise MediaError(f"frame {index} decoded at {frame.pts_seconds - first_s:.3f} s, the probe says "
                                 f"{expected_s:.3f} s")
            while position < len(order) and frame_of[position] == index:
                if converted[0] != index:
                    shown = _oriented(frame.data, info.orientation)
                    converted = (index, {size: resize_crop(shown, *size) for size in sizes})
                yield order[position], converted[1]
                position += 1
    except (RuntimeError, IndexError) as err:
        raise MediaError(f"{path}: torchcodec decode error at frame {index} ({err})") from err


def read_frames_torchcodec(
    path: Path, times_s: Sequence[float], sizes: Sequence[tuple], device: str = "cuda"
) -> dict[tuple, "torch.Tensor"]:
    """:func:`extract.video_io.read_frames` on torchcodec: ``{size: uint8 (len(times_s), crop, crop, 3)}`` on device."""
    import torch

    out = {size: torch.empty((len(times_s), size[1], size[1], 3), dtype=torch.uint8, device=device) for size in sizes}
    for i, tensors in iter_frames_torchcodec(path, times_s, sizes, device):
        for size in sizes:
            out[size][i] = tensors[size]
    return out
