"""Ligands: the public names of the ligand builder, re-exported from the modules that define them.

- :mod:`ligbind.builders.library`: :class:`LigandEntry`, the YAML library (shipped + ``$LIGBIND_LIGANDS``),
  validation, :func:`resolve_ligand`.
- :mod:`ligbind.builders.polymer`: :func:`polymer_smiles` for the amidated PMAO repeat units.
- :mod:`ligbind.builders.truncation`: :func:`truncate_alkyl`.
- :mod:`ligbind.builders.conformers`: RDKit 3D conformers (:func:`ligand_conformers`, :func:`build_ligand`).
- :mod:`ligbind.builders.smiles`: SMILES/SMARTS helpers (anchor elements, atom counts).

``from ligbind.builders.ligands import ...`` keeps working for every name below.
"""

from __future__ import annotations

from ligbind.builders.conformers import _CONFORMER_CACHE as _CONFORMER_CACHE  # cleared by benchmarks
from ligbind.builders.conformers import RMS_PRUNE, build_ligand, ligand_conformers
from ligbind.builders.library import (
    LIBRARY_ENV,
    LigandEntry,
    library_path,
    library_paths,
    load_library,
    resolve_ligand,
    user_library_paths,
    validate_entry,
)
from ligbind.builders.polymer import (
    DEFAULT_TAIL_CARBONS,
    OCTADECENE_TAIL,
    POLYMER_AMIDES,
    polymer_smiles,
)
from ligbind.builders.smiles import ANCHOR_ELEMENTS, AUTO_ANCHORS, smiles_atom_count
from ligbind.builders.truncation import truncate_alkyl

__all__ = [
    "ANCHOR_ELEMENTS",
    "AUTO_ANCHORS",
    "DEFAULT_TAIL_CARBONS",
    "LIBRARY_ENV",
    "OCTADECENE_TAIL",
    "POLYMER_AMIDES",
    "RMS_PRUNE",
    "LigandEntry",
    "build_ligand",
    "library_path",
    "library_paths",
    "ligand_conformers",
    "load_library",
    "polymer_smiles",
    "resolve_ligand",
    "smiles_atom_count",
    "truncate_alkyl",
    "user_library_paths",
    "validate_entry",
]
