"""Checkpoint layouts of the seed visual models, written from the publishers' code (not from our loaders).

Each ``*_keys`` function lists ``{key: shape}`` of an official file in the publisher's own names;
``filled`` turns such a table into a state dict whose tensors come from one of our modules (under the
name the publisher's key maps to), failing when the module lacks the tensor or has another shape. The
loaders are then tested against these tables, so a renamed, missing or mis-shaped key fails without
the real file. Text-tower tensors that a loader must skip are zero-copy stand-ins on the meta device.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

Shape = tuple[int, ...]


def torchvision_vit_keys(patch_px: int, layers: int, width: int, mlp_dim: int, image_px: int) -> dict[str, Shape]:
    """torchvision ``VisionTransformer`` as saved for the published weights (2021-22): MLP blocks still
    named ``mlp.linear_1``/``mlp.linear_2`` (torchvision renames them to ``mlp.0``/``mlp.3`` on load)."""
    keys: dict[str, Shape] = {
        "class_token": (1, 1, width),
        "conv_proj.weight": (width, 3, patch_px, patch_px),
        "conv_proj.bias": (width,),
        "encoder.pos_embedding": (1, (image_px // patch_px) ** 2 + 1, width),
    }
    for i in range(layers):
        p = f"encoder.layers.encoder_layer_{i}."
        keys.update({
            p + "ln_1.weight": (width,), p + "ln_1.bias": (width,),
            p + "self_attention.in_proj_weight": (3 * width, width), p + "self_attention.in_proj_bias": (3 * width,),
            p + "self_attention.out_proj.weight": (width, width), p + "self_attention.out_proj.bias": (width,),
            p + "ln_2.weight": (width,), p + "ln_2.bias": (width,),
            p + "mlp.linear_1.weight": (mlp_dim, width), p + "mlp.linear_1.bias": (mlp_dim,),
            p + "mlp.linear_2.weight": (width, mlp_dim), p + "mlp.linear_2.bias": (width,),
        })
    keys.update({"encoder.ln.weight": (width,), "encoder.ln.bias": (width,),
                 "heads.head.weight": (1000, width), "heads.head.bias": (1000,)})
    return keys


def _open_clip_blocks(prefix: str, layers: int, width: int) -> dict[str, Shape]:
    keys: dict[str, Shape] = {}
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        keys.update({
            p + "ln_1.weight": (width,), p + "ln_1.bias": (width,),
            p + "attn.in_proj_weight": (3 * width, width), p + "attn.in_proj_bias": (3 * width,),
            p + "attn.out_proj.weight": (width, width), p + "attn.out_proj.bias": (width,),
            p + "ln_2.weight": (width,), p + "ln_2.bias": (width,),
            p + "mlp.c_fc.weight": (4 * width, width), p + "mlp.c_fc.bias": (4 * width,),
            p + "mlp.c_proj.weight": (width, 4 * width), p + "mlp.c_proj.bias": (width,),
        })
    return keys


def open_clip_keys(
    patch_px: int, layers: int, width: int, embed_dim: int, text_layers: int, text_width: int, image_px: int = 224
) -> dict[str, Shape]:
    """open_clip ``CLIP.state_dict()`` (model_configs/ViT-*.json): own parameters, ``visual.*``, text tower."""
    keys: dict[str, Shape] = {
        "positional_embedding": (77, text_width),
        "text_projection": (text_width, embed_dim),
        "logit_scale": (),
        "visual.class_embedding": (width,),
        "visual.positional_embedding": ((image_px // patch_px) ** 2 + 1, width),
        "visual.proj": (width, embed_dim),
        "visual.conv1.weight": (width, 3, patch_px, patch_px),
        "visual.ln_pre.weight": (width,), "visual.ln_pre.bias": (width,),
    }
    keys.update(_open_clip_blocks("visual.", layers, width))
    keys.update({"visual.ln_post.weight": (width,), "visual.ln_post.bias": (width,)})
    keys.update(_open_clip_blocks("", text_layers, text_width))
    keys.update({"token_embedding.weight": (49408, text_width),
                 "ln_final.weight": (text_width,), "ln_final.bias": (text_width,)})
    return keys


def _bn(prefix: str, channels: int) -> dict[str, Shape]:
    """BatchNorm as saved by PyTorch 0.2 (2017): no ``num_batches_tracked``."""
    return {prefix + s: (channels,) for s in ("weight", "bias", "running_mean", "running_var")}


def csail_resnet50_keys() -> dict[str, Shape]:
    """CSAIL ``resnet50_places365.pth.tar`` ``state_dict``: torchvision ResNet50 under ``nn.DataParallel``."""
    m = "module."
    keys: dict[str, Shape] = {m + "conv1.weight": (64, 3, 7, 7), **_bn(m + "bn1.", 64)}
    in_ch = 64
    for stage, (blocks, mid) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for j in range(blocks):
            p = f"{m}layer{stage}.{j}."
            keys.update({p + "conv1.weight": (mid, in_ch, 1, 1), **_bn(p + "bn1.", mid),
                         p + "conv2.weight": (mid, mid, 3, 3), **_bn(p + "bn2.", mid),
                         p + "conv3.weight": (4 * mid, mid, 1, 1), **_bn(p + "bn3.", 4 * mid)})
            if j == 0:
                keys.update({p + "downsample.0.weight": (4 * mid, in_ch, 1, 1), **_bn(p + "downsample.1.", 4 * mid)})
            in_ch = 4 * mid
    keys.update({m + "fc.weight": (365, 2048), m + "fc.bias": (365,)})
    return keys


def csail_densenet161_keys() -> dict[str, Shape]:
    """CSAIL ``densenet161_places365.pth.tar`` ``state_dict``: old DenseNet names (``norm.1``, ``conv.2``)."""
    m, growth, bottleneck = "module.features.", 48, 4 * 48
    keys: dict[str, Shape] = {m + "conv0.weight": (96, 3, 7, 7), **_bn(m + "norm0.", 96)}
    channels = 96
    for block, layers in enumerate((6, 12, 36, 24), start=1):
        for layer in range(1, layers + 1):
            p = f"{m}denseblock{block}.denselayer{layer}."
            keys.update({**_bn(p + "norm.1.", channels), p + "conv.1.weight": (bottleneck, channels, 1, 1),
                         **_bn(p + "norm.2.", bottleneck), p + "conv.2.weight": (growth, bottleneck, 3, 3)})
            channels += growth
        if block < 4:
            p = f"{m}transition{block}."
            keys.update({**_bn(p + "norm.", channels), p + "conv.weight": (channels // 2, channels, 1, 1)})
            channels //= 2
    keys.update({**_bn(m + "norm5.", channels), "module.classifier.weight": (365, channels),
                 "module.classifier.bias": (365,)})
    return keys


# How a publisher's key names the tensor in our modules (None: a key the loader must skip).
def torchvision_vit_name(key: str) -> str | None:
    return re.sub(r"\.mlp\.linear_([12])\.", lambda g: f".mlp.{3 * int(g.group(1)) - 3}.", key)


def open_clip_name(key: str) -> str | None:
    return key if key.startswith("visual.") else None


def csail_name(key: str) -> str | None:
    key = "net." + key.removeprefix("module.")
    return re.sub(r"\.(norm|relu|conv)\.([12])\.", r".\1\2.", key)


def filled(module: torch.nn.Module, table: dict[str, Shape], name_of: Callable[[str], str | None]) -> dict[str, torch.Tensor]:
    """``table`` with each tensor taken from ``module`` (views, no copies); shape mismatches fail."""
    state = module.state_dict(keep_vars=False)
    out: dict[str, torch.Tensor] = {}
    for key, shape in table.items():
        ours = name_of(key)
        if ours is None:
            out[key] = torch.empty(shape, device="meta")
            continue
        if ours not in state:
            raise AssertionError(f"published key {key!r} -> {ours!r}: no such tensor in {type(module).__name__}")
        if tuple(state[ours].shape) != shape:
            raise AssertionError(f"published key {key!r} has shape {shape}, {ours!r} has {tuple(state[ours].shape)}")
        out[key] = state[ours]
    return out
