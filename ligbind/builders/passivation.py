"""K+/Br− surface passivation of PbX2-terminated slabs (CsPbI3 and mixed CsPb(I1−xBrx)3), as a surface treatment.

Two modes, each adding ``n`` K+ per slab (one neutral K–Br unit each, so the slab stays neutral):

``hollow``
    A KBr unit adsorbed on the PbX2 surface where the next AX layer would sit: K+ at an A-type hollow (above
    the centre of four surface Pb, one layer spacing above the top layer) and its Br− at an X site of that
    layer (atop one of the four surface Pb around the K, one layer spacing up). Both carry tag 1 (they are
    an adsorbate, like a ligand), so the passivated slab is still PbX2-terminated and is a valid host for
    the Frenkel (and vacancy/NEB) builders, which keep interstitials away from adsorbate atoms.

``substitute``
    K+ replaces a *surface Cs*. On a PbX2-terminated slab there is no Cs in the top layer; the surface Cs are
    those of the AX layer just below it (each sits under a hollow of the top PbX2 layer and is the outermost
    A cation). The charge is balanced by the Cs+ leaving, so the K–Br unit's Br− goes onto the surface
    X sites instead: by default one top-layer I nearest the K is replaced by Br (net: KBr in, CsI out).

In both modes ``exchange`` more top-layer I nearest the K (among the 4 top-layer X sites around its A site) may be replaced
by Br (each exchange is KBr in, KI out in the passivation energy). Arrangements (choice of K sites, Br sites
and exchanged I) are enumerated exhaustively and reduced to one per orbit under the symmetry operations of
the host (spglib, through :func:`ligbind.builders.slab.surface_symmetry`, keeping the top surface on top), so
that two arrangements returned are never related by a symmetry of the host. The enumeration order is fixed;
when more distinct arrangements exist than asked for, a subset is chosen with ``seed`` (deterministic).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from ligbind.builders.slab import HALIDES, check_pbi2_terminated, surface_pb, surface_symmetry
from ligbind.errors import LigbindError

MODES = ("hollow", "substitute")
NEIGHBOURS = 4  # top-layer X sites (and surface Pb) around one A site of the (001) face: a K's neighbours
MATCH_TOLERANCE = 0.4  # Å: a site mapped by a symmetry operation lands this close to its image site
MAX_ENUMERATED = 20000  # arrangements enumerated before symmetry reduction (a guard, far above 2x2 needs)
ADSORBATE_TAG = 1
PB_PB_RANGE = (5.0, 7.5)  # Å: nearest-neighbour Pb–Pb distance in the (001) PbX2 layer (≈ 6.3 Å)

Arrangement = tuple[tuple[str, int], ...]
"""A set of (site kind, site id) pairs: kinds "K-hollow", "Br-atop", "K-for-Cs", "Br-for-I"."""


def layer_spacing(atoms: Atoms, layers: list[np.ndarray]) -> float:
    """Mean z distance between the top layer and the one below it (Å); the bulk value for a 1-layer slab."""
    if len(layers) < 2:
        return 3.15
    z = atoms.positions[:, 2]
    return float(z[layers[-1]].mean() - z[layers[-2]].mean())


def passivation_sites(atoms: Atoms, mode: str) -> dict[str, np.ndarray]:
    """Candidate sites of each kind on the host: positions (hollow, atop) or atom indices (Cs, I).

    Parameters
    ----------
    atoms : ase.Atoms
        PbX2-terminated slab (checked).
    mode : str
        ``hollow`` or ``substitute``.

    Returns
    -------
    dict
        ``{"K-hollow": (m, 3) positions, "Br-atop": (p, 3) positions}`` (hollow) or
        ``{"K-for-Cs": Cs indices}`` (substitute), and always ``"Br-for-I"``: top-layer I indices.

    Raises
    ------
    LigbindError
        Unknown mode, or a substitution on a slab without surface Cs (e.g. MAPbI3).
    """
    if mode not in MODES:
        raise LigbindError(f"unknown passivation mode '{mode}' (hollow or substitute)")
    layers = check_pbi2_terminated(atoms)
    symbols = np.array(atoms.get_chemical_symbols())
    slab_atoms = atoms.get_tags() == 0
    top = layers[-1]
    sites: dict[str, np.ndarray] = {
        "Br-for-I": np.array([i for i in top if symbols[i] == "I"], dtype=int),
        "X-top": np.array(
            [i for i in top if symbols[i] in HALIDES], dtype=int
        ),  # to find the nearest X sites
    }
    spacing = layer_spacing(atoms, layers)
    z_next = float(atoms.positions[top, 2].mean()) + spacing
    if mode == "hollow":
        pbs = surface_pb(atoms, layers)
        sites["K-hollow"] = _square_centres(atoms, pbs, z_next)
        sites["Br-atop"] = atoms.positions[pbs] + [0.0, 0.0, spacing]
    else:
        below = layers[-2] if len(layers) > 1 else np.array([], dtype=int)
        cs = np.array([i for i in below if symbols[i] == "Cs" and slab_atoms[i]], dtype=int)
        if not len(cs):
            material = atoms.info.get("material", atoms.get_chemical_formula())
            raise LigbindError(
                f"substitute mode needs a surface Cs (the AX layer under the top PbX2 layer) to replace by K; "
                f"{material} has none there: use --mode hollow"
            )
        sites["K-for-Cs"] = cs
    return sites


def _square_centres(atoms: Atoms, pbs: np.ndarray, z: float) -> np.ndarray:
    """Centres of the squares of surface Pb (the A-type hollows), at height ``z``, each once.

    From each Pb, a centre is half the sum of two roughly perpendicular nearest-neighbour Pb–Pb vectors.
    """
    centres: list[np.ndarray] = []
    for p in pbs:
        vecs, dists = find_mic(atoms.positions[pbs] - atoms.positions[p], atoms.cell, atoms.pbc)
        near = [v for v, d in zip(vecs, dists, strict=True) if PB_PB_RANGE[0] < d < PB_PB_RANGE[1]]
        near += [-v for v in near]  # on a 2-wide cell the neighbour on either side is one atom
        for v, w in itertools.combinations(near, 2):
            if abs(np.dot(v, w)) > 0.35 * np.linalg.norm(v) * np.linalg.norm(w):
                continue  # not perpendicular (|cos| > 0.35): not two sides of one square
            centre = atoms.positions[p] + (v + w) / 2
            centre[2] = z
            if all(_distance(atoms, centre, c) > 1.0 for c in centres):
                centres.append(centre)
    return np.array(centres).reshape(-1, 3)


def _position(atoms: Atoms, sites: dict[str, np.ndarray], kind: str, site: int) -> np.ndarray:
    value = sites[kind][site]
    return atoms.positions[int(value)] if np.ndim(value) == 0 else np.asarray(value)


def _distance(atoms: Atoms, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(find_mic(b - a, atoms.cell, atoms.pbc)[0]))


def _nearest(atoms: Atoms, sites: dict[str, np.ndarray], kind: str, centre: np.ndarray) -> list[int]:
    """Ids of the :data:`NEIGHBOURS` sites of ``kind`` nearest ``centre`` (minimum image)."""
    d = [_distance(atoms, centre, _position(atoms, sites, kind, j)) for j in range(len(sites[kind]))]
    return [int(j) for j in np.argsort(d, kind="stable")[:NEIGHBOURS]]


def _nearest_iodides(atoms: Atoms, sites: dict[str, np.ndarray], centre: np.ndarray) -> list[int]:
    """Ids (in ``sites["Br-for-I"]``) of the I among the top-layer X sites nearest ``centre``."""
    iodide_id = {int(i): j for j, i in enumerate(sites["Br-for-I"])}
    return [
        iodide_id[x]
        for x in (int(sites["X-top"][j]) for j in _nearest(atoms, sites, "X-top", centre))
        if x in iodide_id
    ]


def _enumerate(atoms: Atoms, sites: dict[str, np.ndarray], mode: str, n: int, exchange: int) -> Iterator:
    """Every arrangement (sorted tuple of (kind, id)) of ``n`` K with their Br and ``exchange`` extra Br."""
    k_kind = "K-hollow" if mode == "hollow" else "K-for-Cs"
    for ks in itertools.combinations(range(len(sites[k_kind])), n):
        centres = [_position(atoms, sites, k_kind, k) for k in ks]
        near_i = sorted({j for c in centres for j in _nearest_iodides(atoms, sites, c)})
        if mode == "hollow":
            br_choices = [_nearest(atoms, sites, "Br-atop", c) for c in centres]
            unit_brs = [b for b in itertools.product(*br_choices) if len(set(b)) == len(b)]
        else:
            unit_brs = [()]
        for brs in unit_brs:
            for swapped in itertools.combinations(near_i, exchange):
                yield tuple(
                    sorted(
                        [(k_kind, k) for k in ks]
                        + [("Br-atop", b) for b in brs]
                        + [("Br-for-I", i) for i in swapped]
                    )
                )


def _site_permutations(atoms: Atoms, sites: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """For each surface symmetry operation of the host, where it sends each site id of each kind."""
    cell = atoms.cell.array
    inv = np.linalg.inv(cell)
    frac = {
        kind: np.array([_position(atoms, sites, kind, j) for j in range(len(ids))]).reshape(-1, 3) @ inv
        for kind, ids in sites.items()
    }
    perms = []
    for rot, trans in surface_symmetry(atoms):
        perm = {}
        for kind, f in frac.items():
            image = f @ rot.T + trans
            d = image[:, None, :] - f[None, :, :]
            d -= np.round(d)
            dist = np.linalg.norm(d @ cell, axis=2)
            target = dist.argmin(axis=1)
            if len(f) and (dist[np.arange(len(f)), target] > MATCH_TOLERANCE).any():
                break  # the operation does not map this set of sites onto itself (tolerance): not used
            perm[kind] = target
        else:
            perms.append(perm)
    return perms


def _canonical(arrangement: Arrangement, perms: list[dict[str, np.ndarray]]) -> Arrangement:
    """The smallest image of ``arrangement`` under the host's symmetry operations (one per orbit)."""
    return min(tuple(sorted((kind, int(p[kind][j])) for kind, j in arrangement)) for p in perms)


