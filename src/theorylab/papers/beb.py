r"""BEB claims and figures (Wolf, Wies, Avnery, Levine, Shashua, arXiv 2304.11082, ICML 2024).

Exact finite-state mixtures (:mod:`theorylab.simulations.beb_prompting`) check the bounds; the
symbolic derivations (:mod:`theorylab.theory.beb`) check the proofs' steps; a small neural LM
(:mod:`theorylab.empirical.beb_neural`) repeats the paper's Llama measurements at small scale.
The studies and derivations are imported inside the checks and figures (``theorylab list``
stays light).
"""

from __future__ import annotations

import math

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIAbove, CIBelow, CIContains, Equality, Measured, Threshold
from theorylab.plotting import figure, legend_below, legend_beside, log_ticks, savefig, style

PAPER = "BEB"
_SIM = "theorylab.simulations.beb_prompting"
STUDIES = {"beb-bounds": _SIM, "beb-misalignment": _SIM, "beb-lengths": _SIM,  # name -> module
           "beb-beta-bias": _SIM, "beb-rlhf": _SIM, "beb-neural": "theorylab.empirical.beb_neural"}
SLOPE_REL_TOL = 0.10  # centre-vs-log(1/alpha) slope within 10 % of 1/beta (finite-n, finite-alpha)
NUM_TOL = 1e-12       # float64 round-off allowed in "violation <= 0" (values are O(1) logs)
Z95 = 1.959963984540054  # two-sided 95 % normal quantile

# the paper's Llama-2-13B-chat numbers (agreeableness, no system prompt), for the figures/book;
# entry i is after i + 1 prompt sentences (1..10: the paper's curves start at 1 sentence)
PAPER_KL = [30.8, 17.6, 9.67, 7.98, 7.11, 5.84, 5.34, 4.54, 3.85, 3.23]
PAPER_ALIGNED_OF_32 = [32, 29.1, 6.8, 2, 0.9, 0.9, 2.4, 0.3, 0.4, 0.8]


def _curve(table, prefix):
    cols = sorted((c for c in table.columns if c.startswith(prefix)),
                  key=lambda c: int(c.rsplit("_", 1)[1]))
    return np.array([int(c.rsplit("_", 1)[1]) for c in cols]), cols


# ----------------------------------------------------------------------------- theory


@claim("beb.theory.derivations", paper=PAPER, kind="theory",
       statement="key lemma, T1-T5 and Eq. 7 follow step by step: every step proven by sympy or a "
                 "cited premise, the steps chain to the claim, mpmath spot checks as a second line")
def _(ctx: Context) -> Verdict:
    from theorylab.theory import beb as theory_beb
    from theorylab.theory.steps import step_counts
    checks = theory_beb.verify()
    n_ok = sum(c.holds for c in checks)  # a numeric-only step or a broken chain fails its derivation
    return Verdict(measured=n_ok, criterion=Equality(len(checks)),
                   details={**step_counts(checks), "status_by_step": {c.name: c.proved_by for c in checks},
                            "max_residual": max(c.max_abs_residual for c in checks)})


# ----------------------------------------------------------------------------- T1, Eq. 7


@claim("beb.t1.bound_holds", paper=PAPER, kind="simulation",
       statement="after the Viterbi-optimal prompt of T1 length (log1/a+log1/eps+log4)/beta, the "
                 "exact B_P(s*) < gamma + eps, on every random Markov-pair mixture and eps")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.beb_prompting import BoundStudy
    t = ctx.run(ctx.sized(BoundStudy()))
    cols = [c for c in t.columns if c.startswith("t1_excess_")]
    worst = float(t[cols].to_numpy().max())
    return Verdict(measured=worst, criterion=Threshold("<", 1.0),  # the proof gives <= (1-alpha)/2
                   details={"n_models": len(t), "epsilons": list(BoundStudy().epsilons),
                            "max_t1_len": int(t[[c for c in t.columns if c.startswith("t1_len_")]].to_numpy().max()),
                            "median_beta_def": float(t.beta_def.median()),
                            "median_log_ratio_per_sentence": float(t.t1_log_ratio_per_sentence_0.median())})


