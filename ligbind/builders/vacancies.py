"""Surface halide vacancies and the endpoints of a halide hop into a vacancy (pure builders).

Any PbX2-terminated host works: the bare slab, a ligand@slab complex (ligand atoms tagged > 0), or a slab
some other surface treatment built (e.g. K–Br passivation), as long as its top layer is PbX2. A vacancy removes
one top-layer halide; sites are enumerated one per set of sites related by a symmetry of the host (spglib,
operations that keep the top face on top), nearest a bound ligand's anchor first when the host has one.

A hop moves a neighbouring top-layer halide of the same element into the vacancy: the initial state has the
vacancy at ``site``, the final state has it where the hopping halide was. Both keep the same atom order, so
that an NEB can interpolate between them (with the minimum-image convention, because the shortest hop may
cross the cell edge).
"""

from __future__ import annotations

import json

import numpy as np
from ase import Atoms
from ase.geometry import find_mic
from scipy.optimize import linear_sum_assignment

from ligbind.builders.slab import HALIDES, surface_halides, surface_symmetry, symmetry_rmsd
from ligbind.errors import LigbindError

MAX_HOP = 5.5  # Å: longest hop accepted (nearest in-plane X–X on PbX2 (001) ≈ 4.2–4.6 Å; next ≈ 6.3 Å)
X2_BOND = {"I": 2.666, "Br": 2.281, "Cl": 1.988}  # Å, gas-phase X2 bond lengths (NIST CCCBDB): start only


def _ligand_reference_points(host: Atoms) -> np.ndarray:
    """Positions of the bound ligand's anchors (or all its heavy atoms if none is recorded); empty if bare."""
    sites = json.loads(host.info.get("anchor_sites", "[]") or "[]")
    ligand = np.where(host.get_tags() > 0)[0]
    if sites:
        return host.positions[[int(s["anchor"]) for s in sites]]
    heavy = [i for i in ligand if host[i].symbol != "H"]
    return host.positions[heavy] if heavy else np.zeros((0, 3))


def distance_to_ligand(host: Atoms, index: int) -> float:
    """Minimum-image distance (Å) from atom ``index`` to the nearest anchor of the ligand (inf if bare)."""
    points = _ligand_reference_points(host)
    if not len(points):
        return float("inf")
    d = find_mic(points - host.positions[index], host.cell, host.pbc)[1]
    return float(np.min(d))


def check_surface_halide(host: Atoms, site: int) -> None:
    """Raise unless ``site`` is a halide of the top layer of ``host``.

    Raises
    ------
    LigbindError
        Naming the site and the valid ones.
    """
    halides = surface_halides(host)
    if site not in set(int(i) for i in halides):
        if not 0 <= site < len(host):
            what = f"no such atom: {len(host)} atoms"
        elif host[site].symbol in HALIDES:
            what = f"{host[site].symbol} below the top layer"
        else:
            what = f"{host[site].symbol}, not a halide"
        raise LigbindError(
            f"site {site} is not a top-surface halide ({what}); top-surface halides: "
            f"{', '.join(str(int(i)) for i in halides)}"
        )


def surface_halide_sites(host: Atoms, max_sites: int | None = None) -> list[int]:
    """Symmetry-distinct top-surface halide indices of ``host``.

    Parameters
    ----------
    host : ase.Atoms
        A PbX2-terminated slab, bare or with an adsorbate (tags > 0).
    max_sites : int, optional
        Most sites returned.

    Returns
    -------
    list of int
        One index per symmetry class, nearest a ligand anchor first (a bare host: ascending index, alternating
        between elements so that a few sites of a mixed-halide slab cover each halide).
    """
    halides = [int(i) for i in surface_halides(host)]
    halides.sort(key=lambda i: (round(distance_to_ligand(host, i), 2), i))
    ops = surface_symmetry(host)
    chosen: list[int] = []
    for i in halides:
        same = [
            j
            for j in chosen
            if host[j].symbol == host[i].symbol
            and symmetry_rmsd(host.positions[[j]], host.positions[[i]], host.cell.array, ops) < 0.3
        ]
        if not same:
            chosen.append(i)
    if not len(_ligand_reference_points(host)):  # bare: alternate elements (mixed halides: I, Br, I, ...)
        by_element: dict[str, list[int]] = {}
        for i in chosen:
            by_element.setdefault(host[i].symbol, []).append(i)
        queues = [by_element[el] for el in sorted(by_element, key=lambda e: min(by_element[e]))]
        chosen = [q[k] for k in range(max(map(len, queues), default=0)) for q in queues if k < len(q)]
    return chosen[:max_sites] if max_sites else chosen


