"""``python -m vadd``: audio-visual discrepancy detection on the embedding cache."""
from __future__ import annotations

import argparse
from pathlib import Path

from classify.kinds import FIRST_PAPER_VIEW_KINDS, HEAD_KINDS, PRESET_CHOICES
from avscene.entry import command_parser, run_cli
from avscene.paths import cache_dir, default_store, runs_dir


def _cmd_eval(args: argparse.Namespace) -> int:
    from classify.heads import HeadConfig
    from classify.train import preset
    from extract.store import EmbeddingStore
    from vadd.check import register_heads
    from vadd.correspondence import CorrespondenceConfig
    from vadd.evaluate import VaddConfig, evaluate_vadd

    classes = EmbeddingStore.open(args.store).taxonomy.class_set(args.classes).name  # checked against the store
    out = Path(args.out) if args.out else runs_dir() / f"vadd-{classes}cls"
    config = VaddConfig(
        classes=classes, protocol=args.protocol, lists_dir=args.lists,
        extractors=tuple(n for n in args.extractors.split(",") if n),
        head=HeadConfig(kind=args.head, projection_dim=args.projection_dim),
        train=preset(args.preset, seed=args.seed, augmented_views=not args.no_augmented_views,
                     view_kinds=FIRST_PAPER_VIEW_KINDS, **({"epochs": args.epochs} if args.epochs is not None else {})),
        validation_fraction=args.validation_fraction, seed=args.seed, strict=args.strict,
        correspondence=CorrespondenceConfig(seed=args.seed, **({"epochs": args.correspondence_epochs}
                                                              if args.correspondence_epochs is not None else {})),
    )
    metrics = evaluate_vadd(args.store, config, out, allow_incomplete=args.allow_incomplete)
    register_heads(out)  # `vadd check`'s default heads from now on
    rule, score = metrics["paper_rule"], metrics["mismatch_score"]
    print(f"VADD {metrics['n_classes']}-class (--classes {classes}), {args.protocol} protocol ({metrics['protocol_items']}, "
          f"{len(metrics['excluded_clips'])} clips excluded): paper rule F1 {rule['f1']:.4f} "
          f"precision {rule['precision']:.4f} recall {rule['recall']:.4f} accuracy {rule['accuracy']:.4f}")
    print(f"mismatch score: ROC AUC {score['roc_auc']:.4f}  AP {score['average_precision']:.4f}; verdict rule (segments): "
          f"F1 {score['f1']:.4f} precision {score['precision']:.4f} recall {score['recall']:.4f} at validation "
          f"threshold {score['threshold']:.4g} nats")
    for protocol, row in metrics["protocol_table"]["protocols"].items():
        if "scores" in row:
            print(f"{protocol} protocol ({row['n_items']} items): item F1 / AUC " + ", ".join(
                f"{name} {s['f1']:.3f}/{'—' if s['roc_auc'] is None else format(s['roc_auc'], '.3f')}"
                for name, s in row["scores"].items()))
    print(f"table: {out / 'metrics.md'}")
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import json

    from vadd.check import (
        Checker, batch_inputs, check_batch, coverage_warning, default_heads_dir, output_key, provenance_line, verdict_line,
        write_timeline_png,
    )

    if bool(args.video) == bool(args.batch):
        raise ValueError("give either VIDEO or --batch FOLDER_OR_CSV")
    heads = Path(args.heads) if args.heads else default_heads_dir()
    checker = Checker.from_run(heads, device=args.device, chunk_seconds=args.chunk_seconds)
    print(provenance_line(checker.provenance))
    if args.batch:
        out = Path(args.out) if args.out else cache_dir() / "check" / "batch.csv"
        rows = check_batch(checker, batch_inputs(Path(args.batch)), out)
        skipped = [r for r in rows if r["error"].startswith("skipped: ")]
        failed = sum(1 for r in rows if r["error"]) - len(skipped)
        partial = sum(1 for r in rows if r.get("coverage_missing"))
        for row in skipped:
            print(f"skipped {row['error'].removeprefix('skipped: ')}")
        print(f"{len(rows) - len(skipped)} videos, {len(skipped)} files skipped (not a video the decoder opens), "
              f"{failed} failed, {partial} judged in part, "
              f"{sum(r.get('verdict') == 'manipulated' for r in rows)} flagged manipulated")
        print(f"csv: {out}")
        if args.report:
            _write_report(out.parent / "report.html", rows, checker.provenance)
        return 0
    result = checker.check(Path(args.video), Path(args.audio) if args.audio else None)
    out = Path(args.out) if args.out else cache_dir() / "check" / output_key(Path(args.video))
    out.mkdir(parents=True, exist_ok=True)
    summary = result.to_dict()
    (out / "check.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_timeline_png(out / "timeline.png", result)
    print(verdict_line(summary))
    if warning := coverage_warning(summary):
        print(warning)
    print(f"timeline: {out / 'timeline.png'}")
    print(f"json: {out / 'check.json'}")
    if args.report:
        _write_report(out / "report.html", [{"video": str(args.video), "audio": summary["audio"], "check": summary,
                                             "error": ""}], checker.provenance)
    return 0


def _write_report(path: Path, rows: list[dict], heads: dict) -> None:
    from vadd.page import write_batch_report

    print(f"report: {write_batch_report(path, rows, heads)}")


def build_parser() -> argparse.ArgumentParser:
    parser, sub = command_parser("python -m vadd", __doc__)
    ev = sub.add_parser("eval", help="VADD evaluation on a store (heads trained on its train split)")
    ev.add_argument("--store", default=default_store(), help="default: %(default)s")
    ev.add_argument("--classes", default="", help="a class set of the store's taxonomy: its own classes (default; "
                    "named by their count, e.g. 10) or a grouping (TAU: 3 = indoor/outdoor/vehicle)")
    ev.add_argument("--protocol", default="generated",
                    help="'generated' (seeded whole-clip swaps on the store's test split), 'official' (the VADD lists), "
                    "'partial' (seeded: pristine, swapped, 2-8 s spliced and long spliced items), 'same-class' (seeded "
                    "swaps between clips of one class from different locations), or a protocol CSV (either format a "
                    "run's protocol.csv has); every run also writes the protocol x score table to metrics.md")
    ev.add_argument("--lists", default="", help="a checkout of the release (IDT-ITI/Visual-Audio-Discrepancy-Detection), "
                    "its 'VADD dataset' folder, or a folder of vadd_<C>_{pristine|swaps,manipulated}.txt "
                    "(default $AVSCENE_SHARED/vadd)")
    ev.add_argument("--validation-fraction", type=float, default=0.2,
                    help="part of the train split held out (by recording location) to choose the score threshold")
    ev.add_argument("--strict", action="store_true", help="stop when a fixed protocol names a clip without embeddings "
                    "(default: drop those items, list them, and report N of M items)")
    ev.add_argument("--extractors", default="", help="comma list (default: every extractor in the store)")
    ev.add_argument("--head", default="ls", choices=HEAD_KINDS, help="kind of the VSC, ASC and VASC heads (the paper: ls)")
    ev.add_argument("--preset", default="adam", choices=PRESET_CHOICES, help="their training preset")
    ev.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    ev.add_argument("--no-augmented-views", action="store_true",
                    help="train the heads on the original frames only (default: also on the store's paper_aug views, "
                    "as the released code's VSC/ASC)")
    ev.add_argument("--correspondence-epochs", type=int, default=None,
                    help="epochs of the contrastive correspondence head of the protocol table (default 30)")
    ev.add_argument("--projection-dim", type=int, default=None, help="project each embedding to this width first")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", default="", help=f"run folder (default {runs_dir()}/vadd-<classes>cls)")
    ev.add_argument("--allow-incomplete", action="store_true", help="evaluate although the store's extraction is not "
                    "complete (the clips done so far; class coverage printed and recorded in metrics.json)")
    ev.set_defaults(func=_cmd_eval)
    check = sub.add_parser("check", help="does a video's picture match its sound? (JSON + PNG timeline)")
    check.add_argument("video", nargs="?", default="", help="a video file (mp4, mov, mkv, webm, avi, ...)")
    check.add_argument("--audio", default="", help="check the video against this audio file instead of its soundtrack")
    check.add_argument("--batch", default="", help="a folder of videos (every file the decoder opens, whatever its "
                       "extension; the others are listed as skipped), or a CSV with columns video[,audio]")
    check.add_argument("--heads", default="", help="a `vadd eval` run folder (default: the one the last "
                       f"`vadd eval` or `make demo` registered in {runs_dir()}/vadd-heads.json)")
    check.add_argument("--out", default="", help=f"output folder (default {cache_dir() / 'check'}/<video file name>-<path "
                       f"hash>) or batch CSV (default {cache_dir() / 'check' / 'batch.csv'})")
    check.add_argument("--chunk-seconds", type=int, default=30, help="seconds decoded and embedded at a time")
    check.add_argument("--report", action="store_true", help="also write report.html (in the output folder, or beside "
                       "the batch CSV): one self-contained page to sort, filter and inspect the videos")
    check.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
