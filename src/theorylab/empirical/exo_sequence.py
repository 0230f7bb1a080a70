r"""A synthetic sequence-alignment task (an IMDB analogue) for EXO vs DPO (Ji et al. 2024, experiments).

The paper aligns gpt2-large on IMDB prefixes towards positive sentiment (oracle reward: a
sentiment classifier; preferences labelled by the reward) and plots oracle reward against
:math:`\mathrm{KL}(\pi_\theta\|\pi_{sft})`. Here, at laptop scale:

* **Language.** Vocabulary ``BOS`` + ``n_pos`` positive + ``n_neg`` negative + ``n_neutral``
  neutral words. A document draws a mood (positive / negative / mixed); each token is a sentiment
  word with probability ``p_sentiment`` (polarity positive w.p. 0.8 / 0.2 / 0.5 by mood, word from
  a fixed random distribution) and otherwise a neutral word from a random bigram chain. The mood
  persists, so a prompt's sentiment predicts its continuation, as in reviews.
* **π_sft.** :class:`theorylab.empirical.lm.TinyLM` trained here on a generated corpus with
  :func:`theorylab.empirical.train.train` (next-token cross-entropy).
* **Reward.** :math:`r(x, y) = \sigma(g\,(\#\text{pos}(y) - \#\text{neg}(y)))` on the completion.
* **Alignment data.** Prompts are the first ``prompt_len`` tokens of held-out documents; K
  completions per prompt are sampled from π_sft once. Reward mode uses all K with their rewards;
  preference mode uses the first two, labelled by Bradley–Terry
  :math:`P(y_1\succ y_2) = \sigma((r_1 - r_2)/\tau)` with :math:`\tau = \beta_r`.
* **Methods.** ``exo_rw`` (:func:`~theorylab.kernels.exo.exo_loss`), ``dpo_rw``
  (:func:`~theorylab.kernels.exo.dpo_ksample_loss`), ``exo_pref``
  (:func:`~theorylab.kernels.exo.exo_pref_loss`, ε = 1e-3 as TRL recommends) and ``dpo_pref``
  (:func:`~theorylab.kernels.exo.dpo_loss`), each across ``betas`` (β_π; β_r fixed), plus ``sft``.
* **Evaluation.** On held-out prompts, completions sampled from π_θ: mean reward and the
  Monte-Carlo sequence KL :math:`\mathbb{E}_{y\sim\pi_\theta}[\log\pi_\theta(y|x) - \log\pi_{sft}(y|x)]`.

One unit = (seed, method, β). π_sft and the sampled data depend only on the seed (and the fields
in :data:`PREPARE_FIELDS`): they are the artifact ``sft`` of that seed, built once in the store
and loaded by every unit, worker and rerun, so every method of a seed starts from the same π_sft
and sees the same data.

Built on the empirical layer's ``TinyLM`` and its one training loop ``train``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from theorylab.constraints import POSITIVE, SEED, UNIT, Choice, Int, Real, Tuple
from theorylab.errors import ConfigError
from theorylab.kernels import exo as kx
from theorylab.seeding import rng_for, torch_generator, torch_seed
from theorylab.study import Study, memory_context
from theorylab.threads import single_thread

if TYPE_CHECKING:
    from theorylab.artifacts import UnitContext

__all__ = ["SequenceAlignmentStudy", "SEQ_METHODS", "PREPARE_FIELDS", "make_language",
           "generate_corpus", "sentiment_reward", "frontier_gap"]

SEQ_METHODS = ("exo_rw", "dpo_rw", "exo_pref", "dpo_pref")
#: the config fields π_sft and the alignment data depend on (the ``sft`` artifact's key)
PREPARE_FIELDS = ("n_pos", "n_neg", "n_neutral", "p_sentiment", "prompt_len", "completion_len",
                  "reward_gain", "n_sft_docs", "sft_epochs", "d_model", "n_prompts", "K",
                  "beta_r", "n_eval", "base_seed")


# ----------------------------------------------------------------------------- language

def make_language(rng: np.random.Generator, n_pos: int, n_neg: int, n_neutral: int) -> dict:
    """Random but fixed word distributions: a Dirichlet(0.3) bigram over neutral words and
    Dirichlet(1) unigrams over positive / negative words and over the first neutral word."""
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return {"n_pos": n_pos, "n_neg": n_neg, "n_neutral": n_neutral,
            "bigram": t(rng.dirichlet(np.full(n_neutral, 0.3), size=n_neutral)),
            "pos_words": t(rng.dirichlet(np.ones(n_pos))), "neg_words": t(rng.dirichlet(np.ones(n_neg))),
            "start": t(rng.dirichlet(np.ones(n_neutral)))}


def generate_corpus(lang: dict, n_docs: int, length: int, p_sentiment: float,
                    gen: torch.Generator) -> torch.Tensor:
    """(n_docs, 1 + length) token ids, column 0 = BOS (id 0); see the module docstring."""
    n_pos, n_neg = lang["n_pos"], lang["n_neg"]
    off_neu = 1 + n_pos + n_neg
    mood_p = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)        # pos, neg, mixed
    q_pos = torch.tensor([0.8, 0.2, 0.5], dtype=torch.float64)
    mood = torch.multinomial(mood_p, n_docs, replacement=True, generator=gen)
    qp = q_pos[mood]
    out = torch.zeros(n_docs, 1 + length, dtype=torch.long)
    last = torch.multinomial(lang["start"], n_docs, replacement=True, generator=gen)
    for t in range(1, 1 + length):
        u = torch.rand(n_docs, generator=gen, dtype=torch.float64)
        is_sent = u < p_sentiment
        is_pos = torch.rand(n_docs, generator=gen, dtype=torch.float64) < qp
        pos_w = 1 + torch.multinomial(lang["pos_words"], n_docs, replacement=True, generator=gen)
        neg_w = 1 + n_pos + torch.multinomial(lang["neg_words"], n_docs, replacement=True, generator=gen)
        nxt = torch.multinomial(lang["bigram"][last], 1, generator=gen).squeeze(1)
        tok = torch.where(is_sent, torch.where(is_pos, pos_w, neg_w), off_neu + nxt)
        last = torch.where(is_sent, last, nxt)
        out[:, t] = tok
    return out


def sentiment_reward(completions: torch.Tensor, n_pos: int, n_neg: int, gain: float) -> torch.Tensor:
    r""":math:`\sigma(g(\#\text{pos} - \#\text{neg}))` over the completion tokens (…, L) → (…)."""
    pos = ((completions >= 1) & (completions <= n_pos)).sum(-1)
    neg = ((completions > n_pos) & (completions <= n_pos + n_neg)).sum(-1)
    return torch.sigmoid(gain * (pos - neg).to(torch.float64))


# ----------------------------------------------------------------------------- frontier

def frontier_gap(kl_a, rew_a, kl_b, rew_b, n_grid: int = 50) -> float:
    """Mean (reward_a − reward_b) over the common KL range. Each method's frontier: its points
    without the dominated ones (a point is dominated by one of lower KL and higher reward),
    linearly interpolated in x = log(1 + KL). NaN if the KL ranges do not overlap."""
    def envelope(kl, rew):
        order = np.argsort(kl, kind="stable")
        x, y = np.log1p(np.maximum(np.asarray(kl, float)[order], 0)), np.asarray(rew, float)[order]
        keep = np.concatenate([[True], y[1:] > np.maximum.accumulate(y)[:-1]])  # drop dominated
        return x[keep], y[keep]
    xa, ya = envelope(kl_a, rew_a)
    xb, yb = envelope(kl_b, rew_b)
    lo, hi = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    if not hi > lo:
        return float("nan")
    grid = np.linspace(lo, hi, n_grid)
    return float(np.mean(np.interp(grid, xa, ya) - np.interp(grid, xb, yb)))


# ----------------------------------------------------------------------------- study

@dataclass(frozen=True)
class SequenceAlignmentStudy(Study):
    """EXO vs DPO, reward and preference modes, across β, on the synthetic sentiment task.

    Defaults: vocabulary 1 + 6 + 6 + 12 = 25, prompts of 4 tokens, completions of 12; π_sft a
    TinyLM (d=48, 2 layers) trained for 6 epochs on 6000 documents; 512 alignment prompts with
    K = 4 samples; β_r = 0.1 (also the Bradley–Terry temperature); β_π ∈ {0.3, 1, 2, 3, 5, 10};
    3 seeds.
    The paper (Ji et al., arXiv 2402.00856) used β = 0.1 on IMDB with gpt2-large; scale here is
    far smaller.
    """

    name: ClassVar[str] = "exo-sequence-frontier"
    version: ClassVar[int] = 2  # 2: π_sft as an artifact, one torch seed helper

    methods: tuple[str, ...] = SEQ_METHODS
    betas: tuple[float, ...] = (0.3, 1.0, 2.0, 3.0, 5.0, 10.0)   # KL from ~0.1 to ~15 nats
    seeds: tuple[int, ...] = (0, 1, 2)
    n_pos: int = 6
    n_neg: int = 6
    n_neutral: int = 12
    p_sentiment: float = 0.3
    prompt_len: int = 4
    completion_len: int = 12
    reward_gain: float = 0.8
    n_sft_docs: int = 6000
    sft_epochs: int = 6
    d_model: int = 48
    n_prompts: int = 512
    K: int = 4
    beta_r: float = 0.1
    eps: float = 1e-3                   # EXO-pref label smoothing (TRL's recommended value)
    align_epochs: int = 8
    align_lr: float = 1e-3
    batch_size: int = 32
    n_eval: int = 512
    base_seed: int = 0

    constraints: ClassVar = {
        "methods": Tuple(Choice(SEQ_METHODS), max_len=len(SEQ_METHODS)),
        "betas": Tuple(POSITIVE, max_len=100),
        "seeds": Tuple(SEED, max_len=100),
        "n_pos": Int(1, 1000),               # vocabulary = 1 + n_pos + n_neg + n_neutral
        "n_neg": Int(1, 1000),
        "n_neutral": Int(1, 1000),
        "p_sentiment": UNIT,
        # documents of 1 + prompt_len + completion_len tokens: attention is batch x 4 heads x T^2
        "prompt_len": Int(1, 256),
        "completion_len": Int(1, 256),
        "reward_gain": POSITIVE,
        "n_sft_docs": Int(1, 100_000),       # n x T int64 tokens: 10^5 x 513 x 8 B = 410 MB
        "sft_epochs": Int(1, 1000),
        "d_model": Int(4, 1024),             # 4 heads: a multiple of 4 (check())
        "n_prompts": Int(1, 100_000),
        "K": Int(2, 1024),                   # n_prompts x K sampled completions
        "beta_r": POSITIVE,
        "eps": Real(0, 0.5, lo_open=True, hi_open=True),
        "align_epochs": Int(1, 1000),
        "align_lr": POSITIVE,
        "batch_size": Int(1, 4096),
        "n_eval": Int(1, 100_000),
        "base_seed": SEED,
    }

    def check(self):
        if self.d_model % 4:
            raise ConfigError(f"'d_model' of {type(self).__name__} must be a multiple of 4 "
                              f"(the heads). Got {self.d_model}.")

    @property
    def vocab_size(self) -> int:
        return 1 + self.n_pos + self.n_neg + self.n_neutral

    def units(self) -> list[dict]:
        out = [{"seed": s, "method": "sft", "beta": 0.0} for s in self.seeds]
        out += [{"seed": s, "method": m, "beta": float(b)}
                for s in self.seeds for m in self.methods for b in self.betas]
        return out

    # ------------------------------------------------------------------ per-seed preparation
    def _new_model(self):
        from theorylab.empirical.lm import TinyLM
        return TinyLM(self.vocab_size, d_model=self.d_model, n_layers=2, n_heads=4,
                      max_len=1 + self.prompt_len + self.completion_len)

    def prepare(self, seed: int, ctx: UnitContext | None = None) -> dict:
        """π_sft (state dict) and the alignment/eval data of one seed: the artifact ``sft``."""
        return memory_context(self, ctx).artifact("sft", seed, lambda: self._prepare(seed),
                                                  depends_on=PREPARE_FIELDS)

    def _prepare(self, seed: int) -> dict:
        from theorylab.empirical.lm import sample
        from theorylab.empirical.train import TrainConfig, train
        lang = make_language(rng_for(self.base_seed, "lang"), self.n_pos, self.n_neg, self.n_neutral)
        T = 1 + self.prompt_len + self.completion_len
        corpus = generate_corpus(lang, self.n_sft_docs, T - 1, self.p_sentiment,
                                 torch_generator(self.base_seed, "corpus", seed))
        held = generate_corpus(lang, self.n_prompts + self.n_eval, T - 1, self.p_sentiment,
                               torch_generator(self.base_seed, "heldout", seed))
        torch.manual_seed(torch_seed(self.base_seed, "init", seed))
        model = self._new_model()
        V = self.vocab_size

        def lm_loss(m, batch):
            logits = m(batch)
            return F.cross_entropy(logits[:, :-1].reshape(-1, V), batch[:, 1:].reshape(-1))

        res = train(model, lm_loss, list(corpus), TrainConfig(
            epochs=self.sft_epochs, lr=3e-3, batch_size=64, device="cpu", amp=False,
            seed=torch_seed(self.base_seed, "sft", seed), grad_clip=1.0))
        model.eval()
        P1 = 1 + self.prompt_len
        prompts = held[: self.n_prompts, :P1]
        gen = torch_generator(self.base_seed, "samples", seed)
        seqs = sample(model, prompts.repeat_interleave(self.K, 0), self.completion_len, gen)
        seqs = seqs.view(self.n_prompts, self.K, T)
        rewards = sentiment_reward(seqs[..., P1:], self.n_pos, self.n_neg, self.reward_gain)
        mask = torch.zeros(T, dtype=torch.bool)
        mask[P1:] = True
        with torch.no_grad():
            flat = seqs.view(-1, T)
            ref_lp = kx.sequence_logprobs(model(flat).double(), flat, mask.expand(len(flat), T))
        # Bradley–Terry labels on the first two samples: P(y1 ≻ y2) = σ((r1 − r2)/τ), τ = β_r
        p12 = torch.sigmoid((rewards[:, 0] - rewards[:, 1]) / self.beta_r)
        first_wins = torch.rand(self.n_prompts, generator=gen, dtype=torch.float64) < p12
        eval_prompts = held[self.n_prompts:, :P1]
        sft_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"sft_state": sft_state, "seqs": seqs, "rewards": rewards,
                "ref_lp": ref_lp.view(self.n_prompts, self.K), "first_wins": first_wins,
                "eval_prompts": eval_prompts, "mask": mask, "sft_loss": float(res.train_loss[-1])}

    # ------------------------------------------------------------------ one unit
    def run_unit(self, unit: dict, ctx: UnitContext | None = None) -> dict:
        with single_thread():
            return self._run_unit(unit, ctx)

    def _run_unit(self, unit: dict, ctx: UnitContext | None) -> dict:
        from theorylab.empirical.train import TrainConfig, train
        seed, method, beta = unit["seed"], unit["method"], unit["beta"]
        d = self.prepare(seed, ctx)
        sft = self._new_model()
        sft.load_state_dict(d["sft_state"])
        sft.eval()
        policy = self._new_model()
        policy.load_state_dict(d["sft_state"])
        T = d["seqs"].shape[-1]
        mask = d["mask"]
        row: dict = {"sft_train_loss": float(d["sft_loss"])}
        if method != "sft":
            loss_fn = self._loss(method, beta, d, T, mask)
            res = train(policy, loss_fn, list(range(self.n_prompts)), TrainConfig(
                epochs=self.align_epochs, lr=self.align_lr, batch_size=self.batch_size,
                device="cpu", amp=False, grad_clip=1.0,
                seed=torch_seed(self.base_seed, "align", seed, method, beta)))
            row["final_loss"] = float(res.train_loss[-1])
            row["steps"] = int(res.steps)
        row.update(self._evaluate(policy, sft, d, seed, method, beta))
        return row

    def _loss(self, method, beta, d, T, mask):
        seqs, rewards, ref_lp, first_wins = d["seqs"], d["rewards"], d["ref_lp"], d["first_wins"]
        K = seqs.shape[1]
        br, eps = self.beta_r, self.eps

        def policy_lp(model, idx, k):
            flat = seqs[idx, :k].reshape(-1, T)
            lp = kx.sequence_logprobs(model(flat).double(), flat, mask.expand(len(flat), T))
            return lp.view(len(idx), k) - ref_lp[idx, :k]

        def loss_fn(model, idx):
            if method in ("exo_rw", "dpo_rw"):
                lr = policy_lp(model, idx, K)
                fn = kx.exo_loss if method == "exo_rw" else kx.dpo_ksample_loss
                return fn(lr, rewards[idx], beta, br).mean()
            lr = policy_lp(model, idx, 2)
            fw = first_wins[idx]                     # (w, l) by the Bradley–Terry label
            lw = torch.where(fw, lr[:, 0], lr[:, 1])
            ll = torch.where(fw, lr[:, 1], lr[:, 0])
            if method == "exo_pref":
                return kx.exo_pref_loss(lw, ll, beta, eps).mean()
            return kx.dpo_loss(lw, ll, beta).mean()
        return loss_fn

    @torch.no_grad()
    def _evaluate(self, policy, sft, d, seed, method, beta) -> dict:
        from theorylab.empirical.lm import sample
        prompts = d["eval_prompts"]
        P1 = prompts.shape[1]
        gen = torch_generator(self.base_seed, "eval", seed, method, beta)
        seqs = sample(policy, prompts, self.completion_len, gen)
        T = seqs.shape[1]
        mask = torch.zeros(T, dtype=torch.bool)
        mask[P1:] = True
        m = mask.expand(len(seqs), T)
        lp_pi = kx.sequence_logprobs(policy(seqs).double(), seqs, m)
        lp_sft = kx.sequence_logprobs(sft(seqs).double(), seqs, m)
        kl = lp_pi - lp_sft
        rew = sentiment_reward(seqs[:, P1:], self.n_pos, self.n_neg, self.reward_gain)
        n = len(seqs)
        return {"reward": float(rew.mean()), "reward_se": float(rew.std() / math.sqrt(n)),
                "kl": float(kl.mean()), "kl_se": float(kl.std() / math.sqrt(n))}

    def quick(self) -> SequenceAlignmentStudy:
        return self.replace(betas=(1.0, 3.0), n_sft_docs=2000, sft_epochs=3, n_prompts=192,
                            align_epochs=5, n_eval=192)
