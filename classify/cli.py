"""``python -m classify``: train and evaluate heads on the embedding cache (never touches media or models)."""
from __future__ import annotations

import argparse
from pathlib import Path

from classify.kinds import HEAD_KINDS, PRESET_CHOICES
from avscene.entry import command_parser, run_cli
from avscene.paths import default_store, runs_dir


def _configs(args: argparse.Namespace, kind: str):
    from classify.heads import HeadConfig
    from classify.train import preset

    overrides = {"seed": args.seed}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.mixup is not None:
        overrides["mixup_fraction"] = args.mixup
    if args.no_augmented_views:
        overrides["augmented_views"] = False
    if args.view_kinds:
        overrides["view_kinds"] = tuple(k for k in args.view_kinds.split(",") if k)
    if args.evaluate_augmented_views:
        overrides["evaluate_augmented_views"] = True
    if args.batch_unit:
        overrides["batch_unit"] = args.batch_unit
    head_overrides = {"dropout": args.dropout} if args.dropout is not None else {}
    return HeadConfig(kind=kind, projection_dim=args.projection_dim, **head_overrides), preset(args.preset, **overrides)


def _extractors(args: argparse.Namespace) -> list[str] | None:
    return [n for n in args.extractors.split(",") if n] if args.extractors else None


def class_set_name(store_location: str, classes: str) -> str:
    """The name of the store's class set ``classes`` ('' = the store's own classes, e.g. ``10``), checked."""
    from extract.store import EmbeddingStore

    return EmbeddingStore.open(store_location).taxonomy.class_set(classes).name


