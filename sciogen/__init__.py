"""sciogen: diffusion models that generate scientific and medical data.

    >>> import sciogen
    >>> "toy/gmm" in sciogen.available()
    True

``sciogen.load(name_or_path)`` returns a ready-to-sample generator of the right domain;
``sciogen.available()`` lists the shipped models. Importing ``sciogen`` stays light: torch
and the domains are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from sciogen.train.generator import Generator

__all__ = ["__version__", "load", "available"]


def load(name_or_path: str, device: str = "auto") -> "Generator":
    """A generator from a shipped model name (e.g. ``"toy/gmm"``), a checkpoint file or a
    run folder; see :func:`sciogen.registry.load`."""
    from sciogen.registry import load as _load

    return _load(name_or_path, device=device)


def available() -> list[str]:
    """The names of the shipped models, e.g. ``["toy/gmm"]``."""
    from sciogen.registry import available as _available

    return _available()
