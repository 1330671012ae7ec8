"""``VolumeGenerator``: pixel-space 3D diffusion on MONAI's ``DiffusionModelUNet``.

    >>> import sciogen
    >>> gen = sciogen.load("volumes/brain-mri")                      # doctest: +SKIP
    >>> vols = gen.sample(4, steps=20, seed=0)       # list of MetaTensors (1, 32, 32, 32)
    >>> big = gen.sample(1, shape=(128, 128, 128), patch_size=(64, 64, 64), seed=0)
    >>> variants = gen.augment("t1.nii.gz", level=0.3, n=4, seed=0)   # SDEdit, input geometry
    >>> filled = gen.inpaint("t1.nii.gz", "lesion_mask.nii.gz", n=2, seed=0)  # the masked region generated

The network is trained on MONAI's integer timesteps with a MONAI beta schedule
(``config.process``), so MONAI's own schedulers sample it too (``benchmarks/volumes.py``
compares them); sciogen samples it with the core solvers through
:func:`~sciogen.volumes.monai_interop.sample_monai`'s grid.

Samples are in normalised units ([-1, 1] maps the training volumes' 0.5 / 99.5 intensity
percentiles) with the mean affine of the training grid. :meth:`VolumeGenerator.augment`
maps a user's volume onto the network grid (:class:`~sciogen.imaging.grid.NetworkGrid`),
noises it to ``level`` and denoises it; the change the model made is mapped back onto the
input's own grid, scaled to the input's units and added to the input (clipped to the input's
intensity range), so the fine detail the network grid cannot hold is kept, with its affine.
The sampling modes themselves are the functions of :mod:`sciogen.volumes.sampling`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from sciogen.data.output import FOLDER
from sciogen.data.records import RecordLog
from sciogen.imaging.grid import NetworkGrid
from sciogen.imaging.io import plain_tensor
from sciogen.train.checkpoint import latest_checkpoint
from sciogen.train.checks import finite_array, finite_number, optional_positive_int, positive_int
from sciogen.train.generator import Generator, _replace
from sciogen.train.trainer import Trainer

from . import sampling
from .conditioning import ConditionalUNet, blank, covariate_tensor, degrade, random_boxes
from .config import VolumeConfig
from .datasets import find_volumes, own_volume_records
from .io import VolumeError, read_volume, write_volume
from .latent import LatentDiffusion, autoencoder_loss
from .metrics import evaluate
from .monai_interop import schedule_from_monai
from .training import augment_batch, load_volume, records_on_grid, registry_file, resolve_files, training_volumes, unusable_reason

__all__ = ["VolumeGenerator"]


class VolumeGenerator(Generator):
    """3D volumes by diffusion on a MONAI U-Net. Domain ``"volumes"``.

    ``fit(data)`` accepts a tensor of network-ready volumes ``(N, 1, *config.data.shape)``
    in [-1, 1]; a folder (searched recursively), glob, volume file or DICOM folder, or a
    list of paths (:func:`~sciogen.volumes.datasets.find_volumes`); a list of MONAI-style
    records ``{"image": path, "label": path, "condition": path, <covariate>: value}`` (e.g.
    :func:`~sciogen.volumes.volume_records`); or nothing (``config.data``). A conditional
    model (``config.condition``) also takes a dict ``{"image": (N, 1, *shape), "condition":
    (N, 1, *shape) for "paired", <covariate>: (N,) values (NaN: missing)}``. Volumes that
    cannot be used are reported with file, index and reason (``skipped.csv`` in the run
    folder) and left out.

    Own data (``sciogen train volumes --data FOLDER [--labels DIR] [--covariates CSV]``,
    :meth:`own_data_config`): ``--covariates`` makes the numeric columns scalar covariates
    (sample with ``--condition name=value``), ``--labels`` trains label-to-volume synthesis
    (``condition.image: label``; sample with ``--image LABEL``).
    """

    domain = "volumes"
    sample_conditions = True  # covariates: sciogen sample ... --condition age=70 sex=1
    record_name = "volumes"
    output_formats = (FOLDER,)
    config_class = VolumeConfig
    example_output = "samples/"  # what `sciogen train` suggests for --out: volumes go to a folder
    data_options = ("labels", "covariates", "download")

    def __init__(self, config: VolumeConfig | None = None):
        super().__init__(config)
        self.grid_affine = torch.eye(4, dtype=torch.float64)
        self.label_max = 1.0  # the largest training label (label models map label / label_max to [-1, 1])

    @classmethod
    def own_data_config(cls, config: VolumeConfig, data: Any, *, labels: Any = None, covariates: Any = None,
                        download: bool = False) -> VolumeConfig:
        """Train on a user's volumes: ``data.path`` (a folder, glob, file or list of them;
        MONAI-style records ``{"image": path}`` give their paths), ``data.labels`` /
        ``data.covariates``; covariates become ``condition.scalars`` (the CSV's numeric
        columns), labels ``condition.image: label``. ``data`` None with ``download``: fetch
        the recipe's registered files into the cache now (``sciogen train volumes --download``).
        """
        if data is None:
            if download:
                resolve_files(config.data, RecordLog(), download=True)
            return config
        if download:
            raise ValueError("--download fetches the recipe's registered dataset; with --data your own volumes are "
                             "used: leave --download out")
        paths = _paths_of(data)
        find_volumes(paths)  # a typo or an empty folder fails now, before the model is built
        config.data.path = paths
        if labels is not None:
            config.data.labels = str(labels)
            config.condition.image = "label"
        if covariates is not None:
            from .datasets import covariate_columns

            config.data.covariates = str(covariates)
            config.condition.scalars = covariate_columns(Path(covariates).expanduser())[1]
            config.condition.classes = {}
        return config

    # -- parts -------------------------------------------------------------------------------

    @property
    def network_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.config.data.shape)

    @property
    def latent(self) -> bool:
        return self.config.latent.enabled

    @property
    def divisor(self) -> int:
        """Volume sizes must be multiples of it (U-Net downsampling, times the autoencoder's)."""
        return 2 ** (len(self.config.model.channels) - 1) * (self.config.latent.factor if self.latent else 1)

    def scheduler(self) -> DDPMScheduler:
        """The MONAI scheduler the network is trained with (its betas and prediction type)."""
        p = self.config.process
        return DDPMScheduler(num_train_timesteps=p.num_train_timesteps, schedule=p.schedule, beta_start=p.beta_start,
                             beta_end=p.beta_end, prediction_type=p.prediction)

    @property
    def conditional(self) -> bool:
        c = self.config.condition
        return bool(c.names) or c.image != "none"

    def build_model(self) -> nn.Module:
        m = self.config.model
        bad = [n for n in self.network_shape if n % self.divisor]
        if bad:
            raise ValueError(f"data.shape {list(self.network_shape)} must be multiples of {self.divisor} for "
                             f"model.channels {m.channels}")
        channels = self.config.latent.latent_channels if self.latent else 1
        options = dict(spatial_dims=3, in_channels=channels, out_channels=channels, channels=tuple(m.channels),
                       attention_levels=tuple(m.attention_levels), num_res_blocks=m.num_res_blocks,
                       norm_num_groups=m.norm_num_groups, num_head_channels=8)
        c = self.config.condition
        if c.image == "lowres" and any(n % c.factor for n in self.network_shape):
            raise ValueError(f"data.shape {list(self.network_shape)} must be multiples of condition.factor {c.factor}")
        unet = (ConditionalUNet(options, scalars=c.scalars, classes=c.classes, image_channels=c.image_channels)
                if self.conditional else DiffusionModelUNet(**options))
        if not self.latent:
            return unet
        a = self.config.latent
        autoencoder = dict(spatial_dims=3, in_channels=1, out_channels=1, channels=tuple(a.channels),
                           latent_channels=a.latent_channels, num_res_blocks=a.num_res_blocks,
                           norm_num_groups=a.norm_num_groups, attention_levels=(False,) * len(a.channels),
                           with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
        return LatentDiffusion(autoencoder, unet)

    def fit(self, data: Any = None, *, run_dir: str | Path | None = None, resume: bool | str | Path = False,
            validate: bool = True, **train_options) -> VolumeGenerator:
        """Train (see :meth:`Generator.fit`). A latent model first trains its autoencoder
        (``latent.steps``, checkpoints in ``<run_dir>/autoencoder``; skipped when resuming a
        run whose diffusion stage has begun), then the diffusion U-Net on its frozen latents."""
        if not self.latent:
            return super().fit(data, run_dir=run_dir, resume=resume, validate=validate, **train_options)
        if train_options:
            self.config.train = _replace(self.config.train, train_options, "train")
        run_dir = run_dir if run_dir is not None else self.config.train.run_dir
        if resume is not False and resume is not True:  # a diffusion-stage checkpoint: it holds the autoencoder
            stage2_resume = resume
        else:
            started = run_dir is not None and latest_checkpoint(run_dir) is not None
            stage2_resume = bool(resume) and started
            if not stage2_resume:
                a = self.config.latent
                stage = _replace(self.config.train, {"steps": a.steps, "lr": a.lr, "ema_decay": None}, "train")
                folder = None if run_dir is None else Path(run_dir) / "autoencoder"
                if resume and (folder is None or latest_checkpoint(folder) is None):
                    raise FileNotFoundError(f"nothing to resume: no checkpoints in {run_dir} or {folder}")
                dataset = self.training_data(data)
                self.model.autoencoder.requires_grad_(True)
                Trainer(self.model.autoencoder, self._autoencoder_loss, dataset, stage, run_dir=folder,
                        header=self._header).fit(resume=bool(resume))
                volumes = dataset if isinstance(dataset, torch.Tensor) else dataset.parts["image"]
                self.model.autoencoder.eval()
                self.model.fit_scale(volumes)
        self.model.autoencoder.requires_grad_(False)
        return super().fit(data, run_dir=run_dir, resume=stage2_resume, validate=validate)

    def _autoencoder_loss(self, autoencoder: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        x = augment_batch(batch["image"] if isinstance(batch, dict) else batch, self.config.data, generator)
        return autoencoder_loss(autoencoder, x, self.config.latent.kl_weight)

    def training_data(self, data: Any = None) -> torch.Tensor | torch.utils.data.Dataset:
        d = self.config.data
        if data is None and d.path:
            return self._from_records(*own_volume_records(d.path, labels=d.labels, covariates=d.covariates,
                                                          log=self.data_log, return_indices=True))
        if isinstance(data, (str, os.PathLike)) or (isinstance(data, (list, tuple)) and data
                                                     and all(isinstance(x, (str, os.PathLike)) for x in data)):
            return self._from_records(*own_volume_records(data, log=self.data_log, return_indices=True))
        if isinstance(data, (list, tuple)) and all(isinstance(x, dict) for x in data):
            return self._from_records(list(data))
        if self.conditional:
            return self._conditional_data(data)
        if isinstance(data, torch.Tensor):
            return self._check_volumes(data, "training volumes")
        if data is not None:
            raise TypeError(f"volumes training data is a tensor (N, 1, *shape), a folder / glob / file path (or a list "
                            f"of them) or a list of records {{'image': path, ...}}; got {type(data).__name__}")
        volumes, self.grid_affine = training_volumes(d, log=self.data_log)
        return volumes

    def _from_records(self, records: list[dict[str, Any]],
                      indices: Sequence[int] | None = None) -> torch.Tensor | torch.utils.data.Dataset:
        """Records on the network grid (unusable volumes reported in ``data_log`` by ``indices``)."""
        c = self.config.condition
        if c.image == "paired":
            return self._conditional_data(records)
        for i, record in enumerate(records):
            if not isinstance(record, dict) or "image" not in record:
                raise ValueError(f"record {i} must be a dict with an 'image' path, got {record!r}")
        if not records:
            raise ValueError("no training records")
        parts, self.grid_affine = records_on_grid(records, self.config.data, names=c.names, label=c.image == "label",
                                                  log=self.data_log, indices=indices)
        if "label_max" in parts:
            self.label_max = float(parts.pop("label_max"))
        return self._conditional_data(parts) if self.conditional else parts["image"]

    def _check_volumes(self, data: torch.Tensor, what: str) -> torch.Tensor:
        expected = (1, *self.network_shape)
        if not isinstance(data, torch.Tensor) or tuple(data.shape[1:]) != expected:
            raise ValueError(f"{what} must have shape (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(getattr(data, 'shape', ()))}")
        return finite_array(what, data)

    def _conditional_data(self, data: Any) -> torch.utils.data.Dataset:
        """Images, paired condition images and covariates as one dataset of dicts."""
        c = self.config.condition
        if data is None and (c.names or c.image in ("paired", "label")):
            needs = c.names or ("label maps" if c.image == "label" else "a paired image")
            raise ValueError(f"a model conditioned on {needs} needs training data with those values: --data FOLDER with "
                             "--labels / --covariates, fit({'image': ..., 'condition': ..., <covariate>: ...}) or a "
                             "list of records")
        if data is None:
            volumes, self.grid_affine = training_volumes(self.config.data, log=self.data_log)
            data = {"image": volumes}
        if isinstance(data, (list, tuple)):
            data = self._read_records(data)
        if not isinstance(data, dict) or "image" not in data:
            raise ValueError("conditional training data must be a dict with an 'image' tensor (N, 1, *shape) or a "
                             "list of records {'image': path, ...}")
        images = self._check_volumes(data["image"], "data['image']")
        n = images.shape[0]
        parts = {"image": images}
        if c.image == "label":
            if "label" not in data:
                raise ValueError("condition.image is 'label': the training data needs 'label' maps (--labels DIR)")
            parts["condition"] = self._check_volumes(data["label"], "data['label']")
        if c.image == "paired":
            if "condition" not in data:
                raise ValueError("condition.image is 'paired': the training data needs 'condition' volumes")
            parts["condition"] = self._check_volumes(data["condition"], "data['condition']")
            if parts["condition"].shape[0] != n:
                raise ValueError(f"{parts['condition'].shape[0]} condition volumes for {n} images")
        if c.names:
            missing = [name for name in c.names if name not in data]
            if missing:
                raise ValueError(f"the training data has no values for the covariate(s) {missing}")
            columns = [torch.as_tensor(data[name], dtype=torch.float32).flatten() for name in c.names]
            wrong = [name for name, col in zip(c.names, columns) if col.numel() != n]
            if wrong:
                raise ValueError(f"covariate(s) {wrong} need one value per image ({n})")
            covariates = torch.stack(columns, 1)
            for k, name in enumerate(c.classes, start=len(c.scalars)):  # checks the class indices
                covariate_tensor({name: covariates[:, k][~covariates[:, k].isnan()]}, [name], c.classes,
                                 int((~covariates[:, k].isnan()).sum()))
            scalars = covariates[:, : len(c.scalars)]
            embedding = self.model.covariates
            for k, name in enumerate(c.scalars):
                known = scalars[:, k][~scalars[:, k].isnan()]
                if known.numel() == 0:
                    raise ValueError(f"covariate {name!r} has no known value in the training data")
                embedding.mean[k] = known.mean()
                embedding.std[k] = known.std().clamp_min(1e-6) if known.numel() > 1 else 1.0
            parts["covariates"] = covariates
        return _Records(parts)

    def _read_records(self, records: Sequence[Any]) -> dict[str, Any]:
        """MONAI-style records ``{"image": path, "condition": path, <covariate>: value}`` on the network grid."""
        d = self.config.data
        out: dict[str, list] = {}
        affines = []
        for i, record in enumerate(records):
            if not isinstance(record, dict) or "image" not in record:
                raise ValueError(f"record {i} must be a dict with an 'image' path, got {record!r}")
            grid = NetworkGrid(load_volume(record["image"], d.npz_axcodes), self.network_shape, d.percentiles, d.margin)
            out.setdefault("image", []).append(grid.network.as_tensor()[None])
            affines.append(grid.affine)
            if self.config.condition.image == "paired":
                if "condition" not in record:
                    raise ValueError(f"record {i} ({record['image']}) has no 'condition' volume")
                pair = NetworkGrid(load_volume(record["condition"], d.npz_axcodes), self.network_shape,
                                   d.percentiles, d.margin)
                out.setdefault("condition", []).append(pair.network.as_tensor()[None])
            for name in self.config.condition.names:
                value = record.get(name)
                out.setdefault(name, []).append(math.nan if value is None or value == "" else float(value))
        if not records:
            raise ValueError("no training records")
        self.grid_affine = torch.stack(affines).mean(0)
        return {k: torch.cat(v).float() if k in ("image", "condition") else torch.tensor(v) for k, v in out.items()}

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        c = self.config.condition
        cond: dict[str, torch.Tensor] = {}
        if isinstance(batch, dict):
            pair = c.image in ("paired", "label")
            volumes = torch.cat([batch["image"], batch["condition"]], 1) if pair else batch["image"]
            if c.image == "label":  # the same warp for volume and label map; the intensity change for the volume only
                d = self.config.data
                volumes = augment_batch(volumes, dataclasses.replace(d, intensity=0.0), generator)
                still = dataclasses.replace(d, flip_axes=[], rotate_degrees=0.0, scale=0.0)
                volumes = torch.cat([augment_batch(volumes[:, :1], still, generator), volumes[:, 1:]], 1)
            else:
                volumes = augment_batch(volumes, self.config.data, generator)  # the same warp for image and pair
            x0 = volumes[:, :1]
            if pair:
                cond["image"] = volumes[:, 1:]
            elif c.image == "lowres":
                cond["image"] = degrade(x0, c.factor)
            elif c.image == "masked":
                cond["image"] = blank(x0, random_boxes(x0.shape[2:], x0.shape[0], generator, x0.device))
            if "covariates" in batch:
                covariates = batch["covariates"].to(x0.device)
                drop = torch.rand(x0.shape[0], generator=generator, device=generator.device).to(x0.device) < c.dropout
                cond["covariates"] = torch.where(drop[:, None], torch.full_like(covariates, math.nan), covariates)
        else:
            x0 = augment_batch(batch, self.config.data, generator)
        if self.latent:  # the frozen autoencoder's scaled latents (no gradient, outside DDP)
            inner = getattr(model, "module", model)
            inner.autoencoder.eval()
            x0 = inner.encode(x0)
        schedule, prediction = schedule_from_monai(self.scheduler())
        n = schedule.num_steps
        k = torch.randint(0, n, (x0.shape[0],), generator=generator, device=generator.device).to(x0.device)
        t = (k.double() + 1.0) / n
        alpha = schedule.alpha(t).float().to(x0.device).view(-1, 1, 1, 1, 1)
        sigma = schedule.sigma(t).float().to(x0.device).view(-1, 1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
        x_t = alpha * x0 + sigma * eps
        target = {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}[prediction]
        out = model(x_t, timesteps=k, **cond)
        return (out - target).pow(2).flatten(1).mean(1)

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"grid_affine": self.grid_affine.tolist()}
        if self.config.condition.image == "label":
            out["label_max"] = self.label_max
        return out

    def load_metadata(self, metadata) -> None:
        if "grid_affine" in metadata:
            self.grid_affine = torch.as_tensor(metadata["grid_affine"], dtype=torch.float64)
        if "label_max" in metadata:
            self.label_max = float(metadata["label_max"])

    # -- sampling -------------------------------------------------------------------------------

    def _check_shape(self, shape: Sequence[int], what: str) -> tuple[int, int, int]:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or any(s < self.divisor or s % self.divisor for s in shape):
            raise ValueError(f"{what} must be 3 sizes, multiples of {self.divisor} (the U-Net's downsampling), "
                             f"got {list(shape)}")
        return shape

    def sample(self, n: int, *, steps: int | None = None, solver: str | None = None, seed: int | None = None,
               batch_size: int | None = None, **conditions) -> Any:
        """:meth:`Generator.sample` with the volumes domain's conditions (:meth:`sample_batch`)
        checked before any work: numbers finite and in range, ``image`` / ``mask`` read once
        and checked (real, finite, 3D, an invertible affine), errors naming the argument."""
        n = positive_int("n", n)
        steps, batch_size = optional_positive_int("steps", steps), optional_positive_int("batch_size", batch_size)
        conditions = self._checked_conditions(conditions)
        return super().sample(n, steps=steps, solver=solver, seed=seed, batch_size=batch_size, **conditions)

    def _checked_conditions(self, conditions: dict[str, Any]) -> dict[str, Any]:
        out = dict(conditions)
        level = out.get("level")
        if level is not None:
            out["level"] = level = finite_number("level", level)
            if not 0.0 < level <= 1.0:
                raise ValueError(f"level must be in (0, 1] (how far along the diffusion time the image is noised), "
                                 f"got {level}")
        if out.get("overlap") is not None:
            out["overlap"] = overlap = finite_number("overlap", out["overlap"])
            if not 0.0 <= overlap < 1.0:
                raise ValueError(f"overlap must be in [0, 1) (the fraction sliding windows share), got {overlap}")
        if out.get("guidance") is not None:
            out["guidance"] = finite_number("guidance", out["guidance"])
        if out.get("clip") is not None and not isinstance(out["clip"], (bool, np.bool_)):
            raise ValueError(f"clip must be True or False, got {out['clip']!r}")
        for name in ("shape", "patch_size"):
            value = out.get(name)
            if value is not None:
                if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
                    raise ValueError(f"{name} must be 3 sizes (X, Y, Z), got {value!r}")
                out[name] = self._check_shape([positive_int(f"{name}[{i}]", v) for i, v in enumerate(value)], name)
        for name in ("image", "mask"):
            if out.get(name) is not None:
                out[name] = sampling.as_volume(out[name], name)
        return out

    def sample_batch(self, model: nn.Module, n: int, **options) -> list[MetaTensor]:
        """One chunk of :meth:`sample` (conditions: see :meth:`_sample_batch`); a NaN or inf
        made after the core solver (latent decode, the map back to an input's grid) raises
        FloatingPointError instead of reaching a returned volume."""
        out = self._sample_batch(model, n, **options)
        for i, volume in enumerate(out):
            sampling.check_finite(volume, f"sample {i} of the chunk after the last solver step (decoding it or "
                                          "mapping it back onto the input's grid)")
        return out

    def _sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                      shape: Sequence[int] | None = None, patch_size: Sequence[int] | None = None,
                      overlap: float | None = None, image: Any = None, level: float | None = None,
                      mask: Any = None, clip: bool | None = None, spacing: str | None = None,
                      condition: dict[str, Any] | None = None, guidance: float | None = None,
                      **conditions) -> list[MetaTensor]:
        """Pick the sampling mode (:mod:`sciogen.volumes.sampling`) from the model's condition
        and the arguments: inpainting (``mask=``), image-conditioned, SDEdit (``image=``) or
        unconditional."""
        if conditions:
            raise ValueError(f"unknown sampling conditions {sorted(conditions)}; the volumes domain takes shape=, "
                             "patch_size=, overlap=, image=, level=, mask=, clip=, spacing=, condition=, guidance=")
        s, c = self.config.sampling, self.config.condition
        patch_size = s.patch_size if patch_size is None else patch_size
        if patch_size is not None:
            if self.latent:
                raise ValueError("patch_size= (sliding window) is for pixel-space models; a latent model generates "
                                 "large volumes whole (its U-Net works on the small latent grid)")
            patch_size = self._check_shape(patch_size, "patch_size")
        chunk = sampling.Chunk(model, n, generator, steps, solver, patch_size,
                               s.overlap if overlap is None else float(overlap))
        if isinstance(condition, (list, tuple)):  # the CLI's NAME=VALUE pairs
            condition = dict(condition)
        covariates = covariate_tensor(condition, c.names, c.classes, n)
        guidance = c.guidance if guidance is None else float(guidance)
        if guidance != 1.0 and not c.names:
            raise ValueError("guidance= is classifier-free guidance on covariates; this model has none")
        cond = {} if covariates is None else {"covariates": covariates.to(chunk.device)}
        if c.image == "masked":
            if image is None or mask is None:
                raise ValueError("this is an inpainting model (condition.image='masked'): pass image= and mask= "
                                 "(nonzero where the volume is to be generated)")
            return sampling.sample_inpainted(self, chunk, image, mask, cond)
        if c.image != "none":
            if image is None:
                what = "a label map on a volume's grid" if c.image == "label" else "the volume to super-resolve or translate"
                raise ValueError(f"this model is conditioned on an image (condition.image={c.image!r}): pass image=, "
                                 f"{what} (sciogen sample --image FILE)")
            if mask is not None or level is not None or shape is not None:
                raise ValueError("an image-conditioned model takes image= as its condition; mask=, level= and shape= "
                                 "do not apply")
            return sampling.sample_from_image(self, chunk, image, clip=clip, spacing=spacing, guidance=guidance,
                                              cond=cond)
        if mask is not None and image is None:
            raise ValueError("mask= needs image=: the volume whose masked region is to be generated")
        if image is not None and mask is not None:
            return sampling.sample_inpainted(self, chunk, image, mask)
        if image is not None:
            return sampling.sample_sdedit(self, chunk, image, s.level if level is None else float(level))
        shape = self._check_shape(shape or self.network_shape, "shape")
        return sampling.sample_unconditional(self, chunk, shape, clip=clip, spacing=spacing, guidance=guidance,
                                             cond=cond, condition=condition)

    def inpaint(self, image: Any, mask: Any, *, n: int = 1, steps: int | None = None, seed: int | None = None,
                **options) -> list[MetaTensor]:
        """``n`` completions of ``image`` where ``mask`` is nonzero (the region to generate): by
        the model itself if it was trained to fill holes (``condition.image: masked``, the
        blanked volume and the mask concatenated to its input), else by replacement inpainting
        (the known voxels are re-noised to each step's level and kept exactly in the
        estimate). Outside the mask the result is the input, voxel for voxel;
        inside, the generated content mapped back from the network grid. Input units and affine
        are kept. Options: ``solver``, ``batch_size``."""
        return self.sample(n, steps=steps, seed=seed, image=image, mask=mask, **options)

    def augment(self, image: Any, *, level: float | None = None, n: int = 1, steps: int | None = None,
                seed: int | None = None, **options) -> list[MetaTensor]:
        """``n`` SDEdit variants of ``image`` (a path or ``(C, X, Y, Z)`` MetaTensor; its first
        channel), in the input's units and geometry (module docstring).

        ``level`` in (0, 1]: the diffusion time the image is noised to (default
        ``config.sampling.level``); ``steps``: solver steps over the full time range, scaled
        to ``level`` (at least 1). Options: ``solver``, ``patch_size``, ``batch_size``.
        """
        steps = optional_positive_int("steps", steps) or self.config.sampling.steps
        level = self._checked_conditions({"level": self.config.sampling.level if level is None else level})["level"]
        return self.sample(n, steps=max(1, round(steps * level)), seed=seed, image=image, level=level, **options)

    @classmethod
    def add_sample_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--image", help="a volume (NIfTI / MHA / NRRD): the condition of an image-conditioned "
                                            "model (super-resolution, translation; a label map for a model trained "
                                            "with --labels), else the volume to make SDEdit variants of")
        parser.add_argument("--guidance", type=float, help="classifier-free guidance scale on the covariates (1: none)")
        parser.add_argument("--level", type=float, help="SDEdit noise level in (0, 1] for --image")
        parser.add_argument("--mask", help="with --image: a mask volume, nonzero where the image is to be generated "
                                           "(inpainting)")
        parser.add_argument("--shape", type=int, nargs=3, help="generate volumes of this size (default: the model's)")
        parser.add_argument("--patch-size", dest="patch_size", type=int, nargs=3,
                            help="run the network by sliding window with this patch size (bounded memory)")

    # -- evaluation and files ----------------------------------------------------------------------

    def reference_data(self) -> Any:
        d = self.config.data
        try:
            if d.path:
                records = own_volume_records(d.path, log=RecordLog())
                return records_on_grid(records, d, log=RecordLog())[0]["image"]
            return training_volumes(d)[0]
        except (FileNotFoundError, OSError, ValueError):
            return None

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None, download: bool = False) -> dict[str, float]:
        """:func:`sciogen.volumes.evaluate` of ``samples`` against ``reference``: volumes, a
        folder / glob / file of them (e.g. the training folder), or a registered dataset
        name (``mni152_2009``; ``download``: fetch it when the cache has no copy).

        Reference volumes from files are put on the samples' grid the way training maps its
        volumes (RAS, foreground box, cube, resize; intensity percentiles 0.5 / 99.5 to
        [-1, 1]), except those already on it (the samples' shape, values in [-1, 1]: e.g.
        another run's samples), which are compared as they are.
        """
        if isinstance(reference, (str, Path)):
            reference = reference_volumes(reference, tuple(_first(samples).shape[1:]), download)
        elif download:
            raise ValueError("download=True fetches a registered dataset named by reference=")
        return evaluate(samples, reference)

    @classmethod
    def write_samples(cls, samples: list[torch.Tensor], path: str | Path) -> Path:
        """Write ``sample_000.nii.gz`` ... (each with its affine) and ``metrics.json`` into the folder ``path``.

        Volumes are written one file per sample, so ``path`` is a folder (``output_formats``):
        a name ending in a file suffix (``x.nii.gz``, ``x.csv``) is refused, naming the format.
        """
        folder = Path(path)
        if not (str(path).endswith(("/", os.sep)) or folder.is_dir()) and re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]{0,5}",
                                                                                       folder.suffix):
            raise ValueError(f"{path}: volume samples are written as a folder (one sample_NNN.nii.gz per sample and "
                             f"metrics.json), not a {''.join(folder.suffixes)!r} file; give a folder name without a "
                             "suffix, e.g. samples/")
        folder.mkdir(parents=True, exist_ok=True)
        for i, volume in enumerate(samples):
            write_volume(volume, folder / f"sample_{i:03d}.nii.gz")
        (folder / "metrics.json").write_text(json.dumps(evaluate(samples), indent=2))
        return folder

    @classmethod
    def read_samples(cls, path: str | Path) -> list[MetaTensor]:
        """The volumes of a folder (``*.nii.gz``, ``*.nii``, ``*.mha``, ``*.nrrd``), or one file."""
        path = Path(path)
        if path.is_dir():
            files = sorted(f for pattern in ("*.nii.gz", "*.nii", "*.mha", "*.nrrd") for f in path.glob(pattern))
            if not files:
                raise FileNotFoundError(f"no volumes (.nii.gz, .nii, .mha, .nrrd) in {path}")
            return [read_volume(f) for f in files]
        return [read_volume(path)]


