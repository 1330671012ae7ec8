"""``sciogen demo`` for the toy domain: every solver on a problem with a known answer.

The example Gaussian mixture in R^2 has an exact denoiser, so sampling error comes from
the solver alone; the shipped ``toy/gmm`` model adds its learning error. For each solver
(20 steps) both draw the same number of samples from the same seed, and the rows report
the energy distance, mean and covariance errors and the mixture NLL against a large
sample of the true mixture; a first row gives the same numbers for true samples (the
noise floor of the measure). Writes ``results.csv``, ``results.json`` and, when
matplotlib is installed, ``scatter.png`` to the output folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import torch

from sciogen.diffusion import SOLVERS, GaussianMixture, sample

from .metrics import vector_metrics

__all__ = ["run_demo"]

STEPS = 20


def _exact_sampler(mixture: GaussianMixture, schedule: str, prediction: str) -> Callable[..., torch.Tensor]:
    model = mixture.denoiser(schedule, prediction)

    def draw(n: int, solver: str, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        x_T = torch.randn(n, mixture.dim, generator=g)
        return sample(model, x_T, schedule=schedule, prediction=prediction, solver=solver, steps=STEPS, generator=g)

    return draw


def _shipped_sampler() -> Callable[..., torch.Tensor] | None:
    from sciogen.registry import available, load

    if "toy/gmm" not in available():
        return None
    generator = load("toy/gmm", device="cpu")
    return lambda n, solver, seed: generator.sample(n, steps=STEPS, solver=solver, seed=seed, batch_size=n)


def run_demo(out_dir: str | Path, quick: bool = False) -> list[dict[str, Any]]:
    """Run the toy demo, write its files to ``out_dir`` and return the result rows."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 1000 if quick else 4000
    mixture = GaussianMixture.example(2)
    reference = mixture.sample(20000, generator=torch.Generator().manual_seed(1)).float()
    truth = mixture.sample(n, generator=torch.Generator().manual_seed(2)).float()
    rows = [_row("true samples", "-", truth, reference, mixture)]
    samplers = {"exact denoiser": _exact_sampler(mixture, "cosine", "v"), "toy/gmm": _shipped_sampler()}
    drawn: dict[str, torch.Tensor] = {}
    for name, draw in samplers.items():
        if draw is None:
            continue
        for solver in SOLVERS:
            x = draw(n, solver, 0)
            drawn[f"{name}, {solver}"] = x
            rows.append(_row(name, solver, x, reference, mixture))
    _write(out_dir, rows)
    _scatter(out_dir / "scatter.png", truth, {k: v for k, v in drawn.items() if k.endswith("dpm++2m")})
    return rows


def _row(model: str, solver: str, x: torch.Tensor, reference: torch.Tensor, mixture: GaussianMixture) -> dict[str, Any]:
    metrics = vector_metrics(x, reference, mixture)
    metrics.pop("reference_nll")
    return {"model": model, "solver": solver, "steps": STEPS if solver != "-" else "-", **metrics}


def _write(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    with open(out_dir / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2))


def _scatter(path: Path, truth: torch.Tensor, samples: dict[str, torch.Tensor]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    panels = {"true samples": truth, **samples}
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), sharex=True, sharey=True)
    for ax, (title, x) in zip(list(getattr(axes, "flat", [axes])), panels.items()):
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
