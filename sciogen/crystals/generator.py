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
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sciogen.data.output import FOLDER, write_atomically
from sciogen.diffusion import CategoricalProcess, GaussianProcess, WrappedNormalProcess
from sciogen.train.checks import finite_number, optional_positive_int, positive_int
from sciogen.train.generator import Generator

from .config import CrystalConfig
from .datasets import (
    DEFAULT_MAX_ATOMS,
    STRUCTURES_PREFIX,
    crystal_tensors,
    load_cdvae,
    load_crystals,
    read_own_crystals,
    usable_tensors,
)
from .diffcsp import CrystalProcesses, crystal_loss, sample_crystals
from .io import OUTPUT_SUFFIXES, read_samples, write_structures
from .network import CSPNet, CSPNetConfig
from .representation import CrystalSpec, CrystalTensors, UnknownElementError, from_tensors, parse_composition
from .screening import CrystalSamples
from .unigenx import CrystalTokenizer, build_unigenx, sample_unigenx, unigenx_loss

__all__ = ["CrystalGenerator"]

#: the fewest usable crystals a model trains on
MIN_CRYSTALS = 2


class _Crystals(Dataset):
    """Crystal tensors, with normalised conditions (M, K) (NaN: missing) when the model has some."""

    def __init__(self, tensors: CrystalTensors, cond: torch.Tensor | None = None):
        self.tensors = tensors
        self.cond = cond

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i):
        item = self.tensors[i]
        return item if self.cond is None else {**item, "cond": self.cond[i]}