def _cmd_train(args: argparse.Namespace) -> int:
    from classify.run import run_training

    head_config, train_config = _configs(args, args.head)
    classes = class_set_name(args.store, args.classes)
    out = Path(args.out) if args.out else runs_dir() / f"{args.head}-{classes}cls"
    _, metrics = run_training(args.store, _extractors(args), classes, head_config, train_config, out,
                              allow_incomplete=args.allow_incomplete)
    print(f"clip accuracy (vote): {metrics['clip_accuracy']:.4f}  (mean proba): {metrics['clip_accuracy_mean_proba']:.4f}"
          f"  second accuracy: {metrics['second_accuracy']:.4f}  second log loss: {metrics['second_log_loss']:.4f}"
          f"  ({metrics['n_clips']} test clips, {metrics['n_seconds']} seconds)")
    for name, grouped in metrics.get("grouped", {}).items():
        print(f"--classes {name} clip accuracy from this {classes}-class head: {grouped['clip_accuracy']:.4f}")
    print(format_confusion(metrics["confusion_vote"], metrics["classes"]))
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def _cmd_ablation(args: argparse.Namespace) -> int:
    from classify.ablation import run_ablation, run_wang_ablation

    out = Path(args.out) if args.out else runs_dir() / ("ablation-wang" if args.paper == "wang" else "ablation")
    if args.paper == "wang":  # per-row presets and views; --epochs/--seed still apply
        overrides = {"seed": args.seed, **({"epochs": args.epochs} if args.epochs is not None else {})}
        table = run_wang_ablation(args.store, out, _extractors(args), **overrides)
    else:
        head_config, train_config = _configs(args, "ls")
        table = run_ablation(args.store, out, head_config, train_config, _extractors(args))
    for row in table:
        print(f"{row['run']:32s} clip acc {row['clip_acc_vote']!s:>6}  paper {row['paper_clip_acc'] or '':>6}")
    print(f"table: {out / 'ablation.md'}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from classify.predict import predict_split

    from classify.run import recorded_store

    model = Path(args.model)
    recorded = None if args.store else recorded_store(model.parent)
    store = args.store or recorded or default_store()
    n, excluded = predict_split(model, store, args.split or None, Path(args.out))
    print(f"store: {store}" + (" (recorded in the run)" if recorded else ""))
    print(f"{n} clips scored, {len(excluded)} excluded" + (f": {', '.join(e['clip'] for e in excluded)}" if excluded else ""))
    print(f"predictions: {args.out}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from classify.finetune import FinetuneConfig, run_finetune

    cfg = FinetuneConfig(visual=args.visual, audio=args.audio, train_modalities=tuple(args.train.split(",")),
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         max_steps=args.max_steps, random_init=args.random_init, device=args.device, seed=args.seed,
                         augment=not args.no_augment)
    out = Path(args.out)
    metrics = run_finetune(Path(args.data), out, cfg, Path(args.head_run) if args.head_run else None,
                           store_location=args.store or None)
    print(f"{metrics['steps']} steps, {metrics['seconds_seen']} seconds, final loss {metrics['final_loss']}, "
          f"extractors changed {metrics['extractor_changed']}")
    print(f"metrics: {out / 'metrics.json'}")
    return 0


def format_confusion(confusion: list[list[int]], classes: list[str]) -> str:
    """Text confusion matrix (rows true, columns predicted by clip vote), every class name in full."""
    width = max(6, *(len(c) for c in classes))
    lines = ["true \\ predicted (clip vote)", " " * (width + 1) + " ".join(f"{c:>{width}s}" for c in classes)]
    lines += [f"{classes[i]:>{width}s} " + " ".join(f"{v:{width}d}" for v in row) for i, row in enumerate(confusion)]
    return "\n".join(lines)


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=default_store(), help="default: %(default)s")
    parser.add_argument("--extractors", default="", help="comma list (default: every extractor in the store)")
    parser.add_argument("--preset", default="adam", choices=PRESET_CHOICES,
                        help="training preset: paper-text, paper-code (the released code), adam, adam-mixup")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--projection-dim", type=int, default=None,
                        help="project each embedding to this width first (default: the paper's full dimensions)")
    parser.add_argument("--dropout", type=float, default=None, help="head dropout (default 0.5, the released code's)")
    parser.add_argument("--mixup", type=float, default=None, help="fraction of training clips mixed (ratio 0.4)")
    parser.add_argument("--no-augmented-views", action="store_true", help="train on the original view only")
    parser.add_argument("--view-kinds", default="", help="augmented view kinds to train on, e.g. paper_aug,randaug "
                        "(default: all; ablation --paper first: paper_aug, --paper wang: randaug)")
    parser.add_argument("--evaluate-augmented-views", action="store_true", help="also score augmented views")
    parser.add_argument("--batch-unit", default="", choices=["", "clips", "seconds"],
                        help="override the preset's batch unit: 32 clips (avscene) or 32 seconds (the released code)")
    parser.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser, sub = command_parser("python -m classify", __doc__)
    train = sub.add_parser("train", help="train a head on the train split, score the test split")
    _add_training_options(train)
    train.add_argument("--classes", default="", help="a class set of the store's taxonomy: its own classes "
                       "(default; named by their count, e.g. 10) or a grouping (TAU: 3 = indoor/outdoor/vehicle); "
                       "`python -m extract info` lists them")
    train.add_argument("--head", default="ls", choices=HEAD_KINDS)
    train.add_argument("--out", default="", help=f"run folder (default {runs_dir()}/<head>-<classes>cls)")
    train.add_argument("--allow-incomplete", action="store_true", help="train although the store's extraction is not "
                       "complete (the clips done so far; class coverage printed and recorded in metrics.json)")
    train.set_defaults(func=_cmd_train)
    ablation = sub.add_parser("ablation", help="Table 2 rows + VASC/ASC/VSC (or --paper wang), beside the papers")
    _add_training_options(ablation)
    ablation.add_argument("--paper", default="first", choices=["first", "wang"],
                          help="first: Table 2 + VASC/ASC/VSC; wang: the second paper's Tables 1/3 cache rows (MLP)")
    ablation.add_argument("--out", default="", help=f"default {runs_dir()}/ablation (first) or ablation-wang")
    ablation.set_defaults(func=_cmd_ablation)
    finetune = sub.add_parser("finetune", help="second paper's Fine_A/Fine_V: extractors + MLP head end to end "
                              "from the train split's media (needs a GPU for real use)")
    finetune.add_argument("--data", required=True, help="TAU-layout folder or CSV manifest")
    finetune.add_argument("--visual", default="densenet161.places365_f1f15")
    finetune.add_argument("--audio", default="fcnn.tau")
    finetune.add_argument("--train", default="visual,audio", help="extractors updated: visual (Fine_V), audio (Fine_A)")
    finetune.add_argument("--head-run", default="", help="run folder of a cache-trained mlp head to start from")
    finetune.add_argument("--store", default="", help="leave out the train clips this store excludes for the two "
                          "extractors (default: the head run's store, if any)")
    finetune.add_argument("--epochs", type=int, default=1)
    finetune.add_argument("--batch-size", type=int, default=32)
    finetune.add_argument("--lr", type=float, default=1e-5)
    finetune.add_argument("--weight-decay", type=float, default=1e-5)
    finetune.add_argument("--max-steps", type=int, default=None)
    finetune.add_argument("--random-init", action="store_true", help="random extractor weights (smoke runs)")
    finetune.add_argument("--no-augment", action="store_true", help="without the paper's augmentations (channel swap, "
                          "SpecAugment, RandAugment Sharpness/Contrast, joint mixup 20 %%)")
    finetune.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    finetune.add_argument("--seed", type=int, default=0)
    finetune.add_argument("--out", default=str(runs_dir() / "finetune"), help="default: %(default)s")
    finetune.set_defaults(func=_cmd_finetune)
    predict = sub.add_parser("predict", help="DCASE-format clip predictions of a trained head (unlabeled splits too)")
    predict.add_argument("--model", required=True, help="model.pt of a run folder")
    predict.add_argument("--store", default="", help=f"default: the store recorded in the run's config.json, else {default_store()}")
    predict.add_argument("--split", default="test", help="store split to score ('' = every clip)")
    predict.add_argument("--out", required=True, help="output CSV (tab-separated)")
    predict.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
