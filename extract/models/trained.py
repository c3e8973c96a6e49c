"""What every network trained here shares: its checkpoint is the plain state dict ``train-extractor`` saved."""
from __future__ import annotations

from pathlib import Path

import torch


class StateDictCheckpoint:
    """Mixin for an ``nn.Module`` whose weights are trained here (``TrainedWeights``)."""

    def load_checkpoint(self, path: Path) -> None:
        """Load the state dict saved by ``python -m extract train-extractor`` (strict, ``weights_only``)."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
