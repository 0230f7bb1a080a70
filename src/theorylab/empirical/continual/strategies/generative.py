r"""Deep generative replay (Shin, Lee, Kim & Kim, NeurIPS 2017): a generative-replay strategy.

A variational auto-encoder G (Kingma & Welling, 2014; Bernoulli decoder on pixels in [0, 1],
Gaussian latent of ``latent`` dimensions) learns the inputs of every task seen: after task t it is
trained on task t's inputs mixed with as many samples of the previous G. The solver trains on task
t's batches plus ``replay_batch`` generated inputs x̃ ~ G labelled by the previous solver
(argmax over the classes seen before t), its loss weighted by t, the number of tasks it
stands for (van de Ven & Tolias, arXiv 1809.10635). No real example of an old task is stored: the memory is
the generator's and the old solver's weights. The negative ELBO per example is

.. math:: -\mathcal{L}(x) = -\sum_d \left[x_d \log \hat x_d + (1 - x_d)\log(1 - \hat x_d)\right]
          + \tfrac12 \sum_k \left(\mu_k^2 + \sigma_k^2 - \log \sigma_k^2 - 1\right).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from theorylab.empirical.continual.strategies.base import Batches, Strategy, as_is, cloned, register
from theorylab.empirical.train import train
from theorylab.seeding import torch_generator, torch_seed

__all__ = ["VAE", "GenerativeReplay"]


class VAE(torch.nn.Module):
    """A small MLP VAE: x (D) → h → (μ, log σ²) (latent) → h → logits of x̂ (D)."""

    def __init__(self, dim: int, hidden: int = 256, latent: int = 16):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU())
        self.mu, self.logvar = torch.nn.Linear(hidden, latent), torch.nn.Linear(hidden, latent)
        self.dec = torch.nn.Sequential(torch.nn.Linear(latent, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, dim))
        self.latent = latent

    def neg_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of −ELBO (the formula in the module docstring)."""
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum")
        kl = 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum()
        return (rec + kl) / len(x)

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.latent, generator=gen)
        return torch.sigmoid(self.dec(z))


@register
@dataclass
class GenerativeReplay(Strategy):
    name = "generative"
    family = "generative replay"
    replay_batch: int = 32
    hidden: int = 256
    latent: int = 16
    vae_epochs: int | None = None   # None: twice the solver's epochs
    _vae: VAE | None = field(default=None, repr=False)
    _solver: torch.nn.Module | None = field(default=None, repr=False)
    _old: list = field(default_factory=list, repr=False)
    _gen: torch.Generator | None = field(default=None, repr=False)

    def before_task(self, learner, task):
        if self._gen is None:
            self._gen = torch_generator(learner.seed, "generative")

    def _replayed(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._vae.sample(n, self._gen)
        with torch.no_grad():
            logits = self._solver(x)[:, self._old]
        return x, torch.tensor(self._old)[logits.argmax(1)]

    def penalty(self, learner, model, x, y):
        if self._vae is None:
            return None
        rx, ry = self._replayed(self.replay_batch)
        # the replayed batch stands for the t tasks before this one (van de Ven & Tolias, 2018)
        return len(learner.done) * F.cross_entropy(model(rx), ry)

    def after_task(self, learner, task):
        x = task.x_train
        if self._vae is not None:  # the old generator's samples stand for the old tasks
            x = torch.cat([x, self._vae.sample(len(x), self._gen)])
        torch.manual_seed(torch_seed(learner.seed, "vae-init", task.index))
        vae = VAE(x.shape[1], self.hidden, self.latent)
        cfg = learner.config
        cfg = replace(cfg, seed=torch_seed(learner.seed, "vae", task.index),
                      epochs=self.vae_epochs or 2 * cfg.epochs)
        train(vae, lambda m, batch: m.neg_elbo(batch[0]), Batches(x), cfg, collate=as_is)
        self._vae = vae.eval()
        self._solver = copy.deepcopy(learner.model).eval()
        self._old = sorted({c for t in [*learner.done, task] for c in t.classes})

    def state(self) -> dict:
        out = {"gen": self._gen.get_state()}
        if self._vae is not None:
            out.update(vae=cloned(self._vae.state_dict()), solver=cloned(self._solver.state_dict()),
                       old=list(self._old))
        return out

    def load_state(self, learner, state):
        self._gen = torch.Generator()
        self._gen.set_state(state["gen"])
        if "vae" in state:
            dim = state["vae"]["dec.2.weight"].shape[0]
            with torch.random.fork_rng():   # building the modules must not move the global stream
                self._vae = VAE(dim, self.hidden, self.latent)
            self._vae.load_state_dict(state["vae"])
            self._vae.eval()
            self._solver = copy.deepcopy(learner.model).eval()
            self._solver.load_state_dict(state["solver"])
            self._old = list(state["old"])

    def state_bytes(self) -> int:
        mods = [m for m in (self._vae, self._solver) if m is not None]
        return sum(p.numel() * p.element_size() for m in mods for p in m.parameters())