#: the images of each registered volumes dataset that serve as a reference (not its tissue maps)
REFERENCE_FILES = {"mni152_2009": ["mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"]}


def reference_volumes(reference: str | Path, shape: Sequence[int], download: bool = False) -> torch.Tensor:
    """A folder / glob / file of volumes, or a registered dataset name, as ``(N, 1, *shape)``
    (see :meth:`VolumeGenerator.evaluate_samples`); unusable volumes are reported on stderr."""
    from .config import VolumeDataConfig

    name = str(reference)
    if name in REFERENCE_FILES and not Path(name).exists():
        files = [registry_file(f, download) for f in REFERENCE_FILES[name]]
    elif download:
        raise ValueError(f"--download fetches a registered dataset; {name!r} is none of {sorted(REFERENCE_FILES)}")
    else:
        try:
            files = [str(f) for f in find_volumes(name)]
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{err}; --reference is a folder, glob or file of volumes, or a registered "
                                    f"dataset: {', '.join(sorted(REFERENCE_FILES))}") from None
    log, config, kept = RecordLog(), VolumeDataConfig(shape=[int(n) for n in shape]), []
    for i, file in enumerate(files):
        try:
            volume = load_volume(file)
            if tuple(volume.shape[1:]) != tuple(config.shape) or float(volume.abs().max()) > 1.0 + 1e-4:
                volume = NetworkGrid(volume, config.shape, config.percentiles, config.margin).network
        except (VolumeError, ValueError, OSError) as err:
            log.skip(file, i, unusable_reason(err, file))
            continue
        kept.append(plain_tensor(volume)[None, :1])
    log.kept = len(kept)
    log.report(None, "reference volumes")
    log.require(1, "reference volumes", purpose="to evaluate against")
    return torch.cat(kept).float()


