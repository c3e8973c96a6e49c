"""Joint fine-tuning (the second paper's Fine_A / Fine_V): extractors and MLP head trained end to end from media.

The one stage-2 module that builds extractor networks (imported inside functions, so ``classify`` stays light):
a visual and an audio extractor (their weights as ``extract`` resolves them, or ``random_init``) feed the MLP
head of :mod:`classify.heads` (512-128-64, one second at a time); the extractors named in ``train_modalities`` are
updated with the head (``visual`` = Fine_V, ``audio`` = Fine_A, both by default), the others stay frozen.
Adam, lr 1e-5, weight decay 1e-5, batch 32 seconds, cross-entropy (the paper's settings). Media of the train split
are decoded ``clips_per_chunk`` clips at a time (threads), so memory does not grow with the dataset.

With ``augment`` (default) every batch gets the paper's augmentations during fine-tuning (Wang et al. 2.2.1-2.2.3,
Table 3's final system): when the audio extractor is trained, channel swap (p 0.5) on the waveforms and SpecAugment
(one time and one frequency mask of up to 10 %) on its log-mel features; when the visual extractor is trained,
RandAugment's Sharpness / Contrast / Identity (N 2, M 14) on each frame, fresh parameters every step; and the joint
audio-video mixup of 20 % of the batch (ratio 0.4) on the embeddings, labels mixed alike.

The extractors stay in eval mode while their weights are updated (batch norm uses its running statistics, dropout
is off): in train mode, batch statistics of 32 seconds moved the embeddings far from the cached ones the head was
trained on (demo: initial loss 148 instead of 0.6). Embeddings are standardised by fixed statistics: those of a cache-trained head's scaler (``head_run``, whose
head weights initialise the MLP), else the mean/std of the extractors' initial embeddings of the first chunk.
A GPU is needed for real use (DenseNet161 + FCNN on 86k seconds); the tests run a few steps on CPU with the
debug extractors.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avscene.progress import progress_bar
from avscene.run_folder import check_replaceable, run_folder
from extract.store import EmbeddingStore, ExcludedClip, report_excluded, store_exists

if TYPE_CHECKING:  # torch is imported lazily, where it runs
    import torch

logger = logging.getLogger(__name__)

FINETUNE_MODALITIES: tuple[str, ...] = ("visual", "audio")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run (defaults: the paper's Fine_A + Fine_V settings)."""

    visual: str = "densenet161.places365_f1f15"
    audio: str = "fcnn.tau"
    train_modalities: tuple[str, ...] = FINETUNE_MODALITIES
    epochs: int = 1
    batch_size: int = 32  # seconds per step
    lr: float = 1e-5
    weight_decay: float = 1e-5
    max_steps: int | None = None  # stop early (tests, smoke runs)
    clips_per_chunk: int = 16
    decode_workers: int = 2
    random_init: bool = False
    device: str = "auto"
    seed: int = 0
    augment: bool = True  # the paper's augmentations during fine-tuning (module docstring)
    spec_augment_fraction: float = 0.1
    channel_swap_probability: float = 0.5
    mixup_fraction: float = 0.2
    mixup_ratio: float = 0.4

    def __post_init__(self) -> None:
        unknown = sorted(set(self.train_modalities) - set(FINETUNE_MODALITIES))
        if unknown or not self.train_modalities:
            raise ValueError(f"train_modalities must be a non-empty subset of {FINETUNE_MODALITIES}, got {unknown}")
        if self.epochs < 1 or self.batch_size < 1 or self.clips_per_chunk < 1:
            raise ValueError("epochs, batch_size and clips_per_chunk must be >= 1")
        object.__setattr__(self, "train_modalities", tuple(self.train_modalities))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train_modalities": list(self.train_modalities)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        return cls(**data)


def _head_run_store(head_run: Path) -> str | None:
    """The store a cache-trained head run read (its ``config.json``), when it still exists."""
    from classify.run import recorded_store

    store = recorded_store(head_run)
    return store if store and store_exists(store) else None


def _decode_chunk(clips, plan, workers: int) -> list:
    from extract.decode_plan import decode_whole_clip

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(decode_whole_clip, clips, [plan] * len(clips)))


def _seconds(decoded, specs, class_index: dict[str, int], labels: dict[str, str], failed: dict[str, str]):
    """Stack the chunk's seconds: ``(visual input, audio input, targets)``; clips failing a modality are left out,
    their reasons added to ``failed`` (clip id -> reason)."""
    visual, audio, targets = [], [], []
    for d in decoded:
        if d.errors:
            failed[d.clip_id] = "; ".join(f"{m}: failed [{stage}] {message}" for m, (stage, message) in d.errors.items())
            continue
        v, a = d.input_for(specs["visual"]), d.input_for(specs["audio"])
        n = min(len(v), len(a))
        visual.append(v[:n])
        audio.append(a[:n])
        targets.append(np.full(n, class_index[labels[d.clip_id]], np.int64))
    if not targets:
        return None
    return np.concatenate(visual), np.concatenate(audio), np.concatenate(targets)