class CrystalGenerator(Generator):
    """Crystal structure prediction and de novo generation. Domain ``"crystals"``.

    ``fit(data)`` accepts a list of pymatgen Structures, :class:`CrystalRecords` or a path
    (folder of CIFs, CIF, CDVAE CSV, extxyz, glob); with no data it reads ``config.data``.
    Records that cannot be used are reported in :attr:`data_log` (file, index, reason).
    """

    domain = "crystals"
    sample_conditions = True
    per_sample_conditions = ("types", "cond", "cond_mask", "templates")  # rows per sample, sliced by chunk
    record_name = "crystals"
    config_class = CrystalConfig
    data_options = ("column", "condition_on", "download")
    example_output = "structures/"
    output_formats = (*OUTPUT_SUFFIXES, FOLDER)

    def __init__(self, config: CrystalConfig | None = None):
        config = CrystalConfig() if config is None else config
        max_atoms = config.data.max_atoms or DEFAULT_MAX_ATOMS.get(config.data.dataset, 20)
        self.spec = CrystalSpec.all_elements(max_atoms)
        k = self.spec.num_types
        self.type_marginals = torch.full((k,), 1.0 / k, dtype=torch.float64)
        self.atom_count_probs = torch.zeros(max_atoms + 1, dtype=torch.float64)
        self.atom_count_probs[max_atoms] = 1.0
        self.scale = 2.5
        self.cond_mean = torch.zeros(len(config.model.conditions), dtype=torch.float64)
        self.cond_std = torch.ones(len(config.model.conditions), dtype=torch.float64)
        super().__init__(config)

    def build_model(self) -> nn.Module:
        m = self.config.model
        if m.kind == "unigenx":
            return build_unigenx(self.spec, dim=m.hidden, depth=m.layers, heads=m.heads, head_width=m.head_width,
                                 head_depth=m.head_depth, diffusion_repeats=m.diffusion_repeats, dropout=m.dropout)
        return CSPNet(CSPNetConfig(self.spec.num_types, m.hidden, m.layers, m.frequencies, m.time_dim, len(m.conditions)))

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

    @property
    def conditions(self) -> list[str]:
        """The properties this model is conditioned on (``model.conditions``)."""
        return list(self.config.model.conditions)

    @classmethod
    def own_data_config(cls, config: CrystalConfig, data: Any, *, column: str | None = None,
                        condition_on: Sequence[str] | None = None, download: bool = False) -> CrystalConfig:
        """Train on a user's crystals: ``data.dataset: file`` with ``data.path`` (a folder of
        CIFs, a CIF / CDVAE CSV / extxyz file or a glob), ``data.column`` (the CSV column of CIF
        text), ``model.conditions`` (``condition_on``: numeric columns / info keys) and
        ``data.max_atoms`` (the largest usable cell). A list of Structures is written once to a
        CDVAE CSV in the dataset cache (``$SCIOGEN_CACHE/crystals/own``), so the run can resume.
        With ``data=None`` only ``download`` (the recipe's benchmark) applies.
        """
        from sciogen.data.records import RecordLog

        if data is None:
            config.data.download = bool(download)
            return config
        if download:
            raise ValueError("--download fetches the recipe's registered dataset; it does nothing with --data (your own files)")
        d = config.data
        if column is not None:
            d.column = str(column)
        conditions = list(condition_on or [])
        if conditions and config.model.kind != "cspnet":
            raise ValueError(f"--condition-on ({', '.join(conditions)}) is implemented for CSPNet models only; "
                             f"this recipe's model.kind is {config.model.kind!r} (use the crystals/perov5 recipe)")
        if not isinstance(data, (str, Path)):
            items = list(data)
            if items and all(isinstance(x, (str, Path)) for x in items):
                raise ValueError(f"give one folder, file or quoted glob as data (got a list of {len(items)} paths)")
            log = RecordLog()
            recs = read_own_crystals(items, log, conditions=conditions)
            if log.skipped:
                raise TypeError(f"data must be a list of pymatgen Structures; {len(log)} item(s) are not:\n{log.examples()}")
            missing = [c for c in conditions if c not in recs.properties]
            if missing:
                have = ", ".join(sorted(recs.properties)) or "none"
                raise ValueError(f"no Structure has a numeric properties[{missing[0]!r}] to condition on "
                                 f"(numeric properties: {have})")
            data, d.column = str(_cache_structures(recs)), "cif"
        log = RecordLog()
        recs = read_own_crystals(data, log, column=d.column, conditions=conditions)
        for name in conditions:
            if not any(math.isfinite(v) for v in recs.properties[name]):
                raise ValueError(f"--condition-on {name}: no record of {data} has a numeric value")
        ordered = [len(s) for s in recs.structures if s.is_ordered]
        if not ordered:
            log.kept = 0
            log.require(MIN_CRYSTALS, f"crystals in {data}")
        d.dataset, d.path = "file", str(data)
        d.max_atoms = max(ordered)
        config.model.conditions = conditions
        return config

    def _own_records(self, data: Any):
        """The user's crystals of ``data`` (None: ``config.data.path``), read with the log."""
        from .io import CrystalRecords

        d = self.config.data
        if isinstance(data, CrystalRecords):
            for where, ident, reason in data.skipped:
                self.data_log.skip(data.source, where if isinstance(where, int) else ident, reason)
            return data
        source, limit = (d.path, d.limit) if data is None else (data, None)
        return read_own_crystals(source, self.data_log, column=d.column, conditions=self.conditions, limit=limit)

    def training_data(self, data: Any = None) -> Dataset:
        d = self.config.data
        if data is None and d.dataset != "file":
            recs = load_crystals(d.dataset, d.split, d.path, d.limit, download=d.download)
            tensors, kept = crystal_tensors(recs, self.spec, niggli=d.niggli), list(range(len(recs)))
        else:
            recs = self._own_records(data)
            tensors, kept = usable_tensors(recs, self.spec, self.data_log, niggli=d.niggli)
        self.data_log.kept = len(kept)
        if len(kept) < MIN_CRYSTALS and self.data_log.skipped and self.config.train.run_dir:
            self.data_log.write(self.config.train.run_dir)  # the full list, beside the refusal below
        self.data_log.require(MIN_CRYSTALS, "crystals")
        counts = torch.bincount(tensors.types[tensors.mask], minlength=self.spec.num_types).double()
        self.type_marginals = counts / counts.sum()
        sizes = torch.bincount(tensors.num_atoms, minlength=self.spec.max_atoms + 1).double()
        self.atom_count_probs = sizes / sizes.sum()
        volumes = torch.linalg.det(tensors.lattice.double()).abs()
        self.scale = float((volumes / tensors.num_atoms.double()).pow(1.0 / 3.0).mean())
        if not self.conditions:
            return _Crystals(tensors)
        return _Crystals(tensors, self._normalised_conditions(recs, kept))

    def _normalised_conditions(self, recs, kept: list[int]) -> torch.Tensor:
        """(M, K) normalised condition values of the kept records (NaN: missing); sets the statistics."""
        columns = []
        for name in self.conditions:
            if name not in recs.properties:
                have = ", ".join(sorted(recs.properties)) or "none"
                raise ValueError(f"condition {name!r} is not a property of the training data (its properties: {have})")
            values = torch.tensor(recs.properties[name], dtype=torch.float64)[kept]
            if not bool(torch.isfinite(values).any()):
                raise ValueError(f"condition {name!r}: no usable training crystal has a value")
            columns.append(values)
        raw = torch.stack(columns, 1)
        raw = torch.where(torch.isfinite(raw), raw, torch.full_like(raw, math.nan))
        self.cond_mean = torch.nanmean(raw, 0)
        self.cond_std = torch.sqrt(torch.nanmean((raw - self.cond_mean) ** 2, 0)).clamp_min(1e-8)
        missing = torch.isnan(raw).sum(0)
        for name, m in zip(self.conditions, missing.tolist()):
            if m:
                print(f"sciogen: condition {name!r}: {m} of {raw.shape[0]} training crystals have no value "
                      "(trained with the null condition)", file=sys.stderr)
        return ((raw - self.cond_mean) / self.cond_std).float()

    def metadata(self) -> dict[str, Any]:
        out = {"spec": self.spec.to_dict(), "type_marginals": self.type_marginals,
               "atom_count_probs": self.atom_count_probs, "scale": self.scale}
        if self.conditions:
            out.update(cond_mean=self.cond_mean, cond_std=self.cond_std)
        return out

    def load_metadata(self, metadata: Mapping[str, Any]) -> None:
        if "spec" in metadata:
            self.spec = CrystalSpec.from_dict(metadata["spec"])
            self.type_marginals = torch.as_tensor(metadata["type_marginals"], dtype=torch.float64)
            self.atom_count_probs = torch.as_tensor(metadata["atom_count_probs"], dtype=torch.float64)
            self.scale = float(metadata["scale"])
        if "cond_mean" in metadata:
            self.cond_mean = torch.as_tensor(metadata["cond_mean"], dtype=torch.float64)
            self.cond_std = torch.as_tensor(metadata["cond_std"], dtype=torch.float64)

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        if self.config.model.kind == "unigenx":
            return unigenx_loss(model, self.tokenizer, batch, self.scale, generator, augment=True)
        d = self.config.diffusion
        cond = cond_mask = None
        if self.conditions:
            raw = batch["cond"]
            p = self.config.model.cond_drop
            drop_all = torch.rand(raw.shape[0], 1, generator=generator, device=raw.device) < p
            drop_one = torch.rand(raw.shape, generator=generator, device=raw.device) < p
            cond_mask = ~(drop_all | drop_one) & ~torch.isnan(raw)
            cond = torch.nan_to_num(raw)
        return crystal_loss(model, batch, self.processes(), generator, d.csp_fraction, tuple(d.weights),
                            cond=cond, cond_mask=cond_mask)

    # -- sampling --------------------------------------------------------------------------------

    @classmethod
    def add_sample_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--composition", help="cell composition for structure prediction, e.g. SrTiO3 (default: de novo)")
        parser.add_argument("--corrector-steps", dest="corrector_steps", type=int, help="Langevin corrector steps per step")
        parser.add_argument("--step-lr", dest="step_lr", type=float,
                            help="corrector step size (default: the model's; DiffCSP on Perov-5: 5e-7 CSP, 1e-6 de novo)")
        parser.add_argument("--temperature", type=float, help="UniGenX models: scale of each number's starting noise")
        parser.add_argument("--guidance", type=float,
                            help="classifier-free guidance scale of --condition (default: the model's, 1 = none)")
        parser.add_argument("--space-group", dest="space_group", metavar="GROUP",
                            help="CSPNet models: generate in this space group, a number or symbol (221, Pm-3m)")
        parser.add_argument("--wyckoff", metavar="LABELS",
                            help="with --space-group: the Wyckoff positions of every sample, e.g. '1a 1b 3c' "
                                 "(default: the templates of the reference crystals in that group)")
        parser.add_argument("--reference", metavar="PATH",
                            help="crystals (CIF folder, CDVAE CSV, extxyz) for the novelty column of an --out "
                                 "folder's summary.csv and the Wyckoff templates of --space-group (default: the "
                                 "model's training data where it can be read)")

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

    def condition_tensors(self, condition: Mapping[str, Any], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised conditions (n, K) and their mask (n, K) bool from ``{name: value}`` (a
        number, or one per sample); names not given are unset (their null embedding)."""
        if not self.conditions:
            raise ValueError("this model was trained without conditions (train with --condition-on COLUMN); "
                             "it samples unconditionally only")
        if not isinstance(condition, Mapping):
            raise ValueError(f"condition must be a mapping {{name: value}}, e.g. {{'formation_energy': -1.5}}; "
                             f"got {condition!r}")
        unknown = [k for k in condition if k not in self.conditions]
        if unknown:
            raise ValueError(f"unknown condition(s) {unknown}; this model was trained on {self.conditions}")
        cond = torch.zeros(n, len(self.conditions))
        mask = torch.zeros(n, len(self.conditions), dtype=torch.bool)
        for name, value in condition.items():
            try:
                values = torch.as_tensor([float(v) for v in value] if isinstance(value, Sequence) and not isinstance(value, str)
                                         else [float(value)] * n, dtype=torch.float64)
            except (TypeError, ValueError):
                raise ValueError(f"condition {name}={value!r} is not a number (or one number per sample)") from None
            if values.numel() != n or not bool(torch.isfinite(values).all()):
                raise ValueError(f"condition {name}: give one finite number, or {n} (one per sample); got {value!r}")
            j = self.conditions.index(name)
            cond[:, j] = ((values - self.cond_mean[j]) / self.cond_std[j]).float()
            mask[:, j] = True
        return cond, mask

    @torch.no_grad()
    def sample(self, n: int, *, composition: Any = None, condition: Any = None, guidance: float | None = None,
               space_group: Any = None, wyckoff: Any = None, reference: Any = None, **kwargs) -> Any:
        """Draw ``n`` crystals: of the given ``composition`` (CSP; one, or one per sample)
        or de novo. Other options: ``steps``, ``solver``, ``seed``, ``batch_size``,
        ``tensors=True`` (raw tensors instead of Structures); CSPNet models:
        ``corrector_steps``, ``step_lr``, and for models trained with conditions
        ``condition={"name": value}`` with ``guidance`` (classifier-free
        scale, default ``sampling.guidance``); UniGenX models: ``temperature``, ``token_temperature``.

        ``space_group`` (CSPNet models; a number or symbol, one or one per sample) keeps every
        sample in that group (:mod:`sciogen.crystals.symmetry`): each sample gets a Wyckoff
        template, ``wyckoff`` (e.g. ``"1a 1b 3c"``) or else one of the ``reference`` crystals'
        templates in the group that fits (default reference: the model's training data where it
        can be read), or else any assignment that fits. A composition no assignment fits raises
        :class:`~sciogen.crystals.symmetry.SpaceGroupError`.

        Returns a :class:`~sciogen.crystals.screening.CrystalSamples` list (Structures, None where a
        lattice came out degenerate) that remembers the request, for :meth:`write_samples`;
        ``reference`` (Structures or a path) is also what its novelty column is measured against.
        """
        n = positive_int("n", n)
        _check_sample_options(kwargs)
        requested: dict[str, Any] = {}
        if composition is not None:
            kwargs["types"] = self.composition_types(composition, n)
        if condition:
            kwargs["cond"], kwargs["cond_mask"] = self.condition_tensors(condition, n)
            kwargs["guidance"] = (self.config.sampling.guidance if guidance is None
                                  else finite_number("guidance", guidance))
            if not kwargs["guidance"] >= 0:
                raise ValueError(f"guidance must be >= 0, got {guidance}")
            requested.update(condition=dict(condition), guidance=kwargs["guidance"])
        elif guidance is not None:
            raise ValueError("guidance= is classifier-free guidance on a condition; give condition={name: value} too"
                             if self.conditions else
                             "guidance= is classifier-free guidance on conditions; this model was trained without any")
        references = _References(self, reference)
        templates = None
        if space_group is not None:
            templates = self._space_group_templates(n, space_group, wyckoff, references, kwargs)
            requested.update(space_group=[t.group for t in templates],
                             wyckoff_prior="given" if wyckoff is not None else references.prior_source)
        elif wyckoff is not None:
            raise ValueError("wyckoff= names the Wyckoff positions of a space group; give space_group= too")
        out = super().sample(n, **kwargs)
        if not isinstance(out, list):
            return out
        return CrystalSamples(out, requested, None if templates is None else [str(t) for t in templates],
                              references.structures)

    def _space_group_templates(self, n: int, space_group: Any, wyckoff: Any, references: "_References",
                               kwargs: dict) -> list:
        """One Wyckoff template per sample (drawn with the sampling seed, which is fixed here when
        None); sets ``kwargs`` ``templates`` and, for CSP, ``types`` laid out orbit by orbit."""
        from sciogen.train import distributed

        from .symmetry import _group_number, choose_templates

        if self.config.model.kind != "cspnet":
            raise ValueError(f"space_group= projects the CSPNet sampler's steps; this model is {self.config.model.kind!r} "
                             "(use a CSPNet model, e.g. crystals/perov5)")
        if isinstance(space_group, Sequence) and not isinstance(space_group, str):
            groups = [_group_number(g) for g in space_group]
            if len(groups) != n:
                raise ValueError(f"space_group: {len(groups)} groups for n={n} samples; give one, or one per sample")
        else:
            groups = [_group_number(space_group)] * n
        if kwargs.get("seed") is None:
            kwargs["seed"] = distributed.broadcast_object(int(torch.randint(2**62, ()).item()))
        rng = np.random.default_rng([positive_int("seed", kwargs["seed"], minimum=0), 26])
        types = kwargs.get("types")
        compositions = None if types is None else [[self.spec.elements[int(j)] for j in row if j >= 0] for row in types]
        prior = references.templates() if wyckoff is None else None
        templates: list = [None] * n
        for group in sorted(set(groups)):
            rows = [i for i, g in enumerate(groups) if g == group]
            chosen = choose_templates(group, len(rows), rng, atom_counts=self.atom_count_probs.numpy(),
                                      compositions=None if compositions is None else [compositions[i] for i in rows],
                                      wyckoff=wyckoff, prior=prior, max_atoms=self.spec.max_atoms)
            for i, t in zip(rows, chosen):
                templates[i] = t
        kwargs["templates"] = templates
        if types is not None:
            laid = torch.full((n, max(t.num_atoms for t in templates)), -1, dtype=torch.long)
            for i, t in enumerate(templates):
                zs = [z for z, label in zip(t.elements, t.labels) for _ in range(t.cell.multiplicity(label))]
                laid[i, :len(zs)] = torch.tensor([self.spec.index(z) for z in zs])
            kwargs["types"] = laid
        return templates

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     types: torch.Tensor | None = None, corrector_steps: int | None = None,
                     step_lr: float | None = None, temperature: float | None = None,
                     token_temperature: float | None = None, tensors: bool = False,
                     cond: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None,
                     guidance: float = 1.0, templates: Sequence | None = None) -> Any:
        s = self.config.sampling
        if self.config.model.kind == "unigenx":
            if templates is not None:
                raise ValueError("space groups are imposed on CSPNet models only; this one is UniGenX")
            if cond is not None:
                raise ValueError("conditions belong to CSPNet models trained with --condition-on; this one is UniGenX")
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
            out, num_atoms = self._sample_cspnet(model, n, generator, steps, types, corrector_steps, step_lr,
                                                 cond, cond_mask, guidance, templates)
        if tensors:
            return [{"types": out["types"][i], "frac": out["frac"][i], "lattice": out["lattice"][i]} for i in range(n)]
        return from_tensors(out["types"], out["frac"], out["lattice"], num_atoms, self.spec)

    def _sample_cspnet(self, model, n, generator, steps, types, corrector_steps, step_lr, cond, cond_mask, guidance,
                       templates=None):
        s = self.config.sampling
        options = dict(steps=steps, corrector_steps=s.corrector_steps if corrector_steps is None else corrector_steps,
                       step_lr=step_lr or (s.step_lr if types is not None else s.denovo_step_lr),
                       allowed_types=self.type_marginals > 0, generator=generator,
                       **({} if cond is None else {"cond": cond, "cond_mask": cond_mask, "guidance": guidance}))
        if templates is not None:
            from .symmetry import SymmetryProjector, sample_in_space_groups

            projector = SymmetryProjector(templates, self.device)
            out = sample_in_space_groups(model, self.processes(), projector, types=types, **options)
            return out, projector.num_atoms
        if types is None:
            num_atoms = torch.multinomial(self.atom_count_probs.float(), n, replacement=True, generator=generator)
        else:
            num_atoms = (types >= 0).sum(1)
        out = sample_crystals(model, self.processes(), num_atoms.to(self.device), types=types, **options)
        return out, num_atoms

    # -- metrics and files -------------------------------------------------------------------------

    def reference_data(self) -> Any:
        """The benchmark's name (its test split), or the user's training files."""
        d = self.config.data
        return d.dataset if d.dataset != "file" else d.path

    def _training_structures(self):
        """The training crystals where they can be read without a download (the benchmark split
        in the dataset cache or at ``data.path``, or the user's files), else None."""
        from sciogen.data.records import RecordLog

        d = self.config.data
        try:
            if d.dataset == "file":
                return None if d.path is None else read_own_crystals(d.path, RecordLog(), column=d.column).structures
            return load_crystals(d.dataset, d.split, d.path, d.limit).structures
        except (FileNotFoundError, OSError, ValueError):
            return None

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None, download: bool = False) -> dict[str, float]:
        """De novo metrics of ``samples`` (validity, uniqueness; with a reference, the
        Wasserstein distances of density and element count).

        ``reference``: Structures, a benchmark name (``perov_5``, ``mp_20``, ...: its test
        split from the dataset cache, fetched with ``download=True``) or your own crystals
        (a folder of CIFs, a CDVAE CSV, an extxyz file, a glob)."""
        from .metrics import evaluate

        unreadable = list(getattr(samples, "unreadable", ()))
        if unreadable:
            listed = "".join(f"\n  {reason}" if Path(where).name in reason else f"\n  {where}: {reason}"
                             for where, reason in unreadable[:10])
            more = f"\n  ... and {len(unreadable) - 10} more" if len(unreadable) > 10 else ""
            print(f"sciogen: {len(unreadable)} of {len(samples)} samples could not be read; they count as invalid:"
                  f"{listed}{more}", file=sys.stderr)
        structures = [s for s in samples if s is not None] if isinstance(samples, Sequence) else samples
        if isinstance(samples, Sequence) and not structures:
            where, reason = unreadable[0] if unreadable else ("", "all failed")
            why = f" ({reason})" if not where or Path(where).name in reason else f" ({where}: {reason})"
            raise ValueError(f"none of the {len(samples)} samples is a structure{why}; nothing to evaluate")
        metrics = evaluate(samples, reference=_reference_structures(reference, download), task="gen")
        return {**metrics, "unreadable": len(unreadable)}

    @classmethod
    def write_samples(cls, samples: Any, path: str | Path) -> Path:
        """``path`` with a suffix: one file of every structure (``.cif`` blocks, a CDVAE ``.csv``,
        ``.extxyz`` frames); without: a folder of one CIF per sample and ``summary.csv``, the
        screening table (:func:`~sciogen.crystals.screening.screening_table`: file, formula, atoms,
        volume, density, space group, validity, novelty against the samples' reference, what was
        requested) beside the listing of each file."""
        path = write_structures(samples, path)
        if not Path(path).is_dir():
            return path
        import pandas as pd

        from .screening import screening_table

        listing = pd.read_csv(Path(path) / "summary.csv", dtype={"file": str}, keep_default_na=False)
        table = screening_table(list(samples) if not isinstance(samples, CrystalSamples) else samples)
        columns = ["index", "file", "formula", "atoms", "volume", "density"]
        merged = listing[columns].merge(table.drop(columns=["formula"]), on="index", how="left")
        merged.to_csv(Path(path) / "summary.csv", index=False)
        return path

    @classmethod
    def read_samples(cls, path: str | Path) -> Any:
        """Structures of sample files, None (named in ``.unreadable``) for each item that
        could not be read, so evaluation scores it as invalid."""
        return read_samples(path)


def _check_sample_options(options: dict) -> None:
    """Check the numeric sampling options in place, before any work (None: the model's default)."""
    for name in ("steps", "batch_size"):
        options[name] = optional_positive_int(name, options.get(name))
    if options.get("corrector_steps") is not None:
        options["corrector_steps"] = positive_int("corrector_steps", options["corrector_steps"], minimum=0)
    if options.get("step_lr") is not None and not finite_number("step_lr", options["step_lr"]) > 0:
        raise ValueError(f"step_lr must be > 0 (the Langevin corrector's step size), got {options['step_lr']}")
    for name in ("temperature", "token_temperature"):
        if options.get(name) is not None and not finite_number(name, options[name]) >= 0:
            raise ValueError(f"{name} must be >= 0, got {options[name]}")


def _cache_structures(recs) -> Path:
    """Write Structures (with their numeric properties) once to a CDVAE CSV in the dataset cache."""
    import csv

    from pymatgen.io.cif import CifWriter

    from sciogen.data import cache_dir
    from sciogen.data.cache import content_key

    names = sorted(recs.properties)
    rows = [{"material_id": i, "cif": str(CifWriter(s)), **{k: recs.properties[k][i] for k in names}}
            for i, s in enumerate(recs.structures)]
    digest = content_key(repr([(r["cif"], [r[k] for k in names]) for r in rows]))
    path = cache_dir() / "crystals" / "own" / f"{STRUCTURES_PREFIX}{digest}.csv"
    if not path.is_file():
        def write(rows: list[dict], tmp: Path) -> Path:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["material_id", "cif", *names])
                writer.writeheader()
                writer.writerows(rows)
            return tmp

        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(write, rows, path)  # a name of its own per writer: ranks under torchrun do not collide
    return path


