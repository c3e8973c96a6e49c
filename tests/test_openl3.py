"""OpenL3: kapre front end against numpy references, per-second framing and pooling, Keras .h5 loading.

The network is slow on CPU (~0.7-1.5 s per 1-s frame at the 0.1-s hop): shapes of all 12 variants are checked on
the meta device, each of the 6 distinct networks runs the forward contract at a 1-s hop (one frame per second),
the pooling is checked with a stand-in network, and the full contract runs on one representative in
test_registry_contract.py. The regression test against marl/openl3's fixtures needs
the real weights and the fixtures (``AVSCENE_OPENL3_FIXTURES`` = a checkout's ``tests/data``).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from extract.audio_io import audio_windows
from extract.extractor import create_extractor
from extract.models import openl3
from extract.models.openl3_frontend import (
    KapreSpectrogram,
    slaney_hz_to_mel,
    slaney_mel_filterbank,
    slaney_mel_to_hz,
)
from extract.registry import get_spec, list_extractors
from extract.weights import resolve_weights
from tests.keras_files import write_keras_weights

RATE = 48_000
NAMES = [n for n in list_extractors() if n.startswith("openl3_")]


def _tone(freq_hz: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


# --- front end ----------------------------------------------------------------------------------------------

def _numpy_kapre(signal: np.ndarray, n_fft: int, pad_end: bool, filters: np.ndarray | None) -> np.ndarray:
    """Independent reference: tf.signal.stft framing (hop 242, periodic Hann), |X|, filters, openl3 dB."""
    hop = 242
    n_frames = math.ceil(len(signal) / hop) if pad_end else 1 + (len(signal) - n_fft) // hop
    padded = np.zeros((n_frames - 1) * hop + n_fft)
    padded[: min(len(signal), len(padded))] = signal[: len(padded)]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.stack([np.abs(np.fft.rfft(padded[j * hop : j * hop + n_fft] * window)) for j in range(n_frames)], 1)
    if filters is not None:
        spec = filters.astype(np.float64) @ spec
    db = 10 * np.log10(np.maximum(spec, 1e-10))
    return np.maximum(db - db.max(), -80.0)


@pytest.mark.parametrize("input_repr, n_fft, pad_end, shape", [
    ("linear", 512, False, (257, 197)), ("mel128", 2048, True, (128, 199)), ("mel256", 2048, True, (256, 199)),
])
def test_frontend_matches_a_numpy_reference(input_repr, n_fft, pad_end, shape):
    rng = np.random.default_rng(0)
    signal = (_tone(440.0) + 0.05 * rng.standard_normal(RATE)).astype(np.float32)
    frontend = KapreSpectrogram(input_repr)
    out = frontend(torch.from_numpy(signal)[None]).numpy()
    assert out.shape == (1, 1, *shape)
    filters = None if input_repr == "linear" else frontend.mel_filters.numpy()
    reference = _numpy_kapre(signal.astype(np.float64), n_fft, pad_end, filters)
    loud = reference > -50  # float32 cancellation blurs the near-empty bins: compare those on a linear scale
    np.testing.assert_allclose(out[0, 0][loud], reference[loud], atol=2e-3)
    np.testing.assert_allclose(10 ** (out[0, 0] / 10), 10 ** (reference / 10), atol=1e-6)


def test_slaney_mel_scale_known_values():
    assert slaney_hz_to_mel(np.array(1000.0)) == pytest.approx(15.0)  # linear below 1 kHz: f / (200 / 3)
    assert slaney_hz_to_mel(np.array(200.0)) == pytest.approx(3.0)
    assert slaney_hz_to_mel(np.array(6400.0)) == pytest.approx(15.0 + 27.0)  # 27 steps per factor 6.4
    freqs = np.array([0.0, 50.0, 999.0, 1000.0, 4000.0, 24000.0])
    np.testing.assert_allclose(slaney_mel_to_hz(slaney_hz_to_mel(freqs)), freqs, atol=1e-9)


def test_mel_filters_are_unit_area_triangles_at_the_right_places():
    filters = slaney_mel_filterbank(RATE, 2048, 128)
    bin_hz = RATE / 2048
    edges = slaney_mel_to_hz(np.linspace(0.0, slaney_hz_to_mel(np.array(24000.0)), 130))
    assert filters.shape == (128, 1025) and (filters >= 0).all()
    wide = (edges[2:] - edges[:-2]) > 8 * bin_hz  # triangles spanning many bins: area ~ 1 (Slaney norm)
    np.testing.assert_allclose(filters[wide].sum(axis=1) * bin_hz, 1.0, atol=0.03)
    peaks_hz = filters.argmax(axis=1) * bin_hz
    assert np.all(np.abs(peaks_hz[wide] - edges[1:-1][wide]) <= bin_hz)


@pytest.mark.parametrize("freq_hz", [300.0, 1500.0, 6000.0])
@pytest.mark.parametrize("input_repr", ["mel128", "mel256"])
def test_a_pure_tone_lands_in_its_mel_band(freq_hz, input_repr):
    out = KapreSpectrogram(input_repr)(torch.from_numpy(_tone(freq_hz))[None])[0, 0].numpy()
    n_mels = out.shape[0]
    centres_hz = slaney_mel_to_hz(np.linspace(0.0, slaney_hz_to_mel(np.array(24000.0)), n_mels + 2))[1:-1]
    loudest = out[:, 50:150].mean(axis=1).argmax()
    assert abs(loudest - np.abs(centres_hz - freq_hz).argmin()) <= 1


def test_decibels_are_relative_to_the_peak_within_80_db():
    frontend = KapreSpectrogram("mel256")
    x = torch.from_numpy(_tone(1000.0) + _tone(5000.0, amplitude=1e-6))[None]
    out = frontend(x)
    assert out.max() == 0.0 and out.min() >= -80.0 and (out == -80.0).any()
    loud = out > -60
    torch.testing.assert_close(frontend(0.5 * x)[loud], out[loud], atol=1e-3, rtol=0)  # gain-invariant
    assert torch.equal(frontend(torch.zeros(1, RATE)), torch.zeros(1, 1, 256, 199))  # silence: all at the peak


# --- framing, context and pooling ---------------------------------------------------------------------------

def test_windows_with_context_take_real_audio_and_zeros_beyond_the_file():
    ramp = np.arange(1, 2.4 * RATE + 1, dtype=np.float32)[None]  # 2.4 s: 2 counted seconds, a 0.4-s tail
    windows = audio_windows(ramp, RATE, 2, RATE, "mono", context_samples=RATE // 2)
    assert windows.shape == (2, 1, 2 * RATE)
    np.testing.assert_array_equal(windows[0, 0, : RATE // 2], 0)  # before the start
    np.testing.assert_array_equal(windows[0, 0, RATE // 2 :], ramp[0, : 3 * RATE // 2])
    np.testing.assert_array_equal(windows[1, 0, : int(1.9 * RATE)], ramp[0, RATE // 2 :])  # the tail is used
    np.testing.assert_array_equal(windows[1, 0, int(1.9 * RATE) :], 0)  # beyond the file
    plain = audio_windows(ramp, RATE, 2, RATE, "mono")
    np.testing.assert_array_equal(windows[:, :, RATE // 2 : -RATE // 2], plain)  # context=0 is the second itself


def _openl3_core_frames(audio: np.ndarray, hop_seconds: float, center: bool) -> np.ndarray:
    """openl3 0.4 ``core._preprocess_audio_batch`` framing at 48 kHz (centre padding, end padding, stride)."""
    frame_len, hop_len = RATE, int(hop_seconds * RATE)
    if center:
        audio = np.pad(audio, (frame_len // 2, 0))
    if len(audio) < frame_len:
        pad = frame_len - len(audio)
    else:
        pad = int(np.ceil((len(audio) - frame_len) / hop_len)) * hop_len - (len(audio) - frame_len)
    audio = np.pad(audio, (0, max(pad, 0)))
    n_frames = 1 + (len(audio) - frame_len) // hop_len
    return np.stack([audio[j * hop_len : j * hop_len + frame_len] for j in range(n_frames)])


@pytest.mark.parametrize("hop_seconds", [0.1, 0.25])
def test_second_k_uses_the_frames_openl3_centres_in_k_to_k_plus_1(hop_seconds):
    rng = np.random.default_rng(1)
    audio = rng.standard_normal(3 * RATE).astype(np.float32)
    spec = get_spec("openl3_mel128_music_512")
    model = openl3.OpenL3(spec, replace(openl3.CONFIGS[spec.name], hop_seconds=hop_seconds))
    windows = audio_windows(audio[None], RATE, 3, RATE, "mono", spec.audio.context_samples)
    ours = model.frames(torch.from_numpy(windows)).numpy()  # (3 seconds, frames per second, 48000)
    reference = _openl3_core_frames(audio, hop_seconds, center=True)  # frame j has timestamp j * hop
    per_second = round(1 / hop_seconds)
    assert ours.shape == (3, per_second, RATE)
    ours = ours.reshape(-1, RATE)
    # openl3 stops at the first frame reaching the end of the audio (centre 2.5 s here); the later frames of
    # the last second continue with zeros beyond the file.
    assert len(reference) == int(2.5 / hop_seconds) + 1
    np.testing.assert_array_equal(ours[: len(reference)], reference)
    start = len(reference) * hop_samples(hop_seconds) - RATE // 2  # the next frame, in the audio's samples
    np.testing.assert_array_equal(ours[len(reference), : len(audio) - start], audio[start:])
    np.testing.assert_array_equal(ours[len(reference), len(audio) - start :], 0)


def hop_samples(hop_seconds: float) -> int:
    return int(hop_seconds * RATE)


class _FirstSamples(torch.nn.Module):
    """Stand-in network: a frame's embedding is its first four samples."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames[:, :4]


