r"""EXO claims and figures (Ji et al., "Towards Efficient Exact Optimization of Language Model
Alignment", arXiv 2402.00856, ICML 2024).

Theory (:mod:`theorylab.theory.exo`) checks the derivations; tabular studies
(:mod:`theorylab.simulations.exo_alignment`) check the gradient equivalence and mode-seeking; the
sequence task (:mod:`theorylab.empirical.exo_sequence`) measures the reward–KL frontier.
The studies and derivations are imported inside the checks and figures (``theorylab list``
stays light).
"""

from __future__ import annotations

import math

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIAbove, Equality, Measured, Threshold
from theorylab.plotting import figure, legend_below, legend_beside, log_ticks, savefig, style
from theorylab.stats import mean_ci

PAPER = "EXO"

# Human names of the studies' method codes, for legends (one mapping for every EXO figure).
METHOD_NAMES = {
    "exo_rw": "EXO, K rewarded samples", "dpo_rw": "DPO, K rewarded samples",
    "exo_pref": "EXO, preference pairs", "dpo_pref": "DPO, preference pairs",
    "exo": "EXO, K samples", "dpo": "DPO, K samples", "exo_exact": "EXO, exact (K → ∞)",
    "dpo_exact": "DPO, exact (K → ∞)", "rl_exact": "exact RL (max J)",
}
STUDIES = {"exo-gradient-equivalence": "theorylab.simulations.exo_alignment",  # name -> module
           "exo-mode-seeking": "theorylab.simulations.exo_alignment",
           "exo-sequence-frontier": "theorylab.empirical.exo_sequence"}
COS_TARGET = 0.99      # issue 4: cosine >= 0.99 by K = 64 on the default (50-way) problem
K_TARGET = 64
J_REL_TOL = 0.02       # EXO's stochastic solution within 2 % of the class's RL optimum J
VALLEY_MAX = 0.05      # "mode-seeking": < 5 % of the policy's mass in the valley between bumps
COS_HALF_WIDTH = 0.005  # cosine CI precision: half the margin 1 - COS_TARGET above the target
GAP_HALF_WIDTH = 0.1   # cosine-gap CI precision: a gap under 0.1 in cosine is no practical difference
REWARD_HALF_WIDTH = 0.01  # frontier-gap CI precision: a tenth of the gain alignment gives (≈ 0.1)
# Reference check of the K → ∞ argument (not numbers from the paper; book page "Papers and
# formulas"): cos(K-sample grad, exact grad) on a 50-way categorical, β_r=0.5, β_π=0.7
RECON_COS = {2: 0.88, 8: 0.977, 64: 0.998, 4096: 0.9999}


# ----------------------------------------------------------------------------- theory

@claim("exo.theory.derivations", paper=PAPER, kind="theory",
       statement="softmax-policy gradient, KL(pi^bpi||pi*) = -J/beta_r + log Z, zero loss and "
                 "gradient at pi ∝ pi_sft e^{r/(beta_r beta_pi)}, Eq. 16 = KL, and DPO's forward-KL "
                 "stationary point differing in a restricted class: every step proven by sympy, "
                 "mpmath spot checks and float64 kernels as a second line")
def _(ctx: Context) -> Verdict:
    from theorylab.theory import exo as theory_exo
    from theorylab.theory.steps import step_counts
    checks = theory_exo.verify()
    n_ok = sum(c.holds for c in checks)  # a numeric-only step or a broken chain fails its derivation
    return Verdict(measured=n_ok, criterion=Equality(len(checks)),
                   details={**step_counts(checks), "status_by_step": {c.name: c.proved_by for c in checks},
                            "max_residual": max(c.max_abs_residual for c in checks),
                            "restricted_class": next(c.details["second_line"] for c in checks
                                                     if c.name == "dpo_stationary_point_differs")})


# ----------------------------------------------------------------------------- gradients

def _gradient_table(ctx):
    from theorylab.simulations.exo_alignment import GradientEquivalenceStudy
    return ctx.run(ctx.sized(GradientEquivalenceStudy()))


def _by_k(t, col):
    return {int(k): mean_ci(g[col]) for k, g in t.groupby("K")}


