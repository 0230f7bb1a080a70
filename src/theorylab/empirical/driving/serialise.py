r"""Scenes as text, numbers as fixed-point tokens, and the parser back (GPT-Driver style).

GPT-Driver (Mao et al. 2023) serialises the ego state and the nearby objects into words and
numbers and has the language model write the planned waypoints as text. Here a scene, seen from
the ego, is

* the ego: speed v (m/s), lane index, lateral offset from the lane centre (m), heading (degrees);
* six neighbour slots, the nearest vehicle ahead (F) and behind (R) on the left (L), own (S) and
  right (R) lane: longitudinal distance dx (m) and relative speed dv (m/s), or ``none``;

and a plan is K waypoints (x_k, y_k) of the ego at t_k = 1, 2, 3 s, in the ego's frame at t = 0,
written as offsets from the constant-velocity extrapolation: (x_k − v t_k, y_k). The plan text is
therefore "how the expert departs from constant velocity".

Numbers are fixed-point: a value z is quantised to q = round(z · 100) (clipped to
|q| ≤ 9999, i.e. −99.99 … +99.99 in steps of 0.01) and written as two tokens, the signed integer
part (``+0`` … ``+99``, ``-0`` … ``-99``) and the two decimals (``.00`` … ``.99``).
:func:`encode_number` and :func:`decode_number` are exact inverses on the quantised values, and
every sequence of the plan grammar (:func:`plan_grammar`: marker, integer, decimals, …, end)
parses, which is what constrained decoding relies on.
"""

from __future__ import annotations

import numpy as np

from theorylab.errors import InputError

__all__ = ["VOCAB", "TOKEN", "INT_DIGITS", "FRAC_DIGITS", "SLOTS", "N_FEATURES", "quantise",
           "encode_number", "decode_number", "scene_tokens", "plan_tokens", "parse_plan",
           "plan_grammar", "to_text", "PLAN_LEN"]

INT_DIGITS, FRAC_DIGITS = 2, 2
NUM_LEN = 2                      # tokens per number: signed integer part, decimals
SLOTS = ("LF", "LR", "SF", "SR", "RF", "RR")
EGO_FIELDS = ("v", "lane", "dy", "h")
N_WAYPOINTS = 3
SPECIAL = ("<pad>", "<bos>", "<plan>", "<eos>", "none")
_INTS = tuple(f"{s}{i}" for s in "+-" for i in range(10 ** INT_DIGITS))
_FRACS = tuple(f".{i:0{FRAC_DIGITS}d}" for i in range(10 ** FRAC_DIGITS))
VOCAB = (SPECIAL + tuple(f"{f}=" for f in EGO_FIELDS) + tuple(f"{s}:" for s in SLOTS)
         + tuple(f"wp{k + 1}" for k in range(N_WAYPOINTS)) + tuple(f"lane{i}" for i in range(10))
         + _INTS + _FRACS)
TOKEN = {t: i for i, t in enumerate(VOCAB)}
INTS = np.array([TOKEN[t] for t in _INTS])
FRACS = np.array([TOKEN[t] for t in _FRACS])
#: scene features (:func:`.planner.scene_features`): v, lane, dy, h, then (present, dx, dv) per slot
N_FEATURES = 4 + 3 * len(SLOTS)
#: plan tokens after <plan>: per waypoint its marker and two numbers, then <eos>
PLAN_LEN = N_WAYPOINTS * (1 + 2 * NUM_LEN) + 1
_SCALE = 10 ** FRAC_DIGITS
_MAX_Q = 10 ** (INT_DIGITS + FRAC_DIGITS) - 1


def quantise(z) -> np.ndarray:
    """The fixed-point integer q = clip(round(z · 100), ±9999)."""
    z = np.asarray(z, dtype=float)
    if not np.isfinite(z).all():
        raise InputError("a number to serialise must be finite. Got a non-finite value.")
    return np.clip(np.rint(z * _SCALE), -_MAX_Q, _MAX_Q).astype(np.int64)


