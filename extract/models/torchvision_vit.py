"""torchvision Vision Transformers: ViT-H/14 (SWAG, fine-tuned end to end on ImageNet-1k at 518 px) and ViT-B/16.

The embedding is the class token after the encoder's final LayerNorm, i.e. the input of ``heads``
(1280-d for ViT-H/14, 768-d for ViT-B/16). The paper's code used the 1000 ImageNet logits
(``heads.head`` output) instead; ``vit_h14.swag_e2e_in1k_logits`` is the same network returning those.
State-dict keys are torchvision's own (``conv_proj``, ``class_token``,
``encoder.pos_embedding``, ``encoder.layers.encoder_layer_{i}.*``, ``encoder.ln``, ``heads.head``), so
the official files load unchanged. Input: normalised ``(B, 3, S, S)`` with ``S`` the spec's crop (the
position embeddings are built for that size).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from extract.models.mobilenet import IMAGENET_MEAN, IMAGENET_STD
from extract.registry import ExtractorSpec, VisualInput, WeightsSource, register_extractor

_SWAG_WEIGHTS = WeightsSource(
    filename="vit_h_14_swag-80465313.pth",
    url="https://download.pytorch.org/models/vit_h_14_swag-80465313.pth",
    sha256="80465313",
    sha256_origin="torchvision publishes the sha256 prefix 80465313 in the filename (ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1)",
    license="CC-BY-NC-4.0 (SWAG weights, facebookresearch/SWAG); code BSD-3-Clause (torchvision)",
)
# torchvision's ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1 transforms: resize 518 bicubic, centre crop 518.
_SWAG_INPUT = VisualInput(
    resize_shorter_px=518, crop_px=518, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic"
)

VIT_H14_SPEC = ExtractorSpec(
    name="vit_h14.swag_e2e_in1k",
    modality="visual",
    embedding_dim=1280,
    version="2",
    description="torchvision ViT-H/14, SWAG weights fine-tuned end to end on ImageNet-1k (518 px): class token, 1280-d",
    weights=_SWAG_WEIGHTS,
    visual=_SWAG_INPUT,
)
VIT_H14_LOGITS_SPEC = replace(
    VIT_H14_SPEC,
    name="vit_h14.swag_e2e_in1k_logits",
    embedding_dim=1000,
    description="torchvision ViT-H/14 SWAG E2E (518 px): the 1000 ImageNet logits (`heads` output), as the paper's code used",
)
VIT_B16_SPEC = ExtractorSpec(
    name="vit_b16.in1k",
    modality="visual",
    embedding_dim=768,
    version="2",
    description="torchvision ViT-B/16 (IMAGENET1K_V1, 224 px): class token, 768-d; a cheap stand-in for fast runs",
    weights=WeightsSource(
        filename="vit_b_16-c867db91.pth",
        url="https://download.pytorch.org/models/vit_b_16-c867db91.pth",
        sha256="c867db91",
        sha256_origin="torchvision publishes the sha256 prefix c867db91 in the filename (ViT_B_16_Weights.IMAGENET1K_V1)",
        license="BSD-3-Clause (torchvision)",
    ),
    # torchvision's ImageClassification(crop_size=224) defaults: resize 256 bilinear, centre crop 224.
    visual=VisualInput(resize_shorter_px=256, crop_px=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear"),
)


@dataclass(frozen=True)
class ViTArch:
    """A torchvision ViT configuration (``torchvision.models.vision_transformer`` builders)."""

    patch_px: int
    layers: int
    heads: int
    hidden_dim: int
    mlp_dim: int
    output: Literal["embedding", "logits"]


_VIT_H14 = dict(patch_px=14, layers=32, heads=16, hidden_dim=1280, mlp_dim=5120)
ARCHS: dict[str, ViTArch] = {
    VIT_H14_SPEC.name: ViTArch(**_VIT_H14, output="embedding"),
    VIT_H14_LOGITS_SPEC.name: ViTArch(**_VIT_H14, output="logits"),
    VIT_B16_SPEC.name: ViTArch(patch_px=16, layers=12, heads=12, hidden_dim=768, mlp_dim=3072, output="embedding"),
}
N_IMAGENET_CLASSES = 1000


@register_extractor(VIT_B16_SPEC)
@register_extractor(VIT_H14_LOGITS_SPEC)
@register_extractor(VIT_H14_SPEC)
class TorchvisionViT(nn.Module):
    """Normalised ``(B, 3, S, S)`` -> ``(B, D)``: class-token embedding, or ImageNet logits for ``*_logits``."""

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        from torchvision.models.vision_transformer import VisionTransformer

        assert spec.visual is not None
        arch = ARCHS[spec.name]
        self.image_px = spec.visual.crop_px
        self.output = arch.output
        net = VisionTransformer(
            image_size=self.image_px, patch_size=arch.patch_px, num_layers=arch.layers, num_heads=arch.heads,
            hidden_dim=arch.hidden_dim, mlp_dim=arch.mlp_dim, num_classes=N_IMAGENET_CLASSES,
        )
        self.conv_proj = net.conv_proj
        self.class_token = net.class_token
        self.encoder = net.encoder
        self.heads = net.heads

    def load_checkpoint(self, path: Path) -> None:
        """Load torchvision's published state dict unchanged (strict)."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True), strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_px, self.image_px):
            raise ValueError(f"expects (B, 3, {self.image_px}, {self.image_px}) images, got {tuple(images.shape)}")
        patches = self.conv_proj(images).flatten(2).transpose(1, 2)  # (B, N, D)
        tokens = torch.cat([self.class_token.expand(len(images), -1, -1), patches], dim=1)
        embedding = self.encoder(tokens)[:, 0]
        return self.heads(embedding) if self.output == "logits" else embedding
