"""PARD's block decomposition: known answers and permutation equivariance."""

from __future__ import annotations

import csv
import random

import pytest
import torch

from sciogen.molecules.blocks import order_by_blocks, peel_blocks  # noqa: E402


def _edges(pairs):
    return torch.tensor(pairs, dtype=torch.long).T.reshape(2, -1)


def test_path_peels_from_the_ends():
    blocks = peel_blocks(_edges([(0, 1), (1, 2), (2, 3), (3, 4)]), 5)
    # ends first (degree 1), then their neighbours, the middle is the core (block 0)
    assert blocks.block_id.tolist() == [2, 1, 0, 1, 2]
    assert blocks.sizes.tolist() == [1, 2, 2] and blocks.degrees.tolist() == [0, 1, 1]
    assert blocks.order.tolist() == [2, 1, 3, 0, 4]


def test_star_and_isolated_nodes():
    blocks = peel_blocks(_edges([(0, 1), (0, 2), (0, 3)]), 5)  # node 4 isolated
    assert blocks.block_id.tolist() == [0, 1, 1, 1, 2]


def test_two_hop_breaks_degree_ties():
    # leaves 0, 3, 4 all have degree 1; 0 hangs on a degree-2 node, 3 and 4 on a degree-3 node
    e = _edges([(0, 1), (1, 2), (2, 3), (2, 4)])
    one_hop = peel_blocks(e, 5, hops=1)
    three_hop = peel_blocks(e, 5, hops=3)
    last = one_hop.block_id.max()
    assert (one_hop.block_id == last).nonzero().view(-1).tolist() == [0, 3, 4]
    last = three_hop.block_id.max()
    assert (three_hop.block_id == last).nonzero().view(-1).tolist() == [0]  # smaller 2-hop sum goes first


def _random_graph(rng: random.Random, n: int, p: float):
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < p]
    return _edges(pairs) if pairs else torch.zeros(2, 0, dtype=torch.long)


@pytest.mark.parametrize("weighting", ["pard", "lexicographic"])
def test_permutation_equivariance_random_graphs(weighting):
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 14)
        e = _random_graph(rng, n, rng.choice([0.15, 0.3, 0.6]))
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(rng.randint(0, 10**6)))
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n)
        # new node k is old node perm[k]: an old edge (i, j) becomes (inverse[i], inverse[j])
        a = peel_blocks(e, n, weighting=weighting)
        b = peel_blocks(inverse[e], n, weighting=weighting)
        assert torch.equal(b.block_id, a.block_id[perm])
        assert torch.equal(a.sizes, b.sizes) and torch.equal(a.degrees, b.degrees)


def test_permutation_equivariance_qm9(shared_datasets):
    from sciogen.molecules import MoleculeSpec

    with open(shared_datasets / "molecules" / "qm9" / "qm9_smiles.csv", newline="") as handle:
        smiles = [r["smiles"] for r in csv.DictReader(handle)]
    spec = MoleculeSpec.qm9()
    gen = torch.Generator().manual_seed(0)
    for s in random.Random(2).sample(smiles, 200):
        g = spec.to_graph(s, check=False)
        n = g.num_nodes
        perm = torch.randperm(n, generator=gen)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n)
        a, b = peel_blocks(g.edge_index, n), peel_blocks(inverse[g.edge_index], n)
        assert torch.equal(b.block_id, a.block_id[perm]), s


def test_order_by_blocks_layout():
    from sciogen.molecules import MoleculeSpec

    spec = MoleculeSpec.qm9()
    g = spec.to_graph("CC(C)CO")
    ordered = order_by_blocks(g)
    assert bool((ordered.block_index[1:] >= ordered.block_index[:-1]).all())
    assert int(ordered.block_sizes.sum()) == g.num_nodes
    assert spec.to_smiles(ordered) == spec.to_smiles(g)


def test_bad_arguments():
    with pytest.raises(ValueError, match="weighting='x'; allowed: pard, lexicographic"):
        peel_blocks(_edges([(0, 1)]), 2, weighting="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        peel_blocks(_edges([(0, 5)]), 2)