def _shifted_info(info: dict, removed: int) -> dict:
    """``info`` with the atom indices recorded in ``anchor_sites`` renumbered after deleting ``removed``."""
    out = dict(info)
    if out.get("anchor_sites"):
        sites = json.loads(out["anchor_sites"])
        for s in sites:
            for k in ("anchor", "pb"):
                if k in s and int(s[k]) > removed:
                    s[k] = int(s[k]) - 1
        out["anchor_sites"] = json.dumps(sites)
    return out


def make_vacancy(host: Atoms, site: int) -> Atoms:
    """``host`` with the top-surface halide ``site`` removed (constraints, tags and anchors renumbered).

    Returns
    -------
    ase.Atoms
        ``info``: that of ``host`` plus kind ("defect"), defect ("vacancy"), site (index in the host),
        element, site_position (Å, the vacant site) and near_ligand (Å to the nearest ligand anchor, or -1).
    """
    check_surface_halide(host, site)
    defect = host.copy()
    del defect[site]
    near = distance_to_ligand(host, site)
    defect.info = {
        **_shifted_info(host.info, site),
        "kind": "defect",
        "defect": "vacancy",
        "site": int(site),
        "element": host[site].symbol,
        "site_position": json.dumps([round(float(v), 4) for v in host.positions[site]]),
        "near_ligand": round(near, 3) if np.isfinite(near) else -1.0,
    }
    return defect


RESTORE_CLEARANCE = 1.5  # Å: a site with another atom this close is taken (a defect cannot be undone there)


def site_taken(atoms: Atoms, position: np.ndarray, skip: int | None = None) -> bool:
    """Whether an atom of ``atoms`` (other than ``skip``) sits within :data:`RESTORE_CLEARANCE` of
    ``position`` (minimum image)."""
    others = np.delete(np.arange(len(atoms)), skip) if skip is not None else np.arange(len(atoms))
    d = np.linalg.norm(find_mic(atoms.positions[others] - position, atoms.cell, atoms.pbc)[0], axis=1)
    return bool(d.min() < RESTORE_CLEARANCE)


def refill_vacancy(vacancy: Atoms, host: Atoms, site: int) -> Atoms | None:
    """A pristine start from a relaxed vacancy: ``host`` with every atom where the vacancy relaxed it and the
    removed halide ``site`` back on its place in ``host``.

    None when ``vacancy`` is not ``host`` less atom ``site``, or when the site is taken (:func:`site_taken`:
    it was refilled, the vacancy moved).
    """
    others = np.delete(np.arange(len(host)), site)
    if len(vacancy) != len(others) or vacancy.get_chemical_symbols() != [host[i].symbol for i in others]:
        return None
    if site_taken(vacancy, host.positions[site]):
        return None
    start = host.copy()
    start.calc = None
    start.positions[others] = vacancy.positions
    return start


def hop_partner(host: Atoms, site: int, max_hop: float = MAX_HOP) -> int:
    """The top-surface halide of the same element nearest ``site`` (minimum image); ties: nearest a ligand.

    Raises
    ------
    LigbindError
        No such halide within ``max_hop``.
    """
    check_surface_halide(host, site)
    others = [int(i) for i in surface_halides(host) if i != site and host[i].symbol == host[site].symbol]
    if not others:
        raise LigbindError(f"no other top-surface {host[site].symbol} to hop into the vacancy at {site}")
    d = find_mic(host.positions[others] - host.positions[site], host.cell, host.pbc)[1]
    order = sorted(range(len(others)), key=lambda k: (round(d[k], 2), distance_to_ligand(host, others[k])))
    hopper = others[order[0]]
    check_hop(host, site, hopper, max_hop)
    return hopper


def check_hop(host: Atoms, site: int, hopper: int, max_hop: float = MAX_HOP) -> float:
    """Hop length (Å, minimum image) from ``hopper`` to the vacancy at ``site``; refused if too long."""
    check_surface_halide(host, site)
    check_surface_halide(host, hopper)
    if hopper == site:
        raise LigbindError(f"the hopping halide {hopper} is the vacancy site itself")
    if host[hopper].symbol != host[site].symbol:
        raise LigbindError(
            f"halide {hopper} ({host[hopper].symbol}) cannot hop into a {host[site].symbol} vacancy at {site}"
        )
    length = float(find_mic(host.positions[site] - host.positions[hopper], host.cell, host.pbc)[1])
    if length > max_hop:
        raise LigbindError(
            f"hop of {length:.2f} Å from halide {hopper} into the vacancy at {site} is longer than the "
            f"{max_hop:.1f} Å cut-off (choose a neighbouring site)"
        )
    return length


