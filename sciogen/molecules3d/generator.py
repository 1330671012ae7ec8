"""``Molecule3DGenerator``: EDM-style E(3)-equivariant diffusion of 3D molecules.

Hoogeboom, Satorras, Vignac & Welling 2022 ("Equivariant Diffusion for Molecule Generation
in 3D"): positions diffused in the zero centre-of-mass subspace, atom types as scaled one-hot
vectors diffused beside them by the same Gaussian process, an EGNN predicting both noises.
Sampling runs any core solver on the dict state ``{"pos", "types"}``; the atom count of each
sample is drawn from the training set's histogram (or given). Bonds are perceived from the
generated geometry (:mod:`sciogen.molecules3d.representation`).

    >>> gen = Molecule3DGenerator.load("molecules3d/qm9")          # doctest: +SKIP
    >>> mols = gen.sample(100, seed=0)                              # RDKit Mols with 3D conformers
    >>> gen.evaluate(mols)["molecule_stability"]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from sciogen.data.records import expand_paths
from sciogen.diffusion import classifier_free, make_schedule, sample
from sciogen.nn import remove_mean
from sciogen.train.generator import Generator
from sciogen.train.trainer import ValidateFn

from .config import Molecule3DConfig
from .network import EDMDynamics

__all__ = ["Molecule3DGenerator", "GeneratedMolecules"]


def _write_xyz(samples: GeneratedMolecules, path: Path) -> Path:
    """One XYZ frame per generated sample (atom count, a comment naming the sample, ``El x y z``)."""
    import gzip

    lines = []
    for i in range(samples.types.shape[0]):
        keep = samples.mask[i]
        lines.append(str(int(keep.sum())))
        lines.append(f"sciogen sample {i}")
        for k, xyz in zip(samples.types[i][keep].tolist(), samples.positions[i][keep].tolist()):
            lines.append(f"{samples.elements[k]} {xyz[0]:.5f} {xyz[1]:.5f} {xyz[2]:.5f}")
    text = "\n".join(lines) + "\n"
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def _elements_of(mols: Sequence, name: str) -> list[str]:
    """The elements of ``mols`` (hydrogens first, then by atomic number)."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    found = {a.GetSymbol() for m in mols if m is not None for a in m.GetAtoms()}
    if not found:
        raise ValueError(f"{name}: no molecules with atoms to train on")
    return sorted(found, key=lambda s: table.GetAtomicNumber(s))

VALIDATION_SAMPLES = 200
#: the files of 3D molecules a user can train on (:func:`~.datasets.read_molecules3d`)
FILE_SUFFIXES = (".sdf", ".sdf.gz", ".sd", ".mol", ".xyz", ".xyz.gz")


class GeneratedMolecules(list):
    """The samples of :meth:`Molecule3DGenerator.sample`: one RDKit ``Mol`` (with a 3D
    conformer, bonds perceived from it) per sample, None where RDKit could not build a
    molecule from the generated atoms. The generated atoms themselves, buildable or not, stay
    beside them for the stability metrics: ``types`` (n, N) element indices in ``elements``,
    ``positions`` (n, N, 3) in Å and ``mask`` (n, N)."""

    def __init__(self, mols: Sequence, types: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                 elements: Sequence[str]):
        super().__init__(mols)
        self.types, self.positions, self.mask = types, positions, mask
        self.elements = list(elements)


