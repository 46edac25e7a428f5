"""What a plain `pip install .` and the image carry: the operator and nothing of its test bench
(no FastAPI, no local EGP server, no control-plane launcher), and a command with only the
operator's own subcommands."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
TEST_BENCH_ONLY = {"fastapi", "uvicorn", "starlette", "egp_testbench"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's wheel, built as `pip wheel .` builds it (offline: the backend is in the
    dev install)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", str(REPO)),
            *("--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", str(out)),
        ],
        check=True,
        cwd=out,
    )
    (built,) = out.glob("egp_operator-*.whl")
    return built


def imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_wheel_holds_the_operator_and_nothing_of_the_test_bench(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        sources = {name: archive.read(name).decode() for name in names if name.endswith(".py")}

    assert {name.split("/")[0] for name in names} == {
        "egp_operator",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    assert "egp_operator/sync/cycle.py" in sources  # the operator itself is there
    for name, source in sources.items():
        assert not imported_roots(source) & TEST_BENCH_ONLY, name


def test_the_command_offers_only_the_operators_own_subcommands() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "egp_operator.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert "{run,sync,crds}" in shown
    assert "fake-egp" not in shown


def layout_paths() -> set[Path]:
    """The paths the README's layout section names: a line at the left margin names a folder
    of the repo, an indented one files or folders in the last such folder."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    named, folder = set(), REPO
    for line in block.splitlines()[1:]:
        tokens = line.split()
        if not tokens:
            continue
        if not line.startswith(" "):
            folder = REPO / tokens[0]
            named.add(folder)
            continue
        for token in tokens:
            if token.endswith((".py", "/")):
                named.add(folder / token)
            else:
                break  # the description starts
    return named


def test_the_readme_layout_matches_the_tree() -> None:
    named = layout_paths()
    package = REPO / "operator" / "egp_operator"
    modules = {p for p in package.iterdir() if p.name != "__init__.py" and p.suffix == ".py"}
    subpackages = {p for p in package.iterdir() if (p / "__init__.py").is_file()}

    assert [str(p.relative_to(REPO)) for p in named if not p.exists()] == []
    missing = {p.name for p in modules if p not in named}
    missing |= {p.name for p in subpackages if Path(f"{p}/") not in named}
    assert missing == set()
