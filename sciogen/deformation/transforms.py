"""MONAI random transforms: one folding-free recovered deformation per call.

    from monai.transforms import Compose, LoadImaged, EnsureChannelFirstd
    from sciogen.deformation import RandDeformationDiffusiond

    train = Compose([
        LoadImaged(keys=("image", "label")), EnsureChannelFirstd(keys=("image", "label")),
        RandDeformationDiffusiond(keys=("image", "label"), prob=0.5, model="deformation/brain-mri-3d"),
    ])

Each call draws one deformation (from the image of ``reference_key``, default the first
key) and applies it to every key: images with linear interpolation, label maps with nearest
neighbour, so their values stay a subset of the input's (with the default ``"border"``
padding). Which keys are label maps is decided by name, not by dtype (MONAI loads label
maps as float32, and CT images are often int16): ``label_keys`` names them, by default the
keys called ``label`` / ``seg`` / ``mask`` (also ``labels``, ``segmentation``, ``masks``, or
ending in ``_label``, ``_seg``, ``_mask``...). Inputs are channel-first ``(C, *S)``, 2D or 3D
(the model's dimension); any spatial shape works (see :class:`~sciogen.imaging.grid.GridMap`).
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

from sciogen.train.checks import finite_number

from .fields import INTERPOLATIONS, PADDINGS, warp
from .generator import DeformationGenerator, check_sampling_options

__all__ = ["RandDeformationDiffusion", "RandDeformationDiffusiond", "LABEL_NAMES", "is_label_key"]


def _load(model: Any, device: str) -> DeformationGenerator:
    from sciogen.registry import load_once

    return load_once(model, device, expected=DeformationGenerator)


#: key names that are label maps when ``label_keys`` is not given (also with a ``_`` prefix: ``brain_mask``)
LABEL_NAMES = ("label", "labels", "seg", "segmentation", "mask", "masks", "labelmap", "label_map")


def is_label_key(key: Hashable) -> bool:
    """Whether ``key`` names a label map by default (:data:`LABEL_NAMES`, case-insensitive)."""
    name = str(key).lower()
    return any(name == n or name.endswith("_" + n) for n in LABEL_NAMES)


def _check(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    for v in values:
        if v not in allowed:
            raise ValueError(f"{name} must be one of {tuple(allowed)}; got {v!r}")


def _probability(prob: Any) -> float:
    prob = finite_number("prob", prob)
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1] (the probability of deforming), got {prob}")
    return prob


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
        prob: probability of deforming, in [0, 1].
        model: shipped name, checkpoint path or :class:`DeformationGenerator`.
        level, steps, t_end, min_det: sampling options (defaults: the model's config), checked
            when the transform is made (:func:`~sciogen.deformation.generator.check_sampling_options`).
        mode: ``"bilinear"`` (images) or ``"nearest"`` (label maps: the field is drawn from
            ``img`` itself, so the array version deforms images; use the dictionary version to
            move a label map with its image).
        padding_mode: ``"border"``, ``"zeros"`` or ``"reflection"``.
        device: where the recovery network runs (``"cpu"``, ``"cuda"``...).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 0.1, model: Any = "deformation/brain-mri-2d", level: float | None = None,
                 steps: int | None = None, t_end: float | None = None, min_det: float | None = None,
                 mode: str = "bilinear", padding_mode: str = "border", device: str = "cpu"):
        RandomizableTransform.__init__(self, _probability(prob))
        _check("mode", [mode], INTERPOLATIONS)
        _check("padding_mode", [padding_mode], PADDINGS)
        self.model, self.device = model, device
        options = check_sampling_options(level, steps, t_end, min_det)
        self.options = {k: options[k] for k in ("level", "steps", "t_end", "min_det")}
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
        prob: probability of deforming (all keys or none), in [0, 1].
        model, level, steps, t_end, min_det, device: as :class:`RandDeformationDiffusion`.
        label_keys: the keys that hold label maps, warped with nearest neighbour so that their
            values stay a subset of the input's. Default: the keys named like label maps
            (:func:`is_label_key`: ``label``, ``seg``, ``mask``, ``*_label`` ...); ``()`` for none.
        mode: None (default): ``"nearest"`` for ``label_keys``, ``"bilinear"`` for the others.
            Or per key (or one for all); ``"bilinear"`` for a label key is refused (it would
            invent label values; leave the key out of ``label_keys`` if it holds intensities).
        padding_mode: per key or one for all (``"zeros"`` pads label maps with 0).
        reference_key: the image the network looks at (default: the first key).
        ddf_key: if set, the displacement ``(D, *S)`` in voxels is stored under this key.
        allow_missing_keys: skip absent keys instead of raising.
    """

    backend = RandDeformationDiffusion.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.1, model: Any = "deformation/brain-mri-2d",
                 level: float | None = None, steps: int | None = None, t_end: float | None = None,
                 min_det: float | None = None, mode: str | Sequence[str] | None = None,
                 padding_mode: str | Sequence[str] = "border", reference_key: str | None = None,
                 ddf_key: str | None = None, device: str = "cpu", allow_missing_keys: bool = False,
                 label_keys: KeysCollection | None = None):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, _probability(prob))
        if label_keys is None:
            self.label_keys = tuple(k for k in self.keys if is_label_key(k))
        else:
            self.label_keys = (label_keys,) if isinstance(label_keys, (str, int)) else tuple(label_keys)
            unknown = [k for k in self.label_keys if k not in self.keys]
            if unknown:
                raise ValueError(f"label_keys {unknown} are not among keys {list(self.keys)}")
        if mode is None:
            self.mode = tuple("nearest" if k in self.label_keys else "bilinear" for k in self.keys)
        else:
            self.mode = ensure_tuple_rep(mode, len(self.keys))
            _check("mode", self.mode, INTERPOLATIONS)
            for key, m in zip(self.keys, self.mode):
                if key in self.label_keys and m != "nearest":
                    raise ValueError(
                        f"mode {m!r} for the label key {key!r} would interpolate its labels into values that are "
                        f"not labels; leave mode=None (nearest for label maps, bilinear for images), or pass "
                        f"label_keys without {key!r} if it holds intensities"
                    )
        self.padding_mode = ensure_tuple_rep(padding_mode, len(self.keys))
        _check("padding_mode", self.padding_mode, PADDINGS)
        self.reference_key = reference_key if reference_key is not None else self.keys[0]
        if ddf_key is not None and ddf_key in self.keys:
            raise ValueError(f"ddf_key {ddf_key!r} is one of the keys to deform; store the field under another key")
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
        try:
            ddf = self.deform.draw_field(d[self.reference_key])
        except ValueError as err:  # a bad reference image: name its key
            raise ValueError(f"{self.reference_key!r}: {err}") from None
        for key, mode, pad in self.key_iterator(d, self.mode, self.padding_mode):
            d[key] = _apply(d[key], ddf, mode, pad)
        if self.ddf_key is not None:
            d[self.ddf_key] = ddf[0]
        return d
