"""``LongitudinalVolumeGenerator``: the next visits of a subject from its earlier ones, SADM-style
(Yoon et al., "SADM: Sequence-Aware Diffusion Model for Longitudinal Medical Image Generation",
IPMI 2023, arXiv:2212.08228), by pixel diffusion on MONAI's ``DiffusionModelUNet`` conditioned
by :class:`~sciogen.volumes.longitudinal.network.SequenceConditioner`.

    >>> gen = LongitudinalVolumeGenerator(config).fit()          # doctest: +SKIP
    >>> nxt = gen.predict(history, times, target_time=3.5, n=4, seed=0)     # (4, 1, X, Y, Z)
    >>> path = gen.forecast(history, times, [3.5, 4.5, 5.5], n=2, seed=0)   # (2, 3, 1, X, Y, Z)

What is diffused (``model.residual``, the default): the change since the latest earlier visit,
divided by its RMS over the training set, not the visit itself (SADM generates whole images;
why this departs from it, measured, is in the volumes card). Training runs all visits of a
batch of subjects in parallel: one conditioner pass gives every slot's context, the loss
(MONAI timesteps on its beta schedule) is taken on every present visit with an earlier present
visit, all visits of a subject get the same augmentation, and each present visit is hidden
from the conditioner with probability ``data.history_dropout``. Generation runs visit after
visit: each generated visit joins the history and conditions the next. Volumes live on the
network grid in [-1, 1]; times are in any unit (``model.time_scale`` of them map to 1).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from sciogen.diffusion import from_x0, to_x0
from sciogen.diffusion import sample as core_sample
from sciogen.imaging.io import plain_tensor
from sciogen.train.checks import finite_array
from sciogen.train.generator import Generator

from ..generator import VolumeGenerator
from ..io import read_volume, write_volume
from ..metrics import evaluate, paired_error
from ..monai_interop import MonaiUNetModel, schedule_from_monai, timestep_grid
from ..training import augment_batch, load_volume, training_volumes
from .config import LongitudinalConfig
from .data import (
    HistoryError,
    LongitudinalSet,
    Subjects,
    check_times,
    latest_earlier,
    previous_visit,
    subject_on_grid,
    synthetic_longitudinal,
)
from .network import LongitudinalUNet, SequenceConditioner

__all__ = ["LongitudinalVolumeGenerator"]


class LongitudinalVolumeGenerator(Generator):
    """The next visits of a subject given earlier ones. Domain ``"volumes_longitudinal"``.

    ``fit(data)`` accepts a :class:`LongitudinalSet`, a dict ``{"visits": (S, V, 1, *shape),
    "times": (S, V), "present": (S, V)}``, a list of records ``{"image": path, "subject": id,
    <data.time_key>: time}`` (each subject's visits co-registered on one voxel grid; mapped
    by :func:`subject_on_grid`), or nothing: the synthetic set of ``config.data.synthetic``
    made from ``config.data``'s volumes. Subjects with fewer than two present visits have
    nothing to learn from and are left out (with a warning).

    ``sample(n, history=, times=, target_times=, present=)`` returns ``(n, F, 1, *shape)``
    (a MetaTensor with the grid affine); :meth:`predict` and :meth:`forecast` say the same
    in words.
    """

    domain = "volumes_longitudinal"
    config_class = LongitudinalConfig
    example_output = "forecast/"

    def __init__(self, config: LongitudinalConfig | None = None):
        super().__init__(config)
        self.grid_affine = torch.eye(4, dtype=torch.float64)
        self.residual_scale = 1.0  # RMS of the change between visits (model.residual), set by training_data

    @property
    def network_shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.config.data.shape)

    def scheduler(self) -> DDPMScheduler:
        """The MONAI scheduler the network is trained with (its betas and prediction type)."""
        return VolumeGenerator.scheduler(self)

    def build_model(self) -> LongitudinalUNet:
        m = self.config.model
        divisor = 2 ** (len(m.channels) - 1)
        if any(n % divisor for n in self.network_shape):
            raise ValueError(f"data.shape {list(self.network_shape)} must be multiples of {divisor} for "
                             f"model.channels {m.channels}")
        unet = dict(spatial_dims=3, out_channels=1, channels=tuple(m.channels),
                    attention_levels=tuple(m.attention_levels), num_res_blocks=m.num_res_blocks,
                    norm_num_groups=m.norm_num_groups, num_head_channels=8)
        conditioner = SequenceConditioner(m.encoder_channels, m.context_dim, m.tokens, m.queries, m.depth, m.heads,
                                          m.norm_num_groups, m.time_scale)
        return LongitudinalUNet(unet, conditioner, m.previous_image)

    # -- training ------------------------------------------------------------------------------

    def training_data(self, data: Any = None) -> torch.utils.data.Dataset:
        if data is None:
            volumes, self.grid_affine = training_volumes(self.config.data)
            data = synthetic_longitudinal(volumes, **asdict(self.config.data.synthetic))
        elif isinstance(data, Mapping):
            missing = [k for k in ("visits", "times", "present") if k not in data]
            if missing:
                raise ValueError(f"longitudinal training data needs {missing}: a dict {{'visits': (S, V, 1, X, Y, Z), "
                                 "'times': (S, V), 'present': (S, V)}")
            data = LongitudinalSet(data["visits"], data["times"], data["present"])
        elif isinstance(data, (list, tuple)):
            data = self._read_records(data)
        if not isinstance(data, LongitudinalSet):
            raise TypeError(f"fit() takes a LongitudinalSet, a dict of tensors or a list of records, "
                            f"got {type(data).__name__}")
        if tuple(data.visits.shape[3:]) != self.network_shape:
            raise HistoryError(f"training visits are {tuple(data.visits.shape[3:])}, the network grid (data.shape) is "
                               f"{self.network_shape}")
        usable = data.present.sum(1) >= 2
        if not bool(usable.any()):
            raise HistoryError("no subject has two present visits: nothing to learn a next visit from")
        if not bool(usable.all()):
            warnings.warn(f"{int((~usable).sum())} of {len(data)} subjects have fewer than two present visits and "
                          "are left out of training", stacklevel=2)
            data = data.subset(usable.nonzero().flatten())
        if self.config.model.residual:
            previous, has = previous_visit(data.visits, data.present)
            change = (data.visits - previous)[data.present & has]
            self.residual_scale = max(float(change.pow(2).mean().sqrt()), 1e-3)
        return Subjects(data)

    def _read_records(self, records: Sequence[Any]) -> LongitudinalSet:
        """Records grouped by subject, ordered by time, each subject on the grid by :func:`subject_on_grid`."""
        d, key = self.config.data, self.config.data.time_key
        subjects: dict[str, list[tuple[float, Any]]] = {}
        for i, record in enumerate(records):
            if not isinstance(record, Mapping) or not {"image", "subject", key} <= set(record):
                raise ValueError(f"record {i} must be a dict with 'image', 'subject' and {key!r} (the visit's time), "
                                 f"got {record!r}")
            subjects.setdefault(str(record["subject"]), []).append((float(record[key]), record["image"]))
        if not subjects:
            raise ValueError("no training records")
        v = max(len(s) for s in subjects.values())
        visits = torch.zeros(len(subjects), v, 1, *self.network_shape)
        times = torch.full((len(subjects), v), math.nan)
        present = torch.zeros(len(subjects), v, dtype=torch.bool)
        affines = []
        for i, (name, items) in enumerate(sorted(subjects.items())):
            items.sort(key=lambda item: item[0])
            grid_visits, grid = subject_on_grid([path for _, path in items], self.network_shape, d.percentiles,
                                                d.margin, d.npz_axcodes)
            visits[i, : len(items)] = grid_visits
            times[i, : len(items)] = torch.tensor([t for t, _ in items])
            present[i, : len(items)] = True
            affines.append(grid.affine)
        self.grid_affine = torch.stack(affines).mean(0)
        return LongitudinalSet(visits, times, present)

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        """Per-target losses: every present visit with an earlier visit the conditioner sees."""
        visits, times, present = batch["visits"], batch["times"], batch["present"].bool()
        b, v = present.shape
        device = visits.device
        visits = augment_batch(visits.flatten(1, 2), self.config.data, generator).view_as(visits)  # one warp a subject
        visits = torch.where(present.view(b, v, 1, 1, 1, 1), visits, torch.zeros((), device=device))
        draw = torch.rand(b, v, generator=generator, device=generator.device).to(device)
        hidden = draw < self.config.data.history_dropout
        seen = present & ~hidden
        targets = present & (latest_earlier(seen) >= 0)
        if not bool(targets.any()):
            raise HistoryError("a training batch has no visit with an earlier present visit; every subject needs two")
        index = targets.nonzero()
        x0 = visits[index[:, 0], index[:, 1]]
        if self.config.model.residual:
            x0 = (x0 - previous_visit(visits, seen)[0][index[:, 0], index[:, 1]]) / self.residual_scale
        schedule, prediction = schedule_from_monai(self.scheduler())
        n = schedule.num_steps
        k = torch.randint(0, n, (x0.shape[0],), generator=generator, device=generator.device).to(device)
        t = (k.double() + 1.0) / n
        alpha = schedule.alpha(t).float().to(device).view(-1, 1, 1, 1, 1)
        sigma = schedule.sigma(t).float().to(device).view(-1, 1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=generator, device=generator.device).to(device)
        x_t = alpha * x0 + sigma * eps
        target = {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0}[prediction]
        out = model(x_t, timesteps=k, visits=visits, times=times, present=seen, index=index)
        return (out - target).pow(2).flatten(1).mean(1)

    def metadata(self) -> dict[str, Any]:
        return {"grid_affine": self.grid_affine.tolist(), "residual_scale": self.residual_scale}

    def load_metadata(self, metadata: Mapping[str, Any]) -> None:
        if "grid_affine" in metadata:
            self.grid_affine = torch.as_tensor(metadata["grid_affine"], dtype=torch.float64)
        self.residual_scale = float(metadata.get("residual_scale", 1.0))

    # -- generation ----------------------------------------------------------------------------

    def _check_history(self, history: Any, times: Any, present: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> history (V, 1, *shape), times (V,) (0 at missing visits), present (V,) bool."""
        if history is None or times is None:
            raise HistoryError("pass history= (V, 1, X, Y, Z) visits on the network grid and times= (V,)")
        if not isinstance(history, torch.Tensor):
            raise HistoryError(f"history must be a tensor (V, 1, X, Y, Z), got {type(history).__name__}")
        if history.is_complex():
            raise HistoryError("history holds complex numbers; pass the real voxel values (e.g. .real or abs())")
        history = plain_tensor(history).float()
        history = history[:, None] if history.ndim == 4 else history
        expected = (1, *self.network_shape)
        if history.ndim != 5 or tuple(history.shape[1:]) != expected:
            raise HistoryError(f"history must be (V, {', '.join(map(str, expected))}) (visits on the network grid, "
                               f"see subject_on_grid), got {tuple(history.shape)}")
        v = history.shape[0]
        times = finite_array("times", times, allow_nan=True).flatten()  # NaN: a missing visit
        if times.numel() != v:
            raise HistoryError(f"times must give one time per visit ({v}), got {times.numel()}")
        if present is not None and np.asarray(present).dtype.kind not in "biu":
            raise HistoryError(f"present must be True / False flags, one per visit, got {present!r}")
        present = torch.ones(v, dtype=torch.bool) if present is None else torch.as_tensor(present).bool().flatten()
        if present.numel() != v:
            raise HistoryError(f"present must give one flag per visit ({v}), got {present.numel()}")
        present = present & ~torch.isnan(times)
        if not bool(present.any()):
            raise HistoryError("the history has no present visit: a prediction needs at least one earlier visit")
        check_times(times, present, "history")
        if not torch.isfinite(history[present]).all():
            raise HistoryError("present history visits hold NaN or inf voxels")
        history = torch.where(present.view(v, 1, 1, 1, 1), history, torch.zeros(()))
        return history, torch.where(present, times, torch.zeros(())), present

    @staticmethod
    def _check_targets(target_times: Any, times: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if target_times is None:
            raise HistoryError("pass target_times= (the time of each visit to generate)")
        future = finite_array("target_times", target_times).flatten()
        last = float(times[present].max())
        if future.numel() == 0 or not torch.isfinite(future).all():
            raise HistoryError(f"target_times must be finite times, got {future.tolist()}")
        if float(future[0]) <= last or (future.numel() > 1 and bool((future[1:] <= future[:-1]).any())):
            raise HistoryError(f"target_times must increase strictly and come after the last present visit "
                               f"(t = {last:g}), got {future.tolist()}")
        return future

    def _denoiser(self, network: nn.Module, clip: bool, offset: torch.Tensor, scale: float):
        """The core-solver model; with ``clip``, its clean estimate made to give a visit
        ``offset + scale * x0`` in [-1, 1]."""
        schedule, prediction = schedule_from_monai(self.scheduler())
        model = MonaiUNetModel(network, schedule)
        if not clip:
            return model

        def clipped(x, t, **cond):
            alpha = schedule.alpha(t.double()).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
            sigma = schedule.sigma(t.double()).to(x.dtype).view(-1, *[1] * (x.ndim - 1))
            x0 = to_x0(model(x, t, **cond), x, alpha, sigma, prediction)
            x0 = ((offset + scale * x0).clamp(-1.0, 1.0) - offset) / scale
            return from_x0(x0, x, alpha, sigma, prediction)

        return clipped

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     history: Any = None, times: Any = None, target_times: Any = None, present: Any = None,
                     clip: bool | None = None, spacing: str | None = None, **conditions) -> MetaTensor:
        if conditions:
            raise ValueError(f"unknown sampling conditions {sorted(conditions)}; the volumes_longitudinal domain takes "
                             "history=, times=, target_times=, present=, clip=, spacing=")
        history, times, present = self._check_history(history, times, present)
        future = self._check_targets(target_times, times, present)
        if clip is not None and not isinstance(clip, (bool, np.bool_)):
            raise ValueError(f"clip must be True or False, got {clip!r}")
        s = self.config.sampling
        device = next(model.parameters()).device
        v, f = history.shape[0], future.numel()
        visits = torch.cat([history, torch.zeros(f, *history.shape[1:])]).to(device)[None].repeat(n, 1, 1, 1, 1, 1)
        all_times = torch.cat([times, future]).to(device)[None].expand(n, -1)
        mask = torch.cat([present, torch.zeros(f, dtype=torch.bool)]).to(device)[None].repeat(n, 1)
        schedule, prediction = schedule_from_monai(self.scheduler())
        grid = timestep_grid(schedule.num_steps, steps, spacing=s.spacing if spacing is None else spacing,
                             schedule=schedule)
        clip = s.clip if clip is None else clip
        residual = self.config.model.residual
        scale = self.residual_scale if residual else 1.0
        for j in range(v, v + f):
            cond = {name: c[:, j] for name, c in model.condition(visits, all_times, mask).items()}
            offset = cond["previous"][:, :1] if residual else torch.zeros((), device=device)
            noise = torch.randn((n, 1, *self.network_shape), generator=generator, device=generator.device).to(device)
            x = core_sample(self._denoiser(model, clip, offset, scale), noise, schedule=schedule, prediction=prediction,
                            solver=solver, grid=grid, generator=generator, **cond)
            visits[:, j] = offset + scale * x
            mask[:, j] = True
        return MetaTensor(visits[:, v:].float().cpu(), affine=self.grid_affine.clone(),
                          meta={"space": "RAS", "target_times": future.tolist()})

    def predict(self, history: torch.Tensor, times: Any, target_time: float, *, present: Any = None, n: int = 1,
                steps: int | None = None, seed: int | None = None, **options) -> MetaTensor:
        """``n`` draws of the visit at ``target_time`` given the earlier visits.

        Args:
            history: ``(V, 1, X, Y, Z)`` (or ``(V, X, Y, Z)``) visits on the network grid in
                [-1, 1] (:func:`subject_on_grid`); any of them may be missing.
            times: ``(V,)`` their times, strictly increasing over the present visits; NaN
                marks a missing visit.
            target_time: after the last present visit.
            present: ``(V,)`` bool, False for missing visits (default: all with a time).
            n, steps, seed: draws, solver steps, reproducibility; options: ``solver``,
                ``batch_size``, ``clip``, ``spacing``.

        Returns: ``(n, 1, X, Y, Z)`` (MetaTensor with the grid affine).
        """
        out = self.sample(n, steps=steps, seed=seed, history=history, times=times, target_times=[float(target_time)],
                          present=present, **options)
        return out[:, 0]

    def forecast(self, history: torch.Tensor, times: Any, future_times: Sequence[float], *, present: Any = None,
                 n: int = 1, steps: int | None = None, seed: int | None = None, **options) -> MetaTensor:
        """``n`` trajectories of visits at ``future_times``, generated one visit after the
        other, each conditioned on the history and the visits generated before it (arguments
        as :meth:`predict`). Returns ``(n, F, 1, X, Y, Z)``."""
        return self.sample(n, steps=steps, seed=seed, history=history, times=times, target_times=future_times,
                           present=present, **options)

    @classmethod
    def add_sample_arguments(cls, parser) -> None:
        parser.add_argument("--history", nargs="+", help="the subject's co-registered visit volumes, oldest first "
                                                         "(mapped to the network grid by the first one)")
        parser.add_argument("--times", type=float, nargs="+", help="the history's visit times")
        parser.add_argument("--target-times", dest="target_times", type=float, nargs="+",
                            help="times of the visits to generate, one after the other")

    def sample(self, n: int, **kwargs) -> Any:
        """:meth:`Generator.sample`. A ``history`` of file paths (the CLI's ``--history``, all
        present) is mapped to the network grid by :func:`subject_on_grid`; each generated
        visit's change from the last given visit is mapped back onto the files' voxel grid,
        scaled to their intensity units and added to the last visit's file, so the detail the
        network grid cannot hold is kept (as :meth:`VolumeGenerator.augment` does)."""
        history = kwargs.get("history")
        if not (isinstance(history, (list, tuple)) and history and isinstance(history[0], (str, Path))):
            return super().sample(n, **kwargs)
        d = self.config.data
        kwargs["history"], grid = subject_on_grid(history, self.network_shape, d.percentiles, d.margin, d.npz_axcodes)
        out = plain_tensor(super().sample(n, **kwargs))
        last = load_volume(history[-1], d.npz_axcodes)[:1]
        norm = grid.normalization
        scale = (norm.high - norm.low) / (norm.out_range[1] - norm.out_range[0])  # network units -> file units
        channels = grid.network.shape[0]  # the inverse map undoes the transforms of all the grid's channels
        changes = out.flatten(0, 1) - kwargs["history"][-1]
        back = [plain_tensor(grid.inverse(torch.cat([c, torch.zeros(channels - 1, *c.shape[1:])])))[:1] for c in changes]
        data = torch.stack([plain_tensor(last).float() + scale * c for c in back]).view(*out.shape[:2], *back[0].shape)
        return MetaTensor(data, affine=torch.as_tensor(last.affine, dtype=torch.float64),
                          meta={"space": "RAS", "target_times": list(kwargs.get("target_times") or [])})

    # -- evaluation and files --------------------------------------------------------------------

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None) -> dict[str, float]:
        """Against true visits of the same shape as ``samples`` (``(n, 1, *S)`` or ``(n, F, 1,
        *S)``, or a folder written by :meth:`write_samples`): :func:`~sciogen.volumes.paired_error`
        (PSNR, SSIM, mean absolute error); otherwise :func:`~sciogen.volumes.evaluate` of all
        generated visits."""
        if isinstance(reference, (str, Path)):
            reference = cls.read_samples(reference)
        x = plain_tensor(samples).float()
        x = x.flatten(0, 1) if x.ndim == 6 else x
        if reference is not None:
            y = plain_tensor(reference).float()
            y = y.flatten(0, 1) if y.ndim == 6 else y
            if y.shape == x.shape:
                return paired_error(x, y)
            return evaluate(x, y)
        return evaluate(x)

    @classmethod
    def write_samples(cls, samples: torch.Tensor, path: str | Path) -> Path:
        """Write ``trajectory_000_visit_00.nii.gz`` ... (the grid affine) and ``metrics.json``
        into the folder ``path``; ``samples`` ``(n, F, 1, *S)`` as :meth:`forecast` returns."""
        folder = Path(path)
        if folder.suffix in (".gz", ".nii", ".csv", ".pt", ".mha", ".nrrd"):
            raise ValueError(f"--out must be a folder for forecast volumes, got the file name {folder}")
        if samples.ndim != 6:
            raise ValueError(f"samples must be (n, F, 1, X, Y, Z) trajectories, got {tuple(samples.shape)}")
        affine = torch.as_tensor(getattr(samples, "affine", torch.eye(4)), dtype=torch.float64)
        folder.mkdir(parents=True, exist_ok=True)
        data = plain_tensor(samples)
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                write_volume(data[i, j], folder / f"trajectory_{i:03d}_visit_{j:02d}.nii.gz", affine=affine)
        (folder / "metrics.json").write_text(json.dumps(evaluate(data.flatten(0, 1)), indent=2))
        return folder

    @classmethod
    def read_samples(cls, path: str | Path) -> MetaTensor:
        """Trajectories written by :meth:`write_samples` -> ``(n, F, 1, *S)``."""
        folder = Path(path)
        files = sorted(folder.glob("trajectory_*_visit_*.nii.gz"))
        if not files:
            raise FileNotFoundError(f"no trajectory_*_visit_*.nii.gz volumes in {folder}")
        keys = [tuple(int(part) for part in f.name[: -len(".nii.gz")].split("_")[1::2]) for f in files]
        n, v = max(k[0] for k in keys) + 1, max(k[1] for k in keys) + 1
        if len(files) != n * v:
            raise ValueError(f"{folder} holds {len(files)} volumes, not {n} trajectories of {v} visits")
        volumes = [read_volume(f) for f in files]
        data = torch.stack([plain_tensor(x).float() for x in volumes]).view(n, v, *volumes[0].shape)
        return MetaTensor(data, affine=volumes[0].affine)
