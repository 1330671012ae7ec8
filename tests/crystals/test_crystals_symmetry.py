"""Space groups on request (sciogen.crystals.symmetry): Wyckoff positions against ITA, the projection's
symmetry (invariance under every operation, idempotence, nearness), template choice, and sampling with
the shipped Perov-5 model at a few steps."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from sciogen.crystals.symmetry import (
    SpaceGroupError,
    SymmetryProjector,
    WyckoffTemplate,
    _assignments,
    choose_templates,
    detect_space_group,
    parse_wyckoff,
    space_group,
    space_group_distance,
    space_group_distribution,
    space_group_rate,
    wyckoff_templates,
)


def _perovskite(a=3.9, shift=0.0, axis=2, elements=("Sr", "Ti", "O", "O", "O")):
    """Cubic ABX3 (A at the corner: 1a, B at the centre: 1b, X at the face centres: 3c); ``shift``
    moves B along ``axis`` (P4mm)."""
    b = [0.5, 0.5, 0.5]
    b[axis] += shift
    return Structure(Lattice.cubic(a), list(elements), [[0, 0, 0], b, [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


# -- groups and Wyckoff positions ----------------------------------------------------------------------


def test_wyckoff_positions_of_pm3m_match_the_international_tables():
    g = space_group(221)
    assert g.symbol == "Pm-3m" and g.crystal_system == "cubic" and g.centring == "P"
    assert [p.label for p in g.positions] == ["1a", "1b", "3c", "3d", "6e", "6f", "8g", "12h", "12i", "12j", "24k",
                                              "24l", "24m", "48n"]
    assert [p.dof for p in g.positions] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 3]
    assert g.position("1b").coordinates == "(1/2,1/2,1/2)" and g.position("c").label == "3c"
    cell = g.cell()
    assert [cell.multiplicity(p.label) for p in g.positions] == [p.multiplicity for p in g.positions]


@pytest.mark.parametrize("number, count", [(1, 1), (2, 9), (25, 9), (47, 27), (99, 7), (123, 21), (166, 9),
                                           (194, 12), (225, 12), (227, 9), (229, 12)])
def test_number_of_wyckoff_positions(number, count):
    assert len(space_group(number).positions) == count


def test_centred_groups_sample_in_a_primitive_cell():
    g = space_group("Fm-3m")
    assert g.number == 225 and g.centring == "F" and len(g.rotations) == 192
    cell = g.cell()
    assert len(cell.rotations) == 48 and abs(np.linalg.det(cell.basis)) == pytest.approx(0.25)
    assert cell.multiplicity("4a") == 1 and cell.multiplicity("8c") == 2 and cell.multiplicity("192l") == 48
    assert "[1 per primitive cell]" in g.describe()
    conventional = g.cell(np.eye(3))
    assert conventional.multiplicity("4a") == 4 and len(conventional.rotations) == 192
    with pytest.raises(SpaceGroupError, match="not a cell of the group"):
        g.cell([[1, 0, 0], [0, 1, 0], [0, 0.3, 1]])
    with pytest.raises(SpaceGroupError, match="determinant"):
        g.cell(np.eye(3) * 2)


def test_space_group_lookup_and_errors():
    assert space_group("P4/mmm").number == 123 and space_group("221").number == 221
    assert space_group("P2_1/c").number == 14 and space_group("P21/c").number == 14
    with pytest.raises(SpaceGroupError, match="did you mean Pm-3m"):
        space_group("Pm3m")
    with pytest.raises(SpaceGroupError, match="1 to 230"):
        space_group(231)
    with pytest.raises(SpaceGroupError, match="not a number"):
        space_group(2.5)
    with pytest.raises(SpaceGroupError, match="has no Wyckoff position '7z'"):
        space_group(221).position("7z")


def test_parse_wyckoff():
    assert parse_wyckoff("3c 1b, 1a", 221) == ("1a", "1b", "3c")
    assert parse_wyckoff(["a", "a", "c"], 99) == ("1a", "1a", "2c")  # (0,0,z) may hold several orbits
    with pytest.raises(SpaceGroupError, match="1a .*one orbit only"):
        parse_wyckoff("1a 1a 3c", 221)
    with pytest.raises(SpaceGroupError, match="empty"):
        parse_wyckoff("", 221)


# -- the projection ----------------------------------------------------------------------------------------


def _invariance_error(cell, frac: np.ndarray, species: np.ndarray) -> float:
    """Largest distance (fractional) from an operation's image of an atom to the nearest atom of its species."""
    worst = 0.0
    for rot, trans in zip(cell.rotations, cell.translations):
        image = (frac @ rot.T + trans) % 1.0
        for z in set(species.tolist()):
            d = image[species == z][:, None] - frac[species == z][None]
            worst = max(worst, float(np.abs(d - np.round(d)).max(-1).min(1).max()))
    return worst


