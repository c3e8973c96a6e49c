"""Audio probing, loading and 1-s windowing.

soundfile reads what libsndfile knows (wav/flac/ogg, 8/16/24/32-bit int and float); PyAV reads the rest
(the audio track of an mp4/mkv, mp3, ...). Every failure is a :class:`~extract.errors.MediaError` whose
message starts with the file path.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from extract.errors import MediaError, require_file

PARTIAL_SECOND_TOLERANCE_S = 0.01
"""A last partial second at least ``1 - PARTIAL_SECOND_TOLERANCE_S`` long counts (zero-padded)."""

CHANNEL_MODES = ("mono", "stereo")


def seconds_in(duration_s: float) -> int:
    """Whole seconds of a clip: a last partial second counts (zero-padded) only if it is >= 0.99 s long.

    TAU wavs are 480,000 +- 1 frames at 48 kHz; all of them give 10 seconds.

    Args:
        duration_s: Clip duration in seconds.

    Returns:
        ``floor(duration_s + PARTIAL_SECOND_TOLERANCE_S)``, never negative.
    """
    return max(0, math.floor(duration_s + PARTIAL_SECOND_TOLERANCE_S))


def _sf_header(path: Path) -> tuple[int, int, int] | None:
    """``(sample_rate_hz, n_frames, n_channels)`` from libsndfile, or None when it does not know the format."""
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError:
        return None
    return int(info.samplerate), int(info.frames), int(info.channels)


def _open_audio_container(path: Path) -> tuple[av.container.InputContainer, av.audio.stream.AudioStream]:
    """Open ``path`` with PyAV and return it with its first audio stream (closed again on failure)."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"{path}: not a readable media file ({err})") from err
    if not container.streams.audio:
        container.close()
        raise MediaError(f"{path}: no audio stream")
    return container, container.streams.audio[0]


def audio_info(path: Path) -> tuple[int, int, int]:
    """Sample rate, length and channel count of a file's audio, read from its header only.

    For PyAV-read files the length is estimated from the stream (or container) duration, since
    compressed streams count packets, not samples.

    Args:
        path: Audio file, or a video file with an audio track.

    Returns:
        ``(sample_rate_hz, n_frames, n_channels)``; ``n_frames`` counts samples per channel.

    Raises:
        MediaError: missing file, unreadable or not media, no audio stream, or no samples.
    """
    path = Path(path)
    require_file(path)
    header = _sf_header(path)
    if header is not None:
        rate_hz, n_frames, n_channels = header
    else:
        container, stream = _open_audio_container(path)
        with container:
            rate_hz = int(stream.sample_rate or stream.codec_context.sample_rate or 0)
            n_channels = int(stream.codec_context.layout.nb_channels)
            if stream.duration is not None and stream.time_base is not None:
                duration_s = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration_s = container.duration / av.time_base
            else:
                duration_s = 0.0
            n_frames = round(duration_s * rate_hz)
    if rate_hz <= 0:
        raise MediaError(f"{path}: unknown sample rate")
    if n_frames <= 0:
        raise MediaError(f"{path}: no audio samples")
    return rate_hz, n_frames, n_channels


def _decode_with_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to float32 planar ``(channels, samples)`` at its decoded rate."""
    container, stream = _open_audio_container(path)
    resampler: av.AudioResampler | None = None
    rate_hz = 0
    chunks: list[np.ndarray] = []
    with container:
        try:
            for frame in container.decode(stream):
                if resampler is None:  # set up from decoded frames: HE-AAC headers may state half the rate
                    rate_hz = int(frame.sample_rate)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate_hz)
                chunks.extend(converted.to_ndarray() for converted in resampler.resample(frame))
            if resampler is not None:
                chunks.extend(converted.to_ndarray() for converted in resampler.resample(None))
        except (av.FFmpegError, ValueError) as err:  # ValueError: the resampler refuses a mid-stream format change
            reached_s = sum(chunk.shape[1] for chunk in chunks) / rate_hz if rate_hz else 0.0
            raise MediaError(f"{path}: audio decode error at {reached_s:.2f} s ({err})") from err
    if not chunks:
        raise MediaError(f"{path}: no audio samples")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32), rate_hz


def load_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decode a whole file's audio at its native sample rate.

    Args:
        path: Audio file, or a video file with an audio track (its first audio stream is used).

    Returns:
        ``(waveform, sample_rate_hz)``: float32 ``(channels, samples)`` in [-1, 1].

    Raises:
        MediaError: missing file, unreadable or not media, no audio stream, or no samples.
    """
    path = Path(path)
    require_file(path)
    if _sf_header(path) is not None:
        try:
            data, rate_hz = sf.read(str(path), dtype="float32", always_2d=True)
        except sf.LibsndfileError as err:
            raise MediaError(f"{path}: unreadable audio ({err})") from err
        waveform = np.ascontiguousarray(data.T)
    else:
        waveform, rate_hz = _decode_with_pyav(path)
    if waveform.shape[1] == 0:
        raise MediaError(f"{path}: no audio samples")
    return waveform, int(rate_hz)


def audio_windows(
    waveform: np.ndarray,
    sample_rate_hz: int,
    n_seconds: int,
    target_rate_hz: int,
    channels: Literal["mono", "stereo"],
) -> np.ndarray:
    """Cut a waveform into consecutive 1-s windows at a model's rate and channel layout.

    Channels are mixed first (mono: mean; stereo: first two, a mono input duplicated), then resampled
    with a polyphase filter when the rates differ. Window ``k`` holds output samples
    ``[k * target_rate_hz, (k + 1) * target_rate_hz)``; a short tail is zero-padded, extra samples dropped.

    Args:
        waveform: float ``(channels, samples)``.
        sample_rate_hz: Rate of ``waveform``.
        n_seconds: Number of windows.
        target_rate_hz: Output sample rate.
        channels: ``"mono"`` or ``"stereo"``.

    Returns:
        float32 ``(n_seconds, C, target_rate_hz)`` with C = 1 (mono) or 2 (stereo).

    Raises:
        ValueError: on a bad shape, rate, count or channel mode.
    """
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {channels!r}")
    if waveform.ndim != 2 or waveform.shape[0] < 1:
        raise ValueError(f"waveform must be (channels >= 1, samples), got shape {waveform.shape}")
    if sample_rate_hz <= 0 or target_rate_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {sample_rate_hz} and {target_rate_hz}")
    if n_seconds < 0:
        raise ValueError(f"n_seconds must be >= 0, got {n_seconds}")
    x = np.asarray(waveform, dtype=np.float32)
    if channels == "mono":
        x = x.mean(axis=0, keepdims=True)
    elif x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0)
    else:
        x = x[:2]
    if sample_rate_hz != target_rate_hz:
        # Resample only what the windows need (plus filter margin) to save time on long inputs.
        needed_in = math.ceil((n_seconds + 1) * sample_rate_hz)
        gcd = math.gcd(sample_rate_hz, target_rate_hz)
        x = resample_poly(x[:, :needed_in], target_rate_hz // gcd, sample_rate_hz // gcd, axis=1)
    n_out = n_seconds * target_rate_hz
    out = np.zeros((x.shape[0], n_out), dtype=np.float32)
    n_copy = min(n_out, x.shape[1])
    out[:, :n_copy] = x[:, :n_copy]
    return np.ascontiguousarray(out.reshape(x.shape[0], n_seconds, target_rate_hz).transpose(1, 0, 2))
