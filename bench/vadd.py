"""Row 5: VADD evaluation of a TAU-size test split (3,645 clips) from the cache, with vadd's scoring code.

A synthetic store holds a train split and a 3,645-clip test split with a visual (1280-d) and an audio
(384-d) extractor; the embeddings are class means plus noise so the heads have something to learn.
VADD's default heads (LS, as the paper) are trained first (not timed: the heads row times training). avscene's
evaluation loads each split into RAM once, scores it in 256-clip batches and every item with :mod:`vadd.score`.
The baseline is the released ``3_vadd_experiments.py``'s way, run with the same heads on the same store: each
modality's whole test split in one float32 tensor, a ``DataLoader`` in test order without shuffling, argmax per
second, a vote per clip, one decision per item. Both must reach the same decisions. Library imports are done
before timing (a warm process).
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
RELEASE_BATCH_ROWS = 32  # 3_vadd_experiments.py's BS: 32 rows (seconds) per forward call
BASELINE = ("IDT-ITI/Visual-Audio-Discrepancy-Detection 3_vadd_experiments.py lines 551-588 (each modality's test "
            "split as one float32 tensor, DataLoader batch_size=BS shuffle=False) and 266-298 (argmax per row, vote per "
            "10 rows), with avscene's heads: batches of 3 whole clips (30 of the release's 32 rows)")


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


def evaluate_released_way(store_location: str, heads: dict, items: list) -> np.ndarray:
    """:data:`BASELINE`: per modality the whole test split into one float32 tensor, batched in test order by a
    ``DataLoader`` (whole clips, as avscene's heads score a clip's seconds together), argmax per second and a vote
    per clip; an item is manipulated when its video's and its audio's votes differ. Ties between vote counts go to
    the higher mean probability, as in avscene (the release takes the lowest class index), so both decide alike."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from classify.metrics import clip_vote
    from extract.store import EmbeddingStore

    store = EmbeddingStore.open(store_location)
    voted = {}
    for modality, (name, trained) in heads.items():
        split = store.load_split([name], "test")
        mean = torch.from_numpy(np.asarray(trained.scaler.mean[name], np.float32))
        std = torch.from_numpy(np.asarray(trained.scaler.std[name], np.float32))
        features = torch.tensor(split.embeddings[name], dtype=torch.float32)
        mask = torch.from_numpy(np.asarray(split.valid[name]))
        loader = DataLoader(TensorDataset(features, mask), batch_size=max(1, RELEASE_BATCH_ROWS // SECONDS),
                            shuffle=False)
        probs = []
        trained.head.eval()
        with torch.inference_mode():
            for x, m in loader:
                probs.append(torch.softmax(trained.head({name: (x - mean) / std}, m), dim=-1) * m.unsqueeze(-1))
        votes = clip_vote(torch.cat(probs).numpy(), mask.numpy())
        voted[modality] = dict(zip(split.ids.tolist(), votes.tolist()))
    return np.array([voted["visual"][i.video_clip] != voted["audio"][i.audio_clip] for i in items])


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
        test = store.usable_clips(list(DIMS), "test").rows  # the store's one rule, as in `vadd eval`
        items = generate_protocol(list(table.ids[test]), list(table.labels[test]), store.taxonomy.class_set(), seed=0)
        import sklearn.metrics  # noqa: F401  (warm process: vadd_metrics imports it lazily)

        seconds, decisions = best_times({
            "ours": lambda: evaluate_ours(location, heads, items),
            "theirs": lambda: evaluate_released_way(location, heads, items),
        })
    agree = float((decisions["ours"] == decisions["theirs"]).mean())
    details = {"test_clips": n_test, "items": len(items), "seconds": seconds, "decisions_agree": agree,
               "head": DEFAULT_HEAD.kind, "dims": {n: d for n, (_, d) in DIMS.items()}, "baseline": BASELINE}
    return [make_row(
        f"VADD evaluation of {n_test} test clips ({len(items)} items) from the cache, same heads: avscene vs the "
        "released code's way (split in one tensor, DataLoader)",
        f"{seconds['ours']:.2f} s", f"{seconds['theirs']:.2f} s", seconds["theirs"] / seconds["ours"],
        f"ours <= {TARGET_S:g} s" + (" (quick: 1/5 of TAU size)" if quick else ""),
        seconds["ours"] <= TARGET_S and agree == 1.0, details, baseline=BASELINE,
    )]
