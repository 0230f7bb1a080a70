"""The NER taggers: batched = one-by-one decoding, padding invariance, reproducible training,
seqeval entity F1 on a hand-labelled example."""

import pytest
import torch

from support.ner_tiny import tiny_setup
from theorylab.empirical.ner.encode import UNK, collate
from theorylab.empirical.ner.metrics import entity_f1, evaluate, per_type
from theorylab.empirical.train import TrainConfig, train
from theorylab.threads import single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():  # many tiny ops: the thread pool only costs on a loaded machine
        yield


def test_greedy_decoder_equals_the_per_step_lstm_reference():
    _, _, items, model = tiny_setup("cnn")
    model.eval()
    batch = collate(items)
    fast, slow = model.predict(batch), model._slow_predict(batch)
    assert torch.equal(fast.tags, slow.tags)
    torch.testing.assert_close(fast.logp, slow.logp.detach(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["cnn", "bilstm_crf"])
def test_a_sentence_decodes_alike_alone_and_in_a_padded_batch(arch):
    _, _, items, model = tiny_setup(arch)
    together = model.predict(collate(items))
    for b, it in enumerate(items[:6]):
        alone = model.predict(collate([it]))
        n = len(it["words"])
        assert torch.equal(alone.tags[0, :n], together.tags[b, :n])
        torch.testing.assert_close(alone.logp[0], together.logp[b], rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["cnn", "bilstm_crf"])
def test_decoded_logp_is_minus_the_teacher_forced_nll_of_the_decoded_tags(arch):
    """log P(ŷ|x) from decoding equals −loss(x, ŷ) computed by the training path."""
    _, _, items, model = tiny_setup(arch)
    model.eval()
    for it in items[:5]:
        b = collate([it])
        pred = model.predict(b)
        nll = model.loss({**b, "tags": pred.tags})
        assert float(pred.logp[0]) == pytest.approx(-float(nll.detach()), abs=1e-4)


def test_word_dropout_replaces_words_by_unk_in_training_only():
    _, _, items, model = tiny_setup("cnn")
    model.word_dropout = 1.0
    batch = collate(items[:4])
    model.train()
    x_train = model._inputs(batch)
    model.eval()
    x_eval = model._inputs(batch)
    unk = model.word_emb.weight[UNK]
    emb_train = x_train[..., -unk.shape[0]:][batch["mask"]]
    assert torch.allclose(emb_train, unk.expand_as(emb_train))
    assert not torch.allclose(x_eval[..., -unk.shape[0]:][batch["mask"]], emb_train)


@pytest.mark.parametrize("arch", ["cnn", "bilstm_crf"])
def test_training_is_bit_reproducible_and_learns(arch):
    states, f1s = [], []
    for _ in range(2):
        _, vocab, items, model = tiny_setup(arch)
        before = evaluate(model, items, vocab)
        cfg = TrainConfig(epochs=20, lr=2e-2, batch_size=8, device="cpu", seed=3, val_mode="max")
        with single_thread():
            res = train(model, lambda m, b: m.loss(b), items, cfg,
                        val_fn=lambda m, it=items, v=vocab: evaluate(m, it, v), collate=collate)
        states.append(model.state_dict())
        f1s.append(res.best_val)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert f1s[0] == f1s[1] and f1s[0] > before + 0.3, (before, f1s)


def test_seqeval_entity_f1_on_a_hand_labelled_example():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-LOC", "I-LOC"]]
    # PER right, first LOC right; ORG typed as LOC; second LOC cut short (strict: wrong)
    pred = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O", "B-LOC", "O"]]
    tp, n_gold, n_pred = 2, 4, 4
    p, r = tp / n_pred, tp / n_gold
    assert entity_f1(gold, pred, "iob2") == pytest.approx(2 * p * r / (p + r))
    rep = per_type(gold, pred, "iob2")
    assert rep["PER"]["f1-score"] == 1.0 and rep["ORG"]["recall"] == 0.0
    # strict IOB2: an entity opened with I- is not an entity; seqeval's default mode counts it
    assert entity_f1([["B-PER", "I-PER"]], [["I-PER", "I-PER"]], "iob2") == 0.0


def test_char_cnn_groups_equal_one_padded_tensor():
    """The length-grouped char CNN equals the plain computation over (B·T, C) padded to the
    longest word, values and gradients (words of 1 to 11 characters, padding words included)."""
    from theorylab.empirical.ner.model import CharCNN
    torch.manual_seed(0)
    cnn = CharCNN(n_chars=30, dim=5, filters=7, width=5)
    B, T, C = 3, 6, 11
    n = torch.randint(0, C + 1, (B, T))
    chars = torch.randint(1, 30, (B, T, C)) * (torch.arange(C) < n.unsqueeze(-1))
    x = cnn.emb(chars.view(B * T, C)).transpose(1, 2)
    h = torch.relu(cnn.conv(x))[:, :, :C].masked_fill(chars.view(B * T, 1, C) == 0, float("-inf"))
    ref = torch.nan_to_num(h.amax(2), neginf=0.0).view(B, T, -1)
    got = cnn(chars)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    w = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * w).sum(), cnn.conv.weight)[0]
    g_got = torch.autograd.grad((got * w).sum(), cnn.conv.weight)[0]
    torch.testing.assert_close(g_got, g_ref, rtol=1e-5, atol=1e-6)
    assert (got[n == 0] == 0).all() and (n == 0).any() and (n > 8).any()
