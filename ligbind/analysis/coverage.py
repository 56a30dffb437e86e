"""Coverage analysis, defined once: Eb per ligand and differential Eb for n = 1, 2, ..., flags, stored rows.

- Eb per ligand        Eb(n)/n = [E(n L@slab) − n·E(L) − E(slab)] / n
- Differential Eb      dEb(n) = E(n L@slab) − E((n−1) L@slab) − E(L)   (E(0 L@slab) = E(slab))

Each E(n L@slab) is the lowest converged, unflagged relaxed site set of that n; the differential Eb uses
the reported (lowest) structures of n and n − 1, so it is defined only when n − 1 was computed too. Every
term is a relaxation with the same protocol; the reactions are checked for balance by
:mod:`ligbind.analysis.energies`.

Flags (per relaxed structure; flagged structures are kept in the table and left out of the energies):
``desorbed-copy-k`` (copy k's anchors left bonding distance of every Pb, or — for an ion of a layer
without anchors — it rose > 1.5 Å), ``rearranged`` (an anchor moved to another Pb, a copy moved > 2 Å
in-plane, or two copies bonded: the layer became something else), and those of
:func:`~ligbind.analysis.anomalies.complex_anomalies` (dissociated, bonds-changed, reconstructed,
basin-changed), ``unconverged``, ``implausible-energy``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from ligbind.analysis.anomalies import complex_anomalies, energy_anomalies, is_desorbed, ligand_bonds
from ligbind.analysis.energies import Term, coverage_binding_energy, differential_binding_energy
from ligbind.builders.coverage import copy_indices
from ligbind.calculators import method_label
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.protocols import protocol_hash
from ligbind.store import ResultStore, structure_hash

REARRANGED_SHIFT = 2.0  # Å in-plane displacement of a copy's centroid
RISE = 1.5  # Å: an ion of a layer (no anchors) that rose this much left the surface


def _surface_pb_z(atoms: Atoms) -> tuple[np.ndarray, float]:
    """Indices of the slab's Pb and the mean height of the top Pb plane."""
    tags = atoms.get_tags()
    pb = np.array([a.index for a in atoms if a.symbol == "Pb" and tags[a.index] == 0])
    z = atoms.positions[pb, 2]
    return pb, float(z[z > z.max() - 1.0].mean())


def copy_geometry(atoms: Atoms) -> list[dict[str, Any]]:
    """Per copy: shortest anchor–Pb distance (Å, minimum image, None without anchors) and height.

    Parameters
    ----------
    atoms : ase.Atoms
        A coverage or treatment structure (copy k has tag k).

    Returns
    -------
    list of dict
        {copy, anchor_pb (Å), height (Å of the copy's lowest heavy atom above the top Pb plane)}.
    """
    sites = json.loads(atoms.info.get("anchor_sites", "[]"))
    pb, z_top = _surface_pb_z(atoms)
    out = []
    for copy, idx in copy_indices(atoms).items():
        anchors = [s["anchor"] for s in sites if s.get("copy") == copy]
        dist = min(float(atoms.get_distances(a, pb, mic=True).min()) for a in anchors) if anchors else None
        heavy = [i for i in idx if atoms[i].symbol != "H"] or list(idx)
        out.append(
            {"copy": copy, "anchor_pb": dist, "height": float(atoms.positions[heavy, 2].min() - z_top)}
        )
    return out


def _copy_desorbed(initial: Atoms, final: Atoms, copy: int, before: dict, after: dict) -> bool:
    sites = [s for s in json.loads(initial.info.get("anchor_sites", "[]")) if s.get("copy") == copy]
    if sites:
        probe = final.copy()
        probe.info = {"anchor_sites": json.dumps(sites)}
        return is_desorbed(probe)
    return after["height"] - before["height"] > RISE


