"""OpenCLIP ViT image towers (LAION-2B): ViT-H-14 (1024-d) and ViT-B-32 (512-d), without the text tower.

A small PyTorch port of open_clip's ``VisionTransformer`` (default ViT config: learnable position
embeddings, pre-LayerNorm, GELU MLP of 4x width, no LayerScale, class-token pooling after ``ln_post``,
then ``@ proj``). Parameter names equal open_clip's ``visual.*`` keys, so the official checkpoint's
image-tower tensors load unchanged; its text-tower keys (``token_embedding``, ``positional_embedding``,
``transformer.*``, ``ln_final``, ``text_projection``, ``logit_scale``) are recognised and skipped; any
other key is an error. Preprocessing is open_clip's: resize shorter side 224 bicubic, centre crop 224,
CLIP mean/std.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
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
    version="1",
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
    version="1",
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


@dataclass(frozen=True)
class ClipVisionArch:
    """open_clip ``vision_cfg`` of a model config (``model_configs/ViT-*.json``) plus its ``embed_dim``."""

    width: int
    layers: int
    heads: int  # width / head_width (head_width 80 for ViT-H-14, 64 by default)
    patch_px: int
    output_dim: int


ARCHS: dict[str, ClipVisionArch] = {
    CLIP_H14_SPEC.name: ClipVisionArch(width=1280, layers=32, heads=16, patch_px=14, output_dim=1024),
    CLIP_B32_SPEC.name: ClipVisionArch(width=768, layers=12, heads=12, patch_px=32, output_dim=512),
}

VISUAL_PREFIX = "visual."
TEXT_TOWER_KEY = re.compile(
    r"^(token_embedding\.weight|positional_embedding|text_projection|logit_scale|attn_mask"
    r"|ln_final\.(weight|bias)|transformer\.resblocks\.\d+\..+)$"
)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``; ``(B, N, D)``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=nn.GELU(), c_proj=nn.Linear(4 * width, width))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class VisionTower(nn.Module):
    """open_clip's ViT image tower: normalised ``(B, 3, S, S)`` -> ``(B, output_dim)``."""

    def __init__(self, arch: ClipVisionArch, image_px: int) -> None:
        super().__init__()
        grid = image_px // arch.patch_px
        scale = arch.width**-0.5
        self.image_px = image_px
        self.conv1 = nn.Conv2d(3, arch.width, kernel_size=arch.patch_px, stride=arch.patch_px, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(arch.width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, arch.width))
        self.ln_pre = nn.LayerNorm(arch.width)
        self.transformer = Transformer(arch.width, arch.layers, arch.heads)
        self.ln_post = nn.LayerNorm(arch.width)
        self.proj = nn.Parameter(scale * torch.randn(arch.width, arch.output_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_px, self.image_px):
            raise ValueError(f"expects (B, 3, {self.image_px}, {self.image_px}) images, got {tuple(images.shape)}")
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (B, grid**2, width)
        x = torch.cat([self.class_embedding.to(x.dtype).expand(len(x), 1, -1), x], dim=1)
        x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
        x = self.ln_post(self.transformer(x))
        return x[:, 0] @ self.proj


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
    """Normalised ``(B, 3, S, S)`` -> ``(B, output_dim)`` CLIP image embedding (not L2-normalised)."""

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        assert spec.visual is not None
        self.visual = VisionTower(ARCHS[spec.name], spec.visual.crop_px)

    def load_checkpoint(self, path: Path) -> None:
        """Load the image tower of the official open_clip file (strict on ``visual.*``)."""
        self.visual.load_state_dict(image_tower_state(read_checkpoint(path), path), strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)
