"""Conversion between numpy arrays and torch tensors (private).

Public functions accept numpy arrays, torch tensors or nested lists and return results of the
same kind, with the floating dtype of the input preserved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th

ArrayLike = Any  # np.ndarray | th.Tensor | sequence; kept loose so numpy and torch both type-check


def is_numpy(x: object) -> bool:
    """Whether ``x`` should be returned as numpy (anything that is not a tensor)."""
    return not isinstance(x, th.Tensor)


def to_tensor(
    x: ArrayLike,
    name: str,
    dtype: th.dtype | None = None,
    device: th.device | str | None = None,
) -> th.Tensor:
    """Convert ``x`` to a floating tensor, keeping float32/float64 unless ``dtype`` is given.

    Integer and boolean inputs become float64 (numpy) or the torch default dtype (tensors).
    """
    if isinstance(x, th.Tensor):
        t = x
        if not (t.is_floating_point()) and dtype is None:
            dtype = th.get_default_dtype()
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise TypeError(f"`{name}` must be an array or tensor, got {type(x).__name__}") from e
        if arr.dtype == object:
            raise TypeError(f"`{name}` must be a numeric array, got an object array")
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        t = th.from_numpy(np.ascontiguousarray(arr))
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    return t


def result_dtype(*xs: ArrayLike) -> th.dtype:
    """Floating dtype of the result: float64 if any input is float64, else float32."""
    for x in xs:
        if isinstance(x, th.Tensor):
            if x.dtype == th.float64:
                return th.float64
        elif x is not None:
            arr = np.asarray(x)
            if arr.dtype == np.float64 or not np.issubdtype(arr.dtype, np.floating):
                return th.float64
    return th.float32


def to_output(t: th.Tensor, as_numpy: bool, dtype: th.dtype) -> Any:
    """Return ``t`` in the caller's format: a numpy array or a tensor of ``dtype``."""
    t = t.detach().to(dtype)
    return t.cpu().numpy() if as_numpy else t


def resolve_device(device: th.device | str) -> th.device:
    """Resolve ``"auto"`` to CUDA when available, else CPU."""
    if device == "auto":
        return th.device("cuda" if th.cuda.is_available() else "cpu")
    return th.device(device)
