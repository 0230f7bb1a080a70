r"""Synaptic intelligence (Zenke, Poole & Ganguli, ICML 2017): a regularisation strategy.

During task t each parameter accumulates its contribution to the decrease of the task loss,
:math:`\omega_i \mathrel{+}= -g_i\, \Delta\theta_i` per step (g the gradient of the task loss
alone, Δθ the step's update). At the task's end
:math:`\Omega_i \mathrel{+}= \omega_i / ((\theta_i(t) - \theta_i(t-1))^2 + \xi)` and ω is reset;
later tasks add :math:`c \sum_i \Omega_i (\theta_i - \tilde\theta_i)^2`, θ̃ the parameters at the
end of the previous task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from theorylab.empirical.continual.strategies.base import Strategy, register

__all__ = ["SI"]


@register
@dataclass
class SI(Strategy):
    name = "si"
    family = "regularisation"
    c: float = 1.0
    xi: float = 1e-3
    carried = ("_importance", "_anchor")   # ω, θ at the task's start and step: reset per task
    _omega: dict = field(default_factory=dict, repr=False)      # path integral, this task
    _importance: dict = field(default_factory=dict, repr=False)  # Ω, accumulated
    _anchor: dict = field(default_factory=dict, repr=False)      # θ̃: end of the last task
    _start: dict = field(default_factory=dict, repr=False)       # parameters at task start
    _prev: dict = field(default_factory=dict, repr=False)        # parameters before this step
    _grad: dict = field(default_factory=dict, repr=False)        # task-loss gradient, this step

    def before_task(self, learner, task):
        params = dict(learner.model.named_parameters())
        self._omega = {k: torch.zeros_like(p) for k, p in params.items()}
        self._start = {k: p.detach().clone() for k, p in params.items()}
        self._prev = {k: p.detach().clone() for k, p in params.items()}

    def penalty(self, learner, model, x, y):
        if not self._importance:
            return None
        return self.c * sum((self._importance[k] * (p - self._anchor[k]) ** 2).sum()
                            for k, p in model.named_parameters())

    def after_backward(self, learner, model):
        for k, p in model.named_parameters():
            g = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            if self._importance:  # the penalty's own gradient, 2cΩ(θ - θ̃), is not the task's
                g -= 2 * self.c * self._importance[k] * (p.detach() - self._anchor[k])
            self._grad[k] = g

    def after_step(self, learner, model):
        for k, p in model.named_parameters():
            now = p.detach()
            self._omega[k] -= self._grad[k] * (now - self._prev[k])
            self._prev[k] = now.clone()

    def after_task(self, learner, task):
        for k, p in learner.model.named_parameters():
            delta = p.detach() - self._start[k]
            add = self._omega[k] / (delta ** 2 + self.xi)
            self._importance[k] = self._importance.get(k, 0) + add
            self._anchor[k] = p.detach().clone()

    def state_bytes(self) -> int:
        return sum(2 * v.numel() * v.element_size() for v in self._importance.values())
