"""Vacancy and migration tables from the results store: defects.{csv,md}, migration.{csv,md,png}."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ligbind.analysis.migration import (
    ENDPOINT_TOLERANCE,
    INTERMEDIATE_DEPTH,
    lowest_image,
    plot_profiles,
    stored_barrier,
)
from ligbind.analysis.tables import _method, _query, _write, as_numbers, host_gaps
from ligbind.store import ResultStore

DEFECT_COLUMNS = [
    "host",
    "element",
    "e_vac",
    "e_vac_bare",
    "delta_e_vac",
    "reference",
    "mu_x",
    "delta_mu_x",
    "charge",
    "e_host",
    "host_drop",
    "host_gap",
    "sites",
    "flags",
    "protocol",
    "method",
    "campaign",
]
MIGRATION_COLUMNS = [
    "host",
    "ea_forward",
    "ea_backward",
    "ea_bare",
    "delta_ea",
    "intermediate",
    "hop",
    "hop_length",
    "images",
    "converged",
    "n_steps",
    "force_calls",
    "e_initial",
    "e_final",
    "lowest_image",
    "refinements",
    "flags",
    "protocol",
    "method",
    "campaign",
]


LCAO_VACANCY_NOTE = (
    "\nRows of {} (an atom-centred basis) carry a basis-set superposition error that is not corrected: "
    "measured on gpaw-laptop (dzp, 2×2 CsPbI3; benchmarks/vacancy_bsse.py) it makes E_vac ~0.32 eV too high and "
    "moves ΔE_vac by 0.005 eV. Compare ligands by ΔE_vac; take absolute E_vac from a plane-wave protocol.\n"
)


def superposes_basis_sets(protocol: dict) -> bool:
    """Whether a stored analysis's protocol computes with an atom-centred basis (its terms superpose)."""
    from ligbind.calculators import backend_of

    return bool(protocol.get("backend")) and backend_of(protocol).superposes_basis_sets(protocol)


def _site_text(s: dict) -> str:
    value = "failed" if s.get("e_vac") is None else f"{s['e_vac']:.3f}"
    flags = f" [{','.join(s['flags'])}]" if s.get("flags") else ""
    return f"{s.get('element')}{s.get('site')}: {value}{flags}"


def vacancy_table(
    store: ResultStore, campaign: str | None = None, protocol_hash: str | None = None
) -> pd.DataFrame:
    """One row per vacancy analysis (host × Δμ_X × charge): E_vac, its reference and every site (eV)."""
    rows, gaps = [], host_gaps(store, campaign, protocol_hash)
    for row in store.select(**_query("vacancy", campaign, protocol_hash)):
        out = row.data.get("outcome", {})
        refs = out.get("references", {})
        rows.append(
            {
                "host": row.get("ligand") or "(bare)",
                "element": row.get("element", ""),
                "e_vac": row.get("e_vac"),
                "e_vac_bare": row.get("e_vac_bare"),
                "delta_e_vac": row.get("delta_e_vac"),
                "reference": "; ".join(
                    f"{v['reference']}, E({el}2) = {v['e_x2']:.4f}" for el, v in refs.items()
                ),
                "mu_x": "; ".join(f"{el}: {v['mu_x']:.4f}" for el, v in refs.items()),
                "delta_mu_x": row.get("delta_mu_x"),
                "charge": row.get("charge", 0),
                "e_host": out.get("e_host"),
                "host_drop": out.get("host_drop") or None,  # eV: host relaxed again from a refilled vacancy
                "host_gap": gaps.get(row.get("key")),  # eV above the lowest host another analysis found
                "sites": "; ".join(_site_text(s) for s in out.get("sites", [])),
                "flags": row.get("flags", "none"),
                "protocol": row.protocol,
                "method": _method(row),
                "campaign": row.get("campaign", ""),
            }
        )
    return pd.DataFrame(rows, columns=DEFECT_COLUMNS)


def barrier_outcomes(store: ResultStore, campaign: str | None = None, protocol_hash: str | None = None):
    """Every stored barrier as a :class:`BarrierOutcome` (with its row); a ligand barrier's ΔEa is dropped when
    the bare barrier it was taken against (``bare_key``; for rows stored before it was kept: same protocol and
    its Ea forward = ``ea_bare``) is flagged today."""
    pairs = [
        (row, stored_barrier(row.data["outcome"]))
        for row in store.select(**_query("barrier", campaign, protocol_hash))
    ]
    flagged = [(row, b) for row, b in pairs if b.ligand is None and b.flags]
    flagged_keys = {b.key for _, b in flagged}
    flagged_values = {(row.protocol, b.ea_forward) for row, b in flagged}
    for row, b in pairs:
        against = b.bare_key in flagged_keys if b.bare_key else (row.protocol, b.ea_bare) in flagged_values
        if b.delta_ea is not None and against:
            b.delta_ea = None
    return pairs


