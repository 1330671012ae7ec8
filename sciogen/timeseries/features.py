"""From raw windows to the diffusion state of TSDiff: mean scaling and lag channels.

A training or forecasting *window* is ``max_lag + context_length + prediction_length``
consecutive raw values (NaN = missing). :func:`make_state` turns a batch of windows into

    x      (B, T, 1 + K)   T = context_length + prediction_length, K = len(lags):
                           channel 0 is the scaled series, channel 1 + k its value lags[k]
                           steps earlier (TSDiff's lag channels, GluonTS
                           ``lagged_sequence_values``);
    mask   (B, T, 1 + K)   1 where that entry is an observed value;
    loc, scale (B,)        the window's normalisation x = (value - loc) / scale, from observed
                           past values only (:func:`context_stats`): TSDiff's mean scaling
                           (loc = 0, scale = mean |value| of the context), standardisation
                           by the mean and standard deviation of the lag history + context, or
                           ``"last"``: the same scale with loc = the last observed past value,
                           so every window passes through 0 at the forecast origin.

Missing entries are 0 in ``x`` and 0 in ``mask``; the loss and the guidance use the mask.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .representation import Series, SeriesTooShortError

#: standardisation floors the standard deviation at this fraction of the mean |value|, so
#: that nearly flat stretches (pegged currencies, idle sensors) do not blow small moves up
STD_FLOOR = 0.01

__all__ = ["STD_FLOOR", "mean_scale", "context_stats", "lag_channels", "make_state", "WindowDataset", "forecast_windows"]


def mean_scale(context: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Mean absolute observed value per row. Shapes: context, observed (B, L) -> (B,)."""
    obs = observed.to(context.dtype)
    total = (torch.nan_to_num(context).abs() * obs).sum(-1)
    count = obs.sum(-1)
    scale = total / count.clamp_min(1.0)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def lag_channels(values: torch.Tensor, lags: Sequence[int], length: int) -> torch.Tensor:
    """Lagged copies of the last ``length`` positions of ``values``.

    Shapes: values (B, P + length) with P >= max(lags) -> (B, length, len(lags));
    entry [b, i, k] = values[b, P + i - lags[k]].
    """
    prior = values.shape[-1] - length
    if lags and prior < max(lags):
        raise ValueError(f"need {max(lags)} values before the window for lag {max(lags)}, got {prior}")
    cols = [values[:, prior - lag : prior - lag + length] for lag in lags]
    if not cols:
        return values.new_zeros(values.shape[0], length, 0)
    return torch.stack(cols, dim=-1)


