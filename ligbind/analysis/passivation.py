"""K–Br passivation energy, defined once: references, the balanced reaction, flags, one stored row.

Reaction (every term relaxed with the same protocol; references are bulk crystals per formula unit):

    slab + a KBr(s) → slab(K, Br) + b CsI(s) + c KI(s)

with, from the composition change Δ of the slab (K, Cs, Br, I): a = ΔBr, b = −ΔCs, c = ΔBr − ΔK. So

- hollow, a K–Br unit adsorbed:            slab + KBr → slab·KBr                       (a = 1, b = c = 0)
- substitute, K for Cs and Br for one I:   slab + KBr → slab(Cs→K, I→Br) + CsI         (a = 1, b = 1, c = 0)
- each extra I → Br exchange:              + KBr … → … + KI                              (a += 1, c += 1)

A negative coefficient moves that reference to the other side. E_pass < 0: the treatment is favourable against
the bulk salts. The energy is the lowest over the relaxed, converged arrangements without flags:

``k-left-site``
    a K moved more than :data:`K_DISPLACED` from where it was put (hopped to another site or desorbed);
``k-left-surface``
    a K rose more than :data:`K_RISE` above its starting height (left the surface);
``br-i-swapped``
    a halide site of the top layer (or an adsorbed X site) now holds the other halide than it was given (the
    Br went back to the I's place, or swapped with a surface I);
``reconstructed``
    the Pb–X bond network of the slab changed (:func:`ligbind.analysis.anomalies.pb_x_network_changed`);
``unconverged``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.geometry import find_mic

from ligbind.analysis.anomalies import pb_x_network_changed
from ligbind.analysis.energies import EnergyMismatchError, Term, reaction_energy
from ligbind.builders.slab import HALIDES, find_layers
from ligbind.calculators import method_label
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.protocols import protocol_hash
from ligbind.store import ResultStore, structure_hash

K_DISPLACED = 2.0  # Å: a K farther than this from its starting site left it (neighbouring sites are ≥ 4.4 Å)
K_RISE = 1.5  # Å: a K this much higher than it started has left the surface
SITE_MATCH = 1.6  # Å: the halide nearest a site's starting position is the one occupying it

# Bulk references at their experimental room-temperature lattice constants (like the slabs, at fixed cell):
REFERENCES: dict[str, tuple[str, float, str]] = {
    "KBr": (
        "rocksalt",
        6.600,
        "R. W. G. Wyckoff, Crystal Structures vol. 1 (Interscience, 1963): a = 6.600 Å",
    ),
    "KI": (
        "rocksalt",
        7.066,
        "R. W. G. Wyckoff, Crystal Structures vol. 1 (Interscience, 1963): a = 7.066 Å",
    ),
    "CsI": (
        "cesiumchloride",
        4.567,
        "R. W. G. Wyckoff, Crystal Structures vol. 1 (Interscience, 1963): a = 4.567 Å",
    ),
}


def reference_structure(name: str) -> Atoms:
    """One formula unit of a bulk reference salt (primitive cell), labelled for the store."""
    if name not in REFERENCES:
        raise EnergyMismatchError(f"no bulk reference for {name} (known: {', '.join(REFERENCES)})")
    structure, a, citation = REFERENCES[name]
    atoms = bulk(name, structure, a=a)
    atoms.info.update(
        kind="reference", label=f"reference:{name}({structure})", reference=name, citation=citation
    )
    return atoms


def reaction_coefficients(slab: Atoms, passivated: Atoms) -> dict[str, int]:
    """Signed bulk-reference coefficients of the passivation reaction (> 0 reactant, < 0 product).

    Raises
    ------
    EnergyMismatchError
        The slab changed in anything but K, Cs, Br and I, or the change is not charge-neutral.
    """
    delta = Counter(passivated.get_chemical_symbols())
    delta.subtract(Counter(slab.get_chemical_symbols()))
    other = {el: d for el, d in delta.items() if d and el not in ("K", "Cs", "Br", "I")}
    if other:
        raise EnergyMismatchError(f"passivation changed {other}: only K, Cs, Br and I may change")
    if delta["K"] + delta["Cs"] != delta["Br"] + delta["I"]:
        raise EnergyMismatchError(f"passivation is not charge-neutral: {dict(+delta)} / {dict(-delta)}")
    coefficients = {"KBr": delta["Br"], "CsI": delta["Cs"], "KI": delta["K"] - delta["Br"]}
    return {name: c for name, c in coefficients.items() if c}


def reaction_text(coefficients: dict[str, int], treatment: str) -> str:
    """The reaction as a user reads it, e.g. ``slab + KBr → slab[KBr-substitute] + CsI``."""

    def side(items):
        return "".join(f" + {'' if n == 1 else n}{name}" for name, n in items)

    left = side((k, c) for k, c in coefficients.items() if c > 0)
    right = side((k, -c) for k, c in coefficients.items() if c < 0)
    return f"slab{left} → slab[{treatment}]{right}"


def passivation_energy(
    passivated: Term, slab: Term, references: dict[str, Term], coefficients: dict[str, int]
) -> float:
    """E_pass = E(slab(K,Br)) + Σ products − E(slab) − Σ reactants, references per formula unit."""
    reactants, products = [slab], [passivated]
    for name, c in coefficients.items():
        (reactants if c > 0 else products).extend([references[name]] * abs(c))
    return reaction_energy(products, reactants)[0]


# ------------------------------------------------------------------------------------------------ flags
def _moved(atoms: Atoms, start: np.ndarray, end: np.ndarray) -> float:
    return float(np.linalg.norm(find_mic(end - start, atoms.cell, atoms.pbc)[0]))


def _halide_sites(initial: Atoms) -> list[int]:
    """Top-layer halides and adsorbed halides of the unrelaxed passivated structure."""
    top = find_layers(initial)[-1]
    adsorbed = [i for i in np.where(initial.get_tags() > 0)[0] if initial[i].symbol in HALIDES]
    return [int(i) for i in top if initial[i].symbol in HALIDES] + [int(i) for i in adsorbed]


def swapped_sites(initial: Atoms, final: Atoms) -> list[int]:
    """Halide sites (top layer, adsorbed) whose nearest halide after relaxation is of the other species."""
    halides = [i for i, s in enumerate(final.get_chemical_symbols()) if s in HALIDES]
    out = []
    for site in _halide_sites(initial):
        d = [_moved(final, initial.positions[site], final.positions[h]) for h in halides]
        nearest = halides[int(np.argmin(d))]
        if min(d) < SITE_MATCH and final[nearest].symbol != initial[site].symbol:
            out.append(site)
    return out


def passivation_flags(initial: Atoms, result: Result) -> list[str]:
    """Anomaly flags of one relaxed passivated structure (``initial``: as built)."""
    final = result.atoms
    flags = [] if result.converged else ["unconverged"]
    k_indices = initial.info.get("k_indices", [])
    if any(_moved(final, initial.positions[k], final.positions[k]) > K_DISPLACED for k in k_indices):
        flags.append("k-left-site")
    if any(final.positions[k, 2] - initial.positions[k, 2] > K_RISE for k in k_indices):
        flags.append("k-left-surface")
    if swapped_sites(initial, final):
        flags.append("br-i-swapped")
    if pb_x_network_changed(initial, final):
        flags.append("reconstructed")
    return flags


# ---------------------------------------------------------------------------------------------- outcome
@dataclass
class PassivationOutcome:
    """E_pass of one treatment (lowest usable arrangement), the terms, every arrangement tried, and E_F."""

    treatment: str
    mode: str
    n_k: int
    exchange: int
    seed: int
    protocol: str
    e_pass: float | None
    e_slab: float
    slab_key: str
    references: dict[str, dict[str, Any]] = field(default_factory=dict)
    reaction: str = ""
    arrangements: list[dict[str, Any]] = field(default_factory=list)
    best_key: str | None = None
    ef_bare: float | None = None
    ef_passivated: float | None = None
    delta_ef: float | None = None
    key: str = ""
    campaign: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def e_pass_per_k(self) -> float | None:
        return None if self.e_pass is None else self.e_pass / self.n_k


def passivation_key(slab: Result, treatment: str, n_k: int, exchange: int, seed: int) -> str:
    """Key of the passivation row of this relaxed slab and treatment."""
    return (
        f"passivation-{structure_hash(slab.atoms)}-{protocol_hash(slab.protocol)}-{treatment}-n{n_k}-x{exchange}"
        f"-s{seed}"
    )


def evaluate_arrangements(
    slab: Result,
    references: dict[str, Result],
    arrangements: list[tuple[Atoms, Result | None]],
    protocol: dict[str, Any],
) -> tuple[float | None, str | None, list[dict[str, Any]], str]:
    """E_pass of each arrangement, the lowest usable one and its key, the rows, and the reaction text."""
    p_hash = protocol_hash(protocol)
    slab_term = Term.from_atoms("slab", slab.atoms, slab.energy, p_hash, True, slab.converged)
    ref_terms = {
        name: Term.from_atoms(name, r.atoms, r.energy, p_hash, False, r.converged)
        for name, r in references.items()
    }
    rows, usable, reaction = [], {}, ""
    for initial, r in arrangements:
        row = {k: initial.info.get(k) for k in ("arrangement", "sites", "k_indices", "br_indices")}
        if r is None:
            rows.append({**row, "status": "failed", "flags": ["failed"]})
            continue
        coefficients = reaction_coefficients(slab.atoms, initial)
        reaction = reaction_text(coefficients, initial.info["treatment"])
        flags = passivation_flags(initial, r)
        term = Term.from_atoms("passivated", r.atoms, r.energy, p_hash, True, True)
        e_pass = passivation_energy(term, slab_term, ref_terms, coefficients)
        rows.append({**row, "e_pass": e_pass, "status": r.status, "flags": flags, "key": r.key})
        if r.converged and not flags:
            usable[r.key] = e_pass
    best = min(usable, key=usable.get) if usable else None
    return (usable[best] if best else None), best, rows, reaction


def best_arrangement(screen: PassivationOutcome, built: list[Atoms]) -> Atoms:
    """The arrangement (as built) of the screen's lowest usable one: what a verification relaxes with DFT."""
    label = next((r["arrangement"] for r in screen.arrangements if r.get("key") == screen.best_key), None)
    match = [a for a in built if label is not None and a.info.get("arrangement") == label]
    if not match:
        raise LigbindError(f"the screen found no usable {screen.treatment} arrangement to verify")
    return match[0]


