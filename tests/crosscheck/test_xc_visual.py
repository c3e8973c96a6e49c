"""Visual ports against their references: CSAIL Places365 (torchvision classes), torchvision ViTs, open_clip.

Each reference network gets random weights, is written as the official file (CSAIL ``.pth.tar`` with
``module.`` keys and DenseNet's old names; torchvision's bare state dict; open_clip's ``.bin``/``.safetensors``
holding both towers), loaded back through ``create_extractor``, and both run on real bento.mp4 frames as our
decoder gives them (``Extractor.embed``: uint8 frames -> normalisation -> network). The feature compared is
what the seed code keeps: ``avgpool``'s output (ResNet50), ``heads.head``'s output (ViT-H/14 ``_logits``),
``encode_image`` (CLIP).
"""
from __future__ import annotations

import dataclasses
import gc
import re

import numpy as np
import pytest
import torch
import torchvision

from xc_common import compare, load_through_our_loader, randomise_norms_, require_shared, version
from extract.extractor import normalise_images
from extract.registry import ExtractorSpec, get_spec
from extract.video_io import read_frames

FRAME_TIMES_S = (0.05, 0.55)
BENTO = "bento.mp4 frames at 0.05 s, 0.55 s (320x568), our decoder"


def _frames(spec: ExtractorSpec) -> np.ndarray:
    size = spec.visual.frame_size
    return read_frames(require_shared("media", "bento.mp4"), list(FRAME_TIMES_S), [size])[size]


def _small(spec: ExtractorSpec, side: int) -> ExtractorSpec:
    """``spec`` at a smaller square input (same network; fewer position embeddings for a ViT)."""
    return dataclasses.replace(spec, visual=dataclasses.replace(spec.visual, resize_shorter_px=side, crop_px=side))


def _csail_file(net: torch.nn.Module, arch: str):
    """CSAIL's 2017 ``.pth.tar``: DataParallel ``module.`` keys, DenseNet layers under old names, no
    ``num_batches_tracked``."""
    old_name = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.")

    def write(path):
        state = {"module." + old_name.sub(r"\1.\2.", k): v for k, v in net.state_dict().items()
                 if not k.endswith("num_batches_tracked")}
        torch.save({"epoch": 90, "arch": arch, "state_dict": state, "best_prec1": 54.65}, path)

    return write


@pytest.mark.parametrize("name, arch", [("resnet50.places365", "resnet50"), ("densenet161.places365", "densenet161")])
def test_places365_equals_torchvision(name, arch):
    torch.manual_seed(5)
    reference = getattr(torchvision.models, arch)(num_classes=365)
    randomise_norms_(reference, 5)
    reference.eval()
    ours = load_through_our_loader(name, _csail_file(reference, arch))
    frames = _frames(ours.spec)
    kept = {}
    if arch == "resnet50":  # the first paper's code: model.avgpool.register_forward_hook
        reference.avgpool.register_forward_hook(lambda m, a, out: kept.update(feature=out.flatten(1)))
    else:  # torchvision DenseNet: relu(features) -> adaptive avg pool -> classifier; keep the classifier's input
        reference.classifier.register_forward_pre_hook(lambda m, a: kept.update(feature=a[0]))
    with torch.inference_mode():
        logits = reference(normalise_images(torch.from_numpy(frames), ours.spec))
        embedding = torch.from_numpy(ours.embed(frames))
        our_logits = ours.module.logits(embedding)
    label = f"{version('torchvision')} {arch}(num_classes=365), CSAIL .pth.tar layout"
    compare(name, "pooled feature", label, BENTO, embedding, kept["feature"])
    compare(name, "365 logits", label, BENTO, our_logits, logits)


VIT_CASES = {  # torchvision builder, registered names sharing one file, input side used here
    "vit_h_14": (("vit_h14.swag_e2e_in1k", "vit_h14.swag_e2e_in1k_logits"), 224),
    "vit_b_16": (("vit_b16.in1k",), 224),
}


@pytest.mark.parametrize("builder", sorted(VIT_CASES))
def test_vit_stores_what_the_seed_code_hooked(builder):
    """ViT-H/14 runs at 224 px here instead of SWAG's 518 (same layers; 257 instead of 1370 position
    embeddings) to keep the check fast; ``test_seed_visual`` runs it at 518."""
    names, side = VIT_CASES[builder]
    torch.manual_seed(6)
    reference = getattr(torchvision.models, builder)(weights=None, image_size=side).eval()
    kept = {}
    reference.heads.head.register_forward_hook(lambda m, a, out: kept.update(logits=out))  # the seed code's hook
    reference.heads.register_forward_pre_hook(lambda m, a: kept.update(embedding=a[0]))
    spec = _small(get_spec(names[0]), side)
    frames = _frames(spec)
    with torch.inference_mode():
        reference(normalise_images(torch.from_numpy(frames), spec))
    label = f"{version('torchvision')} {builder} ({side} px)"
    state = reference.state_dict()
    write = lambda path: torch.save(state, path)  # noqa: E731  (torchvision's files: a bare state dict)
    del reference
    for name in names:
        ours = load_through_our_loader(name, write, spec=_small(get_spec(name), side))
        out = torch.from_numpy(ours.embed(frames))
        if name.endswith("_logits"):
            compare(name, "heads.head output (1000 logits)", label, BENTO, out, kept["logits"])
        else:
            compare(name, "class token after encoder.ln", label, BENTO, out, kept["embedding"])
        del ours
        gc.collect()


CLIP_CASES = {
    "clip_vit_b32.laion2b_s34b_b79k": ("ViT-B-32", "laion2b_s34b_b79k"),
    "clip_vit_h14.laion2b_s32b_b79k": ("ViT-H-14", "laion2b_s32b_b79k"),
}


def _open_clip_file(model: torch.nn.Module):
    """Both towers, as the Hugging Face files hold them: ``.safetensors`` or a ``torch.save``d state dict."""
    def write(path):
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(path))
        else:
            torch.save(state, path)

    return write


@pytest.mark.parametrize("name", sorted(CLIP_CASES))
def test_clip_equals_open_clip_encode_image(name):
    import open_clip

    model_name, tag = CLIP_CASES[name]
    torch.manual_seed(7)
    reference = open_clip.create_model(model_name, pretrained=None).eval()
    with torch.no_grad():  # open_clip initialises LayerNorms to 1/0: perturb them too
        for module in reference.visual.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.1 * torch.randn_like(module.weight))
                module.bias.add_(0.1 * torch.randn_like(module.bias))
    spec = get_spec(name)
    frames = _frames(spec)
    with torch.inference_mode():
        theirs = reference.encode_image(normalise_images(torch.from_numpy(frames), spec))
    write = _open_clip_file(reference)
    del reference
    gc.collect()
    ours = load_through_our_loader(name, write)
    label = f"{version('open-clip-torch')} create_model('{model_name}').encode_image"
    compare(name, "encode_image (not L2-normalised)", label, BENTO, ours.embed(frames), theirs)