def context_stats(context: torch.Tensor, normalization: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Location and scale (B,) of raw contexts (B, L) with NaN for missing values.

    ``"mean"``: loc 0, scale = mean |value| (TSDiff's MeanScaler; 1 if that is 0).
    ``"standard"``: loc = mean, scale = standard deviation of the observed values, floored
    at ``STD_FLOOR`` x mean |value| (and 1 if everything is 0) so flat contexts stay finite.
    ``"last"``: the scale of ``"standard"``, loc = the last observed value (the forecast
    origin; a row with no observed value gets its mean, 0).
    """
    observed = ~torch.isnan(context)
    abs_mean = mean_scale(context, observed)
    if normalization == "mean":
        return torch.zeros_like(abs_mean), abs_mean
    if normalization not in ("standard", "last"):
        raise ValueError(f"unknown normalization {normalization!r}; allowed: mean, standard, last")
    obs = observed.to(context.dtype)
    count = obs.sum(-1).clamp_min(1.0)
    values = torch.nan_to_num(context)
    loc = (values * obs).sum(-1) / count
    var = (((values - loc[:, None]) ** 2) * obs).sum(-1) / count
    scale = torch.maximum(var.sqrt(), STD_FLOOR * abs_mean)
    if normalization == "last":
        positions = torch.arange(context.shape[-1], device=context.device).expand_as(observed)
        last = torch.where(observed, positions, -1).amax(-1)
        loc = torch.where(last >= 0, values.gather(-1, last.clamp_min(0)[:, None])[:, 0], loc)
    return loc, torch.where(scale > 0, scale, torch.ones_like(scale))


def make_state(
    windows: torch.Tensor, lags: Sequence[int], context_length: int, prediction_length: int,
    normalization: str = "mean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw windows (B, max_lag + C + H) with NaN -> (x, mask, loc, scale) (module docstring).

    The values of the prediction range may be NaN (unknown, when forecasting); the
    statistics (:func:`context_stats`) only use the context.
    """
    length = context_length + prediction_length
    max_lag = max(lags) if lags else 0
    if windows.shape[-1] != max_lag + length:
        raise ValueError(f"windows must have {max_lag + length} values (max lag + context + prediction), got {windows.shape[-1]}")
    observed = ~torch.isnan(windows)
    # mean scaling uses the context (TSDiff); standardisation uses every past value the
    # window shows (lag history + context), so that the lag channels stay O(1) as well
    past = windows[:, max_lag : max_lag + context_length] if normalization == "mean" else windows[:, : max_lag + context_length]
    loc, scale = context_stats(past, normalization)
    scaled = torch.nan_to_num((windows - loc[:, None]) / scale[:, None], nan=0.0)
    obs = observed.to(windows.dtype)
    x = torch.cat([scaled[:, -length:, None], lag_channels(scaled, lags, length)], dim=-1)
    mask = torch.cat([obs[:, -length:, None], lag_channels(obs, lags, length)], dim=-1)
    return x.float(), mask.float(), loc, scale


class WindowDataset(torch.utils.data.Dataset):
    """All training windows of length ``max_lag + context + prediction`` of some series.

    Item ``i`` is a float32 tensor of raw values with NaN for missing ones. A series may be
    shorter than the lag history: the missing prior is NaN (masked), as GluonTS pads. Each
    window must contain at least ``context + prediction`` real positions of its series.

    Args:
        series: the training series.
        context_length, prediction_length: the model's window.
        max_lag: the longest lag channel (0: none).
        min_observed: windows whose context + prediction range has a smaller fraction of
            observed values are left out.
    """

    def __init__(self, series: Sequence[Series], context_length: int, prediction_length: int, max_lag: int,
                 min_observed: float = 0.5):
        self.length = context_length + prediction_length
        self.prior = max_lag
        self.series = [torch.as_tensor(s.target, dtype=torch.float32) for s in series]
        index = []
        for j, values in enumerate(self.series):
            n = values.shape[0] - self.length + 1
            if n <= 0:
                continue
            ok = (~torch.isnan(values)).float().unfold(0, self.length, 1).mean(-1) >= min_observed
            ends = torch.arange(self.length, values.shape[0] + 1)[ok]
            index.append(torch.stack([torch.full_like(ends, j), ends], dim=1))
        if not index:
            longest = max((len(s) for s in series), default=0)
            raise SeriesTooShortError(
                f"no training window: every series is shorter than context + prediction = {self.length} "
                f"(the longest has {longest} values) or mostly missing; lower data.context_length"
            )
        self.index = torch.cat(index)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        j, end = (int(v) for v in self.index[i])
        values = self.series[j]
        start = end - self.length - self.prior
        if start >= 0:
            return values[start:end]
        pad = torch.full((-start,), float("nan"))
        return torch.cat([pad, values[:end]])


def forecast_windows(pasts: Sequence[np.ndarray], context_length: int, prediction_length: int, max_lag: int) -> torch.Tensor:
    """Raw windows (B, max_lag + C + H) for forecasting: the last ``max_lag + C`` values of
    each past (NaN-padded on the left when shorter), then H NaN for the unknown future."""
    need = max_lag + context_length
    rows = []
    for past in pasts:
        past = np.asarray(past, dtype=np.float64)[-need:]
        row = np.full(need + prediction_length, np.nan)
        row[need - len(past) : need] = past
        rows.append(row)
    return torch.as_tensor(np.stack(rows), dtype=torch.float64)
