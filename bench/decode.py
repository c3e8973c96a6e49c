"""Row 1: 10 frames per clip from 10-s 1080p30 H.264 clips, avscene's decoder vs the paper's OpenCV loop.

The paper's way (as in its extraction scripts): ``cv2.VideoCapture.read`` every frame, keep every 30th,
then resize and centre-crop the kept ones. avscene's way: :func:`extract.video_io.read_frames` with its
keyframe-aware strategy (seek to each second when keyframes are dense, one pass when sparse) and the resize
done in the decoder. Both give 10 RGB ``(224, 224, 3)`` frames per clip.

avscene takes the frame shown at k + 0.5 s; with a keyframe every 30 frames and no B-frames that frame is the 16th
of its group, so at least 16 of every 30 frames must be decoded (read-all decodes 30): the 4x target is out of
reach for those frames by construction. A second dense row times avscene's decoder on the paper's own frames
(k s, which are the keyframes here), the comparison the target was set on.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bench.common import best_times, make_row

logger = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS, SECONDS = 1920, 1080, 30, 10
SIZE = (256, 224)  # (resize_shorter_px, crop_px) of mobilenet_v2 / resnet50
GOPS = (30, 250)
DENSE_TARGET = 4.0  # x faster than OpenCV with a keyframe every 30 frames
SPARSE_TOLERANCE = 0.95  # "never slower than one sequential pass", within timing noise


def make_clip(path: Path, gop: int, seed: int) -> Path:
    """A 10-s 1080p30 H.264 clip with a keyframe every ``gop`` frames: a textured, grainy picture panning right."""
    from extract.synthetic import write_video

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (HEIGHT // 40 + 1, WIDTH // 40 + 1, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(coarse, 40, axis=0), 40, axis=1)[:HEIGHT, :WIDTH]
    base = (base // 2 + rng.integers(0, 64, (HEIGHT, WIDTH, 1), dtype=np.uint8)).astype(np.uint8)
    noise = rng.integers(0, 24, (4, HEIGHT, WIDTH, 1), dtype=np.uint8)  # sensor-like grain, cycled

    def frame(i: int) -> np.ndarray:
        return np.roll(base, 12 * i, axis=1) + noise[i % len(noise)]

    tmp = path.with_suffix(".part.mp4")
    write_video(tmp, frame, FPS * SECONDS, FPS, WIDTH, HEIGHT, gop=gop)
    tmp.rename(path)
    return path


def read_opencv_every_30th(path: Path) -> np.ndarray:
    """The paper's way: decode every frame with OpenCV, keep frames 0, 30, 60, ..., resize + crop those."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot open it")
    kept, index = [], 0
    try:
        while True:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            if index % FPS == 0:
                kept.append(_resize_crop_cv2(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)))
            index += 1
    finally:
        capture.release()
    return np.stack(kept)


def _resize_crop_cv2(rgb: np.ndarray) -> np.ndarray:
    import cv2

    shorter, crop = SIZE
    h, w = rgb.shape[:2]
    scale = shorter / min(h, w)
    resized = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    top, left = (resized.shape[0] - crop) // 2, (resized.shape[1] - crop) // 2
    return resized[top : top + crop, left : left + crop]


def read_avscene(path: Path, strategy: str, offset_s: float = 0.5) -> np.ndarray:
    """avscene's frames at k + ``offset_s`` for each second k (0.5: its own choice; 0.0: the paper's frames)."""
    from extract.video_io import read_frames

    return read_frames(path, [k + offset_s for k in range(SECONDS)], [SIZE], strategy=strategy)[SIZE]


def run(quick: bool = False, work_dir: Path = Path("cache/bench")) -> list[dict]:
    """Time the three methods on the same clips (1 per keyframe interval when quick, else 3)."""
    from extract.video_io import choose_strategy, probe_video

    n_clips = 1 if quick else 3
    rows = []
    for gop in GOPS:
        clips = [make_clip(work_dir / "decode" / f"1080p30_gop{gop}_{i}.mp4", gop, seed=i) for i in range(n_clips)]
        seconds = {"avscene_auto": 0.0, "avscene_sequential": 0.0, "avscene_paper_frames": 0.0, "opencv_every_30th": 0.0}
        strategies = []
        for clip in clips:
            strategies.append(choose_strategy(probe_video(clip), [k + 0.5 for k in range(SECONDS)]))
            best, frames = best_times({
                "opencv_every_30th": lambda: read_opencv_every_30th(clip),
                "avscene_auto": lambda: read_avscene(clip, "auto"),
                "avscene_sequential": lambda: read_avscene(clip, "sequential"),
                "avscene_paper_frames": lambda: read_avscene(clip, "auto", offset_s=0.0),
            }, rounds=2)
            for method, elapsed in best.items():
                if frames[method].shape != (SECONDS, SIZE[1], SIZE[1], 3):
                    raise RuntimeError(f"{method} on {clip} gave frames of shape {frames[method].shape}")
                seconds[method] += elapsed
        per_clip = {k: v / n_clips for k, v in seconds.items()}
        details = {"clips": n_clips, "seconds_per_clip": {k: round(v, 3) for k, v in per_clip.items()},
                   "avscene_strategy": strategies, "video": f"{WIDTH}x{HEIGHT} {FPS} fps {SECONDS} s H.264, keyframe every {gop} frames"}
        vs_opencv = per_clip["opencv_every_30th"] / per_clip["avscene_auto"]
        if gop == 30:
            rows.append(make_row(
                f"decode 10 frames/clip, 1080p30, keyframe every {gop} frames: avscene vs OpenCV read-all",
                f"{per_clip['avscene_auto']:.2f} s/clip", f"{per_clip['opencv_every_30th']:.2f} s/clip",
                vs_opencv, f">= {DENSE_TARGET:g}x faster", vs_opencv >= DENSE_TARGET, details))
            paper_frames = per_clip["opencv_every_30th"] / per_clip["avscene_paper_frames"]
            rows.append(make_row(
                f"decode the paper's frames (0, 1, ..., 9 s: the keyframes), keyframe every {gop} frames: avscene vs OpenCV",
                f"{per_clip['avscene_paper_frames']:.2f} s/clip", f"{per_clip['opencv_every_30th']:.2f} s/clip",
                paper_frames, f">= {DENSE_TARGET:g}x faster", paper_frames >= DENSE_TARGET, details))
        else:
            vs_pass = per_clip["avscene_sequential"] / per_clip["avscene_auto"]
            rows.append(make_row(
                f"decode 10 frames/clip, 1080p30, keyframe every {gop} frames: avscene vs OpenCV read-all",
                f"{per_clip['avscene_auto']:.2f} s/clip", f"{per_clip['opencv_every_30th']:.2f} s/clip",
                vs_opencv, "(no target)", None, details))
            rows.append(make_row(
                f"decode, keyframe every {gop} frames: avscene auto vs one sequential PyAV pass",
                f"{per_clip['avscene_auto']:.2f} s/clip", f"{per_clip['avscene_sequential']:.2f} s/clip",
                vs_pass, f">= 1x (never slower; {SPARSE_TOLERANCE:g} allowed for timing noise)",
                vs_pass >= SPARSE_TOLERANCE, details))
    return rows
