"""UniGenX for 3D molecules: one causal sequence of SMILES tokens followed by one xyz per atom.

UniGenX (Zhang et al. 2025, "UniGenX: Unified generation of sequence and structure with
autoregressive diffusion") writes a molecule as one sequence and generates it token by token
with :class:`~sciogen.ar.TokenAR`: discrete tokens by a softmax head, numbers by a per-token
diffusion head conditioned on the previous hidden state. A molecule of A atoms whose SMILES
has T tokens, A of them atoms, is (then PAD up to ``max_len``)::

    position   0     1 .. T            T + 1     T + 2 .. T + A + 1       T + A + 2
    token      BOS   SMILES tokens     COORD     NUM x A                  EOS
    value      -     -                 -         xyz of atom token 1..A   -

- The SMILES is RDKit's canonical SMILES of the Mol *with its hydrogens as atoms*
  (``Chem.AddHs``), so every hydrogen is an ``[H]`` atom token with its own coordinates;
  ``_smilesAtomOutputOrder`` maps the k-th atom token to the Mol's atom, and coordinate
  vector k belongs to it (UniGenX's alignment of positions to atom tokens). Stereo marks
  are left out unless the tokenizer is ``isomeric`` (QM9's SMILES carry none; the
  coordinates decide the stereo).
- Tokens: the regex SMILES tokenizer of Schwaller et al. 2019 (bracket atoms, two-letter
  organic atoms, bonds, branches, ring labels), the vocabulary built from training SMILES.
- Coordinates in Å, centred at the atoms' centroid, divided by ``scale`` (default 1.5 Å:
  QM9's coordinates in this frame have a per-component standard deviation of 1.39 Å, so
  the values have about the unit variance of the head's starting noise).
- Frame (``frame=``): ``"inertia"`` (default) rotates each molecule into its principal
  axes (largest variance first, each axis signed by the third moment of the atoms along
  it, right-handed, so chirality is kept). A molecule then has one pose, the one its
  SMILES implies, so the model spends no capacity on learning rotations; near-degenerate
  axes (symmetric tops) leave some rotation, which the model learns as a spread.
  ``"random"``: the centred frame with a uniform random rotation at every training step
  (augmentation); no canonical pose, the model must learn the rotation-invariant
  conditionals from data, which needs more training.

Tasks: de novo (prompt BOS; :class:`MoleculeGrammar` keeps every generated sequence in the
layout above and the SMILES syntactically sound) and conformer generation from a given
SMILES (its tokens and COORD forced, the model writes the coordinates).

    >>> import torch
    >>> from rdkit import Chem
    >>> from rdkit.Chem import AllChem
    >>> mol = Chem.AddHs(Chem.MolFromSmiles("CCO")); _ = AllChem.EmbedMolecule(mol, randomSeed=0)
    >>> tok = MoleculeTokenizer.from_mols([mol])
    >>> tok.smiles_of(mol)[0]
    '[H]OC([H])([H])C([H])([H])[H]'
    >>> model = build_unigenx_molecules(tok, dim=32, depth=1, heads=2, head_width=32, head_depth=1)
    >>> confs = sample_conformers(model, tok, "OCC", 3, steps=2, generator=torch.Generator().manual_seed(0))
    >>> confs.GetNumConformers(), confs.GetNumAtoms()
    (3, 9)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from rdkit import Chem

from sciogen.ar.annealing import StepAnnealing
from sciogen.ar.token_head import SequenceSample, TokenAR, TokenARConfig
from sciogen.config import check_choice
from sciogen.molecules.io import Skipped
from sciogen.molecules.representation import (
    MoleculeError,
    MoleculeTooLargeError,
    UnknownAtomTypeError,
    UnrepresentableMoleculeError,
    parse_smiles,
)

from .representation import NoConformerError, arrays_to_mol

__all__ = [
    "SMILES_REGEX",
    "FRAMES",
    "UnknownTokenError",
    "MoleculeSequences",
    "MoleculeTokenizer",
    "MoleculeGrammar",
    "token_element",
    "canonical_frame",
    "random_rotations",
    "dataset_mols",
    "build_unigenx_molecules",
    "unigenx_molecule_loss",
    "sample_molecules_unigenx",
    "sample_conformers",
]

#: ids of the special tokens; SMILES token i of the vocabulary is ``FIRST_TOKEN + i``
PAD, BOS, EOS, COORD, NUM = 0, 1, 2, 3, 4
FIRST_TOKEN = 5
SPECIALS = ("<pad>", "<bos>", "<eos>", "<coord>", "<num>")
FRAMES = ("inertia", "random")

#: SMILES tokens (Schwaller et al. 2019, "Molecular Transformer"), narrowed to what a molecule's
#: SMILES holds: bracket atoms, organic-subset atoms, ``*``, bonds, branches, ring labels, ``.``
SMILES_REGEX = r"\[[^\]]+\]|Br|Cl|[BCNOSPFI]|[bcnops]|\*|[-=#$:/\\~]|\(|\)|%[0-9]{2}|[0-9]|\."
_TOKEN = re.compile(SMILES_REGEX)
_BRACKET_ELEMENT = re.compile(r"^\[[0-9]*(Cl|Br|[A-Z][a-z]?|se|as|te|[bcnops]|\*)")

# token classes (the grammar's alphabet)
_SPECIAL, _ATOM, _BOND, _OPEN, _CLOSE, _RING, _DOT, _COORD, _NUM, _EOS = range(10)
# the previous token, as the grammar remembers it (_BOND_B: a bond right after "(")
_NONE, _BOND_B = 10, 11


class UnknownTokenError(MoleculeError):
    """A SMILES token (a bond, ring label, charged or stereo atom...) outside the tokenizer's vocabulary."""


def _token_class(token: str) -> int:
    if token.startswith("[") or token in ("Br", "Cl", "*") or (len(token) == 1 and token in "BCNOSPFIbcnops"):
        return _ATOM
    if token in ("-", "=", "#", "$", ":", "/", "\\", "~"):
        return _BOND
    if token == "(":
        return _OPEN
    if token == ")":
        return _CLOSE
    if token == ".":
        return _DOT
    if token.isdigit() or token.startswith("%"):
        return _RING
    raise ValueError(f"{token!r} is not a SMILES token")


