"""Autoregressive-diffusion heads: key/value-cache speed-up and diffusion-step annealing.

1. KV cache. Generation time of the per-token model (:class:`sciogen.ar.TokenAR`) with
   discrete tokens only (the transformer alone) and with every position a continuous
   value drawn by 10 DDIM steps of the diffusion head, and of the block-wise model
   (:class:`sciogen.ar.BlockAR`, blocks of 16 tokens) for sequences of 64 to 1,024
   positions, with the cache and with the whole prefix recomputed at every step. The
   weights are random (timing does not depend on them); both paths give the same samples
   (tests/test_ar_*.py check it).
2. Step annealing (DiSA). A per-token head trained for a short CPU run on
   :class:`sciogen.ar.testing.MixtureChain` (8 two-dimensional values, exact law known)
   generates whole sequences with a fixed number of DDIM steps per value or with steps
   annealed from ``upper`` to ``lower`` along the sequence. Quality: energy distance
   between 2,000 generated and 2,000 exact sequences (16-D), next to the distance between
   two exact samples of the same size (the noise floor, mean and std over 5 pairs).

    python benchmarks/ar.py --threads 1      # writes benchmarks/results/ar.json
    python benchmarks/ar.py --quick          # shorter lengths and training, for a smoke run

The recomputed-prefix runs cost O(N^2) per sequence; at 1,024 positions they take most of
the run time (minutes each on a small CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from sciogen.ar import BlockAR, BlockARConfig, FieldConfig, StepAnnealing, TokenAR, TokenARConfig
from sciogen.ar.testing import MixtureChain, fit

OUT = Path(__file__).parent / "results" / "ar.json"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def timed(fn, repeats: int = 1) -> float:
    """Shortest wall time of ``repeats`` calls (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cache_speedup(lengths, batch: int, steps: int) -> dict:
    """Seconds per generated sequence batch, with and without the KV cache."""
    torch.manual_seed(0)
    width = dict(dim=128, depth=4, heads=4)
    token = TokenAR(TokenARConfig(vocab_size=4, value_dim=2, value_token=1, max_len=max(lengths), head_width=128,
                                  head_depth=2, **width)).eval()
    block = BlockAR(BlockARConfig(fields={"x": FieldConfig("gaussian", 2)}, max_len=max(lengths), **width)).eval()

    def all_values(i, logits, prefix):  # every generated position is a continuous value
        logits = torch.full_like(logits, -1e9)
        logits[:, 1] = 0.0
        return logits

    def no_values(i, logits, prefix):  # discrete tokens only: the transformer alone
        logits = logits.clone()
        logits[:, 1] = -1e9
        return logits

    bos = torch.zeros(batch, 1, dtype=torch.long)
    rows = []
    for n in lengths:
        row = {"positions": n}
        r = 3 if n <= 256 else 1
        for cached in (True, False):
            key = "cached" if cached else "recomputed"
            row[f"tokens_only_{key}_s"] = timed(lambda: token.generate(
                bos, length=n, logits_processor=no_values, use_cache=cached, generator=torch.Generator().manual_seed(0)), r)
            row[f"token_{key}_s"] = timed(lambda: token.generate(
                bos, length=n, solver="ddim", steps=steps, logits_processor=all_values, use_cache=cached,
                generator=torch.Generator().manual_seed(0)), r)
            row[f"block_{key}_s"] = timed(lambda: block.generate(
                batch, [16] * (n // 16), solver="ddim", steps=steps, use_cache=cached,
                generator=torch.Generator().manual_seed(0)), r)
        row["tokens_only_speedup"] = row["tokens_only_recomputed_s"] / row["tokens_only_cached_s"]
        row["token_speedup"] = row["token_recomputed_s"] / row["token_cached_s"]
        row["block_speedup"] = row["block_recomputed_s"] / row["block_cached_s"]
        print(f"{n:5d} positions: tokens only {row['tokens_only_speedup']:.1f}x; "
              f"token head {row['token_cached_s']:.2f}s cached vs {row['token_recomputed_s']:.2f}s "
              f"({row['token_speedup']:.1f}x); block-wise {row['block_cached_s']:.2f}s vs "
              f"{row['block_recomputed_s']:.2f}s ({row['block_speedup']:.1f}x)", flush=True)
        rows.append(row)
    return {
        "setup": {
            "transformer": width, "batch": batch, "solver": "ddim", "steps_per_value_or_block": steps,
            "tokens_only": "the per-token model generating discrete tokens only (transformer + softmax)",
            "token_head": "every position a 2-D value (AdaLN-MLP head, width 128, depth 2)",
            "block_wise": "blocks of 16 tokens, one 2-D Gaussian field",
            "timing": "wall seconds per generated batch; shortest of 3 runs up to 256 positions, 1 run above",
        },
        "rows": rows,
    }


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def annealing_tradeoff(train_steps: int, n: int) -> dict:
    """Time and energy distance to the exact law for fixed and annealed solver steps."""
    task = MixtureChain(length=8)
    torch.manual_seed(0)
    model = TokenAR(TokenARConfig(vocab_size=task.vocab_size, value_dim=2, value_token=task.VALUE, max_len=task.seq_len,
                                  dim=64, depth=2, heads=4, head_width=64, head_depth=3))
    start = time.perf_counter()
    losses = fit(model, lambda g: dict(zip(("tokens", "values"), task.sample(128, g))), train_steps, lr=2e-3)
    train_s = time.perf_counter() - start
    g = torch.Generator().manual_seed(123)
    truth = task.sample_values(n, g).reshape(n, -1)
    floors = torch.tensor([energy_distance(truth, task.sample_values(n, g).reshape(n, -1)) for _ in range(5)])
    settings = {f"fixed {k}": k for k in (50, 20, 10, 5)}
    settings.update({
        "annealed 50->5 linear": StepAnnealing(50, 5, "linear"),
        "annealed 50->5 cosine": StepAnnealing(50, 5, "cosine"),
        "annealed 20->5 linear": StepAnnealing(20, 5, "linear"),
    })
    rows = []
    for name, steps in settings.items():
        out = {}
        seconds = timed(lambda: out.setdefault("s", model.generate(
            torch.zeros(n, 1, dtype=torch.long), length=task.seq_len, solver="ddim", steps=steps,
            generator=torch.Generator().manual_seed(7))))
        sample = out["s"]
        x = sample.values[:, 1:-1].reshape(n, -1)
        total = sum(steps.steps(i, task.length + 1) for i in range(task.length)) if isinstance(steps, StepAnnealing) \
            else steps * task.length
        row = {"setting": name, "seconds": seconds, "solver_steps_per_sequence": total,
               "energy_distance": energy_distance(x, truth),
               "value_positions_ok": float((sample.tokens[:, 1:-1] == task.VALUE).float().mean())}
        print(f"{name:24s} {seconds:6.2f}s  {total:4d} steps  ED {row['energy_distance']:.4f}", flush=True)
        rows.append(row)
    return {
        "setup": {"task": "MixtureChain(length=8, dim=2)", "train_steps": train_steps, "train_seconds": train_s,
                  "final_loss": sum(losses[-50:]) / min(50, len(losses)), "samples": n, "solver": "ddim",
                  "noise_floor_energy_distance": {"mean": float(floors.mean()), "std": float(floors.std()),
                                                  "what": "exact vs exact sequences, 5 pairs of the same size"}},
        "rows": rows,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short lengths and training (smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--lengths", type=int, nargs="+", default=None,
                        help="sequence lengths, multiples of 16 (default: 64 128 256 512 1024)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = args.lengths or ([64, 128] if args.quick else [64, 128, 256, 512, 1024])
    if any(n % 16 for n in lengths):
        parser.error(f"lengths must be multiples of the block size 16, got {lengths}")
    result = {
        "benchmark": "sciogen.ar: KV-cache speed-up and diffusion-step annealing",
        "machine": machine(),
        "kv_cache": cache_speedup(lengths, batch=4, steps=10),
        "step_annealing": annealing_tradeoff(train_steps=100 if args.quick else 800, n=200 if args.quick else 2000),
    }
    result["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
