"""``vadd eval``: train VSC and ASC heads on the train split, score a protocol on the test split."""
from __future__ import annotations

import logging
from pathlib import Path

from classify.data import load_clips
from classify.heads import HeadConfig
from classify.run import write_json
from classify.train import TrainConfig, train_head
from extract.store import EmbeddingStore
from vadd.protocol import generate_protocol, read_protocol_csv, write_protocol_csv
from vadd.score import ModalityPredictions, score_items, vadd_metrics

logger = logging.getLogger(__name__)


def extractors_by_modality(store: EmbeddingStore, names: list[str] | None = None) -> dict[str, list[str]]:
    """Split the store's (or the given) extractors into visual and audio ones, from their stored specs."""
    out: dict[str, list[str]] = {"visual": [], "audio": []}
    for name in names or store.extractor_names():
        out[store.group_attrs(name)["spec"]["modality"]].append(name)
    for modality, found in out.items():
        if not found:
            raise ValueError(f"{store.location}: VADD needs at least one {modality} extractor; found none")
    return out


def evaluate_vadd(
    store_location: str,
    n_classes: int,
    out_dir: Path,
    protocol_csv: Path | None = None,
    extractors: list[str] | None = None,
    head_config: HeadConfig = HeadConfig(),
    train_config: TrainConfig = TrainConfig(),
    seed: int = 0,
) -> dict:
    """Run the VADD evaluation; writes protocol.csv, item_scores.csv, metrics.json and config.json."""
    store = EmbeddingStore.open(store_location)
    modalities = extractors_by_modality(store, extractors)
    predictions, fingerprints = {}, {}
    for modality, names in modalities.items():
        head = train_head(load_clips(store, names, "train", n_classes), head_config, train_config)
        test = load_clips(store, names, "test", n_classes)
        predictions[modality] = ModalityPredictions.from_head(head, test)
        fingerprints.update(head.fingerprints)
        classes = head.classes
    out_dir.mkdir(parents=True, exist_ok=True)
    if protocol_csv is None:
        test_ids = sorted(set(predictions["visual"].probs) & set(predictions["audio"].probs))
        label_of = dict(zip(store.clips.ids, store.clips.labels))
        items = generate_protocol(test_ids, [label_of[i] for i in test_ids], n_classes, seed)
        write_protocol_csv(out_dir / "protocol.csv", items)
    else:
        items = read_protocol_csv(protocol_csv)
    if not any(i.manipulated for i in items):
        raise ValueError(f"{store_location}: the protocol has no manipulated item (too few test clips of different classes)")
    scores = score_items(items, predictions["visual"], predictions["audio"])
    metrics = vadd_metrics(scores, classes)
    metrics["n_classes"] = n_classes
    _write_item_scores(out_dir / "item_scores.csv", scores, classes)
    write_json(out_dir / "config.json", {
        "store": store_location, "n_classes": n_classes, "extractors": modalities, "fingerprints": fingerprints,
        "protocol": str(protocol_csv) if protocol_csv else f"generated (seed {seed})", "head": head_config.to_dict(),
        "train": train_config.to_dict(), "rule": "manipulated iff voted visual class != voted audio class",
    })
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def _write_item_scores(path: Path, scores, classes: tuple[str, ...]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_clip", "audio_clip", "manipulated", "predicted", "visual_class", "audio_class", "mismatch"])
        for item, v, a, p, m in zip(scores.items, scores.visual_class, scores.audio_class, scores.predicted, scores.mismatch):
            writer.writerow([item.video_clip, item.audio_clip, int(item.manipulated), int(p), classes[v], classes[a], f"{m:.6f}"])
