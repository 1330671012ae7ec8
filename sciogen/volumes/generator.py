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
maps a user's volume onto the network grid (:class:`~sciogen.volumes.data.NetworkGrid`),
noises it to ``level`` and denoises it; the change the model made is mapped back onto the
input's own grid, scaled to the input's units and added to the input (clipped to the input's
intensity range), so the fine detail the network grid cannot hold is kept, with its affine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from sciogen.diffusion import from_x0, inpaint, to_x0
from sciogen.diffusion import sample as core_sample
from sciogen.train.generator import Generator

from .config import VolumeConfig
from .data import NetworkGrid, augment_batch, load_volume, training_volumes
from .io import read_volume, write_volume
from .metrics import evaluate
from .monai_interop import MonaiUNetModel, schedule_from_monai, timestep_grid

__all__ = ["VolumeGenerator", "export_model"]


class VolumeGenerator(Generator):
    """3D volumes by diffusion on a MONAI U-Net. Domain ``"volumes"``.

    ``fit(data)`` accepts a tensor of network-ready volumes ``(N, 1, *config.data.shape)``
    in [-1, 1], a list of volume paths, or nothing (``config.data``).
    """

    domain = "volumes"
    config_class = VolumeConfig
    example_output = "samples/"  # what `sciogen train` suggests for --out: volumes go to a folder

    def __init__(self, config: VolumeConfig | None = None):
        super().__init__(config)
        self.grid_affine = torch.eye(4, dtype=torch.float64)

    # -- parts -------------------------------------------------------------------------------

    @property
    def network_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.config.data.shape)

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.config.model.channels) - 1)

    def scheduler(self) -> DDPMScheduler:
        """The MONAI scheduler the network is trained with (its betas and prediction type)."""
        p = self.config.process
        return DDPMScheduler(num_train_timesteps=p.num_train_timesteps, schedule=p.schedule, beta_start=p.beta_start,
                             beta_end=p.beta_end, prediction_type=p.prediction)

    def build_model(self) -> nn.Module:
        m = self.config.model
        bad = [n for n in self.network_shape if n % self.divisor]
        if bad:
            raise ValueError(f"data.shape {list(self.network_shape)} must be multiples of {self.divisor} for "
                             f"model.channels {m.channels}")
        return DiffusionModelUNet(spatial_dims=3, in_channels=1, out_channels=1, channels=tuple(m.channels),
                                  attention_levels=tuple(m.attention_levels), num_res_blocks=m.num_res_blocks,
                                  norm_num_groups=m.norm_num_groups, num_head_channels=8)

    def training_data(self, data: Any = None) -> torch.Tensor:
        if isinstance(data, torch.Tensor):
            expected = (1, *self.network_shape)
            if tuple(data.shape[1:]) != expected:
                raise ValueError(f"training volumes must have shape (N, {', '.join(map(str, expected))}), "
                                 f"got {tuple(data.shape)}")
            return data.float()
        volumes, self.grid_affine = training_volumes(self.config.data, None if data is None else list(data))
        return volumes

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x0 = augment_batch(batch, self.config.data, generator)
        schedule, prediction = schedule_from_monai(self.scheduler())
        n = schedule.num_steps
        k = torch.randint(0, n, (x0.shape[0],), generator=generator, device=generator.device).to(x0.device)
        t = (k.double() + 1.0) / n
        alpha = schedule.alpha(t).float().to(x0.device).view(-1, 1, 1, 1, 1)
        sigma = schedule.sigma(t).float().to(x0.device).view(-1, 1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
        x_t = alpha * x0 + sigma * eps
        target = {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}[prediction]
        out = model(x_t, timesteps=k)
        return (out - target).pow(2).flatten(1).mean(1)

    def metadata(self) -> dict[str, Any]:
        return {"grid_affine": self.grid_affine.tolist()}

    def load_metadata(self, metadata) -> None:
        if "grid_affine" in metadata:
            self.grid_affine = torch.as_tensor(metadata["grid_affine"], dtype=torch.float64)

    # -- sampling -------------------------------------------------------------------------------

    def _model(self, network: nn.Module, patch_size: Sequence[int] | None, overlap: float, clip: bool | None = None):
        """The core-solver model: the network, or the network run by MONAI's sliding window;
        with ``clip`` (default ``config.sampling.clip``) its clean estimate clipped to [-1, 1]."""
        schedule, prediction = schedule_from_monai(self.scheduler())
        model = self._windowed(network, schedule, patch_size, overlap)
        if not (self.config.sampling.clip if clip is None else clip):
            return model

        def clipped(x, t, **cond):
            alpha = schedule.alpha(t.double()).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
            sigma = schedule.sigma(t.double()).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
            x0 = to_x0(model(x, t, **cond), x, alpha, sigma, prediction).clamp(-1.0, 1.0)
            return from_x0(x0, x, alpha, sigma, prediction)

        return clipped

    @staticmethod
    def _windowed(network: nn.Module, schedule, patch_size: Sequence[int] | None, overlap: float):
        if patch_size is None:
            return MonaiUNetModel(network, schedule)

        def windowed(x, timesteps):
            out = [sliding_window_inference(
                x[i:i + 1], roi_size=tuple(int(p) for p in patch_size), sw_batch_size=1,
                predictor=lambda w, k=timesteps[i:i + 1]: network(w, timesteps=k.expand(w.shape[0])),
                overlap=overlap, mode="gaussian") for i in range(x.shape[0])]
            return torch.cat([o.as_tensor() if hasattr(o, "as_tensor") else o for o in out])

        return MonaiUNetModel(windowed, schedule)

    def _check_shape(self, shape: Sequence[int], what: str) -> tuple[int, int, int]:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or any(s < self.divisor or s % self.divisor for s in shape):
            raise ValueError(f"{what} must be 3 sizes, multiples of {self.divisor} (the U-Net's downsampling), "
                             f"got {list(shape)}")
        return shape

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     shape: Sequence[int] | None = None, patch_size: Sequence[int] | None = None,
                     overlap: float | None = None, image: Any = None, level: float | None = None,
                     mask: Any = None, clip: bool | None = None, spacing: str | None = None,
                     **conditions) -> list[MetaTensor]:
        if conditions:
            raise ValueError(f"unknown sampling conditions {sorted(conditions)}; the volumes domain takes shape=, "
                             "patch_size=, overlap=, image=, level=, mask=, clip=, spacing=")
        s = self.config.sampling
        patch_size = s.patch_size if patch_size is None else patch_size
        overlap = s.overlap if overlap is None else float(overlap)
        if patch_size is not None:
            patch_size = self._check_shape(patch_size, "patch_size")
        if mask is not None and image is None:
            raise ValueError("mask= needs image=: the volume whose masked region is to be generated")
        if image is not None and mask is not None:
            return self._inpaint_batch(model, n, image, mask, steps, solver, generator, patch_size, overlap)
        if image is not None:
            return self._augment_batch(model, n, image, s.level if level is None else float(level), steps, solver,
                                       generator, patch_size, overlap)
        shape = self._check_shape(shape or self.network_shape, "shape")
        device = next(model.parameters()).device
        noise = torch.randn((n, 1, *shape), generator=generator, device=generator.device).to(device)
        schedule, prediction = schedule_from_monai(self.scheduler())
        grid = timestep_grid(schedule.num_steps, steps, spacing=s.spacing if spacing is None else spacing,
                             schedule=schedule)
        x = core_sample(self._model(model, patch_size, overlap, clip), noise, schedule=schedule, prediction=prediction,
                        solver=solver, grid=grid, generator=generator)
        return [MetaTensor(x[i].float().cpu(), affine=self.grid_affine.clone(), meta={"space": "RAS"})
                for i in range(n)]

    def _augment_batch(self, model, n, image, level, steps, solver, generator, patch_size, overlap) -> list[MetaTensor]:
        if not 0.0 < level <= 1.0:
            raise ValueError(f"level must be in (0, 1] (how far along the diffusion time the image is noised), got {level}")
        volume = _as_volume(image, "image")
        grid = NetworkGrid(volume[:1], self.network_shape, self.config.data.percentiles, self.config.data.margin)
        device = next(model.parameters()).device
        x0 = grid.network.as_tensor()[None].to(device).expand(n, -1, -1, -1, -1)
        schedule, prediction = schedule_from_monai(self.scheduler())
        start = max(0, round(level * schedule.num_steps) - 1)
        ts = timestep_grid(schedule.num_steps, max(1, min(int(steps), start + 1)), start=start,
                           spacing=self.config.sampling.spacing, schedule=schedule)
        t0 = ts[:1]
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(device)
        x_t = float(schedule.alpha(t0)) * x0 + float(schedule.sigma(t0)) * noise
        out = core_sample(self._model(model, patch_size, overlap), x_t, schedule=schedule, prediction=prediction,
                          solver=solver, grid=ts, generator=generator)
        original = _plain(volume[:1]).float()
        norm = grid.normalization
        scale = (norm.high - norm.low) / (norm.out_range[1] - norm.out_range[0])  # network units -> input units
        results = []
        for i in range(n):
            delta = _plain(grid.inverse((out[i] - x0[i]).cpu()))
            variant = (original + scale * delta).clamp(float(original.min()), float(original.max()))
            results.append(MetaTensor(variant, affine=_affine(volume), meta={"sdedit_level": level}))
        return results

    def _inpaint_batch(self, model, n, image, mask, steps, solver, generator, patch_size, overlap) -> list[MetaTensor]:
        volume = _as_volume(image, "image")
        hole = _as_volume(mask, "mask")[:1].float()
        if hole.shape[1:] != volume.shape[1:]:
            raise ValueError(f"mask spatial shape {tuple(hole.shape[1:])} != image spatial shape {tuple(volume.shape[1:])}")
        if not bool((hole > 0).any()):
            raise ValueError("the mask is empty: mark the region to generate with nonzero voxels")
        grid = NetworkGrid(volume[:1], self.network_shape, self.config.data.percentiles, self.config.data.margin,
                           extra=(hole > 0).float())
        device = next(model.parameters()).device
        known = grid.network.as_tensor()[:1][None].to(device)
        keep = (grid.network.as_tensor()[1:2][None] < 0.5).to(device)  # known voxels on the network grid
        schedule, prediction = schedule_from_monai(self.scheduler())
        guided = inpaint(self._model(model, patch_size, overlap), known, keep, schedule=schedule, prediction=prediction,
                         generator=generator)
        noise = torch.randn((n, 1, *self.network_shape), generator=generator, device=generator.device).to(device)
        out = core_sample(guided, noise, schedule=schedule, prediction=prediction, solver=solver,
                          grid=timestep_grid(schedule.num_steps, steps, spacing=self.config.sampling.spacing,
                                             schedule=schedule), generator=generator)
        original = _plain(volume[:1]).float()
        inside = _plain(hole) > 0
        results = []
        for i in range(n):
            filled = grid.inverse(torch.cat([out[i].cpu().clamp(-1.0, 1.0), torch.zeros_like(out[i].cpu())]))[:1]
            variant = torch.where(inside, grid.normalization.inverse(_plain(filled)), original)
            results.append(MetaTensor(variant, affine=_affine(volume), meta={"inpainted_voxels": int(inside.sum())}))
        return results

    def inpaint(self, image: Any, mask: Any, *, n: int = 1, steps: int | None = None, seed: int | None = None,
                **options) -> list[MetaTensor]:
        """``n`` completions of ``image`` where ``mask`` is nonzero (the region to generate), by
        replacement inpainting (the known voxels are re-noised to each step's level and kept
        exactly in the estimate). Outside the mask the result is the input, voxel for voxel;
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
        steps = steps or self.config.sampling.steps
        level = self.config.sampling.level if level is None else float(level)
        return self.sample(n, steps=max(1, round(steps * level)), seed=seed, image=image, level=level, **options)

    @classmethod
    def add_sample_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--image", help="a volume to make SDEdit variants of (NIfTI / MHA / NRRD)")
        parser.add_argument("--level", type=float, help="SDEdit noise level in (0, 1] for --image")
        parser.add_argument("--mask", help="with --image: a mask volume, nonzero where the image is to be generated "
                                           "(inpainting)")
        parser.add_argument("--shape", type=int, nargs=3, help="generate volumes of this size (default: the model's)")
        parser.add_argument("--patch-size", dest="patch_size", type=int, nargs=3,
                            help="run the network by sliding window with this patch size (bounded memory)")

    # -- evaluation and files ----------------------------------------------------------------------

    def reference_data(self) -> Any:
        try:
            return training_volumes(self.config.data)[0]
        except (FileNotFoundError, OSError):
            return None

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None) -> dict[str, float]:
        """:func:`sciogen.volumes.evaluate` (``reference``: volumes or a folder of them)."""
        if isinstance(reference, (str, Path)):
            reference = cls.read_samples(reference)
        return evaluate(samples, reference)

    @classmethod
    def write_samples(cls, samples: list[torch.Tensor], path: str | Path) -> Path:
        """Write ``sample_000.nii.gz`` ... (each with its affine) and ``metrics.json`` into the folder ``path``."""
        folder = Path(path)
        if folder.suffix in (".gz", ".nii", ".csv", ".pt", ".mha", ".nrrd"):
            raise ValueError(f"--out must be a folder for volume samples, got the file name {folder}")
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


def _as_volume(value: Any, name: str) -> torch.Tensor:
    """A path or a channel-first 3D tensor / MetaTensor -> ``(C, X, Y, Z)`` (MetaTensor for files)."""
    volume = load_volume(value) if isinstance(value, (str, Path)) else value
    if not isinstance(volume, torch.Tensor) or volume.ndim != 4:
        raise ValueError(f"{name} must be a path or a channel-first 3D volume (C, X, Y, Z), got "
                         f"{type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))}")
    return volume


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def _affine(volume: torch.Tensor) -> torch.Tensor:
    affine = getattr(volume, "affine", None)
    return torch.eye(4, dtype=torch.float64) if affine is None else torch.as_tensor(affine, dtype=torch.float64).clone()


def export_model(source: str | Path, destination: str | Path, half: bool = True) -> Path:
    """Export a training run for shipping: no trainer state; with ``half``, float16 weights
    (loaded back into float32 networks; the shipped file is the one measured in the card)."""
    from sciogen.train.checkpoint import export_checkpoint

    return export_checkpoint(source, destination, half=half)