@claim("beb.t1.bound_holds_hmm", paper=PAPER, kind="simulation",
       statement="on random mixtures of HMMs, the beam-searched T1-length prompt gives "
                 "B_P(s*) < gamma + eps whenever its log-ratio reaches beta|s| (T1's premise), "
                 "and the key lemma bound holds on every prompt")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.beb_prompting import BoundStudy
    t = ctx.run(ctx.sized(BoundStudy()))
    k_cols = [c.rsplit("_", 1)[1] for c in t.columns if c.startswith("hmm_t1_excess_")]
    exc = np.concatenate([t[f"hmm_t1_excess_{k}"].to_numpy() for k in k_cols])
    prem = np.concatenate([t[f"hmm_premise_{k}"].to_numpy().astype(bool) for k in k_cols])
    worst = float(exc[prem].max()) if prem.any() else float("nan")
    lemma = float(t.hmm_lemma_max_violation.max())
    return Verdict(measured=worst,
                   criterion=AllOf({"premise_met": Threshold(">", 0.0),
                                    "excess": Threshold("<", 1.0),
                                    "lemma_violation": Threshold("<=", NUM_TOL)}),
                   parts={"premise_met": float(prem.mean()), "excess": worst,
                          "lemma_violation": lemma},
                   details={"frac_premise_met": float(prem.mean()),
                            "max_excess_all_prompts": float(exc.max()),
                            "lemma_max_violation": lemma, "n_models": len(t)})


@claim("beb.eq7.kl_bound_holds", paper=PAPER, kind="simulation",
       statement="Eq. 7 as the lemma states it, prompt by prompt: KL(P-(.|s)||P(.|s)) <= "
                 "log(1 + (1-a)/a P+(s)/P-(s)) on every prefix, and <= log(1 + (1-a)/a e^{-beta|s|}) "
                 "on every prefix whose log-ratio meets beta|s| (its premise); on Viterbi-optimal "
                 "prompts of every length of random mixtures and on every prefix of P--sampled prompts")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.beb_prompting import BoundStudy, SigmoidStudy
    t = ctx.run(ctx.sized(BoundStudy()))
    sg = ctx.run(ctx.sized(SigmoidStudy()))
    parts = {"optimal_beta_form": float(t.eq7_max_violation.max()),
             "optimal_sharp_form": float(t.eq7_sharp_max_violation.max()),
             "sampled_sharp_form": float(sg.eq7_sampled_sharp_max_violation.max()),
             "sampled_beta_form_on_premise": float(sg.eq7_sampled_beta_max_violation.max())}
    return Verdict(measured=max(parts.values()),
                   criterion=AllOf({k: Threshold("<=", NUM_TOL) for k in parts}), parts=parts,
                   details={"median_bound_over_exact_optimal": float(t.eq7_min_slack_ratio.median()),
                            "frac_sampled_prefixes_meeting_premise":
                                float(sg.eq7_sampled_frac_premise.mean())})


@claim("beb.eq7.mean_kl_vs_curve", paper=PAPER, kind="simulation", must_hold=False,
       statement="the mean KL over P--sampled prompts lies below the Eq. 7 curve at the mean rate "
                 "beta_bar at every length (reported: Eq. 7 bounds each prompt by its own "
                 "log-ratio, not the mean over prompts at beta_bar; by Jensen the mean may exceed it)")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.beb_prompting import SigmoidStudy
    from theorylab.theory import beb as theory_beb
    t = ctx.run(ctx.sized(SigmoidStudy()))
    ns, cols = _curve(t, "kl_full_")
    excess, where = [], []
    for x, g in t.groupby("log_inv_alpha"):
        beta = float(g.beta_stat.iloc[0])
        curve = np.array([theory_beb.eq7_kl_bound(math.exp(-x), beta, n) for n in ns])
        d = g[cols].to_numpy().mean(0) - curve
        excess.append(float(d[1:].max()))
        where.append(float(np.mean(d[1:] > 0)))
    return Verdict(measured=max(excess), criterion=Threshold("<=", 0.0),
                   details={"max_mean_kl_minus_curve_by_log_inv_alpha": excess,
                            "frac_lengths_mean_above_curve": where})


def _centre_fit(t):
    import statsmodels.api as sm
    d = t.dropna(subset=["centre"])
    X = sm.add_constant(d.log_inv_alpha.to_numpy())
    res = sm.OLS(d.centre.to_numpy(), X).fit(cov_type="HC3")
    lo, hi = res.conf_int(0.05)[1]
    return float(res.params[1]), (float(lo), float(hi)), float(d.beta_stat.iloc[0]), len(d)


