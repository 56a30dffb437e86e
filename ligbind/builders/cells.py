"""``size: auto``: the smallest n×n slab on which every ligand of a campaign can be placed.

A ligand fits a cell when :func:`ligbind.builders.placement.place_ligand` finds a configuration there: that is
the placement's own test (anchors at bond length, clear of the slab, above the top layer, and clear of the
ligand's own periodic images), not a second copy of it. Sizes the phase cannot build (odd repeats of a tilted
cell) are skipped. All ligands then share the cell, so that Eb of the n = 1 and n = 2 polymer units compare.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ase import Atoms

from ligbind.builders.library import LigandEntry
from ligbind.errors import LigbindError

AUTO = "auto"
MAX_AUTO_REPEATS = 6  # a 6x6 three-layer slab has ~300 atoms: beyond that no ligand here needs more


def is_auto(size) -> bool:
    """Whether a slab size asks for automatic sizing."""
    return isinstance(size, str) and size.strip().lower() == AUTO


def fits(slab: Atoms, entry: LigandEntry, mode: str = "neutral", seed: int = 0) -> bool:
    """Whether ``entry`` can be placed on ``slab`` (one clash-free configuration, images included)."""
    from ligbind.builders.placement import place_ligand

    try:
        place_ligand(slab, entry, n_configs=1, mode=mode, seed=seed)
    except LigbindError:
        return False
    return True


def smallest_fitting_size(
    make_slab: Callable[[int], Atoms],
    ligands: Sequence[tuple[LigandEntry, str]],
    start: int = 2,
    largest: int = MAX_AUTO_REPEATS,
    seed: int = 0,
) -> tuple[int, dict[str, int]]:
    """The smallest n (n×n) on which every ligand fits, and the smallest n of each ligand.

    Parameters
    ----------
    make_slab
        n → the n×n slab (raises LigbindError for sizes the phase cannot build; those are skipped).
    ligands
        (entry, binding mode) pairs.

    Raises
    ------
    LigbindError
        A ligand that fits no cell up to ``largest``×``largest``.
    """
    smallest: dict[str, int] = {}
    pending = list(ligands)
    for n in range(start, largest + 1):
        try:
            slab = make_slab(n)
        except LigbindError:
            continue  # e.g. 3x3 of a tilted (tetragonal) cell
        still = []
        for entry, mode in pending:
            if fits(slab, entry, mode, seed):
                smallest[entry.name] = n
            else:
                still.append((entry, mode))
        pending = still
        if not pending:
            return max(smallest.values(), default=start), smallest
    names = ", ".join(e.name for e, _ in pending)
    raise LigbindError(f"size auto: {names} fits no slab up to {largest}x{largest}")
