"""(001) slabs of the perovskites: PbI2-terminated, n×n pseudo-cubic, fixed bottom layers.

Layers alternate PbX2 and AX (A = Cs or MA) along z. Layer membership is always derived from the geometry
(:func:`find_layers`), so slabs read back from POSCAR or relaxed by a calculator are checked the same way.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import numpy as np
from ase import Atoms
from ase.build import make_supercell
from ase.constraints import FixAtoms
from ase.geometry import get_distances

from ligbind.builders.bulk import bulk, get_phase
from ligbind.errors import LigbindError

HALIDES = ("I", "Br", "Cl")
FRAMEWORK = ("Pb", "Cs", "K", "C", "N", *HALIDES)  # heavy atoms that define the slab's layers
LAYER_GAP = 1.0  # Å: heavy atoms of one layer lie within this of each other in z (perovskite spacing ~3.1 Å)


def slab_mask(atoms: Atoms) -> np.ndarray:
    """Boolean mask of slab atoms: tags == 0 (ligands carry tags ≥ 1).

    Parameters
    ----------
    atoms : ase.Atoms
        A slab or complex.

    Returns
    -------
    numpy.ndarray
        Boolean mask, True for slab atoms.
    """
    return atoms.get_tags() == 0


def _unwrapped_z(atoms: Atoms, mask: np.ndarray) -> np.ndarray:
    """z of all atoms, shifted so that the largest empty gap (the vacuum) lies at the cell boundary."""
    z = atoms.positions[:, 2].copy()
    if not atoms.pbc[2] and atoms.cell[2, 2] == 0:
        return z
    cz = atoms.cell[2, 2]
    zs = np.sort(np.mod(z[mask], cz))
    gaps = np.diff(np.append(zs, zs[0] + cz))
    start = zs[(np.argmax(gaps) + 1) % len(zs)]
    return np.mod(z - start + 1e-6, cz) + start - 1e-6


def find_layers(atoms: Atoms) -> list[np.ndarray]:
    """Indices of the slab atoms in each layer, from bottom to top.

    Heavy framework atoms are grouped by z (gaps > 1 Å separate layers); hydrogens of slab cations join
    the layer of their nearest heavy atom.

    Parameters
    ----------
    atoms : ase.Atoms
        A slab or complex (adsorbate atoms, tags > 0, are ignored).

    Returns
    -------
    list of numpy.ndarray
        Sorted atom indices per layer, bottom layer first.

    Raises
    ------
    LigbindError
        No perovskite framework atom found.
    """
    mask = slab_mask(atoms)
    z = _unwrapped_z(atoms, mask)
    symbols = np.array(atoms.get_chemical_symbols())
    heavy = np.where(mask & np.isin(symbols, FRAMEWORK))[0]
    if len(heavy) == 0:
        raise LigbindError("no perovskite framework atoms (Pb, Cs, I, ...) found in the slab")
    order = heavy[np.argsort(z[heavy])]
    layers: list[list[int]] = [[order[0]]]
    for i in order[1:]:
        if z[i] - z[layers[-1][-1]] > LAYER_GAP:
            layers.append([])
        layers[-1].append(i)
    hydrogens = np.where(mask & (symbols == "H"))[0]
    if len(hydrogens):
        _, dist = get_distances(atoms.positions[hydrogens], atoms.positions[heavy], atoms.cell, atoms.pbc)
        nearest = heavy[np.argmin(dist, axis=1)]
        which = {i: k for k, layer in enumerate(layers) for i in layer}
        for h, parent in zip(hydrogens, nearest, strict=True):
            layers[which[parent]].append(h)
    return [np.array(sorted(layer)) for layer in layers]


def layer_name(atoms: Atoms, indices: np.ndarray) -> str:
    """Chemical name of a layer.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    indices : numpy.ndarray
        Atom indices of the layer.

    Returns
    -------
    str
        'PbI2', 'CsI', 'MAI', 'PbBr2', mixed halides 'PbX2', 'CsX'; '?' if not perovskite-like.
    """
    counts = Counter(atoms[i].symbol for i in indices)
    x = sum(counts[h] for h in HALIDES)
    present = [h for h in HALIDES if counts[h]]
    halide = present[0] if len(present) == 1 else "X"
    if counts["Pb"] and counts["Pb"] * 2 == x and not (counts["Cs"] or counts["N"]):
        return f"Pb{halide}2"
    a = counts["Cs"] + counts["N"]
    if a and a == x and not counts["Pb"]:
        return ("Cs" if counts["Cs"] else "MA") + halide
    return "?"


def is_pbx2(name: str) -> bool:
    """True for a PbX2 layer name.

    Parameters
    ----------
    name : str
        A name from :func:`layer_name`.

    Returns
    -------
    bool
        Whether the layer is a lead halide layer.
    """
    return name.startswith("Pb")


def termination(atoms: Atoms) -> tuple[str, str]:
    """Names of the (top, bottom) slab layers, derived from the geometry.

    Parameters
    ----------
    atoms : ase.Atoms
        A slab or complex.

    Returns
    -------
    tuple of str
        (top, bottom) as in :func:`layer_name`.
    """
    layers = find_layers(atoms)
    return layer_name(atoms, layers[-1]), layer_name(atoms, layers[0])


def check_pbi2_terminated(atoms: Atoms, source: str = "slab") -> list[np.ndarray]:
    """Raise unless the top layer of ``atoms`` is PbX2; return the layers (bottom → top).

    With an adsorbate (tags > 0) the top layer may lack one halide: an X-site exchange complex, whose
    anion (an adsorbate atom) took that site.

    Parameters
    ----------
    atoms : ase.Atoms
        A slab or complex.
    source : str
        What ``atoms`` is, for the error message.

    Returns
    -------
    list of numpy.ndarray
        As :func:`find_layers`.

    Raises
    ------
    LigbindError
        The top layer is not PbX2.
    """
    layers = find_layers(atoms)
    top = layer_name(atoms, layers[-1])
    if not is_pbx2(top) and _x_site_exchanged(atoms, layers[-1]):
        return layers
    if not is_pbx2(top):
        raise LigbindError(
            f"{source} is not PbI2-terminated: its top layer is {top} ({len(layers[-1])} atoms)"
        )
    return layers


def _x_site_exchanged(atoms: Atoms, top: np.ndarray) -> bool:
    """True for a Pb–halide top layer missing exactly one halide, on a structure with an adsorbate."""
    counts = Counter(atoms[i].symbol for i in top)
    x = sum(counts[h] for h in HALIDES)
    only_pbx = set(counts) <= {"Pb", *HALIDES}
    return bool((atoms.get_tags() > 0).any()) and only_pbx and counts["Pb"] > 0 and 2 * counts["Pb"] - x == 1


def vacuum_thickness(atoms: Atoms) -> float:
    """Empty space along z between the top of the slab and the bottom of its periodic image.

    Parameters
    ----------
    atoms : ase.Atoms
        A slab or complex (all atoms count).

    Returns
    -------
    float
        Thickness in Å.
    """
    z = atoms.positions[:, 2]
    return float(atoms.cell[2, 2] - (z.max() - z.min()))


def parse_size(size: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Parse an in-plane slab size: '2x2' → (2, 2), with a clear error for anything else.

    Parameters
    ----------
    size : str or tuple of int or list of int
        ``"NxM"`` or a pair of repeats.

    Returns
    -------
    tuple of int
        (nx, ny), both ≥ 1.

    Raises
    ------
    LigbindError
        Malformed string or a repeat below 1.
    """
    if isinstance(size, str):
        try:
            nx, ny = (int(s) for s in size.lower().split("x"))
        except ValueError:
            raise LigbindError(f"bad slab size '{size}': expected NxM, e.g. 2x2") from None
    else:
        nx, ny = size
    if nx < 1 or ny < 1:
        raise LigbindError(f"bad slab size {nx}x{ny}: both repeats must be ≥ 1")
    return nx, ny


