"""MONAI random transforms: one folding-free recovered deformation per call.

    from monai.transforms import Compose, LoadImaged, EnsureChannelFirstd
    from sciogen.deformation import RandDeformationDiffusiond

    train = Compose([
        LoadImaged(keys=("image", "label")), EnsureChannelFirstd(keys=("image", "label")),
        RandDeformationDiffusiond(keys=("image", "label"), prob=0.5, model="deformation/brain-mri-3d",
                                  mode=("bilinear", "nearest")),
    ])

Each call draws one deformation (from the image of ``reference_key``, default the first
key) and applies it to every key: images with linear interpolation, labels with nearest
neighbour (their label set is kept). Inputs are channel-first ``(C, *S)``, 2D or 3D (the
model's dimension); any spatial shape works (see :class:`~sciogen.deformation.grid.GridMap`).
``MetaTensor`` inputs keep their affine and meta data: the grid does not move, only the
content. Randomness comes from the transform's own ``self.R`` (MONAI's convention), so
``set_random_state(seed)`` gives the same output for the same input, ``Compose`` /
``CacheDataset`` / ``DataLoader`` workers seed it as for any MONAI random transform.

``model`` is a shipped name (loaded once per process, on first use: only the name travels
to DataLoader workers), a checkpoint path, or a :class:`DeformationGenerator`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, ensure_tuple_rep

from .fields import INTERPOLATIONS, PADDINGS, warp
from .generator import DeformationGenerator

__all__ = ["RandDeformationDiffusion", "RandDeformationDiffusiond"]


def _load(model: Any, device: str) -> DeformationGenerator:
    from sciogen.registry import load_once

    return load_once(model, device, expected=DeformationGenerator)


def _check(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name} must be one of {tuple(allowed)}; got {v!r}")


def _apply(img: Any, ddf: torch.Tensor, mode: str, padding_mode: str) -> Any:
    """Warp one channel-first image ``(C, *S)`` by ``ddf`` ``(1, D, *S)``, keeping meta data and dtype."""
    data = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
    if data.ndim != ddf.ndim - 1 or tuple(data.shape[1:]) != tuple(ddf.shape[2:]):
        raise ValueError(f"cannot warp an image of shape {tuple(data.shape)} with a field for spatial shape "
                         f"{tuple(ddf.shape[2:])}: all keys must share one channel-first grid")
    out = warp(data[None].float(), ddf.to(data.device), mode=mode, padding_mode=padding_mode)[0]
    out = out.to(data.dtype) if data.is_floating_point() else out.round().to(data.dtype)
    if isinstance(img, MetaTensor):
        return MetaTensor(out, meta=img.meta, applied_operations=list(img.applied_operations))
    return out


class RandDeformationDiffusion(RandomizableTransform):
    """Array version: ``t(img) -> img`` deformed with probability ``prob``.

    Args:
        prob: probability of deforming.
        model: shipped name, checkpoint path or :class:`DeformationGenerator`.
        level, steps, t_end, min_det: sampling options (defaults: the model's config).
        mode: ``"bilinear"`` (images) or ``"nearest"`` (labels).
        padding_mode: ``"border"``, ``"zeros"`` or ``"reflection"``.
        device: where the recovery network runs (``"cpu"``, ``"cuda"``...).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 0.1, model: Any = "deformation/brain-mri-2d", level: float | None = None,
                 steps: int | None = None, t_end: float | None = None, min_det: float | None = None,
                 mode: str = "bilinear", padding_mode: str = "border", device: str = "cpu"):
        RandomizableTransform.__init__(self, prob)
        _check("mode", [mode], INTERPOLATIONS)
        _check("padding_mode", [padding_mode], PADDINGS)
        self.model, self.device = model, device
        self.options = {"level": level, "steps": steps, "t_end": t_end, "min_det": min_det}
        self.mode, self.padding_mode = mode, padding_mode
        self._seed = 0
        self.last_ddf: torch.Tensor | None = None

    @property
    def generator(self) -> DeformationGenerator:
        return _load(self.model, self.device)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._seed = int(self.R.randint(0, 2**31 - 1))  # drawn every call: the stream does not depend on prob

    def draw_field(self, img: Any) -> torch.Tensor:
        """The deformation ``(1, D, *S)`` (voxels) of the current random draw for ``img``."""
        data = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
        gen = torch.Generator().manual_seed(self._seed)
        ddf, _ = self.generator.displacement(data.detach().cpu(), 1, generator=gen, **self.options)
        return ddf

    def __call__(self, img: Any, mode: str | None = None, padding_mode: str | None = None, randomize: bool = True) -> Any:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        self.last_ddf = self.draw_field(img)
        return _apply(img, self.last_ddf, mode or self.mode, padding_mode or self.padding_mode)


class RandDeformationDiffusiond(RandomizableTransform, MapTransform):
    """Dictionary version: one deformation per call, applied to every key.

    Args:
        keys: the keys to deform (channel-first, one shared grid).
        prob: probability of deforming (all keys or none).
        model, level, steps, t_end, min_det, device: as :class:`RandDeformationDiffusion`.
        mode: per key (or one for all): ``"bilinear"`` for images, ``"nearest"`` for labels.
        padding_mode: per key or one for all.
        reference_key: the image the network looks at (default: the first key).
        ddf_key: if set, the displacement ``(D, *S)`` in voxels is stored under this key.
        allow_missing_keys: skip absent keys instead of raising.
    """

    backend = RandDeformationDiffusion.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.1, model: Any = "deformation/brain-mri-2d",
                 level: float | None = None, steps: int | None = None, t_end: float | None = None,
                 min_det: float | None = None, mode: str | Sequence[str] = "bilinear",
                 padding_mode: str | Sequence[str] = "border", reference_key: str | None = None,
                 ddf_key: str | None = None, device: str = "cpu", allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.padding_mode = ensure_tuple_rep(padding_mode, len(self.keys))
        _check("mode", self.mode, INTERPOLATIONS)
        _check("padding_mode", self.padding_mode, PADDINGS)
        self.reference_key = reference_key if reference_key is not None else self.keys[0]
        self.ddf_key = ddf_key
        self.deform = RandDeformationDiffusion(1.0, model, level, steps, t_end, min_det, device=device)

    def set_random_state(self, seed: int | None = None, state=None) -> "RandDeformationDiffusiond":
        super().set_random_state(seed, state)
        self.deform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.deform.randomize()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        if self.reference_key not in d:
            raise KeyError(f"reference key {self.reference_key!r} not in the data (keys: {list(d)})")
        ddf = self.deform.draw_field(d[self.reference_key])
        for key, mode, pad in self.key_iterator(d, self.mode, self.padding_mode):
            d[key] = _apply(d[key], ddf, mode, pad)
        if self.ddf_key is not None:
            d[self.ddf_key] = ddf[0]
        return d
