"""Skipping unwanted non-reference frames: the wanted frames stay bit-identical, on B-frame media with short and long
GOPs, for both frame choices and both decode strategies, and fewer frames are decoded."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from avscene.demo.synthetic import write_video
from bench.media import TauLikeMedia, write_tau_like_video
from extract.store import FRAME_CHOICES
from extract.video_io import probe_video, read_frames, shown_frame_times
from tests.timestamp_media import read_timestamp, timestamp_frame

SIZE = (128, 112)
FPS = 30
SECONDS = 4


@pytest.fixture(scope="module")
def bframe_clocks(tmp_path_factory) -> dict[int, Path]:
    """4-s 30 fps timestamp videos encoded by x264 ``superfast`` (B-frames, b-pyramid), keyframe every 30 / 250."""
    folder = tmp_path_factory.mktemp("bframes")
    out = {}
    for gop in (30, 250):
        out[gop] = folder / f"clock_gop{gop}.mp4"
        write_video(out[gop], lambda i: timestamp_frame(i, 192, 144), FPS * SECONDS, FPS, 192, 144, gop=gop,
                    x264_preset="superfast")
    return out


def _decode_counted(caplog, path: Path, times_s: list[float], strategy: str, skip: bool) -> tuple[np.ndarray, int]:
    """The frames and the number of frames the decoder output (from iter_frames' debug record)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="extract.video_io"):
        frames = read_frames(path, times_s, [SIZE], strategy, skip_nonref=skip)[SIZE]
    counts = [r.frames_decoded for r in caplog.records if hasattr(r, "frames_decoded")]
    assert len(counts) == 1
    return frames, counts[0]


@pytest.mark.parametrize("gop", [30, 250])
@pytest.mark.parametrize("frame_choice", sorted(FRAME_CHOICES))
@pytest.mark.parametrize("strategy", ["seek", "sequential"])
def test_skipping_keeps_the_wanted_frames_bit_identical(caplog, bframe_clocks, gop, frame_choice, strategy):
    times_s = [k + FRAME_CHOICES[frame_choice] for k in range(SECONDS)]
    every, n_every = _decode_counted(caplog, bframe_clocks[gop], times_s, strategy, skip=False)
    skipped, n_skipped = _decode_counted(caplog, bframe_clocks[gop], times_s, strategy, skip=True)
    assert np.array_equal(skipped, every)
    assert [read_timestamp(f) for f in skipped] == [round(t * FPS) for t in times_s]  # frames 15, 45.. / 29, 59..
    assert n_skipped < n_every  # the B-frames that nothing refers to were dropped


def test_shown_frame_times_before_on_and_past_the_end(bframe_clocks):
    info = probe_video(bframe_clocks[30])
    last = info.frame_times_s[-1]
    assert shown_frame_times(info, [-1.0, 0.0, 0.5, 1 / FPS - 1e-3, 99.0]) == {0.0, 15 / FPS, last}


def test_tau_like_long_gop_media_is_bit_identical(tmp_path):
    media = TauLikeMedia(width=320, height=180, seconds=3, gop=250)
    path = write_tau_like_video(tmp_path / "tau_like.mp4", media, seed=0)
    times_s = [k + 0.5 for k in range(media.seconds)] + [k + 29 / 30 for k in range(media.seconds)]
    for strategy in ("seek", "sequential"):
        every = read_frames(path, times_s, [SIZE], strategy, skip_nonref=False)[SIZE]
        assert np.array_equal(read_frames(path, times_s, [SIZE], strategy)[SIZE], every)


def test_a_wanted_frame_lost_to_skipping_is_caught_and_decoded_without_skipping(caplog, bframe_clocks, monkeypatch):
    """Packet times that do not name the frames they carry would let skipping drop a wanted frame: simulated by
    marking no packet as wanted, the check against the probe's frame times catches it and the file is decoded again
    without skipping, with the same frames."""
    from extract import video_io

    times_s = [k + 0.5 for k in range(SECONDS)]
    every = read_frames(bframe_clocks[250], times_s, [SIZE], "sequential", skip_nonref=False)[SIZE]
    monkeypatch.setattr(video_io, "shown_frame_times", lambda info, times: frozenset())
    with caplog.at_level(logging.INFO, logger="extract.video_io"):
        again = read_frames(bframe_clocks[250], times_s, [SIZE], "sequential")[SIZE]
    assert "decoding the rest without skipping" in caplog.text
    assert np.array_equal(again, every)
