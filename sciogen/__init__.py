"""sciogen: diffusion models that generate scientific and medical data.

    >>> import sciogen
    >>> "toy/gmm" in sciogen.available()
    True

``sciogen.fit("molecules", data="my.smi", run_dir="runs/mine")`` trains on your own data
(the same as ``sciogen train molecules --data my.smi --run-dir runs/mine``);
``sciogen.load(name_or_path)`` returns a ready-to-sample generator of the right domain;
``sciogen.available()`` lists the shipped models. Importing ``sciogen`` stays light: torch
and the domains are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sciogen._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from sciogen.train.generator import Generator

__all__ = ["__version__", "load", "available", "fit"]


def load(name_or_path: str, device: str = "auto") -> "Generator":
    """A generator from a shipped model name (e.g. ``"toy/gmm"``), a checkpoint file or a
    run folder; see :func:`sciogen.registry.load`."""
    from sciogen.registry import load as _load

    return _load(name_or_path, device=device)


def available() -> list[str]:
    """The names of the shipped models, e.g. ``["toy/gmm"]``."""
    from sciogen.registry import available as _available

    return _available()


def fit(source: str, data: Any = None, **kwargs: Any) -> "Generator":
    """Train a model in one call: ``sciogen.fit("molecules", data="my.smi", run_dir="runs/mine")``.

    ``source`` is a domain (its default recipe), a packaged recipe or a YAML file; see
    :func:`sciogen.registry.fit` for the options (``run_dir``, ``overrides``, ``resume`` and
    the own-data options such as ``condition_on`` or ``prediction_length``).
    """
    from sciogen.registry import fit as _fit

    return _fit(source, data, **kwargs)
