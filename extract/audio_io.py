"""Audio probing, loading, 1-s windowing, and writing float WAVs.

soundfile reads what libsndfile knows (wav/flac/ogg, 8/16/24/32-bit int and float); PyAV reads the rest
(the audio track of an mp4/mkv, mp3, ...). Every failure is a :class:`~avscene.errors.MediaError` whose
message starts with the file path.

A PyAV-read stream is measured from its packets' timestamps (headers of MPEG-TS and other unindexed containers only
estimate it), starts at its first sample after encoder priming (see :func:`priming_samples`), and is decoded as one
run of samples from that start.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from avscene.errors import MediaError, require_file

PARTIAL_SECOND_TOLERANCE_S = 0.01
"""A last partial second at least ``1 - PARTIAL_SECOND_TOLERANCE_S`` long counts (zero-padded)."""

CHANNEL_MODES = ("mono", "stereo")
AAC_PRIMING_SAMPLES = 1024
"""Samples an AAC encoder (FFmpeg's, and most others') puts before the first real one. MP4 signals them (edit list,
applied by FFmpeg's decoder); MPEG-TS, Matroska and an MP4 remuxed with an offset do not, so they are dropped here."""


@dataclass(frozen=True)
class AudioSpan:
    """Where a file's first audio stream lies on the file's clock.

    Attributes:
        rate_hz: Sample rate.
        n_channels: Channel count.
        start_s: Presentation time of its first real sample (priming dropped), seconds on the file's clock.
        n_frames: Samples per channel from there.
    """

    rate_hz: int
    n_channels: int
    start_s: float
    n_frames: int

    @property
    def end_s(self) -> float:
        return self.start_s + self.n_frames / self.rate_hz


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


def priming_samples(stream: av.audio.stream.AudioStream, first_packet: av.Packet) -> int:
    """Encoder priming the decoder will not drop itself: ``AAC_PRIMING_SAMPLES`` for an AAC stream whose first packet
    carries no skip-samples side data (the container signals none), else 0."""
    if stream.codec_context.name != "aac" or first_packet.has_sidedata("skip_samples"):
        return 0
    return AAC_PRIMING_SAMPLES


def audio_span(path: Path) -> AudioSpan:
    """Rate, channels, start and length of a file's audio: from the header for libsndfile formats, else from one
    demux pass over the audio packets (no decoding).

    Raises:
        MediaError: missing file, unreadable or not media, no audio stream, or no samples.
    """
    path = Path(path)
    require_file(path)
    header = _sf_header(path)
    if header is not None:
        rate_hz, n_frames, n_channels = header
        start_s = 0.0
    else:
        container, stream = _open_audio_container(path)
        with container:
            rate_hz = int(stream.sample_rate or stream.codec_context.sample_rate or 0)
            n_channels = int(stream.codec_context.layout.nb_channels)
            first_pts, end_pts, priming = None, None, 0
            try:
                for packet in container.demux(stream):
                    if packet.pts is None:
                        continue
                    if first_pts is None:
                        first_pts, priming = packet.pts, priming_samples(stream, packet)
                    packet_end = packet.pts + (packet.duration or 0)
                    end_pts = packet_end if end_pts is None else max(end_pts, packet_end)
            except av.FFmpegError as err:
                raise MediaError(f"{path}: audio demux error ({err})") from err
            if first_pts is None or stream.time_base is None or rate_hz <= 0:
                n_frames, start_s = 0, 0.0
            else:
                begin = max(first_pts, stream.start_time if stream.start_time is not None else first_pts)
                start_s = float(begin * stream.time_base) + priming / rate_hz
                n_frames = round((float(end_pts * stream.time_base) - start_s) * rate_hz)
    if rate_hz <= 0:
        raise MediaError(f"{path}: unknown sample rate")
    if n_frames <= 0:
        raise MediaError(f"{path}: no audio samples")
    return AudioSpan(rate_hz, n_channels, start_s, n_frames)


def audio_info(path: Path) -> tuple[int, int, int]:
    """``(sample_rate_hz, n_frames, n_channels)`` of a file's audio (see :func:`audio_span`); ``n_frames`` counts
    samples per channel.

    Raises:
        MediaError: missing file, unreadable or not media, no audio stream, or no samples.
    """
    span = audio_span(path)
    return span.rate_hz, span.n_frames, span.n_channels


def _pyav_chunks(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    """Decode the first audio stream frame by frame: float32 planar ``(channels, samples)`` and its rate."""
    container, stream = _open_audio_container(path)
    resampler: av.AudioResampler | None = None
    rate_hz = 0
    reached = 0  # samples per channel yielded so far
    to_drop = None  # priming samples still to drop (known from the first packet)
    with container:
        try:
            for packet in container.demux(stream):
                if to_drop is None and packet.pts is not None:
                    to_drop = priming_samples(stream, packet)
                for frame in packet.decode():
                    if resampler is None:  # set up from decoded frames: HE-AAC headers may state half the rate
                        rate_hz = int(frame.sample_rate)
                        resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate_hz)
                    for converted in resampler.resample(frame):
                        chunk = converted.to_ndarray()
                        if to_drop:
                            chunk, to_drop = chunk[:, to_drop:], max(0, to_drop - chunk.shape[1])
                        reached += chunk.shape[1]
                        yield chunk, rate_hz
            if resampler is not None:
                for converted in resampler.resample(None):
                    yield converted.to_ndarray(), rate_hz
        except (av.FFmpegError, ValueError) as err:  # ValueError: the resampler refuses a mid-stream format change
            reached_s = reached / rate_hz if rate_hz else 0.0
            raise MediaError(f"{path}: audio decode error at {reached_s:.2f} s ({err})") from err


def _decode_with_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream to float32 planar ``(channels, samples)`` at its decoded rate."""
    chunks, rate_hz = [], 0
    for chunk, rate_hz in _pyav_chunks(path):
        chunks.append(chunk)
    if not chunks:
        raise MediaError(f"{path}: no audio samples")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32), rate_hz


def _native_chunks(path: Path, block_frames_s: int) -> Iterator[tuple[np.ndarray, int]]:
    """A file's audio as it decodes, float32 ``(channels, samples)`` pieces with their rate (libsndfile: blocks of
    ``block_frames_s`` seconds)."""
    header = _sf_header(path)
    if header is None:
        yield from _pyav_chunks(path)
        return
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=block_frames_s * header[0], dtype="float32", always_2d=True):
                yield np.ascontiguousarray(block.T), header[0]
    except sf.LibsndfileError as err:
        raise MediaError(f"{path}: unreadable audio ({err})") from err


def iter_audio_blocks(path: Path, block_seconds: int, offset_s: float = 0.0) -> Iterator[tuple[np.ndarray, int]]:
    """Yield a file's audio in consecutive blocks of ``block_seconds`` at its native rate (the last may be short).

    The bounded-memory form of :func:`load_audio`: at most about one block is held at a time, so a
    2-hour soundtrack is never loaded at once.

    Args:
        path: Audio file, or a video file with an audio track.
        block_seconds: Seconds per block.
        offset_s: Where the audio's first sample lies on the caller's timeline: a later start is preceded by that
            much silence, an earlier one loses its first ``-offset_s`` seconds.

    Yields:
        ``(waveform, sample_rate_hz)``: float32 ``(channels, samples)`` in [-1, 1].

    Raises:
        ValueError: ``block_seconds`` < 1.
        MediaError: missing file, unreadable or not media, no audio stream, or no samples.
    """
    if block_seconds < 1:
        raise ValueError(f"block_seconds must be >= 1, got {block_seconds}")
    path = Path(path)
    require_file(path)
    pending: list[np.ndarray] = []
    held, rate_hz, shift = 0, 0, None  # shift: samples of silence to add (> 0) or of audio to drop (< 0)
    for chunk, rate_hz in _native_chunks(path, block_seconds):
        if shift is None:
            shift = round(offset_s * rate_hz)
            if shift > 0:
                pending, held = [np.zeros((chunk.shape[0], shift), np.float32)], shift
        if shift < 0:
            chunk, shift = chunk[:, -shift:], min(0, shift + chunk.shape[1])  # the right side sees the uncut chunk
        pending.append(chunk)
        held += chunk.shape[1]
        block = block_seconds * rate_hz
        while held >= block:
            joined = np.concatenate(pending, axis=1)
            yield np.ascontiguousarray(joined[:, :block], dtype=np.float32), rate_hz
            pending, held = [joined[:, block:]], held - block
    if held:
        yield np.ascontiguousarray(np.concatenate(pending, axis=1), dtype=np.float32), rate_hz


class AudioSeconds:
    """Whole seconds of a file's audio, read in blocks, each request returned with up to ``margin_seconds`` of the
    real neighbouring audio on both sides, so windows cut from consecutive requests (resampling, context) equal
    those cut from the whole file. Holds about one block plus the margins. ``offset_s``: see
    :func:`iter_audio_blocks`."""

    def __init__(self, path: Path, block_seconds: int, margin_seconds: int = 1, offset_s: float = 0.0) -> None:
        self._blocks = iter_audio_blocks(path, block_seconds, offset_s)
        self.margin_seconds = margin_seconds
        first = next(self._blocks, None)
        if first is None:
            raise MediaError(f"{path}: no audio samples")
        self._buffer, self.rate_hz = first
        self._buffer_start = 0  # sample index of the buffer's first sample
        self._ended = False

    def around(self, start_s: int, n_seconds: int) -> tuple[np.ndarray, int]:
        """``(waveform, lead_seconds)``: audio from ``start_s - lead_seconds`` (``lead_seconds`` = the margin, less at
        the file's start) to ``start_s + n_seconds +`` the margin (less at its end). Requests must move forward."""
        first = max(0, start_s - self.margin_seconds) * self.rate_hz
        stop = (start_s + n_seconds + self.margin_seconds) * self.rate_hz
        if first < self._buffer_start:
            raise ValueError(f"audio before {self._buffer_start / self.rate_hz:.0f} s was already dropped")
        while self._buffer_start + self._buffer.shape[1] < stop and not self._ended:
            block = next(self._blocks, None)
            if block is None:
                self._ended = True
            else:
                self._buffer = np.concatenate([self._buffer, block[0]], axis=1)
        self._buffer, self._buffer_start = self._buffer[:, first - self._buffer_start :], first
        return self._buffer[:, : stop - first], start_s - first // self.rate_hz


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
    context_samples: int = 0,
) -> np.ndarray:
    """Cut a waveform into consecutive 1-s windows at a model's rate and channel layout.

    Channels are mixed first (mono: mean; stereo: first two, a mono input duplicated), then resampled
    with a polyphase filter when the rates differ. Window ``k`` holds output samples
    ``[k * target_rate_hz - context_samples, (k + 1) * target_rate_hz + context_samples)``: samples the
    file has are used (also beyond the last counted second), everything before its start or after its
    end is zero.

    Args:
        waveform: float ``(channels, samples)``.
        sample_rate_hz: Rate of ``waveform``.
        n_seconds: Number of windows.
        target_rate_hz: Output sample rate.
        channels: ``"mono"`` or ``"stereo"``.
        context_samples: Extra output samples on each side of every window (0: exactly the second).

    Returns:
        float32 ``(n_seconds, C, target_rate_hz + 2 * context_samples)`` with C = 1 (mono) or 2 (stereo).

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
    if context_samples < 0:
        raise ValueError(f"context_samples must be >= 0, got {context_samples}")
    x = np.asarray(waveform, dtype=np.float32)
    if channels == "mono":
        x = x.mean(axis=0, keepdims=True)
    elif x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0)
    else:
        x = x[:2]
    if sample_rate_hz != target_rate_hz:
        # Resample only what the windows need (plus filter margin) to save time on long inputs.
        needed_in = math.ceil((n_seconds + 1 + context_samples / target_rate_hz) * sample_rate_hz)
        gcd = math.gcd(sample_rate_hz, target_rate_hz)
        x = resample_poly(x[:, :needed_in], target_rate_hz // gcd, sample_rate_hz // gcd, axis=1)
    n_out = n_seconds * target_rate_hz
    padded = np.zeros((x.shape[0], n_out + 2 * context_samples), dtype=np.float32)  # zeros before the start
    n_copy = min(n_out + context_samples, x.shape[1])
    padded[:, context_samples : context_samples + n_copy] = x[:, :n_copy]
    if context_samples == 0:
        return np.ascontiguousarray(padded.reshape(x.shape[0], n_seconds, target_rate_hz).transpose(1, 0, 2))
    window = target_rate_hz + 2 * context_samples
    starts = np.arange(n_seconds) * target_rate_hz
    return np.ascontiguousarray(padded[:, starts[:, None] + np.arange(window)].transpose(1, 0, 2))


def write_float_wav(path: Path, waveform: np.ndarray, sample_rate_hz: int) -> None:
    """Write float ``(channels, samples)`` as a 32-bit float WAV (folders created)."""
    if waveform.ndim != 2 or waveform.shape[0] < 1:
        raise ValueError(f"waveform must be (channels, samples), got shape {waveform.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.ascontiguousarray(waveform.T, dtype=np.float32), sample_rate_hz, subtype="FLOAT")
