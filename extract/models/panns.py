"""PANNs (Kong et al. 2020) AudioSet taggers as embedders: Cnn10, Cnn14 and Wavegram-Logmel-Cnn14.

A port of ``pytorch/models.py`` of qiuqiangkong/audioset_tagging_cnn at inference (no torchlibrosa, no
panns_inference). Module and parameter names are the official ones, so the Zenodo checkpoints (record
3987831) load strictly with no key mapping. Per 1-s window at 32 kHz mono:

  log-mel (``panns_frontend``: 101 frames x 64 mel) -> ``bn0`` over the mel bins -> ConvBlocks (two 3x3
  conv + BN + ReLU, then 2x2 average pooling; Cnn14's sixth block does not pool) -> mean over mel ->
  max + mean over time -> ``fc1`` + ReLU = the ``embedding`` output (512-d Cnn10, 2048-d Cnn14);
  ``fc_audioset`` gives the 527 AudioSet logits.

Wavegram-Logmel-Cnn14 adds a learnt "wavegram" from the raw waveform (1-D conv, stride 5, three dilated
1-D blocks with max pooling by 4, reshaped to 32 frequency bins, a 2-D ConvBlock pooled over time by 2)
that is concatenated with the log-mel branch after ``conv_block1`` (so ``conv_block2`` takes 128 channels).

Training-only parts are left out: SpecAugmentation and mixup have no parameters and do nothing at
inference, and every dropout is the identity in ``eval()`` mode.
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from extract.models.panns_frontend import LogMelFilterBank, PowerSpectrogram
from extract.registry import AudioInput, ExtractorSpec, WeightsSource, register_extractor

logger = logging.getLogger(__name__)

N_AUDIOSET_CLASSES = 527
SAMPLE_RATE_HZ = 32_000
N_MELS = 64
_ZENODO = "https://zenodo.org/records/3987831/files/"
_LICENSE = "CC BY 4.0 (Zenodo record 3987831, PANNs weights); MIT (audioset_tagging_cnn code)"
_MD5_ORIGIN = "Zenodo publishes an md5 only; no sha256 is published"
_FRONT_END_KEYS = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
)


@dataclass(frozen=True)
class PannsArchitecture:
    """What distinguishes the ported PANNs: the output channels of each 2-D ConvBlock and the wavegram branch.

    ConvBlock ``i`` (1-based) pools 2x2 for ``i <= 5`` and not at all after (Cnn14's sixth block).
    """

    block_channels: tuple[int, ...]
    wavegram: bool

    @property
    def embedding_dim(self) -> int:
        return self.block_channels[-1]


ARCHITECTURES: dict[str, PannsArchitecture] = {
    "panns_cnn10.audioset": PannsArchitecture((64, 128, 256, 512), wavegram=False),
    "panns_cnn14.audioset": PannsArchitecture((64, 128, 256, 512, 1024, 2048), wavegram=False),
    "panns_wavegram_logmel_cnn14.audioset": PannsArchitecture((64, 128, 256, 512, 1024, 2048), wavegram=True),
}


def _spec(name: str, title: str, filename: str, md5: str, map_score: str) -> ExtractorSpec:
    dim = ARCHITECTURES[name].embedding_dim
    return ExtractorSpec(
        name=name,
        modality="audio",
        embedding_dim=dim,
        version="1",
        description=(
            f"PANNs {title} (AudioSet mAP {map_score}): 64-bin slaney log-mel of each 1-s window at 32 kHz mono, "
            f"embedding = fc1 + ReLU after max+mean pooling over time ({dim}-d)"
        ),
        weights=WeightsSource(
            filename=filename,
            url=_ZENODO + filename.replace("=", "%3D") + "?download=1",
            sha256="",
            sha256_origin=_MD5_ORIGIN,
            license=_LICENSE,
            md5=md5,
        ),
        audio=AudioInput(sample_rate_hz=SAMPLE_RATE_HZ, channels="mono"),
    )


SPECS = (
    _spec("panns_cnn10.audioset", "Cnn10", "Cnn10_mAP=0.380.pth", "bfb1f1f9968938fa8ef4012b8471f5f6", "0.380"),
    _spec("panns_cnn14.audioset", "Cnn14", "Cnn14_mAP=0.431.pth", "541141fa2ee191a88f24a3219fff024e", "0.431"),
    _spec(
        "panns_wavegram_logmel_cnn14.audioset",
        "Wavegram-Logmel-Cnn14",
        "Wavegram_Logmel_Cnn14_mAP=0.439.pth",
        "17fa9ab65af3c0eb5ffbc5f65552c4e1",
        "0.439",
    ),
)


def _init_layer(layer: nn.Module) -> None:
    """The official initialisation: Xavier-uniform weights, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class ConvBlock(nn.Module):
    """Two ``conv -> BN -> ReLU`` stages then average pooling; ``Conv2d`` 3x3 or ``Conv1d`` 3 (dilation 2).

    ``dims=2``: the 2-D ConvBlock of ``Cnn10/Cnn14``; ``dims=1``: the wavegram's ``ConvPreWavBlock``, whose
    second conv is dilated and which max-pools instead.
    """

    def __init__(self, in_channels: int, out_channels: int, dims: int = 2) -> None:
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        dilation = 1 if dims == 2 else 2
        self.conv1 = conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = conv(out_channels, out_channels, kernel_size=3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = norm(out_channels)
        self.bn2 = norm(out_channels)
        self.pool = nn.functional.avg_pool2d if dims == 2 else nn.functional.max_pool1d
        _init_layer(self.conv1)
        _init_layer(self.conv2)

    def forward(self, x: torch.Tensor, pool_size: int | tuple[int, int]) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.pool(x, kernel_size=pool_size)


@register_extractor(SPECS[2])
@register_extractor(SPECS[1])
@register_extractor(SPECS[0])
class PannsEmbedder(nn.Module):
    """``(B, C, samples)`` float32 at 32 kHz (channels averaged) -> ``(B, D)`` PANNs ``embedding``.

    Attribute names follow the official ``Cnn10``/``Cnn14``/``Wavegram_Logmel_Cnn14`` classes.
    """

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        arch = ARCHITECTURES[spec.name]
        self.arch = arch
        if arch.wavegram:
            self.pre_conv0 = nn.Conv1d(1, 64, kernel_size=11, stride=5, padding=5, bias=False)
            self.pre_bn0 = nn.BatchNorm1d(64)
            self.pre_block1 = ConvBlock(64, 64, dims=1)
            self.pre_block2 = ConvBlock(64, 128, dims=1)
            self.pre_block3 = ConvBlock(128, 128, dims=1)
            self.pre_block4 = ConvBlock(4, 64)
            _init_layer(self.pre_conv0)
        self.spectrogram_extractor = PowerSpectrogram(n_fft=1024, hop_length=320)
        self.logmel_extractor = LogMelFilterBank(SAMPLE_RATE_HZ, n_fft=1024, n_mels=N_MELS, fmin_hz=50, fmax_hz=14_000)
        self.bn0 = nn.BatchNorm2d(N_MELS)
        in_channels = 1
        for index, out_channels in enumerate(arch.block_channels, start=1):
            if index == 2 and arch.wavegram:
                in_channels += 64  # the wavegram's 64 channels join after conv_block1
            self.add_module(f"conv_block{index}", ConvBlock(in_channels, out_channels))
            in_channels = out_channels
        self.fc1 = nn.Linear(arch.embedding_dim, arch.embedding_dim)
        self.fc_audioset = nn.Linear(arch.embedding_dim, N_AUDIOSET_CLASSES)
        _init_layer(self.fc1)
        _init_layer(self.fc_audioset)

    def load_checkpoint(self, path: Path) -> None:
        """Load an official checkpoint (``{"model": state_dict, ...}``) or a bare state dict, strictly.

        The file's front-end constants (STFT kernels, mel filterbank) are loaded as they are, as the official
        code does; a difference from the ones computed here is logged.
        """
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(f"{path}: not loadable as plain tensors (weights_only=True): {error}") from None
        state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict or a dict with a 'model' state dict")
        self._report_front_end_difference(state, path)
        self.load_state_dict(state, strict=True)

    def _report_front_end_difference(self, state: dict[str, torch.Tensor], path: Path) -> None:
        ours = self.state_dict()
        for key in _FRONT_END_KEYS:
            theirs = state.get(key)
            if theirs is None or theirs.shape != ours[key].shape:
                continue  # the strict load names the problem
            scale = float(ours[key].abs().max())
            difference = float((theirs.float() - ours[key]).abs().max())
            if difference > 1e-5 * scale:
                logger.warning("%s: %s differs from the computed front end by up to %.3g (max |value| %.3g); "
                               "using the checkpoint's", path, key, difference, scale)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> ``(B, 1, frames, 64)`` log-mel in dB, normalised by ``bn0`` per mel bin."""
        x = self.logmel_extractor(self.spectrogram_extractor(waveform))
        return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def wavegram(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, samples)`` -> ``(B, 64, frames // 2, 32)``: the learnt time-frequency map of the raw waveform."""
        x = torch.relu(self.pre_bn0(self.pre_conv0(waveform.unsqueeze(1))))
        for block in (self.pre_block1, self.pre_block2, self.pre_block3):
            x = block(x, pool_size=4)
        x = x.reshape(x.shape[0], -1, 32, x.shape[-1]).transpose(2, 3)  # (B, 4, frames, 32)
        return self.pre_block4(x, pool_size=(2, 1))

    def pooled(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, C, samples)`` -> ``(B, D)``: the ConvBlock features after mean over mel, max + mean over time."""
        mono = waveform.float().mean(dim=1)
        x = self.log_mel(mono)
        for index in range(1, len(self.arch.block_channels) + 1):
            x = getattr(self, f"conv_block{index}")(x, pool_size=(2, 2) if index <= 5 else (1, 1))
            if index == 1 and self.arch.wavegram:
                wave = self.wavegram(mono)
                if wave.shape[2:] != x.shape[2:]:
                    raise ValueError(
                        f"{mono.shape[-1]} samples give a wavegram of {tuple(wave.shape[2:])} but a log-mel branch "
                        f"of {tuple(x.shape[2:])} (time, frequency); use whole seconds at {SAMPLE_RATE_HZ} Hz"
                    )
                x = torch.cat((x, wave), dim=1)
        x = x.mean(dim=3)
        return x.amax(dim=2) + x.mean(dim=2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc1(self.pooled(waveform)))

    def logits(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 527)`` AudioSet logits (the official ``clipwise_output`` is their sigmoid)."""
        return self.fc_audioset(self.forward(waveform))
