"""``TimeSeriesGenerator``: TSDiff behind the generator verbs, plus forecast and impute.

    >>> import sciogen
    >>> gen = sciogen.load("timeseries/exchange_rate")            # doctest: +SKIP
    >>> paths = gen.forecast(context, prediction_length=30, num_samples=100)   # (100, 30)
    >>> table = gen.forecast_frame(series, 30)                  # quantiles, time index
    >>> filled = gen.impute(series_with_nans, num_samples=50)   # (50, len(series))
    >>> synthetic = gen.sample(16, length=390)                  # (16, 390)
    >>> cal = gen.calibrate(train_series, windows=5, num_samples=100)     # split conformal
    >>> paths = gen.forecast(context, 30, 100, calibration=cal)           # corrected intervals

One return type per call:

- :meth:`~TimeSeriesGenerator.forecast`: :class:`~sciogen.timeseries.io.ForecastPaths`, a float64
  ``numpy.ndarray`` subclass, (S, H) for one series and (B, S, H) for several, carrying the
  series' ``item_ids`` and the forecast steps' ``timestamps`` (None without dates);
- :meth:`~TimeSeriesGenerator.forecast_frame`: a ``pandas.DataFrame`` for *one* series, indexed
  by the forecast steps' timestamps (a ``DatetimeIndex``; a ``RangeIndex`` ``step`` 1 .. H for a
  context without dates), columns ``mean`` then one per quantile named ``f"{q:g}"``
  (``"0.05"``, ``"0.1"`` ...); the long format over several series (``item_id``,
  ``timestamp``, ``mean``, quantiles, optional ``sample_<k>``) is
  :func:`sciogen.timeseries.gluonts_interop.to_long_frame` of a :meth:`forecast`;
- :meth:`~TimeSeriesGenerator.sample`: a float32 ``torch.Tensor`` (n, L) of synthetic series
  without ``context``; with ``context`` the :class:`ForecastPaths` of :meth:`forecast`;
- :meth:`~TimeSeriesGenerator.impute`: a float64 ``numpy.ndarray`` (S, T);
- :meth:`~TimeSeriesGenerator.calibrate`: a
  :class:`~sciogen.timeseries.calibration.ConformalCalibration`.

GluonTS (optional) reads and scores these through :mod:`sciogen.timeseries.gluonts_interop`
(``SciogenPredictor(gen)`` for ``make_evaluation_predictions`` and ``Evaluator``).

Training (:meth:`fit`) draws windows of ``max_lag + context + prediction`` values, normalises
each by its context, adds the lag channels and minimises the DDPM noise-prediction loss
on the observed entries (unconditional: no part of the window is special during training).
"""

from __future__ import annotations

import numbers
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from sciogen.data.records import RecordLog
from sciogen.diffusion import DiscreteSchedule, GaussianProcess
from sciogen.train.checks import finite_array, finite_number, optional_positive_int, positive_int
from sciogen.train.generator import Generator

from .calibration import ConformalCalibration, fit_conformal_forecaster
from .config import TimeSeriesConfig
from .datasets import load_registered
from .features import WindowDataset, context_stats, make_state
from .forecast import check_finite, check_stats, forecast_samples, guided_sample, unnormalize
from .io import ForecastPaths
from .metrics import COVERAGE_LEVELS
from .network import TSDiffDenoiser
from .representation import Series, SeriesTooShortError, default_prediction_length, from_pandas, lags_for_freq, normalize_freq
from .tables import SeriesData, read_series

__all__ = ["TimeSeriesGenerator"]

_STATS_KEPT = 512


