"""``fcnn.tau``: the FCNN audio model of the second paper (Wang et al.), ported from Hu et al.'s DCASE 2020 ``fcnn``.

Neither paper publishes weights for TAU Urban Audio-Visual Scenes 2021, so ``python -m extract train-extractor
fcnn.tau`` trains it here on the train split (10 scenes) and installs the weights with a run record.

Architecture (Hu et al.'s Keras ``model_fcnn``, MihawkHu/DCASE2020_task1, re-written in PyTorch): input batch norm;
block 1 = 5x5 conv stride 2 + 3x3 conv, max pool 2; block 2 = two 3x3 convs, max pool 2; block 3 = four 3x3 convs
(dropout 0.3 after the first three), max pool 2; block 4 = a 1x1 conv to one channel per class with a non-affine
batch norm. Every conv has no bias and is followed by batch norm and ReLU (nine conv layers). Widths are
``filters x input channels`` (24, 48, 96 x 6 = 144, 288, 576). Then a second non-affine batch norm, CBAM-style
channel attention (shared MLP, ratio 2, on the average- and max-pooled maps, sigmoid) and global average pooling.

The embedding is that pooled output: one value per scene (10-d, the network's pre-softmax scores), which is
what "globally pooled features after channel attention" is for this network. :meth:`FCNN.classify` returns the
same tensor as logits.

Front end (``LogMelDeltas``): 48 kHz stereo 1-s windows; per channel a centred STFT (n_fft 2048, hop 1024, Hann),
power, 128 HTK mel bands 0-24 kHz without area normalisation (librosa ``melspectrogram(htk=True, norm=None)``, as
Hu et al.), ``log(mel + 1e-8)`` (47 frames), then Hu et al.'s ``deltas`` without padding (the regression over
+-2 frames, ``(x[t+1] - x[t-1]) / 10 + (x[t+2] - x[t-2]) / 5``, 4 frames fewer each time) and the log-mel and delta
cut to the delta-delta's 39 frames: ``(B, 6, 128, 39)`` = 2 channels x (log-mel, delta, delta-delta) x 128 bands x
39 frames, the paper's "39 x 128 x 6" (Wang et al. 3.1: deltas "without padding").
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from extract.taxonomy import TAU_SCENES
from extract.models.trained import StateDictCheckpoint
from extract.registry import AudioInput, ExtractorSpec, TrainedWeights, register_extractor

SAMPLE_RATE_HZ = 48_000
N_FFT = 2048
HOP_LENGTH = 1024
N_MELS = 128
DELTA_FRAMES_LOST = 4  # Hu et al.'s deltas(): a +-2 frame regression without padding
LOG_OFFSET = 1e-8
FILTERS_PER_CHANNEL = (24, 48, 96)  # Hu et al.'s num_filters; each is multiplied by the 6 input channels
DROPOUT = 0.3
ATTENTION_RATIO = 2

SPEC = ExtractorSpec(
    name="fcnn.tau",
    modality="audio",
    embedding_dim=len(TAU_SCENES),
    version="2",  # 2: deltas without padding, 39 frames (1: librosa deltas, width 9, edges repeated, 47 frames)
    description=(
        "FCNN with channel attention (Hu et al. DCASE 2020; Wang et al.'s audio model), trained here on the train "
        "split; 48 kHz stereo 1-s windows -> 128-band HTK log-mel + delta + delta-delta without padding (6 x 128 x 39); "
        "embedding = "
        "globally pooled channel-attention output, one value per scene (10-d)"
    ),
    weights=TrainedWeights(
        filename="fcnn_tau.pt",
        train_command="python -m extract train-extractor fcnn.tau --data D [--store S] [--epochs N]",
        license="trained by avscene on your data: the training data's license applies (TAU: non-commercial research)",
    ),
    audio=AudioInput(sample_rate_hz=SAMPLE_RATE_HZ, channels="stereo"),
)


def htk_mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float = 0.0,
                       fmax_hz: float | None = None) -> np.ndarray:
    """Triangular filters on the HTK mel scale without normalisation (librosa ``filters.mel(htk=True, norm=None)``).

    Returns:
        float32 ``(n_mels, n_fft // 2 + 1)``.
    """
    fmax_hz = sample_rate_hz / 2 if fmax_hz is None else fmax_hz
    to_mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    edges_hz = 700.0 * (10.0 ** (np.linspace(to_mel(fmin_hz), to_mel(fmax_hz), n_mels + 2) / 2595.0) - 1.0)
    fft_hz = np.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    return np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)


def delta(x: torch.Tensor) -> torch.Tensor:
    """Hu et al.'s ``deltas`` over the last axis, without padding: ``(..., T)`` -> ``(..., T - 4)``,
    ``(x[t+1] - x[t-1]) / 10 + (x[t+2] - x[t-2]) / 5`` for ``t = 2 .. T - 3``."""
    return (x[..., 3:-1] - x[..., 1:-3]) / 10.0 + (x[..., 4:] - x[..., :-4]) / 5.0


class LogMelDeltas(nn.Module):
    """``(B, C, samples)`` -> ``(B, 3C, n_mels, stft_frames - 8)``: per channel log-mel, delta, delta-delta."""

    def __init__(self, sample_rate_hz: int = SAMPLE_RATE_HZ, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
                 n_mels: int = N_MELS) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel", torch.from_numpy(htk_mel_filterbank(sample_rate_hz, n_fft, n_mels)), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        batch, channels, samples = waveform.shape
        spec = torch.stft(waveform.reshape(batch * channels, samples).float(), self.n_fft, self.hop_length,
                          window=self.window, center=True, pad_mode="reflect", return_complex=True)
        logmel = torch.log(self.mel @ spec.abs().square() + LOG_OFFSET)  # (B*C, n_mels, frames)
        d1 = delta(logmel)
        d2 = delta(d1)
        cut = DELTA_FRAMES_LOST // 2
        feats = torch.stack([logmel[..., 2 * cut : -2 * cut], d1[..., cut:-cut], d2], dim=1)  # (B*C, 3, n_mels, T - 8)
        return feats.reshape(batch, channels * 3, *d2.shape[1:])


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1, affine: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same'-style zero padding) -> batch norm -> ReLU, as every FCNN conv."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels, affine=affine),
        nn.ReLU(inplace=True),
    )


class ChannelAttention(nn.Module):
    """CBAM channel attention: ``x * sigmoid(mlp(avgpool(x)) + mlp(maxpool(x)))`` with a shared 2-layer MLP."""

    def __init__(self, channels: int, ratio: int = ATTENTION_RATIO) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(scores)[:, :, None, None]


@register_extractor(SPEC)
class FCNN(StateDictCheckpoint, nn.Module):
    """``(B, 2, 48000)`` float32 -> ``(B, 10)``; :meth:`features` and :meth:`classify_features` split front end and net."""

    classes: tuple[str, ...] = TAU_SCENES

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        assert spec.audio is not None
        in_channels = 6  # 2 audio channels x (log-mel, delta, delta-delta)
        w1, w2, w3 = (f * in_channels for f in FILTERS_PER_CHANNEL)
        self.frontend = LogMelDeltas(spec.audio.sample_rate_hz)
        self.input_norm = nn.BatchNorm2d(in_channels)
        self.block1 = nn.Sequential(conv_bn_relu(in_channels, w1, 5, stride=2), conv_bn_relu(w1, w1, 3), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(conv_bn_relu(w1, w2, 3), conv_bn_relu(w2, w2, 3), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(
            conv_bn_relu(w2, w3, 3), nn.Dropout(DROPOUT), conv_bn_relu(w3, w3, 3), nn.Dropout(DROPOUT),
            conv_bn_relu(w3, w3, 3), nn.Dropout(DROPOUT), conv_bn_relu(w3, w3, 3), nn.MaxPool2d(2),
        )
        self.block4 = nn.Sequential(conv_bn_relu(w3, len(self.classes), 1, affine=False),
                                    nn.BatchNorm2d(len(self.classes), affine=False))
        self.attention = ChannelAttention(len(self.classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)  # Keras he_normal

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 2, samples)`` -> ``(B, 6, 128, frames)`` log-mel + deltas (no learned parameters)."""
        return self.frontend(waveform)

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, 6, 128, frames)`` -> ``(B, 10)`` pooled channel-attention output."""
        x = self.block4(self.block3(self.block2(self.block1(self.input_norm(features)))))
        return self.attention(x).mean(dim=(2, 3))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.classify_features(self.features(waveform))

    def classify(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 10)`` logits over :attr:`classes` (the embedding itself)."""
        return self.forward(waveform)
