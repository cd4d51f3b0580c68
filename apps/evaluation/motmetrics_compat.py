"""NumPy 2 shim for motmetrics 1.4.0, applied in this one place.

motmetrics 1.4.0 (the current release) calls ``np.asfarray`` in ``motmetrics.distances`` (``iou_matrix``,
``norm2squared_matrix``); NumPy 2.0 removed that function, so those calls raise AttributeError. Importing this
module restores it with NumPy 1's semantics (an array of a floating dtype), only when it is missing, so it is a
no-op on NumPy 1.x and on any future motmetrics that stops using it. Import it before using motmetrics.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike


def _asfarray(a: ArrayLike, dtype: DTypeLike = np.float64) -> np.ndarray:
    """NumPy 1's ``asfarray``: ``a`` as an array of ``dtype`` if that is a float type, else float64."""
    if not np.issubdtype(np.dtype(dtype), np.inexact):
        dtype = np.float64
    return np.asarray(a, dtype=dtype)


if not hasattr(np, "asfarray"):
    setattr(np, "asfarray", _asfarray)  # noqa: B010 (numpy 2 removed the attribute; its stubs do not know it)
