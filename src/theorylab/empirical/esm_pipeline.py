"""The ESM knowledge-neuron pipeline (Nori, Singireddy & Ten Have, arXiv 2312.10770) as a study.

One unit = one replicate ``rep`` (its own seeds) of the whole pipeline:

1. masked-LM pretraining of an ESM-2 model on the shipped sequences (no weights can be
   downloaded here), minus the task's test split;
2. fine-tuning for sequence classification on a shipped task (binary, or ``"multi"``: which
   benchmark set a positive sequence comes from), split by k-mer Jaccard clusters;
3. neuron scores of every q/k/v/attention-out/FFN Linear: mean |activation| and IG;
4. preservation: keep the top f of neurons (activation, IG, ``n_random`` random draws) at
   fine-tuned weights, reset the rest to pretrained weights or to zero, measure test accuracy;
5. density of selected neurons per (layer, module kind).

The row is wide: ``acc:<method>:<reset>:<f>`` (methods ``act``, ``ig``, ``random<s>``) and
``dens:<method>:<f>:<layer>:<kind>``; :func:`accuracy_table` and :func:`density_table` turn a
study table into long form.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from theorylab.constraints import POSITIVE, SEED, Choice, Device, Int, Real, Tuple
from theorylab.empirical.data.proteins import SHIPPED_SETS, cluster_split, load_shipped
from theorylab.empirical.esm_model import (
    ESM_SHAPES,
    ESMClassifier,
    alphabet,
    build_esm2,
    encode,
    mask_tokens,
    mlm_loss,
)
from theorylab.empirical.esm_neurons import (
    MODULE_KINDS,
    activation_scores,
    density,
    ig_scores,
    neuron_modules,
    preserved_state,
    select_random,
    select_top,
)
from theorylab.seeding import rng_for, seed_for
from theorylab.study import Study
from theorylab.validation import check_choice

__all__ = ["TASKS", "RESETS", "load_task", "EsmNeuronsStudy", "accuracy_table", "density_table"]

#: binary tasks = the shipped sets' own labels; "multi" = source set of the positive sequences.
TASKS = ("soluble", "capsid", "tail", "disulfide", "multi")
MULTI_SOURCES = ("CAPSID", "TAIL", "DISULFIDE", "SOLUBLE")
RESETS = ("pretrained", "zero")


def load_task(task: str) -> tuple[pd.DataFrame, list[str]]:
    """(entry, sequence, label) rows of a task, deduplicated by sequence, and the class names."""
    check_choice("load_task", "task", task, TASKS)
    if task == "multi":
        parts = []
        for cls, name in enumerate(MULTI_SOURCES):
            d = load_shipped(name)
            d = d[d.label == 1].assign(label=cls)
            parts.append(d)
        df = pd.concat(parts, ignore_index=True)
        names = [n.lower() for n in MULTI_SOURCES]
    else:
        df = load_shipped(task.upper())
        names = [f"not {task}", task]
    # a sequence listed under two labels is ambiguous: drop it
    n_labels = df.groupby("sequence").label.nunique()
    df = df[df.sequence.map(n_labels) == 1].drop_duplicates("sequence").reset_index(drop=True)
    return df, names


def _pad_collate(rows):
    pad = alphabet().padding_idx
    width = max(r.shape[0] for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out


def _split_rows(tokens: torch.Tensor) -> list[torch.Tensor]:
    pad = alphabet().padding_idx
    return [row[row != pad] for row in tokens]


@torch.no_grad()
def _accuracy(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, bs: int = 128) -> float:
    model.eval()
    dev = next(model.parameters()).device
    hits = 0
    for s in range(0, tokens.shape[0], bs):
        pred = model(tokens[s:s + bs].to(dev)).argmax(-1).cpu()
        hits += int((pred == labels[s:s + bs]).sum())
    return hits / tokens.shape[0]


@dataclass(frozen=True)
class EsmNeuronsStudy(Study):
    """Knowledge-neuron preservation study (defaults: the full CPU run of the book chapter)."""

    name: ClassVar[str] = "esm-neurons"

    task: str = "multi"                # shipped task (TASKS)
    size: str = "small"                # ESM_SHAPES key: tiny | small | t6_8M
    max_len: int = 96                  # tokens incl. BOS/EOS (sequences truncated)
    n_pretrain: int = 3000             # MLM pretraining sequences (all shipped sets)
    pretrain_epochs: int = 2
    pretrain_lr: float = 2e-3
    n_task: int = 2000                 # task sequences (class-balanced sample) before the split
    finetune_epochs: int = 20          # upper bound: early stopping on validation loss
    finetune_lr: float = 1e-3
    batch_size: int = 32
    patience: int = 3                  # epochs without validation improvement
    n_attr: int = 32                   # training sequences used to score neurons
    ig_steps: int = 20                 # Gauss-Legendre points (Dai et al. use ~20)
    fractions: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # the paper's grid
    n_random: int = 5                  # random selections per fraction (CI over these)
    resets: tuple[str, ...] = RESETS
    n_reps: int = 4                    # independently seeded replicates of the whole pipeline
    device: str = "auto"
    seed: int = 0

    constraints: ClassVar = {
        "task": Choice(TASKS),
        "size": Choice(tuple(ESM_SHAPES)),
        "max_len": Int(8, 1024),             # attention is batch x heads x max_len^2 floats
        "n_pretrain": Int(1, 100_000),       # held as token tensors (n x max_len int64)
        "pretrain_epochs": Int(1, 1000),
        "pretrain_lr": POSITIVE,
        "n_task": Int(20, 100_000),
        "finetune_epochs": Int(1, 1000),
        "finetune_lr": POSITIVE,
        "batch_size": Int(1, 4096),
        "patience": Int(1, 1000),
        "n_attr": Int(2, 10_000),
        "ig_steps": Int(1, 1000),            # IG runs a batch of ig_steps scaled activations
        "fractions": Tuple(Real(0, 1, lo_open=True), max_len=100),
        "n_random": Int(2, 1000),
        "resets": Tuple(Choice(RESETS), max_len=len(RESETS)),
        "n_reps": Int(1, 100),
        "device": Device(),
        "seed": SEED,
    }

    def quick(self) -> EsmNeuronsStudy:
        """CI form: tiny model, short sequences, fewer data; same fractions, seeds and tests."""
        return self.replace(size="tiny", max_len=64, n_pretrain=1500, pretrain_epochs=3,
                            n_task=2000, finetune_lr=2e-3, n_attr=32, n_reps=1)

    def units(self) -> list[dict]:
        return [{"rep": r} for r in range(self.n_reps)]

    # -------------------------------------------------------------------------------- pipeline
    def run_unit(self, unit: dict) -> dict:
        from theorylab.empirical.train import TrainConfig, pick_device, train
        rep = int(unit["rep"])
        device = pick_device(self.device)
        row: dict = {"device": str(device)}
        t_start = time.perf_counter()

        # -- data: class-balanced task sample, cluster split, pretraining corpus
        df, names = load_task(self.task)
        rng = rng_for(self.seed, "task", rep)
        per_class = self.n_task // len(names)
        idx = np.concatenate([rng.permutation(np.flatnonzero(df.label.values == c))[:per_class]
                              for c in range(len(names))])
        df = df.iloc[np.sort(idx)].reset_index(drop=True)
        split = cluster_split(list(df.sequence), seed=seed_for(self.seed, "split", rep))
        test_seqs = set(df.sequence.iloc[split.test])
        corpus = pd.concat([load_shipped(s) for s in SHIPPED_SETS]).sequence.drop_duplicates()
        corpus = corpus[~corpus.isin(test_seqs) & (corpus.str.len() >= 10)].to_numpy()
        corpus = rng_for(self.seed, "corpus", rep).permutation(corpus)[: self.n_pretrain]

        # -- 1. masked-LM pretraining
        esm2 = build_esm2(self.size, seed=seed_for(self.seed, "init", rep))
        gen = torch.Generator().manual_seed(seed_for(self.seed, "mask", rep) % 2**62)

        def mlm_collate(rows):
            return mask_tokens(_pad_collate(rows), gen)

        pre_rows = _split_rows(encode(list(corpus), self.max_len))
        cfg = TrainConfig(epochs=self.pretrain_epochs, lr=self.pretrain_lr,
                          batch_size=self.batch_size, weight_decay=0.01, device=self.device,
                          seed=seed_for(self.seed, "pretrain", rep) % 2**62)
        res = train(esm2, lambda m, b: mlm_loss(m, *b), pre_rows, cfg, collate=mlm_collate)
        n_tok = sum(int(r.shape[0]) for r in pre_rows) * len(res.train_loss)
        row.update(pretrain_loss=res.train_loss[-1], pretrain_seconds=res.seconds,
                   pretrain_tokens_per_s=n_tok / max(res.seconds, 1e-9),
                   n_params=sum(p.numel() for p in esm2.parameters()))
        pre_state = {k: v.detach().clone() for k, v in esm2.state_dict().items()}

        # -- 2. fine-tuning for classification
        tokens = encode(list(df.sequence), self.max_len)
        labels = torch.tensor(df.label.values, dtype=torch.long)
        tr, va, te = (torch.from_numpy(p) for p in split)
        model = ESMClassifier(esm2, len(names))
        torch.manual_seed(seed_for(self.seed, "head", rep) % 2**62)
        model.head.reset_parameters()
        train_rows = [(tokens[i][tokens[i] != alphabet().padding_idx], labels[i]) for i in tr]

        def cls_collate(rows):
            return _pad_collate([r[0] for r in rows]), torch.stack([r[1] for r in rows])

        def cls_loss(m, b):
            return nn.functional.cross_entropy(m(b[0]), b[1])

        @torch.no_grad()
        def val_loss(m):
            dev = next(m.parameters()).device
            return float(nn.functional.cross_entropy(m(tokens[va].to(dev)), labels[va].to(dev)))

        cfg = TrainConfig(epochs=self.finetune_epochs, lr=self.finetune_lr,
                          batch_size=self.batch_size, device=self.device, patience=self.patience,
                          seed=seed_for(self.seed, "finetune", rep) % 2**62)
        res = train(model, cls_loss, train_rows, cfg, val_fn=val_loss, collate=cls_collate)
        ft_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        x_te, y_te = tokens[te], labels[te]
        row.update(n_train=len(tr), n_val=len(va), n_test=len(te), n_classes=len(names),
                   finetune_seconds=res.seconds, finetune_epochs_run=len(res.train_loss),
                   acc_finetuned=_accuracy(model, x_te, y_te),
                   acc_majority=float(np.bincount(y_te.numpy()).max() / len(y_te)))

        # -- 3. neuron scores on n_attr training sequences
        pick = tr[torch.from_numpy(rng_for(self.seed, "attr", rep).permutation(len(tr))
                                   [: self.n_attr])]
        x_at, y_at = tokens[pick], labels[pick]
        x_at = x_at[:, : int((x_at != alphabet().padding_idx).sum(1).max())]
        t0 = time.perf_counter()
        act = activation_scores(model, x_at)
        row["act_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ig = ig_scores(model, x_at, y_at, n_steps=self.ig_steps)
        row["ig_seconds"] = time.perf_counter() - t0
        deltas = torch.cat(list(ig.delta.values())).abs()
        gaps = torch.cat(list(ig.gap.values())).abs()
        row.update(ig_abs_delta_max=float(deltas.max()), ig_abs_delta_mean=float(deltas.mean()),
                   ig_abs_gap_mean=float(gaps.mean()),
                   ig_rel_error=float(deltas.sum() / gaps.sum().clamp_min(1e-12)))

        # -- 4./5. preservation and density
        sizes = {m.name: m.module.out_features for m in neuron_modules(model.esm)}
        refs = {"pretrained": {f"esm.{k}": v for k, v in pre_state.items()}, "zero": None}
        selections: dict[str, dict[float, dict]] = {"act": {}, "ig": {}}
        for f in self.fractions:
            selections["act"][f] = select_top(act, f)
            selections["ig"][f] = select_top(ig.scores, f)
        for s in range(self.n_random):
            r_rng = rng_for(self.seed, "random", rep, s)
            selections[f"random{s}"] = {f: select_random(sizes, f, r_rng) for f in self.fractions}
        for reset in self.resets:
            none = {n: torch.zeros(d, dtype=torch.bool) for n, d in sizes.items()}
            model.load_state_dict(preserved_state(ft_state, refs[reset], none))
            row[f"acc:none:{reset}"] = _accuracy(model, x_te, y_te)
            for method, by_f in selections.items():
                for f, masks in by_f.items():
                    model.load_state_dict(preserved_state(ft_state, refs[reset], masks))
                    row[f"acc:{method}:{reset}:{f}"] = _accuracy(model, x_te, y_te)
        model.load_state_dict(ft_state)
        for method in ("act", "ig"):
            for f, masks in selections[method].items():
                for (layer, kind), d in density(masks).items():
                    row[f"dens:{method}:{f}:{layer}:{kind}"] = d
        row["seconds_total"] = time.perf_counter() - t_start
        return row


# ------------------------------------------------------------------------------- long tables
def accuracy_table(table: pd.DataFrame) -> pd.DataFrame:
    """Long form of the ``acc:`` columns: rep, method, seed (random only), reset, f, acc."""
    recs = []
    for col in table.columns:
        if not col.startswith("acc:"):
            continue
        parts = col.split(":")
        if len(parts) != 4:
            continue
        _, method, reset, f = parts
        seed = int(method[6:]) if method.startswith("random") else -1
        base = "random" if method.startswith("random") else method
        for rep, acc in zip(table["rep"], table[col], strict=True):
            recs.append((int(rep), base, seed, reset, float(f), float(acc)))
    return pd.DataFrame(recs, columns=["rep", "method", "seed", "reset", "f", "acc"])


def density_table(table: pd.DataFrame) -> pd.DataFrame:
    """Long form of the ``dens:`` columns: rep, method, f, layer, kind, density."""
    recs = []
    for col in table.columns:
        if col.startswith("dens:"):
            _, method, f, layer, kind = col.split(":")
            for rep, d in zip(table["rep"], table[col], strict=True):
                recs.append((int(rep), method, float(f), int(layer), kind, float(d)))
    out = pd.DataFrame(recs, columns=["rep", "method", "f", "layer", "kind", "density"])
    out["kind"] = pd.Categorical(out["kind"], categories=list(MODULE_KINDS.values()))
    return out