def migration_endpoints(
    host: Atoms, site: int, hopper: int | None = None, max_hop: float = MAX_HOP
) -> tuple[Atoms, Atoms]:
    """Initial (vacancy at ``site``) and final (``hopper`` moved into it) states of one halide hop.

    Parameters
    ----------
    host : ase.Atoms
        PbX2-terminated slab, bare or with an adsorbate.
    site : int
        Top-surface halide removed (index in ``host``).
    hopper : int, optional
        Top-surface halide that hops (index in ``host``); default the nearest one of the same element.
    max_hop : float
        Longest hop accepted (Å).

    Returns
    -------
    (ase.Atoms, ase.Atoms)
        Same atom order; ``info`` adds defect ("migration"), endpoint ("initial"/"final"), hopper (host
        index), migrating (index in the endpoints) and hop_length (Å).
    """
    hopper = hop_partner(host, site, max_hop) if hopper is None else hopper
    length = check_hop(host, site, hopper, max_hop)
    initial = make_vacancy(host, site)
    migrating = hopper - 1 if hopper > site else hopper
    final = initial.copy()
    final.positions[migrating] = host.positions[site]  # wrapped as in the host: the NEB uses minimum images
    extra = {"defect": "migration", "hopper": int(hopper), "migrating": int(migrating), "hop_length": length}
    initial.info = {**initial.info, **extra, "endpoint": "initial"}
    final.info = {**initial.info, **extra, "endpoint": "final"}
    return initial, final


def symmetry_image(host: Atoms, source: Atoms, target: Atoms, max_shift: float) -> Atoms | None:
    """``target``'s state rebuilt as the image of ``source`` under a symmetry of ``host``, or None.

    For a hop between sites a symmetry of the host relates (the usual case on a bare slab), the final state is
    an image of the initial one: a relaxed endpoint carried over by that operation is a relaxed state of the
    other endpoint, with the same energy.

    Parameters
    ----------
    host : ase.Atoms
        The host both states were built from (its symmetry operations keep the top face on top).
    source, target : ase.Atoms
        The two states (same cell, same atoms in the same order).
    max_shift : float
        Largest distance (Å) any atom of the image may lie from its counterpart in ``target``; an operation that
        maps the vacancy elsewhere moves some atom by a whole site spacing and is rejected.

    Returns
    -------
    ase.Atoms or None
        A copy of ``target`` whose atoms (matched to the image's by element and tag, in ``target``'s order)
        sit at the image positions; of several operations the one closest to ``target``. None if no
        operation of the host maps ``source`` onto ``target`` within ``max_shift``.
    """
    cell = host.cell.array
    inv = np.linalg.inv(cell)
    frac_s, frac_t = source.positions @ inv, target.positions @ inv
    kinds = list(zip(target.numbers, target.get_tags(), strict=True))
    groups = {k: np.array([i for i, kk in enumerate(kinds) if kk == k]) for k in set(kinds)}
    best: tuple[float, np.ndarray] | None = None
    for rot, trans in surface_symmetry(host):
        image = frac_s @ rot.T + trans
        shift = np.zeros((len(target), 3))
        worst = 0.0
        for members in groups.values():
            d = image[members][:, None, :] - frac_t[members][None, :, :]
            d -= np.round(d)
            cart = d @ cell
            dist = np.linalg.norm(cart, axis=2)
            rows, cols = linear_sum_assignment(dist)
            worst = max(worst, float(dist[rows, cols].max()))
            shift[members[cols]] = cart[rows, cols]
        if worst < max_shift:
            rmsd = float(np.sqrt((shift**2).sum(axis=1).mean()))
            if best is None or rmsd < best[0]:
                best = (rmsd, shift)
    if best is None:
        return None
    out = target.copy()
    out.positions = target.positions + best[1]  # target's own (unwrapped) frame: the NEB interpolates from it
    return out


def halogen_molecule(element: str) -> Atoms:
    """An X2 molecule (X = I, Br, Cl) at its gas-phase bond length, not yet in a cell.

    Raises
    ------
    LigbindError
        ``element`` is not a halogen.
    """
    if element not in X2_BOND:
        raise LigbindError(f"no X2 reference for '{element}' (halogens: {', '.join(X2_BOND)})")
    mol = Atoms(f"{element}2", positions=[[0, 0, 0], [0, 0, X2_BOND[element]]])
    mol.info.update(kind="reference", label=f"reference:{element}2", reference=f"{element}2")
    return mol
