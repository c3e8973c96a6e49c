"""``iov_cnn420``: the indoor/outdoor/vehicle CNN of Grollmisch & Cano (2021), trained here.

The paper's weights are not published, so ``python -m extract train-iov`` trains this network on the
train split (3 classes, :data:`extract.taxonomy.SCENE_TO_IOV`) and installs the weights with a run record.
What the paper gives is followed: log-mel input, a convolutional block, four residual blocks with batch
norm, dropout 0.1, average pooling and a 256-d embedding. What it leaves open is ours and recorded in the
spec: 16 kHz mono 1-s windows; 64 Kaldi-style mel bands (25 ms window, 10 ms hop, 0-8 kHz, the
:class:`~extract.models.kaldi_mel.KaldiLogMel` front end) -> ``(B, 1, 64, 100)``; a learned input batch
norm; channels 32-32-64-128-256 with strides 1-1-2-2-2 after a 2x2 max pool; dropout after every residual
block. The embedding is the globally averaged last feature map (256-d), the input of the 3-class head.
"""
from __future__ import annotations

import torch
from torch import nn

from extract.taxonomy import IOV_CLASSES
from extract.models.kaldi_mel import KaldiLogMel
from extract.models.trained import StateDictCheckpoint
from extract.registry import AudioInput, ExtractorSpec, TrainedWeights, register_extractor

SAMPLE_RATE_HZ = 16_000
N_MELS = 64
DROPOUT = 0.1
STEM_CHANNELS = 32
BLOCK_CHANNELS = (32, 64, 128, 256)
BLOCK_STRIDES = (1, 2, 2, 2)

SPEC = ExtractorSpec(
    name="iov_cnn420",
    modality="audio",
    embedding_dim=BLOCK_CHANNELS[-1],
    version="1",
    description=(
        "indoor/outdoor/vehicle CNN (Grollmisch & Cano 2021 design: conv block + 4 residual blocks, BN, "
        "dropout 0.1, average pooling), trained here on the train split; 64-band log-mel of 1-s windows at "
        "16 kHz mono; embedding = pooled last feature map (256-d)"
    ),
    weights=TrainedWeights(
        filename="iov_cnn420.pt",
        train_command="python -m extract train-iov --data D [--store S] [--epochs N]",
        license="trained by avscene on your data: the training data's license applies (TAU: non-commercial research)",
    ),
    audio=AudioInput(sample_rate_hz=SAMPLE_RATE_HZ, channels="mono"),
)


class ResidualBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity (or 1x1 conv + BN) shortcut, ReLU, then dropout."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                               nn.BatchNorm2d(out_channels))
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.relu(self.body(x) + self.shortcut(x)))


@register_extractor(SPEC)
class IOVCNN(StateDictCheckpoint, nn.Module):
    """``(B, C, samples)`` float32 at 16 kHz (channels averaged) -> ``(B, 256)``; :meth:`classify` gives 3 logits."""

    classes: tuple[str, ...] = IOV_CLASSES

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        assert spec.audio is not None
        self.frontend = KaldiLogMel(
            sample_rate_hz=spec.audio.sample_rate_hz, n_fft=512, win_length=400, hop_length=160, n_mels=N_MELS,
            fmax_hz=spec.audio.sample_rate_hz / 2,
        )
        self.input_norm = nn.BatchNorm2d(1)
        self.stem = nn.Sequential(
            nn.Conv2d(1, STEM_CHANNELS, 3, padding=1, bias=False),
            nn.BatchNorm2d(STEM_CHANNELS),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        channels = (STEM_CHANNELS,) + BLOCK_CHANNELS
        self.blocks = nn.Sequential(
            *(ResidualBlock(channels[i], channels[i + 1], BLOCK_STRIDES[i], DROPOUT) for i in range(len(BLOCK_CHANNELS)))
        )
        self.head = nn.Linear(BLOCK_CHANNELS[-1], len(self.classes))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.input_norm(self.frontend(waveform.mean(dim=1)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(mel)), 1), 1)

    def classify(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 3)`` logits over :attr:`classes` (indoor, outdoor, vehicle)."""
        return self.head(self.forward(waveform))
