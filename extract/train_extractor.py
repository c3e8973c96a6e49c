"""Train an audio extractor whose weights are not published, on the TRAIN split only, and install them.

Generic over the extractor (its module must offer ``classify(waveform) -> (B, K)`` logits over a
``classes`` attribute) and over the label mapping (scene -> target class, :func:`default_label_map`:
:data:`extract.taxonomy.SCENE_TO_IOV` for ``iov_cnn420``, the scenes themselves for ``fcnn.tau``). Only
clips whose split is ``train`` are ever decoded; a seeded tenth of them (by clip) is held out for
validation accuracy. Audio augmentations (:mod:`extract.audio_augment`) are optional: offline copies of
the non-validation windows are made once before training; channel swapping and SpecAugment run on every
step (SpecAugment needs a module with ``features``/``classify_features``). The weights go to the weights
cache with a run record (``<filename>.run.json``: run id, sha256, config, data, metrics) that extraction
copies into the store. Every 1-s window of the train clips is decoded into RAM once, float32: 64 KB per
window at 16 kHz mono (~5.5 GB for TAU's 86,460 train windows), 384 KB at 48 kHz stereo (~33 GB, plus as
much again per offline copy).
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from extract import __version__
from extract.decode_plan import DecodePlan, decode_whole_clip
from extract.audio_augment import AudioAugmentConfig, offline_augment, spec_augment, swap_channels
from extract.manifest import Clip, Manifest
from avscene.progress import progress_bar
from extract.taxonomy import Taxonomy
from extract.registry import ExtractorSpec, TrainedWeights, get_class, get_spec
from extract.weights import install_trained

if TYPE_CHECKING:  # torch is imported lazily, where it runs
    import torch

logger = logging.getLogger(__name__)

TRAIN_SPLIT = "train"


@dataclass(frozen=True)
class ExtractorTrainConfig:
    """Hyper-parameters of one training run (recorded in the run record)."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1  # of the train clips, held out by clip
    seed: int = 0
    decode_workers: int = 2
    device: str = "auto"
    augment: AudioAugmentConfig = AudioAugmentConfig()

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "augment": self.augment.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExtractorTrainConfig":
        fields = dict(data)
        fields["augment"] = AudioAugmentConfig.from_dict(fields.get("augment", {}))
        return cls(**fields)


@dataclass(frozen=True)
class TrainWindows:
    """The decoded train split: ``waveforms (N, C, samples)``, ``targets (N,)`` class indexes, ``clip_rows (N,)``."""

    waveforms: np.ndarray
    targets: np.ndarray
    clip_rows: np.ndarray
    clip_ids: tuple[str, ...]  # row -> clip id
    skipped: tuple[tuple[str, str], ...]  # (clip id, reason) of train clips that could not be decoded
    augmented: np.ndarray | None = None  # (N,) bool: an offline augmented copy (never used for validation)

    def with_extra(self, waveforms: np.ndarray, targets: np.ndarray, clip_rows: np.ndarray) -> "TrainWindows":
        """These windows followed by augmented copies (marked in ``augmented``)."""
        original = self.augmented if self.augmented is not None else np.zeros(len(self.targets), bool)
        return TrainWindows(
            np.concatenate([self.waveforms, waveforms]), np.concatenate([self.targets, targets]),
            np.concatenate([self.clip_rows, clip_rows]), self.clip_ids, self.skipped,
            np.concatenate([original, np.ones(len(targets), bool)]),
        )


def default_label_map(classes: tuple[str, ...], taxonomy: Taxonomy) -> dict[str, str]:
    """Label -> target class of a module's ``classes``: the dataset's class set with exactly those classes (TAU:
    its scenes for ``fcnn.tau``, its grouping ``3``, indoor/outdoor/vehicle, for ``iov_cnn420``)."""
    class_set = taxonomy.class_set_with(classes)
    if class_set is not None:
        return dict(class_set.label_to_class)
    raise ValueError(f"the dataset's taxonomy has no class set {list(classes)}; it has "
                     + "; ".join(f"{n}: {list(taxonomy.class_set(n).classes)}" for n in taxonomy.names))


def validation_clips(n_clips: int, cfg: ExtractorTrainConfig) -> np.ndarray:
    """Rows of the clips held out for validation (seeded, by clip)."""
    n_val = int(round(cfg.val_fraction * n_clips)) if n_clips > 1 else 0
    return np.random.default_rng(cfg.seed).permutation(n_clips)[:n_val]


