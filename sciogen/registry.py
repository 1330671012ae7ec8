"""Domains, shipped models and the loaders that dispatch on them.

**Domains register lazily.** A domain is a :class:`DomainSpec`: its name, the module that
holds it, the name of its :class:`~sciogen.train.Generator` subclass, the pip extra it
needs and, optionally, a demo function. Nothing is imported until the domain is used, so
``import sciogen`` and ``sciogen --help`` work without rdkit, pymatgen or MONAI; when the
import fails for a missing package, :class:`MissingExtraError` says which
``pip install "sciogen[extra]"`` to run. A domain adapter registers itself with one
entry in the table at the bottom of this module (or, from another package, with a call)::

    register_domain(DomainSpec(
        name="molecules", module="sciogen.molecules", generator="MoleculeGenerator",
        extra="molecules", description="molecular graphs (QM9, MOSES)",
        demo="sciogen.molecules.demo:run_demo",   # optional, run by `sciogen demo`
        recipe="molecules/qm9",                   # default recipe of `sciogen train molecules`
    ))

The generator class then supplies everything the CLI needs: its config class (for
``sciogen train``), ``add_sample_arguments`` (domain options of ``sciogen sample``),
``write_samples`` / ``read_samples`` / ``evaluate_samples`` (for ``sample`` and
``evaluate``). A demo function has the signature ``run_demo(out_dir: Path, quick: bool)
-> list[dict]`` and returns rows of results that ``sciogen demo`` prints.

**Shipped models** are package data: ``sciogen/checkpoints/<domain>-<name>.pt`` with a
model card ``<domain>-<name>.md``, known to users as ``"<domain>/<name>"``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import re
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from sciogen.train.config import RunConfig
    from sciogen.train.generator import Generator

__all__ = [
    "DomainSpec",
    "MissingExtraError",
    "UnknownNameError",
    "register_domain",
    "get_domain",
    "domains",
    "available",
    "model_card",
    "shipped_checkpoint",
    "load",
    "load_once",
    "load_run_config",
    "prepare_run",
    "fit",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MissingExtraError(ImportError):
    """A domain needs packages that are not installed; the message says what to install."""


class UnknownNameError(LookupError):
    """No domain, shipped model or file with that name."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DomainSpec:
    """A lazily imported domain (see the module docstring).

    Attributes:
        name: lowercase identifier, e.g. ``"molecules"`` (no ``-`` or ``/``).
        module: the module holding the generator, e.g. ``"sciogen.molecules"``.
        generator: the attribute name of its Generator subclass in ``module``.
        extra: the pip extra that provides its dependencies (None: core only).
        description: one line for ``sciogen list``.
        demo: ``"module:function"`` run by ``sciogen demo``, or None.
        recipe: the packaged recipe that ``sciogen train NAME`` starts from, e.g. ``"molecules/qm9"``.
    """

    name: str
    module: str
    generator: str
    extra: str | None = None
    description: str = ""
    demo: str | None = None
    recipe: str | None = None

    def import_module(self, target: str | None = None) -> ModuleType:
        """Import the domain's module (or ``target``), turning a missing dependency into advice."""
        target = target or self.module
        try:
            return importlib.import_module(target)
        except ImportError as err:
            missing = getattr(err, "name", None) or str(err)
            if self.extra is None or (missing and missing.split(".")[0] == "sciogen"):
                raise
            raise MissingExtraError(
                f"the {self.name!r} domain needs {missing!r}, which is not installed; "
                f'install it with: pip install "sciogen[{self.extra}]"'
            ) from err

    def generator_class(self) -> type["Generator"]:
        """The domain's Generator subclass (imports the domain)."""
        return getattr(self.import_module(), self.generator)

    def demo_function(self) -> Callable[..., list[dict[str, Any]]] | None:
        if self.demo is None:
            return None
        module, _, func = self.demo.partition(":")
        return getattr(self.import_module(module), func)


_DOMAINS: dict[str, DomainSpec] = {}


def register_domain(spec: DomainSpec, *, replace: bool = False) -> DomainSpec:
    """Add a domain to the registry (``replace=True`` to overwrite an existing name)."""
    if not _NAME.match(spec.name):
        raise ValueError(f"domain name {spec.name!r} must be a lowercase identifier (letters, digits, _)")
    if spec.name in _DOMAINS and not replace:
        raise ValueError(f"domain {spec.name!r} is already registered (pass replace=True to overwrite)")
    _DOMAINS[spec.name] = spec
    return spec


