"""Subjects' visits: the longitudinal set on the network grid, the synthetic progression made
from real volumes, co-registered visit files mapped with one shared grid, and the bookkeeping
of which earlier visit each slot sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from sciogen.imaging.grid import IntensityNormalization, NetworkGrid
from sciogen.imaging.io import plain_tensor
from sciogen.imaging.spatial import warp

from ..training import load_volume

__all__ = ["HistoryError", "LongitudinalSet", "check_times", "progressive_displacement", "synthetic_longitudinal",
           "check_synthetic", "subject_on_grid", "latest_earlier", "previous_visit", "Subjects"]


class HistoryError(ValueError):
    """A subject's visits cannot condition a prediction (shape, times, no present visit)."""



@dataclass
class LongitudinalSet:
    """Visits of subjects on the network grid.

    Attributes:
        visits: ``(S, V, 1, X, Y, Z)`` float in [-1, 1]; missing visits are set to zeros.
        times: ``(S, V)`` float, the visits' time stamps, increasing over each subject's
            present visits (missing visits: the planned time, or NaN).
        present: ``(S, V)`` bool, False where a visit is missing.
        rate, centre, source: the synthetic set's ground truth (:func:`synthetic_longitudinal`):
            ``(S,)`` progression rates, ``(S, 3)`` deformation centres (normalised coordinates,
            array axis order), ``(S,)`` index of the real volume each subject is made from;
            None for real data.
    """

    visits: torch.Tensor
    times: torch.Tensor
    present: torch.Tensor
    rate: torch.Tensor | None = None
    centre: torch.Tensor | None = None
    source: torch.Tensor | None = None

    def __post_init__(self):
        self.visits = torch.as_tensor(self.visits).float()
        self.times = torch.as_tensor(self.times).float()
        self.present = torch.as_tensor(self.present).bool()
        s, v = self.present.shape if self.present.ndim == 2 else (-1, -1)
        if self.visits.ndim != 6 or self.visits.shape[2] != 1 or tuple(self.visits.shape[:2]) != (s, v):
            raise HistoryError(f"visits must be (S, V, 1, X, Y, Z) with present (S, V); got visits "
                               f"{tuple(self.visits.shape)} and present {tuple(self.present.shape)}")
        if tuple(self.times.shape) != (s, v):
            raise HistoryError(f"times must be (S, V) = {(s, v)}, got {tuple(self.times.shape)}")
        for i in range(s):
            check_times(self.times[i], self.present[i], f"subject {i}")
        if not torch.isfinite(self.visits[self.present]).all():
            raise HistoryError("present visits hold NaN or inf voxels")
        self.visits = torch.where(self.present.view(s, v, 1, 1, 1, 1), self.visits, torch.zeros(()))

    def __len__(self) -> int:
        return self.present.shape[0]

    def subset(self, index: Sequence[int] | torch.Tensor) -> LongitudinalSet:
        """The subjects ``index`` (e.g. a train / test split)."""
        index = torch.as_tensor(index, dtype=torch.long)
        pick = (lambda x: None if x is None else x[index])
        return LongitudinalSet(self.visits[index], self.times[index], self.present[index], pick(self.rate),
                               pick(self.centre), pick(self.source))


def check_times(times: torch.Tensor, present: torch.Tensor, what: str) -> None:
    """Present visits need finite, strictly increasing times."""
    t = times[present]
    if not torch.isfinite(t).all():
        raise HistoryError(f"{what}: present visits need finite times, got {times.tolist()}")
    if t.numel() > 1 and bool((t[1:] <= t[:-1]).any()):
        raise HistoryError(f"{what}: the times of the present visits must increase strictly, got {t.tolist()} "
                           "(order the visits by time)")


def progressive_displacement(shape: Sequence[int], amplitude: torch.Tensor, centre: torch.Tensor,
                             width: float) -> torch.Tensor:
    """The radial, Gaussian-windowed displacement of :func:`synthetic_longitudinal`.

    In normalised coordinates p in [-1, 1]^3 (voxel centres, ``align_corners=False``, array
    axis order), ``u(p) = a (p - c) exp(-|p - c|^2 / (2 w^2))``. The warped image is
    ``I(p - u(p))`` (:func:`sciogen.imaging.spatial.warp` of ``-u`` in normalised units,
    ``align_corners=False``): what lay at radius r now lies at about r (1 + a e^{...}),
    so structures near ``c`` grow. The backward map ``p -> p - u(p)`` has radial derivative
    ``1 - a (1 - r^2 / w^2) e^{-r^2 / 2w^2}`` and tangential ``1 - a e^{-r^2 / 2w^2}``, both
    > 0 for 0 <= a < 1: no folding.

    Shapes: amplitude (B,), centre (B, 3) -> displacement (B, 3, X, Y, Z) (normalised units).
    """
    axes = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n, dtype=torch.float64) for n in shape]
    p = torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]                     # (1, 3, X, Y, Z)
    d = p - centre.double().view(-1, 3, 1, 1, 1)
    window = torch.exp(-(d**2).sum(1, keepdim=True) / (2 * width**2))
    return (amplitude.double().view(-1, 1, 1, 1, 1) * d * window).float()


