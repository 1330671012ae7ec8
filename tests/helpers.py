"""Statistics and test files used by several tests."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Szekely's energy distance between two samples (n, d) and (m, d)."""
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def energy_test_pvalue(x: torch.Tensor, y: torch.Tensor, permutations: int = 200, seed: int = 0) -> float:
    """Permutation p-value of the two-sample energy test (H0: same distribution)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.cat([x, y]).double()
    d = torch.cdist(z, z)
    n = x.shape[0]

    def stat(idx):
        a, b = idx[:n], idx[n:]
        return 2 * d[a][:, b].mean() - d[a][:, a].mean() - d[b][:, b].mean()

    observed = stat(torch.arange(z.shape[0]))
    count = sum(bool(stat(torch.randperm(z.shape[0], generator=g)) >= observed) for _ in range(permutations))
    return (count + 1) / (permutations + 1)


def write_dicom_series(folder: Path, arr_zyx: np.ndarray, series_uid: str, spacing: Sequence[float],
                       origin: Sequence[float] = (0.0, 0.0, 0.0),
                       direction: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)) -> None:
    """A DICOM series, one file per slice, with the tags GDCM needs to rebuild the geometry (SimpleITK)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(arr_zyx.astype(np.int16))
    img.SetSpacing(tuple(spacing))
    img.SetOrigin(tuple(origin))
    img.SetDirection(tuple(direction))
    d = direction
    orientation = "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetDepth()):
        slice_k = img[:, :, k]
        for tag, value in (
            ("0008|0060", "CT"),
            ("0020|000d", series_uid + ".1"),  # study
            ("0020|000e", series_uid),
            ("0008|0018", f"{series_uid}.{k + 10}"),  # SOP instance
            ("0020|0037", orientation),
            ("0020|0032", "\\".join(str(v) for v in img.TransformIndexToPhysicalPoint((0, 0, k)))),
            ("0020|0013", str(k + 1)),
        ):
            slice_k.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid.replace('.', '_')}_{k:03d}.dcm"))
        writer.Execute(slice_k)


def run_sciogen(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900):
    """``python -m sciogen ARGS`` in a subprocess from ``cwd``, as a user runs it from the shell.

    Returns the CompletedProcess (text output captured); checks nothing, so a test can assert
    on the exit code and on what was printed. One thread, no progress bars (not a terminal).
    """
    import os
    import subprocess
    import sys

    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sciogen", *map(str, args)], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def execute_notebook(notebook: Path, work: Path, timeout: int = 900) -> tuple[str, int]:
    """Run ``notebook`` top to bottom with ``work`` (created) as its folder, as a user runs it from a
    folder outside the repository; fails on any cell error. Skips without nbformat, nbclient or
    matplotlib. Returns the text the cells printed and how many PNG images they showed."""
    import pytest

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    work.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(notebook, as_version=4)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{notebook.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    return "".join(o.get("text", "") for o in outputs), sum("image/png" in o.get("data", {}) for o in outputs)
