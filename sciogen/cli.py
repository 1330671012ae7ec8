"""The ``sciogen`` command (also ``python -m sciogen``).

    sciogen train DOMAIN|RECIPE|CONFIG.yaml [--data PATH ...] [--set key=value ...] [--run-dir DIR] [--resume [CKPT]]
    sciogen sample NAME_OR_CKPT -n N --out FILE [--steps S --solver X --seed K] [domain options]
    sciogen evaluate DOMAIN FILE [--reference REF] [--download] [--json]
    sciogen list
    sciogen info NAME_OR_CKPT
    sciogen tune-solver NAME_OR_CKPT --steps N [--solver S] [--samples 100] --out MODEL_OUT
    sciogen conformers SMILES -n N --out FILE.sdf [--model NAME_OR_CKPT] [--steps S --seed K]
    sciogen demo [--out DIR] [--domain NAME ...] [--quick]

``train`` and ``sample`` run unchanged under ``torchrun --nproc-per-node N``. Domains are
imported only when a command needs them (see :mod:`sciogen.registry`), so ``--help`` and
the core work without any domain extra. Errors print one line and exit non-zero;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["main", "build_parser", "TUNE_SOLVER_DOMAINS"]

#: the domains whose generators implement ``tune_grid`` (``sciogen tune-solver``)
TUNE_SOLVER_DOMAINS = ("toy",)


def _add_debug(parser: argparse.ArgumentParser, top: bool = False) -> None:
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="show the full traceback on errors")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sciogen`` (domain options of ``sample`` are added later)."""
    from sciogen import __version__

    parser = argparse.ArgumentParser(prog="sciogen", description="Generate scientific data with diffusion models.")
    parser.add_argument("--version", action="version", version=f"sciogen {__version__}")
    _add_debug(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _train_parser(sub)
    parser.sample_parser = _sample_parser(sub)  # printed by `sciogen sample --help`
    ev = sub.add_parser("evaluate", help="compute a domain's metrics of a file of samples")
    ev.add_argument("domain", help="the domain of the samples, e.g. toy")
    ev.add_argument("file", help="the samples, in a format the domain reads")
    ev.add_argument("--reference", "--truth", dest="reference",
                    help="reference data: for generated samples the training data (a file, folder, run folder) or "
                         "a dataset name such as qm9 or perov_5; for forecasts the true values (--truth)")
    ev.add_argument("--download", action="store_true",
                    help="download a --reference dataset (checksummed) when no local copy is in the cache")
    ev.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_debug(ev)
    for name, text in (("list", "list shipped models, domains and datasets"),):
        _add_debug(sub.add_parser(name, help=text))
    _export_parser(sub)
    _tune_solver_parser(sub)
    info = sub.add_parser("info", help="describe a shipped model or a checkpoint")
    info.add_argument("target", metavar="NAME_OR_CKPT")
    _add_debug(info)
    _conformers_parser(sub)
    demo = sub.add_parser("demo", help="run the demos of the installed domains")
    demo.add_argument("--out", default="sciogen-demo", help="output folder (default: sciogen-demo)")
    demo.add_argument("--domain", action="append", help="only this domain (repeatable)")
    demo.add_argument("--quick", action="store_true", help="smaller demo runs")
    _add_debug(demo)
    return parser


def _conformers_parser(sub) -> None:
    p = sub.add_parser("conformers", help="3D conformers of a molecule given as SMILES (a UniGenX molecules3d model)")
    p.add_argument("smiles", help="the molecule, e.g. CCO")
    p.add_argument("-n", type=int, default=10, help="number of conformers (default 10)")
    p.add_argument("--out", required=True, help="output SDF file (.sdf or .sdf.gz), one record per conformer")
    p.add_argument("--model", default="molecules3d/qm9-unigenx",
                   help="shipped model name, checkpoint or run folder (default: molecules3d/qm9-unigenx)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--steps", type=int, help="solver steps per atom position (default: the model's config)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda:0, ...")
    _add_debug(p)


def _train_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model: on your own data (DOMAIN --data PATH), a packaged recipe or a YAML file",
        description="Train a model. SOURCE is a domain (its default recipe, e.g. molecules), a packaged "
                    "recipe (e.g. molecules/qm9; see sciogen list) or a YAML file. With --data the model "
                    "trains on your own file, folder or glob (docs/your-data.md lists the formats).")
    p.add_argument("config", metavar="SOURCE", help="domain, packaged recipe or YAML file, e.g. molecules")
    p.add_argument("--data", help="your own data: a file, a folder or a quoted glob in the domain's formats")
    p.add_argument("--labels", help="volumes, deformation: a folder of label images matched to --data by file name")
    p.add_argument("--covariates", help="volumes: a CSV of per-volume covariates (time series: not supported yet)")
    p.add_argument("--condition-on", type=_name_list, metavar="COL[,COL]",
                   help="molecules, crystals: numeric columns (or SD tags) to condition on")
    p.add_argument("--column", help="molecules, crystals: the column that holds the records (SMILES / CIF)")
    p.add_argument("--freq", help="time series: the pandas frequency (default: inferred from the timestamps)")
    p.add_argument("--prediction-length", type=int, metavar="N", help="time series: forecast horizon in steps")
    p.add_argument("--download", action="store_true",
                   help="fetch the recipe's registered dataset (checksummed) when the cache has no copy")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=500 (repeatable)")
    p.add_argument("--run-dir", help="run folder (default: train.run_dir, else runs/<source>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue the run folder's latest checkpoint (or CKPT)")
    _add_debug(p)


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="turn a training run into a shippable model file (no trainer state)",
        description="Write RUN's latest checkpoint (or CKPT) as a model file that sciogen.load and "
                    "sciogen sample read: the EMA weights as the model's, no optimizer state, the training "
                    "stages recorded in its metadata, optionally in float16.")
    p.add_argument("run", metavar="RUN", help="run folder (its latest checkpoint) or a checkpoint file")
    p.add_argument("out", metavar="OUT", help="the model file to write (.pt)")
    p.add_argument("--half", action="store_true", help="store weights in float16 (measure the exported file)")
    p.add_argument("--keep-raw-weights", action="store_true",
                   help="keep the raw (non-EMA) weights beside the EMA ones (larger file)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a stored sampling default, e.g. --set sampling.valence_retries=3 (repeatable)")
    p.add_argument("--data", help="data a domain chooses its defaults on (time series: the guidance; "
                                  "default: the run's own training data)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _add_debug(p)


def _tune_solver_parser(sub) -> None:
    p = sub.add_parser(
        "tune-solver", help="search a model's sampling times for a few solver steps (a tuned time grid)",
        description="Search the STEPS sampling times that bring the solver closest to the model's own many-step "
                    "solution from the same noises (sciogen.diffusion.search_grid), and write the model with the "
                    "grid stored in its metadata; sample with it in Python: sample(n, steps=STEPS, grid='tuned'). "
                    f"Domains: {', '.join(TUNE_SOLVER_DOMAINS)}.")
    p.add_argument("model", metavar="MODEL", help="shipped model name, checkpoint file or run folder")
    p.add_argument("--steps", type=int, required=True, help="solver steps of the grid (>= 2)")
    p.add_argument("--solver", help="a deterministic solver: unipc, dpm++2m, dpm++3m, ddim, euler or heun "
                                    "(default: the model's config)")
    p.add_argument("--samples", type=int, default=100, help="starting noises the grid is fitted on (default 100)")
    p.add_argument("--iterations", type=int, default=60, help="search generations at most (default 60)")
    p.add_argument("--teacher-steps", type=int, default=200, help="steps of the teacher solution (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the search (default 0)")
    p.add_argument("--out", required=True, metavar="MODEL_OUT", help="the model file to write (.pt)")
    p.add_argument("--force", action="store_true", help="replace MODEL_OUT if it exists")
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda:0, ...")
    _add_debug(p)


def _name_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got {text!r}")
    return names


def _sample_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("sample", help="draw samples from a shipped model or checkpoint", add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help (with the domain's options when a model is given)")
    p.add_argument("target", nargs="?", metavar="NAME_OR_CKPT", help="shipped model name, checkpoint file or run folder")
    p.add_argument("-n", type=int, help="number of samples")
    p.add_argument("--out", help="output file (its suffix picks the format) or folder (one file per sample)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--steps", type=int, help="solver steps (default: the model's config)")
    p.add_argument("--solver", help="unipc, dpm++2m, dpm++3m, ddim, ddpm, euler, heun or euler-maruyama for the Gaussian "
                   "domains; the model's domain may accept others (default: the model's config)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int, help="samples per chunk")
    p.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda:0, ...")
    _add_debug(p)
    return p


# -- commands -----------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    from sciogen.registry import prepare_run
    from sciogen.train import distributed

    options = {k: getattr(args, k) for k in ("labels", "covariates", "condition_on", "column", "freq",
                                             "prediction_length", "download")}
    generator, stem = prepare_run(args.config, args.data, args.set, **options)
    config = generator.config
    run_dir = args.run_dir or config.train.run_dir or str(Path("runs") / stem)
    config.train.run_dir = str(run_dir)
    generator.fit(run_dir=run_dir, resume=args.resume)
    if distributed.is_main():
        print(f"trained {generator.trained_steps} steps; checkpoints in {Path(run_dir) / 'checkpoints'}")
        out = getattr(generator, "example_output", "samples.csv")
        print(f"sample with: sciogen sample {run_dir} -n 1000 --out {out}")
    return 0


def _cmd_sample(args: argparse.Namespace, rest: list[str], parser: argparse.ArgumentParser) -> int:
    from sciogen.data.output import check_destination, write_atomically
    from sciogen.registry import get_domain, read_checkpoint
    from sciogen.train import distributed
    from sciogen.train.generator import SamplingInterrupted

    sample_parser = parser.sample_parser
    if args.target is None:
        if args.help:
            sample_parser.print_help()
            return 0
        raise ValueError("sciogen sample needs a model: a shipped name (sciogen list), a checkpoint or a run folder")
    checkpoint, where = read_checkpoint(args.target)
    generator_cls = get_domain(str(checkpoint.get("domain"))).generator_class()
    domain_parser = argparse.ArgumentParser(prog=f"sciogen sample {args.target}", add_help=False)
    generator_cls.add_sample_arguments(domain_parser)
    if args.help:
        sample_parser.print_help()
        has_options = bool(domain_parser._actions)  # noqa: SLF001 - argparse has no public count
        print(f"\noptions of the {generator_cls.domain!r} domain:" + ("" if has_options else " none"))
        if has_options:
            print(domain_parser.format_help())
        return 0
    if generator_cls.sample_conditions:
        domain_parser.add_argument("--condition", action="append", nargs="+", metavar="NAME=VALUE",
                                   help="target values the model was trained to condition on, e.g. "
                                        "--condition qed=0.55 (several after one flag, or the flag repeated)")
    conditions = {k: v for k, v in vars(domain_parser.parse_args(rest)).items() if v is not None}
    if "condition" in conditions and generator_cls.sample_conditions:
        conditions["condition"] = parse_conditions(item for group in conditions["condition"] for item in group)
    if args.n is None or args.out is None:
        raise ValueError("sciogen sample needs -n N and --out FILE")
    out = check_destination(args.out, generator_cls.output_formats, force=args.force)
    info = distributed.setup(args.device)
    generator = generator_cls.from_checkpoint(checkpoint, device=info.device)
    try:
        samples = generator.sample(args.n, steps=args.steps, solver=args.solver, seed=args.seed,
                                   batch_size=args.batch_size, **conditions)
    except SamplingInterrupted as stop:
        if stop.samples is None:
            raise
        path = write_atomically(generator_cls.write_samples, stop.samples, out)
        print(f"sciogen: interrupted; wrote the {stop.done} of {stop.n} samples finished from {where} to {path}",
              file=sys.stderr)
        return 130
    if info.is_main:
        path = write_atomically(generator_cls.write_samples, samples, out)
        # a format that holds valid items only (SMILES, SDF) has said how many it left out
        print(f"sampled {args.n} from {where}; wrote {path}")
    return 0


def parse_conditions(items: Iterable[str]) -> dict[str, float | str]:
    """``["qed=0.55", "scaffold_class=aromatic"]`` -> ``{"qed": 0.55, "scaffold_class": "aromatic"}``:
    the one parser of ``--condition NAME=VALUE`` (numbers become floats, the rest stay text for
    the domain to check); a malformed or repeated item is a ValueError naming it."""
    out: dict[str, float | str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"--condition {item!r} must look like NAME=VALUE, e.g. --condition qed=0.55")
        if name in out:
            raise ValueError(f"--condition {name} is given twice ({name}={out[name]} and {item})")
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value
    return out


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sciogen.registry import get_domain

    generator_cls = get_domain(args.domain).generator_class()
    options = {"download": True} if args.download else {}
    if options and not args.reference:
        raise ValueError("--download fetches the --reference dataset; give --reference NAME too")
    metrics = generator_cls.evaluate_samples(generator_cls.read_samples(args.file), args.reference, **options)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        width = max(map(len, metrics), default=0)
        for key, value in metrics.items():
            print(f"{key:<{width}}  {value:.6g}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from sciogen.data import cards
    from sciogen.registry import available, domains, model_card

    print("shipped models:")
    for name in available():
        card = model_card(name) or ""
        title = next((line.lstrip("# ").strip() for line in card.splitlines() if line.strip()), "")
        print(f"  {name:<22} {title}")
    from sciogen.registry import available_predictors

    if available_predictors():
        print("property predictors (score samples; sciogen.<domain>.load_property_predictor):")
        for name in available_predictors():
            print(f"  {name}")
    print("domains:")
    for spec in domains():
        extra = f'pip install "sciogen[{spec.extra}]"' if spec.extra else "core"
        print(f"  {spec.name:<22} {spec.description} ({extra})")
    from sciogen.recipes import recipe_names

    print("recipes (sciogen train NAME; a domain name alone takes its default, marked *):")
    defaults = {spec.recipe for spec in domains()}
    for name in recipe_names():
        print(f"  {name}{' *' if name in defaults else ''}")
    print("datasets:")
    for name, card in cards().items():
        print(f"  {name:<22} [{card.domain}] {card.title}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from sciogen.data.output import check_destination, write_atomically
    from sciogen.registry import load

    out = check_destination(args.out, (".pt",), force=args.force, name="OUT")
    generator = load(args.run, device="cpu")
    path = write_atomically(
        lambda _, where: generator.export(where, half=args.half, ema_only=not args.keep_raw_weights,
                                          settings=args.set, data=args.data), None, out)
    size = Path(path).stat().st_size / 2**20
    print(f"exported {args.run} ({generator.trained_steps} steps) to {path} ({size:.1f} MiB)")
    return 0


def _cmd_conformers(args: argparse.Namespace) -> int:
    from sciogen import registry
    from sciogen.data.output import check_destination, write_atomically

    out = check_destination(args.out, (".sdf", ".sdf.gz"), force=args.force)
    generator = registry.load(args.model, device=args.device)
    if not hasattr(generator, "conformers"):
        raise ValueError(f"{args.model} is a {generator.domain!r} model; conformers come from a molecules3d UniGenX model "
                         "(the default, molecules3d/qm9-unigenx)")
    mol = generator.conformers(args.smiles, args.n, steps=args.steps, seed=args.seed)

    def write(m, path):
        from rdkit import Chem

        from sciogen.molecules3d import to_sdf

        return to_sdf([Chem.Mol(m, confId=c.GetId()) for c in m.GetConformers()], path)

    path = write_atomically(write, mol, out)
    print(f"wrote {mol.GetNumConformers()} conformers of {args.smiles} to {path}")
    return 0


def _cmd_tune_solver(args: argparse.Namespace) -> int:
    import torch

    from sciogen.data.output import check_destination, write_atomically
    from sciogen.registry import get_domain, read_checkpoint
    from sciogen.train.checkpoint import save_checkpoint
    from sciogen.train.generator import Generator

    checkpoint, where = read_checkpoint(args.model)
    domain = str(checkpoint.get("domain"))
    generator_cls = get_domain(domain).generator_class()
    if generator_cls.tune_grid is Generator.tune_grid:
        raise ValueError(f"sciogen tune-solver: the {domain!r} domain has no tuned time grids (its sampler is not one "
                         f"core ODE solver over one Gaussian state); domains that have them: {', '.join(TUNE_SOLVER_DOMAINS)}")
    out = check_destination(args.out, (".pt",), force=args.force, name="--out")
    generator = generator_cls.from_checkpoint(checkpoint, device=args.device)
    found = generator.tune_grid(args.steps, solver=args.solver, samples=args.samples, teacher_steps=args.teacher_steps,
                                iterations=args.iterations, generator=torch.Generator().manual_seed(args.seed))
    # the input file with the grids added: weights, precision and every other metadata entry unchanged
    tuned = {**checkpoint, "metadata": {**(checkpoint.get("metadata") or {}), "tuned_grids": generator.tuned_grids}}
    path = write_atomically(lambda ckpt, dest: save_checkpoint(ckpt, dest), tuned, out)
    key = next(k for k, v in generator.tuned_grids.items() if v == found.times.tolist())
    print(f"tuned grid {key} of {where}: " + ", ".join(f"{t:.4g}" for t in found.times.tolist()))
    print(f"mean distance to the {args.teacher_steps}-step solution on {found.samples} noises: "
          f"{found.default_loss:.4g} (default grid) -> {found.loss:.4g} (tuned); {found.evaluations} grids, "
          f"{found.model_calls} model calls of {found.samples} samples, {found.seconds:.1f} s")
    print(f"wrote {path}; sample with grid='tuned', e.g. sciogen.load({str(path)!r}).sample(1000, steps={args.steps}, "
          f"solver={key.split('/')[0]!r}, grid='tuned')")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import yaml

    from sciogen.registry import model_card, read_checkpoint

    checkpoint, where = read_checkpoint(args.target)
    metadata = checkpoint.get("metadata") or {}
    steps = (checkpoint.get("trainer") or {}).get("step", metadata.get("trained_steps", "?"))
    if not isinstance(checkpoint.get("model"), dict):
        raise ValueError(f"{where} has no 'model' weights: not a checkpoint written by sciogen (or it was edited)")
    params = sum(v.numel() for v in checkpoint["model"].values() if hasattr(v, "numel"))
    print(f"model:           {where}")
    print(f"domain:          {checkpoint.get('domain')}")
    print(f"sciogen version: {checkpoint.get('sciogen_version')}")
    print(f"trained steps:   {steps}")
    print(f"parameters:      {params:,}")
    print(f"EMA weights:     {'yes' if checkpoint.get('ema') is not None else 'no'}")
    print(f"metadata:        {', '.join(_describe(k, v) for k, v in metadata.items()) or '-'}")
    print("config:")
    print("  " + yaml.safe_dump(checkpoint.get("config"), sort_keys=False).rstrip().replace("\n", "\n  "))
    card = model_card(args.target) if not Path(args.target).exists() else None
    if card:
        print("\n" + card.rstrip())
    return 0


def _describe(key: str, value: Any) -> str:
    return f"{key} {tuple(value.shape)}" if hasattr(value, "shape") else f"{key}={value}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from sciogen.registry import MissingExtraError, domains, get_domain

    specs = [get_domain(d) for d in args.domain] if args.domain else [s for s in domains() if s.demo]
    out, failed = Path(args.out), []
    for spec in specs:
        try:
            demo = spec.demo_function()
            if demo is None:
                print(f"[{spec.name}] has no demo")
                continue
            print(f"[{spec.name}] running demo ...")
            _print_table(demo(out / spec.name, quick=args.quick))
        except MissingExtraError as err:
            print(f"[{spec.name}] skipped: {err}")
        except Exception as err:  # noqa: BLE001 - one domain's failure must not hide the others' results
            if args.debug:
                raise
            print(f"[{spec.name}] failed: {type(err).__name__}: {err}", file=sys.stderr)
            failed.append(spec.name)
    print(f"outputs in {out}/")
    if failed:
        print(f"sciogen: error: the demo of {', '.join(failed)} failed (run with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    cells = [[_fmt(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- entry point ---------------------------------------------------------------------------------


def _dispatch(args: argparse.Namespace, rest: list[str], parser: argparse.ArgumentParser) -> int:
    if rest and args.command != "sample":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "sample":
        return _cmd_sample(args, rest, parser)
    handlers = {"train": _cmd_train, "evaluate": _cmd_evaluate, "list": _cmd_list, "info": _cmd_info,
                "demo": _cmd_demo, "export": _cmd_export, "conformers": _cmd_conformers, "tune-solver": _cmd_tune_solver}
    return handlers[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 on success)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        return _dispatch(args, rest, parser)
    except BrokenPipeError:  # e.g. `sciogen info ... | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:  # noqa: BLE001 - every error reaches the user as one line
        if args.debug:
            raise
        return _report(err, args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("sciogen: interrupted", file=sys.stderr)
        return 130
    finally:
        _shutdown()


def _report(err: Exception, args: argparse.Namespace) -> int:
    from sciogen.train.trainer import TrainingInterrupted

    if isinstance(err, TrainingInterrupted):
        print(f"sciogen: {err}", file=sys.stderr)
        if err.checkpoint is not None and args.command == "train":
            data = f" --data {args.data}" if getattr(args, "data", None) else ""
            print(f"resume with: sciogen train {args.config}{data} --resume" + (f" --run-dir {args.run_dir}" if args.run_dir else ""),
                  file=sys.stderr)
        return 128 + int(err.signum)
    message = str(err) or type(err).__name__
    known = isinstance(err, (ValueError, LookupError, OSError, ImportError, FloatingPointError))
    prefix = "" if known else f"{type(err).__name__}: "
    print(f"sciogen: error: {prefix}{message}", file=sys.stderr)
    if not known:
        print("(run with --debug for the traceback)", file=sys.stderr)
    return 1


def _shutdown() -> None:
    if "torch.distributed" in sys.modules:
        from sciogen.train import distributed

        distributed.shutdown()