@pytest.mark.parametrize("number, labels", [
    (221, ("1a", "3c", "48n")), (225, ("4a", "24e", "192l")), (166, ("3a", "18h", "36i")), (194, ("2c", "6h", "24l")),
    (12, ("2a", "4i", "8j")), (92, ("4a", "8b")), (2, ("1a", "2i")), (99, ("1a", "2c", "8g")), (15, ("4e", "8f")),
])
def test_projection_gives_the_groups_symmetry(number, labels):
    torch.manual_seed(number)
    template = WyckoffTemplate(number, labels)
    projector = SymmetryProjector([template, WyckoffTemplate(221, ("1a", "1b", "3c"))])
    n = projector.mask.shape[1]
    frac, lattice = torch.rand(2, n, 3, dtype=torch.float64), torch.randn(2, 3, 3, dtype=torch.float64)
    f, lat = projector.frac(frac), projector.lattice(lattice)
    # idempotent, padding untouched
    assert torch.allclose(projector.frac(f), f, atol=1e-9) and torch.allclose(projector.lattice(lat), lat, atol=1e-9)
    k = template.num_atoms
    assert torch.equal(f[0, k:], frac[0, k:])
    species = np.repeat(np.arange(len(labels)), [template.cell.multiplicity(x) for x in labels])
    assert _invariance_error(template.cell, f[0, :k].numpy(), species) < 1e-9
    gram = (lat[0] @ lat[0].T).numpy()
    for rot in template.cell.point_group:
        assert np.allclose(rot.T @ gram @ rot, gram, atol=1e-9)
    # a right-handed cell of these coordinates is in exactly this group (two general orbits break accidents)
    L = lat[0].numpy() * np.sign(np.linalg.det(lat[0].numpy()))
    structure = Structure(Lattice(L / abs(np.linalg.det(L)) ** (1 / 3) * 3 * k ** (1 / 3)),
                          [int(z) + 11 for z in species], f[0, :k].numpy())
    assert detect_space_group(structure, symprec=1e-3)[0] == number


def test_projection_moves_a_nearly_symmetric_crystal_only_a_little():
    """Atoms near a cell face (wrap-around), with small noise: projected back onto the noise-free crystal."""
    template = WyckoffTemplate(99, ("1a", "1b", "2c"))
    projector = SymmetryProjector([template])
    clean = projector.frac(torch.tensor([[[0.0, 0.0, 0.999], [0.5, 0.5, 0.001], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]]],
                                        dtype=torch.float64))
    torch.manual_seed(0)
    noisy = torch.remainder(clean + 0.01 * torch.randn_like(clean), 1.0)
    d = projector.frac(noisy) - clean
    assert float((d - torch.round(d)).abs().max()) < 0.03
    # the in-plane coordinates are exact, the z of each single-atom orbit is free
    assert float((clean[0, :, :2] - torch.tensor([[0, 0], [0.5, 0.5], [0, 0.5], [0.5, 0]])).abs().max()) < 1e-12


def test_lattice_projection_keeps_a_symmetric_lattice_and_its_orientation():
    cubic = WyckoffTemplate(221, ("1a",))
    hexagonal = WyckoffTemplate(191, ("1a",))
    projector = SymmetryProjector([cubic, hexagonal])
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0]
    already = torch.stack([4.0 * rotation, torch.tensor(Lattice.hexagonal(3.0, 5.0).matrix) @ rotation])
    assert torch.allclose(projector.lattice(already), already, atol=1e-9)
    bent = torch.stack([torch.tensor(Lattice.from_parameters(3.9, 4.0, 4.1, 88, 91, 90).matrix),
                        torch.tensor(Lattice.from_parameters(3.0, 3.1, 5.0, 90, 91, 118).matrix)])
    out = [Lattice(x.numpy()) for x in projector.lattice(bent)]
    assert np.allclose(out[0].angles, 90) and np.ptp(out[0].abc) < 1e-9
    assert np.allclose(out[1].angles, (90, 90, 120)) and abs(out[1].a - out[1].b) < 1e-9


