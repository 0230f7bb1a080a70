import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorylab.errors import ConfigError, DataFormatError, InputError
from theorylab.seeding import rng_for, seed_for
from theorylab.validation import check_choice, check_finite, check_int, check_real, check_shape


@given(st.integers(-1000, 1000), st.integers(-10, 10))
def test_check_int_accepts_exactly_the_range(value, lo):
    if value >= lo:
        assert check_int("O", "x", value, lo=lo) == value
    else:
        with pytest.raises(ConfigError, match=rf"'x' of O must be an int >= {lo}\. Got {value}\."):
            check_int("O", "x", value, lo=lo)


@pytest.mark.parametrize("value", [1.0, True, "1", None], ids=["float", "bool", "str", "none"])
def test_check_int_rejects_non_ints(value):
    with pytest.raises(ConfigError):
        check_int(None, "k", value)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_check_real_open_interval(value):
    inside = math.isfinite(value) and 0 < value < 0.5
    if inside:
        assert check_real("O", "eps", value, lo=0, hi=0.5, lo_open=True, hi_open=True) == value
    else:
        with pytest.raises(ConfigError, match="must be a finite real > 0 and < 0.5"):
            check_real("O", "eps", value, lo=0, hi=0.5, lo_open=True, hi_open=True)


def test_check_choice_and_shape_and_finite():
    assert check_choice("O", "family", "tanh", ("sigmoid", "tanh")) == "tanh"
    with pytest.raises(ConfigError, match="'family' of O must be one of 'sigmoid', 'tanh'. Got 'relu'."):
        check_choice("O", "family", "relu", ("sigmoid", "tanh"))
    check_shape("X", np.zeros((3, 2)), (None, 2))
    with pytest.raises(InputError, match=r"'X' must have shape \(\*, 2\). Got \(3, 3\)."):
        check_shape("X", np.zeros((3, 3)), (None, 2))
    with pytest.raises(InputError, match=r"'y' must be finite. Got nan at index \(1,\)"):
        check_finite("y", [0.0, np.nan, np.inf])


def test_data_format_error_names_file_and_line():
    assert str(DataFormatError("bad header", path="a.fasta", line=3)) == "a.fasta:3: bad header"


@given(st.integers(0, 2**32), st.lists(st.integers(0, 10**6), max_size=3))
def test_seed_for_is_deterministic_and_key_sensitive(base, keys):
    assert seed_for(base, *keys) == seed_for(base, *keys)
    assert seed_for(base, *keys, 0) != seed_for(base, *keys, 1)
    a, b = rng_for(base, *keys).random(4), rng_for(base, *keys).random(4)
    assert np.array_equal(a, b)


@given(st.integers(0, 2**40), st.lists(st.one_of(st.integers(0, 10**6), st.text(max_size=5)), max_size=3))
def test_torch_seed_is_seed_for_and_a_valid_torch_seed(base, keys):
    import torch

    from theorylab.seeding import torch_generator, torch_seed
    s = torch_seed(base, *keys)
    assert s == seed_for(base, *keys) and 0 <= s < 2**63
    assert torch.Generator().manual_seed(s).initial_seed() == s  # torch keeps all 63 bits
    a, b = torch_generator(base, *keys), torch_generator(base, *keys)
    assert a.initial_seed() == s
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    assert not torch.equal(torch.rand(5, generator=torch_generator(base, *keys, "x")),
                           torch.rand(5, generator=torch_generator(base, *keys)))


def test_seeding_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, theorylab.seeding; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