def domains() -> list[DomainSpec]:
    """The registered domains, by name."""
    return [_DOMAINS[k] for k in sorted(_DOMAINS)]


def get_domain(name: str) -> DomainSpec:
    """The spec of a registered domain."""
    if name not in _DOMAINS:
        raise UnknownNameError(f"unknown domain {name!r}; registered domains: {', '.join(sorted(_DOMAINS))}")
    return _DOMAINS[name]


# -- shipped models ---------------------------------------------------------------------------


def _checkpoint_folder():
    return importlib.resources.files("sciogen") / "checkpoints"


def _file_name(name: str) -> str:
    domain, sep, rest = name.partition("/")
    if not sep or not rest or "/" in rest:
        raise UnknownNameError(f"shipped model names look like 'domain/name', got {name!r}")
    return f"{domain}-{rest}"


def available() -> list[str]:
    """Names of the shipped models, e.g. ``["toy/gmm"]``."""
    folder = _checkpoint_folder()
    if not folder.is_dir():
        return []
    stems = [p.name[: -len(".pt")] for p in folder.iterdir() if p.name.endswith(".pt")]
    return sorted(s.replace("-", "/", 1) for s in stems if "-" in s)


def shipped_checkpoint(name: str):
    """The package resource of a shipped model's checkpoint (a Traversable)."""
    if name not in available():
        shipped = ", ".join(available()) or "none"
        raise UnknownNameError(f"no shipped model named {name!r}; shipped models: {shipped}")
    return _checkpoint_folder() / f"{_file_name(name)}.pt"


def model_card(name: str) -> str | None:
    """The markdown model card of a shipped model, or None."""
    card = _checkpoint_folder() / f"{_file_name(name)}.md"
    return card.read_text() if card.is_file() else None


