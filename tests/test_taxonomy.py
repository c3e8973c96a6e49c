"""Dataset taxonomies: class sets and groupings, the grouping file, the store's record, and a two-label CSV
dataset through extract -> train -> ablation -> VADD eval -> check (debug extractors, the CLIs)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from classify.cli import main as classify_main
from classify.data import load_clips
from extract.cli import main as extract_main
from avscene.errors import ManifestError
from extract.manifest import read_csv_manifest, read_manifest
from extract.store import EmbeddingStore
from extract.taxonomy import (
    IOV_CLASSES, TAU_SCENES, Grouping, Taxonomy, default_taxonomy, read_grouping_file, tau_taxonomy,
)
from vadd.cli import main as vadd_main

CALM = {"airport", "bus", "metro", "metro_station", "park"}  # the two labels of the CSV dataset: calm / busy


def test_tau_taxonomy_names_its_class_sets_10_and_3():
    tau = tau_taxonomy()
    assert tau.names == ("10", "3") and tau.class_set("").name == "10" and tau.class_set(3).classes == IOV_CLASSES
    assert tau.class_set("3").encode(np.array(["tram", "park", "airport", ""])).tolist() == [2, 1, 0, -1]
    assert tau.location("park-lyon-1044-4100") == "park-lyon-1044" and Taxonomy(("a",)).location("a-b-c-d") == "a-b-c-d"
    assert Taxonomy.from_dict(json.loads(json.dumps(tau.to_dict()))) == tau
    with pytest.raises(ValueError, match=r"--classes '2' is not defined .* '10', '3'"):
        tau.class_set("2")
    with pytest.raises(ValueError, match=r"maps no group to class\(es\) \['b'\]"):
        Taxonomy(("a", "b"), (Grouping("g", ("x",), {"a": "x"}),))
    with pytest.raises(ValueError, match="already used"):
        Taxonomy(("a", "b"), (Grouping("2", ("x",), {"a": "x", "b": "x"}),))


def test_old_stores_get_tau_or_their_own_labels():
    assert default_taxonomy(TAU_SCENES) == tau_taxonomy()
    assert default_taxonomy(("bus", "park")).class_set("3").classes == IOV_CLASSES
    assert default_taxonomy(("bus", "park", "tram")).names == ("3", "iov")  # three scenes: the grouping gives way
    plain = default_taxonomy(("calm", "busy"))
    assert plain.names == ("2",) and plain.location_rule == "clip"


def test_grouping_file_is_read_and_checked(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("label,coarse,parity\r\na,x,odd\r\nb,x,even\r\nc,y,odd\r\n")
    groupings = read_grouping_file(path, ("a", "b", "c"))
    assert [(g.name, g.groups) for g in groupings] == [("coarse", ("x", "y")), ("parity", ("even", "odd"))]
    for text, message in [("label,coarse\na,x\n", r"no row for class\(es\) \['b', 'c'\]"),
                          ("label,coarse\na,x\nb,x\nc,y\nd,y\n", r"groups.csv:5: label 'd' is not a class"),
                          ("label,coarse\na,x\nb,\nc,y\n", r"groups.csv:3: expected 2 non-empty fields"),
                          ("name,coarse\na,x\n", "header must be label")]:
        path.write_text(text)
        with pytest.raises(ManifestError, match=message):
            read_grouping_file(path, ("a", "b", "c"))


def _two_label_csv(data: Path) -> Path:
    """A CSV manifest over the demo files with two labels (calm, busy); the video has no audio track."""
    meta = list(csv.DictReader(open(data / "meta.csv", newline=""), delimiter="\t"))
    train = {r["filename_audio"] for r in csv.DictReader(open(data / "evaluation_setup" / "fold1_train.csv",
                                                              newline=""), delimiter="\t")}
    path = data / "two.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "audio", "label", "split"])
        for r in meta:
            writer.writerow([r["filename_video"], r["filename_audio"], "calm" if r["scene_label"] in CALM else "busy",
                             "train" if r["filename_audio"] in train else "test"])
    return path


def test_csv_manifest_takes_its_groupings_from_a_file(tmp_path):
    (tmp_path / "a.wav").touch()
    (tmp_path / "b.wav").touch()
    (tmp_path / "m.csv").write_text("video,audio,label,split\n,a.wav,bus,train\n,b.wav,park,test\n")
    (tmp_path / "g.csv").write_text("label,moving\nbus,yes\npark,no\n")
    manifest = read_manifest(tmp_path / "m.csv", require=(), groups=tmp_path / "g.csv")
    assert manifest.taxonomy.names == ("2", "moving") and manifest.taxonomy.location_rule == "clip"
    assert manifest.taxonomy.class_set("moving").class_of("bus") == "yes"
    assert read_csv_manifest(tmp_path / "m.csv", classes=TAU_SCENES, require=()).taxonomy == tau_taxonomy()
    (tmp_path / "g.csv").write_text("label,moving\nbus,yes\n")
    with pytest.raises(ManifestError, match=r"g.csv: no row for class\(es\) \['park'\]"):
        read_manifest(tmp_path / "m.csv", require=(), groups=tmp_path / "g.csv")


@pytest.mark.slow
def test_two_label_csv_dataset_extracts_trains_and_runs_vadd(tmp_path, capsys):
    from avscene.demo.synthetic import make_demo_dataset

    data = make_demo_dataset(tmp_path / "data", clips_per_scene=3, seconds=2, seed=4, width=64, height=48)
    manifest = _two_label_csv(data)
    (data / "groups.csv").write_text("label,everything\ncalm,scene\nbusy,scene\n")
    store = str(tmp_path / "two.zarr")
    assert extract_main(["run", "--data", str(manifest), "--store", store, "--extractors", "debug_visual,debug_audio",
                         "--device", "cpu", "--no-progress", "--groups", str(data / "groups.csv")]) == 0
    taxonomy = EmbeddingStore.open(store).taxonomy
    assert taxonomy.names == ("2", "everything") and taxonomy.classes == ("busy", "calm")

    runs = tmp_path / "runs"
    assert classify_main(["train", "--store", store, "--head", "ls", "--epochs", "2", "--out", str(runs / "ls")]) == 0
    metrics = json.loads((runs / "ls" / "metrics.json").read_text())
    assert metrics["classes"] == ["busy", "calm"] and metrics["n_clips"] == 10
    assert metrics["grouped"]["everything"]["clip_accuracy"] == 1.0  # one group: every clip is right
    assert json.loads((runs / "ls" / "config.json").read_text())["class_set"] == "2"
    capsys.readouterr()
    assert classify_main(["train", "--store", store, "--classes", "3", "--out", str(runs / "bad")]) == 2
    assert capsys.readouterr().err.startswith("error: --classes '3' is not defined by this dataset's taxonomy; it "
                                              "defines '2', 'everything'")

    assert classify_main(["ablation", "--store", store, "--epochs", "1", "--out", str(runs / "ablation")]) == 0
    table = (runs / "ablation" / "ablation.md").read_text()
    assert "audio-visual-es_ms_ls-2cls" in table and "visual-ls-everythingcls" in table
    assert "everythingcls_acc_from_2cls_head" in table

    vadd_out = runs / "vadd"
    assert vadd_main(["eval", "--store", store, "--epochs", "3", "--validation-fraction", "0.4",
                      "--out", str(vadd_out)]) == 0
    vadd = json.loads((vadd_out / "metrics.json").read_text())
    assert vadd["class_set"] == "2" and vadd["n_items"] == 2 * vadd["n_manipulated"] >= 4
    assert json.loads((vadd_out / "heads.json").read_text())["classes"] == ["busy", "calm"]
    assert "| VADD F1, paper rule (manipulated = positive) | — |" in (vadd_out / "metrics.md").read_text()

    clip = next(r for r in csv.DictReader(open(manifest, newline="")) if r["split"] == "test")
    check_out = tmp_path / "check"
    assert vadd_main(["check", str(data / clip["video"]), "--audio", str(data / clip["audio"]), "--heads", str(vadd_out),
                      "--device", "cpu", "--out", str(check_out)]) == 0
    check = json.loads((check_out / "check.json").read_text())
    assert check["classes"] == ["busy", "calm"] and check["n_seconds"] == 2
    assert check["heads"]["synthetic_dataset"] is True  # the demo generator's card, read from the CSV's folder
    assert check["visual"]["class"] in ("busy", "calm") and check["audio_scene"]["class"] in ("busy", "calm")


def test_store_without_a_recorded_taxonomy_reads_the_tau_default(tiny_store, tmp_path):
    import shutil

    import zarr

    copy = tmp_path / "old.zarr"
    shutil.copytree(tiny_store, copy)
    root = zarr.open_group(str(copy), mode="r+")
    attrs = dict(root.attrs)
    del attrs["taxonomy"]
    root.attrs.clear()
    root.attrs.update(attrs)
    store = EmbeddingStore.open(str(copy))
    assert "taxonomy" not in store.attrs and store.taxonomy == tau_taxonomy()
    assert load_clips(store, ["debug_audio"], "train", 3).classes == IOV_CLASSES


def test_a_csv_location_column_keeps_validation_locations_apart(tmp_path):
    from vadd.protocol import validation_rows

    rows = [(f"c{i}.wav", "calm" if i < 8 else "busy", f"site{i // 2}" if i != 15 else "") for i in range(16)]
    for name, _, _ in rows:
        (tmp_path / name).touch()
    (tmp_path / "m.csv").write_text("video,audio,label,split,location\n"
                                    + "".join(f",{n},{label},train,{loc}\n" for n, label, loc in rows))
    taxonomy = read_manifest(tmp_path / "m.csv", require=()).taxonomy
    assert taxonomy.location_rule == "manifest" and taxonomy.location("c3") == "site1"
    assert taxonomy.location("c15") == "c15"  # an empty cell: the clip is its own location
    assert Taxonomy.from_dict(taxonomy.to_dict()) == taxonomy
    ids, labels = [n[:-4] for n, _, _ in rows], [label for _, label, _ in rows]
    held = validation_rows(ids, labels, 0.25, seed=1, location_of=taxonomy.location)
    held_sites = {taxonomy.location(ids[i]) for i in np.flatnonzero(held)}
    kept_sites = {taxonomy.location(ids[i]) for i in np.flatnonzero(~held)}
    assert held_sites and not held_sites & kept_sites  # whole sites on one side
    tau = read_csv_manifest(tmp_path / "m.csv", classes=("calm", "busy"), require=()).taxonomy
    assert tau.location_rule == "manifest"  # the column wins over any rule
    (tmp_path / "g.csv").write_text("label,all\ncalm,x\nbusy,x\n")
    grouped = read_manifest(tmp_path / "m.csv", require=(), groups=tmp_path / "g.csv").taxonomy
    assert grouped.names == ("2", "all") and grouped.location("c3") == "site1"  # a grouping file keeps the locations
