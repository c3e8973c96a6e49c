"""A built extractor: spec + module + where its parameters came from, with one batched ``embed`` call."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from extract.registry import ExtractorSpec, TrainedWeights, get_class, get_spec
from extract.weights import BUILTIN, RANDOM_INIT, resolve_weights, training_record, weights_id as checkpoint_id

logger = logging.getLogger(__name__)

DeviceName = Literal["auto", "cpu", "cuda"]


def resolve_device(device: str) -> str:
    """Map ``auto|cpu|cuda`` to a torch device string; ``cuda`` without a GPU is an error."""
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"DEVICE must be one of auto, cpu, cuda; got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda was asked for but torch sees no CUDA device")
    return device


def fingerprint(spec: ExtractorSpec, weights_id: str) -> str:
    """Digest of everything that determines an extractor's numbers (spec incl. version, weights)."""
    payload = json.dumps({"spec": spec.to_dict(), "weights": weights_id}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Extractor:
    """A ready-to-run extractor. ``weights_id`` is the checkpoint sha256, ``random-init`` or ``builtin-seeded``.

    ``training_run`` is the run record of weights trained here (None for published or random weights).
    """

    spec: ExtractorSpec
    module: "object"  # torch.nn.Module, typed loosely to keep torch out of import time
    weights_id: str
    device: str
    training_run: dict | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.spec, self.weights_id)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed a batch: visual ``(B, H, W, 3)`` uint8 frames, or audio ``(B, C, samples)`` float32.

        Returns:
            ``(B, embedding_dim)`` float32.
        """
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            if self.spec.visual is not None:
                x = normalise_images(x, self.spec)
            out = self.module(x)
        return out.float().cpu().numpy()


def normalise_images(frames_uint8: "torch.Tensor", spec: ExtractorSpec) -> "torch.Tensor":
    """``(B, H, W, 3)`` uint8 -> ``(B, 3, H, W)`` float, scaled to [0, 1] and normalised by the spec."""
    import torch

    assert spec.visual is not None
    x = frames_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.visual.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.visual.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def create_extractor(name: str, *, random_init: bool = False, device: str = "cpu") -> Extractor:
    """Build ``name`` with its pretrained weights (or random ones when ``random_init`` is explicit)."""
    import torch

    spec, cls = get_spec(name), get_class(name)
    torch.manual_seed(0)  # random-init and built-in parameters are reproducible
    module = cls(spec)
    if spec.weights is None:
        weights_id = BUILTIN
    elif random_init:
        logger.warning("%s: RANDOM weights (--random-init); its embeddings carry no pretrained knowledge", name)
        weights_id = RANDOM_INIT
    else:
        path = resolve_weights(spec)
        module.load_checkpoint(path)
        weights_id = checkpoint_id(path)
    run = training_record(spec) if isinstance(spec.weights, TrainedWeights) and weights_id != RANDOM_INIT else None
    module.eval().to(resolve_device(device))
    return Extractor(spec=spec, module=module, weights_id=weights_id, device=resolve_device(device), training_run=run)
