"""Video probing and frame sampling with PyAV: the frame shown at given times, resized in the decoder.

A probe demuxes the packets of the first video stream once (no decoding) to learn the frame count, the
duration and where the keyframes are. The keyframe layout decides how to reach the sampled times:
seeking (each seek decodes from the preceding keyframe) is cheap when keyframes are dense, one
sequential pass is cheaper when they are sparse. Times are seconds from the stream's first frame.

Every seek is verified by the time of the first frame it decodes: one that lands after its keyframe (MPEG-TS and
other unindexed containers seek by byte position) makes the rest of the file decode sequentially, and containers
without an index are never seeked. Frames are turned as a player shows them (the stream's display matrix: 90/180/270
degrees and mirroring) before they are resized.

Frames that are neither shown at a sampled time nor used by the codec to predict others are skipped: each packet
that carries no wanted frame is decoded with ``skip_frame = "NONREF"``, so the decoder drops it when no other frame
refers to it. The wanted frames come out bit-identical to decoding everything.
"""
from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from extract.audio_io import seconds_in
from avscene.errors import MediaError, require_file
from extract.registry import RESIZE_MODES

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "seek", "sequential")
SEEK_OVERHEAD_FRAMES = 10
"""Cost of one seek (reposition, decoder flush, thread pipeline refill) in decoded frames; ~8-11 measured on 1080p."""
UNINDEXED_FORMATS = frozenset({"mpegts", "mpegtsraw", "mpeg", "mpegvideo", "h264", "hevc", "m4v"})
"""FFmpeg demuxers without a seek index (transport and program streams, raw elementary streams): decoded sequentially."""
TIME_TOLERANCE_S = 1e-6
"""A frame whose presentation time is within this of ``t`` counts as shown at ``t`` (pts rounding)."""
SWSCALE_FILTERS = {"area": "AREA", "bilinear": "BILINEAR", "bicubic": "BICUBIC"}
"""swscale filter of the in-decoder resize per spec interpolation; ``area`` (averaging, no aliasing when
shrinking 1080p) unless a size names another. swscale widens its filters when shrinking, so
``bilinear``/``bicubic`` here are antialiased like torchvision's ``Resize(antialias=True)``."""
DEFAULT_INTERPOLATION = "area"


@dataclass(frozen=True)
class Orientation:
    """A display matrix reduced to quarter turns: transpose, then flip rows and/or columns (identity by default)."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @classmethod
    def from_display_matrix(cls, matrix: Sequence[int]) -> "Orientation":
        """From FFmpeg's 3x3 display matrix (row-major ``[a b u; c d v; x y w]``, 16.16 fixed point): a source pixel
        at column p, row q is shown at column ``a p + c q``, row ``b p + d q``; other angles snap to the nearest
        quarter turn."""
        a, b, _, c, d, *_ = matrix
        if abs(a) + abs(d) >= abs(b) + abs(c):  # no transpose: shown column ~ a p, row ~ d q
            return cls(False, bool(d < 0), bool(a < 0))
        return cls(True, bool(b < 0), bool(c < 0))  # transposed: shown row ~ b p, column ~ c q

    @property
    def mirrored(self) -> bool:
        """A mirror image (an odd number of transposes and flips)."""
        return (self.transpose + self.flip_rows + self.flip_cols) % 2 == 1

    @property
    def rotation_deg(self) -> int:
        """Counter-clockwise quarter turns of the shown picture in degrees (ffprobe's ``rotation``); a mirrored one
        is this turn followed by a left-right mirror."""
        turn = (self.transpose, self.flip_rows, self.flip_cols != self.mirrored)
        return {(False, False, False): 0, (True, True, False): 90, (False, True, True): 180, (True, False, True): 270}[turn]

    def describe(self) -> str:
        """'' for frames shown as stored, else e.g. ``rotated 90`` or ``rotated 180, mirrored``."""
        if self == Orientation():
            return ""
        return f"rotated {self.rotation_deg}" + (", mirrored" if self.mirrored else "")

    @property
    def filters(self) -> list[tuple[str, str | None]]:
        """The FFmpeg filters that turn a frame so: ``(name, argument)`` in order."""
        return ([("transpose", "cclock_flip")] if self.transpose else []) + ([("vflip", None)] if self.flip_rows else []) \
            + ([("hflip", None)] if self.flip_cols else [])


@dataclass(frozen=True)
class VideoInfo:
    """What one demux pass over a file's first video stream tells.

    Attributes:
        path: The file.
        width: Frame width in pixels.
        height: Frame height in pixels.
        fps: Average frame rate in frames per second.
        duration_s: From the first frame's start to the last frame's end, in seconds.
        n_frames: Number of video packets (frames).
        keyframe_times_s: Presentation times of the keyframes, seconds from the first frame, ascending.
        frame_times_s: Presentation times of every frame, seconds from the first frame, ascending.
        start_s: Presentation time of the first frame on the file's clock (what the other streams' times refer to).
        header_duration_s: The duration the container's header states (None when it states none); more than
            ``duration_s`` for a truncated file.
        seekable: Whether the container has a seek index (see ``UNINDEXED_FORMATS``).
        orientation: How the frames are turned for display (the display matrix of the first frame).
    """

    path: Path
    width: int
    height: int
    fps: float
    duration_s: float
    n_frames: int
    keyframe_times_s: tuple[float, ...]
    frame_times_s: tuple[float, ...] = ()
    start_s: float = 0.0
    header_duration_s: float | None = None
    seekable: bool = True
    orientation: Orientation = field(default_factory=Orientation)


def frame_orientation(frame: av.VideoFrame) -> Orientation:
    """The orientation a decoded frame's display matrix asks for (identity without one)."""
    from av.sidedata.sidedata import Type

    matrix = frame.side_data.get(Type.DISPLAYMATRIX)
    return Orientation() if matrix is None else Orientation.from_display_matrix(np.frombuffer(bytes(matrix), "<i4"))


