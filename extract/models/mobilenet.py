"""torchvision MobileNetV2 trained on ImageNet-1k; the embedding is the pooled last feature map (1280-d)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from extract.registry import ExtractorSpec, VisualInput, WeightsSource, register_extractor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SPEC = ExtractorSpec(
    name="mobilenet_v2.imagenet",
    modality="visual",
    embedding_dim=1280,
    version="2",
    description="torchvision MobileNetV2 (IMAGENET1K_V1): global-average-pooled `features` output, 1280-d",
    weights=WeightsSource(
        filename="mobilenet_v2-b0353104.pth",
        url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        sha256_origin=(
            "torchvision publishes the hash prefix b0353104 in the filename; "
            "full digest computed by avscene from the official file"
        ),
        license="BSD-3-Clause (torchvision)",
    ),
    visual=VisualInput(resize_shorter_px=256, crop_px=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
)


@register_extractor(SPEC)
class MobileNetV2ImageNet(nn.Module):
    """Normalised ``(B, 3, H, W)`` float -> ``(B, 1280)``; state-dict keys are torchvision's own."""

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2

        net = mobilenet_v2()
        self.features = net.features
        self.classifier = net.classifier

    def load_checkpoint(self, path: Path) -> None:
        """Load torchvision's published state dict unchanged (strict)."""
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(images), 1), 1)

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(B, 1280)`` embedding -> ``(B, 1000)`` ImageNet logits."""
        return self.classifier(embedding)
