"""The sampling modes of :class:`~sciogen.volumes.VolumeGenerator`, one function each; the class's
``sample_batch`` picks one from the model's condition and the arguments.

- :func:`sample_unconditional`: noise -> volumes on the network grid (or any multiple of the
  U-Net's downsampling, whole or by MONAI's sliding window), covariates with classifier-free
  guidance, a latent model decoded;
- :func:`sample_from_image`: a model conditioned on an image (super-resolution, paired
  translation, label map -> volume), generated over the image's field of view;
- :func:`sample_sdedit`: SDEdit variants of a volume: noised to ``level`` and denoised, the
  change mapped back onto the input's grid and added in its units;
- :func:`sample_inpainted`: a masked region generated (replacement guidance, or a model trained
  to fill holes); outside the mask the input, voxel for voxel.

Each returns a list of ``n`` MetaTensors. :func:`denoiser` is the core-solver model of a network
(sliding window, guidance, clipping); :func:`as_volume` and :func:`check_finite` are the input
and output checks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from torch import nn

from sciogen.diffusion import classifier_free, from_x0, inpaint, to_x0
from sciogen.diffusion import sample as core_sample
from sciogen.imaging.grid import IntensityNormalization, NetworkGrid
from sciogen.imaging.io import plain_tensor
from sciogen.train.checks import finite_array

from .conditioning import blank, degrade
from .io import VolumeError, check_affine, check_spatial_shape
from .monai_interop import MonaiUNetModel, schedule_from_monai, timestep_grid
from .training import load_volume

__all__ = ["Chunk", "denoiser", "sample_unconditional", "sample_from_image", "sample_sdedit", "sample_inpainted",
           "as_volume", "check_finite"]


@dataclass(frozen=True)
class Chunk:
    """One chunk of :meth:`~sciogen.volumes.VolumeGenerator.sample`: the network, how many
    volumes, the random generator, the solver and its steps, and the sliding window (None:
    the network runs on whole volumes)."""

    model: nn.Module
    n: int
    generator: torch.Generator
    steps: int
    solver: str
    patch_size: tuple[int, int, int] | None = None
    overlap: float = 0.25

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def denoiser(gen: Any, network: nn.Module, patch_size: Sequence[int] | None, overlap: float,
             clip: bool | None = None, guidance: float = 1.0):
    """The core-solver model of ``gen``'s ``network``: the network, or the network run by MONAI's
    sliding window; with ``guidance`` != 1, classifier-free guidance on the covariates; with
    ``clip`` (default ``config.sampling.clip``) its clean estimate clipped to [-1, 1]."""
    schedule, prediction = schedule_from_monai(gen.scheduler())
    model = _windowed(network, schedule, patch_size, overlap)
    if guidance != 1.0:
        model = classifier_free(model, guidance, null_cond={"covariates": None})
    if not (gen.config.sampling.clip if clip is None else clip):
        return model

    def clipped(x, t, **cond):
        alpha = schedule.alpha(t.double()).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        sigma = schedule.sigma(t.double()).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
        x0 = to_x0(model(x, t, **cond), x, alpha, sigma, prediction).clamp(-1.0, 1.0)
        return from_x0(x0, x, alpha, sigma, prediction)

    return clipped


def _windowed(network: nn.Module, schedule, patch_size: Sequence[int] | None, overlap: float):
    if patch_size is None:
        return MonaiUNetModel(network, schedule)

    def windowed(x, timesteps, image=None, covariates=None):
        inputs = x if image is None else torch.cat([x, image.to(x.dtype)], 1)  # windows cut through both
        out = []
        for i in range(x.shape[0]):
            def predictor(w, k=timesteps[i:i + 1], cov=None if covariates is None else covariates[i:i + 1]):
                cond = {} if image is None else {"image": w[:, x.shape[1]:]}
                if cov is not None:
                    cond["covariates"] = cov.expand(w.shape[0], -1)
                return network(w[:, :x.shape[1]], timesteps=k.expand(w.shape[0]), **cond)

            out.append(sliding_window_inference(inputs[i:i + 1], roi_size=tuple(int(p) for p in patch_size),
                                                sw_batch_size=1, predictor=predictor, overlap=overlap,
                                                mode="gaussian"))
        return torch.cat([o.as_tensor() if hasattr(o, "as_tensor") else o for o in out])

    return MonaiUNetModel(windowed, schedule)


def _state_shape(gen: Any, shape: Sequence[int]) -> tuple[int, ...]:
    """The diffused tensor of one volume of ``shape``: the volume, or its latent."""
    if not gen.latent:
        return (1, *shape)
    return (gen.config.latent.latent_channels, *(s // gen.config.latent.factor for s in shape))


def sample_unconditional(gen: Any, chunk: Chunk, shape: tuple[int, int, int], *, clip: bool | None, spacing: str | None,
                         guidance: float, cond: dict, condition: dict | None) -> list[MetaTensor]:
    """``chunk.n`` volumes of ``shape`` from noise (covariates ``cond`` with ``guidance``), with
    the mean affine of the training grid."""
    noise = torch.randn((chunk.n, *_state_shape(gen, shape)), generator=chunk.generator,
                        device=chunk.generator.device).to(chunk.device)
    schedule, prediction = schedule_from_monai(gen.scheduler())
    grid = timestep_grid(schedule.num_steps, chunk.steps,
                         spacing=gen.config.sampling.spacing if spacing is None else spacing, schedule=schedule)
    x = core_sample(denoiser(gen, chunk.model, chunk.patch_size, chunk.overlap, clip, guidance), noise,
                    schedule=schedule, prediction=prediction, solver=chunk.solver, grid=grid,
                    generator=chunk.generator, **cond)
    if gen.latent:
        x = check_finite(chunk.model.decode(x), "the latent decode after the last solver step")
    meta = {"space": "RAS", **({"condition": dict(condition), "guidance": guidance} if condition else {})}
    return [MetaTensor(x[i].float().cpu(), affine=gen.grid_affine.clone(), meta=dict(meta)) for i in range(chunk.n)]


def sample_from_image(gen: Any, chunk: Chunk, image: Any, *, clip: bool | None, spacing: str | None, guidance: float,
                      cond: dict) -> list[MetaTensor]:
    """Super-resolution / translation of ``image``: generated on the network grid over the
    input's field of view, in the input's units (its percentile normalisation inverted); a label
    map: volumes in normalised units [-1, 1] on the grid of the map's whole field of view."""
    volume = as_volume(image, "image")
    if gen.config.condition.image == "label":
        return _from_label(gen, chunk, volume, clip, spacing, guidance, cond)
    grid = NetworkGrid(volume[:1], gen.network_shape, gen.config.data.percentiles, gen.config.data.margin)
    source = grid.network.as_tensor()[None].to(chunk.device)
    if gen.config.condition.image == "lowres":
        source = degrade(source, gen.config.condition.factor)  # the degradation the model was trained on
    x = _given_source(gen, chunk, source, clip, spacing, guidance, cond)
    norm = grid.normalization
    return [MetaTensor(norm.inverse(x[i].float().cpu().clamp(-1.0, 1.0)), affine=grid.affine.clone(),
                       meta={"space": "RAS", "condition_image": gen.config.condition.image})
            for i in range(chunk.n)]


