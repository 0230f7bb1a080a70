"""Packaging: the package depends on a torch range (a user's torch is kept); the exact CPU build
is named only where it is installed (README commands, .ci/run, nox)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _torch_specs(reqs):
    return [r for r in reqs if re.match(r"torch\b", r)]


def test_torch_is_a_range_in_pyproject_and_pinned_in_the_install_commands():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = _torch_specs(project["dependencies"]) + _torch_specs(project["optional-dependencies"]["empirical"])
    assert specs and all("==" not in s and ">=" in s for s in specs), specs
    readme_cmds = [ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("pip install")]
    assert readme_cmds and all("torch==" in ln for ln in readme_cmds)
    assert "torch==" in (ROOT / ".ci" / "run").read_text()
    assert "torch==" in (ROOT / "noxfile.py").read_text()