SINGLE_DRAW_NOTE = ("cos_*_by_K: the gradient averaged over many draws of K samples (the claim); "
                    "single_draw: one draw of K samples, the estimator of one training step "
                    "(mean cosine over up to 32 draws per prompt, then over prompts)")


def _single_draw(t, col, k):
    """Mean (95 % CI over prompts) of a single-draw cosine at K = k, and its means by K."""
    m, ci = mean_ci(t[t.K == k][col])
    return {f"{col}_K{k}": m, f"{col}_K{k}_ci": ci,
            f"{col}_by_K": {kk: round(v[0], 4) for kk, v in _by_k(t, col).items()}}


@claim("exo.grad.cosine_to_rl", paper=PAPER, kind="simulation",
       statement="the mean K-sample EXO gradient aligns with -grad J_beta_r(pi^beta_pi): cosine >= 0.99 "
                 "by K = 64 on a 50-way categorical (beta_r=0.5, beta_pi=0.7), rising with K")
def _(ctx: Context) -> Verdict:
    t = _gradient_table(ctx)
    t50 = t[t.n_actions == 50]
    cos = _by_k(t50, "cos_exo")
    m, ci = cos[K_TARGET]
    kmin, kmax = min(cos), max(cos)
    rise = cos[kmax][0] - cos[kmin][0]
    return Verdict(measured=m, ci=ci,
                   criterion=AllOf({f"cos_K{K_TARGET}": CIAbove(COS_TARGET, COS_HALF_WIDTH,
                                                                 inclusive=True),
                                    f"rise_K{kmin}_to_K{kmax}": Threshold(">", 0.0)}),
                   parts={f"cos_K{K_TARGET}": Measured(m, ci), f"rise_K{kmin}_to_K{kmax}": rise},
                   details={"cos_by_K": {k: round(v[0], 5) for k, v in cos.items()},
                            **_single_draw(t50, "cos_exo_single", K_TARGET),
                            "single_draw": SINGLE_DRAW_NOTE,
                            "relerr_by_K": {k: round(v[0], 4) for k, v in _by_k(t50, "relerr_exo").items()},
                            "noise_floor_cos_halves": float(t50.cos_exo_halves.min()),
                            "reference_cos_by_K": RECON_COS, "n_prompts": int(t50.prompt.nunique())})


@claim("exo.grad.large_vocab", paper=PAPER, kind="simulation",
       statement="gradient equivalence holds at the largest vocabulary of the study (10^4 actions; "
                 "10^3 in the quick form): cosine >= 0.99 at the largest K")
def _(ctx: Context) -> Verdict:
    t = _gradient_table(ctx)
    n = int(t.n_actions.max())
    tn = t[t.n_actions == n]
    cos = _by_k(tn, "cos_exo")
    kmax = max(cos)
    m, ci = cos[kmax]
    return Verdict(measured=m, ci=ci, criterion=CIAbove(COS_TARGET, COS_HALF_WIDTH, inclusive=True),
                   details={"n_actions": n, "K": kmax,
                            "cos_by_K": {k: round(v[0], 5) for k, v in cos.items()},
                            **_single_draw(tn, "cos_exo_single", kmax),
                            "single_draw": SINGLE_DRAW_NOTE,
                            "noise_floor_cos_halves": float(tn.cos_exo_halves.min())})


@claim("exo.grad.dpo_forward_kl", paper=PAPER, kind="simulation",
       statement="the K-sample DPO gradient tends to the forward-KL direction beta_pi(pi^beta_pi - pi*) "
                 "(cosine >= 0.99 at the largest K), not to the RL direction: a gap remains")
