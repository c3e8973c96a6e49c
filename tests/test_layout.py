"""The three generic package names must resolve inside this repository, not to some installed namesake."""
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_packages_resolve_inside_repo():
    for name in ("extract", "classify", "vadd", "demo"):
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve().parent == REPO / name


def test_cache_is_data_not_a_package():
    assert not (REPO / "cache" / "__init__.py").exists()
    assert (REPO / "cache" / "README.md").exists()


def test_importing_cli_modules_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, extract.cli, classify.cli, vadd.cli, demo.cli, extract.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_only_the_store_reads_store_attributes():
    """classify, vadd and bench read a store through its typed accessors, never its raw attributes."""
    import re

    raw = re.compile(r"group_attrs\(|\.root\[|\.root\.attrs")
    found = [f"{p.relative_to(REPO)}:{i}" for package in ("classify", "vadd", "bench") for p in (REPO / package).rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if raw.search(line)]
    assert found == []