def analyse_passivation(
    slab: Result,
    references: dict[str, Result],
    arrangements: list[tuple[Atoms, Result | None]],
    protocol: dict[str, Any],
    *,
    treatment: str,
    mode: str,
    n_k: int,
    exchange: int,
    seed: int,
    store: ResultStore | None = None,
    campaign: str | None = None,
) -> PassivationOutcome:
    """E_pass over the relaxed arrangements, stored as one row of kind ``passivation``."""
    e_pass, best, rows, reaction = evaluate_arrangements(slab, references, arrangements, protocol)
    out = PassivationOutcome(
        treatment=treatment,
        mode=mode,
        n_k=n_k,
        exchange=exchange,
        seed=seed,
        protocol=protocol["name"],
        e_pass=e_pass,
        e_slab=slab.energy,
        slab_key=slab.key,
        references={
            name: {
                "energy": r.energy,
                "key": r.key,
                "structure": REFERENCES[name][0],
                "a": REFERENCES[name][1],
                "citation": REFERENCES[name][2],
            }
            for name, r in references.items()
        },
        reaction=reaction,
        arrangements=rows,
        best_key=best,
        campaign=campaign,
    )
    out.key = passivation_key(slab, treatment, n_k, exchange, seed)
    if store is not None:
        store_passivation(store, slab, out, protocol)
    return out


