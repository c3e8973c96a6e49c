"""Classification heads on per-second embeddings: per-extractor ``(B, T, D_e)`` -> per-second logits ``(B, T, K)``.

The family of the first paper's Table 2 (NS, LS, ES, MS and their combinations) plus a linear probe and the second
paper's MLP (512-128-64). Self-attention runs over the seconds of one clip, masked; heads never mix clips.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from classify.kinds import ATTENTION_KINDS, HEAD_KINDS, HeadKind

MODALITIES: tuple[str, ...] = ("visual", "audio")


@dataclass(frozen=True)
class HeadConfig:
    """Which head, its widths and its regularisation.

    ``kind``: ``linear`` (one FC), ``mlp`` (the second paper's 512-128-64 MLP, ``mlp_hidden``), or a Table-2 variant
    of the first paper: ``ns`` (no self-attention), ``ls`` (late: on the concatenation of all embeddings), ``es``
    (early: on each embedding), ``ms`` (per modality: on the concatenated visual and the concatenated audio
    embeddings) and the combinations ``es+ls``, ``ms+ls``, ``es+ms``, ``es+ms+ls``; all end with the paper's tail
    (FC to half the width, dropout, output FC). ``projection_dim``: width each extractor's embedding is projected to
    first (None = the paper's full dimensions).
    """

    kind: HeadKind = "mlp"
    dropout: float = 0.5
    projection_dim: int | None = None
    attention_heads: int = 1
    mlp_hidden: tuple[int, ...] = (512, 128, 64)

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError(f"projection_dim must be a positive width or None, got {self.projection_dim}")
        if self.attention_heads < 1:
            raise ValueError(f"attention_heads must be >= 1, got {self.attention_heads}")
        object.__setattr__(self, "mlp_hidden", tuple(int(h) for h in self.mlp_hidden))

    @property
    def attention_stages(self) -> frozenset[str]:
        """The self-attention stages of this kind, a subset of {'es', 'ms', 'ls'}."""
        if self.kind not in ATTENTION_KINDS or self.kind == "ns":
            return frozenset()
        return frozenset(self.kind.split("+"))

    def to_dict(self) -> dict:
        return {**asdict(self), "mlp_hidden": list(self.mlp_hidden)}

    @classmethod
    def from_dict(cls, data: dict) -> "HeadConfig":
        return cls(**data)


@dataclass(frozen=True)
class HeadInput:
    """One extractor feeding a head: its name, embedding width and modality (``visual`` or ``audio``)."""

    name: str
    dim: int
    modality: str

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"{self.name}: modality must be one of {MODALITIES}, got {self.modality!r}")


class MaskedSelfAttention(nn.Module):
    """Self-attention over the seconds ``T`` of each clip; padded seconds are neither keys nor outputs.

    Unlike the paper's code (a 2-D ``(batch, features)`` tensor, read by ``nn.MultiheadAttention`` as one sequence
    whose length is the batch), a clip's output never depends on the other clips of its batch.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by attention_heads={heads}")
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        nn.init.xavier_normal_(self.attention.in_proj_weight)
        nn.init.xavier_normal_(self.attention.out_proj.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, D), ``mask`` (B, T) bool -> (B, T, D), zero on masked seconds."""
        # a clip without any valid second would give NaN (softmax over nothing): let it attend, its output is zeroed
        ignore = ~mask & mask.any(1, keepdim=True)
        out, _ = self.attention(x, x, x, key_padding_mask=ignore, need_weights=False)
        return out * mask.unsqueeze(-1)


def _xavier_linear(in_dim: int, out_dim: int) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class FusionHead(nn.Module):
    """Scores each second of a clip from its standardised per-extractor embeddings.

    Order of operations (paper's ``NetCombFinal``): [projection] -> ES per extractor -> concatenation per modality ->
    MS per modality -> concatenation of the modalities -> LS -> tail. ``ns`` is the same tail without attention.
    """

    def __init__(self, inputs: list[HeadInput], n_classes: int, config: HeadConfig):
        super().__init__()
        if not inputs:
            raise ValueError("a head needs at least one input extractor")
        self.inputs = list(inputs)
        self.config = config
        stages = config.attention_stages
        p = config.projection_dim
        # module lists aligned with ``inputs`` (extractor names contain dots, which module names may not)
        self.projections = nn.ModuleList([_xavier_linear(i.dim, p) for i in inputs] if p is not None else [])
        width = {i.name: p if p is not None else i.dim for i in inputs}
        self.early = nn.ModuleList(
            [MaskedSelfAttention(width[i.name], config.attention_heads) for i in inputs] if "es" in stages else []
        )
        self.modality_order = [m for m in MODALITIES if any(i.modality == m for i in inputs)]
        modality_width = {m: sum(width[i.name] for i in inputs if i.modality == m) for m in self.modality_order}
        self.per_modality = nn.ModuleDict(
            {m: MaskedSelfAttention(modality_width[m], config.attention_heads) for m in self.modality_order}
            if "ms" in stages else {}
        )
        total = sum(modality_width.values())
        self.late = MaskedSelfAttention(total, config.attention_heads) if "ls" in stages else None
        self.tail = self._build_tail(total, n_classes, config)

    @staticmethod
    def _build_tail(width: int, n_classes: int, config: HeadConfig) -> nn.Sequential:
        if config.kind == "linear":
            return nn.Sequential(_xavier_linear(width, n_classes))
        if config.kind == "mlp":
            layers: list[nn.Module] = []
            for hidden in config.mlp_hidden:
                layers += [_xavier_linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
                width = hidden
            return nn.Sequential(*layers, _xavier_linear(width, n_classes))
        half = max(1, width // 2)  # the paper's tail: FC to half the width (no activation), dropout, output FC
        return nn.Sequential(_xavier_linear(width, half), nn.Dropout(config.dropout), _xavier_linear(half, n_classes))

    def forward(self, features: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """``features`` name -> (B, T, D_e) float32, ``mask`` (B, T) bool -> logits (B, T, K), zero where masked."""
        per_modality: dict[str, list[torch.Tensor]] = {m: [] for m in self.modality_order}
        for index, spec in enumerate(self.inputs):
            x = features[spec.name]
            if len(self.projections):
                x = self.projections[index](x)
            if len(self.early):
                x = self.early[index](x, mask)
            per_modality[spec.modality].append(x)
        fused = []
        for modality in self.modality_order:
            x = torch.cat(per_modality[modality], dim=-1)
            if modality in self.per_modality:
                x = self.per_modality[modality](x, mask)
            fused.append(x)
        x = torch.cat(fused, dim=-1)
        if self.late is not None:
            x = self.late(x, mask)
        return self.tail(x) * mask.unsqueeze(-1)
