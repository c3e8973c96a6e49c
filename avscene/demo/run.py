"""``make demo``: the whole pipeline on a small SYNTHETIC TAU-layout dataset, with real weights when available.

Synthetic means generated here (class-dependent pictures and sounds written as real H.264 mp4 and PCM
wav); the numbers it prints show the pipeline works, not how well it classifies real scenes.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from classify.heads import HeadConfig
from classify.run import run_training, write_json
from classify.train import TrainConfig
from avscene.paths import cache_dir, shared_dir
from extract.registry import get_spec
from extract.runner import RunConfig, run_extraction
from extract.store import EmbeddingStore
from extract.weights import import_dir, is_present
from vadd.check import register_heads
from vadd.evaluate import VaddConfig, evaluate_vadd

logger = logging.getLogger(__name__)

PRETRAINED = ("mobilenet_v2.imagenet", "efficientat_mn04.audioset")
DEBUG = ("debug_visual", "debug_audio")


def choose_extractors() -> tuple[str, ...]:
    """The two real pretrained extractors when their weights can be imported, else the debug pair."""
    folder = shared_dir() / "weights"
    specs = [get_spec(n) for n in PRETRAINED]
    if folder.is_dir():
        import_dir(folder, specs)
    absent = [f"{spec.name} ({spec.weights.filename})" for spec in specs if not is_present(spec)]
    if not absent:
        return PRETRAINED
    logger.warning(
        "!!! weights of %s not found in %s nor in the weights cache: the demo falls back to the DEBUG extractors %s "
        "(no pretrained knowledge). Set AVSCENE_SHARED or import real weights with "
        "`python -m extract weights import DIR`. !!!",
        ", ".join(absent), folder, ", ".join(DEBUG),
    )
    return DEBUG


def chance_levels(n_classes: int, n_items: int, n_manipulated: int) -> dict[str, float]:
    """What each demo figure reaches without looking at the data: a uniform guess among ``n_classes`` for every clip
    accuracy (AVSC, and VADD's VSC/ASC/VASC); flagging every item as manipulated for the VADD F1, precision (the
    manipulated share) and recall (1); always answering the majority kind for the VADD accuracy; 0.5 for the ROC AUC."""
    share = n_manipulated / n_items if n_items else 0.0
    return {"clip_accuracy": round(1.0 / n_classes, 4), "vadd_f1_flag_everything": round(2 * share / (1 + share), 4),
            "vadd_precision_flag_everything": round(share, 4), "vadd_recall_flag_everything": 1.0,
            "vadd_accuracy_majority": round(max(share, 1.0 - share), 4), "vadd_roc_auc": 0.5}


def debug_heads_run(folder: Path, clips_per_scene: int = 7, seconds: int = 2, epochs: int = 5) -> Path:
    """A small ``vadd eval`` run (``folder/run``) on a SYNTHETIC dataset extracted with the debug extractors, for
    tests and benchmarks of what uses heads (``vadd check``, its report page, ``avscene serve``); returns the run."""
    from avscene.demo.synthetic import make_demo_dataset

    data = make_demo_dataset(Path(folder) / "data", clips_per_scene=clips_per_scene, seconds=seconds, seed=2,
                             width=64, height=48)
    store = str(Path(folder) / "emb.zarr")
    run_extraction(RunConfig(data=data, store=store, extractors=DEBUG, device="cpu", progress=False))
    out = Path(folder) / "run"
    evaluate_vadd(store, VaddConfig(validation_fraction=0.4, train=TrainConfig(epochs=epochs)), out)
    return out


def check_report(heads_dir: Path, store: EmbeddingStore, out: Path, device: str = "auto") -> Path:
    """``vadd check --batch --report`` of the store's test clips (each with its own audio file) and of the shared
    ``media/bento.mp4`` when there is one (a real phone-style video): ``out/batch.csv`` and ``out/report.html``."""
    from vadd.check import Checker, check_batch
    from vadd.page import write_batch_report

    clips, root = store.clips, Path(store.data_root)
    inputs = [(root / clips.video_paths[i], root / clips.audio_paths[i] if clips.audio_paths[i] else None)
              for i in range(len(clips)) if clips.splits[i] == "test"]
    bento = shared_dir() / "media" / "bento.mp4"
    if bento.is_file():
        inputs.append((bento, None))
    checker = Checker(heads_dir, device=device)
    rows = check_batch(checker, inputs, out / "batch.csv", progress=False)
    return write_batch_report(out / "report.html", rows, checker.provenance,
                              title=f"make demo: vadd check of {len(inputs)} videos")


def run_demo(out_dir: Path | None = None, clips_per_scene: int = 10, seconds: int = 10, device: str = "auto") -> Path:
    """Generate data, extract, train an audio-visual head, run VADD; returns the report path."""
    from avscene.demo.synthetic import make_demo_dataset

    started = time.perf_counter()
    out_dir = out_dir or cache_dir() / "demo"
    data = out_dir / "data"
    if not (data / "meta.csv").exists():
        make_demo_dataset(data, clips_per_scene=clips_per_scene, seconds=seconds, seed=0)
    extractors = choose_extractors()
    store = str(out_dir / "embeddings.zarr")
    summary = run_extraction(RunConfig(data=data, store=store, extractors=extractors, device=device))
    for line in summary.lines():
        logger.info("%s", line)
    opened = EmbeddingStore.open(store)
    n_classes = len(opened.classes)  # the store's own classes (the demo's 10 scenes)
    runs = {"avsc": out_dir / "runs" / f"avsc-{n_classes}cls", "vadd": out_dir / "runs" / f"vadd-{n_classes}cls"}
    _, avsc = run_training(store, list(extractors), "", HeadConfig(kind="ls"), TrainConfig(), runs["avsc"])
    vadd = evaluate_vadd(store, VaddConfig(), runs["vadd"])
    register_heads(runs["vadd"])  # `vadd check`'s default heads, as `vadd eval` does
    page = check_report(runs["vadd"], opened, out_dir / "check", device)
    records = {n: opened.group_record(n) for n in extractors}
    clips = opened.clips
    report = {
        "data": {"folder": str(data), "synthetic": opened.dataset_card.synthetic,
                 "description": opened.dataset_card.description, "n_clips": len(clips), "n_classes": n_classes,
                 "clip_seconds_max": opened.seconds_max},
        "extractors": list(extractors),
        "weights": {n: "pretrained" if r.pretrained else "random-init" for n, r in records.items()},
        "weights_id": {n: r.weights_id for n, r in records.items()},
        "n_classes": vadd["n_classes"],
        "avsc": {**{k: avsc[k] for k in ("clip_accuracy", "second_accuracy", "clip_accuracy_mean_proba")},
                 "n_train_clips": avsc["n_train_clips"], "n_test_clips": avsc["n_clips"]},
        "vadd": {**{k: vadd["paper_rule"][k] for k in ("f1", "precision", "recall", "accuracy")},
                 "roc_auc": vadd["mismatch_score"]["roc_auc"], "n_items": vadd["n_items"],
                 "n_manipulated": vadd["n_manipulated"],
                 "verdict_rule": {  # what `vadd check` decides by: its own figures on the same test protocol
                     "name": vadd["mismatch_score"]["rule"]["name"],
                     **{k: vadd["mismatch_score"][k] for k in ("f1", "precision", "recall", "accuracy", "threshold")},
                     "segments": vadd["mismatch_score"]["rule"]["segments"]},
                 "temperatures": {m: c["temperature"] for m, c in vadd["calibration"].items()},
                 "classification_clip_accuracy": vadd["classification_clip_accuracy"]},
        "chance": chance_levels(vadd["n_classes"], vadd["n_items"], vadd["n_manipulated"]),
        "runs": {k: str(v) for k, v in runs.items()},
        "check_report": str(page),
        "why_avsc_differs_from_vadd_vasc": (
            f"different training clips: avsc's head trains on all {avsc['n_train_clips']} train clips; VADD's heads on "
            f"{avsc['n_train_clips'] - vadd['validation']['n_clips']} of them, the other {vadd['validation']['n_clips']} "
            "held out (by recording location where a scene has enough) to choose the mismatch threshold. On "
            f"{avsc['n_clips']} test clips one clip is {100 / avsc['n_clips']:.1f} points: the two can differ either way"),
        "extraction": {"done": dict(summary.done), "failed": dict(summary.failed), "done_earlier": dict(summary.done_earlier),
                       "failed_earlier": dict(summary.failed_earlier)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = out_dir / "report.json"
    write_json(path, report)
    logger.info("report:\n%s", json.dumps(report, indent=2))
    return path
