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


SHARED_LEAVES = ("criteria.py", "stats.py", "threads.py")


@pytest.mark.parametrize("name", SHARED_LEAVES)
def test_shared_helpers_are_leaves(name):
    """criteria, stats and threads import only `errors` of ours (kernels may not import them:
    LEAVES above), and nothing heavy at module level."""
    mods = list(_imports(SRC / name))
    assert all(m == "theorylab.errors" for m in mods if m.startswith("theorylab"))
    top = [n.names[0].name if isinstance(n, ast.Import) else n.module
           for n in ast.parse((SRC / name).read_text()).body
           if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not [m for m in top if m and m.split(".")[0] in {"torch", "scipy", "statsmodels",
                                                            "pandas", "numba", "sympy"}]


def test_nothing_imports_the_simulations_for_shared_helpers():
    """single_thread and the rate statistics live outside simulations/."""
    bad = [p.name for p in SRC.rglob("*.py")
           for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.ImportFrom)
           and node.module and node.module.startswith("theorylab.simulations")
           and {a.name for a in node.names} & {"single_thread", "loglog_slope", "rate_band"}]
    assert not bad


def test_moe_kernel_package_has_no_import_cycle():
    """kernels/moe: the model imports no sibling, fit and voronoi import only the model (never the
    package), and the package re-exports plainly (no module-level __getattr__)."""
    pkg = SRC / "kernels" / "moe"
    deps = {p.stem: {m for m in _imports(p) if m.startswith("theorylab.kernels.moe")}
            for p in pkg.glob("*.py")}
    assert set(deps) == {"__init__", "model", "fit", "voronoi", "reference"}
    assert deps["model"] == set()
    assert deps["fit"] == deps["voronoi"] == {"theorylab.kernels.moe.model"}
    assert deps["reference"] == {"theorylab.kernels.moe.model", "theorylab.kernels.moe.fit"}
    init = ast.parse((pkg / "__init__.py").read_text())
    assert not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in init.body)
    import theorylab.kernels.moe as moe
    assert all(hasattr(moe, name) for name in moe.__all__)
