r"""Elastic weight consolidation (Kirkpatrick et al., PNAS 2017): a regularisation strategy.

After task t the diagonal Fisher information at the trained parameters θ*_t,

.. math:: F_{t,i} = \mathbb{E}_{x \sim D_t}\, \mathbb{E}_{\hat y \sim p_\theta(\cdot|x)}
          \left[\left(\partial_{\theta_i} \log p_\theta(\hat y \mid x)\right)^2\right],

is estimated on ``fisher_samples`` training examples (labels drawn from the model: the true
Fisher, not the empirical one), and training on later tasks adds
:math:`\frac{\lambda}{2} \sum_t \sum_i F_{t,i} (\theta_i - \theta^*_{t,i})^2`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.func import functional_call, grad, vmap

from theorylab.empirical.continual.strategies.base import Strategy, register
from theorylab.seeding import torch_generator

__all__ = ["EWC", "diagonal_fisher", "diagonal_fisher_reference"]


def _log_prob(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _sample_labels(model, x, mask, gen) -> torch.Tensor:
    with torch.no_grad():
        logits = model(x)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(-1)


def diagonal_fisher(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None,
                    gen: torch.Generator, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Diagonal Fisher: mean over x of the squared per-example score, labels sampled from the
    model. Per-example gradients by ``torch.func`` (vmap of grad), in chunks."""
    y = _sample_labels(model, x, mask, gen)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def logp(p, xi, yi):
        return _log_prob(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0), mask)[0]

    per_example = vmap(grad(logp), in_dims=(None, 0, 0))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for i in range(0, len(x), chunk):
        g = per_example(params, x[i:i + chunk], y[i:i + chunk])
        for k in total:
            total[k] += (g[k] ** 2).sum(0)
    return {k: v / len(x) for k, v in total.items()}


def diagonal_fisher_reference(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None,
                              gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The slow twin of :func:`diagonal_fisher`: one autograd backward per example."""
    y = _sample_labels(model, x, mask, gen)
    total = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    for xi, yi in zip(x, y, strict=True):
        model.zero_grad(set_to_none=True)
        _log_prob(model(xi.unsqueeze(0)), yi.unsqueeze(0), mask)[0].backward()
        for k, p in model.named_parameters():
            total[k] += p.grad ** 2
    model.zero_grad(set_to_none=True)
    return {k: v / len(x) for k, v in total.items()}


@register
@dataclass
class EWC(Strategy):
    """EWC with one (Fisher, anchor) pair per finished task."""

    name = "ewc"
    family = "regularisation"
    lam: float = 100.0
    fisher_samples: int = 500
    carried = ("_terms",)
    _terms: list = field(default_factory=list, repr=False)

    def penalty(self, learner, model, x, y):
        if not self._terms:
            return None
        total = 0.0
        for fisher, anchor in self._terms:
            for k, p in model.named_parameters():
                total = total + (fisher[k] * (p - anchor[k]) ** 2).sum()
        return 0.5 * self.lam * total

    def after_task(self, learner, task):
        gen = torch_generator(learner.seed, "ewc", task.index)
        idx = torch.randperm(len(task.x_train), generator=gen)[:self.fisher_samples]
        fisher = diagonal_fisher(learner.model, task.x_train[idx], task.output_mask(), gen)
        anchor = {k: p.detach().clone() for k, p in learner.model.named_parameters()}
        self._terms.append((fisher, anchor))

    def state_bytes(self) -> int:
        return sum(2 * v.numel() * v.element_size() for f, _ in self._terms for v in f.values())