def store_passivation(
    store: ResultStore, slab: Result, out: PassivationOutcome, protocol: dict[str, Any]
) -> None:
    """(Re)write the passivation row of ``out`` (also after E_F was added to it)."""
    flags = sorted({f for r in out.arrangements for f in r["flags"]})
    store.put_analysis(
        slab.atoms,
        out.key,
        "passivation",
        out.as_dict(),
        protocol,
        flags,
        status="ok" if out.e_pass is not None else "no-usable-arrangement",
        treatment=out.treatment,
        e_pass=out.e_pass,
        e_pass_per_k=out.e_pass_per_k,
        n_k=out.n_k,
        exchange=out.exchange,
        ef_bare=out.ef_bare,
        ef_passivated=out.ef_passivated,
        delta_ef=out.delta_ef,
        campaign=out.campaign,
    )


def load_passivation(store: ResultStore, key: str) -> PassivationOutcome | None:
    """The passivation analysis stored under ``key``, or None."""
    row = store.get(key)
    return PassivationOutcome(**row.data["outcome"]) if row is not None else None


# ------------------------------------------------------------------------------------------------ table
PASSIVATION_COLUMNS = [
    "treatment",
    "n_k",
    "exchange",
    "e_pass",
    "e_pass_per_k",
    "slab_drop",
    "treated_drop",
    "reaction",
    "e_slab",
    "references",
    "arrangements",
    "ef_bare",
    "ef_passivated",
    "delta_ef",
    "flags",
    "protocol",
    "method",
    "campaign",
]


