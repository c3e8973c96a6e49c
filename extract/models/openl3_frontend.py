"""OpenL3's kapre front end (openl3 0.4 with kapre 0.3.x), in plain torch ops: no TensorFlow, no kapre.

Sources read (constants verified there):
  * openl3 0.4 ``openl3/models.py``: ``_construct_{linear,mel128,mel256}_audio_network`` (n_dft 512 / 2048,
    n_hop 242, asr 48000, 1-s input, n_mels 128 / 256, ``pad_end=True`` for mel only, ``return_decibel=True``)
    and ``__fix_kapre_spec`` / ``kapre_v0_1_4_magnitude_to_decibel`` (the dB scaling that replaces kapre's:
    ``10 log10(max(x, 1e-10))`` minus the per-example maximum, floored at -80 dB; then ``Permute((2, 1, 3))``
    to ``(freq, time, channel)``).
  * kapre 0.3 ``kapre/composed.py``: ``get_melspectrogram_layer`` / ``get_stft_magnitude_layer`` (defaults
    ``window=hann``, ``pad_begin=False``, ``mel_f_min=0``, ``mel_f_max=None`` (= sr / 2), ``mel_htk=False``,
    ``mel_norm='slaney'``; STFT -> ``Magnitude`` (|X|, power 1) -> ``ApplyFilterbank``).
  * kapre 0.3 ``kapre/time_frequency.py``: ``STFT.call`` = ``tf.signal.stft(frame_length=win_length=n_fft,
    frame_step=hop, window_fn=tf.signal.hann_window (periodic), pad_end)``: frame ``j`` starts at sample
    ``j * hop`` (no centring); ``pad_end`` zero-pads so that ``ceil(samples / hop)`` frames fit.
  * kapre 0.3 ``kapre/backend.py``: ``filterbank_mel`` = ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax,
    htk, norm)``; re-implemented here in numpy (Slaney mel scale, Slaney area normalisation).

Note: openl3 <= 0.3 used kapre 0.1.4 (HTK mel scale, ``norm=1``, 'same' padding); 0.4 changed the front end as
above, and its regression fixtures were made with it. This module follows 0.4.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

InputRepr = Literal["linear", "mel128", "mel256"]
INPUT_REPRS: tuple[InputRepr, ...] = ("linear", "mel128", "mel256")

SAMPLE_RATE_HZ = 48_000
HOP_SAMPLES = 242
DB_AMIN = 1e-10
DB_DYNAMIC_RANGE = 80.0


def slaney_hz_to_mel(freq_hz: np.ndarray) -> np.ndarray:
    """Slaney's Auditory Toolbox mel scale (librosa ``hz_to_mel(htk=False)``): linear to 1 kHz, log above."""
    freq_hz = np.asarray(freq_hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = freq_hz / f_sp
    return np.where(freq_hz >= min_log_hz, min_log_mel + np.log(np.maximum(freq_hz, 1e-12) / min_log_hz) / logstep,
                    linear)


def slaney_mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`slaney_hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def slaney_mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int, fmin_hz: float = 0.0,
                          fmax_hz: float | None = None) -> np.ndarray:
    """Triangular mel filters as ``librosa.filters.mel(htk=False, norm='slaney')`` builds them.

    Filter ``i`` rises from mel edge ``i`` to ``i + 1`` and falls to ``i + 2`` (edges equally spaced in Slaney
    mels between ``fmin_hz`` and ``fmax_hz``, default Nyquist), over the FFT bin frequencies
    ``linspace(0, sr / 2, n_fft // 2 + 1)``, and is scaled by ``2 / (f[i + 2] - f[i])`` (equal area).

    Returns:
        float32 ``(n_mels, n_fft // 2 + 1)``.
    """
    fmax_hz = sample_rate_hz / 2 if fmax_hz is None else fmax_hz
    fft_hz = np.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1)
    edges_hz = slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(fmin_hz), slaney_hz_to_mel(fmax_hz), n_mels + 2))
    widths_hz = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths_hz[:-1, None]
    falling = ramps[2:] / widths_hz[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def magnitude_to_decibel(x: torch.Tensor) -> torch.Tensor:
    """openl3 0.4 ``kapre_v0_1_4_magnitude_to_decibel``: ``10 log10(max(x, 1e-10))`` relative to each example's
    maximum (over every non-batch axis), floored at ``-80`` dB. ``x``: ``(B, ...)``; values in ``[-80, 0]``."""
    log_spec = 10.0 * torch.log10(torch.clamp(x, min=DB_AMIN))
    peak = log_spec.flatten(1).amax(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return torch.clamp(log_spec - peak, min=-DB_DYNAMIC_RANGE)


class KapreSpectrogram(nn.Module):
    """``(B, 48000)`` waveform -> ``(B, 1, F, T)`` dB spectrogram, as OpenL3 0.4's kapre layer computes it.

    ``linear``: |STFT| with n_fft 512, hop 242, no padding -> F = 257, T = 197.
    ``mel128`` / ``mel256``: |STFT| with n_fft 2048, hop 242, end zero-padded -> mel filters -> F = 128 / 256,
    T = ``ceil(48000 / 242)`` = 199. Filters and window are non-persistent buffers (no state-dict entries).
    """

    def __init__(self, input_repr: InputRepr) -> None:
        super().__init__()
        if input_repr not in INPUT_REPRS:
            raise ValueError(f"input_repr must be one of {INPUT_REPRS}, got {input_repr!r}")
        self.input_repr = input_repr
        self.n_fft = 512 if input_repr == "linear" else 2048
        self.pad_end = input_repr != "linear"
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        if input_repr == "linear":
            self.mel_filters: torch.Tensor | None = None
        else:
            n_mels = int(input_repr.removeprefix("mel"))
            filters = torch.from_numpy(slaney_mel_filterbank(SAMPLE_RATE_HZ, self.n_fft, n_mels))
            self.register_buffer("mel_filters", filters, persistent=False)

    def n_frames(self, n_samples: int) -> int:
        """STFT frames of an ``n_samples`` input (``tf.signal.stft`` with or without ``pad_end``)."""
        if self.pad_end:
            return -(-n_samples // HOP_SAMPLES)
        return 1 + (n_samples - self.n_fft) // HOP_SAMPLES

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform.float()
        if self.pad_end:
            padded_len = (self.n_frames(x.shape[-1]) - 1) * HOP_SAMPLES + self.n_fft
            x = nn.functional.pad(x, (0, padded_len - x.shape[-1]))
        spec = torch.stft(x, self.n_fft, hop_length=HOP_SAMPLES, window=self.window, center=False,
                          return_complex=True).abs()  # (B, n_fft // 2 + 1, T)
        if self.mel_filters is not None:
            spec = torch.matmul(self.mel_filters, spec)
        return magnitude_to_decibel(spec).unsqueeze(1)