@claim("beb.eq7.sigmoid_centre_slope", paper=PAPER, kind="simulation",
       statement="the misalignment curve of P--sampled prompts is a reverse sigmoid whose centre "
                 "grows linearly in log(1/alpha) with slope 1/beta, beta estimated independently "
                 "(the paper's way, from fresh P- prompts): slope x beta_hat = 1 within 10 %, CI "
                 "half-width <= 5 %")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.beb_prompting import SigmoidStudy
    t = ctx.run(ctx.sized(SigmoidStudy()))
    slope, ci, beta_stat, n_obs = _centre_fit(t)
    beta_hat = float(t.beta_sampled.mean())            # independent of the centres' samples
    beta_se = float(np.sqrt(np.sum(t.beta_sampled_se ** 2)) / len(t))
    slope_se = (ci[1] - ci[0]) / (2 * Z95)
    prod = slope * beta_hat
    rel_se = math.hypot(slope_se / slope, beta_se / beta_hat)   # delta method, independent parts
    ci_prod = (prod * (1 - Z95 * rel_se), prod * (1 + Z95 * rel_se))
    crit = Equality(1.0, rel_tol=SLOPE_REL_TOL, max_half_width=SLOPE_REL_TOL / 2)
    return Verdict(measured=prod, criterion=crit, ci=ci_prod,
                   details={"slope": slope, "slope_ci": ci, "beta_sampled": beta_hat,
                            "beta_sampled_ci": (beta_hat - Z95 * beta_se, beta_hat + Z95 * beta_se),
                            "beta_stationary": beta_stat, "slope_x_beta_stationary": slope * beta_stat,
                            "n_obs": n_obs, "ci_contains_1": bool(ci_prod[0] <= 1 <= ci_prod[1])})


# ----------------------------------------------------------------------------- T2..T5


def _register_length(thm: str, what: str) -> None:
    @claim(f"beb.{thm}.length_bound", paper=PAPER, kind="simulation",
           statement=f"{what}: the measured prompt length never exceeds the {thm.upper()} bound")
    def _(ctx: Context) -> Verdict:
        from theorylab.simulations.beb_prompting import LengthStudy
        t = ctx.run(ctx.sized(LengthStudy()))
        t = t[t.theorem == thm]
        ratio = (t.measured / t.bound).to_numpy()
        worst = float(np.max(ratio))
        return Verdict(measured=worst, criterion=Threshold("<=", 1.0),
                       details={"n_models": len(t), "median_measured_over_bound": float(np.median(ratio)),
                                "measured": t.measured.tolist(), "bound": t.bound.round(2).tolist()})


for _thm, _what in (("t2", "aligning prefix s0 ~ P+ then adversarial prompt (1-delta quantile)"),
                    ("t3", "conversation with P+ answers, adversarial questions (1-delta quantile)"),
                    ("t4", "best-of-n, n in {1,4,16,64}"),
                    ("t5", "random prompt sampled from P- (fraction >= 1-delta misaligned)")):
    _register_length(_thm, _what)


@claim("beb.t4.log_n_slope", paper=PAPER, kind="simulation",
       statement="best-of-n: the measured length grows with log n at most at T4's rate 1/beta: "
                 "in L_{m,n} = a_m + kappa log(n)/beta_m (model fixed effects, beta_m = beta_def, "
                 "n in {1,4,16,64}) the CI of kappa lies in (0, 1], half-width <= 0.25")
def _(ctx: Context) -> Verdict:
    import statsmodels.api as sm

    from theorylab.simulations.beb_prompting import LengthStudy
    t = ctx.run(ctx.sized(LengthStudy()))
    t = t[t.theorem == "t4"].reset_index(drop=True)
    nbs = LengthStudy().n_best
    y = np.concatenate([t[f"measured_n{n}"].to_numpy() for n in nbs])
    x = np.concatenate([np.log(n) / t.beta_def.to_numpy() for n in nbs])
    model_id = np.tile(np.arange(len(t)), len(nbs))
    X = np.column_stack([x, (model_id[:, None] == np.arange(len(t))[None]).astype(float)])
    res = sm.OLS(y, X).fit(cov_type="HC3")
    kappa, (lo, hi) = float(res.params[0]), tuple(float(v) for v in res.conf_int(0.05)[0])
    m = Measured(kappa, (lo, hi))
    return Verdict(measured=kappa, ci=(lo, hi),
                   criterion=AllOf({"kappa_above_0": CIAbove(0.0, max_half_width=0.25),
                                    "kappa_at_most_1": CIBelow(1.0, max_half_width=0.25, inclusive=True)}),
                   parts={"kappa_above_0": m, "kappa_at_most_1": m},
                   details={"mean_len_by_n": {str(n): float(t[f"measured_n{n}"].mean()) for n in nbs},
                            "mean_bound_by_n": {str(n): float(t[f"bound_n{n}"].mean()) for n in nbs},
                            "n_models": len(t)})


