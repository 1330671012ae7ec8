"""DiffCSP's joint diffusion of lattice, fractional coordinates and element types.

A crystal is three fields of one :class:`~sciogen.diffusion.JointProcess`
(:class:`CrystalProcesses`): the lattice (Gaussian, on the lattice divided by the crystal's
length scale ``scale * N^(1/3)``), the fractional coordinates (wrapped normal) and the
types (categorical). One network does both tasks: in training a fraction ``csp_fraction``
of the crystals keep their clean types (structure prediction, CSP), the others have them
noised with the rest (de novo). Sampling is the joint process' predictor-corrector loop
(DiffCSP), with classifier-free guidance (Ho & Salimans 2022) for a conditional network.
"""

from __future__ import annotations

import math

import torch

from sciogen.diffusion import CategoricalProcess, GaussianProcess, JointProcess, WrappedNormalProcess

__all__ = ["CrystalProcesses", "crystal_loss", "sample_crystals", "lattice_scale", "FIELDS"]

#: the fields of a crystal, in the order they are noised and stepped
FIELDS = ("lattice", "frac", "types")


class CrystalProcesses(JointProcess):
    """The joint process of a crystal: ``lattice`` (Gaussian), ``frac`` (wrapped normal) and
    ``types`` (categorical), and the lattice length scale ``scale`` (Å)."""

    def __init__(self, lattice: GaussianProcess, frac: WrappedNormalProcess, types: CategoricalProcess,
                 scale: float, weights: dict[str, float] | None = None):
        super().__init__(dict(zip(FIELDS, (lattice, frac, types))), weights)
        for name, kind in zip(FIELDS, (GaussianProcess, WrappedNormalProcess, CategoricalProcess)):
            if not isinstance(self.processes[name], kind):
                raise TypeError(f"the {name} process must be a {kind.__name__}, "
                                f"got {type(self.processes[name]).__name__}")
        self.scale = float(scale)

    @property
    def lattice(self) -> GaussianProcess:
        return self.processes["lattice"]

    @property
    def frac(self) -> WrappedNormalProcess:
        return self.processes["frac"]

    @property
    def types(self) -> CategoricalProcess:
        return self.processes["types"]

    def normalise_lattice(self, lattice: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        """Å -> O(1): lattice / (scale N^(1/3)). Shapes: (B, 3, 3), (B,)."""
        return lattice / lattice_scale(self.scale, num_atoms).to(lattice.dtype)

    def denormalise_lattice(self, lattice: torch.Tensor, num_atoms: torch.Tensor) -> torch.Tensor:
        return lattice * lattice_scale(self.scale, num_atoms).to(lattice.dtype)


def lattice_scale(scale: float, num_atoms: torch.Tensor) -> torch.Tensor:
    """The per-crystal length scale ``scale * N^(1/3)``, shaped (B, 1, 1)."""
    return (scale * num_atoms.double().clamp_min(1) ** (1.0 / 3.0)).view(-1, 1, 1)


def _network(net, mask: torch.Tensor, **extra):
    """The CSPNet as the joint process' model: ``model({field: x_t}, {field: t}) -> {field: prediction}``."""

    def model(x, t):
        return net(x["types"], x["frac"], x["lattice"], mask, t["lattice"], t["types"], **extra)

    return model


def crystal_loss(net, batch: dict[str, torch.Tensor], proc: CrystalProcesses, generator: torch.Generator,
                 csp_fraction: float = 0.5, weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 cond: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-crystal loss (B,): lattice MSE (of its process's prediction target) + coordinate
    score MSE + type cross-entropy, from :meth:`JointProcess.loss`.

    ``batch``: types (B, N) long (-1 = padding), frac (B, N, 3), lattice (B, 3, 3) in Å,
    num_atoms (B,). ``weights``: (lattice, coordinates, types). ``cond`` (B, K) and
    ``cond_mask`` (B, K) bool: the conditions of a conditional network (dropped ones False).
    """
    types, frac, num_atoms = batch["types"], batch["frac"], batch["num_atoms"]
    mask = types >= 0
    b, dev = types.shape[0], types.device
    lattice0 = proc.normalise_lattice(batch["lattice"], num_atoms).to(frac.dtype)
    t = proc.lattice.sample_time(b, generator=generator, device=dev).to(frac.dtype)
    csp = torch.rand(b, generator=generator, device=dev) < csp_fraction
    t_types = torch.where(csp, torch.zeros_like(t), t)  # CSP: the types stay clean and score nothing
    extra = {} if cond is None else {"cond": cond, "cond_mask": cond_mask}
    total, _ = proc.loss(
        _network(net, mask, **extra), {"lattice": lattice0, "frac": frac, "types": types.clamp_min(0)},
        {"lattice": t, "frac": t, "types": t_types}, generator=generator, weights=dict(zip(FIELDS, weights)),
        masks={"frac": mask.unsqueeze(-1).to(frac.dtype), "types": (mask & ~csp.unsqueeze(1)).to(frac.dtype)},
    )
    return total


@torch.no_grad()
def sample_crystals(net, proc: CrystalProcesses, num_atoms: torch.Tensor, *, types: torch.Tensor | None = None,
                    steps: int = 200, corrector_steps: int = 1, step_lr: float = 1e-5,
                    allowed_types: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    cond: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None,
                    guidance: float = 1.0) -> dict[str, torch.Tensor]:
    """Generate crystals: structure prediction when ``types`` is given, else de novo.

    Args:
        net: a :class:`~sciogen.crystals.network.CSPNet`.
        num_atoms: (B,) atoms per crystal.
        types: (B, N) element indices (-1 on padding) kept fixed (CSP), or None (drawn).
        steps: predictor steps (network calls: steps + corrector_steps * (steps - 1)).
        corrector_steps, step_lr: DiffCSP's Langevin corrector of the coordinates.
        allowed_types: (K,) bool, the element types de novo samples may contain (e.g. those
            of the training data); the others get zero probability in every type step.
        cond, cond_mask: (B, K) float and bool, the conditions of a conditional network
            (None: none given); ``guidance``: the classifier-free guidance scale.

    Returns: dict(types (B, N) long, -1 on padding; frac (B, N, 3); lattice (B, 3, 3) Å).
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dev = next(net.parameters()).device
    num_atoms = num_atoms.to(dev)
    b, n = num_atoms.shape[0], int(num_atoms.max())
    mask = torch.arange(n, device=dev).unsqueeze(0) < num_atoms.unsqueeze(1)
    x_T = {"lattice": proc.lattice.prior((b, 3, 3), generator=generator, device=dev),
           "frac": proc.frac.prior((b, n, 3), generator=generator, device=dev)}
    fixed = {}
    if types is not None:
        types = types.to(dev)[:, :n]
        if bool(((types >= 0) != mask).any()):
            raise ValueError("types must hold num_atoms element indices per crystal and -1 on padding")
        fixed["types"] = x_T["types"] = types.clamp_min(0)
    else:
        x_T["types"] = proc.types.prior((b, n), generator=generator, device=dev)
    if cond is not None:
        net = _guided(net, cond.to(dev), cond_mask.to(dev), float(guidance))
    allowed = None if allowed_types is None else allowed_types.to(dev)

    def checked(pred: dict[str, torch.Tensor], i: int, t: float, corrector: int) -> dict[str, torch.Tensor]:
        """The network's predictions, or FloatingPointError naming the step when one is not
        finite on the atoms (type logits only where types are drawn); unseen types forbidden."""
        drawn = not fixed and not corrector
        for key in ("lattice", "frac") + (("types",) if drawn else ()):
            value = pred[key] if key == "lattice" else pred[key][mask]
            if not math.isfinite(float(value.sum())):
                raise _nonfinite(f"network output ({key})", i, t, f" (corrector {corrector})" if corrector else "")
        if drawn and allowed is not None:
            pred = {**pred, "types": pred["types"].masked_fill(~allowed, float("-inf"))}
        return pred

    out = proc.sample(_network(net, mask), x_T, int(steps), generator, fixed, corrector_steps=int(corrector_steps),
                      step_lr=step_lr, masks={"frac": mask}, on_prediction=checked)
    out_types = torch.where(mask, out["types"], torch.full_like(out["types"], -1))
    return {"types": out_types, "frac": out["frac"], "lattice": proc.denormalise_lattice(out["lattice"], num_atoms)}


def _nonfinite(what: str, i: int, t: float, where: str = "") -> FloatingPointError:
    return FloatingPointError(
        f"non-finite {what} at predictor-corrector step {i}{where} (t = {float(t):.5f}); check the checkpoint's "
        "weights, lower step_lr (DiffCSP: 5e-7 .. 1e-5) or the guidance scale")


def _guided(net, cond: torch.Tensor, cond_mask: torch.Tensor, guidance: float):
    """``net`` with the conditions bound and classifier-free guidance ``u + g (c - u)``."""
    null = torch.zeros_like(cond_mask)

    def call(*args):
        c = net(*args, cond=cond, cond_mask=cond_mask)
        if guidance == 1.0:
            return c
        u = net(*args, cond=cond, cond_mask=null)
        return {k: u[k] + guidance * (c[k] - u[k]) for k in c}

    return call