def _given_source(gen: Any, chunk: Chunk, source: torch.Tensor, clip, spacing, guidance, cond) -> torch.Tensor:
    """``n`` network-grid samples (n, 1, *network_shape) of a model conditioned on the image
    ``source`` (1, 1, *network_shape) by channel concatenation."""
    n = chunk.n
    noise = torch.randn((n, 1, *gen.network_shape), generator=chunk.generator,
                        device=chunk.generator.device).to(source.device)
    schedule, prediction = schedule_from_monai(gen.scheduler())
    ts = timestep_grid(schedule.num_steps, chunk.steps,
                       spacing=gen.config.sampling.spacing if spacing is None else spacing, schedule=schedule)
    return core_sample(denoiser(gen, chunk.model, chunk.patch_size, chunk.overlap, clip, guidance), noise,
                       schedule=schedule, prediction=prediction, solver=chunk.solver, grid=ts,
                       generator=chunk.generator, image=source.expand(n, -1, -1, -1, -1), **cond)


def _from_label(gen: Any, chunk: Chunk, label: torch.Tensor, clip, spacing, guidance, cond) -> list[MetaTensor]:
    """Volumes for a label map: the map's whole field of view on the network grid (as in
    training), samples in normalised units [-1, 1] with that grid's affine."""
    values = plain_tensor(label[:1])
    if not torch.equal(values, values.round()) or float(values.min()) < 0:
        raise VolumeError(f"image= must be a label map of non-negative integers, got values {float(values.min())} .. "
                          f"{float(values.max())}")
    window = IntensityNormalization(mode="window", window=(0.0, gen.label_max))
    grid = NetworkGrid(label[:1], gen.network_shape, normalization=window, crop=False)
    source = grid.network.as_tensor()[None].to(chunk.device)
    x = _given_source(gen, chunk, source, clip, spacing, guidance, cond)
    meta = {"space": "RAS", "condition_image": "label"}
    return [MetaTensor(x[i].float().cpu(), affine=grid.affine.clone(), meta=dict(meta)) for i in range(chunk.n)]