class BatchAugmentation:
    """The paper's augmentations of one fine-tuning batch (see the module docstring), seeded by ``seed``."""

    def __init__(self, cfg: FinetuneConfig, audio_module, seed: int) -> None:
        import torch

        from extract.views import View

        if "audio" in cfg.train_modalities and cfg.spec_augment_fraction > 0 and not hasattr(audio_module, "classify_features"):
            raise ValueError(f"{cfg.audio}: SpecAugment needs an audio module with features()/classify_features(); "
                             "fine-tune with --no-augment")
        self.cfg, self.audio_module = cfg, audio_module
        self.generator = torch.Generator().manual_seed(seed)
        self.randaug = View("randaug", 1, seed)  # Sharpness / Contrast / Identity, N 2, M 14

    def frames(self, frames: np.ndarray, step: int) -> np.ndarray:
        """RandAugment on every frame of the batch (rows ``(B, H, W, 3)`` or ``(B, offsets, H, W, 3)``), parameters
        drawn per (step, row): a new draw every step."""
        from extract.views import apply_view

        return apply_view(self.randaug, frames, f"finetune-step-{step}")

    def audio_embedding(self, waveform: "torch.Tensor") -> "torch.Tensor":
        """Channel swap on the waveforms, SpecAugment on the module's features, then the rest of the network."""
        from extract.audio_augment import spec_augment, swap_channels

        if self.cfg.channel_swap_probability > 0:
            waveform = swap_channels(waveform, self.cfg.channel_swap_probability, self.generator)
        if self.cfg.spec_augment_fraction <= 0:
            return self.audio_module(waveform)
        features = spec_augment(self.audio_module.features(waveform), self.cfg.spec_augment_fraction, self.generator)
        return self.audio_module.classify_features(features)

    def mixup(self, feats: dict, mask: "torch.Tensor", targets: "torch.Tensor"):
        """Joint audio-video mixup of ``mixup_fraction`` of the batch (both embeddings and the labels)."""
        from classify.train import mixup

        return mixup(feats, mask, targets, self.cfg.mixup_fraction, self.cfg.mixup_ratio, self.generator)