def read_checkpoint(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """Load the checkpoint of a shipped name, a file or a run folder; returns (dict, where)."""
    from sciogen.train.checkpoint import load_checkpoint, resolve_checkpoint

    path = Path(name_or_path)
    if path.exists():
        resolved = resolve_checkpoint(path)
        return load_checkpoint(resolved), str(resolved)
    if str(name_or_path) not in available():
        shipped = ", ".join(available()) or "none"
        raise UnknownNameError(
            f"{str(name_or_path)!r} is neither a checkpoint file, a run folder nor a shipped model "
            f"(shipped models: {shipped})"
        )
    with ExitStack() as stack:
        file = stack.enter_context(importlib.resources.as_file(shipped_checkpoint(str(name_or_path))))
        return load_checkpoint(file), str(name_or_path)


# -- shipped predictors (property regressors that score samples; not generators) ---------------

#: what a predictor checkpoint says it is (``checkpoint["kind"]``); a generator's has no kind
PREDICTOR_KIND = "predictor"


def available_predictors() -> list[str]:
    """Names of the shipped property predictors, e.g. ``["molecules/qm9-properties"]``."""
    folder = _checkpoint_folder() / "predictors"
    if not folder.is_dir():
        return []
    stems = [p.name[: -len(".pt")] for p in folder.iterdir() if p.name.endswith(".pt")]
    return sorted(s.replace("-", "/", 1) for s in stems if "-" in s)


def read_predictor(name_or_path: str | Path, domain: str) -> tuple[dict[str, Any], str]:
    """Load a property predictor's checkpoint: a shipped name (:func:`available_predictors`) or
    a file, checked to be a ``domain`` predictor; returns (dict, where)."""
    from sciogen.train.checkpoint import CheckpointError, load_checkpoint

    path = Path(name_or_path)
    if path.exists():
        checkpoint, where = load_checkpoint(path), str(path)
    else:
        if str(name_or_path) not in available_predictors():
            shipped = ", ".join(available_predictors()) or "none"
            raise UnknownNameError(f"{str(name_or_path)!r} is neither a predictor file nor a shipped predictor "
                                   f"(shipped predictors: {shipped})")
        resource = _checkpoint_folder() / "predictors" / f"{_file_name(str(name_or_path))}.pt"
        with importlib.resources.as_file(resource) as file:
            checkpoint, where = load_checkpoint(file), str(name_or_path)
    if checkpoint.get("kind") != PREDICTOR_KIND or checkpoint.get("domain") != domain:
        what = f"a {checkpoint.get('domain')} {checkpoint.get('kind') or 'generator'}"
        raise CheckpointError(f"{where} is {what}, not a {domain} property predictor")
    return checkpoint, where


def load(name_or_path: str | Path, device: str = "auto") -> "Generator":
    """A ready-to-sample generator of the right domain.

    Args:
        name_or_path: a shipped model name (``sciogen.available()``), a checkpoint file or a
            run folder (its latest checkpoint).
        device: ``"auto"`` (GPU if present), ``"cpu"``, ``"cuda:1"``, ...
    """
    checkpoint, where = read_checkpoint(name_or_path)
    if checkpoint.get("kind") == PREDICTOR_KIND:
        raise ValueError(f"{where} is a {checkpoint.get('domain')} property predictor, not a generator; load it "
                         f"with the domain's predictor loader (e.g. sciogen.molecules.load_property_predictor)")
    generator_cls = get_domain(str(checkpoint.get("domain"))).generator_class()
    return generator_cls.from_checkpoint(checkpoint, device=device)


_LOADED: dict[tuple[str, str], "Generator"] = {}


def load_once(model: Any, device: str = "cpu", expected: type | None = None) -> "Generator":
    """:func:`load`, cached per process by ``(name, device)``: what MONAI transforms use, so that
    only the name travels to DataLoader workers and each worker loads the model once.
    ``model`` may also be a generator object (returned as it is). ``expected``: the generator
    class the caller needs (a TypeError names what was found instead)."""
    from sciogen.train.generator import Generator

    if not isinstance(model, Generator):
        key = (str(model), str(device))
        if key not in _LOADED:
            _LOADED[key] = load(str(model), device=device)
        model = _LOADED[key]
    if expected is not None and not isinstance(model, expected):
        raise TypeError(f"{model!r} is a {type(model).__name__}, not a {expected.__name__}")
    return model


# -- configs ------------------------------------------------------------------------------------


def load_run_config(source: str | Path, overrides: Iterable[str] = ()) -> "RunConfig":
    """Build a run config from a YAML file, a packaged recipe name (``"molecules/qm9"``) or a
    domain name (its default recipe), with ``key=value`` overrides applied."""
    return _typed_config(read_run_source(source)[0], overrides, str(source))


def read_run_source(source: str | Path) -> tuple[dict[str, Any], str]:
    """The raw mapping of a YAML file, recipe or domain name, and the stem of its run folder."""
    from sciogen.recipes import read_config_source

    defaults = {spec.name: spec.recipe for spec in domains() if spec.recipe}
    return read_config_source(source, defaults)


def _typed_config(data: dict[str, Any], overrides: Iterable[str], where: str) -> "RunConfig":
    from sciogen.config import ConfigError, apply_overrides, from_dict

    data = apply_overrides(data, overrides)
    domain = data.get("domain")
    if not domain:
        known = ", ".join(s.name for s in domains())
        raise ConfigError(f"{where} has no 'domain' key; set it to one of: {known}")
    return from_dict(get_domain(str(domain)).generator_class().config_class, data)


def prepare_run(source: str | Path, data: Any = None, overrides: Iterable[str] = (), **options: Any) -> tuple["Generator", str]:
    """An untrained generator for ``source`` (YAML file, recipe or domain name), set up to
    train on ``data`` (a user's file, folder or glob, or None for the recipe's own data).

    ``options`` are own-data options (:data:`sciogen.train.generator.DATA_OPTIONS`);
    ``overrides`` (``key=value``) are applied last, so they win over what the data set.
    Returns (generator, stem of the default run folder).
    """
    from sciogen.config import to_dict

    raw, stem = read_run_source(source)
    config = _typed_config(raw, (), str(source))
    generator_cls = get_domain(config.domain).generator_class()
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    if data is not None:
        config = generator_cls.configure_data(config, data, **options)
    elif set(given) - {"download"}:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in given)} need(s) --data (your own files)")
    elif given.get("download"):
        config = generator_cls.configure_data(config, None, download=True)
    config = _typed_config(to_dict(config), overrides, str(source))
    return generator_cls(config), stem


