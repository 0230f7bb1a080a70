"""The ESM knowledge-neuron pipeline (Nori, Singireddy & Ten Have, arXiv 2312.10770) as a study.

One unit = one replicate ``rep`` of the pipeline after pretraining:

1. masked-LM pretraining of an ESM-2 model on the shipped sequences (no weights can be
   downloaded here) that are not in the task's labelled pool at all — **one model shared by all
   replicates**;
2. fine-tuning for sequence classification on a shipped task (binary, or ``"multi"``: which
   benchmark set a positive sequence comes from), split by k-mer Jaccard clusters;
3. neuron scores of every q/k/v/attention-out/FFN Linear: mean |activation| and IG;
4. preservation: keep the top f of neurons (activation, IG, ``n_random`` random draws) at
   fine-tuned weights, reset the rest to pretrained weights or to zero, measure test accuracy;
5. density of selected neurons per (layer, module kind).

What is shared and what varies. The pretrained model (stage 1) is built once, from seeds that
do not depend on ``rep``, and its corpus excludes every sequence of the task's pool, so no
replicate's test sequence was seen in pretraining. Everything after it is drawn afresh per
replicate from streams keyed by ``(seed, stage, rep)`` (:mod:`theorylab.seeding`): the
class-balanced task sample, its cluster split, the head's initialisation, the fine-tuning batch
order, the attribution inputs and the ``n_random`` random selections. Given the pretrained model,
the replicates are therefore independent and identically distributed, and they are the unit a
confidence interval counts; the random draws *within* a replicate share its fine-tuned model, its
test set and the method's selection, so they are averaged, not counted as independent. The
inference is conditional on the one pretrained model, as in the paper (one public ESM-2
checkpoint, fine-tuned): variation between pretraining runs is not in the interval. Sharing it
is what makes ≥ 8 replicates affordable in the quick run.

Stages 1-3 are artifacts (:mod:`theorylab.artifacts`), each keyed by the config fields it depends
on, so a rerun, or a change of the preservation grid, reuses the trained models and scores. A unit
returns long records: one ``summary`` per replicate, one ``accuracy`` record per (method, random
seed, reset, f), one ``density`` record per (method, f, layer, module kind) and one
``completeness`` record per IG example (attribution sequence, neuron module): the error
``delta`` = Σ IG − ΔF and the gap ΔF = F(a) − F(0) of that layer on that sequence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

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
from theorylab.seeding import rng_for, seed_for, torch_generator, torch_seed
from theorylab.study import Study, memory_context, records
from theorylab.validation import check_choice

if TYPE_CHECKING:
    from theorylab.artifacts import UnitContext

__all__ = ["TASKS", "RESETS", "load_task", "EsmNeuronsStudy", "accuracy_records",
           "density_records", "summary_records", "completeness_records", "PRETRAIN_FIELDS",
           "FINETUNE_FIELDS", "SCORES_FIELDS"]

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
    # 2: staged (artifacts), long records, one torch seed helper; 3: one pretrained model shared
    # by the replicates (corpus without the task pool), per-example completeness records
    version: ClassVar[int] = 3

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
    n_random: int = 5                  # random selections per fraction (averaged per replicate)
    resets: tuple[str, ...] = RESETS
    n_reps: int = 8                    # replicates after pretraining (the CI counts these)
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
                            n_task=2000, finetune_lr=2e-3, n_attr=32)

    def units(self) -> list[dict]:
        return [{"rep": r} for r in range(self.n_reps)]

    # -------------------------------------------------------------------------------- pipeline
    def run_unit(self, unit: dict, ctx: UnitContext | None = None) -> list[dict]:
        """One replicate: three stages as artifacts (pretrain, shared → finetune → scores), then
        the preservation, density and completeness measurements as long records (``record`` =
        "summary", "accuracy", "density" or "completeness")."""
        ctx = memory_context(self, ctx)
        rep = int(unit["rep"])
        t_start = time.perf_counter()
        data = self._task_data(rep)
        pre = ctx.artifact("pretrain", "shared", self._pretrain, depends_on=PRETRAIN_FIELDS)
        ft = ctx.artifact("finetune", rep, lambda: self._finetune(rep, data, pre),
                          depends_on=FINETUNE_FIELDS)
        sc = ctx.artifact("scores", rep, lambda: self._scores(rep, data, ft),
                          depends_on=SCORES_FIELDS)
        model = self._classifier(data, ft["state"])
        summary = {"record": "summary", **pre["stats"], **ft["stats"], **sc["stats"]}
        recs = self._preservation(rep, data, model, pre["state"], ft["state"], sc)
        summary["seconds_total"] = time.perf_counter() - t_start
        return [summary, *recs, *_completeness_rows(sc)]

    def _task_data(self, rep: int) -> dict:
        """Class-balanced task sample of replicate ``rep``, its cluster split and tokens."""
        df, names = load_task(self.task)
        rng = rng_for(self.seed, "task", rep)
        per_class = self.n_task // len(names)
        idx = np.concatenate([rng.permutation(np.flatnonzero(df.label.values == c))[:per_class]
                              for c in range(len(names))])
        df = df.iloc[np.sort(idx)].reset_index(drop=True)
        split = cluster_split(list(df.sequence), seed=seed_for(self.seed, "split", rep))
        tokens = encode(list(df.sequence), self.max_len)
        labels = torch.tensor(df.label.values, dtype=torch.long)
        tr, va, te = (torch.from_numpy(p) for p in split)
        return {"names": names, "tokens": tokens, "labels": labels,
                "train": tr, "val": va, "test": te}

    def _pretrain_corpus(self) -> np.ndarray:
        """``n_pretrain`` shipped sequences (≥ 10 residues) outside the task's whole labelled
        pool, so that no replicate's train, validation or test sequence is seen in pretraining."""
        pool = set(load_task(self.task)[0].sequence)
        corpus = pd.concat([load_shipped(s) for s in SHIPPED_SETS]).sequence.drop_duplicates()
        corpus = corpus[~corpus.isin(pool) & (corpus.str.len() >= 10)].to_numpy()
        return rng_for(self.seed, "corpus").permutation(corpus)[: self.n_pretrain]

    def _pretrain(self) -> dict:
        """Stage 1 (shared by all replicates): masked-LM pretraining; the ESM-2 state dict and
        its statistics."""
        from theorylab.empirical.train import TrainConfig, pick_device, train
        esm2 = build_esm2(self.size, seed=seed_for(self.seed, "init"))
        gen = torch_generator(self.seed, "mask")

        def mlm_collate(rows):
            return mask_tokens(_pad_collate(rows), gen)

        pre_rows = _split_rows(encode(list(self._pretrain_corpus()), self.max_len))
        cfg = TrainConfig(epochs=self.pretrain_epochs, lr=self.pretrain_lr,
                          batch_size=self.batch_size, weight_decay=0.01, device=self.device,
                          seed=torch_seed(self.seed, "pretrain"))
        res = train(esm2, lambda m, b: mlm_loss(m, *b), pre_rows, cfg, collate=mlm_collate)
        n_tok = sum(int(r.shape[0]) for r in pre_rows) * len(res.train_loss)
        stats = {"device": str(pick_device(self.device)), "pretrain_loss": res.train_loss[-1],
                 "n_pretrain_seqs": len(pre_rows),
                 "pretrain_seconds": res.seconds,
                 "pretrain_tokens_per_s": n_tok / max(res.seconds, 1e-9),
                 "n_params": sum(p.numel() for p in esm2.parameters())}
        return {"state": _cpu_state(esm2), "stats": stats}

    def _classifier(self, data: dict, state: dict | None = None, pretrained: dict | None = None
                    ) -> ESMClassifier:
        """The classifier (ESM-2 + head) of this study's shape, with ``state`` loaded, or with
        the ``pretrained`` encoder and a freshly seeded head."""
        esm2 = build_esm2(self.size)
        if pretrained is not None:
            esm2.load_state_dict(pretrained)
        model = ESMClassifier(esm2, len(data["names"]))
        if state is not None:
            model.load_state_dict(state)
        return model

    def _finetune(self, rep: int, data: dict, pre: dict) -> dict:
        """Stage 2: fine-tuning for classification, early-stopped on validation loss."""
        from theorylab.empirical.train import TrainConfig, train
        tokens, labels = data["tokens"], data["labels"]
        tr, va, te = data["train"], data["val"], data["test"]
        model = self._classifier(data, pretrained=pre["state"])
        torch.manual_seed(torch_seed(self.seed, "head", rep))
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
                          seed=torch_seed(self.seed, "finetune", rep))
        res = train(model, cls_loss, train_rows, cfg, val_fn=val_loss, collate=cls_collate)
        y_te = labels[te]
        stats = {"n_train": len(tr), "n_val": len(va), "n_test": len(te),
                 "n_classes": len(data["names"]), "finetune_seconds": res.seconds,
                 "finetune_epochs_run": len(res.train_loss),
                 "acc_finetuned": _accuracy(model, tokens[te], y_te),
                 "acc_majority": float(np.bincount(y_te.numpy()).max() / len(y_te))}
        return {"state": _cpu_state(model), "stats": stats}

    def _attribution_inputs(self, rep: int, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
        tr = data["train"]
        pick = tr[torch.from_numpy(rng_for(self.seed, "attr", rep).permutation(len(tr))
                                   [: self.n_attr])]
        x_at, y_at = data["tokens"][pick], data["labels"][pick]
        return x_at[:, : int((x_at != alphabet().padding_idx).sum(1).max())], y_at

    def _scores(self, rep: int, data: dict, ft: dict) -> dict:
        """Stage 3: activation and IG scores of every neuron on ``n_attr`` training sequences."""
        from theorylab.empirical.train import pick_device
        model = self._classifier(data, ft["state"]).to(pick_device(self.device))
        model.eval()
        x_at, y_at = self._attribution_inputs(rep, data)
        t0 = time.perf_counter()
        act = activation_scores(model, x_at)
        act_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        ig = ig_scores(model, x_at, y_at, n_steps=self.ig_steps)
        ig_seconds = time.perf_counter() - t0
        deltas = torch.cat(list(ig.delta.values())).abs()
        gaps = torch.cat(list(ig.gap.values())).abs()
        stats = {"act_seconds": act_seconds, "ig_seconds": ig_seconds,
                 "ig_abs_delta_max": float(deltas.max()), "ig_abs_delta_mean": float(deltas.mean()),
                 "ig_abs_gap_mean": float(gaps.mean()),
                 "ig_rel_error": float(deltas.sum() / gaps.sum().clamp_min(1e-12))}
        return {"act": act, "ig": ig.scores, "delta": ig.delta, "gap": ig.gap, "stats": stats}

    def _preservation(self, rep: int, data: dict, model: nn.Module, pre_state: dict,
                      ft_state: dict, scores: dict) -> list[dict]:
        """Stages 4-5: test accuracy with only the selected neurons kept, and their density."""
        from theorylab.empirical.train import pick_device
        model.to(pick_device(self.device))
        x_te, y_te = data["tokens"][data["test"]], data["labels"][data["test"]]
        sizes = {m.name: m.module.out_features for m in neuron_modules(model.esm)}
        refs = {"pretrained": {f"esm.{k}": v for k, v in pre_state.items()}, "zero": None}
        selections: dict[tuple[str, int], dict[float, dict]] = {("act", -1): {}, ("ig", -1): {}}
        for f in self.fractions:
            selections[("act", -1)][f] = select_top(scores["act"], f)
            selections[("ig", -1)][f] = select_top(scores["ig"], f)
        for s in range(self.n_random):
            r_rng = rng_for(self.seed, "random", rep, s)
            selections[("random", s)] = {f: select_random(sizes, f, r_rng) for f in self.fractions}
        recs = []
        for reset in self.resets:
            none = {n: torch.zeros(d, dtype=torch.bool) for n, d in sizes.items()}
            model.load_state_dict(preserved_state(ft_state, refs[reset], none))
            recs.append({"record": "accuracy", "method": "none", "seed": -1, "reset": reset,
                         "f": 0.0, "acc": _accuracy(model, x_te, y_te)})
            for (method, seed), by_f in selections.items():
                for f, masks in by_f.items():
                    model.load_state_dict(preserved_state(ft_state, refs[reset], masks))
                    recs.append({"record": "accuracy", "method": method, "seed": seed,
                                 "reset": reset, "f": float(f),
                                 "acc": _accuracy(model, x_te, y_te)})
        for method in ("act", "ig"):
            for f, masks in selections[(method, -1)].items():
                for (layer, kind), d in density(masks).items():
                    recs.append({"record": "density", "method": method, "f": float(f),
                                 "layer": layer, "kind": kind, "density": d})
        return recs


#: the config fields each stage depends on (a stage is reused when only others change)
PRETRAIN_FIELDS = ("task", "size", "max_len", "n_pretrain", "pretrain_epochs", "pretrain_lr",
                   "batch_size", "device", "seed")
FINETUNE_FIELDS = (*PRETRAIN_FIELDS, "n_task", "finetune_epochs", "finetune_lr", "patience")
SCORES_FIELDS = (*FINETUNE_FIELDS, "n_attr", "ig_steps")


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _completeness_rows(scores: dict) -> list[dict]:
    """One ``completeness`` record per (attribution sequence ``example``, neuron module)."""
    rows = []
    for name, delta in scores["delta"].items():
        layer, kind = int(name.split(".")[1]), MODULE_KINDS[name.split(".", 2)[2]]
        for i, (d, g) in enumerate(zip(delta.tolist(), scores["gap"][name].tolist(), strict=True)):
            rows.append({"record": "completeness", "example": i, "module": name, "layer": layer,
                         "kind": kind, "delta": d, "gap": g})
    return rows


# ------------------------------------------------------------------------------- long tables
def accuracy_records(table: pd.DataFrame) -> pd.DataFrame:
    """The accuracy records: rep, method (act, ig, random, none), seed (random draws; else −1),
    reset, f, acc."""
    acc = records(table, "accuracy")
    return acc.astype({"seed": int, "f": float, "acc": float})


def density_records(table: pd.DataFrame) -> pd.DataFrame:
    """The density records: rep, method, f, layer, kind (ordered as MODULE_KINDS), density."""
    d = records(table, "density").astype({"layer": int, "f": float, "density": float})
    d["kind"] = pd.Categorical(d["kind"], categories=list(MODULE_KINDS.values()))
    return d


def completeness_records(table: pd.DataFrame) -> pd.DataFrame:
    """The IG completeness records: rep, example (attribution sequence), module, layer, kind,
    delta = Σ IG − ΔF and gap = ΔF of that layer on that sequence."""
    c = records(table, "completeness")
    return c.astype({"example": int, "layer": int, "delta": float, "gap": float})


def summary_records(table: pd.DataFrame) -> pd.DataFrame:
    """One row per replicate: data sizes, training statistics, accuracies, IG completeness."""
    return records(table, "summary")
