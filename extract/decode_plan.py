"""Decode a clip once for every extractor of a run: one frame per second (or several), 1-s audio windows (+ context).

Each visual input size and each audio (rate, channels) format is produced once per clip, however many
extractors share it: the frames come from one decoding pass for every visual extractor that shares a frame
choice, the audio is decoded once and resampled per model rate. Decoding goes forward in chunks of seconds
(:func:`iter_frame_chunks`, :func:`iter_audio_chunks`), so a long file is held one chunk at a time; a store's
clip is one chunk (:func:`decode_clip`). Errors are kept per modality so a clip without audio still gets
visual embeddings.

Seconds are counted on the clip's presentation timeline (:class:`Timeline`): 0 is the earliest start of the streams
used, each stream is placed at its own start time (a soundtrack starting 2 s after the picture begins with 2 s of
silence), and a second that a stream does not cover is marked not valid for that modality.
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

from extract.audio_io import PARTIAL_SECOND_TOLERANCE_S, AudioSeconds, AudioSpan, audio_span, audio_windows, seconds_in
from avscene.errors import MediaError
from extract.manifest import Clip
from extract.registry import ExtractorSpec
from extract.store import FRAME_CHOICES, FRAME_OFFSET_SECONDS
from extract.video_io import VideoInfo, iter_frames, probe_video

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
    valid: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (n_seconds,) bool; absent = all valid

    def valid_for(self, spec: ExtractorSpec, n_seconds: int) -> np.ndarray:
        """``(n_seconds,)`` bool: the seconds the extractor's stream covers."""
        return self.valid.get(spec.modality, np.ones(n_seconds, bool))

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
    video_offset_s: float = 0.0,
    decode_device: str = "cpu",
) -> Iterator[dict[ImageKey, np.ndarray]]:
    """Frames of seconds ``0..n_seconds-1`` for every key of ``plan``, in chunks of ``chunk_seconds`` seconds, from
    one decoding pass: ``(count, crop, crop, 3)`` at ``k + plan.frame_offset_s`` for one-frame keys, or
    ``(count, n_offsets, crop, crop, 3)`` at ``k + offset`` for keys with several offsets. ``video_offset_s``: where
    the first frame lies on the timeline the seconds count on (:class:`Timeline`). ``decode_device`` ``cuda``: torch
    uint8 tensors on the GPU from :func:`extract.gpu_decode.iter_frames_torchcodec` (a resolved device, see
    :func:`extract.gpu_decode.resolve_decode_device`).

    Raises:
        MediaError: missing, unreadable or undecodable file.
    """
    offsets = plan.second_offsets
    column = {o: j for j, o in enumerate(offsets)}
    times_s = [k + o - video_offset_s for k in range(n_seconds) for o in offsets]  # ascending: offsets lie in [0, 1)
    sizes = sorted(plan.image_sizes)
    if decode_device == "cpu":
        frames, stack = iter_frames(path, times_s, sizes, info=info, codec_threads=codec_threads), np.stack
    else:
        import torch

        from extract.gpu_decode import iter_frames_torchcodec

        frames, stack = iter_frames_torchcodec(path, times_s, sizes, decode_device, info), torch.stack
    for start in range(0, n_seconds, chunk_seconds):
        count = min(chunk_seconds, n_seconds - start)
        got = [arrays for _, arrays in itertools.islice(frames, count * len(offsets))]
        if len(got) != count * len(offsets):
            raise MediaError(f"{path}: the decoder stopped before second {start + count}")
        by_size = {size: stack([f[size] for f in got]).reshape(count, len(offsets), *got[0][size].shape)
                   for size in sizes}  # (count, offsets, crop, crop, 3)
        out = {}
        for size, key_offsets in plan.image_keys:
            columns = [column[o] for o in plan.offsets_of(key_offsets)]
            out[(size, key_offsets)] = by_size[size][:, columns[0]] if not key_offsets else by_size[size][:, columns]
        yield out