def _open(path: Path) -> av.container.InputContainer:
    require_file(path)
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"{path}: not a readable media file ({err})") from err


TEXT_VIDEO_CODECS = frozenset({"ansi", "bintext", "xbin", "idf", "tty"})
"""FFmpeg's tty demuxer reads any text file as 'video' drawn by one of these codecs: never a recording."""


def _video_stream(path: Path, container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream, refusing files whose only 'video' is text or a single still image."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        raise MediaError(f"{path}: no video stream" + (f" (only {', '.join(kinds)} streams)" if kinds else ""))
    stream = container.streams.video[0]
    fmt, codec = container.format.name, stream.codec_context.name
    if fmt == "tty" or codec in TEXT_VIDEO_CODECS:
        raise MediaError(f"{path}: not a video: FFmpeg reads it as text ({fmt} demuxer, {codec} codec)")
    if fmt == "image2" or fmt.endswith("_pipe"):
        raise MediaError(f"{path}: not a video: a still image ({fmt} demuxer, {codec} codec)")
    return stream


def probe_video(path: Path) -> VideoInfo:
    """Probe a video by demuxing (not decoding) the packets of its first video stream.

    Raises:
        MediaError: missing file, unreadable or not media, no video stream, or no video packets.
    """
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(path, container)
        time_base = stream.time_base
        pts_values: list[int] = []
        keyframes: list[int] = []
        end_pts = None
        try:
            for packet in container.demux(stream):
                if packet.pts is None:  # the demuxer's final flush packet
                    continue
                pts_values.append(packet.pts)
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
                packet_end = packet.pts + (packet.duration or 0)
                end_pts = packet_end if end_pts is None else max(end_pts, packet_end)
        except av.FFmpegError as err:
            reached = float((max(pts_values) - min(pts_values)) * time_base) if pts_values else 0.0
            raise MediaError(f"{path}: demux error at {reached:.2f} s ({err})") from err
        if not pts_values or time_base is None:
            raise MediaError(f"{path}: no video frames")
        rate = stream.average_rate or stream.guessed_rate
        start = stream.start_time or 0
        fps = float(rate) if rate else (len(pts_values) / float((end_pts - start) * time_base))
        if end_pts == max(pts_values):  # packets without durations: assume one frame period for the last
            end_pts += round(1 / (fps * time_base))
        return VideoInfo(
            path=path,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            fps=fps,
            duration_s=float((end_pts - start) * time_base),
            n_frames=len(pts_values),
            keyframe_times_s=tuple(sorted(float((pts - start) * time_base) for pts in keyframes)),
            frame_times_s=tuple(sorted(float((pts - start) * time_base) for pts in pts_values)),
            start_s=float(start * time_base),
            header_duration_s=container.duration / av.time_base if container.duration else None,
            seekable=container.format.name.split(",")[0] not in UNINDEXED_FORMATS,
            orientation=_first_frame_orientation(path),
        )


def _first_frame_orientation(path: Path) -> Orientation:
    """The display orientation of a file's first decodable video frame (identity when none decodes: the decode
    pass reports that)."""
    try:
        with av.open(str(path)) as container:
            return frame_orientation(next(container.decode(container.streams.video[0])))
    except (av.FFmpegError, StopIteration, OSError):
        return Orientation()


def video_seconds(info: VideoInfo) -> int:
    """Whole seconds of a video (see :func:`extract.audio_io.seconds_in`)."""
    return seconds_in(info.duration_s)


def _keyframe_before(info: VideoInfo, time_s: float) -> float:
    """Time of the last keyframe at or before ``time_s`` (the first keyframe if none is)."""
    index = bisect.bisect_right(info.keyframe_times_s, time_s + TIME_TOLERANCE_S) - 1
    return info.keyframe_times_s[max(index, 0)] if info.keyframe_times_s else 0.0


def shown_frame_index(info: VideoInfo, time_s: float) -> int:
    """Index (in presentation order) of the frame shown at ``time_s``: the last frame at or before it (the first
    frame for a time before it, the last one past the end), as :meth:`_Cursor.frame_at` picks it."""
    return max(bisect.bisect_right(info.frame_times_s, time_s + TIME_TOLERANCE_S) - 1, 0)


def shown_frame_times(info: VideoInfo, times_s: Sequence[float]) -> frozenset[float]:
    """Presentation times of the frames shown at ``times_s`` (:func:`shown_frame_index`): a decode must output these;
    the others may be skipped."""
    return frozenset(info.frame_times_s[shown_frame_index(info, t)] for t in times_s)


def _plan(info: VideoInfo, times_s: Sequence[float], seek: bool) -> tuple[list[bool], float]:
    """Which sorted targets need a seek, and the estimated number of decoded frames.

    With ``seek`` a target is reached by seeking to its preceding keyframe unless the decoder is already
    at or past that keyframe, in which case it decodes on (as a sequential pass does).
    """
    next_frame_s = 0.0  # time of the frame the decoder would produce next
    seeks: list[bool] = []
    cost = 0.0
    for time_s in sorted(times_s):
        time_s = min(time_s, info.duration_s)
        keyframe_s = _keyframe_before(info, time_s)
        do_seek = seek and keyframe_s > next_frame_s + TIME_TOLERANCE_S
        start_s = keyframe_s if do_seek else next_frame_s
        decoded = (time_s - start_s) * info.fps + 1 if time_s + TIME_TOLERANCE_S >= start_s else 0.0
        cost += decoded + (SEEK_OVERHEAD_FRAMES if do_seek else 0)
        next_frame_s = max(start_s, time_s + 1 / info.fps)
        seeks.append(do_seek)
    return seeks, cost


def choose_strategy(info: VideoInfo, times_s: Sequence[float]) -> Literal["seek", "sequential"]:
    """Pick the decode strategy that decodes fewer frames for these sampled times.

    Seeking costs ``SEEK_OVERHEAD_FRAMES`` plus the frames from the target's preceding keyframe up to
    the target; a sequential pass decodes every frame up to the last target. Ties go to sequential.
    """
    _, seek_cost = _plan(info, times_s, seek=True)
    _, sequential_cost = _plan(info, times_s, seek=False)
    strategy: Literal["seek", "sequential"] = "seek" if seek_cost < sequential_cost else "sequential"
    logger.debug(
        "%s: seek ~%.0f frames, sequential ~%.0f frames -> %s", info.path, seek_cost, sequential_cost, strategy
    )
    return strategy


class SeekMissed(Exception):
    """A seek did not land on the keyframe asked for (the file is then decoded sequentially)."""


class SkipMissed(Exception):
    """With non-reference skipping, the frame shown at a time is not the one the probe names (packet times that do
    not match the frames they carry: the file is then decoded without skipping)."""


class _Cursor:
    """Decodes forward through one video stream, remembering the last frame shown at the current time.

    With ``wanted_s`` (see :func:`shown_frame_times`), packets of other frames are decoded with
    ``skip_frame = "NONREF"``: the codec drops those no other frame refers to.
    """

    def __init__(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 wanted_s: frozenset[float] | None = None) -> None:
        self._container = container
        self._stream = stream
        self._start = stream.start_time or 0  # the same origin as probe_video's times
        self._time_base = stream.time_base
        self._wanted_s = wanted_s
        self.frames_decoded = 0
        self._frames: Iterator[av.VideoFrame] = self._decode()
        self._ahead: av.VideoFrame | None = None
        self.shown: av.VideoFrame | None = None
        self.reached_s = 0.0

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Frames from the current position, skipping unwanted non-reference frames when wanted times are given."""
        codec = self._stream.codec_context
        for packet in self._container.demux(self._stream):
            if self._wanted_s is not None:  # a packet without pts (the final flush) decodes as usual
                keep = packet.pts is None or self._pts_s(packet.pts) in self._wanted_s
                codec.skip_frame = "DEFAULT" if keep else "NONREF"
            for frame in self._stream.decode(packet):
                self.frames_decoded += 1
                yield frame

    def _pts_s(self, pts: int) -> float:
        return float((pts - self._start) * self._time_base)  # probe_video's formula: equal floats for equal pts

    def _time_s(self, frame: av.VideoFrame) -> float:
        if frame.pts is None:
            raise MediaError("decoded frame without a timestamp")
        return self._pts_s(frame.pts)

    def _peek(self) -> av.VideoFrame | None:
        if self._ahead is None:
            self._ahead = next(self._frames, None)
            if self._ahead is not None:
                self.reached_s = self._time_s(self._ahead)
        return self._ahead

    def seek(self, keyframe_s: float) -> None:
        """Reposition on the keyframe at ``keyframe_s``.

        Raises:
            SeekMissed: the first frame decoded after the seek is later than that keyframe (or none decodes).
        """
        pts = self._start + round(Fraction(keyframe_s) / self._time_base)
        try:
            self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
            self._frames = self._decode()
            self._ahead = None
            self.shown = None
            landed = self._peek()
        except av.FFmpegError as err:
            raise SeekMissed(f"seek to {keyframe_s:.2f} s failed ({err})") from err
        if landed is None or self._time_s(landed) > keyframe_s + TIME_TOLERANCE_S:
            where = "no frame" if landed is None else f"the frame at {self._time_s(landed):.2f} s"
            raise SeekMissed(f"seek to the keyframe at {keyframe_s:.2f} s decoded {where}")

    def _shown_until_s(self, frame: av.VideoFrame) -> float | None:
        """When ``frame`` stops being shown, from its own duration (None when the stream gives none)."""
        if not frame.duration:
            return None
        return self._time_s(frame) + float(frame.duration * self._time_base)

    def frame_at(self, time_s: float) -> av.VideoFrame:
        """The last frame with presentation time <= ``time_s`` (the last frame of the file past its end).

        A frame whose duration covers ``time_s`` is returned without decoding the next one.
        """
        while (frame := self._peek()) is not None and self._time_s(frame) <= time_s + TIME_TOLERANCE_S:
            self.shown, self._ahead = frame, None
            until_s = self._shown_until_s(frame)
            if until_s is not None and until_s > time_s + TIME_TOLERANCE_S:
                return frame
        if self.shown is None:  # time before the first decoded frame: show that frame
            if frame is None:
                raise MediaError("no frames decoded")
            return frame
        return self.shown


def _turned(frame: av.VideoFrame, orientation: Orientation) -> av.VideoFrame:
    """``frame`` turned as ``orientation`` says, at full size, by FFmpeg's own filters (``transpose``, ``vflip``,
    ``hflip``, as ffmpeg's autorotate does): the frame keeps its format and properties, so a turned frame is resized
    and converted exactly as the same picture stored upright."""
    import av.filter

    graph = av.filter.Graph()
    last = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 1))
    for name, argument in orientation.filters:
        node = graph.add(name, argument)
        last.link_to(node)
        last = node
    sink = graph.add("buffersink")
    last.link_to(sink)
    graph.configure()
    graph.push(frame)
    return graph.pull()


def _resize_dims(width: int, height: int, shorter_px: int) -> tuple[int, int]:
    """Width and height with the shorter side equal to ``shorter_px``, aspect ratio kept; the longer side is
    truncated, ``int(shorter_px * long / short)``, as torchvision's ``Resize(int)`` computes it (the seed
    pipelines' rule: 320x568 -> 224x397, 1920x1080 -> 920x518)."""
    if width <= height:
        return shorter_px, max(1, int(shorter_px * height / width))
    return max(1, int(shorter_px * width / height)), shorter_px


def _crop_start(size_px: int, crop_px: int) -> int:
    """First row/column of a centred crop, rounded as torchvision's ``CenterCrop`` does (``int(round(d / 2))``)."""
    return int(round((size_px - crop_px) / 2.0))


def _to_array(frame: av.VideoFrame, shorter_px: int, crop_px: int, interpolation: str = DEFAULT_INTERPOLATION,
              resize: str = "shorter_side") -> np.ndarray:
    """Turn as displayed (:func:`frame_orientation`), resize in the decoder (rgb24; ``square``: to ``shorter_px`` x
    ``shorter_px``) and centre-crop to uint8 ``(crop_px, crop_px, 3)``."""
    orientation = frame_orientation(frame)
    if orientation != Orientation():  # turned at full size, then resized as an upright frame would be
        frame = _turned(frame, orientation)
    if resize == "square":
        width, height = shorter_px, shorter_px
    else:
        width, height = _resize_dims(frame.width, frame.height, shorter_px)
    rgb = frame.reformat(
        width=width, height=height, format="rgb24", interpolation=SWSCALE_FILTERS[interpolation]
    ).to_ndarray()
    top, left = _crop_start(height, crop_px), _crop_start(width, crop_px)
    return rgb[top : top + crop_px, left : left + crop_px]


def iter_frames(
    path: Path,
    times_s: Sequence[float],
    sizes: Sequence[tuple[int, int] | tuple[int, int, str]],
    strategy: Literal["auto", "seek", "sequential"] = "auto",
    info: VideoInfo | None = None,
    codec_threads: int = 0,
    skip_nonref: bool = True,
) -> Iterator[tuple[int, dict[tuple, np.ndarray]]]:
    """Yield ``(index into times_s, {size: uint8 (crop_px, crop_px, 3)})`` in time order, one frame at a time.

    The bounded-memory form of :func:`read_frames` (same arguments, same frames): a caller can embed
    frames in chunks of seconds and drop them, however long the video. ``info`` skips the probe.
    ``codec_threads``: the decoder's own threads (0: FFmpeg's choice, about one per core); several decode
    workers on few cores run better with 1 each. ``skip_nonref``: skip the non-reference frames not shown at
    ``times_s`` (the same frames come out; False decodes every frame, for comparison).
    """
    path = Path(path)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    for size in sizes:
        shorter_px, crop_px, *options = size
        if not 0 < crop_px <= shorter_px:
            raise ValueError(
                f"size (resize_shorter_px, crop_px) needs 0 < crop_px <= resize_shorter_px, got {(shorter_px, crop_px)}"
            )
        if options and options[0] not in SWSCALE_FILTERS:
            raise ValueError(f"size {size}: interpolation must be one of {tuple(SWSCALE_FILTERS)}")
        if len(options) > 1 and options[1] not in RESIZE_MODES:
            raise ValueError(f"size {size}: resize must be one of {RESIZE_MODES}")
    info = info or probe_video(path)
    if not info.seekable:
        strategy = "sequential"
    elif strategy == "auto":
        strategy = choose_strategy(info, times_s) if times_s else "sequential"
    order = sorted(range(len(times_s)), key=lambda i: times_s[i])
    seeks, _ = _plan(info, [times_s[i] for i in order], seek=strategy == "seek")
    skipping = skip_nonref and bool(info.frame_times_s)  # an info built by hand lists no frames: decode all
    wanted_s = shown_frame_times(info, times_s) if skipping else None
    done = 0  # targets yielded; a missed seek restarts the file sequentially from the next one
    while True:
        try:
            for done, i, arrays in _decode_targets(path, info, times_s, sizes, order[done:], seeks[done:], done,
                                                   codec_threads, wanted_s):
                yield i, arrays
            return
        except SeekMissed as missed:
            logger.info("%s: %s; decoding the rest sequentially", path, missed)
            seeks = [False] * len(order)
        except SkipMissed as missed:
            logger.info("%s: %s; decoding the rest without skipping", path, missed)
            wanted_s = None


def _check_shown(info: VideoInfo, time_s: float, shown_s: float) -> None:
    """Raise SkipMissed unless the frame shown at ``time_s`` (at ``shown_s``) is the probe's."""
    expected_s = info.frame_times_s[shown_frame_index(info, time_s)]
    if abs(shown_s - expected_s) > TIME_TOLERANCE_S:
        raise SkipMissed(f"the frame shown at {time_s:.3f} s decoded at {shown_s:.3f} s, the probe says {expected_s:.3f} s")


def _decode_targets(
    path: Path, info: VideoInfo, times_s: Sequence[float], sizes: Sequence[tuple], order: Sequence[int],
    seeks: Sequence[bool], done: int, codec_threads: int, wanted_s: frozenset[float] | None,
) -> Iterator[tuple[int, int, dict[tuple, np.ndarray]]]:
    """One decoding pass over ``path`` for the targets ``order`` (time-sorted indexes into ``times_s``), seeking where
    ``seeks`` says: ``(targets done after this one, index, {size: frame})``; ``wanted_s``: see :class:`_Cursor`.

    Raises:
        SeekMissed: a seek landed elsewhere.
        SkipMissed: skipping lost a wanted frame (see :func:`_check_shown`).
        MediaError: undecodable file (with the time reached).
    """
    with _open(path) as container:
        stream = _video_stream(path, container)
        stream.thread_type = "AUTO"
        if codec_threads:
            stream.codec_context.thread_count = codec_threads
        cursor = _Cursor(container, stream, wanted_s)
        converted: tuple[av.VideoFrame | None, dict[tuple, np.ndarray]] = (None, {})
        try:
            for i, do_seek in zip(order, seeks):
                if do_seek:
                    cursor.seek(_keyframe_before(info, times_s[i]))
                frame = cursor.frame_at(times_s[i])
                if wanted_s is not None:
                    _check_shown(info, times_s[i], cursor._time_s(frame))
                if converted[0] is not frame:
                    converted = (frame, {size: _to_array(frame, *size) for size in sizes})
                done += 1
                yield done, i, converted[1]
        except (av.FFmpegError, MediaError) as err:
            raise MediaError(f"{path}: decode error at {cursor.reached_s:.2f} s ({err})") from err
        logger.debug("%s: %d frames decoded (%s, skipping non-reference frames: %s)", path, cursor.frames_decoded,
                     "seeking" if any(seeks) else "sequential", wanted_s is not None,
                     extra={"frames_decoded": cursor.frames_decoded})


def read_frames(
    path: Path,
    times_s: Sequence[float],
    sizes: Sequence[tuple[int, int] | tuple[int, int, str]],
    strategy: Literal["auto", "seek", "sequential"] = "auto",
    codec_threads: int = 0,
    skip_nonref: bool = True,
) -> dict[tuple, np.ndarray]:
    """The frame shown at each time, resized and centre-cropped for each requested size.

    The frame shown at ``t`` is the last one whose presentation time is <= ``t`` (the last frame of the
    file when ``t`` is past its end). Decoding is threaded; both strategies return identical frames.

    Args:
        path: Video file; its first video stream is used.
        times_s: Sample times in seconds from the first frame, any order.
        sizes: ``(resize_shorter_px, crop_px)`` pairs or ``(resize_shorter_px, crop_px, interpolation)``
            triples: the shorter side is resized to ``resize_shorter_px`` (aspect kept) with the
            ``interpolation`` filter (``area`` when not given; see ``SWSCALE_FILTERS``); a fourth element
            ``"square"`` squashes the frame to ``resize_shorter_px`` square instead; then a centre
            square of ``crop_px`` is cut.
        strategy: ``"seek"``, ``"sequential"`` or ``"auto"`` (:func:`choose_strategy`).
        codec_threads: The decoder's own threads (0: FFmpeg's choice).
        skip_nonref: Skip unwanted non-reference frames (see :func:`iter_frames`).

    Returns:
        ``{size: uint8 (len(times_s), crop_px, crop_px, 3)}`` keyed by each size as given, rows in
        ``times_s`` order.

    Raises:
        ValueError: on a bad strategy or size.
        MediaError: missing, unreadable or undecodable file (with the time reached), no video stream.
    """
    out = {size: np.empty((len(times_s), size[1], size[1], 3), dtype=np.uint8) for size in sizes}
    for i, arrays in iter_frames(path, times_s, sizes, strategy, codec_threads=codec_threads, skip_nonref=skip_nonref):
        for size in sizes:
            out[size][i] = arrays[size]
    return out
