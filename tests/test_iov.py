"""iov_cnn420, weights trained here: train -> weights + run record -> extract -> store records the run.

One seeded 1-epoch training on the tiny synthetic dataset (module fixture, ~10-30 s on CPU); a second one on
a copy without any test-split audio must give the very same weights (determinism and no test clip used).
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from extract import cli, train_extractor
from extract.extractor import create_extractor
from extract.manifest import read_manifest
from extract.taxonomy import SCENE_TO_IOV
from extract.registry import get_spec
from extract.runner import RunConfig, run_extraction
from extract.store import DONE, EmbeddingStore, StoreError
from extract.weights import (
    MissingWeightsError, WeightsChecksumError, fetch, file_digests, import_dir, resolve_weights,
)

NAME = "iov_cnn420"
TRAIN_ARGS = ["--epochs", "1", "--batch-size", "16", "--seed", "3", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory) -> dict:
    """``python -m extract train-iov --store S`` once: weights cache folder, store and run record."""
    root = tmp_path_factory.mktemp("iov")
    store = str(root / "emb.zarr")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVSCENE_WEIGHTS", str(root / "weights"))
        assert cli.main(["train-iov", "--data", str(tiny_dataset), "--store", store, *TRAIN_ARGS]) == 0
    record = json.loads((root / "weights" / "iov_cnn420.pt.run.json").read_text())
    return {"weights": root / "weights", "store": store, "record": record}


def test_weights_file_has_the_recorded_sha256_and_loads_weights_only(trained):
    path = trained["weights"] / "iov_cnn420.pt"
    assert file_digests(path)["sha256"] == trained["record"]["sha256"]
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["head.weight"].shape == (3, 256)


def test_run_record_describes_the_training(trained, tiny_dataset):
    record = trained["record"]
    train_ids = {c.clip_id for c in read_manifest(tiny_dataset).by_split("train")}
    assert record["extractor"] == NAME and record["classes"] == ["indoor", "outdoor", "vehicle"]
    assert record["config"]["epochs"] == 1 and record["config"]["seed"] == 3
    assert set(record["train_clip_ids"]) == train_ids and record["data"]["split"] == "train"
    assert record["data"]["n_windows"] == 3 * len(train_ids)
    [epoch] = record["metrics"]["epochs"]
    assert epoch["train_loss"] > 0 and 0.0 <= epoch["val_accuracy"] <= 1.0


def test_store_records_the_training_run(trained):
    store = EmbeddingStore.open(trained["store"])
    attrs = store.group_attrs(NAME)
    assert attrs["weights"] == trained["record"]["sha256"]
    assert attrs["training_run"]["run_id"] == trained["record"]["run_id"]
    assert attrs["training_run"]["metrics"] == trained["record"]["metrics"]
    assert "train_clip_ids" not in attrs["training_run"]  # the list stays in the record file
    assert attrs["complete"] is True and (store.status(NAME) == DONE).all()
    embeddings = store.root[f"extractors/{NAME}/original/embeddings"][:]
    assert embeddings.shape[-1] == 256 and abs(embeddings).sum() > 0


def test_training_never_reads_test_clips_and_is_deterministic(trained, tiny_dataset, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    manifest = read_manifest(data, require=())
    test_clips = manifest.by_split("test")
    assert test_clips
    for clip in test_clips:  # a test clip read during training would now fail loudly
        clip.audio_path.unlink()
        clip.video_path.unlink()
    decoded: list[str] = []
    real_decode = train_extractor.decode_whole_clip
    monkeypatch.setattr(train_extractor, "decode_whole_clip",
                        lambda clip, plan: decoded.append(clip.clip_id) or real_decode(clip, plan))
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "weights"))
    cfg = train_extractor.ExtractorTrainConfig(epochs=1, batch_size=16, seed=3, device="cpu")
    _, record = train_extractor.train_extractor(NAME, manifest, SCENE_TO_IOV, cfg)
    assert decoded and set(decoded) == {c.clip_id for c in manifest.by_split("train")}
    assert not set(record["train_clip_ids"]) & {c.clip_id for c in test_clips}
    assert record["sha256"] == trained["record"]["sha256"]  # same seed, same train clips: same weights


def test_extraction_refuses_weights_trained_on_a_test_clip(trained, tiny_dataset, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    shutil.copytree(trained["weights"], weights)
    record_file = weights / "iov_cnn420.pt.run.json"
    record = json.loads(record_file.read_text())
    test_id = read_manifest(tiny_dataset).by_split("test")[0].clip_id
    record_file.write_text(json.dumps({**record, "train_clip_ids": record["train_clip_ids"] + [test_id]}))
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(weights))
    store = str(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match=f"test clips.*{test_id}"):
        run_extraction(RunConfig(data=tiny_dataset, store=store, extractors=(NAME,), device="cpu", progress=False))


def test_record_and_file_must_agree(trained, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    shutil.copytree(trained["weights"], weights)
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(weights))
    spec = get_spec(NAME)
    assert resolve_weights(spec) == weights / "iov_cnn420.pt"
    with (weights / "iov_cnn420.pt").open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(WeightsChecksumError, match="training run"):
        create_extractor(NAME)
    (weights / "iov_cnn420.pt.run.json").unlink()
    with pytest.raises(MissingWeightsError, match="train-iov"):
        create_extractor(NAME)


def test_trained_weights_import_with_their_record_and_never_download(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(tmp_path / "cache"))
    spec = get_spec(NAME)
    with pytest.raises(ValueError, match="train it with python -m extract train-iov"):
        fetch(spec)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(trained["weights"] / "iov_cnn420.pt", lonely)
    with pytest.raises(MissingWeightsError, match="run record"):
        import_dir(lonely, [spec])
    [installed] = import_dir(trained["weights"], [spec])
    assert create_extractor(NAME).training_run["run_id"] == trained["record"]["run_id"]
    assert installed == tmp_path / "cache" / "iov_cnn420.pt"
