"""Non-reference skipping rows on TAU-like media (bench/media.py: 10-s 1280x720 H.264 30 fps, B-frames): the decode
path as it was (every frame decoded) vs the skipping path (``skip_frame = "NONREF"`` on packets that carry no wanted
frame), for keyframes every 30 and every 250 frames.

Each row gives seconds per clip and frames decoded both ways (frames out of the decoder: a frame decoded and then
dropped by a seek's flush is not counted), whether the wanted frames are bit-identical, and the physical bound beside
them: the frames that must be decoded, i.e. each wanted frame plus the reference frames before it
in decoding order from its keyframe (the frames a decoder still outputs when every packet is skipped as
non-reference). Each layout gets two rows: the runner's ``auto`` strategy (seeking for keyframes every 30 frames) and
one sequential pass. Both paths run with one codec thread, as one decode worker of the runner does, interleaved
round by round so the machine's load falls on both.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench.common import best_times, make_row
from bench.decode import SIZE
from bench.media import LONG_GOP, TauLikeMedia, tau_like_videos

logger = logging.getLogger(__name__)

FRAME_CHOICE = "middle"  # the default frame of each second (k + 0.5 s)


@contextmanager
def counted_frames():
    """Collect the frames-decoded counts that :func:`extract.video_io.iter_frames` logs (a list, one per pass)."""
    counts: list[int] = []

    class _Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if hasattr(record, "frames_decoded"):
                counts.append(record.frames_decoded)

    video_logger = logging.getLogger("extract.video_io")
    handler, level = _Counter(logging.DEBUG), video_logger.level
    video_logger.addHandler(handler)
    video_logger.setLevel(logging.DEBUG)
    try:
        yield counts
    finally:
        video_logger.removeHandler(handler)
        video_logger.setLevel(level)


def frames_that_must_be_decoded(path: Path, times_s: list[float]) -> int:
    """Each wanted frame plus the reference frames from its keyframe up to it in decoding order (the physical bound)."""
    import av

    from extract.video_io import probe_video, shown_frame_times

    info = probe_video(path)
    wanted_s = shown_frame_times(info, times_s)
    packets: list[tuple[float, bool]] = []  # (time_s, keyframe) in decoding order
    references: set[float] = set()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start, time_base = stream.start_time or 0, stream.time_base
        stream.codec_context.skip_frame = "NONREF"
        for packet in container.demux(stream):
            if packet.pts is not None:
                packets.append((float((packet.pts - start) * time_base), packet.is_keyframe))
            references.update(float((f.pts - start) * time_base) for f in packet.decode())
    needed: set[float] = set()
    keyframe_index = 0
    for index, (time_s, keyframe) in enumerate(packets):
        keyframe_index = index if keyframe else keyframe_index
        if time_s in wanted_s:
            needed.add(time_s)
            needed.update(t for t, _ in packets[keyframe_index:index] if t in references)
    return len(needed)


def skip_row(clips: list[Path], media: TauLikeMedia, strategy: str, rounds: int) -> dict:
    """One keyframe layout and strategy: s/clip and frames decoded, every frame vs skipping, and the bound."""
    from extract.store import FRAME_CHOICES
    from extract.video_io import choose_strategy, probe_video, read_frames

    times_s = [k + FRAME_CHOICES[FRAME_CHOICE] for k in range(media.seconds)]
    seconds = {"every_frame": 0.0, "skip_nonref": 0.0}
    frames = {"every_frame": 0, "skip_nonref": 0}
    bound, identical, strategies = 0, True, []
    for clip in clips:
        strategies.append(choose_strategy(probe_video(clip), times_s) if strategy == "auto" else strategy)
        with counted_frames() as counts:
            best, out = best_times({
                method: lambda skip=skip: read_frames(clip, times_s, [SIZE], strategy, codec_threads=1,
                                                      skip_nonref=skip)[SIZE]
                for method, skip in (("every_frame", False), ("skip_nonref", True))
            }, rounds=rounds)
        for j, method in enumerate(seconds):  # counts alternate every_frame, skip_nonref per round
            seconds[method] += best[method]
            frames[method] += counts[j]
        identical &= bool(np.array_equal(out["every_frame"], out["skip_nonref"]))
        bound += frames_that_must_be_decoded(clip, times_s)
    n = len(clips)
    per_clip = {k: v / n for k, v in seconds.items()}
    decoded = {k: v / n for k, v in frames.items()}
    ratio = per_clip["every_frame"] / per_clip["skip_nonref"]
    details = {"clips": n, "rounds_best_of": rounds, "video": media.describe(), "frame_choice": FRAME_CHOICE,
               "strategy": strategies, "codec_threads": 1, "seconds_per_clip": {k: round(v, 3) for k, v in per_clip.items()},
               "frames_decoded_per_clip": decoded, "frames_that_must_be_decoded_per_clip": bound / n,
               "frames_per_clip": media.fps * media.seconds, "wanted_frames_bit_identical": identical,
               "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    how = "the runner's auto strategy" if strategy == "auto" else "one sequential pass"
    return make_row(
        f"decode with non-reference skipping, TAU-like 720p30, keyframe every {media.gop} frames, frames at k + 0.5 s, "
        f"{how}: skipping vs every frame decoded",
        f"{per_clip['skip_nonref']:.2f} s/clip, {decoded['skip_nonref']:.0f} frames out of the decoder "
        f"(bound: {bound / n:.0f} must be decoded)",
        f"{per_clip['every_frame']:.2f} s/clip, {decoded['every_frame']:.0f} frames out of the decoder", ratio,
        "bit-identical wanted frames, fewer decoded", identical and frames["skip_nonref"] < frames["every_frame"],
        details, baseline="avscene's decode path before non-reference skipping (every frame decoded, same strategy)")


def run(quick: bool = False, work_dir: Path = Path("cache/bench")) -> list[dict]:
    """Skipping rows for each keyframe layout, with the runner's strategy and with one sequential pass."""
    n_clips = 1 if quick else 2
    rows = []
    for gop in (30, LONG_GOP):
        media = TauLikeMedia(gop=gop)
        clips = tau_like_videos(work_dir / "tau_like", n_clips, media)
        rows += [skip_row(clips, media, strategy, rounds=2 if quick else 3) for strategy in ("auto", "sequential")]
    return rows
