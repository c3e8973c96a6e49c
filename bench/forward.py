"""Row 2: extractor forward, batched (avscene's runner) vs the paper's batch-of-one loop, same model and device.

Both call the same :meth:`extract.extractor.Extractor.embed` on the same ``(N, crop, crop, 3)`` uint8 frames at
the model's input size; the only difference is the batch size. Models run with their real weights where the
weights cache (or the shared folder) has them (``mobilenet_v2.imagenet`` here), else with random weights (same
cost). On a GPU each row also gives the published timm figure of the same architecture for reference.
"""
from __future__ import annotations

import logging

import numpy as np

from bench.common import best_times, import_shared_weights, make_row

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("resnet50.places365", "mobilenet_v2.imagenet")
TARGET = 3.0  # x images/s, CPU
BASELINE = ("IDT-ITI/Visual-Audio-Discrepancy-Detection 1_extract_features.py lines 281-293: one frame per forward "
            "call (ResNet50, ViT); its CLIP path (lines 338-348) batches a clip's 10 frames")
GPU_BATCH_SIZE = 256  # GPU rows: large enough to fill an H100 with the small models
TIMM_SOURCE = ("huggingface/pytorch-image-models results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv "
               "(commit 90cae8c): RTX 4090, AMP, NCHW, PyTorch 2.9.1, batch 1024 (512 at 378 px)")
# timm's published inference throughput of the same architecture (samples/s), for reference on a GPU:
# another GPU and without our uint8 -> float preprocessing, so a scale check, not a race.
TIMM_PUBLISHED: dict[str, dict] = {
    name: {"timm_model": model, "image_px": px, "samples_per_s": rate, "source": TIMM_SOURCE}
    for name, (model, px, rate) in {
        "resnet50.places365": ("resnet50", 224, 4302.84),
        "densenet161.places365": ("densenet161", 224, 1809.99),
        "mobilenet_v2.imagenet": ("mobilenetv2_100", 224, 10807.07),
        "vit_b16.in1k": ("vit_base_patch16_224", 224, 2992.79),
        "clip_vit_b32.laion2b_s34b_b79k": ("vit_base_patch32_clip_224", 224, 12150.93),
        "clip_vit_h14.laion2b_s32b_b79k": ("vit_huge_patch14_clip_224", 224, 401.9),
        "vit_h14.swag_e2e_in1k": ("vit_huge_patch14_clip_378 (timm's largest ViT-H/14 input; ours is 518 px)", 378, 135.92),
        "vit_h14.swag_e2e_in1k_logits": ("vit_huge_patch14_clip_378 (timm's largest ViT-H/14 input; ours is 518 px)", 378,
                                         135.92),
    }.items()
}


def build(name: str, device: str):
    """An :class:`~extract.extractor.Extractor` for ``name`` (real weights when the cache or shared folder has them)."""
    from extract.extractor import create_extractor
    from extract.registry import get_spec
    from extract.weights import is_present

    spec = get_spec(name)
    if spec.weights is not None:
        import_shared_weights((name,))
    real = spec.weights is None or is_present(spec)
    return create_extractor(name, random_init=not real, device=device), ("real weights" if real else "random weights")


def run(quick: bool = False, device: str = "cpu", models: tuple[str, ...] = DEFAULT_MODELS) -> list[dict]:
    """Images/s of batch-of-one and batched forward per model; the batched output must equal the loop's."""
    from extract.extractor import resolve_device

    resolved = resolve_device(device)
    n_images = (16 if quick else 64) * (8 if resolved == "cuda" else 1)
    rows = []
    for name in models:
        extractor, weights = build(name, device)
        side = extractor.spec.visual.crop_px
        frames = np.random.default_rng(0).integers(0, 256, (n_images, side, side, 3), dtype=np.uint8)
        batch = min(GPU_BATCH_SIZE if resolved == "cuda" else extractor.options.batch_size, n_images)
        batches = {"loop": 1, "batched": batch, **({"batch_64": 64} if resolved == "cpu" else {})}
        for size in batches.values():
            extractor.embed(frames[:size])  # warm-up (allocator, oneDNN / cuDNN choice)
        seconds, out = best_times({
            method: lambda size=size: np.concatenate(
                [extractor.embed(frames[s : s + size]) for s in range(0, n_images, size)])
            for method, size in batches.items()
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
            {"images": n_images, "image_px": side, "batch": batch, "weights": weights, "device": resolved,
             "precision": extractor.options.precision, "max_abs_diff_batched_vs_loop": max_diff,
             **({"batch_64_images_per_s": round(n_images / seconds["batch_64"], 1)} if "batch_64" in seconds else {}),
             **({"timm_published": TIMM_PUBLISHED.get(name)} if resolved == "cuda" else {})},
            BASELINE,
        ))
        logger.info("%s: %.1f vs %.1f images/s", name, ours, theirs)
    return rows
