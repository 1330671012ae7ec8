"""The base class of every domain's generator: the same verbs in every domain.

A domain generator binds its representation, diffusion process, network and solver
behind ``fit / sample / evaluate / save / load``::

    gen = VectorGenerator(ToyConfig())          # any domain: same verbs
    gen.fit(data)                              # trains with sciogen.train.Trainer
    x = gen.sample(1000, steps=20, seed=0)     # EMA weights, chunked, reproducible
    gen.evaluate(x)                            # the domain's metrics, a dict of floats
    gen.save("model.pt"); gen = VectorGenerator.load("model.pt")

What a domain implements (abstract): :meth:`build_model`, :meth:`training_data`,
:meth:`loss`, :meth:`sample_batch`, :meth:`evaluate_samples`, :meth:`write_samples`,
:meth:`read_samples`. Optional hooks: :meth:`metadata` / :meth:`load_metadata` (what the
checkpoint must remember besides the weights, e.g. normalisation), :meth:`collate`,
:meth:`validation`, :meth:`reference_data`, :meth:`add_sample_arguments` (CLI options
that become sampling conditions) and :meth:`merge_samples`.

Sampling draws ``n`` samples in chunks of ``batch_size``; chunk ``i`` uses its own
generator seeded by ``(seed, i)``. Under ``torchrun`` the chunks are dealt round-robin to
the processes and gathered back in order, so the output is the same on one process or
many for the same seed and batch size.
"""

from __future__ import annotations

import abc
import argparse
import copy
import sys
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from sciogen.config import ConfigError, apply_overrides, from_dict, to_dict
from sciogen.data.records import RecordLog

from . import distributed
from .checkpoint import FORMAT, FORMAT_VERSION, CheckpointError, load_checkpoint, resolve_checkpoint, save_checkpoint
from .checks import optional_positive_int, positive_int
from .config import RunConfig, SamplingConfig
from .progress import show_progress
from .seeding import derive_seed, make_generator
from .trainer import Trainer, ValidateFn

__all__ = ["Generator", "DATA_OPTIONS", "SamplingInterrupted"]

#: the own-data options of ``sciogen train DOMAIN --data PATH`` / :func:`sciogen.fit`, by name:
#: labels (a folder of label images matched by name), covariates (a CSV of per-record
#: values), condition_on (numeric columns / tags to condition on), column (the column that
#: holds the records, e.g. SMILES), freq (a pandas frequency), prediction_length (steps),
#: download (fetch the recipe's registered dataset when no local copy exists)
DATA_OPTIONS = ("labels", "covariates", "condition_on", "column", "freq", "prediction_length", "download")


class SamplingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Generator.sample`: ``samples`` holds the ``done`` of ``n`` samples
    finished before it (whole chunks, in order; None when none was), so nothing made is lost."""

    def __init__(self, samples: Any, done: int, n: int):
        super().__init__(f"sampling interrupted after {done} of {n} samples")
        self.samples, self.done, self.n = samples, done, n


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")

G = TypeVar("G", bound="Generator")


class Generator(abc.ABC):
    """Base of the domain generators (see the module docstring).

    Class attributes a domain sets:
        domain: its registered name, e.g. ``"toy"``.
        config_class: its run config, a dataclass deriving from :class:`RunConfig` (with a
            ``sampling`` section of type :class:`SamplingConfig` when it uses the defaults
            of :meth:`sample`).

    Attributes:
        config: the run config.
        model: the network being trained.
        ema_model: the EMA copy used for sampling once trained or loaded (None before).
        trained_steps: optimizer steps behind the current weights.
    """

    domain: ClassVar[str] = ""
    config_class: ClassVar[type[RunConfig]] = RunConfig
    #: what :meth:`write_samples` writes: file suffixes (e.g. ``".sdf"``, ``".csv.gz"``) and
    #: ``"/"`` for a folder of one file per sample; ``sciogen sample`` checks ``--out`` against
    #: it before sampling (empty: the domain checks when writing)
    output_formats: ClassVar[tuple[str, ...]] = ()
    #: what one training record is called in messages ("kept 20 crystals, skipped 1 ...")
    record_name: ClassVar[str] = "records"
    #: the own-data options (of :data:`DATA_OPTIONS`) that :meth:`own_data_config` takes
    data_options: ClassVar[tuple[str, ...]] = ()
    #: True when :meth:`sample` takes ``condition={name: value}``: ``sciogen sample`` then offers
    #: ``--condition NAME=VALUE`` (parsed once, in :func:`sciogen.cli.parse_conditions`)
    sample_conditions: ClassVar[bool] = False
    #: the :meth:`sample` conditions that hold one row per sample (tensors or sequences of
    #: length n): the base class checks their length and gives each chunk its rows
    per_sample_conditions: ClassVar[tuple[str, ...]] = ()
    #: the config sections an export may change (``sciogen export RUN OUT --set sampling.steps=50``)
    export_sections: ClassVar[tuple[str, ...]] = ("sampling",)
    #: name fragments of weights an export keeps in float32 under ``half`` (numerics that need it)
    export_keep_fp32: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: RunConfig | None = None):
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        if config.domain not in ("", self.domain):
            raise ConfigError(f"config is for domain {config.domain!r}, not {self.domain!r}")
        config.domain = self.domain
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.train.seed)
            self.model = self.build_model()
        self.ema_model: nn.Module | None = None
        self.trained_steps = 0
        #: records of the training data that could not be used (filled by training_data)
        self.data_log = RecordLog()
        #: tuned sampling times by ``"<solver>/<steps>"`` (:meth:`tune_grid`), saved in the metadata
        self.tuned_grids: dict[str, list[float]] = {}

    # -- what a domain implements ---------------------------------------------------------

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The untrained network described by ``self.config``."""

    @abc.abstractmethod
    def training_data(self, data: Any = None) -> torch.utils.data.Dataset | torch.Tensor:
        """The training set: from ``data`` if given (domain objects, arrays, a path), else
        from ``self.config``. May set statistics that :meth:`metadata` then returns."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        """Per-sample training losses (B,) of one batch; ``generator`` is the only randomness."""

    @abc.abstractmethod
    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str, **conditions) -> Any:
        """``n`` samples from ``model`` (a list of domain objects or a tensor with n rows)."""

    @classmethod
    @abc.abstractmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None) -> dict[str, float]:
        """The domain's quality metrics of ``samples`` against ``reference``.

        ``reference`` may be domain data, None (the domain's default) or, from
        ``sciogen evaluate --reference``, a string: a file path or a dataset name. A domain
        whose references include registered datasets also takes ``download: bool = False``
        (``sciogen evaluate --download``: fetch the dataset when the cache has no copy).
        """

    @classmethod
    @abc.abstractmethod
    def write_samples(cls, samples: Any, path: str | Path) -> Path:
        """Write samples to a file whose format follows the suffix (e.g. .csv, .sdf, .cif)."""

    @classmethod
    @abc.abstractmethod
    def read_samples(cls, path: str | Path) -> Any:
        """Read samples written by :meth:`write_samples` (or the domain's usual files)."""

    # -- optional hooks ----------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Domain state saved in checkpoints besides weights (tensors and plain values)."""
        return {}

    def load_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Restore what :meth:`metadata` returned."""

    def collate(self) -> Callable[[list], Any] | None:
        """How to merge dataset items into a batch (None: stack tensors)."""
        return None

    def validation(self) -> ValidateFn | None:
        """A callback ``(model, step) -> metrics`` run every ``train.validate_every`` steps."""
        return None

    def reference_data(self) -> Any:
        """Default reference of :meth:`evaluate` (e.g. held-out data); None if there is none."""
        return None

    @classmethod
    def own_data_config(cls, config: RunConfig, data: Any, **options: Any) -> RunConfig:
        """``config`` changed to train on a user's ``data`` (a file, folder, glob or objects).

        Called by :meth:`configure_data` with only the options of :attr:`data_options` that
        were given. A domain sets its data section (and what the data decide, e.g. the
        conditions) and returns the config; the records themselves are read later, by
        :meth:`training_data`, which reports unreadable ones in :attr:`data_log`.
        """
        raise ValueError(f"the {cls.domain!r} domain does not train on your own files")

    @classmethod
    def add_sample_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the domain's ``sciogen sample`` options; their values become ``**conditions``."""

    @staticmethod
    def merge_samples(chunks: Sequence[Any]) -> Any:
        """Concatenate sampled chunks: tensors along dim 0, anything else as one list."""
        if chunks and all(isinstance(c, torch.Tensor) for c in chunks):
            return torch.cat(list(chunks))
        return [item for chunk in chunks for item in chunk]

    # -- the shared verbs ----------------------------------------------------------------------

    @classmethod
    def configure_data(cls, config: RunConfig, data: Any, **options: Any) -> RunConfig:
        """A copy of ``config`` that trains on a user's ``data`` (see :meth:`own_data_config`).

        ``options`` are the own-data options of :data:`DATA_OPTIONS` (None / False: not
        given); one the domain does not take is an error naming the ones it does.
        """
        given = {k: v for k, v in options.items() if v is not None and v is not False}
        unknown = sorted(set(given) - set(DATA_OPTIONS))
        if unknown:
            raise TypeError(f"unknown own-data option(s) {unknown}; the options are {', '.join(DATA_OPTIONS)}")
        foreign = [k for k in given if k not in cls.data_options]
        if foreign:
            takes = ", ".join(_flag(k) for k in cls.data_options) or "none"
            raise ValueError(
                f"{', '.join(_flag(k) for k in foreign)} is not an option of the {cls.domain!r} domain "
                f"(its own-data options: {takes})"
            )
        return cls.own_data_config(copy.deepcopy(config), data, **given)

    @property
    def sampling_model(self) -> nn.Module:
        """The EMA weights when available, else the trained weights."""
        return self.ema_model if self.ema_model is not None else self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self: G, device: str | torch.device) -> G:
        """Move the networks to ``device`` (``"auto"``: the GPU of this process if any)."""
        device = distributed.resolve_device(device)
        self.model.to(device)
        if self.ema_model is not None:
            self.ema_model.to(device)
        return self

    def fit(self: G, data: Any = None, *, run_dir: str | Path | None = None, resume: bool | str | Path = False,
            validate: bool = True, **train_options) -> G:
        """Train on ``data`` (or the configured data); returns ``self``.

        Args:
            data: training data in the domain's form; None reads ``config.data``.
            run_dir: folder for checkpoints and metrics (default ``config.train.run_dir``).
            resume: True continues the run folder's latest checkpoint; a path, that one.
            validate: run the domain's validation callback every ``train.validate_every`` steps.
            **train_options: overrides of :class:`TrainConfig` fields, e.g. ``steps=500``.
        """
        if train_options:
            self.config.train = _replace(self.config.train, train_options, "train")
        self.data_log = RecordLog()
        try:
            dataset = self.training_data(data)
        finally:  # also when training_data refuses: the list says why
            if distributed.is_main():
                self.data_log.report(run_dir or self.config.train.run_dir, what=self.record_name)
        self._fit_batch_to(dataset)
        trainer = Trainer(
            self.model, self.loss, dataset, self.config.train, run_dir=run_dir, collate_fn=self.collate(),
            validate=self.validation() if validate else None, header=self._header,
        )
        trainer.fit(resume=resume)
        self.ema_model = trainer.ema.module if trainer.ema is not None else None
        self.trained_steps = trainer.step
        return self

    def _fit_batch_to(self, dataset: Any) -> None:
        """Lower ``train.batch_size`` (with a message) when the training set is smaller."""
        try:
            size = len(dataset)
        except TypeError:  # an iterable dataset: the trainer checks it
            return
        batch = self.config.train.batch_size
        if 0 < size < batch:
            print(f"sciogen: the training set has {size} records, fewer than train.batch_size={batch}; "
                  f"training with batch_size={size} (set train.batch_size to choose)", file=sys.stderr)
            self.config.train = _replace(self.config.train, {"batch_size": size}, "train")

    def _sampling_defaults(self) -> SamplingConfig:
        sampling = getattr(self.config, "sampling", None)
        return sampling if isinstance(sampling, SamplingConfig) else SamplingConfig()

    @torch.no_grad()
    def sample(self, n: int, *, steps: int | None = None, solver: str | None = None, seed: int | None = None,
               batch_size: int | None = None, **conditions) -> Any:
        """Draw ``n`` samples with the EMA weights.

        Args:
            n: number of samples.
            steps, solver: solver options (defaults: ``config.sampling``).
            seed: makes the result reproducible; None draws a fresh seed.
            batch_size: samples per chunk (default ``config.sampling.batch_size``); the
                result for a seed depends on it, not on the number of processes.
            **conditions: domain conditions passed to :meth:`sample_batch`.

        Returns:
            The merged samples (see :meth:`merge_samples`), tensors on the CPU.
        """
        n = positive_int("n", n)
        defaults = self._sampling_defaults()
        steps = optional_positive_int("steps", steps) or defaults.steps
        batch_size = optional_positive_int("batch_size", batch_size) or defaults.batch_size
        solver = solver or defaults.solver
        if seed is None:
            seed = distributed.broadcast_object(int(torch.randint(2**62, ()).item()))
        seed = positive_int("seed", seed, minimum=0)
        sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]
        for name in self.per_sample_conditions:
            value = conditions.get(name)
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} rows for n={n} samples; give one per sample")
        info = distributed.info(self.device)
        mine = self._sample_chunks(sizes, info, seed, steps, solver, conditions)
        gathered: dict[int, Any] = {}
        for part in distributed.all_gather_objects(mine):
            gathered.update(part)
        return self.merge_samples([gathered[i] for i in range(len(sizes))])

    def _sample_chunks(self, sizes: list[int], info: Any, seed: int, steps: int, solver: str, conditions: dict) -> dict[int, Any]:
        """This process's chunks, with a progress bar in a terminal; Ctrl-C in a single process
        raises :class:`SamplingInterrupted` carrying the chunks already finished."""
        mine: dict[int, Any] = {}
        indices = range(info.rank, len(sizes), info.world_size)
        bar = tqdm(total=sum(sizes[i] for i in indices), desc="sampling", unit="sample", dynamic_ncols=True,
                   disable=not show_progress(None) or not info.is_main, leave=False)
        try:
            for i in indices:
                start = sum(sizes[:i])
                rows = {k: v[start:start + sizes[i]] if k in self.per_sample_conditions and v is not None else v
                        for k, v in conditions.items()}
                mine[i] = self._sample_chunk(i, sizes[i], seed, steps, solver, rows)
                bar.update(sizes[i])
        except KeyboardInterrupt:
            if info.world_size > 1:
                raise
            done = [mine[i] for i in sorted(mine)]  # one process: chunks 0 .. k-1, in order
            raise SamplingInterrupted(self.merge_samples(done) if done else None, sum(sizes[: len(done)]),
                                      sum(sizes)) from None
        finally:
            bar.close()
        return mine

    def _sample_chunk(self, index: int, size: int, seed: int, steps: int, solver: str, conditions: dict) -> Any:
        model = self.sampling_model.eval()
        generator = make_generator(derive_seed(seed, index), self.device)
        return _to_cpu(self.sample_batch(model, size, generator=generator, steps=steps, solver=solver, **conditions))

    def tune_grid(self, steps: int, solver: str | None = None, samples: int = 100, **options: Any) -> Any:
        """Search the ``steps`` sampling times of ``solver`` against a many-step teacher
        (:func:`sciogen.diffusion.search_grid`) and store them in :attr:`tuned_grids`, for
        ``sample(..., grid="tuned")``. A domain whose sampler is one core ODE solver over one
        Gaussian state implements it (toy); the others refuse."""
        raise ValueError(f"the {self.domain!r} domain has no tuned time grids: its sampler is not one core ODE "
                         "solver over one Gaussian state")

    def tuned_grid(self, solver: str, steps: int) -> torch.Tensor:
        """The stored tuned times of ``solver`` with ``steps`` steps (float64, decreasing to 0)."""
        key = f"{solver}/{int(steps)}"
        if key not in self.tuned_grids:
            stored = ", ".join(sorted(self.tuned_grids)) or "none"
            raise ValueError(
                f"grid='tuned': this {self.domain} model has no tuned time grid for solver {solver!r} with {steps} steps "
                f"(stored: {stored}); compute one with `sciogen tune-solver MODEL --steps {steps} --solver {solver} "
                f"--out MODEL_OUT` or generator.tune_grid({steps}, solver={solver!r}) and save the generator"
            )
        return torch.tensor(self.tuned_grids[key], dtype=torch.float64)

    def evaluate(self, samples: Any, reference: Any = None) -> dict[str, float]:
        """The domain's metrics of ``samples`` (reference default: :meth:`reference_data`)."""
        return self.evaluate_samples(samples, reference if reference is not None else self.reference_data())

    # -- checkpoints ------------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {"domain": self.domain, "config": to_dict(self.config), "metadata": self.metadata()}

    def checkpoint(self) -> dict[str, Any]:
        """A plain checkpoint dict for sampling (no trainer state)."""
        from sciogen._version import __version__

        header = self._header()
        header["metadata"] = {**header["metadata"], "trained_steps": self.trained_steps}
        if self.tuned_grids:
            header["metadata"]["tuned_grids"] = {k: [float(t) for t in v] for k, v in self.tuned_grids.items()}
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "sciogen_version": __version__, **header,
            "model": self.model.state_dict(),
            "ema": self.ema_model.state_dict() if self.ema_model is not None else None,
        }

    def save(self, path: str | Path) -> Path:
        """Write the generator (config, metadata, weights, EMA weights) to ``path``."""
        return save_checkpoint(self.checkpoint(), path)

    def prepare_export(self, data: Any = None) -> None:
        """Called by :meth:`export` before the weights are written: a domain that chooses
        sampling defaults on its training data (``data``, default: the config's) does it here.
        The base class does nothing."""

    def export(self, destination: str | Path, *, half: bool = False, ema_only: bool = True,
               settings: Sequence[str] = (), data: Any = None) -> Path:
        """Write this model for shipping (:func:`sciogen.train.checkpoint.export_checkpoint`).

        ``settings``: ``"section.key=value"`` changes of the stored defaults, in the sections
        of :attr:`export_sections` (e.g. ``"sampling.valence_retries=3"``); then
        :meth:`prepare_export` (``data``), then the weights: the EMA ones alone unless
        ``ema_only=False``, in float16 with ``half`` (except :attr:`export_keep_fp32`).
        """
        if settings:
            settings = list(settings)
            for text in settings:
                section = text.partition("=")[0].strip().split(".")[0]
                if section not in self.export_sections:
                    raise ConfigError(f"--set {text}: an export changes only the {', '.join(self.export_sections)} "
                                      f"section(s) of a {self.domain} model (the weights were trained with the rest)")
            self.config = from_dict(self.config_class, apply_overrides(to_dict(self.config), settings))
        self.prepare_export(data)
        from .checkpoint import export_checkpoint

        return export_checkpoint(self.checkpoint(), destination, ema_only=ema_only, half=half,
                                 keep_fp32=self.export_keep_fp32)

    @classmethod
    def load(cls: type[G], path: str | Path, device: str | torch.device = "auto") -> G:
        """Load a checkpoint file or a run folder's latest checkpoint."""
        return cls.from_checkpoint(load_checkpoint(resolve_checkpoint(path)), device=device)

    @classmethod
    def from_checkpoint(cls: type[G], checkpoint: Mapping[str, Any], device: str | torch.device = "auto") -> G:
        """Build the generator from a loaded checkpoint dict."""
        if checkpoint.get("domain") != cls.domain:
            raise CheckpointError(
                f"the checkpoint is for domain {checkpoint.get('domain')!r}, not {cls.domain!r}; "
                "use sciogen.load(...) to get the right generator"
            )
        missing = [k for k in ("config", "model") if not isinstance(checkpoint.get(k), Mapping)]
        if missing:
            raise CheckpointError(
                f"the checkpoint has no {' and no '.join(repr(k) for k in missing)} entry, so it cannot be sampled from; "
                "it was not written by Generator.save / the trainer (or was edited)"
            )
        generator = cls(from_dict(cls.config_class, checkpoint["config"]))
        generator.load_metadata(checkpoint.get("metadata") or {})
        generator.tuned_grids = _tuned_grids((checkpoint.get("metadata") or {}).get("tuned_grids"))
        _load_weights(generator.model, checkpoint["model"], "model")
        if checkpoint.get("ema") is not None:
            generator.ema_model = copy.deepcopy(generator.model).eval().requires_grad_(False)
            _load_weights(generator.ema_model, checkpoint["ema"], "ema")
        trainer_state = checkpoint.get("trainer") or {}
        generator.trained_steps = int(trainer_state.get("step", (checkpoint.get("metadata") or {}).get("trained_steps", 0)))
        return generator.to(device)


