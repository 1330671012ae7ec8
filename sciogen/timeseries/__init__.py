"""Time series: TSDiff (Kollovieh et al. 2023) — an unconditional diffusion model of series
windows, with forecasting and imputation by observation self-guidance.

- ``representation.py``: :class:`Series`, frequencies (seasonality, lags), pandas in/out;
- ``datasets.py``: GluonTS-format folders and archives, ``exchange_rate_nips``, LSTNet files;
- ``features.py``: context normalisation and lag channels;
- ``network.py``: the TSDiff denoiser with bidirectional S4D layers;
- ``forecast.py``: guided sampling (TSDiff-Q / TSDiff-MS, DDPM / DDIM);
- :class:`TimeSeriesGenerator` (``generator.py``): fit / sample / forecast / impute / save / load;
- ``metrics.py``: GluonTS's Evaluator metrics (CRPS as mean_wQuantileLoss, ND, NRMSE, MASE, CRPS-sum) and
  interval coverage;
- ``calibration.py``: split-conformal correction of any forecaster's sample paths
  (``gen.calibrate(series)`` -> ``gen.forecast(..., calibration=cal)``);
- ``gluonts_interop.py``: GluonTS datasets in, ``SampleForecast`` out, ``SciogenPredictor`` for
  GluonTS's ``Evaluator`` / backtests (gluonts optional), long-format forecast frames;
- ``baselines.py``: Seasonal Naive, a ridge forecaster, a random walk with volatility and a
  seasonal naive with seasonal-difference noise;
- ``plots.py``: fan charts; ``demo.py``: ``sciogen demo``.
"""

from .calibration import ConformalCalibration, fit_conformal, fit_conformal_forecaster
from .config import TimeSeriesConfig, TSDataConfig, TSDiffusionConfig, TSGuidanceConfig, TSModelConfig
from .datasets import GluonTSDataset, load_exchange_rate_nips, read_gluonts, read_lstnet
from .generator import TimeSeriesGenerator
from .gluonts_interop import SciogenPredictor, from_gluonts, to_long_frame, to_sample_forecasts
from .io import ForecastPaths
from .metrics import crps_sum, evaluate, evaluate_dataset, interval_coverage
from .network import TSDiffDenoiser
from .representation import (
    NonMonotonicIndexError,
    Series,
    SeriesTooShortError,
    TimeSeriesError,
    UnknownFrequencyError,
    from_pandas,
    lags_for_freq,
    rolling_windows,
    seasonality,
    split_past_future,
    to_pandas,
)

__all__ = [
    "Series", "TimeSeriesError", "UnknownFrequencyError", "NonMonotonicIndexError", "SeriesTooShortError",
    "from_pandas", "to_pandas", "seasonality", "lags_for_freq", "rolling_windows", "split_past_future",
    "GluonTSDataset", "read_gluonts", "load_exchange_rate_nips", "read_lstnet",
    "TimeSeriesConfig", "TSDataConfig", "TSModelConfig", "TSDiffusionConfig", "TSGuidanceConfig",
    "TimeSeriesGenerator", "ForecastPaths", "TSDiffDenoiser", "evaluate", "evaluate_dataset",
    "interval_coverage", "crps_sum", "ConformalCalibration", "fit_conformal", "fit_conformal_forecaster",
    "SciogenPredictor", "from_gluonts", "to_sample_forecasts", "to_long_frame",
]
