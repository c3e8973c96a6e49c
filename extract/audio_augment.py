"""Audio augmentations of the second paper (Wang et al., after Hu et al.'s DCASE 2020 scripts), on 1-s windows.

Offline (extra training windows, seeded, made once before training; :func:`offline_augment`):

* ``pitch``: pitch shift by ``U(-4, 4)`` semitones, as librosa's ``effects.pitch_shift``: a phase-vocoder time
  stretch by ``2 ** (-steps / 12)`` then a resample back to the window length (polyphase ``scipy.signal.resample_poly``
  at a rational ratio, where librosa uses soxr).
* ``speed``: tempo change by a factor ``U(0.5, 2)`` with the pitch kept (phase-vocoder time stretch, as Hu et al.'s
  ``librosa.effects.time_stretch``); a shorter result is repeated, a longer one cropped, to the window length.
* ``noise``: ``x + 0.01 * N(0, 1)`` on every non-zero sample (Hu et al.'s ``gen_extr_feat_2020_noise``).
* ``mix``: ``g1 * x + g2 * y`` with ``g1, g2 ~ U(0.5, 1)`` and ``y`` a random window of another recording of the same
  scene (Hu et al. mix whole files; here windows).

On the fly (every training step; :func:`swap_channels`, :func:`spec_augment`): random swap of the two channels, and
SpecAugment without time warping: one time mask and one frequency mask per example, each up to 10 % of the axis,
filled with the example's per-channel mean.

The phase vocoder (STFT n_fft 2048, hop 512, Hann) follows librosa's ``phase_vocoder``: magnitudes interpolated
between neighbouring frames, phase advanced by the measured instantaneous frequency.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily, where it runs
    import torch

OfflineKind = Literal["pitch", "speed", "noise", "mix"]
OFFLINE_KINDS: tuple[OfflineKind, ...] = ("pitch", "speed", "noise", "mix")
VOCODER_N_FFT = 2048
VOCODER_HOP = 512


@dataclass(frozen=True)
class AudioAugmentConfig:
    """Which augmentations a training run uses, and their ranges (defaults: the papers')."""

    offline: tuple[str, ...] = ()  # subset of OFFLINE_KINDS
    copies: int = 1  # extra windows per train window and offline kind
    pitch_semitones: float = 4.0  # shift ~ U(-pitch_semitones, +pitch_semitones)
    speed_range: tuple[float, float] = (0.5, 2.0)
    noise_std: float = 0.01
    mix_gain_range: tuple[float, float] = (0.5, 1.0)
    spec_augment_fraction: float = 0.0  # max width of each mask as a fraction of its axis (paper: 0.1)
    channel_swap_probability: float = 0.0  # paper: 0.5

    def __post_init__(self) -> None:
        unknown = sorted(set(self.offline) - set(OFFLINE_KINDS))
        if unknown:
            raise ValueError(f"offline augmentations must be among {OFFLINE_KINDS}, got {unknown}")
        if self.copies < 1:
            raise ValueError(f"copies must be >= 1, got {self.copies}")
        if not 0.0 <= self.spec_augment_fraction < 1.0 or not 0.0 <= self.channel_swap_probability <= 1.0:
            raise ValueError("spec_augment_fraction must be in [0, 1) and channel_swap_probability in [0, 1]")
        object.__setattr__(self, "offline", tuple(self.offline))
        object.__setattr__(self, "speed_range", tuple(self.speed_range))
        object.__setattr__(self, "mix_gain_range", tuple(self.mix_gain_range))

    @property
    def on_the_fly(self) -> bool:
        return self.spec_augment_fraction > 0 or self.channel_swap_probability > 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "offline": list(self.offline), "speed_range": list(self.speed_range),
                "mix_gain_range": list(self.mix_gain_range)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AudioAugmentConfig":
        return cls(**data)


PAPER_AUGMENT = AudioAugmentConfig(offline=OFFLINE_KINDS, spec_augment_fraction=0.1, channel_swap_probability=0.5)


def _stft(x: np.ndarray) -> np.ndarray:
    """``(samples,)`` -> complex ``(bins, frames)``, centred (reflect padding), periodic Hann."""
    window = np.hanning(VOCODER_N_FFT + 1)[:-1]
    padded = np.pad(x, VOCODER_N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(padded) - VOCODER_N_FFT) // VOCODER_HOP
    idx = np.arange(VOCODER_N_FFT)[None, :] + VOCODER_HOP * np.arange(n_frames)[:, None]
    return np.fft.rfft(padded[idx] * window, axis=1).T


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Overlap-add inverse of :func:`_stft` (window-sum normalised), cropped to ``length``."""
    window = np.hanning(VOCODER_N_FFT + 1)[:-1]
    frames = np.fft.irfft(spec.T, n=VOCODER_N_FFT, axis=1) * window
    total = VOCODER_N_FFT + VOCODER_HOP * (len(frames) - 1)
    out, norm = np.zeros(total), np.zeros(total)
    for i, frame in enumerate(frames):
        out[i * VOCODER_HOP : i * VOCODER_HOP + VOCODER_N_FFT] += frame
        norm[i * VOCODER_HOP : i * VOCODER_HOP + VOCODER_N_FFT] += window**2
    out = out / np.where(norm > 1e-10, norm, 1.0)
    out = out[VOCODER_N_FFT // 2 :]
    return np.pad(out, (0, max(0, length - len(out))))[:length]


def time_stretch(x: np.ndarray, rate: float) -> np.ndarray:
    """Phase-vocoder time stretch of ``(samples,)``: ``rate > 1`` is faster (shorter), pitch kept."""
    spec = np.pad(_stft(x), ((0, 0), (0, 2)))
    steps = np.arange(0, spec.shape[1] - 2, rate)
    index, alpha = steps.astype(int), (steps - steps.astype(int))[None, :]
    left, right = spec[:, index], spec[:, index + 1]
    magnitude = (1 - alpha) * np.abs(left) + alpha * np.abs(right)
    advance = np.linspace(0, np.pi * VOCODER_HOP, spec.shape[0])[:, None]
    delta = np.angle(right) - np.angle(left) - advance
    increment = advance + delta - 2 * np.pi * np.round(delta / (2 * np.pi))
    phase = np.angle(spec[:, :1]) + np.concatenate([np.zeros_like(advance), np.cumsum(increment, axis=1)[:, :-1]], 1)
    return _istft(magnitude * np.exp(1j * phase), int(round(len(x) / rate)))


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Crop, or repeat from the start, to ``length`` samples (as Hu et al. do after a time stretch)."""
    if len(x) >= length:
        return x[:length]
    return np.tile(x, -(-length // max(1, len(x))))[:length]


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """librosa-style pitch shift of ``(samples,)``: time stretch, then resample back to the original length.

    The resampling ratio is rounded to a fraction with denominator <= 1000 (polyphase filter; pitch error
    below 0.002 semitones), the result cropped or repeated to the exact length.
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    stretched = time_stretch(x, 2.0 ** (-semitones / 12.0))
    ratio = Fraction(len(x), len(stretched)).limit_denominator(1000)
    return fit_length(resample_poly(stretched, ratio.numerator, ratio.denominator), len(x)).astype(np.float32)


def augment_window(window: np.ndarray, kind: OfflineKind, cfg: AudioAugmentConfig, rng: np.random.Generator,
                   partner: np.ndarray | None = None) -> np.ndarray:
    """One augmented copy of a ``(C, samples)`` window (the same parameters on every channel)."""
    n = window.shape[1]
    if kind == "pitch":
        steps = rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones)
        out = np.stack([pitch_shift(ch, steps) for ch in window])
    elif kind == "speed":
        rate = rng.uniform(*cfg.speed_range)
        out = np.stack([fit_length(time_stretch(ch, rate), n) for ch in window])
    elif kind == "noise":
        noise = rng.standard_normal(window.shape) * cfg.noise_std
        out = np.where(window != 0.0, window + noise, 0.0)
    elif kind == "mix":
        if partner is None:
            raise ValueError("mix needs a partner window of the same scene")
        g1, g2 = rng.uniform(*cfg.mix_gain_range, size=2)
        out = g1 * window + g2 * partner
    else:
        raise ValueError(f"unknown offline augmentation {kind!r}; choose from {OFFLINE_KINDS}")
    return out.astype(np.float32)


def offline_augment(
    waveforms: np.ndarray, targets: np.ndarray, clip_rows: np.ndarray, cfg: AudioAugmentConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extra windows: ``cfg.copies`` per window and kind in ``cfg.offline``, seeded per (window, kind, copy).

    ``mix`` pairs a window with a random window of the same target from another clip (the same clip when the
    scene has only one). An extra window keeps its source's target and clip row (so a validation clip's
    copies stay in validation).

    Returns:
        ``(waveforms (M, C, samples), targets (M,), clip_rows (M,))`` of the extra windows only.
    """
    out_w, out_t, out_r = [], [], []
    for kind_index, kind in enumerate(cfg.offline):
        for copy in range(cfg.copies):
            for i in range(len(waveforms)):
                rng = np.random.default_rng([seed, kind_index, copy, i])
                partner = None
                if kind == "mix":
                    same = np.flatnonzero((targets == targets[i]) & (clip_rows != clip_rows[i]))
                    same = same if len(same) else np.flatnonzero(targets == targets[i])
                    partner = waveforms[rng.choice(same)]
                out_w.append(augment_window(waveforms[i], kind, cfg, rng, partner))
                out_t.append(targets[i])
                out_r.append(clip_rows[i])
    if not out_w:
        return waveforms[:0], targets[:0], clip_rows[:0]
    return np.stack(out_w), np.asarray(out_t, np.int64), np.asarray(out_r, np.int64)


def swap_channels(waveform: "torch.Tensor", probability: float, generator: "torch.Generator") -> "torch.Tensor":
    """``(B, C, samples)`` with the channel order reversed for each example with ``probability``."""
    import torch

    swap = torch.rand(len(waveform), generator=generator) < probability
    return torch.where(swap.to(waveform.device)[:, None, None], waveform.flip(1), waveform)


def spec_augment(features: "torch.Tensor", max_fraction: float, generator: "torch.Generator") -> "torch.Tensor":
    """One time and one frequency mask per example on ``(B, C, freq, time)``, widths ``U{0..max_fraction*axis}``.

    Masked cells get the example's per-channel mean (the value a zero mask has after mean normalisation).
    """
    import torch

    batch, _, n_freq, n_time = features.shape
    out = features.clone()
    fill = features.mean(dim=(2, 3), keepdim=True).expand_as(features)
    for axis, size in ((2, n_freq), (3, n_time)):
        widths = torch.randint(0, int(max_fraction * size) + 1, (batch,), generator=generator)
        starts = (torch.rand(batch, generator=generator) * (size - widths + 1)).long()
        pos = torch.arange(size)
        mask = (pos[None, :] >= starts[:, None]) & (pos[None, :] < (starts + widths)[:, None])  # (B, size)
        shape = (batch, 1, size, 1) if axis == 2 else (batch, 1, 1, size)
        mask = mask.view(shape).to(features.device)
        out = torch.where(mask, fill, out)
    return out
