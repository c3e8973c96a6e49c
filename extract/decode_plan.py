"""Decode a clip once for every extractor of a run: one frame per second (or several), 1-s audio windows (+ context).

Each visual input size and each audio (rate, channels) format is produced once per clip, however many
extractors share it: the frames come from one decoding pass for every visual extractor that shares a frame
choice, the audio is decoded once and resampled per model rate. Decoding goes forward in chunks of seconds
(:func:`iter_frame_chunks`, :func:`iter_audio_chunks`), so a long file is held one chunk at a time; a store's
clip is one chunk (:func:`decode_clip`). Errors are kept per modality so a clip without audio still gets
visual embeddings.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.audio_io import AudioSeconds, audio_info, audio_windows, seconds_in
from avscene.errors import MediaError
from extract.manifest import Clip
from extract.registry import ExtractorSpec
from extract.store import FRAME_CHOICES, FRAME_OFFSET_SECONDS
from extract.video_io import VideoInfo, iter_frames, probe_video, video_seconds

ImageSize = tuple  # (resize_shorter_px, crop_px, interpolation[, "square"]): VisualInput.frame_size
FrameOffsets = tuple[float, ...]  # VisualInput.frame_offsets_seconds; () = the plan's frame choice (one per second)
ImageKey = tuple[ImageSize, FrameOffsets]
AudioFormat = tuple[int, str, int]  # (sample_rate_hz, channels, context_samples)


@dataclass(frozen=True)
class DecodePlan:
    """The distinct inputs a set of extractors needs, and the frame of each second for one-frame extractors."""

    image_keys: frozenset[ImageKey]
    audio_formats: frozenset[AudioFormat]
    frame_offset_s: float = FRAME_OFFSET_SECONDS  # see extract.store.FRAME_CHOICES

    @classmethod
    def for_specs(cls, specs: list[ExtractorSpec], frame_choice: str = "middle") -> "DecodePlan":
        if frame_choice not in FRAME_CHOICES:
            raise ValueError(f"frame_choice must be one of {tuple(FRAME_CHOICES)}, got {frame_choice!r}")
        return cls(
            frozenset(image_key(s) for s in specs if s.visual),
            frozenset(audio_format(s) for s in specs if s.audio),
            FRAME_CHOICES[frame_choice],
        )

    @property
    def image_sizes(self) -> frozenset[ImageSize]:
        """Every frame size of the plan (whatever its sampling offsets)."""
        return frozenset(size for size, _ in self.image_keys)

    def offsets_of(self, offsets: FrameOffsets) -> FrameOffsets:
        """The offsets in a second that a key's frames are taken at."""
        return offsets or (self.frame_offset_s,)

    @property
    def second_offsets(self) -> tuple[float, ...]:
        """Every distinct offset within a second that some key needs, ascending."""
        return tuple(sorted({o for _, offsets in self.image_keys for o in self.offsets_of(offsets)}))

    @property
    def audio_margin_seconds(self) -> int:
        """Neighbouring audio a chunk needs: the widest window context, plus a second for the resampler's edges."""
        return 1 + max((math.ceil(fmt[2] / fmt[0]) for fmt in self.audio_formats), default=0)


@dataclass
class DecodedClip:
    """Model-ready inputs of seconds ``start_s .. start_s + n - 1`` of one clip, or the reason a modality failed."""

    clip_id: str
    # (n_seconds, crop, crop, 3) uint8; (n_seconds, n_offsets, crop, crop, 3) for several frame offsets
    frames: dict[ImageKey, np.ndarray] = field(default_factory=dict)
    audio: dict[AudioFormat, np.ndarray] = field(default_factory=dict)  # (n_seconds, C, window) float32
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)  # modality -> (stage, message)
    decode_seconds: float = 0.0
    start_s: int = 0

    def error_for(self, spec: ExtractorSpec) -> tuple[str, str] | None:
        return self.errors.get(spec.modality)

    def input_for(self, spec: ExtractorSpec) -> np.ndarray:
        return self.frames[image_key(spec)] if spec.visual is not None else self.audio[audio_format(spec)]