def _reference_structures(reference: Any, download: bool = False):
    """Reference crystals from a benchmark name (its test split, from the dataset cache), your
    own files (unreadable records are counted on stderr), or structures."""
    from sciogen.data.records import RecordLog

    if reference is None or not isinstance(reference, (str, Path)):
        return reference
    name = str(reference).replace("-", "_").lower().replace("perov5", "perov_5").replace("mp20", "mp_20")
    if name in DEFAULT_MAX_ATOMS and not Path(str(reference)).exists():
        return load_cdvae(name, "test", download=download).structures
    if not Path(str(reference)).expanduser().exists() and not any(ch in str(reference) for ch in "*?["):
        raise FileNotFoundError(f"--reference {reference}: no such file or folder, and not a benchmark "
                                f"({', '.join(DEFAULT_MAX_ATOMS)})")
    log = RecordLog()
    recs = read_own_crystals(reference, log)
    log.kept = len(recs)
    log.report(None, what=f"reference crystals of {reference}")
    if not recs.structures:
        raise ValueError(f"--reference {reference}: no readable crystal")
    return recs.structures


class _References:
    """The reference crystals of one ``sample`` call (Structures, a path, or None: the model's
    training data where it can be read), loaded at most once, and their Wyckoff templates."""

    def __init__(self, generator: CrystalGenerator, reference: Any):
        if hasattr(reference, "lattice"):  # one Structure
            reference = [reference]
        if reference is not None and not isinstance(reference, (str, Path, Sequence)):
            raise ValueError(f"reference must be Structures or a path to crystal files, got {type(reference).__name__}")
        self.generator, self.reference = generator, reference
        self._loaded = False
        self._structures = None
        self.prior_source = "none"

    def structures(self):
        """The reference Structures, or None when there are none to read."""
        if not self._loaded:
            self._loaded = True
            if self.reference is None:
                self._structures = self.generator._training_structures()
            elif isinstance(self.reference, (str, Path)):
                self._structures = _reference_structures(self.reference)
            else:
                self._structures = [s for s in self.reference if s is not None]
        return self._structures

    def templates(self):
        """Wyckoff templates of the reference crystals (symprec 0.1), cached per generator and source."""
        from .symmetry import wyckoff_templates

        key = ("training",) if self.reference is None else \
            (str(self.reference),) if isinstance(self.reference, (str, Path)) else ("list", id(self.reference))
        cache = self.generator.__dict__.setdefault("_template_cache", {})
        if key not in cache or (key[0] == "list" and cache[key][0] is not self.reference):
            structures = self.structures()
            cache[key] = (self.reference, None if structures is None else wyckoff_templates(structures),
                          0 if structures is None else len(structures))
        _, counts, total = cache[key]
        where = "the model's training data" if self.reference is None else "the reference crystals"
        self.prior_source = (f"Wyckoff templates of {total} crystals of {where}" if counts else
                             "every Wyckoff assignment that fits, equally likely (no reference crystals)")
        return counts
