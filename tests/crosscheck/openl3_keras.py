"""OpenL3's audio network as openl3 0.4.2 builds it in Keras (tf_keras + kapre 0.3.7), for the cross-check.

Written from marl/openl3 ``openl3/models.py`` (``__fix_kapre_spec``, ``kapre_v0_1_4_magnitude_to_decibel``,
``_construct_{linear,mel128,mel256}_audio_network(include_frontend=True)``,
``load_audio_embedding_model_from_path``) and ``openl3/core.py`` (``_center_audio``, ``_pad_audio``,
``_preprocess_audio_batch``); openl3 itself is not installed (its setup.py downloads the weights).

One liberty: openl3's code names only ``audio_embedding_layer``; here every weighted layer is given the name it
has in the published ``.h5`` files (Keras 2.0's auto-numbering from 1: ``batch_normalization_1..8``,
``conv2d_1..7``), so the written file has the official layout; openl3 loads by topology, names do not matter to it.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.keras = tf_keras: Keras 2's HDF5 layout, as openl3's files
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.keras import Model, backend as K  # noqa: E402
from tensorflow.keras.layers import Activation, BatchNormalization, Conv2D, Flatten, Input, Lambda, MaxPooling2D, Permute  # noqa: E402,E501
import tensorflow.keras.regularizers as regularizers  # noqa: E402

ASR = 48_000
N_HOP = 242
WEIGHT_DECAY = 1e-5
AUDIO_POOLING_SIZES = {"linear": {6144: (8, 8), 512: (32, 24)}, "mel128": {6144: (4, 8), 512: (16, 24)},
                       "mel256": {6144: (8, 8), 512: (32, 24)}}


def kapre_v0_1_4_magnitude_to_decibel(x, ref_value=1.0, amin=1e-10, dynamic_range=80.0):
    amin = tf.cast(amin or 1e-10, dtype=x.dtype)
    max_axis = tuple(range(K.ndim(x))[1:]) or None
    log_spec = 10.0 * (tf.math.log(K.maximum(x, amin)) / tf.math.log(tf.constant(10, dtype=x.dtype)))
    return K.maximum(log_spec - K.max(log_spec, axis=max_axis, keepdims=True), -dynamic_range)


def _frontend(input_repr: str):
    """openl3's ``__fix_kapre_spec(get_*_layer)(..., return_decibel=True)``: kapre without its dB, openl3's dB,
    then ``Permute((2, 1, 3))`` to (freq, time, channel)."""
    from kapre.composed import get_melspectrogram_layer, get_stft_magnitude_layer

    common = dict(input_shape=(1, ASR), hop_length=N_HOP, return_decibel=False,
                  input_data_format="channels_first", output_data_format="channels_last")
    if input_repr == "linear":
        seq = get_stft_magnitude_layer(n_fft=512, **common)
    else:
        seq = get_melspectrogram_layer(n_fft=2048, n_mels=int(input_repr[3:]), sample_rate=ASR, pad_end=True, **common)
    seq.add(Lambda(kapre_v0_1_4_magnitude_to_decibel))
    seq.add(Permute((2, 1, 3)))
    return seq


def build_audio_network(input_repr: str, seed: int) -> tuple[Model, Model]:
    """``_construct_<input_repr>_audio_network(include_frontend=True)``: (batch, 1, 48000) -> (batch, f, t, 512);
    and the model of its front end's output (after dB and the permute): (batch, f, t, 1). ``seed``: Keras' draw of
    the he_normal kernels."""
    tf.keras.utils.set_random_seed(seed)
    x_a = Input(shape=(1, ASR), dtype="float32")
    spectrogram = _frontend(input_repr)(x_a)
    y_a = BatchNormalization(name="batch_normalization_1")(spectrogram)
    conv_index, bn_index = 1, 2
    for block, n_filter in enumerate((64, 128, 256, 512), start=1):
        for second in (False, True):
            last = block == 4 and second
            name = "audio_embedding_layer" if last else f"conv2d_{conv_index}"
            y_a = Conv2D(n_filter, (3, 3), padding="same", kernel_initializer="he_normal", name=name,
                         kernel_regularizer=regularizers.l2(WEIGHT_DECAY))(y_a)
            if last:
                break
            y_a = BatchNormalization(name=f"batch_normalization_{bn_index}")(y_a)
            y_a = Activation("relu")(y_a)
            conv_index, bn_index = conv_index + 1, bn_index + 1
        if block < 4:
            y_a = MaxPooling2D(pool_size=(2, 2), strides=2)(y_a)
    return Model(inputs=x_a, outputs=y_a), Model(inputs=x_a, outputs=spectrogram)


def embedding_model(network: Model, input_repr: str, embedding_size: int) -> Model:
    """``load_audio_embedding_model_from_path`` after ``m.load_weights``: max-pool 'same' + flatten."""
    y_a = MaxPooling2D(pool_size=AUDIO_POOLING_SIZES[input_repr][embedding_size], padding="same")(network.output)
    return Model(inputs=network.input, outputs=Flatten()(y_a))


def randomise(network: Model, seed: int) -> None:
    """Random biases and BatchNorm parameters/statistics (conv kernels keep their he_normal draw)."""
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        if isinstance(layer, BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([0.5 + rng.random(n), 0.2 * rng.standard_normal(n), 0.2 * rng.standard_normal(n),
                               0.5 + rng.random(n)])
        elif isinstance(layer, Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, 0.05 * rng.standard_normal(bias.shape)])


def openl3_frames(audio_48k: np.ndarray, hop_seconds: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``core._preprocess_audio_batch(center=True)`` on mono 48-kHz audio: ``((n, 1, 48000), timestamps_s)``."""
    frame_len, hop_len = ASR, int(hop_seconds * ASR)
    audio = np.pad(audio_48k, (int(frame_len / 2.0), 0))
    n = audio.size
    pad = frame_len - n if n < frame_len else int(np.ceil((n - frame_len) / float(hop_len))) * hop_len - (n - frame_len)
    audio = np.pad(audio, (0, max(pad, 0)))
    n_frames = 1 + int((len(audio) - frame_len) / float(hop_len))
    frames = np.stack([audio[i * hop_len : i * hop_len + frame_len] for i in range(n_frames)])
    return frames[:, None, :].astype(np.float32), np.arange(n_frames) * hop_seconds