# ----------------------------------------------------------------------------- beta estimators


@claim("beb.beta.sampled_estimate_biased_up", paper=PAPER, kind="simulation",
       statement="beta estimated from P- prefixes (the paper's method) overestimates the "
                 "worst-case beta over all prefixes: beta_worst <= beta_def <= beta_paper")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.beb_prompting import BetaBiasStudy
    t = ctx.run(ctx.sized(BetaBiasStudy()))
    ratio = (t.beta_paper / t.beta_worst).to_numpy()
    disorder = float(np.max(t.beta_worst - t.beta_def))  # <= 0: beta_worst <= beta_def
    med = float(np.median(ratio))
    return Verdict(measured=med,
                   criterion=AllOf({"median_paper_over_worst": Threshold(">", 1.0),
                                    "max_worst_minus_def": Threshold("<=", NUM_TOL)}),
                   parts={"median_paper_over_worst": med, "max_worst_minus_def": disorder},
                   details={"frac_paper_gt_worst": float(np.mean(ratio > 1)),
                            "median_paper_over_def": float(np.median(t.beta_paper / t.beta_def)),
                            "median_t1_worst_over_t1_paper": float(np.median(t.t1_worst / t.t1_paper)),
                            "frac_adversarial_len_within_t1_paper": float(np.mean(t.adversarial_len <= t.t1_paper)),
                            "frac_sampled_median_len_within_t1_paper": float(np.mean(t.sampled_median_len <= t.t1_paper))})


@claim("beb.beta.biased_estimate_still_suffices_t1", paper=PAPER, kind="simulation",
       statement="despite the upward bias, the T1 length computed with the paper's sampled beta "
                 "(rounded up) still suffices for the optimal prompt on every mixture (its "
                 "log-ratio grows faster than any beta)")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.beb_prompting import BetaBiasStudy
    t = ctx.run(ctx.sized(BetaBiasStudy()))
    fail_paper = float(np.mean(t.adversarial_len > np.ceil(t.t1_paper)))
    fail_worst = float(np.mean(t.adversarial_len > np.ceil(t.t1_worst)))
    return Verdict(measured=fail_paper,  # fractions of mixtures where the T1 length falls short
                   criterion=AllOf({"frac_fail_beta_paper": Equality(0.0),
                                    "frac_fail_beta_worst": Equality(0.0)}),
                   parts={"frac_fail_beta_paper": fail_paper, "frac_fail_beta_worst": fail_worst},
                   details={"frac_fail_beta_worst": fail_worst,
                            "frac_needed_len_above_unrounded_t1_paper":
                                float(np.mean(t.adversarial_len > t.t1_paper)),
                            "frac_sampled_prompt_median_len_above_t1_paper":
                                float(np.mean(t.sampled_median_len > t.t1_paper)),
                            "n_models": len(t)})


# ----------------------------------------------------------------------------- RLHF


def _rlhf_table(ctx):
    from theorylab.simulations.beb_prompting import RLHFStudy
    return ctx.run(ctx.sized(RLHFStudy()))


@claim("beb.rlhf.alpha_shrinks", paper=PAPER, kind="simulation",
       statement="KL-regularised reward maximisation (pi ~ P e^{B/beta_RL}) lowers alpha "
                 "monotonically as beta_RL decreases")
def _(ctx: Context) -> Verdict:
    t = _rlhf_table(ctx)
    t = t.assign(strength=np.where(t.beta_rl == 0, 0.0, 1 / t.beta_rl.replace(0, np.nan)))
    mono = [bool(np.all(np.diff(g.sort_values("strength").log_inv_alpha) > 0))
            for _, g in t.groupby("model")]
    return Verdict(measured=float(np.mean(mono)), criterion=Equality(1.0),  # fraction monotone
                   details={"median_log_inv_alpha_by_beta_rl":
                            t.groupby("beta_rl").log_inv_alpha.median().to_dict()})