def _rearranged(initial: Atoms, final: Atoms) -> bool:
    """An anchor bound to another Pb, a copy shifted in-plane, or a bond between two copies."""
    tags = final.get_tags()
    if any(tags[a] != tags[b] for a, b in ligand_bonds(final)):
        return True
    pb, _ = _surface_pb_z(final)
    pb = pb[final.positions[pb, 2] > final.positions[pb, 2].max() - 1.0]  # top plane only (not z images)
    for s in json.loads(initial.info.get("anchor_sites", "[]")):
        if int(pb[np.argmin(final.get_distances(s["anchor"], pb, mic=True))]) != int(s["pb"]):
            return True
    for idx in copy_indices(final).values():
        shift, _ = find_mic(final.positions[idx] - initial.positions[idx], final.cell, final.pbc)
        if np.linalg.norm(shift.mean(axis=0)[:2]) > REARRANGED_SHIFT:
            return True
    return False


def coverage_anomalies(initial: Atoms, final: Atoms, relaxed_slab: Atoms | None = None) -> list[str]:
    """Flags of one relaxed coverage (or treatment) structure; ``initial`` is the placed structure.

    Parameters
    ----------
    initial, final : ase.Atoms
        The placed and the relaxed structure (same atoms, copy k tagged k).
    relaxed_slab : ase.Atoms, optional
        The relaxed bare slab (for ``basin-changed``).

    Returns
    -------
    list of str
        Flags, see the module docstring.
    """
    flags = [f for f in complex_anomalies(initial, final, relaxed_slab) if f != "desorbed"]
    before = {g["copy"]: g for g in copy_geometry(initial)}
    for g in copy_geometry(final):
        if _copy_desorbed(initial, final, g["copy"], before[g["copy"]], g):
            flags.append(f"desorbed-copy-{g['copy']}")
    if _rearranged(initial, final):
        flags.append("rearranged")
    return flags


@dataclass
class CoverageOutcome:
    """Eb per ligand and differential Eb for each n of one ligand (or treatment) on one slab."""

    ligand: str
    protocol: str
    is_dft: bool
    levels: list[dict[str, Any]] = field(default_factory=list)
    e_ligand: float = 0.0
    e_slab: float = 0.0
    slab_key: str = ""
    ligand_key: str = ""
    treatment: str | None = None
    campaign: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def level(self, n: int) -> dict[str, Any] | None:
        """The row of coverage ``n`` (None if not computed)."""
        return next((r for r in self.levels if r["n"] == n), None)


def coverage_key(
    slab: Result, ligand: str, n: int, protocol: dict[str, Any], treatment: str | None = None
) -> str:
    """Key of the coverage row of ``n`` copies of ``ligand`` (or of a treatment) on this relaxed slab."""
    suffix = f"-{treatment}" if treatment else ""
    return f"coverage-{structure_hash(slab.atoms)}-{protocol_hash(protocol)}-{ligand}-{n}{suffix}"


def _level_rows(results: list[Result], terms: dict[str, Term], n: int, p_hash: str) -> tuple[list, dict]:
    """Eb per ligand of each relaxed site set of one n, and the usable ones."""
    rows, usable = [], {}
    for r in results:
        eb = coverage_binding_energy(
            Term.from_atoms("covered", r.atoms, r.energy, p_hash, True), terms["ligand"], terms["slab"], n
        )
        flags = list(r.anomalies) + energy_anomalies(eb)
        k = int(r.atoms.info.get("site_set", r.atoms.info.get("config", 0)))
        rows.append(
            {
                "site_set": k,
                "sites": r.atoms.info.get("sites"),
                "eb_per_ligand": eb,
                "energy": r.energy,
                "status": r.status,
                "n_steps": r.n_steps,
                "flags": flags,
                "key": r.key,
                "copies": copy_geometry(r.atoms),
            }
        )
        if r.converged and not flags:
            usable[k] = r
    return rows, usable


