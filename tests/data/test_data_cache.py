"""The content-hashed tensor cache: keys, round trip, concurrent writers, unreadable files rebuilt."""

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from sciogen.data.cache import TensorCache, content_key


def test_content_key_hashes_the_parts_in_order():
    parts = ["spec", b"\x00\x01", "structure é"]
    expected = hashlib.sha256(b"spec\x00\x01" + "structure é".encode()).hexdigest()
    assert content_key(parts) == expected[:24]
    assert content_key(iter(parts), length=64) == expected
    assert content_key("spec") == hashlib.sha256(b"spec").hexdigest()[:24]
    assert content_key(["a", "b"]) != content_key(["b", "a"])


def test_round_trip_and_build_once(tmp_path):
    cache = TensorCache("domain", "tensors", root=tmp_path)
    calls = []

    def build():
        calls.append(1)
        return {"x": torch.arange(5), "reasons": [(2, "bad cell")], "n": 3}

    first = cache.get("k1", build)
    second = cache.get("k1", build)
    assert len(calls) == 1
    assert torch.equal(second["x"], torch.arange(5)) and second["reasons"] == [(2, "bad cell")] and second["n"] == 3
    assert first.keys() == second.keys()
    assert cache.path("k1") == tmp_path / "domain" / "tensors" / "k1.pt"
    assert cache.load("missing") is None
    assert [p.name for p in cache.folder.iterdir()] == ["k1.pt"]  # no temporary file left


def test_the_dataset_cache_is_the_default_root(sciogen_cache):
    assert TensorCache("crystals", "tensors").folder == sciogen_cache / "crystals" / "tensors"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_a_dict"])
def test_an_unreadable_file_is_rebuilt_with_a_message(tmp_path, capsys, damage):
    cache = TensorCache("t", root=tmp_path)
    path = cache.save("key", {"x": torch.randn(1000)})
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a torch file")
    else:
        torch.save([1, 2, 3], path)
    assert cache.load("key") is None
    err = capsys.readouterr().err
    assert f"the cached file {path} cannot be read" in err and "building it again" in err
    rebuilt = cache.get("key", lambda: {"x": torch.ones(3)})
    assert torch.equal(rebuilt["x"], torch.ones(3)) and "building it again" in capsys.readouterr().err
    assert torch.equal(cache.load("key")["x"], torch.ones(3))  # the damaged file was replaced
    assert capsys.readouterr().err == ""


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    cache = TensorCache("t", root=tmp_path)
    with pytest.raises(Exception):
        cache.save("key", {"f": lambda: None})  # torch cannot pickle a lambda
    assert list(cache.folder.iterdir()) == []


def test_threads_writing_the_same_key_never_expose_a_partial_file(tmp_path):
    """Every writer has its own temporary name: with one shared ``.part`` name, a writer
    renames the file another is still writing, or finds it gone (FileNotFoundError)."""
    cache = TensorCache("t", root=tmp_path)
    values = {i: torch.full((20_000,), float(i)) for i in range(6)}
    errors, seen = [], []

    def writer(i):
        try:
            for _ in range(15):
                cache.save("same", {"x": values[i]})
        except Exception as err:  # pragma: no cover - the failure this test is about
            errors.append(err)

    def reader():
        for _ in range(60):
            stored = cache.load("same")
            if stored is not None:
                seen.append(float(stored["x"][0]) if bool((stored["x"] == stored["x"][0]).all()) else None)

    threads = [threading.Thread(target=writer, args=(i,)) for i in values] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert None not in seen  # no mixture of two writers' data
    assert float(cache.load("same")["x"][0]) in values
    assert [p.name for p in cache.folder.iterdir()] == ["same.pt"]


_CHILD = """
import sys, torch
from sciogen.data.cache import TensorCache
cache = TensorCache("t", root=sys.argv[1])
for i in range(25):
    cache.save("same", {"x": torch.full((50_000,), float(sys.argv[2])), "i": i})
    stored = cache.load("same")
    assert stored is not None and stored["x"].shape == (50_000,), stored
print("ok")
"""


def test_two_processes_writing_the_same_key(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), str(v)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for v in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok" and "cannot be read" not in err, err
    stored = TensorCache("t", root=tmp_path).load("same")
    assert float(stored["x"][0]) in (1.0, 2.0) and stored["i"] == 24
    assert sorted(p.name for p in Path(tmp_path, "t").iterdir()) == ["same.pt"]
