"""A sample made of several named fields, each diffused by its own process.

A crystal is {atom types: categorical, lattice: Gaussian, fractional coordinates: wrapped
normal}; a molecule is {node types, edge types}: both categorical. :class:`JointProcess`
noises every field in one call, at one shared time or at per-field (and per-token) times,
computes the summed loss from one model call, and samples all fields together.

The model takes and returns dicts: ``model(x_t: dict, t: dict, **cond) -> dict`` with, per
field, the prediction its process expects (Gaussian: eps / x0 / v; categorical: x0 logits
of shape S + (K,); wrapped normal: the normalised score).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from .categorical import CategoricalProcess
from .common import stratified_times
from .gaussian import GaussianProcess
from .solvers import _check
from .torus import WrappedNormalProcess

__all__ = ["JointProcess"]

Process = GaussianProcess | CategoricalProcess | WrappedNormalProcess


class JointProcess:
    """Independent forward processes for the named fields of one sample.

    Args:
        processes: {field name: GaussianProcess | CategoricalProcess | WrappedNormalProcess}.
        weights: optional {field name: loss weight} (default 1 each).
    """

    def __init__(self, processes: Mapping[str, Process], weights: Mapping[str, float] | None = None):
        if not processes:
            raise ValueError("JointProcess needs at least one field")
        for name, proc in processes.items():
            if not isinstance(proc, (GaussianProcess, CategoricalProcess, WrappedNormalProcess)):
                raise TypeError(f"field {name!r}: unsupported process {type(proc).__name__}")
        self.processes = dict(processes)
        self.weights = {name: 1.0 for name in self.processes}
        unknown = set(weights or {}) - set(self.processes)
        if unknown:
            raise ValueError(f"weights for unknown fields {sorted(unknown)}; fields: {sorted(self.processes)}")
        self.weights.update(weights or {})

    def _times(self, t, batch: int, generator, device) -> dict[str, torch.Tensor]:
        """One time per field: a shared tensor, a dict per field, or None (drawn, shared)."""
        if t is None:
            t = stratified_times(batch, 0.0, generator, device)
        if isinstance(t, Mapping):
            missing = set(self.processes) - set(t)
            if missing:
                raise ValueError(f"no time given for fields {sorted(missing)}")
            return {name: torch.as_tensor(t[name], device=device) for name in self.processes}
        return {name: torch.as_tensor(t, device=device) for name in self.processes}

    def _check_fields(self, state: Mapping[str, torch.Tensor], what: str) -> None:
        if set(state) != set(self.processes):
            raise ValueError(f"{what} has fields {sorted(state)}, the process has {sorted(self.processes)}")

    def noise(self, x0: Mapping[str, torch.Tensor], t=None, generator=None):
        """Noise every field. ``t``: (B,) shared, {field: (B,) or per-token time}, or None.

        Returns ``(x_t, t, aux)``: the noised fields, the per-field times used, and per
        field the Gaussian noise drawn (None for categorical fields).
        """
        self._check_fields(x0, "x0")
        first = next(iter(x0.values()))
        times = self._times(t, first.shape[0], generator, first.device)
        x_t, aux = {}, {}
        for name, proc in self.processes.items():
            if isinstance(proc, CategoricalProcess):
                x_t[name], aux[name] = proc.noise(x0[name], times[name], generator=generator), None
            else:
                x_t[name], aux[name] = proc.noise(x0[name], times[name], generator=generator)
        return x_t, times, aux

    def loss(self, model: Callable, x0: Mapping[str, torch.Tensor], t=None, *, masks=None, generator=None, **cond):
        """Weighted sum of the per-field losses from one model call.

        Returns ``(total (B,), {field: (B,)})``. ``masks``: optional {field: mask
        broadcastable to that field, 1 = counts}.
        """
        x_t, times, aux = self.noise(x0, t, generator)
        pred = model(x_t, times, **cond)
        self._check_fields(pred, "the model output")
        masks = masks or {}
        parts = {}
        for name, proc in self.processes.items():
            mask = masks.get(name)
            if isinstance(proc, GaussianProcess):
                parts[name] = proc.prediction_loss(pred[name], x0[name], aux[name], times[name], mask)
            elif isinstance(proc, CategoricalProcess):
                parts[name] = proc.loss(pred[name], x0[name], mask=mask)
            else:
                parts[name] = proc.prediction_loss(pred[name], x0[name], x_t[name], times[name], mask)
        total = sum(self.weights[name] * part for name, part in parts.items())
        return total, parts

    def prior(self, shapes: Mapping[str, tuple], generator=None, device=None) -> dict[str, torch.Tensor]:
        """A draw from every field's terminal distribution. ``shapes``: {field: full shape}."""
        self._check_fields(shapes, "shapes")
        return {name: proc.prior(tuple(shapes[name]), generator=generator, device=device)
                for name, proc in self.processes.items()}

    def sample(self, model: Callable, x_T: Mapping[str, torch.Tensor], steps: int = 100, generator=None,
               fixed: Mapping[str, torch.Tensor] | None = None, **cond) -> dict[str, torch.Tensor]:
        """Ancestral sampling of all fields on a shared uniform time grid from 1 to 0.

        Per step one model call; Gaussian fields take the DDPM posterior step, categorical
        fields the D3PM step, wrapped-normal fields the reverse-diffusion predictor (no
        corrector: it would need its own model calls). ``fixed``: fields kept at given clean
        values throughout (e.g. the composition in crystal structure prediction).
        """
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        fixed = dict(fixed or {})
        x = {name: fixed.get(name, v) for name, v in x_T.items()}
        self._check_fields(x, "x_T")
        b = next(iter(x.values())).shape[0]
        grid = torch.linspace(1.0, 0.0, int(steps) + 1, dtype=torch.float64)
        for i in range(int(steps)):
            t = torch.full((b,), float(grid[i]))
            s = torch.full((b,), float(grid[i + 1]))
            pred = model(x, {name: t for name in x}, **cond)
            new = {}
            for name, proc in self.processes.items():
                if name in fixed:
                    new[name] = fixed[name]
                elif isinstance(proc, GaussianProcess):
                    new[name] = _check(proc.step(x[name], pred[name], t, s, generator), i, float(grid[i + 1]))
                elif isinstance(proc, CategoricalProcess):
                    new[name] = proc.step(x[name], pred[name], t, s, generator)
                else:
                    new[name] = proc.predictor_step(x[name], pred[name], t, None if i == steps - 1 else s, generator)
            x = new
        return x
