"""Checks run after each complex relaxation. Flagged results are kept but marked, and excluded from Eb.

Flags: ``desorbed`` (no anchor within bonding distance of any Pb), ``dissociated`` (ligand fell apart),
``bonds-changed`` (ligand bonds formed or broken), ``reconstructed`` (Pb–X network of the slab changed),
``basin-changed`` (slab framework moved away from the relaxed bare slab's basin), ``image-contact`` (less than
``MIN_VACUUM`` of vacuum left between the adsorbate and the slab's periodic image along z: the energy includes
that contact), ``implausible-energy``.
"""

from __future__ import annotations

import json

import numpy as np
from ase import Atoms
from ase.neighborlist import natural_cutoffs, neighbor_list
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ligbind.builders.placement import BOND_LENGTH
from ligbind.builders.slab import HALIDES
from ligbind.validation import MIN_VACUUM, slab_vacuum

DESORPTION_MARGIN = 0.6  # Å beyond the Pb–anchor bond length
# Pb–X bonds of the framework, with a gap between "bonded" and "apart" so that a bond stretching across one
# distance does not count as a change. Measured over the 46 relaxed structures of the CsPbI3 calibration
# campaign (CHGNet + D3 and gpaw-laptop, 2026-12-04): first-shell Pb–I up to 3.85 Å (DFT-relaxed surfaces have
# 3.5-3.85 Å bonds), second shell from 5.1 Å. "Apart" starts 0.3 Å beyond the Pb–I van der Waals contact
# (Bondi radii 2.02 + 1.98 Å). In between, two DFT complexes hold a Pb–I of 4.14 / 4.2 Å, each trans to the
# adsorbate's anchor bound to that Pb (AnHI's I at 2.98 Å, methylamine's N at 2.5 Å), the iodide still bridging
# to its other Pb: an adsorbed state, not a reconstruction.
PB_X_BONDED = 3.9  # Å: a Pb–X pair this close is bonded
PB_X_APART = 4.3  # Å: a Pb–X pair this far apart is not (between the two: neither, so no change)
BOND_MULT = 1.15  # × ASE natural cutoffs: adsorbate atoms this close are bonded
BREAK_MULT = 1.3  # × natural cutoffs: a bond of the start breaks only when stretched past this (bond_change)
BASIN_RMSD = 0.35  # Å: framework RMSD to the relaxed bare slab beyond which the basin changed
FLAG_ORDER = (  # as complex_anomalies gives them (``unconverged`` added by the relaxation)
    "desorbed",
    "dissociated",
    "bonds-changed",
    "reconstructed",
    "image-contact",
    "basin-changed",
    "unconverged",
)
IMPLAUSIBLE_EB = 6.0  # eV: |Eb| beyond this is not a physisorbed/chemisorbed ligand


def ligand_bonds(atoms: Atoms, mult: float = BOND_MULT) -> set[tuple[int, int]]:
    """Covalent bonds among adsorbate atoms (tags ≥ 1), from ASE natural cutoffs (× ``mult``)."""
    lig = np.where(atoms.get_tags() > 0)[0]
    sub = atoms[lig]
    i, j = neighbor_list("ij", sub, natural_cutoffs(sub, mult=mult))
    return {(int(lig[a]), int(lig[b])) for a, b in zip(i, j, strict=True) if a < b}


def bond_change(initial: Atoms, final: Atoms) -> str | None:
    """``dissociated``, ``bonds-changed`` or None: how the adsorbate's bonds changed from ``initial`` to ``final``.

    With a gap between forming and breaking: a bond of ``initial`` breaks only when stretched past
    :data:`BREAK_MULT` × the natural cutoffs, a bond forms below :data:`BOND_MULT` ×, so that a bond stretching
    across one distance is no change. A minimal basis puts bonds near the forming distance already (gpaw-quick,
    sz(dzp): methanethiol's S–H 1.52 Å in the free molecule against 1.56 Å, C–H 1.20 against 1.23 Å), and an
    S–H H-bonded to a surface iodide (H···I 2.18 Å) stretched to 1.63 Å: intact, not dissociated.
    """
    start = ligand_bonds(initial)
    kept = start & ligand_bonds(final, BREAK_MULT)
    formed = ligand_bonds(final) - ligand_bonds(initial, BREAK_MULT)
    bonds = kept | formed
    if n_fragments(final, bonds) > n_fragments(initial, start):
        return "dissociated"
    return "bonds-changed" if bonds != start else None


def n_fragments(atoms: Atoms, bonds: set[tuple[int, int]] | None = None) -> int:
    """Connected components of the adsorbate's bond graph (``bonds``: its bonds, default :func:`ligand_bonds`)."""
    lig = np.where(atoms.get_tags() > 0)[0]
    if len(lig) == 0:
        return 0
    index = {int(a): k for k, a in enumerate(lig)}
    bonds = ligand_bonds(atoms) if bonds is None else bonds
    rows = [index[a] for a, b in bonds]
    cols = [index[b] for a, b in bonds]
    graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(lig), len(lig)))
    return int(connected_components(graph, directed=False)[0])


