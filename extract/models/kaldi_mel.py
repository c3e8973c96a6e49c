"""Log-mel front end of EfficientAT (its ``AugmentMelSTFT`` at inference), in plain torch ops.

Waveform -> pre-emphasis ``[-0.97, 1]`` -> centred STFT (Hann window, non-periodic, zero-padded to
``n_fft``) -> power spectrum -> Kaldi-style triangular mel filters -> ``log(mel + 1e-5)`` ->
``(x + 4.5) / 5``. The filterbank follows the formula of ``torchaudio.compliance.kaldi.get_mel_banks``
(mel = 1127 ln(1 + f / 700), triangles in mel space over ``n_fft / 2`` bins, then one zero column for the
Nyquist bin); torchaudio itself is not used because it has no release for the pinned torch.
"""
from __future__ import annotations

import torch
from torch import nn


def kaldi_mel_scale(freq_hz: torch.Tensor) -> torch.Tensor:
    """Hz -> Kaldi mel: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * torch.log1p(freq_hz / 700.0)


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate_hz: int, fmin_hz: float, fmax_hz: float) -> torch.Tensor:
    """Triangular mel filters of Kaldi, as EfficientAT pads them.

    Args:
        n_mels: Number of filters.
        n_fft: FFT size; the filters cover its first ``n_fft // 2`` bins.
        sample_rate_hz: Sample rate of the waveform.
        fmin_hz: Lower edge of the first filter.
        fmax_hz: Upper edge of the last filter (at most the Nyquist frequency).

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float32, last column zero.
    """
    if not 0.0 <= fmin_hz < fmax_hz <= sample_rate_hz / 2:
        raise ValueError(f"need 0 <= fmin_hz < fmax_hz <= {sample_rate_hz / 2}; got {fmin_hz}, {fmax_hz}")
    n_bins = n_fft // 2
    bin_width_hz = sample_rate_hz / n_fft
    mel_low = kaldi_mel_scale(torch.tensor(fmin_hz, dtype=torch.float64))
    mel_high = kaldi_mel_scale(torch.tensor(fmax_hz, dtype=torch.float64))
    mel_step = (mel_high - mel_low) / (n_mels + 1)
    index = torch.arange(n_mels, dtype=torch.float64).unsqueeze(1)
    left, centre, right = (mel_low + (index + k) * mel_step for k in (0.0, 1.0, 2.0))
    bin_mel = kaldi_mel_scale(bin_width_hz * torch.arange(n_bins, dtype=torch.float64)).unsqueeze(0)
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return nn.functional.pad(banks, (0, 1)).to(torch.float32)


class KaldiLogMel(nn.Module):
    """``(B, samples)`` waveform -> ``(B, 1, n_mels, frames)`` normalised log-mel, EfficientAT's inference front end.

    ``frames = 1 + (samples - 1) // hop_length`` (pre-emphasis drops one sample, the STFT is centred).
    All constants are non-persistent buffers, so the module adds nothing to a state dict.
    """

    def __init__(
        self,
        sample_rate_hz: int = 32_000,
        n_fft: int = 1024,
        win_length: int = 800,
        hop_length: int = 320,
        n_mels: int = 128,
        fmin_hz: float = 0.0,
        fmax_hz: float = 15_000.0,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-0.97, 1.0]]]), persistent=False)
        self.register_buffer(
            "mel_banks", kaldi_mel_banks(n_mels, n_fft, sample_rate_hz, fmin_hz, fmax_hz), persistent=False
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = nn.functional.conv1d(waveform.float().unsqueeze(1), self.preemphasis).squeeze(1)
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, n_fft // 2 + 1, frames)
        mel = torch.matmul(self.mel_banks, power)
        return ((torch.log(mel + 1e-5) + 4.5) / 5.0).unsqueeze(1)