def synthetic_longitudinal(volumes: torch.Tensor, *, visits: int = 4, subjects_per_volume: int = 1,
                           gap: Sequence[float] = (0.5, 1.5), rate: Sequence[float] = (0.06, 0.15),
                           width: float = 0.35, centre_jitter: float = 0.05, missing: float = 0.25,
                           supersample: int = 2, seed: int = 0) -> LongitudinalSet:
    """A longitudinal set with known, smooth, progressive deformations of real volumes.

    How it is made. Each volume ``(1, X, Y, Z)`` on the network grid (in [-1, 1]) gives
    ``subjects_per_volume`` subjects; for each subject, from one ``torch.Generator`` seeded
    with ``seed``:

    1. times: the first visit at t = 0, then gaps drawn uniformly in ``gap`` (years), so
       ``t_k = sum of k gaps``;
    2. a progression rate ``r`` uniform in ``rate`` (per year) and a centre ``c`` = the grid
       centre plus a uniform jitter of at most ``centre_jitter`` per axis (normalised units;
       :class:`~sciogen.volumes.NetworkGrid` centres the brain's foreground box, so c lies
       near the lateral ventricles);
    3. visit k is the volume warped by :func:`progressive_displacement` with amplitude
       ``a_k = r t_k`` and Gaussian window ``width``: a radial expansion about c that grows
       linearly with time, like ventricular enlargement in atrophy; ``a`` stays below 1
       (checked), so no visit folds. Every visit, visit 0 (a = 0) included, is resampled
       the same way: the volume upsampled trilinearly by ``supersample``, warped (trilinear)
       on that fine grid and average-pooled back. Resampling on the network grid directly
       would blur the warped visits (interpolation at sub-voxel offsets) but not visit 0, a
       change that has nothing to do with the deformation; on a 2x grid that blur is about
       half as large, and the baseline is smoothed like the others;
    4. missing visits: each visit is dropped with probability ``missing``; then, while fewer
       than two visits remain, a dropped one (chosen at random) is put back, so every subject
       has a visit to predict from another. Dropped visits are zeros with ``present`` False;
       their planned times are kept.

    The rate differs between subjects, so one visit does not say how fast a subject
    progresses; two earlier visits (with their times) do: that is what a sequence-aware
    conditioner has to use.

    Args:
        volumes: ``(N, 1, X, Y, Z)`` (e.g. :func:`~sciogen.volumes.training_volumes`).

    Returns: a :class:`LongitudinalSet` of ``N * subjects_per_volume`` subjects (volume i
    gives subjects ``i * subjects_per_volume ...``), with ``rate``, ``centre`` and ``source``.
    """
    volumes = torch.as_tensor(volumes).float()
    if volumes.ndim != 5 or volumes.shape[1] != 1:
        raise ValueError(f"volumes must be (N, 1, X, Y, Z), got {tuple(volumes.shape)}")
    check_synthetic(visits, subjects_per_volume, gap, rate, width, centre_jitter, missing)
    if int(supersample) < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    supersample = int(supersample)
    g = torch.Generator().manual_seed(int(seed))
    n, shape = volumes.shape[0] * subjects_per_volume, volumes.shape[2:]
    source = torch.arange(volumes.shape[0]).repeat_interleave(subjects_per_volume)
    gaps = gap[0] + (gap[1] - gap[0]) * torch.rand(n, visits - 1, generator=g)
    times = torch.cat([torch.zeros(n, 1), gaps.cumsum(1)], 1)
    rates = rate[0] + (rate[1] - rate[0]) * torch.rand(n, generator=g)
    centre = centre_jitter * (2 * torch.rand(n, 3, generator=g) - 1)
    present = torch.rand(n, visits, generator=g) >= missing
    for i in range(n):
        while int(present[i].sum()) < 2:
            dropped = (~present[i]).nonzero().flatten()
            present[i, dropped[torch.randint(len(dropped), (1,), generator=g)]] = True
    fine = F.interpolate(volumes, scale_factor=supersample, mode="trilinear", align_corners=False) \
        if supersample > 1 else volumes
    out = torch.zeros(n, visits, 1, *shape)
    for k in range(visits):
        u = progressive_displacement(fine.shape[2:], rates * times[:, k], centre, width)
        out[:, k] = F.avg_pool3d(warp(fine[source], -u, units="normalized", align_corners=False), supersample)
    out = torch.where(present.view(n, visits, 1, 1, 1, 1), out, torch.zeros(()))
    return LongitudinalSet(out, times, present, rates, centre, source)


