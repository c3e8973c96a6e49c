"""Decode rows on TAU-like media (bench/media.py: 10-s 1280x720 H.264 30 fps): avscene vs the released code's OpenCV
loop, and decode throughput with 2 workers vs 1.

The papers' way is the released feature script (IDT-ITI/Visual-Audio-Discrepancy-Detection ``1_extract_features.py``,
commit f6fca9b, lines 269-277): read every frame with imutils' ``FileVideoStream`` (a thread around
``cv2.VideoCapture.read``) and keep the frames where a counter starting at 1 is divisible by 30: frame indices 29,
59, ..., 299, the last frame of each second. Here ``cv2.VideoCapture.read`` is called in the same loop (imutils'
reader thread only overlaps the reads with the model), then the kept frames are resized and centre-cropped.

Rows: (1) the released code's frames decoded both ways (avscene ``--frame-choice released-code`` vs the loop, the
same frames: checked); (2) avscene's default frames (k + 0.5 s, the papers' text) vs the loop: different frames, so
no "met"; (3) the long-GOP variant; (4) decode workers 2 vs 1, in threads and in processes, decoding what the
end-to-end row decodes (frames for mobilenet_v2 and the audio of efficientat_mn04). Peak RSS is recorded.
"""
from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import numpy as np

from bench.common import best_times, make_row
from bench.media import LONG_GOP, TauLikeMedia, tau_like_dataset, tau_like_videos

logger = logging.getLogger(__name__)

SIZE = (256, 224)  # (resize_shorter_px, crop_px) of mobilenet_v2 / resnet50
DENSE_TARGET = 4.0  # x faster than the released code's loop, same frames, keyframe every 30 frames
SPARSE_TOLERANCE = 0.95  # "never slower than one sequential pass", within timing noise
SCALING_TARGET = 1.7  # decode throughput, 2 workers vs 1
SAME_FRAMES_MAX_MEAN_DIFF = 4.0  # mean |pixel difference| below which two resizers show the same frame
RELEASED_FRAMES_BASELINE = ("IDT-ITI/Visual-Audio-Discrepancy-Detection 1_extract_features.py lines 269-277 (f6fca9b): "
                            "read all frames with OpenCV, keep 1-based counter % 30 == 0 (frames 29, 59, ..., 299)")
RELEASED_STEP = 30  # the released script's ``fps = 30``: keep frames where the 1-based counter % 30 == 0
E2E_EXTRACTORS = ("mobilenet_v2.imagenet", "efficientat_mn04.audioset")


