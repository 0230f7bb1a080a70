"""The dependency direction of DESIGN.md, checked on the source: kernels ← theory, simulations
← empirical ← cli. Kernels may use only the leaf helpers `errors` and `validation` of ours."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "theorylab"
LEAVES = {"theorylab.errors", "theorylab.validation"}
FORBIDDEN = {
    "kernels": lambda m: m.startswith("theorylab.") and m not in LEAVES
    and not m.startswith("theorylab.kernels"),
    "theory": lambda m: m.startswith(("theorylab.empirical", "theorylab.simulations",
                                      "theorylab.papers", "theorylab.cli")),
    "simulations": lambda m: m.startswith(("theorylab.empirical", "theorylab.papers", "theorylab.cli")),
    "empirical": lambda m: m.startswith(("theorylab.papers", "theorylab.cli")),
}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_follow_the_design(layer):
    bad = [(p.name, m) for p in sorted((SRC / layer).rglob("*.py")) for m in _imports(p)
           if FORBIDDEN[layer](m)]
    assert not bad, f"{layer} imports against the dependency direction: {bad}"


def test_nothing_imports_the_cli():
    bad = [p.name for p in SRC.rglob("*.py") if p.name != "cli.py"
           and any(m.startswith("theorylab.cli") for m in _imports(p))]
    assert not bad