def _first(samples: Any) -> torch.Tensor:
    return samples[0] if not isinstance(samples, torch.Tensor) or samples.ndim == 5 else samples


def _paths_of(data: Any) -> str | list[str]:
    """``--data`` / ``fit(data=...)`` as the ``data.path`` of a config: a path, or a list of paths
    (records ``{"image": path}`` give their images)."""
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    if isinstance(data, (list, tuple)) and data:
        if all(isinstance(x, (str, os.PathLike)) for x in data):
            return [str(x) for x in data]
        if all(isinstance(x, dict) and "image" in x for x in data):
            extra = sorted({k for x in data for k in x} - {"image"})
            if extra:
                raise ValueError(f"records with {extra} do not fit in a run config: pass a folder with labels= / "
                                 "covariates= (a CSV) instead, or fit them directly: VolumeGenerator(config).fit(records)")
            return [str(x["image"]) for x in data]
    raise TypeError(f"the volumes domain's data is a folder, glob or file path, a list of paths or records "
                    f"{{'image': path}}; got {type(data).__name__}")


class _Records(torch.utils.data.Dataset):
    """Rows of equally long tensors as dicts (default-collated into a batch dict)."""

    def __init__(self, parts: dict[str, torch.Tensor]):
        self.parts = parts

    def __len__(self) -> int:
        return next(iter(self.parts.values())).shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.parts.items()}
