r"""EXO vs DPO on tabular policies: gradient equivalence and mode-seeking (Ji et al. 2024, EXO).

Two studies built on :mod:`theorylab.kernels.exo`:

:class:`GradientEquivalenceStudy` (``exo-gradient-equivalence``)
    For random categorical problems (:math:`\pi_{sft}`, :math:`r`, :math:`\theta` over N actions)
    and K = 2 … 4096 samples per prompt drawn from :math:`\pi_{sft}`, the mean K-sample gradient
    (over M draws, :math:`M\cdot K \approx` ``sample_budget``) of the EXO loss is compared with the
    exact :math:`\nabla_\theta\mathrm{KL}(\pi^{\beta_\pi}_\theta\|\pi^*_{\beta_r}) =
    -\tfrac1{\beta_r}\nabla_\theta J_{\beta_r}(\pi^{\beta_\pi}_\theta)` (the paper's gradient equivalence); the DPO
    K-sample gradient with the forward-KL gradient :math:`\beta_\pi(\pi^{\beta_\pi}_\theta - \pi^*)`
    and with the exact RL direction (the gap). One unit = (N, K, prompt).

:class:`ModeSeekingStudy` (``exo-mode-seeking``)
    Actions on a discretised line, :math:`\pi_{sft}` a broad discretised Gaussian, a bimodal reward,
    and a policy class of unimodal discretised Gaussians :math:`\pi_{\mu,\sigma}` that cannot
    represent :math:`\pi^*`. Solutions of EXO and DPO (stochastic, K samples per step, Adam),
    their K → ∞ objectives (reverse / forward KL, deterministic multistart) and exact RL
    (:math:`\max J_{\beta_r\beta_\pi}(\pi_\theta)`), with reward, KL(π‖π_sft), J and mode masses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from theorylab.constraints import NONNEGATIVE, POSITIVE, SEED, Choice, Int, Real, Tuple
from theorylab.kernels import exo as kx
from theorylab.seeding import torch_generator
from theorylab.study import Study
from theorylab.threads import single_thread

__all__ = ["GradientEquivalenceStudy", "ModeSeekingStudy", "tabular_problem", "gradient_row",
           "line_problem", "gaussian_policy", "METHODS"]

DT = torch.float64




def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-300))


def _relerr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# =============================================================================== gradient study

def tabular_problem(gen: torch.Generator, n: int, sft_scale: float = 1.0, reward_scale: float = 1.0,
                    theta_scale: float = 1.0):
    r"""A random prompt: :math:`\log\pi_{sft}` = log-softmax of N(0, sft_scale²) logits,
    :math:`r\sim N(0, \text{reward\_scale}^2)`, :math:`\theta = \log\pi_{sft} + N(0, \text{theta\_scale}^2)`."""
    logp_sft = torch.log_softmax(sft_scale * torch.randn(n, generator=gen, dtype=DT), -1)
    r = reward_scale * torch.randn(n, generator=gen, dtype=DT)
    theta = logp_sft + theta_scale * torch.randn(n, generator=gen, dtype=DT)
    return theta, logp_sft, r


def gradient_row(theta, logp_sft, r, K: int, n_draws: int, beta_pi: float, beta_r: float,
                 gen: torch.Generator, n_single: int = 32, chunk: int = 1 << 20) -> dict:
    """Cosines / relative errors of the mean K-sample EXO and DPO gradients (one prompt).

    The ``cos_*`` columns are of the gradient averaged over ``n_draws`` draws of K samples (the
    expected K-sample gradient, up to Monte-Carlo noise); ``cos_exo_single`` and
    ``cos_dpo_fwd_single`` are the mean cosine of a *single* draw's gradient (the estimator one
    training step uses) over the first ``n_single`` draws.
    """
    exact_exo = kx.exo_limit_grad(theta, logp_sft, r, beta_pi, beta_r)
    exact_fwd = kx.dpo_limit_grad(theta, logp_sft, r, beta_pi, beta_r)
    p = logp_sft.exp()
    halves = {"exo": [], "dpo": []}
    singles = {"exo": [], "dpo": []}            # one draw of K samples each: the practitioner's estimator
    exact = {"exo": exact_exo, "dpo": exact_fwd}
    per_chunk = max(2, chunk // K)
    for half in range(2):                       # two independent halves: a noise-floor estimate
        acc = {"exo": torch.zeros_like(theta), "dpo": torch.zeros_like(theta)}
        left = n_draws // 2
        while left > 0:
            m = min(left, per_chunk)
            idx = torch.multinomial(p, m * K, replacement=True, generator=gen).view(m, K)
            for kind in acc:
                acc[kind] += kx.ksample_grad_tabular(theta, logp_sft, r, idx, beta_pi, beta_r, kind) * m
            if half == 0 and not singles["exo"]:
                for kind in singles:
                    singles[kind] = [_cos(kx.ksample_grad_tabular(theta, logp_sft, r, idx[i:i + 1], beta_pi,
                                                                  beta_r, kind), exact[kind])
                                     for i in range(min(n_single, m))]
            left -= m
        for kind in acc:
            halves[kind].append(acc[kind] / (n_draws // 2))
    g_exo = (halves["exo"][0] + halves["exo"][1]) / 2
    g_dpo = (halves["dpo"][0] + halves["dpo"][1]) / 2
    return {
        "cos_exo": _cos(g_exo, exact_exo), "relerr_exo": _relerr(g_exo, exact_exo),
        "cos_dpo_fwd": _cos(g_dpo, exact_fwd), "relerr_dpo_fwd": _relerr(g_dpo, exact_fwd),
        "cos_dpo_exact": _cos(g_dpo, exact_exo),           # the gap: DPO vs the RL direction
        "cos_limits": _cos(exact_fwd, exact_exo),          # forward vs reverse KL directions
        "cos_exo_halves": _cos(halves["exo"][0], halves["exo"][1]),   # MC noise floor
        "cos_exo_single": float(np.mean(singles["exo"])),   # one draw of K samples, no averaging
        "cos_dpo_fwd_single": float(np.mean(singles["dpo"])),   # the same for DPO vs forward KL
        "n_draws": int(n_draws),
    }


@dataclass(frozen=True)
class GradientEquivalenceStudy(Study):
    """K-sample EXO/DPO gradients vs their K → ∞ limits on random categorical problems.

    Defaults: the setting of the reference check of the K → ∞ argument (50-way categorical,
    β_r = 0.5, β_π = 0.7; book page "Papers and formulas") plus 10³ and 10⁴ actions; 16 prompts
    per (N, K).
    """

    name: ClassVar[str] = "exo-gradient-equivalence"
    version: ClassVar[int] = 2  # 2: cos_dpo_fwd_single (one draw's DPO gradient vs forward KL)

    n_actions: tuple[int, ...] = (50, 1000, 10000)
    ks: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    n_prompts: int = 16
    beta_pi: float = 0.7
    beta_r: float = 0.5
    sample_budget: int = 1 << 20        # M·K samples per unit: equal MC noise across K
    min_draws: int = 64
    budget_per_action: int = 200        # at least this many samples per action (large N)
    sft_scale: float = 1.0
    reward_scale: float = 1.0
    theta_scale: float = 1.0
    seed: int = 0

    constraints: ClassVar = {
        # one unit holds a few n_actions-vectors and a (chunk / K, K) index block (chunk = 2^20
        # samples): memory stays ~100 MB whatever the budget; the budgets bound the time
        "n_actions": Tuple(Int(2, 10**6), max_len=20),
        "ks": Tuple(Int(2, 1 << 16), max_len=50),
        "n_prompts": Int(2, 1000),
        "beta_pi": POSITIVE,
        "beta_r": POSITIVE,
        "sample_budget": Int(1024, 1 << 26),
        "min_draws": Int(4, 1 << 20),
        "budget_per_action": Int(0, 1000),  # budget = max(sample_budget, this x n_actions)
        "sft_scale": NONNEGATIVE,
        "reward_scale": NONNEGATIVE,
        "theta_scale": NONNEGATIVE,
        "seed": SEED,
    }

    def units(self) -> list[dict]:
        return [{"n_actions": n, "K": k, "prompt": p}
                for n in self.n_actions for k in self.ks for p in range(self.n_prompts)]

    def run_unit(self, unit: dict, ctx=None) -> dict:
        n, k, prompt = unit["n_actions"], unit["K"], unit["prompt"]
        # the same problem for every K (paired comparison across K)
        theta, lps, r = tabular_problem(torch_generator(self.seed, "problem", n, prompt), n, self.sft_scale,
                                        self.reward_scale, self.theta_scale)
        budget = max(self.sample_budget, self.budget_per_action * n)
        m = max(self.min_draws, budget // k)
        m += m % 2
        with single_thread():
            return gradient_row(theta, lps, r, k, m, self.beta_pi, self.beta_r,
                                torch_generator(self.seed, "draws", n, k, prompt))

    def quick(self) -> GradientEquivalenceStudy:
        return self.replace(n_actions=(50, 1000), ks=(2, 8, 64, 4096), n_prompts=5,
                            sample_budget=1 << 17, budget_per_action=100)


# =============================================================================== mode seeking

METHODS = ("exo", "dpo", "exo_exact", "dpo_exact", "rl_exact")


def line_problem(n_grid: int, half_width: float, sft_sd: float, modes, heights, mode_width: float):
    """Grid y, log π_sft (discretised N(0, sft_sd²)) and the bimodal reward on it."""
    y = torch.linspace(-half_width, half_width, n_grid, dtype=DT)
    logp_sft = torch.log_softmax(-(y ** 2) / (2 * sft_sd ** 2), -1)
    r = sum(h * torch.exp(-((y - m) ** 2) / (2 * mode_width ** 2)) for m, h in zip(modes, heights, strict=True))
    return y, logp_sft, r


def gaussian_policy(params: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Log-probs of the unimodal class :math:`\pi_{\mu,\sigma}(y)\propto e^{-(y-\mu)^2/2\sigma^2}`,
    ``params = (μ, log σ)``."""
    mu, log_sd = params[0], params[1]
    return torch.log_softmax(-((y - mu) ** 2) / (2 * torch.exp(2 * log_sd)), -1)