def _load_weights(module: nn.Module, weights: Mapping[str, Any], key: str) -> None:
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"the checkpoint's {key!r} weights do not fit the network its config describes (edited config or "
            f"a file from another version?): {str(err).splitlines()[0]}"
        ) from None


def _tuned_grids(stored: Any) -> dict[str, list[float]]:
    """The checkpoint's ``metadata["tuned_grids"]``, checked: {"<solver>/<steps>": decreasing times}."""
    grids: dict[str, list[float]] = {}
    for key, times in (stored or {}).items():
        times = [float(t) for t in times] if isinstance(times, (list, tuple)) else []
        solver, _, steps = str(key).partition("/")
        if not (solver and steps.isdigit() and len(times) == int(steps) + 1 and all(a > b for a, b in zip(times, times[1:]))):
            raise CheckpointError(f"the checkpoint's tuned time grid {key!r} is malformed: expected "
                                  "'<solver>/<steps>' with steps + 1 decreasing times")
        grids[str(key)] = times
    return grids


def _replace(config: Any, options: Mapping[str, Any], section: str) -> Any:
    """``dataclasses.replace`` with the same checks as a YAML config."""
    data = {**to_dict(config), **options}
    return from_dict(type(config), data, prefix=section + ".")


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, Mapping):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if type(obj) in (list, tuple):  # a domain's own sequence type (with attributes) is already on the CPU
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
