"""`theorylab run cst-analysis --data FILE`: a user's ideas file analysed into a report."""

from __future__ import annotations

import pandas as pd
import pytest

from theorylab.cli import main
from theorylab.empirical.creativity.embed import embed
from theorylab.empirical.creativity.metrics import paired_test, participant_scores
from theorylab.empirical.data.ideas import read_ideas

USES = {"brick": ["doorstop", "paperweight", "bookend", "garden border", "step", "heat store"],
        "clip": ["lock pick", "hook", "zipper pull", "bookmark", "wire art", "reset pin"]}


def _write(path, n=6, narrow=3):
    rows = ["participant,condition,prompt,idea"]
    for i in range(n):
        for cond, prompt in (("llm", "brick"), ("cards", "clip")):
            pool = USES[prompt][:narrow] if cond == "llm" else USES[prompt]
            for j in range(3):
                rows.append(f'p{i},{cond},{prompt},"use it as a {pool[(i + j) % len(pool)]}"')
    path.write_text("\n".join(rows) + "\n")


def _run(tmp_path, data, *extra):
    return main(["run", "cst-analysis", "--data", str(data), "--set", "embedder=lsa",
                 "--set", "mixed=false", "--executor", "serial", "--no-progress",
                 "--store", str(tmp_path / "s.sqlite"), "--outdir", str(tmp_path / "rep"), *extra])


def test_run_writes_report_matching_the_library(tmp_path, capsys):
    data = tmp_path / "ideas.csv"
    _write(data)
    assert _run(tmp_path, data) == 0
    rep = tmp_path / "rep"
    for name in ("report.md", "tests.csv", "participants.csv", "jackknife.csv", "scores.png"):
        assert (rep / name).is_file(), name
    tests = pd.read_csv(rep / "tests.csv").set_index("metric")
    ideas = read_ideas(data)
    e = embed(list(ideas.idea), "lsa")
    ref = paired_test(participant_scores(ideas, e.X), "group", "cards", "llm")
    assert tests.loc["group", "t"] == pytest.approx(ref.t)
    assert tests.loc["group", "mean_diff"] < 0  # the llm condition draws on half the uses
    assert "tfidf-lsa-64" in (rep / "report.md").read_text()
    # a changed file is analysed again (its content keys the unit), not served from the store
    _write(data, n=7)
    assert _run(tmp_path, data) == 0
    assert pd.read_csv(rep / "tests.csv").set_index("metric").loc["group", "n"] == 7


def test_run_bad_file_is_one_line_error(tmp_path, capsys):
    data = tmp_path / "bad.csv"
    data.write_text("participant,condition,idea\np1,a,x\n")
    assert _run(tmp_path, data) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing column(s) prompt" in err and "\n" not in err
    assert _run(tmp_path, tmp_path / "none.csv") == 2
    assert "no such file" in capsys.readouterr().err


def test_data_option_needs_a_study_with_a_data_field(tmp_path, capsys):
    data = tmp_path / "ideas.csv"
    _write(data)
    assert main(["run", "cst-sim", "--data", str(data), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "unknown config field 'data'" in capsys.readouterr().err
