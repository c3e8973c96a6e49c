"""Seeded, deterministic training of a head on a ClipSet held in RAM, and per-second prediction."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from classify.data import ClipSet
from classify.heads import HeadConfig, PerSecondHead
from classify.scaler import Standardiser


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the baseline head (Adam on per-second samples)."""

    epochs: int = 30
    batch_size: int = 256  # seconds per step
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)


@dataclass
class TrainedHead:
    """A head with everything needed to apply it to another split of a store."""

    head: PerSecondHead
    scaler: Standardiser
    extractors: list[str]
    classes: tuple[str, ...]
    fingerprints: dict[str, str]
    head_config: HeadConfig

    def check_fingerprints(self, fingerprints: dict[str, str]) -> None:
        """Refuse embeddings made by other extractor configurations than the training ones."""
        for name in self.extractors:
            if fingerprints.get(name) != self.fingerprints[name]:
                raise ValueError(
                    f"{name}: the store's fingerprint {fingerprints.get(name)} differs from the one this head "
                    f"was trained on ({self.fingerprints[name]}); re-train on this store"
                )

    def predict_proba(self, clips: ClipSet) -> np.ndarray:
        """Per-second class probabilities ``(n, T, K)``; masked seconds are zero."""
        self.check_fingerprints(clips.fingerprints)
        x = torch.from_numpy(concat_features(self.scaler.transform(clips.features), self.extractors))
        mask = torch.from_numpy(clips.mask)
        self.head.eval()
        with torch.inference_mode():
            probs = torch.softmax(self.head(x, mask), dim=-1) * mask.unsqueeze(-1)
        return probs.numpy()


def concat_features(features: dict[str, np.ndarray], order: list[str]) -> np.ndarray:
    return np.concatenate([features[n] for n in order], axis=-1)


def train_head(train: ClipSet, head_config: HeadConfig, config: TrainConfig) -> TrainedHead:
    """Fit the scaler and the head on ``train`` (labelled clips only)."""
    labelled = train.subset(np.flatnonzero(train.targets >= 0))
    if len(labelled) == 0:
        raise ValueError("the train split has no labelled clip")
    extractors = list(labelled.features)
    scaler = Standardiser.fit(labelled.features, labelled.mask)
    x = concat_features(scaler.transform(labelled.features), extractors)[labelled.mask]
    y = np.broadcast_to(labelled.targets[:, None], labelled.mask.shape)[labelled.mask]

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    head = PerSecondHead(x.shape[1], len(labelled.classes), head_config)
    optimiser = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    ones = torch.ones(1, 1, dtype=torch.bool)
    head.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            logits = head(xt[idx].unsqueeze(1), ones.expand(len(idx), 1)).squeeze(1)
            loss = loss_fn(logits, yt[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    head.eval()
    return TrainedHead(head, scaler, extractors, labelled.classes, dict(labelled.fingerprints), head_config)
