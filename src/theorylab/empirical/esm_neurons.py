"""Knowledge neurons of a fine-tuned ESM-2 (Nori, Singireddy & Ten Have, arXiv 2312.10770).

A *neuron* is one output unit ``i`` of a Linear layer of a transformer block: query, key, value,
attention output (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``) or FFN (``fc1``, ``fc2``).
For an input ``x`` let ``a_i(x, t)`` be its activation at residue position ``t``.

Scores (one number per neuron, over a set of labelled inputs)
  * activation: ``S_act(i) = mean_{x, t} |a_i(x, t)|`` over residue positions;
  * integrated gradients (Sundararajan et al. 2017, as used by Dai et al. 2022 for knowledge
    neurons): with ``F(ĥ) = p(y | x)`` the gold-label probability when the layer's output is
    replaced by ``ĥ`` and the baseline ``ĥ = 0``,

    .. math:: \\mathrm{IG}_{i,t}(x) = a_{i,t} \\int_0^1 \\partial F(\\alpha a)/\\partial \\hat h_{i,t}\\, d\\alpha,
              \\qquad S_{IG}(i) = \\mathrm{mean}_x \\sum_t \\mathrm{IG}_{i,t}(x).

    Completeness: ``Σ_{i,t} IG_{i,t}(x) = F(a) − F(0)``. captum's ``IntegratedGradients`` is run
    on ``ĥ`` for all neurons of a layer at once (one batched call per layer).

Preservation: keep the top fraction ``f`` of all neurons (one global ranking) at fine-tuned
weights and set the rest of their rows ``W[i, :]``, ``b[i]`` to the pre-fine-tuning values or 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from theorylab.empirical.esm_model import residue_mask
from theorylab.errors import ConfigError, InputError
from theorylab.validation import check_int, check_real

__all__ = ["MODULE_KINDS", "NeuronModule", "neuron_modules", "activation_scores", "ig_scores",
           "IGResult", "select_top", "select_random", "preserved_state", "density"]

#: fair-esm attribute → module kind (the paper's names).
MODULE_KINDS: dict[str, str] = {"self_attn.q_proj": "query", "self_attn.k_proj": "key",
                                "self_attn.v_proj": "value", "self_attn.out_proj": "attn_out",
                                "fc1": "ffn_in", "fc2": "ffn_out"}


class NeuronModule(NamedTuple):
    """One Linear layer whose output units are neurons; ``name`` is relative to the ESM2 model."""

    name: str
    layer: int
    kind: str
    module: nn.Linear


def neuron_modules(esm2: nn.Module) -> list[NeuronModule]:
    """Every neuron Linear of a fair-esm ESM2, in layer order then ``MODULE_KINDS`` order."""
    out = []
    for li, block in enumerate(esm2.layers):
        for attr, kind in MODULE_KINDS.items():
            mod = block.get_submodule(attr)
            out.append(NeuronModule(f"layers.{li}.{attr}", li, kind, mod))
    return out


def _batches(tokens: torch.Tensor, size: int) -> Iterable[slice]:
    for s in range(0, tokens.shape[0], size):
        yield slice(s, s + size)


@torch.no_grad()
def activation_scores(model: nn.Module, tokens: torch.Tensor, batch_size: int = 64
                      ) -> dict[str, torch.Tensor]:
    """``S_act(i) = mean |a_i(x, t)|`` over all inputs and residue positions, per neuron module.

    ``model`` is an :class:`~theorylab.empirical.esm_model.ESMClassifier` (its ``.esm`` is hooked).
    """
    mods = neuron_modules(model.esm)
    sums = {m.name: torch.zeros(m.module.out_features, dtype=torch.float64) for m in mods}
    count = 0
    state: dict[str, torch.Tensor] = {}

    def hook(name):
        def f(_mod, _inp, out):  # out: (T, B, D); runs before fair-esm scales q in place
            w = state["mask"].transpose(0, 1).unsqueeze(-1).to(out.dtype)
            sums[name] += (out.abs() * w).sum((0, 1)).double().cpu()
        return f

    handles = [m.module.register_forward_hook(hook(m.name)) for m in mods]
    was = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        for sl in _batches(tokens, batch_size):
            tok = tokens[sl].to(dev)
            state["mask"] = residue_mask(tok)
            count += int(state["mask"].sum())
            model(tok)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {k: (v / max(count, 1)).float() for k, v in sums.items()}


class IGResult(NamedTuple):
    """IG scores per module (D,), and completeness per module: ``delta`` (N,) =
    Σ IG − (F(a) − F(0)) and ``gap`` (N,) = F(a) − F(0)."""

    scores: dict[str, torch.Tensor]
    delta: dict[str, torch.Tensor]
    gap: dict[str, torch.Tensor]


def _gold_prob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), -1).gather(1, labels[:, None]).squeeze(1)


def ig_scores(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, *, n_steps: int = 20,
              batch_size: int = 16, method: str = "gausslegendre",
              modules: Iterable[str] | None = None) -> IGResult:
    """Integrated-gradients score of every neuron (see module docstring), batched per layer.

    For each neuron module, the module's output is replaced by captum's scaled copy
    ``ĥ = α a`` (all neurons at once, baseline 0) and ``F = p(y | x)`` is differentiated.
    ``batch_size`` inputs × ``n_steps`` interpolation points go through the model per call.
    """
    from captum.attr import IntegratedGradients
    n_steps = check_int("ig_scores", "n_steps", n_steps, lo=1)
    batch_size = check_int("ig_scores", "batch_size", batch_size, lo=1)
    if tokens.shape[0] != labels.shape[0]:
        raise InputError(f"'labels' of ig_scores must have {tokens.shape[0]} entries (one per "
                         f"sequence). Got {labels.shape[0]}.")
    mods = neuron_modules(model.esm)
    if modules is not None:
        wanted = set(modules)
        unknown = wanted - {m.name for m in mods}
        if unknown:
            raise ConfigError(f"'modules' of ig_scores has unknown module {sorted(unknown)[0]!r}.")
        mods = [m for m in mods if m.name in wanted]
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    scores, deltas, gaps = {}, {}, {}
    try:
        for m in mods:
            tot = torch.zeros(m.module.out_features, dtype=torch.float64)
            dl, gp = [], []
            replace: dict[str, torch.Tensor | None] = {"h": None}
            captured: dict[str, torch.Tensor] = {}

            def hook(_mod, _inp, out, replace=replace, captured=captured):
                if replace["h"] is None:  # capture the real activation a, batch-first
                    captured["a"] = out.detach().transpose(0, 1).clone()
                    return None
                # clone: fair-esm scales q in place, which must not touch captum's leaf
                return replace["h"].transpose(0, 1).clone()

            def forward(h, tok, lab, replace=replace):
                replace["h"] = h
                try:
                    return _gold_prob(model(tok), lab)
                finally:
                    replace["h"] = None

            handle = m.module.register_forward_hook(hook)
            try:
                ig = IntegratedGradients(forward)
                for sl in _batches(tokens, batch_size):
                    tok, lab = tokens[sl].to(dev), labels[sl].to(dev)
                    with torch.no_grad():
                        f_full = _gold_prob(model(tok), lab)
                    a = captured.pop("a")
                    attr, delta = ig.attribute(a, baselines=torch.zeros_like(a),
                                               additional_forward_args=(tok, lab),
                                               n_steps=n_steps, method=method,
                                               return_convergence_delta=True)
                    with torch.no_grad():
                        f_zero = forward(torch.zeros_like(a), tok, lab)
                    tot += attr.sum(1).double().sum(0).cpu()
                    dl.append(delta.detach().double().cpu())
                    gp.append((f_full - f_zero).detach().double().cpu())
            finally:
                handle.remove()
            scores[m.name] = (tot / tokens.shape[0]).float()
            deltas[m.name] = torch.cat(dl)
            gaps[m.name] = torch.cat(gp)
    finally:
        model.train(was)
    return IGResult(scores, deltas, gaps)


# ----------------------------------------------------------------------------- selection
def _check_frac(frac) -> float:
    return check_real("select", "frac", frac, lo=0, hi=1)


def select_top(scores: Mapping[str, torch.Tensor], frac: float) -> dict[str, torch.Tensor]:
    """Boolean masks keeping the ``round(frac · N)`` highest-scoring of all N neurons (one global
    ranking; ties broken by module order then unit index)."""
    frac = _check_frac(frac)
    names = list(scores)
    flat = torch.cat([scores[n].detach().double().cpu().reshape(-1) for n in names]).numpy()
    if not np.isfinite(flat).all():
        raise InputError("'scores' of select_top must be finite.")
    k = int(round(frac * flat.size))
    order = np.lexsort((np.arange(flat.size), -flat))  # primary −score, then index
    keep = np.zeros(flat.size, dtype=bool)
    keep[order[:k]] = True
    return _unflatten(keep, names, [scores[n].numel() for n in names])


def select_random(sizes: Mapping[str, int], frac: float, rng: np.random.Generator
                  ) -> dict[str, torch.Tensor]:
    """Boolean masks keeping ``round(frac · N)`` neurons drawn uniformly without replacement."""
    frac = _check_frac(frac)
    names = list(sizes)
    n = int(sum(sizes.values()))
    keep = np.zeros(n, dtype=bool)
    keep[rng.choice(n, size=int(round(frac * n)), replace=False)] = True
    return _unflatten(keep, names, [int(sizes[k]) for k in names])


def _unflatten(keep: np.ndarray, names, sizes) -> dict[str, torch.Tensor]:
    out, s = {}, 0
    for name, d in zip(names, sizes, strict=True):
        out[name] = torch.from_numpy(keep[s:s + d].copy())
        s += d
    return out


def preserved_state(finetuned: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]
                    | None, masks: Mapping[str, torch.Tensor], prefix: str = "esm."
                    ) -> dict[str, torch.Tensor]:
    """State dict equal to ``finetuned`` except rows of unselected neurons.

    For each neuron module ``m`` and unit ``i`` with ``masks[m][i]`` False:
    ``W[i, :] ← W_ref[i, :]`` and ``b[i] ← b_ref[i]`` (``reference`` None → 0). All other
    parameters (embeddings, layer norms, classification head) stay fine-tuned.
    """
    out = dict(finetuned)
    for name, keep in masks.items():
        for p in ("weight", "bias"):
            key = f"{prefix}{name}.{p}"
            if key not in finetuned:
                if p == "bias":
                    continue
                raise ConfigError(f"'masks' names module {name!r} absent from the state dict.")
            w = finetuned[key]
            if keep.shape[0] != w.shape[0]:
                raise InputError(f"mask of {name!r} must have {w.shape[0]} entries. "
                                 f"Got {keep.shape[0]}.")
            ref = torch.zeros_like(w) if reference is None else reference[key].to(w)
            k = keep.to(w.device).reshape(-1, *([1] * (w.dim() - 1)))
            out[key] = torch.where(k, w, ref)
    return out


def density(masks: Mapping[str, torch.Tensor]) -> dict[tuple[int, str], float]:
    """Fraction of each module's neurons that are selected, keyed by (layer, kind)."""
    out = {}
    for name, keep in masks.items():
        layer = int(name.split(".")[1])
        kind = MODULE_KINDS[name.split(".", 2)[2]]
        out[(layer, kind)] = float(keep.double().mean())
    return out