@claim("beb.rlhf.conjecture_beta_grows", paper=PAPER, kind="simulation", must_hold=False,
       statement="the paper's conjecture: RLHF makes P- much more distinguishable (pretrained "
                 "beta ~1-2 vs RLHF'd 5-20); measured as beta_def after / before the closed-form "
                 "RLHF pi ~ P e^{B/beta_RL} at beta_RL=2 (reported; may fail)")
def _(ctx: Context) -> Verdict:
    t = _rlhf_table(ctx)
    base = t[t.beta_rl == 0].set_index("model")
    strong = t[t.beta_rl == 2.0].set_index("model")
    ratio = (strong.beta_def / base.beta_def).to_numpy()
    med = float(np.median(ratio))
    lost = float(np.mean(~t[t.beta_rl > 0].misalignable.astype(bool)))
    return Verdict(measured=med, criterion=Threshold(">=", 2.0),
                   details={"ratio_range": [float(ratio.min()), float(ratio.max())],
                            "frac_tilted_models_no_longer_negative (gamma>=0)": lost,
                            "median_gamma_by_beta_rl": t.groupby("beta_rl").gamma.median().to_dict(),
                            "median_beta_def_by_beta_rl": t.groupby("beta_rl").beta_def.median().to_dict(),
                            "median_measured_len_by_beta_rl": t.groupby("beta_rl").measured.median().to_dict()})


# ----------------------------------------------------------------------------- figures


@figure("beb-misalignment", paper=PAPER)
def misalignment_figure(ctx: Context):
    """Paper Fig. 3 analogue: aligned fraction and P+ posterior vs prompt length; centre fit."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.beb_prompting import SigmoidStudy
    from theorylab.theory import beb as theory_beb
    t = ctx.load(ctx.sized(SigmoidStudy()))
    ns, cols = _curve(t, "post_plus_")
    _, acols = _curve(t, "aligned_")
    beta = float(t.beta_stat.iloc[0])
    with style():
        fig, axes = plt.subplots(3, 1, figsize=(8, 10.5))
        for x, g in t.groupby("log_inv_alpha"):
            f = g[cols].to_numpy().mean(0)
            line, = axes[0].plot(ns, f, label=f"log 1/α = {x:g}")
            alpha = math.exp(-x)
            axes[0].plot(ns, [theory_beb.eq7_aligned_bound(alpha, beta, n) for n in ns], "--",
                         color=line.get_color(), lw=0.8)
            axes[1].plot(ns, g[acols].to_numpy().mean(0), color=line.get_color())
        axes[0].set(xlabel="prompt sentences sampled from P₋", ylabel="mean 1 − w(s) (P₊ weight)",
                    title="posterior weight of P₊; dashed: Eq. 7 at β̄")
        legend_beside(axes[0], title="mixture weight α")
        axes[1].set(xlabel="prompt sentences sampled from P₋", ylabel="aligned fraction B_P(s)",
                    title="fraction of aligned continuations (colours as above)")
        xmax = min(int(ns.max()), int(3 * np.nanmax(t.centre)) + 2)
        axes[0].set_xlim(0, xmax)
        axes[1].set_xlim(0, xmax)
        slope, ci, beta, _ = _centre_fit(t)
        axes[2].plot(t.log_inv_alpha, t.centre, "o", ms=4, label="measured centre")
        xs = np.linspace(0, t.log_inv_alpha.max(), 50)
        axes[2].plot(xs, xs / beta, "k--", label=f"log(1/α)/β̄, 1/β̄ = {1 / beta:.3f}")
        axes[2].set(xlabel="log 1/α [nats]", ylabel="sigmoid centre (sentences)",
                    title=f"centre vs log 1/α: fitted slope {slope:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
        legend_beside(axes[2])
        return savefig(fig, ctx.figdir / "beb-misalignment")


@figure("beb-kl", paper=PAPER)
def kl_figure(ctx: Context):
    """Paper Fig. 2 analogue: KL(P-(.|s) || P(.|s)) vs prompt sentences, with Eq. 7."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.beb_prompting import SigmoidStudy
    from theorylab.theory import beb as theory_beb
    t = ctx.load(ctx.sized(SigmoidStudy()))
    ns, cols = _curve(t, "kl_full_")
    beta = float(t.beta_stat.iloc[0])
    with style():
        fig, ax = plt.subplots(figsize=(8, 4.6))
        for x, g in t.groupby("log_inv_alpha"):
            line, = ax.semilogy(ns, g[cols].to_numpy().mean(0), label=f"log 1/α = {x:g}")
            ax.semilogy(ns, [theory_beb.eq7_kl_bound(math.exp(-x), beta, n) for n in ns], "--",
                        color=line.get_color(), lw=0.8)
        ax.semilogy(np.arange(1, 11), PAPER_KL, "ks-", ms=3, label="paper, Llama-2-13B-chat")
        ax.set(xlabel="prompt sentences sampled from P₋", ylabel="KL(P₋(·|s) ‖ P(·|s)) [nats]",
               title="exact mixture (solid) vs Eq. 7 at β̄ (dashed)", ylim=(1e-6, 100),
               xlim=(0, min(int(ns.max()), int(2 * np.nanmax(t.centre)) + 4)))
        legend_beside(ax)
        return savefig(fig, ctx.figdir / "beb-kl")


