"""Decode one clip once for every extractor of a run: frames at k + 0.5 s, 1-s audio windows (+ context).

Each visual input size and each audio (rate, channels) format is produced once per clip, however many
extractors share it. Errors are kept per modality so a clip without audio still gets visual embeddings.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from extract.audio_io import audio_info, audio_windows, load_audio, seconds_in
from extract.errors import MediaError
from extract.manifest import Clip
from extract.registry import ExtractorSpec
from extract.store import FRAME_OFFSET_SECONDS
from extract.video_io import probe_video, read_frames, video_seconds

ImageSize = tuple  # (resize_shorter_px, crop_px, interpolation[, "square"]): VisualInput.frame_size
FrameOffsets = tuple[float, ...]  # VisualInput.frame_offsets_seconds; () = the store's FRAME_OFFSET_SECONDS
ImageKey = tuple[ImageSize, FrameOffsets]
AudioFormat = tuple[int, str, int]  # (sample_rate_hz, channels, context_samples)


@dataclass(frozen=True)
class DecodePlan:
    """The distinct inputs a set of extractors needs."""

    image_keys: frozenset[ImageKey]
    audio_formats: frozenset[AudioFormat]

    @classmethod
    def for_specs(cls, specs: list[ExtractorSpec]) -> "DecodePlan":
        return cls(
            frozenset(image_key(s) for s in specs if s.visual),
            frozenset(audio_format(s) for s in specs if s.audio),
        )

    @property
    def image_sizes(self) -> frozenset[ImageSize]:
        """Every frame size of the plan (whatever its sampling offsets)."""
        return frozenset(size for size, _ in self.image_keys)

    @property
    def frame_offsets(self) -> frozenset[FrameOffsets]:
        return frozenset(offsets for _, offsets in self.image_keys)


@dataclass
class DecodedClip:
    """Model-ready inputs of one clip, or the reason a modality failed."""

    clip_id: str
    # (n_seconds, crop, crop, 3) uint8; (n_seconds, n_offsets, crop, crop, 3) for several frame offsets
    frames: dict[ImageKey, np.ndarray] = field(default_factory=dict)
    audio: dict[AudioFormat, np.ndarray] = field(default_factory=dict)  # (n_seconds, C, window) float32
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)  # modality -> (stage, message)
    decode_seconds: float = 0.0

    def error_for(self, spec: ExtractorSpec) -> tuple[str, str] | None:
        return self.errors.get(spec.modality)

    def input_for(self, spec: ExtractorSpec) -> np.ndarray:
        return self.frames[image_key(spec)] if spec.visual is not None else self.audio[audio_format(spec)]


def image_key(spec: ExtractorSpec) -> ImageKey:
    """The decoded frames a visual extractor reads: its frame size and sampling offsets."""
    assert spec.visual is not None
    return spec.visual.frame_size, spec.visual.frame_offsets_seconds


def audio_format(spec: ExtractorSpec) -> AudioFormat:
    """The decoded audio an audio extractor reads."""
    assert spec.audio is not None
    return (spec.audio.sample_rate_hz, spec.audio.channels, spec.audio.context_samples)


def input_key(spec: ExtractorSpec) -> ImageKey | AudioFormat:
    """Key of ``spec``'s input among decoded inputs: its frame size and offsets, or its audio format."""
    return image_key(spec) if spec.visual is not None else audio_format(spec)


def read_second_frames(path, n_seconds: int, keys: frozenset[ImageKey]) -> dict[ImageKey, np.ndarray]:
    """Frames of seconds ``0..n_seconds-1`` for every key: one per second at ``k + FRAME_OFFSET_SECONDS``, or
    ``(n_seconds, n_offsets, ...)`` frames at ``k + offset`` for keys with several offsets (one decoding pass)."""
    offsets_of = {offsets: offsets or (FRAME_OFFSET_SECONDS,) for offsets in {o for _, o in keys}}
    times_s = sorted({k + o for offsets in offsets_of.values() for o in offsets for k in range(n_seconds)})
    row = {t: i for i, t in enumerate(times_s)}
    frames = read_frames(path, times_s, sorted({size for size, _ in keys}))
    out = {}
    for size, offsets in keys:
        rows = np.array([[row[k + o] for o in offsets_of[offsets]] for k in range(n_seconds)])  # (n, n_offsets)
        out[(size, offsets)] = frames[size][rows[:, 0]] if not offsets else frames[size][rows]
    return out


def audio_source(clip: Clip):
    """The file whose audio a clip uses: its own audio file, else the video's soundtrack."""
    return clip.audio_path if clip.audio_path is not None else clip.video_path


def probe_seconds(clip: Clip) -> tuple[int, str]:
    """Whole seconds covered by every modality that probes fine, and the probe errors ('' if none)."""
    seconds, errors = [], []
    if clip.video_path is not None:
        try:
            info = probe_video(clip.video_path)
            seconds.append(video_seconds(info))
            if seconds[-1] == 0:
                errors.append(f"{clip.video_path}: video of {info.duration_s:.3f} s is shorter than one second")
        except MediaError as err:
            errors.append(str(err))
    try:
        rate_hz, n_frames, _ = audio_info(audio_source(clip))
        seconds.append(seconds_in(n_frames / rate_hz))
        if seconds[-1] == 0:
            errors.append(f"{audio_source(clip)}: audio of {n_frames} samples at {rate_hz} Hz is shorter than one second")
    except MediaError as err:
        errors.append(str(err))
    return (min(seconds) if seconds else 0), "; ".join(dict.fromkeys(errors))  # a video's own track fails once


def decode_clip(clip: Clip, n_seconds: int, plan: DecodePlan, probe_error: str = "") -> DecodedClip:
    """Decode what ``plan`` needs for the first ``n_seconds`` seconds of ``clip``."""
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
            out.frames = read_second_frames(clip.video_path, n_seconds, plan.image_keys)
        except Exception as err:  # any failure is this clip's, never the run's
            out.errors["visual"] = ("decode", _describe(err, clip.video_path))
    if plan.audio_formats:
        try:
            waveform, rate_hz = load_audio(audio_source(clip))
            out.audio = {
                (target, channels, context): audio_windows(waveform, rate_hz, n_seconds, target, channels, context)
                for target, channels, context in sorted(plan.audio_formats)
            }
        except Exception as err:  # any failure is this clip's, never the run's
            out.errors["audio"] = ("decode", _describe(err, audio_source(clip)))
    out.decode_seconds = time.perf_counter() - started
    return out


def _describe(err: Exception, path: object) -> str:
    """MediaErrors already name their file; anything else gets the path and the exception type."""
    return str(err) if isinstance(err, MediaError) else f"{path}: {type(err).__name__}: {err}"
