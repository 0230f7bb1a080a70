"""A tiny regression model for train() tests, and the rank functions spawned by the DDP tests
(module-level so torch.multiprocessing can pickle them by name)."""

from __future__ import annotations

import torch

import theorylab.empirical.train as train_mod
from theorylab.empirical.train import TrainConfig, train


def data(n: int, seed: int = 7) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return torch.utils.data.TensorDataset(x, torch.sin(x.sum(1)) + 0.1 * x[:, 0] ** 2)


def mse(m, b):
    """Mean over the batch's examples of a per-example loss (what exact DDP needs)."""
    x, y = b
    return ((m(x).squeeze(-1) - y) ** 2).mean()


class _Mixed(torch.nn.Module):
    """A frozen float32 layer, a float64 head, and a parameter no loss uses (its grad stays
    None, so AdamW's weight decay must leave it alone)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(4, 8).requires_grad_(False)
        self.head = torch.nn.Linear(8, 1).double()
        self.unused = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)).double()).float()


def fit(n=32, batch_size=8, epochs=3, seed=0, val_rank_offset=0.0, loss_fn=mse, lr=3e-2,
        mixed=False, **kw):
    """Train a fresh 4-8-1 MLP (same init for every caller) on ``data(n)``; return it and the
    result. ``val_fn`` is minus a validation MSE, plus ``val_rank_offset`` × rank."""
    torch.manual_seed(123)
    model = _Mixed() if mixed else torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    val = data(16, seed=8).tensors
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0

    def val_fn(m):
        return -float(mse(m, val)) + val_rank_offset * rank

    res = train(model, loss_fn, data(n), TrainConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device="cpu", **kw),
        val_fn=val_fn)
    return model, res


def summary(model, res) -> dict:
    return {"params": [p.detach().clone() for p in model.parameters()],
            "train_loss": list(res.train_loss), "val": list(res.val),
            "best_epoch": res.best_epoch, "steps": res.steps, "examples": res.examples}


# (name, fit kwargs): an even split; global batch 5 over 2 ranks with a last batch of 1 (so
# rank 1's share is empty) and early stopping on a maximised score; no shuffle, no clipping;
# two dtypes, a frozen layer and an unused parameter under weight decay.
SCENARIOS = {
    "even": dict(n=32, batch_size=8, epochs=3),
    "uneven": dict(n=21, batch_size=5, epochs=4, val_mode="max", patience=1, seed=3),
    "plain": dict(n=24, batch_size=6, epochs=2, shuffle=False, grad_clip=None),
    "mixed": dict(n=20, batch_size=7, epochs=2, mixed=True, weight_decay=0.1),
}


def rank_scenarios(rank: int, world: int, ckdir: str) -> dict:
    """Every scenario data-parallel, plus an interrupted-and-resumed checkpointed run."""
    out = {name: summary(*fit(val_rank_offset=0.5, **kw)) for name, kw in SCENARIOS.items()}
    writes = []
    real_save = train_mod.atomic_torch_save
    train_mod.atomic_torch_save = lambda obj, path: (writes.append(rank), real_save(obj, path))
    try:
        fit(epochs=2, checkpoint=f"{ckdir}/ck.pt")             # "interrupted" after 2 epochs
        out["resumed"] = summary(*fit(epochs=4, checkpoint=f"{ckdir}/ck.pt"))
    finally:
        train_mod.atomic_torch_save = real_save
    out["writes"] = writes
    return out


def nan_on_rank1(rank: int, world: int) -> None:
    """Rank 1 alone gets a NaN loss at the third step: every rank must raise, none hang."""
    steps = []

    def loss_fn(m, b):
        steps.append(1)
        loss = mse(m, b)
        return loss * float("nan") if rank == 1 and len(steps) == 3 else loss

    fit(loss_fn=loss_fn)
