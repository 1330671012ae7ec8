"""Checks of the arguments and arrays that users pass to ``sample`` / ``forecast`` / ``augment`` ...

One place, so every domain refuses the same inputs with the same words: a ``ValueError``
naming the argument and the value, raised before any work is done.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["positive_int", "optional_positive_int", "finite_array", "finite_number"]


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; bools, fractions, strings and smaller numbers are refused.

    >>> positive_int("steps", 20)
    20
    >>> positive_int("steps", 0)
    Traceback (most recent call last):
    ...
    ValueError: steps must be >= 1 (an integer), got 0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be >= {minimum} (an integer), got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum} (an integer), got {value}")
    return int(value)


def optional_positive_int(name: str, value: Any, minimum: int = 1) -> int | None:
    """:func:`positive_int`, with None passed through (meaning "the default")."""
    return None if value is None else positive_int(name, value, minimum)


def finite_number(name: str, value: Any) -> float:
    """``value`` as a finite float (no NaN, inf, complex or string)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def finite_array(name: str, values: Any, *, dtype: torch.dtype = torch.float32, allow_nan: bool = False) -> torch.Tensor:
    """``values`` (array, tensor, sequence) as a real tensor of ``dtype``, refusing complex,
    non-numeric and infinite entries (and NaN unless ``allow_nan``, e.g. for missing values),
    naming the index of the first bad entry."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().cpu()
    else:
        try:
            array = np.asarray(values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be an array of numbers: {err}") from None
        if array.dtype == object or array.dtype.kind in "USV":
            raise ValueError(f"{name} must hold numbers, got values of type {array.dtype}")
        array = np.ascontiguousarray(array)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())  # pandas hands out read-only views
    if tensor.is_complex():
        raise ValueError(f"{name} holds complex numbers; pass the real values you mean (e.g. .real or abs())")
    tensor = tensor.to(dtype)
    bad = torch.isinf(tensor) if allow_nan else ~torch.isfinite(tensor)
    if bool(bad.any()):
        index = tuple(int(i) for i in torch.nonzero(bad)[0])
        where = index[0] if len(index) == 1 else index
        kind = "missing values (NaN) and infinities" if not allow_nan else "infinities"
        raise ValueError(f"{name} must not contain {kind}: {tensor[index].item()} at index {where}")
    return tensor