class TimeSeriesGenerator(Generator):
    """Generates, forecasts and imputes univariate series. Domain ``"timeseries"``.

    ``fit(data)`` accepts what :func:`sciogen.timeseries.tables.read_series` reads: a CSV /
    parquet file (long or wide), GluonTS JSON lines, a GluonTS folder or archive, a folder or
    glob of files, pandas (Series, wide or long DataFrame), a :class:`GluonTSDataset` or a list
    of :class:`Series`; with no data it reads ``config.data.path``, else ``config.data.dataset``.
    """

    domain = "timeseries"
    record_name = "series"
    config_class = TimeSeriesConfig
    data_options = ("freq", "prediction_length", "column", "download")
    #: what `sciogen train` suggests for `sciogen sample --out`
    example_output = "synthetic.csv"
    #: one CSV holds every series (synthetic) or every forecast (long format), see :mod:`.io`
    output_formats = (".csv",)
    #: a fast forecasting setting (no network gradients): DDIM 25 steps with the observed
    #: context replaced at every step; ``gen.forecast(x, **gen.FAST_GUIDANCE)``
    FAST_GUIDANCE = {"solver": "ddim", "steps": 25, "scale": 0.0, "replace": True}
    #: forecasting settings an export tries on the last training windows (:meth:`prepare_export`):
    #: TSDiff-Q guidance with DDPM (the paper's, scale 8 included) and with DDIM (fast), and
    #: replacement of the observed context (not in TSDiff)
    EXPORT_CANDIDATES = (
        *({"solver": "ddpm", "steps": 100, "scale": s, "replace": False} for s in (1.0, 2.0, 4.0, 8.0)),
        {"solver": "ddpm", "steps": 100, "scale": 1.0, "replace": True},
        {"solver": "ddim", "steps": 25, "scale": 0.5, "replace": False},
        *({"solver": "ddim", "steps": 25, "scale": s, "replace": True} for s in (0.0, 0.5)),
    )
    export_sections = ("sampling", "guidance")
    #: the S4D kernels' frequencies (pi n) need the float32 mantissa
    export_keep_fp32 = (".kernel.",)

    def __init__(self, config: TimeSeriesConfig | None = None):
        config = TimeSeriesConfig() if config is None else config
        self._train_series: list[Series] | None = None
        self._read_log = RecordLog()  # what reading the configured data left out, until fit() reports it
        d = config.data
        if (d.path is not None or d.dataset is not None) and not self._resolved(config):
            self._train_series = self._resolve(config, self._read(None, config, self._read_log), self._read_log)
        super().__init__(config)
        # normalisation statistics of training windows, used to put unconditional samples in data units
        self.window_stats = torch.tensor([[0.0, 1.0]])
        self._example: dict[str, Any] | None = None

    # -- data and settings -------------------------------------------------------------------

    @classmethod
    def own_data_config(cls, config: TimeSeriesConfig, data: Any, *, freq: str | None = None,
                        prediction_length: int | None = None, column: str | None = None,
                        download: bool = False) -> TimeSeriesConfig:
        """Train on ``data`` (:func:`~sciogen.timeseries.tables.read_series`): ``data.path``,
        with ``freq`` / ``prediction_length`` / ``column`` when given and everything else
        (context, lags) derived from the data when the generator is built."""
        d = config.data
        if data is None:  # `sciogen train timeseries --download`: the recipe's registered dataset
            d.download = bool(download)
            return config
        if download:
            raise ValueError("--download fetches the recipe's registered dataset; it has no use with --data")
        if not isinstance(data, (str, Path)) and not (isinstance(data, (list, tuple)) and data
                                                     and all(isinstance(p, (str, Path)) for p in data)):
            data = _in_memory_file(data, column)
        d.path = str(data) if isinstance(data, (str, Path)) else ",".join(map(str, data))
        d.dataset, d.column = None, column
        d.freq = normalize_freq(freq) if freq else None
        d.prediction_length = prediction_length
        d.context_length, d.lags = None, None
        return config

    @staticmethod
    def _resolved(config: TimeSeriesConfig) -> bool:
        d = config.data
        return None not in (d.freq, d.prediction_length, d.context_length, d.lags)

    @staticmethod
    def _read(data: Any, config: TimeSeriesConfig, log: RecordLog) -> SeriesData:
        """The series of ``data``, else of ``config.data.path``, else of ``config.data.dataset``."""
        d = config.data
        if data is None and d.path is None:
            if d.dataset is None:
                raise ValueError("no training data: pass data to fit(), --data PATH, or set data.path / data.dataset")
            return read_series(load_registered(d.dataset, download=d.download), freq=d.freq)
        source = data if data is not None else d.path
        if isinstance(source, str) and "," in source and not Path(source).exists():
            source = source.split(",")  # several files, as own_data_config stores them
        return read_series(source, freq=d.freq, column=d.column, log=log)

    @staticmethod
    def _resolve(config: TimeSeriesConfig, data: SeriesData, log: RecordLog) -> list[Series]:
        """Fill the data-dependent settings (module docstring of config.py); returns the training
        series, without those shorter than one window (logged)."""
        d = config.data
        if not data.series:
            raise ValueError("no training series")
        d.freq = normalize_freq(d.freq or data.freq)
        lengths = [len(s) for s in data.series]
        typical = int(np.median(lengths)) - d.holdout_windows * (d.prediction_length or data.prediction_length or 0)
        if d.prediction_length is None:
            d.prediction_length = data.prediction_length
        if d.prediction_length is None:
            d.prediction_length, rule = default_prediction_length(d.freq, typical)
            print(f"sciogen: prediction length {d.prediction_length} ({rule}); set it with --prediction-length N "
                  "(Python: prediction_length=N)", file=sys.stderr)
        usable = [n - d.holdout_windows * d.prediction_length for n in lengths]
        typical = int(np.median(usable))
        if d.context_length is None:
            d.context_length = max(1, min(d.context_multiple * d.prediction_length, typical - d.prediction_length))
        window = d.context_length + d.prediction_length
        kept = []
        for s, n, source in zip(data.series, usable, data.sources):
            if n < window:
                log.skip(source, s.item_id, f"{len(s)} values, fewer than one training window: context "
                                            f"{d.context_length} + prediction {d.prediction_length} = {window}"
                                            + (f" plus {d.holdout_windows} held-out windows" if d.holdout_windows else ""))
            else:
                kept.append(s)
        log.kept = len(kept)
        if not kept:
            raise SeriesTooShortError(
                f"no series is long enough for one training window (context {d.context_length} + prediction "
                f"{d.prediction_length} = {window} values; the longest has {max(usable)}); lower "
                "--prediction-length or data.context_length"
            )
        longest = max(usable)
        if d.lags is None:
            d.lags = [lag for lag in lags_for_freq(d.freq) if lag + window <= longest]
        if d.path is not None:
            print(f"sciogen: {len(kept)} series of {min(map(len, kept))} to {max(map(len, kept))} values, frequency "
                  f"{d.freq}; prediction length {d.prediction_length}, context {d.context_length}, "
                  f"lags {d.lags or 'none'}", file=sys.stderr)
            missing = data.missing_summary()
            if missing:
                print(f"sciogen: {missing}", file=sys.stderr)
        return kept

    def _ensure_resolved(self, data: Any) -> list[Series]:
        if data is None and self._train_series is not None:
            self.data_log.skipped += self._read_log.skipped
            self.data_log.kept = self._read_log.kept
            return self._train_series
        read = self._read(data, self.config, self.data_log)
        channels_before = self.channels
        series = self._resolve(self.config, read, self.data_log)
        self._train_series = series
        if self.channels != channels_before:  # lags first known from this data: rebuild the network
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.config.train.seed)
                self.model = self.build_model()
        return series

    @property
    def channels(self) -> int:
        lags = self.lags
        return 1 + len(lags)

    @property
    def lags(self) -> list[int]:
        d = self.config.data
        if d.lags is not None:
            return list(d.lags)
        return lags_for_freq(d.freq) if d.freq else []

    @property
    def max_lag(self) -> int:
        return max(self.lags) if self.lags else 0

    @property
    def context_length(self) -> int:
        return int(self.config.data.context_length or 0)

    @property
    def prediction_length(self) -> int:
        return int(self.config.data.prediction_length or 0)

    @property
    def schedule(self) -> DiscreteSchedule:
        c = self.config.diffusion
        return DiscreteSchedule.linear(c.num_steps, c.beta_start, c.beta_end)

    @property
    def process(self) -> GaussianProcess:
        return GaussianProcess(self.schedule, "eps")

    # -- the Generator contract ------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        m = self.config.model
        return TSDiffDenoiser(self.channels, hidden=m.hidden, blocks=m.blocks, state=m.state, step_dim=m.step_dim,
                              num_steps=self.config.diffusion.num_steps, input_skip=m.input_skip, dropout=m.dropout)

    def training_data(self, data: Any = None) -> WindowDataset:
        d = self.config.data
        series = self._ensure_resolved(data)
        cut = d.holdout_windows * d.prediction_length
        if cut:
            series = [s.slice(len(s) - cut) for s in series if len(s) > cut]
        dataset = WindowDataset(series, d.context_length, d.prediction_length, self.max_lag, d.min_observed)
        self.window_stats = self._window_stats(dataset)
        return dataset

    def _window_stats(self, dataset: WindowDataset) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.config.train.seed)
        idx = torch.randperm(len(dataset), generator=g)[:_STATS_KEPT]
        windows = torch.stack([dataset[int(i)] for i in idx]).double()
        start = self.max_lag if self.config.data.normalization == "mean" else 0
        loc, scale = context_stats(windows[:, start : self.max_lag + self.context_length], self.config.data.normalization)
        return torch.stack([loc, scale], dim=1).float()

    def loss(self, model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        d = self.config.data
        x0, mask, _, _ = make_state(batch.double(), self.lags, d.context_length, d.prediction_length, d.normalization)
        n = self.config.diffusion.num_steps
        k = torch.randint(0, n, (x0.shape[0],), generator=generator, device=generator.device).to(x0.device)
        t = (k.float() + 1.0) / n  # TSDiff trains on the discrete steps
        return self.process.loss(model, x0, t, mask=mask, generator=generator)

    def sample_batch(self, model: nn.Module, n: int, *, generator: torch.Generator, steps: int, solver: str,
                     length: int | None = None, normalized: bool = False, **conditions) -> torch.Tensor:
        """``n`` synthetic series of ``length`` steps (default context + prediction), (n, length).

        Unconditional TSDiff samples are normalised windows; unless ``normalized``, each is
        put in data units with the (location, scale) of a random training window.
        """
        if conditions:
            raise ValueError(f"unknown sampling conditions {sorted(conditions)}; the timeseries domain takes length=")
        if solver not in ("ddpm", "ddim"):
            raise ValueError(f"the timeseries domain samples with solver 'ddpm' or 'ddim', got {solver!r}")
        length = self.context_length + self.prediction_length if length is None else positive_int("length", length)
        device = next(model.parameters()).device
        empty = torch.zeros(n, length, self.channels, device=device)
        x = guided_sample(model, empty, empty, schedule=self.schedule, solver=solver, steps=steps, scale=0.0,
                          generator=generator)[..., 0].float()
        if normalized:
            return x
        pick = torch.randint(0, self.window_stats.shape[0], (n,), generator=generator, device=generator.device)
        stats = self.window_stats.to(device)[pick.to(device)]
        x = unnormalize(x, stats[:, 0], stats[:, 1])
        check_finite(x, "the synthetic series put back in data units (the checkpoint's window_stats)")
        return x

    def metadata(self) -> dict[str, Any]:
        out = {"window_stats": self.window_stats.clone()}
        if self._example is not None:
            out["example_pasts"] = torch.as_tensor(np.stack(self._example["pasts"]), dtype=torch.float32)
            out["example_truth"] = torch.as_tensor(self._example["truth"], dtype=torch.float32)
        return out

    def load_metadata(self, metadata) -> None:
        if "window_stats" in metadata:
            self.window_stats = metadata["window_stats"].float()
        if "example_pasts" in metadata:
            self._example = {"pasts": list(metadata["example_pasts"].double().numpy()),
                             "truth": metadata["example_truth"].double().numpy()}

    @property
    def example(self) -> dict[str, Any] | None:
        """An example forecasting window kept in the checkpoint (``pasts``: B arrays,
        ``truth``: (B, H)), or None."""
        return self._example

    def set_example(self, pasts: Sequence[np.ndarray], truth: np.ndarray) -> None:
        """Keep an example window in the checkpoint: the last ``max_lag + context_length``
        values of each past (NaN-padded) and the truth (B, H)."""
        need = self.max_lag + self.context_length
        rows = []
        for p in pasts:
            p = np.asarray(p, dtype=np.float64)[-need:]
            rows.append(np.concatenate([np.full(need - len(p), np.nan), p]))
        self._example = {"pasts": rows, "truth": np.asarray(truth, dtype=np.float64)}

    def prepare_export(self, data: Any = None, candidates: Sequence[dict[str, Any]] | None = None) -> None:
        """Choose the forecasting defaults and keep an example window, on ``data`` (default: the
        config's training data): the guidance among ``candidates`` (default
        :attr:`EXPORT_CANDIDATES`; empty: keep the config's) by the CRPS of 16-path forecasts of
        the last two windows of the *training* series (:meth:`select_guidance`; never the test
        set), and, when the data has a test split, its last window of each series as
        :attr:`example` (what ``sciogen demo`` and the notebook forecast without a download)."""
        from .metrics import split_test_set

        data = self._read(data, self.config, RecordLog())
        candidates = self.EXPORT_CANDIDATES if candidates is None else candidates
        if candidates:
            print(f"sciogen: choosing the forecasting defaults among {len(candidates)} settings on the last two "
                  f"training windows of {len(data.series)} series", file=sys.stderr)
            for options, crps in self.select_guidance(data.series, candidates, windows=2, num_samples=16):
                print(f"  validation CRPS {crps:.5f}  {options}", file=sys.stderr)
        if data.test:
            pasts, truth = split_test_set(data.test[-len(data.series):], self.prediction_length)
            self.set_example(pasts, truth)

    @classmethod
    def evaluate_samples(cls, samples: Any, reference: Any = None, download: bool = False) -> dict[str, float]:
        """Scores of synthetic series, or of forecasts, by what ``samples`` are.

        - **Synthetic series**, a tensor (n, L) as :meth:`sample` returns them (and
          :meth:`read_samples` reads them back): against real series,
          :func:`sciogen.timeseries.synthetic.synthetic_metrics` (marginal W1, autocorrelation
          distance, linear predictive score). ``reference``: the training data in any
          ``--data`` format, a registered dataset name (``exchange_rate_nips``; ``download``
          fetches it), a run folder or checkpoint (the data it was trained on), or series objects.
        - **Forecast paths**, an array (S, H) / (B, S, H): GluonTS metrics against the truth
          (:func:`sciogen.timeseries.metrics.evaluate`); ``reference``: the truth as an array
          (B, H) / (H,), a truth CSV (:func:`sciogen.timeseries.io.read_truth`), or a dict with
          ``truth`` and, for MASE, ``past`` and ``freq``.
        """
        from .io import read_truth
        from .metrics import evaluate

        if isinstance(samples, torch.Tensor) and samples.ndim == 2:
            return cls._evaluate_synthetic(samples, reference, download)
        if reference is None:
            raise ValueError("evaluating forecasts needs the true values: pass the truth file (--truth truth.csv)")
        samples = np.asarray(samples, dtype=np.float64)
        if isinstance(reference, (str, Path)):
            reference = read_truth(reference)
        if isinstance(reference, dict):
            return evaluate(samples, reference["truth"], past=reference.get("past"), freq=reference.get("freq"))
        truth = np.asarray(reference, dtype=np.float64)
        if samples.ndim == 3 and truth.ndim == 1:
            truth = truth[None]
        if samples.ndim == 3 and truth.ndim == 2 and truth.shape[-1] != samples.shape[-1]:
            raise ValueError(f"the truth has {truth.shape[-1]} steps per series, the forecast {samples.shape[-1]}")
        return evaluate(samples, truth)

    @classmethod
    def _evaluate_synthetic(cls, samples: torch.Tensor, reference: Any, download: bool) -> dict[str, float]:
        from .synthetic import synthetic_metrics

        if reference is None:
            raise ValueError(
                "scoring synthetic series needs the real ones: --reference my.csv (the training file, any --data "
                "format), --reference RUN_FOLDER (the data the run trained on) or --reference exchange_rate_nips "
                "(with --download if it is not in the cache)"
            )
        train, test, horizon = _reference_series(reference, download)
        return synthetic_metrics(samples.double().numpy(), train, test=test, horizon=horizon)

    def reference_data(self) -> Any:
        """The training series (the default reference of :meth:`evaluate` for synthetic series)."""
        if self._train_series is None:
            return None
        d = self.config.data
        return SeriesData(self._train_series, ["training data"] * len(self._train_series), d.freq, d.prediction_length)

    @classmethod
    def add_sample_arguments(cls, parser) -> None:
        parser.add_argument("--context", help="CSV of past values (a time column and one column per series, "
                            "or value columns); with it, -n is the number of forecast paths per series")
        parser.add_argument("--horizon", type=int, help="forecast length (default: the model's prediction length)")
        parser.add_argument("--length", type=int, help="length of unconditional synthetic series")

    def sample(self, n: int, length: int | None = None, *, steps: int | None = None, solver: str | None = None,
               seed: int | None = None, batch_size: int | None = None, context: Any = None, horizon: int | None = None,
               **conditions) -> Any:
        """``n`` synthetic series of ``length`` steps, a tensor (n, length) in data units (see
        :meth:`sample_batch`); or, with ``context`` (values or a context CSV path), ``n``
        forecast paths per series from :meth:`forecast`: :class:`~sciogen.timeseries.io.ForecastPaths`
        (n, horizon) for one series, (B, n, horizon) for several, with their names and dates."""
        n = positive_int("n", n)
        length = optional_positive_int("length", length)
        horizon = optional_positive_int("horizon", horizon)
        if context is None:
            if horizon is not None:
                raise ValueError("--horizon needs --context (the past to forecast from)")
            if length is not None:
                conditions["length"] = length
            return super().sample(n, steps=steps, solver=solver, seed=seed, batch_size=batch_size, **conditions)
        if length is not None:
            raise ValueError("give either a context (forecast) or a length (synthetic series), not both")
        if conditions:
            raise ValueError(f"unknown sampling options {sorted(conditions)}; with a context the timeseries domain "
                             "takes horizon=, steps=, solver=, seed=, batch_size=")
        if isinstance(context, (str, Path)):
            from .io import read_context

            context = read_context(context, self.config.data.freq)
            if isinstance(context, list) and len(context) == 1:
                context = context[0]
            elif not isinstance(context, list) and context.shape[1] == 1:
                context = context.iloc[:, 0]
        opts = {k: v for k, v in (("steps", steps), ("solver", solver), ("batch_size", batch_size)) if v is not None}
        return self.forecast(context, horizon, n, seed=seed, **opts)

    @classmethod
    def write_samples(cls, samples: Any, path: str | Path) -> Path:
        """Write synthetic series (a tensor (n, L)) or forecast paths (an array (S, H) / (B, S, H))
        as CSV (:mod:`sciogen.timeseries.io`)."""
        from .io import write_forecast, write_synthetic

        if isinstance(samples, torch.Tensor):
            return write_synthetic(samples.double().numpy(), path)
        return write_forecast(samples, path)

    @classmethod
    def read_samples(cls, path: str | Path) -> Any:
        """What :meth:`write_samples` wrote: a tensor (n, L) of synthetic series or an array
        (B, S, H) of forecast paths."""
        from .io import read_samples_file

        return read_samples_file(path)

    # -- forecasting and imputation ----------------------------------------------------------------

    def _guidance(self, **overrides) -> dict[str, Any]:
        """``config.guidance`` with ``overrides`` (None = the default), every option checked."""
        g = self.config.guidance
        opts = {"solver": g.solver, "steps": g.steps, "scale": g.scale, "loss": g.loss, "eta": g.eta,
                "replace": g.replace, "batch_size": g.batch_size}
        unknown = sorted(set(overrides) - set(opts))
        if unknown:
            raise ValueError(f"unknown guidance options {unknown}; allowed: {', '.join(sorted(opts))}")
        opts.update({k: v for k, v in overrides.items() if v is not None})
        return _checked_guidance(opts)

    def _pasts(self, context: Any, what: str = "context") -> tuple[list[np.ndarray], bool, list[Series] | None, list]:
        """Contexts as float64 arrays, checked (finite or NaN = missing, real, 1-D); returns
        (pasts, single, series-or-None, names: one per past)."""
        if isinstance(context, Series):
            return [context.target], True, [context], [_name(context.item_id, 0)]
        if isinstance(context, (list, tuple)) and context and all(isinstance(s, Series) for s in context):
            names = [_name(s.item_id, i) for i, s in enumerate(context)]
            return [s.target for s in context], False, list(context), names
        try:
            import pandas as pd

            if isinstance(context, (pd.Series, pd.DataFrame)):
                if not isinstance(context.index, (pd.DatetimeIndex, pd.PeriodIndex)):  # no time stamps: values only
                    if isinstance(context, pd.Series):
                        return [_values(what, context.to_numpy())], True, None, [_name(context.name, 0)]
                    names = [_name(c, i) for i, c in enumerate(context.columns)]
                    return ([_values(f"{what} {c!r}", context[c].to_numpy()) for c in context.columns], False, None,
                            names)
                series = from_pandas(context)
                return ([s.target for s in series], isinstance(context, pd.Series), series,
                        [_name(s.item_id, i) for i, s in enumerate(series)])
        except ImportError:  # pragma: no cover
            pass
        if isinstance(context, (list, tuple)) and context and all(np.ndim(c) == 1 for c in context):
            pasts = [_values(f"{what}[{i}]", c) for i, c in enumerate(context)]  # ragged pasts
            return pasts, False, None, list(range(len(pasts)))
        arr = _values(what, context, ndim=None)
        if arr.ndim == 1:
            return [arr], True, None, [0]
        if arr.ndim == 2:
            return list(arr), False, None, list(range(len(arr)))
        raise ValueError(f"{what} must be one series (T,) or several (B, T), got shape {arr.shape}")

    def _check_context(self, pasts: Sequence[np.ndarray]) -> None:
        for i, p in enumerate(pasts):
            if len(p) < self.context_length:
                raise SeriesTooShortError(
                    f"context {i} has {len(p)} values; this model needs at least its context length "
                    f"{self.context_length} (missing values may be NaN)"
                )
            if np.isnan(p[-self.context_length :]).all():
                raise ValueError(f"context {i}: all of its last {self.context_length} values are missing")

    @torch.no_grad()
    def forecast(self, context: Any, prediction_length: int | None = None, num_samples: int | None = None, *,
                 seed: int | None = None, calibration: ConformalCalibration | None = None,
                 **guidance) -> ForecastPaths:
        """Sample paths of the future of ``context`` in the units of the context.

        Args:
            context: one series (array (T,), ``pd.Series``, :class:`Series`) or several
                (array (B, T), list of Series, wide DataFrame); NaN = missing. At least the
                model's ``context_length`` values (more feed the lag channels).
            prediction_length: horizon (default the trained one). Longer horizons are
                generated block by block, each block guided by the values before it.
            num_samples: paths (default ``config.guidance.num_samples``).
            seed: for reproducible paths.
            calibration: a split-conformal correction (:meth:`calibrate`) applied to the paths
                (:meth:`ConformalCalibration.apply`: each path's deviation from the median
                scaled so that the central intervals get the calibrated widths); it must
                have been fitted with ``num_samples`` paths.
            **guidance: overrides of ``config.guidance`` (solver, steps, scale, loss, eta,
                replace, batch_size); ``**gen.FAST_GUIDANCE`` for the fast setting.

        Returns:
            :class:`~sciogen.timeseries.io.ForecastPaths` (a float64 ndarray with ``item_ids``
            and ``timestamps``): (num_samples, prediction_length) for one series,
            (B, num_samples, prediction_length) for several.
        """
        horizon = optional_positive_int("prediction_length", prediction_length) or self.prediction_length
        n = optional_positive_int("num_samples", num_samples) or self.config.guidance.num_samples
        opts = self._guidance(**guidance)
        _check_calibration(calibration, n)
        generator = _generator(self.device, seed)
        pasts, single, series, names = self._pasts(context)
        self._check_context(pasts)
        out = self._forecast_blocks(pasts, horizon, n, generator, opts)
        if calibration is not None:
            out = calibration.apply(out)
        stamps = [s.future_index(horizon) for s in series] if series is not None else None
        return ForecastPaths(out[0], names, stamps) if single else ForecastPaths(out, names, stamps)

    def _forecast_blocks(self, pasts, horizon, n, generator, opts) -> np.ndarray:
        d = self.config.data
        kw = dict(lags=self.lags, context_length=d.context_length, prediction_length=d.prediction_length,
                  normalization=d.normalization, schedule=self.schedule, generator=generator, **opts)
        model = self.sampling_model.eval()
        paths = forecast_samples(model, pasts, num_samples=n, **kw)  # (B, n, H)
        block = 1
        while paths.shape[-1] < horizon:  # block-wise: each path continues from its own past
            longer = [np.concatenate([p, path]) for p, row in zip(pasts, paths) for path in row]
            more = forecast_samples(model, longer, num_samples=1, **kw)[:, 0]
            check_finite(more, f"forecast block {block + 1} (steps {paths.shape[-1] + 1} to "
                               f"{paths.shape[-1] + more.shape[-1]})")
            paths = np.concatenate([paths, more.reshape(paths.shape[0], n, -1)], axis=-1)
            block += 1
        return paths[..., :horizon]

    def select_guidance(self, series: Sequence[Series | np.ndarray], candidates: Sequence[dict[str, Any]], *,
                        windows: int = 2, num_samples: int = 16, seed: int = 0) -> list[tuple[dict[str, Any], float]]:
        """Choose the forecasting defaults (``config.guidance``) among ``candidates`` by the
        CRPS of forecasts of the last ``windows`` rolling windows of the given (training)
        series. Each candidate overrides guidance options, e.g. ``{"scale": 0.5}`` or
        ``{"solver": "ddpm", "steps": 100, "scale": 1.0, "replace": True}``; the best one
        is written into ``config.guidance``. Returns ``[(candidate, CRPS), ...]``."""
        from .metrics import evaluate, split_test_set
        from .representation import rolling_windows

        windows, num_samples = positive_int("windows", windows), positive_int("num_samples", num_samples)
        if not candidates:
            raise ValueError("select_guidance needs at least one candidate")
        for c in candidates:
            self._guidance(**c)  # unknown or invalid options, before any forecast
        items = [s if isinstance(s, Series) else Series(s, "2000-01-01", self.config.data.freq) for s in series]
        pasts, truth = split_test_set(rolling_windows(items, self.prediction_length, windows), self.prediction_length)
        scores = []
        for c in candidates:
            paths = self.forecast(pasts, self.prediction_length, num_samples, seed=seed, **c)
            scores.append((dict(c), float(evaluate(paths, truth)["CRPS"])))
        best = min(scores, key=lambda item: item[1])[0]
        for key, value in best.items():
            setattr(self.config.guidance, key, value)
        return scores

    def calibrate(self, series: Any, windows: int = 5, num_samples: int | None = None, *,
                  levels: Sequence[float] = COVERAGE_LEVELS, seed: int | None = 0, **guidance) -> ConformalCalibration:
        """Split-conformal interval factors (:mod:`sciogen.timeseries.calibration`) fitted on
        forecasts of the last ``windows`` rolling windows of ``series`` (each window forecast
        from the values before it only), to pass to :meth:`forecast` / :meth:`forecast_frame`
        as ``calibration=``.

        Give series the model was *not* tested on: the training range's last windows (ideally
        held out from training, ``data.holdout_windows``; windows the model was trained on
        give it too little correction). Calibrate with the ``num_samples`` and guidance you
        will forecast with.

        Args:
            series: what :meth:`forecast` takes as a context (one or several series), each
                at least ``context_length + windows * prediction_length`` values long.
            windows: calibration windows per series (of the trained prediction length).
            num_samples: paths per forecast (default ``config.guidance.num_samples``).
            levels: the central interval levels to calibrate, e.g. (0.5, 0.8, 0.9).
            seed: randomness of the calibration forecasts.
            **guidance: overrides of ``config.guidance``, as in :meth:`forecast`.

        Returns:
            :class:`~sciogen.timeseries.calibration.ConformalCalibration`.
        """
        n = optional_positive_int("num_samples", num_samples) or self.config.guidance.num_samples
        self._guidance(**guidance)  # unknown or invalid options, before any forecast
        pasts, _, items, _ = self._pasts(series, "series")
        items = items if items is not None else pasts

        def predict(contexts: list[np.ndarray], horizon: int) -> np.ndarray:
            return np.asarray(self.forecast(contexts, horizon, n, seed=seed, **guidance))

        return fit_conformal_forecaster(predict, items, self.prediction_length, num_windows=windows, levels=levels)

    def forecast_frame(self, context: Any, prediction_length: int | None = None, num_samples: int | None = None, *,
                       quantiles: Sequence[float] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95), seed: int | None = None,
                       calibration: ConformalCalibration | None = None, **guidance):
        """A forecast of one series as a ``pandas.DataFrame`` (H rows): column ``mean``, then one
        column per quantile named ``f"{q:g}"`` (GluonTS's sample quantiles), indexed by the
        forecast steps' timestamps (a ``DatetimeIndex`` for a ``pd.Series`` or :class:`Series`
        context) or by a ``RangeIndex`` ``step`` 1 .. H (an array context). ``calibration``
        as in :meth:`forecast` (the quantiles are those of the corrected paths). For several
        series in long format use
        ``sciogen.timeseries.gluonts_interop.to_long_frame(gen.forecast(...))``."""
        import pandas as pd

        from .io import forecast_frame

        quantiles = [finite_number(f"quantiles[{i}]", q) for i, q in enumerate(quantiles)]
        for i, q in enumerate(quantiles):
            if not 0.0 < q < 1.0:
                raise ValueError(f"quantiles[{i}] must lie strictly between 0 and 1, got {q}")
        _, single, series, _ = self._pasts(context)
        if not single:
            raise ValueError("forecast_frame takes one series; call it per series")
        paths = self.forecast(context, prediction_length, num_samples, seed=seed, calibration=calibration, **guidance)
        index = series[0].future_index(paths.shape[-1]) if series else pd.RangeIndex(1, paths.shape[-1] + 1, name="step")
        return forecast_frame(paths, index, quantiles)

    @torch.no_grad()
    def impute(self, series: Any, num_samples: int = 10, *, seed: int | None = None, **guidance) -> np.ndarray:
        """Sample values for the NaN entries of a series, guided by its observed ones.

        The series is covered by windows of the model's length (context + prediction), the
        last one aligned with its end; each window is guided by its observed values and lags.

        Returns:
            (num_samples, T) in data units; observed entries are returned unchanged.
        """
        num_samples = positive_int("num_samples", num_samples)
        opts = self._guidance(**guidance)
        pasts, single, _, _ = self._pasts(series, "series")
        if not single:
            raise ValueError("impute takes one series; call it per series")
        values = pasts[0]
        length = self.context_length + self.prediction_length
        if len(values) < length:
            raise SeriesTooShortError(f"the series has {len(values)} values; imputation needs at least the model's window {length}")
        observed = ~np.isnan(values)
        generator = _generator(self.device, seed)
        if observed.all():
            return np.repeat(values[None], num_samples, 0)
        out = np.repeat(values[None].astype(np.float64), num_samples, 0)
        ends = list(range(length, len(values) + 1, length))
        if ends[-1] != len(values):
            ends.append(len(values))
        for end in ends:
            if observed[end - length : end].all():
                continue
            raw = values[max(0, end - length - self.max_lag) : end]
            window = self._impute_window(raw, num_samples, generator, opts)
            check_finite(window, f"the imputation of the window ending at position {end - 1}")
            out[:, end - length : end] = window
        out[:, observed] = values[observed]
        return out

    def _impute_window(self, raw: np.ndarray, n: int, generator, opts) -> np.ndarray:
        d = self.config.data
        need = self.max_lag + self.context_length + self.prediction_length
        window = np.full(need, np.nan)
        window[need - len(raw) :] = raw
        w = torch.as_tensor(window[None], dtype=torch.float64)
        # statistics from all observed values of the window (the "context" is the whole window here)
        x, mask, loc, scale = make_state(w, self.lags, self.context_length + self.prediction_length, 0, d.normalization)
        check_stats(loc, scale, "the window of the series")
        q = (torch.arange(n, dtype=torch.float32) + 1.0) / (n + 1.0) if opts["loss"] == "quantile" else None
        model = self.sampling_model.eval()
        x = guided_sample(model, x.repeat(n, 1, 1), mask.repeat(n, 1, 1), schedule=self.schedule, solver=opts["solver"],
                          steps=opts["steps"], scale=opts["scale"], loss=opts["loss"], quantiles=q, eta=opts["eta"],
                          replace=opts["replace"], generator=generator)
        return unnormalize(x[..., 0].double().cpu(), loc.repeat(n), scale.repeat(n)).numpy()


