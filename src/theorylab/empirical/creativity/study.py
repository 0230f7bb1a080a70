r"""Creativity homogenization studies on the engine contract.

* :class:`CstSimStudy`: simulated within-subject studies (:mod:`.simulate`) calibrated to the
  paper's reported means and :math:`d_z = t/\sqrt n`, with a planted homogenization effect
  (group-level lower, individual-level equal) and without one (null), analysed by the paired
  t-tests; replicates at several sample sizes give the power curve. The calibration is a stage
  (``ctx.artifact``) shared by every unit. A unit = one chunk of replicates of one
  (setting, n); it returns long records (``record`` = "replicate", and one "calibration").
* :class:`CstAnalysisStudy`: a user's ideas file (:mod:`theorylab.empirical.data.ideas`)
  embedded, scored and tested; records "participant" (scores per participant and condition),
  "test" (paired tests), "mixed" (mixed models). ``theorylab run cst-analysis --data FILE``
  writes a report (:func:`write_report`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from theorylab.constraints import SEED, Bool, Choice, Int, Real, Str, Tuple
from theorylab.empirical.creativity import simulate as sim
from theorylab.empirical.creativity.summary import REPORTED
from theorylab.errors import ConfigError, DataFormatError
from theorylab.seeding import rng_for
from theorylab.study import Study, memory_context

if TYPE_CHECKING:
    from theorylab.artifacts import UnitContext

__all__ = ["CstSimStudy", "CstAnalysisStudy", "CstMechanismStudy", "CALIBRATION_FIELDS", "paper_d_z", "write_report"]

SETTINGS = ("planted", "null")
CALIBRATION_FIELDS = ("group", "individual", "d_z", "rho", "n_prompts", "n_ideas", "dim", "n_cal",
                      "n_cal_studies", "rounds", "seed")


def paper_d_z() -> float:
    r""":math:`-t/\sqrt n` of the paper's group-level test (ChatGPT minus Oblique Strategies)."""
    return -REPORTED["group"]["t"] / math.sqrt(REPORTED["n"])


