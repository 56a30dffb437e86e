"""The slab atoms an exchange-mode placement took out, and atom numbering between the bare slab and a host that
lacks them: one place for both directions.

An exchange complex (TMSBr's Br− on a surface I site; an A-site cation exchange) is its slab less the exchanged
atoms plus the adsorbate, so every slab atom past a removed one moves down by one in the complex's numbering.
Placement records the removed atoms in ``info['exchanged_indices']`` (indices in the bare slab); complexes placed
before that name only the removed atom's position (``info['exchanged_position']``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from ase import Atoms

from ligbind.errors import LigbindError


def exchanged_atoms(complex_: Atoms, slab: Atoms) -> list[int]:
    """Indices in ``slab`` of the atoms the exchange took out (empty for a neutral complex).

    Raises
    ------
    LigbindError
        A complex placed before the indices were recorded whose recorded position matches no slab atom.
    """
    if "exchanged_indices" in complex_.info:
        return [int(i) for i in json.loads(complex_.info["exchanged_indices"])]
    if "exchanged_position" not in complex_.info:
        return []
    position = np.array(json.loads(complex_.info["exchanged_position"]))
    distance = np.linalg.norm(slab.positions - position, axis=1)
    if distance.min() > 1e-3:  # exact for the single atom (a halide, a Cs) such complexes exchanged
        raise LigbindError(
            "cannot tell which slab atoms the exchange took out (complex placed by an older ligbind): "
            "screen the campaign again in a new directory"
        )
    return [int(distance.argmin())]


def recorded_exchange(info: dict[str, Any]) -> list[int]:
    """The exchanged atoms a host's ``info`` records (empty when it records none)."""
    return [int(i) for i in json.loads(info.get("exchanged_indices", "[]"))]


def to_host_numbering(indices: Iterable[int], removed: Iterable[int]) -> tuple[int, ...]:
    """Bare-slab atom ``indices`` (none of them removed) in the numbering of a host lacking the ``removed``
    bare-slab atoms."""
    removed = list(removed)
    return tuple(i - sum(r < i for r in removed) for i in indices)


def to_bare_numbering(index: int, removed: Iterable[int]) -> int:
    """A host's atom ``index`` in the bare slab's numbering (the inverse of :func:`to_host_numbering`)."""
    for r in sorted(removed):
        if r <= index:
            index += 1
    return index
