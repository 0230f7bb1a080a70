"""The one result type of every ``theory.*.verify()``: a derivation (or decision) and how it was
established."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DerivationResult"]


@dataclass(frozen=True)
class DerivationResult:
    """Outcome of verifying one derivation.

    ``holds``: every step is established; ``method``: how, in one phrase ("symbolic",
    "numeric", ... or "FAILED"); ``proved_by``: step name → its status. Step derivations
    (:mod:`theorylab.theory.steps`: BEB, EXO) use "proven" | "numeric" | "premise" | "FAILED"
    and hold only when every step is proven or a cited premise and the steps chain to the claim
    (``details['counts']``, ``details['chain_complete']``); ``theory.moe`` uses "symbolic" |
    "numeric" | "FAILED";
    ``max_abs_residual``: worst numeric residual of the spot checks (identities: max |expr|;
    inequalities: max(0, −expr); NaN where the check has no residual); ``n_points``: spot-check
    points per step; ``domain``: where the derivation is claimed; ``details``: anything else.
    """

    name: str
    holds: bool
    method: str
    proved_by: dict[str, str]
    max_abs_residual: float
    n_points: int
    domain: str
    details: dict = field(default_factory=dict)


def summarise(proved_by: dict[str, str]) -> str:
    """One phrase for the per-step methods: 'FAILED' if any step failed, else the set used."""
    used = set(proved_by.values())
    if "FAILED" in used or not used:
        return "FAILED"
    return " + ".join(m for m in ("symbolic", "numeric") if m in used)
