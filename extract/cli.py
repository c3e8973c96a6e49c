"""``python -m extract``: run extraction, manage weights, inspect and export stores."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from avscene.entry import command_parser, run_cli
from avscene.paths import default_store

logger = logging.getLogger(__name__)


def _cmd_run(args: argparse.Namespace) -> int:
    from extract.registry import resolve_names
    from extract.runner import RunConfig, parse_shard, run_extraction
    from extract.views import parse_views

    shard_index, shard_count = parse_shard(args.shard)
    cfg = RunConfig(
        data=Path(args.data),
        store=args.store,
        extractors=tuple(resolve_names(args.extractors)),
        classes=_parse_classes(args.classes),
        groups=Path(args.groups) if args.groups else None,
        device=args.device,
        random_init=args.random_init,
        shard_index=shard_index,
        shard_count=shard_count,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        batch_sizes=tuple(_parse_batch_size(item) for item in args.model_batch_size),
        precision=args.precision,
        channels_last=not args.no_channels_last,
        compile=args.compile,
        decode_workers=args.decode_workers,
        decode_backend=args.decode_backend,
        decode_device=args.decode_device,
        frame_choice=args.frame_choice,
        clips_per_chunk=args.clips_per_chunk,
        progress=not args.no_progress,
        views=parse_views(args.views, args.view_seed),
        retry_failed=args.retry_failed,
        wait_for_lock=args.wait,
    )
    summary = run_extraction(cfg)
    for name, clip, stage, message in summary.errors:
        logger.warning("failed %s / %s [%s]: %s", name, clip, stage, message)
    for line in summary.lines():
        print(line)
    print(f"store: {cfg.store}")
    status, reason = summary.exit_status(args.fail_on_error)
    if status:
        logger.error("%s", reason)
    return status


def _parse_batch_size(text: str) -> tuple[str, int]:
    """``NAME=N`` -> (registry name, N)."""
    from extract.registry import get_spec

    name, _, size = text.partition("=")
    if not size.isdigit() or int(size) < 1:
        raise ValueError(f"--model-batch-size needs NAME=N with N >= 1, got {text!r}")
    return get_spec(name.strip()).name, int(size)


def _parse_classes(text: str) -> tuple[str, ...] | None:
    from extract.taxonomy import TAU_SCENES

    if not text:
        return None
    return TAU_SCENES if text == "tau" else tuple(c.strip() for c in text.split(",") if c.strip())


def _cmd_weights(args: argparse.Namespace) -> int:
    from extract import weights
    from extract.registry import TrainedWeights, get_spec, list_extractors, resolve_names

    if args.action == "list":
        for name in list_extractors():
            spec = get_spec(name)
            if spec.weights is None:
                print(f"{name:40s} {spec.modality:6s} {spec.embedding_dim:5d}-d  no weights file (built-in, debug)")
                continue
            state, why = weights.cache_state(spec)
            w = spec.weights
            print(f"{name:40s} {spec.modality:6s} {spec.embedding_dim:5d}-d  {state:7s} {weights.expected_path(spec)}")
            if why:
                print(f"{'':40s} {why}")
            if isinstance(w, TrainedWeights):
                run = weights.training_record(spec)["run_id"] if state != "MISSING" and why == "" else "-"
                print(f"{'':40s} {weights.how_to_get(spec)}\n{'':40s} training run {run}\n{'':40s} license {w.license}")
                continue
            print(f"{'':40s} url {w.url}\n{'':40s} sha256 {w.sha256 or '-'} ({w.sha256_origin}){' md5 ' + w.md5 if w.md5 else ''}\n{'':40s} license {w.license}")
        return 0
    specs = [get_spec(n) for n in resolve_names(args.names)] if args.names else [
        get_spec(n) for n in list_extractors()
    ]
    if args.action == "fetch":
        for spec in specs:
            if isinstance(spec.weights, TrainedWeights):
                print(f"{spec.name}: {weights.how_to_get(spec)}")
            elif spec.weights is not None:
                print(f"{spec.name}: {weights.fetch(spec)}")
        return 0
    installed = weights.import_dir(Path(args.dir), specs)
    for path in installed:
        print(f"imported {path}")
    if not installed:
        print(f"no known weights file in {args.dir}")
        return 1
    return 0


def _cmd_train_extractor(args: argparse.Namespace) -> int:
    from extract.manifest import read_manifest
    from extract.runner import RunConfig, run_extraction
    from extract.train_extractor import ExtractorTrainConfig, train_extractor

    cfg = ExtractorTrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                               seed=args.seed, decode_workers=args.decode_workers, device=args.device,
                               augment=_parse_augment(args.augment, args.augment_copies, args.spec_augment,
                                                      args.channel_swap))
    manifest = read_manifest(Path(args.data), require=(), classes=_parse_classes(args.classes))
    path, record = train_extractor(args.name, manifest, None, cfg)
    print(f"weights: {path}\nsha256: {record['sha256']}\ntraining run: {record['run_id']} "
          f"(val accuracy {record['metrics']['final_val_accuracy']:.3f}, record {path}.run.json)")
    if args.store:
        summary = run_extraction(RunConfig(data=Path(args.data), store=args.store, extractors=(args.name,),
                                           classes=_parse_classes(args.classes), device=args.device,
                                           progress=not args.no_progress))
        for line in summary.lines():
            print(line)
        print(f"store: {args.store}")
    return 0


def _parse_augment(text: str, copies: int, spec_augment: float | None, channel_swap: float | None):
    """``paper`` (every augmentation of the second paper) or a comma list of offline kinds; flags override."""
    from dataclasses import replace

    from extract.audio_augment import PAPER_AUGMENT, AudioAugmentConfig

    if text == "paper":
        cfg = replace(PAPER_AUGMENT, copies=copies)
    else:
        cfg = AudioAugmentConfig(offline=tuple(k.strip() for k in text.split(",") if k.strip()), copies=copies)
    overrides = {k: v for k, v in (("spec_augment_fraction", spec_augment), ("channel_swap_probability", channel_swap))
                 if v is not None}
    return replace(cfg, **overrides)


def _cmd_tau_audio_manifest(args: argparse.Namespace) -> int:
    from extract.tau_audio import write_tau_audio_manifest

    print(f"manifest: {write_tau_audio_manifest(Path(args.audio), Path(args.out))}")
    return 0


def _cmd_hear_task(args: argparse.Namespace) -> int:
    from extract.hear_task import write_hear_scene_task
    from extract.manifest import read_manifest

    manifest = read_manifest(Path(args.data), require=("audio",), classes=_parse_classes(args.classes))
    rates = tuple(int(r) for r in args.sample_rates.split(","))
    task = write_hear_scene_task(manifest, Path(args.out), args.name, rates, args.seconds, args.folds)
    print(f"HEAR task: {task}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    from extract.store import EmbeddingStore

    store = EmbeddingStore.open(args.store)
    clips = store.clips
    print(f"{store.location}: {len(clips)} clips, up to {store.seconds_max} s, splits "
          + ", ".join(f"{s}={int((clips.splits == s).sum())}" for s in sorted(set(clips.splits))))
    print(f"  checksums: {store.checksums} on every array" if store.checksums else
          "  checksums: none (written before avscene recorded them): `verify` finds missing chunks and NaN/inf values, "
          "not silently changed ones")
    card = store.dataset_card
    print(f"  dataset {store.data_root} ({card.label()}{': ' + card.description if card.description else ''})")
    taxonomy = store.taxonomy
    print("  --classes " + "; ".join(f"{n}: {', '.join(taxonomy.class_set(n).classes)}" for n in taxonomy.names)
          + f" (validation locations: {taxonomy.location_rule})")
    partial = np.flatnonzero(clips.coverage_missing != "")
    if len(partial):
        print(f"  {len(partial)} clip(s) with partial coverage (seconds covered of the file's duration: why):")
        for i in partial[: args.max_errors]:
            print(f"    {clips.ids[i]}: {clips.seconds_covered[i]} of {clips.duration_s[i]:.2f} s: {clips.coverage_missing[i]}")
    for name in store.extractor_names():
        record = store.group_record(name)
        status = store.status(name)
        print(f"  {name}: fingerprint {record.fingerprint} weights {record.weights_id} "
              f"done {int((status == 1).sum())} failed {int((status == 2).sum())} pending {int((status == 0).sum())} "
              f"complete {record.complete}")
        for clip, stage, message in store.errors(name)[: args.max_errors]:
            print(f"    {clip} [{stage}] {message}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from extract.store.verify import repair_store, verify_store

    found = verify_store(args.store)
    how = f"checksums ({found.checksums})" if found.checksums else "no checksums (an older store: missing chunks and NaN/inf only)"
    print(f"{found.location}: {found.blocks_checked} written block(s) checked, {how}")
    for damage in found.damage:
        print(f"  damaged: {damage.line()}")
    if not found.damage:
        print("  no damage found")
        return 0
    if not args.repair:
        print(f"{found.damaged_clips} damaged clip(s); `python -m extract verify --store {args.store} --repair` resets "
              "them to pending, then rerun the extraction to re-embed only them")
        return 1
    print(f"reset {repair_store(found)} clip(s) to pending; rerun the extraction (make extract STORE={args.store} ...) "
          "to re-embed only them")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from extract.store import EmbeddingStore

    EmbeddingStore.open(args.store).export_h5(Path(args.h5))
    print(f"wrote {args.h5}")
    return 0


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="TAU-layout folder or CSV manifest (labels: TAU scenes)")
    parser.add_argument("--store", default="", help="also extract the trained extractor into this store")
    parser.add_argument("--classes", default="", help="CSV manifests: comma list of classes, or 'tau'")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="1-s windows per step")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--decode-workers", type=int, default=2)
    parser.add_argument("--augment", default="", help="'paper' (pitch,speed,noise,mix offline + SpecAugment 0.1 + "
                        "channel swap 0.5) or a comma list of offline kinds among pitch,speed,noise,mix")
    parser.add_argument("--augment-copies", type=int, default=1, help="offline copies per window and kind")
    parser.add_argument("--spec-augment", type=float, default=None, help="max SpecAugment mask width (fraction)")
    parser.add_argument("--channel-swap", type=float, default=None, help="probability of swapping the two channels")
    parser.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser, sub = command_parser("python -m extract", __doc__)

    run = sub.add_parser("run", help="extract per-second embeddings into a store (resumable, shardable); exit status "
                         "0 when the run completed (per-clip failures are recorded, see info), 1 when an extractor "
                         "embedded no clip at all or with --fail-on-error and a failure, 2 when it could not start")
    run.add_argument("--data", required=True, help="TAU-layout folder (with meta.csv) or a CSV manifest")
    run.add_argument("--store", default=default_store(), help="store path or fsspec URL (default: %(default)s)")
    run.add_argument("--extractors", required=True, help="comma list of registry names or aliases")
    run.add_argument("--classes", default="", help="CSV manifests: comma list of classes, or 'tau' for the 10 TAU scenes")
    run.add_argument("--groups", default="", help="grouping file (CSV label,<grouping>...): class groupings that "
                     "`--classes <grouping>` of classify and vadd can train on; recorded in the store")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--random-init", action="store_true", help="random weights (recorded in the store)")
    run.add_argument("--shard", default="0/1", help="i/n: this process does blocks b with b %% n == i; "
                     "auto: from SLURM_ARRAY_TASK_ID/COUNT, torchrun's RANK/WORLD_SIZE or SLURM_PROCID/NTASKS")
    run.add_argument("--overwrite", action="store_true", help="replace embeddings of another fingerprint")
    run.add_argument("--batch-size", type=int, default=None,
                     help="model batch size in seconds of media (default: 64 on CUDA, 8 on CPU)")
    run.add_argument("--model-batch-size", action="append", default=[], metavar="NAME=N",
                     help="batch size for one extractor (repeatable), e.g. vit_h14.swag_e2e_in1k=32")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                     help="CUDA autocast precision (auto: bf16 on CUDA); CPU always runs float32; "
                          "non-fp32 runs get their own store fingerprint")
    run.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory format on CUDA")
    run.add_argument("--compile", action="store_true", help="torch.compile each model (batches padded to one shape)")
    run.add_argument("--decode-workers", type=int, default=None,
                     help="decode workers (default: one per visible core); each decoder gets cores / workers threads")
    run.add_argument("--decode-backend", default="thread", choices=["thread", "process"],
                     help="decode workers as threads (default) or spawned processes (docs/decoding.md)")
    run.add_argument("--decode-device", default="cpu", choices=["cpu", "cuda", "auto"],
                     help="cpu: PyAV (default); cuda: torchcodec on NVDEC, frames resized on the GPU (extra 'gpu', needs "
                          "--device cuda); auto: cuda when it works, else cpu (logged)")
    run.add_argument("--frame-choice", default="middle", choices=["middle", "released-code"],
                     help="frame of each second: middle (k + 0.5 s, the papers' text) or released-code (the released "
                          "script's 30th frame of each second: indices 29, 59, ...); recorded in the store")
    run.add_argument("--clips-per-chunk", type=int, default=None, help="store chunk size in clips (new stores)")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--retry-failed", action="store_true",
                     help="redo the clips an earlier run recorded as failed (after fixing their files), nothing else")
    run.add_argument("--fail-on-error", action="store_true",
                     help="exit 1 when any clip failed, now or in an earlier run (default: exit 0, failures recorded)")
    run.add_argument("--wait", action="store_true",
                     help="when another run is writing this store's shard, start once it ends (default: refuse)")
    run.add_argument("--views", default="", help="augmented visual passes, e.g. paper_aug:1,randaug:1 (docs/extractors.md)")
    run.add_argument("--view-seed", type=int, default=0, help="seed of the augmented views")
    run.set_defaults(func=_cmd_run)

    tiov = sub.add_parser("train-iov", help="train iov_cnn420 on the TRAIN split, install its weights (+ extract)")
    _add_train_options(tiov)
    tiov.set_defaults(func=_cmd_train_extractor, name="iov_cnn420")
    tex = sub.add_parser("train-extractor", help="train an extractor with weights trained here (iov_cnn420, fcnn.tau) "
                         "on the TRAIN split, install its weights (+ extract)")
    tex.add_argument("name", help="registry name of an extractor whose weights are trained here")
    _add_train_options(tex)
    tex.set_defaults(func=_cmd_train_extractor)

    w = sub.add_parser("weights", help="list, fetch or import pretrained weights")
    wsub = w.add_subparsers(dest="action", required=True)
    wsub.add_parser("list", help="every spec, its URL, sha256, license and whether the file is present with its digest verified")
    fetch = wsub.add_parser("fetch", help="download official weights (the only networked command)")
    fetch.add_argument("names", nargs="*", help="extractor names or aliases (default: all)")
    imp = wsub.add_parser("import", help="copy weights files from a folder after checking sha256")
    imp.add_argument("dir")
    imp.add_argument("names", nargs="*")
    w.set_defaults(func=_cmd_weights)

    tam = sub.add_parser("tau-audio-manifest", help="CSV manifest over real TAU wavs listed in MANIFEST.tsv")
    tam.add_argument("--audio", required=True, help="folder with the wavs and MANIFEST.tsv")
    tam.add_argument("--out", required=True, help="data root to write manifest.csv into")
    tam.set_defaults(func=_cmd_tau_audio_manifest)

    hear = sub.add_parser("hear-task", help="write a HEAR 2021 scene task (hear-eval-kit's layout) from a dataset's "
                          "labelled clips, folds keeping recording locations apart")
    hear.add_argument("--data", required=True, help="TAU-layout folder (with meta.csv) or a CSV manifest")
    hear.add_argument("--classes", default="", help="CSV manifests: as for run ('tau': TAU's locations from the stems)")
    hear.add_argument("--out", required=True, help="folder of HEAR tasks (hear-eval-kit's --tasks-dir)")
    hear.add_argument("--name", default="avscene-scenes", help="task name (its folder)")
    hear.add_argument("--sample-rates", default="32000", help="comma list in Hz: the rates of the models to score")
    hear.add_argument("--seconds", type=int, default=10, help="clip duration in the task (cut or zero-padded)")
    hear.add_argument("--folds", type=int, default=3)
    hear.set_defaults(func=_cmd_hear_task)

    info = sub.add_parser("info", help="summarise a store and its recorded errors")
    info.add_argument("--store", default=default_store(), help="default: %(default)s")
    info.add_argument("--max-errors", type=int, default=20)
    info.set_defaults(func=_cmd_info)

    verify = sub.add_parser("verify", help="check every written block against its checksum, its chunks and finite "
                            "values; exit 1 when damage is found (0 after --repair)")
    verify.add_argument("--store", default=default_store(), help="default: %(default)s")
    verify.add_argument("--repair", action="store_true", help="reset the damaged clips to pending (a rerun re-embeds them)")
    verify.set_defaults(func=_cmd_verify)

    export = sub.add_parser("export", help="write a store to HDF5")
    export.add_argument("--store", default=default_store(), help="default: %(default)s")
    export.add_argument("--h5", required=True)
    export.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
