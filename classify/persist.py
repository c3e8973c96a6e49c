"""Saving and loading trained heads: tensors in ``model.pt`` (weights_only-safe), the rest as JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from classify.heads import HeadConfig, PerSecondHead
from classify.scaler import Standardiser
from classify.train import TrainedHead


def save_head(path: Path, trained: TrainedHead) -> None:
    meta = {
        "extractors": trained.extractors,
        "classes": list(trained.classes),
        "fingerprints": trained.fingerprints,
        "head": trained.head_config.to_dict(),
        "input_dim": int(sum(v.shape[0] for v in trained.scaler.mean.values())),
    }
    torch.save(
        {
            "meta_json": json.dumps(meta),
            "head": trained.head.state_dict(),
            "scaler": {k: torch.from_numpy(np.asarray(v)) for k, v in trained.scaler.to_arrays().items()},
        },
        path,
    )


def load_head(path: Path) -> TrainedHead:
    if not Path(path).exists():
        raise FileNotFoundError(f"no trained head at {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(blob["meta_json"])
    config = HeadConfig.from_dict(meta["head"])
    head = PerSecondHead(meta["input_dim"], len(meta["classes"]), config)
    head.load_state_dict(blob["head"])
    head.eval()
    scaler = Standardiser.from_arrays({k: v.numpy() for k, v in blob["scaler"].items()})
    return TrainedHead(head, scaler, meta["extractors"], tuple(meta["classes"]), meta["fingerprints"], config)