def frame_fingerprint(fingerprint: str, spec: ExtractorSpec, frame_choice: str) -> str:
    """A group's fingerprint with the run's frame choice: unchanged for ``middle`` (stores written before the
    option), for audio extractors and for specs that fix their own frame offsets; hashed with the choice otherwise."""
    if frame_choice == "middle" or spec.visual is None or spec.visual.frame_offsets_seconds:
        return fingerprint
    payload = json.dumps({"extractor": fingerprint, "frame_choice": frame_choice}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def image_key(spec: ExtractorSpec) -> ImageKey:
    """The decoded frames a visual extractor reads: its frame size and sampling offsets."""
    assert spec.visual is not None
    return spec.visual.frame_size, spec.visual.frame_offsets_seconds


def audio_format(spec: ExtractorSpec) -> AudioFormat:
    """The decoded audio an audio extractor reads."""
    assert spec.audio is not None
    return (spec.audio.sample_rate_hz, spec.audio.channels, spec.audio.context_samples)


def audio_source(clip: Clip) -> Path | None:
    """The file whose audio a clip uses: its own audio file, else the video's soundtrack."""
    return clip.audio_path if clip.audio_path is not None else clip.video_path


def iter_frame_chunks(
    path: Path,
    plan: DecodePlan,
    n_seconds: int,
    chunk_seconds: int,
    info: VideoInfo | None = None,
    codec_threads: int = 0,
) -> Iterator[dict[ImageKey, np.ndarray]]:
    """Frames of seconds ``0..n_seconds-1`` for every key of ``plan``, in chunks of ``chunk_seconds`` seconds, from
    one decoding pass: ``(count, crop, crop, 3)`` at ``k + plan.frame_offset_s`` for one-frame keys, or
    ``(count, n_offsets, crop, crop, 3)`` at ``k + offset`` for keys with several offsets.

    Raises:
        MediaError: missing, unreadable or undecodable file.
    """
    offsets = plan.second_offsets
    column = {o: j for j, o in enumerate(offsets)}
    times_s = [k + o for k in range(n_seconds) for o in offsets]  # ascending: offsets lie in [0, 1)
    sizes = sorted(plan.image_sizes)
    frames = iter_frames(path, times_s, sizes, info=info, codec_threads=codec_threads)
    for start in range(0, n_seconds, chunk_seconds):
        count = min(chunk_seconds, n_seconds - start)
        got = [arrays for _, arrays in itertools.islice(frames, count * len(offsets))]
        if len(got) != count * len(offsets):
            raise MediaError(f"{path}: the decoder stopped before second {start + count}")
        by_size = {size: np.stack([f[size] for f in got]).reshape(count, len(offsets), *got[0][size].shape)
                   for size in sizes}  # (count, offsets, crop, crop, 3)
        out = {}
        for size, key_offsets in plan.image_keys:
            columns = [column[o] for o in plan.offsets_of(key_offsets)]
            out[(size, key_offsets)] = by_size[size][:, columns[0]] if not key_offsets else by_size[size][:, columns]
        yield out


def iter_audio_chunks(
    path: Path, plan: DecodePlan, n_seconds: int, chunk_seconds: int
) -> Iterator[dict[AudioFormat, np.ndarray]]:
    """1-s windows of seconds ``0..n_seconds-1`` for every audio format of ``plan``, ``(count, C, window)``, in
    chunks of ``chunk_seconds``. The file is decoded once, in blocks; each chunk is cut with its neighbouring audio
    so that windows (context, resampling) equal those of the whole file.

    Raises:
        MediaError: missing file, unreadable or not media, no audio stream, or no samples.
    """
    seconds = AudioSeconds(path, chunk_seconds, plan.audio_margin_seconds)
    for start in range(0, n_seconds, chunk_seconds):
        count = min(chunk_seconds, n_seconds - start)
        waveform, lead = seconds.around(start, count)
        yield {fmt: audio_windows(waveform, seconds.rate_hz, lead + count, *fmt)[lead:]
               for fmt in sorted(plan.audio_formats)}


def probe_seconds(clip: Clip, plan: DecodePlan | None = None) -> tuple[int, str]:
    """Whole seconds covered by every modality that probes fine, and the probe errors ('' if none); with ``plan``,
    only the modalities it decodes are probed."""
    seconds, errors = [], []
    if clip.video_path is not None and (plan is None or plan.image_keys):
        try:
            info = probe_video(clip.video_path)
            seconds.append(video_seconds(info))
            if seconds[-1] == 0:
                errors.append(f"{clip.video_path}: video of {info.duration_s:.3f} s is shorter than one second")
        except MediaError as err:
            errors.append(str(err))
    if plan is None or plan.audio_formats:
        try:
            rate_hz, n_frames, _ = audio_info(audio_source(clip))
            seconds.append(seconds_in(n_frames / rate_hz))
            if seconds[-1] == 0:
                errors.append(f"{audio_source(clip)}: audio of {n_frames} samples at {rate_hz} Hz is shorter than one second")
        except MediaError as err:
            errors.append(str(err))
    return (min(seconds) if seconds else 0), "; ".join(dict.fromkeys(errors))  # a video's own track fails once


def common_seconds(clip: Clip, plan: DecodePlan) -> tuple[int, VideoInfo | None]:
    """Whole seconds that every modality ``plan`` needs covers, and the video's probe (None without frames).

    Raises:
        MediaError: a file is missing or unreadable, lacks the stream needed, or is shorter than one second.
    """
    info, lengths = None, []
    if plan.image_keys:
        if clip.video_path is None:
            raise MediaError(f"{clip.clip_id}: no video file")
        info = probe_video(clip.video_path)
        lengths.append(f"{info.duration_s:.2f} s of video")
    seconds = [video_seconds(info)] if info is not None else []
    if plan.audio_formats:
        rate_hz, n_frames, _ = audio_info(audio_source(clip))
        seconds.append(seconds_in(n_frames / rate_hz))
        lengths.append(f"{n_frames / rate_hz:.2f} s of audio")
    n_seconds = min(seconds, default=0)
    if n_seconds < 1:
        raise MediaError(f"{clip.video_path or audio_source(clip)}: too short: {' and '.join(lengths) or 'nothing to decode'}; "
                         "at least one whole second of each modality is needed")
    return n_seconds, info


def iter_decoded(
    clip: Clip, plan: DecodePlan, n_seconds: int, chunk_seconds: int, info: VideoInfo | None = None
) -> Iterator[DecodedClip]:
    """Both modalities of ``clip`` in chunks of seconds (the streaming form; any decode error raises).

    Raises:
        MediaError: missing, unreadable or undecodable media.
    """
    if plan.image_keys and clip.video_path is None:
        raise MediaError(f"{clip.clip_id}: the manifest gives no video file")
    frames = iter_frame_chunks(clip.video_path, plan, n_seconds, chunk_seconds, info) if plan.image_keys else None
    audio = iter_audio_chunks(audio_source(clip), plan, n_seconds, chunk_seconds) if plan.audio_formats else None
    for start in range(0, n_seconds, chunk_seconds):
        started = time.perf_counter()
        out = DecodedClip(clip.clip_id, start_s=start)
        out.frames = next(frames) if frames is not None else {}
        out.audio = next(audio) if audio is not None else {}
        out.decode_seconds = time.perf_counter() - started
        yield out


def decode_clip(
    clip: Clip, n_seconds: int, plan: DecodePlan, probe_error: str = "", codec_threads: int = 0
) -> DecodedClip:
    """Decode what ``plan`` needs for the first ``n_seconds`` seconds of ``clip`` (one chunk; errors per modality)."""
    started = time.perf_counter()
    out = DecodedClip(clip.clip_id)
    if n_seconds <= 0:
        reason = probe_error or "shorter than one second"
        for modality in ("visual", "audio"):
            out.errors[modality] = ("probe", reason)
        return out
    if plan.image_keys:
        try:
            if clip.video_path is None:
                raise MediaError(f"{clip.clip_id}: the manifest gives no video file")
            out.frames = next(iter_frame_chunks(clip.video_path, plan, n_seconds, n_seconds, codec_threads=codec_threads))
        except Exception as err:  # any failure is this clip's, never the run's
            out.errors["visual"] = ("decode", _describe(err, clip.video_path))
    if plan.audio_formats:
        try:
            out.audio = next(iter_audio_chunks(audio_source(clip), plan, n_seconds, n_seconds))
        except Exception as err:  # any failure is this clip's, never the run's
            out.errors["audio"] = ("decode", _describe(err, audio_source(clip)))
    out.decode_seconds = time.perf_counter() - started
    return out


def decode_whole_clip(clip: Clip, plan: DecodePlan, max_seconds: int | None = None) -> DecodedClip:
    """Probe the modalities ``plan`` needs and decode every whole second that those probing fine cover (at most
    ``max_seconds``); a modality that cannot be read fails at its decode, as in extraction."""
    n_seconds, probe_error = probe_seconds(clip, plan)
    return decode_clip(clip, n_seconds if max_seconds is None else min(n_seconds, max_seconds), plan, probe_error)


def _describe(err: Exception, path: object) -> str:
    """MediaErrors already name their file; anything else gets the path and the exception type."""
    return str(err) if isinstance(err, MediaError) else f"{path}: {type(err).__name__}: {err}"


def thumbnail_frames(path: Path, seconds: list[int], size_px: int) -> np.ndarray:
    """The frame of each second (the one shown at ``k + FRAME_OFFSET_SECONDS``, as extraction's ``middle``), its
    shorter side resized to ``size_px`` and centre-cropped square: uint8 ``(len(seconds), size_px, size_px, 3)``.

    Raises:
        MediaError: the file cannot be probed or decoded.
    """
    size = (size_px, size_px, "area")
    frames = np.zeros((len(seconds), size_px, size_px, 3), np.uint8)
    for i, chosen in iter_frames(Path(path), [k + FRAME_OFFSET_SECONDS for k in seconds], [size]):
        frames[i] = chosen[size]
    return frames
