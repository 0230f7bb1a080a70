"""ESM-2 model, checkpoint loading, neuron scores (activation, IG), selection and masking."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theorylab.empirical.esm_model import (
    ESMClassifier,
    alphabet,
    build_esm2,
    encode,
    load_esm2_checkpoint,
    mask_tokens,
    save_esm2_checkpoint,
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
from theorylab.errors import ConfigError, DataFormatError, InputError

SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "ACDEFGHIKLMNPQRSTVWY", "MSIPETQKG", "WWYYACCA"]


@pytest.fixture(scope="module")
def clf():
    torch.manual_seed(0)
    m = ESMClassifier(build_esm2("tiny", seed=1), 3)
    # perturb away from the (near-linear) initialisation so IG is not trivially exact
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.eval()


@pytest.fixture(scope="module")
def batch():
    return encode(SEQS, max_len=16), torch.tensor([0, 1, 2, 1])


# ----------------------------------------------------------------------------- model & data
def test_encode_layout():
    a = alphabet()
    tok = encode(["MKV", "ACDEFG"], max_len=6)
    assert tok.shape == (2, 6)
    assert tok[0].tolist() == [a.cls_idx, a.get_idx("M"), a.get_idx("K"), a.get_idx("V"),
                               a.eos_idx, a.padding_idx]
    assert tok[1].tolist()[-1] == a.eos_idx and len(tok[1]) == 6  # truncated to 4 residues


def test_build_shapes_and_errors():
    m = build_esm2("t6_8M")
    assert (m.num_layers, m.embed_dim, m.attention_heads) == (6, 320, 20)
    assert 7.0e6 < sum(p.numel() for p in m.parameters()) < 8.5e6  # esm2_t6_8M: 7.5 M
    with pytest.raises(ConfigError, match="'size' of build_esm2 must be one of"):
        build_esm2("huge")
    with pytest.raises(ConfigError, match="multiple of 2\\*attention_heads"):
        build_esm2("tiny", embed_dim=30)


def test_classifier_pools_residues_only(clf, batch):
    tok, _ = batch
    a = alphabet()
    longer = torch.cat([tok, torch.full((tok.shape[0], 5), a.padding_idx)], 1)
    torch.testing.assert_close(clf(tok), clf(longer), atol=1e-5, rtol=1e-5)  # padding ignored
    assert clf(tok).shape == (4, 3)


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), p=st.floats(0.05, 0.9))
def test_mask_tokens_only_residues(seed, p):
    tok = encode(SEQS * 4, max_len=24)
    inputs, targets = mask_tokens(tok, torch.Generator().manual_seed(seed), p)
    picked = targets != -100
    special = (tok == alphabet().cls_idx) | (tok == alphabet().eos_idx) | (
        tok == alphabet().padding_idx)
    assert not (picked & special).any()
    assert torch.equal(targets[picked], tok[picked])
    assert torch.equal(inputs[~picked], tok[~picked])  # unpicked positions unchanged


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path, batch):
    tok, _ = batch
    m = build_esm2("tiny", seed=3).eval()
    path = save_esm2_checkpoint(m, tmp_path / "esm2_t2_tiny.pt")
    back = load_esm2_checkpoint(path).eval()
    torch.testing.assert_close(back(tok)["logits"], m(tok)["logits"], rtol=0, atol=0)


def test_checkpoint_in_released_layout(tmp_path, batch):
    """A file built like esm2_t6_8M_UR50D.pt: cfg dict with a Namespace, prefixed keys."""
    tok, _ = batch
    m = build_esm2("tiny", seed=4).eval()
    cfg = argparse.Namespace(encoder_layers=2, encoder_embed_dim=32, encoder_attention_heads=4,
                             token_dropout=True, extra_field="ignored")
    state = {"encoder.sentence_encoder." + k: v for k, v in m.state_dict().items()
             if not k.startswith("contact_head")}
    torch.save({"cfg": {"model": cfg, "task": {"x": 1}}, "model": state}, tmp_path / "c.pt")
    torch.testing.assert_close(load_esm2_checkpoint(tmp_path / "c.pt")(tok)["logits"],
                               m(tok)["logits"], rtol=0, atol=0)


class _Evil:  # any class outside the allow-list must be refused by weights_only loading
    pass


def test_checkpoint_refuses_unsafe_and_foreign_files(tmp_path):
    torch.save({"cfg": {"model": _Evil()}, "model": {}}, tmp_path / "evil.pt")
    with pytest.raises(DataFormatError, match="not a safely loadable checkpoint"):
        load_esm2_checkpoint(tmp_path / "evil.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(DataFormatError, match="not an ESM-2 checkpoint"):
        load_esm2_checkpoint(tmp_path / "other.pt")
    m = build_esm2("tiny")
    save_esm2_checkpoint(m, tmp_path / "t.pt")
    data = torch.load(tmp_path / "t.pt", weights_only=False)
    data["cfg"]["model"].encoder_layers = 3
    torch.save(data, tmp_path / "wrong.pt")
    with pytest.raises(DataFormatError, match=r"does not match ESM2\(3, 32, 4\): missing"):
        load_esm2_checkpoint(tmp_path / "wrong.pt")
    with pytest.raises(DataFormatError, match="no such checkpoint file"):
        load_esm2_checkpoint(tmp_path / "absent.pt")


# ----------------------------------------------------------------------------- scores
def _slow_activation_scores(model, tokens):
    """Reference: one sequence at a time, residue positions only, plain Python accumulation."""
    from theorylab.empirical.esm_model import residue_mask
    mods = neuron_modules(model.esm)
    sums = {m.name: 0.0 for m in mods}
    count = 0
    for i in range(tokens.shape[0]):
        seq = tokens[i:i + 1]
        seen = {}
        hs = [m.module.register_forward_hook(
            lambda mod, inp, out, n=m.name, seen=seen: seen.__setitem__(n, out.detach().clone()))
            for m in mods]
        with torch.no_grad():
            model(seq)
        for h in hs:
            h.remove()
        keep = residue_mask(seq)[0]
        count += int(keep.sum())
        for n, out in seen.items():  # (T, 1, D)
            sums[n] = sums[n] + out[keep, 0].abs().double().sum(0)
    return {n: (v / count).float() for n, v in sums.items()}


def test_activation_scores_match_reference(clf, batch):
    tok, _ = batch
    fast = activation_scores(clf, tok, batch_size=3)
    slow = _slow_activation_scores(clf, tok)
    assert list(fast) == [m.name for m in neuron_modules(clf.esm)]
    for n in fast:
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-5, atol=1e-6)


def _slow_ig(model, tokens, labels, module, n_steps):
    """Reference IG for one module, straight from the formula with autograd, Gauss–Legendre
    nodes on [0, 1]: IG = a ⊙ Σ_k w_k ∂F(α_k a)/∂ĥ."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas, ws = (nodes + 1) / 2, weights / 2
    seen = {}
    h = module.register_forward_hook(lambda m, i, o: seen.__setitem__("a", o.detach().clone()))
    with torch.no_grad():
        model(tokens)
    h.remove()
    a = seen["a"]  # (T, B, D)
    total = torch.zeros_like(a)
    for alpha, w in zip(alphas, ws, strict=True):
        x = (alpha * a).requires_grad_(True)
        h = module.register_forward_hook(lambda m, i, o, x=x: x.clone())
        p = torch.softmax(model(tokens), -1).gather(1, labels[:, None]).sum()
        h.remove()
        (g,) = torch.autograd.grad(p, x)
        total += w * g
    return (a * total).transpose(0, 1)  # (B, T, D)


