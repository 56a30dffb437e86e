"""Surface halide vacancy analysis, defined once: E_vac of each relaxed vacancy on a host, flags, one row.

    E_vac = E(slab − X) + μ_X − E(slab) (+ q·μ_e for a vacancy of charge q)
    μ_X   = ½E(X2) + Δμ_X

½E(X2) is the X2 molecule relaxed with the same protocol in the ligand box convention. Δμ_X (eV, ≤ 0) is
the user's chemical potential relative to it: 0 is the X2-rich limit; the PbX2-rich (Pb-rich) limit is
Δμ_X = ½ΔH_f(PbX2) for a user-given formation enthalpy (e.g. ½·(−1.81) = −0.91 eV for PbI2). A charged
vacancy (q ≠ 0, DFT backends only) puts its q removed electrons at the electron chemical potential μ_e
(absolute, on the protocol's energy scale), which the user gives. A host is the relaxed bare slab or the
best relaxed ligand@slab complex (or any other relaxed PbX2-terminated surface); ΔE_vac = E_vac(ligand) −
E_vac(bare) for the same halide (the bare slab's lowest vacancy of the element of the ligand host's lowest
one; none if the bare slab has no such site), positive = the ligand makes vacancies costlier.

Flags (a flagged site is kept in the table and left out of E_vac): ``unconverged``; ``vacancy-refilled``
(another halide moved into the vacant site: the vacancy migrated during the relaxation); ``ligand-fills-
vacancy`` (a ligand atom took the vacant site); ``below-pristine`` (E_vac < 0: not a defect).

Host refinement: a vacancy can let the surface around it relax into a lower basin than the host it was made
on, and E_vac against that host is then too low. Up to :data:`HOST_REFINEMENTS` of the lowest usable
vacancies (a setting) are refilled (the halide put back on its site, every other atom where the vacancy
relaxed it: :func:`ligbind.builders.vacancies.refill_vacancy`) and relaxed as hosts; E_vac is taken against
the lowest host found, in the row of the host it started from (``host_drop``, eV, and the rounds in
``host_refinements``). The recipe :func:`ligbind.recipes.defects.lower_vacancy_host` does it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from ligbind.analysis.energies import Term, reaction_energy
from ligbind.builders.slab import HALIDES
from ligbind.jobs import Result
from ligbind.protocols import protocol_hash
from ligbind.store import ResultStore, structure_hash

HOST_REFINEMENTS = 1  # lowest vacancies refilled and relaxed as hosts (compute.vacancy.host_refinements)
MAX_HOST_REFINEMENTS = 4
REFILL_DISTANCE = 1.0  # Å: a halide this close to the vacant site refilled it
LIGAND_FILL_DISTANCE = 1.5  # Å: a ligand atom this close to the vacant site took it


@dataclass
class VacancyHostOutcome:
    """E_vac on one host with every site tried, its references, and ΔE_vac for a ligand host."""

    ligand: str | None
    protocol: str
    e_vac: float | None
    delta_mu_x: float
    element: str | None = None
    charge: int = 0
    mu_e: float | None = None
    references: dict[str, dict[str, Any]] = field(default_factory=dict)
    sites: list[dict[str, Any]] = field(default_factory=list)
    e_host: float | None = None
    e_vac_bare: float | None = None
    delta_e_vac: float | None = None
    host_key: str = ""
    key: str = ""
    campaign: str | None = None
    host_drop: float = 0.0
    host_refinements: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def half_x2_term(x2: Result, p_hash: str) -> Term:
    """½E(X2) as a term of one X atom (the reservoir of the removed halide)."""
    element = x2.atoms[0].symbol
    return Term(f"1/2 {element}2", 0.5 * x2.energy, Counter({element: 1}), p_hash, None, x2.converged)


def vacancy_energy(
    defect: Term, pristine: Term, half_x2: Term, delta_mu_x: float = 0.0, charge: int = 0, mu_e: float = 0.0
) -> float:
    """E_vac = E(slab − X) + ½E(X2) + Δμ_X − E(slab) + q·μ_e (balanced: slab → slab − X + X)."""
    return reaction_energy([defect, half_x2], [pristine])[0] + delta_mu_x + charge * mu_e


def delta_vacancy(e_vac_ligand: float, e_vac_bare: float) -> float:
    """ΔE_vac = E_vac(ligand@slab) − E_vac(bare); positive = the ligand suppresses vacancies."""
    return e_vac_ligand - e_vac_bare


def vacancy_key(host: Result, ligand: str | None, delta_mu_x: float, charge: int) -> str:
    """Key of the vacancy row of this relaxed host at this chemical potential and charge."""
    return (
        f"vacancy-{structure_hash(host.atoms)}-{protocol_hash(host.protocol)}-{ligand or 'bare'}"
        f"-mu{delta_mu_x:+.4f}-q{charge:+d}"
    )


def vacancy_flags(e_vac: float, result: Result) -> list[str]:
    """Anomaly flags of one relaxed vacancy (``result.atoms.info['site_position']`` is the vacant site)."""
    flags = [] if result.converged else ["unconverged"]
    atoms = result.atoms
    site = np.array(json.loads(atoms.info["site_position"]))
    d = find_mic(atoms.positions - site, atoms.cell, atoms.pbc)[1]
    symbols = np.array(atoms.get_chemical_symbols())
    ligand = atoms.get_tags() > 0
    if np.any((d < REFILL_DISTANCE) & np.isin(symbols, HALIDES) & ~ligand):
        flags.append("vacancy-refilled")
    if np.any((d < LIGAND_FILL_DISTANCE) & ligand):
        flags.append("ligand-fills-vacancy")
    if e_vac < 0:
        flags.append("below-pristine")
    return flags


def lowest_by_element(rows: list[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """(site, E_vac) of the lowest usable (converged, unflagged) vacancy of each element."""
    best: dict[str, tuple[int, float]] = {}
    for r in rows:
        if r.get("status") == "converged" and not r["flags"] and "e_vac" in r:
            if r["element"] not in best or r["e_vac"] < best[r["element"]][1]:
                best[r["element"]] = (r["site"], r["e_vac"])
    return best


def evaluate_vacancies(
    host: Result,
    sites: list[tuple[dict[str, Any], Result | None]],
    references: dict[str, Result],
    protocol: dict[str, Any],
    delta_mu_x: float = 0.0,
    charge: int = 0,
    mu_e: float | None = None,
) -> tuple[float | None, list[dict[str, Any]]]:
    """E_vac of each relaxed vacancy against its host, and the lowest usable one.

    ``sites`` holds (vacancy description: site, element; relaxed result or None if it failed);
    ``references`` the relaxed X2 molecule per element.
    """
    p_hash = protocol_hash(protocol)
    pristine = Term.from_atoms("pristine", host.atoms, host.energy, p_hash, True, host.converged)
    rows = []
    for info, r in sites:
        row = {
            "site": info.get("site"),
            "element": info.get("element"),
            "near_ligand": info.get("near_ligand"),
        }
        if r is None:
            rows.append({**row, "status": "failed", "flags": ["failed"]})
            continue
        defect = Term.from_atoms("vacancy", r.atoms, r.energy, p_hash, True, True)
        half = half_x2_term(references[info["element"]], p_hash)
        e_vac = vacancy_energy(defect, pristine, half, delta_mu_x, charge, mu_e or 0.0)
        flags = vacancy_flags(e_vac, r)
        rows.append(
            {**row, "e_vac": e_vac, "e_defect": r.energy, "status": r.status, "flags": flags, "key": r.key}
        )
    best = lowest_by_element(rows)
    return (min(v for _, v in best.values()) if best else None), rows


def analyse_vacancy(
    host: Result,
    sites: list[tuple[dict[str, Any], Result | None]],
    references: dict[str, Result],
    protocol: dict[str, Any],
    *,
    delta_mu_x: float = 0.0,
    charge: int = 0,
    mu_e: float | None = None,
    ligand: str | None = None,
    bare: VacancyHostOutcome | None = None,
    store: ResultStore | None = None,
    campaign: str | None = None,
    lower_host: Result | None = None,
    host_refinements: list[dict[str, Any]] | None = None,
) -> VacancyHostOutcome:
    """E_vac on ``host`` (ΔE_vac against ``bare`` for a ligand host), stored as one row of kind ``vacancy``.

    ``lower_host``: the host relaxed again lower from a refilled vacancy (its ``host_refinements`` rounds),
    which E_vac is taken against; the row stays the host's (:func:`vacancy_key`).
    """
    pristine = lower_host if lower_host is not None else host
    e_vac, rows = evaluate_vacancies(pristine, sites, references, protocol, delta_mu_x, charge, mu_e)
    refs = {
        el: {
            "reference": f"1/2 E({el}2) + Δμ_{el}",
            "e_x2": r.energy,
            "mu_x": 0.5 * r.energy + delta_mu_x,
            "key": r.key,
        }
        for el, r in references.items()
    }
    out = VacancyHostOutcome(
        ligand=ligand,
        protocol=protocol["name"],
        e_vac=e_vac,
        delta_mu_x=delta_mu_x,
        charge=charge,
        mu_e=mu_e,
        references=refs,
        sites=rows,
        e_host=pristine.energy,
        host_key=pristine.key,
        campaign=campaign,
        host_drop=host.energy - pristine.energy,
        host_refinements=list(host_refinements or []),
    )
    best = lowest_by_element(rows)
    out.element = next((el for el, (_, v) in best.items() if v == e_vac), None)
    if ligand is not None and bare is not None:
        # like with like: the bare slab's lowest vacancy of the same element (None if it has no such site)
        same = lowest_by_element(bare.sites).get(out.element) if out.element else None
        out.e_vac_bare = same[1] if same else None
        if e_vac is not None and out.e_vac_bare is not None:
            out.delta_e_vac = delta_vacancy(e_vac, out.e_vac_bare)
    out.key = vacancy_key(host, ligand, delta_mu_x, charge)
    if store is not None:
        store.put_analysis(
            host.atoms,
            out.key,
            "vacancy",
            out.as_dict(),
            protocol,
            sorted({f for r in rows for f in r["flags"]}),
            status="ok" if e_vac is not None else "no-usable-site",
            ligand=ligand or "",
            e_vac=e_vac,
            element=out.element,
            e_vac_bare=out.e_vac_bare,
            delta_e_vac=out.delta_e_vac,
            delta_mu_x=delta_mu_x,
            charge=charge,
            host_drop=out.host_drop,
            mu_x=";".join(f"{el}:{v['mu_x']:.4f}" for el, v in refs.items()),
            campaign=campaign,
        )
    return out


def load_vacancy(store: ResultStore, key: str) -> VacancyHostOutcome | None:
    """The vacancy analysis stored under ``key``, or None."""
    row = store.get(key)
    return VacancyHostOutcome(**row.data["outcome"]) if row is not None else None


def odd_electrons(atoms: Atoms, charge: int = 0) -> bool:
    """Whether ``atoms`` with total ``charge`` has an odd electron count (core shells are even: Z parity)."""
    return bool((int(atoms.get_atomic_numbers().sum()) - int(charge)) % 2)