def token_element(token: str) -> str:
    """The element symbol of an atom token (``"c"`` -> C, ``"[nH]"`` -> N, ``"[C@@]"`` -> C, ``"[H]"`` -> H)."""
    if token.startswith("["):
        match = _BRACKET_ELEMENT.match(token)
        if match is None:
            raise ValueError(f"{token!r} is not a bracket atom")
        symbol = match.group(1)
    elif _token_class(token) == _ATOM:
        symbol = token
    else:
        raise ValueError(f"{token!r} is not an atom token")
    return symbol.capitalize() if symbol.islower() else symbol


@dataclass
class MoleculeSequences:
    """UniGenX sequences of molecules.

    Attributes:
        tokens: (M, L) long, the layout of the module docstring, PAD after EOS.
        values: (M, L, 3) float, at NUM positions the atom's coordinates in Å / ``scale``
            (0 elsewhere).
        valid: (M, L) bool, True through EOS.
        smiles: the explicit-hydrogen SMILES each sequence spells.
        order: for each molecule, the Mol atom index of atom token k (``_smilesAtomOutputOrder``).
    """

    tokens: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor
    smiles: list[str]
    order: list[list[int]]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(tokens, values, valid)``, e.g. for a ``TensorDataset`` whose batches go to :func:`unigenx_molecule_loss`."""
        return self.tokens, self.values, self.valid


# -- frames -----------------------------------------------------------------------------------


def canonical_frame(positions: np.ndarray | torch.Tensor) -> np.ndarray:
    """Coordinates in the molecule's principal-axes frame (``frame="inertia"``).

    Centred at the centroid of the atoms (unweighted), rotated so that axis k is the k-th
    principal axis (largest variance first); axes 1 and 2 point where the third moment of
    the atoms along them is positive; axis 3 = axis 1 x axis 2 (a proper rotation: chirality
    is kept).

    Shapes: positions (A, 3) Å -> (A, 3) float64 Å.
    """
    x = np.asarray(torch.as_tensor(positions).detach().cpu(), dtype=np.float64).reshape(-1, 3)
    x = x - x.mean(0)
    if x.shape[0] < 2:
        return x
    _, vectors = np.linalg.eigh(x.T @ x)
    axes = vectors[:, ::-1].copy()
    scale = max(float(np.abs(x).max()), 1e-12)
    for k in range(2):
        skew = float(((x @ axes[:, k]) ** 3).sum())
        if skew < -1e-9 * scale**3:
            axes[:, k] *= -1.0
    axes[:, 2] = np.cross(axes[:, 0], axes[:, 1])
    return x @ axes


def random_rotations(n: int, generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` rotation matrices drawn uniformly from SO(3) (unit quaternions from a normal draw).

    Shapes: -> (n, 3, 3); rotate row vectors by ``x @ R``.
    """
    gdev = generator.device if generator is not None else torch.device("cpu")
    q = torch.randn(n, 4, generator=generator, device=gdev, dtype=torch.float64).to(device or gdev)
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(1)
    rot = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=1).view(n, 3, 3)
    return rot.to(dtype)


# -- tokenizer --------------------------------------------------------------------------------


