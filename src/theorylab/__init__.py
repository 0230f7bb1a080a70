"""theorylab: verified, runnable reproductions of the claims of ML theory papers.

Layers (see the project's DESIGN): ``kernels`` (pure numerics) → ``theory`` (sympy derivations
with ``verify()``) and ``simulations`` (studies built on kernels) → ``empirical`` (real models).
One claims registry (:mod:`theorylab.claims`) feeds the CLI, the tests and the book.
"""

__version__ = "0.1.0"
