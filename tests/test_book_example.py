"""The book's "how to add a study" example runs as printed: a staged study, long records, a claim."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "book" / "examples"


@pytest.fixture(scope="module")
def example():
    sys.path.insert(0, str(EXAMPLES))  # spawned workers inherit sys.path
    import ols_study
    return ols_study


def test_the_worked_example_holds_and_reuses_its_data_sets(example, tmp_path):
    from theorylab.claims import Context
    from theorylab.store import Store
    from theorylab.sweep import Sweeper
    with Store(tmp_path / "s.sqlite") as store, Sweeper(store, "process", n_workers=2,
                                                         progress=False) as sweeper:
        v = example.ols_rate.check(Context(store, sweeper, quick=True))
        assert v.status == "holds", (v.measured, v.ci)
        assert -1.1 < v.measured < -0.95 and v.ci[0] < v.measured < v.ci[1]
        arts = store.artifacts()
        assert len(arts) == 60 and set(arts.stage) == {"data"}
        stamps = {p: (store.artifact_root / p).stat().st_mtime_ns for p in arts.path}
        more = Context(store, sweeper).run(example.OLSStudy(n_reps=70))
        assert len(store.artifacts()) == 70        # 10 new data sets, the first 60 reused
        assert {p: (store.artifact_root / p).stat().st_mtime_ns for p in arts.path} == stamps
    assert len(more) == 70 * len(example.OLSStudy().ns)
    # the excess risk matches its exact mean d σ² / (n − d − 1) within sampling error
    mean = more.groupby("n").excess.mean()
    exact = 5 / (mean.index.to_numpy() - 6)
    assert np.all(np.abs(mean.to_numpy() / exact - 1) < 0.25)


def test_the_example_criterion_fails_a_wrong_rate(example):
    from theorylab.criteria import RateBand
    c = RateBand((-1.0, -0.97), max_half_width=0.1)
    assert c.decide(-0.5, (-0.55, -0.45)) == "fails"
    assert c.decide(-1.0, (-1.4, -0.6)) == "inconclusive"
