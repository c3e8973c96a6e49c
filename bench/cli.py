"""``python -m bench`` (``make bench``): run the benchmark rows, write ``results.json`` and ``results.md``."""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from bench.common import ROW_KEYS, machine_description
from avscene.entry import run_cli

logger = logging.getLogger(__name__)

TOPICS = ("decode", "skip", "forward", "heads", "store", "vadd", "e2e", "serve")
LEGACY_ROW_PREFIXES = {"decode": "decode", "forward": "forward", "heads": "heads", "store": "store", "VADD": "vadd",
                       "end to end": "e2e"}  # rows of results.json files written before rows carried their topic


def row_topic(row: dict) -> str | None:
    """The topic a stored row came from (its ``topic``, else guessed from its text for older files)."""
    if "topic" in row:
        return row["topic"]
    return next((t for prefix, t in LEGACY_ROW_PREFIXES.items() if row["row"].startswith(prefix)), None)


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def run_topic(topic: str, options: dict[str, Any]) -> list[dict]:
    """Import ``bench.<topic>`` and call its ``run`` with the options its signature takes; check the rows."""
    module = importlib.import_module(f"bench.{topic}")
    accepted = inspect.signature(module.run).parameters
    rows = module.run(**{k: v for k, v in options.items() if k in accepted})
    for row in rows:
        if set(row) != set(ROW_KEYS):
            raise ValueError(f"bench/{topic}.py returned a row with keys {sorted(row)}, expected {list(ROW_KEYS)}")
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "met" if value else "**not met**"
    if isinstance(value, float):
        return f"{value:.2f}x"
    return str(value).replace("|", "\\|")


def markdown(results: dict[str, Any]) -> str:
    """The table docs/benchmarks.md shows, headed by the machine's description."""
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores usable (torch threads {m['torch_threads']}, load average "
        f"{m['load_average_1min']} at start), device `{m['device']}`{', ' + m['gpu'] if m.get('gpu') else ''}; "
        f"torch {m['torch']}, zarr {m['zarr']}, PyAV {m['pyav']}, OpenCV {m['opencv']}, Python {m['python']}. "
        f"{'QUICK (smoke) run' if results['quick'] else 'Full run'} of {results['seconds_total']:.0f} s, "
        f"{results['finished_utc']}.",
        "",
        "| row | avscene | paper's way | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        lines.append(f"| {_cell(row['row'])} | {_cell(row['ours'])} | {_cell(row['theirs'])} | {ratio} | "
                     f"{_cell(row['target'])} | {_cell(row['met'])} |")
    for topic, error in results["errors"].items():
        lines.append(f"| {topic}: **error** | - | - | - | - | {_cell(error)} |")
    lines.append("")
    if "kept_from_earlier_run" in results:
        kept = results["kept_from_earlier_run"]
        lines.append("Kept from earlier runs (this run had --only): " + "; ".join(
            f"{topic} ({run['finished_utc']}, {'quick' if run['quick'] else 'full'} run, load average "
            f"{run['load_average_1min']})" for topic, run in kept.items()) + ".")
        lines.append("")
    loads = results.get("load_average_by_topic", {})
    if loads:
        lines.append("1-min load average at the start and end of each topic (2 cores: above ~2, other processes shared "
                     "them and the timings are disturbed): " + "; ".join(
                         f"{t} {v['start']} -> {v['end']} ({v['utc']})" for t, v in loads.items()) + ".")
        lines.append("")
    lines.append("Ratios are avscene's advantage (paper's time / ours, or ours / paper's throughput) except the "
                 "store size row (ours / paper's bytes). Details of every row are in `bench/results.json`.")
    lines += ["", "Which code each \"paper's way\" reproduces:"]
    stated: dict[str, list[str]] = {}
    for row in results["rows"]:
        if row["theirs"] not in (None, "-"):
            stated.setdefault(row.get("baseline") or "(not stated)", []).append(row["row"].split(":")[0])
    lines += [f"- {', '.join(dict.fromkeys(rows))}: {baseline}" for baseline, rows in stated.items()]
    return "\n".join(lines) + "\n"


def _kept_results(path: Path, topics: set[str]) -> dict[str, Any]:
    """Rows (and per-topic records) of an earlier results.json for the topics not run now, with the run each came from."""
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    rows = [{**r, "topic": row_topic(r)} for r in earlier["rows"] if row_topic(r) not in topics and row_topic(r) in TOPICS]
    kept_topics = {r["topic"] for r in rows}
    this_run = {"finished_utc": earlier.get("finished_utc"), "quick": earlier.get("quick"),
                "load_average_1min": earlier.get("machine", {}).get("load_average_1min")}
    provenance = {t: earlier.get("kept_from_earlier_run", {}).get(t, this_run) for t in sorted(kept_topics)}
    return {"rows": rows, "from": provenance,
            **{key: {t: v for t, v in earlier.get(key, {}).items() if t in kept_topics}
               for key in ("seconds_by_topic", "load_average_by_topic")}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer clips, images and repeats")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="torch device of the model rows")
    parser.add_argument("--models", default="resnet50.places365,mobilenet_v2.imagenet",
                        help="comma list of visual extractors for the forward row")
    parser.add_argument("--only", default=",".join(TOPICS), help=f"comma list of topics among {', '.join(TOPICS)}; "
                        "a partial run replaces those topics' rows in an existing results.json and keeps the others")
    parser.add_argument("--out", default="bench", help="folder for results.json and results.md")
    parser.add_argument("--work-dir", default="cache/bench", help="generated media kept between runs")
    parser.set_defaults(func=run_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen topics and write results.json and results.md; 1 when a topic failed."""
    topics = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = sorted(set(topics) - set(TOPICS))
    if unknown:
        raise ValueError(f"--only: unknown topics {unknown}; choose among {', '.join(TOPICS)}")
    options = {"quick": args.quick, "device": args.device, "work_dir": Path(args.work_dir),
               "models": tuple(m.strip() for m in args.models.split(",") if m.strip())}
    started = time.perf_counter()
    results: dict[str, Any] = {"machine": machine_description(args.device), "quick": args.quick, "rows": [],
                               "errors": {}, "seconds_by_topic": {}, "load_average_by_topic": {}}
    out = Path(args.out)
    kept = _kept_results(out / "results.json", set(topics)) if set(topics) != set(TOPICS) else {}
    for topic in topics:
        topic_started = time.perf_counter()
        load_start = load_average()
        logger.info("bench %s ...", topic)
        try:
            results["rows"] += [{**row, "topic": topic} for row in run_topic(topic, options)]
        except Exception as err:  # one broken row must not hide the others; it is reported and fails the run
            logger.exception("bench %s failed", topic)
            results["errors"][topic] = f"{type(err).__name__}: {err}"
        results["seconds_by_topic"][topic] = round(time.perf_counter() - topic_started, 1)
        results["load_average_by_topic"][topic] = {"start": load_start, "end": load_average(),
                                                   "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    results["seconds_total"] = time.perf_counter() - started
    results["finished_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if kept:
        results["rows"] = sorted(kept["rows"] + results["rows"], key=lambda r: TOPICS.index(row_topic(r)))
        for key in ("seconds_by_topic", "load_average_by_topic"):
            results[key] = {**kept.get(key, {}), **results[key]}
        results["kept_from_earlier_run"] = kept["from"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown(results))
    logger.info("wrote %s and %s", out / "results.json", out / "results.md")
    print((out / "results.md").read_text())
    return 1 if results["errors"] else 0
