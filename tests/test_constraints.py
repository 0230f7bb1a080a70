"""Field constraints as data: the invalid configs of every registered study and of TrainConfig
are generated from the declarations (no hand-listed cases) and each must give one clear line."""

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorylab import constraints as C
from theorylab.cli import main
from theorylab.empirical.train import TrainConfig
from theorylab.errors import ConfigError
from theorylab.papers import load_studies
from theorylab.study import STUDIES, Study

load_studies()
# the package's studies (test modules may register toy studies of their own, in any order)
CONFIGS = [STUDIES[n] for n in sorted(STUDIES)
           if STUDIES[n].__module__.startswith("theorylab.")] + [TrainConfig]


# -- generating values from a declaration ------------------------------------------------------

def valid_example(c: C.Constraint):
    """One value the declaration accepts."""
    if isinstance(c, C.Int):
        return c.lo if c.lo is not None else (c.hi if c.hi is not None and c.hi < 0 else 0)
    if isinstance(c, C.Real):
        lo = -1.0 if c.lo is None else c.lo
        hi = lo + 2.0 if c.hi is None else c.hi
        return (lo + hi) / 2
    if isinstance(c, C.Choice):
        return c.choices[0]
    if isinstance(c, C.Tuple):
        return (valid_example(c.item),) * max(c.min_len, 1)
    return {C.Bool: True, C.Str: "x", C.Device: "cpu", C.Optional: None}[type(c)]


def scalar_example(c: C.Constraint):
    """A valid leaf value: what a user types when forgetting the brackets of a list."""
    return scalar_example(c.item) if isinstance(c, C.Tuple) else valid_example(c)


def invalid_values(c: C.Constraint) -> list:
    """Every kind of wrong value the declaration implies: below lo, above hi, wrong type, bool
    for int, NaN/inf for reals, unknown choice, scalar for a list, bad length, bad item."""
    if isinstance(c, C.Int):
        out = [0.5 + (c.lo or 0), True, False, "1", None]
        out += [c.lo - 1] if c.lo is not None else []
        out += [c.hi + 1] if c.hi is not None else []
        return out
    if isinstance(c, C.Real):
        out = [math.nan, math.inf, -math.inf, True, "0.5", None]
        if c.lo is not None:
            out.append(c.lo if c.lo_open else math.nextafter(c.lo, -math.inf))
        if c.hi is not None:
            out.append(c.hi if c.hi_open else math.nextafter(c.hi, math.inf))
        return out
    if isinstance(c, C.Choice):
        return ["no-such-" + str(c.choices[0]), 1, None]
    if isinstance(c, C.Bool):
        return [1, 0, "true", None]
    if isinstance(c, C.Str):
        return [1, None]
    if isinstance(c, C.Device):
        return ["mps", "cuda:x", "CPU", 0, None]
    if isinstance(c, C.Optional):
        return [v for v in invalid_values(c.inner) if v is not None]
    assert isinstance(c, C.Tuple), f"no generator for {type(c).__name__}: add one"
    good = valid_example(c.item)
    out = [scalar_example(c), "abc", None]
    if c.min_len >= 1:
        out.append(())
    if c.min_len >= 2:
        out.append((good,) * (c.min_len - 1))
    if c.max_len is not None:
        out.append((good,) * (c.max_len + 1))
    rest = (good,) * (max(c.min_len, 1) - 1)
    out += [(bad,) + rest for bad in invalid_values(c.item)]
    return out


def invalid_cases():
    for cls in CONFIGS:
        for name, c in cls.constraints.items():
            for i, value in enumerate(invalid_values(c)):
                yield pytest.param(cls, name, value, id=f"{cls.__name__}.{name}-{i}")


# -- the tests ---------------------------------------------------------------------------------

def test_every_study_is_registered_and_declares_every_field():
    assert len(CONFIGS) >= 12  # 11 studies of 3 papers + TrainConfig
    for cls in CONFIGS:
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(cls.constraints) == fields, cls.__name__
        assert all(isinstance(c, C.Constraint) for c in cls.constraints.values())
        assert "__post_init__" not in cls.__dict__, f"{cls.__name__}: put cross-field rules in check()"


