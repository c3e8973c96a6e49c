"""The kinds the command lines offer: head kinds (one table for :mod:`classify.heads`), training presets and each
paper's augmented-view kinds (importing it never imports torch)."""
from __future__ import annotations

from typing import Literal, get_args

HeadKind = Literal["linear", "mlp", "ns", "ls", "es", "ms", "es+ls", "ms+ls", "es+ms", "es+ms+ls"]
HEAD_KINDS: tuple[str, ...] = get_args(HeadKind)
ATTENTION_KINDS: tuple[str, ...] = tuple(k for k in HEAD_KINDS if k not in ("linear", "mlp"))  # the Table-2 kinds
PRESET_CHOICES = ("paper-text", "paper-code", "adam", "adam-mixup")  # classify.train.PRESETS (a test keeps them equal)
FIRST_PAPER_VIEW_KINDS = ("paper_aug",)  # the first paper's flip/brightness/contrast/rotation pass
WANG_VIEW_KINDS = ("randaug",)  # the second paper's RandAugment subset; never the first paper's views
