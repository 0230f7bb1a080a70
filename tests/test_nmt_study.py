"""The NMT adaptation study on tiny user corpora (TSV, Moses): config rules, records, artifact
reuse, every method runs."""

from __future__ import annotations

import itertools

import pytest

from theorylab.artifacts import UnitContext
from theorylab.empirical.nmt.study import METHODS, NmtAdaptStudy, hyp_records, score_records
from theorylab.errors import ConfigError

NOUNS = {"house": "casa", "dog": "perro", "city": "ciudad", "king": "rey", "door": "puerta",
         "book": "libro", "field": "campo", "river": "río", "tree": "árbol", "road": "camino"}
ADJ = {"big": "grande", "old": "viejo", "new": "nuevo", "small": "pequeño", "good": "bueno"}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    d = tmp_path_factory.mktemp("nmt")
    ood = [f"the {n} is {a}\tel {s} es {b}" for (n, s), (a, b) in
           itertools.product(NOUNS.items(), ADJ.items())]
    ood += [f"the {n} of the {m}\tel {s} del {t}" for (n, s), (m, t) in
            itertools.permutations(NOUNS.items(), 2)]
    (d / "ood.tsv").write_text("\n".join(ood) + "\n")
    ui = [f"open the {n}\tabrir el {s}" for n, s in NOUNS.items()]
    ui += [f"save the {a} {n}\tguardar el {s} {b}" for (n, s), (a, b) in
           itertools.product(NOUNS.items(), ADJ.items())]
    (d / "ui.en").write_text("\n".join(x.split("\t")[0] for x in ui) + "\n")
    (d / "ui.es").write_text("\n".join(x.split("\t")[1] for x in ui) + "\n")
    return f"{d}/ood.tsv>{d}/ui.en,{d}/ui.es"


def tiny(pair, **kw):
    cfg = dict(pairs=(pair,), n_seeds=1, max_words=10, n_test=10, n_dev=5, n_mono=8,
               max_ood_train=200, max_id_train=40, vocab=300, d_model=16, heads=2, layers=1,
               ff=32, base_epochs=2, ft_epochs=2, avg_last=2, n_select=20, beam=2,
               max_tokens=400, device="cpu")
    return NmtAdaptStudy(**{**cfg, **kw})


def test_config_rules(corpora):
    with pytest.raises(ConfigError, match="'bt' needs in-domain monolingual"):
        tiny(corpora, n_mono=0)
    with pytest.raises(ConfigError, match="'ensemble' needs 'ood' and 'ft'"):
        tiny(corpora, methods=("ood", "ensemble"))
    with pytest.raises(ConfigError, match="multiple of 'heads'"):
        tiny(corpora, heads=3)
    with pytest.raises(ConfigError, match="'OOD>ID'"):
        tiny("nt")
    q = NmtAdaptStudy().quick()
    assert q.pairs == ("bible>django",) and {"ood", "ft", "mixed", "ml", "random"} <= set(q.methods)


def test_every_method_runs_and_reuses_artifacts(corpora, tmp_path, store):
    study = tiny(corpora)
    ctx = UnitContext(study, store.path)
    rows = [r for u in study.units() for r in study.run_unit(u, ctx)]
    import pandas as pd
    table = pd.DataFrame(rows)
    sc = score_records(table)
    assert set(sc.method) == set(METHODS) and set(sc.domain) == {"id", "ood"}
    assert sc.bleu.between(0, 100).all() and sc.bleu_signature.str.startswith("nrefs:1").all()
    h = hyp_records(table)
    assert len(h) == len(METHODS) * 2 * 10
    # the same test sentences for every method
    refs = {m: tuple(g.sort_values(["domain", "i"]).ref) for m, g in h.groupby("method")}
    assert len(set(refs.values())) == 1
    root = store.path.parent
    built = sorted(p.relative_to(root) for p in root.rglob("*.pt"))
    assert len(built) == 2 + len(METHODS) - 1 + 1  # data, subwords, models (+ reverse, - ensemble)
    again = [r for u in study.units() for r in study.run_unit(u, ctx)]
    assert sorted(p.relative_to(root) for p in root.rglob("*.pt")) == built
    assert [r.get("hyp") for r in again] == [r.get("hyp") for r in rows]  # reproducible


def test_claims_compare_measured_and_not_measured(corpora, store, monkeypatch):
    """The claims' comparison on a tiny study: a method against itself differs by exactly 0
    (so it cannot 'beat' itself), gain and forgetting are the BLEU differences to the same
    seed's base model, and a method or pair the form does not run is NaN, not a verdict."""
    import types

    import numpy as np
    import pandas as pd

    from theorylab.papers import nmt as paper
    study = tiny(corpora, methods=("ood", "ft"), n_seeds=2)
    ctx = UnitContext(study, store.path)
    table = pd.DataFrame([r for u in study.units() for r in study.run_unit(u, ctx)])
    fake = types.SimpleNamespace(quick=False, sized=lambda s: study, run=lambda s: table)
    monkeypatch.setattr(paper, "_study", lambda c: study)
    same = paper.compare(fake, "ft", "ft", "id", "x", pair=corpora)
    assert same.measured == 0 and list(same.ci) == [0, 0] and same.status == "fails"
    v = paper.compare(fake, "ood", "ft", "id", "x", pair=corpora)
    sc = score_records(table)
    assert v.details["n_sentences"] == 2 * study.n_test and v.details["n_seeds"] == 2
    assert v.ci[0] <= v.measured <= v.ci[1]
    for missing in (("ood", "bt", corpora), ("ood", "ft", "ot>nt")):
        nan = paper.compare(fake, missing[0], missing[1], "id", "x", pair=missing[2])
        assert np.isnan(nan.measured) and nan.status == "inconclusive"
        assert "not_measured" in nan.details
    gf = paper.gain_forgetting(table)
    base = gf[gf.method == "ood"]
    assert (base.gain == 0).all() and (base.forgetting == 0).all()
    for _, r in gf[gf.method == "ft"].iterrows():
        b = sc[(sc.method == "ood") & (sc.seed == r.seed)].set_index("domain").bleu
        m = sc[(sc.method == "ft") & (sc.seed == r.seed)].set_index("domain").bleu
        assert r.gain == pytest.approx(m["id"] - b["id"])
        assert r.forgetting == pytest.approx(b["ood"] - m["ood"])