@figure("beb-lengths", paper=PAPER)
def lengths_figure(ctx: Context):
    """Measured prompt lengths vs the T1-T5 bounds (log scale), per random mixture."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.beb_prompting import LengthStudy
    t = ctx.load(ctx.sized(LengthStudy()))
    thms = ["t1", "t2", "t3", "t4", "t5"]
    with style():
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        for k, thm in enumerate(thms):
            g = t[t.theorem == thm]
            x = k + np.linspace(-0.2, 0.2, len(g))
            ax.semilogy(x, g.bound, "v", color="C0", label="bound" if k == 0 else None)
            ax.semilogy(x, g.measured, "o", color="C1", label="measured" if k == 0 else None)
        ax.set_xticks(range(len(thms)), [s.upper() for s in thms])
        ax.set(xlabel="theorem of the paper (one point per random mixture)",
               ylabel="prompt length (sentences)", title="BEB bounds vs exact measured lengths")
        legend_beside(ax)
        return savefig(fig, ctx.figdir / "beb-lengths")


@figure("beb-rlhf", paper=PAPER)
def rlhf_figure(ctx: Context):
    """alpha, beta, gamma and the needed prompt length vs RLHF strength 1/beta_RL."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.beb_prompting import RLHFStudy
    t = ctx.load(ctx.sized(RLHFStudy()))
    t = t.assign(strength=np.where(t.beta_rl == 0, 0.0, 1 / t.beta_rl.where(t.beta_rl > 0, 1)))
    with style():
        fig, axes = plt.subplots(2, 2, figsize=(8, 6.5))
        axes = axes.ravel()
        for ax, col, lab in zip(axes, ["log_inv_alpha", "beta_def", "gamma", "measured"],
                                ["log 1/α [nats]", "β (definition) [nats]", "γ [nats]",
                                 "needed length (sentences)"],
                                strict=True):
            for _, g in t.groupby("model"):
                g = g.sort_values("strength")
                ax.plot(g.strength, g[col].replace(np.inf, np.nan), "o-", ms=3, alpha=0.7)
            ax.set(xlabel="RLHF strength 1/β_RL", ylabel=lab)
        axes[2].axhline(0, color="k", lw=0.8)
        fig.suptitle("closed-form RLHF π ∝ P·exp(B/β_RL) on Markov mixtures (one line per mixture)")
        return savefig(fig, ctx.figdir / "beb-rlhf")


