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
(:class:`~sciogen.imaging.grid.GridMap`), so images of any shape are accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sciogen.data.output import FOLDER
from sciogen.data.records import RecordLog, expand_paths
from sciogen.imaging.grid import GridMap, normalize_intensity
from sciogen.imaging.io import check_affine
from sciogen.train.checks import finite_array, finite_number, optional_positive_int, positive_int
from sciogen.train.generator import Generator

from .config import DeformationConfig, DeformationDataConfig
from .fields import PADDINGS, limit_folding, warp
from .io import IMAGE_SUFFIXES, MIN_SIDE, read_field, read_image, write_field, write_image
from .metrics import compare_fields, compare_images, evaluate
from .network import RecoveryUNet
from .process import DeformationProcess
from .training import _file_part, load_training_set, registry_files

__all__ = ["DeformationGenerator", "check_sampling_options"]

#: fewer training images (after slicing) than this print a warning
FEW_IMAGES = 8


def check_sampling_options(level: Any = None, steps: Any = None, t_end: Any = None, min_det: Any = None,
                           padding_mode: Any = None) -> dict[str, Any]:
    """The sampling options as numbers, each checked on its own (None: the model's default);
    a ValueError names the bad option and its value.

    ``level`` in (0, 1], ``steps`` >= 1, ``t_end`` in [0, level), ``min_det`` (the smallest
    Jacobian determinant allowed) in [0, 1), ``padding_mode`` one of :data:`~sciogen.deformation.fields.PADDINGS`.
    """
    if level is not None:
        level = finite_number("level", level)
        if not 0.0 < level <= 1.0:
            raise ValueError(f"level must be in (0, 1] (the level T' of the initial random deformation), got {level}")
    steps = optional_positive_int("steps", steps)
    if t_end is not None:
        t_end = finite_number("t_end", t_end)
        if not 0.0 <= t_end < 1.0:
            raise ValueError(f"t_end must be in [0, 1) (the level where recovery stops), got {t_end}")
        if level is not None and t_end >= level:
            raise ValueError(f"t_end must be below level: got t_end={t_end}, level={level}")
    if min_det is not None:
        min_det = finite_number("min_det", min_det)
        if not 0.0 <= min_det < 1.0:
            raise ValueError(f"min_det (the smallest Jacobian determinant allowed: 0 forbids folding, 1 is the "
                             f"identity) must be in [0, 1), got {min_det}")
    if padding_mode is not None and padding_mode not in PADDINGS:
        raise ValueError(f"padding_mode must be one of {PADDINGS}; got {padding_mode!r}")
    return {"level": level, "steps": steps, "t_end": t_end, "min_det": min_det, "padding_mode": padding_mode}


def check_image(name: str, value: Any, dims: int) -> torch.Tensor:
    """``value`` as a finite float tensor ``(C, *S)`` with ``dims`` spatial axes of at least
    :data:`~sciogen.deformation.io.MIN_SIDE` voxels; a ValueError names ``name`` otherwise."""
    image = finite_array(name, value.as_tensor() if hasattr(value, "as_tensor") else value)
    if image.ndim >= 2 and (image.numel() == 0 or min(image.shape[1:]) < MIN_SIDE):
        raise ValueError(f"{name} is too small to deform: shape {tuple(image.shape)} (channel-first; at least "
                         f"{MIN_SIDE} voxels per side)")
    if image.ndim != dims + 1:
        raise ValueError(
            f"this model deforms {dims}D images given channel-first as (C, "
            f"{', '.join('S%d' % i for i in range(dims))}); got {name} of shape {tuple(image.shape)}"
        )
    return image


@dataclass(frozen=True)
class _Input:
    """An image (and label map) read and checked once by :meth:`DeformationGenerator.sample`."""

    image: torch.Tensor
    affine: np.ndarray
    label: torch.Tensor | None


