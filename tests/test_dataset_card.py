"""The dataset card: a folder says whether its media are synthetic, and the store and every report carry it."""
from __future__ import annotations

import shutil

import pytest
import zarr

from extract.cli import main as extract_main
from extract.dataset_card import CARD_FILE, DatasetCard
from avscene.errors import ManifestError
from extract.manifest import read_manifest
from extract.store import EmbeddingStore
from extract.store.writer import StoreWriter


def test_the_demo_generator_card_travels_into_the_store_and_info(tiny_dataset, tiny_store, capsys):
    assert read_manifest(tiny_dataset, require=()).card.synthetic
    card = EmbeddingStore.open(tiny_store).dataset_card
    assert card.synthetic and card.description.startswith("SYNTHETIC TAU-layout dataset")
    assert extract_main(["info", "--store", tiny_store]) == 0
    assert f"  dataset {tiny_dataset} (SYNTHETIC: SYNTHETIC TAU-layout" in capsys.readouterr().out


def test_a_csv_manifest_reads_the_card_of_its_folder(tmp_path):
    (tmp_path / "a.wav").touch()
    (tmp_path / "m.csv").write_text("video,audio,label,split\n,a.wav,bus,train\n")
    assert read_manifest(tmp_path / "m.csv", require=()).card == DatasetCard()  # no card: not marked synthetic
    DatasetCard(synthetic=True, description="tones").write(tmp_path)
    assert read_manifest(tmp_path / "m.csv", require=()).card == DatasetCard(True, "tones")


@pytest.mark.parametrize("text", ['{"synthetic": "yes"}', "[true]", "not json"])
def test_a_malformed_card_is_refused_naming_the_file(tmp_path, text):
    (tmp_path / CARD_FILE).write_text(text)
    with pytest.raises(ManifestError, match=f"{tmp_path / CARD_FILE}: "):
        DatasetCard.read(tmp_path)


def test_an_older_store_without_a_card_reads_the_default_and_records_a_new_one(tiny_store, tmp_path):
    copy = tmp_path / "old.zarr"
    shutil.copytree(tiny_store, copy)
    root = zarr.open_group(str(copy), mode="r+")
    attrs = {k: v for k, v in root.attrs.items() if k != "dataset_card"}
    root.attrs.clear()
    root.attrs.update(attrs)
    store = StoreWriter.open(str(copy))
    assert store.dataset_card == DatasetCard()
    store.record_card(DatasetCard(True, "later"))
    assert EmbeddingStore.open(str(copy)).dataset_card == DatasetCard(True, "later")