def test_the_per_second_vector_is_the_mean_of_its_frames():
    spec = get_spec("openl3_mel256_music_512")
    model = openl3.OpenL3(spec, frames_per_batch=3)  # batching across frames must not matter
    model.net = _FirstSamples()
    window = torch.arange(2 * spec.audio.window_samples, dtype=torch.float32).view(2, 1, -1)
    stereo = torch.cat([window, window + 2], dim=1)  # channels are averaged first
    expected = torch.stack([(window[:, 0, i * 4800 : i * 4800 + 4] + 1) for i in range(10)], 1).mean(1)
    torch.testing.assert_close(model(stereo), expected)
    with pytest.raises(ValueError, match="96000"):
        model(torch.zeros(1, 1, RATE))


def test_config_validation_and_round_trip():
    config = openl3.CONFIGS["openl3_mel256_music_512"]
    assert openl3.OpenL3Config.from_dict(config.to_dict()) == config
    assert (config.frames_per_second, config.hop_samples) == (10, 4800)
    for bad in ({"input_repr": "mel64"}, {"content_type": "speech"}, {"embedding_size": 128},
                {"hop_seconds": 0.3}, {"hop_seconds": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            replace(config, **bad)


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_its_spec_and_output_size(name):
    spec = get_spec(name)
    config = openl3.CONFIGS[name]
    assert spec.embedding_dim == config.embedding_size
    assert (spec.audio.sample_rate_hz, spec.audio.channels, spec.audio.window_samples) == (RATE, "mono", 2 * RATE)
    assert spec.weights.filename == f"openl3_audio_{config.input_repr}_{config.content_type}-v0_4_0.h5.gz"
    assert spec.weights.url == "https://github.com/marl/openl3/raw/models/" + spec.weights.filename
    assert not spec.weights.verifiable and "no digest published" in spec.weights.sha256_origin
    with torch.device("meta"):  # shapes only, no arithmetic
        model = openl3.OpenL3(spec)
        assert model(torch.zeros(2, 1, spec.audio.window_samples)).shape == (2, config.embedding_size)


# --- Keras weights ------------------------------------------------------------------------------------------

def test_layout_of_every_variant_is_the_published_one():
    published = openl3.published_weights()
    assert len(published) == 8 * 4 + 8 * 2
    for name in NAMES:
        net = openl3.OpenL3AudioNet(openl3.CONFIGS[name].input_repr, openl3.CONFIGS[name].embedding_size)
        keras = openl3.torch_to_keras(net.state_dict())
        assert {k: v.shape for k, v in keras.items()} == published, name


@pytest.fixture(scope="module")
def keras_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {k: rng.standard_normal(shape).astype(np.float32) for k, shape in openl3.published_weights().items()}


@pytest.mark.parametrize("filename", ["w.h5", "w.h5.gz"])
def test_keras_weights_round_trip_and_convert(tmp_path, keras_weights, filename):
    write_keras_weights(tmp_path / filename, keras_weights)
    read = openl3.read_keras_weights(tmp_path / filename)
    assert read.keys() == keras_weights.keys()
    state = openl3.keras_to_torch(read)
    kernel = keras_weights["conv2d_3/kernel:0"]  # (kh, kw, in, out) -> (out, in, kh, kw)
    np.testing.assert_array_equal(state["layers.conv2d_3.weight"][5, 7, 1, 2].item(), kernel[1, 2, 7, 5])
    np.testing.assert_array_equal(state["layers.batch_normalization_4.running_var"].numpy(),
                                  keras_weights["batch_normalization_4/moving_variance:0"])
    net = openl3.OpenL3AudioNet("mel128", 512)
    net.load_state_dict(state, strict=True)
    assert net.layers["batch_normalization_1"].eps == 1e-3  # Keras' default, not torch's 1e-5


def test_full_model_files_with_model_weights_group_are_read(tmp_path, keras_weights):
    import h5py

    write_keras_weights(tmp_path / "weights.h5", keras_weights)
    with h5py.File(tmp_path / "weights.h5", "r") as src, h5py.File(tmp_path / "model.h5", "w") as dst:
        src.copy(src["/"], dst, "model_weights")
        for key, value in src.attrs.items():
            dst["model_weights"].attrs[key] = value
    assert openl3.read_keras_weights(tmp_path / "model.h5").keys() == keras_weights.keys()


def test_a_missing_misnamed_or_misshapen_layer_is_named(tmp_path, keras_weights):
    broken = dict(keras_weights)
    broken["conv2d_99/kernel:0"] = broken.pop("conv2d_2/kernel:0")
    broken["conv2d_5/bias:0"] = np.zeros(3, np.float32)
    write_keras_weights(tmp_path / "broken.h5", broken)
    with pytest.raises(openl3.CheckpointLayoutError) as caught:
        openl3.OpenL3(get_spec("openl3_mel256_music_512")).load_checkpoint(tmp_path / "broken.h5")
    message = str(caught.value)
    for needed in ("broken.h5", "missing: conv2d_2/kernel:0", "unexpected: conv2d_99/kernel:0", "conv2d_5/bias:0 (3,)"):
        assert needed in message, message
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(openl3.CheckpointLayoutError, match="text.h5"):
        openl3.read_keras_weights(tmp_path / "text.h5")


def test_weights_without_a_published_digest_load_with_a_warning(tmp_path, monkeypatch, keras_weights, caplog):
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path))
    spec = get_spec("openl3_mel128_env_512")
    write_keras_weights(tmp_path / spec.weights.filename, keras_weights)
    with caplog.at_level(logging.WARNING, logger="extract.weights"):
        extractor = create_extractor(spec.name)
    assert "UNVERIFIED" in caplog.text and extractor.weights_id in caplog.text  # the store records this sha256
    np.testing.assert_array_equal(extractor.module.net.layers["conv2d_1"].bias.detach().numpy(), keras_weights["conv2d_1/bias:0"])


