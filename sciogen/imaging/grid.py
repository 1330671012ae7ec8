"""From an image's own grid and units to the network's, and back.

A network works on a fixed grid (e.g. 64 x 64 or 32^3) and a fixed intensity range. Both
directions of that map live here, with one convention for the shape: the image is padded
symmetrically to a square / cube of side ``P = max(S)`` (its aspect ratio is kept, no shape
is rejected) and resampled to the network's side ``N``.

- :class:`IntensityNormalization`: the one intensity map, ``[low, high] -> out_range``,
  fitted from percentiles (numpy's linear ones, or nearest-rank) or a fixed window, with
  its exact inverse; :func:`normalize_intensity` is its minimum / 99.5 % nearest-rank form
  to [0, 1] applied image by image.
- :class:`GridMap`: array images (2D or 3D, no world geometry) padded with their minimum and
  resampled linearly with ``align_corners=True``; displacement fields found on the network
  grid are mapped back onto the image's voxels (MONAI has no transform for fields).
- :class:`NetworkGrid`: a volume *with its geometry* (a ``MetaTensor``) through MONAI's
  invertible transforms: RAS orientation, isotropic spacing, foreground crop, pad to a
  cube, anti-aliased resize; :meth:`NetworkGrid.inverse` returns a result to the input's
  grid and affine.

Why two grid classes: they are the maps the shipped deformation and volume models were
trained and measured with. ``GridMap`` works on batches of plain arrays in torch and maps
displacements (in voxels) back; ``NetworkGrid`` needs world geometry and MONAI's record of
applied operations to invert. Doing one with the other's arithmetic changes the samples of
the shipped models (anti-aliasing, the crop, ``align_corners``), so both stay, side by side.
MONAI is imported by :class:`NetworkGrid` only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .io import NotA3DVolumeError
from .spatial import check_field, identity_grid

__all__ = ["IntensityNormalization", "normalize_intensity", "GridMap", "NetworkGrid"]


@dataclass
class IntensityNormalization:
    """Linear intensity scaling ``[low, high] -> out_range`` with its inverse recorded.

    ``y = out_lo + (out_hi - out_lo) * (x - low) / (high - low)``, clipped to ``out_range``
    when ``clip``. ``mode="percentile"``: ``fit`` sets ``low, high`` to the ``percentiles``
    (in %, e.g. 0.5 / 99.5) of all voxels of the image (all channels together), read off
    the voxels by ``rank``: ``"linear"`` (numpy's ``percentile``, interpolating between
    voxels) or ``"nearest"`` (the k-th smallest voxel, ``k = max(1, round(n q / 100))``; q = 0
    is the minimum); ``mode="window"``: ``low, high = window`` in the input's units (e.g. CT
    Hounsfield ``(-1000, 1000)``), no fitting needed. ``min_width`` > 0 lets ``high - low``
    fall below it (a constant image) and divides by ``min_width`` instead of refusing the
    range. :meth:`inverse` maps back to input units (exact where the forward map did not
    clip). :meth:`to_dict` / :meth:`from_dict` store it as plain JSON-able values.

    >>> norm = IntensityNormalization(mode="window", window=(-1000.0, 1000.0))
    >>> norm(torch.tensor([-1000.0, 0.0, 500.0, 3000.0])).tolist()
    [-1.0, 0.0, 0.5, 1.0]
    """

    mode: Literal["percentile", "window"] = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    window: tuple[float, float] | None = None
    out_range: tuple[float, float] = (-1.0, 1.0)
    clip: bool = True
    low: float | None = None
    high: float | None = None
    rank: Literal["linear", "nearest"] = "linear"
    min_width: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("percentile", "window"):
            raise ValueError(f"mode={self.mode!r}; allowed: 'percentile', 'window'")
        if self.rank not in ("linear", "nearest"):
            raise ValueError(f"rank={self.rank!r}; allowed: 'linear', 'nearest'")
        self.min_width = float(self.min_width)
        if not (math.isfinite(self.min_width) and self.min_width >= 0.0):
            raise ValueError(f"min_width={self.min_width}: need a finite number >= 0")
        self.percentiles = _pair("percentiles", self.percentiles)
        self.out_range = _pair("out_range", self.out_range)
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles={self.percentiles}: need 0 <= lower < upper <= 100")
        if self.mode == "window":
            if self.window is None:
                raise ValueError("mode='window' needs window=(low, high) in the input's units, e.g. (-1000, 1000) HU")
            self.window = _pair("window", self.window)
            self.low, self.high = self.window
        elif self.window is not None:
            raise ValueError(f"window={self.window} is used only with mode='window' (mode is 'percentile')")
        if self.low is not None or self.high is not None:
            self._set_range(self.low, self.high)

    def _set_range(self, low: Any, high: Any) -> None:
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high) and (low < high or self.min_width > 0 and low <= high)):
            raise ValueError(f"intensity range low={low}, high={high}: need finite low < high (a constant volume?)")
        self.low, self.high = low, high

    @property
    def fitted(self) -> bool:
        """Whether ``low`` and ``high`` are known (window mode: always)."""
        return self.low is not None and self.high is not None

    @property
    def width(self) -> float:
        """``high - low`` (at least ``min_width``), the input range mapped onto ``out_range``."""
        self._check_fitted()
        return max(self.high - self.low, self.min_width)

    def fit(self, volume: torch.Tensor) -> IntensityNormalization:
        """Record ``low, high`` from ``volume`` (percentile mode; window mode: no-op). Returns self."""
        if self.mode != "percentile":
            return self
        if self.rank == "nearest":
            flat = torch.as_tensor(volume).detach().float().flatten()
            if not bool(torch.isfinite(flat).all()):
                raise ValueError("the volume holds NaN or inf; percentiles would be meaningless")
            ranks = [min(max(1, int(round(flat.numel() * q / 100.0))), flat.numel()) for q in self.percentiles]
            self._set_range(*(float(flat.kthvalue(k).values) for k in ranks))
            return self
        values = torch.as_tensor(volume).detach().cpu().double().numpy().ravel()
        if not np.isfinite(values).all():
            raise ValueError("the volume holds NaN or inf; percentiles would be meaningless")
        self._set_range(*np.percentile(values, self.percentiles))
        return self

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("IntensityNormalization(mode='percentile') is not fitted; call .fit(volume) first")

    def __call__(self, volume: torch.Tensor) -> torch.Tensor:
        """Normalised ``volume`` (float32, same shape; a MetaTensor stays one)."""
        self._check_fitted()
        out_lo, out_hi = self.out_range
        out = (volume.float() - self.low) / self.width * (out_hi - out_lo) + out_lo
        return out.clamp(out_lo, out_hi) if self.clip else out

    def inverse(self, volume: torch.Tensor) -> torch.Tensor:
        """Back to the input's units: ``low + (high - low) * (y - out_lo) / (out_hi - out_lo)`` (float32)."""
        self._check_fitted()
        out_lo, out_hi = self.out_range
        return (volume.float() - out_lo) / (out_hi - out_lo) * self.width + self.low

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, floats, str, bool) for a checkpoint, JSON or ``MetaTensor.meta``."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensityNormalization:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        allowed = list(cls.__dataclass_fields__)
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"unknown IntensityNormalization keys {unknown}; allowed {allowed}")
        return cls(**data)


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: need two numbers (low, high)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name}={value!r}: need finite low < high")
    return lo, hi