def iter_audio_chunks(
    path: Path, plan: DecodePlan, n_seconds: int, chunk_seconds: int, audio_offset_s: float = 0.0
) -> Iterator[dict[AudioFormat, np.ndarray]]:
    """1-s windows of seconds ``0..n_seconds-1`` for every audio format of ``plan``, ``(count, C, window)``, in
    chunks of ``chunk_seconds``. The file is decoded once, in blocks; each chunk is cut with its neighbouring audio
    so that windows (context, resampling) equal those of the whole file. ``audio_offset_s``: where the first sample
    lies on the timeline (silence before it).

    Raises:
        MediaError: missing file, unreadable or not media, no audio stream, or no samples.
    """
    seconds = AudioSeconds(path, chunk_seconds, plan.audio_margin_seconds, audio_offset_s)
    for start in range(0, n_seconds, chunk_seconds):
        count = min(chunk_seconds, n_seconds - start)
        waveform, lead = seconds.around(start, count)
        yield {fmt: audio_windows(waveform, seconds.rate_hz, lead + count, *fmt)[lead:]
               for fmt in sorted(plan.audio_formats)}


TRUNCATED_MARGIN_S = 0.5
"""A header duration longer than the streams' data by more than this says the file was cut (headers of MPEG-TS and
Matroska files round or pad by some tens of milliseconds)."""
START_TOLERANCE_S = 0.001
"""Streams whose starts differ by at most this start together: the rounding of millisecond clocks (Matroska, WebM) and
of MP4 edit lists (a remux with an offset), not a delay anyone hears."""


@dataclass(frozen=True)
class Timeline:
    """Where a clip's streams lie on its presentation timeline, seconds from the earliest start of the streams used
    (a separate audio file runs on its own clock, from its own start).

    Attributes:
        video: The video's probe (None when no frames are needed).
        audio: The audio's span (None when no audio is needed).
        video_offset_s: Where the first frame lies on the timeline.
        audio_offset_s: Where the first real audio sample lies (encoder priming dropped).
        header_duration_s: The duration the video's container header states, if any.
    """

    video: VideoInfo | None
    audio: AudioSpan | None
    video_offset_s: float = 0.0
    audio_offset_s: float = 0.0
    header_duration_s: float | None = None

    def _spans(self) -> dict[str, tuple[float, float]]:
        spans = {}
        if self.video is not None:
            spans["visual"] = (self.video_offset_s, self.video_offset_s + self.video.duration_s)
        if self.audio is not None:
            spans["audio"] = (self.audio_offset_s, self.audio_offset_s + self.audio.n_frames / self.audio.rate_hz)
        return spans

    @property
    def duration_s(self) -> float:
        """The file's length as a player shows it: to the latest end of its streams, or what the header states when
        that is longer by more than ``TRUNCATED_MARGIN_S`` (a truncated file)."""
        data_end = max((end for _, end in self._spans().values()), default=0.0)
        header = self.header_duration_s or 0.0
        return header if header > data_end + TRUNCATED_MARGIN_S else data_end

    @property
    def n_seconds(self) -> int:
        """Whole seconds from 0 up to where the first stream ends (see :func:`extract.audio_io.seconds_in`)."""
        return seconds_in(min((end for _, end in self._spans().values()), default=0.0))

    def valid(self, modality: str, start_s: int, count: int) -> np.ndarray:
        """``(count,)`` bool: which of seconds ``start_s ..`` the modality's stream covers whole (a stream may start late)."""
        begin, end = self._spans()[modality]
        seconds = np.arange(start_s, start_s + count)
        return (begin <= seconds + PARTIAL_SECOND_TOLERANCE_S) & (end >= seconds + 1 - PARTIAL_SECOND_TOLERANCE_S)

    @property
    def covered(self) -> np.ndarray:
        """``(n_seconds,)`` bool: the seconds every stream covers (the seconds a check judges)."""
        return np.logical_and.reduce([self.valid(m, 0, self.n_seconds) for m in self._spans()] or [np.zeros(0, bool)])

    @property
    def orientation(self) -> str:
        """How the frames are turned for display ('' as stored; see :class:`extract.video_io.Orientation`)."""
        return self.video.orientation.describe() if self.video is not None else ""

    def missing_reasons(self) -> list[str]:
        """Why whole seconds of the file are not covered: streams starting late or ending early, a header promising
        more than the data holds ([] when every whole second is covered)."""
        duration = self.duration_s
        whole = seconds_in(duration)
        if int(self.covered.sum()) >= whole:
            return []
        reasons, names = [], {"visual": "video", "audio": "audio"}
        for modality, (begin, end) in self._spans().items():
            if begin > PARTIAL_SECOND_TOLERANCE_S:
                reasons.append(f"the {names[modality]} starts at {begin:.2f} s")
            if seconds_in(end) < whole:
                reasons.append(f"the {names[modality]} ends at {end:.2f} s of {duration:.2f} s")
        if self.header_duration_s and duration == self.header_duration_s:
            reasons.append(f"the header states {duration:.2f} s but the data ends earlier (a truncated file?)")
        return reasons or [f"{whole - int(self.covered.sum())} whole second(s) not covered by every stream"]

    def coverage(self) -> dict:
        """What was judged of the file: its duration, the seconds covered (first and count) and why others are not."""
        covered, reasons = self.covered, self.missing_reasons()
        first = int(np.argmax(covered)) if covered.any() else 0
        return {"duration_s": round(self.duration_s, 3), "seconds_covered": int(covered.sum()), "first_second": first,
                "partial": bool(reasons), "missing": "; ".join(reasons)}