class MoleculeTokenizer:
    """Molecules (RDKit Mols with a 3D conformer) <-> UniGenX sequences (layout in the module docstring).

    Build it from training molecules with :meth:`from_mols`; save it with :meth:`to_dict`.

    Args:
        tokens: the SMILES tokens of the vocabulary (ids ``FIRST_TOKEN ..`` in this order).
        max_len: the longest sequence (BOS .. EOS).
        max_atoms: the most atoms a de novo sample may have (None: only ``max_len`` limits).
        scale: coordinates are stored in units of ``scale`` Å.
        frame: ``"inertia"`` or ``"random"`` (module docstring).
        isomeric: write stereo marks (from the 3D geometry) into the SMILES.
        hydrogens: hydrogens are atoms with coordinates (``[H]`` tokens); False: they are
            left out (heavy atoms only, implicit hydrogens in the SMILES).

    Attributes:
        vocab_size: ``5 + len(tokens)`` (PAD, BOS, EOS, COORD, NUM, the SMILES tokens).
        elements: the element symbols of the atom tokens, by atomic number.
    """

    pad, bos, eos, coord, num = PAD, BOS, EOS, COORD, NUM

    def __init__(self, tokens: Sequence[str], *, max_len: int, max_atoms: int | None = None, scale: float = 1.5,
                 frame: Literal["inertia", "random"] = "inertia", isomeric: bool = False, hydrogens: bool = True):
        check_choice("frame", frame, FRAMES)
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (Å), got {scale}")
        tokens = [str(t) for t in tokens]
        if len(set(tokens)) != len(tokens):
            raise ValueError("the SMILES tokens of a vocabulary must be distinct")
        classes = []
        for t in tokens:
            try:
                classes.append(_token_class(t))
            except ValueError:
                raise ValueError(f"{t!r} is not a SMILES token ({SMILES_REGEX})") from None
        if _ATOM not in classes:
            raise ValueError("the vocabulary has no atom token")
        if max_len < 5:
            raise ValueError(f"max_len={max_len}; the shortest sequence (one atom) has 5 positions")
        if max_atoms is not None and max_atoms < 1:
            raise ValueError(f"max_atoms={max_atoms}; give a positive number or None")
        self.tokens = tokens
        self.max_len = int(max_len)
        self.max_atoms = None if max_atoms is None else int(max_atoms)
        self.scale = float(scale)
        self.frame = frame
        self.isomeric = bool(isomeric)
        self.hydrogens = bool(hydrogens)
        self.vocab_size = FIRST_TOKEN + len(tokens)
        self._ids = {t: FIRST_TOKEN + i for i, t in enumerate(tokens)}
        self._classes = classes
        z = {e: Chem.GetPeriodicTable().GetAtomicNumber(e) if e != "*" else 0
             for e in {token_element(t) for t, c in zip(tokens, classes) if c == _ATOM}}
        self.elements = tuple(sorted(z, key=lambda e: (z[e], e)))

    # -- construction, persistence -----------------------------------------------------

    @classmethod
    def from_mols(cls, mols: Sequence["Chem.Mol"], *, max_len: int | None = None, max_atoms: int | None = None,
                  **options: Any) -> "MoleculeTokenizer":
        """The vocabulary of the SMILES of ``mols`` (sorted tokens); ``max_len`` and ``max_atoms``
        default to the longest sequence and the largest molecule among them.

        ``options``: ``scale``, ``frame``, ``isomeric``, ``hydrogens`` (see the class).

        Raises:
            MoleculeError: a Mol that cannot be written (its index named), e.g. hydrogens
                without coordinates where ``hydrogens`` is True.
        """
        probe = cls(["C"], max_len=5, **options)
        seen, longest, largest = set(), 5, 1
        for i, mol in enumerate(mols):
            smiles, order = probe.smiles_of(mol, index=i)
            toks = probe.tokenize(smiles, index=i)
            seen.update(toks)
            longest = max(longest, len(toks) + len(order) + 3)
            largest = max(largest, len(order))
        if not seen:
            raise ValueError("no molecules to build a vocabulary from")
        return cls(sorted(seen), max_len=max_len or longest, max_atoms=max_atoms or largest, **options)

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": list(self.tokens), "max_len": self.max_len, "max_atoms": self.max_atoms, "scale": self.scale,
                "frame": self.frame, "isomeric": self.isomeric, "hydrogens": self.hydrogens}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MoleculeTokenizer":
        d = dict(d)
        return cls(d.pop("tokens"), **d)

    def __repr__(self) -> str:
        return (f"MoleculeTokenizer({len(self.tokens)} SMILES tokens, max_len={self.max_len}, max_atoms={self.max_atoms}, "
                f"scale={self.scale}, frame={self.frame!r}, isomeric={self.isomeric}, hydrogens={self.hydrogens})")

    # -- strings ---------------------------------------------------------------------------

    def token_string(self, token_id: int) -> str:
        """The text of a token id (specials as ``<bos>``, ``<coord>`` ...)."""
        return SPECIALS[token_id] if token_id < FIRST_TOKEN else self.tokens[token_id - FIRST_TOKEN]

    def is_atom_id(self) -> torch.Tensor:
        """(vocab_size,) bool, which ids are atom tokens."""
        return torch.tensor([False] * FIRST_TOKEN + [c == _ATOM for c in self._classes])

    @staticmethod
    def tokenize(smiles: str, *, index: int | None = None) -> list[str]:
        """SMILES -> tokens (``"".join(tokens) == smiles``).

        Raises:
            SmilesParseError: a character no SMILES token covers (the offset named).
        """
        from sciogen.molecules.representation import SmilesParseError

        out, at = [], 0
        for match in _TOKEN.finditer(smiles):
            if match.start() != at:
                break
            out.append(match.group())
            at = match.end()
        if at != len(smiles):
            raise SmilesParseError(f"character {smiles[at]!r} at offset {at} is not part of a SMILES token", index=index,
                                   item=smiles)
        return out

    def ids(self, tokens: Sequence[str], *, index: int | None = None, smiles: str | None = None) -> list[int]:
        """Token ids of SMILES tokens.

        Raises:
            UnknownAtomTypeError: an atom token outside the vocabulary (token and element named).
            UnknownTokenError: another token outside the vocabulary.
        """
        out = []
        for t in tokens:
            if t not in self._ids:
                if _token_class(t) == _ATOM:
                    known = sorted(x for x, c in zip(self.tokens, self._classes) if c == _ATOM)
                    raise UnknownAtomTypeError(f"atom token {t!r} (element {token_element(t)}) is outside the model's vocabulary "
                                               f"(atom tokens: {' '.join(known)})", index=index, item=smiles)
                raise UnknownTokenError(f"SMILES token {t!r} is outside the model's vocabulary ({' '.join(self.tokens)}); "
                                        "the model never saw it in training", index=index, item=smiles)
            out.append(self._ids[t])
        return out

    def smiles_of(self, mol: "Chem.Mol", *, index: int | None = None) -> tuple[str, list[int]]:
        """The SMILES this tokenizer writes for ``mol`` and the Mol atom index of each atom in it.

        With ``hydrogens`` every hydrogen must be an atom (``Chem.AddHs``); without, hydrogen
        atoms are removed first (the order then indexes the Mol without them).

        Raises:
            UnrepresentableMoleculeError: implicit hydrogens where ``hydrogens`` is True.
        """
        if not isinstance(mol, Chem.Mol):
            raise TypeError(f"expected an RDKit Mol, got {type(mol).__name__}")
        mol = self._prepared(mol, index)
        if self.isomeric and mol.GetNumConformers():
            Chem.AssignStereochemistryFrom3D(mol)
        smiles = Chem.MolToSmiles(mol, isomericSmiles=self.isomeric, canonical=True)
        order = [int(i) for i in mol.GetPropsAsDict(True, True)["_smilesAtomOutputOrder"]]
        return smiles, order

    def _prepared(self, mol: "Chem.Mol", index: int | None) -> "Chem.Mol":
        mol = Chem.Mol(mol)
        if not self.hydrogens:
            return Chem.RemoveHs(mol, sanitize=False)
        mol.UpdatePropertyCache(strict=False)
        for atom in mol.GetAtoms():
            hidden = atom.GetNumImplicitHs() + atom.GetNumExplicitHs()
            if hidden:
                raise UnrepresentableMoleculeError(
                    f"atom {atom.GetIdx()} ({atom.GetSymbol()}) carries {hidden} hydrogen(s) that are not atoms; this "
                    "tokenizer keeps hydrogens: add them with Chem.AddHs(mol, addCoords=True)", index=index)
        return mol

    # -- sequences -------------------------------------------------------------------------

    def sequence_length(self, smiles: str) -> int:
        """Positions the sequence of an (explicit-hydrogen) SMILES takes, BOS and EOS included."""
        toks = self.tokenize(smiles)
        return len(toks) + sum(_token_class(t) == _ATOM for t in toks) + 3

    def encode(self, mols: Sequence["Chem.Mol"], *, conformer_id: int = -1) -> MoleculeSequences:
        """Sequences of Mols with a 3D conformer (``frame="inertia"``: in their principal axes).

        Returns:
            a :class:`MoleculeSequences` of length L = ``max_len``.

        Raises:
            NoConformerError: a Mol without a 3D conformer or with non-finite coordinates.
            UnknownAtomTypeError, UnknownTokenError: a token outside the vocabulary.
            MoleculeTooLargeError: the sequence is longer than ``max_len``.
            UnrepresentableMoleculeError: hydrogens that are not atoms (``hydrogens`` True).
        """
        if isinstance(mols, Chem.Mol):
            mols = [mols]
        m = len(mols)
        tokens = torch.full((m, self.max_len), PAD, dtype=torch.long)
        values = torch.zeros(m, self.max_len, 3)
        valid = torch.zeros(m, self.max_len, dtype=torch.bool)
        all_smiles, orders = [], []
        for i, mol in enumerate(mols):
            smiles, order = self.smiles_of(mol, index=i)
            ids = self.ids(self.tokenize(smiles, index=i), index=i, smiles=smiles)
            n_tok, n_atoms = len(ids), len(order)
            length = n_tok + n_atoms + 3
            if length > self.max_len:
                raise MoleculeTooLargeError(f"{n_atoms} atoms and {n_tok} SMILES tokens need {length} positions, more than "
                                            f"max_len={self.max_len}", index=i, item=smiles)
            xyz = self._coordinates(self._prepared(mol, i), conformer_id, i)[order]
            tokens[i, 0] = BOS
            tokens[i, 1 : n_tok + 1] = torch.tensor(ids)
            tokens[i, n_tok + 1] = COORD
            tokens[i, n_tok + 2 : n_tok + 2 + n_atoms] = NUM
            tokens[i, n_tok + 2 + n_atoms] = EOS
            frame = canonical_frame(xyz) if self.frame == "inertia" else xyz - xyz.mean(0)
            values[i, n_tok + 2 : n_tok + 2 + n_atoms] = torch.as_tensor(frame / self.scale, dtype=torch.float32)
            valid[i, :length] = True
            all_smiles.append(smiles)
            orders.append(order)
        return MoleculeSequences(tokens, values, valid, all_smiles, orders)

    @staticmethod
    def _coordinates(mol: "Chem.Mol", conformer_id: int, index: int) -> np.ndarray:
        if mol.GetNumConformers() == 0:
            raise NoConformerError("the molecule has no conformer (3D coordinates)", index=index)
        conf = mol.GetConformer(conformer_id)
        xyz = conf.GetPositions()
        if not conf.Is3D():
            raise NoConformerError("the conformer is 2D; 3D coordinates are needed", index=index)
        if not np.isfinite(xyz).all():
            raise NoConformerError("the conformer has NaN or infinite coordinates", index=index)
        return xyz

    def parse(self, tokens: Sequence[int]) -> tuple[int, int] | None:
        """(number of SMILES tokens T, number of atoms A) of one sequence's valid tokens, or
        None if it breaks the layout (BOS, T >= 1 SMILES tokens, COORD, A NUM, EOS)."""
        if len(tokens) < 5 or tokens[0] != BOS or COORD not in tokens:
            return None
        c = list(tokens).index(COORD)
        body = tokens[1:c]
        if not body or any(t < FIRST_TOKEN for t in body):
            return None
        n_atoms = sum(self._classes[t - FIRST_TOKEN] == _ATOM for t in body)
        tail = list(tokens[c + 1 :])
        if n_atoms < 1 or tail != [NUM] * n_atoms + [EOS]:
            return None
        return len(body), n_atoms

    def decode(self, sample: SequenceSample | MoleculeSequences) -> list[dict[str, Any]]:
        """Molecules of sequences (the inverse of :meth:`encode` up to the frame).

        Returns:
            one dict per sequence: ``ok`` (the layout parses), ``smiles`` (the SMILES tokens
            joined), ``positions`` ((A, 3) float64 Å, atom k = the k-th atom token), ``mol``
            (the Mol parsed from the SMILES with its hydrogens kept, atoms in SMILES order,
            with these positions as its conformer; None where RDKit rejects the SMILES).
        """
        out = []
        for toks, vals, ok in zip(sample.tokens.cpu(), sample.values.detach().cpu(), sample.valid.cpu().bool()):
            row = toks[ok].tolist()
            parsed = self.parse(row)
            if parsed is None:
                out.append({"ok": False, "smiles": "", "positions": np.zeros((0, 3)), "mol": None})
                continue
            n_tok, n_atoms = parsed
            smiles = "".join(self.tokens[t - FIRST_TOKEN] for t in row[1 : n_tok + 1])
            xyz = vals[n_tok + 2 : n_tok + 2 + n_atoms].double().numpy() * self.scale
            out.append({"ok": True, "smiles": smiles, "positions": xyz, "mol": _mol_with_positions(smiles, xyz)})
        return out

    def element_indices(self, smiles: str) -> list[int]:
        """Indices in :attr:`elements` of the atom tokens of ``smiles``, in SMILES order."""
        return [self.elements.index(token_element(t)) for t in self.tokenize(smiles) if _token_class(t) == _ATOM]