def run_finetune(data: Path, out_dir: Path, cfg: FinetuneConfig, head_run: Path | None = None,
                 classes: tuple[str, ...] | None = None, store_location: str | None = None) -> dict[str, Any]:
    """Fine-tune on the train split of ``data``; writes ``out_dir/{config.json, metrics.json, model.pt}`` whole or not
    at all (:func:`avscene.run_folder.run_folder`).

    The store (``store_location``, else the head run's) excludes the clips its usable-clips rule excludes for the two
    extractors, before any decoding; clips that fail to decode here are left out too. Both are ``excluded_clips``.

    Returns:
        The metrics (per-step losses, seconds seen, whether each extractor changed).
    """
    import torch

    from classify.heads import FusionHead, HeadConfig, HeadInput
    from classify.persist import load_head, save_finetuned
    from classify.run import write_json
    from classify.train import second_loss
    from extract.decode_plan import DecodePlan
    from extract.extractor import create_extractor, embed_inputs
    from extract.manifest import read_manifest

    check_replaceable(out_dir)
    manifest = read_manifest(Path(data), require=("video", "audio"), classes=classes)
    clips = manifest.by_split("train")
    if not clips:
        raise ValueError(f"{data}: no clip in split 'train'; nothing to fine-tune on")
    extractors = {m: create_extractor(n, random_init=cfg.random_init, device=cfg.device)
                  for m, n in (("visual", cfg.visual), ("audio", cfg.audio))}
    for modality, e in extractors.items():
        if e.spec.modality != modality:
            raise ValueError(f"{e.spec.name} is a {e.spec.modality} extractor, not {modality}")
    device = extractors["visual"].device
    specs = {m: e.spec for m, e in extractors.items()}
    names = [specs["visual"].name, specs["audio"].name]
    class_names = tuple(manifest.classes)
    inputs = [HeadInput(specs[m].name, specs[m].embedding_dim, m) for m in FINETUNE_MODALITIES]
    torch.manual_seed(cfg.seed)
    if head_run is not None:
        trained = load_head(Path(head_run) / "model.pt")
        if sorted(trained.extractors) != sorted(names) or tuple(trained.classes) != class_names:
            raise ValueError(f"{head_run}: head trained on {trained.extractors} / {trained.classes}, "
                             f"not {names} / {class_names}")
        head, mean, std = trained.head, trained.scaler.mean, trained.scaler.std
    else:
        head, mean, std = FusionHead(inputs, len(class_names), HeadConfig(kind="mlp")), None, None
    failed: dict[str, str] = {}  # clip id -> why it is left out
    store_location = store_location or (_head_run_store(head_run) if head_run is not None else None)
    if store_location:
        known = {e.clip: e.reason for e in EmbeddingStore.open(store_location).usable_clips(names, "train").excluded}
        failed.update({c.clip_id: known[c.clip_id] for c in clips if c.clip_id in known})
        clips = [c for c in clips if c.clip_id not in known]
    head.to(device)
    modules = {m: e.module for m, e in extractors.items()}
    params = list(head.parameters())
    for modality, module in modules.items():
        trainable = modality in cfg.train_modalities
        module.eval()  # batch norm keeps its running statistics, dropout off: see the module docstring
        module.requires_grad_(trainable)
        params += list(module.parameters()) if trainable else []
    before = {m: {k: v.detach().clone() for k, v in mod.state_dict().items()} for m, mod in modules.items()}
    optimiser = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    plan = DecodePlan.for_specs(list(specs.values()))
    labels = {c.clip_id: c.label for c in clips}
    class_index = {c: i for i, c in enumerate(class_names)}
    rng = np.random.default_rng(cfg.seed)
    history, steps, seen, started = [], 0, 0, time.perf_counter()
    stats = None  # {name: (mean, std)} tensors on the device

    augment = BatchAugmentation(cfg, modules["audio"], seed=cfg.seed) if cfg.augment else None

    def embed(modality: str, x: np.ndarray) -> "torch.Tensor":
        e = extractors[modality]
        return embed_inputs(e.spec, modules[modality], torch.from_numpy(np.ascontiguousarray(x)).to(device))

    bar = progress_bar(desc="finetune", unit="step", total=cfg.max_steps or None)
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(clips))
        for start in range(0, len(order), cfg.clips_per_chunk):
            chunk = _seconds(_decode_chunk([clips[i] for i in order[start : start + cfg.clips_per_chunk]], plan,
                                           cfg.decode_workers), specs, class_index, labels, failed)
            if chunk is None:
                continue
            visual, audio, targets = chunk
            if mean is None:  # fixed standardisation from the initial embeddings of the first chunk
                with torch.no_grad():
                    first = {specs["visual"].name: embed("visual", visual), specs["audio"].name: embed("audio", audio)}
                mean = {n: v.mean(0).cpu().numpy() for n, v in first.items()}
                std = {n: np.maximum(v.std(0).cpu().numpy(), 1e-6) for n, v in first.items()}
            if stats is None:  # on the device once; the statistics never change
                stats = {n: (torch.as_tensor(np.asarray(mean[n]), dtype=torch.float32, device=device),
                             torch.as_tensor(np.asarray(std[n]), dtype=torch.float32, device=device)) for n in names}
            head.train()
            perm = rng.permutation(len(targets))
            for b in range(0, len(perm), cfg.batch_size):
                rows = np.sort(perm[b : b + cfg.batch_size])
                if augment is None:
                    feats = {specs[m].name: embed(m, x[rows]) for m, x in (("visual", visual), ("audio", audio))}
                else:
                    frames = augment.frames(visual[rows], steps) if "visual" in cfg.train_modalities else visual[rows]
                    feats = {specs["visual"].name: embed("visual", frames)}
                    audio_rows = torch.from_numpy(np.ascontiguousarray(audio[rows])).to(device)
                    feats[specs["audio"].name] = (augment.audio_embedding(audio_rows) if "audio" in cfg.train_modalities
                                                  else embed("audio", audio[rows]))
                feats = {n: ((f - stats[n][0]) / stats[n][1]).unsqueeze(1) for n, f in feats.items()}  # (B, 1, D)
                mask = torch.ones(len(rows), 1, dtype=torch.bool, device=device)
                soft = torch.nn.functional.one_hot(torch.from_numpy(targets[rows]), len(class_names)).float().to(device)
                if augment is not None:
                    feats, mask, soft = augment.mixup(feats, mask, soft)
                loss = second_loss(head(feats, mask), mask, soft)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                steps, seen = steps + 1, seen + len(rows)
                history.append({"epoch": epoch + 1, "step": steps, "loss": float(loss.item())})
                logger.info("step %d (epoch %d): loss %.4f", steps, epoch + 1, history[-1]["loss"])
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{history[-1]['loss']:.4f}")
                if steps == cfg.max_steps:
                    break
            if steps == cfg.max_steps:
                break
        if steps == cfg.max_steps:
            break
    bar.close()
    changed = {m: any(not torch.equal(before[m][k], v.detach()) for k, v in mod.state_dict().items())
               for m, mod in modules.items()}
    metrics = {"steps": steps, "seconds_seen": seen, "history": history, "extractor_changed": changed,
               "final_loss": history[-1]["loss"] if history else None, "train_seconds": time.perf_counter() - started,
               "excluded_clips": report_excluded([ExcludedClip(c, "train", r) for c, r in sorted(failed.items())],
                                                 str(data), "fine-tuning")}
    config = {"data": str(data), "finetune": cfg.to_dict(), "head_run": str(head_run) if head_run else None,
              "classes": list(class_names), "weights": {e.spec.name: e.weights_id for e in extractors.values()}}
    with run_folder(out_dir) as folder:  # the previous run stays whole until this one is
        write_json(folder / "config.json", config)
        write_json(folder / "metrics.json", metrics)
        save_finetuned(folder / "model.pt", head, modules, {n: mean[n] for n in names}, {n: std[n] for n in names})
    return metrics
