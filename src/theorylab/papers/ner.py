r"""Deep active learning for NER: claims and figure (Shen, Yun, Lipton, Kronrod & Anandkumar,
ICLR 2018).

The active-learning claims read :class:`~theorylab.empirical.ner.study.NerActiveStudy`. A
strategy's *area under the learning curve* (AULC) for seed s is the trapezoid area of test
entity F1 against the share of the pool's words labelled, divided by the range of that share,

.. math:: \mathrm{AULC}_{q,s} = \frac{1}{x_R - x_0}\int_{x_0}^{x_R} F1_{q,s}(x)\,dx,

i.e. the curve's mean F1 (rounds 0..R). Strategy q beats q' when the 95 % t-interval over the
seeds that ran both (the quick form runs random and MNLP on more seeds than LC and BALD)
of the paired differences :math:`\mathrm{AULC}_{q,s} - \mathrm{AULC}_{q',s}` (same seed = same
initial labelled set and initial weights) lies above 0, with half-width at most
:data:`AULC_HALF_WIDTH` (a wider interval that straddles 0 is inconclusive). The paper's
headline statistic, the share of words at which the seed-mean curve first reaches 99 % of the
full-data CNN-CNN-LSTM F1, is reported in ``details``. The CRF claims compare the forward
algorithm and Viterbi with enumeration of all :math:`K^T` tag sequences.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import CIAbove, Equality, Threshold
from theorylab.plotting import figure, legend_below, savefig, style
from theorylab.stats import mean_ci

if TYPE_CHECKING:
    import pandas as pd

PAPER = "NER-AL"
STUDIES = {"ner-al": "theorylab.empirical.ner.study"}  # study name -> its module
AULC_HALF_WIDTH = 0.03   # F1 points / 100: a 95 % CI narrower than 3 F1 points decides
MARGIN = 0.03            # CNN-CNN-LSTM within 3 F1 points of the BiLSTM-CRF (full data)
F1_HALF_WIDTH = 0.03
REACH = 0.99             # the paper's "99 % of full-data F1"
CRF_CASES = 300          # random (T, K, scores) instances, T <= 5, K <= 4, float64
CRF_REL_TOL = 1e-12


def _study(ctx: Context):
    from theorylab.empirical.ner.study import NerActiveStudy
    return ctx.sized(NerActiveStudy())


def aulc(curves: pd.DataFrame) -> pd.DataFrame:
    """AULC per (strategy, seed) from the curve records."""
    rows = []
    for (q, s), g in curves.groupby(["strategy", "seed"]):
        g = g.sort_values("frac_words")
        x, y = g.frac_words.to_numpy(), g.f1.to_numpy()
        area = np.trapezoid(y, x) / (x[-1] - x[0]) if x[-1] > x[0] else float(y.mean())
        rows.append({"strategy": q, "seed": int(s), "aulc": float(area)})
    import pandas as pd
    return pd.DataFrame(rows)


def words_to_reach(curves: pd.DataFrame, target: float) -> dict[str, float]:
    """Per strategy: the share of words at which the seed-mean curve first reaches ``target``
    (NaN if it never does within the curve)."""
    out = {}
    for q, g in curves.groupby("strategy"):
        m = g.groupby("round").agg(x=("frac_words", "mean"), f1=("f1", "mean")).sort_index()
        hit = m[m.f1 >= target]
        out[str(q)] = float(hit.x.iloc[0]) if len(hit) else float("nan")
    return out


#: Verdicts of ``ner.al.mnlp_beats_random`` under earlier quick forms (recorded runs, not
#: recomputed: the settings changed after each, the criterion never did). MNLP − random AULC,
#: mean [95 % CI] over seeds.
EARLIER_QUICK = {
    "study version 1 (early stopping on dev F1, 10 % test split; 5 seeds)":
        "+0.059 [-0.024, 0.141], inconclusive",
    "study version 2 (lr 0.01, 50 steps per round; 5 seeds)":
        "-0.048 [-0.107, 0.012], inconclusive",
    "study version 3 (4 rounds of 1,000 words, 120 steps per round, dev F1 after every "
    "epoch; 5 seeds)": "+0.023 [-0.007, 0.053], inconclusive",
    "study version 4 training with version 3's rounds (4 x 1,000 words, 120 steps, dev F1 5 "
    "times per run; 5 seeds)": "+0.005 [-0.024, 0.034], fails",
}


def compare(ctx: Context, a: str, b: str) -> Verdict:
    """Verdict: AULC(a) − AULC(b) over the seeds that ran both lies above 0."""
    from theorylab.empirical.ner.study import curve_records, full_records
    study = _study(ctx)
    table = ctx.run(study)
    curves = curve_records(table)
    area = aulc(curves).pivot(index="seed", columns="strategy", values="aulc")
    diff = (area[a] - area[b]).dropna()
    mean, ci = mean_ci(diff.to_numpy())
    full = full_records(table)
    cnn_full = float(full[full.arch == "cnn"].f1.mean()) if (full.arch == "cnn").any() else np.nan
    area_ci = {q: (round(float(area[q].mean()), 4),
                   tuple(round(v, 4) for v in mean_ci(area[q].dropna())[1]))
               for q in area.columns}
    shared = diff[diff.index < study.n_seeds].to_numpy()  # the seeds every strategy ran
    final = curves[curves["round"] == curves["round"].max()]
    details = {"n_seeds": int(len(diff)), "per_seed": [round(float(v), 4) for v in diff]}
    if 2 <= len(shared) < len(diff):
        details[f"seeds_0_to_{study.n_seeds - 1}"] = {
            "mean": round(float(shared.mean()), 4),
            "ci": tuple(round(v, 4) for v in mean_ci(shared)[1])}
    details |= {"aulc_mean_ci": area_ci, "full_data_f1_cnn": cnn_full,
               f"share_of_words_to_{REACH:.0%}_of_full_f1": words_to_reach(curves, REACH * cnn_full),
               "last_round_share_of_words": float(final.frac_words.mean()),
               "last_round_f1": final.groupby("strategy").f1.mean().round(4).to_dict()}
    if ctx.quick and (a, b) == ("mnlp", "random"):
        details["earlier_quick_forms_recorded"] = EARLIER_QUICK
    return Verdict(measured=mean, ci=ci, criterion=CIAbove(0.0, AULC_HALF_WIDTH), details=details)


@claim("ner.al.mnlp_beats_random", paper=PAPER, kind="empirical",
       statement="MNLP acquisition's area under the learning curve (test entity F1 vs share of "
                 "words labelled) exceeds random sampling's (paired over seeds)")
def _(ctx: Context) -> Verdict:
    return compare(ctx, "mnlp", "random")


for _a, _b, _text in (("lc", "random", "least confidence vs random"),
                      ("bald", "random", "BALD (MC dropout) vs random"),
                      ("mnlp", "lc", "MNLP vs least confidence")):
    claim(f"ner.al.{_a}_vs_{_b}", paper=PAPER, kind="empirical", must_hold=False,
          statement=f"{_text}: AULC difference over seeds (reported as measured; the paper makes "
                    "no claim at this scale)")(lambda ctx, a=_a, b=_b: compare(ctx, a, b))


@claim("ner.model.cnn_near_bilstm_crf", paper=PAPER, kind="empirical", must_hold=False,
       statement=f"trained on the whole pool, the CNN-CNN-LSTM's test F1 is within {MARGIN:g} "
                 "(F1, absolute) of the BiLSTM-CRF's (paper, CoNLL-2003: 90.69 vs 90.89 for its "
                 "LSTM decoder); reported as measured")
def _(ctx: Context) -> Verdict:
    from theorylab.empirical.ner.study import full_records
    full = full_records(ctx.run(_study(ctx)))
    f1 = full.pivot(index="seed", columns="arch", values="f1")
    d = (f1["cnn"] - f1["bilstm_crf"]).to_numpy()
    mean, ci = mean_ci(d)
    sps = full.groupby("arch").sentences_per_s.mean()
    return Verdict(measured=mean, ci=ci, criterion=CIAbove(-MARGIN, F1_HALF_WIDTH),
                   details={arch: {"f1": round(float(f1[arch].mean()), 4),
                                   "ci": tuple(round(v, 4) for v in mean_ci(f1[arch])[1]),
                                   "train_sentences_per_s": round(float(sps[arch]), 1)}
                            for arch in f1.columns} | {"n_seeds": int(len(d))})


def _crf_cases(n: int = CRF_CASES):
    import torch
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        T, K = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(1, 5, (1,), generator=g))
        em = torch.randn(1, T, K, generator=g, dtype=torch.float64) * 3
        trans, start, end = (torch.randn(*s, generator=g, dtype=torch.float64) * 3
                             for s in ((K, K), (K,), (K,)))
        yield em, torch.ones(1, T, dtype=torch.bool), trans, start, end


@functools.cache
def _crf_vs_enumeration() -> tuple[float, int]:
    """Over the :func:`_crf_cases`, against enumeration of all K^T sequences: the worst
    relative error of the forward algorithm's log Z and the number of instances whose Viterbi
    path is not the highest-scoring sequence (one enumeration per instance serves both)."""
    from theorylab.empirical.ner.crf import brute_force, log_partition, viterbi
    worst, wrong = 0.0, 0
    for em, mask, trans, start, end in _crf_cases():
        logz, best, _ = brute_force(em[0], trans, start, end)
        got = float(log_partition(em, mask, trans, start, end)[0])
        worst = max(worst, abs(got - logz) / max(1.0, abs(logz)))
        wrong += tuple(viterbi(em, mask, trans, start, end)[0][0].tolist()) != best
    return worst, wrong


@claim("ner.crf.forward_exact", paper=PAPER, kind="theory",
       statement="the CRF forward algorithm's log Z equals log-sum-exp over all K^T tag "
                 f"sequences ({CRF_CASES} random instances, T <= 5, K <= 4, float64)")
def _(ctx: Context) -> Verdict:
    return Verdict(measured=_crf_vs_enumeration()[0], criterion=Threshold("<=", CRF_REL_TOL),
                   details={"cases": CRF_CASES})


@claim("ner.crf.viterbi_exact", paper=PAPER, kind="theory",
       statement="Viterbi returns the highest-scoring of all K^T tag sequences "
                 f"({CRF_CASES} random instances, T <= 5, K <= 4)")
def _(ctx: Context) -> Verdict:
    return Verdict(measured=_crf_vs_enumeration()[1], criterion=Equality(0),
                   details={"cases": CRF_CASES})


# ----------------------------------------------------------------------------- figure
_COLORS = {"random": "0.4", "lc": "C0", "mnlp": "C3", "bald": "C2"}
_LABELS = {"random": "random", "lc": "least confidence", "mnlp": "MNLP", "bald": "BALD"}


@figure("ner-learning-curves", paper=PAPER)
def learning_curves_figure(ctx: Context):
    """Test entity F1 vs share of the pool's words labelled, per strategy (mean and 95 % CI
    over the seeds every strategy ran, so that all curves share round 0), with the full-data F1
    of both taggers."""
    import matplotlib.pyplot as plt

    from theorylab.empirical.ner.study import curve_records, full_records
    table = ctx.load(_study(ctx))
    curves, full = curve_records(table), full_records(table)
    common = set.intersection(*(set(g.seed) for _, g in curves.groupby("strategy")))
    curves = curves[curves.seed.isin(common)]
    with style():
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for q in [q for q in _COLORS if q in set(curves.strategy)]:
            g = curves[curves.strategy == q].groupby("round")
            x = g.frac_words.mean().to_numpy() * 100
            stats = [mean_ci(v) for _, v in g.f1]
            m = np.array([s[0] for s in stats])
            lo = np.array([s[1][0] for s in stats])
            hi = np.array([s[1][1] for s in stats])
            ax.plot(x, m, "o-", color=_COLORS[q], label=_LABELS[q])
            ax.fill_between(x, lo, hi, color=_COLORS[q], alpha=0.15)
        for arch, ls in (("cnn", "--"), ("bilstm_crf", ":")):
            if (full.arch == arch).any():
                f = float(full[full.arch == arch].f1.mean())
                ax.axhline(f, ls=ls, color="k", lw=1,
                           label=f"full data, {'CNN-CNN-LSTM' if arch == 'cnn' else 'BiLSTM-CRF'}")
        ax.set(xlabel="% of the pool's words labelled", ylabel="test entity F1 (seqeval, strict)")
        legend_below(fig, [ax], ncol=3)
        return savefig(fig, ctx.figdir / "ner-learning-curves")
