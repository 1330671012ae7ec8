"""A sample made of several named fields, each diffused by its own process.

A crystal is {lattice: Gaussian, fractional coordinates: wrapped normal, atom types:
categorical} (:class:`sciogen.crystals.diffcsp.CrystalProcesses`); a block of a PARD
molecule is {atom types, bonds}: both categorical (:mod:`sciogen.molecules.pard`); a
:class:`~sciogen.ar.BlockAR` token mixes any of them. :class:`JointProcess` noises every
field in one call, at one shared time or at per-field (and per-token) times, computes the
summed loss from one model call, and samples all fields together (ancestral steps, with
DiffCSP's Langevin corrector for wrapped-normal fields).

The model takes and returns dicts: ``model(x_t: dict, t: dict, **cond) -> dict`` with, per
field, the prediction its process expects (Gaussian: eps / x0 / v; categorical: x0 logits
of shape S + (K,); wrapped normal: the normalised score).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

from .categorical import CategoricalProcess
from .gaussian import GaussianProcess
from .times import stratified_times
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

    def loss(self, model: Callable, x0: Mapping[str, torch.Tensor], t=None, *, masks=None, weights=None,
             generator=None, **cond):
        """Weighted sum of the per-field losses from one model call.

        Returns ``(total (B,), {field: (B,)})``. ``masks``: optional {field: mask
        broadcastable to that field, 1 = counts}; ``weights``: optional {field: weight} for
        this call instead of the process' own.
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
        if weights is not None and set(weights) - set(self.processes):
            raise ValueError(f"weights for unknown fields {sorted(set(weights) - set(self.processes))}; "
                             f"fields: {sorted(self.processes)}")
        weights = self.weights if weights is None else {**self.weights, **weights}
        total = sum(weights[name] * part for name, part in parts.items())
        return total, parts

    def prior(self, shapes: Mapping[str, tuple], generator=None, device=None) -> dict[str, torch.Tensor]:
        """A draw from every field's terminal distribution. ``shapes``: {field: full shape}."""
        self._check_fields(shapes, "shapes")
        return {name: proc.prior(tuple(shapes[name]), generator=generator, device=device)
                for name, proc in self.processes.items()}

    def sample(self, model: Callable, x_T: Mapping[str, torch.Tensor], steps: int = 100, generator=None,
               fixed: Mapping[str, torch.Tensor] | None = None, *, grid: torch.Tensor | None = None,
               corrector_steps: int = 0, step_lr: float = 1e-5, masks: Mapping[str, torch.Tensor] | None = None,
               on_prediction: Callable | None = None, project: Callable | None = None,
               **cond) -> dict[str, torch.Tensor]:
        """Ancestral sampling of all fields on a time grid from 1 to 0.

        Per step one model call; Gaussian fields take the DDPM posterior step, categorical
        fields the D3PM step, wrapped-normal fields the reverse-diffusion predictor, followed
        at every time but the last by ``corrector_steps`` Langevin corrector steps of the
        wrapped-normal fields with step size ``step_lr`` (DiffCSP's predictor-corrector loop;
        Song et al. 2021, Alg. 2), one more model call each.

        Args:
            fixed: fields kept at given clean values throughout (e.g. the composition in
                crystal structure prediction); the model sees them at t = 0.
            grid: the times (steps + 1,) from 1 down to 0 (default: uniform, float64).
            masks: {field: bool mask of its leading dimensions}, the entries whose values
                must stay finite (padding left out); a non-finite value raises
                FloatingPointError naming the field and the step.
            on_prediction: ``on_prediction(pred, step, t, corrector) -> pred``, applied to
                every model output (``corrector`` 0: the predictor's call, else the corrector
                step's number): check it, forbid classes, ...
            project: ``project(x) -> x``, applied to the state after every step (e.g. to keep
                a graph's bond matrix symmetric).
        """
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if int(corrector_steps) < 0:
            raise ValueError(f"corrector_steps must be >= 0, got {corrector_steps}")
        steps, fixed, masks = int(steps), dict(fixed or {}), dict(masks or {})
        x = {name: fixed.get(name, v) for name, v in x_T.items()}
        self._check_fields(x, "x_T")
        first = next(iter(x.values()))
        b, device = first.shape[0], first.device
        grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64) if grid is None else torch.as_tensor(grid)
        if grid.shape != (steps + 1,):
            raise ValueError(f"grid must hold steps + 1 = {steps + 1} times, got shape {tuple(grid.shape)}")
        zeros = torch.zeros(b, device=device)

        def call(x, t, step, t_value, corrector):
            pred = model(x, {name: zeros if name in fixed else t for name in x}, **cond)
            return pred if on_prediction is None else on_prediction(pred, step, t_value, corrector)

        for i in range(steps):
            t = torch.full((b,), float(grid[i]), device=device)
            s = torch.full((b,), float(grid[i + 1]), device=device)
            last = i == steps - 1
            pred = call(x, t, i, float(grid[i]), 0)
            new = {}
            for name, proc in self.processes.items():
                if name in fixed:
                    new[name] = fixed[name]
                elif isinstance(proc, GaussianProcess):
                    new[name] = proc.step(x[name], pred[name], t, s, generator)
                elif isinstance(proc, CategoricalProcess):
                    new[name] = proc.step(x[name], pred[name], t, s, generator)
                else:
                    new[name] = proc.predictor_step(x[name], pred[name], t, None if last else s, generator)
                if not isinstance(proc, CategoricalProcess):
                    _finite(new[name], masks.get(name), name, i, float(grid[i + 1]))
            x = new if project is None else project(new)
            if last:
                break
            for c in range(1, int(corrector_steps) + 1):
                pred = call(x, s, i, float(grid[i + 1]), c)
                x = dict(x)
                for name, proc in self.processes.items():
                    if isinstance(proc, WrappedNormalProcess) and name not in fixed:
                        x[name] = proc.corrector_step(x[name], pred[name], s, generator, step_lr)
                        _finite(x[name], masks.get(name), name, i, float(grid[i + 1]), f" (corrector {c})")
        return x


def _finite(x: torch.Tensor, mask: torch.Tensor | None, name: str, i: int, t: float, where: str = "") -> None:
    """FloatingPointError naming the field and the step when ``x`` (on ``mask``) is not finite."""
    if not math.isfinite(float((x if mask is None else x[mask]).sum())):
        raise FloatingPointError(
            f"non-finite values appeared in field {name!r} at solver step {i}{where} (t = {t:.5f}); check the "
            "model's predictions, or lower the guidance scale or the corrector's step_lr")
