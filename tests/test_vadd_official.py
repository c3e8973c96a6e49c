"""The official VADD lists: the real files load as documented, malformed or unsafe lines are refused."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from extract.taxonomy import tau_taxonomy
from tests.conftest import require_shared
from vadd.official import RELEASE_FOLDER, list_path, official_protocol, read_list

TAU = tau_taxonomy()


@pytest.mark.parametrize("n_classes, n_pairs, n_pristine", [(10, 910, 1825), (3, 908, 1829)])
def test_official_lists_load_with_every_swap_across_labels(n_classes, n_pairs, n_pristine):
    lists = require_shared("vadd")
    items = official_protocol(lists, TAU.class_set(n_classes))
    manipulated = [i for i in items if i.manipulated]
    assert len(manipulated) == 2 * n_pairs and len(items) - len(manipulated) == n_pristine
    assert all(i.video_label != i.audio_label for i in manipulated)
    pairs = {(i.video_clip, i.audio_clip) for i in manipulated}
    assert all((b, a) in pairs for a, b in pairs)
    # the implicit swap: manipulated rows 2k and 2k+1 exchange their audio
    rows = read_list(list_path(lists, str(n_classes), "manipulated"), TAU.class_set(n_classes))
    assert (manipulated[0].video_clip, manipulated[0].audio_clip) == (rows[0].clip_id, rows[1].clip_id)


def test_official_lists_cover_fold1_evaluate():
    lists = require_shared("vadd")
    evaluate = require_shared("tau", "meta", "evaluation_setup", "fold1_evaluate.csv")
    with open(evaluate, newline="", encoding="utf-8-sig") as f:
        stems = {Path(r["filename_video"]).stem for r in csv.DictReader(f, delimiter="\t")}
    for n_classes in (10, 3):
        assert {i.video_clip for i in official_protocol(lists, TAU.class_set(n_classes))} == stems


def write_lists(folder: Path, pristine: list[str], manipulated: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vadd_10_pristine.txt").write_text("\n".join(pristine) + "\n")
    (folder / "vadd_10_manipulated.txt").write_text("\n".join(manipulated) + "\n")
    return folder


GOOD_PRISTINE = ["['park-lyon-1-1.mp4', 'park']"]
GOOD_MANIPULATED = ["['bus-lyon-2-2.mp4', 'bus']", "['airport-lyon-3-3.mp4', 'airport']"]


def test_small_lists_make_explicit_swaps(tmp_path):
    items = official_protocol(write_lists(tmp_path, GOOD_PRISTINE, GOOD_MANIPULATED), TAU.class_set("10"))
    assert [(i.video_clip, i.audio_clip, i.manipulated) for i in items] == [
        ("park-lyon-1-1", "park-lyon-1-1", False),
        ("bus-lyon-2-2", "airport-lyon-3-3", True),
        ("airport-lyon-3-3", "bus-lyon-2-2", True),
    ]


@pytest.mark.parametrize("bad_line, message", [
    ("__import__('os').system('true')", "not a Python literal"),
    ("['bus-lyon-2-9.mp4']", r"expected \['<video file>', '<label>'\]"),
    ("('bus-lyon-2-9.mp4', 'bus')", "expected"),
    ("['bus-lyon-2-9.mp4', 'beach']", "unknown label 'beach' for --classes 10"),
    ("['../secret/bus-lyon-2-9.mp4', 'bus']", "refusing path"),
    ("['/abs/bus-lyon-2-9.mp4', 'bus']", "refusing path"),
    ("['C:\\\\data\\\\bus-lyon-2-9.mp4', 'bus']", "refusing path"),
])
def test_malformed_or_unsafe_lines_are_rejected_with_their_number(tmp_path, bad_line, message):
    folder = write_lists(tmp_path, GOOD_PRISTINE + ["", bad_line], GOOD_MANIPULATED)
    with pytest.raises(ValueError, match=rf"vadd_10_pristine.txt:3: .*{message}"):
        official_protocol(folder, TAU.class_set("10"))


def test_a_swap_pair_with_equal_labels_or_an_odd_count_fails(tmp_path):
    same = write_lists(tmp_path / "same", GOOD_PRISTINE, ["['bus-lyon-2-2.mp4', 'bus']", "['bus-oslo-4-4.mp4', 'bus']"])
    with pytest.raises(ValueError, match=r"manipulated.txt:1-2: .*same label"):
        official_protocol(same, TAU.class_set("10"))
    odd = write_lists(tmp_path / "odd", GOOD_PRISTINE, GOOD_MANIPULATED[:1])
    with pytest.raises(ValueError, match="must be even"):
        official_protocol(odd, TAU.class_set("10"))
    with pytest.raises(FileNotFoundError, match="vadd_3_pristine.txt"):
        official_protocol(odd, TAU.class_set("3"))


def test_a_checkout_of_the_release_is_read_unchanged(tmp_path):
    """The release's 'VADD dataset/' names the pristine list vadd_<C>_swaps.txt (and also ships a same-bytes
    vadd_<C>_pristine.txt); a checkout root, that folder, and our names all give the same protocol."""
    ours = official_protocol(write_lists(tmp_path / "ours", GOOD_PRISTINE, GOOD_MANIPULATED), TAU.class_set("10"))
    release = tmp_path / "checkout" / RELEASE_FOLDER
    release.mkdir(parents=True)
    (release / "vadd_10_swaps.txt").write_text("\n".join(GOOD_PRISTINE) + "\n")
    (release / "vadd_10_manipulated.txt").write_text("\n".join(GOOD_MANIPULATED) + "\n")
    assert list_path(tmp_path / "checkout", "10", "pristine") == release / "vadd_10_swaps.txt"
    assert official_protocol(tmp_path / "checkout", TAU.class_set("10")) == ours
    assert official_protocol(release, TAU.class_set("10")) == ours
    (release / "vadd_10_pristine.txt").write_text("\n".join(GOOD_PRISTINE) + "\n")  # as the release ships it
    assert official_protocol(tmp_path / "checkout", TAU.class_set("10")) == ours
    (release / "vadd_10_pristine.txt").write_text("['tram-lyon-9-9.mp4', 'tram']\n")
    with pytest.raises(ValueError, match="both name the pristine 10-class list but differ"):
        official_protocol(tmp_path / "checkout", TAU.class_set("10"))
    with pytest.raises(FileNotFoundError, match="vadd_<C>_swaps.txt"):
        official_protocol(tmp_path / "checkout", TAU.class_set("3"))


@pytest.mark.parametrize("n_classes", [10, 3])
def test_the_real_lists_under_the_release_names(tmp_path, n_classes):
    lists = require_shared("vadd")
    release = tmp_path / RELEASE_FOLDER
    release.mkdir()
    (release / f"vadd_{n_classes}_swaps.txt").write_bytes((lists / f"vadd_{n_classes}_pristine.txt").read_bytes())
    (release / f"vadd_{n_classes}_manipulated.txt").write_bytes((lists / f"vadd_{n_classes}_manipulated.txt").read_bytes())
    assert official_protocol(tmp_path, TAU.class_set(n_classes)) == official_protocol(lists, TAU.class_set(n_classes))
