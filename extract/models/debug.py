"""Tiny deterministic extractors for tests and the fallback demo: no weights file, milliseconds per batch."""
from __future__ import annotations

import torch
from torch import nn

from extract.registry import AudioInput, ExtractorSpec, VisualInput, register_extractor

_SEED = 20240531
_N_CONV_CHANNELS = 13  # + 3 input-channel means = 16 dimensions

VISUAL_SPEC = ExtractorSpec(
    name="debug_visual",
    modality="visual",
    embedding_dim=16,
    version="2",
    description="debug: 13 seeded 3x3 conv channels (tanh, spatial mean) + 3 input-channel means, 32x32 input",
    weights=None,
    visual=VisualInput(resize_shorter_px=32, crop_px=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
)

AUDIO_SPEC = ExtractorSpec(
    name="debug_audio",
    modality="audio",
    embedding_dim=16,
    version="1",
    description="debug: log mean power in 16 half-octave bands from 31.25 Hz to 8 kHz, 16 kHz mono",
    weights=None,
    audio=AudioInput(sample_rate_hz=16_000, channels="mono"),
)


@register_extractor(VISUAL_SPEC)
class DebugVisual(nn.Module):
    """Normalised ``(B, 3, H, W)`` -> ``(B, 16)``: texture (seeded conv) and colour (channel means)."""

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(_SEED)
        self.conv = nn.Conv2d(3, _N_CONV_CHANNELS, kernel_size=3, stride=2, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) / 27**0.5)
            self.conv.bias.copy_(0.1 * torch.randn(self.conv.bias.shape, generator=generator))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        texture = torch.tanh(self.conv(images)).mean(dim=(2, 3))
        colour = images.mean(dim=(2, 3))
        return torch.cat([texture, colour], dim=1)


@register_extractor(AUDIO_SPEC)
class DebugAudio(nn.Module):
    """``(B, C, samples)`` -> ``(B, 16)`` log band powers of the channel mean; no parameters."""

    def __init__(self, spec: ExtractorSpec) -> None:
        super().__init__()
        assert spec.audio is not None
        self.sample_rate_hz = spec.audio.sample_rate_hz
        edges_hz = 31.25 * 2.0 ** (torch.arange(17, dtype=torch.float64) / 2)  # 31.25 Hz .. 8 kHz
        self.register_buffer("edges_hz", edges_hz.float(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mono = waveform.float().mean(dim=1)
        n_samples = mono.shape[-1]
        power = torch.fft.rfft(mono).abs().square() / n_samples  # (B, bins)
        freqs_hz = torch.fft.rfftfreq(n_samples, d=1.0 / self.sample_rate_hz, device=mono.device)
        in_band = (freqs_hz >= self.edges_hz[:-1, None]) & (freqs_hz < self.edges_hz[1:, None])  # (16, bins)
        weights = in_band.float() / in_band.sum(dim=1, keepdim=True).clamp(min=1)
        return torch.log(power @ weights.T + 1e-10)