def test_types_one_element_per_class_and_distinct_classes():
    template = WyckoffTemplate(221, ("1a", "1b", "3c"), classes=(0, 1, 2))
    projector = SymmetryProjector([template])
    types = torch.tensor([[5, 5, 7, 8, 9]])
    tied = projector.types(types)
    assert tied.tolist() == [[5, 5, 7, 7, 7]]
    logits = torch.zeros(1, 5, 10)
    logits[0, :, 5] = 10.0  # everyone prefers 5; classes 1 and 2 must take something else
    logits[0, :, 3] = 5.0
    out = projector.distinct(tied, logits, torch.Generator().manual_seed(0))
    first, second, third = (int(x) for x in out[0, :3])
    assert first == 5 and len({first, second, third}) == 3 and out[0, 2:].tolist() == [third] * 3
    free = SymmetryProjector([WyckoffTemplate(221, ("1a", "1b", "3c"))])  # no classes: clashes allowed
    assert torch.equal(free.distinct(tied, logits), tied)
    # orbit-averaged log-probabilities: one distribution per class
    avg = projector.type_logits(torch.randn(1, 5, 10))
    assert torch.allclose(avg[0, 2], avg[0, 4]) and not torch.allclose(avg[0, 0], avg[0, 1])


# -- templates ---------------------------------------------------------------------------------------------