@dataclass(frozen=True)
class CstSimStudy(Study):
    """Simulated studies: planted effect and null, replicated at sample sizes ``ns``."""

    name: ClassVar[str] = "cst-sim"
    version: ClassVar[int] = 1

    group: tuple[float, ...] = (REPORTED["group"]["mean_ctrl"], REPORTED["group"]["mean_llm"])
    individual: float = (REPORTED["individual"]["mean_ctrl"]
                         + REPORTED["individual"]["mean_llm"]) / 2
    d_z: float = paper_d_z()           # planted effect in t units (llm − ctrl)
    rho: float = 0.15                  # cosine of two prompts' centres
    n_prompts: int = 3                 # prompts per condition
    n_ideas: int = 8                   # ideas per prompt (the paper's fluency ≈ 7-8)
    dim: int = 96
    n_cal: int = 500                   # participants of each calibration study
    n_cal_studies: int = 3             # studies averaged per calibration step (4x for the truth)
    rounds: int = 2
    ns: tuple[int, ...] = (33, 100, 175, 250, 325)
    null_ns: tuple[int, ...] = (33,)
    n_reps: int = 2000                 # replicates at ns[0] (the paper's n) and null_ns
    n_reps_grid: int = 500             # replicates at the other ns (the power curve)
    chunk: int = 100
    alpha: float = 0.05
    seed: int = 0

    constraints: ClassVar = {
        "group": Tuple(Real(0, 1, lo_open=True, hi_open=True), min_len=2, max_len=2),
        "individual": Real(0, 1, lo_open=True, hi_open=True),
        "d_z": Real(-10, 0, hi_open=True),
        "rho": Real(0, 1, lo_open=True, hi_open=True),
        "n_prompts": Int(1, 50), "n_ideas": Int(2, 100), "dim": Int(8, 4096),
        "n_cal": Int(20, 20_000), "n_cal_studies": Int(1, 100), "rounds": Int(1, 10),
        "ns": Tuple(Int(3, 5000), max_len=20), "null_ns": Tuple(Int(3, 5000), max_len=20),
        "n_reps": Int(1, 100_000), "n_reps_grid": Int(1, 100_000), "chunk": Int(1, 10_000),
        "alpha": Real(0, 1, lo_open=True, hi_open=True), "seed": SEED,
    }

    def check(self) -> None:
        if self.dim < 1 + 2 * self.n_prompts:
            raise ConfigError(f"'dim' of CstSimStudy must be >= 1 + 2 x n_prompts. Got {self.dim}.")

    def quick(self) -> CstSimStudy:
        """CI form: fewer replicates and sample sizes, the same calibration and criteria."""
        return self.replace(n_reps=600, n_reps_grid=150, ns=(33, 150, 300))

    def reps(self, setting: str, n: int) -> int:
        """Replicates of (setting, n): ``n_reps`` at the paper's n and for the null."""
        return self.n_reps if setting == "null" or n == self.ns[0] else self.n_reps_grid

    def units(self) -> list[dict]:
        cells = ([("planted", n) for n in self.ns] + [("null", n) for n in self.null_ns])
        return [{"setting": s, "n": n, "chunk": c} for s, n in cells
                for c in range(math.ceil(self.reps(s, n) / self.chunk))]

    def calibrate(self) -> dict:
        """The calibration stage: :func:`~.simulate.calibrate_study` and its check study."""
        p, check = sim.calibrate_study(self.group, self.individual, self.d_z, self.rho,
                                       rng_for(self.seed, "calibration"), n_cal=self.n_cal,
                                       k=self.n_cal_studies, rounds=self.rounds, n_prompts=self.n_prompts,
                                       n_ideas=self.n_ideas, dim=self.dim)
        return {"params": {k: (list(v) if isinstance(v, tuple) else float(v))
                           for k, v in dataclasses.asdict(p).items()},
                "check": {k: float(v) for k, v in check.items()}}

    def params(self, cal: dict) -> sim.SimParams:
        kw = dict(cal["params"])
        kw["group"] = tuple(float(g) for g in kw["group"])
        for k in ("n_prompts", "n_ideas", "dim"):
            kw[k] = int(kw[k])
        return sim.SimParams(**kw)

    def run_unit(self, unit: dict, ctx: UnitContext | None = None) -> list[dict]:
        ctx = memory_context(self, ctx)
        cal = ctx.artifact("calibration", "sim", self.calibrate, depends_on=CALIBRATION_FIELDS)
        p = self.params(cal)
        if unit["setting"] == "null":
            p = p.null()
        n, c = int(unit["n"]), int(unit["chunk"])
        out = []
        for rep in range(c * self.chunk, min((c + 1) * self.chunk, self.reps(unit["setting"], n))):
            res = sim.simulate_scores(p, n, rng_for(self.seed, unit["setting"], n, rep))
            out.append({"record": "replicate", "setting": unit["setting"], "n": n, "rep": rep,
                        **res})
        if unit["setting"] == "planted" and c == 0 and n == self.ns[0]:
            prm = cal["params"]
            out.append({"record": "calibration",
                        "param_group_ctrl": prm["group"][0], "param_group_llm": prm["group"][1],
                        **{f"param_{k}": v for k, v in prm.items() if k != "group"},
                        **{f"truth_{k}": v for k, v in cal["check"].items()}})
        return out


