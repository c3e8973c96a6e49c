"""Saving and loading trained heads: tensors in ``model.pt`` (weights_only-safe), the rest as JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from classify.heads import FusionHead, HeadConfig, HeadInput
from classify.scaler import Standardiser
from classify.train import TrainedHead


def save_head(path: Path, trained: TrainedHead) -> None:
    """Write ``trained`` to ``path`` (tensors, plus its config, inputs, classes and fingerprints as JSON)."""
    meta = {
        "extractors": trained.extractors,
        "classes": list(trained.classes),
        "fingerprints": trained.fingerprints,
        "head": trained.head_config.to_dict(),
        "inputs": [{"name": i.name, "dim": i.dim, "modality": i.modality} for i in trained.head.inputs],
        "history": trained.history,
    }
    torch.save(
        {
            "meta_json": json.dumps(meta),
            "head": trained.head.state_dict(),
            "scaler": {k: torch.from_numpy(np.asarray(v)) for k, v in trained.scaler.to_arrays().items()},
        },
        path,
    )


def save_finetuned(path: Path, head: torch.nn.Module, extractors: dict[str, torch.nn.Module],
                   mean: dict[str, np.ndarray], std: dict[str, np.ndarray]) -> None:
    """Write a fine-tuned head with the state of each fine-tuned extractor module (``<modality>_extractor``) and the
    standardiser's per-extractor ``scaler_mean``/``scaler_std``: tensors only, ``weights_only``-loadable."""
    torch.save({"head": head.state_dict(), **{f"{m}_extractor": mod.state_dict() for m, mod in extractors.items()},
                "scaler_mean": {n: torch.as_tensor(np.asarray(v)) for n, v in mean.items()},
                "scaler_std": {n: torch.as_tensor(np.asarray(v)) for n, v in std.items()}}, path)


def load_head(path: Path) -> TrainedHead:
    """Read a head written by :func:`save_head` (``weights_only`` loading: no pickle)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no trained head at {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(blob["meta_json"])
    config = HeadConfig.from_dict(meta["head"])
    head = FusionHead([HeadInput(**i) for i in meta["inputs"]], len(meta["classes"]), config)
    head.load_state_dict(blob["head"])
    head.eval()
    scaler = Standardiser.from_arrays({k: v.numpy() for k, v in blob["scaler"].items()})
    return TrainedHead(head, scaler, meta["extractors"], tuple(meta["classes"]), meta["fingerprints"], config,
                       meta["history"])