def probe_timeline(clip: Clip, plan: DecodePlan | None = None) -> tuple[Timeline, str]:
    """The streams ``plan`` needs (every stream without a plan) placed on one timeline, and the probe errors ('' if
    none): a stream that fails to probe is left out (its modality fails at its decode)."""
    timeline, errors = _probe(clip, plan)
    return timeline, "; ".join(dict.fromkeys(errors))  # a video's own track fails once


def _probe(clip: Clip, plan: DecodePlan | None) -> tuple[Timeline, list[str]]:
    """:func:`probe_timeline` with the errors in probing order (video first)."""
    video, audio, errors = None, None, []
    if clip.video_path is not None and (plan is None or plan.image_keys):
        try:
            video = probe_video(clip.video_path)
        except MediaError as err:
            errors.append(str(err))
    if plan is None or plan.audio_formats:
        try:
            audio = audio_span(audio_source(clip))
        except MediaError as err:
            errors.append(str(err))
    shared_clock = video is not None and audio is not None and audio_source(clip) == clip.video_path
    origin = min(video.start_s, audio.start_s) if shared_clock else None
    if shared_clock and abs(video.start_s - audio.start_s) <= START_TOLERANCE_S:
        origin = None  # timestamp rounding, not a delay: both start at 0
    timeline = Timeline(
        video, audio,
        video_offset_s=video.start_s - origin if video is not None and origin is not None else 0.0,
        audio_offset_s=audio.start_s - origin if audio is not None and origin is not None else 0.0,
        header_duration_s=video.header_duration_s if video is not None else None,
    )
    for stream, length in ((video, video.duration_s if video else 0), (audio, audio.end_s - audio.start_s if audio else 0)):
        if stream is not None and length < 1 - PARTIAL_SECOND_TOLERANCE_S:
            kind = "video" if stream is video else "audio"
            errors.append(f"{stream.path if stream is video else audio_source(clip)}: too short: {kind} of "
                          f"{length:.3f} s is shorter than one second")
    return timeline, errors


def video_probe_error(path: Path) -> str:
    """'' when the decode path can open a video in ``path`` (decided by probing it, whatever its extension), else why not."""
    try:
        probe_video(path)
    except MediaError as err:
        return str(err)
    return ""


def probe_seconds(clip: Clip, plan: DecodePlan | None = None) -> tuple[int, str]:
    """Whole seconds covered by every modality that probes fine (see :func:`probe_timeline`), and the probe errors."""
    timeline, errors = probe_timeline(clip, plan)
    return timeline.n_seconds, errors


def common_timeline(clip: Clip, plan: DecodePlan) -> Timeline:
    """The timeline of every modality ``plan`` needs, each of them readable.

    Raises:
        MediaError: a file is missing or unreadable, lacks the stream needed, or is shorter than one second.
    """
    if plan.image_keys and clip.video_path is None:
        raise MediaError(f"{clip.clip_id}: no video file")
    timeline, errors = _probe(clip, plan)
    if errors:
        raise MediaError(errors[0])
    if timeline.n_seconds < 1 or not timeline.covered.any():
        raise MediaError(f"{clip.video_path or audio_source(clip)}: no whole second that every stream covers "
                         f"({'; '.join(timeline.missing_reasons()) or 'nothing to decode'})")
    return timeline