def build_slab(
    material: str = "CsPbI3",
    phase: str | None = None,
    size: str | tuple[int, int] = (2, 2),
    layers: int = 3,
    vacuum: float = 12.0,
    fix_layers: int = 1,
    br_fraction: float = 0.0,
    seed: int = 0,
    termination: str = "PbX2",
) -> Atoms:
    """Build a PbX2- or AX-terminated (001) slab.

    Parameters
    ----------
    material, phase : str
        ``CsPbI3`` (``cubic`` or ``tetragonal``) or ``MAPbI3`` (``tetragonal``); default tetragonal.
    size : str or tuple of int
        In-plane repeats of the pseudo-cubic cell (``"2x2"``); tilted phases need even repeats.
    layers : int
        Number of alternating PbX2/AX layers; odd numbers give the termination on both faces.
    vacuum : float
        Empty space along z between periodic images (Å).
    fix_layers : int
        Bottom layers held by an ASE FixAtoms constraint.
    br_fraction, seed : float, int
        Fraction of X sites substituted by Br, chosen reproducibly with ``seed``.
    termination : str
        Top layer: ``PbX2`` (alias ``PbI2``, default) or ``AX`` (alias ``CsI``/``MAI``, naming the
        material's A cation); see :func:`ligbind.builders.termination.parse_termination`.

    Returns
    -------
    ase.Atoms
        The periodic slab; ``info``: material, phase, size, layers, termination (top/bottom layer names),
        surface ("PbX2" or "AX"), symmetric, fixed_layers, vacuum, lattice_reference, kind ("slab"), and br_fraction, br_seed, n_br when Br was substituted.

    Raises
    ------
    LigbindError
        Unknown material, phase or termination, or a parameter out of range.
    """
    from ligbind.builders.termination import parse_termination

    ph = get_phase(material, phase)
    nx, ny = parse_size(size)
    kind = parse_termination(termination, material)
    _check_slab_parameters(ph, nx, ny, layers, vacuum, fix_layers, br_fraction)
    slab, slab_layer = _cut_layers(ph, nx, ny, layers, vacuum, top_ax=kind == "AX")
    _substitute_br(slab, br_fraction, seed)
    if fix_layers:
        slab.set_constraint(FixAtoms(indices=np.where(slab_layer < fix_layers)[0]))
    top, bottom = _verified_termination(slab, layers, kind)
    slab.info.update(
        material=material,
        phase=ph.phase,
        size=f"{nx}x{ny}",
        layers=layers,
        termination=f"{top}/{bottom}",
        symmetric=top == bottom,
        fixed_layers=fix_layers,
        vacuum=round(vacuum_thickness(slab), 6),
        lattice_reference=ph.reference,
        kind="slab",
        surface=kind,
    )
    return slab


