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
    pages = {}  # report-only claims (must_hold false) are marked beside their id
    for paper, items in by_paper.items():
        lines = [f"| claim ({label}) | expected | measured | 95 % CI | holds | s |",
                 "|---|---|---|---|---|---|"]
        for r in sorted(items, key=lambda r: r["id"]):
            report_only = "" if r.get("must_hold", True) else " (report-only)"
            lines.append(f"| `{r['id']}`{report_only} | {_fmt(r['expected'])} | {_fmt(r['measured'])} | "
                         f"{_fmt(r['ci'])} | {_holds(r)} | {r['seconds']:.1f} |")
        pages[paper] = "\n".join(lines) + "\n"
    return pages


_KINDS = (("expert", r"Expert set, $h_j = h(x, \eta_j)$"),
          ("gated", r"Gated set, $F_j = e^{\beta_{1j} x} h(x, \eta_j)$"))


_SET_HEADER = r" set at one atom, before merging ($\partial h$, $\partial^2 h$, $x\,\partial h$) |"


def moe_identifiability() -> str:
    """The strong-identifiability verdicts and every vanishing combination theory.moe finds (a
    basis of them), for the expert set and the gated set, in LaTeX."""
    from theorylab.theory import moe as theory_moe
    out = []
    for kind, title in _KINDS:
        expert = kind == "expert"
        out += [rf"**{title}** (atoms $j = 1, 2$; $\partial_a = \partial/\partial a$):", "",
                "| experts |" + (_SET_HEADER if expert else "")
                + " independent | decided by | merged (one Taylor coefficient) |",
                "|---|---|---|---|" + ("---|" if expert else "")]
        report = theory_moe.identifiability_report(kind)
        for family, res in report.items():
            merged = ", ".join(f"${t}$" for t in res.details["merged_latex"]) or "—"
            verdict = "yes" if res.holds else "**no**"
            the_set = f" ${theory_moe.function_set_latex(family)}$ |" if expert else ""
            out.append(f"| {family} |{the_set} {verdict} | {res.method} | {merged} |")
        out.append("")
        for family, res in report.items():
            if res.holds:
                continue
            zeros = [z.removesuffix(" = 0") for z in res.details["vanishing_latex"]]
            lines = [t.replace(" = 0", " &= 0") for t in res.details["dependence_latex"]]
            out += [f"*{family}*: {len(zeros)} members vanish identically"
                    + (f" (${' = '.join(zeros)} = 0$)" if zeros else "")
                    + f"; the other {res.details['n_functions'] - len(zeros)} have rank "
                    f"{res.details['rank']}, and a basis of their vanishing combinations is", "",
                    "$$", r"\begin{aligned}", " \\\\\n".join(lines), r"\end{aligned}", "$$", ""]
    return "\n".join(out)


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
