r"""A vectorisable double-precision exp for numba loops.

numba calls the scalar libm ``exp`` (about 3 ns) and llvmlite ships no SIMD math library, so
a loop containing ``np.exp`` never vectorises. :func:`_exp` is branch-free and inlined, so
LLVM vectorises the loops that call it (AVX2 / AVX-512: about 0.4 ns per value here):

.. math::
    e^x = 2^k e^r,\quad k = \lfloor x \log_2 e + 1/2 \rceil,\quad
    r = x - k\ln 2 \in [-\tfrac{\ln 2}{2}, \tfrac{\ln 2}{2}],

with :math:`k \ln 2` subtracted in two parts (Cody–Waite: ``LN2_HI`` has trailing zero bits,
so :math:`k\cdot` ``LN2_HI`` is exact for :math:`|k| < 2^{11}`), :math:`e^r` by its Taylor
polynomial of degree 13 (truncation :math:`\le 0.347^{14}/14! < 5\cdot 10^{-18}`) and
:math:`2^k` written straight into the exponent bits. Relative error ≤ 2.3e-16 against
``np.exp`` (a test checks it over the whole range). Arguments are clamped to [−708, 709]: the
result stays finite and normal (:math:`e^{-708} \approx 3\cdot 10^{-308}` stands for 0,
:math:`e^{709} \approx 8\cdot 10^{307}` for overflow), which is what the sigmoid, tanh and
softmax callers need; NaN is not handled (callers never pass it: inputs are checked finite).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp_simd"]

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 rounded to 32 significant bits
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_X_MIN, _X_MAX = -708.0, 709.0


@intrinsic
def _i64_as_f64(typingctx, i):
    """Reinterpret the bits of an int64 as a float64 (no conversion)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@njit(cache=True, inline="always", fastmath={"contract"})
def _exp(x):
    """exp(x) for x clamped to [-708, 709]; branch-free, so loops calling it vectorise."""
    x = min(max(x, _X_MIN), _X_MAX)
    k = np.floor(x * _LOG2E + 0.5)
    r = x - k * _LN2_HI - k * _LN2_LO
    p = 1.0 / 6227020800.0  # 1/13!, Horner down to 1/0!
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _i64_as_f64((np.int64(k) + 1023) << 52)  # 2^k: biased exponent, zero mantissa


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _exp_loop(x, out):
    for j in range(x.shape[0]):
        out[j] = _exp(x[j])


def exp_simd(x) -> np.ndarray:
    """:func:`_exp` over a float array (for tests and benchmarks; kernels inline ``_exp``)."""
    x = np.ascontiguousarray(x, dtype=float).ravel()
    out = np.empty_like(x)
    _exp_loop(x, out)
    return out
