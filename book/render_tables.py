"""Render the book's generated parts: verdict tables and symbolic results (no simulation).

Reads ``results/verify_full*.json`` (written by ``nox -s study``, one file per paper or one
for all) and, where present, ``results/verify_quick*.json``; writes ``book/_generated/<paper>_verdicts.md`` (one per paper),
and ``moe_identifiability.md`` straight from :mod:`theorylab.theory.moe`.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "_generated"


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, list) and len(x) == 2:
        return f"[{_fmt(x[0])}, {_fmt(x[1])}]"
    return "—" if x is None else str(x)


def _holds(r: dict) -> str:
    """'yes' / '**no**' / '*inconclusive*' from the verdict's status (older JSON: its holds); for
    an upper-bound rate claim also whether the bound is attained (tight)."""
    status = r.get("status") or ("holds" if r["holds"] else "fails")
    text = {"holds": "yes", "fails": "**no**", "inconclusive": "*inconclusive*"}[status]
    tight = (r.get("details") or {}).get("tight")
    if tight is not None and (r.get("criterion") or {}).get("kind") == "rate_bound":
        text += " (tight)" if tight else (" (faster than the bound)" if status == "holds" else "")
    return text


def render(rows: list[dict], label: str) -> dict[str, str]:
    by_paper: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_paper[r["id"].split(".")[0]].append(r)
    pages = {}
    for paper, items in by_paper.items():
        lines = [f"| claim ({label}) | expected | measured | 95 % CI | holds | s |",
                 "|---|---|---|---|---|---|"]
        for r in sorted(items, key=lambda r: r["id"]):
            lines.append(f"| `{r['id']}` | {_fmt(r['expected'])} | {_fmt(r['measured'])} | "
                         f"{_fmt(r['ci'])} | {_holds(r)} | {r['seconds']:.1f} |")
        pages[paper] = "\n".join(lines) + "\n"
    return pages


def moe_identifiability() -> str:
    """The strong-identifiability function sets and their exact verdicts, from theory.moe."""
    from theorylab.theory import moe as theory_moe
    lines = ["| experts | function set at two atoms | independent | decided by | vanishing combination |",
             "|---|---|---|---|---|"]
    for family, res in theory_moe.identifiability_report().items():
        latex = theory_moe.function_set_latex(family).replace("|", r"\vert ")
        dependence = res.details["dependence"]
        dep = "—" if dependence is None else f"${sympy_latex(dependence)}$"
        lines.append(f"| {family} | ${latex}$ | {'yes' if res.holds else '**no**'} | "
                     f"{res.method} | {dep} |")
    return "\n".join(lines) + "\n"


def sympy_latex(expr) -> str:
    import sympy as sp
    return sp.latex(expr).replace("|", r"\vert ")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    (OUT / "moe_identifiability.md").write_text(moe_identifiability())
    found = False
    for label, pattern in (("full study", "verify_full*.json"), ("quick", "verify_quick*.json")):
        rows = [r for path in sorted((ROOT / "results").glob(pattern))
                for r in json.loads(path.read_text())]
        if not rows:
            continue
        found = True
        for paper, text in render(rows, label).items():
            suffix = "" if label == "full study" else "_quick"
            (OUT / f"{paper}_verdicts{suffix}.md").write_text(text)
    if not found:
        print("error: no results/verify_*.json; run `nox -s study` first", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