def sample_sdedit(gen: Any, chunk: Chunk, image: Any, level: float) -> list[MetaTensor]:
    """``n`` SDEdit variants of ``image`` noised to diffusion time ``level`` in (0, 1]: the change
    the model makes on the network grid, mapped back onto the input's grid, scaled to its units
    and added to it (clipped to its intensity range), so its fine detail is kept."""
    if not 0.0 < level <= 1.0:
        raise ValueError(f"level must be in (0, 1] (how far along the diffusion time the image is noised), got {level}")
    n, model, generator = chunk.n, chunk.model, chunk.generator
    volume = as_volume(image, "image")
    grid = NetworkGrid(volume[:1], gen.network_shape, gen.config.data.percentiles, gen.config.data.margin)
    x0 = grid.network.as_tensor()[None].to(chunk.device).expand(n, -1, -1, -1, -1)
    if gen.latent:
        x0 = model.encode(x0)
    schedule, prediction = schedule_from_monai(gen.scheduler())
    start = max(0, round(level * schedule.num_steps) - 1)
    ts = timestep_grid(schedule.num_steps, max(1, min(int(chunk.steps), start + 1)), start=start,
                       spacing=gen.config.sampling.spacing, schedule=schedule)
    t0 = ts[:1]
    noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(chunk.device)
    x_t = float(schedule.alpha(t0)) * x0 + float(schedule.sigma(t0)) * noise
    out = core_sample(denoiser(gen, model, chunk.patch_size, chunk.overlap), x_t, schedule=schedule,
                      prediction=prediction, solver=chunk.solver, grid=ts, generator=generator)
    if gen.latent:  # the change between decoded volumes: the autoencoder's own error cancels
        out = check_finite(model.decode(out), "the latent decode after the last solver step")
        x0 = check_finite(model.decode(x0), "the latent decode of the input image")
    original = plain_tensor(volume[:1]).float()
    norm = grid.normalization
    scale = (norm.high - norm.low) / (norm.out_range[1] - norm.out_range[0])  # network units -> input units
    results = []
    for i in range(n):
        delta = plain_tensor(grid.inverse((out[i] - x0[i]).cpu()))
        variant = (original + scale * delta).clamp(float(original.min()), float(original.max()))
        results.append(MetaTensor(variant, affine=_affine(volume), meta={"sdedit_level": level}))
    return results


