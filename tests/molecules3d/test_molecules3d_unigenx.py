"""UniGenX for 3D molecules: SMILES + aligned coordinates, the grammar, a small overfit run, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem, rdMolAlign

from sciogen.ar import SequenceSample
from sciogen.molecules.representation import (
    MoleculeTooLargeError,
    SmilesParseError,
    UnknownAtomTypeError,
    UnrepresentableMoleculeError,
    canonical_smiles,
)
from sciogen.molecules3d.representation import NoConformerError, heavy_smiles
from sciogen.molecules3d.unigenx import (
    BOS,
    COORD,
    EOS,
    NUM,
    MoleculeGrammar,
    MoleculeTokenizer,
    UnknownTokenError,
    build_unigenx_molecules,
    canonical_frame,
    dataset_mols,
    random_rotations,
    sample_conformers,
    sample_molecules_unigenx,
    token_element,
    unigenx_molecule_loss,
)


def _embedded(smiles: str, seed: int = 0) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


def _tiny(tok: MoleculeTokenizer, seed: int = 0):
    torch.manual_seed(seed)
    return build_unigenx_molecules(tok, dim=32, depth=1, heads=2, head_width=32, head_depth=1)


@pytest.fixture
def qm9_50(qm9_1000):
    mols, skipped = dataset_mols(qm9_1000, range(50))
    assert not skipped
    return qm9_1000, mols


def test_tokenizer_round_trip_aligns_atoms_and_coordinates(qm9_50):
    ds, mols = qm9_50
    tok = MoleculeTokenizer.from_mols(mols)
    assert tok.elements[:2] == ("H", "C") and set(tok.elements) <= {"H", "C", "N", "O", "F"}
    seqs = tok.encode(mols)
    decoded = tok.decode(seqs)
    for i, (mol, row) in enumerate(zip(mols, decoded)):
        # the Mol carries the dataset's molecule (bonds from its SMILES) and every hydrogen
        assert mol.GetNumAtoms() == int(ds.mask[i].sum())
        assert heavy_smiles(mol) == canonical_smiles(ds.smiles[i])
        # SMILES -> tokens -> SMILES
        smiles, order = tok.smiles_of(mol)
        tokens = tok.tokenize(smiles)
        assert "".join(tokens) == smiles == seqs.smiles[i] == row["smiles"]
        assert [tok.token_string(t) for t in tok.ids(tokens)] == tokens
        assert row["ok"] and row["mol"] is not None
        assert heavy_smiles(row["mol"]) == canonical_smiles(ds.smiles[i])
        # atom token k <-> Mol atom order[k]: same element in the original, the token and the decoded Mol
        original = [mol.GetAtomWithIdx(a).GetSymbol() for a in order]
        assert [token_element(t) for t in tokens if t.startswith("[") or t.isalpha()] == original
        assert [a.GetSymbol() for a in row["mol"].GetAtoms()] == original
        # ... and the same coordinates, up to the frame's rotation: all interatomic distances agree
        xyz = mol.GetConformer().GetPositions()[order]
        got = row["positions"]
        assert got.shape == xyz.shape
        d_ref = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        d_got = np.linalg.norm(got[:, None] - got[None], axis=-1)
        np.testing.assert_allclose(d_got, d_ref, atol=2e-5)
        # the layout: BOS, SMILES, COORD, one NUM per atom token, EOS
        n_tok, n_atoms = len(tokens), len(order)
        row_tokens = seqs.tokens[i, : n_tok + n_atoms + 3].tolist()
        assert row_tokens[0] == BOS and row_tokens[n_tok + 1] == COORD and row_tokens[-1] == EOS
        assert row_tokens[n_tok + 2 : -1] == [NUM] * n_atoms
        assert int(seqs.valid[i].sum()) == n_tok + n_atoms + 3
    # principal-axes frame: centred, uncorrelated axes, largest variance first
    got = decoded[0]["positions"]
    cov = got.T @ got
    np.testing.assert_allclose(got.mean(0), 0, atol=1e-5)
    assert abs(cov[0, 1]) < 1e-4 and abs(cov[0, 2]) < 1e-4 and abs(cov[1, 2]) < 1e-4
    assert cov[0, 0] >= cov[1, 1] >= cov[2, 2]
    # the tokenizer survives a dict round trip
    again = MoleculeTokenizer.from_dict(tok.to_dict())
    assert torch.equal(again.encode(mols[:5]).tokens, seqs.tokens[:5])


def test_heavy_atom_tokenizer(qm9_50):
    _, mols = qm9_50
    tok = MoleculeTokenizer.from_mols(mols[:10], hydrogens=False)
    assert "[H]" not in tok.tokens and "H" not in tok.elements
    row = tok.decode(tok.encode(mols[:10]))[3]
    heavy = Chem.RemoveHs(mols[3])
    assert row["mol"].GetNumAtoms() == heavy.GetNumAtoms()
    assert rdMolAlign.GetBestRMS(Chem.Mol(row["mol"]), heavy) < 1e-3


def test_canonical_frame_is_invariant_to_rotations_and_translations(qm9_50):
    _, mols = qm9_50
    rots = random_rotations(10, torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    np.testing.assert_allclose(rots @ rots.transpose(0, 2, 1), np.eye(3)[None].repeat(10, 0), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rots), 1.0, atol=1e-12)
    for mol, rot in zip(mols[:10], rots):
        x = mol.GetConformer().GetPositions()
        ref = canonical_frame(x)
        moved = canonical_frame(x @ rot + np.array([3.0, -1.0, 2.0]))
        np.testing.assert_allclose(moved, ref, atol=1e-6)
        # a mirror image stays a mirror image (the frame is a proper rotation): its third axis flips
        mirror = canonical_frame(x * np.array([1.0, -1.0, 1.0]))
        np.testing.assert_allclose(mirror, ref * np.array([1.0, 1.0, -1.0]), atol=1e-6)


def test_grammar_keeps_random_logits_within_the_layout():
    tokens = ["#", "(", ")", "-", "1", "2", "3", "=", "C", "N", "O", "[H]", "c", "n", ".", "[N+]", "/"]
    g = torch.Generator().manual_seed(0)
    for max_len, max_atoms in [(5, None), (7, 2), (9, None), (12, 3), (20, 6), (40, None)]:
        tok = MoleculeTokenizer(tokens, max_len=max_len, max_atoms=max_atoms)
        grammar = MoleculeGrammar(tok)
        b = 150
        buf = torch.zeros(b, max_len, dtype=torch.long)
        buf[:, 0] = BOS
        for i in range(1, max_len):
            logits = grammar(i, 3 * torch.randn(b, tok.vocab_size, generator=g), buf[:, :i])
            assert bool(torch.isfinite(logits.max(1).values).all()), f"no token allowed at {i} (max_len {max_len})"
            buf[:, i] = torch.multinomial(torch.softmax(logits, 1), 1, generator=g)[:, 0]
        valid = torch.cumsum((buf == EOS).long(), 1) - (buf == EOS).long() == 0
        assert bool((buf == EOS).any(1).all()), "every sequence ends within max_len"
        rows = tok.decode(SequenceSample(buf, torch.zeros(b, max_len, 3), valid))
        for row in rows:
            assert row["ok"]
            assert max_atoms is None or len(row["positions"]) <= max_atoms
            RDLogger.DisableLog("rdApp.*")
            assert Chem.MolFromSmiles(row["smiles"], sanitize=False) is not None, row["smiles"]
            RDLogger.EnableLog("rdApp.*")


def test_random_weight_samples_parse_and_are_seeded(qm9_50):
    _, mols = qm9_50
    tok = MoleculeTokenizer.from_mols(mols)
    model = _tiny(tok)
    out = sample_molecules_unigenx(model, tok, 24, steps=2, generator=torch.Generator().manual_seed(3))
    assert len(out["mols"]) == len(out["smiles"]) == 24
    for i, smiles in enumerate(out["smiles"]):
        n_atoms = len(tok.element_indices(smiles))
        assert int(out["mask"][i].sum()) == n_atoms >= 1
        RDLogger.DisableLog("rdApp.*")
        assert Chem.MolFromSmiles(smiles, sanitize=False) is not None, smiles
        RDLogger.EnableLog("rdApp.*")
        if out["mols"][i] is not None:
            assert out["mols"][i].GetNumAtoms() == n_atoms
            np.testing.assert_allclose(out["mols"][i].GetConformer().GetPositions(), out["positions"][i, :n_atoms].numpy(), atol=1e-5)
    assert bool(torch.isfinite(out["positions"]).all())
    again = sample_molecules_unigenx(model, tok, 24, steps=2, generator=torch.Generator().manual_seed(3))
    assert again["smiles"] == out["smiles"] and torch.equal(again["positions"], out["positions"])


def test_overfit_conformers_beat_an_untrained_model(qm9_1000):
    small = [i for i, s in enumerate(qm9_1000.smiles) if 4 <= Chem.MolFromSmiles(s).GetNumAtoms() <= 6][:8]
    assert len(small) == 8
    mols, _ = dataset_mols(qm9_1000, small)
    tok = MoleculeTokenizer.from_mols(mols)
    data = tok.encode(mols).tensors()
    torch.manual_seed(0)
    model = build_unigenx_molecules(tok, dim=64, depth=2, heads=4, head_width=64, head_depth=2)

    def mean_rmsd(model, n=6):
        out = []
        for k, mol in enumerate(mols):
            smiles = qm9_1000.smiles[small[k]]
            confs = sample_conformers(model, tok, smiles, n, steps=10, generator=torch.Generator().manual_seed(k))
            assert confs.GetNumConformers() == n and confs.GetNumAtoms() == mol.GetNumAtoms()
            assert heavy_smiles(confs) == canonical_smiles(smiles)  # bonds from the SMILES, not perceived
            ref = Chem.RemoveHs(mol)
            out += [rdMolAlign.GetBestRMS(Chem.RemoveHs(Chem.Mol(confs, confId=c)), ref) for c in range(n)]
        return float(np.mean(out))

    untrained = mean_rmsd(model)
    # random coordinates with QM9's spread (1.4 Å per component), as a second floor
    rng = np.random.default_rng(0)
    noise = []
    for mol in mols:
        probe = Chem.RemoveHs(mol)
        conf = probe.GetConformer()
        for _ in range(6):
            for a, p in enumerate(rng.normal(0, 1.4, (probe.GetNumAtoms(), 3))):
                conf.SetAtomPosition(a, p.tolist())
            noise.append(rdMolAlign.GetBestRMS(Chem.Mol(probe), Chem.RemoveHs(mol)))

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(250):
        loss = unigenx_molecule_loss(model, tok, data, generator=g)
        assert loss.shape == (8,)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(loss.mean().item())
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:3]), (losses[:3], losses[-10:])
    trained = mean_rmsd(model)
    # measured: untrained ~1.45 Å, random coordinates ~1.3 Å, trained ~0.2 Å
    assert trained < 0.5, (trained, untrained)
    assert trained < 0.4 * untrained and trained < 0.4 * float(np.mean(noise)), (trained, untrained, np.mean(noise))


def test_errors_name_the_problem():
    tok = MoleculeTokenizer.from_mols([_embedded("CCO"), _embedded("CC=O"), _embedded("CN")])
    assert "#" not in tok.tokens and "1" not in tok.tokens
    model = _tiny(tok)
    with pytest.raises(SmilesParseError, match="C1CC"):
        sample_conformers(model, tok, "C1CC", 2)
    with pytest.raises(UnknownAtomTypeError, match="'Cl'.*element Cl"):
        sample_conformers(model, tok, "CCCl", 2)
    with pytest.raises(UnknownTokenError, match="'#'"):
        sample_conformers(model, tok, "CC#N", 2)
    with pytest.raises(UnknownTokenError, match="'1'"):
        sample_conformers(model, tok, "C1CC1", 2)
    with pytest.raises(MoleculeTooLargeError, match=f"max_len={tok.max_len}"):
        sample_conformers(model, tok, "CCCCCCCCCC", 2)
    with pytest.raises(UnrepresentableMoleculeError, match="stereochemistry"):
        sample_conformers(model, tok, "C[C@H](N)O", 2)
    with pytest.raises(UnrepresentableMoleculeError, match="Chem.AddHs"):
        tok.encode([Chem.RemoveHs(_embedded("CCO"))])
    with pytest.raises(NoConformerError, match="no conformer"):
        tok.encode([Chem.AddHs(Chem.MolFromSmiles("CCO"))])
    with pytest.raises(MoleculeTooLargeError, match="max_len"):
        tok.encode([_embedded("CCCCCC")])
    with pytest.raises(SmilesParseError, match="'\\?' at offset 1"):
        tok.tokenize("C?C")
    with pytest.raises(ValueError, match="frame"):
        MoleculeTokenizer(["C"], max_len=10, frame="pca")
    other = MoleculeTokenizer.from_mols([_embedded("C#N")])
    with pytest.raises(ValueError, match="does not fit the tokenizer"):
        sample_molecules_unigenx(model, other, 2, steps=1)
    # what is allowed works: conformers of a molecule the model can spell, in the SMILES's atom order + Hs
    confs = sample_conformers(model, tok, "OCC", 3, steps=2, generator=torch.Generator().manual_seed(0))
    assert confs.GetNumConformers() == 3 and confs.GetNumAtoms() == 9 and confs.GetProp("_Name") == "OCC"


def test_random_frame_rotates_each_molecule_in_training(qm9_50):
    _, mols = qm9_50
    tok = MoleculeTokenizer.from_mols(mols[:6], frame="random")
    tokens, values, valid = tok.encode(mols[:6]).tensors()
    model = _tiny(tok)
    seen = {}
    loss = model.loss

    def spy(t, v, **kw):
        seen["values"] = v
        return loss(t, v, **kw)

    model.loss = spy
    unigenx_molecule_loss(model, tok, (tokens, values, valid), generator=torch.Generator().manual_seed(0))
    end = seen["values"].shape[1]
    for i in range(6):
        num = tokens[i, :end] == NUM
        before, after = values[i, :end][num], seen["values"][i][num]
        assert (after - before).abs().max() > 0.1  # rotated ...
        torch.testing.assert_close(torch.cdist(after, after), torch.cdist(before, before), atol=1e-5, rtol=0)  # ... rigidly
    unigenx_molecule_loss(model, tok, (tokens, values, valid), augment=False)
    torch.testing.assert_close(seen["values"], values[:, :end])