def _(ctx: Context) -> Verdict:
    t = _gradient_table(ctx)
    t50 = t[t.n_actions == 50]
    kmax = int(t50.K.max())
    tk = t50[t50.K == kmax]
    m_fwd, ci_fwd = mean_ci(tk.cos_dpo_fwd)
    gap, ci_gap = mean_ci(tk.cos_exo - tk.cos_dpo_exact)  # > 0: EXO closer to RL than DPO
    return Verdict(measured=gap, ci=ci_gap,
                   criterion=AllOf({"cos_gap_exo_minus_dpo": CIAbove(0.0, GAP_HALF_WIDTH),
                                    "cos_dpo_to_forward_kl": CIAbove(COS_TARGET, COS_HALF_WIDTH,
                                                                     inclusive=True)}),
                   parts={"cos_gap_exo_minus_dpo": Measured(gap, ci_gap),
                          "cos_dpo_to_forward_kl": Measured(m_fwd, ci_fwd)},
                   details={"K": kmax, "cos_dpo_to_forward_kl": m_fwd, "ci_dpo_to_forward_kl": ci_fwd,
                            "cos_dpo_to_rl": float(tk.cos_dpo_exact.mean()),
                            "cos_forward_vs_reverse_limits": float(tk.cos_limits.mean()),
                            "cos_dpo_fwd_by_K": {k: round(v[0], 5) for k, v in
                                                 _by_k(t50, "cos_dpo_fwd").items()},
                            **_single_draw(t50, "cos_dpo_fwd_single", kmax),
                            "single_draw": SINGLE_DRAW_NOTE})


# ----------------------------------------------------------------------------- mode seeking

def _mode_tables(ctx):
    from theorylab.simulations.exo_alignment import ModeSeekingStudy
    study = ctx.sized(ModeSeekingStudy())
    t = ctx.run(study)
    return study, t


@claim("exo.mode.exo_matches_rl", paper=PAPER, kind="simulation",
       statement="with a bimodal reward and a unimodal policy class, EXO (K=64 samples, SGD) reaches "
                 "the class's exact-RL optimum (J within 2 %) and sits on one mode (valley mass < 5 %)")
def _(ctx: Context) -> Verdict:
    study, t = _mode_tables(ctx)
    j_rl = float(t[t.method == "rl_exact"].J.iloc[0])
    exo = t[t.method == "exo"]
    rel = (j_rl - exo.J) / abs(j_rl)
    m, ci = mean_ci(rel)
    worst = float(rel.abs().max())
    valley = float(exo.mass_valley.max())
    return Verdict(measured=worst,  # the CI of the mean relative gap is in details
                   criterion=AllOf({"max_rel_J_gap": Threshold("<=", J_REL_TOL),
                                    "max_valley_mass": Threshold("<", VALLEY_MAX)}),
                   parts={"max_rel_J_gap": worst, "max_valley_mass": valley},
                   details={"mean_rel_J_gap": m, "mean_rel_J_gap_ci": ci, "J_rl": j_rl, "J_exo": exo.J.round(4).tolist(), "mu_exo": exo.mu.round(3).tolist(),
                            "sigma_exo": exo.sigma.round(3).tolist(), "valley_mass_exo_max": valley,
                            "J_unrestricted_optimum": study.optimum_row()["J"]})


@claim("exo.mode.dpo_mean_seeking", paper=PAPER, kind="simulation",
       statement="in the same restricted class DPO (K=64, SGD) spreads over both modes (mean-seeking): "
                 "its J is below EXO's and its valley mass above")
def _(ctx: Context) -> Verdict:
    _, t = _mode_tables(ctx)
    exo, dpo = t[t.method == "exo"], t[t.method == "dpo"]
    diff = exo.J.to_numpy() - dpo.J.to_numpy()        # paired by rep
    m, ci = mean_ci(diff)
    valley_margin = float(dpo.mass_valley.min() - exo.mass_valley.max())
    j_rl = float(t[t.method == "rl_exact"].J.iloc[0])
    # J precision: EXO's own tolerance (J_REL_TOL of the RL optimum) cannot tell narrower gaps
    return Verdict(measured=m, ci=ci,
                   criterion=AllOf({"J_exo_minus_dpo": CIAbove(0.0, J_REL_TOL * abs(j_rl)),
                                    "valley_dpo_min_minus_exo_max": Threshold(">", 0.0)}),
                   parts={"J_exo_minus_dpo": Measured(m, ci),
                          "valley_dpo_min_minus_exo_max": valley_margin},
                   details={"J_dpo": dpo.J.round(4).tolist(), "sigma_dpo": dpo.sigma.round(3).tolist(),
                            "valley_mass_dpo": dpo.mass_valley.round(3).tolist(),
                            "J_dpo_exact": float(t[t.method == "dpo_exact"].J.iloc[0]),
                            "sigma_dpo_exact": float(t[t.method == "dpo_exact"].sigma.iloc[0])})


