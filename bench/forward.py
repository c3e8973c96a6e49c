"""Row 2: extractor forward, batched (avscene's runner) vs the paper's batch-of-one loop, same model and device.

Both call the same :meth:`extract.extractor.Extractor.embed` on the same ``(N, 224, 224, 3)`` uint8 frames;
the only difference is the batch size. ``resnet50.places365`` is taken from the registry (random weights)
when it is registered, else torchvision's ResNet50 (random weights, 2048-d pooled output) stands in.
``mobilenet_v2.imagenet`` runs with its real ImageNet weights from the weights cache.
"""
from __future__ import annotations

import logging

import numpy as np

from bench.common import best_times, import_shared_weights, make_row

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("resnet50.places365", "mobilenet_v2.imagenet")
TARGET = 3.0  # x images/s, CPU
BATCH_SIZE = 64  # the runner's default model batch


def build(name: str, device: str):
    """An :class:`~extract.extractor.Extractor` for ``name`` and a note on its weights."""
    from extract.extractor import create_extractor
    from extract.registry import list_extractors

    if name in list_extractors():
        spec_weights = name != "resnet50.places365"  # the seed model's official file is not reachable here
        if spec_weights:
            import_shared_weights((name,))
        extractor = create_extractor(name, random_init=not spec_weights, device=device)
        return extractor, ("real weights" if spec_weights else "random weights")
    if name.startswith("resnet50"):
        return _torchvision_resnet50(device), "torchvision resnet50, random weights (resnet50.places365 not registered)"
    raise ValueError(f"--models: {name!r} is neither registered nor resnet50")


def _torchvision_resnet50(device: str):
    import torch
    from torchvision.models import resnet50

    from extract.extractor import Extractor, resolve_device
    from extract.models.mobilenet import IMAGENET_MEAN, IMAGENET_STD
    from extract.registry import ExtractorSpec, VisualInput

    torch.manual_seed(0)
    net = resnet50()
    net.fc = torch.nn.Identity()
    spec = ExtractorSpec(
        name="resnet50.torchvision-random", modality="visual", embedding_dim=2048, version="bench",
        description="torchvision ResNet50, random weights, pooled 2048-d (benchmark stand-in)", weights=None,
        visual=VisualInput(256, 224, IMAGENET_MEAN, IMAGENET_STD),
    )
    resolved = resolve_device(device)
    return Extractor(spec=spec, module=net.eval().to(resolved), weights_id="random-init", device=resolved)


def run(quick: bool = False, device: str = "cpu", models: tuple[str, ...] = DEFAULT_MODELS) -> list[dict]:
    """Images/s of batch-of-one and batched forward per model; the batched output must equal the loop's."""
    from extract.extractor import resolve_device

    resolved = resolve_device(device)
    n_images = (16 if quick else 64) * (8 if resolved == "cuda" else 1)
    frames = np.random.default_rng(0).integers(0, 256, (n_images, 224, 224, 3), dtype=np.uint8)
    rows = []
    for name in models:
        extractor, weights = build(name, device)
        batch = min(BATCH_SIZE * (4 if resolved == "cuda" else 1), n_images)
        extractor.embed(frames[:1]), extractor.embed(frames[:batch])  # warm-up (allocator, cuDNN choice)
        seconds, out = best_times({
            "loop": lambda: np.concatenate([extractor.embed(frames[i : i + 1]) for i in range(n_images)]),
            "batched": lambda: np.concatenate([extractor.embed(frames[s : s + batch]) for s in range(0, n_images, batch)]),
        }, rounds=2 if quick else 3)
        one_s, batched_s, looped, batched = seconds["loop"], seconds["batched"], out["loop"], out["batched"]
        max_diff = float(np.abs(looped - batched).max())
        ours, theirs = n_images / batched_s, n_images / one_s
        ratio = ours / theirs
        rows.append(make_row(
            f"forward {name} on {resolved}: batch of {batch} vs batch-of-one loop",
            f"{ours:.1f} images/s", f"{theirs:.1f} images/s", ratio,
            f">= {TARGET:g}x" + ("" if resolved == "cpu" else " (CPU target; GPU for reference)"),
            ratio >= TARGET if resolved == "cpu" else None,
            {"images": n_images, "batch": batch, "weights": weights, "device": resolved,
             "max_abs_diff_batched_vs_loop": max_diff},
        ))
        logger.info("%s: %.1f vs %.1f images/s", name, ours, theirs)
    return rows
