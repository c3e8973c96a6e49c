"""The head kinds: one table for :mod:`classify.heads` and the command lines (importing it never imports torch)."""
from __future__ import annotations

from typing import Literal, get_args

HeadKind = Literal["linear", "mlp", "ns", "ls", "es", "ms", "es+ls", "ms+ls", "es+ms", "es+ms+ls"]
HEAD_KINDS: tuple[str, ...] = get_args(HeadKind)
ATTENTION_KINDS: tuple[str, ...] = tuple(k for k in HEAD_KINDS if k not in ("linear", "mlp"))  # the Table-2 kinds