# --- regression against marl/openl3 (needs real weights and fixtures; not run on the project's machines) -----

REGRESSION_CASES = [  # marl/openl3 tests/test_regression.py: test_audio_regression
    ("openl3_mel256_music_6144", 0.1, True, "chirp_44k.npz"),
    ("openl3_linear_env_512", 0.5, False, "chirp_44k_linear.npz"),
]


@pytest.mark.weights
@pytest.mark.parametrize("name, hop_seconds, center, fixture", REGRESSION_CASES)
def test_frame_embeddings_match_openl3_regression_fixtures(name, hop_seconds, center, fixture):
    fixtures = Path(os.environ.get("AVSCENE_OPENL3_FIXTURES", "openl3/tests/data"))
    if not (fixtures / "regression" / fixture).exists():
        where = ("AVSCENE_OPENL3_FIXTURES points there" if "AVSCENE_OPENL3_FIXTURES" in os.environ
                 else "the default; set AVSCENE_OPENL3_FIXTURES to marl/openl3's tests/data")
        pytest.skip(f"{fixtures}/regression/{fixture} missing ({where})")
    resampy = pytest.importorskip("resampy", reason="openl3 resamples with resampy 'kaiser_best'")
    import soundfile as sf

    resolve_weights(get_spec(name))  # a clear MissingWeightsError when absent
    model = create_extractor(name).module
    audio, rate_hz = sf.read(fixtures / "audio" / "chirp_44k.wav", dtype="float32", always_2d=True)
    audio = resampy.resample(audio.mean(axis=1), rate_hz, RATE, filter="kaiser_best").astype(np.float32)
    frames = torch.from_numpy(_openl3_core_frames(audio, hop_seconds, center))
    with torch.inference_mode():
        ours = torch.cat([model.net(frames[s : s + 16]) for s in range(0, len(frames), 16)]).numpy()
    expected = np.load(fixtures / "regression" / fixture)
    np.testing.assert_allclose(ours, expected["embedding"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.arange(len(frames)) * hop_seconds, expected["timestamps"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("input_repr", openl3.INPUT_REPRS)
@pytest.mark.parametrize("embedding_size", openl3.EMBEDDING_SIZES)
def test_every_network_shape_runs_finite_batch_invariant_and_deterministic(input_repr, embedding_size):
    """The forward contract for each distinct network (front end x embedding size; content type only changes the
    weights), random weights, at a 1-s inner hop (one frame per second) to keep the CPU cost down."""
    spec = get_spec(f"openl3_{input_repr}_env_{embedding_size}")
    torch.manual_seed(0)
    model = openl3.OpenL3(spec, replace(openl3.CONFIGS[spec.name], hop_seconds=1.0)).eval()
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 1, spec.audio.window_samples)).astype(np.float32))
    with torch.no_grad():
        batched = model(x)
        singles = torch.cat([model(x[:1]), model(x[1:])])
        again = model(x)
    assert batched.shape == (2, embedding_size) and torch.isfinite(batched).all()
    torch.testing.assert_close(batched, singles, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched, again, rtol=0, atol=0)
