r"""Translation metrics: sacrebleu's BLEU and chrF with their signatures, and the paired bootstrap.

No BLEU is computed here: every score comes from ``sacrebleu`` (corpus BLEU with its default
13a tokenisation, chrF with β = 2), and each result carries sacrebleu's signature string.

**Paired bootstrap** (Koehn 2004; sacrebleu's ``paired_bs``, the Moses script's test). Draw R
resamples of the n test items with replacement (the same index sets for both systems), score
each resample with sacrebleu from the items' sufficient statistics, and take the differences
:math:`\Delta_r = M(\text{sys}, I_r) - M(\text{base}, I_r)`. The 95 % interval of Δ is
sacrebleu's percentile rule (the ⌊R/40⌋-th smallest and largest :math:`\Delta_r`).
:func:`paired_bootstrap` runs sacrebleu's :class:`~sacrebleu.significance.PairedTest` (its p-value
and the systems' intervals) and draws the identical index sets (sacrebleu's generator and seed)
to get the :math:`\Delta_r`; a test checks that its resampled system scores equal sacrebleu's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["score", "paired_bootstrap", "METRICS"]

METRICS = ("bleu", "chrf")


def _metric(name: str):
    from sacrebleu.metrics import BLEU, CHRF
    return {"bleu": BLEU, "chrf": CHRF}[name]()


def score(hyps: Sequence[str], refs: Sequence[str], metric: str = "bleu") -> tuple[float, str]:
    """(corpus score, sacrebleu signature) of ``hyps`` against one reference each."""
    m = _metric(metric)
    return float(m.corpus_score(list(hyps), [list(refs)]).score), str(m.get_signature())


def paired_bootstrap(base: Sequence[str], system: Sequence[str], refs: Sequence[str],
                     metric: str = "bleu", n_samples: int = 1000) -> dict:
    """Paired bootstrap of ``system`` against ``base`` on the same references: the scores, their
    difference Δ with its 95 % interval, sacrebleu's p-value and signature."""
    from sacrebleu.significance import PairedTest
    if not (len(base) == len(system) == len(refs)) or not refs:
        from theorylab.errors import InputError
        raise InputError(f"'base', 'system' and 'refs' must be non-empty and of one length. Got "
                         f"{len(base)}, {len(system)}, {len(refs)}.")
    name = {"bleu": "BLEU", "chrf": "chrF2"}[metric]
    test = PairedTest([("base", list(base)), ("system", list(system))], {name: _metric(metric)},
                      references=[list(refs)], test_type="bs", n_samples=n_samples)
    sigs, res = test()
    base_res, sys_res = res[name]
    m = _metric(metric)
    stats = [np.asarray(m._extract_corpus_statistics(list(h), [list(refs)]), dtype="float32")
             for h in (base, system)]
    seed = os.environ.get("SACREBLEU_SEED", "12345")   # sacrebleu's own default
    rng = np.random.default_rng(None if seed.lower() == "none" else int(seed))
    idx = rng.choice(len(refs), size=(n_samples, len(refs)), replace=True)
    boot = [np.array([m._compute_score_from_stats(s[i].sum(0)).score for i in idx])
            for s in stats]
    d = np.sort(boot[1] - boot[0])
    lo = n_samples // 40
    return {"metric": metric, "base": float(base_res.score), "system": float(sys_res.score),
            "delta": float(sys_res.score - base_res.score),
            "ci": (float(d[lo]), float(d[n_samples - lo - 1])),
            "p_value": float(sys_res.p_value), "system_boot_mean": float(boot[1].mean()),
            "sacrebleu_system_mean": float(sys_res.mean), "n": len(refs),
            "n_samples": n_samples, "signature": str(sigs[name])}
