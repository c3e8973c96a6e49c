"""One training run: load the cache, train on the train split, score the test split, write a run folder."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from classify.data import load_clips
from classify.heads import HeadConfig
from classify.metrics import classification_metrics, save_confusion_png, write_predictions_csv
from classify.persist import save_head
from classify.train import TrainConfig, TrainedHead, train_head
from extract.store import EmbeddingStore

logger = logging.getLogger(__name__)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def run_training(
    store_location: str,
    extractors: list[str] | None,
    n_classes: int,
    head_config: HeadConfig,
    train_config: TrainConfig,
    out_dir: Path,
    train_split: str = "train",
    eval_split: str = "test",
) -> tuple[TrainedHead, dict]:
    """Train on ``train_split`` and evaluate on ``eval_split``; returns the head and the metrics."""
    store = EmbeddingStore.open(store_location)
    names = extractors or store.extractor_names()
    if not names:
        raise ValueError(f"{store_location} has no extractor embeddings yet; run `make extract` first")
    started = time.perf_counter()
    train = load_clips(store, names, train_split, n_classes)
    test = load_clips(store, names, eval_split, n_classes)
    load_s = time.perf_counter() - started
    trained = train_head(train, head_config, train_config)
    train_s = time.perf_counter() - started - load_s
    probs = trained.predict_proba(test)
    metrics = classification_metrics(probs, test.mask, test.targets, test.classes)
    metrics.update({"n_train_clips": len(train), "load_seconds": load_s, "train_seconds": train_s})

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", {
        "store": store_location, "extractors": names, "fingerprints": trained.fingerprints,
        "classes": list(trained.classes), "n_classes": n_classes, "head": head_config.to_dict(),
        "train": train_config.to_dict(), "train_split": train_split, "eval_split": eval_split,
    })
    save_head(out_dir / "model.pt", trained)
    write_predictions_csv(out_dir / "predictions.csv", test.ids, probs, test.mask, test.classes)
    if metrics["n_clips"]:
        import numpy as np

        save_confusion_png(np.array(metrics["confusion_vote"]), test.classes, out_dir / "confusion.png",
                           f"{'+'.join(names)} ({n_classes} classes)")
    write_json(out_dir / "metrics.json", metrics)
    logger.info("clip accuracy %.4f, second accuracy %.4f on %d %s clips",
                metrics["clip_accuracy"] or 0, metrics["second_accuracy"] or 0, metrics["n_clips"], eval_split)
    return trained, metrics
