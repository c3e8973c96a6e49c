"""``avscene serve``: ``vadd check`` as an HTTP service (FastAPI + uvicorn; ``pip install avscene[serve]``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from avscene.entry import run_cli
from avscene.paths import cache_dir


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ImportError("avscene serve needs FastAPI and uvicorn: pip install 'avscene[serve]'") from None
    from avscene.service.app import ServiceConfig, create_app, token_from_environment
    from vadd.check import default_heads_dir

    if args.max_upload_mb <= 0 or args.job_timeout_s <= 0:
        raise ValueError("--max-upload-mb and --job-timeout-s must be > 0")
    for root in args.media_root:
        if not Path(root).is_dir():
            raise FileNotFoundError(f"--media-root {root}: no such folder")
    config = ServiceConfig(
        heads_dir=Path(args.heads) if args.heads else default_heads_dir(), state_dir=Path(args.state),
        media_roots=tuple(Path(r) for r in args.media_root), workers=args.workers, device=args.device,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), job_timeout_s=args.job_timeout_s,
        queue_limit=args.queue_limit, token=token_from_environment())
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="info")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avscene serve", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--heads", default="", help="a `vadd eval` run folder (default: the one the last `vadd eval` "
                        "or `make demo` registered)")
    parser.add_argument("--state", default=str(cache_dir() / "serve"), help="folder of the jobs (kept across restarts; default: %(default)s)")
    parser.add_argument("--media-root", action="append", default=[],
                        help="a folder whose files requests may name by 'path' (repeatable; none: uploads only)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes, each with the models loaded")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="upload size cap")
    parser.add_argument("--job-timeout-s", type=float, default=600.0, help="a job running longer fails")
    parser.add_argument("--queue-limit", type=int, default=1000, help="jobs waiting at most (then 503)")
    parser.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)
