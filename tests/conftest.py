"""Shared fixtures: a tiny synthetic TAU-layout dataset and a store extracted from it with debug models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from avscene.paths import shared_dir

DEBUG_EXTRACTORS = ("debug_visual", "debug_audio")


def require_shared(*parts: str) -> Path:
    """The shared asset at ``parts`` or a skip naming what is missing: the file, or the shared folder itself."""
    folder = shared_dir()
    path = folder.joinpath(*parts)
    if path.exists():
        return path
    if not folder.is_dir():
        where = ("AVSCENE_SHARED points there" if "AVSCENE_SHARED" in os.environ
                 else "the default ../shared; set AVSCENE_SHARED to the shared folder")
        pytest.skip(f"real asset {path} not available: the shared folder {folder} does not exist ({where})")
    pytest.skip(f"real asset {path} not available: the shared folder {folder} has no such file")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """10 scenes x 3 clips x 3 s, synthetic (generated once per test session)."""
    from avscene.demo.synthetic import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("tiny") / "data", clips_per_scene=3, seconds=3, seed=1,
                             width=64, height=48)


@pytest.fixture(scope="session")
def tiny_store(tiny_dataset, tmp_path_factory) -> str:
    """The tiny dataset extracted with the debug extractors (3 clips per chunk, so several blocks)."""
    from extract.runner import RunConfig, run_extraction

    store = str(tmp_path_factory.mktemp("store") / "emb.zarr")
    run_extraction(RunConfig(data=tiny_dataset, store=store, extractors=DEBUG_EXTRACTORS, device="cpu",
                             clips_per_chunk=8, progress=False))
    return store


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path, monkeypatch):
    """Tests never read or write the user's weights cache unless they set AVSCENE_WEIGHTS themselves."""
    if "AVSCENE_WEIGHTS" not in os.environ:
        monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "weights"))
    # nor the user's registered VADD heads (`vadd eval` registers its run folder for `vadd check`)
    monkeypatch.setenv("AVSCENE_HEADS_REGISTRY", str(tmp_path / "vadd-heads.json"))


@pytest.fixture(scope="session")
def debug_heads(tmp_path_factory) -> Path:
    """A small `vadd eval` run with the debug extractors (built once per test session), for what needs heads."""
    from avscene.demo.run import debug_heads_run

    return debug_heads_run(tmp_path_factory.mktemp("heads"))
