"""The crystals domain: periodic structures for structure prediction and de novo generation.

- ``generator.py``: :class:`CrystalGenerator` (fit / sample / evaluate / save / load).
- ``network.py``: :class:`CSPNet`, the periodic E(3)-invariant denoiser (DiffCSP style).
- ``diffcsp.py``: the crystal's joint process (lattice / coordinates / types), loss and PC sampling.
- ``metrics/``: CDVAE / DiffCSP metrics (validity, CSP matching, de novo distributions).
- ``representation.py``: pymatgen ``Structure`` <-> tensors, CDVAE's canonical cells, errors.
- ``io.py``: CIF, CDVAE CSV and extxyz in and out; ``datasets.py``: the CDVAE benchmarks and your own files.

pymatgen and SMACT are imported only inside this package.
"""

from .config import CrystalConfig
from .datasets import load_cdvae, load_crystals, read_own_crystals
from .generator import CrystalGenerator
from .io import CrystalRecords, read_cdvae_csv, read_cif, read_extxyz, read_structures, write_cif, write_structures
from .network import CSPNet, CSPNetConfig
from .representation import (
    CifParseError,
    CrystalError,
    CrystalSpec,
    CrystalTensors,
    CrystalTooLargeError,
    PartialOccupancyError,
    UnknownElementError,
    from_tensors,
    to_tensors,
)
from .screening import CrystalSamples, screening_table
from .symmetry import SpaceGroupError, space_group, space_group_distribution, space_group_rate

__all__ = [
    "CrystalGenerator", "CrystalConfig", "CSPNet", "CSPNetConfig",
    "load_cdvae", "load_crystals", "read_own_crystals", "CrystalRecords", "read_cdvae_csv", "read_cif", "read_extxyz",
    "read_structures",
    "write_cif", "write_structures",
    "CrystalError", "CifParseError", "PartialOccupancyError", "UnknownElementError", "CrystalTooLargeError",
    "CrystalSpec", "CrystalTensors", "to_tensors", "from_tensors",
    "CrystalSamples", "screening_table", "SpaceGroupError", "space_group", "space_group_rate", "space_group_distribution",
]
