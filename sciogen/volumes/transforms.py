"""MONAI random transforms: realistic variants of an image by partial noising and denoising (SDEdit).

    from monai.transforms import Compose, LoadImaged, EnsureChannelFirstd
    from sciogen.volumes import RandVolumeDiffusiond

    train = Compose([
        LoadImaged(keys=("image", "label")), EnsureChannelFirstd(keys=("image", "label")),
        RandVolumeDiffusiond(keys="image", prob=0.5, model="volumes/brain-mri", level=(0.1, 0.3)),
    ])

Each call noises the image to ``level`` (a number, or a range a level is drawn from) and
denoises it with the model (:meth:`~sciogen.volumes.VolumeGenerator.augment`): the result
keeps the input's shape, units, affine and meta data; keys not listed (labels) are not
touched, so image and label stay aligned. Every channel is varied with the same draw.
Randomness comes from the transform's own ``self.R`` (MONAI's convention): ``set_random_state``
gives the same output for the same input, and ``Compose`` / ``DataLoader`` workers seed it as
for any MONAI random transform.

``model`` is a shipped name (loaded once per process on first use: only the name travels to
DataLoader workers), a checkpoint path, or a :class:`VolumeGenerator`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends

from sciogen.train.checks import finite_array, finite_number, optional_positive_int

from .generator import VolumeGenerator

__all__ = ["RandVolumeDiffusion", "RandVolumeDiffusiond"]


def _load(model: Any, device: str) -> VolumeGenerator:
    from sciogen.registry import load_once

    return load_once(model, device, expected=VolumeGenerator)


def _level_range(level: float | Sequence[float] | None) -> tuple[float, float] | None:
    if level is None:
        return None
    if isinstance(level, (str, bytes)) or (hasattr(level, "__len__") and len(level) != 2):
        raise ValueError(f"level must be a number or a range (low, high) with 0 < low <= high <= 1, got {level!r}")
    pair = (level, level) if not hasattr(level, "__len__") else tuple(level)
    low, high = (finite_number("level", v) for v in pair)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"level must be a number or a range (low, high) with 0 < low <= high <= 1, got {level}")
    return low, high


def _probability(prob: Any) -> float:
    prob = finite_number("prob", prob)
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must be in [0, 1] (the chance an image is varied), got {prob}")
    return prob


class RandVolumeDiffusion(RandomizableTransform):
    """Array version: ``t(img) -> img`` varied by SDEdit with probability ``prob``.

    Args:
        prob: probability of varying the image.
        model: shipped name, checkpoint path or :class:`VolumeGenerator`.
        level: noise level in (0, 1], or a range ``(low, high)`` drawn uniformly per call
            (default: the model's ``sampling.level``).
        steps: solver steps over the full time range (scaled to the level; default: the model's).
        device: where the network runs.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 0.1, model: Any = "volumes/brain-mri", level: float | Sequence[float] | None = None,
                 steps: int | None = None, device: str = "cpu"):
        RandomizableTransform.__init__(self, _probability(prob))
        self.model, self.device, self.steps = model, device, optional_positive_int("steps", steps)
        self.level = _level_range(level)
        self._seed, self._level = 0, None

    @property
    def generator(self) -> VolumeGenerator:
        return _load(self.model, self.device)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        # drawn every call, so the stream does not depend on prob
        self._seed = int(self.R.randint(0, 2**31 - 1))
        self._level = None if self.level is None else float(self.R.uniform(*self.level))

    def vary(self, img: Any) -> Any:
        """The variant of ``img`` ``(C, X, Y, Z)`` for the current random draw."""
        data = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
        if data.ndim != 4:
            raise ValueError(f"RandVolumeDiffusion takes channel-first 3D volumes (C, X, Y, Z), got shape {tuple(data.shape)}")
        finite_array("img", data)  # complex, NaN and inf refused before any network work
        affine = img.affine if isinstance(img, MetaTensor) else torch.eye(4, dtype=torch.float64)
        channels = []
        for c in range(data.shape[0]):
            volume = MetaTensor(data[c:c + 1].detach().cpu().float(), affine=affine)
            channels.append(self.generator.augment(volume, level=self._level, n=1, steps=self.steps,
                                                   seed=self._seed)[0].as_tensor())
        out = torch.cat(channels).to(device=data.device, dtype=data.dtype if data.is_floating_point() else torch.float32)
        if isinstance(img, MetaTensor):
            return MetaTensor(out, meta=img.meta, applied_operations=list(img.applied_operations))
        return out

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return self.vary(img)


class RandVolumeDiffusiond(RandomizableTransform, MapTransform):
    """Dictionary version: the listed keys are varied (each with the same draw); others untouched.

    Args:
        keys: the images to vary (not the labels).
        prob, model, level, steps, device: as :class:`RandVolumeDiffusion`.
        allow_missing_keys: skip absent keys instead of raising.
    """

    backend = RandVolumeDiffusion.backend

    def __init__(self, keys: KeysCollection, prob: float = 0.1, model: Any = "volumes/brain-mri",
                 level: float | Sequence[float] | None = None, steps: int | None = None, device: str = "cpu",
                 allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, _probability(prob))
        self.transform = RandVolumeDiffusion(1.0, model, level, steps, device)

    def set_random_state(self, seed: int | None = None, state=None) -> "RandVolumeDiffusiond":
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.transform.randomize()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.transform.vary(d[key])
        return d