def _reference_series(reference: Any, download: bool) -> tuple[list[Series], list[Series], int | None]:
    """(training series, test entries, prediction length or None) of an evaluation reference."""
    from .datasets import REGISTERED

    if isinstance(reference, str) and reference in REGISTERED:
        ds = load_registered(reference, download=download)
        return ds.train, ds.test, ds.prediction_length
    if download:
        raise ValueError(f"--download fetches a registered dataset ({', '.join(sorted(REGISTERED))}), not {reference!r}")
    if isinstance(reference, (str, Path)):
        path = Path(reference)
        if path.is_dir() and (path / "checkpoints").is_dir() or path.is_file() and path.suffix == ".pt":
            return _run_data(path)
        if not path.exists() and not any(ch in str(reference) for ch in "*?["):
            raise FileNotFoundError(
                f"--reference {reference}: no such file or folder, nor a registered dataset "
                f"({', '.join(sorted(REGISTERED))})"
            )
    if isinstance(reference, SeriesData):
        return reference.series, reference.test, reference.prediction_length
    data = read_series(reference)
    return data.series, data.test, data.prediction_length


def _run_data(path: Path) -> tuple[list[Series], list[Series], int | None]:
    """The training series of a run folder or checkpoint, read as its config says."""
    from sciogen.config import from_dict
    from sciogen.train.checkpoint import load_checkpoint, resolve_checkpoint

    config = from_dict(TimeSeriesConfig, load_checkpoint(resolve_checkpoint(path))["config"])
    d = config.data
    if d.path is None and d.dataset is None:
        raise ValueError(f"{path}: its config names no data (data.path / data.dataset); pass --reference FILE")
    data = TimeSeriesGenerator._read(None, config, RecordLog())
    return data.series, data.test, d.prediction_length