def distinct_arrangements(
    atoms: Atoms, mode: str, n: int = 1, exchange: int | None = None
) -> list[Arrangement]:
    """Symmetry-distinct passivation arrangements of the host, in a fixed order.

    Parameters
    ----------
    atoms : ase.Atoms
        PbX2-terminated host slab.
    mode : str
        ``hollow`` or ``substitute``.
    n : int
        K+ per slab.
    exchange : int, optional
        Top-layer I next to the K replaced by Br; default 0 (hollow: the K–Br unit's own Br balances the K)
        or ``n`` (substitute: one Br per K, so that the K–Br unit replaces a Cs–I unit).

    Returns
    -------
    list of Arrangement
        One arrangement per orbit (the first one met), enumeration order.

    Raises
    ------
    LigbindError
        Unknown mode, ``n`` < 1 or larger than the sites, too many exchanges, or no surface Cs.
    """
    sites = passivation_sites(atoms, mode)
    exchange = default_exchange(mode, n) if exchange is None else exchange
    _check_counts(atoms, sites, mode, n, exchange)
    perms = _site_permutations(atoms, sites)
    seen: dict[Arrangement, Arrangement] = {}
    for count, arrangement in enumerate(_enumerate(atoms, sites, mode, n, exchange)):
        if count >= MAX_ENUMERATED:
            raise LigbindError(
                f"more than {MAX_ENUMERATED} passivation arrangements on this slab: use a smaller n or exchange"
            )
        seen.setdefault(_canonical(arrangement, perms), arrangement)
    if not seen:
        raise LigbindError(
            f"no {mode} arrangement of {n} K with {exchange} exchanged I fits on this slab "
            f"(each K needs its own neighbouring sites)"
        )
    return list(seen.values())


