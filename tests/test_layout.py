"""The three generic package names must resolve inside this repository, not to some installed namesake."""
import importlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_packages_resolve_inside_repo():
    for name in ("avscene", "avscene.demo", "extract", "classify", "vadd"):
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve().parent == REPO / name.replace(".", "/")


def test_cache_is_data_not_a_package():
    assert not (REPO / "cache" / "__init__.py").exists()
    assert (REPO / "cache" / "README.md").exists()


def test_importing_cli_modules_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, extract.cli, classify.cli, vadd.cli, avscene.demo.cli, extract.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_only_the_store_reads_store_attributes():
    """classify, vadd and bench read a store through its typed accessors, never its raw attributes."""
    import re

    raw = re.compile(r"group_attrs\(|\.root\[|\.root\.attrs")
    found = [f"{p.relative_to(REPO)}:{i}" for package in ("classify", "vadd", "bench") for p in (REPO / package).rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if raw.search(line)]
    assert found == []


def _lines(packages: tuple[str, ...], allowed: set[str]):
    for package in packages:
        for path in sorted((REPO / package).rglob("*.py")):
            name = str(path.relative_to(REPO))
            if name not in allowed:
                yield from ((f"{name}:{i}", line) for i, line in enumerate(path.read_text().splitlines(), 1))


def test_media_is_decoded_only_by_the_decode_path():
    """One way from media to model inputs: audio_io/video_io decode, decode_plan plans, embed embeds; every other
    module (runner, train-extractor, finetune, vadd check, hear-task) goes through them; extract/hear.py receives
    decoded tensors. avscene/demo/synthetic.py only writes media; bench/ measures decoders (the released code's cv2 loop)."""
    import re

    decoding = re.compile(r"\bav\.open\(|^\s*import (av|soundfile|cv2)\b|\b(load_audio|read_frames|audio_windows|"
                          r"probe_video|audio_info)\(")
    path = {"extract/audio_io.py", "extract/video_io.py", "extract/gpu_decode.py", "extract/decode_plan.py",
            "extract/embed.py"}
    found = [where for where, line in _lines(("extract", "classify", "vadd", "avscene"), path | {"avscene/demo/synthetic.py"})
             if decoding.search(line) and not line.lstrip().startswith(("#", "def "))]
    assert found == []


def _docs_text() -> str:
    """The user-facing documentation: README.md and every page of the docs site."""
    return "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


def test_docs_layout_names_every_module():
    import re

    page = (REPO / "docs" / "layout.md").read_text()
    layout = page[page.index("## Code layout"):page.index("## Tests")]
    named = set(re.findall(r"`([a-z_0-9]+\.py)`", layout))
    modules = {p.name for package in ("extract", "classify", "vadd", "avscene", "avscene/demo") for p in (REPO / package).glob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert sorted(modules - named) == []


def test_docs_name_only_code_that_exists():
    """Every `extract.x.NAME` (avscene, classify, vadd, bench) the README or a docs page names resolves to a module or
    attribute."""
    import re

    unresolved = []
    for dotted in sorted(set(re.findall(r"`((?:avscene|extract|classify|vadd|bench)(?:\.[A-Za-z_]\w*)+)", _docs_text()))):
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for name in parts[i:]:
                obj = getattr(obj, name, None)
            if obj is None:
                unresolved.append(dotted)
            break
    assert unresolved == []


def test_stage_two_and_the_demo_take_their_plumbing_from_avscene_not_extract():
    """errors, paths, progress and the CLI entry live in avscene/; classify, vadd and the demo never reach into
    extract/ for them (nor do they exist there any more)."""
    import re

    plumbing = ("errors", "paths", "progress", "entry")
    assert [m for m in plumbing if (REPO / "extract" / f"{m}.py").exists()] == []
    pattern = re.compile(rf"^\s*(from extract\.({'|'.join(plumbing)})\b|import extract\.({'|'.join(plumbing)})\b"
                         rf"|from extract import .*\b({'|'.join(plumbing)})\b)")
    assert [where for where, line in _lines(("classify", "vadd", "avscene/demo"), set()) if pattern.search(line)] == []


def test_only_the_four_packages_are_installed():
    """The wheel holds avscene, extract, classify and vadd (demo inside avscene; bench stays in the checkout)."""
    import tomllib

    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} == {"avscene", "extract", "classify", "vadd"}
    found = {str(i.parent.relative_to(REPO)).replace("/", ".") for top in ("avscene", "extract", "classify", "vadd")
             for i in (REPO / top).rglob("__init__.py")}
    assert sorted(found - set(packages)) == []  # every sub-package is in the wheel (the list is explicit)


def test_cli_defaults_live_under_the_cache_folder_not_the_working_directory(tmp_path, monkeypatch):
    from classify.cli import build_parser as classify_parser
    from extract.cli import build_parser as extract_parser
    from vadd.cli import build_parser as vadd_parser

    home = tmp_path / "home"
    monkeypatch.setenv("AVSCENE_HOME", str(home))
    store = str(home / "embeddings.zarr")
    assert extract_parser().parse_args(["info"]).store == store
    assert extract_parser().parse_args(["run", "--data", "d", "--extractors", "debug_audio"]).store == store
    assert classify_parser().parse_args(["train"]).store == store
    assert classify_parser().parse_args(["finetune", "--data", "d"]).out == str(home / "runs" / "finetune")
    assert vadd_parser().parse_args(["eval"]).store == store


def test_readme_is_short_and_links_pages_that_exist():
    """The README stays a front page (the rest lives on the docs site), and each docs page it links exists."""
    import re

    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)(?:#[\w-]*)?\)", readme))
    assert linked and sorted(page for page in linked if not (REPO / page).is_file()) == []


def test_docs_extractor_table_lists_the_registry():
    """The extractors page's table is generated from the registry: one row per registered extractor."""
    import importlib.util

    from extract.registry import list_extractors

    spec = importlib.util.spec_from_file_location("registry_table", REPO / "docs" / "hooks" / "registry_table.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = (REPO / "docs" / "extractors.md").read_text()
    table = hook.registry_table()
    rows = [line.split("|")[1].strip().strip("`") for line in table.splitlines()[2:]]
    assert rows == list_extractors()
    assert hook.MARKER in page and table in hook.on_page_markdown(page)
    assert hook.registry_table() == table  # deterministic