def pb_x_bonds(atoms: Atoms, cutoff: float = PB_X_BONDED) -> set[tuple[int, int]]:
    """Pb–halide pairs of the slab (tags 0) closer than ``cutoff`` (default: the bonds)."""
    slab = np.where(atoms.get_tags() == 0)[0]
    sub = atoms[slab]
    i, j = neighbor_list("ij", sub, cutoff)
    sym = np.array(sub.get_chemical_symbols())
    keep = (sym[i] == "Pb") & np.isin(sym[j], HALIDES)
    return {(int(slab[a]), int(slab[b])) for a, b in zip(i[keep], j[keep], strict=True)}


def pb_x_network_changed(before: Atoms, after: Atoms) -> bool:
    """True when a Pb–X bond of the slab broke or formed between ``before`` and ``after`` (same atom order).

    A bond breaks when a pair bonded before (< ``PB_X_BONDED``) ends up apart (> ``PB_X_APART``), and forms the
    other way round; a bond stretching from 3.7 to 3.85 Å, as on DFT-relaxed surfaces, is neither.
    """
    bonded = (pb_x_bonds(before), pb_x_bonds(after))
    near = (pb_x_bonds(before, PB_X_APART), pb_x_bonds(after, PB_X_APART))
    return bool(bonded[0] - near[1] or bonded[1] - near[0])


def is_desorbed(atoms: Atoms) -> bool:
    """True when no anchor atom is within bonding distance (+margin) of any Pb."""
    sites = json.loads(atoms.info.get("anchor_sites", "[]"))
    if not sites:
        return False
    pbs = [a.index for a in atoms if a.symbol == "Pb" and atoms.get_tags()[a.index] == 0]
    for s in sites:
        d = atoms.get_distances(s["anchor"], pbs, mic=True)
        if d.min() <= BOND_LENGTH.get(s["element"], 2.7) + DESORPTION_MARGIN:
            return False
    return True


def framework_rmsd(atoms: Atoms, reference: Atoms) -> float:
    """RMSD (Å) of the Pb/X framework of ``atoms`` from ``reference`` after removing the mean drift."""
    slab = np.where(atoms.get_tags() == 0)[0]
    mask = np.isin(np.array(atoms.get_chemical_symbols())[slab], ("Pb", *HALIDES))
    idx = slab[mask]
    if len(reference) < idx.max() + 1 or any(reference[i].symbol != atoms[i].symbol for i in idx):
        return float("nan")
    from ase.geometry import find_mic

    disp, _ = find_mic(atoms.positions[idx] - reference.positions[idx], atoms.cell, atoms.pbc)
    disp -= disp.mean(axis=0)
    return float(np.sqrt((disp**2).sum(axis=1).mean()))


def basin_flags(flags: list[str], final: Atoms, reference: Atoms) -> list[str]:
    """``flags`` of a relaxed complex with ``basin-changed`` and ``reconstructed`` judged again against a
    bare-slab ``reference`` (the slab it was placed on, or a lower one found since).

    ``reconstructed`` is judged again only when the framework matches ``reference`` atom for atom; otherwise
    the flag given at relaxation (against the complex's own start) stands. Judging it again here also applies
    today's criterion to results stored under an earlier one. An exchange-mode complex (its slab part one
    halide or cation short) is not judged against a bare slab, as at relaxation.
    """
    if final.info.get("mode") == "exchange":
        return list(flags)
    rmsd = framework_rmsd(final, reference)
    judged = np.isfinite(rmsd)
    out = [f for f in flags if f != "basin-changed" and not (judged and f == "reconstructed")]
    if judged and pb_x_network_changed(reference, final):
        out.append("reconstructed")
    if judged and rmsd > BASIN_RMSD:
        out.append("basin-changed")
    return sorted(out, key=lambda f: FLAG_ORDER.index(f) if f in FLAG_ORDER else len(FLAG_ORDER))


def complex_anomalies(initial: Atoms, final: Atoms, relaxed_slab: Atoms | None = None) -> list[str]:
    """Flags for one relaxed ligand@slab structure (``initial`` is the placed, unrelaxed complex)."""
    from ligbind.builders.termination import left_a_site

    flags = []
    if is_desorbed(final) or left_a_site(final):  # no anchor on Pb / an A-site cation out of its site
        flags.append("desorbed")
    if change := bond_change(initial, final):
        flags.append(change)
    # one iodide leaving its bridging site breaks only 2 bonds (a tolerance of 2 missed exactly that), so a
    # single bond counts; PB_X_BONDED / PB_X_APART keep a stretched bond from counting
    if pb_x_network_changed(initial, final):
        flags.append("reconstructed")
    if slab_vacuum(final) < MIN_VACUUM:
        flags.append("image-contact")
    if relaxed_slab is not None and len(relaxed_slab) <= len(final):
        flags = basin_flags(flags, final, relaxed_slab)
    return flags


def energy_anomalies(value: float) -> list[str]:
    """Flags for an energy difference (non-finite values are errors, raised earlier)."""
    return ["implausible-energy"] if abs(value) > IMPLAUSIBLE_EB else []
