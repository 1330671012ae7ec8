"""``CrystalGenerator``: DiffCSP-style joint diffusion behind the generator verbs.

    >>> import sciogen
    >>> gen = sciogen.load("crystals/perov5")                      # doctest: +SKIP
    >>> gen.sample(20, composition="SrTiO3", seed=0)               # structure prediction (CSP)
    >>> gen.sample(20, seed=0)                                     # de novo: composition too
    >>> gen.sample(3, composition=["SrTiO3", "BaZrO3", "KNbO3"])   # one composition per sample
    >>> sciogen.crystals.evaluate(structures, reference)           # CDVAE / DiffCSP metrics

Samples are pymatgen ``Structure`` objects (None where a lattice came out degenerate).
One network serves both tasks: a DiffCSP-style CSPNet (``model.kind: cspnet``, see
:mod:`sciogen.crystals.diffcsp`) or a UniGenX transformer (``model.kind: unigenx``, see
:mod:`sciogen.crystals.unigenx`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from sciogen.diffusion import CategoricalProcess, GaussianProcess, WrappedNormalProcess
from sciogen.train.generator import Generator

from .config import CrystalConfig
from .datasets import DEFAULT_MAX_ATOMS, crystal_tensors, load_crystals
from .diffcsp import CrystalProcesses, crystal_loss, sample_crystals
from .io import read_structures, write_structures
from .network import CSPNet, CSPNetConfig
from .representation import CrystalError, CrystalSpec, UnknownElementError, CrystalTensors, from_tensors, parse_composition
from .unigenx import CrystalTokenizer, build_unigenx, sample_unigenx, unigenx_loss

__all__ = ["CrystalGenerator"]

#: local copies used in development (relative to the repository root)
SHARED_CRYSTALS = Path("../shared/datasets/crystals")


class _Crystals(Dataset):
    def __init__(self, tensors: CrystalTensors):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i):
        return self.tensors[i]


class CrystalGenerator(Generator):
    """Crystal structure prediction and de novo generation. Domain ``"crystals"``.

    ``fit(data)`` accepts a list of pymatgen Structures, :class:`CrystalRecords` or a file
    path (CDVAE CSV, CIF, folder of CIFs); with no data it reads ``config.data``.
    """

    domain = "crystals"
    config_class = CrystalConfig

    def __init__(self, config: CrystalConfig | None = None):
        config = CrystalConfig() if config is None else config
        max_atoms = config.data.max_atoms or DEFAULT_MAX_ATOMS.get(config.data.dataset, 20)
        self.spec = CrystalSpec.all_elements(max_atoms)
        k = self.spec.num_types
        self.type_marginals = torch.full((k,), 1.0 / k, dtype=torch.float64)
        self.atom_count_probs = torch.zeros(max_atoms + 1, dtype=torch.float64)
        self.atom_count_probs[max_atoms] = 1.0
        self.scale = 2.5
        super().__init__(config)

    def build_model(self) -> nn.Module:
        m = self.config.model
        if m.kind == "unigenx":
            return build_unigenx(self.spec, dim=m.hidden, depth=m.layers, heads=m.heads, head_width=m.head_width,
                                 head_depth=m.head_depth, diffusion_repeats=m.diffusion_repeats, dropout=m.dropout)
        return CSPNet(CSPNetConfig(self.spec.num_types, m.hidden, m.layers, m.frequencies, m.time_dim))

    @property
    def tokenizer(self) -> CrystalTokenizer:
        """The UniGenX sequence layout of this model's spec (``model.kind: unigenx``)."""
        return CrystalTokenizer(self.spec, self.config.model.frac_scale)

    def processes(self) -> CrystalProcesses:
        d = self.config.diffusion
        marginals = self.type_marginals if d.type_transition == "marginal" else None
        return CrystalProcesses(
            lattice=GaussianProcess(d.lattice_schedule, prediction=d.lattice_prediction),
            frac=WrappedNormalProcess(d.sigma_min, d.sigma_max),
            types=CategoricalProcess(self.spec.num_types, d.type_transition, marginals),
            scale=self.scale,
        )

    # -- data ----------------------------------------------------------------------------------

    def _records(self, data: Any):
        from .io import CrystalRecords

        if data is None:
            d = self.config.data
            return load_crystals(d.dataset, d.split, d.path, d.limit)
        if isinstance(data, CrystalRecords):
            return data
        if isinstance(data, (str, Path)):
            return read_structures(data)
        structures = list(data)
        return CrystalRecords(structures, [str(i) for i in range(len(structures))], source="structures")

    def training_data(self, data: Any = None) -> Dataset:
        recs = self._records(data)
        if len(recs) == 0:
            raise CrystalError("no training crystals")
        tensors = crystal_tensors(recs, self.spec, niggli=self.config.data.niggli)
        counts = torch.bincount(tensors.types[tensors.mask], minlength=self.spec.num_types).double()
        self.type_marginals = counts / counts.sum()
        sizes = torch.bincount(tensors.num_atoms, minlength=self.spec.max_atoms + 1).double()
        self.atom_count_probs = sizes / sizes.sum()
        volumes = torch.linalg.det(tensors.lattice.double()).abs()
        self.scale = float((volumes / tensors.num_atoms.double()).pow(1.0 / 3.0).mean())
        return _Crystals(tensors)

    def metadata(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "type_marginals": self.type_marginals,
                "atom_count_probs": self.atom_count_probs, "scale": self.scale}

    def load_metadata(self, metadata: Mapping[str, Any]) -> None:
        if "spec" in metadata:
            self.spec = CrystalSpec.from_dict(metadata["spec"])
            self.type_marginals = torch.as_tensor(metadata["type_marginals"], dtype=torch.float64)
            self.atom_count_probs = torch.as_tensor(metadata["atom_count_probs"], dtype=torch.float64)
            self.scale = float(metadata["scale"])

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        if self.config.model.kind == "unigenx":
            return unigenx_loss(model, self.tokenizer, batch, self.scale, generator, augment=True)
        d = self.config.diffusion
        return crystal_loss(model, batch, self.processes(), generator, d.csp_fraction, tuple(d.weights))

    # -- sampling --------------------------------------------------------------------------------

    def _sampling_defaults(self):
        return self.config.sampling

    @classmethod
    def add_sample_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--composition", help="cell composition for structure prediction, e.g. SrTiO3 (default: de novo)")
        parser.add_argument("--corrector-steps", dest="corrector_steps", type=int, help="Langevin corrector steps per step")
        parser.add_argument("--step-lr", dest="step_lr", type=float, help="corrector step size (default: the model's; DiffCSP on Perov-5: 5e-7 CSP, 1e-6 de novo)")
        parser.add_argument("--temperature", type=float, help="UniGenX models: scale of each number's starting noise")

    def composition_types(self, composition: Any, n: int) -> torch.Tensor:
        """Element indices (n, N) (-1 padding) for one composition or a list of n compositions
        (formulas, pymatgen Compositions or Structures)."""
        items = [composition] * n if isinstance(composition, str) or not isinstance(composition, Sequence) else list(composition)
        if len(items) != n:
            raise ValueError(f"got {len(items)} compositions for n={n} samples; give one, or one per sample")
        cells = [parse_composition(c.composition if hasattr(c, "lattice") else c, self.spec) for c in items]
        seen = {z for z, p in zip(self.spec.elements, self.type_marginals.tolist()) if p > 0}
        for c, zs in zip(items, cells):
            unseen = sorted(set(zs) - seen)
            if unseen:
                from pymatgen.core import Element

                names = ", ".join(Element.from_Z(z).symbol for z in unseen)
                known = ", ".join(Element.from_Z(z).symbol for z in sorted(seen))
                raise UnknownElementError(f"composition {c}: {names} never occurs in the training data of this model "
                                          f"(its elements: {known})")
        out = torch.full((n, max(map(len, cells))), -1, dtype=torch.long)
        for i, zs in enumerate(cells):
            out[i, :len(zs)] = torch.tensor([self.spec.index(z) for z in zs])
        return out

    @torch.no_grad()
    def sample(self, n: int, *, composition: Any = None, **kwargs) -> Any:
        """Draw ``n`` crystals: of the given ``composition`` (CSP; one, or one per sample)
        or de novo. Other options: ``steps``, ``solver``, ``seed``, ``batch_size``,
        ``tensors=True`` (raw tensors instead of Structures); CSPNet models:
        ``corrector_steps``, ``step_lr``; UniGenX models: ``temperature``,
        ``token_temperature``."""
        if composition is not None:
            kwargs["types"] = self.composition_types(composition, int(n))
        self._batch = kwargs.get("batch_size") or self.config.sampling.batch_size
        return super().sample(n, **kwargs)

    def _sample_chunk(self, index, size, seed, steps, solver, conditions):
        types = conditions.get("types")
        if types is not None:
            start = index * self._batch
            conditions = {**conditions, "types": types[start:start + size]}
        return super()._sample_chunk(index, size, seed, steps, solver, conditions)

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     types: torch.Tensor | None = None, corrector_steps: int | None = None,
                     step_lr: float | None = None, temperature: float | None = None,
                     token_temperature: float | None = None, tensors: bool = False) -> Any:
        s = self.config.sampling
        if self.config.model.kind == "unigenx":
            if corrector_steps is not None or step_lr is not None:
                raise ValueError("corrector_steps and step_lr belong to CSPNet models; this one is UniGenX")
            if solver == "pc":
                raise ValueError("solver 'pc' is DiffCSP's; a UniGenX model samples with a core solver, e.g. ddim")
            out = sample_unigenx(model, self.tokenizer, n, self.scale, types=types, steps=steps, solver=solver,
                                 generator=generator, allowed_types=self.type_marginals > 0,
                                 temperature=s.temperature if temperature is None else temperature,
                                 token_temperature=s.token_temperature if token_temperature is None else token_temperature)
            num_atoms = out["num_atoms"]
        else:
            if temperature is not None or token_temperature is not None:
                raise ValueError("temperature and token_temperature belong to UniGenX models; this one is a CSPNet")
            if solver != "pc":
                raise ValueError(f"unknown solver {solver!r} for a CSPNet model; allowed: pc (DiffCSP's predictor-corrector)")
            out, num_atoms = self._sample_cspnet(model, n, generator, steps, types, corrector_steps, step_lr)
        if tensors:
            return [{"types": out["types"][i], "frac": out["frac"][i], "lattice": out["lattice"][i]} for i in range(n)]
        return from_tensors(out["types"], out["frac"], out["lattice"], num_atoms, self.spec)

    def _sample_cspnet(self, model, n, generator, steps, types, corrector_steps, step_lr):
        s = self.config.sampling
        if types is None:
            num_atoms = torch.multinomial(self.atom_count_probs.float(), n, replacement=True, generator=generator)
        else:
            num_atoms = (types >= 0).sum(1)
        out = sample_crystals(model, self.processes(), num_atoms.to(self.device), types=types, steps=steps,
                              corrector_steps=s.corrector_steps if corrector_steps is None else corrector_steps,
                              step_lr=step_lr or (s.step_lr if types is not None else s.denovo_step_lr),
                              allowed_types=self.type_marginals > 0, generator=generator)
        return out, num_atoms

    # -- metrics and files -------------------------------------------------------------------------

    def reference_data(self) -> Any:
        return self.config.data.dataset if self.config.data.dataset != "file" else None

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None) -> dict[str, float]:
        from .metrics import evaluate

        return evaluate(samples, reference=_reference_structures(reference), task="gen")

    @classmethod
    def write_samples(cls, samples: Any, path: str | Path) -> Path:
        return write_structures(samples, path)

    @classmethod
    def read_samples(cls, path: str | Path) -> Any:
        return read_structures(path, on_error="skip").structures


def _reference_structures(reference: Any):
    """Reference crystals from a dataset name (its test split), a file, or structures."""
    if reference is None or not isinstance(reference, (str, Path)):
        return reference
    name = str(reference).replace("-", "_").lower().replace("perov5", "perov_5").replace("mp20", "mp_20")
    if name in DEFAULT_MAX_ATOMS:
        local = SHARED_CRYSTALS / name
        return load_crystals(name, "test", local if (local / "test.csv").is_file() else None).structures
    return read_structures(reference, on_error="skip").structures