def _parser_params() -> "Chem.SmilesParserParams":
    params = Chem.SmilesParserParams()
    params.removeHs = False
    return params


def _mol_with_positions(smiles: str, xyz: np.ndarray) -> "Chem.Mol | None":
    """The Mol of a generated SMILES (hydrogens kept, atoms in SMILES order) with ``xyz`` as
    its conformer and stereo read from it; None if RDKit rejects the SMILES."""
    from rdkit.rdBase import BlockLogs

    quiet = BlockLogs()  # a generated SMILES may well be rejected: no RDKit message for it
    mol = Chem.MolFromSmiles(smiles, _parser_params())
    del quiet
    if mol is None or mol.GetNumAtoms() != len(xyz) or not np.isfinite(xyz).all():
        return None
    conf = Chem.Conformer(mol.GetNumAtoms())
    for k, p in enumerate(xyz.tolist()):
        conf.SetAtomPosition(k, p)
    conf.Set3D(True)
    mol.AddConformer(conf, assignId=True)
    Chem.AssignStereochemistryFrom3D(mol)
    return mol


# -- grammar ----------------------------------------------------------------------------------


class MoleculeGrammar:
    """``logits_processor`` for :meth:`TokenAR.generate` that keeps sequences in the UniGenX layout.

    Before COORD it follows SMILES syntax: an atom first; a bond or ``(`` after an atom, a
    ring label or ``)`` (a bond also right after ``(``); ``)`` only inside a branch and
    after an atom, a ring label or ``)``; a ring label after an atom, a ring label or a
    bond, and a label that closes a ring only onto an atom not yet bonded to the current
    one (no ``C11``, ``C1C1``, ``C12CC12``); ``.`` outside branches and rings. COORD once
    at least one atom is written and all branches and rings are closed. After COORD: NUM
    until there are as many as atom tokens, then EOS. PAD and BOS are never allowed.

    A token is allowed only if the sequence can still be finished within ``max_len`` and
    ``max_atoms``: the cost of finishing (atoms still needed before the open rings can
    close, a token per open ring and branch, COORD, a NUM per atom, EOS) is tracked, and
    from any state within budget the cheapest next step stays within it, so every
    generated sequence parses (:meth:`MoleculeTokenizer.parse`) and its SMILES is
    syntactically sound. Valences are not checked: RDKit may reject the molecule
    (counted by validity).

    Args:
        tokenizer: the :class:`MoleculeTokenizer`.
        max_len: the sequence length to fit in (default ``tokenizer.max_len``).
        max_atoms: the most atoms (default ``"tokenizer"``: ``tokenizer.max_atoms``; None: no limit).
    """

    def __init__(self, tokenizer: MoleculeTokenizer, max_len: int | None = None,
                 max_atoms: int | None | Literal["tokenizer"] = "tokenizer"):
        self.tokenizer = tokenizer
        self.max_len = tokenizer.max_len if max_len is None else int(max_len)
        self.max_atoms = tokenizer.max_atoms if max_atoms == "tokenizer" else max_atoms
        classes = [_SPECIAL] * FIRST_TOKEN + list(tokenizer._classes)
        classes[EOS], classes[COORD], classes[NUM] = _EOS, _COORD, _NUM
        self._cls = torch.tensor(classes)
        labels = [t for t, c in zip(tokenizer.tokens, tokenizer._classes) if c == _RING]
        self._ring_ids = torch.tensor([tokenizer._ids[t] for t in labels], dtype=torch.long)
        ring_of = torch.full((tokenizer.vocab_size,), -1, dtype=torch.long)
        ring_of[self._ring_ids] = torch.arange(len(labels))
        self._ring_of = ring_of
        #: the sequence position being generated (for error messages)
        self.position = 0
        self._consumed = -1
        self._buffer = None
        self._state: dict[str, torch.Tensor] = {}

    # -- state -------------------------------------------------------------------------------

    def _reset(self, b: int, device) -> None:
        cap = min(self.max_len, self.max_atoms or self.max_len) + 1
        z = lambda: torch.zeros(b, dtype=torch.long, device=device)  # noqa: E731
        self._state = {
            "phase": z(), "atoms": z(), "depth": z(), "cur": z() - 1, "last": z() + _NONE, "nums": z(),
            "parent": torch.full((b, cap), -1, dtype=torch.long, device=device),
            "stack": torch.full((b, self.max_len + 1), -1, dtype=torch.long, device=device),
            "ring": torch.full((b, len(self._ring_ids)), -1, dtype=torch.long, device=device),
            "adj": torch.zeros(b, cap, cap, dtype=torch.bool, device=device),
        }
        self._consumed = 1  # BOS

    def _advance(self, tok: torch.Tensor) -> None:
        s = self._state
        dev = tok.device
        cls = self._cls.to(dev)[tok]
        rows = torch.arange(tok.shape[0], device=dev)
        smiles = s["phase"] == 0
        cap = s["adj"].shape[1]
        # an atom: a new index, bonded to the current atom (none after "." or at the start)
        atom = smiles & (cls == _ATOM)
        parent = torch.where((s["last"] == _DOT) | (s["last"] == _NONE), torch.full_like(s["cur"], -1), s["cur"])
        new = s["atoms"].clamp(max=cap - 1)
        s["parent"][rows[atom], new[atom]] = parent[atom]
        bonded = atom & (parent >= 0)
        s["adj"][rows[bonded], new[bonded], parent[bonded]] = True
        s["adj"][rows[bonded], parent[bonded], new[bonded]] = True
        s["cur"] = torch.where(atom, new, s["cur"])
        s["atoms"] = s["atoms"] + atom.long()
        # branches
        opened = smiles & (cls == _OPEN)
        s["stack"][rows[opened], s["depth"][opened]] = s["cur"][opened]
        s["depth"] = s["depth"] + opened.long()
        closed = smiles & (cls == _CLOSE)
        s["depth"] = s["depth"] - closed.long()
        top = s["stack"].gather(1, s["depth"].clamp_min(0)[:, None])[:, 0]
        s["cur"] = torch.where(closed, top, s["cur"])
        # ring labels open at the current atom or close onto their opener
        ring = smiles & (cls == _RING)
        if bool(ring.any()):
            label = self._ring_of.to(dev)[tok].clamp_min(0)
            opener = s["ring"][rows, label]
            shut = ring & (opener >= 0)
            s["adj"][rows[shut], s["cur"][shut], opener[shut]] = True
            s["adj"][rows[shut], opener[shut], s["cur"][shut]] = True
            value = torch.where(opener >= 0, torch.full_like(opener, -1), s["cur"])
            s["ring"][rows[ring], label[ring]] = value[ring]
        bond = smiles & (cls == _BOND)
        last = torch.where(bond & (s["last"] == _OPEN), torch.full_like(cls, _BOND_B), cls)
        s["last"] = torch.where(smiles, last, s["last"])
        s["phase"] = torch.where(smiles & (cls == _COORD), torch.ones_like(s["phase"]), s["phase"])
        coords = s["phase"] == 1
        s["nums"] = s["nums"] + (coords & (cls == _NUM)).long()
        s["phase"] = torch.where(coords & (cls == _EOS), torch.full_like(s["phase"], 2), s["phase"])

    def _sync(self, position: int, prefix: torch.Tensor) -> None:
        b = prefix.shape[0]
        buffer = (prefix.data_ptr(), prefix.stride(0))  # a new generate() call writes a new token buffer
        if buffer != self._buffer or not self._state or self._state["phase"].shape[0] != b or not 1 <= self._consumed <= position:
            self._reset(b, prefix.device)
            self._buffer = buffer
        for i in range(self._consumed, position):
            self._advance(prefix[:, i])
        self._consumed = position

    # -- costs -------------------------------------------------------------------------------

    @staticmethod
    def _need(openers: torch.Tensor, cur: torch.Tensor, bonded: torch.Tensor, blocked: torch.Tensor,
              need_last: torch.Tensor) -> torch.Tensor:
        """Atoms still needed before the sequence can close: ``need_last`` (a bond, ``(`` or
        ``.`` waits for an atom) or, for the open rings of each opener, the atoms before the
        first can close (2 if opened at the current atom, 1 if bonded to it or no ring
        label may come next, else 0) plus one per further ring of that opener (one
        closure per atom pair).

        Shapes: openers (..., R) atom index or -1 (closed); cur (...); bonded (..., R)
        whether each opener is bonded to the current atom; blocked, need_last (...) -> (...).
        """
        if openers.shape[-1] == 0:
            return need_last
        is_open = openers >= 0
        delay = torch.where(openers == cur[..., None], 2, bonded.long())
        delay = torch.where(blocked[..., None], delay.clamp_min(1), delay)
        same = (openers[..., :, None] == openers[..., None, :]) & is_open[..., None, :]
        need = torch.where(is_open, delay + same.sum(-1) - 1, 0)
        return torch.maximum(need_last, need.amax(-1))

    def _cost(self, atoms, need, n_open, depth) -> torch.Tensor:
        """Positions still needed to finish: the atoms needed (each a token and a NUM), a
        token per open ring and branch, COORD, a NUM per atom so far, EOS; a large number
        where ``max_atoms`` cannot be kept."""
        cost = 2 * need + n_open + depth + atoms + 2
        if self.max_atoms is not None:
            cost = torch.where(atoms + need > self.max_atoms, torch.full_like(cost, 10**9), cost)
        return cost

    def __call__(self, position: int, logits: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        self.position = position
        if not math.isfinite(float(logits.sum())):
            raise FloatingPointError(f"non-finite token logits at UniGenX sequence position {position}; "
                                     "check the checkpoint's weights")
        self._sync(position, prefix)
        return logits.masked_fill(~self.allowed(position), float("-inf"))

    def allowed(self, position: int) -> torch.Tensor:
        """(B, vocab_size) bool, the tokens allowed at ``position`` (the state holds the tokens before it)."""
        s = self._state
        dev = s["phase"].device
        b, v = s["phase"].shape[0], self.tokenizer.vocab_size
        cls = self._cls.to(dev)
        atoms, depth, last, cur, ring, adj = s["atoms"], s["depth"], s["last"], s["cur"], s["ring"], s["adj"]
        r = ring.shape[1]
        n_open = (ring >= 0).sum(1)
        zero, one = torch.zeros_like(atoms), torch.ones_like(atoms)

        def bonded_to(atom: torch.Tensor, openers: torch.Tensor) -> torch.Tensor:
            row = adj.gather(1, atom.clamp_min(0)[:, None, None].expand(-1, 1, adj.shape[2]))[:, 0]
            out = row.gather(1, openers.clamp_min(0).view(b, -1)).view(openers.shape)
            return out & (openers >= 0) & (atom >= 0).view(b, *([1] * (openers.dim() - 1)))

        def blocked(kind: torch.Tensor) -> torch.Tensor:  # no ring label may follow this token
            return (kind == _OPEN) | (kind == _BOND_B) | (kind == _DOT) | (kind == _NONE) | (kind == _CLOSE)

        def waits(kind: torch.Tensor) -> torch.Tensor:  # an atom must follow this token
            return ((kind == _BOND) | (kind == _BOND_B) | (kind == _OPEN) | (kind == _DOT) | (kind == _NONE)).long()

        fits = lambda cost: position + 1 + cost <= self.max_len  # noqa: E731
        need = self._need(ring, cur, bonded_to(cur, ring), blocked(last), waits(last))
        after_atom = (last == _ATOM) | (last == _RING) | (last == _CLOSE)

        # an atom: the new current atom, bonded to the old one (none after "." or at the start)
        parent = torch.where((last == _DOT) | (last == _NONE), -one, cur)
        new_need = self._need(ring, atoms, (ring == parent[:, None]) & (parent[:, None] >= 0), zero.bool(), zero)
        ok_atom = fits(self._cost(atoms + 1, new_need, n_open, depth))
        # a bond (after "(" too), "(": an atom must follow
        kind = torch.where(last == _OPEN, _BOND_B, _BOND)
        bond_need = self._need(ring, cur, bonded_to(cur, ring), blocked(kind), one)
        ok_bond = (after_atom | (last == _OPEN)) & fits(self._cost(atoms, bond_need, n_open, depth))
        open_need = self._need(ring, cur, bonded_to(cur, ring), ~zero.bool(), one)
        ok_open = after_atom & fits(self._cost(atoms, open_need, n_open, depth + 1))
        # ")": back to the branch's root
        root = s["stack"].gather(1, (depth - 1).clamp_min(0)[:, None])[:, 0]
        close_need = self._need(ring, root, bonded_to(root, ring), ~zero.bool(), zero)
        ok_close = (depth > 0) & after_atom & fits(self._cost(atoms, close_need, n_open, depth - 1))
        # ".": a new fragment
        ok_dot = (depth == 0) & (n_open == 0) & after_atom & fits(self._cost(atoms, one, n_open, depth))
        ok_coord = (atoms >= 1) & (need == 0) & (n_open == 0) & (depth == 0)
        if r:  # ring labels: open at the current atom, or close onto an opener not bonded to it
            syntax = (atoms > 0) & ((last == _ATOM) | (last == _RING) | (last == _BOND))
            closing = ring >= 0
            free = closing & (ring != cur[:, None]) & ~bonded_to(cur, ring)
            eye = torch.eye(r, dtype=torch.bool, device=dev)
            toggled = torch.where(eye[None], torch.where(closing, -1, cur[:, None])[:, :, None], ring[:, None, :])
            joined = bonded_to(cur, ring)[:, None, :] | (closing[:, :, None] & (ring[:, None, :] == ring[:, :, None]))
            ring_need = self._need(toggled, cur[:, None].expand(b, r), joined & (toggled >= 0), zero[:, None].expand(b, r).bool(),
                                   zero[:, None].expand(b, r))
            n_after = n_open[:, None] + torch.where(closing, -1, 1)
            ring_ok = syntax[:, None] & (free | ~closing)
            ring_ok = ring_ok & fits(self._cost(atoms[:, None], ring_need, n_after, depth[:, None]))

        smiles = s["phase"] == 0
        per_class = {_ATOM: ok_atom, _BOND: ok_bond, _OPEN: ok_open, _CLOSE: ok_close, _DOT: ok_dot, _COORD: ok_coord}
        allowed = torch.zeros(b, v, dtype=torch.bool, device=dev)
        for c, ok in per_class.items():
            allowed |= (cls == c)[None, :] & (smiles & ok)[:, None]
        if r:
            allowed[:, self._ring_ids.to(dev)] = smiles[:, None] & ring_ok
        coords = s["phase"] == 1
        more = s["nums"] < atoms
        allowed |= (cls == _NUM)[None, :] & (coords & more)[:, None]
        allowed |= (cls == _EOS)[None, :] & ((coords & ~more) | (s["phase"] == 2))[:, None]
        return allowed


# -- data -------------------------------------------------------------------------------------


def dataset_mols(dataset: Any, indices: Sequence[int] | None = None, *,
                 on_error: Literal["raise", "skip"] = "skip") -> tuple[list["Chem.Mol"], list[Skipped]]:
    """RDKit Mols (hydrogens as atoms when the dataset has them, one conformer) of a
    :class:`~.datasets.Molecules3DDataset`, for :meth:`MoleculeTokenizer.from_mols` / ``encode``.

    The bonds come from the dataset's SMILES, matched (hydrogens added, as a graph of
    elements) onto the bonds perceived from the geometry, the way the dataset places its
    formal charges; where that fails (no SMILES, a mismatch) they are perceived from the
    geometry (:func:`~.representation.arrays_to_mol`, EDM's table and RDKit's bond orders).

    Args:
        dataset: the molecules; indices: which of them (default all, in order).
        on_error: ``"skip"`` lists a molecule without bonds in the second output; ``"raise"``.

    Returns:
        the Mols and the molecules left out (dataset index, SMILES, reason).

    Raises:
        MoleculeError: a molecule neither way can give bonds, with ``on_error="raise"``.
    """
    from .datasets import _connectivity, _generic

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; allowed: raise, skip")
    elements = dataset.vocabulary.elements
    mols, skipped = [], []
    for i in map(int, range(len(dataset)) if indices is None else indices):
        m = dataset.molecule(i)
        symbols = [elements[k] for k in m.types.tolist()]
        xyz = m.positions.double().numpy()
        smiles = dataset.smiles[i] if i < len(dataset.smiles) else ""
        mol = _from_template(smiles, symbols, xyz, dataset.vocabulary.hydrogens, _connectivity, _generic)
        if mol is None:
            try:
                mol = arrays_to_mol(m.types, m.positions, m.charges, dataset.vocabulary, index=i)
            except MoleculeError as err:
                if on_error == "raise":
                    raise
                skipped.append(Skipped(i, smiles or None, f"no bonds from the SMILES or the geometry: {err.reason}"))
                continue
        mols.append(mol)
    return mols, skipped


def _from_template(smiles: str, symbols: list[str], xyz: np.ndarray, hydrogens: bool, connectivity, generic) -> "Chem.Mol | None":
    template = Chem.MolFromSmiles(smiles) if smiles else None
    if template is None:
        return None
    if hydrogens:
        template = Chem.AddHs(template)
    query = generic(template)
    if query.GetNumAtoms() != len(symbols):
        return None
    for hueckel in (False, True):
        target = connectivity(symbols, xyz, hueckel)
        if target.GetNumBonds() != query.GetNumBonds():
            continue
        match = target.GetSubstructMatch(query)
        if len(match) == len(symbols):
            conf = Chem.Conformer(template.GetNumAtoms())
            for k, j in enumerate(match):
                conf.SetAtomPosition(k, xyz[j].tolist())
            conf.Set3D(True)
            mol = Chem.Mol(template)
            mol.RemoveAllConformers()
            mol.AddConformer(conf, assignId=True)
            return mol
    return None


# -- model, loss, sampling --------------------------------------------------------------------


def build_unigenx_molecules(tokenizer: MoleculeTokenizer, dim: int = 128, depth: int = 4, heads: int = 4, head_width: int = 256,
                            head_depth: int = 3, **options: Any) -> TokenAR:
    """A :class:`TokenAR` for ``tokenizer``: value_dim 3, value_token NUM, eos_token EOS,
    max_len ``tokenizer.max_len``. ``options`` go to :class:`TokenARConfig` (schedule,
    prediction, diffusion_repeats, dropout, ...)."""
    config = TokenARConfig(vocab_size=tokenizer.vocab_size, value_dim=3, value_token=NUM, eos_token=EOS, max_len=tokenizer.max_len,
                           dim=dim, depth=depth, heads=heads, head_width=head_width, head_depth=head_depth, **options)
    return TokenAR(config)


def _batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(batch, MoleculeSequences):
        return batch.tensors()
    if isinstance(batch, Mapping):
        return batch["tokens"], batch["values"], batch["valid"]
    tokens, values, valid = batch
    return tokens, values, valid


def unigenx_molecule_loss(model: TokenAR, tokenizer: MoleculeTokenizer, batch: Any, generator: torch.Generator | None = None,
                          augment: bool = True) -> torch.Tensor:
    """Training loss, shaped (B,) as the trainer expects.

    Args:
        batch: ``(tokens (B, L), values (B, L, 3), valid (B, L))`` (a batch of
            :meth:`MoleculeSequences.tensors` in a ``TensorDataset``), a dict with those
            keys, or a :class:`MoleculeSequences`.
        generator: the source of the diffusion times and noise (and rotations).
        augment: with ``frame="random"``, rotate each molecule by a uniform random rotation
            (``"inertia"`` molecules are in their canonical frame and are not rotated).

    :meth:`TokenAR.loss` averages over all tokens and values of the batch (token
    cross-entropy + diffusion loss); that batch scalar is returned expanded to (B,).
    """
    tokens, values, valid = _batch(batch)
    if augment and tokenizer.frame == "random":
        rot = random_rotations(tokens.shape[0], generator, dtype=values.dtype, device=values.device)
        values = torch.where((tokens == NUM)[..., None], values @ rot, values)
    end = int(valid.sum(1).max())  # right padding does not change a causal model's outputs
    out = model.loss(tokens[:, :end], values[:, :end], valid=valid[:, :end], generator=generator)
    return out["loss"].expand(tokens.shape[0])


def _check_fit(model: TokenAR, tokenizer: MoleculeTokenizer) -> None:
    c = model.config
    if c.vocab_size != tokenizer.vocab_size or c.max_len < tokenizer.max_len or c.value_dim != 3 or c.value_token != NUM:
        raise ValueError(f"the model (vocab_size {c.vocab_size}, max_len {c.max_len}) does not fit the tokenizer "
                         f"(vocab_size {tokenizer.vocab_size}, max_len {tokenizer.max_len}); build it with "
                         "build_unigenx_molecules(tokenizer)")


def _generate(model: TokenAR, tokenizer: MoleculeTokenizer, prompt: torch.Tensor, length: int, grammar: MoleculeGrammar,
              **options: Any) -> SequenceSample:
    try:
        return model.generate(prompt, length=length, logits_processor=grammar, **options)
    except FloatingPointError as err:
        if "UniGenX sequence position" in str(err):
            raise
        raise FloatingPointError(f"UniGenX sequence position {grammar.position} (a coordinate's diffusion head): {err}") from None


@torch.no_grad()
def sample_molecules_unigenx(model: TokenAR, tokenizer: MoleculeTokenizer, n: int, *, steps: int | StepAnnealing = 20,
                             solver: str = "ddim", generator: torch.Generator | None = None, temperature: float = 1.0,
                             token_temperature: float = 1.0, **sample_options: Any) -> dict[str, Any]:
    """Generate ``n`` molecules de novo: SMILES and coordinates (prompt BOS, :class:`MoleculeGrammar`).

    Args:
        model, tokenizer: a :func:`build_unigenx_molecules` model and its tokenizer.
        steps, solver, sample_options: the coordinate head's solver (:meth:`TokenAR.generate`);
            ``steps`` may be a :class:`StepAnnealing` (DiSA).
        generator: the only source of randomness.
        temperature: scale of the coordinate solver's starting noise; token_temperature: the
            SMILES tokens' softmax temperature.

    Returns:
        ``mols``: n Mols (hydrogens as atoms, atoms in SMILES order, one conformer, bonds
        from the SMILES) or None where RDKit rejects the SMILES; ``smiles`` (n strings);
        ``types`` (n, N) long indices in ``tokenizer.elements``; ``positions`` (n, N, 3)
        float32 Å; ``mask`` (n, N) bool, N the most atoms of a sample.
    """
    _check_fit(model, tokenizer)
    if n < 1:
        raise ValueError(f"n={n}; ask for at least one molecule")
    dev = next(model.parameters()).device
    grammar = MoleculeGrammar(tokenizer)
    prompt = torch.full((n, 1), BOS, dtype=torch.long, device=dev)
    seq = _generate(model, tokenizer, prompt, tokenizer.max_len, grammar, solver=solver, steps=steps, temperature=temperature,
                    token_temperature=token_temperature, generator=generator, **sample_options)
    rows = tokenizer.decode(seq)
    if not all(r["ok"] for r in rows):  # the grammar admits only well-formed sequences
        raise RuntimeError("a generated sequence breaks the UniGenX layout; this is a bug in MoleculeGrammar")
    width = max(len(r["positions"]) for r in rows)
    types = torch.zeros(n, width, dtype=torch.long)
    positions = torch.zeros(n, width, 3)
    mask = torch.zeros(n, width, dtype=torch.bool)
    for i, r in enumerate(rows):
        k = len(r["positions"])
        if not np.isfinite(r["positions"]).all():
            raise FloatingPointError(f"UniGenX sample {i} has non-finite coordinates; check the checkpoint's weights")
        types[i, :k] = torch.tensor(tokenizer.element_indices(r["smiles"]))
        positions[i, :k] = torch.as_tensor(r["positions"], dtype=torch.float32)
        mask[i, :k] = True
    return {"mols": [r["mol"] for r in rows], "smiles": [r["smiles"] for r in rows], "types": types, "positions": positions,
            "mask": mask}


def _conformer_query(tokenizer: MoleculeTokenizer, smiles: str) -> tuple["Chem.Mol", list[int], list[int]]:
    """(the Mol with its hydrogens, the Mol atom of each atom token, the token ids)."""
    mol = parse_smiles(smiles)
    if not tokenizer.isomeric:
        stereo = [a.GetIdx() for a in mol.GetAtoms() if a.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED]
        stereo_bonds = [b.GetIdx() for b in mol.GetBonds() if b.GetStereo() != Chem.BondStereo.STEREONONE]
        if stereo or stereo_bonds:
            what = f"atom {stereo[0]}" if stereo else f"bond {stereo_bonds[0]}"
            raise UnrepresentableMoleculeError(
                f"the SMILES specifies stereochemistry ({what}), which this model (trained without stereo, isomeric=False) "
                "cannot honour; pass it without stereo marks (Chem.MolToSmiles(mol, isomericSmiles=False)) to get "
                "conformers of any stereoisomer", item=smiles)
    if tokenizer.hydrogens:
        mol = Chem.AddHs(mol)
    written = Chem.MolToSmiles(mol, isomericSmiles=tokenizer.isomeric, canonical=True)
    order = [int(i) for i in mol.GetPropsAsDict(True, True)["_smilesAtomOutputOrder"]]
    ids = tokenizer.ids(tokenizer.tokenize(written), smiles=smiles)
    return mol, order, ids


@torch.no_grad()
def sample_conformers(model: TokenAR, tokenizer: MoleculeTokenizer, smiles: str, n: int, *, steps: int | StepAnnealing = 20,
                      solver: str = "ddim", generator: torch.Generator | None = None, temperature: float = 1.0,
                      **sample_options: Any) -> "Chem.Mol":
    """``n`` conformers of the molecule ``smiles``: its tokens and COORD are forced, the model
    writes one xyz per atom.

    Args:
        smiles: the molecule (hydrogens are added when the model keeps them).
        n: number of conformers.
        steps, solver, temperature, sample_options: the coordinate head's solver.
        generator: the only source of randomness.

    Returns:
        the Mol of ``smiles`` (hydrogens added, bonds from the SMILES, not perceived) with
        ``n`` conformers (ids 0 .. n - 1, coordinates in Å), ``_Name`` = ``smiles``.

    Raises:
        SmilesParseError: ``smiles`` does not parse.
        UnknownAtomTypeError, UnknownTokenError: an element or token the model never saw.
        MoleculeTooLargeError: the sequence is longer than the model's ``max_len``.
        UnrepresentableMoleculeError: stereo marks for a model trained without stereo.
    """
    _check_fit(model, tokenizer)
    if n < 1:
        raise ValueError(f"n={n}; ask for at least one conformer")
    mol, order, ids = _conformer_query(tokenizer, smiles)
    n_atoms = len(order)
    length = len(ids) + n_atoms + 3
    if length > tokenizer.max_len:
        raise MoleculeTooLargeError(f"{n_atoms} atoms and {len(ids)} SMILES tokens need {length} positions, more than the "
                                    f"model's max_len={tokenizer.max_len}", item=smiles)
    dev = next(model.parameters()).device
    prompt = torch.tensor([BOS, *ids, COORD], dtype=torch.long, device=dev).expand(n, -1).contiguous()
    grammar = MoleculeGrammar(tokenizer, max_len=length, max_atoms=None)
    seq = _generate(model, tokenizer, prompt, length, grammar, solver=solver, steps=steps, temperature=temperature,
                    generator=generator, **sample_options)
    start = len(ids) + 2
    xyz = seq.values[:, start : start + n_atoms].double().cpu().numpy() * tokenizer.scale
    if not np.isfinite(xyz).all():
        raise FloatingPointError(f"UniGenX conformers of {smiles!r} have non-finite coordinates; check the checkpoint's weights")
    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    for c in range(n):
        conf = Chem.Conformer(mol.GetNumAtoms())
        for k, atom in enumerate(order):
            conf.SetAtomPosition(atom, xyz[c, k].tolist())
        conf.Set3D(True)
        conf.SetId(c)
        out.AddConformer(conf, assignId=False)
    out.SetProp("_Name", smiles)
    return out