def read_released_code_frames(path: Path) -> np.ndarray:
    """The released code's frames: every frame read with OpenCV, kept where a 1-based counter % 30 == 0, then
    resized and centre-cropped (``(n, 224, 224, 3)`` RGB)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot open it")
    kept, count = [], 1
    try:
        while True:
            ok, frame_bgr = capture.read()
            if not ok:
                break
            if count % RELEASED_STEP == 0:
                kept.append(_resize_crop_cv2(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)))
            count += 1
    finally:
        capture.release()
    return np.stack(kept)


def _resize_crop_cv2(rgb: np.ndarray) -> np.ndarray:
    import cv2

    shorter, crop = SIZE
    h, w = rgb.shape[:2]
    # torchvision's Resize(int) (the longer side truncated) and CenterCrop (start int(round(d / 2))), as the
    # released code's transforms do; the same window avscene's decoder cuts
    size = (shorter, int(shorter * w / h)) if h <= w else (int(shorter * h / w), shorter)
    resized = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    top, left = (int(round((d - crop) / 2.0)) for d in resized.shape[:2])
    return resized[top : top + crop, left : left + crop]


def read_avscene(path: Path, frame_choice: str, seconds: int, strategy: str = "auto") -> np.ndarray:
    """avscene's frame of each second for ``frame_choice`` (``extract.store.FRAME_CHOICES``)."""
    from extract.store import FRAME_CHOICES
    from extract.video_io import read_frames

    offset_s = FRAME_CHOICES[frame_choice]
    return read_frames(path, [k + offset_s for k in range(seconds)], [SIZE], strategy=strategy)[SIZE]


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest child so far, in MB."""
    return {"self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "largest_child": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def frame_rows(clips: list[Path], media: TauLikeMedia) -> list[dict]:
    """Rows 1-3 for one keyframe layout: the released code's frames both ways, avscene's default frames."""
    from extract.video_io import choose_strategy, probe_video

    seconds = {"avscene_released_code": 0.0, "avscene_middle": 0.0, "avscene_sequential": 0.0, "released_code_loop": 0.0}
    strategies, mean_diffs = [], []
    for clip in clips:
        strategies.append(choose_strategy(probe_video(clip), [k + 0.5 for k in range(media.seconds)]))
        best, frames = best_times({
            "released_code_loop": lambda: read_released_code_frames(clip),
            "avscene_released_code": lambda: read_avscene(clip, "released-code", media.seconds),
            "avscene_middle": lambda: read_avscene(clip, "middle", media.seconds),
            "avscene_sequential": lambda: read_avscene(clip, "middle", media.seconds, "sequential"),
        }, rounds=2)
        for method, elapsed in best.items():
            if frames[method].shape != (media.seconds, SIZE[1], SIZE[1], 3):
                raise RuntimeError(f"{method} on {clip} gave frames of shape {frames[method].shape}")
            seconds[method] += elapsed
        mean_diffs.append(float(np.abs(frames["avscene_released_code"].astype(np.int16)
                                       - frames["released_code_loop"].astype(np.int16)).mean()))
    per_clip = {k: v / len(clips) for k, v in seconds.items()}
    same_frames = max(mean_diffs) < SAME_FRAMES_MAX_MEAN_DIFF
    details = {"clips": len(clips), "seconds_per_clip": {k: round(v, 3) for k, v in per_clip.items()},
               "avscene_strategy_middle": strategies, "video": media.describe(),
               "released_vs_avscene_mean_abs_pixel_diff": [round(d, 2) for d in mean_diffs]}
    loop_s = per_clip["released_code_loop"]
    released = loop_s / per_clip["avscene_released_code"]
    middle = loop_s / per_clip["avscene_middle"]
    layout = f"keyframe every {media.gop} frames"
    rows = [make_row(
        f"decode the released code's frames (29, 59, ..., 299), TAU-like 720p30, {layout}: avscene vs its OpenCV loop",
        f"{per_clip['avscene_released_code']:.2f} s/clip", f"{loop_s:.2f} s/clip", released,
        f">= {DENSE_TARGET:g}x faster (same frames)" if media.gop != LONG_GOP else "(no target)",
        (released >= DENSE_TARGET if same_frames else None) if media.gop != LONG_GOP else None, details,
        baseline=RELEASED_FRAMES_BASELINE)]
    rows.append(make_row(
        f"decode avscene's frames (k + 0.5 s), TAU-like 720p30, {layout}: avscene vs the released code's loop "
        "(different frames: no verdict)",
        f"{per_clip['avscene_middle']:.2f} s/clip", f"{loop_s:.2f} s/clip", middle, "(different frames)", None, details,
        baseline=RELEASED_FRAMES_BASELINE))
    if media.gop == LONG_GOP:
        vs_pass = per_clip["avscene_sequential"] / per_clip["avscene_middle"]
        rows.append(make_row(
            f"decode, TAU-like 720p30, {layout}: avscene auto vs one sequential PyAV pass (same frames)",
            f"{per_clip['avscene_middle']:.2f} s/clip", f"{per_clip['avscene_sequential']:.2f} s/clip", vs_pass,
            f">= 1x (never slower; {SPARSE_TOLERANCE:g} allowed for timing noise)", vs_pass >= SPARSE_TOLERANCE, details,
            baseline="none of the papers' code: one sequential PyAV pass over every frame (avscene's own fallback)"))
    return rows


def decode_throughput(manifest: Path, workers: int, backend: str, codec_threads: int, rounds: int) -> float:
    """Clips/s of the runner's decode step (frames + audio windows of ``E2E_EXTRACTORS``) with ``workers``."""
    from extract.decode_plan import DecodePlan, decode_clip, probe_seconds
    from extract.manifest import read_manifest
    from extract.registry import get_spec
    from extract.runner import decode_pool

    clips = read_manifest(manifest).clips
    plan = DecodePlan.for_specs([get_spec(n) for n in E2E_EXTRACTORS])
    probes = [probe_seconds(c) for c in clips]
    best = float("inf")
    with decode_pool(workers, backend) as pool:
        list(pool.map(probe_seconds, clips[:workers]))  # start the workers (spawned processes import the modules)
        for _ in range(rounds):
            started = time.perf_counter()
            decoded = list(pool.map(decode_clip, clips, [n for n, _ in probes], [plan] * len(clips),
                                    [e for _, e in probes], [codec_threads] * len(clips)))
            best = min(best, time.perf_counter() - started)
    failed = [d.errors for d in decoded if d.errors]
    if failed:
        raise RuntimeError(f"decode failed: {failed[0]}")
    return len(clips) / best