def test_assignment_counts_match_a_brute_force_enumeration():
    g = space_group(99)  # P4mm: 1a, 1b, 2c (z free, any number of orbits), 4d-4f, 8g
    cell = g.cell()
    for n in range(1, 9):
        mults = [cell.multiplicity(p.label) for p in g.positions]
        brute = sum(1 for ks in itertools.product(*[range(n // m + 1) for m in mults])
                    if sum(k * m for k, m in zip(ks, mults)) == n)
        assert _assignments(99).count((n,)) == brute
    assert _assignments(221).count((5,)) == 2  # 1a 1b 3c, 1a 1b 3d
    assert _assignments(221).count((1, 1, 3)) == 4  # Sr / Ti on 1a / 1b, O on 3c / 3d


def test_choose_templates_de_novo_csp_and_errors():
    rng = np.random.default_rng(0)
    counts = np.array([0, 0, 0, 0, 0, 1.0])
    out = choose_templates(221, 20, rng, atom_counts=counts)
    assert {t.labels for t in out} == {("1a", "1b", "3c"), ("1a", "1b", "3d")}
    csp = choose_templates(221, 8, rng, compositions=[[38, 22, 8, 8, 8]] * 8)
    for t in csp:
        assert Counter(z for z, label in zip(t.elements, t.labels) for _ in range(t.cell.multiplicity(label))) == \
            Counter({8: 3, 38: 1, 22: 1})
        assert t.elements[t.labels.index(next(x for x in t.labels if x.startswith("3")))] == 8
    with pytest.raises(SpaceGroupError, match=r"P4/mbm \(127\) fits composition SrTiO3 \(5 atoms\).*2, 4, 8, 16"):
        choose_templates(127, 1, rng, compositions=[[38, 22, 8, 8, 8]])
    with pytest.raises(SpaceGroupError, match="any atom count the model draws"):
        choose_templates(127, 1, rng, atom_counts=counts)
    with pytest.raises(SpaceGroupError, match="does not fit the Wyckoff template 1a 3c"):
        choose_templates(221, 1, rng, compositions=[[38, 22, 8, 8, 8]], wyckoff="1a 3c")
    with pytest.raises(SpaceGroupError, match="at most 4"):
        choose_templates(221, 1, rng, atom_counts=counts, wyckoff="1a 1b 3c", max_atoms=4)
    a = choose_templates(47, 5, np.random.default_rng(3), atom_counts=counts)
    b = choose_templates(47, 5, np.random.default_rng(3), atom_counts=counts)
    assert a == b


def test_templates_of_reference_crystals_keep_their_cell_and_element_classes():
    cubic = _perovskite()
    polar_x = _perovskite(shift=0.08, axis=0)  # P4mm with the polar axis along a
    counts = wyckoff_templates([cubic, cubic, polar_x, None])
    assert counts[(221, (("1a",), ("1b",), ("3c",)), space_group(221).default_basis)] == 2
    (key, n), = [(k, v) for k, v in counts.items() if k[0] == 99]
    assert n == 1 and sorted(len(c) for c in key[1]) == [1, 1, 2]  # Sr, Ti, O on 1b + 2c
    basis = np.array(key[2])
    assert not np.allclose(basis, np.eye(3)) and np.allclose(np.abs(basis).sum(0), 1)  # an axis permutation
    rng = np.random.default_rng(0)
    denovo = choose_templates(99, 3, rng, atom_counts=[0, 0, 0, 0, 0, 1], prior=counts)
    assert all(t.basis == key[2] and t.classes is not None and len(set(t.classes)) == 3 for t in denovo)
    csp = choose_templates(99, 3, rng, compositions=[[56, 22, 8, 8, 8]] * 3, prior=counts)
    assert all(t.basis == key[2] and dict(zip(t.labels, t.elements)).get("2c") == 8 for t in csp)
    # a composition the prior's classes do not fit falls back to every assignment
    other = choose_templates(99, 2, rng, compositions=[[56, 22, 8, 7, 7]] * 2, prior=counts)
    assert all(t.basis is None for t in other)


# -- checks --------------------------------------------------------------------------------------------------


def test_space_group_rate_distribution_and_distance():
    cubic, polar = _perovskite(), _perovskite(shift=0.1)
    assert detect_space_group(cubic) == (221, "Pm-3m") and detect_space_group(polar)[0] == 99
    assert detect_space_group(None) is None
    samples = [cubic, polar, cubic, None]
    assert space_group_rate(samples, 221) == 0.5 and space_group_rate(samples, "P4mm") == 0.25
    dist = space_group_distribution(samples)
    assert dist == {99: pytest.approx(1 / 3), 221: pytest.approx(2 / 3)}
    assert space_group_distance(samples, samples) == 0.0
    assert space_group_distance({221: 1.0}, {99: 1.0}) == 1.0
    assert space_group_distance(dist, [cubic]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no structures"):
        space_group_rate([], 221)
    with pytest.raises(ValueError, match="none of the 1 structures"):
        space_group_distribution([None])


# -- sampling with the shipped model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def perov5():
    import sciogen

    torch.set_num_threads(1)
    return sciogen.load("crystals/perov5")


def test_shipped_model_samples_in_the_requested_group(perov5):
    out = perov5.sample(4, composition="SrTiO3", space_group=221, steps=20, seed=0)
    assert space_group_rate(out, 221) == 1.0
    assert out.requested["space_group"] == [221] * 4 and all(t.startswith(("Sr:1", "Ti:1")) for t in out.templates)
    de_novo = perov5.sample(4, space_group="P4/mmm", wyckoff="1a 1c 1d 2e", steps=10, seed=1)
    cell = space_group(123).cell()
    for s in de_novo:  # atoms come orbit by orbit: 1a, 1c, 1d, 2e; every operation of P4/mmm maps the crystal onto itself
        assert s is not None and len(s) == 5 and detect_space_group(s) is not None
        classes = np.array([0, 1, 2, 3, 3])
        assert _invariance_error(cell, np.asarray(s.frac_coords), classes) < 1e-5
        assert len({s[3].specie, s[4].specie}) == 1
    again = perov5.sample(4, space_group="P4/mmm", wyckoff="1a 1c 1d 2e", steps=10, seed=1)
    assert [s.frac_coords.tolist() for s in again] == [s.frac_coords.tolist() for s in de_novo]


def test_shipped_model_space_group_errors(perov5):
    with pytest.raises(SpaceGroupError, match="P4/mbm"):
        perov5.sample(2, space_group=127, steps=2)
    with pytest.raises(SpaceGroupError, match="composition SrTiO3"):
        perov5.sample(2, composition="SrTiO3", space_group=127, steps=2)
    with pytest.raises(ValueError, match="give space_group= too"):
        perov5.sample(2, wyckoff="1a 1b 3c", steps=2)
    with pytest.raises(ValueError, match="space_group: 1 groups for n=2"):
        perov5.sample(2, space_group=[221], steps=2)
    with pytest.raises(SpaceGroupError, match="at most 5"):
        perov5.sample(1, space_group=221, wyckoff="1a 1b 3c 3d", steps=2)
