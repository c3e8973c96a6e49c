"""End-to-end extraction of TAU-like clips (bench/media.py) with the two real small models, and the GPU row.

The dataset is a CSV manifest of generated TAU-like clips (10-s 1280x720 H.264 30 fps + 48 kHz 24-bit stereo wavs);
extraction is :func:`extract.runner.run_extraction` into a fresh store with ``mobilenet_v2.imagenet`` and
``efficientat_mn04.audioset`` (real weights from the shared folder), the runner's defaults for decoding (one worker
per visible core). The row gives clips/s, where the time goes (decode summed over workers; decode_wait = the
models waiting for input; model; write), the share of the model loop spent waiting, and peak RSS.

A second row times the decode-and-embed step of ``vadd check`` (:func:`extract.embed.iter_embeddings`, streaming one
video at a time in 30-s chunks) on the same videos and models; the heads' scoring (milliseconds) is not in it, as no
VADD heads are trained on TAU-like media here.

The GPU row of issue 17 (seed visual and audio set, 16 decode workers, bf16, >= 90 % of the slowest model's own
batched rate) needs a GPU machine; without one it is reported as not run.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from bench.common import import_shared_weights, make_row, timed_extraction
from bench.decode import E2E_EXTRACTORS, peak_rss_mb
from bench.media import TauLikeMedia, tau_like_dataset

logger = logging.getLogger(__name__)


def run(quick: bool = False, device: str = "cpu", work_dir: Path = Path("cache/bench")) -> list[dict]:
    """Generate (once) and extract the TAU-like dataset; report throughput, the time split and the GPU row."""
    from extract.extractor import resolve_device
    from extract.runner import visible_cores

    n_clips = 4 if quick else 16
    media = TauLikeMedia()
    manifest = tau_like_dataset(work_dir / "tau_like" / "dataset", n_clips, media)
    import_shared_weights(E2E_EXTRACTORS)
    summary, wall_s, cfg = timed_extraction("end to end", data=manifest, extractors=E2E_EXTRACTORS, device=device)
    split = {k: round(v, 2) for k, v in sorted(summary.seconds.items())}
    loop_s = sum(summary.seconds[k] for k in ("decode_wait", "augment", "model", "write"))
    split["other (probe, store creation, model loading)"] = round(wall_s - loop_s, 2)
    wait_share = summary.seconds["decode_wait"] / loop_s
    resolved = resolve_device(device)
    rows = [make_row(
        f"end to end: {n_clips} TAU-like clips (720p30 H.264 + 48 kHz 24-bit wav), mobilenet_v2 + efficientat_mn04 "
        f"on {resolved}, {cfg.workers} {cfg.decode_backend} decode workers",
        f"{n_clips / wall_s:.2f} clips/s", "-", None, "(no target; time split in details)", None,
        {"clips": n_clips, "wall_seconds": round(wall_s, 2), "seconds_by_stage": split,
         "models_waiting_for_input_share": round(wait_share, 3), "decode_workers": cfg.workers,
         "decode_backend": cfg.decode_backend, "cores_visible": visible_cores(), "peak_rss_mb": peak_rss_mb(),
         "media": media.describe(),
         "note": "decode is summed over decode workers and overlaps model time; decode_wait is the models waiting; "
                 "the waiting share is decode_wait / (decode_wait + augment + model + write)"},
        baseline="none: avscene alone (the released code has no end-to-end pipeline: 1_extract_features.py writes "
                 "one pickle per model)",
    )]
    rows.append(check_path_row(manifest, device, media, n_videos=1 if quick else 4))
    if resolved != "cuda":
        rows.append(make_row(
            "end to end on a GPU: TAU-like clips, seed visual + audio set, 16 decode workers, bf16 (issue 17)",
            "not run", "-", None, ">= 90 % of the slowest model's own batched rate", None,
            {"reason": "no GPU machine was available to the session that wrote this row; nothing was measured"},
            baseline="none: the slowest seed model's own batched rate on the same GPU"))
    return rows


def check_path_row(manifest: Path, device: str, media: TauLikeMedia, n_videos: int) -> dict:
    """Seconds per TAU-like video of ``vadd check``'s decode-and-embed step with the two real models."""
    from extract.embed import iter_embeddings
    from extract.extractor import create_extractor
    from extract.manifest import read_manifest

    clips = read_manifest(manifest).clips[:n_videos]
    extractors = [create_extractor(n, device=device) for n in E2E_EXTRACTORS]
    started = time.perf_counter()
    seconds = sum(chunk.n_seconds for clip in clips for chunk in iter_embeddings(clip, extractors, chunk_seconds=30))
    per_video_s = (time.perf_counter() - started) / len(clips)
    return make_row(
        "vadd check's decode-and-embed step (extract.embed.iter_embeddings), one TAU-like video at a time, "
        "mobilenet_v2 + efficientat_mn04",
        f"{per_video_s:.2f} s/video", "-", None, "(no target)", None,
        {"videos": len(clips), "seconds_embedded": seconds, "chunk_seconds": 30, "media": media.describe(),
         "peak_rss_mb": peak_rss_mb(), "note": "the VSC/ASC heads' scoring is not included (no heads for this media)"},
        baseline="none: the released code has no single-video check")
