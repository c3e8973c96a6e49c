"""OpenL3 (all six distinct networks: 3 input representations x 2 embedding poolings; the content type only
changes the weights) against the Keras model openl3 0.4.2 builds with kapre 0.3.7 (``openl3_keras.py``).

The Keras network gets random weights, is saved by Keras (tf_keras: Keras 2 HDF5) and gzipped as the official
``openl3_audio_<repr>_<content>-v0_4_0.h5.gz``, then loaded by our h5py reader through ``create_extractor``.
"""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from xc_common import TAU_STEMS, compare, load_through_our_loader, real_audio_windows, version
from extract.registry import get_spec

keras = pytest.importorskip("openl3_keras", reason="needs tensorflow + tf_keras + kapre (pip install -e '.[crosscheck]')")

REPRS = ("linear", "mel128", "mel256")
# A synthetic chirp's spectrum spans more than 80 dB, so many of its bins lie below float32 FFT roundoff, where
# torch.stft and tf.signal.stft give different noise (both 1-2 dB off a float64 FFT there); with random weights
# that reaches the embedding at up to ~1e-3 (measured over 6 networks and two weight draws). Real recordings stay within 1e-4.
CHIRP_TOLERANCE = 3e-3
CONTENT = {"linear": "env", "mel128": "music", "mel256": "music"}  # one content type each: same network


def _official_file(network):
    def write(path):
        raw_path = path.with_name(path.name.removesuffix(".gz"))
        network.save_weights(str(raw_path))  # Keras 2 HDF5 (.h5 suffix)
        path.write_bytes(gzip.compress(raw_path.read_bytes()))
        raw_path.unlink()

    return write


def _label() -> str:
    return f"Keras model as openl3 0.4.2 builds it: {version('kapre')}, {version('tf_keras')}, {version('tensorflow')}"


@pytest.mark.parametrize("input_repr", REPRS)
def test_openl3_network_equals_the_keras_model(input_repr):
    network, frontend = keras.build_audio_network(input_repr, seed=8)
    keras.randomise(network, seed=8)
    names = [f"openl3_{input_repr}_{CONTENT[input_repr]}_{size}" for size in (512, 6144)]
    windows, inputs = real_audio_windows(get_spec(names[0]))  # (n, 1, 96000): second 0 with 0.5 s each side
    frames = windows[:, :, 24_000:72_000]  # the 1-s frame centred on 0.5 s
    inputs = "2 TAU wavs + chirp_mono.wav, 1-s frame centred at 0.5 s"
    theirs_db = np.transpose(frontend.predict(frames, verbose=0), (0, 3, 1, 2))  # (n, 1, f, t)
    for name in names:
        ours = load_through_our_loader(name, _official_file(network))
        theirs = keras.embedding_model(network, input_repr, ours.module.config.embedding_size).predict(frames, verbose=0)
        net = ours.module.net
        with torch.inference_mode():
            x = torch.from_numpy(frames[:, 0])
            our_db = net.frontend(x)
            embedding = net(x)
            frontend, net.frontend = net.frontend, torch.nn.Identity()
            network_only = net(torch.from_numpy(theirs_db))  # our layers on the Keras front end's output
            net.frontend = frontend
        if name == names[0]:
            # Front end in the magnitude domain: 10^(dB/10) = |X| / max|X| per frame (openl3 0.4 takes 10 log10 of
            # the magnitude). In dB the two differ by up to ~1-2 dB in bins 60-80 dB below the peak: there |X| is
            # under 1e-6 of the peak, below float32 FFT roundoff (~1.5e-7 of the peak in both torch.stft and
            # tf.signal.stft; each is that far from a float64 FFT), so those dB values are noise in both.
            compare(f"openl3_{input_repr}_*", "front end magnitude / peak = 10^(dB/10)", _label(), inputs,
                    10 ** (our_db / 10), 10 ** (theirs_db / 10))
        compare(name, "embedding, our layers on Keras' front end", _label(), inputs, network_only, theirs)
        tau, chirp = slice(0, len(TAU_STEMS)), slice(len(TAU_STEMS), None)
        compare(name, "embedding, end to end", _label(), "2 TAU wavs, 1-s frame centred at 0.5 s", embedding[tau], theirs[tau])
        compare(name, "embedding, end to end", _label(), "chirp_mono.wav (1-s frame centred at 0.5 s)",
                embedding[chirp], theirs[chirp], tolerance_rel=CHIRP_TOLERANCE)


def test_openl3_per_second_embedding_equals_openl3_framing():
    """The stored second = mean of openl3's ``get_audio_embedding(center=True, hop_size=0.1)`` frames stamped in
    ``[k, k + 1)``: framing from openl3's ``core.py``, network from Keras."""
    from extract.audio_io import audio_windows, load_audio
    from xc_common import require_shared

    name = "openl3_mel256_music_512"
    network, _ = keras.build_audio_network("mel256", seed=9)
    keras.randomise(network, seed=9)
    ours = load_through_our_loader(name, _official_file(network))
    path = require_shared("tau", "audio", "bus-prague-1102-40498.wav")
    waveform, rate_hz = load_audio(path)
    assert rate_hz == 48_000
    mono = waveform.mean(axis=0)[: 3 * rate_hz]  # openl3 downmixes by the mean too
    frames, stamps_s = keras.openl3_frames(mono)
    per_frame = keras.embedding_model(network, "mel256", 512).predict(frames, verbose=0)
    seconds = 2  # seconds 0 and 1 (second 2 reaches the cut end)
    theirs = np.stack([per_frame[(stamps_s >= k - 1e-9) & (stamps_s < k + 1 - 1e-9)].mean(axis=0) for k in range(seconds)])
    spec = ours.spec
    windows = audio_windows(waveform[:, : 3 * rate_hz], rate_hz, seconds, 48_000, "mono", spec.audio.context_samples)
    compare(name, "per-second embedding (mean of 10 frames)", _label() + " + openl3 core.py framing",
            f"{path.name} (seconds 0-1, 48 kHz)", ours.embed(windows), theirs)