@dataclass(frozen=True)
class ModeSeekingStudy(Study):
    """EXO vs DPO vs exact RL when the policy class (unimodal) cannot represent π* (bimodal).

    Defaults: 161 actions on [-4, 4], π_sft = N(0, 1.5²), reward bumps of heights 1.0 and 0.8 at
    ∓2 (width 0.7), β_r = 0.1 and β_π = 1 (so exact RL maximises J_0.1 and EXO's K → ∞ objective
    is the same function up to a constant; with β_π ≠ 1 they differ). Stochastic methods: K = 64
    samples from π_sft per prompt, 16 prompts per step, Adam from π_sft's (μ, σ) plus jitter.
    """

    name: ClassVar[str] = "exo-mode-seeking"

    methods: tuple[str, ...] = METHODS
    n_reps: int = 5                     # stochastic methods: seeds (init jitter + draws)
    n_grid: int = 161                   # spacing 0.05, well below the optimum's width (~0.24)
    half_width: float = 4.0
    sft_sd: float = 1.5
    modes: tuple[float, float] = (-2.0, 2.0)
    heights: tuple[float, float] = (1.0, 0.8)
    mode_width: float = 0.7
    beta_r: float = 0.1                 # strong reward: π* puts 87 % / 13 % on the two bumps
    beta_pi: float = 1.0
    K: int = 64
    batch: int = 16
    steps: int = 1500
    lr: float = 0.03
    init_jitter: float = 0.3            # std of the random offset of the initial (μ, log σ)
    seed: int = 0

    constraints: ClassVar = {
        "methods": Tuple(Choice(METHODS), max_len=len(METHODS)),
        "n_reps": Int(2, 1000),
        "n_grid": Int(5, 100_000),           # grid tensors of n_grid floats
        "half_width": POSITIVE,
        "sft_sd": POSITIVE,
        "modes": Tuple(Real(), 2, 2),        # two bumps: modes and heights pair up
        "heights": Tuple(Real(), 2, 2),
        "mode_width": POSITIVE,
        "beta_r": POSITIVE,
        "beta_pi": POSITIVE,
        "K": Int(2, 10_000),                 # a step draws (batch, K) actions: <= 10^8 ints
        "batch": Int(1, 10_000),
        "steps": Int(1, 10**6),
        "lr": POSITIVE,
        "init_jitter": NONNEGATIVE,
        "seed": SEED,
    }

    # ------------------------------------------------------------------ problem
    def problem(self):
        return line_problem(self.n_grid, self.half_width, self.sft_sd, self.modes, self.heights,
                            self.mode_width)

    def units(self) -> list[dict]:
        return [{"method": m, "rep": r} for m in self.methods
                for r in range(self.n_reps if m in ("exo", "dpo") else 1)]

    def _objective(self, method: str, y, lps, r):
        bp, br = self.beta_pi, self.beta_r
        lstar = kx.optimal_policy(lps, r, br)

        def obj(params):
            lpi = gaussian_policy(params, y)
            lt = torch.log_softmax(bp * lpi + (1 - bp) * lps, -1)
            if method == "exo_exact":
                return kx.kl(lt, lstar)
            if method == "dpo_exact":
                return kx.kl(lstar, lt)
            return -kx.objective_J(lpi, lps, r, br * bp)       # rl_exact
        return obj

    def _fit_exact(self, method, y, lps, r):
        obj = self._objective(method, y, lps, r)
        best = None
        for mu0 in np.linspace(-3, 3, 7):
            for ls0 in (math.log(0.3), math.log(1.0), math.log(2.5)):
                p = torch.tensor([mu0, ls0], dtype=DT, requires_grad=True)
                opt = torch.optim.LBFGS([p], lr=1.0, max_iter=200, tolerance_grad=1e-12,
                                        tolerance_change=1e-14, line_search_fn="strong_wolfe")

                def closure(opt=opt, p=p):
                    opt.zero_grad()
                    v = obj(p)
                    v.backward()
                    return v
                opt.step(closure)
                v = float(obj(p.detach()))
                if math.isfinite(v) and (best is None or v < best[0]):
                    best = (v, p.detach().clone())
        return best[1]

    def _fit_stochastic(self, method, rep, y, lps, r):
        gen = torch_generator(self.seed, "mode", method, rep)
        init = torch.tensor([0.0, math.log(self.sft_sd)], dtype=DT)
        init = init + self.init_jitter * torch.randn(2, generator=gen, dtype=DT)
        p = init.clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=self.lr)
        probs = lps.exp()
        loss_fn = kx.exo_loss if method == "exo" else kx.dpo_ksample_loss
        for _ in range(self.steps):
            idx = torch.multinomial(probs, self.batch * self.K, replacement=True,
                                    generator=gen).view(self.batch, self.K)
            lpi = gaussian_policy(p, y)
            loss = loss_fn(lpi[idx] - lps[idx], r[idx], self.beta_pi, self.beta_r).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return p.detach()

    def run_unit(self, unit: dict, ctx=None) -> dict:
        y, lps, r = self.problem()
        method = unit["method"]
        with single_thread():
            if method in ("exo", "dpo"):
                params = self._fit_stochastic(method, unit["rep"], y, lps, r)
            else:
                params = self._fit_exact(method, y, lps, r)
        return self.summarize(params, y, lps, r)

    def summarize(self, params, y, lps, r) -> dict:
        bp, br = self.beta_pi, self.beta_r
        lpi = gaussian_policy(params, y)
        lt = torch.log_softmax(bp * lpi + (1 - bp) * lps, -1)
        lstar = kx.optimal_policy(lps, r, br)
        pi = lpi.exp()
        m1, m2 = self.modes
        return {
            "mu": float(params[0]), "sigma": float(torch.exp(params[1])),
            "reward": float((pi * r).sum()), "kl_sft": float(kx.kl(lpi, lps)),
            "J": float(kx.objective_J(lpi, lps, r, br * bp)),
            "rev_kl": float(kx.kl(lt, lstar)), "fwd_kl": float(kx.kl(lstar, lt)),
            "mass_mode1": float(pi[(y - m1).abs() < 1].sum()),
            "mass_mode2": float(pi[(y - m2).abs() < 1].sum()),
            "mass_valley": float(pi[(y - (m1 + m2) / 2).abs() < 1].sum()),
        }

    def optimum_row(self) -> dict:
        """Reward, KL and J of the unrestricted optimum π ∝ π_sft e^{r/(β_r β_π)} (bimodal)."""
        y, lps, r = self.problem()
        lopt = kx.analytic_optimum(lps, r, self.beta_r, self.beta_pi)
        pi = lopt.exp()
        m1, m2 = self.modes
        return {"reward": float((pi * r).sum()), "kl_sft": float(kx.kl(lopt, lps)),
                "J": float(kx.objective_J(lopt, lps, r, self.beta_r * self.beta_pi)),
                "mass_mode1": float(pi[(y - m1).abs() < 1].sum()),
                "mass_mode2": float(pi[(y - m2).abs() < 1].sum())}

    def quick(self) -> ModeSeekingStudy:
        return self.replace(n_reps=3, steps=800, lr=0.05)