def _check_slab_parameters(
    ph, nx: int, ny: int, layers: int, vacuum: float, fix_layers: int, br_fraction: float
) -> None:
    """Raise a one-line LigbindError for the first slab parameter out of range."""
    if layers < 1:
        raise LigbindError(f"bad number of layers {layers}: need at least 1")
    if vacuum <= 0:
        raise LigbindError(f"bad vacuum {vacuum} Å: must be positive")
    if not 0 <= fix_layers < layers:
        raise LigbindError(f"bad --fix-layers {fix_layers}: must be between 0 and layers-1 ({layers - 1})")
    if not 0.0 <= br_fraction <= 1.0:
        raise LigbindError(f"bad Br fraction {br_fraction}: must be between 0 and 1")
    spacing = _pseudo_cubic_c(ph) / 2
    if vacuum <= spacing:  # the layers are found from the widest gap along z, which must be the vacuum
        raise LigbindError(
            f"bad vacuum {vacuum} Å: must exceed the {spacing:.2f} Å layer spacing (typical: 10–20 Å)"
        )
    if ph.tilted and (nx % 2 or ny % 2):
        raise LigbindError(
            f"{ph.material} {ph.phase} has tilted octahedra: in-plane size must be even, got {nx}x{ny}"
        )


def _cut_layers(
    ph, nx: int, ny: int, layers: int, vacuum: float, top_ax: bool = False
) -> tuple[Atoms, np.ndarray]:
    """The slab cut from a bulk supercell, centred in ``vacuum``, and the layer index of each atom."""
    cell = bulk(ph.material, ph.phase)
    layers_per_cell = round(2 * ph.c / _pseudo_cubic_c(ph))
    repeats_z = math.ceil((layers + 1) / layers_per_cell)
    if ph.tilted:  # √2×√2 cell → n×m pseudo-cubic: a_pc = (a - b)/2, b_pc = (a + b)/2
        matrix = [[nx // 2, -nx // 2, 0], [ny // 2, ny // 2, 0], [0, 0, repeats_z]]
    else:
        matrix = [[nx, 0, 0], [0, ny, 0], [0, 0, repeats_z]]
    big = make_supercell(cell, matrix)
    big.positions[:, 2] += 1e-3
    big.wrap()
    dz = big.cell[2, 2] / (layers_per_cell * repeats_z)
    # layer 0 of the supercell is PbX2 (Pb at z = 0): an even number of layers starts from the AX layer
    # above it, so that the top layer is PbX2 in every case (bottom AX: asymmetric slab); AX on top: the
    # other way round (odd: start from the AX layer, AX on both faces; even: bottom PbX2)
    start = layers % 2 if top_ax else 1 - layers % 2
    layer_index = np.rint((big.positions[:, 2] - 1e-3) / dz).astype(int) - start
    slab = big[(layer_index >= 0) & (layer_index < layers)]
    slab_layer = layer_index[(layer_index >= 0) & (layer_index < layers)]
    slab.center(vacuum=vacuum / 2, axis=2)
    slab.pbc = True
    slab.info.clear()
    return slab, slab_layer


def _substitute_br(slab: Atoms, br_fraction: float, seed: int) -> None:
    """Replace a seeded random ``br_fraction`` of the I sites by Br, in place, and record it in ``info``."""
    if br_fraction <= 0:
        return
    x_sites = np.where(np.array(slab.get_chemical_symbols()) == "I")[0]
    n_br = round(br_fraction * len(x_sites))
    chosen = np.random.default_rng(seed).choice(x_sites, size=n_br, replace=False)
    symbols = slab.get_chemical_symbols()
    for i in chosen:
        symbols[i] = "Br"
    slab.set_chemical_symbols(symbols)
    slab.info.update(br_fraction=br_fraction, br_seed=seed, n_br=int(n_br))


def _verified_termination(slab: Atoms, layers: int, kind: str = "PbX2") -> tuple[str, str]:
    """(top, bottom) layer names found from the geometry; raise unless there are ``layers`` and the top is
    the ``kind`` asked for (PbX2, or AX of the material's A cation)."""
    found = find_layers(slab)
    if len(found) != layers:
        raise LigbindError(f"internal: built {len(found)} layers instead of {layers}")
    top, bottom = layer_name(slab, found[-1]), layer_name(slab, found[0])
    if is_pbx2(top) != (kind == "PbX2") or top == "?":
        raise LigbindError(f"internal: top layer is {top}, not {kind}")
    return top, bottom


def _pseudo_cubic_c(ph) -> float:
    """Height of one pseudo-cubic cell (a PbX2 + AX layer pair) along z."""
    return ph.c if ph.spacegroup in (221, 127) else ph.c / 2


def surface_pb(atoms: Atoms, layers: list[np.ndarray] | None = None) -> np.ndarray:
    """Indices of the Pb atoms in the top layer (the undercoordinated ones).

    Parameters
    ----------
    atoms : ase.Atoms
        A slab or complex.
    layers : list of numpy.ndarray, optional
        Its layers (from :func:`check_pbi2_terminated`); found and checked if not given.

    Returns
    -------
    numpy.ndarray
        Atom indices.
    """
    layers = layers if layers is not None else check_pbi2_terminated(atoms)
    top = layers[-1]
    return np.array([i for i in top if atoms[i].symbol == "Pb"])


def surface_halides(atoms: Atoms, layers: list[np.ndarray] | None = None) -> np.ndarray:
    """Indices of the halide atoms in the top layer.

    Parameters
    ----------
    atoms : ase.Atoms
        A slab or complex.
    layers : list of numpy.ndarray, optional
        Its layers (from :func:`check_pbi2_terminated`); found and checked if not given.

    Returns
    -------
    numpy.ndarray
        Atom indices.
    """
    layers = layers if layers is not None else check_pbi2_terminated(atoms)
    return np.array([i for i in layers[-1] if atoms[i].symbol in HALIDES])


def surface_symmetry(slab: Atoms, symprec: float = 0.1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Symmetry operations of the slab (spglib) that keep its top surface on top.

    Parameters
    ----------
    slab : ase.Atoms
        The slab (or complex).
    symprec : float
        spglib tolerance (Å).

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        (rotation, translation) pairs in fractional coordinates of the slab cell; the identity at least.
    """
    import spglib

    with warnings.catch_warnings():  # spglib 2.5 warns about its own error-handling switch
        warnings.simplefilter("ignore", DeprecationWarning)
        sym = spglib.get_symmetry(
            (slab.cell.array, slab.get_scaled_positions(), slab.numbers), symprec=symprec
        )
    identity = [(np.eye(3, dtype=int), np.zeros(3))]
    if not sym:
        return identity
    ops = [
        (rot, trans)
        for rot, trans in zip(sym["rotations"], sym["translations"], strict=True)
        if rot[2].tolist() == [0, 0, 1] and abs(trans[2] - round(trans[2])) < 1e-3
    ]
    return ops or identity


def symmetry_rmsd(
    a: np.ndarray, b: np.ndarray, cell: np.ndarray, ops: list[tuple[np.ndarray, np.ndarray]]
) -> float:
    """Smallest RMSD (Å, minimum image) between points ``b`` and the images of points ``a`` under ``ops``.

    Parameters
    ----------
    a, b : numpy.ndarray
        (n, 3) Cartesian points, matched by order.
    cell : numpy.ndarray
        (3, 3) cell the operations refer to.
    ops : list of (numpy.ndarray, numpy.ndarray)
        Fractional (rotation, translation) pairs, e.g. from :func:`surface_symmetry`.

    Returns
    -------
    float
        The smallest RMSD over ``ops``.
    """
    inv = np.linalg.inv(cell)
    fa, fb = np.asarray(a) @ inv, np.asarray(b) @ inv
    best = np.inf
    for rot, trans in ops:
        d = fa @ rot.T + trans - fb
        d -= np.round(d)
        best = min(best, float(np.sqrt(((d @ cell) ** 2).sum(axis=1).mean())))
    return best