class DeformationGenerator(Generator):
    """Random deformations of images by deformation recovery. Domain ``"deformation"``.

    ``fit(data)`` accepts a tensor of network-ready images ``(N, 1, *config.data.shape)``
    in [0, 1] (``(N, 2, ...)``: channel 1 the labelled region the loss is averaged over), a
    folder / glob / file / list of image files (see :meth:`own_data_config`), or nothing
    (``config.data``).
    """

    domain = "deformation"
    record_name = "images"
    example_output = "samples/ --image IMAGE"  # what `sciogen train` suggests after --out (set to a training file)
    config_class = DeformationConfig
    output_formats = (FOLDER,)  # a folder of NIfTI files: sample_000_image.nii.gz, _label, _ddf, metrics.json
    data_options = ("labels", "download")

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

    @classmethod
    def own_data_config(cls, config: DeformationConfig, data: Any, labels: str | None = None,
                        download: bool = False) -> DeformationConfig:
        """Train on the user's images: ``data`` a folder (searched recursively), a glob, a file
        or a list of them, in the formats of :data:`~sciogen.deformation.io.IMAGE_SUFFIXES`.

        Sets ``data.root`` (the folder) and ``data.files`` (the images found; files under the
        ``labels`` folder are not images); the recipe's ``spatial_dims`` says what is trained:
        a 2D model on 2D images or on slices of 3D volumes, a 3D model on volumes (checked when
        the files are read, by :func:`~sciogen.deformation.training.load_training_set`).
        ``labels``: a folder of label maps matched by file name (the loss is averaged over
        the labelled region). ``download`` without ``data``: fetch the recipe's registered
        dataset into the cache (``data.root: null``).
        """
        if data is None:
            if download:
                if config.data.root is not None:
                    raise ValueError(f"--download fetches a registered dataset for a recipe with data.root: null; "
                                     f"this one reads data.root={config.data.root!r}")
                registry_files(config.data.files, download=True)
            return config
        if download:
            raise ValueError("--download fetches the recipe's registered dataset; with --data your own images are used")
        if isinstance(data, (torch.Tensor, np.ndarray)):
            if labels is not None:
                raise ValueError("--labels goes with a folder of images; for tensors pass (N, 2, *S) with the "
                                 "labelled region as channel 1")
            return config
        label_folder = Path(labels).expanduser().resolve() if labels is not None else None
        if label_folder is not None and not label_folder.is_dir():
            raise FileNotFoundError(f"--labels {labels}: no such folder")
        files = [f.resolve() for f in expand_paths(data, IMAGE_SUFFIXES, "images")]
        if label_folder is not None:
            files = [f for f in files if not f.is_relative_to(label_folder)]
            if not files:
                raise FileNotFoundError(f"--data {data} holds no images outside the --labels folder {labels}")
        single = isinstance(data, (str, Path)) and Path(data).expanduser().is_dir()
        root = Path(data).expanduser().resolve() if single else Path(os.path.commonpath([f.parent for f in files]))
        config.data.root = str(root)
        config.data.files = [str(f.relative_to(root)) for f in files]
        config.data.labels = None if label_folder is None else str(label_folder)
        return config

    def training_data(self, data: Any = None) -> torch.Tensor:
        if isinstance(data, np.ndarray):
            data = torch.from_numpy(data)
        if isinstance(data, torch.Tensor):
            expected = (2 + self.spatial_dims, self.network_shape)
            if (data.ndim, tuple(data.shape[2:])) != expected or data.shape[1] not in (1, 2):
                shape = ", ".join(map(str, self.network_shape))
                raise ValueError(f"training images must have shape (N, 1, {shape}) (or (N, 2, {shape}) with the "
                                 f"labelled region as channel 1), got {tuple(data.shape)}")
            self.data_log.kept = int(data.shape[0])
            return data.float()
        if data is not None:
            self.config = self.configure_data(self.config, data)
        found = load_training_set(self.config.data, log=self.data_log)
        print(f"sciogen: {found.describe(self.config.data)}", file=sys.stderr)
        if len(found.images) < FEW_IMAGES:
            print(f"sciogen: only {len(found.images)} training images: the network learns little about the anatomy "
                  "(docs/your-data.md gives the recovery error measured with few images)", file=sys.stderr)
        example = _file_part(found.files[0]) if found.dims == self.spatial_dims else "A_2D_SLICE.nii.gz"
        self.example_output = f"samples/ --image {example}"  # what `sciogen train` suggests next
        return found.images

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for axis in self.config.process.flip_axes:
            flip = torch.rand(batch.shape[0], generator=generator, device=generator.device).to(batch.device) < 0.5
            batch = torch.where(flip.view(-1, *[1] * (batch.ndim - 1)), batch.flip(2 + axis), batch)
        mask = batch[:, 1] if batch.shape[1] == 2 else None
        return self.process.loss(model, batch[:, :1], generator=generator, mask=mask)

    # -- sampling ------------------------------------------------------------------------------

    @torch.no_grad()
    def displacement(self, image: torch.Tensor, n: int = 1, *, generator: torch.Generator, level: float | None = None,
                     steps: int | None = None, t_end: float | None = None, min_det: float | None = None,
                     model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random deformations of ``image`` ``(C, *S)``: ``(ddf (n, D, *S) in voxels, shrink (n,))``.

        Options default to ``config.sampling``. The fields are computed on the network grid,
        resampled to the image grid and projected so that ``det(I + grad u) >= min_det``.
        The image must be finite (ValueError naming it, before any work); non-finite values
        during the recovery raise FloatingPointError naming the step.
        """
        n = positive_int("n", n)
        level, steps, t_end, min_det = self.sampling_options(level, steps, t_end, min_det)
        image = check_image("image", image, self.spatial_dims)
        model = (model or self.sampling_model).eval()
        device = next(model.parameters()).device
        grid = GridMap.for_image(image.shape[1:], self.network_shape)
        x = grid.to_network(normalize_intensity(image[:1][None]).to(device)).expand(int(n), -1, *self.network_shape)
        # one generator per sample, seeded from ``generator``: sample i does not depend on n
        seeds = torch.randint(0, 2**62, (int(n),), generator=generator, device=generator.device).tolist()
        eps = torch.cat([self.process.noise(1, self.network_shape, device=device,
                                            generator=torch.Generator(generator.device).manual_seed(int(k)))
                         for k in seeds])
        ddf = self.process.recover(model, x, level=level, steps=steps, t_end=t_end, generator=generator, eps=eps)
        return limit_folding(grid.to_image(ddf), min_det=min_det)

    def sampling_options(self, level: Any = None, steps: Any = None, t_end: Any = None,
                         min_det: Any = None) -> tuple[float, int, float, float]:
        """``(level, steps, t_end, min_det)`` checked (:func:`check_sampling_options`), None
        taken from ``config.sampling``; ``t_end`` must be below ``level``."""
        given = check_sampling_options(level, steps, t_end, min_det)
        s = self.config.sampling
        level = s.level if given["level"] is None else given["level"]
        steps = s.steps if given["steps"] is None else given["steps"]
        t_end = s.t_end if given["t_end"] is None else given["t_end"]
        min_det = s.min_det if given["min_det"] is None else given["min_det"]
        if t_end >= level:
            raise ValueError(f"t_end must be below level: got t_end={t_end}, level={level} (None takes the model's "
                             f"sampling.t_end={s.t_end} / sampling.level={s.level})")
        return float(level), int(steps), float(t_end), float(min_det)

    def sample(self, n: int, *, steps: int | None = None, solver: str | None = None, seed: int | None = None,
               batch_size: int | None = None, **conditions) -> list[dict[str, Any]]:
        """:meth:`Generator.sample` (``image=``, ``label=``, ``level=``, ``t_end=``, ``min_det=``,
        ``padding_mode=``), with every option and the image / label map read and checked once,
        before any sampling: a ValueError names the bad one."""
        positive_int("n", n)
        optional_positive_int("batch_size", batch_size)
        options = check_sampling_options(conditions.get("level"), steps, conditions.get("t_end"),
                                         conditions.get("min_det"), conditions.get("padding_mode"))
        self.sampling_options(options["level"], options["steps"], options["t_end"], options["min_det"])
        conditions.update({k: v for k, v in options.items() if k in conditions})
        if solver is not None and solver != "recovery":
            raise ValueError(f"the deformation domain samples with solver 'recovery', got {solver!r}")
        if conditions.get("image") is not None and not isinstance(conditions["image"], _Input):
            conditions["image"] = self._read_input(conditions["image"], conditions.pop("label", None))
        return super().sample(n, steps=steps, solver=solver, seed=seed, batch_size=batch_size, **conditions)

    def _read_input(self, image: Any, label: Any = None) -> _Input:
        """The image (a path or a channel-first array / tensor / MetaTensor) and label map, checked."""
        img, affine = _as_image(image)
        where = str(image) if isinstance(image, (str, Path)) else "image"
        img = check_image(where, _drop_singleton_axes(finite_array(where, img), self.spatial_dims), self.spatial_dims)
        affine = check_affine(affine, where)
        lab = None
        if label is not None:
            where = str(label) if isinstance(label, (str, Path)) else "label"
            lab = _drop_singleton_axes(finite_array(where, _as_image(label)[0]), self.spatial_dims)
            if lab.shape[1:] != img.shape[1:]:
                raise ValueError(f"label spatial shape {tuple(lab.shape[1:])} != image spatial shape "
                                 f"{tuple(img.shape[1:])}")
        return _Input(img, affine, lab)

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
        given = image if isinstance(image, _Input) else self._read_input(image, label)
        img, affine, lab = given.image, given.affine, given.label
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
    def evaluate_samples(cls, samples: Any, reference: Any = None, download: bool = False) -> dict[str, float]:
        """Field measures of ``samples`` (:func:`sciogen.deformation.evaluate`: folding,
        determinants, magnitude, bending energy), and with ``reference`` also:

        - a folder / glob of images (e.g. the training folder), a registered dataset name
          (``mni152_2009``; ``download``: fetch it when the cache has no copy) or a tensor
          ``(N, 1, *S)``: the deformed images against them (:func:`~sciogen.deformation.metrics.compare_images`,
          on a 64^2 / 32^3 grid; 3D reference volumes are sliced for 2D samples as in training);
        - a folder of fields (``*_ddf.nii.gz``, e.g. another ``sciogen sample`` output or your
          registration fields): per-field statistics against them (:func:`~sciogen.deformation.metrics.compare_fields`).
        """
        out = evaluate(samples)
        if reference is None:
            return out
        if isinstance(reference, (str, Path)) and Path(reference).expanduser().is_dir() \
                and any(Path(reference).expanduser().glob("*_ddf.nii*")):
            out.update(compare_fields(samples, cls.read_samples(Path(reference).expanduser())))
            return out
        images = [s["image"] for s in (samples if isinstance(samples, list) else [])
                  if isinstance(s, dict) and s.get("image") is not None]
        if not images:
            raise ValueError("the samples hold no deformed images (sample_*_image.nii.gz) to compare with the reference "
                             "images; give a folder written by sciogen sample, or --reference a folder of *_ddf fields")
        dims = images[0].ndim - 1
        shape = [64 if dims == 2 else 32] * dims
        ours = torch.cat([GridMap.for_image(im.shape[1:], shape).to_network(normalize_intensity(im[:1][None].float()))
                          for im in images])
        if isinstance(reference, (torch.Tensor, np.ndarray)):
            ref = torch.as_tensor(reference).float()
            if ref.ndim != dims + 2:
                raise ValueError(f"reference images must be (N, 1, *S) with {dims} spatial axes, "
                                 f"got {tuple(ref.shape)}")
            ref = torch.cat([GridMap.for_image(r.shape[1:], shape).to_network(normalize_intensity(r[:1][None]))
                             for r in ref])
        else:
            ref = _reference_images(str(reference), dims, shape, download)
        out.update(compare_images(ours, ref))
        return out
    @classmethod
    def write_samples(cls, samples: list[dict[str, Any]], path: str | Path) -> Path:
        """Write ``sample_000_image.nii.gz``, ``_label.nii.gz``, ``_ddf.nii.gz`` ... and ``metrics.json``
        into the folder ``path`` (created; one file per sample and kind), keeping each sample's affine.

        The only output format is a folder (:attr:`output_formats`): a name with a file suffix
        (``x.nii.gz``) is refused, unless it is an existing folder.
        """
        folder = Path(path)
        if folder.suffix and not folder.is_dir():
            raise ValueError(f"--out {folder}: deformation samples are written as a folder of NIfTI files "
                             "(sample_000_image.nii.gz, _label, _ddf, metrics.json); give a folder name without a "
                             "suffix, e.g. --out samples/")
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
    def read_samples(cls, path: str | Path) -> list[dict[str, Any]]:
        """The samples of a folder written by :meth:`write_samples`: dicts with ``ddf`` ``(D, *S)``
        (``*_ddf.nii.gz``) and, when written beside it, ``image`` (``*_image.nii.gz``); or one
        field file (.nii.gz / .npy / .pt)."""
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no such folder or field file: {path}")
        files = sorted(path.glob("*_ddf.nii*")) if path.is_dir() else [path]
        if not files:
            raise FileNotFoundError(f"no *_ddf.nii.gz fields in {path} "
                                    f"(sciogen sample RUN --image IMAGE -n N --out {path} writes them)")
        out = []
        for f in files:
            sample: dict[str, Any] = {"ddf": read_field(f)[0]}
            image = f.with_name(f.name.replace("_ddf.nii", "_image.nii"))
            if path.is_dir() and image.is_file():
                sample["image"] = read_image(image)[0]
            out.append(sample)
        return out


def _reference_images(reference: str, dims: int, shape: list[int], download: bool) -> torch.Tensor:
    """Reference images ``(N, 1, *shape)`` from a folder / glob / file or a registered dataset name."""
    from sciogen.data import dataset_names

    log = RecordLog()
    if not Path(reference).expanduser().exists() and not any(c in reference for c in "*?[") \
            and reference in dataset_names():
        files = registry_files(_registry_images(reference), download=download)
    else:
        files = [str(f) for f in expand_paths(reference, IMAGE_SUFFIXES, "images")]
    config = DeformationDataConfig(root=str(Path.cwd()), files=[str(Path(f).resolve()) for f in files],
                                   spatial_dims=dims, shape=shape)
    try:
        images = load_training_set(config, log=log).images[:, :1]
    except ValueError as err:
        raise ValueError(f"--reference {reference}: {err}") from None
    log.report(None, what="reference images")
    return images


def _registry_images(name: str) -> list[str]:
    """The image files of registered dataset ``name`` that the packaged deformation recipes use
    (the MNI152 T1, not its tissue maps), else all its image files."""
    from sciogen.data import card
    from sciogen.recipes import load_recipe, recipe_names

    used = {Path(_file_part(f)).name for r in recipe_names() if r.startswith("deformation/")
            for f in load_recipe(r).get("data", {}).get("files", [])}
    files = [f.name for f in card(name).files if f.name.lower().endswith(IMAGE_SUFFIXES)]
    return [f for f in files if f in used] or files


def _drop_singleton_axes(image: torch.Tensor, dims: int) -> torch.Tensor:
    """``(C, *S)`` with spatial axes of size 1 removed when it has more than ``dims`` of them
    (a 2D slice stored as an ``(X, Y, 1)`` NIfTI is a 2D image)."""
    spatial = list(image.shape[1:])
    if len(spatial) > dims and len(spatial) - spatial.count(1) == dims:
        return image.reshape(image.shape[0], *[n for n in spatial if n != 1])
    return image


def _as_image(value: Any) -> tuple[Any, np.ndarray]:
    """A path, MetaTensor, tensor or array -> ``((C, *S) values, affine)`` (checked by the caller:
    no cast here, so complex or non-numeric input is refused rather than converted)."""
    if isinstance(value, (str, Path)):
        return read_image(value)
    affine = getattr(value, "affine", None)
    affine = np.eye(4) if affine is None else np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine)
    return (value.as_tensor() if hasattr(value, "as_tensor") else value), affine