def _arrangements_text(rows: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{r.get('arrangement')}: "
        + ("failed" if r.get("e_pass") is None else f"{r['e_pass']:.3f}")
        + (f" [{','.join(r['flags'])}]" if r.get("flags") else "")
        for r in rows
    )


def passivation_host_drops(
    store: ResultStore, row, lowest: dict[tuple[str, str], float]
) -> tuple[float | None, ...]:
    """How far (eV) the lowest hosts that defect analyses found lie below the slab and below the best
    arrangement of one passivation row (None: no lower host known)."""
    from ligbind.analysis.tables import host_drop, key_host, stored_host_drop

    out = row.data.get("outcome", {})
    slab_hash, p_hash = key_host(row.get("key"))
    slab_drop = host_drop(lowest, slab_hash, p_hash, out["e_slab"])
    return slab_drop, stored_host_drop(store, lowest, out.get("best_key"), p_hash)


def e_pass_on_lowest_hosts(
    store: ResultStore, row, lowest=None
) -> tuple[float | None, float | None, float | None]:
    """(E_pass against the lowest hosts known, slab_drop, treated_drop) of one stored passivation row:
    E_pass + slab_drop − treated_drop (:func:`passivation_host_drops`)."""
    from ligbind.analysis.tables import lowest_hosts

    lowest = lowest_hosts(store, row.get("campaign")) if lowest is None else lowest
    slab_drop, treated_drop = passivation_host_drops(store, row, lowest)
    e_pass = row.get("e_pass")
    if e_pass is not None:
        e_pass += (slab_drop or 0.0) - (treated_drop or 0.0)
    return e_pass, slab_drop, treated_drop