def analyse_coverage(
    ligand: str,
    protocol: dict[str, Any],
    slab: Result,
    ligand_result: Result,
    levels: dict[int, list[Result]],
    *,
    treatment: str | None = None,
    store: ResultStore | None = None,
    campaign: str | None = None,
) -> CoverageOutcome:
    """Eb per ligand and differential Eb for each n in ``levels`` (relaxed structures with anomalies set).

    Parameters
    ----------
    ligand : str
        Name of the ligand (or of the unit of a treatment layer, e.g. MAI).
    protocol : dict
        The resolved protocol shared by every term.
    slab, ligand_result : Result
        Relaxed bare slab and isolated ligand (each must be converged).
    levels : dict
        {n: relaxed structures of n copies (one per site set)}.
    treatment, store, campaign
        Treatment name (a layer such as ``MAI-layer``), where one row per n (kind ``coverage``) is written,
        and the campaign it belongs to.

    Returns
    -------
    CoverageOutcome
        One level row per n: eb_per_ligand, eb_differential (None without n − 1), e_covered, best site
        set, flags, every site set tried.
    """
    for label, r in (("slab", slab), ("ligand", ligand_result)):
        if not r.converged:
            raise LigbindError(
                f"the {label} relaxation did not converge: no coverage energy without saying so"
            )
    p_hash = protocol_hash(protocol)
    terms = {
        "slab": Term.from_atoms("slab", slab.atoms, slab.energy, p_hash, True),
        "ligand": Term.from_atoms("ligand", ligand_result.atoms, ligand_result.energy, p_hash, False),
    }
    best: dict[int, Result] = {}
    out = CoverageOutcome(
        ligand=ligand,
        protocol=protocol["name"],
        is_dft=bool(protocol["is_dft"]),
        e_ligand=ligand_result.energy,
        e_slab=slab.energy,
        slab_key=slab.key,
        ligand_key=ligand_result.key,
        treatment=treatment,
        campaign=campaign,
    )
    for n in sorted(levels):
        rows, usable = _level_rows(levels[n], terms, n, p_hash)
        chosen = min(usable.values(), key=lambda r: r.energy) if usable else None
        level = {"n": n, "eb_per_ligand": None, "eb_differential": None, "e_covered": None, "site_set": None}
        if chosen is not None:
            best[n] = chosen
            covered = Term.from_atoms("covered", chosen.atoms, chosen.energy, p_hash, True)
            before = terms["slab"] if n == 1 else _term(best.get(n - 1), p_hash)
            level.update(
                eb_per_ligand=coverage_binding_energy(covered, terms["ligand"], terms["slab"], n),
                eb_differential=None
                if before is None or treatment
                else differential_binding_energy(covered, before, terms["ligand"]),
                e_covered=chosen.energy,
                site_set=int(chosen.atoms.info.get("site_set", 0)),
            )
        flags = (
            [] if chosen is not None else sorted({f for r in rows for f in r["flags"]} or {"none-converged"})
        )
        level.update(
            flags=flags,
            sets=rows,
            key=coverage_key(slab, ligand, n, protocol, treatment),
            force_calls=sum(r.force_calls for r in levels[n]),
        )
        out.levels.append(level)
        if store is not None:
            _store_level(store, out, level, chosen or (levels[n][0] if levels[n] else None), protocol)
    return out


def _term(result: Result | None, p_hash: str) -> Term | None:
    return None if result is None else Term.from_atoms("covered-1", result.atoms, result.energy, p_hash, True)


def _store_level(
    store: ResultStore, out: CoverageOutcome, level: dict, chosen: Result | None, protocol: dict[str, Any]
) -> None:
    """One analysis row (kind ``coverage``) per n: the reported structure with its energies and terms."""
    store.put_analysis(
        chosen.atoms if chosen is not None else Atoms(),
        level["key"],
        "coverage",
        {**out.as_dict(), "levels": [level]},
        protocol,
        level["flags"],
        status="ok" if level["eb_per_ligand"] is not None else "no-usable-structure",
        ligand=out.ligand,
        treatment=out.treatment or "",
        n_ligands=level["n"],
        eb_per_ligand=level["eb_per_ligand"],
        eb_differential=level["eb_differential"],
        e_covered=level["e_covered"],
        e_ligand=out.e_ligand,
        e_slab=out.e_slab,
        campaign=out.campaign,
    )


def load_coverage_level(store: ResultStore, key: str) -> dict[str, Any] | None:
    """The stored level row (as :func:`analyse_coverage` wrote it) under ``key``, or None."""
    row = store.get(key)
    return row.data["outcome"]["levels"][0] if row is not None else None


