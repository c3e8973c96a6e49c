"""Saving and loading trained heads: tensors in ``model.pt`` (weights_only-safe), the rest as JSON."""
from __future__ import annotations

import io
import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avscene.errors import InputFileError
from classify.heads import FusionHead, HeadConfig, HeadInput
from classify.scaler import Standardiser
from classify.train import TrainedHead


def save_tensors(path: Path, blob: dict[str, Any]) -> None:
    """``torch.save`` into memory, then one Python write: a full disk is an ``OSError`` (torch's own writer turns it
    into a ``RuntimeError`` about zip positions)."""
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    with open(path, "wb") as f:
        f.write(buffer.getbuffer())


def load_tensors(path: Path) -> dict[str, Any]:
    """A tensor file ``weights_only``; a missing, truncated, foreign or pickle-bearing file is an
    :class:`InputFileError` naming it (never advice to unpickle it)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's text suggests weights_only=False: only its reason is kept
        reason = re.search(r"(Unsupported [^\n]*?|Trying to load unsupported [^\n]*?)(?: was not an allowed|\.?\n|\.?$)",
                           str(err))
        raise InputFileError(f"{path}: not a tensor file avscene wrote: reading it needs Python unpickling"
                             f"{f' ({reason.group(1).strip()})' if reason else ''}, which avscene never does") from None
    except Exception as err:  # noqa: BLE001 - any parse failure of an untrusted file (torch raises KeyError, IndexError, ... on random bytes)
        first = str(err).strip().split(". ")[0] or type(err).__name__
        raise InputFileError(f"{path}: not a readable tensor file ({first}); truncated or not written by avscene?") from None
    if not isinstance(blob, dict):
        raise InputFileError(f"{path}: holds a {type(blob).__name__}, not the tensor dictionary avscene writes")
    return blob


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
    save_tensors(path, {
        "meta_json": json.dumps(meta),
        "head": trained.head.state_dict(),
        "scaler": {k: torch.from_numpy(np.asarray(v)) for k, v in trained.scaler.to_arrays().items()},
    })


def save_finetuned(path: Path, head: torch.nn.Module, extractors: dict[str, torch.nn.Module],
                   mean: dict[str, np.ndarray], std: dict[str, np.ndarray]) -> None:
    """Write a fine-tuned head with the state of each fine-tuned extractor module (``<modality>_extractor``) and the
    standardiser's per-extractor ``scaler_mean``/``scaler_std``: tensors only, ``weights_only``-loadable."""
    save_tensors(path, {"head": head.state_dict(), **{f"{m}_extractor": mod.state_dict() for m, mod in extractors.items()},
                        "scaler_mean": {n: torch.as_tensor(np.asarray(v)) for n, v in mean.items()},
                        "scaler_std": {n: torch.as_tensor(np.asarray(v)) for n, v in std.items()}})


def load_head(path: Path) -> TrainedHead:
    """Read a head written by :func:`save_head` (``weights_only`` loading: no pickle); any other file is an
    :class:`InputFileError` naming it."""
    blob = load_tensors(path)
    try:
        meta = json.loads(blob["meta_json"])
        config = HeadConfig.from_dict(meta["head"])
        head = FusionHead([HeadInput(**i) for i in meta["inputs"]], len(meta["classes"]), config)
        head.load_state_dict(blob["head"])
        scaler = Standardiser.from_arrays({k: v.numpy() for k, v in blob["scaler"].items()})
        trained = TrainedHead(head, scaler, meta["extractors"], tuple(meta["classes"]), meta["fingerprints"], config,
                              meta["history"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise InputFileError(f"{path}: not a head written by `classify train` ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
    head.eval()
    return trained
