import math

import pytest
import torch

from theorylab.empirical.lm import TinyLM, sample, token_logprobs
from theorylab.empirical.train import TrainConfig, pick_device, train
from theorylab.errors import ConfigError, InputError


def _slow_token_logprobs(logits, tokens, mask):
    out = []
    for b in range(tokens.shape[0]):
        total = 0.0
        for t in range(1, tokens.shape[1]):
            if mask[b, t]:
                p = torch.softmax(logits[b, t - 1].double(), -1)[tokens[b, t]]
                total += math.log(float(p))
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_token_logprobs_matches_slow_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 7, generator=g) * 3
    tokens = torch.randint(0, 7, (3, 6), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]])
    fast = token_logprobs(logits, tokens, mask).double()
    torch.testing.assert_close(fast, _slow_token_logprobs(logits, tokens, mask), rtol=1e-5, atol=1e-5)


def test_token_logprobs_shape_errors():
    with pytest.raises(InputError, match="'mask' must have the shape"):
        token_logprobs(torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 3))


def test_tinylm_is_causal():
    torch.manual_seed(0)
    m = TinyLM(11, d_model=16, n_layers=1, n_heads=2, max_len=12).eval()
    x = torch.randint(0, 11, (2, 10))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 11  # change the future only
    torch.testing.assert_close(m(x)[:, :6], m(y)[:, :6])
    assert not torch.allclose(m(x)[:, 6:], m(y)[:, 6:])


def _fit(seed, epochs=8, **kw):
    torch.manual_seed(123)
    model = TinyLM(8, d_model=16, n_layers=1, n_heads=2, max_len=8)
    data = torch.arange(8).repeat(40, 1) % 8  # one deterministic sequence: learnable
    loss = lambda m, b: -token_logprobs(m(b), b).mean() / 7  # noqa: E731
    res = train(model, loss, data, TrainConfig(epochs=epochs, lr=1e-2, batch_size=8, seed=seed, **kw))
    return model, res


def test_train_lowers_loss_and_is_reproducible():
    m1, r1 = _fit(0)
    m2, r2 = _fit(0)
    assert r1.train_loss[-1] < 0.5 * r1.train_loss[0]
    assert r1.train_loss == r2.train_loss
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    ck = tmp_path / "ck.pt"
    _fit(0, epochs=2, checkpoint=str(ck))            # "interrupted" after 2 epochs
    m_resumed, r_resumed = _fit(0, epochs=8, checkpoint=str(ck))
    m_full, r_full = _fit(0, epochs=8)
    assert len(r_resumed.train_loss) == 8
    assert r_resumed.train_loss == pytest.approx(r_full.train_loss, rel=1e-6)
    for a, b in zip(m_resumed.state_dict().values(), m_full.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_early_stopping_restores_best():
    scores = iter([3.0, 1.0, 2.0, 2.5, 2.7, 9.0])
    torch.manual_seed(0)
    model = TinyLM(8, d_model=16, n_layers=1, n_heads=2, max_len=8)
    data = torch.zeros(16, 8, dtype=torch.long)
    res = train(model, lambda m, b: -token_logprobs(m(b), b).mean(), data,
                TrainConfig(epochs=6, patience=2, batch_size=8), val_fn=lambda m: next(scores))
    assert res.stopped_early and res.best_epoch == 1 and res.val == [3.0, 1.0, 2.0, 2.5]


def test_bad_config_and_device():
    with pytest.raises(ConfigError, match="'lr' of TrainConfig must be a finite real > 0"):
        TrainConfig(lr=0.0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda")
    assert pick_device("auto").type in ("cpu", "cuda")


def test_sample_extends_prefix():
    m = TinyLM(5, d_model=8, n_layers=1, n_heads=2, max_len=16)
    out = sample(m, torch.zeros(3, 2, dtype=torch.long), 4, torch.Generator().manual_seed(0))
    assert out.shape == (3, 6) and int(out.max()) < 5
