"""Ion–ligand complexation analysis, defined once: ΔE of every relaxed complex, the reported one, flags, one row.

ΔE = E(ML^q) − E(M^z) − E(L^(q−z)), all three molecules in vacuum (a box with the same vacuum on each side),
relaxed with one protocol, the charges carried by the DFT code; negative = the complex is bound. The complex's
charge must equal the ion's plus the ligand's (checked). With an LCAO protocol that asks for it
(``gpaw.counterpoise``), ΔE_CP = ΔE − BSSE as for Eb (:func:`ligbind.analysis.energies.counterpoise_bsse`; the
ion and the ligand are the two fragments, each with its own charge).

Flags (a flagged complex stays in the table and is left out of ΔE unless asked):
``unconverged``; ``failed`` (its campaign step failed); ``ion-left-box`` (the relaxation stopped when the ion reached the box edge: the ligand
released it); ``ion-released`` (no anchor atom within bonding distance + 0.6 Å of the ion: the ligand left
the ion); ``dissociated`` (the ligand fell apart); ``bonds-changed`` (ligand bonds formed or broken, e.g. a
proton moved); ``implausible-energy`` (|ΔE| > 20 eV). The number of anchors coordinating before and after
relaxation (``denticity_built`` / ``denticity``) is reported, not flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ligbind.analysis.anomalies import DESORPTION_MARGIN, bond_change
from ligbind.analysis.energies import EnergyMismatchError, Term, lowest, lowest_corrected, reaction_energy
from ligbind.builders.complexes import coordinating_anchors
from ligbind.calculators import method_label
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.protocols import protocol_hash
from ligbind.store import ResultStore

IMPLAUSIBLE_COMPLEXATION = 20.0  # eV: gas-phase dication complexes reach ~10 eV; beyond 20 something broke


def complexation_energy(complex_: Term, ion: Term, ligand: Term, charges: tuple[int, int, int]) -> float:
    """ΔE = E(complex) − E(ion) − E(ligand); ``charges`` = (complex, ion, ligand) must balance.

    Raises
    ------
    EnergyMismatchError
        Unbalanced charges or atoms, mixed protocols, unconverged terms.
    """
    q_complex, q_ion, q_ligand = charges
    if q_complex != q_ion + q_ligand:
        raise EnergyMismatchError(
            f"charges do not balance: complex {q_complex:+d} ≠ ion {q_ion:+d} + ligand {q_ligand:+d}"
        )
    return reaction_energy([complex_], [ion, ligand])[0]


@dataclass
class ComplexationOutcome:
    """ΔE of one ion–ligand pair with its terms and every relaxed complex."""

    ion: str
    ligand: str
    protocol: str
    backend: str
    is_dft: bool
    charge: int
    ion_charge: int
    ligand_charge: int
    delta_e: float | None
    e_complex: float | None
    e_ion: float
    e_ligand: float
    best_config: int | None
    denticity: int | None
    configs_tried: int
    configs: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    key: str = ""
    ion_key: str = ""
    ligand_key: str = ""
    campaign: str | None = None
    # counterpoise (LCAO): the lowest ΔE − BSSE over the usable complexes, its BSSE and configuration
    delta_e_cp: float | None = None
    bsse: float | None = None
    cp_config: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def complexation_key(ion: Result, ligand: Result, protocol: dict[str, Any]) -> str:
    """Key of the complexation row of this ion and ligand with this protocol."""
    return f"complexation-{ion.key.split('-')[1]}-{ligand.key.split('-')[1]}-{protocol_hash(protocol)}"


def complex_flags(initial, result: Result) -> list[str]:
    """Anomaly flags of one relaxed complex (``initial`` is the built, unrelaxed one)."""
    final = result.atoms
    flags = [] if result.converged else ["unconverged"]
    if not coordinating_anchors(final, margin=DESORPTION_MARGIN):
        flags.append("ion-released")
    if change := bond_change(initial, final):
        flags.append(change)
    return flags


def _config_row(initial, r: Result, delta_e: float, flags: list[str]) -> dict[str, Any]:
    return {
        "config": r.atoms.info["config"],
        "conformer": r.atoms.info.get("conformer"),
        "delta_e": delta_e,
        "energy": r.energy,
        "denticity_built": int(initial.info.get("denticity", 0)),
        "denticity": len(coordinating_anchors(r.atoms)),
        "flags": flags,
        "status": r.status,
        "n_steps": r.n_steps,
        "key": r.key,
    }


def analyse_complexation(
    ion: Result,
    ligand: Result,
    configs: list[tuple[Any, Result | None]],
    protocol: dict[str, Any],
    *,
    include_flagged: bool = False,
    bsse: dict[str, float] | None = None,
    store: ResultStore | None = None,
    campaign: str | None = None,
) -> ComplexationOutcome:
    """ΔE over the relaxed complexes: the lowest converged, unflagged one (flagged ones only if asked).

    ``configs`` holds (built complex, relaxed result or None if the ion left the box) pairs; the ion and
    ligand terms must be converged. ``bsse``: counterpoise BSSE by complex key (gives ``delta_e_cp`` when every
    usable complex has one, else the flag ``counterpoise-missing``).
    """
    for label, r in (("ion", ion), ("ligand", ligand)):
        if not r.converged:
            raise LigbindError(f"the {label} relaxation did not converge: no complexation energy without it")
    p_hash = protocol_hash(protocol)
    q_ion, q_lig = int(ion.atoms.info.get("charge", 0)), int(ligand.atoms.info.get("charge", 0))
    ion_term = Term.from_atoms("ion", ion.atoms, ion.energy, p_hash, False)
    lig_term = Term.from_atoms("ligand", ligand.atoms, ligand.energy, p_hash, False)
    rows, usable, denticity = [], {}, {}
    for initial, r in configs:
        if (
            r is None
        ):  # the ion reached the box edge (recipes.complexes), or the step failed ("failure" in info)
            flags = [str(initial.info.get("failure", "ion-left-box"))]
            rows.append({"config": initial.info["config"], "status": "failed", "flags": flags})
            continue
        q = int(r.atoms.info.get("charge", 0))
        term = Term.from_atoms(f"config {r.atoms.info['config']}", r.atoms, r.energy, p_hash, False)
        delta_e = complexation_energy(term, ion_term, lig_term, (q, q_ion, q_lig))
        flags = complex_flags(initial, r)
        if abs(delta_e) > IMPLAUSIBLE_COMPLEXATION:
            flags.append("implausible-energy")
        row = _config_row(initial, r, delta_e, flags)
        if bsse is not None and r.key in bsse:
            row["bsse"], row["delta_e_cp"] = bsse[r.key], delta_e - bsse[r.key]
        rows.append(row)
        if r.converged and (not flags or (include_flagged and "unconverged" not in flags)):
            usable[str(row["config"])] = delta_e
            denticity[str(row["config"])] = row["denticity"]
    best, delta = lowest(usable) if usable else (None, None)
    cp_bsse = {str(row["config"]): row["bsse"] for row in rows if "bsse" in row}
    cp_best, cp_delta = lowest_corrected(usable, cp_bsse)
    missing_cp = ["counterpoise-missing"] if bsse is not None and usable and cp_best is None else []
    out = ComplexationOutcome(
        ion=str(ion.atoms.info.get("ion", ion.atoms.get_chemical_formula())),
        ligand=str(ligand.atoms.info.get("ligand", "")),
        protocol=protocol["name"],
        backend=protocol["backend"],
        is_dft=bool(protocol["is_dft"]),
        charge=q_ion + q_lig,
        ion_charge=q_ion,
        ligand_charge=q_lig,
        delta_e=delta,
        e_complex=next((r["energy"] for r in rows if str(r["config"]) == best), None),
        e_ion=ion.energy,
        e_ligand=ligand.energy,
        best_config=int(best) if best is not None else None,
        denticity=denticity.get(best) if best is not None else None,
        configs_tried=len(rows),
        configs=rows,
        flags=sorted({f for r in rows for f in r["flags"]} | set(missing_cp)),
        key=complexation_key(ion, ligand, protocol),
        ion_key=ion.key,
        ligand_key=ligand.key,
        campaign=campaign,
        delta_e_cp=cp_delta,
        bsse=cp_bsse.get(cp_best),
        cp_config=int(cp_best) if cp_best is not None else None,
    )
    if store is not None:
        _store_outcome(store, out, ion, protocol)
    return out


def _store_outcome(
    store: ResultStore, out: ComplexationOutcome, ion: Result, protocol: dict[str, Any]
) -> None:
    store.put_analysis(
        ion.atoms,
        out.key,
        "complexation",
        out.as_dict(),
        protocol,
        out.flags,
        status="ok" if out.delta_e is not None else "no-usable-complex",
        ion=out.ion,
        ligand=out.ligand,
        charge=out.charge,
        delta_e=out.delta_e,
        delta_e_cp=out.delta_e_cp,
        bsse=out.bsse,
        campaign=out.campaign,
    )


def load_complexation(store: ResultStore, key: str) -> ComplexationOutcome | None:
    """The complexation analysis stored under ``key``, or None."""
    row = store.get(key)
    return ComplexationOutcome(**row.data["outcome"]) if row is not None else None


def complexation_row(out: ComplexationOutcome) -> dict[str, Any]:
    """One table row: the reaction, its charges, terms and flags (ΔE in eV)."""
    return {
        "ion": out.ion,
        "ligand": out.ligand,
        "reaction": f"{out.ion} + {out.ligand}({out.ligand_charge:+d}) → complex({out.charge:+d})",
        "charge": out.charge,
        "ligand_charge": out.ligand_charge,
        "delta_e": out.delta_e,
        "delta_e_cp": out.delta_e_cp,
        "bsse": out.bsse,
        "e_complex": out.e_complex,
        "e_ion": out.e_ion,
        "e_ligand": out.e_ligand,
        "best_config": out.best_config,
        "denticity": out.denticity,
        "configs": out.configs_tried,
        "flags": ",".join(out.flags) or "none",
        "protocol": out.protocol,
        "method": method_label(out.is_dft),
        "campaign": out.campaign or "",
    }


def complexation_table(store: ResultStore, campaign: str | None = None):
    """One row per stored complexation analysis (of ``campaign`` if given), ligands by ΔE."""
    import pandas as pd

    query = {"kind": "complexation", **({"campaign": campaign} if campaign else {})}
    rows = [complexation_row(ComplexationOutcome(**r.data["outcome"])) for r in store.select(**query)]
    df = pd.DataFrame(rows)
    return df.sort_values(["ion", "delta_e"], na_position="last") if len(df) else df


def write_complexation_table(store: ResultStore, outdir, campaign: str | None = None) -> dict[str, Any]:
    """``complexes.csv`` and ``complexes.md`` when the store holds complexation rows (else nothing)."""
    from pathlib import Path

    df = complexation_table(store, campaign)
    if not len(df):
        return {}
    from ligbind.analysis.tables import _write

    return _write(
        df,
        Path(outdir),
        "complexes",
        "# Ion–ligand complexation energies in vacuum (eV; negative = bound)\n\n"
        "ΔE = E(complex) − E(ion) − E(ligand): each molecule relaxed in its own box with the same vacuum on each "
        "side and the same protocol; the charges are carried by the DFT code (`charge` = ion + ligand, the "
        "ligand's charge as in the library: EDTA and GL as their neutral acids). `denticity` counts the anchor "
        "atoms within bonding distance of the ion after relaxation. Flagged complexes (ion-released, "
        "dissociated, bonds-changed, unconverged) are not used. `delta_e_cp` (LCAO protocols): the lowest ΔE − "
        "BSSE, the counterpoise correction of the basis-set superposition error (`bsse`, ion and ligand as the "
        "two fragments), the value to compare with plane-wave studies.\n\n",
    )