@figure("beb-beta-bias", paper=PAPER)
def beta_bias_figure(ctx: Context):
    """The paper's sampled beta vs the worst-case and definitional beta."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.beb_prompting import BetaBiasStudy
    t = ctx.load(ctx.sized(BetaBiasStudy()))
    with style():
        fig, ax = plt.subplots(figsize=(6.5, 6))
        ax.loglog(t.beta_worst, t.beta_paper, "o", ms=4, label="β_paper (sampled, P₋ prefixes)")
        ax.loglog(t.beta_worst, t.beta_def, "s", ms=3, label="β_def (inf_n E over P₋ prefixes)")
        lim = [t.beta_worst.min() * 0.8, t.beta_paper.max() * 1.2]
        ax.loglog(lim, lim, "k--", lw=0.8, label="y = x")
        ax.set(xlabel="β_worst (inf over all prefixes) [nats]", ylabel="β estimate [nats]",
               title="upward bias of prefix-sampled β")
        log_ticks(ax)
        legend_below(fig, ncol=1)
        return savefig(fig, ctx.figdir / "beb-beta-bias")


# ----------------------------------------------------------------------------- neural LM


def _neural(ctx):
    from theorylab.empirical.beb_neural import NeuralBEBStudy
    study = ctx.sized(NeuralBEBStudy())
    return study, ctx.run(study)


def _mean_curve(t, prefix, n_max):
    return np.array([t[f"{prefix}_{n}"].mean() for n in range(n_max + 1)])


# Criteria from the paper's Llama-2-13B-chat numbers (agreeableness, no system prompt), decided
# before measuring: Fig. 2's KL falls from 30.8 (1 sentence) to 3.23 (10 sentences), a ratio of
# 0.105; Fig. 3's aligned responses fall from 32 to 0.8 of 32, a ratio of 0.025. Our mixture's
# beta (~0.8 nats per sentence) is far below Llama's (~20), so these drops are not predictions
# for our model: the two comparisons are reported (must_hold=False), with a CI over prompts; the
# must-hold neural claims compare the trained LM with its exact generating mixture.
PAPER_KL_RATIO = PAPER_KL[-1] / PAPER_KL[0]                       # 0.105
PAPER_ALIGNED_RATIO = PAPER_ALIGNED_OF_32[-1] / PAPER_ALIGNED_OF_32[0]   # 0.025


def _pooled(t, col):
    """Mean over replicates of a per-replicate estimate, with a normal 95 % CI from the
    replicates' standard errors over prompts (``col + '_se'``)."""
    est = float(t[col].mean())
    se = float(np.sqrt(np.sum(t[f"{col}_se"] ** 2)) / len(t))
    return est, (est - Z95 * se, est + Z95 * se)


def _register_paper_ratio(kind: str, paper_ratio: float, fig: str, what: str) -> None:
    @claim(f"beb.neural.{kind}_drop_vs_paper", paper=PAPER, kind="empirical", must_hold=False,
           statement=f"{fig} at small scale: {what} after 10 / after 1 P- prompt sentences falls at "
                     f"least as much as the paper's ({paper_ratio:.3g} for Llama-2-13B-chat): CI "
                     "below it (reported: Llama's beta ~20 vs ours ~0.8)")
    def _(ctx: Context) -> Verdict:
        study, t = _neural(ctx)
        est, ci = _pooled(t, f"{kind}_ratio_{study.n_prompt}_1")
        return Verdict(measured=est, ci=ci,
                       criterion=CIBelow(paper_ratio, max_half_width=paper_ratio / 2),
                       details={"paper_ratio_10_over_1": paper_ratio, "n_reps": len(t)})


_register_paper_ratio("kl", PAPER_KL_RATIO, "Fig. 2", "KL(P-_hat(.|s) || P_hat(.|s))")
_register_paper_ratio("aligned", PAPER_ALIGNED_RATIO, "Fig. 3", "the aligned fraction (of 32)")


@claim("beb.neural.kl_decreases", paper=PAPER, kind="empirical",
       statement="Fig. 2 at small scale: KL(P-_hat(.|s) || P_hat(.|s)) of a trained LM falls with "
                 "the number of P- prompt sentences: KL after 10 / after 1 sentence, CI < 1")
def _(ctx: Context) -> Verdict:
    from scipy.stats import spearmanr
    study, t = _neural(ctx)
    kl = _mean_curve(t, "kl_neural", study.n_prompt)
    est, ci = _pooled(t, f"kl_ratio_{study.n_prompt}_1")
    rho = float(spearmanr(np.arange(1, len(kl)), kl[1:]).statistic)
    return Verdict(measured=est, ci=ci, criterion=CIBelow(1.0, max_half_width=0.5),
                   details={"spearman": rho, "kl_neural": kl.round(4).tolist(),
                            "kl_exact": _mean_curve(t, "kl_exact", study.n_prompt).round(4).tolist(),
                            "paper_ratio_10_over_1": PAPER_KL_RATIO})


@claim("beb.neural.misaligns", paper=PAPER, kind="empirical",
       statement="Fig. 3 at small scale: the fraction of aligned continuations (of 32 sampled) "
                 "falls with the number of P- prompt sentences: after 10 / after 1 sentence, CI < 1")
def _(ctx: Context) -> Verdict:
    study, t = _neural(ctx)
    al = _mean_curve(t, "aligned_neural", study.n_prompt)   # al[n]: after n sentences, al[0]: none
    est, ci = _pooled(t, f"aligned_ratio_{study.n_prompt}_1")
    return Verdict(measured=est, ci=ci, criterion=CIBelow(1.0, max_half_width=0.5),
                   details={"ratio_10_over_none": float(al[-1] / al[0]),
                            "paper_ratio_10_over_1": PAPER_ALIGNED_RATIO,
                            "aligned_neural": al.round(4).tolist(),
                            "aligned_exact": _mean_curve(t, "aligned_exact", study.n_prompt).round(4).tolist()})


