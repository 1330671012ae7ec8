"""Pictures of forecasts, imputations and synthetic series (matplotlib, imported on use)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["fan_chart", "imputation_plot", "samples_plot"]


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(8, 3))[1]


def fan_chart(samples: np.ndarray, *, history: np.ndarray | None = None, truth: np.ndarray | None = None,
              index=None, history_index=None, ax=None, title: str | None = None, color: str = "C0"):
    """Median and 50% / 90% bands of sample paths (S, H), after the last ``history`` values
    and against the ``truth`` (H,). ``index`` / ``history_index``: x positions (default
    steps). Returns the matplotlib axes."""
    ax = _axes(ax)
    samples = np.asarray(samples, dtype=np.float64)
    h = samples.shape[1]
    n_hist = 0 if history is None else len(history)
    x = np.asarray(index) if index is not None else np.arange(n_hist, n_hist + h)
    if history is not None:
        hx = np.asarray(history_index) if history_index is not None else np.arange(n_hist)
        ax.plot(hx, history, color="black", lw=1.0, label="context")
    q = np.quantile(samples, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
    ax.fill_between(x, q[0], q[4], color=color, alpha=0.2, lw=0, label="90% band")
    ax.fill_between(x, q[1], q[3], color=color, alpha=0.4, lw=0, label="50% band")
    ax.plot(x, q[2], color=color, lw=1.5, label="median")
    if truth is not None:
        ax.plot(x, truth, color="black", lw=1.0, ls="--", label="truth")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return ax


def imputation_plot(series: np.ndarray, imputed: np.ndarray, *, truth: np.ndarray | None = None, ax=None,
                    title: str | None = None):
    """A series with NaNs, the median and 90% band of imputed paths (S, T) at the missing
    points, and the hidden truth if known. Returns the axes."""
    ax = _axes(ax)
    series = np.asarray(series, dtype=np.float64)
    missing = np.isnan(series)
    x = np.arange(len(series))
    q = np.quantile(np.asarray(imputed), [0.05, 0.5, 0.95], axis=0)
    ax.plot(x, series, color="black", lw=1.0, label="observed")
    band = np.where(missing, q[2], np.nan), np.where(missing, q[0], np.nan)
    ax.fill_between(x, band[1], band[0], color="C1", alpha=0.3, lw=0, label="90% band")
    ax.plot(x, np.where(missing, q[1], np.nan), color="C1", lw=1.2, label="imputed median")
    if truth is not None:
        ax.plot(x, np.where(missing, truth, np.nan), color="black", lw=0.8, ls="--", label="hidden truth")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return ax


def samples_plot(series: Sequence[np.ndarray], *, ax=None, title: str | None = None):
    """Several series (e.g. synthetic samples) on one axes. Returns the axes."""
    ax = _axes(ax)
    for i, s in enumerate(series):
        ax.plot(np.asarray(s), lw=0.8, color=f"C{i % 10}")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
