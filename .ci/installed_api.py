"""The API examples against an INSTALLED avscene, from a folder outside the checkout (``.ci/run`` runs this).

Runs the ``Examples:`` blocks of avscene and of the modules its API names come from (the same examples
``make test`` runs on the checkout): among them, avscene's own example embeds a generated video with the debug
extractors, trains a visual and an audio head and checks a video. Fails unless every package imports from the
installed copy and the data folder is the user cache, never site-packages.
"""
from __future__ import annotations

import doctest
import importlib
import sys
import sysconfig
from pathlib import Path

import avscene
from avscene.paths import cache_dir, in_checkout

site = Path(sysconfig.get_paths()["purelib"]).resolve()
for package in ("avscene", "extract", "classify", "vadd"):
    where = Path(importlib.import_module(package).__file__).resolve()
    if site not in where.parents:
        sys.exit(f"{package} imports from {where}, not from the installed copy in {site}")
if in_checkout() or site in cache_dir().resolve().parents:
    sys.exit(f"the data folder {cache_dir()} is inside the installed package (or a checkout was found)")
print(f"avscene {avscene.__version__} installed in {site}; data folder {cache_dir()}")

modules = sorted({"avscene", *avscene._API.values()})
failed = attempted = 0
for name in modules:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    print(f"{name}: {result.attempted - result.failed} of {result.attempted} example lines passed")
    failed, attempted = failed + result.failed, attempted + result.attempted
if failed or not attempted:
    sys.exit(f"{failed} of {attempted} example lines failed")
print(f"API examples of the installed avscene: all {attempted} example lines ran as documented")