def fit(source: str | Path, data: Any = None, *, run_dir: str | Path | None = None, overrides: Iterable[str] = (),
        resume: bool | str | Path = False, **options: Any) -> "Generator":
    """Train a model in one call, as ``sciogen train SOURCE --data DATA`` does.

    Args:
        source: a domain name (its default recipe, e.g. ``"molecules"``), a packaged recipe
            (``"molecules/qm9"``) or a YAML file.
        data: your own data: a file, a folder, a glob or domain objects (None: the recipe's data).
        run_dir: where checkpoints, metrics and ``skipped.csv`` go (default ``runs/<source>``).
        overrides: ``"key=value"`` changes of the config, e.g. ``["train.steps=200"]``.
        resume: continue the run folder's latest checkpoint (or the given one).
        **options: own-data options: ``labels``, ``covariates``, ``condition_on``, ``column``,
            ``freq``, ``prediction_length``, ``download`` (the domain says which it takes).

    Returns:
        The trained generator (``.sample``, ``.save``, ``.evaluate``).
    """
    generator, stem = prepare_run(source, data, overrides, **options)
    run_dir = run_dir or generator.config.train.run_dir or str(Path("runs") / stem)
    generator.config.train.run_dir = str(run_dir)
    # a path lives in the config; Python objects (a list of SMILES, structures, pandas series) are passed on
    return generator.fit(None if isinstance(data, (str, Path)) else data, run_dir=run_dir, resume=resume)


# -- the built-in domains (one line each; imported only when used) ---------------------------------

register_domain(DomainSpec(
    name="toy", module="sciogen.toy", generator="VectorGenerator", extra=None,
    description="vectors in R^d (Gaussian mixtures, user arrays): the core's demo domain",
    demo="sciogen.toy.demo:run_demo",
    recipe="toy/gmm",
))
register_domain(DomainSpec(
    name="timeseries", module="sciogen.timeseries", generator="TimeSeriesGenerator", extra="timeseries",
    description="time series (TSDiff): generation, forecasting and imputation",
    demo="sciogen.timeseries.demo:run_demo",
    recipe="timeseries/exchange_rate",
))
register_domain(DomainSpec(
    name="deformation", module="sciogen.deformation", generator="DeformationGenerator", extra="volumes",
    description="random folding-free deformations of images and labels (DRDM-style), MONAI transforms",
    demo="sciogen.deformation.demo:run_demo",
    recipe="deformation/brain_mri_2d",
))
register_domain(DomainSpec(
    name="molecules", module="sciogen.molecules", generator="MoleculeGenerator", extra="molecules",
    description="molecular graphs (PARD: block-wise autoregressive discrete diffusion; QM9, MOSES)",
    demo="sciogen.molecules.demo:run_demo",
    recipe="molecules/qm9",
))
register_domain(DomainSpec(
    name="molecules3d", module="sciogen.molecules3d", generator="Molecule3DGenerator", extra="molecules",
    description="3D molecules (EDM-style equivariant diffusion; UniGenX sequence + structure, conformers; QM9 with H)",
    demo="sciogen.molecules3d.demo:run_demo",
    recipe="molecules3d/qm9_unigenx",  # the CPU-practical one (docs/your-data.md, the domain card)
))
register_domain(DomainSpec(
    name="crystals", module="sciogen.crystals", generator="CrystalGenerator", extra="crystals",
    description="crystals (DiffCSP-style joint diffusion: structure prediction and de novo; Perov-5, MP-20)",
    demo="sciogen.crystals.demo:run_demo",
    recipe="crystals/perov5",
))
register_domain(DomainSpec(
    name="volumes", module="sciogen.volumes", generator="VolumeGenerator", extra="volumes",
    description="3D medical volumes (pixel diffusion on MONAI U-Nets, SDEdit augmentation, MONAI interop)",
    demo="sciogen.volumes.demo:run_demo",
    recipe="volumes/brain_mri",
))
register_domain(DomainSpec(
    name="volumes_longitudinal", module="sciogen.volumes.longitudinal", generator="LongitudinalVolumeGenerator",
    extra="volumes", description="longitudinal 3D volumes (SADM-style): the next visits given earlier ones",
    recipe="volumes/longitudinal",
))