def normalize_intensity(image: torch.Tensor, percentile: float = 99.5) -> torch.Tensor:
    """Scale each image of ``(B, C, *S)`` (or each channel of ``(C, *S)``) to [0, 1]: its
    minimum -> 0, its nearest-rank ``percentile`` -> 1, clipped (a constant image -> 0):
    :class:`IntensityNormalization` ``(percentiles=(0, percentile), out_range=(0, 1),
    rank="nearest", min_width=1e-6)``. The deformation networks see images normalised like this."""
    def one(x: torch.Tensor) -> torch.Tensor:
        norm = IntensityNormalization(percentiles=(0.0, percentile), out_range=(0.0, 1.0), rank="nearest",
                                      min_width=1e-6)
        return norm.fit(x)(x)

    if image.ndim <= 1:
        return one(image)
    return torch.stack([one(x) for x in image])


@dataclass(frozen=True)
class GridMap:
    """The map between an image grid ``shape`` and a network grid ``network_shape`` (2D or 3D).

    An image of any shape is padded symmetrically to a square / cube of side ``P = max(S)``
    with its minimum, resampled to the network grid ``N`` (linear, ``align_corners=True``), and
    a displacement found there is resampled back onto the image's own voxels: a position ``q``
    of the image sits at ``(q + pad) * (N - 1) / (P - 1)`` on the network grid and displacements
    are multiplied by ``(P - 1) / (N - 1)``. Nothing is cropped from the image.
    """

    shape: tuple[int, ...]
    network_shape: tuple[int, ...]

    def __post_init__(self):
        if len(self.shape) != len(self.network_shape):
            raise ValueError(
                f"a {len(self.shape)}D image cannot use a {len(self.network_shape)}D model (image spatial shape "
                f"{self.shape}, model grid {self.network_shape}); use a {len(self.shape)}D model"
            )
        if len(set(self.network_shape)) != 1:
            raise ValueError(f"the network grid must be a square / cube, got {self.network_shape}")

    @property
    def side(self) -> int:
        return max(self.shape)

    @property
    def pads(self) -> list[int]:
        return [(self.side - n) // 2 for n in self.shape]

    @property
    def ratio(self) -> float:
        """Network voxels per image voxel."""
        return (self.network_shape[0] - 1) / max(self.side - 1, 1)

    def to_network(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, *shape)`` -> ``(B, C, *network_shape)``: pad with the minimum, resample."""
        if tuple(image.shape[2:]) != self.shape:
            raise ValueError(f"image shape {tuple(image.shape[2:])} != {self.shape}")
        pad: list[int] = []
        for n, before in zip(reversed(self.shape), reversed(self.pads)):
            pad += [before, self.side - n - before]
        low = image.flatten(2).min(2).values.view(*image.shape[:2], *[1] * len(self.shape))
        padded = F.pad(image.float() - low, pad) + low
        mode = "bilinear" if len(self.shape) == 2 else "trilinear"
        if tuple(padded.shape[2:]) == self.network_shape:
            return padded
        return F.interpolate(padded, size=self.network_shape, mode=mode, align_corners=True, antialias=False)

    def to_image(self, ddf: torch.Tensor) -> torch.Tensor:
        """A network-grid displacement ``(B, D, *network_shape)`` (network voxels) -> the
        image's displacement ``(B, D, *shape)`` in image voxels."""
        d = check_field(ddf, "ddf")
        if tuple(ddf.shape[2:]) != self.network_shape:
            raise ValueError(f"ddf grid {tuple(ddf.shape[2:])} != network grid {self.network_shape}")
        pos = identity_grid(self.shape, ddf.device, torch.float32)
        pos = (pos + torch.tensor(self.pads, device=ddf.device, dtype=torch.float32).view(-1, *[1] * d)) * self.ratio
        n = self.network_shape[0]
        grid = (pos * (2.0 / max(n - 1, 1)) - 1.0).movedim(0, -1).flip(-1)
        grid = grid.unsqueeze(0).expand(ddf.shape[0], *grid.shape)
        out = F.grid_sample(ddf.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out / self.ratio

    @staticmethod
    def for_image(shape: Sequence[int], network_shape: Sequence[int]) -> GridMap:
        return GridMap(tuple(int(n) for n in shape), tuple(int(n) for n in network_shape))


class NetworkGrid:
    """The invertible map of one volume, with its geometry, onto the network grid.

    A MONAI ``Compose`` (all invertible): reorient to RAS, resample to isotropic voxels (the
    finest spacing of the volume), crop to the foreground box (plus a margin), pad to a cube
    with -1 and resize (trilinear, anti-aliased) to the network's shape; intensities go through
    an :class:`IntensityNormalization` fitted to the volume first. :meth:`inverse` maps a result
    on the network grid back onto the input's own grid and affine.

    Args:
        volume: ``(C, X, Y, Z)`` MetaTensor (a plain tensor is taken with 1 mm voxels).
        shape: the network grid.
        percentiles: intensity percentiles mapped to [-1, 1].
        margin: fraction of the foreground box added on each side.
        extra: channels ``(K, X, Y, Z)`` on the volume's grid carried along (e.g. a mask).
        crop: crop to the foreground box (plus ``margin``); False maps the whole field of view
            (how label maps and their volumes are mapped: a label alone gives the same grid).
        normalization: a fitted :class:`IntensityNormalization` to use instead of fitting the
            ``percentiles`` of this volume (e.g. a fixed window for label values).

    Attributes:
        normalization: the fitted :class:`IntensityNormalization` (input units <-> [-1, 1]).
        network: the volume on the network grid, ``(C, *shape)`` in [-1, 1] (a MetaTensor
            that remembers the transforms, for :meth:`inverse`), then the ``extra`` channels
            (resampled the same way, padded with -1).
    """

    def __init__(self, volume: torch.Tensor, shape: Sequence[int], percentiles: Sequence[float] = (0.5, 99.5),
                 margin: float = 0.05, extra: torch.Tensor | None = None, crop: bool = True,
                 normalization: IntensityNormalization | None = None):
        from monai.data import MetaTensor
        from monai.transforms import Compose, CropForeground, Orientation, Resize, Spacing, SpatialPad

        if volume.ndim != 4:
            raise NotA3DVolumeError(f"expected a channel-first 3D volume (C, X, Y, Z), got shape {tuple(volume.shape)}")
        if not isinstance(volume, MetaTensor):
            volume = MetaTensor(torch.as_tensor(volume).float(), affine=torch.eye(4, dtype=torch.float64))
        self.input_shape = tuple(volume.shape)
        self.normalization = normalization or IntensityNormalization(percentiles=tuple(percentiles)).fit(volume)
        image = self.normalization(volume.float())
        self.channels = image.shape[0]
        if extra is not None:  # carried along (e.g. a mask), not normalised, not used to find the foreground
            extra = torch.as_tensor(extra.as_tensor() if hasattr(extra, "as_tensor") else extra).float()
            if extra.ndim != 4 or extra.shape[1:] != image.shape[1:]:
                raise ValueError(f"extra channels must be (K, {', '.join(map(str, image.shape[1:]))}) on the volume's "
                                 f"grid, got shape {tuple(extra.shape)}")
            image = MetaTensor(torch.cat([image.as_tensor(), extra]), meta=image.meta)
        spacing = np.sqrt((np.asarray(image.affine, dtype=np.float64)[:3, :3] ** 2).sum(0))
        if crop:
            box = _foreground_box(image, margin)
            side, select = max(hi - lo for lo, hi in box), _above_background
        else:
            side, select = 0, _everything
        self.transform = Compose([
            Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            Spacing(pixdim=float(spacing.min()), mode="bilinear", padding_mode="border"),
            CropForeground(select_fn=select, channel_indices=list(range(self.channels)),
                           margin=int(math.ceil(margin * side)), allow_smaller=True),
            SpatialPad(spatial_size=-1, mode="constant", value=-1.0),  # replaced per volume below
            Resize(spatial_size=tuple(int(n) for n in shape), mode="trilinear", anti_aliasing=True),
        ])
        # pad to a cube: the side is known only after cropping
        front = Compose(self.transform.transforms[:3])(image)
        cube = max(front.shape[1:])
        self.transform.transforms[3].spatial_size = (cube, cube, cube)
        network = Compose(self.transform.transforms[3:])(front)
        network[: self.channels] = network[: self.channels].clamp(-1.0, 1.0)
        self.network = network

    def inverse(self, data: torch.Tensor):
        """``data`` ``(C, *shape)`` on the network grid -> the input's grid and affine (linear resampling)."""
        from monai.data import MetaTensor

        out = MetaTensor(torch.as_tensor(data).float(), meta=copy.deepcopy(self.network.meta),
                         applied_operations=copy.deepcopy(self.network.applied_operations))  # inverse pops from them
        return self.transform.inverse(out)

    @property
    def affine(self) -> torch.Tensor:
        """The network grid's voxel -> world (RAS mm) affine."""
        return torch.as_tensor(self.network.affine, dtype=torch.float64)


def _above_background(x: torch.Tensor) -> torch.Tensor:
    return x > -0.8


def _everything(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x, dtype=torch.bool)


def _foreground_box(image: torch.Tensor, margin: float) -> list[tuple[int, int]]:
    mask = (image[0] > -0.8).numpy() if not hasattr(image, "as_tensor") else (image.as_tensor()[0] > -0.8).numpy()
    if not mask.any():
        raise ValueError("the volume has no foreground above its low intensity percentile (a constant volume?)")
    idx = np.nonzero(mask)
    return [(int(i.min()), int(i.max()) + 1) for i in idx]
