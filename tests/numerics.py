"""Tolerances for comparisons that must allow for rounding, derived from the dtype.

Two computations of the same float32 quantity may differ in their last bits
when the matrix products behind them run different BLAS kernels: OpenBLAS
picks them by CPU (``OPENBLAS_CORETYPE``), by matrix size (a batch of 3 rows
and one of 11 may take different code) and by thread count.  Such
comparisons allow a small multiple of the dtype's machine epsilon; results
the docs promise to be identical (the same seed, the same rows through the
same function) are compared exactly instead.
"""

import numpy as np

#: rounding steps a short chain of float operations may accumulate (a few
#: matrix products, an exp and a normalisation): 2⁶ ulps of 1.0
ULPS = 64


def rtol(dtype) -> float:
    return ULPS * float(np.finfo(dtype).eps)


def assert_close(actual, desired, dtype=None, ulps=ULPS):
    """``actual`` ≈ ``desired`` to ``ulps`` machine epsilons of ``dtype``, relative and absolute."""
    dtype = np.dtype(dtype or np.asarray(desired).dtype)
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(actual, desired, rtol=ulps * eps, atol=ulps * eps)