def scaling_rows(manifest: Path, n_clips: int, media: TauLikeMedia, rounds: int) -> list[dict]:
    """Decode throughput with 2 workers vs 1 (one codec thread each), in threads and in processes."""
    from extract.runner import visible_cores

    rates = {(backend, workers): decode_throughput(manifest, workers, backend, 1, rounds)
             for backend in ("thread", "process") for workers in (1, 2)}
    ffmpeg_threads = decode_throughput(manifest, 1, "thread", 0, rounds)  # one worker, FFmpeg's own threads
    details = {"clips": n_clips, "video": media.describe(), "rounds_best_of": rounds, "cores_visible": visible_cores(),
               "clips_per_s": {f"{b} x{w}": round(r, 2) for (b, w), r in rates.items()},
               "one_worker_ffmpeg_threads_clips_per_s": round(ffmpeg_threads, 2),
               "work": f"decode_clip for {', '.join(E2E_EXTRACTORS)}: 10 frames resized to 256/224 + 32 kHz mono windows",
               "peak_rss_mb": peak_rss_mb()}
    rows = []
    for backend in ("process", "thread"):
        ratio = rates[(backend, 2)] / rates[(backend, 1)]
        rows.append(make_row(
            f"decode throughput, TAU-like 720p30 clips: 2 {backend} workers vs 1 (1 codec thread each)",
            f"{rates[(backend, 2)]:.2f} clips/s", f"{rates[(backend, 1)]:.2f} clips/s (1 worker)", ratio,
            f">= {SCALING_TARGET:g}x", ratio >= SCALING_TARGET, details,
            baseline="avscene with 1 decode worker (the released 1_extract_features.py decodes in one process, one clip "
                     "at a time)"))
    return rows


def run(quick: bool = False, work_dir: Path = Path("cache/bench")) -> list[dict]:
    """Frame rows on both keyframe layouts, then the worker scaling rows."""
    n_clips = 1 if quick else 2
    out = []
    for gop in (30, LONG_GOP):
        media = TauLikeMedia(gop=gop)
        out += frame_rows(tau_like_videos(work_dir / "tau_like", n_clips, media), media)
    n_scaling = 4 if quick else 8
    manifest = tau_like_dataset(work_dir / "tau_like" / "dataset", n_scaling)
    out += scaling_rows(manifest, n_scaling, TauLikeMedia(), rounds=1 if quick else 2)
    logger.info("peak RSS: %s", peak_rss_mb())
    return out
