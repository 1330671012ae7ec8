"""Sampling refuses bad counts before any work, and Ctrl-C keeps what was finished."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sciogen
from sciogen.cli import main
from sciogen.toy import VectorGenerator
from sciogen.train.checks import finite_array, positive_int
from sciogen.train.generator import SamplingInterrupted


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be >= 1 (an integer), got 0"),
    ({"n": 2.5}, "n must be >= 1 (an integer), got 2.5"),
    ({"n": 4, "steps": 0}, "steps must be >= 1 (an integer), got 0"),
    ({"n": 4, "batch_size": -5}, "batch_size must be >= 1 (an integer), got -5"),
    ({"n": True}, "n must be >= 1 (an integer), got True"),
])
def test_sample_names_a_bad_count_instead_of_falling_back_to_a_default(kwargs, message):
    gen = sciogen.load("toy/gmm", device="cpu")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gen.sample(**kwargs, seed=0)


def test_checks_refuse_complex_infinite_and_non_numeric_input():
    assert positive_int("steps", 3.0) == 3
    with pytest.raises(ValueError, match="complex numbers"):
        finite_array("context", np.array([1 + 2j, 3]))
    with pytest.raises(ValueError, match=r"infinities: inf at index 2"):
        finite_array("context", [1.0, 2.0, np.inf])
    with pytest.raises(ValueError, match=r"must hold numbers"):
        finite_array("context", ["1", "x"])
    assert torch.isnan(finite_array("context", [1.0, np.nan], allow_nan=True)[1])
    with pytest.raises(ValueError, match=r"missing values \(NaN\) and infinities: nan at index \(1, 0\)"):
        finite_array("context", [[1.0], [np.nan]])


def _interrupt_at(chunk: int, monkeypatch) -> None:
    real = VectorGenerator._sample_chunk

    def chunk_or_stop(self, index, *args):
        if index == chunk:
            raise KeyboardInterrupt
        return real(self, index, *args)

    monkeypatch.setattr(VectorGenerator, "_sample_chunk", chunk_or_stop)


def test_ctrl_c_during_sampling_keeps_the_finished_chunks(monkeypatch):
    gen = sciogen.load("toy/gmm", device="cpu")
    full = gen.sample(50, seed=3, batch_size=10, steps=5)
    _interrupt_at(2, monkeypatch)
    with pytest.raises(SamplingInterrupted) as stop:
        gen.sample(50, seed=3, batch_size=10, steps=5)
    assert (stop.value.done, stop.value.n) == (20, 50)
    torch.testing.assert_close(stop.value.samples, full[:20])  # the same samples an uninterrupted run gives


def test_ctrl_c_during_sciogen_sample_writes_what_is_finished(tmp_path, monkeypatch, capsys):
    _interrupt_at(3, monkeypatch)
    out = tmp_path / "s.csv"
    code = main(["sample", "toy/gmm", "-n", "40", "--batch-size", "10", "--steps", "5", "--out", str(out)])
    assert code == 130
    assert "interrupted; wrote the 30 of 40 samples finished" in capsys.readouterr().err
    assert len(np.loadtxt(out, delimiter=",", skiprows=1, ndmin=2)) == 30


def _no_sampling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("sampling ran although --out was refused")

    monkeypatch.setattr(VectorGenerator, "sample", refuse)


def test_out_is_checked_before_sampling(tmp_path, monkeypatch, capsys):
    existing = tmp_path / "s.csv"
    existing.write_text("keep me\n")
    (tmp_path / "link.csv").symlink_to(existing)
    _no_sampling(monkeypatch)
    cases = [
        (existing, "already exists; pass --force"),
        (tmp_path / "s.xyz", "unknown output format '.xyz'; use a file ending in .csv, .npy, .pt"),
        (tmp_path / "link.csv", "is a symbolic link"),
        (tmp_path / "missing" / "s.csv", "the folder"),
    ]
    for out, message in cases:
        assert main(["sample", "toy/gmm", "-n", "4", "--out", str(out)]) == 1
        assert message in capsys.readouterr().err
    assert existing.read_text() == "keep me\n"
    assert main(["sample", "toy/gmm", "-n", "4", "--out", str(tmp_path / "link.csv"), "--force"]) == 1


def test_force_replaces_only_once_the_new_file_is_complete(tmp_path, monkeypatch):
    from sciogen.data.output import write_atomically

    out = tmp_path / "s.csv"
    out.write_text("old\n")
    assert main(["sample", "toy/gmm", "-n", "4", "--out", str(out), "--force"]) == 0
    assert len(np.loadtxt(out, delimiter=",", skiprows=1, ndmin=2)) == 4

    def broken_writer(samples, path):
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(broken_writer, None, out)
    assert len(np.loadtxt(out, delimiter=",", skiprows=1, ndmin=2)) == 4  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]  # and no partial file is left


def test_a_folder_output_replaces_a_folder_atomically(tmp_path):
    from sciogen.data.output import write_atomically

    def writer(samples, path):
        path.mkdir()
        for i in range(samples):
            (path / f"{i}.txt").write_text(str(i))
        return path

    out = tmp_path / "hits"
    write_atomically(writer, 3, out)
    write_atomically(writer, 2, out)
    assert sorted(p.name for p in out.iterdir()) == ["0.txt", "1.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hits"]


# -- progress on long work (issue 22, item 10) -------------------------------------------------


def test_progress_bars_follow_the_terminal_unless_told(monkeypatch):
    import io

    from sciogen.train.progress import show_progress

    monkeypatch.delenv("CI", raising=False)
    tty = io.StringIO()
    tty.isatty = lambda: True
    monkeypatch.setattr("sys.stderr", tty)
    assert show_progress(None) and not show_progress(False)
    monkeypatch.setenv("CI", "true")
    assert not show_progress(None) and show_progress(True)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a pipe or a log file
    monkeypatch.delenv("CI")
    assert not show_progress(None)


def test_long_data_preparation_says_so_first(capsys):
    from sciogen.train.progress import preparing

    assert list(preparing(iter(range(5)), 5, "things", notice_from=10)) == list(range(5))
    assert capsys.readouterr().err == ""
    assert list(preparing(iter(range(50)), 50, "qm9 molecules as graphs", notice_from=10)) == list(range(50))
    assert "sciogen: preparing 50 qm9 molecules as graphs" in capsys.readouterr().err


def test_the_qm9_graph_conversion_announces_itself(capsys, monkeypatch):
    pytest.importorskip("rdkit")
    pytest.importorskip("torch_geometric")
    import sciogen.train.progress as progress
    from sciogen.molecules.datasets import _build
    from sciogen.molecules.representation import MoleculeSpec

    real = progress.preparing
    monkeypatch.setattr(progress, "preparing", lambda items, total, what: real(items, total, what, notice_from=2))
    data = _build("qm9", "train", MoleculeSpec.qm9(), ["CCO", "c1ccccc1", "CC#N"], [1, 2, 3], None, (), "raise",
                  "qm9", True)
    assert len(data) == 3
    assert "sciogen: preparing 3 qm9 molecules as graphs" in capsys.readouterr().err


def test_per_sample_conditions_are_sliced_by_chunk_in_the_base_class(monkeypatch):
    """A domain names its per-sample conditions; every chunk gets its own rows (issue 23)."""
    gen = sciogen.load("toy/gmm", device="cpu")
    seen = []

    def record(self, model, n, *, generator, steps, solver, rows=None):
        seen.append(list(rows))
        return torch.zeros(n, 2)

    monkeypatch.setattr(VectorGenerator, "per_sample_conditions", ("rows",))
    monkeypatch.setattr(VectorGenerator, "sample_batch", record)
    gen.sample(7, seed=0, batch_size=3, steps=2, rows=list(range(7)))
    assert seen == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="rows has 5 rows for n=7"):
        gen.sample(7, seed=0, batch_size=3, steps=2, rows=list(range(5)))