# ----------------------------------------------------------------------------- figures

@figure("exo-gradient-cosine", paper=PAPER)
def gradient_figure(ctx: Context):
    """Cosine and relative error of K-sample gradients vs their K → ∞ limits."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.exo_alignment import GradientEquivalenceStudy
    t = ctx.load(ctx.sized(GradientEquivalenceStudy()))
    with style():
        fig, axes = plt.subplots(2, 1, figsize=(8, 8.5))
        for i, (n, g) in enumerate(t.groupby("n_actions")):
            for col, ls, lab in (("cos_exo", "-", "EXO vs −∇J"), ("cos_dpo_fwd", "--", "DPO vs fwd-KL"),
                                 ("cos_dpo_exact", ":", "DPO vs −∇J")):
                s = g.groupby("K")[col]
                mean, sem = s.mean(), s.std(ddof=1) / np.sqrt(s.count())
                axes[0].errorbar(mean.index, 1 - mean, yerr=1.96 * sem, ls=ls, marker="o", ms=3,
                                 color=f"C{i}", label=f"{lab}, N={n}")
            rel = g.groupby("K").relerr_exo.mean()
            axes[1].loglog(rel.index, rel, "o-", ms=3, color=f"C{i}", label=f"EXO, N={n}")
            rel = g.groupby("K").relerr_dpo_fwd.mean()
            axes[1].loglog(rel.index, rel, "s--", ms=3, color=f"C{i}", label=f"DPO vs fwd-KL, N={n}")
        ks = list(RECON_COS)
        axes[0].plot(ks, [1 - RECON_COS[k] for k in ks], "k*", ms=9, label="reference check, N=50")
        axes[0].axhline(1 - COS_TARGET, color="grey", lw=0.8, label=f"1 − {COS_TARGET:g} (target)")
        axes[0].set(xscale="log", yscale="log", xlabel="K (samples per prompt)",
                    ylabel="1 − cosine (mean, 95 % CI)",
                    title="K-sample gradient vs its K → ∞ direction (N actions)")
        axes[1].set(xlabel="K (samples per prompt)", ylabel="‖ḡ_K − g_∞‖ / ‖g_∞‖ (mean)",
                    title="relative error of the K-sample gradient")
        for ax in axes:
            legend_beside(ax, fontsize=8.5)
        return savefig(fig, ctx.figdir / "exo-gradient-cosine")


@figure("exo-mode-seeking", paper=PAPER)
def mode_figure(ctx: Context):
    """Densities of the EXO, DPO and exact-RL solutions in a unimodal class vs the bimodal π*."""
    import matplotlib.pyplot as plt
    import torch

    from theorylab.kernels import exo as kx
    from theorylab.simulations.exo_alignment import ModeSeekingStudy, gaussian_policy
    study = ctx.sized(ModeSeekingStudy())
    t = ctx.load(study)
    y, lps, r = study.problem()
    star = kx.analytic_optimum(lps, r, study.beta_r, study.beta_pi).exp()
    with style():
        fig, axes = plt.subplots(2, 1, figsize=(7.5, 8.5))
        ax = axes[0]
        ax.fill_between(y, star, color="0.85", label="π* (unrestricted optimum)")
        ax.plot(y, lps.exp(), "k:", label="π_sft")
        colors = {"exo": "C0", "dpo": "C1", "rl_exact": "k", "dpo_exact": "C1", "exo_exact": "C0"}
        for (method, rep), row in t.set_index(["method", "rep"]).iterrows():
            if method == "exo_exact":
                continue
            p = gaussian_policy(torch.tensor([row.mu, math.log(row.sigma)], dtype=torch.float64), y).exp()
            ls = "--" if method.endswith("exact") else "-"
            ax.plot(y, p, ls, color=colors[method], lw=1.8 if ls == "--" else 1.0,
                    label=METHOD_NAMES[method] if rep == 0 else None)
        ax2 = ax.twinx()
        ax2.plot(y, r, color="C2", lw=1.0, label="reward r(y) (right axis)")
        ax2.set_ylabel("reward r(y)", color="C2")
        ax.set(xlabel="action y", ylabel="probability π(y) per grid point",
               title="solutions in the unimodal class")
        ax = axes[1]
        opt = study.optimum_row()
        ax.scatter([opt["kl_sft"]], [opt["reward"]], marker="*", s=120, color="0.5")
        for method, g in t.groupby("method"):
            ax.scatter(g.kl_sft, g.reward, color=colors[method],
                       marker="x" if method.endswith("exact") else "o")
        ax.set(xlabel="KL(π ‖ π_sft) [nats]", ylabel="expected reward E_π r",
               title="reward vs KL (× exact, ● sampled, ★ π*)")
        legend_below(fig, [axes[0], ax2], ncol=2)
        return savefig(fig, ctx.figdir / "exo-mode-seeking")


# ----------------------------------------------------------------------------- sequence task

SEQ_PAIRS = (("exo_rw", "dpo_rw"), ("exo_pref", "dpo_pref"))


def _sequence_table(ctx):
    from theorylab.empirical.exo_sequence import SequenceAlignmentStudy
    return ctx.run(ctx.sized(SequenceAlignmentStudy()))


def _frontier_gaps(t, anchor: bool = False):
    """Per seed: frontier_gap(EXO, DPO) for the reward and preference modes.

    Default: over the KL range both methods' runs reach. ``anchor=True`` adds the π_sft point
    (KL 0) to both frontiers, which extends the range to 0 but credits a method with a straight
    chord wherever it has no run of low KL."""
    from theorylab.empirical.exo_sequence import frontier_gap
    out = {a: [] for a, _ in SEQ_PAIRS}
    for _, g in t.groupby("seed"):
        sft = g[g.method == "sft"].iloc[0]
        pre_kl, pre_r = ([0.0], [sft.reward]) if anchor else ([], [])
        for a, b in SEQ_PAIRS:
            ga, gb = g[g.method == a], g[g.method == b]
            out[a].append(frontier_gap([*pre_kl, *ga.kl], [*pre_r, *ga.reward],
                                       [*pre_kl, *gb.kl], [*pre_r, *gb.reward]))
    return {k: [x for x in v if math.isfinite(x)] for k, v in out.items()}


@claim("exo.seq.alignment_improves_reward", paper=PAPER, kind="empirical",
       statement="on the synthetic sentiment task every aligned TinyLM (EXO/DPO, reward/preference "
                 "mode, every beta, every seed) beats pi_sft's reward, at a positive KL(pi||pi_sft)")
def _(ctx: Context) -> Verdict:
    t = _sequence_table(ctx)
    sft = t[t.method == "sft"].set_index("seed").reward
    al = t[t.method != "sft"]
    gain = al.reward.to_numpy() - sft.loc[al.seed].to_numpy()
    z = gain / np.hypot(al.reward_se.to_numpy(), t[t.method == "sft"].set_index("seed")
                        .reward_se.loc[al.seed].to_numpy())
    kl_lo = float((al.kl - 2 * al.kl_se).min())
    return Verdict(measured=float(gain.min()),
                   criterion=AllOf({"min_gain": Threshold(">", 0.0), "min_z": Threshold(">", 2.0),
                                    "min_kl_minus_2se": Threshold(">", 0.0)}),
                   parts={"min_gain": float(gain.min()), "min_z": float(z.min()),
                          "min_kl_minus_2se": kl_lo},
        details={"min_z": float(z.min()), "sft_reward_by_seed": sft.round(4).to_dict(),
                 "mean_reward_by_method": al.groupby("method").reward.mean().round(4).to_dict(),
                 "mean_kl_by_method": al.groupby("method").kl.mean().round(3).to_dict(),
                 "n_runs": len(al)})


@claim("exo.seq.exo_dominates_dpo", paper=PAPER, kind="empirical", must_hold=False,
       statement="the paper's frontier claim at toy scale: EXO's reward-vs-KL(pi||pi_sft) frontier lies "
                 "above DPO's (reward mode: mean reward gap at matched KL over the KL range both "
                 "reach; 95% CI over seeds)")
def _(ctx: Context) -> Verdict:
    t = _sequence_table(ctx)
    gaps, anchored = _frontier_gaps(t), _frontier_gaps(t, anchor=True)
    crit = CIAbove(0.0, REWARD_HALF_WIDTH)
    if len(gaps["exo_rw"]) < 2:  # no CI: inconclusive
        return Verdict(measured=float("nan"), criterion=crit,
                       details={"note": "fewer than 2 seeds with overlapping KL ranges"})
    m, ci = mean_ci(gaps["exo_rw"])
    pref = mean_ci(gaps["exo_pref"]) if len(gaps["exo_pref"]) > 1 else (float("nan"), None)
    return Verdict(measured=m, criterion=crit, ci=ci,
                   details={"gap_rw_by_seed": [round(g, 4) for g in gaps["exo_rw"]],
                            "gap_pref_mean": pref[0], "gap_pref_ci": pref[1],
                            "gap_pref_by_seed": [round(g, 4) for g in gaps["exo_pref"]],
                            "anchored_at_sft_gap_rw_by_seed": [round(g, 4) for g in anchored["exo_rw"]],
                            "anchored_at_sft_gap_pref_by_seed": [round(g, 4) for g in anchored["exo_pref"]],
                            "n_seeds": int(t.seed.nunique()),
                            "betas": sorted(float(b) for b in t[t.method != "sft"].beta.unique())})


@figure("exo-frontier", paper=PAPER)
def frontier_figure(ctx: Context):
    """The paper's frontier plot, analogue: reward vs KL(π‖π_sft) for the four methods across β (mean ± SE over seeds)."""
    import matplotlib.pyplot as plt

    from theorylab.empirical.exo_sequence import SequenceAlignmentStudy

    t = ctx.load(ctx.sized(SequenceAlignmentStudy()))
    sft = t[t.method == "sft"]
    style_of = {"exo_rw": ("C0", "-", "o"), "dpo_rw": ("C1", "-", "s"),
                "exo_pref": ("C0", "--", "^"), "dpo_pref": ("C1", "--", "v")}
    # β labels: EXO's above-left of its points, DPO's below-right, so the two families don't collide
    offset = {"exo": (-4, 5, "right", "bottom"), "dpo": (4, -5, "left", "top")}
    with style():
        fig, axes = plt.subplots(2, 1, figsize=(7.5, 9.5), sharex=True)
        for method, g in t[t.method != "sft"].groupby("method"):
            c, ls, mk = style_of[method]
            agg = g.groupby("beta").agg(kl=("kl", "mean"), reward=("reward", "mean"),
                                        kl_sd=("kl", "std"), r_sd=("reward", "std"),
                                        n=("seed", "count")).sort_values("kl")
            se = np.sqrt(agg.n)
            axes[0].errorbar(agg.kl, agg.reward, xerr=agg.kl_sd / se, yerr=agg.r_sd / se,
                             color=c, ls=ls, marker=mk, label=METHOD_NAMES[method])
            dx, dy, ha, va = offset[method.split("_")[0]]
            for b, row in agg.iterrows():
                axes[0].annotate(f"{b:g}", (row.kl, row.reward), xytext=(dx, dy),
                                 textcoords="offset points", ha=ha, va=va, fontsize=8.5, color=c)
            axes[1].plot(g.kl, g.reward, mk, color=c, alpha=0.6, label=METHOD_NAMES[method])
        for ax in axes:
            ax.axhline(sft.reward.mean(), color="grey", lw=1, label="π_sft (KL = 0)")
            ax.set_xscale("log")
            ax.set(xlabel="KL(π_θ ‖ π_sft) [nats per completion]", ylabel="reward (held-out prompts)")
            log_ticks(ax, "x")
            ax.xaxis.set_tick_params(labelbottom=True)
        axes[0].set(title="frontier: mean ± SE over seeds; numbers: β_π")
        axes[1].set(title="every run (seed × β_π)")
        legend_below(fig, axes[:1], ncol=2)
        return savefig(fig, ctx.figdir / "exo-frontier")
