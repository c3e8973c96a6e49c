"""report.html of `vadd check --report`: self-contained, one row per video, and usable in a real browser (Debian's
Chromium driven by playwright): no console error, filters, sorting, a row's timeline, a screenshot that is not blank."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

from tests.browser import chromium_context, why_no_browser
from tests.checked_media import demo_pairs, muxed_clip
from vadd.cli import main
from vadd.page import first_second, flagged_seconds, page_entry, report_data, write_report

N_BIG = 500


@pytest.fixture(scope="module")
def batch_report(debug_heads, tmp_path_factory) -> Path:
    """`vadd check --batch --report` of three muxed clips and a broken file."""
    folder = tmp_path_factory.mktemp("batch")
    pairs = demo_pairs(debug_heads.parent / "data")
    muxed_clip(folder / "videos" / "same.mp4", *pairs[0], seconds=4)
    muxed_clip(folder / "videos" / "swapped.mp4", pairs[3][0], pairs[60][1], seconds=3)
    muxed_clip(folder / "videos" / "other.mkv", *pairs[30])
    (folder / "videos" / "broken.mp4").write_text("not a video\n")
    assert main(["check", "--batch", str(folder / "videos"), "--heads", str(debug_heads), "--out",
                 str(folder / "out" / "batch.csv"), "--report", "--device", "cpu"]) == 0
    return folder / "out" / "report.html"


def synthetic_check(rng: np.random.Generator, classes: list[str], i: int) -> dict:
    """A check dict as `vadd check` writes it (probability, segments, deciding rule, coverage)."""
    seconds = int(rng.integers(3, 40))
    p_visual, p_audio = rng.dirichlet(np.ones(len(classes)) * 0.3, size=(2, seconds))
    mismatch = -np.log((p_visual * p_audio).sum(1))
    flagged = bool(mismatch.mean() >= 3.0)
    return {"video": f"/videos/v{i:03d}.mp4", "audio": f"/videos/v{i:03d}.mp4", "n_seconds": seconds, "classes": classes,
            "visual": {"class": classes[int(p_visual.mean(0).argmax())], "per_second": p_visual.round(5).tolist()},
            "audio_scene": {"class": classes[int(p_audio.mean(0).argmax())], "per_second": p_audio.round(5).tolist()},
            "mismatch": {"unit": "nats", "detection_score": float(mismatch.mean()), "per_second": mismatch.round(5).tolist()},
            "threshold": 3.0, "verdict": "manipulated" if flagged else "consistent",
            "probability_manipulated": float(rng.uniform(0.5, 1) if flagged else rng.uniform(0, 0.5)),
            "segments": [{"start_s": 1.0, "end_s": 3.0, "score": 3.5}] if flagged else [],
            "decided_by": {"rule": "segments", "segments": {"threshold": 3.0, "min_seconds": 2}},
            "coverage": {"duration_s": seconds + 0.4, "seconds_covered": seconds, "first_second": 0, "partial": False,
                         "missing": ""}}


@pytest.fixture(scope="module")
def big_report(tmp_path_factory) -> tuple[Path, list[dict]]:
    """500 videos (every 25th failed), written without thumbnails."""
    rng = np.random.default_rng(0)
    classes = [f"scene_{k}" for k in range(10)]
    entries = [page_entry(f"/videos/v{i:03d}.mp4", f"/videos/v{i:03d}.mp4", None, error=f"/videos/v{i:03d}.mp4: too short")
               if i % 25 == 0 else page_entry(f"/videos/v{i:03d}.mp4", f"/videos/v{i:03d}.mp4",
                                              synthetic_check(rng, classes, i), with_thumbnails=False)
               for i in range(N_BIG)]
    heads = {"run": "/runs/vadd-10cls", "dataset": "/data/tau", "synthetic_dataset": False, "class_set": "10",
             "extractors": {"visual": ["v"], "audio": ["a"]}, "test_split": None}
    return write_report(tmp_path_factory.mktemp("big") / "report.html", entries, heads), entries


def test_the_batch_page_is_self_contained_with_one_row_per_video(batch_report, debug_heads):
    html = batch_report.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "<link" not in html
    assert "<script src" not in html
    data = report_data(html)
    assert [v["name"] for v in data["videos"]] == ["broken.mp4", "other.mkv", "same.mp4", "swapped.mp4"]
    broken, *checked = data["videos"]
    assert broken["check"] is None and "broken.mp4: not a readable media file" in broken["error"]
    assert data["heads"]["run"] == str(debug_heads) and data["heads"]["synthetic_dataset"] is True
    for video in checked:
        assert [t["second"] for t in video["thumbnails"]] == [first_second(video["check"]) + k
                                                             for k in flagged_seconds(video["check"])]
        assert all(t["src"].startswith("data:image/jpeg;base64,") for t in video["thumbnails"])
    assert sum(len(v["thumbnails"]) for v in checked) > 0  # the debug heads flag some seconds


def test_flagged_seconds_follow_segments_else_the_threshold():
    check = {"threshold": 0.5, "mismatch": {"per_second": [0.1, 0.9, 0.6, 0.2, 0.7, 0.95, 0.99]}}
    assert flagged_seconds(check) == [1, 2, 4, 5, 6]
    assert flagged_seconds(check, limit=2) == [5, 6]  # the highest mismatch first
    assert flagged_seconds({**check, "segments": [{"start_s": 0.0, "end_s": 2.5, "score": 1}]}) == [0, 1, 2]


def test_a_single_check_writes_its_report(debug_heads, tmp_path, capsys):
    pairs = demo_pairs(debug_heads.parent / "data")
    clip = muxed_clip(tmp_path / "one.mp4", *pairs[7])
    assert main(["check", str(clip), "--heads", str(debug_heads), "--out", str(tmp_path / "out"), "--report",
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {tmp_path / 'out' / 'report.html'}"
    data = report_data((tmp_path / "out" / "report.html").read_text())
    assert [v["name"] for v in data["videos"]] == ["one.mp4"] and data["videos"][0]["check"]["n_seconds"] == 2


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = why_no_browser()
    if reason:
        pytest.skip(f"browser tests skipped: {reason}")
    try:
        with chromium_context(tmp_path_factory.mktemp("chromium-profile")) as context:
            yield context
    except Exception as err:  # playwright's launch error: the browser cannot be had here
        if "launch" not in str(err).lower() and "executable" not in str(err).lower():
            raise
        pytest.skip(f"browser tests skipped: Chromium does not start: {str(err).splitlines()[0]}")


def open_page(browser, path: Path):
    """The page at ``path``, with its console errors, page errors and every request it made recorded."""
    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_selector("#videos tbody tr")
    return page, problems, requests


def visible_rows(page) -> int:
    return page.eval_on_selector_all("#videos tbody tr", "rows => rows.filter(r => !r.hidden).length")


def test_pages_load_without_console_errors_or_network(browser, batch_report, big_report):
    for path in (batch_report, big_report[0]):
        page, problems, requests = open_page(browser, path)
        page.click("#videos tbody tr:nth-child(2)")
        assert problems == [] and [u for u in requests if not u.startswith(("file:", "data:"))] == []
        page.close()


def test_filters_change_the_visible_rows(browser, big_report):
    path, entries = big_report
    checks = [e["check"] for e in entries]
    page, problems, _ = open_page(browser, path)
    assert visible_rows(page) == N_BIG
    page.select_option("#f-failed", "only")
    assert visible_rows(page) == sum(c is None for c in checks) == N_BIG // 25
    page.select_option("#f-failed", "")
    page.select_option("#f-verdict", "manipulated")
    assert visible_rows(page) == sum(c is not None and c["verdict"] == "manipulated" for c in checks)
    page.select_option("#f-verdict", "")
    page.fill("#f-min", "0.9")
    assert visible_rows(page) == sum(c is not None and round(c["probability_manipulated"], 3) >= 0.9 for c in checks)
    page.fill("#f-min", "")
    page.select_option("#f-class", "scene_3")
    assert visible_rows(page) == sum(c is not None and "scene_3" in (c["visual"]["class"], c["audio_scene"]["class"])
                                     for c in checks)
    assert page.inner_text("#shown").startswith(f"{visible_rows(page)} of {N_BIG}")
    page.select_option("#f-class", "")
    page.click("th[data-key=mismatch]")
    page.click("th[data-key=mismatch]")  # descending, the failed (no score) last
    shown = page.eval_on_selector_all("#videos tbody tr td:nth-child(5)", "cells => cells.map(c => c.textContent)")
    scores = [float(x) for x in shown if x]
    assert scores == sorted(scores, reverse=True) and len(scores) == N_BIG - N_BIG // 25
    assert shown[len(scores):] == [""] * (N_BIG // 25)
    assert scores[0] == max(round(c["mismatch"]["detection_score"], 3) for c in checks if c)
    assert problems == []


def _drawn_pixels(page) -> int:
    return page.eval_on_selector("#timeline", """c => { const d = c.getContext('2d').getImageData(0, 0, c.width,
        c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 240 || d[i+1] < 240 || d[i+2] < 240)
        n++; return n; }""")


def test_a_row_opens_its_timeline_and_thumbnails(browser, batch_report, big_report):
    page, problems, _ = open_page(browser, batch_report)
    data = report_data(batch_report.read_text())
    index = next(i for i, v in enumerate(data["videos"]) if v["thumbnails"])
    assert page.is_hidden("#detail")
    page.click(f"#videos tbody tr:nth-child({index + 1})")
    assert page.is_visible("#detail") and data["videos"][index]["name"] in page.inner_text("#detail h2")
    assert _drawn_pixels(page) > 2000
    assert page.eval_on_selector_all(".thumbs img", "imgs => imgs.filter(i => i.complete && i.naturalWidth == 96).length") \
        == len(data["videos"][index]["thumbnails"])
    page.click("#videos tbody tr:nth-child(1)")  # the broken file: its error, no timeline
    assert "not a readable media file" in page.inner_text("#detail") and page.query_selector("#timeline") is None
    big, big_problems, _ = open_page(browser, big_report[0])
    big.click(f"#videos tbody tr:nth-child({N_BIG})")
    assert "v499.mp4" in big.inner_text("#detail h2") and _drawn_pixels(big) > 2000
    segments = "1-3 s" if big_report[1][-1]["check"]["segments"] else "none"
    assert f"segments\n{segments}" in big.inner_text("#detail dl")
    assert problems == [] and big_problems == []


def test_a_screenshot_is_not_blank(browser, batch_report, tmp_path):
    from PIL import Image

    page, problems, _ = open_page(browser, batch_report)
    page.click("#videos tbody tr:nth-child(3)")
    picture = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    pixels = np.asarray(picture)
    assert picture.width >= 1000 and pixels.std() > 10
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # text, banner, heat map, thumbnails
    assert "SYNTHETIC" in page.inner_text("#banner") and problems == []
