r"""The paper's Llama measurements at small scale: a neural LM trained on a two-persona corpus.

Wolf et al. (arXiv 2304.11082), Sec. 5 / Figs. 2-3 measured Llama-2-13B-chat against LoRA proxies
:math:`\hat P_-`, :math:`\hat P_+` fine-tuned on each persona's data. Here the corpus comes from a
*known* mixture :math:`P = \alpha P_- + (1-\alpha) P_+` of Markov chains over ``S`` sentences
(:meth:`SigmoidStudy.model <theorylab.simulations.beb_prompting.SigmoidStudy.model>`,
:math:`B\in\{0,1\}`, 1 = aligned), one token per sentence, so every neural quantity has an exact
counterpart:

1. train :class:`~theorylab.empirical.lm.TinyLM` :math:`\hat P` on documents drawn from :math:`P`;
2. fine-tune copies on :math:`P_-`-only and :math:`P_+`-only documents (:math:`\hat P_\mp`; the
   paper used LoRA adapters, here all weights for a few epochs at a lower learning rate);
3. sample prompts from :math:`\hat P_-`; after each of ``n_prompt`` sentences measure
   :math:`KL(\hat P_-(\cdot|s)\|\hat P(\cdot|s))` (Fig. 2) and the fraction of aligned sentences
   among ``n_continuations`` continuations sampled from :math:`\hat P(\cdot|s)` (Fig. 3), beside
   the exact mixture's values on the same prompts;
4. estimate :math:`\beta` the paper's way (mean sampled :math:`\log\hat P_-(c|s)/\hat P_+(c|s)`,
   prefixes and continuations from :math:`\hat P_-`) and :math:`\sigma^2` (variance of the
   summed log-ratio over ``n_prompt`` sentences, divided by ``n_prompt``), beside the exact ones.

Layering note: this module imports :mod:`theorylab.empirical` (torch); it lives under
``simulations`` because the study is part of the BEB simulation suite.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from theorylab.constraints import POSITIVE, SEED, UNIT_OPEN, Device, Int, Real
from theorylab.empirical.lm import TinyLM
from theorylab.empirical.train import TrainConfig, train
from theorylab.errors import ConfigError
from theorylab.seeding import rng_for, torch_generator, torch_seed
from theorylab.simulations.beb_prompting import SigmoidStudy, beta_stationary
from theorylab.study import Study

__all__ = ["NeuralBEBStudy"]


def _lm_loss(model, batch):
    logits = model(batch[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             batch[:, 1:].reshape(-1))


@dataclass(frozen=True)
class NeuralBEBStudy(Study):
    """Neural LM vs its exact generating mixture (one unit = one seed: corpus, training, measures)."""

    name: ClassVar[str] = "beb-neural"
    version: ClassVar[int] = 3  # 2: training seeded with the full 63-bit torch_seed (was % 2**31)
    #                             3: per-prompt spreads (bootstrap / standard errors) for the CIs
    n_reps: int = 3
    log_inv_alpha: float = 2.0     # alpha = e^-2 ~ 0.14: enough P- text to learn it from
    rho: float = 0.5               # P+ puts mass rho on bad sentences (lower beta: longer curve)
    n_sentences: int = 12
    doc_len: int = 32              # sentences per training document
    n_docs: int = 6000             # pre-training corpus (mixture)
    n_persona_docs: int = 800      # fine-tuning corpus per persona
    epochs: int = 8
    ft_epochs: int = 3
    lr: float = 3e-3
    ft_lr: float = 1e-3
    d_model: int = 64
    n_prompts: int = 256
    n_prompt: int = 10             # prompt sentences (the paper's figures go to 10)
    n_continuations: int = 32      # the paper sampled 32 responses
    device: str = "auto"
    torch_threads: int = 1         # CPU intra-op threads while this unit runs
    seed: int = 0

    constraints: ClassVar = {
        "n_reps": Int(1, 100),
        "log_inv_alpha": Real(0, 700, lo_open=True),  # alpha = e^-x underflows past ~745
        "rho": UNIT_OPEN,
        "n_sentences": Int(2, 200),
        # memory: corpora of n_docs x (doc_len + 1) int64 tokens (10^5 x 1025 x 8 B = 820 MB)
        # and attention of 64 x 4 heads x (doc_len + 1)^2 floats per batch (1 GB at 1024)
        "doc_len": Int(1, 1024),
        "n_docs": Int(1, 100_000),
        "n_persona_docs": Int(1, 100_000),
        "epochs": Int(1, 1000),
        "ft_epochs": Int(1, 1000),
        "lr": POSITIVE,
        "ft_lr": POSITIVE,
        "d_model": Int(4, 1024),            # 4 heads: a multiple of 4 (check())
        "n_prompts": Int(1, 100_000),        # (n_prompts, n_prompt + 1, S + 1) log-probs
        "n_prompt": Int(1, 100),             # a row has 5 (n_prompt + 1) columns
        "n_continuations": Int(1, 10**6),
        "device": Device(),
        "torch_threads": Int(1, 256),
        "seed": SEED,
    }

    def check(self):
        o = type(self).__name__
        if self.d_model % 4:
            raise ConfigError(f"'d_model' of {o} must be a multiple of 4 (the heads). "
                              f"Got {self.d_model}.")
        if self.n_prompt > self.doc_len:  # the LM's positions cover BOS + doc_len sentences
            raise ConfigError(f"'n_prompt' of {o} must be <= doc_len = {self.doc_len}. "
                              f"Got {self.n_prompt}.")

    def units(self):
        return [{"rep": r} for r in range(self.n_reps)]

    def quick(self):
        return self.replace(n_reps=1, n_docs=2000, n_persona_docs=400, epochs=5, n_prompts=128)

    def mixture(self):
        alpha = math.exp(-self.log_inv_alpha)
        return SigmoidStudy(rho=self.rho, n_sentences=self.n_sentences, seed=self.seed).model(alpha)

    # -- pieces ------------------------------------------------------------------------------
    def _docs(self, model, rng, n, negative):
        seq = model.sample(rng, n, self.doc_len, negative)
        bos = np.full((n, 1), model.n_sentences)
        return torch.from_numpy(np.concatenate([bos, seq], 1))

    def _next_logp(self, lm, tokens):
        """log P(next sentence | prefix) at every position, BOS excluded and renormalised."""
        with torch.no_grad():
            logits = lm(tokens.to(next(lm.parameters()).device)).float().cpu()
        logits[..., -1] = -torch.inf  # BOS is never a next sentence
        return torch.log_softmax(logits, -1)[..., :-1].double()

    def _sample_prompts(self, lm, gen, n, S):
        toks = torch.full((n, 1), S, dtype=torch.long)
        for _ in range(self.n_prompt):
            lp = self._next_logp(lm, toks)[:, -1]
            nxt = torch.multinomial(lp.exp(), 1, generator=gen)
            toks = torch.cat([toks, nxt], 1)
        return toks

    def run_unit(self, unit, ctx=None):
        # a model this small runs fastest on one CPU thread (intra-op threading costs more than it
        # saves; measured 5x slower with 2 threads on a busy 2-core machine)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads)
        try:
            return self._run(unit)
        finally:
            torch.set_num_threads(threads)

    def _run(self, unit):
        rep = unit["rep"]
        model = self.mixture()
        S = model.n_sentences
        rng = rng_for(self.seed, "neural-data", rep)
        corpus = self._docs(model, rng, self.n_docs, None)
        minus_docs = self._docs(model, rng, self.n_persona_docs, True)
        plus_docs = self._docs(model, rng, self.n_persona_docs, False)
        torch.manual_seed(torch_seed(self.seed, "neural-init", rep))
        lm = TinyLM(S + 1, d_model=self.d_model, n_layers=2, n_heads=4, max_len=self.doc_len + 1)
        cfg = TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=64, device=self.device,
                          seed=torch_seed(self.seed, "neural-train", rep))
        res = train(lm, _lm_loss, corpus, cfg)
        ft = TrainConfig(epochs=self.ft_epochs, lr=self.ft_lr, batch_size=32, device=self.device,
                         seed=cfg.seed + 1)
        lm_m, lm_p = copy.deepcopy(lm), copy.deepcopy(lm)
        train(lm_m, _lm_loss, minus_docs, ft)
        train(lm_p, _lm_loss, plus_docs, ft)
        for m in (lm, lm_m, lm_p):
            m.eval()

        gen = torch_generator(self.seed, "neural-sample", rep)
        prompts = self._sample_prompts(lm_m, gen, self.n_prompts, S)  # (N, 1 + n_prompt)
        lp_full, lp_m, lp_p = (self._next_logp(m, prompts) for m in (lm, lm_m, lm_p))
        p_m = lp_m.exp()
        kl_neural = (p_m * (lp_m - lp_full)).sum(-1).mean(0).numpy()       # (n_prompt + 1,)
        good = torch.from_numpy(model.scores == 1)
        p_aligned = lp_full.exp()[..., good].sum(-1)                        # (N, n_prompt + 1)
        counts = torch.binomial(torch.full_like(p_aligned, float(self.n_continuations)),
                                p_aligned, generator=gen)
        sent = prompts[:, 1:].numpy()
        exact = model.stats(sent)
        # the paper's beta: mean sampled log-ratio of one continuation c ~ P-_hat(.|s)
        c = torch.multinomial(p_m.reshape(-1, S), 1, generator=gen).reshape(p_m.shape[:2])
        lr_c = (lp_m - lp_p).gather(-1, c[..., None]).squeeze(-1)           # (N, n_prompt + 1)
        beta_hat = float(lr_c.mean())
        beta_hat_exact_kl = float((p_m * (lp_m - lp_p)).sum(-1).mean())
        # sigma^2: Var over prompts of the summed log-ratio of the prompt itself / n
        lr_prompt = (lp_m - lp_p)[:, :-1].gather(-1, prompts[:, 1:, None]).squeeze(-1).sum(1)
        sigma2_hat = float(lr_prompt.var()) / self.n_prompt
        exact_lr = exact.log_ratio[:, -1]
        exact_lr = exact_lr[np.isfinite(exact_lr)]  # P_hat- may say what P- never says
        row = dict(alpha=model.alpha, train_loss=res.train_loss[-1], train_seconds=res.seconds,
                   device=res.device, beta_hat=beta_hat, beta_hat_kl=beta_hat_exact_kl,
                   sigma2_hat=sigma2_hat, beta_stat=beta_stationary(model),
                   beta_exact_on_prompts=float(np.mean(exact.kl_minus_plus)),
                   sigma2_exact_on_prompts=float(np.var(exact_lr)) / self.n_prompt)
        row.update(_spreads(
            kl=(p_m * (lp_m - lp_full)).sum(-1).numpy(), aligned=(counts / self.n_continuations).numpy(),
            gap=(p_aligned.numpy() - exact.b_p).mean(1),
            beta_diff=lr_c.numpy().mean(1) - exact.kl_minus_plus.mean(1),
            rng=rng_for(self.seed, "neural-boot", rep), n_last=self.n_prompt))
        for n in range(self.n_prompt + 1):
            row[f"kl_neural_{n}"] = float(kl_neural[n])
            row[f"kl_exact_{n}"] = float(np.mean(exact.kl_minus_full[:, n]))
            row[f"aligned_neural_{n}"] = float(counts[:, n].mean() / self.n_continuations)
            row[f"aligned_prob_neural_{n}"] = float(p_aligned[:, n].mean())
            row[f"aligned_exact_{n}"] = float(np.mean(exact.b_p[:, n]))
        return row


N_BOOT = 2000  # bootstrap resamples of the prompts


def _spreads(kl, aligned, gap, beta_diff, rng, n_last) -> dict:
    r"""Per-replicate estimates and standard errors over the prompts (the claims' CIs).

    ``kl``, ``aligned``: (N, n_prompt + 1) per prompt; the ratios after ``n_last`` / after 1
    sentence are ratios of means, their SE from ``N_BOOT`` bootstrap resamples of the prompts.
    ``gap``: per prompt, the mean over lengths of the neural minus the exact aligned
    probability; ``beta_diff``: per prompt, the paper's sampled log-ratio minus the exact
    :math:`KL(P_-\|P_+)` (mean over positions); both with the plain SE of a mean.
    """
    n = kl.shape[0]
    idx = rng.integers(0, n, size=(N_BOOT, n))
    out = {}
    for name, v in (("kl", kl), ("aligned", aligned)):
        m = v[idx].mean(1)                                    # (N_BOOT, n_prompt + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = m[:, n_last] / m[:, 1]
        out[f"{name}_ratio_{n_last}_1"] = float(v[:, n_last].mean() / v[:, 1].mean())
        out[f"{name}_ratio_{n_last}_1_se"] = float(np.std(boot[np.isfinite(boot)], ddof=1))
    for name, v in (("gap", gap), ("beta_diff", beta_diff)):
        v = v[np.isfinite(v)]
        out[name] = float(v.mean())
        out[f"{name}_se"] = float(v.std(ddof=1) / np.sqrt(v.size))
    return out
