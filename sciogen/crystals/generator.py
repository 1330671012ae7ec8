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
    per_sample_conditions = ("types", "cond", "cond_mask")  # rows per sample, sliced by chunk
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
               **kwargs) -> Any:
        """Draw ``n`` crystals: of the given ``composition`` (CSP; one, or one per sample)
        or de novo. Other options: ``steps``, ``solver``, ``seed``, ``batch_size``,
        ``tensors=True`` (raw tensors instead of Structures); CSPNet models:
        ``corrector_steps``, ``step_lr``, and for models trained with conditions
        ``condition={"name": value}`` with ``guidance`` (classifier-free
        scale, default ``sampling.guidance``); UniGenX models: ``temperature``, ``token_temperature``."""
        n = positive_int("n", n)
        _check_sample_options(kwargs)
        if composition is not None:
            kwargs["types"] = self.composition_types(composition, n)
        if condition:
            kwargs["cond"], kwargs["cond_mask"] = self.condition_tensors(condition, n)
            kwargs["guidance"] = (self.config.sampling.guidance if guidance is None
                                  else finite_number("guidance", guidance))
            if not kwargs["guidance"] >= 0:
                raise ValueError(f"guidance must be >= 0, got {guidance}")
        elif guidance is not None:
            raise ValueError("guidance= is classifier-free guidance on a condition; give condition={name: value} too"
                             if self.conditions else
                             "guidance= is classifier-free guidance on conditions; this model was trained without any")
        return super().sample(n, **kwargs)

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     types: torch.Tensor | None = None, corrector_steps: int | None = None,
                     step_lr: float | None = None, temperature: float | None = None,
                     token_temperature: float | None = None, tensors: bool = False,
                     cond: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None,
                     guidance: float = 1.0) -> Any:
        s = self.config.sampling
        if self.config.model.kind == "unigenx":
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
                                                 cond, cond_mask, guidance)
        if tensors:
            return [{"types": out["types"][i], "frac": out["frac"][i], "lattice": out["lattice"][i]} for i in range(n)]
        return from_tensors(out["types"], out["frac"], out["lattice"], num_atoms, self.spec)

    def _sample_cspnet(self, model, n, generator, steps, types, corrector_steps, step_lr, cond, cond_mask, guidance):
        s = self.config.sampling
        if types is None:
            num_atoms = torch.multinomial(self.atom_count_probs.float(), n, replacement=True, generator=generator)
        else:
            num_atoms = (types >= 0).sum(1)
        out = sample_crystals(model, self.processes(), num_atoms.to(self.device), types=types, steps=steps,
                              corrector_steps=s.corrector_steps if corrector_steps is None else corrector_steps,
                              step_lr=step_lr or (s.step_lr if types is not None else s.denovo_step_lr),
                              allowed_types=self.type_marginals > 0, generator=generator,
                              **({} if cond is None else {"cond": cond, "cond_mask": cond_mask, "guidance": guidance}))
        return out, num_atoms

    # -- metrics and files -------------------------------------------------------------------------

    def reference_data(self) -> Any:
        """The benchmark's name (its test split), or the user's training files."""
        d = self.config.data
        return d.dataset if d.dataset != "file" else d.path

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
        ``.extxyz`` frames); without: a folder of one CIF per sample and ``summary.csv``."""
        return write_structures(samples, path)

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