def test_an_undeclared_field_is_caught_at_construction():
    @dataclasses.dataclass(frozen=True)
    class Sloppy(Study):
        k: int = 1
        j: int = 2
        constraints = {"k": C.Int(1, 5)}

    with pytest.raises(TypeError, match=r"undeclared \['j'\]"):
        Sloppy()


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_and_quick_forms_are_valid(cls):
    cfg = cls()
    for c in (cfg, cfg.quick()) if isinstance(cfg, Study) else (cfg,):
        for name, rule in cls.constraints.items():
            assert rule.ok(getattr(c, name)), (cls.__name__, name)


@pytest.mark.parametrize("cls, name, value", list(invalid_cases()))
def test_generated_invalid_value_is_one_line_naming_field_and_class(cls, name, value):
    assert not cls.constraints[name].ok(value)  # the generator agrees with the declaration
    with pytest.raises(ConfigError) as err:
        cls(**{name: value})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"'{name}") and f" of {cls.__name__} must be " in msg
    assert msg.endswith(".") and "Got " in msg


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_sizes_have_upper_bounds(cls):
    """Every int field except seeds is bounded above, and so is every list's length."""
    def bounded(c):
        if isinstance(c, C.Optional):
            return bounded(c.inner)
        if isinstance(c, C.Int):
            return c.hi is not None
        if isinstance(c, C.Tuple):
            return c.max_len is not None and bounded(c.item)
        return True
    loose = [n for n, c in cls.constraints.items() if not bounded(c)]
    assert not loose, f"{cls.__name__}: no upper bound on {loose}"


# -- the constraint objects on synthetic declarations -------------------------------------------

@given(st.integers(-50, 50), st.integers(-5, 5), st.integers(0, 10))
def test_int_accepts_exactly_its_range(v, lo, width):
    c = C.Int(lo, lo + width)
    assert c.ok(v) == (lo <= v <= lo + width)
    assert not c.ok(float(v)) and not c.ok(True)


@given(st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.booleans())
def test_real_accepts_exactly_its_interval(v, lo_open, hi_open):
    c = C.Real(0, 1, lo_open, hi_open)
    inside = math.isfinite(v) and (0 < v if lo_open else 0 <= v) and (v < 1 if hi_open else v <= 1)
    assert c.ok(v) == inside


def test_message_format_follows_validation():
    with pytest.raises(ConfigError) as err:
        C.Int(1, 10_000).check("MoERateStudy", "n_reps", 0)
    assert str(err.value) == "'n_reps' of MoERateStudy must be an int >= 1 and <= 10000. Got 0."
    with pytest.raises(ConfigError) as err:
        C.Tuple(C.Int(1, 9), max_len=3).check("S", "ns", 100)
    assert str(err.value) == "'ns' of S must be a list of ints (write --set ns=[100]). Got 100."
    with pytest.raises(ConfigError) as err:
        C.Tuple(C.Int(1, 9), max_len=3).check("S", "ns", (1, 10))
    assert str(err.value) == "'ns' of S must be an int >= 1 and <= 9 in every item. Got 10 (item 1)."


# -- the CLI path ------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, expected", [
    ("ns=100", "error: 'ns' of MoERateStudy must be a list of ints (write --set ns=[100]). Got 100."),
    ("n_reps=1e12", "error: 'n_reps' of MoERateStudy must be an int >= 1 and <= 10000."),
    ("ns=[1e12]", "error: 'ns' of MoERateStudy must be an int >= 1 and <= 10000000 in every item."),
    ("n_reps=1000000000000", "error: 'n_reps' of MoERateStudy must be an int >= 1 and <= 10000."),
])
def test_cli_bad_set_is_one_line_exit_2(setting, expected, tmp_path, capsys):
    rc = main(["run", "moe-rates", "--set", setting, "--store", str(tmp_path / "s.sqlite")])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.startswith(expected) and err.count("\n") == 1
    assert "Traceback" not in err + out
    assert not (tmp_path / "s.sqlite").exists()  # rejected before anything is written
