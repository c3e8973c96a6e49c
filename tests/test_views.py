"""Augmented views: transforms as the seed code defines them, seeding, and clip x view groups in the store."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as F

from extract.runner import RunConfig, run_extraction
from extract.store import DONE, PENDING, EmbeddingStore
from extract.store.writer import StoreWriter
from extract.views import (
    RandAugConfig, View, add_weighted, opencv_brightness, opencv_contrast, parse_views,
)

DEBUG_EXTRACTORS = ("debug_visual", "debug_audio")


def _frames(n: int = 3, side: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_opencv_brightness_and_contrast_formulas():
    image = torch.tensor([[[0, 100, 255]]], dtype=torch.uint8)
    # b = +20: x * 235/255 + 20 -> 0 -> 20, 100 -> 112.16 -> 112, 255 -> 255
    assert opencv_brightness(image, 20).tolist() == [[[20, 112, 255]]]
    # b = -20: x * 235/255 -> 0, 92.16 -> 92, 235
    assert opencv_brightness(image, -20).tolist() == [[[0, 92, 235]]]
    # c = 30: alpha = 131 * 157 / (127 * 101) = 1.6034; gamma = 127 (1 - alpha) = -76.63
    alpha = 131 * 157 / (127 * 101)
    expected = [min(255, max(0, round(v * alpha + 127 * (1 - alpha)))) for v in (0, 100, 255)]
    assert opencv_contrast(image, 30).tolist() == [[expected]] == [[[0, 84, 255]]]
    assert torch.equal(opencv_contrast(opencv_brightness(image, 0), 0), image)
    assert add_weighted(torch.tensor([1], dtype=torch.uint8), 2.5, 0.0).item() == 2  # 2.5 rounds half to even


def test_paper_aug_parameters_stay_in_the_papers_ranges():
    view = View("paper_aug", 1)
    params = [view.params(f"clip-{i}", k) for i in range(50) for k in range(10)]
    assert all(p["flip"] for p in params)
    for key, bound in (("brightness", 40), ("contrast", 40), ("rotation_deg", 5)):
        values = {p[key] for p in params}
        assert max(abs(v) for v in values) < bound and len(values) > bound  # integers, both signs, spread
        assert all(isinstance(v, int) for v in values)


def test_randaug_uses_the_subset_at_magnitude_14_of_31():
    assert RandAugConfig().factor_delta == pytest.approx(0.42)
    view = View("randaug", 1)
    ops = [op for i in range(100) for op in view.params(f"clip-{i}", 0)["ops"]]
    assert len(ops) == 200 and {name for name, _ in ops} == {"Sharpness", "Contrast", "Identity"}
    assert {round(f, 6) for name, f in ops if name != "Identity"} == {0.58, 1.42}


@pytest.mark.parametrize("kind", ["paper_aug", "randaug"])
def test_views_are_deterministic_per_seed_and_differ_from_original(kind):
    frames = _frames()
    view = View(kind, 1, seed=7)
    once, again = view.apply(frames, "clip-a"), View(kind, 1, seed=7).apply(frames, "clip-a")
    assert once.dtype == np.uint8 and once.shape == frames.shape
    np.testing.assert_array_equal(once, again)
    assert (once != frames).mean() > 0.1
    assert not np.array_equal(View(kind, 1, seed=8).apply(frames, "clip-a"), once)
    assert not np.array_equal(View(kind, 2, seed=7).apply(frames, "clip-a"), once)
    assert not np.array_equal(view.apply(frames, "clip-b"), once)


def test_paper_aug_is_flip_then_brightness_contrast_rotation():
    half = _frames(n=2, side=24)[:, :, :12]
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)  # each frame equals its mirror image
    asymmetric = _frames(n=2, side=24, seed=1)
    view = View("paper_aug", 1)
    for frames, flip in ((symmetric, False), (asymmetric, True)):
        out = view.apply(frames, "clip")
        for k in range(len(frames)):
            p = view.params("clip", k)
            x = torch.from_numpy(frames[k]).permute(2, 0, 1)
            x = F.hflip(x) if flip else x  # a symmetric frame needs no flip to match
            x = opencv_contrast(opencv_brightness(x, p["brightness"]), p["contrast"])
            x = F.rotate(x, float(p["rotation_deg"]), interpolation=F.InterpolationMode.BILINEAR)
            np.testing.assert_array_equal(out[k], x.permute(1, 2, 0).numpy())


def test_parse_views():
    assert [v.name for v in parse_views("paper_aug:2, randaug")] == ["paper_aug_1", "paper_aug_2", "randaug_1"]
    assert parse_views("") == ()
    for bad in ("mixup:1", "paper_aug:0", "paper_aug:x", "randaug:1,randaug:1"):
        with pytest.raises(ValueError, match="views"):
            parse_views(bad)
    view = View("randaug", 3, seed=5)
    assert View.from_dict(view.to_dict()) == view


@pytest.fixture(scope="module")
def viewed_store(tiny_dataset, tiny_store, tmp_path_factory) -> str:
    """A copy of the debug store with one paper_aug and one randaug view added."""
    store = str(tmp_path_factory.mktemp("views") / "emb.zarr")
    shutil.copytree(tiny_store, store)
    run_extraction(RunConfig(data=tiny_dataset, store=store, extractors=DEBUG_EXTRACTORS, device="cpu",
                             progress=False, views=parse_views("paper_aug:1,randaug:1", seed=11)))
    return store


def test_views_are_stored_beside_the_untouched_original(viewed_store, tiny_store):
    s, before = EmbeddingStore.open(viewed_store), EmbeddingStore.open(tiny_store)
    assert s.views("debug_visual") == ["original", "paper_aug_1", "randaug_1"]
    assert s.views("debug_audio") == ["original"]  # audio is never augmented
    for name in DEBUG_EXTRACTORS:
        assert s.group_attrs(name) == before.group_attrs(name)
        np.testing.assert_array_equal(s.root[f"extractors/{name}/original/embeddings"][:],
                                      before.root[f"extractors/{name}/original/embeddings"][:])
    original = s.root["extractors/debug_visual/original/embeddings"][:]
    for view in ("paper_aug_1", "randaug_1"):
        attrs = s.group_attrs("debug_visual", view)
        assert attrs["complete"] is True and (s.status("debug_visual", view) == DONE).all()
        assert attrs["view_transform"]["seed"] == 11 and attrs["view_transform"]["name"] == view
        assert attrs["fingerprint"] != s.group_attrs("debug_visual")["fingerprint"]
        augmented = s.root[f"extractors/debug_visual/{view}/embeddings"][:]
        assert np.isfinite(augmented).all() and not np.allclose(augmented, original)
    assert len(s.load_split(["debug_visual"], "train", view="paper_aug_1").ids) == int((s.clips.splits == "train").sum())


def test_views_resume_like_the_original(viewed_store, tiny_dataset, tmp_path):
    store = str(tmp_path / "resumed.zarr")
    shutil.copytree(viewed_store, store)
    group = StoreWriter.open(store).root["extractors/debug_visual/paper_aug_1"]
    sl = slice(8, 16)  # one block of 8 clips "in flight" when a run was killed
    group["status"][sl] = PENDING
    group["embeddings"][sl] = 0
    summary = run_extraction(RunConfig(data=tiny_dataset, store=store, extractors=DEBUG_EXTRACTORS, device="cpu",
                                       progress=False, views=parse_views("paper_aug:1,randaug:1", seed=11)))
    assert summary.done["debug_visual/paper_aug_1"] == 8
    assert sum(n for key, n in summary.done.items() if key != "debug_visual/paper_aug_1") == 0
    for view in ("paper_aug_1", "randaug_1"):
        np.testing.assert_array_equal(EmbeddingStore.open(store).root[f"extractors/debug_visual/{view}/embeddings"][:],
                                      EmbeddingStore.open(viewed_store).root[f"extractors/debug_visual/{view}/embeddings"][:])