def _in_memory_file(data: Any, column: str | None) -> Path:
    """Python data (pandas, Series, a GluonTSDataset) written to a CSV in the dataset cache, so
    that a config can name it: ``sciogen.fit`` builds the generator from the config alone.

    The file is named by its content (re-running writes nothing new) and holds the values as
    given, so that unusable ones are still reported by :meth:`training_data`.
    """
    import hashlib

    import pandas as pd

    from sciogen.data import cache_dir

    from .datasets import GluonTSDataset
    from .tables import _pandas_frame

    if isinstance(data, GluonTSDataset):
        data = data.train
    if isinstance(data, Series):
        data = [data]
    if isinstance(data, (list, tuple)) and data and all(isinstance(x, Series) for x in data):
        frame = pd.concat([pd.DataFrame({"item_id": str(x.item_id if x.item_id is not None else i),
                                         "timestamp": x.index(), "target": x.target}) for i, x in enumerate(data)])
    elif isinstance(data, (pd.Series, pd.DataFrame)):
        frame = _pandas_frame(data)[0]
    else:
        raise TypeError(f"cannot train on a {type(data).__name__}; pass a file, folder or glob, a pandas Series / "
                        "DataFrame or a list of sciogen.timeseries.Series")
    text = frame.to_csv(index=False)
    folder = cache_dir() / "timeseries" / "in-memory"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.csv"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