def train_clips(manifest: Manifest, label_map: dict[str, str]) -> list[Clip]:
    """The manifest's train-split clips, each with a label the mapping knows."""
    clips = manifest.by_split(TRAIN_SPLIT)
    unknown = sorted({c.label for c in clips if c.label not in label_map})
    if unknown:
        raise ValueError(f"{manifest.root}: train labels {unknown} have no target class; known: {sorted(label_map)}")
    if not clips:
        raise ValueError(f"{manifest.root}: no clip in split {TRAIN_SPLIT!r}; nothing to train on")
    return clips


def decode_train_windows(
    clips: list[Clip], spec: ExtractorSpec, label_map: dict[str, str], classes: tuple[str, ...], workers: int
) -> TrainWindows:
    """Decode every 1-s window of ``clips`` in the spec's audio format, through the extraction runner's decode path
    (threads); failures are skipped."""
    assert spec.audio is not None
    plan = DecodePlan.for_specs([spec])

    def attempt(clip: Clip) -> np.ndarray | str:
        decoded = decode_whole_clip(clip, plan)  # the extraction runner's windows, context included
        error = decoded.error_for(spec)
        return f"[{error[0]}] {error[1]}" if error else decoded.input_for(spec)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        decoded = list(pool.map(attempt, clips))
    kept = [(c, w) for c, w in zip(clips, decoded) if not isinstance(w, str) and len(w)]
    skipped = tuple((c.clip_id, w if isinstance(w, str) else "shorter than one second")
                    for c, w in zip(clips, decoded) if isinstance(w, str) or not len(w))
    for clip_id, reason in skipped:
        logger.warning("skipping train clip %s: %s", clip_id, reason)
    if not kept:
        raise ValueError("no train clip could be decoded; see the warnings above")
    class_index = {c: i for i, c in enumerate(classes)}
    return TrainWindows(
        waveforms=np.concatenate([w for _, w in kept]),
        targets=np.concatenate([np.full(len(w), class_index[label_map[c.label]], np.int64) for c, w in kept]),
        clip_rows=np.concatenate([np.full(len(w), row, np.int64) for row, (_, w) in enumerate(kept)]),
        clip_ids=tuple(c.clip_id for c, _ in kept),
        skipped=skipped,
    )


def _accuracy(module, waveforms: np.ndarray, targets: np.ndarray, batch_size: int, device: str) -> float:
    import torch

    if len(targets) == 0:
        return float("nan")
    module.eval()
    correct = 0
    with torch.inference_mode():
        for s in range(0, len(targets), batch_size):
            logits = module.classify(torch.from_numpy(waveforms[s : s + batch_size]).to(device))
            correct += int((logits.argmax(1).cpu().numpy() == targets[s : s + batch_size]).sum())
    return correct / len(targets)


