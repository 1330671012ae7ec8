"""RDKit Mol <-> graph: round trips on QM9 / MOSES, vocabulary, dense batches, bad input."""

from __future__ import annotations

import csv
import random

import pytest
import torch
from rdkit import Chem  # noqa: E402

from sciogen.molecules import (  # noqa: E402
    AtomType,
    MoleculeSpec,
    MoleculeTooLargeError,
    SmilesParseError,
    UnknownAtomTypeError,
    UnrepresentableMoleculeError,
    canonical_smiles,
    from_dense,
    to_dense,
)


def _qm9_smiles(shared_datasets) -> list[str]:
    with open(shared_datasets / "molecules" / "qm9" / "qm9_smiles.csv", newline="") as handle:
        return [r["smiles"] for r in csv.DictReader(handle)]


def _round_trip_failures(spec: MoleculeSpec, smiles: list[str]) -> list[tuple[str, str]]:
    bad = []
    for s in smiles:
        back = spec.to_smiles(spec.to_graph(s))
        if back != canonical_smiles(s):
            bad.append((s, back))
    return bad


def test_qm9_round_trip_seeded_subset(shared_datasets):
    smiles = random.Random(0).sample(_qm9_smiles(shared_datasets), 5000)
    assert _round_trip_failures(MoleculeSpec.qm9(), smiles) == []


def test_qm9_round_trip_every_charged_molecule(shared_datasets):
    charged = [s for s in _qm9_smiles(shared_datasets) if any(a.GetFormalCharge() for a in Chem.MolFromSmiles(s).GetAtoms())]
    assert len(charged) == 580  # includes nitro groups written O=N(=O)..., charged by RDKit's sanitizer
    assert _round_trip_failures(MoleculeSpec.qm9(), charged) == []
    assert _round_trip_failures(MoleculeSpec.qm9(explicit_hydrogens=True), charged[::5]) == []


def test_qm9_round_trip_explicit_hydrogens_subset(shared_datasets):
    smiles = random.Random(1).sample(_qm9_smiles(shared_datasets), 300)
    spec = MoleculeSpec.qm9(explicit_hydrogens=True)
    assert _round_trip_failures(spec, smiles) == []
    g = spec.to_graph("C")
    assert [spec.atom_types[i] for i in g.x.tolist()] == ["C", "H", "H", "H", "H"]


@pytest.mark.slow
def test_qm9_round_trip_full(shared_datasets):
    smiles = _qm9_smiles(shared_datasets)
    assert len(smiles) == 130_831
    assert _round_trip_failures(MoleculeSpec.qm9(), smiles) == []


@pytest.mark.parametrize("bonds", ["kekulize", "aromatic"])
def test_moses_round_trip_subset(shared_datasets, bonds):
    import gzip

    with gzip.open(shared_datasets / "molecules" / "moses" / "test.csv.gz", "rt") as handle:
        smiles = [r["SMILES"] for r in csv.DictReader(handle)][:200]
    assert _round_trip_failures(MoleculeSpec.moses(bonds), smiles) == []


def test_graph_layout():
    spec = MoleculeSpec.qm9()
    g = spec.to_graph("C=CC#N")
    assert g.x.tolist() == [0, 0, 0, 1]
    assert g.edge_index.shape == (2, 6) and g.edge_attr.tolist() == [2, 2, 1, 1, 3, 3]
    assert g.edge_index.tolist() == [[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]
    aromatic = MoleculeSpec(("C", "N", "[nH]"), bonds="aromatic")
    g = aromatic.to_graph("c1cc[nH]c1")
    assert 4 in g.edge_attr.tolist() and aromatic.atom_types[g.x[3]] == "[nH]"
    assert aromatic.to_smiles(g) == "c1cc[nH]c1"


@pytest.mark.parametrize("token,parsed", [
    ("C", AtomType("C")), ("Cl", AtomType("Cl")), ("[N+]", AtomType("N", 1)), ("[O-]", AtomType("O", -1)),
    ("[nH]", AtomType("N", 0, 1)), ("[N+2]", AtomType("N", 2)), ("[nH+]", AtomType("N", 1, 1)),
])
def test_atom_type_tokens(token, parsed):
    assert AtomType.parse(token) == parsed
    assert AtomType.parse(parsed.token) == parsed


def test_spec_dict_round_trip_and_validation():
    spec = MoleculeSpec.moses("aromatic")
    assert MoleculeSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="bonds='nope'; allowed: kekulize, aromatic"):
        MoleculeSpec(("C",), bonds="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs 'H'"):
        MoleculeSpec(("C",), explicit_hydrogens=True)
    inferred = MoleculeSpec.infer(["CCO", "C[NH3+]", "CC(=O)[O-]"])
    assert inferred.atom_types == ("C", "O", "[N+]", "[O-]") and inferred.max_atoms == 4


def test_bad_input_errors_name_the_item():
    spec = MoleculeSpec.qm9()
    with pytest.raises(SmilesParseError, match=r"molecule 7 \('C1CC'\)"):
        spec.to_graph("C1CC", index=7)
    with pytest.raises(UnknownAtomTypeError, match=r"molecule 3 \('CCCl'\): atom 2 has type 'Cl', not in the vocabulary"):
        spec.to_graph("CCCl", index=3)
    with pytest.raises(MoleculeTooLargeError, match=r"has 10 heavy atoms, more than max_atoms=9"):
        spec.to_graph("CCCCCCCCCC", index=0)
    with pytest.raises(UnrepresentableMoleculeError, match="atom 0"):
        MoleculeSpec(("C",)).to_graph("[CH3]")  # a radical: its hydrogens are not implied
    with pytest.raises(SmilesParseError):
        spec.to_graphs(["CC", ""])


def test_dense_round_trip():
    spec = MoleculeSpec.qm9()
    graphs = spec.to_graphs(["CCO", "C1=CC=CN1", "C[NH3+]"])
    X, E, mask = to_dense(graphs)
    assert X.shape == (3, 5) and E.shape == (3, 5, 5) and mask.sum().item() == 10
    assert torch.equal(E, E.transpose(1, 2))
    back = from_dense(X, E, mask)
    assert [spec.to_smiles(g) for g in back] == [spec.to_smiles(g) for g in graphs]


def test_to_mol_rejects_invalid_graph():
    spec = MoleculeSpec.qm9()
    g = spec.to_graph("CCO")
    g.edge_attr = torch.full_like(g.edge_attr, 3)  # O with two triple bonds
    with pytest.raises(ValueError, match="not a valid molecule"):
        spec.to_mol(g)
    assert Chem.MolToSmiles(spec.to_mol(g, sanitize=False))
