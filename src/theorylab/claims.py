"""The claims registry: every paper's claims, each with the code that checks it by measurement.

A claim is registered once with :func:`claim`; the CLI (``theorylab list|verify``), the tests and
the book are views of :data:`REGISTRY`, which the paper modules fill when imported
(:func:`theorylab.papers.load_all`; this module imports no paper). A check receives a
:class:`Context` (quick or full form, the results store, the sweep executor) and returns a
:class:`Verdict` whose ``measured`` value comes from the computation and whose criterion
(:mod:`theorylab.criteria`) decides the status, a test that can fail.

Example
-------
>>> from theorylab.claims import claim, Verdict
>>> from theorylab.criteria import Equality
>>> @claim("demo.square", paper="DEMO", kind="theory", statement="2² = 4", register=False)
... def _(ctx):
...     return Verdict(measured=2 ** 2, criterion=Equality(4))
>>> v = _.check(None)
>>> v.holds, v.status, v.expected
(True, 'holds', '= 4')
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theorylab.criteria import Criterion
from theorylab.errors import ConfigError, TheorylabError

if TYPE_CHECKING:  # the registry stays light: `theorylab list` imports no pandas
    import pandas as pd

    from theorylab.store import Store
    from theorylab.study import Study
    from theorylab.sweep import Sweeper

__all__ = ["Claim", "Verdict", "Context", "ClaimResult", "REGISTRY", "KINDS", "claim",
           "select", "verify"]

KINDS = ("theory", "simulation", "empirical")


@dataclass(frozen=True)
class Verdict:
    """Outcome of one claim check, decided by its criterion.

    ``measured`` is the headline number (float, bool or short string) with its (lo, hi) ``ci``
    (or None); ``criterion`` (:mod:`theorylab.criteria`) decides ``status`` ("holds", "fails",
    "inconclusive") and renders ``expected``. An :class:`~theorylab.criteria.AllOf` criterion
    decides on ``parts`` (name → value or ``Measured``) instead. ``details``: any JSON-able extra
    numbers worth reporting. ``holds`` is True only for status "holds".
    """

    measured: Any
    criterion: Criterion
    ci: tuple[float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    parts: Mapping[str, Any] | None = None
    status: str = field(init=False)

    def __post_init__(self):
        if not isinstance(self.criterion, Criterion):
            raise TypeError(f"'criterion' of Verdict must be a theorylab.criteria.Criterion. "
                            f"Got {type(self.criterion).__name__}.")
        on = self.parts if self.parts is not None else self.measured
        object.__setattr__(self, "status", self.criterion.decide(on, self.ci))

    @property
    def holds(self) -> bool:
        return self.status == "holds"

    @property
    def expected(self) -> str:
        return self.criterion.render()


@dataclass(frozen=True)
class Claim:
    """A registered claim: id (``paper.topic.name``), paper, kind, statement and its check."""

    id: str
    paper: str
    kind: str
    statement: str
    check: Callable[[Context], Verdict]
    must_hold: bool = True


@dataclass
class ClaimResult:
    """One row of ``theorylab verify``: the claim, its verdict (or error) and the seconds taken."""

    claim: Claim
    verdict: Verdict | None
    seconds: float
    error: str | None = None

    @property
    def holds(self) -> bool:
        return self.verdict is not None and self.verdict.holds

    @property
    def status(self) -> str:
        """The verdict's status; a check that raised "fails"."""
        return self.verdict.status if self.verdict is not None else "fails"

    def to_json(self) -> dict[str, Any]:
        v = self.verdict
        return {"id": self.claim.id, "paper": self.claim.paper, "kind": self.claim.kind,
                "statement": self.claim.statement,
                "expected": _plain(v.expected) if v else None,
                "measured": _plain(v.measured) if v else None,
                "ci": [_plain(c) for c in v.ci] if v and v.ci is not None else None,
                "holds": self.holds, "status": self.status, "must_hold": self.claim.must_hold,
                "criterion": _plain(v.criterion.describe()) if v else None,
                "parts": _plain(dict(v.parts)) if v and v.parts is not None else None,
                "seconds": round(self.seconds, 3),
                "details": _plain(v.details) if v else {}, "error": self.error}


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