def sample_inpainted(gen: Any, chunk: Chunk, image: Any, mask: Any, cond: dict | None = None) -> list[MetaTensor]:
    """``n`` completions of ``image`` where ``mask`` is nonzero: by a model trained to fill holes
    (``condition.image: masked``), else by replacement guidance on the network grid; outside the
    mask the input voxel for voxel, inside the generated content in the input's units."""
    if gen.latent:
        raise ValueError("inpainting keeps the known voxels exactly, which a latent model cannot (its latent voxels "
                         "mix 'known' and 'masked' ones); use a pixel-space model")
    n, generator = chunk.n, chunk.generator
    volume = as_volume(image, "image")
    hole = as_volume(mask, "mask")[:1].float()
    if hole.shape[1:] != volume.shape[1:]:
        raise ValueError(f"mask spatial shape {tuple(hole.shape[1:])} != image spatial shape {tuple(volume.shape[1:])}")
    if not bool((hole > 0).any()):
        raise ValueError("the mask is empty: mark the region to generate with nonzero voxels")
    grid = NetworkGrid(volume[:1], gen.network_shape, gen.config.data.percentiles, gen.config.data.margin,
                       extra=(hole > 0).float())
    device = chunk.device
    known = grid.network.as_tensor()[:1][None].to(device)
    keep = (grid.network.as_tensor()[1:2][None] < 0.5).to(device)  # known voxels on the network grid
    schedule, prediction = schedule_from_monai(gen.scheduler())
    cond = dict(cond or {})
    if gen.config.condition.image == "masked":  # a model trained to fill holes: the hole is its condition
        guided = denoiser(gen, chunk.model, chunk.patch_size, chunk.overlap)
        cond["image"] = blank(known, (~keep).float()).expand(n, -1, -1, -1, -1)
    else:  # replacement guidance on an unconditional model
        guided = inpaint(denoiser(gen, chunk.model, chunk.patch_size, chunk.overlap), known, keep, schedule=schedule,
                         prediction=prediction, generator=generator)
    noise = torch.randn((n, 1, *gen.network_shape), generator=generator, device=generator.device).to(device)
    out = core_sample(guided, noise, schedule=schedule, prediction=prediction, solver=chunk.solver,
                      grid=timestep_grid(schedule.num_steps, chunk.steps, spacing=gen.config.sampling.spacing,
                                         schedule=schedule), generator=generator, **cond)
    original = plain_tensor(volume[:1]).float()
    inside = plain_tensor(hole) > 0
    results = []
    for i in range(n):
        filled = grid.inverse(torch.cat([out[i].cpu().clamp(-1.0, 1.0), torch.zeros_like(out[i].cpu())]))[:1]
        variant = torch.where(inside, grid.normalization.inverse(plain_tensor(filled)), original)
        results.append(MetaTensor(variant, affine=_affine(volume), meta={"inpainted_voxels": int(inside.sum())}))
    return results


def as_volume(value: Any, name: str) -> torch.Tensor:
    """A path or a channel-first 3D array / tensor / MetaTensor -> ``(C, X, Y, Z)`` float32
    (a MetaTensor, with its affine; identity for plain arrays), checked: real, finite, at
    least :data:`~sciogen.volumes.io.MIN_SIDE` voxels a side, an invertible affine. The
    errors name ``name`` and the file."""
    if isinstance(value, (str, os.PathLike)):
        volume = load_volume(value)
        source = f"{name} ({value})"
    elif isinstance(value, (torch.Tensor, np.ndarray)):
        volume, source = value, name
    else:
        raise ValueError(f"{name} must be a path or a channel-first 3D volume (C, X, Y, Z), got {type(value).__name__}")
    if volume.ndim != 4:
        raise ValueError(f"{source} must be a channel-first 3D volume (C, X, Y, Z), got shape {tuple(volume.shape)}")
    if volume.shape[0] == 0:
        raise ValueError(f"{source} has no channels (shape {tuple(volume.shape)})")
    check_spatial_shape(volume.shape[1:], source)
    affine = getattr(volume, "affine", None)
    affine = torch.eye(4, dtype=torch.float64) if affine is None else torch.as_tensor(check_affine(affine, source))
    voxels = finite_array(source, plain_tensor(volume) if isinstance(volume, torch.Tensor) else volume)
    meta = {k: v for k, v in volume.meta.items() if k != "affine"} if isinstance(volume, MetaTensor) else {}
    return MetaTensor(voxels, affine=affine, meta=meta)


def check_finite(volumes: torch.Tensor, what: str) -> torch.Tensor:
    """``volumes``, or FloatingPointError: a NaN / inf made outside the core solvers (a latent
    decode, the map back to the input's grid) must not reach a returned volume."""
    if not math.isfinite(float(volumes.float().sum())):
        raise FloatingPointError(f"non-finite values appeared in {what}; the network's weights or the input are "
                                 "broken (check the checkpoint, or sample with a pixel-space model)")
    return volumes


def _affine(volume: torch.Tensor) -> torch.Tensor:
    affine = getattr(volume, "affine", None)
    return torch.eye(4, dtype=torch.float64) if affine is None else torch.as_tensor(affine, dtype=torch.float64).clone()
