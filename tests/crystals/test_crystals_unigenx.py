"""UniGenX crystals: sequence layout, round trips, augmentation, learning, grammar-bound sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sciogen.ar import SequenceSample  # noqa: E402
from sciogen.crystals.representation import CrystalSpec, CrystalTensors, to_tensors  # noqa: E402
from sciogen.crystals.unigenx import (  # noqa: E402
    BOS,
    COORD,
    EOS,
    NUM,
    PAD,
    CrystalTokenizer,
    build_unigenx,
    sample_unigenx,
    unigenx_loss,
)

PEROV_VAL = Path(__file__).resolve().parents[2] / "../shared/datasets/crystals/perov_5/val.csv"
SPEC = CrystalSpec((8, 22, 38), max_atoms=4)  # O, Ti, Sr
SCALE = 2.5


def _synthetic(m=6, seed=0) -> CrystalTensors:
    """Crystals of 2 and 4 atoms (padded to 4), element order deliberately unsorted."""
    g = torch.Generator().manual_seed(seed)
    types = torch.full((m, 4), -1, dtype=torch.long)
    num = torch.tensor([2 if i % 2 else 4 for i in range(m)])
    for i in range(m):
        types[i, : num[i]] = torch.randint(0, 3, (int(num[i]),), generator=g)
    types[0, :4] = torch.tensor([2, 0, 1, 0])  # Sr O Ti O: Z order is O O Ti Sr (ties by site)
    frac = torch.rand(m, 4, 3, generator=g) * (types >= 0)[..., None]
    lattice = torch.diag_embed(3.0 + 2.0 * torch.rand(m, 3, generator=g))
    lattice[:, 1, 0] = 0.5 * torch.rand(m, generator=g)  # a sheared b row, like a canonical cell
    return CrystalTensors(types, frac, lattice, num)


def _sorted_sites(t: CrystalTensors, spec: CrystalSpec, i: int) -> list[int]:
    """Sites of crystal i sorted by (Z, site), computed independently of the tokenizer."""
    sites = [j for j in range(t.types.shape[1]) if t.types[i, j] >= 0]
    return sorted(sites, key=lambda j: (spec.elements[int(t.types[i, j])], j))


def _periodic_close(a, b, atol):
    d = (a - b) - torch.round(a - b)
    return bool((d.abs() <= atol).all())


def _round_trip(t: CrystalTensors, spec: CrystalSpec):
    tok = CrystalTokenizer(spec)
    tokens, values, valid = tok.encode(t, SCALE)
    assert tokens.shape == (len(t), tok.max_len) == valid.shape and values.shape == (len(t), tok.max_len, 3)
    assert tok.max_len == 2 * spec.max_atoms + 6
    out = tok.decode(SequenceSample(tokens, values, valid), SCALE)
    assert bool(out["ok"].all())
    assert torch.equal(out["num_atoms"], t.num_atoms)
    for i in range(len(t)):
        k, sites = int(t.num_atoms[i]), _sorted_sites(t, spec, i)
        # layout: BOS, the elements in (Z, site) order, COORD, 3 + k NUM, EOS, PAD
        expect = [BOS] + [5 + int(t.types[i, j]) for j in sites] + [COORD] + [NUM] * (3 + k) + [EOS]
        expect += [PAD] * (tok.max_len - len(expect))
        assert tokens[i].tolist() == expect
        assert valid[i].tolist() == [j < 2 * k + 6 for j in range(tok.max_len)]
        assert out["types"][i, :k].tolist() == [int(t.types[i, j]) for j in sites]
        assert bool((out["types"][i, k:] == -1).all())
        assert _periodic_close(out["frac"][i, :k], t.frac[i, sites], 1e-5)
        assert torch.allclose(out["lattice"][i], t.lattice[i], atol=1e-4, rtol=0)
    assert bool(((out["frac"] >= 0) & (out["frac"] < 1)).all())


def test_round_trip_perov5():
    if not PEROV_VAL.is_file():
        pytest.skip(f"Perov-5 is not at {PEROV_VAL.resolve()} (the shared datasets folder beside the repository)")
    from sciogen.crystals.io import read_cdvae_csv

    structs = read_cdvae_csv(PEROV_VAL, limit=20).structures
    t = to_tensors(structs, CrystalSpec.infer(structs))
    assert len(t) == 20
    _round_trip(t, CrystalSpec.infer(structs))


def test_round_trip_synthetic_padding():
    t = _synthetic()
    assert set(t.num_atoms.tolist()) == {2, 4}
    _round_trip(t, SPEC)
    # a batch padded wider than needed and a crystal smaller than max_atoms
    wide = CrystalSpec(SPEC.elements, max_atoms=6)
    _round_trip(t, wide)


def test_augmentation_is_a_periodic_translation():
    t = _synthetic()
    tok = CrystalTokenizer(SPEC)
    plain = tok.decode(SequenceSample(*tok.encode(t, SCALE)), SCALE)
    g = torch.Generator().manual_seed(3)
    aug = tok.decode(SequenceSample(*tok.encode(t, SCALE, generator=g, augment=True)), SCALE)
    assert torch.equal(aug["types"], plain["types"]) and bool(aug["ok"].all())
    assert torch.allclose(aug["lattice"], plain["lattice"], atol=1e-5)
    assert bool(((aug["frac"] >= 0) & (aug["frac"] < 1)).all())
    moved = False
    for i in range(len(t)):
        k = int(t.num_atoms[i])
        a, p = aug["frac"][i, :k], plain["frac"][i, :k]
        assert _periodic_close(a[:, None] - a[None], p[:, None] - p[None], 1e-5)  # pairwise differences mod 1
        shift = a - p
        assert _periodic_close(shift, shift[:1].expand_as(shift), 1e-5)  # one shift per crystal
        moved |= not _periodic_close(a, p, 1e-3)
    assert moved


def test_encode_rejects_inconsistent_batches():
    t = _synthetic()
    tok = CrystalTokenizer(SPEC)
    bad = CrystalTensors(t.types, t.frac, t.lattice, t.num_atoms + 1)
    with pytest.raises(ValueError, match="num_atoms"):
        tok.encode(bad, SCALE)
    with pytest.raises(ValueError, match="max_atoms"):
        CrystalTokenizer(CrystalSpec(SPEC.elements, max_atoms=3)).encode(t, SCALE)


def test_decode_flags_broken_sequences():
    t = _synthetic(m=3)
    tok = CrystalTokenizer(SPEC)
    tokens, values, valid = tok.encode(t, SCALE)
    k = int(t.num_atoms[0])
    tokens[0, 2 * k + 5] = NUM  # no EOS
    tokens[1, 1] = COORD  # no element before COORD
    out = tok.decode(SequenceSample(tokens, values, valid), SCALE)
    assert out["ok"].tolist() == [False, False, True]
    assert out["num_atoms"][:2].tolist() == [0, 0] and bool((out["types"][:2] == -1).all())
    assert bool(torch.isnan(out["lattice"][:2]).all()) and bool(torch.isfinite(out["lattice"][2]).all())


def _tiny(seed=0, spec=SPEC):
    torch.manual_seed(seed)
    return build_unigenx(spec, dim=32, depth=1, heads=2, head_width=32, head_depth=2)


def test_loss_decreases_on_a_tiny_overfit():
    t = _synthetic(m=8)
    tok = CrystalTokenizer(SPEC)
    model = _tiny()
    batch = {"types": t.types, "frac": t.frac, "lattice": t.lattice, "num_atoms": t.num_atoms}

    def held_out():  # same noise each time, no augmentation: (total, value part)
        with torch.no_grad():
            total = unigenx_loss(model, tok, batch, SCALE, torch.Generator().manual_seed(99), augment=False)[0]
            tokens, values, valid = tok.encode(batch, SCALE)
            parts = model.loss(tokens, values, valid=valid, generator=torch.Generator().manual_seed(99))
            assert torch.allclose(total, parts["loss"])  # the trimmed padding changes nothing
        return float(total), float(parts["value_loss"])

    before, before_values = held_out()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(60):
        loss = unigenx_loss(model, tok, batch, SCALE, g, augment=False)
        assert loss.shape == (8,) and bool(torch.isfinite(loss).all())
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    after, after_values = held_out()
    assert after < 0.6 * before, (before, after)
    assert after_values < 0.8 * before_values, (before_values, after_values)  # the diffusion head learns too


def _check_crystals(out, n):
    assert out["types"].shape == (n, SPEC.max_atoms) and out["frac"].shape == (n, SPEC.max_atoms, 3)
    assert bool(out["ok"].all())
    assert torch.equal(out["num_atoms"], (out["types"] >= 0).sum(1))
    assert bool((out["num_atoms"] >= 1).all()) and bool((out["num_atoms"] <= SPEC.max_atoms).all())
    assert bool(((out["frac"] >= 0) & (out["frac"] < 1)).all())
    assert bool(torch.isfinite(out["lattice"]).all())


def test_csp_sampling_keeps_the_composition():
    model, tok = _tiny().eval(), CrystalTokenizer(SPEC)
    types = torch.tensor([[2, 0, 1, 0], [1, 1, -1, -1], [0, -1, -1, -1]])
    out = sample_unigenx(model, tok, 3, SCALE, types=types, steps=3, generator=torch.Generator().manual_seed(0))
    _check_crystals(out, 3)
    assert torch.equal(out["types"], types)  # same sites, in the given order
    narrow = torch.tensor([[2, 0], [1, 1], [0, -1]])  # fewer columns than max_atoms
    out = sample_unigenx(model, tok, 3, SCALE, types=narrow, steps=3, generator=torch.Generator().manual_seed(0))
    _check_crystals(out, 3)
    assert out["num_atoms"].tolist() == [2, 2, 1] and torch.equal(out["types"][:, :2], narrow)


def test_de_novo_sampling_obeys_the_grammar_and_seed():
    model, tok = _tiny(seed=1).eval(), CrystalTokenizer(SPEC)
    free = sample_unigenx(model, tok, 6, SCALE, steps=3, generator=torch.Generator().manual_seed(0))
    _check_crystals(free, 6)
    again = sample_unigenx(model, tok, 6, SCALE, steps=3, generator=torch.Generator().manual_seed(0))
    for key in free:
        assert torch.equal(free[key], again[key])
    other = sample_unigenx(model, tok, 6, SCALE, steps=3, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(free["frac"], other["frac"])

    probs = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])
    sized = sample_unigenx(model, tok, 5, SCALE, atom_count_probs=probs, steps=3, generator=torch.Generator().manual_seed(2))
    _check_crystals(sized, 5)
    assert sized["num_atoms"].tolist() == [3] * 5
    only_o = sample_unigenx(model, tok, 5, SCALE, steps=3, allowed_types=torch.tensor([True, False, False]),
                            generator=torch.Generator().manual_seed(2))
    assert bool((only_o["types"] <= 0).all())


def test_sampling_rejects_bad_options():
    model, tok = _tiny(), CrystalTokenizer(SPEC)
    with pytest.raises(ValueError, match="atom_count_probs"):
        sample_unigenx(model, tok, 2, SCALE, atom_count_probs=torch.ones(3))
    with pytest.raises(ValueError, match="count 0"):
        sample_unigenx(model, tok, 2, SCALE, atom_count_probs=torch.ones(5))
    with pytest.raises(ValueError, match="rows"):
        sample_unigenx(model, tok, 2, SCALE, types=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="allowed_types"):
        sample_unigenx(model, tok, 2, SCALE, allowed_types=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="does not fit"):
        sample_unigenx(model, CrystalTokenizer(CrystalSpec(SPEC.elements, max_atoms=8)), 2, SCALE)
