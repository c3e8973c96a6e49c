"""PANNs Cnn14 / Wavegram-Logmel-Cnn14 against panns-inference / panns-at-inference, and Cnn10 layer by layer.

Reference weights are random (BatchNorm statistics too), saved as the Zenodo files are (``{'model': state_dict}``
via ``torch.save``) and loaded by :meth:`PannsEmbedder.load_checkpoint` through ``create_extractor``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xc_common import compare, import_package_module, load_through_our_loader, randomise_norms_, real_audio_windows, version
from extract.registry import get_spec

REFERENCE_ARGS = dict(sample_rate=32_000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14_000, classes_num=527)
CASES = {  # our name -> (distribution, package, class)
    "panns_cnn14.audioset": ("panns-inference", "panns_inference", "Cnn14"),
    "panns_wavegram_logmel_cnn14.audioset": ("panns-at-inference", "panns_AT_inference", "Wavegram_Logmel_Cnn14"),
}


def _reference(package: str, cls: str, seed: int) -> nn.Module:
    models = import_package_module(package, "models")
    torch.manual_seed(seed)
    net = getattr(models, cls)(**REFERENCE_ARGS)
    randomise_norms_(net, seed)
    return net.eval()


def _save_official(net: nn.Module):
    return lambda path: torch.save({"model": net.state_dict(), "iteration": 0}, path)


@pytest.mark.parametrize("name", sorted(CASES))
def test_panns_equals_its_package(name):
    distribution, package, cls = CASES[name]
    reference = _reference(package, cls, seed=3)
    ours = load_through_our_loader(name, _save_official(reference))
    windows, inputs = real_audio_windows(get_spec(name))
    x = torch.from_numpy(windows)
    with torch.inference_mode():
        theirs = reference(x.mean(dim=1))
        embedding = ours.module(x)
        clipwise = torch.sigmoid(ours.module.logits(x))
    label = f"{version(distribution)} {cls} + {version('torchlibrosa')}"
    compare(name, "embedding", label, inputs, embedding, theirs["embedding"])
    compare(name, "clipwise_output", label, inputs, clipwise, theirs["clipwise_output"])
    assert torch.equal(torch.from_numpy(ours.embed(windows)), embedding)  # the store's path: Extractor.embed


class Cnn10Reference(nn.Module):
    """``Cnn10`` of qiuqiangkong/audioset_tagging_cnn ``pytorch/models.py`` (commit d2f4b8c, lines 484-562), which
    no registry package carries, assembled from the parts it shares with panns-inference's ``Cnn14`` (the same
    ``Spectrogram``/``LogmelFilterBank`` front end, ``bn0`` and ``ConvBlock`` class): four ConvBlocks of 64, 128,
    256, 512 channels, each average-pooled 2x2, mean over mel, max + mean over time, ``fc1`` (512) + ReLU."""

    def __init__(self, cnn14: nn.Module, convblock: type, seed: int) -> None:
        super().__init__()
        self.spectrogram_extractor = cnn14.spectrogram_extractor
        self.logmel_extractor = cnn14.logmel_extractor
        self.bn0 = cnn14.bn0
        torch.manual_seed(seed)
        for i, (c_in, c_out) in enumerate(((1, 64), (64, 128), (128, 256), (256, 512)), start=1):
            self.add_module(f"conv_block{i}", convblock(in_channels=c_in, out_channels=c_out))
        self.fc1 = nn.Linear(512, 512, bias=True)
        self.fc_audioset = nn.Linear(512, REFERENCE_ARGS["classes_num"], bias=True)
        randomise_norms_(self, seed)

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.logmel_extractor(self.spectrogram_extractor(waveform))
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        blocks = []
        for i in range(1, 5):
            x = getattr(self, f"conv_block{i}")(x, pool_size=(2, 2), pool_type="avg")
            blocks.append(x)
        x = torch.mean(x, dim=3)
        x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
        x = F.relu_(self.fc1(x))
        return {"blocks": blocks, "embedding": x, "clipwise_output": torch.sigmoid(self.fc_audioset(x))}


def test_cnn10_equals_the_public_models_py_layer_by_layer():
    models = import_package_module("panns_inference", "models")
    reference = Cnn10Reference(_reference("panns_inference", "Cnn14", seed=4), models.ConvBlock, seed=4).eval()
    ours = load_through_our_loader("panns_cnn10.audioset", _save_official(reference))
    theirs_state, our_state = reference.state_dict(), ours.module.state_dict()
    assert {k: tuple(v.shape) for k, v in theirs_state.items()} == {k: tuple(v.shape) for k, v in our_state.items()}
    windows, inputs = real_audio_windows(get_spec("panns_cnn10.audioset"))
    x = torch.from_numpy(windows)
    ours_blocks = []
    hooks = [getattr(ours.module, f"conv_block{i}").register_forward_hook(lambda m, a, out: ours_blocks.append(out))
             for i in range(1, 5)]
    with torch.inference_mode():
        theirs = reference(x.mean(dim=1))
        embedding = ours.module(x)
        clipwise = torch.sigmoid(ours.module.logits(x))
    for hook in hooks:
        hook.remove()
    label = f"audioset_tagging_cnn models.py Cnn10 on {version('panns-inference')} parts"
    for i, (mine, ref) in enumerate(zip(ours_blocks[:4], theirs["blocks"]), start=1):
        compare("panns_cnn10.audioset", f"conv_block{i} output {tuple(ref.shape[1:])}", label, inputs, mine, ref)
    compare("panns_cnn10.audioset", "embedding", label, inputs, embedding, theirs["embedding"])
    compare("panns_cnn10.audioset", "clipwise_output", label, inputs, clipwise, theirs["clipwise_output"])