def migration_table(
    store: ResultStore, campaign: str | None = None, protocol_hash: str | None = None
) -> pd.DataFrame:
    """One row per barrier: Ea both ways, ΔEa, the hop and how the NEB went (eV, Å)."""
    rows = [
        {
            "host": b.ligand or "(bare)",
            "ea_forward": b.ea_forward,
            "ea_backward": b.ea_backward,
            "ea_bare": b.ea_bare,
            "delta_ea": b.delta_ea,
            "hop": f"{b.hopper} -> vacancy at {b.site}",
            "hop_length": b.hop_length,
            "images": b.images,
            "converged": b.converged,
            "n_steps": b.n_steps,
            "force_calls": b.force_calls,
            "e_initial": b.e_initial,
            "e_final": b.e_final,
            "lowest_image": lowest_image([p["e_rel"] for p in b.profile]),
            "intermediate": " ".join(f"{b.profile[i]['e_rel']:.4f}" for i in b.minima()),
            "refinements": b.refinements,
            "flags": ",".join(b.flags) or "none",
            "protocol": row.protocol,
            "method": _method(row),
            "campaign": row.get("campaign", ""),
        }
        for row, b in barrier_outcomes(store, campaign, protocol_hash)
    ]
    return as_numbers(pd.DataFrame(rows, columns=MIGRATION_COLUMNS), ["ea_bare", "delta_ea"])


def _stacked(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The first table with the non-empty others appended below it."""
    rest = [t for t in tables[1:] if len(t)]
    return pd.concat([tables[0], *rest], ignore_index=True) if rest else tables[0]


def write_defect_tables(
    store: ResultStore,
    outdir: str | Path,
    campaign: str | None = None,
    protocol_hash: str | None = None,
    dft_protocol_hash: str | None = None,
) -> dict[str, Path]:
    """defects.{csv,md} and migration.{csv,md,png} when the store holds such analyses.

    ``dft_protocol_hash``: a campaign's verification protocol; its vacancy and barrier rows (the screen's best
    site / the same hop on each host, recomputed with DFT) follow the screen's, named by `protocol` and `method`.
    """
    outdir = Path(outdir)
    paths: dict[str, Path] = {}
    # the screen's rows, then the verification protocol's (only beside a screen: no hash means every row)
    hashes = [protocol_hash, *([dft_protocol_hash] if dft_protocol_hash and protocol_hash else [])]
    vac = _stacked([vacancy_table(store, campaign, h) for h in hashes])
    if len(vac):
        lcao = sorted(
            {
                row.protocol
                for h in hashes
                for row in store.select(**_query("vacancy", campaign, h))
                if superposes_basis_sets(row.data.get("protocol") or {})
            }
        )
        paths |= _write(
            vac,
            outdir,
            "defects",
            "# Surface halide vacancies (eV): E_vac = E(slab − X) + μ_X − E(slab), μ_X = ½E(X2) + Δμ_X "
            "(X2 relaxed with the same protocol; Δμ_X = 0 is X2-rich), lowest usable site (its halide in "
            "`element`); ΔE_vac = E_vac(ligand) − E_vac(bare) for the same halide. Flagged sites (vacancy-refilled, ligand-fills-vacancy, "
            "below-pristine, unconverged) are listed in `sites` and not used. Rows whose method is DFT recompute "
            "the screen's lowest usable site of each host with the campaign's verification protocol, every term "
            "(host, vacancy, X2) DFT-relaxed, and the screen's next usable site if DFT left that one unusable "
            "(both in `sites`). E(slab) is the lowest host known (`e_host`): the lowest vacancy refilled and "
            "relaxed as the host, when that ends lower; `host_drop` is by how much (eV); `host_gap`: how far (eV) "
            "it lies above a lower host the Frenkel analysis of the same host found (E_vac low by up to "
            "that).\n\n",
            LCAO_VACANCY_NOTE.format(", ".join(lcao)) if lcao else "",
        )
    mig = _stacked([migration_table(store, campaign, h) for h in hashes])
    if len(mig):
        paths |= _write(
            mig,
            outdir,
            "migration",
            "# Halide migration barriers (eV): climbing-image NEB (IDPP, minimum image) between relaxed "
            "endpoints; Ea = max E(image) − E(endpoint); ΔEa = Ea(ligand) − Ea(bare), only when neither band "
            "is flagged (unconverged, highest-image-endpoint, ion-leaves-surface, ligand-in-path, "
            f"endpoint-not-minimum: an image more than {ENDPOINT_TOLERANCE:g} eV below an endpoint on its half "
            "of the band even after that endpoint was relaxed again from it: `refinements` rounds, at most "
            "compute.migration.endpoint_refinements, empty for a barrier stored before rounds were counted; "
            f"intermediate-minimum: an interior image more than {INTERMEDIATE_DEPTH:g} eV below both neighbours, "
            "a metastable state between two maxima of which only the higher climbed, so Ea may be low, until "
            "one more refinement round relaxes it as a state of its own and runs a climbing band to it from "
            "each endpoint: `intermediate` gives its energy against the initial endpoint, and each way's Ea "
            "is then the largest rise from a minimum, endpoint or intermediate, to a later maximum; a dip "
            "that relaxes back into an endpoint's basin keeps the flag); "
            "`lowest_image` is the lowest "
            "intermediate image against the initial endpoint (negative: the band dips below it; when that dip "
            "lies before the highest image, Ea forward + |lowest_image| is the barrier out of it). Rows whose "
            "method is DFT redo the same hop on each host with the campaign's verification protocol (endpoints "
            "DFT-relaxed, the band pre-converged with the screen protocol); the profile plot shows the screen's. "
            "`hop` is in each host's atom numbering: on an exchange complex, which lacks the slab atoms its "
            "exchange took out, the same atoms carry lower indices than on the bare slab.\n\n",
        )
        paths["migration_png"] = plot_profiles(
            [b for _, b in barrier_outcomes(store, campaign, protocol_hash)], outdir / "migration.png"
        )
    return paths
