"""``DeformationGenerator``: DRDM-style deformation diffusion and recovery behind the generator verbs.

    >>> import sciogen
    >>> gen = sciogen.load("deformation/brain-mri-2d")                         # doctest: +SKIP
    >>> out = gen.deform(image, label=seg, n=4, seed=0)   # list of dicts: image, label, ddf
    >>> sciogen.deformation.evaluate(out)                   # folding %, |u| % of side, ...
    >>> gen.sample(4, image="t1.nii.gz", seed=0)            # the same through the base verbs

A sample is one random, folding-free deformation of the *given* image (and label map): a
dict with ``image`` ``(C, *S)`` (linear interpolation), ``label`` (nearest: the label set is
kept), ``ddf`` ``(D, *S)`` in voxels of the image, ``affine`` (4x4, unchanged: the image grid
is not moved) and ``shrink`` (the factor :func:`~sciogen.deformation.fields.limit_folding`
applied, 1.0 when the field needed no projection). The network runs on its own grid
(:class:`~sciogen.deformation.grid.GridMap`), so images of any shape are accepted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sciogen.train.generator import Generator

from .config import DeformationConfig
from .data import training_images
from .fields import limit_folding, warp
from .grid import GridMap
from .io import normalize_intensity, read_field, read_image, write_field, write_image
from .metrics import evaluate
from .network import RecoveryUNet
from .process import DeformationProcess

__all__ = ["DeformationGenerator", "export_model"]


class DeformationGenerator(Generator):
    """Random deformations of images by deformation recovery. Domain ``"deformation"``.

    ``fit(data)`` accepts a tensor of network-ready images ``(N, 1, *config.data.shape)``
    in [0, 1], a list of image paths, or nothing (``config.data``).
    """

    domain = "deformation"
    example_output = "samples/"  # what `sciogen train` suggests for --out: a folder of NIfTI files
    config_class = DeformationConfig

    # -- parts -----------------------------------------------------------------------------

    @property
    def spatial_dims(self) -> int:
        return self.config.data.spatial_dims

    @property
    def network_shape(self) -> tuple[int, ...]:
        return tuple(self.config.data.shape)

    @property
    def process(self) -> DeformationProcess:
        p = self.config.process
        return DeformationProcess(tuple(p.grids), p.max_velocity, p.power, p.decay, p.t_min, p.reg_weight, p.cos_weight,
                                  p.foreground)

    def build_model(self) -> nn.Module:
        m = self.config.model
        net = RecoveryUNet(self.spatial_dims, 1, m.channels, m.time_dim, m.stem)
        bad = [n for n in self.network_shape if n % net.divisor]
        if bad:
            raise ValueError(f"data.shape {self.network_shape} must be multiples of {net.divisor} "
                             f"for model.channels {m.channels} and model.stem {m.stem}")
        return net

    def training_data(self, data: Any = None) -> torch.Tensor:
        if isinstance(data, torch.Tensor):
            expected = (1, *self.network_shape)
            if tuple(data.shape[1:]) != expected:
                raise ValueError(f"training images must have shape (N, {', '.join(map(str, expected))}), got {tuple(data.shape)}")
            return data.float()
        return training_images(self.config.data, None if data is None else [str(p) for p in data])

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for axis in self.config.process.flip_axes:
            flip = torch.rand(batch.shape[0], generator=generator, device=generator.device).to(batch.device) < 0.5
            batch = torch.where(flip.view(-1, *[1] * (batch.ndim - 1)), batch.flip(2 + axis), batch)
        return self.process.loss(model, batch, generator=generator)

    # -- sampling ------------------------------------------------------------------------------

    @torch.no_grad()
    def displacement(self, image: torch.Tensor, n: int = 1, *, generator: torch.Generator, level: float | None = None,
                     steps: int | None = None, t_end: float | None = None, min_det: float | None = None,
                     model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random deformations of ``image`` ``(C, *S)``: ``(ddf (n, D, *S) in voxels, shrink (n,))``.

        Options default to ``config.sampling``. The fields are computed on the network grid,
        resampled to the image grid and projected so that ``det(I + grad u) >= min_det``.
        """
        s = self.config.sampling
        level = s.level if level is None else float(level)
        steps = s.steps if steps is None else int(steps)
        t_end = s.t_end if t_end is None else float(t_end)
        min_det = s.min_det if min_det is None else float(min_det)
        model = (model or self.sampling_model).eval()
        device = next(model.parameters()).device
        image = torch.as_tensor(image).float()
        if image.ndim != self.spatial_dims + 1:
            raise ValueError(
                f"this model deforms {self.spatial_dims}D images given channel-first as (C, "
                f"{', '.join('S%d' % i for i in range(self.spatial_dims))}); got shape {tuple(image.shape)}"
            )
        grid = GridMap.for_image(image.shape[1:], self.network_shape)
        x = grid.to_network(normalize_intensity(image[:1][None]).to(device)).expand(int(n), -1, *self.network_shape)
        # one generator per sample, seeded from ``generator``: sample i does not depend on n
        seeds = torch.randint(0, 2**62, (int(n),), generator=generator, device=generator.device).tolist()
        eps = torch.cat([self.process.noise(1, self.network_shape, device=device,
                                            generator=torch.Generator(generator.device).manual_seed(int(k)))
                         for k in seeds])
        ddf = self.process.recover(model, x, level=level, steps=steps, t_end=t_end, generator=generator, eps=eps)
        return limit_folding(grid.to_image(ddf), min_det=min_det)

    def deform(self, image: Any, label: Any = None, n: int = 1, *, seed: int | None = None, **options) -> list[dict[str, Any]]:
        """``n`` deformed copies of ``image`` (and ``label``): a list of sample dicts (module docstring).

        ``image`` / ``label``: a path, or a channel-first tensor / array ``(C, *S)``. Options:
        ``level``, ``steps``, ``t_end``, ``min_det``, ``batch_size``.
        """
        batch_size = options.pop("batch_size", None)
        return self.sample(n, seed=seed, batch_size=batch_size, image=image, label=label, **options)

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     image: Any = None, label: Any = None, level: float | None = None, t_end: float | None = None,
                     min_det: float | None = None, padding_mode: str | None = None, **conditions) -> list[dict[str, Any]]:
        if conditions:
            raise ValueError(f"unknown sampling conditions {sorted(conditions)}; the deformation domain takes "
                             "image=, label=, level=, t_end=, min_det=, padding_mode=")
        if solver != "recovery":
            raise ValueError(f"the deformation domain samples with solver 'recovery', got {solver!r}")
        if image is None:
            raise ValueError("deformation sampling needs an image to deform: pass image=PATH or a (C, *S) tensor "
                             "(sciogen sample deformation/... --image in.nii.gz)")
        img, affine = _as_image(image)
        lab = _as_image(label)[0] if label is not None else None
        if lab is not None and lab.shape[1:] != img.shape[1:]:
            raise ValueError(f"label spatial shape {tuple(lab.shape[1:])} != image spatial shape {tuple(img.shape[1:])}")
        ddf, shrink = self.displacement(img, n, generator=generator, level=level, steps=steps, t_end=t_end,
                                        min_det=min_det, model=model)
        pad = padding_mode or self.config.sampling.padding_mode
        ddf = ddf.cpu()
        warped = warp(img[None].expand(n, *img.shape), ddf, padding_mode=pad)
        labels = warp(lab[None].expand(n, *lab.shape), ddf, mode="nearest", padding_mode=pad) if lab is not None else None
        return [
            {"image": warped[i], "label": None if labels is None else labels[i], "ddf": ddf[i],
             "affine": torch.as_tensor(affine, dtype=torch.float64), "shrink": float(shrink[i])}
            for i in range(n)
        ]

    @classmethod
    def add_sample_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--image", help="image to deform (.nii/.nii.gz/.mha/.npy, or file.npz:KEY)")
        parser.add_argument("--label", help="label map on the same grid (warped with nearest neighbour)")
        parser.add_argument("--level", type=float, help="level T' of the initial random deformation, in (0, 1]")
        parser.add_argument("--t-end", dest="t_end", type=float, help="level where recovery stops (default 0)")
        parser.add_argument("--min-det", dest="min_det", type=float, help="smallest Jacobian determinant allowed")

    # -- evaluation and files ----------------------------------------------------------------------

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None) -> dict[str, float]:
        """Field measures (:func:`sciogen.deformation.evaluate`); ``reference`` is not used."""
        return evaluate(samples)

    @classmethod
    def write_samples(cls, samples: list[dict[str, Any]], path: str | Path) -> Path:
        """Write ``sample_000_image.nii.gz``, ``_label.nii.gz``, ``_ddf.nii.gz`` ... and ``metrics.json``
        into the folder ``path`` (created), keeping each sample's affine."""
        folder = Path(path)
        if folder.suffix in (".gz", ".nii", ".csv", ".pt"):
            raise ValueError(f"--out must be a folder for deformation samples, got the file name {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(samples):
            affine = s.get("affine", np.eye(4))
            write_image(s["image"], affine, folder / f"sample_{i:03d}_image.nii.gz")
            if s.get("label") is not None:
                write_image(s["label"], affine, folder / f"sample_{i:03d}_label.nii.gz", label=True)
            write_field(s["ddf"], affine, folder / f"sample_{i:03d}_ddf.nii.gz")
        (folder / "metrics.json").write_text(json.dumps(evaluate(samples), indent=2))
        return folder

    @classmethod
    def read_samples(cls, path: str | Path) -> list[torch.Tensor]:
        """The displacement fields ``(D, *S)`` of a folder written by :meth:`write_samples`
        (``*_ddf.nii.gz``), or of one field file (.nii.gz / .npy / .pt)."""
        path = Path(path)
        files = sorted(path.glob("*_ddf.nii*")) if path.is_dir() else [path]
        if not files:
            raise FileNotFoundError(f"no *_ddf.nii.gz fields in {path}")
        return [read_field(f)[0] for f in files]


def _as_image(value: Any) -> tuple[torch.Tensor, np.ndarray]:
    """A path, MetaTensor, tensor or array -> ``((C, *S) float32, affine)``."""
    if isinstance(value, (str, Path)):
        return read_image(value)
    affine = getattr(value, "affine", None)
    affine = np.eye(4) if affine is None else np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine)
    tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value.as_tensor()
                             if hasattr(value, "as_tensor") else value)
    return tensor.float(), affine



def export_model(source: str | Path, destination: str | Path, half: bool = True) -> Path:
    """Export a training checkpoint / run folder for shipping: no trainer state and, with
    ``half``, weights stored in float16 (loaded back into float32 networks; the recovery
    velocities change by < 0.1 %, see the model cards)."""
    from sciogen.train.checkpoint import export_checkpoint

    return export_checkpoint(source, destination, half=half)
