"""OpenCLIP ViT image towers (LAION-2B): ViT-H-14 (1024-d) and ViT-B-32 (512-d), without the text tower.

The network is open_clip's own ``VisionTransformer`` (package ``open-clip-torch``, pinned), built from the
model config open_clip ships (``ViT-H-14``, ``ViT-B-32``) with random parameters, never downloaded; the
official checkpoint's ``visual.*`` tensors are then loaded from the weights cache (sha256-checked upstream).
Its text-tower keys (``token_embedding``, ``positional_embedding``, ``transformer.*``, ``ln_final``,
``text_projection``, ``logit_scale``) are recognised and skipped; any other key is an error.
Preprocessing is open_clip's ``preprocess`` for these models (resize shorter side 224 bicubic, centre crop
224, CLIP mean/std), done by the decoder (swscale bicubic, not PIL: see the cross-check table in docs/weights.md).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from extract.registry import ExtractorSpec, VisualInput, WeightsSource, register_extractor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip OPENAI_DATASET_MEAN
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)  # open_clip OPENAI_DATASET_STD
_CLIP_INPUT = VisualInput(resize_shorter_px=224, crop_px=224, mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic")
_LICENSE = "MIT (LAION / open_clip model card)"

CLIP_H14_SPEC = ExtractorSpec(
    name="clip_vit_h14.laion2b_s32b_b79k",
    modality="visual",
    embedding_dim=1024,
    version="2",
    description="OpenCLIP ViT-H-14 image tower (LAION-2B, s32B b79K): projected class token, 1024-d",
    weights=WeightsSource(
        filename="open_clip_pytorch_model.bin",
        url="https://huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K/resolve/main/open_clip_pytorch_model.bin",
        sha256="9a78ef8e8c73fd0df621682e7a8e8eb36c6916cb3c16b291a082ecd52ab79cc4",
        sha256_origin=(
            "Hugging Face LFS object id (sha256) of the file, as it appears in public HF-cache blob paths and "
            "download scripts that check it (e.g. MLCommons SD training docs); not re-computed by avscene"
        ),
        license=_LICENSE,
    ),
    visual=_CLIP_INPUT,
)
CLIP_B32_SPEC = ExtractorSpec(
    name="clip_vit_b32.laion2b_s34b_b79k",
    modality="visual",
    embedding_dim=512,
    version="2",
    description="OpenCLIP ViT-B-32 image tower (LAION-2B, s34B b79K): projected class token, 512-d",
    weights=WeightsSource(
        filename="open_clip_model.safetensors",
        url="https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_model.safetensors",
        sha256="ac4f8c4b88af6d963118cbf40ad93176d092abbedfcb752601ae1866352656e6",
        sha256_origin=(
            "Hugging Face LFS object id (sha256, 605,143,316 bytes) recorded from a downloaded HF-cache blob in a "
            "public repository; not re-computed by avscene"
        ),
        license=_LICENSE,
    ),
    visual=_CLIP_INPUT,
)


# open_clip model config (``open_clip/model_configs/<name>.json``, shipped in the package) of each spec.
OPEN_CLIP_MODELS: dict[str, str] = {CLIP_H14_SPEC.name: "ViT-H-14", CLIP_B32_SPEC.name: "ViT-B-32"}

VISUAL_PREFIX = "visual."
TEXT_TOWER_KEY = re.compile(
    r"^(token_embedding\.weight|positional_embedding|text_projection|logit_scale|attn_mask"
    r"|ln_final\.(weight|bias)|transformer\.resblocks\.\d+\..+)$"
)


def build_vision_tower(model_name: str, image_px: int) -> nn.Module:
    """open_clip's own image tower of ``model_name`` (random init), built from its packaged model config.

    This is what ``open_clip.create_model(model_name, pretrained=None)`` puts in ``model.visual``
    (``open_clip.model._build_vision_tower(embed_dim, vision_cfg, quick_gelu, cast_dtype)``), without
    building the text tower; no file is read but the config, nothing is downloaded.
    """
    import open_clip
    from open_clip.model import _build_vision_tower

    config = open_clip.get_model_config(model_name)
    if config is None:
        raise ValueError(f"open_clip {open_clip.__version__} has no model config {model_name!r}")
    vision_cfg = {**config["vision_cfg"], "image_size": image_px}
    return _build_vision_tower(config["embed_dim"], vision_cfg, quick_gelu=config.get("quick_gelu", False))


def image_tower_state(checkpoint: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of an open_clip checkpoint, prefix removed; text-tower keys are skipped.

    Raises:
        RuntimeError: a key is neither image tower nor text tower (wrong or renamed file).
    """
    unknown = [k for k in checkpoint if not k.startswith(VISUAL_PREFIX) and not TEXT_TOWER_KEY.match(k)]
    if unknown:
        raise RuntimeError(f"{path}: not an open_clip CLIP checkpoint; unexpected keys {unknown[:5]}")
    return {k[len(VISUAL_PREFIX) :]: v for k, v in checkpoint.items() if k.startswith(VISUAL_PREFIX)}


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file or a ``torch.save`` file (loaded with ``weights_only=True``), memory-mapped."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


@register_extractor(CLIP_B32_SPEC)
@register_extractor(CLIP_H14_SPEC)
class OpenClipImageTower(nn.Module):
    """Normalised ``(B, 3, S, S)`` -> ``(B, output_dim)`` CLIP image embedding (not L2-normalised):
    open_clip's ``encode_image(images, normalize=False)``."""

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        assert spec.visual is not None
        self.image_px = spec.visual.crop_px
        self.visual = build_vision_tower(OPEN_CLIP_MODELS[spec.name], self.image_px)

    def load_checkpoint(self, path: Path) -> None:
        """Load the image tower of the official open_clip file (strict on ``visual.*``)."""
        self.visual.load_state_dict(image_tower_state(read_checkpoint(path), path), strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_px, self.image_px):
            raise ValueError(f"expects (B, 3, {self.image_px}, {self.image_px}) images, got {tuple(images.shape)}")
        return self.visual(images)