def default_exchange(mode: str, n: int) -> int:
    """Default number of top-layer I replaced by Br: 0 for ``hollow``, ``n`` for ``substitute``."""
    return 0 if mode == "hollow" else n


def _check_counts(atoms: Atoms, sites: dict[str, np.ndarray], mode: str, n: int, exchange: int) -> None:
    k_kind = "K-hollow" if mode == "hollow" else "K-for-Cs"
    if n < 1:
        raise LigbindError(f"bad number of K per slab {n}: need at least 1")
    if n > len(sites[k_kind]):
        what = "A-type hollows" if mode == "hollow" else "surface Cs"
        raise LigbindError(f"{n} K per slab is too many: this slab has {len(sites[k_kind])} {what}")
    if mode == "hollow" and n > len(sites["Br-atop"]):
        raise LigbindError(f"{n} K–Br units is too many: this slab has {len(sites['Br-atop'])} surface Pb")
    if exchange < 0:
        raise LigbindError(f"bad number of exchanged I {exchange}: must be 0 or more")
    if exchange > len(sites["Br-for-I"]):
        raise LigbindError(
            f"{exchange} exchanged I is too many: the top layer has {len(sites['Br-for-I'])} I sites"
        )


def passivate(
    atoms: Atoms,
    mode: str = "hollow",
    n: int = 1,
    exchange: int | None = None,
    seed: int = 0,
    max_arrangements: int | None = None,
) -> list[Atoms]:
    """K+/Br−-passivated copies of a PbX2-terminated slab, one per symmetry-distinct arrangement.

    Parameters
    ----------
    atoms : ase.Atoms
        The host: a PbX2-terminated slab (pure or mixed halide), usually already relaxed.
    mode : str
        ``hollow`` (adsorbed K–Br unit) or ``substitute`` (K for a surface Cs); see the module docstring.
    n : int
        K+ per slab.
    exchange : int, optional
        Top-layer I nearest the K replaced by Br (default: 0 for hollow, ``n`` for substitute).
    seed : int
        Chooses which distinct arrangements are returned when there are more than ``max_arrangements``.
    max_arrangements : int, optional
        Most structures returned (default: all distinct ones).

    Returns
    -------
    list of ase.Atoms
        ``info``: that of ``atoms`` plus kind ("passivated"), treatment (``KBr-hollow``/``KBr-substitute``),
        passivation_mode, n_k, n_br (Br added: adsorbed + exchanged), exchange, k_indices, br_indices
        (adsorbed and exchanged Br), replaced (indices whose species changed), sites (the arrangement),
        arrangement (its number), n_distinct, seed. Added atoms carry tag 1, substituted ones keep tag 0.

    Raises
    ------
    LigbindError
        Bad mode or counts (see :func:`distinct_arrangements`), or ``max_arrangements`` < 1.
    """
    if max_arrangements is not None and max_arrangements < 1:
        raise LigbindError(f"bad number of arrangements {max_arrangements}: need at least 1")
    exchange = default_exchange(mode, n) if exchange is None else exchange
    arrangements = distinct_arrangements(atoms, mode, n, exchange)
    numbered = list(enumerate(arrangements))
    if max_arrangements is not None and len(numbered) > max_arrangements:
        chosen = np.random.default_rng(seed).choice(len(numbered), size=max_arrangements, replace=False)
        numbered = [numbered[i] for i in sorted(chosen)]
    sites = passivation_sites(atoms, mode)
    return [
        _build(atoms, sites, mode, arrangement, k, len(arrangements), exchange, seed)
        for k, arrangement in numbered
    ]