# ----------------------------------------------------------------------------- user's data
def _file_sha(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise DataFormatError("no such file", p)
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class CstAnalysisStudy(Study):
    """The paper's analysis of a user's ideas file: one unit, keyed by the file's content."""

    name: ClassVar[str] = "cst-analysis"
    version: ClassVar[int] = 1

    data: str = ""                     # CSV or Parquet (participant, condition, prompt, idea)
    design: str = "within"
    baseline: str = ""                 # condition a (default: the first in sorted order)
    embedder: str = "auto"             # auto | minilm | lsa
    lsa_dim: int = 64
    scope: str = "condition"           # individual-level pairs: the condition, or the prompt
    cluster_threshold: float = 0.6     # cosine distance cut for flexibility's clusters
    mixed: bool = True                 # also fit the mixed models

    constraints: ClassVar = {
        "data": Str(),
        "design": Choice(("within", "between")),
        "baseline": Str(),
        "embedder": Choice(("auto", "minilm", "lsa")),
        "lsa_dim": Int(2, 1024),
        "scope": Choice(("condition", "prompt")),
        "cluster_threshold": Real(0, 2, lo_open=True),
        "mixed": Bool(),
    }

    def units(self) -> list[dict]:
        if not self.data:
            raise ConfigError("'data' of CstAnalysisStudy must name a CSV or Parquet file of "
                              "ideas: theorylab run cst-analysis --data FILE.")
        return [{"data_sha256": _file_sha(self.data)}]  # a changed file is a new unit

    def run_unit(self, unit: dict, ctx: UnitContext | None = None) -> list[dict]:
        from theorylab.empirical.creativity.embed import embed
        from theorylab.empirical.creativity.metrics import (
            idea_scores,
            jackknife_group_test,
            mixed_model,
            paired_tests,
            participant_scores,
        )
        from theorylab.empirical.data.ideas import read_ideas
        ideas = read_ideas(self.data, self.design)
        conds = sorted(ideas.condition.unique())
        a = self.baseline or conds[0]
        if a not in conds:
            raise ConfigError(f"'baseline' of CstAnalysisStudy must be one of the file's "
                              f"conditions {', '.join(conds)}. Got {a!r}.")
        b = next(c for c in conds if c != a)
        emb = embed(list(ideas.idea), self.embedder, self.lsa_dim)
        scores = participant_scores(ideas, emb.X, self.scope, self.cluster_threshold)
        common = {"embedder": emb.embedder, "baseline": a, "other": b}
        out = [{"record": "participant", **common, **r} for r in scores.to_dict("records")]
        if self.design == "within":
            tests = paired_tests(scores, a, b)
            out += [{"record": "test", **common, **r} for r in tests.to_dict("records")]
        if self.design == "within":
            jk = jackknife_group_test(ideas, emb.X, a, b)
            out.append({"record": "jackknife", **common, **jk})
        if self.mixed:
            scored = idea_scores(ideas, emb.X, self.scope)
            for metric in ("group", "individual"):
                out.append({"record": "mixed", **common, **mixed_model(scored, metric, a, b)})
        return out

    def report(self, table: pd.DataFrame, outdir: Path) -> list[Path]:
        """:func:`write_report` of the current file's unit (the store keeps earlier versions)."""
        current = self.units()[0]["data_sha256"]
        return write_report(table[table.data_sha256 == current].reset_index(drop=True),
                            Path(outdir))


def _markdown(df: pd.DataFrame) -> str:
    """A Markdown table of ``df`` (numbers to 4 significant digits)."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    rows = [" | ".join(map(str, df.columns)), " | ".join("---" for _ in df.columns)]
    rows += [" | ".join(cell(v) for v in r) for r in df.itertuples(index=False)]
    return "\n".join(f"| {r} |" for r in rows)


def write_report(table: pd.DataFrame, outdir: Path) -> list[Path]:
    """The analysis report: ``tests.csv`` (paired tests), ``participants.csv``, ``mixed.csv``,
    ``report.md`` (a table per test kind) and a figure of the per-participant scores."""
    import matplotlib.pyplot as plt

    from theorylab.plotting import savefig, style
    from theorylab.study import records
    outdir.mkdir(parents=True, exist_ok=True)
    part = records(table, "participant")
    kinds = set(table.record)
    paths = [outdir / "participants.csv"]
    part.to_csv(paths[0], index=False)
    embedder = str(part.embedder.iloc[0])
    a, b = str(part.baseline.iloc[0]), str(part.other.iloc[0])
    lines = [f"# Creativity homogenization analysis: {b} vs {a}", "",
             f"Embedder: {embedder} (cosine dissimilarities are comparable within it only).", ""]
    if "test" in kinds:
        tests = records(table, "test")
        paths.append(outdir / "tests.csv")
        tests.to_csv(paths[-1], index=False)
        cols = ["metric", "n", "mean_a", "mean_b", "mean_diff", "t", "df", "p", "d_z", "d_av"]
        lines += [f"## Paired t-tests ({b} minus {a})", "",
                  _markdown(tests[cols]), ""]
    if "jackknife" in kinds:
        jk = records(table, "jackknife")
        paths.append(outdir / "jackknife.csv")
        jk.to_csv(paths[-1], index=False)
        lines += ["## Jackknife test of the group-level difference (participants removed one "
                  "at a time, the others' scores recomputed)", "",
                  _markdown(jk[["metric", "n", "mean_diff", "se", "t", "df", "p"]]), ""]
    if "mixed" in kinds:
        mixed = records(table, "mixed")
        paths.append(outdir / "mixed.csv")
        mixed.to_csv(paths[-1], index=False)
        cols = ["metric", "beta", "se", "ci_lo", "ci_hi", "p", "var_participant", "var_prompt",
                "var_residual", "n_ideas"]
        lines += [f"## Mixed models (idea level; effect of {b}; random participant and prompt)",
                  "", _markdown(mixed[cols]), ""]
    metrics = ["group", "individual", "fluency", "flexibility", "elaboration"]
    with style():
        fig, axes = plt.subplots(1, len(metrics), figsize=(12, 3.6))
        for ax, m in zip(axes, metrics, strict=True):
            wide = part.pivot(index="participant", columns="condition", values=m)[[a, b]]
            for _, row in wide.iterrows():
                ax.plot([0, 1], row.to_numpy(float), "-", color="0.7", lw=0.8)
            ax.plot([0, 1], wide.mean().to_numpy(float), "o-", color="C3", lw=2, label="mean")
            ax.set_xticks([0, 1], [a, b])
            ax.set(title=m, xlim=(-0.3, 1.3))
        axes[0].set_ylabel(f"per-participant score ({embedder})")
        paths += savefig(fig, outdir / "scores")
    lines += ["![per-participant scores](scores.png)", ""]
    paths.append(outdir / "report.md")
    paths[-1].write_text("\n".join(lines))
    return paths


# --------------------------------------------------------------------- mechanism with LMs
@dataclass(frozen=True)
class CstMechanismStudy(Study):
    """Shared model vs own sources (:mod:`.mechanism`): one unit per replicate (own slices,
    models, samples); records one row per replicate with both conditions' mean scores."""

    name: ClassVar[str] = "cst-mechanism"
    version: ClassVar[int] = 2

    n_participants: int = 5
    prompts: tuple[str, ...] = ("you", "the", "a")
    n_ideas: int = 6                   # ideas per participant and prompt
    idea_len: int = 12                 # sampled words after the prompt word
    temperature: float = 0.7
    d_model: int = 32
    n_layers: int = 1
    window: int = 17                   # training windows (tokens)
    stride: int = 16                   # tokens between window starts
    epochs: int = 30
    lr: float = 1e-2
    batch_size: int = 64
    embedder: str = "lsa"
    n_reps: int = 12
    seed: int = 0

    constraints: ClassVar = {
        "n_participants": Int(3, 100),
        "prompts": Tuple(Str(), max_len=20),
        "n_ideas": Int(2, 100), "idea_len": Int(1, 100),
        "temperature": Real(0, 10, lo_open=True),
        "d_model": Int(8, 512), "n_layers": Int(1, 8), "window": Int(4, 256), "stride": Int(1, 256),
        "epochs": Int(1, 1000), "lr": Real(0, 1, lo_open=True), "batch_size": Int(1, 4096),
        "embedder": Choice(("auto", "minilm", "lsa")),
        "n_reps": Int(2, 1000), "seed": SEED,
    }

    def quick(self) -> CstMechanismStudy:
        """CI form: fewer participants and replicates, the same training and sampling."""
        return self.replace(n_participants=3, n_reps=8)

    def units(self) -> list[dict]:
        return [{"rep": r} for r in range(self.n_reps)]

    def _model(self, vocab, quotes, idx, rep: int, source: int):
        from theorylab.empirical.creativity import mechanism as mech
        from theorylab.empirical.lm import TinyLM
        from theorylab.empirical.train import TrainConfig, train
        from theorylab.seeding import torch_seed
        torch = __import__("torch")
        torch.manual_seed(torch_seed(self.seed, "mech-init", rep, source))
        model = TinyLM(len(vocab), d_model=self.d_model, n_layers=self.n_layers, n_heads=4,
                       max_len=self.window + self.idea_len + 2)
        data = mech.windows(vocab.stream([quotes[i] for i in idx]), self.window, self.stride)
        cfg = TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, device="cpu",
                          seed=torch_seed(self.seed, "mech-train", rep, source))
        res = train(model, mech.lm_loss, list(data), cfg,
                    collate=lambda rows: torch.stack(rows))
        return {"state": model.state_dict(), "loss": float(res.train_loss[-1])}

    def run_unit(self, unit: dict, ctx: UnitContext | None = None) -> list[dict]:
        from theorylab.empirical.creativity import mechanism as mech
        from theorylab.empirical.creativity.embed import embed
        from theorylab.empirical.creativity.metrics import participant_scores
        from theorylab.empirical.lm import TinyLM
        from theorylab.seeding import torch_generator
        ctx = memory_context(self, ctx)
        rep = int(unit["rep"])
        quotes = mech.load_quotes()
        vocab = mech.Vocab(quotes)
        missing = [p for p in self.prompts if p not in vocab.index]
        if missing:
            raise ConfigError(f"'prompts' of CstMechanismStudy must be words of the corpus. "
                              f"Got {missing[0]!r}.")
        parts = mech.slices(len(quotes), self.n_participants + 1,
                            rng_for(self.seed, "mech-slices", rep))
        fields = ("n_participants", "d_model", "n_layers", "window", "stride", "epochs", "lr", "batch_size",
                  "idea_len", "seed")
        models, losses = [], []
        for s in range(self.n_participants + 1):  # slice n_participants: the shared model's
            art = ctx.artifact("lm", f"{rep}-{s}",
                               lambda s=s: self._model(vocab, quotes, parts[s], rep, s),
                               depends_on=fields)
            m = TinyLM(len(vocab), d_model=self.d_model, n_layers=self.n_layers, n_heads=4,
                       max_len=self.window + self.idea_len + 2)
            m.load_state_dict(art["state"])
            models.append(m.eval())
            losses.append(art["loss"])
        gen = torch_generator(self.seed, "mech-sample", rep)
        rows = []
        for i in range(self.n_participants):
            for cond, model in (("own", models[i]), ("shared", models[-1])):
                for k in self.prompts:
                    for idea in mech.sample_ideas(model, vocab, k, self.n_ideas, self.idea_len,
                                                  gen, self.temperature):
                        rows.append((f"P{i}", cond, k, idea))
        ideas = pd.DataFrame(rows, columns=["participant", "condition", "prompt", "idea"])
        emb = embed(list(ideas.idea), self.embedder)
        s = participant_scores(ideas, emb.X).pivot(index="participant", columns="condition",
                                                   values=["group", "individual"])
        diff = s.xs("shared", axis=1, level=1) - s.xs("own", axis=1, level=1)
        return {"embedder": emb.embedder, "group_own": float(s["group"]["own"].mean()),
                "group_shared": float(s["group"]["shared"].mean()),
                "group_diff": float(diff.group.mean()),
                "individual_own": float(s["individual"]["own"].mean()),
                "individual_shared": float(s["individual"]["shared"].mean()),
                "individual_diff": float(diff.individual.mean()),
                "train_loss_mean": float(np.mean(losses)),
                "example_idea": ideas.idea.iloc[0]}