REGISTRY: dict[str, Claim] = {}


def claim(id: str, *, paper: str, kind: str, statement: str, must_hold: bool = True,
          register: bool = True) -> Callable[[Callable[[Context], Verdict]], Claim]:
    """Decorator registering ``check(ctx) -> Verdict`` as claim ``id``."""
    if kind not in KINDS:
        raise ConfigError(f"'kind' of claim {id} must be one of {', '.join(KINDS)}. Got {kind!r}.")

    def wrap(check: Callable[[Context], Verdict]) -> Claim:
        c = Claim(id=id, paper=paper, kind=kind, statement=statement, check=check,
                  must_hold=must_hold)
        if register:
            if id in REGISTRY and REGISTRY[id].check.__code__ is not check.__code__:
                raise ConfigError(f"claim id '{id}' is registered twice.")
            REGISTRY[id] = c
        return c

    return wrap


def select(prefixes: Iterable[str] = ()) -> list[Claim]:
    """Claims whose id equals or starts with one of ``prefixes`` (all when empty), sorted by id.

    A prefix matches whole dot-separated components: ``moe`` selects ``moe.x`` but not ``moex``.
    Only registered claims are seen: load the papers first (:func:`theorylab.papers.load_all`).
    """
    prefixes = list(prefixes)
    if not prefixes:
        return [REGISTRY[k] for k in sorted(REGISTRY)]
    chosen = []
    for p in prefixes:
        hits = [k for k in REGISTRY if k == p or k.startswith(p.rstrip(".") + ".")]
        if not hits:
            raise ConfigError(f"unknown claim id or prefix '{p}'; see `theorylab list` "
                              f"(papers: {', '.join(sorted({c.id.split('.')[0] for c in REGISTRY.values()}))}).")
        chosen.extend(h for h in hits if h not in chosen)
    return [REGISTRY[k] for k in sorted(chosen)]


class Context:
    """What a check may use: the quick flag, the store, the sweep executor and a figure folder."""

    def __init__(self, store: Store, sweeper: Sweeper, quick: bool = False,
                 figdir: str | Path = "theorylab-results/figures"):
        self.store = store
        self.sweeper = sweeper
        self.quick = quick
        self.figdir = Path(figdir)
        self._cache: dict[Any, pd.DataFrame] = {}

    def sized(self, study: Study) -> Study:
        """``study.quick()`` in quick mode, else ``study``."""
        return study.quick() if self.quick else study

    def run(self, study: Study) -> pd.DataFrame:
        """Run (or resume) ``study`` through the sweep and return its complete table."""
        if study not in self._cache:
            self._cache[study] = self.sweeper.run(study)
        return self._cache[study].copy()

    def load(self, study: Study) -> pd.DataFrame:
        """The stored table of ``study``; raises StoreError if any unit is missing (no compute)."""
        return self.store.table(study, require_complete=True)


def verify(claims: Iterable[Claim], ctx: Context,
           on_result: Callable[[ClaimResult], None] | None = None) -> list[ClaimResult]:
    """Check each claim; a check that raises is reported as failed with its error, never lost."""
    results = []
    for c in claims:
        t0 = time.perf_counter()
        try:
            verdict = c.check(ctx)
            if not isinstance(verdict, Verdict):
                raise TypeError(f"check of {c.id} returned {type(verdict).__name__}, not Verdict")
            res = ClaimResult(c, verdict, time.perf_counter() - t0)
        except KeyboardInterrupt:
            raise
        except TheorylabError as exc:
            res = ClaimResult(c, None, time.perf_counter() - t0, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a broken check is a failed claim, reported
            last = traceback.extract_tb(exc.__traceback__)[-1]
            res = ClaimResult(c, None, time.perf_counter() - t0,
                              error=f"{type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})")
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results
