"""Frenkel-pair analysis, defined once: E_F of each relaxed pair on a host, the reported one, flags, one row.

A host is the relaxed bare slab or the best relaxed ligand@slab complex. Every host gets one stored row of
the same shape (kind ``frenkel``: ligand "" for the bare slab, ``ef``, and for a ligand ``ef_bare`` and
``delta_ef``), whichever path (``ligbind frenkel`` or a campaign) computed it.

Flags (a flagged pair is kept in the table and left out of E_F and ΔE_F unless asked):
``unconverged``; ``recombined`` (the pair relaxed back into its vacancy: every halide site of the host it was
built on holds a halide again, the moved one or a neighbour that took its place, :func:`recombined`; or
|E_F| < 0.05 eV); ``below-pristine`` (E_F ≤ −0.05 eV: the defective surface is lower than the pristine one, a
reconstruction, not a defect); ``ligand-binds-interstitial`` (the ligand moved to bind the interstitial
iodide: another process).

Host refinement: a pair below its host says the host is not at its minimum (the defect let the surface find a
lower basin). Up to :data:`HOST_REFINEMENTS` rounds (a setting), the host is relaxed again from the lowest
pair below it with the moved halide put back (:func:`ligbind.builders.defects.undo_frenkel`), and E_F is taken
against the lowest host found; the row keeps the host's key, the rounds (``host_refinements``) and how far
the host went down (``host_drop``, eV). The recipe :func:`ligbind.recipes.lower_frenkel_host` does it. A pair
still below the lowest host found keeps ``below-pristine`` (in the row's flags too): the host is then not the
minimum, and the E_F of the other pairs is a lower bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from ligbind.analysis.energies import Term, delta_frenkel, frenkel_energy
from ligbind.builders.slab import HALIDES
from ligbind.builders.vacancies import site_taken
from ligbind.jobs import Result
from ligbind.protocols import protocol_hash
from ligbind.store import ResultStore, structure_hash

RECOMBINED_EF = 0.05  # eV: a "pair" this close to the pristine energy relaxed back into its vacancy
LIGAND_CONTACT = {"H": 2.5, "heavy": 3.0}  # Å from the interstitial iodide: the ligand binds it
HOST_REFINEMENTS = 2  # rounds of relaxing the host again from a pair below it (a campaign setting)
MAX_HOST_REFINEMENTS = 5
HOST_TOLERANCE = 0.02  # eV: a pair (or a re-relaxed host) this much below the host counts as lower


@dataclass
class FrenkelHostOutcome:
    """E_F on one host (bare slab or ligand@slab) with every pair tried, and ΔE_F for a ligand host."""

    ligand: str | None
    protocol: str
    ef: float | None
    pairs: list[dict[str, Any]] = field(default_factory=list)
    ef_bare: float | None = None
    delta_ef: float | None = None
    host_key: str = ""
    key: str = ""
    campaign: str | None = None
    e_host: float | None = None
    host_drop: float = 0.0
    host_refinements: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def frenkel_key(host: Result, ligand: str | None) -> str:
    """Key of the Frenkel row of this relaxed host."""
    return f"frenkel-{structure_hash(host.atoms)}-{protocol_hash(host.protocol)}-{ligand or 'bare'}"


def ligand_binds_interstitial(defect: Atoms) -> bool:
    """The moved iodide (``info['vacancy_atom']``) sits within bonding distance of an adsorbate atom."""
    ligand = np.where(defect.get_tags() > 0)[0]
    if not len(ligand) or "vacancy_atom" not in defect.info:
        return False
    iodide = defect.positions[int(defect.info["vacancy_atom"])]
    d = np.linalg.norm(find_mic(defect.positions[ligand] - iodide, defect.cell, defect.pbc)[0], axis=1)
    is_h = np.array([defect[i].symbol == "H" for i in ligand])
    return bool((d[is_h] < LIGAND_CONTACT["H"]).any() or (d[~is_h] < LIGAND_CONTACT["heavy"]).any())


def recombined(defect: Atoms, host: Atoms) -> bool:
    """Whether the relaxed pair ``defect`` left no halide site of ``host`` (the structure it was built on: every
    layer, adsorbed halides too) empty: each holds a halide within
    :data:`~ligbind.builders.vacancies.RESTORE_CLEARANCE`, so the moved halide is back on a site (its own, or a
    neighbour's that refilled the vacancy). Halide sites are ≥ 4 Å apart: no halide counts for two."""
    symbols = host.get_chemical_symbols()
    if len(defect) != len(host) or defect.get_chemical_symbols() != symbols:
        return False
    is_halide = np.isin(symbols, HALIDES)
    halides = defect[is_halide]
    return all(site_taken(halides, site) for site in host.positions[is_halide])


def pair_flags(ef: float, result: Result, pristine: Sequence[Atoms] = ()) -> list[str]:
    """Anomaly flags of one relaxed Frenkel pair (``pristine``: the host it was built on and the lower host E_F
    is taken against, for the geometric recombination test)."""
    flags = [] if result.converged else ["unconverged"]
    if abs(ef) < RECOMBINED_EF or any(recombined(result.atoms, host) for host in pristine):
        flags.append("recombined")
    if ef <= -RECOMBINED_EF:
        flags.append("below-pristine")
    if ligand_binds_interstitial(result.atoms):
        flags.append("ligand-binds-interstitial")
    return flags


def evaluate_frenkel(
    host: Result,
    pairs: list[tuple[dict[str, Any], Result | None]],
    protocol: dict[str, Any],
    include_flagged: bool = False,
    built_on: Atoms | None = None,
) -> tuple[float | None, list[dict[str, Any]]]:
    """E_F of each relaxed pair against its host, and the lowest usable one.

    ``pairs`` holds (pair description: pair, interstitial, separation; relaxed result or None if it failed);
    ``built_on``: the structure the pairs were built on, when ``host`` is a lower host relaxed again (its
    halides elsewhere): a pair back on the sites of either is recombined.
    """
    sites_of = [host.atoms] + ([built_on] if built_on is not None and built_on is not host.atoms else [])
    p_hash = protocol_hash(protocol)
    pristine = Term.from_atoms("pristine", host.atoms, host.energy, p_hash, True, host.converged)
    rows, values = [], {}
    for info, r in pairs:
        row = {k: info.get(k) for k in ("pair", "interstitial", "separation")}
        if r is None:
            rows.append({**row, "status": "failed", "flags": ["failed"]})
            continue
        ef = frenkel_energy(Term.from_atoms("defect", r.atoms, r.energy, p_hash, True, True), pristine)
        flags = pair_flags(ef, r, sites_of)
        rows.append({**row, "ef": ef, "status": r.status, "flags": flags, "key": r.key})
        if r.converged and (not flags or (include_flagged and "recombined" not in flags)):
            values[info["pair"]] = ef
    return (min(values.values()) if values else None), rows


def analyse_frenkel(
    host: Result,
    pairs: list[tuple[dict[str, Any], Result | None]],
    protocol: dict[str, Any],
    *,
    ligand: str | None = None,
    bare: FrenkelHostOutcome | None = None,
    include_flagged: bool = False,
    store: ResultStore | None = None,
    campaign: str | None = None,
    lower_host: Result | None = None,
    host_refinements: list[dict[str, Any]] | None = None,
) -> FrenkelHostOutcome:
    """E_F on ``host`` (ΔE_F against ``bare`` for a ligand host), stored as one row of kind ``frenkel``.

    ``lower_host``: the host relaxed again lower (its ``host_refinements`` rounds), which E_F is taken against;
    the row stays the host's (:func:`frenkel_key`).
    """
    pristine = lower_host if lower_host is not None else host
    ef, rows = evaluate_frenkel(pristine, pairs, protocol, include_flagged, host.atoms)
    out = FrenkelHostOutcome(
        ligand=ligand,
        protocol=protocol["name"],
        ef=ef,
        pairs=rows,
        host_key=pristine.key,
        campaign=campaign,
        e_host=pristine.energy,
        host_drop=host.energy - pristine.energy,
        host_refinements=list(host_refinements or []),
    )
    if ligand is not None and bare is not None:
        out.ef_bare = bare.ef
        if ef is not None and bare.ef is not None:
            out.delta_ef = delta_frenkel(ef, bare.ef)
    out.key = frenkel_key(host, ligand)
    if store is not None:
        store.put_analysis(
            host.atoms,
            out.key,
            "frenkel",
            out.as_dict(),
            protocol,
            sorted({f for r in rows for f in r["flags"]}),
            status="ok" if ef is not None else "no-usable-pair",
            ligand=ligand or "",
            ef=ef,
            ef_bare=out.ef_bare,
            delta_ef=out.delta_ef,
            host_drop=out.host_drop,
            campaign=campaign,
        )
    return out


def load_frenkel(store: ResultStore, key: str) -> FrenkelHostOutcome | None:
    """The Frenkel analysis stored under ``key``, or None."""
    row = store.get(key)
    return FrenkelHostOutcome(**row.data["outcome"]) if row is not None else None