def passivation_table(store: ResultStore, campaign: str | None = None, protocol_hash: str | None = None):
    """One row per passivation analysis: E_pass with its reaction and reference energies, E_F, ΔE_F (eV).

    E_pass is taken against the lowest hosts known, like E_F and E_vac: when a Frenkel or vacancy analysis
    relaxed the bare slab (``slab_drop``) or the best arrangement (``treated_drop``) again lower, E_pass =
    the stored E_pass + slab_drop − treated_drop (per K: divided by n_k). ``arrangements`` lists each
    arrangement against the slab as first relaxed.
    """
    import pandas as pd

    from ligbind.analysis.tables import as_numbers, lowest_hosts

    query: dict[str, Any] = {"kind": "passivation"}
    if campaign:
        query["campaign"] = campaign
    if protocol_hash:
        query["protocol_hash"] = protocol_hash
    lowest = lowest_hosts(store, campaign, protocol_hash)
    rows = []
    for row in store.select(**query):
        out = row.data.get("outcome", {})
        refs = out.get("references", {})
        e_pass, slab_drop, treated_drop = e_pass_on_lowest_hosts(store, row, lowest)
        rows.append(
            {
                "treatment": row.get("treatment"),
                "n_k": row.get("n_k"),
                "exchange": row.get("exchange"),
                "e_pass": e_pass,
                "e_pass_per_k": None if e_pass is None else e_pass / row.get("n_k"),
                "slab_drop": slab_drop,
                "treated_drop": treated_drop,
                "reaction": out.get("reaction", ""),
                "e_slab": out.get("e_slab"),
                "references": "; ".join(
                    f"{k} ({v['structure']}, a={v['a']:.3f} Å): {v['energy']:.4f} eV/f.u."
                    for k, v in refs.items()
                ),
                "arrangements": _arrangements_text(out.get("arrangements", [])),
                "ef_bare": row.get("ef_bare"),
                "ef_passivated": row.get("ef_passivated"),
                "delta_ef": row.get("delta_ef"),
                "flags": row.get("flags", "none"),
                "protocol": row.protocol,
                "method": method_label(row.get("is_dft")),
                "campaign": row.get("campaign", ""),
            }
        )
    numbers = ["e_pass", "e_pass_per_k", "slab_drop", "treated_drop", "ef_bare", "ef_passivated", "delta_ef"]
    return as_numbers(pd.DataFrame(rows, columns=PASSIVATION_COLUMNS), numbers)


def write_passivation_table(
    store: ResultStore,
    outdir,
    campaign: str | None = None,
    protocol_hash: str | None = None,
    dft_protocol_hash: str | None = None,
) -> dict[str, Any]:
    """passivation.csv and passivation.md in ``outdir`` when the store holds passivation rows (the verification
    protocol's rows, ``dft_protocol_hash``, after the screen's)."""
    import pandas as pd

    from ligbind.analysis.tables import _write

    df = passivation_table(store, campaign, protocol_hash)
    if dft_protocol_hash and protocol_hash:
        dft = passivation_table(store, campaign, dft_protocol_hash)
        df = pd.concat([df, dft], ignore_index=True) if len(dft) else df
    if not len(df):
        return {}
    header = (
        "# K–Br passivation (eV): E_pass = E(slab[treatment]) + Σ products − E(slab) − Σ reactants, "
        "references bulk salts per formula unit (`references`; the reaction in `reaction`), lowest usable "
        "arrangement (negative = favourable), against the lowest hosts known: when a Frenkel or vacancy "
        "analysis relaxed the bare slab or the best arrangement again lower (`slab_drop`, `treated_drop`, eV), "
        "E_pass = E_pass(as first relaxed) + slab_drop − treated_drop; `arrangements` lists each arrangement "
        "against the slab as first relaxed. E_F on the bare and on the passivated slab, "
        "ΔE_F = E_F(passivated) − E_F(bare). Flagged arrangements (k-left-site, k-left-surface, br-i-swapped, "
        "reconstructed, unconverged) are listed in `arrangements` and not used. Rows whose method is DFT relax "
        "the screen's lowest usable arrangement again with the campaign's verification protocol, against the "
        "DFT slab and the bulk salts computed with that protocol's bulk k-points.\n\n"
    )
    return _write(df, Path(outdir), "passivation", header)