# -- argument checks ---------------------------------------------------------------------------------

_GUIDANCE_CHOICES = {"solver": ("ddpm", "ddim"), "loss": ("quantile", "mse")}


def _checked_guidance(opts: dict[str, Any]) -> dict[str, Any]:
    """Guidance options checked before any work (ValueError naming the option and value)."""
    for key, allowed in _GUIDANCE_CHOICES.items():
        if opts[key] not in allowed:
            raise ValueError(f"guidance {key} must be one of {', '.join(allowed)}, got {opts[key]!r}")
    opts["steps"] = positive_int("steps", opts["steps"])
    opts["batch_size"] = positive_int("batch_size", opts["batch_size"])
    opts["scale"] = finite_number("scale", opts["scale"])
    if opts["scale"] < 0:
        raise ValueError(f"scale must be >= 0, got {opts['scale']}")
    opts["eta"] = finite_number("eta", opts["eta"])
    if not 0.0 <= opts["eta"] <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM), got {opts['eta']}")
    if not isinstance(opts["replace"], (bool, np.bool_)):
        raise ValueError(f"replace must be True or False, got {opts['replace']!r}")
    return opts


def _check_calibration(calibration: Any, num_samples: int) -> None:
    if calibration is None:
        return
    if not isinstance(calibration, ConformalCalibration):
        raise TypeError(f"calibration must be a ConformalCalibration (gen.calibrate(...)), got {type(calibration).__name__}")
    if calibration.num_samples != num_samples:
        raise ValueError(f"the calibration was fitted on forecasts of {calibration.num_samples} paths; forecast with "
                         f"num_samples={calibration.num_samples} or calibrate again with num_samples={num_samples} "
                         "(the corrected quantile ranks depend on it)")


def _generator(device: torch.device, seed: Any) -> torch.Generator:
    """A generator seeded with ``seed`` (an integer), or with a fresh seed when None."""
    if seed is None:
        seed = int(torch.randint(2**62, ()).item())
    elif isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))


def _values(what: str, values: Any, ndim: int | None = 1) -> np.ndarray:
    """``values`` as a real float64 array: NaN (missing) allowed, inf and complex refused."""
    if isinstance(values, np.ndarray) and not values.flags.writeable:  # pandas' read-only views
        values = values.copy()
    array = finite_array(what, values, dtype=torch.float64, allow_nan=True).numpy()
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{what} must be one series (T,), got shape {array.shape}")
    return array


def _name(item_id: Any, index: int) -> Any:
    """The name written for a series: its item_id, else its position."""
    return index if item_id is None else item_id
