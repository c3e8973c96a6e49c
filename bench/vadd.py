"""Row 5: VADD evaluation of a TAU-size test split (3,645 clips) from the cache, with vadd's scoring code.

A synthetic store holds a train split and a 3,645-clip test split with a visual (1280-d) and an audio
(384-d) extractor; the embeddings are class means plus noise so the heads have something to learn.
VADD's default heads (LS, as the paper) are trained first (not timed: the heads row times training). avscene's evaluation loads each
split into RAM once and scores every item with :mod:`vadd.score`; the paper's way reads each item's two
clips from the cache and runs the heads on them one clip at a time; it is timed on the first
``PER_ITEM_SAMPLE`` items and scaled to all of them (it takes minutes). Both must reach the same decisions.
Library imports are done before timing (a warm process).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from bench.common import best_times, make_row
from bench.store import synthetic_table, write_store

logger = logging.getLogger(__name__)

TAU_TEST_CLIPS = 3645
SECONDS = 10
DIMS = {"bench_visual": ("visual", 1280), "bench_audio": ("audio", 384)}
TARGET_S = 10.0
PER_ITEM_SAMPLE = 300


def _embeddings(labels: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Class mean + noise, ``(N, T, dim)`` float32."""
    rng = np.random.default_rng(seed)
    classes, index = np.unique(labels, return_inverse=True)
    means = rng.standard_normal((len(classes), dim)).astype(np.float32)
    noise = rng.standard_normal((len(labels), SECONDS, dim), dtype=np.float32) * 3
    return means[index][:, None, :] + noise


def evaluate_ours(store_location: str, heads: dict, items: list) -> np.ndarray:
    """Whole test split into RAM once per modality, batched heads, vectorised scoring."""
    from classify.data import load_clips
    from extract.store import EmbeddingStore
    from vadd.score import ModalityPredictions, score_items, vadd_metrics

    store = EmbeddingStore.open(store_location)
    predictions = {
        modality: ModalityPredictions.from_head(head, load_clips(store, [name], "test", 10))
        for modality, (name, head) in heads.items()
    }
    scores = score_items(items, predictions["visual"], predictions["audio"])
    vadd_metrics(scores, heads["visual"][1].classes)
    return scores.predicted


def evaluate_per_item(store_location: str, heads: dict, items: list) -> np.ndarray:
    """The paper's way: for every item, read its video's and its audio's rows and classify each clip alone."""
    from classify.data import ClipSet
    from classify.metrics import clip_vote
    from extract.store import EmbeddingStore, group_key

    store = EmbeddingStore.open(store_location)
    classes = store.taxonomy.class_set()
    row_of = {c: i for i, c in enumerate(store.clips.ids)}
    decisions = []
    for item in items:
        voted = {}
        for modality, clip in (("visual", item.video_clip), ("audio", item.audio_clip)):
            name, head = heads[modality]
            g, i = store.root[group_key(name)], row_of[clip]
            one = ClipSet(
                ids=store.clips.ids[i : i + 1], scene_labels=store.clips.labels[i : i + 1],
                targets=classes.encode(store.clips.labels[i : i + 1]), classes=head.classes,
                features={name: np.asarray(g["embeddings"][i : i + 1], np.float32)},
                mask=np.asarray(g["valid"][i : i + 1]), fingerprints={name: head.fingerprints[name]},
            )
            voted[modality] = clip_vote(head.predict_proba(one), one.mask)[0]
        decisions.append(voted["visual"] != voted["audio"])
    return np.array(decisions)


def run(quick: bool = False) -> list[dict]:
    """Build the store, train both heads, then time both evaluations of the same protocol."""
    from classify.data import load_clips
    from classify.train import TrainConfig, train_head
    from extract.store import EmbeddingStore
    from extract.taxonomy import TAU_SCENES
    from vadd.evaluate import DEFAULT_HEAD
    from vadd.protocol import generate_protocol

    n_test = TAU_TEST_CLIPS // 5 if quick else TAU_TEST_CLIPS
    n_train = 200 if quick else 500
    labels = np.array(TAU_SCENES)[np.arange(n_train + n_test) % len(TAU_SCENES)]
    splits = np.array(["train"] * n_train + ["test"] * n_test)
    table = synthetic_table(labels, splits, SECONDS)
    with tempfile.TemporaryDirectory(prefix="avscene-bench-vadd-") as tmp:
        location = str(Path(tmp) / "tau_size.zarr")
        groups = {name: (modality, _embeddings(labels, dim, seed)) for seed, (name, (modality, dim)) in enumerate(DIMS.items())}
        write_store(location, table, groups, clips_per_chunk=64)
        del groups
        store = EmbeddingStore.open(location)
        heads = {
            modality: (name, train_head(load_clips(store, [name], "train", 10), DEFAULT_HEAD, TrainConfig(epochs=3)))
            for name, (modality, _) in DIMS.items()
        }
        test = np.flatnonzero(table.splits == "test")
        items = generate_protocol(list(table.ids[test]), list(table.labels[test]), store.taxonomy.class_set(), seed=0)
        sample = items[: PER_ITEM_SAMPLE // (3 if quick else 1)]
        import sklearn.metrics  # noqa: F401  (warm process: vadd_metrics imports it lazily)

        seconds, decisions = best_times({
            "ours": lambda: evaluate_ours(location, heads, items),
            "theirs_sample": lambda: evaluate_per_item(location, heads, sample),
        })
    seconds["theirs"] = seconds["theirs_sample"] * len(items) / len(sample)
    agree = float((decisions["ours"][: len(sample)] == decisions["theirs_sample"]).mean())
    details = {"test_clips": n_test, "items": len(items), "per_item_timed_on": len(sample), "seconds": seconds,
               "decisions_agree": agree, "head": DEFAULT_HEAD.kind, "dims": {n: d for n, (_, d) in DIMS.items()}}
    return [make_row(
        f"VADD evaluation of {n_test} test clips ({len(items)} items) from the cache: split in RAM vs per-item reads",
        f"{seconds['ours']:.2f} s", f"{seconds['theirs']:.2f} s (from {len(sample)} items)", seconds["theirs"] / seconds["ours"],
        f"ours <= {TARGET_S:g} s" + (" (quick: 1/5 of TAU size)" if quick else ""),
        seconds["ours"] <= TARGET_S and agree == 1.0, details,
    )]
