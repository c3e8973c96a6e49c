"""PANNs extractors: front end against independent numpy references, architecture, loader, weights messages.

The registry-wide contract (shapes, batching, determinism, published key layout) is in
``test_registry_contract.py``; the real Zenodo checkpoints are only reachable on a connected machine
(``-m weights`` with ``AVSCENE_WEIGHTS`` pointing at them).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from extract.extractor import create_extractor
from extract.models.panns import ARCHITECTURES, PannsEmbedder
from extract.models.panns_frontend import (
    LogMelFilterBank,
    PowerSpectrogram,
    slaney_hz_to_mel,
    slaney_mel_filterbank,
    slaney_mel_to_hz,
)
from avscene.paths import shared_dir
from extract.registry import get_spec
from extract.weights import MissingWeightsError, WeightsChecksumError, expected_path

RATE_HZ, N_FFT, HOP, N_MELS, FMIN_HZ, FMAX_HZ = 32_000, 1024, 320, 64, 50.0, 14_000.0
NAMES = sorted(ARCHITECTURES)


def _direct_slaney_mel(freq_hz: float) -> float:
    """Slaney's Auditory Toolbox scale, written out: 3 mel per 200 Hz up to 1 kHz, then 27 mel per factor 6.4."""
    if freq_hz < 1000.0:
        return 3.0 * freq_hz / 200.0
    return 15.0 + 27.0 * math.log(freq_hz / 1000.0) / math.log(6.4)


def _direct_slaney_hz(mel: float) -> float:
    if mel < 15.0:
        return 200.0 * mel / 3.0
    return 1000.0 * 6.4 ** ((mel - 15.0) / 27.0)


