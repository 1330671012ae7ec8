"""3D molecules: QM9 with hydrogens and DFT geometries, EDM-style metrics, conformer metrics.

- ``representation.py``: :class:`ElementVocabulary`, :class:`Molecule3D` tensors (element
  indices, formal charges, positions in Å) <-> RDKit Mols with bonds perceived from 3D
  (RDKit's ``rdDetermineBonds`` or EDM's bond-length table), PyG ``Data``, XYZ and SDF.
- ``datasets.py``: QM9 3D (DiGress split, properties, atom-count histogram, cached tensors)
  and your own XYZ / SDF files.
- ``metrics.py``: EDM's atom / molecule stability, validity / uniqueness / novelty, conformer
  RMSD with COV / MAT (recall and precision), the ETKDG(+MMFF) baseline and MMFF energies.
- ``config.py``, ``network.py``, ``generator.py``: the EDM-style generator
  (:class:`Molecule3DGenerator`: positions in the zero centre-of-mass subspace and scaled
  one-hot atom types diffused together, an EGNN denoiser, any core solver, a property
  condition with classifier-free guidance), registered as the domain ``molecules3d``.

RDKit and torch-geometric are imported only inside this package. It reuses the 2D
molecules domain's split, SMILES canonicalization, validity helpers and file helpers.
"""

from .config import QM9_PROPERTIES, Molecule3DConfig, Molecule3DDataConfig, Molecule3DDiffusionConfig, Molecule3DModelConfig
from .datasets import (
    Molecules3DDataset,
    atom_count_histogram,
    from_mols,
    load_qm9_3d,
    read_molecules3d,
    read_qm9_properties,
    read_qm9_xyz,
    read_qm9pack,
    read_sdf3d,
    read_xyz,
    sample_atom_counts,
)
from .generator import GeneratedMolecules, Molecule3DGenerator
from .metrics import (
    EDM_ALLOWED_VALENCES,
    RelaxationResult,
    best_rmsd,
    coverage_matching,
    edm_mols,
    edm_smiles,
    edm_stability,
    edm_stable_atoms,
    etkdg_conformers,
    evaluate,
    mmff_relaxation,
    rdkit_metrics,
    rmsd_matrix,
)
from .representation import (
    EDM_BOND_LENGTHS,
    EDM_MARGINS,
    QM9_ELEMENTS,
    BondMethod,
    BondPerceptionError,
    ElementVocabulary,
    Molecule3D,
    NoConformerError,
    arrays_to_mol,
    edm_bond_orders,
    from_xyz_block,
    heavy_smiles,
    mol_to_arrays,
    perceive_bonds,
    to_pyg,
    to_sdf,
)

__all__ = [
    "Molecule3DGenerator", "GeneratedMolecules", "Molecule3DConfig", "Molecule3DDataConfig", "Molecule3DModelConfig",
    "Molecule3DDiffusionConfig", "QM9_PROPERTIES",
    "ElementVocabulary", "QM9_ELEMENTS", "Molecule3D", "BondMethod", "NoConformerError", "BondPerceptionError",
    "mol_to_arrays", "arrays_to_mol", "perceive_bonds", "edm_bond_orders", "EDM_BOND_LENGTHS", "EDM_MARGINS",
    "to_pyg", "from_xyz_block", "to_sdf", "heavy_smiles",
    "Molecules3DDataset", "load_qm9_3d", "read_qm9_xyz", "read_qm9pack", "read_qm9_properties",
    "atom_count_histogram", "sample_atom_counts", "from_mols", "read_xyz", "read_sdf3d", "read_molecules3d",
    "EDM_ALLOWED_VALENCES", "edm_stable_atoms", "edm_stability", "edm_mols", "edm_smiles", "rdkit_metrics", "evaluate",
    "best_rmsd", "rmsd_matrix", "coverage_matching", "etkdg_conformers", "RelaxationResult", "mmff_relaxation",
]