@pytest.mark.parametrize("kind", ["self_attn.q_proj", "self_attn.k_proj", "fc1", "fc2"])
def test_ig_matches_slow_reference(clf, batch, kind):
    tok, y = batch
    name = f"layers.1.{kind}"
    res = ig_scores(clf, tok, y, n_steps=12, batch_size=3, modules=[name])
    ref = _slow_ig(clf, tok, y, clf.esm.get_submodule(name), 12)
    torch.testing.assert_close(res.scores[name], ref.sum(1).mean(0), rtol=1e-4, atol=1e-6)


def test_ig_completeness(clf, batch):
    """Σ_{i,t} IG_{i,t}(x) = F(a) − F(0): captum's delta small relative to the gap, and
    shrinking with more integration points."""
    tok, y = batch
    coarse = ig_scores(clf, tok, y, n_steps=4, batch_size=4)
    fine = ig_scores(clf, tok, y, n_steps=40, batch_size=4)
    assert list(fine.delta) == [m.name for m in neuron_modules(clf.esm)]
    gap = torch.cat(list(fine.gap.values())).abs()
    err_fine = torch.cat(list(fine.delta.values())).abs()
    err_coarse = torch.cat(list(coarse.delta.values())).abs()
    assert gap.mean() > 1e-3  # a non-trivial test
    assert float(err_fine.sum() / gap.sum()) < 1e-3
    assert err_fine.sum() < err_coarse.sum()
    # the gap is measured independently: F(a) − F(0) with the module's output zeroed
    name = "layers.0.fc2"
    mod = clf.esm.get_submodule(name)
    with torch.no_grad():
        full = torch.softmax(clf(tok), -1).gather(1, y[:, None]).squeeze(1)
        h = mod.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        zero = torch.softmax(clf(tok), -1).gather(1, y[:, None]).squeeze(1)
        h.remove()
    torch.testing.assert_close(fine.gap[name].float(), full - zero, rtol=1e-5, atol=1e-6)


def test_ig_input_errors(clf, batch):
    tok, y = batch
    with pytest.raises(InputError, match="'labels' of ig_scores must have 4 entries"):
        ig_scores(clf, tok, y[:2])
    with pytest.raises(ConfigError, match="unknown module 'layers.9.fc1'"):
        ig_scores(clf, tok, y, modules=["layers.9.fc1"])


