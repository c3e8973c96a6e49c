"""Our in-decoder preprocessing (swscale resize + centre crop, then normalisation) against the seed code's own
pipelines on real bento.mp4 frames: Places365 ``Resize((256, 256))`` + ``CenterCrop(224)`` (the first paper's
``1_extract_features.py`` and CSAIL's demo), SWAG's ``ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1.transforms()``,
ViT-B/16's ``IMAGENET1K_V1.transforms()``, and open_clip's ``preprocess`` for the LAION-2B towers.

The seed pipelines resample with PIL (on the full-size RGB frame), ours with swscale inside the decoder: the
filters are the same family (antialiased when shrinking) but not the same code, so pixels differ by a few
levels. The tolerance is on the mean absolute difference in 0-255 levels; the maximum is reported.
"""
from __future__ import annotations

import av
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms as trn

from xc_common import compare, require_shared, version
from extract.extractor import normalise_images
from extract.registry import get_spec
from extract.video_io import read_frames

FRAME_TIMES_S = (0.05, 0.55, 1.05)
MEAN_LEVEL_TOLERANCE = 2.0  # mean |ours - seed| in 0-255 levels (measured: see the README)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _full_frames(times_s) -> list[Image.Image]:
    """The frame shown at each time, full size, RGB (as the seed code's ``cv2.cvtColor(frame, BGR2RGB)``)."""
    shown = {}
    with av.open(str(require_shared("media", "bento.mp4"))) as container:
        for frame in container.decode(video=0):
            for t in times_s:
                if frame.time <= t + 1e-6:
                    shown[t] = frame.to_ndarray(format="rgb24")
    return [Image.fromarray(shown[t]) for t in times_s]


def _open_clip_preprocess(model_name: str, tag: str):
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = open_clip.get_pretrained_cfg(model_name, tag)  # what create_model_and_transforms(pretrained=tag) uses
    size = open_clip.get_model_config(model_name)["vision_cfg"]["image_size"]
    return image_transform_v2(PreprocessCfg(size=size, mode="RGB", mean=cfg["mean"], std=cfg["std"],
                                            interpolation=cfg["interpolation"], resize_mode=cfg["resize_mode"]),
                              is_train=False)


def _seed_pipeline(name: str):
    """(the seed code's transform, what it is called)."""
    if name == "resnet50.places365":
        return (trn.Compose([trn.Resize((256, 256)), trn.CenterCrop(224), trn.ToTensor(), trn.Normalize(IMAGENET_MEAN, IMAGENET_STD)]),
                f"{version('torchvision')} Resize((256, 256)), CenterCrop(224) on PIL")
    if name == "vit_h14.swag_e2e_in1k":
        return (torchvision.models.ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1.transforms(),
                f"{version('torchvision')} ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1.transforms() on PIL")
    if name == "vit_b16.in1k":
        return (torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1.transforms(),
                f"{version('torchvision')} ViT_B_16_Weights.IMAGENET1K_V1.transforms() on PIL")
    return (_open_clip_preprocess("ViT-H-14", "laion2b_s32b_b79k"),
            f"{version('open-clip-torch')} preprocess (laion2b_s32b_b79k) on PIL")


@pytest.mark.parametrize("name", ["resnet50.places365", "vit_h14.swag_e2e_in1k", "vit_b16.in1k",
                                  "clip_vit_h14.laion2b_s32b_b79k"])
def test_preprocessing_matches_the_seed_pipeline(name):
    spec = get_spec(name)
    transform, label = _seed_pipeline(name)
    theirs = torch.stack([transform(image) for image in _full_frames(FRAME_TIMES_S)])  # normalised (B, 3, S, S)
    size = spec.visual.frame_size
    frames = read_frames(require_shared("media", "bento.mp4"), list(FRAME_TIMES_S), [size])[size]
    ours = normalise_images(torch.from_numpy(frames), spec)
    assert ours.shape == theirs.shape
    std = torch.tensor(spec.visual.std).view(1, 3, 1, 1)
    level_diff = ((ours - theirs) * std * 255).abs()  # back to 0-255 levels
    inputs = f"bento.mp4 frames at {', '.join(f'{t:g}' for t in FRAME_TIMES_S)} s (320x568)"
    mean_levels, max_levels = float(level_diff.mean()), float(level_diff.max())
    compare(name, f"preprocessed pixels: mean {mean_levels:.2f}, max {max_levels:.0f} levels of 255", label,
            inputs, ours, theirs, tolerance_rel=float("inf"))
    assert mean_levels <= MEAN_LEVEL_TOLERANCE, f"{name}: mean pixel difference {mean_levels:.2f} levels"
