"""`vadd eval --protocol partial | same-class` and the protocol x score table on a two-label CSV store."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from extract.taxonomy import tau_recording_location
from tests.conftest import DEBUG_EXTRACTORS
from vadd.cli import main
from vadd.splice import SPLICE_S, read_spliced_csv

CALM = ("airport", "metro_station", "park", "public_square", "shopping_mall")  # the other 5 demo scenes are "busy"
FAST = ["--epochs", "3", "--correspondence-epochs", "3", "--validation-fraction", "0.4"]


@pytest.fixture(scope="module")
def csv_store(tmp_path_factory) -> str:
    """The demo's 10 scenes x 5 clips x 4 s (3 train, 2 test in one location per scene) as a CSV manifest of two
    labels, calm and busy, with a location column; debug extractors."""
    from avscene.demo.synthetic import make_demo_dataset
    from extract.runner import RunConfig, run_extraction

    root = tmp_path_factory.mktemp("two_labels")
    media = make_demo_dataset(root / "media", clips_per_scene=5, seconds=4, seed=4, width=48, height=32)
    with open(media / "evaluation_setup" / "fold1_train.csv") as f:
        train = {Path(r["filename_video"]).stem for r in csv.DictReader(f, delimiter="\t")}
    with open(root / "list.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "audio", "label", "split", "location"])
        for video in sorted((media / "video").glob("*.mp4")):
            scene = video.stem.split("-")[0]
            writer.writerow([f"media/video/{video.name}", f"media/audio/{video.stem}.wav",
                             "calm" if scene in CALM else "busy", "train" if video.stem in train else "test",
                             tau_recording_location(video.stem)])
    shutil.copy(media / "avscene-dataset.json", root)  # the manifest's folder carries the card: synthetic
    store = str(root / "emb.zarr")
    run_extraction(RunConfig(data=root / "list.csv", store=store, extractors=DEBUG_EXTRACTORS, device="cpu", progress=False))
    return store


def _table(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["protocol_table"]


def test_partial_protocol_runs_writes_every_span_and_reruns_from_its_csv(csv_store, tmp_path, capsys):
    run = tmp_path / "partial"
    assert main(["eval", "--store", csv_store, "--protocol", "partial", "--out", str(run), *FAST]) == 0
    items = read_spliced_csv(run / "protocol.csv")
    kinds = {i.kind for i in items}
    assert {"pristine", "partial", "swapped", "long-pristine", "long-partial"} <= kinds
    for item in items:
        if item.kind in ("partial", "long-partial"):
            (start_s, end_s), = item.truth_segments()
            assert SPLICE_S[0] <= end_s - start_s <= min(SPLICE_S[1], item.length_s - 1)
            assert {s.audio_label for s in item.spans if s.manipulated} != {item.spans[0].video_label}
    table = _table(run)
    assert table["protocols"]["official"]["unavailable"]  # not a TAU store: said, not faked
    for protocol in ("generated", "partial", "same-class"):
        row = table["protocols"][protocol]
        assert set(row["scores"]) == {"paper_rule", "mismatch", "correspondence", "fusion"}
        for score in row["scores"].values():
            assert 0 <= score["f1"] <= 1 and 0 <= score["second_f1"] <= 1 and 0 <= score["ap@0.5"] <= 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_items"] == len(items) == table["protocols"]["partial"]["n_items"]
    assert table["correspondence"]["infonce_loss_by_epoch"][-1] < table["correspondence"]["infonce_loss_by_epoch"][0]
    markdown = (run / "metrics.md").read_text()
    assert "## Protocols x scores (SYNTHETIC data)" in markdown and "| partial | " in markdown
    capsys.readouterr()
    again = tmp_path / "again"
    assert main(["eval", "--store", csv_store, "--protocol", str(run / "protocol.csv"), "--out", str(again), *FAST]) == 0
    assert read_spliced_csv(again / "protocol.csv") == items
    assert _table(again)["protocols"]["partial"] == table["protocols"]["partial"]


def test_same_class_protocol_swaps_within_a_class_across_locations(csv_store, tmp_path):
    run = tmp_path / "same"
    assert main(["eval", "--store", csv_store, "--protocol", "same-class", "--out", str(run), *FAST]) == 0
    items = read_spliced_csv(run / "protocol.csv")
    swapped = [s for i in items for s in i.spans if s.manipulated]
    assert swapped and len(swapped) == len(items) / 2
    assert all(s.video_label == s.audio_label and s.video_location != s.audio_location for s in swapped)
    row = _table(run)["protocols"]["same-class"]
    assert "note" not in row  # every pair from two locations
    rule = row["scores"]["paper_rule"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["paper_rule"]["f1"] == rule["f1"]  # the run's own figures are the table's row


def test_a_spliced_csv_naming_a_training_clip_is_refused(csv_store, tmp_path, capsys):
    from extract.store import EmbeddingStore

    clips = EmbeddingStore.open(csv_store).clips
    train_clip = clips.ids[clips.splits == "train"][0]
    path = tmp_path / "p.csv"
    path.write_text("item,kind,start_s,length_s,video_clip,video_start_s,audio_clip,audio_start_s,video_label,"
                    f"audio_label,video_location,audio_location\n1,pristine,0,4,{train_clip},0,{train_clip},0,calm,calm,x,x\n")
    assert main(["eval", "--store", csv_store, "--protocol", str(path), "--out", str(tmp_path / "r"), *FAST]) == 2
    assert f"p.csv: item 1: {train_clip} is not in the store's test split" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