def _direct_filterbank() -> np.ndarray:
    """Unit-area triangles between consecutive mel points, evaluated bin by bin: ``(n_mels, bins)`` float64."""
    low, high = _direct_slaney_mel(FMIN_HZ), _direct_slaney_mel(FMAX_HZ)
    edges_hz = [_direct_slaney_hz(low + (high - low) * i / (N_MELS + 1)) for i in range(N_MELS + 2)]
    bank = np.zeros((N_MELS, N_FFT // 2 + 1))
    for m in range(N_MELS):
        left, centre, right = edges_hz[m : m + 3]
        for b in range(N_FFT // 2 + 1):
            f = b * RATE_HZ / N_FFT
            if left <= f <= centre:
                bank[m, b] = (f - left) / (centre - left)
            elif centre < f <= right:
                bank[m, b] = (right - f) / (right - centre)
        bank[m] *= 2.0 / (right - left)
    return bank


def _numpy_power_spectrogram(signal: np.ndarray) -> np.ndarray:
    """librosa-style ``|stft|^2``: reflect pad n_fft/2, periodic Hann, rfft per hop: ``(frames, bins)``."""
    padded = np.pad(signal.astype(np.float64), N_FFT // 2, mode="reflect")
    window = np.hanning(N_FFT + 1)[:-1]  # periodic Hann
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.stack([padded[i * HOP : i * HOP + N_FFT] * window for i in range(n_frames)])
    return np.abs(np.fft.rfft(frames, axis=1)) ** 2


def _tone(freq_hz: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(RATE_HZ * seconds)) / RATE_HZ
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


# --- front end ----------------------------------------------------------------------------------------------


def test_slaney_scale_known_points_and_inverse():
    np.testing.assert_allclose(slaney_hz_to_mel([0.0, 200.0, 1000.0, 6400.0]), [0.0, 3.0, 15.0, 42.0], atol=1e-9)
    freqs_hz = np.array([0.0, 50.0, 999.0, 1000.0, 1001.0, 7000.0, 14_000.0, 16_000.0])
    np.testing.assert_allclose(slaney_mel_to_hz(slaney_hz_to_mel(freqs_hz)), freqs_hz, rtol=1e-12, atol=1e-9)


def test_filterbank_equals_a_direct_slaney_implementation():
    ours = slaney_mel_filterbank(RATE_HZ, N_FFT, N_MELS, FMIN_HZ, FMAX_HZ)
    assert ours.shape == (N_MELS, N_FFT // 2 + 1) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _direct_filterbank(), rtol=1e-5, atol=1e-9)


def test_filterbank_properties():
    bank = slaney_mel_filterbank(RATE_HZ, N_FFT, N_MELS, FMIN_HZ, FMAX_HZ).astype(np.float64)
    bin_hz = np.arange(N_FFT // 2 + 1) * RATE_HZ / N_FFT
    assert (bank >= 0).all()
    assert not bank[:, bin_hz < FMIN_HZ].any() and not bank[:, bin_hz > FMAX_HZ].any()
    assert (bank.sum(axis=1) > 0).all(), "every band covers at least one bin"
    peaks_hz = bin_hz[bank.argmax(axis=1)]
    assert (np.diff(peaks_hz) >= 0).all(), "band centres rise with the band index"
    # Slaney normalisation: each triangle has unit area in Hz, so wide bands sum to 1 / bin width.
    wide = bank[N_MELS // 2 :]
    np.testing.assert_allclose(wide.sum(axis=1) * (RATE_HZ / N_FFT), 1.0, rtol=0.02)


def test_stft_matches_numpy_rfft_of_reflect_padded_hann_frames():
    signal = np.random.default_rng(0).uniform(-1, 1, RATE_HZ).astype(np.float32)
    ours = PowerSpectrogram(N_FFT, HOP)(torch.from_numpy(signal)[None])[0, 0].numpy()
    reference = _numpy_power_spectrogram(signal)
    assert ours.shape == reference.shape == (101, N_FFT // 2 + 1)
    np.testing.assert_allclose(ours, reference, rtol=1e-3, atol=1e-4 * reference.max())


def test_one_second_at_32_khz_gives_101_frames_of_64_mel():
    module = create_extractor("panns_cnn10.audioset", random_init=True).module
    assert module.log_mel(torch.zeros(2, RATE_HZ)).shape == (2, 1, 101, N_MELS)


@pytest.mark.parametrize("freq_hz", [440.0, 1000.0, 5000.0])
def test_a_tone_lands_in_the_band_centred_nearest_to_it(freq_hz):
    power = PowerSpectrogram(N_FFT, HOP)(torch.from_numpy(_tone(freq_hz))[None])
    log_mel = LogMelFilterBank(RATE_HZ, N_FFT, N_MELS, FMIN_HZ, FMAX_HZ)(power)[0, 0]  # (frames, mel)
    mel_edges = np.linspace(slaney_hz_to_mel(FMIN_HZ), slaney_hz_to_mel(FMAX_HZ), N_MELS + 2)
    centres_hz = slaney_mel_to_hz(mel_edges[1:-1])
    assert int(log_mel[10:-10].mean(dim=0).argmax()) == int(np.abs(centres_hz - freq_hz).argmin())


def test_log_mel_is_10_log10_clamped_at_amin():
    bank = LogMelFilterBank(RATE_HZ, N_FFT, N_MELS, FMIN_HZ, FMAX_HZ)
    assert torch.equal(bank(torch.zeros(1, 1, 3, N_FFT // 2 + 1)), torch.full((1, 1, 3, N_MELS), -100.0))
    ones = bank(torch.ones(1, 1, 1, N_FFT // 2 + 1))[0, 0, 0]
    torch.testing.assert_close(ones, 10 * torch.log10(bank.melW.sum(dim=0)))


def test_front_end_tensors_carry_the_official_names_and_the_computed_values():
    state = create_extractor("panns_cnn10.audioset", random_init=True).module.state_dict()
    melW = state["logmel_extractor.melW"]
    assert melW.shape == (N_FFT // 2 + 1, N_MELS)
    np.testing.assert_array_equal(melW.numpy(), slaney_mel_filterbank(RATE_HZ, N_FFT, N_MELS, FMIN_HZ, FMAX_HZ).T)
    n, k = np.arange(N_FFT), np.arange(N_FFT // 2 + 1)[:, None]
    window = np.hanning(N_FFT + 1)[:-1]
    real = state["spectrogram_extractor.stft.conv_real.weight"]
    imag = state["spectrogram_extractor.stft.conv_imag.weight"]
    assert real.shape == imag.shape == (N_FFT // 2 + 1, 1, N_FFT)
    np.testing.assert_allclose(real[:, 0].numpy(), window * np.cos(2 * np.pi * k * n / N_FFT), atol=1e-6)
    np.testing.assert_allclose(imag[:, 0].numpy(), -window * np.sin(2 * np.pi * k * n / N_FFT), atol=1e-6)


# --- architecture -------------------------------------------------------------------------------------------


def _reference_cnn10(state: dict[str, torch.Tensor], waveform: np.ndarray) -> torch.Tensor:
    """The official Cnn10 forward at inference, as plain functions of its state dict (numpy front end)."""
    power = torch.from_numpy(_numpy_power_spectrogram(waveform)).float()  # (frames, bins)
    x = 10 * torch.log10(torch.clamp(power @ state["logmel_extractor.melW"], min=1e-10))[None, None]

    def bn(t: torch.Tensor, prefix: str) -> torch.Tensor:
        return F.batch_norm(t, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5)

    x = bn(x.transpose(1, 3), "bn0").transpose(1, 3)
    for i in range(1, 5):
        for j in (1, 2):
            x = F.relu(bn(F.conv2d(x, state[f"conv_block{i}.conv{j}.weight"], padding=1), f"conv_block{i}.bn{j}"))
        x = F.avg_pool2d(x, (2, 2))
    x = x.mean(dim=3)
    x = x.max(dim=2).values + x.mean(dim=2)
    return F.relu(F.linear(x, state["fc1.weight"], state["fc1.bias"]))


def test_cnn10_equals_a_functional_reference_of_the_official_forward():
    module = create_extractor("panns_cnn10.audioset", random_init=True).module
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-trivial BN statistics, so a skipped or misplaced normalisation shows
        for name, buffer in module.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
    waveform = _tone(700.0) + 0.05 * np.random.default_rng(1).standard_normal(RATE_HZ).astype(np.float32)
    with torch.inference_mode():
        ours = module(torch.from_numpy(waveform)[None, None])[0]
        reference = _reference_cnn10(module.state_dict(), waveform)[0]
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-4 * float(reference.abs().max()))


def test_wavegram_and_log_mel_branches_meet_with_the_same_shape():
    module = create_extractor("panns_wavegram_logmel_cnn14.audioset", random_init=True).module
    with torch.inference_mode():
        wave = module.wavegram(torch.zeros(1, RATE_HZ))
        mel = module.conv_block1(module.log_mel(torch.zeros(1, RATE_HZ)), pool_size=(2, 2))
        assert wave.shape == mel.shape == (1, 64, 50, 32)
        with pytest.raises(ValueError, match="whole seconds"):
            module(torch.zeros(1, 1, RATE_HZ + HOP))  # 102 log-mel frames vs 101 wavegram frames


def test_embedding_sizes_and_logits():
    for name in NAMES:
        assert get_spec(name).embedding_dim == (512 if name == "panns_cnn10.audioset" else 2048)
    module = create_extractor("panns_cnn10.audioset", random_init=True).module
    with torch.inference_mode():
        assert module.logits(torch.zeros(3, 1, RATE_HZ)).shape == (3, 527)


# --- loader and weights -------------------------------------------------------------------------------------


class _NotATensor:
    """Pickled as a global: ``weights_only`` loading refuses it."""


@pytest.fixture(scope="module")
def cnn10_state() -> dict[str, torch.Tensor]:
    return create_extractor("panns_cnn10.audioset", random_init=True).module.state_dict()


def test_loader_reads_the_official_wrapper_without_front_end_warning(cnn10_state, tmp_path, caplog):
    state = {k: v + 0.5 if v.is_floating_point() and not k.startswith(("spectrogram", "logmel")) else v
             for k, v in cnn10_state.items()}
    path = tmp_path / "Cnn10_mAP=0.380.pth"
    torch.save({"model": state, "iteration": 660_000}, path)
    fresh = PannsEmbedder(get_spec("panns_cnn10.audioset"))
    with caplog.at_level(logging.WARNING):
        fresh.load_checkpoint(path)
    assert not caplog.records
    torch.testing.assert_close(fresh.fc1.weight, state["fc1.weight"])


def test_loader_warns_when_the_file_front_end_differs(cnn10_state, tmp_path, caplog):
    state = dict(cnn10_state)
    state["logmel_extractor.melW"] = state["logmel_extractor.melW"] * 1.01
    path = tmp_path / "ckpt.pth"
    torch.save({"model": state}, path)
    fresh = PannsEmbedder(get_spec("panns_cnn10.audioset"))
    with caplog.at_level(logging.WARNING):
        fresh.load_checkpoint(path)
    assert "logmel_extractor.melW" in caplog.text and str(path) in caplog.text
    torch.testing.assert_close(fresh.logmel_extractor.melW, state["logmel_extractor.melW"])


def test_loader_refuses_pickled_objects_and_odd_layouts(tmp_path):
    module = PannsEmbedder(get_spec("panns_cnn10.audioset"))
    pickled = tmp_path / "object.pth"
    torch.save({"model": _NotATensor()}, pickled)
    with pytest.raises(ValueError, match="weights_only"):
        module.load_checkpoint(pickled)
    odd = tmp_path / "odd.pth"
    torch.save({"model": [torch.zeros(1)]}, odd)
    with pytest.raises(ValueError, match="state dict"):
        module.load_checkpoint(odd)


@pytest.mark.parametrize("name", NAMES)
def test_specs_name_the_zenodo_file_and_its_md5(name, tmp_path, monkeypatch):
    spec = get_spec(name)
    assert spec.weights.url.startswith("https://zenodo.org/records/3987831/files/")
    assert spec.weights.url.split("/")[-1].split("?")[0].replace("%3D", "=") == spec.weights.filename
    assert len(spec.weights.md5) == 32 and not spec.weights.sha256
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="zenodo"):
        create_extractor(name)
    expected_path(spec).write_bytes(b"not the checkpoint")
    with pytest.raises(WeightsChecksumError, match="md5"):
        create_extractor(name)


# --- real checkpoints (connected machine only) --------------------------------------------------------------

AUDIOSET_ROAD = {300, 306, 307, 308, 314, 316, 321, 326, 327, 343, 348, 349, 352, 353}  # vehicle, car, bus, ...


@pytest.mark.weights
@pytest.mark.parametrize("name", NAMES)
def test_real_checkpoint_hears_traffic_in_a_street_recording(name):
    """Needs the Zenodo file in $AVSCENE_WEIGHTS (``python -m extract weights fetch NAME``)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    if not expected_path(get_spec(name)).exists():
        pytest.skip(f"{expected_path(get_spec(name))} not present")
    recording: Path = shared_dir() / "media" / "acoustic_scene.wav"
    if not recording.exists():
        pytest.skip(f"{recording} not available")
    audio, rate_hz = sf.read(recording, dtype="float32", always_2d=True)
    mono = resample_poly(audio.mean(axis=1), RATE_HZ // 100, rate_hz // 100).astype(np.float32)
    windows = mono[: 10 * RATE_HZ].reshape(10, 1, RATE_HZ)
    module = create_extractor(name).module
    with torch.inference_mode():
        probs = torch.sigmoid(module.logits(torch.from_numpy(windows))).mean(dim=0)
    top10 = set(probs.topk(10).indices.tolist())
    assert len(top10 & AUDIOSET_ROAD) >= 3, sorted(top10)
