r"""Softmax-gated mixture of experts (Nguyen, Ho, Rinaldo, arXiv 2402.02952, ICML 2024): the model,
the least-squares fit and the Voronoi losses, re-exported from three modules.

.. math::

    f_G(x) = \sum_{i=1}^{k} \mathrm{softmax}_i(\beta_{1i}^\top x + \beta_{0i})\, h(x, \eta_i),
    \qquad \hat G_n \in \arg\min_G \sum_{i=1}^n (Y_i - f_G(X_i))^2 .

* :mod:`~theorylab.kernels.moe.model`: ``FAMILIES``, ``MoEParams``, ``n_eta``, ``n_free``,
  ``pack``, ``unpack``, ``moe_predict``, ``residuals_jacobian`` (residual convention
  :math:`r = f_G(X) - y`, so :math:`J = \partial f/\partial\theta`), ``objective``; slow twins
  written straight from the formulas (``_slow_moe_predict``, ``_slow_residuals``,
  ``_slow_jacobian``) back the tests.
* :mod:`~theorylab.kernels.moe.fit` (imports ``model``): ``fit_lse`` -> ``FitResult``
  (multi-start LSE), ``lm_fit`` (one projected LM run from a given start), ``random_start`` /
  ``split_start`` / ``relocate_start`` (the starts and split–merge moves ``fit_lse`` uses).
* :mod:`~theorylab.kernels.moe.reference` (imports ``model``, ``fit``; not re-exported, it needs
  scipy): ``reference_lse`` -> ``ReferenceResult``, a many-start bounded
  ``scipy.optimize.least_squares`` reference for the global LSE; ``sse``.
* :mod:`~theorylab.kernels.moe.voronoi` (imports ``model``): ``voronoi_cells``, ``voronoi_d1``,
  ``voronoi_d2``, ``atom_errors``, ``over_specified_error``, ``l2_error``; slow twin
  ``_slow_voronoi_d1``.

The imports run one way (``model`` ← ``fit``, ``model`` ← ``voronoi``), so there is no cycle.
"""

from theorylab.kernels.moe.fit import (
    FitResult,
    fit_lse,
    lm_fit,
    random_start,
    relocate_start,
    split_start,
)
from theorylab.kernels.moe.model import (
    FAMILIES,
    MoEParams,
    moe_predict,
    n_eta,
    n_free,
    objective,
    pack,
    residuals_jacobian,
    unpack,
)
from theorylab.kernels.moe.voronoi import (
    atom_errors,
    l2_error,
    over_specified_error,
    voronoi_cells,
    voronoi_d1,
    voronoi_d2,
)

__all__ = [
    "FAMILIES", "MoEParams", "FitResult", "n_eta", "n_free", "pack", "unpack", "moe_predict",
    "residuals_jacobian", "objective", "fit_lse", "lm_fit", "random_start", "split_start",
    "relocate_start",
    "voronoi_cells", "voronoi_d1", "voronoi_d2", "atom_errors", "over_specified_error",
    "l2_error",
]
