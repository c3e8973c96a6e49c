"""A contrastive audio-visual correspondence head on the cached per-second embeddings.

Two small towers map a second's visual embeddings and its audio embeddings (each modality's extractors
standardised and concatenated) to unit vectors; InfoNCE (van den Oord et al. 2018), symmetric as in CLIP, trains
them on the valid seconds of pristine training clips: in a batch of seconds, each second's own audio is the positive
of its picture and the other clips' audio are the negatives. A batch draws its seconds from a few classes, so most
negatives are clips of the same class from other recording locations, which class comparison cannot tell apart;
seconds of the same location as the anchor (its own clip's other seconds included) are left out of its negatives,
since they may well match. The per-second score is ``1 - cos(visual, audio)`` in [0, 2]: higher = less likely
recorded together.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from classify.data import ClipSet
from classify.scaler import Standardiser

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorrespondenceConfig:
    """Tower widths, InfoNCE temperature and the optimiser; ``classes_per_batch`` classes share a batch."""

    embedding_dim: int = 64
    hidden_dim: int = 256
    temperature: float = 0.1
    epochs: int = 30
    min_steps_per_epoch: int = 10  # small stores: an epoch is at least this many batches
    batch_seconds: int = 256
    classes_per_batch: int = 3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _tower(in_dim: int, config: CorrespondenceConfig):
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(in_dim, config.hidden_dim), torch.nn.GELU(), torch.nn.Dropout(config.dropout),
        torch.nn.Linear(config.hidden_dim, config.embedding_dim),
    )


@dataclass
class CorrespondenceHead:
    """The trained towers, the standardiser of their inputs and which extractors feed each."""

    towers: dict  # "visual" / "audio" -> torch.nn.Module
    scaler: Standardiser
    extractors: dict[str, list[str]]  # modality -> extractor names, concatenated in this order
    fingerprints: dict[str, str]
    config: CorrespondenceConfig
    history: list[float] = field(default_factory=list)  # mean InfoNCE loss per epoch

    def second_scores(self, clips: ClipSet) -> np.ndarray:
        """``1 - cos`` of each second's visual and audio embedding, ``(n, T)`` float64; masked seconds are NaN."""
        import torch

        for name in self.extractors["visual"] + self.extractors["audio"]:
            if clips.fingerprints.get(name) != self.fingerprints[name]:
                raise ValueError(f"{name}: these embeddings come from another extractor configuration than the "
                                 "correspondence head's; re-train it on this store")
        out = np.full(clips.mask.shape, np.nan)
        for tower in self.towers.values():
            tower.eval()
        with torch.inference_mode():
            for start in range(0, len(clips), 256):
                rows = slice(start, start + 256)
                z = {m: self._embed(m, {n: clips.features[n][rows] for n in names})
                     for m, names in self.extractors.items()}
                cos = (z["visual"] * z["audio"]).sum(-1).double().numpy()
                out[rows] = np.where(clips.mask[rows], 1.0 - cos, np.nan)
        return out

    def _embed(self, modality: str, features: dict[str, np.ndarray]):
        import torch

        x = np.concatenate([self.scaler.transform({n: features[n]})[n] for n in self.extractors[modality]], axis=-1)
        return torch.nn.functional.normalize(self.towers[modality](torch.from_numpy(x)), dim=-1)


def train_correspondence(
    clips: ClipSet, extractors: dict[str, list[str]], location_of: Callable[[str], str],
    config: CorrespondenceConfig = CorrespondenceConfig(),
) -> CorrespondenceHead:
    """Fit the head on the valid seconds of ``clips`` (pristine training clips only: their audio is their own).

    Args:
        clips: Clips with the visual and audio extractors of ``extractors``; ``targets`` give the classes a batch
            is drawn from (unlabelled clips form one class).
        extractors: ``{"visual": [...], "audio": [...]}``.
        location_of: A clip's recording location (the taxonomy's rule).
        config: Widths, temperature, optimiser.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the towers are tiny: on a shared CPU, intra-op threads cost far more than they give
    try:
        return _train(clips, extractors, location_of, config)
    finally:
        torch.set_num_threads(threads)


def _train(clips: ClipSet, extractors: dict[str, list[str]], location_of: Callable[[str], str],
           config: CorrespondenceConfig) -> CorrespondenceHead:
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    clip_rows, seconds = np.nonzero(clips.mask)
    if len(clip_rows) < 2:
        raise ValueError(f"the correspondence head needs at least 2 valid training seconds, got {len(clip_rows)}")
    names = extractors["visual"] + extractors["audio"]
    scaler = Standardiser.fit({n: clips.features[n] for n in names}, clips.mask)
    x = {m: np.concatenate([scaler.transform({n: clips.features[n][clip_rows, seconds]})[n] for n in extractors[m]],
                           axis=-1) for m in ("visual", "audio")}
    x = {m: torch.from_numpy(v) for m, v in x.items()}
    locations = np.unique([location_of(c) for c in clips.ids.tolist()], return_inverse=True)[1][clip_rows]
    location = torch.from_numpy(locations)
    by_class = [np.flatnonzero(clips.targets[clip_rows] == c) for c in np.unique(clips.targets[clip_rows])]
    towers = {m: _tower(v.shape[1], config) for m, v in x.items()}
    optimiser = torch.optim.AdamW([p for t in towers.values() for p in t.parameters()], lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps_per_epoch = max(math.ceil(len(clip_rows) / config.batch_seconds), config.min_steps_per_epoch)
    history = []
    for tower in towers.values():
        tower.train()
    for _ in range(config.epochs):
        losses = []
        for _ in range(steps_per_epoch):
            rows = torch.from_numpy(_batch(by_class, config, rng))
            zv = torch.nn.functional.normalize(towers["visual"](x["visual"][rows]), dim=-1)
            za = torch.nn.functional.normalize(towers["audio"](x["audio"][rows]), dim=-1)
            logits = zv @ za.T / config.temperature
            same_place = location[rows][:, None] == location[rows][None, :]
            logits = logits.masked_fill(same_place & ~torch.eye(len(rows), dtype=torch.bool), float("-inf"))
            target = torch.arange(len(rows))
            loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
    logger.info("correspondence head: %d seconds of %d clips, InfoNCE %.3f -> %.3f over %d epochs", len(clip_rows),
                len(clips), history[0], history[-1], config.epochs)
    fingerprints = {n: clips.fingerprints[n] for n in names}
    return CorrespondenceHead(towers, scaler, dict(extractors), fingerprints, config, history)


def _batch(by_class: list[np.ndarray], config: CorrespondenceConfig, rng: np.random.Generator) -> np.ndarray:
    """Seconds of ``classes_per_batch`` random classes, drawn without replacement while they last."""
    chosen = rng.choice(len(by_class), size=min(config.classes_per_batch, len(by_class)), replace=False)
    pool = np.concatenate([by_class[c] for c in chosen])
    return rng.choice(pool, size=min(config.batch_seconds, len(pool)), replace=False)