def fit(module, data: TrainWindows, cfg: ExtractorTrainConfig, device: str) -> dict[str, Any]:
    """Seeded Adam training of ``module.classify`` with cross-entropy; returns per-epoch metrics."""
    import torch

    val_clips = validation_clips(len(data.clip_ids), cfg)
    rng = np.random.default_rng([cfg.seed, 1])
    generator = torch.Generator().manual_seed(cfg.seed)
    is_val = np.isin(data.clip_rows, val_clips)
    augmented = data.augmented if data.augmented is not None else np.zeros(len(is_val), bool)
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val & ~augmented)
    optimiser = torch.optim.Adam(module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    epochs = []
    bar = progress_bar(range(1, cfg.epochs + 1), desc="train extractor", unit="epoch")
    for epoch in bar:
        started = time.perf_counter()
        module.train()
        order = rng.permutation(train_idx)
        total_loss, correct = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[s : s + cfg.batch_size])
            x = torch.from_numpy(data.waveforms[idx]).to(device)
            y = torch.from_numpy(data.targets[idx]).to(device)
            logits = _train_logits(module, x, cfg.augment, generator)
            loss = loss_fn(logits, y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        val_acc = _accuracy(module, data.waveforms[val_idx], data.targets[val_idx], cfg.batch_size, device)
        epochs.append({"epoch": epoch, "train_loss": total_loss / len(order), "train_accuracy": correct / len(order),
                       "val_accuracy": val_acc, "seconds": time.perf_counter() - started})
        logger.info("epoch %d/%d: loss %.4f, train acc %.3f, val acc %.3f", epoch, cfg.epochs,
                    epochs[-1]["train_loss"], epochs[-1]["train_accuracy"], val_acc)
        bar.set_postfix(loss=f"{epochs[-1]['train_loss']:.4f}", val_acc=f"{val_acc:.3f}")
    return {"epochs": epochs, "final_val_accuracy": epochs[-1]["val_accuracy"],
            "n_train_windows": int(len(train_idx)), "n_val_windows": int(len(val_idx)),
            "n_val_clips": int(len(val_clips)), "n_augmented_windows": int(augmented[train_idx].sum())}


def _train_logits(module, waveform, augment: AudioAugmentConfig, generator) -> "torch.Tensor":
    """Logits of a training batch after the on-the-fly augmentations (channel swap, SpecAugment)."""
    if augment.channel_swap_probability > 0:
        waveform = swap_channels(waveform, augment.channel_swap_probability, generator)
    if augment.spec_augment_fraction > 0:
        features = spec_augment(module.features(waveform), augment.spec_augment_fraction, generator)
        return module.classify_features(features)
    return module.classify(waveform)


def train_extractor(
    name: str, manifest: Manifest, label_map: dict[str, str] | None, cfg: ExtractorTrainConfig
) -> tuple[Path, dict[str, Any]]:
    """Train extractor ``name`` on ``manifest``'s train split and install its weights and run record.

    ``label_map`` (scene -> target class) defaults to :func:`default_label_map` of the module's classes.

    Returns:
        ``(weights path, run record)``.
    """
    import torch

    from extract.extractor import resolve_device

    spec = get_spec(name)
    if not isinstance(spec.weights, TrainedWeights) or spec.audio is None:
        raise ValueError(f"{name}: only audio extractors with weights trained here can be trained")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    module = get_class(name)(spec).to(device)
    classes = tuple(module.classes)
    if cfg.augment.spec_augment_fraction > 0 and not hasattr(module, "classify_features"):
        raise ValueError(f"{name}: SpecAugment needs a module with features()/classify_features(); train without it")
    label_map = default_label_map(classes, manifest.taxonomy) if label_map is None else label_map
    clips = train_clips(manifest, label_map)
    data = decode_train_windows(clips, spec, label_map, classes, cfg.decode_workers)
    n_decoded = len(data.targets)
    if cfg.augment.offline:
        keep = ~np.isin(data.clip_rows, validation_clips(len(data.clip_ids), cfg))
        extra = offline_augment(data.waveforms[keep], data.targets[keep], data.clip_rows[keep], cfg.augment, cfg.seed)
        logger.info("%s: %d offline augmented windows (%s x %d)", name, len(extra[1]), ",".join(cfg.augment.offline),
                    cfg.augment.copies)
        data = data.with_extra(*extra)
    logger.info("%s: training on %d windows of %d train clips (%s)", name, len(data.targets), len(data.clip_ids),
                ", ".join(f"{c}={int((data.targets == i).sum())}" for i, c in enumerate(classes)))
    metrics = fit(module, data, cfg, device)
    ids_digest = hashlib.sha256("\n".join(data.clip_ids).encode()).hexdigest()
    config_digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()
    record = {
        "run_id": f"{name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{ids_digest[:6]}{config_digest[:6]}",
        "extractor": name,
        "spec_version": spec.version,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "avscene_version": __version__,
        "torch_version": torch.__version__,
        "config": cfg.to_dict(),
        "classes": list(classes),
        "label_map": dict(label_map),
        "data": {
            "root": str(manifest.root),
            "source": manifest.source,
            "split": TRAIN_SPLIT,
            "n_clips": len(data.clip_ids),
            "n_windows": n_decoded,
            "n_offline_augmented_windows": int(len(data.targets) - n_decoded),
            "clip_ids_sha256": ids_digest,
            "skipped": [list(s) for s in data.skipped],
        },
        "train_clip_ids": list(data.clip_ids),
        "metrics": metrics,
    }
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / spec.weights.filename
        torch.save({k: v.cpu() for k, v in module.state_dict().items()}, saved)
        path = install_trained(spec, saved, record)
    return path, json.loads((path.parent / spec.weights.record_filename).read_text())


def store_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The run record without its clip list: what a store keeps in its group attributes."""
    return {k: v for k, v in record.items() if k != "train_clip_ids"}


def leaked_clips(record: dict[str, Any], test_ids: list[str]) -> list[str]:
    """Clips the run trained on that are test clips of a store (should be none)."""
    trained = set(record.get("train_clip_ids", ()))
    return [c for c in test_ids if c in trained]
