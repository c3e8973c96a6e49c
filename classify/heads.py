"""Classification heads on per-second embeddings: ``(B, T, D_total)`` -> per-second logits ``(B, T, K)``.

Heads never mix clips: every operation is per second or over the seconds of one clip.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

HeadKind = Literal["linear", "mlp"]
HEAD_KINDS: tuple[str, ...] = ("linear", "mlp")


@dataclass(frozen=True)
class HeadConfig:
    """Baseline head: a linear layer, or one hidden layer with ReLU and dropout."""

    kind: HeadKind = "mlp"
    hidden: int = 256
    dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HeadConfig":
        return cls(**data)


class PerSecondHead(nn.Module):
    """Scores each second independently from the concatenation of its standardised embeddings."""

    def __init__(self, input_dim: int, n_classes: int, config: HeadConfig):
        super().__init__()
        if config.kind == "linear":
            self.net: nn.Module = nn.Linear(input_dim, n_classes)
        else:
            self.net = nn.Sequential(
                nn.Dropout(config.dropout),
                nn.Linear(input_dim, config.hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden, n_classes),
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, D), ``mask`` (B, T) bool -> logits (B, T, K); masked seconds give zeros."""
        return self.net(x) * mask.unsqueeze(-1)
