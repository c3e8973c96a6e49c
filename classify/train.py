"""Seeded, deterministic training of a head on a ClipSet held in RAM, and per-second prediction.

Batches are clips ``(B, T, D_e)`` (``batch_unit="clips"``) or single seconds ``(B, 1, D_e)`` drawn from all clips
(``batch_unit="seconds"``, the released code's rows); the loss is the cross-entropy of every valid second against
its clip's label (soft labels when mixed up), averaged over the batch's valid seconds.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
import torch

from classify.data import ClipSet
from classify.heads import FusionHead, HeadConfig, HeadInput
from classify.scaler import Standardiser
from avscene.errors import AvsceneError
from avscene.progress import progress_bar

logger = logging.getLogger(__name__)


class TrainingError(AvsceneError, RuntimeError):
    """Training produced a head that must not be used (non-finite loss or parameters)."""

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["linear", "cosine", "constant"]
BatchUnit = Literal["clips", "seconds"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("linear", "cosine", "constant")
BATCH_UNITS: tuple[str, ...] = ("clips", "seconds")
PREDICT_CLIPS_PER_BATCH = 256


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of a head; the last epoch's weights are kept. The learning rate of 0-based epoch ``e`` is that of
    a torch scheduler stepped once per epoch: ``linear`` = ``LinearLR(start_factor=1, end_factor=lr_final / lr,
    total_iters=schedule_epochs)`` (``lr`` at epoch 1, ``lr_final`` from epoch ``schedule_epochs + 1`` on);
    ``cosine`` = ``CosineAnnealingLR(T_max=schedule_epochs, eta_min=lr_final)``, whose cosine goes on past ``T_max``
    (the rate climbs back towards ``lr``, reaching it at ``2 * T_max``), as the released code's does.

    ``batch_unit``: ``clips`` = ``batch_size`` clips a step (all their seconds, attention over a clip's seconds);
    ``seconds`` = ``batch_size`` seconds a step drawn from all clips, each seen alone (a one-second sequence).

    ``mixup_fraction`` of each batch's clips are replaced by ``mixup_ratio * clip + (1 - mixup_ratio) * other clip``
    (embeddings of both modalities and one-hot labels). ``augmented_views``: train also on the store's augmented
    visual views, only those of ``view_kinds`` (``paper_aug``, ``randaug``) when given; ``evaluate_augmented_views``:
    also score them (off = evaluation on ``original`` only).
    """

    optimizer: Optimizer = "adam"
    epochs: int = 20
    batch_size: int = 32  # clips or seconds per step (batch_unit)
    batch_unit: BatchUnit = "clips"
    lr: float = 1e-3
    lr_final: float = 1e-5
    schedule: Schedule = "linear"
    schedule_epochs: int = 18
    weight_decay: float = 0.0
    momentum: float = 0.0
    mixup_fraction: float = 0.0
    mixup_ratio: float = 0.4
    augmented_views: bool = True
    view_kinds: tuple[str, ...] = ()  # () = every augmented view kind in the store
    evaluate_augmented_views: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.batch_unit not in BATCH_UNITS:
            raise ValueError(f"batch_unit must be one of {BATCH_UNITS}, got {self.batch_unit!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.schedule_epochs < 1:
            raise ValueError("epochs, batch_size and schedule_epochs must be >= 1")
        if not 0.0 <= self.mixup_fraction <= 1.0 or not 0.0 <= self.mixup_ratio <= 1.0:
            raise ValueError("mixup_fraction and mixup_ratio must be in [0, 1]")

    def scheduler(self, optimiser: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        """The torch scheduler of this schedule on ``optimiser`` (whose ``lr`` is ``self.lr``); step it once per epoch."""
        schedulers = torch.optim.lr_scheduler
        if self.schedule == "linear":
            return schedulers.LinearLR(optimiser, start_factor=1.0, end_factor=self.lr_final / self.lr,
                                       total_iters=self.schedule_epochs)
        if self.schedule == "cosine":
            return schedulers.CosineAnnealingLR(optimiser, T_max=self.schedule_epochs, eta_min=self.lr_final)
        return schedulers.ConstantLR(optimiser, factor=1.0, total_iters=0)

    def learning_rate(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: :meth:`scheduler`'s after ``epoch`` steps."""
        optimiser = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=self.lr)
        scheduler = self.scheduler(optimiser)
        for _ in range(epoch):
            optimiser.step()  # no gradients: changes nothing, keeps the scheduler's call order
            scheduler.step()
        return float(optimiser.param_groups[0]["lr"])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**{**data, "view_kinds": tuple(data.get("view_kinds", ()))})


PRESETS: dict[str, TrainConfig] = {
    # the first paper's text (section 5): SGD, batch 32, lr 1e-3 in the first epoch "linearly reduced to 0.00001 by
    # the 19th epoch" (epoch 19 = 0-based 18), 20 epochs, the 20th epoch's snapshot. Batch unit and weight decay are
    # not stated: ours (clips, none).
    "paper-text": TrainConfig(optimizer="sgd", epochs=20, batch_size=32, lr=1e-3, lr_final=1e-5, schedule="linear",
                              schedule_epochs=18),
    # the released code (IDT-ITI/Visual-Audio-Discrepancy-Detection, 2_train_av_classifiers.py): lines 25-34 epochs
    # 30, bs 32, lr 0.001, scheduler_min 0.01, l2_reg 0.01, momentum 0; lines 721-728 SGD(weight_decay=l2_reg) and
    # CosineAnnealingLR(T_max=max(20, int(30 * 0.8)) = 24, eta_min=1e-5) stepped once per epoch (line 783), so
    # epochs 26-30 climb back from 1e-5 to 1.12e-4; lines 645-648 batch 32 shuffled rows = seconds. Its dropout 0.5
    # (line 31) is HeadConfig's default; its 30th epoch is kept (it saves epochs 10, 20 and 30, line 26).
    "paper-code": TrainConfig(optimizer="sgd", epochs=30, batch_size=32, batch_unit="seconds", lr=1e-3, lr_final=1e-5,
                              schedule="cosine", schedule_epochs=24, weight_decay=0.01),
    # ours: Adam with the paper text's schedule; converges with clip batches (see docs/heads.md)
    "adam": TrainConfig(),
    # the second paper's joint audio-video mixup on top of "adam": ratio 0.4 for 20 % of the training samples
    "adam-mixup": TrainConfig(mixup_fraction=0.2, mixup_ratio=0.4),
}


def preset(name: str, **overrides) -> TrainConfig:
    """The named preset with ``overrides`` (e.g. ``epochs=5``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


class StandardisedBatches:
    """A ClipSet's features as shared torch tensors, standardised per batch (float16 stays float16 in RAM)."""

    def __init__(self, clips: ClipSet, scaler: Standardiser, extractors: list[str]):
        self.features = {n: torch.from_numpy(np.ascontiguousarray(clips.features[n])) for n in extractors}
        self.mean = {n: torch.from_numpy(np.asarray(scaler.mean[n], dtype=np.float32)) for n in extractors}
        self.std = {n: torch.from_numpy(np.asarray(scaler.std[n], dtype=np.float32)) for n in extractors}
        self.mask = torch.from_numpy(np.ascontiguousarray(clips.mask))

    def __call__(self, rows: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Rows ``(B,)`` -> (name -> (B, T, D_e) float32 standardised, mask (B, T) bool)."""
        x = {n: (f[rows].float() - self.mean[n]) / self.std[n] for n, f in self.features.items()}
        return x, self.mask[rows]


@dataclass
class TrainedHead:
    """A head with everything needed to apply it to another split of a store."""

    head: FusionHead
    scaler: Standardiser
    extractors: list[str]
    classes: tuple[str, ...]
    fingerprints: dict[str, str]
    head_config: HeadConfig
    history: list[dict] = field(default_factory=list)

    def check_fingerprints(self, fingerprints: dict[str, str]) -> None:
        """Refuse embeddings made by other extractor configurations than the training ones."""
        for name in self.extractors:
            if fingerprints.get(name) != self.fingerprints[name]:
                raise ValueError(
                    f"{name}: the store's fingerprint {fingerprints.get(name)} differs from the one this head "
                    f"was trained on ({self.fingerprints[name]}); re-train on this store"
                )

    def predict_logits(self, clips: ClipSet) -> np.ndarray:
        """Per-second logits ``(n, T, K)`` float32; masked seconds are zero. Clips never influence each other."""
        self.check_fingerprints(clips.fingerprints)
        batches = StandardisedBatches(clips, self.scaler, self.extractors)
        out = np.zeros((*clips.mask.shape, len(self.classes)), dtype=np.float32)
        self.head.eval()
        with torch.inference_mode():
            for start in range(0, len(clips), PREDICT_CLIPS_PER_BATCH):
                rows = torch.arange(start, min(start + PREDICT_CLIPS_PER_BATCH, len(clips)))
                x, mask = batches(rows)
                out[start : start + len(rows)] = (self.head(x, mask) * mask.unsqueeze(-1)).numpy()
        return out

    def predict_proba(self, clips: ClipSet, logits: np.ndarray | None = None) -> np.ndarray:
        """Per-second class probabilities ``(n, T, K)`` float32 (softmax of :meth:`predict_logits`, or of ``logits``
        already predicted for ``clips``); masked seconds are zero."""
        logits = self.predict_logits(clips) if logits is None else logits
        mask = torch.from_numpy(np.ascontiguousarray(clips.mask)).unsqueeze(-1)
        return (torch.softmax(torch.from_numpy(logits), dim=-1) * mask).numpy()


def head_inputs(clips: ClipSet, extractors: list[str]) -> list[HeadInput]:
    """Widths and modalities of ``extractors`` in ``clips`` (modality ``visual`` unless the store says ``audio``)."""
    return [HeadInput(n, int(clips.features[n].shape[-1]), clips.modalities.get(n, "visual")) for n in extractors]


def _optimiser(head: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = head.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def mixup(
    x: dict[str, torch.Tensor], mask: torch.Tensor, targets: torch.Tensor, fraction: float, ratio: float,
    generator: torch.Generator,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Joint audio-video mixup of ``fraction`` of the batch's clips with random partners from the batch:
    ``ratio * clip + (1 - ratio) * partner``.

    ``targets`` (B, K) soft labels; a mixed clip keeps the seconds valid in both of its sources.
    """
    n_mixed = round(fraction * len(mask))
    if n_mixed == 0 or len(mask) < 2:
        return x, mask, targets
    chosen = torch.randperm(len(mask), generator=generator)[:n_mixed]
    partner = (chosen + torch.randint(1, len(mask), (n_mixed,), generator=generator)) % len(mask)  # never itself
    lam = ratio
    x = {n: v.clone() for n, v in x.items()}
    for v in x.values():
        v[chosen] = lam * v[chosen] + (1.0 - lam) * v[partner]
    mask, targets = mask.clone(), targets.clone()
    mask[chosen] = mask[chosen] & mask[partner]
    targets[chosen] = lam * targets[chosen] + (1.0 - lam) * targets[partner]
    return x, mask, targets


def second_loss(logits: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits ``(B, T, K)`` against clip soft labels ``(B, K)``, mean over valid seconds."""
    log_p = torch.log_softmax(logits, dim=-1)
    per_second = -(log_p * targets.unsqueeze(1)).sum(-1)
    return (per_second * mask).sum() / mask.sum().clamp(min=1)


def single_seconds(clips: ClipSet) -> ClipSet:
    """Each valid second of ``clips`` as a one-second clip ``(n_seconds, 1, D_e)`` with its clip's id and label."""
    clip_rows, seconds = np.nonzero(clips.mask)
    return ClipSet(
        clips.ids[clip_rows], clips.scene_labels[clip_rows], clips.targets[clip_rows], clips.classes,
        {n: f[clip_rows, seconds][:, None] for n, f in clips.features.items()},
        np.ones((len(clip_rows), 1), dtype=bool), clips.fingerprints, clips.modalities,
    )


def head_and_train_configs(head: HeadConfig | str, training: TrainConfig | str,
                           overrides: dict[str, object]) -> tuple[HeadConfig, TrainConfig]:
    """A head config (or kind) and a training config (or preset name), with ``overrides`` of either's fields."""
    head_fields, train_fields = {f.name for f in fields(HeadConfig)}, {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - head_fields - train_fields)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}: give fields of HeadConfig {sorted(head_fields)} or "
                         f"TrainConfig {sorted(train_fields)}")
    head_config = head if isinstance(head, HeadConfig) else HeadConfig(kind=head)
    config = training if isinstance(training, TrainConfig) else preset(training)
    return (replace(head_config, **{k: v for k, v in overrides.items() if k in head_fields}),
            replace(config, **{k: v for k, v in overrides.items() if k in train_fields}))


def train_head(clips: ClipSet, head: HeadConfig | str = "ls", preset: TrainConfig | str = "adam", progress: bool = True,
               **overrides: Any) -> TrainedHead:
    """Fit the scaler and the head on the labelled clips of ``clips`` (on their seconds one by one when the batch unit
    is ``seconds``).

    Args:
        clips: The training clips (e.g. ``open_store(path).load("train")``).
        head: A :class:`HeadConfig`, or a head kind (``classify.kinds.HEAD_KINDS``: ``ls``, ``mlp``, ...).
        preset: A :class:`TrainConfig`, or the name of one of :data:`PRESETS`.
        progress: A bar of epochs with the last epoch's loss (on a terminal).
        **overrides: Fields of :class:`HeadConfig` (``dropout``, ``projection_dim``, ...) or :class:`TrainConfig`
            (``epochs``, ``lr``, ``seed``, ...).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from avscene import extract, open_store, train_head
        >>> from avscene.demo.synthetic import make_demo_dataset
        >>> folder = Path(tempfile.mkdtemp())
        >>> data = make_demo_dataset(folder / "data", clips_per_scene=1, seconds=2, width=32, height=24)
        >>> _ = extract(data, folder / "emb.zarr", "debug_visual,debug_audio", device="cpu", progress=False)
        >>> clips = open_store(folder / "emb.zarr").load("train")
        >>> trained = train_head(clips, head="ls", preset="adam", epochs=3, projection_dim=8)
        >>> trained.extractors, len(trained.history), trained.predict_proba(clips).shape
        (['debug_audio', 'debug_visual'], 3, (10, 2, 10))
    """
    head_config, config = head_and_train_configs(head, preset, overrides)
    labelled = clips.subset(np.flatnonzero(clips.targets >= 0))
    if len(labelled) == 0:
        raise ValueError("the train split has no labelled clip")
    extractors = list(labelled.features)
    scaler = Standardiser.fit(labelled.features, labelled.mask)
    if config.batch_unit == "seconds":
        labelled = single_seconds(labelled)
    batches = StandardisedBatches(labelled, scaler, extractors)
    n_classes = len(labelled.classes)
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(labelled.targets), n_classes).float()

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    head = FusionHead(head_inputs(labelled, extractors), n_classes, head_config)
    optimiser = _optimiser(head, config)
    scheduler = config.scheduler(optimiser)
    history = []
    head.train()
    epochs = progress_bar(range(config.epochs), desc=f"train {head_config.kind}", unit="epoch", enabled=progress,
                          leave=False)
    for epoch in epochs:
        lr = float(optimiser.param_groups[0]["lr"])
        order = torch.randperm(len(labelled), generator=generator)
        total, steps = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            x, mask = batches(rows)
            x, mask, targets = mixup(x, mask, one_hot[rows], config.mixup_fraction, config.mixup_ratio, generator)
            loss = second_loss(head(x, mask), mask, targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, steps = total + loss.item(), steps + 1
        scheduler.step()
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": total / steps})
        logger.debug("epoch %d lr %.2e loss %.4f", epoch + 1, lr, total / steps)
        epochs.set_postfix(loss=f"{total / steps:.4f}", lr=f"{lr:.1e}")
    head.eval()
    _refuse_non_finite(head, history)
    return TrainedHead(head, scaler, extractors, labelled.classes, dict(labelled.fingerprints), head_config, history)


def _refuse_non_finite(head: torch.nn.Module, history: list[dict]) -> None:
    """A head whose loss or parameters are NaN/inf is never returned (so never saved): it would predict NaN."""
    losses = [h["train_loss"] for h in history if not np.isfinite(h["train_loss"])]
    bad = [n for n, p in head.named_parameters() if not torch.isfinite(p).all()]
    if losses or bad:
        raise TrainingError(f"training diverged: {'loss ' + str(losses[0]) + ', ' if losses else ''}"
                            f"{len(bad)} parameter tensor(s) not finite{' (' + ', '.join(bad[:3]) + ')' if bad else ''}; "
                            "the head is not saved (check the store with `python -m extract verify`, or lower the "
                            "learning rate)")
