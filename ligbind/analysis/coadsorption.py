"""Coadsorption analysis, defined once: Eb(A+B), ΔE_inter = Eb(A+B) − Eb(A) − Eb(B), flags, the stored row.

B is placed next to A on A's best relaxed complex; every relaxed A+B configuration is checked like a binding
configuration (desorbed, dissociated, reconstructed, basin-changed against the relaxed bare slab). Eb(A) and
Eb(B) are the binding analyses of the same slab and protocol, passed in, never looked up by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ligbind.analysis.anomalies import energy_anomalies
from ligbind.analysis.binding import BindingOutcome
from ligbind.analysis.energies import Term, coadsorption_energy, interaction_energy
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.protocols import protocol_hash
from ligbind.store import ResultStore


@dataclass
class CoadsorptionOutcome:
    """Eb(A+B) and ΔE_inter with the configurations tried."""

    a: str
    b: str
    protocol: str
    is_dft: bool
    eb_ab: float | None
    eb_a: float | None
    eb_b: float | None
    delta_e_inter: float | None
    best_config: int | None
    configs: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    key: str = ""
    campaign: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def analyse_coadsorption(
    binding_a: BindingOutcome,
    binding_b: BindingOutcome,
    slab: Result,
    ligand_a: Result,
    ligand_b: Result,
    configs: list[Result],
    protocol: dict[str, Any],
    *,
    store: ResultStore | None = None,
    campaign: str | None = None,
) -> CoadsorptionOutcome:
    """Eb(A+B) over the relaxed A+B configurations (lowest converged, unflagged) and ΔE_inter."""
    if binding_a.slab_key != slab.key or binding_b.slab_key != slab.key:
        raise LigbindError(f"Eb({binding_a.ligand}) and Eb({binding_b.ligand}) come from another slab")
    p = protocol_hash(protocol)
    refs = [
        Term.from_atoms("A", ligand_a.atoms, ligand_a.energy, p, False, ligand_a.converged),
        Term.from_atoms("B", ligand_b.atoms, ligand_b.energy, p, False, ligand_b.converged),
        Term.from_atoms("slab", slab.atoms, slab.energy, p, True, slab.converged),
    ]
    rows, usable = [], {}
    for r in configs:
        eb = coadsorption_energy(Term.from_atoms("AB", r.atoms, r.energy, p, True), *refs)
        flags = list(r.anomalies) + energy_anomalies(eb)
        k = r.atoms.info["config"]
        rows.append(
            {"config": k, "eb_ab": eb, "energy": r.energy, "flags": flags, "status": r.status, "key": r.key}
        )
        if r.converged and not flags:
            usable[k] = eb
    best = min(usable, key=usable.get) if usable else None
    eb_ab = usable.get(best) if best is not None else None
    inter = None
    if None not in (eb_ab, binding_a.eb, binding_b.eb):
        inter = interaction_energy(eb_ab, binding_a.eb, binding_b.eb)
    out = CoadsorptionOutcome(
        a=binding_a.ligand,
        b=binding_b.ligand,
        protocol=protocol["name"],
        is_dft=bool(protocol["is_dft"]),
        eb_ab=eb_ab,
        eb_a=binding_a.eb,
        eb_b=binding_b.eb,
        delta_e_inter=inter,
        best_config=best,
        configs=rows,
        flags=[]
        if best is not None
        else sorted({f for r in rows for f in r["flags"]} or {"no-usable-configuration"}),
        key=f"coadsorption-{binding_a.key.removeprefix('binding-')}+{binding_b.ligand}",
        campaign=campaign,
    )
    if store is not None:
        chosen = next((r for r in configs if r.atoms.info["config"] == best), configs[0] if configs else None)
        store.put_analysis(
            chosen.atoms if chosen is not None else slab.atoms,
            out.key,
            "coadsorption",
            out.as_dict(),
            protocol,
            out.flags,
            status="ok" if eb_ab is not None else "no-usable-configuration",
            ligand=f"{out.a}+{out.b}",
            eb_ab=eb_ab,
            eb_a=out.eb_a,
            eb_b=out.eb_b,
            delta_e_inter=inter,
            campaign=campaign,
        )
    return out