@claim("beb.neural.tracks_exact", paper=PAPER, kind="empirical", must_hold=False,
       statement="the trained LM's aligned probability equals the exact generating mixture's B_P "
                 "on the same prompts: the mean signed gap (over prompts and 0..10 sentences) has a "
                 "CI that contains 0, half-width <= 0.01 (reported: not a statement of the paper; "
                 "a small LM trained on finite data keeps a bias of about 0.01 that this detects)")
def _(ctx: Context) -> Verdict:
    study, t = _neural(ctx)
    a_n = _mean_curve(t, "aligned_prob_neural", study.n_prompt)
    a_x = _mean_curve(t, "aligned_exact", study.n_prompt)
    est, ci = _pooled(t, "gap")
    return Verdict(measured=est, ci=ci, criterion=CIContains(0.0, max_half_width=0.01),
                   details={"mean_abs_gap_of_curves": float(np.mean(np.abs(a_n - a_x))),
                            "max_abs_gap_of_curves": float(np.max(np.abs(a_n - a_x)))})


@claim("beb.neural.beta_estimate", paper=PAPER, kind="empirical", must_hold=False,
       statement="beta estimated the paper's way (sampled log-ratio of fine-tuned proxies P-_hat, "
                 "P+_hat) equals the exact KL(P-||P+) of the generating mixture on the same prompts: "
                 "CI of the per-prompt difference contains 0 (reported: the paper states no accuracy "
                 "for its estimator)")
def _(ctx: Context) -> Verdict:
    _, t = _neural(ctx)
    est, exact = float(t.beta_hat.mean()), float(t.beta_exact_on_prompts.mean())
    diff, ci = _pooled(t, "beta_diff")
    return Verdict(measured=diff, ci=ci, criterion=CIContains(0.0, max_half_width=0.05 * exact),
                   details={"beta_hat": est, "beta_exact_on_prompts": exact,
                            "relative_error": est / exact - 1, "beta_stationary": float(t.beta_stat.mean()),
                            "sigma2_hat": float(t.sigma2_hat.mean()),
                            "sigma2_exact": float(t.sigma2_exact_on_prompts.mean()),
                            "train_seconds": float(t.train_seconds.sum()),
                            "device": str(t.device.iloc[0])})


@figure("beb-neural", paper=PAPER)
def neural_figure(ctx: Context):
    """Figs. 2-3 at small scale: neural LM vs exact mixture vs the paper's Llama numbers."""
    import matplotlib.pyplot as plt

    from theorylab.empirical.beb_neural import NeuralBEBStudy
    study = ctx.sized(NeuralBEBStudy())
    t = ctx.load(study)
    ns = np.arange(study.n_prompt + 1)
    with style():
        fig, axes = plt.subplots(2, 1, figsize=(8, 8))
        axes[0].semilogy(ns, _mean_curve(t, "kl_neural", study.n_prompt), "o-", label="TinyLM (ours)")
        axes[0].semilogy(ns, _mean_curve(t, "kl_exact", study.n_prompt), "s--",
                         label="exact generating mixture")
        axes[0].semilogy(np.arange(1, 11), PAPER_KL, "k^:", label="paper, Llama-2-13B-chat")
        axes[0].set(xlabel="prompt sentences sampled from P₋", ylabel="KL(P₋(·|s) ‖ P(·|s)) [nats]",
                    title="Fig. 2 at small scale")
        axes[1].plot(ns, _mean_curve(t, "aligned_neural", study.n_prompt), "o-",
                     label=f"TinyLM: aligned of {study.n_continuations} samples")
        axes[1].plot(ns, _mean_curve(t, "aligned_exact", study.n_prompt), "s--",
                     label="exact B_P(s)")
        axes[1].plot(np.arange(1, 11), np.array(PAPER_ALIGNED_OF_32) / 32, "k^:",
                     label="paper (of 32), x = sentences")
        axes[1].set(xlabel="prompt sentences sampled from P₋", ylabel="fraction aligned",
                    title="Fig. 3 at small scale")
        for ax in axes:
            legend_beside(ax)
        return savefig(fig, ctx.figdir / "beb-neural")
