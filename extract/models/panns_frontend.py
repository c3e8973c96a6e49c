"""Log-mel front end of PANNs (torchlibrosa's ``Spectrogram`` + ``LogmelFilterBank``), without librosa.

Waveform ``(B, samples)`` -> reflect-padded, centred STFT as a strided ``conv1d`` with DFT kernels
(periodic Hann window of ``n_fft`` samples) -> power spectrum -> slaney mel filters (librosa's
``filters.mel`` defaults: slaney mel scale, slaney area normalisation) -> ``10 log10(max(x, 1e-10))``
(``ref`` 1.0, no ``top_db``) -> ``(B, 1, frames, n_mels)``, ``frames = 1 + samples // hop_length``.

The module and tensor names are torchlibrosa's, so the official checkpoints, which carry these
constants (``spectrogram_extractor.stft.conv_real.weight``, ``...conv_imag.weight``,
``logmel_extractor.melW``), load strictly; the values are computed here in numpy.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

_SLANEY_HZ_PER_MEL = 200.0 / 3  # linear part of the slaney scale: 0 .. 1 kHz
_SLANEY_LOG_START_HZ = 1000.0
_SLANEY_LOG_START_MEL = _SLANEY_LOG_START_HZ / _SLANEY_HZ_PER_MEL  # 15 mel
_SLANEY_LOG_STEP = np.log(6.4) / 27.0  # natural-log Hz per mel above 1 kHz (27 mel per factor 6.4)


def slaney_hz_to_mel(freq_hz: np.ndarray) -> np.ndarray:
    """Hz -> slaney mel (librosa ``hz_to_mel(htk=False)``): linear below 1 kHz, logarithmic above."""
    freq_hz = np.asarray(freq_hz, dtype=np.float64)
    linear = freq_hz / _SLANEY_HZ_PER_MEL
    above_hz = np.maximum(freq_hz, _SLANEY_LOG_START_HZ)  # keeps log() finite where the linear part is used
    log = _SLANEY_LOG_START_MEL + np.log(above_hz / _SLANEY_LOG_START_HZ) / _SLANEY_LOG_STEP
    return np.where(freq_hz >= _SLANEY_LOG_START_HZ, log, linear)


def slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Slaney mel -> Hz, the inverse of :func:`slaney_hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _SLANEY_HZ_PER_MEL
    log = _SLANEY_LOG_START_HZ * np.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_LOG_START_MEL))
    return np.where(mel >= _SLANEY_LOG_START_MEL, log, linear)


def slaney_mel_filterbank(
    sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float, fmax_hz: float
) -> np.ndarray:
    """Triangular mel filters as ``librosa.filters.mel`` (default ``htk=False, norm='slaney'``) makes them.

    Filter ``i`` rises from mel point ``i`` to ``i + 1`` and falls to ``i + 2`` (``n_mels + 2`` points equally
    spaced in slaney mel from ``fmin_hz`` to ``fmax_hz``), interpolated linearly in Hz, and is scaled by
    ``2 / (f[i + 2] - f[i])`` so every triangle has unit area in Hz. Like librosa, the triangles are stored in
    float32 before the scaling.

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float32.
    """
    if not 0.0 <= fmin_hz < fmax_hz <= sample_rate_hz / 2:
        raise ValueError(f"need 0 <= fmin_hz < fmax_hz <= {sample_rate_hz / 2}; got {fmin_hz}, {fmax_hz}")
    bin_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate_hz)
    mel_points = np.linspace(slaney_hz_to_mel(fmin_hz), slaney_hz_to_mel(fmax_hz), n_mels + 2)
    points_hz = slaney_mel_to_hz(mel_points)
    widths_hz = np.diff(points_hz)
    offsets_hz = points_hz[:, None] - bin_hz[None, :]  # (n_mels + 2, bins)
    weights = np.zeros((n_mels, bin_hz.size), dtype=np.float32)
    for i in range(n_mels):
        rising = -offsets_hz[i] / widths_hz[i]
        falling = offsets_hz[i + 2] / widths_hz[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (points_hz[2:] - points_hz[:-2]))[:, None]
    return weights


def periodic_hann(n_samples: int) -> np.ndarray:
    """Periodic Hann window (scipy ``get_window('hann', n, fftbins=True)``): ``0.5 - 0.5 cos(2 pi k / n)``."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_samples) / n_samples)


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary STFT kernels of torchlibrosa's ``STFT`` (window = periodic Hann of ``n_fft``).

    Kernel ``k`` is ``w[n] exp(-2 pi i k n / n_fft)`` for ``k = 0 .. n_fft // 2``.

    Returns:
        ``(real, imag)``, each ``(n_fft // 2 + 1, 1, n_fft)`` float32.
    """
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)
    phase = 2.0 * np.pi * np.outer(k, n) / n_fft
    window = periodic_hann(n_fft)
    real = (np.cos(phase) * window)[:, None, :].astype(np.float32)
    imag = (-np.sin(phase) * window)[:, None, :].astype(np.float32)
    return real, imag


class _Stft(nn.Module):
    """``conv_real`` / ``conv_imag``: frozen ``Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop)`` DFT kernels."""

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        real, imag = dft_kernels(n_fft)
        for name, kernel in (("conv_real", real), ("conv_imag", imag)):
            conv = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop_length, bias=False)
            conv.weight.data.copy_(torch.from_numpy(kernel))
            conv.weight.requires_grad_(False)
            setattr(self, name, conv)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, samples)`` -> real and imaginary parts, each ``(B, n_fft // 2 + 1, frames)``."""
        pad = self.n_fft // 2
        x = nn.functional.pad(waveform.unsqueeze(1), (pad, pad), mode="reflect")
        return self.conv_real(x), self.conv_imag(x)


class PowerSpectrogram(nn.Module):
    """``(B, samples)`` -> ``(B, 1, frames, n_fft // 2 + 1)`` power spectrum (torchlibrosa ``Spectrogram``)."""

    def __init__(self, n_fft: int = 1024, hop_length: int = 320) -> None:
        super().__init__()
        self.stft = _Stft(n_fft, hop_length)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(waveform)
        return (real.square() + imag.square()).transpose(1, 2).unsqueeze(1)


class LogMelFilterBank(nn.Module):
    """``(..., n_fft // 2 + 1)`` power -> ``(..., n_mels)`` dB: ``10 log10(max(power @ melW, amin))``."""

    def __init__(
        self,
        sample_rate_hz: int = 32_000,
        n_fft: int = 1024,
        n_mels: int = 64,
        fmin_hz: float = 50.0,
        fmax_hz: float = 14_000.0,
        amin: float = 1e-10,
    ) -> None:
        super().__init__()
        self.amin = amin
        mel = slaney_mel_filterbank(sample_rate_hz, n_fft, n_mels, fmin_hz, fmax_hz)
        self.register_buffer("melW", torch.from_numpy(np.ascontiguousarray(mel.T)))  # (bins, n_mels)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(torch.matmul(power, self.melW), min=self.amin))