# ------------------------------------------------------------------------------------------------ tables
COVERAGE_COLUMNS = [
    "ligand",
    "treatment",
    "n",
    "eb_per_ligand",
    "eb_differential",
    "e_covered",
    "e_ligand",
    "e_slab",
    "sites",
    "sets_tried",
    "flagged_sets",
    "flags",
    "protocol",
    "method",
    "campaign",
]


def coverage_table(store: ResultStore, campaign: str | None = None, p_hash: str | None = None):
    """One row per (ligand or treatment, n): Eb per ligand, differential Eb and their terms (eV)."""
    import pandas as pd

    query = {"kind": "coverage", **({"campaign": campaign} if campaign else {})}
    if p_hash:
        query["protocol_hash"] = p_hash
    rows = []
    for row in store.select(**query):
        level = row.data.get("outcome", {}).get("levels", [{}])[0]
        chosen = next((s for s in level.get("sets", []) if s["site_set"] == level.get("site_set")), {})
        rows.append(
            {
                "ligand": row.ligand,
                "treatment": row.get("treatment", ""),
                "n": row.get("n_ligands"),
                "eb_per_ligand": row.get("eb_per_ligand"),
                "eb_differential": row.get("eb_differential"),
                "e_covered": row.get("e_covered"),
                "e_ligand": row.get("e_ligand"),
                "e_slab": row.get("e_slab"),
                "sites": chosen.get("sites", ""),
                "sets_tried": len(level.get("sets", [])),
                "flagged_sets": "; ".join(
                    f"{s['site_set']}: {','.join(s['flags'])} ({s['eb_per_ligand']:.3f})"
                    for s in level.get("sets", [])
                    if s["flags"]
                ),
                "flags": row.get("flags", "none"),
                "protocol": row.protocol,
                "method": method_label(row.get("is_dft")),
                "campaign": row.get("campaign", ""),
            }
        )
    df = pd.DataFrame(rows, columns=COVERAGE_COLUMNS)
    return df.sort_values(["treatment", "ligand", "n"]).reset_index(drop=True)


def write_coverage_tables(store: ResultStore, outdir, campaign: str | None = None, p_hash: str | None = None):
    """coverage.csv, coverage.md and coverage.png (Eb per ligand and differential Eb vs n) when present."""
    from pathlib import Path

    from ligbind.analysis.tables import _write

    df = coverage_table(store, campaign, p_hash)
    if not len(df):
        return {}
    outdir = Path(outdir)
    paths = _write(
        df,
        outdir,
        "coverage",
        "# Coverage (eV; negative = binding): Eb per ligand = [E(n L@slab) − n E(L) − E(slab)]/n; "
        "differential Eb = E(n L@slab) − E((n−1) L@slab) − E(L) (n = 1: E(slab)). Each n is the lowest "
        "converged, unflagged symmetry-distinct site set (farthest-point sampling of surface Pb); flagged sets "
        "(desorbed-copy-k, rearranged, reconstructed, ...) are listed and not used. Treatment rows are a "
        "monolayer or an MAI layer (Eb per unit; their E_F is in frenkel.md).\n\n",
    )
    paths["coverage_png"] = outdir / "coverage.png"
    _coverage_plot(df[df["treatment"] == ""], paths["coverage_png"])
    return paths


def _coverage_plot(df, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for k, (ligand, group) in enumerate(df.groupby("ligand")):
        color = f"C{k}"
        ax.plot(group["n"], group["eb_per_ligand"], "o-", color=color, label=f"{ligand}: Eb per ligand")
        ax.plot(group["n"], group["eb_differential"], "s--", color=color, label=f"{ligand}: differential Eb")
    ax.set_xlabel("ligands per slab n")
    ax.set_ylabel("Eb (eV)")
    protocols = ", ".join(sorted(set(df["protocol"]))) or "no results"
    ax.set_title(f"Binding vs coverage ({protocols})", fontsize=10)
    if len(df):
        ax.legend(fontsize=7)
        ax.set_xticks(sorted(set(df["n"])))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
