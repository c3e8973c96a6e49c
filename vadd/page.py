"""``report.html``: one self-contained page for the videos ``vadd check`` looked at (single or ``--batch``).

Every script, style and image is inline (no network at view time). The page lists one row per video (verdict,
probability, segments, classes, coverage, error), sorts and filters them, and opens each video's view: the
per-second scene probabilities of both heads, the mismatch score with the threshold and the segments shaded,
and thumbnails of the frames at the flagged seconds, decoded by :func:`extract.decode_plan.thumbnail_frames`.
The check JSON is read defensively: fields written by newer checks (``probability``, ``segments``, coverage)
are shown when present.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import time
from importlib import resources
from pathlib import Path

from avscene.errors import AvsceneError

logger = logging.getLogger(__name__)

TEMPLATE = "report_page.html"
DATA_MARK = "/*REPORT_DATA*/null"
THUMBNAILS_PER_VIDEO = 6
THUMBNAIL_PX = 96
PAGE_DECIMALS = 3  # per-second values on the page: enough for a plot, a third of the bytes of check.json's


def first_second(check: dict) -> int:
    """The file's second that the check's first per-second value stands for (its coverage may start later than 0)."""
    return int((check.get("coverage") or {}).get("first_second") or 0)


def flagged_seconds(check: dict, limit: int = THUMBNAILS_PER_VIDEO) -> list[int]:
    """The judged seconds worth a thumbnail (indices into the per-second values), ascending: those inside the
    check's segments when it has any, else those whose mismatch reaches the threshold; at most ``limit``, the
    highest mismatch first."""
    mismatch = (check.get("mismatch") or {}).get("per_second") or []
    segments = check.get("segments") or []
    if segments:
        chosen = {k for s in segments for k in range(int(s["start_s"]), int(-(-s["end_s"] // 1))) if k < len(mismatch)}
    else:
        chosen = {k for k, m in enumerate(mismatch) if m >= check.get("threshold", float("inf"))}
    return sorted(sorted(chosen, key=lambda k: -mismatch[k])[:limit])


def _jpeg_data_uri(frame) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnails(video: Path, seconds: list[int]) -> list[dict]:
    """``[{second, src}]``: JPEG data URIs of the frames of the file's ``seconds`` (decoded through the decode path)."""
    from extract.decode_plan import thumbnail_frames

    if not seconds:
        return []
    frames = thumbnail_frames(video, seconds, THUMBNAIL_PX)
    return [{"second": k, "src": _jpeg_data_uri(f)} for k, f in zip(seconds, frames)]


def _rounded(value):
    if isinstance(value, float):
        return round(value, PAGE_DECIMALS)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def page_entry(video: str, audio: str, check: dict | None, error: str = "", with_thumbnails: bool = True,
               media: Path | None = None) -> dict:
    """One video's record on the page: its check (per-second values rounded, the heads left to the banner) or its
    error, and thumbnails of its flagged seconds decoded from ``media`` (default: the check's video); a video that
    cannot be decoded again gets ``thumbnail_error``."""
    entry: dict = {"name": Path(video).name, "video": str(video), "audio": str(audio), "error": error, "check": None,
                   "thumbnails": []}
    if check is None:
        return entry
    entry["check"] = {k: {kk: _rounded(vv) for kk, vv in v.items()} if isinstance(v, dict) else v
                      for k, v in check.items() if k != "heads"}
    if with_thumbnails:
        try:
            entry["thumbnails"] = thumbnails(Path(media or check.get("video", video)),
                                             [first_second(check) + k for k in flagged_seconds(check)])
        except (AvsceneError, OSError) as err:
            entry["thumbnail_error"] = str(err)
            logger.warning("thumbnails of %s: %s", video, err)
    return entry


def render_report(entries: list[dict], heads: dict, title: str = "vadd check report") -> str:
    """The page's HTML with ``entries`` (from :func:`page_entry`) and the heads' provenance inline."""
    template = resources.files("vadd").joinpath(TEMPLATE).read_text(encoding="utf-8")
    classes = next((e["check"].get("classes") for e in entries if e["check"]), None)
    data = {"title": title, "generated_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "heads": heads,
            "classes": classes, "videos": entries}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")  # never closes the script element
    return template.replace("<title></title>", f"<title>{html.escape(title, quote=False)}</title>").replace(DATA_MARK, payload)


def report_data(html: str) -> dict:
    """The data a page written by :func:`render_report` embeds (title, heads, classes, videos)."""
    import re

    found = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S)
    if found is None:
        raise ValueError("not a report page written by vadd check --report (no report-data script)")
    return json.loads(found[1])


def write_batch_report(path: Path, rows: list[dict], heads: dict, title: str = "vadd check report") -> Path:
    """The page of :func:`vadd.check.check_batch`'s rows (each with ``video``, ``audio``, ``check``, ``error``)."""
    return write_report(path, [page_entry(r["video"], r["audio"], r["check"], r["error"]) for r in rows], heads, title)


def write_report(path: Path, entries: list[dict], heads: dict, title: str = "vadd check report") -> Path:
    """Write :func:`render_report` to ``path`` (folders created); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(entries, heads, title), encoding="utf-8")
    return path