def iter_decoded(clip: Clip, plan: DecodePlan, timeline: Timeline, chunk_seconds: int) -> Iterator[DecodedClip]:
    """Both modalities of ``clip`` in chunks of seconds of ``timeline`` (the streaming form; any decode error raises).

    Raises:
        MediaError: missing, unreadable or undecodable media.
    """
    if plan.image_keys and clip.video_path is None:
        raise MediaError(f"{clip.clip_id}: the manifest gives no video file")
    n_seconds = timeline.n_seconds
    frames = iter_frame_chunks(clip.video_path, plan, n_seconds, chunk_seconds, timeline.video,
                               video_offset_s=timeline.video_offset_s) if plan.image_keys else None
    audio = iter_audio_chunks(audio_source(clip), plan, n_seconds, chunk_seconds,
                              timeline.audio_offset_s) if plan.audio_formats else None
    for start in range(0, n_seconds, chunk_seconds):
        started = time.perf_counter()
        out = DecodedClip(clip.clip_id, start_s=start)
        count = min(chunk_seconds, n_seconds - start)
        out.frames = next(frames) if frames is not None else {}
        out.audio = next(audio) if audio is not None else {}
        out.valid = _valid(timeline, plan, start, count)
        out.decode_seconds = time.perf_counter() - started
        yield out


def _valid(timeline: Timeline, plan: DecodePlan, start_s: int, count: int) -> dict[str, np.ndarray]:
    """Per modality ``plan`` decodes, which of seconds ``start_s ..`` its stream covers."""
    modalities = [m for m, needed in (("visual", plan.image_keys), ("audio", plan.audio_formats)) if needed]
    return {m: timeline.valid(m, start_s, count) for m in modalities
            if (timeline.video if m == "visual" else timeline.audio) is not None}


def decode_clip(
    clip: Clip, n_seconds: int, plan: DecodePlan, probe_error: str = "", codec_threads: int = 0,
    decode_device: str = "cpu", timeline: Timeline | None = None,
) -> DecodedClip:
    """Decode what ``plan`` needs for the first ``n_seconds`` seconds of ``clip`` (one chunk; errors per modality),
    each stream placed on the clip's timeline (:func:`probe_timeline`, unless the caller probed it: ``timeline``);
    frames on ``decode_device`` (see :func:`iter_frame_chunks`)."""
    started = time.perf_counter()
    out = DecodedClip(clip.clip_id)
    if n_seconds <= 0:
        reason = probe_error or "shorter than one second"
        for modality in ("visual", "audio"):
            out.errors[modality] = ("probe", reason)
        return out
    if timeline is None:
        timeline, _ = probe_timeline(clip, plan)  # a stream failing here fails below, at its decode
    out.valid = _valid(timeline, plan, 0, n_seconds)
    if plan.image_keys:
        try:
            if clip.video_path is None:
                raise MediaError(f"{clip.clip_id}: the manifest gives no video file")
            out.frames = next(iter_frame_chunks(clip.video_path, plan, n_seconds, n_seconds, timeline.video,
                                                codec_threads, timeline.video_offset_s, decode_device))
        except Exception as err:  # any failure is this clip's, never the run's
            out.errors["visual"] = ("decode", describe_error(err, clip.video_path))
    if plan.audio_formats:
        try:
            out.audio = next(iter_audio_chunks(audio_source(clip), plan, n_seconds, n_seconds, timeline.audio_offset_s))
        except Exception as err:  # any failure is this clip's, never the run's
            out.errors["audio"] = ("decode", describe_error(err, audio_source(clip)))
    out.decode_seconds = time.perf_counter() - started
    return out


def decode_whole_clip(clip: Clip, plan: DecodePlan, max_seconds: int | None = None) -> DecodedClip:
    """Probe the modalities ``plan`` needs and decode every whole second that those probing fine cover (at most
    ``max_seconds``); a modality that cannot be read fails at its decode, as in extraction."""
    timeline, probe_error = probe_timeline(clip, plan)
    n_seconds = timeline.n_seconds if max_seconds is None else min(timeline.n_seconds, max_seconds)
    return decode_clip(clip, n_seconds, plan, probe_error, timeline=timeline)


def describe_error(err: Exception, path: object) -> str:
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