# ----------------------------------------------------------------------------- selection
def _slow_select_top(scores, frac):
    flat = [(float(v), gi) for gi, v in enumerate(torch.cat(list(scores.values())).tolist())]
    k = int(round(frac * len(flat)))
    chosen = {gi for _, gi in sorted(flat, key=lambda t: (-t[0], t[1]))[:k]}
    return chosen


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.0, 1.0), ties=st.booleans())
def test_select_top_matches_reference(seed, frac, ties):
    g = torch.Generator().manual_seed(seed)
    scores = {"layers.0.fc1": torch.randn(7, generator=g), "layers.0.fc2": torch.randn(5, generator=g)}
    if ties:
        scores = {k: v.round() for k, v in scores.items()}
    masks = select_top(scores, frac)
    got = set(np.flatnonzero(torch.cat(list(masks.values())).numpy()))
    assert got == _slow_select_top(scores, frac)


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.0, 1.0))
def test_select_random_count_and_determinism(seed, frac):
    sizes = {"a": 10, "b": 30}
    m1 = select_random(sizes, frac, np.random.default_rng(seed))
    m2 = select_random(sizes, frac, np.random.default_rng(seed))
    n = int(torch.cat(list(m1.values())).sum())
    assert n == round(frac * 40)
    assert all(torch.equal(m1[k], m2[k]) for k in sizes)


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.0, 1.0), zero=st.booleans())
def test_preserved_state_changes_only_unselected_units(seed, frac, zero):
    g = torch.Generator().manual_seed(seed)
    pre = ESMClassifier(build_esm2("tiny", seed=seed % 97), 2)
    ft_state = {k: v + torch.randn(v.shape, generator=g) for k, v in pre.state_dict().items()}
    ref = None if zero else pre.state_dict()
    sizes = {m.name: m.module.out_features for m in neuron_modules(pre.esm)}
    masks = select_random(sizes, frac, np.random.default_rng(seed))
    out = preserved_state(ft_state, ref, masks)
    assert set(out) == set(ft_state)
    touched = set()
    for name, keep in masks.items():
        for p in ("weight", "bias"):
            key = f"esm.{name}.{p}"
            touched.add(key)
            want_reset = torch.zeros_like(ft_state[key]) if zero else pre.state_dict()[key]
            assert torch.equal(out[key][keep], ft_state[key][keep])        # kept: fine-tuned
            assert torch.equal(out[key][~keep], want_reset[~keep])          # rest: reset
    for key in set(ft_state) - touched:                                     # non-neurons kept
        assert torch.equal(out[key], ft_state[key])


def test_preserved_state_rejects_bad_masks():
    m = ESMClassifier(build_esm2("tiny"), 2)
    with pytest.raises(InputError, match="mask of 'layers.0.fc1' must have 128 entries"):
        preserved_state(m.state_dict(), None, {"layers.0.fc1": torch.ones(3, dtype=torch.bool)})


def test_density_fraction_per_module():
    masks = {"layers.0.self_attn.k_proj": torch.tensor([True, False, False, False]),
             "layers.1.fc1": torch.tensor([True, True])}
    assert density(masks) == {(0, "key"): 0.25, (1, "ffn_in"): 1.0}
    assert set(MODULE_KINDS.values()) == {"query", "key", "value", "attn_out", "ffn_in", "ffn_out"}


# ----------------------------------------------------------------------------- transformers dirs
def _hf_model(tmp_path, **over):
    transformers = pytest.importorskip("transformers")
    cfg = dict(vocab_size=33, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, position_embedding_type="rotary", token_dropout=True,
               mask_token_id=32, pad_token_id=1, emb_layer_norm_before=False)
    torch.manual_seed(0)
    model = transformers.EsmForMaskedLM(transformers.EsmConfig(**{**cfg, **over})).eval()
    with torch.no_grad():  # move off the init so every weight matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "hf")
    return model


def test_transformers_directory_matches_transformers_logits(tmp_path, batch):
    """Cross-implementation check: transformers' EsmForMaskedLM and the fair-esm ESM2 loaded
    from its saved directory give the same logits on padded batches."""
    hf = _hf_model(tmp_path)
    tok, _ = batch
    mine = load_esm2_checkpoint(tmp_path / "hf").eval()
    with torch.no_grad():
        want = hf(input_ids=tok, attention_mask=(tok != alphabet().padding_idx).long()).logits
        got = mine(tok)["logits"]
    keep = tok != alphabet().padding_idx
    torch.testing.assert_close(got[keep], want[keep], rtol=1e-4, atol=1e-4)


def test_transformers_directory_errors(tmp_path):
    _hf_model(tmp_path)
    (tmp_path / "hf" / "model.safetensors").rename(tmp_path / "hf" / "x.safetensors")
    with pytest.raises(DataFormatError, match="neither model.safetensors nor pytorch_model.bin"):
        load_esm2_checkpoint(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "esm", "hidden_size": 32, '
                                                  '"num_hidden_layers": 2, "num_attention_heads": 4, '
                                                  '"position_embedding_type": "absolute"}')
    with pytest.raises(DataFormatError, match="ESM-2 needs position_embedding_type = 'rotary'"):
        load_esm2_checkpoint(tmp_path / "hf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="lacks config.json"):
        load_esm2_checkpoint(tmp_path / "empty")
