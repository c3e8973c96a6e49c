"""Row 6: end-to-end extraction of a TAU-layout folder of generated clips with the two real small models.

The dataset is :func:`extract.synthetic.make_demo_dataset` (100 clips x 10 s, H.264 160x96 @ 10 fps video,
48 kHz stereo wav); extraction is :func:`extract.runner.run_extraction` into a fresh store with
``mobilenet_v2.imagenet`` and ``efficientat_mn04.audioset`` (real weights). The row gives clips/s and
where the time goes: decode (summed over decode threads), waiting for decode, model, store writes.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from bench.common import import_shared_weights, make_row

logger = logging.getLogger(__name__)

EXTRACTORS = ("mobilenet_v2.imagenet", "efficientat_mn04.audioset")


def run(quick: bool = False, device: str = "cpu", work_dir: Path = Path("cache/bench")) -> list[dict]:
    """Generate (once) and extract the dataset; report throughput and the time split."""
    from extract.runner import RunConfig, run_extraction
    from extract.synthetic import make_demo_dataset

    clips_per_scene, seconds = (2, 5) if quick else (10, 10)
    data = work_dir / "e2e" / f"tau_{clips_per_scene}x10_{seconds}s"
    if not (data / "meta.csv").exists():
        make_demo_dataset(data, clips_per_scene=clips_per_scene, seconds=seconds, seed=0)
    import_shared_weights(EXTRACTORS)
    with tempfile.TemporaryDirectory(prefix="avscene-bench-e2e-") as tmp:
        started = time.perf_counter()
        summary = run_extraction(RunConfig(data=data, store=str(Path(tmp) / "e2e.zarr"), extractors=EXTRACTORS,
                                           device=device, progress=False))
        wall_s = time.perf_counter() - started
    n_clips = clips_per_scene * 10
    failed = sum(summary.failed.values())
    split = {k: round(v, 2) for k, v in sorted(summary.seconds.items())}
    split["other (probe, store creation, model loading)"] = round(
        wall_s - sum(summary.seconds[k] for k in ("decode_wait", "model", "write")), 2)
    return [make_row(
        f"end to end: {n_clips} generated TAU-layout clips x {seconds} s, mobilenet_v2 + efficientat_mn04 on {device}",
        f"{n_clips / wall_s:.2f} clips/s", "-", None, "(no target; time split in details)", None,
        {"clips": n_clips, "wall_seconds": round(wall_s, 2), "seconds_by_stage": split, "failed": failed,
         "media": "H.264 160x96 @ 10 fps + 48 kHz stereo PCM_16 wav (SYNTHETIC)",
         "note": "decode is summed over decode threads and overlaps model time; decode_wait is the model waiting"},
    )]
