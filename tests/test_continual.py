"""Continual learning: IDX reader, streams, accuracy-matrix metrics, strategy plugins."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from theorylab.empirical.continual import metrics
from theorylab.empirical.continual.learner import accuracy, mlp, run_stream
from theorylab.empirical.continual.strategies import STRATEGIES, Strategy, make_strategy, register
from theorylab.empirical.continual.strategies.agem import agem_project
from theorylab.empirical.continual.strategies.ewc import diagonal_fisher, diagonal_fisher_reference
from theorylab.empirical.continual.strategies.replay import Reservoir
from theorylab.empirical.continual.streams import permuted_stream, split_stream
from theorylab.empirical.data.images import load_digits, read_idx, read_image_folder
from theorylab.empirical.train import TrainConfig
from theorylab.errors import ConfigError, DataFormatError, InputError


def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
            np.float64: 0x0E}[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@settings(deadline=None, max_examples=30)
@given(st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
       st.lists(st.integers(1, 4), min_size=1, max_size=3), st.booleans(), st.integers(0, 99))
def test_idx_round_trip(tmp_path_factory, dtype, shape, compress, seed):
    arr = (np.random.default_rng(seed).uniform(-100, 100, size=shape)).astype(dtype)
    raw = _idx_bytes(arr)
    path = tmp_path_factory.mktemp("idx") / "a.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("mutate,msg", [
    (lambda b: b[:-1], "payload has"),
    (lambda b: b"\x01" + b[1:], "not an IDX file"),
    (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX data type"),
    (lambda b: gzip.compress(b)[:-10], "corrupted gzip"),
    (lambda b: b[:6], "truncated IDX header"),
])
def test_corrupted_idx_is_a_one_line_error_naming_the_file(tmp_path, mutate, msg):
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    path.write_bytes(mutate(_idx_bytes(np.zeros((2, 3, 3), np.uint8))))
    with pytest.raises(DataFormatError, match=msg) as exc:
        read_idx(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_image_folder_reader(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    imgs = {}
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for k in range(2):
            a = rng.integers(0, 256, size=(5, 4), dtype=np.uint8)
            Image.fromarray(a).save(tmp_path / cls / f"{k}.png")
            imgs[(cls, k)] = a
    X, y, classes = read_image_folder(tmp_path)
    assert classes == ("cat", "dog") and y.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(X[2], imgs[("dog", 0)] / 255.0, atol=1e-7)
    (tmp_path / "dog" / "junk.png").write_text("not an image")
    with pytest.raises(DataFormatError, match="junk.png: not a readable image"):
        read_image_folder(tmp_path)


def _digits_stream(setting="class", n=600):
    X, y = load_digits()
    return split_stream((X[:n], y[:n]), (X[n:n + 400], y[n:n + 400]),
                        [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)], setting)


def test_split_stream_must_partition_the_labels():
    X, y = load_digits()
    with pytest.raises(ConfigError, match=r"class\(es\) \[1\] are in more than one task"):
        split_stream((X, y), (X, y), [(0, 1), (1, 2, 3, 4, 5, 6, 7, 8, 9)])
    with pytest.raises(ConfigError, match=r"missing \[9\]"):
        split_stream((X, y), (X, y), [(0, 1, 2, 3, 4), (5, 6, 7, 8)])
    tasks = _digits_stream("task")
    assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for t in tasks:
        assert set(t.y_train.tolist()) == set(t.classes)
        assert t.output_mask().nonzero().flatten().tolist() == list(t.classes)
    assert _digits_stream("class")[0].output_mask() is None


def test_permuted_stream_permutes_pixels_and_keeps_labels():
    X, y = load_digits()
    tasks = permuted_stream((X[:50], y[:50]), (X[50:80], y[50:80]), 3, seed=1)
    assert torch.equal(tasks[0].x_train, torch.from_numpy(X[:50].reshape(50, -1)))
    for t in tasks[1:]:
        assert not torch.equal(t.x_train, tasks[0].x_train)
        # the same permutation applied to every image: sorted pixel values agree per image
        assert torch.equal(t.x_train.sort(1).values, tasks[0].x_train.sort(1).values)
        assert torch.equal(t.y_train, tasks[0].y_train)


R_FIXED = np.array([[0.9, 0.1, 0.2],
                    [0.6, 0.8, 0.3],
                    [0.5, 0.7, 0.95]])


def test_metrics_equal_hand_computed_values():
    # ACC = (0.5 + 0.7 + 0.95) / 3; BWT = ((0.5 - 0.9) + (0.7 - 0.8)) / 2;
    # FWT = ((0.1 - 0.05) + (0.3 - 0.2)) / 2 with b = (0.1, 0.05, 0.2);
    # forgetting = ((0.9 - 0.5) + (0.8 - 0.7)) / 2
    assert metrics.acc(R_FIXED) == pytest.approx(2.15 / 3)
    assert metrics.bwt(R_FIXED) == pytest.approx(-0.25)
    assert metrics.fwt(R_FIXED, [0.1, 0.05, 0.2]) == pytest.approx(0.075)
    assert metrics.forgetting(R_FIXED) == pytest.approx(0.25)
    with pytest.raises(InputError, match="square"):
        metrics.acc(np.zeros((2, 3)))
    with pytest.raises(InputError, match="non-finite"):
        metrics.bwt(np.array([[np.nan]]))


def test_ewc_fisher_equals_the_per_example_autograd_reference():
    torch.manual_seed(0)
    model = mlp(64, 10, hidden=16)
    x = torch.randn(40, 64)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[2, 3]] = True
    for m in (None, mask):
        fast = diagonal_fisher(model, x, m, torch.Generator().manual_seed(3), chunk=16)
        slow = diagonal_fisher_reference(model, x, m, torch.Generator().manual_seed(3))
        for k in slow:
            torch.testing.assert_close(fast[k], slow[k], rtol=1e-5, atol=1e-8)
    # a masked Fisher puts no information on the masked logits' output rows
    last = list(fast)[-2]  # weight of the output layer
    assert torch.all(fast[last][~mask] == 0) and torch.any(fast[last][mask] > 0)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.floats(-10, 10), min_size=6, max_size=6),
       st.lists(st.floats(-10, 10), min_size=6, max_size=6))
def test_agem_projection_never_opposes_the_memory_gradient(g, ref):
    g, ref = torch.tensor(g, dtype=torch.float64), torch.tensor(ref, dtype=torch.float64)
    out = agem_project(g, ref)
    assert torch.dot(out, ref) >= -1e-9 * (1 + ref.norm() ** 2 * g.norm())
    if torch.dot(g, ref) >= 0:
        assert torch.equal(out, g)  # no conflict: unchanged
    else:  # the smallest change that removes the conflict: orthogonal to ref
        assert abs(float(torch.dot(out, ref))) <= 1e-9 * (1 + float(ref.norm() * g.norm()))


def test_reservoir_keeps_a_uniform_sample():
    # every one of 50 stream positions ends in a 10-slot buffer with probability 1/5
    counts = np.zeros(50)
    reps = 2000
    rng = np.random.default_rng(0)
    for _ in range(reps):
        buf = Reservoir(10, rng)
        x = torch.arange(50, dtype=torch.float32).unsqueeze(1)
        buf.add(x, torch.zeros(50, dtype=torch.long), torch.ones(50, 2, dtype=torch.bool))
        counts[buf.x[:, 0].long().numpy()] += 1
    assert counts.sum() == 10 * reps
    p = stats.chisquare(counts).pvalue
    assert p > 1e-3, p
    # and a buffer that favoured late examples is rejected by the same test
    biased = counts.copy()
    biased[40:] += 60
    assert stats.chisquare(biased).pvalue < 1e-3


def test_negative_buffer_size_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'memory' \(the buffer size\) must be an int >= 0"):
        Reservoir(-1, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        make_strategy("nope")


@register
@dataclass
class _Recording(Strategy):
    """A strategy defined in one place (here, a test file): registering it is all it takes."""

    name = "test-recording"
    calls: list = field(default_factory=list)

    def before_task(self, learner, task):
        self.calls.append(("before_task", task.index))

    def penalty(self, learner, model, x, y):
        if not self.calls or self.calls[-1][0] != "penalty":
            self.calls.append(("penalty", learner.current.index))
        return None

    def after_backward(self, learner, model):
        assert all(p.grad is not None for p in model.parameters())
        if self.calls[-1][0] != "after_backward":
            self.calls.append(("after_backward", learner.current.index))

    def after_step(self, learner, model):
        if self.calls[-1][0] != "after_step":
            self.calls.append(("after_step", learner.current.index))

    def after_task(self, learner, task):
        self.calls.append(("after_task", task.index))


def test_hooks_are_called_in_order_and_a_new_strategy_plugs_in():
    strat = make_strategy("test-recording")
    assert "test-recording" in STRATEGIES
    stream = _digits_stream()[:2]
    run_stream(lambda: mlp(64, 10, 8, 1), stream, strat,
               TrainConfig(epochs=1, batch_size=600, device="cpu"))
    expected = [(h, t) for t in range(2) for h in ("before_task", "penalty", "after_backward",
                                                   "after_step", "after_task")]
    assert strat.calls == expected


def test_si_path_integral_equals_the_loss_decrease():
    # sum_i omega_i = -sum_steps g . dtheta ~ L(start) - L(end) for small steps (first order)
    stream = _digits_stream("task")[:1]
    si = make_strategy("si")
    res = run_stream(lambda: mlp(64, 10, 16, 1), stream, si,
                     TrainConfig(epochs=30, batch_size=600, lr=1e-3, device="cpu", grad_clip=None))
    assert res.R[0, 0] > 0.9
    torch.manual_seed(0)
    # recompute the loss at the start and the end of the task on the one full batch
    from theorylab.empirical.continual.strategies.base import masked_cross_entropy
    task = stream[0]
    start = mlp(64, 10, 16, 1)
    start.load_state_dict(si._start)
    end = mlp(64, 10, 16, 1)
    end.load_state_dict(si._anchor)
    with torch.no_grad():
        mask = task.output_mask()
        drop = float(masked_cross_entropy(start(task.x_train), task.y_train, mask)
                     - masked_cross_entropy(end(task.x_train), task.y_train, mask))
    omega_sum = float(sum(v.sum() for v in si._omega.values()))
    assert drop > 0.05
    assert omega_sum == pytest.approx(drop, rel=0.05)


def test_replay_beats_naive_in_class_incremental_digits():
    # the class-incremental collapse of naive fine-tuning, and replay's remedy, on a tiny stream
    stream = _digits_stream()
    cfg = TrainConfig(epochs=3, batch_size=32, device="cpu")
    naive = run_stream(lambda: mlp(64, 10, 64), stream, make_strategy("naive"), cfg)
    replay = run_stream(lambda: mlp(64, 10, 64), stream, make_strategy("replay", memory=100), cfg)
    assert metrics.bwt(naive.R) < -0.5  # the last task overwrites the head
    assert metrics.acc(replay.R) > metrics.acc(naive.R) + 0.2
    assert replay.state_bytes > 0 and naive.state_bytes == 0


def test_runs_are_bit_reproducible():
    stream = _digits_stream("task")[:2]
    cfg = TrainConfig(epochs=1, batch_size=32, device="cpu")
    a = run_stream(lambda: mlp(64, 10, 16), stream, make_strategy("agem", memory=50), cfg, seed=4)
    b = run_stream(lambda: mlp(64, 10, 16), stream, make_strategy("agem", memory=50), cfg, seed=4)
    np.testing.assert_array_equal(a.R, b.R)
    assert accuracy(mlp(64, 10, 16), stream[0]) >= 0


# --- the study and its claims ---------------------------------------------------------------

from theorylab.empirical.continual.study import ContinualStudy  # noqa: E402
from theorylab.papers import cl as cl_paper  # noqa: E402
from theorylab.study import records  # noqa: E402


@settings(deadline=None, max_examples=60)
@given(st.integers(2, 6), st.integers(0, 10**6))
def test_metrics_equal_the_loop_reference(T, seed):
    rng = np.random.default_rng(seed)
    R, b = rng.uniform(size=(T, T)), rng.uniform(size=T)
    fast = metrics.summary(R, b)
    ref = cl_paper.reference_metrics(R, b)
    for k in ref:
        assert fast[k] == pytest.approx(ref[k], abs=1e-12)


def test_study_unit_records_hold_the_matrix_and_its_metrics():
    study = ContinualStudy(dataset="digits", train_per_class=40, test_per_class=20, hidden=16,
                           epochs=1, n_seeds=1, methods=("naive", "replay"),
                           settings=("class",), memory=30)
    rows = study.run_unit({"setting": "class", "method": "replay", "seed": 0})
    import pandas as pd
    t = pd.DataFrame(rows)
    R_rows, summary = records(t, "R"), records(t, "summary")
    assert len(R_rows) == 5 * 5 + 5 and len(summary) == 1
    R = R_rows[R_rows.i >= 0].pivot_table(index="i", columns="j", values="acc").to_numpy()
    b = R_rows[R_rows.i < 0].sort_values("j").acc.to_numpy()
    for k, v in metrics.summary(R, b).items():
        assert summary[k].iloc[0] == pytest.approx(v)
    again = study.run_unit({"setting": "class", "method": "replay", "seed": 0})
    strip = [{k: v for k, v in r.items() if k != "seconds_per_task"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "seconds_per_task"} for r in again]
    units = ContinualStudy().units()
    assert {"setting": "task", "method": "packnet", "seed": 0} in units
    assert not [u for u in units if u["method"] == "packnet" and u["setting"] != "task"]
    with pytest.raises(ConfigError, match="must include 'naive'"):
        ContinualStudy(methods=("replay",))


def _summary_table(gains: dict[str, float], n_seeds: int = 6, spread: float = 0.01):
    import pandas as pd
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_seeds):
        base = 0.2 + rng.normal(0, 0.02)
        for m, g in {"naive": 0.0, **gains}.items():
            rows.append({"setting": "class", "method": m, "seed": seed,
                         "acc": base + g + rng.normal(0, spread), "bwt": -0.9 + g})
    return pd.DataFrame(rows)


def test_collapse_and_gain_claims_can_fail_and_hold():
    table = _summary_table({"ewc": 0.3, "si": 0.01, "replay": 0.35, "agem": -0.02})
    assert cl_paper.versus_naive(table, "ewc").status == "fails"      # EWC did not collapse
    assert cl_paper.versus_naive(table, "si").status == "holds"
    assert cl_paper.versus_naive(table, "replay").status == "holds"
    assert cl_paper.versus_naive(table, "agem").status == "fails"
    noisy = _summary_table({"replay": 0.05}, n_seeds=3, spread=0.2)
    assert cl_paper.versus_naive(noisy, "replay").status == "inconclusive"


def test_joint_upper_bound_fails_when_a_method_beats_joint():
    ok = _summary_table({"joint": 0.5, "replay": 0.3})
    assert cl_paper.joint_upper_bound(ok).status == "holds"
    bad = _summary_table({"joint": 0.3, "replay": 0.5})
    v = cl_paper.joint_upper_bound(bad)
    assert v.status == "fails" and v.details["largest_upper_end"] == "class.replay"
    # restricted to some methods (cl.task.joint_bounds_regularisation): only their parts count
    v = cl_paper.joint_upper_bound(bad, methods=("naive",))
    assert v.status == "holds" and set(v.parts) == {"class.naive"}


def test_quick_studies_share_every_task_model():
    """The quick claims run one study per setting (and more seeds of naive/EWC in class-IL):
    their task models have one artifact scope, so common (setting, method, seed) train once."""
    from theorylab.artifacts import scope_hash
    from theorylab.claims import Context
    ctx = Context(None, None, quick=True)
    studies = cl_paper._studies(ctx)
    assert {s for st in studies for s in st.settings} == {"task", "class", "domain"}
    for setting in ("task", "class", "domain"):
        for m in ("naive", "ewc"):
            scopes = {scope_hash(st, "task", st.task_fields(setting, m)) for st in studies}
            assert len(scopes) == 1
    full = cl_paper._studies(Context(None, None, quick=False))
    assert full == [ContinualStudy()]
    # a field the task models depend on gives a new scope
    st = studies[0]
    assert scope_hash(st.replace(lr=2e-3), "task", st.task_fields("class", "ewc")) != \
        scope_hash(st, "task", st.task_fields("class", "ewc"))


@pytest.mark.skipif(not __import__("theorylab.empirical.data.images", fromlist=["x"])
                    .fashion_mnist_available(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_reads_as_published():
    from theorylab.empirical.data.images import load_fashion_mnist
    X, y = load_fashion_mnist("test")
    assert X.shape == (10_000, 28, 28) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert np.bincount(y).tolist() == [1000] * 10   # the test set is balanced


# --- each task's model is an artifact ----------------------------------------------------------

def _task_artifacts(store) -> dict[tuple, tuple[str, int]]:
    """(setting, method, seed, task) -> (path, mtime) of every stored ``task`` artifact."""
    import json
    arts = store.artifacts()
    arts = arts[arts.stage == "task"]
    out = {}
    for key, path in zip(arts.key, arts.path, strict=True):
        k = json.loads(key)
        full = store.artifact_root / path
        if full.exists():
            out[(k["setting"], k["method"], k["seed"], k["task"])] = (
                path, full.stat().st_mtime_ns)
    return out


def _acc_rows(rows):
    return [(r["i"], r["j"], r["acc"]) for r in rows if r["record"] == "R"]


def test_each_tasks_model_is_an_artifact_reused_by_reruns_and_resumed(tmp_path):
    from theorylab.artifacts import UnitContext
    from theorylab.store import Store
    study = ContinualStudy(dataset="digits", train_per_class=30, test_per_class=15, hidden=16,
                           epochs=1, n_seeds=1, methods=("naive", "ewc", "replay", "generative"),
                           settings=("class",), memory=20)
    with Store(tmp_path / "s.sqlite") as store:
        def run(st, unit):
            return st.run_unit(unit, UnitContext(st, store.path))

        first = {m: run(study, {"setting": "class", "method": m, "seed": 0})
                 for m in study.methods}
        built = _task_artifacts(store)
        assert sorted(built) == [("class", m, 0, i) for m in sorted(study.methods)
                                 for i in range(5)]
        # the stored run computes what the in-memory one does (what it loads is what it built)
        for m, rows in first.items():
            assert _acc_rows(rows) == _acc_rows(study.run_unit(
                {"setting": "class", "method": m, "seed": 0}))
        # more seeds and methods: the stored tasks are loaded, not trained again
        bigger = study.replace(n_seeds=2, methods=(*study.methods, "si"))
        again = run(bigger, {"setting": "class", "method": "ewc", "seed": 0})
        assert _acc_rows(again) == _acc_rows(first["ewc"])
        assert [r["seconds_per_task"] for r in again if r["record"] == "summary"] == \
            [r["seconds_per_task"] for r in first["ewc"] if r["record"] == "summary"]
        assert _task_artifacts(store) == built
        # a run stopped after task 2 resumes there: tasks 3 and 4 trained again, same numbers
        for i in (3, 4):
            (store.artifact_root / built[("class", "replay", 0, i)][0]).unlink()
        resumed = run(study, {"setting": "class", "method": "replay", "seed": 0})
        assert _acc_rows(resumed) == _acc_rows(first["replay"])
        now = _task_artifacts(store)
        assert all(now[k] == built[k] for k in built if k[1:] != ("replay", 0, 3)
                   and k[1:] != ("replay", 0, 4))
        assert all(now[("class", "replay", 0, i)][1] != built[("class", "replay", 0, i)][1]
                   for i in (3, 4))
        # a changed setting builds new tasks: EWC's λ for EWC only, the width for every method
        run(study.replace(ewc_lambda=10.0), {"setting": "class", "method": "ewc", "seed": 0})
        run(study.replace(ewc_lambda=10.0), {"setting": "class", "method": "naive", "seed": 0})
        arts = store.artifacts()
        assert (arts.stage == "task").sum() == 4 * 5 + 5     # + EWC at λ = 10; naive reused
        run(study.replace(hidden=8), {"setting": "class", "method": "naive", "seed": 0})
        assert (store.artifacts().stage == "task").sum() == 4 * 5 + 5 + 5


# --- bad input through the CLI: one line, non-zero exit ------------------------------------

def _cli_error(capsys, tmp_path, *sets):
    from theorylab import cli
    args = ["run", "cl-vision", "--store", str(tmp_path / "s.sqlite"), "--executor", "serial",
            "--no-progress", "--set", "settings=[\"class\"]", "--set", "methods=[\"naive\"]",
            "--set", "n_seeds=1", "--set", "epochs=1", "--set", "train_per_class=2",
            "--set", "test_per_class=1", "--set", "hidden=4"]
    for s in sets:
        args += ["--set", s]
    rc = cli.main(args)
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.startswith("error: ") and "\n" not in err, (rc, err)
    return err


def test_cli_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, capsys):
    from PIL import Image
    # a negative buffer size
    assert "'memory' of ContinualStudy" in _cli_error(capsys, tmp_path, "memory=-1")
    # a corrupted IDX file in a folder of Fashion-MNIST-format files
    idx = tmp_path / "idx"
    idx.mkdir()
    imgs, labs = np.zeros((20, 3, 3), np.uint8), np.repeat(np.arange(10, dtype=np.uint8), 2)
    for p in ("train", "t10k"):
        (idx / f"{p}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(imgs)))
        (idx / f"{p}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labs)))
    bad = idx / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(_idx_bytes(imgs))[:-10])
    err = _cli_error(capsys, tmp_path, f"dataset={idx}")
    assert "corrupted gzip" in err and str(bad) in err
    # a user's image folder whose classes the split (0,1) ... (8,9) does not partition
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for c in ("a", "b", "c"):
            (tmp_path / "img" / part / c).mkdir(parents=True)
            for k in range(2):
                Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(
                    tmp_path / "img" / part / c / f"{k}.png")
    err = _cli_error(capsys, tmp_path, f"dataset={tmp_path / 'img'}")
    assert "missing" in err and "3" in err
    # an unknown data set name
    assert "'dataset' of ContinualStudy" in _cli_error(capsys, tmp_path, "dataset=nope")