def check_synthetic(visits, subjects_per_volume, gap, rate, width, centre_jitter, missing) -> None:
    if int(visits) < 2 or int(subjects_per_volume) < 1:
        raise ValueError(f"visits must be >= 2 and subjects_per_volume >= 1, got {visits}, {subjects_per_volume}")
    if len(gap) != 2 or not 0 < gap[0] <= gap[1]:
        raise ValueError(f"gap must be [low, high] with 0 < low <= high, got {list(gap)}")
    if len(rate) != 2 or not 0 <= rate[0] <= rate[1]:
        raise ValueError(f"rate must be [low, high] with 0 <= low <= high, got {list(rate)}")
    if rate[1] * gap[1] * (visits - 1) >= 1:
        raise ValueError(f"the largest amplitude rate[1] * gap[1] * (visits - 1) = {rate[1] * gap[1] * (visits - 1):g} "
                         "must stay below 1 (larger folds the deformation); lower rate, gap or visits")
    if width <= 0 or centre_jitter < 0 or not 0 <= missing < 1:
        raise ValueError(f"width must be > 0, centre_jitter >= 0 and missing in [0, 1); got {width}, "
                         f"{centre_jitter}, {missing}")


def subject_on_grid(volumes: Sequence[Any], shape: Sequence[int], percentiles: Sequence[float] = (0.5, 99.5),
                    margin: float = 0.05, npz_axcodes: str = "RAS") -> tuple[torch.Tensor, NetworkGrid]:
    """Co-registered visits of one subject (paths or ``(C, X, Y, Z)`` volumes on one voxel
    grid) on the network grid with *one* map: the first visit fixes the crop, resampling and
    intensity normalisation, the others follow it (so the changes between visits survive).

    Returns ``((V, 1, *shape) in [-1, 1], the NetworkGrid)``; ``grid.inverse`` maps a
    generated visit (its first channel) back onto the visits' grid and, through
    ``grid.normalization.inverse``, into their units.
    """
    loaded = [load_volume(v, npz_axcodes) if isinstance(v, (str, Path)) else v for v in volumes]
    if not loaded:
        raise HistoryError("no visits given")
    first = loaded[0][:1]
    for i, v in enumerate(loaded[1:], start=1):
        if tuple(v.shape[1:]) != tuple(first.shape[1:]):
            raise HistoryError(f"visit {i} has spatial shape {tuple(v.shape[1:])}, visit 0 {tuple(first.shape[1:])}: "
                               "register and resample the visits onto one grid first")
    norm = IntensityNormalization(percentiles=tuple(percentiles)).fit(first)
    rest = [norm(torch.as_tensor(plain_tensor(v[:1])).float()) for v in loaded[1:]]
    grid = NetworkGrid(first, shape, percentiles, margin, extra=torch.cat(rest) if rest else None)
    out = grid.network.as_tensor().clamp(-1.0, 1.0)[:, None]
    return out.float(), grid


def latest_earlier(present: torch.Tensor) -> torch.Tensor:
    """Index of the latest present slot before each slot, -1 if none. (B, V) bool -> (B, V) long."""
    b, v = present.shape
    index = torch.where(present, torch.arange(v, device=present.device), -1)
    shifted = torch.cat([torch.full((b, 1), -1, device=present.device, dtype=torch.long), index[:, :-1]], 1)
    return shifted.cummax(1).values


def previous_visit(visits: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The latest present visit before each slot (zeros if none) and whether there is one.
    (B, V, 1, X, Y, Z), (B, V) -> (B, V, 1, X, Y, Z), (B, V) bool."""
    last = latest_earlier(present.to(visits.device))
    b, v = last.shape
    image = visits[torch.arange(b, device=visits.device)[:, None], last.clamp_min(0)]
    has = last >= 0
    return torch.where(has.view(b, v, 1, 1, 1, 1), image, torch.zeros((), device=visits.device)), has




class Subjects(torch.utils.data.Dataset):
    """The subjects of a :class:`LongitudinalSet` as dicts (default-collated into a batch)."""

    def __init__(self, data: LongitudinalSet):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        d = self.data
        return {"visits": d.visits[i], "times": torch.where(d.present[i], d.times[i], torch.zeros(())),
                "present": d.present[i]}