def _build(
    host: Atoms,
    sites: dict[str, np.ndarray],
    mode: str,
    arrangement: Arrangement,
    number: int,
    n_distinct: int,
    exchange: int,
    seed: int,
) -> Atoms:
    """The passivated structure of one arrangement."""
    out = host.copy()
    symbols = out.get_chemical_symbols()
    k_idx, br_idx, replaced = [], [], []
    for kind, j in arrangement:
        if kind in ("K-for-Cs", "Br-for-I"):
            i = int(sites[kind][j])
            symbols[i] = kind[0] if kind == "K-for-Cs" else "Br"
            (k_idx if kind == "K-for-Cs" else br_idx).append(i)
            replaced.append(i)
    out.set_chemical_symbols(symbols)
    for kind, j in arrangement:
        if kind in ("K-hollow", "Br-atop"):
            element = "K" if kind == "K-hollow" else "Br"
            (k_idx if element == "K" else br_idx).append(len(out))
            out += Atoms(element, positions=[sites[kind][j]], tags=[ADSORBATE_TAG])
    out.set_constraint(host.constraints)  # added atoms are free; slab atoms keep their indices
    treatment = f"KBr-{mode}"
    out.info = {
        **host.info,
        "kind": "passivated",
        "treatment": treatment,
        "passivation_mode": mode,
        "n_k": len(k_idx),
        "n_br": len(br_idx),
        "exchange": exchange,
        "k_indices": sorted(k_idx),
        "br_indices": sorted(br_idx),
        "replaced": sorted(replaced),
        "sites": [[kind, int(j)] for kind, j in arrangement],
        "arrangement": number,
        "n_distinct": n_distinct,
        "seed": seed,
        "label": f"passivation:{treatment}:n{len(k_idx)}:x{exchange}:{number}",
    }
    return out
