"""The molecules domain: molecular graphs for PARD-style generation (QM9, MOSES, ZINC250k).

- ``generator.py``: :class:`MoleculeGenerator` (fit / sample / evaluate / save / load),
  property-conditioned (classifier-free guidance) and scaffold-constrained sampling.
- ``network.py``: :class:`PARDNet`, the block-causal PPGN + graph transformer.
- ``pard.py``: block tensors, PARD's loss, block-by-block sampling.
- ``config.py``: the run config of ``domains/molecules/*.yaml``.

- ``representation.py``: RDKit ``Mol`` <-> torch-geometric graphs (:class:`MoleculeSpec`,
  heavy-atom or explicit-hydrogen, kekulized or aromatic bonds, charged atom types),
  dense batches, specific errors for bad input.
- ``io.py``: SMILES / CSV / TSV / parquet / SDF reading and writing with skip-and-report.
- ``own_data.py``: your own molecules (files, folders, globs, lists) for ``sciogen train
  molecules --data``: unusable records reported, vocabulary inferred, condition columns checked.
- ``datasets.py``: QM9 (DiGress / PARD split, properties), MOSES, ZINC250k, user SMILES.
- ``blocks.py``: PARD's block decomposition (peeling order by weighted higher-order degree).
- ``metrics.py``: validity (strict / relaxed) as DiGress / PARD, uniqueness, novelty,
  FCD (cached reference statistics), QED / SA / logP / weight; :func:`evaluate`.
- ``moses_metrics.py``: SNN, Frag, Scaf, IntDiv, Filters on RDKit (no ``molsets``).
- ``null_model.py``: independent atom / bond types from the data marginals.
- ``properties.py``: a GINE regressor of QM9's DFT properties (gap, mu, ...), shipped,
  that scores property-conditioned samples which are not in QM9.

RDKit and torch-geometric are imported only inside this package.
"""

from .blocks import Blocks, block_decomposition, order_by_blocks, peel_blocks
from .config import MoleculeConfig
from .datasets import QM9_PROPERTIES, MoleculeDataset, from_smiles, load_moses, load_qm9, load_zinc250k, qm9_split, read_qm9_table
from .generator import ConditionError, MoleculeGenerator, molecule_properties
from .io import (
                 MoleculeRecords,
                 Skipped,
                 read_csv,
                 read_molecules,
                 read_parquet,
                 read_sdf,
                 read_smiles,
                 write_molecules,
                 write_sdf,
                 write_smiles,
)
from .metrics import FCDReference, MoleculeEvaluator, evaluate, fcd, sample_smiles
from .moses_metrics import MosesReference, load_filters, moses_metrics
from .network import PARDNet, PARDNetConfig
from .null_model import NullModel
from .own_data import read_own_molecules
from .pard import MoleculeTensors, pard_loss, sample_graphs, to_block_tensors
from .properties import PropertyPredictor, load_property_predictor
from .representation import (
                 AtomType,
                 MoleculeError,
                 MoleculeSpec,
                 MoleculeTooLargeError,
                 SmilesParseError,
                 UnknownAtomTypeError,
                 UnrepresentableMoleculeError,
                 UnsupportedBondError,
                 canonical_smiles,
                 from_dense,
                 to_dense,
)

__all__ = [
    "MoleculeGenerator", "MoleculeConfig", "ConditionError", "molecule_properties",
    "PARDNet", "PARDNetConfig", "MoleculeTensors", "pard_loss", "sample_graphs", "to_block_tensors",
    "AtomType", "MoleculeSpec", "MoleculeError", "SmilesParseError", "UnknownAtomTypeError",
    "MoleculeTooLargeError", "UnsupportedBondError", "UnrepresentableMoleculeError",
    "canonical_smiles", "to_dense", "from_dense",
    "MoleculeRecords", "Skipped", "read_molecules", "read_smiles", "read_csv", "read_sdf", "read_parquet",
    "read_own_molecules",
    "write_molecules", "write_smiles", "write_sdf",
    "MoleculeDataset", "QM9_PROPERTIES", "qm9_split", "read_qm9_table", "load_qm9", "load_moses",
    "load_zinc250k", "from_smiles",
    "Blocks", "peel_blocks", "block_decomposition", "order_by_blocks",
    "FCDReference", "MoleculeEvaluator", "evaluate", "fcd", "sample_smiles",
    "MosesReference", "moses_metrics", "load_filters",
    "NullModel", "PropertyPredictor", "load_property_predictor",
]
