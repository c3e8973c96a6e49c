"""EfficientAT ``mn04_as``: a width-0.4 MobileNetV3 trained on AudioSet, on 1-s windows at 32 kHz.

Architecture: torchvision's ``MobileNetV3`` (large config, ``width_mult=0.4``) with a 1-channel first conv,
sigmoid SE gates (EfficientAT's choice; torchvision defaults to hard-sigmoid) and 527 AudioSet outputs,
fed by :class:`~extract.models.kaldi_mel.KaldiLogMel`. The checkpoint's head is
``Linear(384, 512) -> Hardswish -> Dropout -> Linear(512, 527)``; the 384-d embedding is the global
average of the last feature map (``features.16``, 6 x 64 channels), which is what EfficientAT returns as
its ``features`` output, i.e. the input of the classifier, not its 512-d hidden layer.

Checkpoint key mapping (EfficientAT -> torchvision):
  ``features.N.block.2.conc_se_layers.0.fc{1,2}.weight`` ``(out, in)`` -> ``features.N.block.2.fc{1,2}.weight``
  ``(out, in, 1, 1)`` (EfficientAT's SE uses Linear layers, torchvision's 1x1 convs; biases only renamed);
  ``classifier.2.*`` -> ``classifier.0.*``; ``classifier.5.*`` -> ``classifier.3.*`` (EfficientAT's
  classifier starts with its pooling and flatten). Every other key is identical.
"""
from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import torch
from torch import nn

from extract.models.kaldi_mel import KaldiLogMel
from extract.registry import AudioInput, ExtractorSpec, WeightsSource, register_extractor

N_AUDIOSET_CLASSES = 527
WIDTH_MULT = 0.4

SPEC = ExtractorSpec(
    name="efficientat_mn04.audioset",
    modality="audio",
    embedding_dim=384,
    version="1",
    description=(
        "EfficientAT mn04_as (MobileNetV3 width 0.4, AudioSet mAP 0.432): log-mel of each 1-s window at 32 kHz "
        "mono, embedding = global-average-pooled last feature map (384-d)"
    ),
    weights=WeightsSource(
        filename="mn04_as_mAP_432.pt",
        url="https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/mn04_as_mAP_432.pt",
        sha256="899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c",
        sha256_origin="not published by the author; computed by avscene from the official release file",
        license="MIT (EfficientAT)",
    ),
    audio=AudioInput(sample_rate_hz=32_000, channels="mono"),
)

_SE_KEY = re.compile(r"^(features\.\d+\.block\.\d+\.)conc_se_layers\.0\.(fc[12]\.(?:weight|bias))$")
_CLASSIFIER_RENAME = {"classifier.2.": "classifier.0.", "classifier.5.": "classifier.3."}


def efficientat_to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename and reshape an EfficientAT ``mn`` state dict for torchvision's ``MobileNetV3``."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        se = _SE_KEY.match(key)
        if se:
            key = se.group(1) + se.group(2)
            if key.endswith(".weight"):
                value = value.reshape(*value.shape, 1, 1)
        for old, new in _CLASSIFIER_RENAME.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        mapped[key] = value
    return mapped


def build_mn(width_mult: float = WIDTH_MULT, num_classes: int = N_AUDIOSET_CLASSES) -> nn.Module:
    """torchvision ``MobileNetV3`` shaped like EfficientAT's ``mn`` models (random init)."""
    from torchvision.models.mobilenetv3 import InvertedResidual, MobileNetV3, _mobilenet_v3_conf
    from torchvision.ops.misc import SqueezeExcitation

    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=width_mult)
    block = partial(InvertedResidual, se_layer=partial(SqueezeExcitation, scale_activation=nn.Sigmoid))
    net = MobileNetV3(setting, last_channel, num_classes=num_classes, block=block)
    first = net.features[0][0]
    net.features[0][0] = nn.Conv2d(
        1, first.out_channels, first.kernel_size, first.stride, first.padding, bias=False
    )
    nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")
    return net


@register_extractor(SPEC)
class EfficientATMN04(nn.Module):
    """``(B, C, samples)`` float32 at 32 kHz (channels averaged) -> ``(B, 384)`` embedding."""

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        assert spec.audio is not None
        self.frontend = KaldiLogMel(sample_rate_hz=spec.audio.sample_rate_hz)
        self.net = build_mn()

    def load_checkpoint(self, path: Path) -> None:
        """Load EfficientAT's published state dict (strict, after key mapping)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(efficientat_to_torchvision(state), strict=True)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.frontend(waveform.mean(dim=1))
        return torch.flatten(self.net.avgpool(self.net.features(mel)), 1)

    def logits(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 527)`` AudioSet logits (apply a sigmoid for tag probabilities)."""
        return self.net.classifier(self.forward(waveform))
