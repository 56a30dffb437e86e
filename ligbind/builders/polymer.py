"""Repeat units of amidated poly(maleic anhydride-alt-1-octadecene) (PMAO) as SMILES.

Library entries with a ``polymer`` key (PP, HP, DP with n repeat units) are generated here rather than
typed by hand, so that every amide and every n is the same stereoisomer with the same end caps.
"""

from __future__ import annotations

from ligbind.errors import LigbindError

POLYMER_AMIDES = {"phenyl": "c1ccccc1", "hexyl": "CCCCCC", "decyl": "CCCCCCCCCC"}
"""R of the C(=O)NR2 amide in the amidated poly(maleic anhydride-alt-1-octadecene) units."""

OCTADECENE_TAIL = 16
"""Carbons in the full side chain of 1-octadecene (C16H33)."""

DEFAULT_TAIL_CARBONS = 4
"""Carbons kept of the C16 side chain unless a library entry says otherwise."""


def polymer_smiles(amide: str, n: int, tail_carbons: int = DEFAULT_TAIL_CARBONS) -> str:
    """SMILES of n repeat units of amidated poly(maleic anhydride-alt-1-octadecene).

    Repeat unit CH(COOH)-CH(C(=O)NR2)-CH2-CH(tail); the C16 octadecene tail is cut to ``tail_carbons``
    carbons and capped with H; both backbone ends are capped with methyl. Stereocentres are written
    explicitly (one fixed configuration, the same for every amide).

    Parameters
    ----------
    amide : str
        "phenyl", "hexyl" or "decyl" (R of the NR2 amide).
    n : int
        Number of repeat units (>= 1).
    tail_carbons : int
        Carbons kept of the C16 side chain (0-16).

    Returns
    -------
    str
        The SMILES.

    Raises
    ------
    LigbindError
        Unknown amide, or ``n`` / ``tail_carbons`` out of range or not integers.
    """
    if amide not in POLYMER_AMIDES:
        raise LigbindError(f"unknown polymer amide '{amide}' (choose from {', '.join(POLYMER_AMIDES)})")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LigbindError(f"polymer repeat units n must be an integer >= 1, got {n!r}")
    if (
        isinstance(tail_carbons, bool)
        or not isinstance(tail_carbons, int)
        or not (0 <= tail_carbons <= OCTADECENE_TAIL)
    ):
        raise LigbindError(
            f"polymer tail_carbons must be an integer 0-{OCTADECENE_TAIL}, got {tail_carbons!r}"
        )
    r = POLYMER_AMIDES[amide]
    # one fixed relative configuration (the atactic polymer has all of them), written identically for every
    # amide so that PP, HP and DP units are the same stereoisomer and conformers are never mixed isomers
    tail = f"[C@H]({'C' * tail_carbons})" if tail_carbons else "C"
    unit = f"[C@H](C(=O)O)[C@@H](C(=O)N({r}){r})C{tail}"
    return "C" + unit * n + "C"
