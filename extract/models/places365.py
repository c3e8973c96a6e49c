"""CSAIL Places365 CNNs (torchvision ResNet50 and DenseNet161 with 365 classes): pooled penultimate features.

The official ``*_places365.pth.tar`` files (2017, trained with ``nn.DataParallel``) hold a dict
``{"epoch", "arch", "state_dict", "best_prec1"}`` whose ``state_dict`` keys start with ``module.``;
DenseNet161's also use the old layer names ``norm.1``/``relu.1``/``conv.1``/``norm.2``/``relu.2``/
``conv.2`` where torchvision now has ``norm1`` ... ``conv2``. The loader strips the prefix, renames those
(the same pattern torchvision's own densenet loader applies) and loads strictly; BatchNorm's
``num_batches_tracked`` (absent in files that old) is filled in by torch. Preprocessing is the first paper's
code's and CSAIL's own (``run_placesCNN_basic.py``): ``Resize((256, 256))`` -- a squash of the whole frame,
aspect ratio not kept -- then centre crop 224, ImageNet mean/std (version 1 resized the shorter side to 256
instead, which on 16:9 video keeps only the middle 49 % of the width instead of 87.5 %: found by the
cross-check suite, fixed in version 2).
"""
from __future__ import annotations

import pickle
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from avscene.errors import CheckpointError
from extract.models.mobilenet import IMAGENET_MEAN, IMAGENET_STD
from extract.registry import ExtractorSpec, VisualInput, WeightsSource, register_extractor

N_PLACES_CLASSES = 365
_PLACES_INPUT = VisualInput(
    resize_shorter_px=256, crop_px=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear", resize="square"
)
_LICENSE = "CC-BY (Places365 models, CSAIL MIT; see github.com/CSAILVision/places365)"
_URL = "http://places2.csail.mit.edu/models_places365/"

RESNET50_SPEC = ExtractorSpec(
    name="resnet50.places365",
    modality="visual",
    embedding_dim=2048,
    version="2",
    description="torchvision ResNet50 trained on Places365 (CSAIL): global-average-pooled layer4, 2048-d",
    weights=WeightsSource(
        filename="resnet50_places365.pth.tar",
        url=_URL + "resnet50_places365.pth.tar",
        sha256="46529c86902bd0cfb0ea562a30b2850c28d2620d96282b3db9c318e1d774f6c5",
        sha256_origin=(
            "CSAIL publishes no digest; value recorded by a third party (Sijie-Yang/urbancode, "
            "places365_manifest.json) from the official file; not re-computed by avscene"
        ),
        license=_LICENSE,
    ),
    visual=_PLACES_INPUT,
)
DENSENET161_SPEC = ExtractorSpec(
    name="densenet161.places365",
    modality="visual",
    embedding_dim=2208,
    version="2",
    description="torchvision DenseNet161 trained on Places365 (CSAIL): ReLU + global-average-pooled features, 2208-d",
    weights=WeightsSource(
        filename="densenet161_places365.pth.tar",
        url=_URL + "densenet161_places365.pth.tar",
        sha256="",
        sha256_origin=(
            "CSAIL publishes no digest; md5 checked by a third party's public download script (bisturi "
            "network-dissection set-up); not re-computed by avscene"
        ),
        license=_LICENSE,
        md5="07efb6c7f25f832cb567d3644a131e6a",
    ),
    visual=_PLACES_INPUT,
)


# The second paper (Wang et al.) sums the embeddings of the 1st and the 15th frame of each second (30 fps video),
# "resized to 224 x 224 patches" (3.1): the same network and weights, with two frames per second at k + 0 s and
# k + 14/30 s, decoded at 224 px (shorter side 224, centre square 224; the decoder keeps the aspect ratio, so the
# sides of a 16:9 frame are cut where the paper's resize would squeeze them).
DENSENET161_F1F15_SPEC = replace(
    DENSENET161_SPEC,
    name="densenet161.places365_f1f15",
    version="2",  # 2: the whole frame squashed to 224 x 224 (1: shorter side 256 -> 224 crop)
    description=DENSENET161_SPEC.description + "; sum of the embeddings of frames 1 and 15 of each second (30 fps: "
    "the frames shown at k + 0 s and k + 14/30 s), the whole frame squashed to 224 x 224 (square resize, no crop), as Wang et al.",
    visual=replace(_PLACES_INPUT, resize_shorter_px=224, crop_px=224, frame_offsets_seconds=(0.0, 14 / 30)),
)

ARCHS: dict[str, Literal["resnet50", "densenet161"]] = {  # torchvision.models builder of each name
    RESNET50_SPEC.name: "resnet50",
    DENSENET161_SPEC.name: "densenet161",
    DENSENET161_F1F15_SPEC.name: "densenet161",
}

DATAPARALLEL_PREFIX = "module."
_OLD_DENSE_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def read_csail_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a CSAIL ``.pth.tar`` with ``module.`` stripped and old DenseNet names renamed.

    Raises:
        CheckpointError: the file holds something ``weights_only`` loading refuses, or no ``state_dict``.
    """
    try:
        checkpoint: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True) (a CSAIL checkpoint holds only tensors, ints, "
            f"floats and strings; this file holds more, so it is not the official one): {err}"
        ) from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict' (CSAIL Places365 layout)")
    state = {}
    for key, value in checkpoint["state_dict"].items():
        if key.startswith(DATAPARALLEL_PREFIX):
            key = key[len(DATAPARALLEL_PREFIX) :]
        old = _OLD_DENSE_LAYER_KEY.match(key)
        state[old.group(1) + old.group(2) if old else key] = value
    return state


@register_extractor(DENSENET161_F1F15_SPEC)
@register_extractor(DENSENET161_SPEC)
@register_extractor(RESNET50_SPEC)
class Places365CNN(nn.Module):
    """Normalised ``(B, 3, H, W)`` -> ``(B, D)`` pooled features; ``net`` is the torchvision model."""

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        import torchvision.models

        self.arch = ARCHS[spec.name]
        self.net = getattr(torchvision.models, self.arch)(num_classes=N_PLACES_CLASSES)

    def load_checkpoint(self, path: Path) -> None:
        """Load CSAIL's published checkpoint (strict, after the renames above)."""
        self.net.load_state_dict(read_csail_checkpoint(path), strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.arch == "resnet50":
            x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
            x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        else:  # DenseNet: torchvision applies a ReLU after the last norm, then pools
            x = nn.functional.relu(net.features(images))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` embedding -> ``(B, 365)`` Places365 logits."""
        return self.net.fc(embedding) if self.arch == "resnet50" else self.net.classifier(embedding)