class Molecule3DGenerator(Generator):
    """Generates 3D molecules. Domain name ``"molecules3d"``; config :class:`Molecule3DConfig`.

    ``sample(n, atoms=None, condition=None, guidance=1.0)``: ``atoms`` an int or one count
    per sample (default: drawn from the training histogram); ``condition={"gap": 0.25}`` for a
    model trained with ``data.condition`` (classifier-free guidance with ``guidance`` != 1).
    """

    domain = "molecules3d"
    config_class = Molecule3DConfig
    output_formats = (".sdf", ".sdf.gz", ".xyz", ".xyz.gz")
    record_name = "molecules"
    sample_conditions = True
    per_sample_conditions = ("atoms",)

    def __init__(self, config: Molecule3DConfig | None = None):
        config = Molecule3DConfig() if config is None else config
        self._elements = list(config.data.elements or ["H", "C", "N", "O", "F"])
        super().__init__(config)
        #: histogram of atom counts of the training molecules (index = count)
        self.atom_counts = torch.zeros(1)
        #: mean / std of the conditioning property in its units
        self.condition_stats = (0.0, 1.0)
        self._reference_smiles: list[str] | None = None

    # -- domain parts ----------------------------------------------------------------------

    @property
    def elements(self) -> list[str]:
        return list(self._elements)

    @property
    def schedule(self):
        return make_schedule(self.config.diffusion.schedule)

    @property
    def kind(self) -> str:
        """``"edm"`` or ``"unigenx"`` (``model.kind``)."""
        return self.config.model.kind

    def build_model(self) -> nn.Module:
        m = self.config.model
        if m.kind == "unigenx":
            from .unigenx import build_unigenx_molecules

            self.tokenizer = self._tokenizer()
            return build_unigenx_molecules(self.tokenizer, dim=m.hidden, depth=m.layers, heads=m.heads, head_width=m.head_width,
                                           head_depth=m.head_depth, diffusion_repeats=m.diffusion_repeats)
        return EDMDynamics(len(self._elements), hidden=m.hidden, layers=m.layers, sublayers=m.sublayers,
                           attention=m.attention, conditional=self.config.data.condition is not None)

    def _tokenizer(self):
        """The UniGenX tokenizer the config describes (a one-token placeholder before training data)."""
        from .unigenx import MoleculeTokenizer

        m = self.config.model
        if m.tokens is None:
            return MoleculeTokenizer(["C"], max_len=5, scale=m.scale, frame=m.frame)
        return MoleculeTokenizer(m.tokens, max_len=m.max_len, max_atoms=m.max_atoms, scale=m.scale, frame=m.frame)

    def _rebuild(self) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.train.seed)
            self.model = self.build_model()

    def _unigenx_data(self, loaded) -> torch.utils.data.TensorDataset:
        from .unigenx import MoleculeTokenizer, dataset_mols

        mols, skipped = dataset_mols(loaded)
        for skip in skipped:
            self.data_log.skip(loaded.name, skip.index, skip.reason)
        m = self.config.model
        if m.tokens is None:
            tokenizer = MoleculeTokenizer.from_mols(mols, scale=m.scale, frame=m.frame)
            m.tokens, m.max_len, m.max_atoms = list(tokenizer.tokens), tokenizer.max_len, tokenizer.max_atoms
            self._rebuild()
        return torch.utils.data.TensorDataset(*self.tokenizer.encode(mols).tensors())

    def _load(self, data: Any):
        """The training molecules as a :class:`~.datasets.Molecules3DDataset`."""
        from .datasets import from_mols, load_qm9_3d, read_molecules3d
        from .representation import ElementVocabulary

        cfg = self.config.data
        vocabulary = ElementVocabulary(list(cfg.elements), max_atoms=cfg.max_atoms) if cfg.elements else None
        if data is None and cfg.dataset == "qm9":
            return load_qm9_3d(cfg.split, path=cfg.path, vocabulary=vocabulary, properties=cfg.condition is not None,
                               limit=cfg.limit, download=cfg.download)
        source = cfg.path if data is None else data
        if isinstance(source, (str, Path)):
            mols, name = [], str(source)
            for file in expand_paths(source, FILE_SUFFIXES, "3D molecule files"):
                records = read_molecules3d(file, on_error="skip")
                for skip in records.skipped:
                    self.data_log.skip(file, skip.where or skip.index, skip.reason)
                mols.extend(records.mols)
        else:
            mols, name = list(source), "the molecules passed to fit"
        if vocabulary is None:
            vocabulary = ElementVocabulary(_elements_of(mols, name), max_atoms=cfg.max_atoms)
        dataset = from_mols(mols[: cfg.limit] if cfg.limit else mols, vocabulary, name=name, on_error="skip")
        for skip in dataset.skipped:
            self.data_log.skip(name, skip.index, skip.reason)
        if cfg.condition is not None:
            raise ValueError(f"data.condition {cfg.condition!r}: conditioning on a property of your own files is not "
                             "supported yet; train unconditionally (data.condition: null)")
        self.data_log.kept = len(dataset)
        self.data_log.require(2, "molecules")
        return dataset

    def training_data(self, data: Any = None) -> torch.utils.data.TensorDataset:
        """Padded tensors: atom-type indices (M, N) (-1 padding), positions (M, N, 3) in Å with
        zero centre of mass, the normalised property (M,) (NaN: none)."""
        loaded = self._load(data)
        self._elements = list(loaded.vocabulary.elements)
        self.config.data.elements = list(self._elements)
        counts = loaded.mask.sum(1)
        self.atom_counts = torch.bincount(counts, minlength=int(counts.max()) + 1).float()
        self._reference_smiles = [s for s in loaded.smiles if s]
        if self.kind == "unigenx":
            if self.config.data.condition is not None:
                raise ValueError("data.condition: the UniGenX model is not conditioned on properties yet; use model.kind: edm")
            return self._unigenx_data(loaded)
        types, pos, mask = loaded.types, loaded.positions, loaded.mask
        name = self.config.data.condition
        if name is not None:
            prop = loaded.properties[:, loaded.property_names.index(name)].to(torch.float32)
            finite = prop[torch.isfinite(prop)]
            if finite.numel() < 2:
                raise ValueError(f"data.condition {name!r}: fewer than 2 molecules have a value")
            self.condition_stats = (float(finite.mean()), float(finite.std().clamp_min(1e-8)))
            prop = (prop - self.condition_stats[0]) / self.condition_stats[1]
        else:
            prop = torch.full((types.shape[0],), float("nan"))
        if len(self._elements) != self.model.num_types:
            self._rebuild()
        return torch.utils.data.TensorDataset(torch.where(mask, types, -1), pos.float(), prop)

    def _state(self, types: torch.Tensor, pos: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        mask = types >= 0
        one_hot = torch.nn.functional.one_hot(types.clamp_min(0), len(self._elements)).float()
        one_hot = one_hot * mask[..., None] * self.config.diffusion.type_scale
        return {"pos": remove_mean(pos, mask), "types": one_hot}, mask

    def loss(self, model: nn.Module, batch, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "unigenx":
            from .unigenx import unigenx_molecule_loss

            return unigenx_molecule_loss(model, self.tokenizer, batch, generator)
        types, pos, prop = batch
        # trim the padding the batch does not use
        width = int((types >= 0).sum(1).max())
        types, pos = types[:, :width], pos[:, :width]
        x0, mask = self._state(types, pos)
        b = types.shape[0]
        device = pos.device
        t = torch.rand(b, generator=generator, device=device) * (1 - 1e-3) + 1e-3
        schedule = self.schedule
        alpha = schedule.alpha(t.double()).float()[:, None, None]
        sigma = schedule.sigma(t.double()).float()[:, None, None]
        node = mask[..., None].float()
        eps = {"pos": remove_mean(torch.randn(pos.shape, generator=generator, device=device), mask),
               "types": torch.randn(x0["types"].shape, generator=generator, device=device) * node}
        x_t = {k: alpha * x0[k] + sigma * eps[k] for k in x0}
        condition = None
        if self.config.data.condition is not None:
            drop = torch.rand(b, generator=generator, device=device) < self.config.model.condition_dropout
            condition = torch.where(drop, float("nan"), prop.to(device))
        pred = model(x_t, t, mask=mask, condition=condition)
        per_atom = ((pred["pos"] - eps["pos"]) ** 2).sum(-1) + ((pred["types"] - eps["types"]) ** 2).sum(-1)
        dims = mask.sum(1).float() * (3 + len(self._elements))
        return ((per_atom * mask).sum(1) / dims).mean()

    def sample(self, n: int, *, atoms: int | Sequence[int] | None = None, **options) -> GeneratedMolecules:
        """Draw ``n`` molecules (see :meth:`Generator.sample` for steps, solver, seed, batch_size).

        Args:
            n: number of molecules.
            atoms: atoms per molecule, one count for all or one per sample (default: drawn from
                the training set's histogram).
            **options: ``condition={name: value}``, ``guidance=`` and the base options.
        """
        if atoms is not None and np.ndim(atoms) == 0:
            atoms = [int(atoms)] * int(n)
        return super().sample(n, atoms=atoms, **options)

    @classmethod
    def own_data_config(cls, config: Molecule3DConfig, data: Any, **options: Any) -> Molecule3DConfig:
        """Train on your own 3D molecules: ``data.dataset: file`` with ``data.path`` an SDF / XYZ
        file (optionally gzipped), a folder of them or a glob; the elements are read from the
        files (``data.elements`` unless the recipe fixes them) and the property condition is
        dropped (conditioning on your own columns is not supported yet)."""
        if data is None:
            return config
        if not isinstance(data, (str, Path)):
            raise ValueError("the molecules3d domain's --data is an SDF / XYZ file, a folder of them or a glob")
        expand_paths(data, FILE_SUFFIXES, "3D molecule files")  # names the problem before training starts
        config.data.dataset, config.data.path = "file", str(data)
        config.data.condition = None
        return config

    def _atom_counts_for(self, n: int, atoms, generator: torch.Generator) -> torch.Tensor:
        if atoms is None:
            if self.atom_counts.sum() <= 0:
                raise ValueError("this model has no atom-count histogram (it was never trained); pass atoms=")
            return torch.multinomial(self.atom_counts, n, replacement=True, generator=generator)
        counts = torch.as_tensor(atoms).reshape(-1).long()
        if counts.numel() == 1:
            counts = counts.expand(n)
        if counts.numel() != n or bool((counts < 1).any()):
            raise ValueError(f"atoms must be a positive count or one per sample (n={n}), got {atoms!r}")
        return counts

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     atoms=None, condition: dict | None = None, guidance: float = 1.0, **conditions) -> GeneratedMolecules:
        if conditions:
            raise ValueError(f"unknown sampling conditions {sorted(conditions)}; the 3D molecules domain takes "
                             "atoms=, condition={name: value} and guidance=")
        device = next(model.parameters()).device
        if self.kind == "unigenx":
            return self._sample_unigenx(model, n, generator=generator, steps=steps, solver=solver, atoms=atoms,
                                        condition=condition)
        counts = self._atom_counts_for(n, atoms, generator).to(device)
        width = int(counts.max())
        mask = torch.arange(width, device=device)[None, :] < counts[:, None]
        node = mask[..., None].float()
        x_T = {"pos": remove_mean(torch.randn((n, width, 3), generator=generator, device=device), mask),
               "types": torch.randn((n, width, len(self._elements)), generator=generator, device=device) * node}
        cond: dict[str, Any] = {"mask": mask}
        net = model
        if condition:
            name = self.config.data.condition
            if name is None:
                raise ValueError("this model was trained without a property condition; it takes no condition=")
            unknown = set(condition) - {name}
            if unknown:
                raise ValueError(f"unknown condition {sorted(unknown)}; this model is conditioned on {name!r}")
            value = torch.as_tensor(condition[name], dtype=torch.float32).reshape(-1)
            value = value.expand(n) if value.numel() == 1 else value
            cond["condition"] = ((value - self.condition_stats[0]) / self.condition_stats[1]).to(device)
            if guidance != 1.0:
                net = classifier_free(model, float(guidance), null_cond={"condition": None})
        out = sample(net, x_T, schedule=self.schedule, prediction="eps", solver=solver, steps=steps,
                     generator=generator, **cond)
        pos = remove_mean(out["pos"], mask).cpu()
        types = out["types"].argmax(-1).cpu()
        return self._decode(types, pos, mask.cpu())

    def _sample_unigenx(self, model: nn.Module, n: int, *, generator, steps: int, solver: str, atoms, condition):
        from .unigenx import sample_molecules_unigenx

        if atoms is not None or condition:
            raise ValueError("the UniGenX model writes each molecule's atoms itself: it takes no atoms= or condition=")
        out = sample_molecules_unigenx(model, self.tokenizer, n, steps=steps, solver=solver, generator=generator)
        return GeneratedMolecules(out["mols"], out["types"].cpu(), out["positions"].cpu(), out["mask"].cpu(),
                                  list(self.tokenizer.elements))

    @torch.no_grad()
    def conformers(self, smiles: str, n: int = 10, *, steps: int | None = None, solver: str | None = None,
                   seed: int | None = None):
        """``n`` 3D conformers of the molecule ``smiles`` (UniGenX models: the SMILES tokens are
        given, the model writes one position per atom).

        Returns:
            The RDKit Mol of ``smiles`` with hydrogens, its bonds from the SMILES, and ``n``
            conformers (ids 0 .. n - 1).

        Raises:
            ValueError: an EDM model (it generates molecules de novo only), a SMILES that does not
                parse, or an atom / token the model's vocabulary does not have (named).
        """
        from sciogen.train.checks import optional_positive_int, positive_int

        from .unigenx import sample_conformers

        if self.kind != "unigenx":
            raise ValueError("conformer generation needs a UniGenX model (model.kind: unigenx, e.g. the shipped "
                             "molecules3d/qm9-unigenx); this EDM model generates molecules de novo only")
        n = positive_int("n", n)
        defaults = self._sampling_defaults()
        steps = optional_positive_int("steps", steps) or defaults.steps
        seed = int(torch.randint(2**62, ()).item()) if seed is None else positive_int("seed", seed, minimum=0)
        model = self.sampling_model
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return sample_conformers(model, self.tokenizer, smiles, n, steps=steps, solver=solver or defaults.solver,
                                 generator=generator)

    def _decode(self, types: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor) -> GeneratedMolecules:
        from .representation import MoleculeError, arrays_to_mol

        vocabulary = self._vocabulary()
        mols = []
        for i in range(types.shape[0]):
            try:
                mols.append(arrays_to_mol(types[i][mask[i]], pos[i][mask[i]], vocabulary=vocabulary, index=i))
            except (MoleculeError, ValueError):
                mols.append(None)
        return GeneratedMolecules(mols, torch.where(mask, types, 0), pos, mask, self._elements)

    def _vocabulary(self):
        from .representation import ElementVocabulary

        return ElementVocabulary(self._elements)

    @staticmethod
    def merge_samples(chunks: Sequence[GeneratedMolecules]) -> GeneratedMolecules:
        width = max(c.types.shape[1] for c in chunks)

        def pad(x: torch.Tensor) -> torch.Tensor:
            extra = width - x.shape[1]
            return torch.nn.functional.pad(x, (0, 0) * (x.ndim - 2) + (0, extra)) if extra else x

        return GeneratedMolecules([m for c in chunks for m in c], torch.cat([pad(c.types) for c in chunks]),
                                  torch.cat([pad(c.positions) for c in chunks]), torch.cat([pad(c.mask) for c in chunks]),
                                  chunks[0].elements)

    # -- metadata, validation, evaluation --------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        # the training SMILES (novelty) stay out: they would double a QM9 checkpoint's size; evaluate(samples,
        # reference=train_smiles) takes them, and a freshly trained generator keeps them in memory
        return {"elements": list(self._elements), "atom_counts": self.atom_counts.clone(),
                "condition_stats": list(self.condition_stats)}

    def load_metadata(self, metadata) -> None:
        if "elements" in metadata:
            self._elements = list(metadata["elements"])
            self.atom_counts = torch.as_tensor(metadata["atom_counts"]).float()
            self.condition_stats = tuple(float(v) for v in metadata["condition_stats"])

    def reference_data(self) -> list[str] | None:
        return self._reference_smiles

    def validation(self) -> ValidateFn:
        def validate(model: nn.Module, step: int) -> dict[str, float]:
            s = self._sampling_defaults()
            g = torch.Generator(device=next(model.parameters()).device).manual_seed(step)
            mols = self.sample_batch(model, VALIDATION_SAMPLES, generator=g, steps=s.steps, solver=s.solver)
            return self.evaluate_samples(mols, self._reference_smiles)

        return validate

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None) -> dict[str, float]:
        """EDM's atom and molecule stability (on every generated molecule), RDKit validity,
        uniqueness and novelty (against ``reference`` SMILES when given); fractions in [0, 1].
        ``samples``: what :meth:`sample` returned, or 3D Mols (e.g. read from an SDF file)."""
        from .datasets import from_mols
        from .metrics import evaluate
        from .representation import ElementVocabulary

        if isinstance(samples, GeneratedMolecules):
            vocabulary = ElementVocabulary(samples.elements)
            return evaluate(samples.types, samples.positions, samples.mask, vocabulary=vocabulary, train_smiles=reference)
        mols = list(samples)
        if any(m is None for m in mols):
            raise ValueError(f"{sum(m is None for m in mols)} of the {len(mols)} samples are None; evaluate what "
                             "sample() returned (it keeps the atoms of every sample) instead of a filtered list")
        dataset = from_mols(mols, ElementVocabulary(_elements_of(mols, "the samples")), name="samples")
        return evaluate(dataset.types, dataset.positions, dataset.mask, vocabulary=dataset.vocabulary, train_smiles=reference)

    @classmethod
    def write_samples(cls, samples: Any, path: str | Path) -> Path:
        """``.sdf`` (optionally ``.gz``): the molecules RDKit could build, with bonds and 3D
        coordinates (the others are counted on stderr); ``.xyz``: every generated sample's atoms
        and coordinates, buildable or not (what :meth:`sample` returned)."""
        from .representation import to_sdf

        path = Path(path)
        if path.name.lower().endswith((".xyz", ".xyz.gz")):
            if not isinstance(samples, GeneratedMolecules):
                raise TypeError("an .xyz file is written from what sample() returned (it keeps every sample's atoms); "
                                "write a list of Mols as .sdf")
            return _write_xyz(samples, path)
        return to_sdf(list(samples), path)

    @classmethod
    def read_samples(cls, path: str | Path) -> list:
        """The molecules of an SDF / XYZ file (bonds of an XYZ file perceived from 3D)."""
        from .datasets import read_molecules3d

        return read_molecules3d(path).mols

    @classmethod
    def add_sample_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--atoms", type=int, help="atoms per molecule (default: drawn from the training histogram)")
        parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale with --condition")