def encode_number(q: int) -> list[int]:
    """Tokens of the fixed-point integer ``q``: signed integer part, then the decimals."""
    q = int(q)
    if abs(q) > _MAX_Q:
        raise InputError(f"'q' must satisfy |q| <= {_MAX_Q}. Got {q}.")
    sign = "-" if q < 0 else "+"
    return [TOKEN[f"{sign}{abs(q) // _SCALE}"], TOKEN[f".{abs(q) % _SCALE:0{FRAC_DIGITS}d}"]]


def decode_number(tokens) -> int:
    """Inverse of :func:`encode_number`."""
    tokens = [int(t) for t in tokens]
    if len(tokens) != NUM_LEN or tokens[0] not in INTS or tokens[1] not in FRACS:
        raise InputError(f"a number must be an integer-part and a decimals token. Got "
                         f"{[VOCAB[t] if 0 <= t < len(VOCAB) else t for t in tokens]}.")
    whole, frac = VOCAB[tokens[0]], VOCAB[tokens[1]]
    mag = int(whole[1:]) * _SCALE + int(frac[1:])
    return -mag if whole[0] == "-" else mag


def _num(z) -> list[int]:
    return encode_number(quantise(z))


def scene_tokens(f: np.ndarray) -> list[int]:
    """The prompt of one scene's feature vector (:data:`N_FEATURES`): <bos> … <plan>."""
    out = [TOKEN["<bos>"], TOKEN["v="], *_num(f[0]), TOKEN["lane="], TOKEN[f"lane{int(f[1])}"],
           TOKEN["dy="], *_num(f[2]), TOKEN["h="], *_num(f[3])]
    for k, slot in enumerate(SLOTS):
        present, dx, dv = f[4 + 3 * k: 7 + 3 * k]
        out.append(TOKEN[f"{slot}:"])
        if present > 0.5:
            out += [*_num(dx), *_num(dv)]
        else:
            out.append(TOKEN["none"])
    return out + [TOKEN["<plan>"]]


def plan_tokens(residual: np.ndarray) -> list[int]:
    """Tokens of a plan (K, 2) of residual waypoints, then <eos>."""
    out = []
    for k in range(N_WAYPOINTS):
        out += [TOKEN[f"wp{k + 1}"], *_num(residual[k, 0]), *_num(residual[k, 1])]
    return out + [TOKEN["<eos>"]]


def plan_grammar() -> list[np.ndarray]:
    """The token ids allowed at each plan position (constrained decoding): a marker, then per
    number a sign and digits, …, then <eos>."""
    out = []
    for k in range(N_WAYPOINTS):
        out.append(np.array([TOKEN[f"wp{k + 1}"]]))
        for _ in range(2):
            out += [INTS, FRACS]
    return out + [np.array([TOKEN["<eos>"]])]


def parse_plan(tokens) -> np.ndarray:
    """Plan tokens (after <plan>) → residual waypoints (K, 2) in metres; a malformed plan is an
    :class:`~theorylab.errors.InputError`."""
    tokens = [int(t) for t in tokens]
    if len(tokens) != PLAN_LEN or tokens[-1] != TOKEN["<eos>"]:
        raise InputError(f"a plan must be {PLAN_LEN} tokens ending in <eos>. Got {len(tokens)}.")
    out = np.empty((N_WAYPOINTS, 2))
    pos = 0
    for k in range(N_WAYPOINTS):
        if tokens[pos] != TOKEN[f"wp{k + 1}"]:
            raise InputError(f"plan position {pos} must be wp{k + 1}. Got {VOCAB[tokens[pos]]!r}.")
        pos += 1
        for c in range(2):
            out[k, c] = decode_number(tokens[pos:pos + NUM_LEN]) / _SCALE
            pos += NUM_LEN
    return out


def to_text(tokens) -> str:
    """The tokens as words, numbers joined (``+12`` ``.30`` → ``+12.30``), padding dropped."""
    words = []
    for t in tokens:
        w = VOCAB[int(t)]
        if w.startswith(".") and words and words[-1][0] in "+-":
            words[-1] += w
        elif w != "<pad>":
            words.append(w)
    return " ".join(words)
