"""Binding-energy and Frenkel tables from the results store: pandas → CSV, Markdown, PNG bar plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ligbind.calculators import ML_LABEL, method_label
from ligbind.store import ResultStore, atoms_from_row, structure_hash

BINDING_COLUMNS = [
    "ligand",
    "mode",
    "termination",
    "eb",
    "eb_cp",
    "bsse",
    "eb_including_flagged",
    "flagged_configs",
    "e_complex",
    "e_ligand",
    "e_slab",
    "e_byproduct",
    "slab_drop",
    "complex_drop",
    "protocol",
    "backend",
    "method",
    "configs_tried",
    "best_config",
    "flags",
    "converged",
    "truncated_from",
    "campaign",
]


def _query(kind: str, campaign: str | None, protocol_hash: str | None) -> dict[str, str]:
    query = {"kind": kind}
    if campaign:
        query["campaign"] = campaign
    if protocol_hash:
        query["protocol_hash"] = protocol_hash
    return query


def as_numbers(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of ``df`` as floats (None → NaN), so that a column with gaps is written with the table's
    float format rather than Python's repr."""
    for column in columns:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df


def _method(row) -> str:
    return method_label(row.get("is_dft"))


def binding_table(
    store: ResultStore,
    campaign: str | None = None,
    protocol_hash: str | None = None,
    missing: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per (ligand, mode, protocol) binding analysis; Eb in eV, negative = binding.

    ``missing`` maps ligands that have no binding analysis to the reason (a failed step, not run yet): each
    gets a row with no Eb and the reason in ``flags``, so no ligand disappears from a table silently.
    """
    rows, lowest = [], lowest_hosts(store, campaign, protocol_hash)
    for row in store.select(**_query("binding", campaign, protocol_hash)):
        outcome = row.data.get("outcome", {})
        slab_drop, complex_drop = binding_host_drops(store, row, lowest)
        rows.append(
            {
                "ligand": row.ligand,
                "mode": row.mode,
                "termination": outcome.get("termination", ""),
                "eb": row.get("eb"),
                "eb_cp": outcome.get("eb_cp"),
                "bsse": outcome.get("bsse"),
                "eb_including_flagged": row.get("eb_including_flagged"),
                "e_complex": row.get("e_complex"),
                "e_ligand": row.get("e_ligand"),
                "e_slab": row.get("e_slab"),
                "e_byproduct": row.get("e_byproduct"),
                "slab_drop": slab_drop,
                "complex_drop": complex_drop,
                "protocol": row.protocol,
                "backend": row.backend,
                "method": _method(row),
                "configs_tried": row.get("configs_tried"),
                "best_config": outcome.get("best_config"),
                "flags": row.get("flags", "none"),
                "flagged_configs": "; ".join(
                    f"{c['config']}: {','.join(c['flags'])} ({c['eb']:.3f})"
                    for c in outcome.get("configs", [])
                    if c.get("flags") and c.get("eb") is not None
                ),
                "converged": bool(row.get("converged")),
                "truncated_from": row.get("truncated_from") or "",
                "campaign": row.get("campaign", ""),
            }
        )
    present = {r["ligand"] for r in rows}
    for ligand, reason in (missing or {}).items():
        if ligand not in present:
            rows.append(
                {"ligand": ligand, "flags": f"missing: {reason}", "converged": False, "truncated_from": ""}
            )
    df = as_numbers(pd.DataFrame(rows, columns=BINDING_COLUMNS), ["slab_drop", "complex_drop"])
    df["best_config"] = df["best_config"].astype("Int64")
    df["configs_tried"] = df["configs_tried"].astype("Int64")
    return df.sort_values(["protocol", "eb"], na_position="last").reset_index(drop=True)


FRENKEL_COLUMNS = [
    "host", "ef", "ef_bare", "delta_ef", "host_drop", "host_gap", "pairs", "flags", "protocol", "method",
    "campaign",
]  # fmt: skip


def key_host(key: str) -> tuple[str, str]:
    """(structure hash, protocol hash) that an analysis row's key names its host by (``kind-structure-protocol-…``)."""
    _, structure, p_hash = key.split("-")[:3]
    return structure, p_hash


def _refined_hosts(store: ResultStore, campaign: str | None, protocol_hash: str | None):
    """(row key, (structure hash of the starting host, protocol hash), e_host) of each Frenkel and vacancy row
    that records the host energy it used (the lowest host its refinement found)."""
    for kind in ("frenkel", "vacancy"):
        for row in store.select(**_query(kind, campaign, protocol_hash)):
            e_host = row.data.get("outcome", {}).get("e_host")
            if e_host is not None:
                yield row.get("key"), key_host(row.get("key")), e_host


def lowest_hosts(
    store: ResultStore, campaign: str | None = None, protocol_hash: str | None = None
) -> dict[tuple[str, str], float]:
    """The lowest energy (eV) any Frenkel or vacancy analysis found for a relaxed host, by (structure hash of
    that host as first relaxed, protocol hash): the host relaxed again from its defects, or the host itself."""
    lowest: dict[tuple[str, str], float] = {}
    for _, start, e in _refined_hosts(store, campaign, protocol_hash):
        lowest[start] = min(e, lowest.get(start, e))
    return lowest


def host_drop(
    lowest: dict[tuple[str, str], float], structure: str, p_hash: str, energy: float
) -> float | None:
    """How far (eV) below ``energy`` the lowest host found from this relaxed structure lies, if more than
    :data:`~ligbind.analysis.frenkel.HOST_TOLERANCE` (else None: no lower host is known)."""
    from ligbind.analysis.frenkel import HOST_TOLERANCE

    drop = energy - lowest.get((structure, p_hash), energy)
    return drop if drop > HOST_TOLERANCE else None


def stored_host_drop(
    store: ResultStore, lowest: dict[tuple[str, str], float], key: str | None, p_hash: str
) -> float | None:
    """:func:`host_drop` of the relaxed structure stored under ``key`` (its structure hash, what the defect rows
    of that host key on, and its energy; None without one)."""
    row = store.get(key) if key else None
    if row is None:
        return None
    return host_drop(lowest, structure_hash(atoms_from_row(row)), p_hash, float(row.energy))


def host_gaps(store: ResultStore, campaign: str | None, protocol_hash: str | None) -> dict[str, float]:
    """By row key: how far (eV) the host a Frenkel or vacancy row took its energy against lies above the lowest
    host that any of these rows found from the same starting host (the structure hash in their keys), if more
    than :data:`~ligbind.analysis.frenkel.HOST_TOLERANCE`. Each analysis refines its host from its own defects;
    a gap says another analysis found a lower one, so this row's E_F or E_vac is low by up to the gap."""
    lowest = lowest_hosts(store, campaign, protocol_hash)
    gaps = {
        key: host_drop(lowest, *start, e) for key, start, e in _refined_hosts(store, campaign, protocol_hash)
    }
    return {key: gap for key, gap in gaps.items() if gap is not None}


def binding_host_drops(
    store: ResultStore, row, lowest: dict[tuple[str, str], float]
) -> tuple[float | None, ...]:
    """How far (eV) the lowest hosts that defect analyses found lie below the slab and below the best complex
    of one binding row (None: no lower host known). Eb against them would be eb + slab_drop − complex_drop."""
    out = row.data.get("outcome", {})
    slab_hash, p_hash = key_host(row.get("key"))
    slab_drop = host_drop(lowest, slab_hash, p_hash, out["e_slab"]) if out.get("e_slab") is not None else None
    best = next((c for c in out.get("configs", []) if c.get("config") == out.get("best_config")), {})
    return slab_drop, stored_host_drop(store, lowest, best.get("key"), p_hash)


def frenkel_table(
    store: ResultStore, campaign: str | None = None, protocol_hash: str | None = None
) -> pd.DataFrame:
    """One row per Frenkel host (bare slab or ligand@slab): E_F, and for a ligand E_F(bare) and ΔE_F (eV)."""
    gaps = host_gaps(store, campaign, protocol_hash)
    rows = [
        {
            "host": row.get("ligand") or "(bare)",
            "ef": row.get("ef"),
            "ef_bare": row.get("ef_bare"),
            "delta_ef": row.get("delta_ef"),
            "host_drop": row.get("host_drop") or None,  # eV: host relaxed again from a pair below it
            "host_gap": gaps.get(row.get("key")),  # eV above the lowest host another analysis found
            "pairs": "; ".join(
                f"{p.get('pair')} {p.get('interstitial')}: "
                + ("failed" if p.get("ef") is None else f"{p['ef']:.3f}")
                + (f" [{','.join(p['flags'])}]" if p.get("flags") else "")
                for p in row.data.get("outcome", {}).get("pairs", [])
            ),
            "flags": row.get("flags", "none"),
            "protocol": row.protocol,
            "method": _method(row),
            "campaign": row.get("campaign", ""),
        }
        for row in store.select(**_query("frenkel", campaign, protocol_hash))
    ]
    return pd.DataFrame(rows, columns=FRENKEL_COLUMNS)


COADSORPTION_COLUMNS = [
    "ligands",
    "eb_ab",
    "eb_a",
    "eb_b",
    "delta_e_inter",
    "flags",
    "protocol",
    "method",
    "campaign",
]


def coadsorption_table(
    store: ResultStore, campaign: str | None = None, protocol_hash: str | None = None
) -> pd.DataFrame:
    """One row per ligand pair: Eb(A+B), Eb(A), Eb(B), ΔE_inter (eV)."""
    rows = [
        {
            "ligands": row.ligand,
            "eb_ab": row.get("eb_ab"),
            "eb_a": row.get("eb_a"),
            "eb_b": row.get("eb_b"),
            "delta_e_inter": row.get("delta_e_inter"),
            "flags": row.get("flags", "none"),
            "protocol": row.protocol,
            "method": _method(row),
            "campaign": row.get("campaign", ""),
        }
        for row in store.select(**_query("coadsorption", campaign, protocol_hash))
    ]
    return pd.DataFrame(rows, columns=COADSORPTION_COLUMNS)


VERIFICATION_COLUMNS = [
    "ligand",
    "mode",
    "eb",
    "eb_dft",
    "eb_screen",
    "bsse",
    "slab_drop",
    "complex_drop",
    "source",
    "dft_protocol",
    "screen_protocol",
    "dft_config",
    "screen_config",
    "verified_configs",
    "flags",
    "campaign",
]


def verification_table(store: ResultStore, campaign: str | None = None) -> pd.DataFrame:
    """One row per verified ligand: Eb from DFT and from the screen side by side; ``eb`` is the DFT value."""
    rows, lowest = [], lowest_hosts(store, campaign)
    query = {"kind": "verification", **({"campaign": campaign} if campaign else {})}
    for row in store.select(**query):
        o = row.data.get("outcome", {})
        dft = store.get(o["dft_key"]) if o.get("dft_key") and row.get("eb_dft") is not None else None
        slab_drop, complex_drop = binding_host_drops(store, dft, lowest) if dft is not None else (None, None)
        rows.append(
            {
                "ligand": row.ligand,
                "mode": row.mode,
                "eb": row.get("eb"),
                "eb_dft": row.get("eb_dft"),
                "eb_screen": row.get("eb_screen"),
                "bsse": o.get("bsse"),
                "slab_drop": slab_drop,
                "complex_drop": complex_drop,
                "source": o.get("dft_protocol")
                if row.get("eb_dft") is not None
                else o.get("screen_protocol"),
                "dft_protocol": o.get("dft_protocol"),
                "screen_protocol": o.get("screen_protocol"),
                "dft_config": o.get("dft_config"),
                "screen_config": o.get("screen_config"),
                "verified_configs": ",".join(str(k) for k in o.get("verified_configs", [])),
                "flags": row.get("flags", "none"),
                "campaign": row.get("campaign", ""),
            }
        )
    df = as_numbers(pd.DataFrame(rows, columns=VERIFICATION_COLUMNS), ["bsse", "slab_drop", "complex_drop"])
    return df.sort_values(["eb"], na_position="last").reset_index(drop=True)


ML_NOTE = f"\nRows with method '{ML_LABEL}' come from a machine-learned potential, not DFT.\n"


def _write(df: pd.DataFrame, outdir: Path, stem: str, header: str, note: str = "") -> dict[str, Path]:
    if (df["method"].dropna() != "DFT").any():
        note = ML_NOTE + note
    csv, md = outdir / f"{stem}.csv", outdir / f"{stem}.md"
    df.to_csv(csv, index=False, float_format="%.4f")
    md.write_text(header + df.to_markdown(index=False, floatfmt=".3f") + note + "\n")
    return {f"{stem}_csv": csv, f"{stem}_md": md}


def write_tables(
    store: ResultStore,
    outdir: str | Path,
    campaign: str | None = None,
    protocol_hash: str | None = None,
    missing: dict[str, str] | None = None,
    dft_protocol_hash: str | None = None,
) -> dict[str, Path]:
    """Write every analysis the store holds: binding.{csv,md,png}, and coadsorption.*, frenkel.* when present.

    ``dft_protocol_hash``: the campaign's verification protocol (its DFT rows join the defect table).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    df = binding_table(store, campaign, protocol_hash, missing)
    note = "\nRows with truncated_from set used a ligand whose alkyl chains were truncated.\n"
    paths = _write(
        df,
        outdir,
        "binding",
        "# Binding energies (eV; negative = binding)\n\n"
        "`eb` is the lowest converged configuration without anomaly flags; `eb_including_flagged` also counts "
        "flagged ones (desorbed, dissociated, reconstructed, basin-changed, image-contact), for information only; "
        "`flagged_configs` lists each flagged configuration with its flags and Eb. With an LCAO protocol that asks "
        "for it, `eb_cp` is the lowest Eb − BSSE (counterpoise-corrected; `bsse`, its basis-set superposition "
        "error), the number to compare with plane-wave studies. `slab_drop` / `complex_drop`: a Frenkel or vacancy "
        "analysis relaxed this slab / the best complex again from a defect and found it this much lower (eV); Eb "
        "against those lowest hosts is eb + slab_drop − complex_drop (`eb` stays against the structures the "
        "binding analysis relaxed, which the verification and calibration compare).\n\n",
        note if (df["truncated_from"].fillna("") != "").any() else "",
    )
    paths["csv"], paths["md"] = paths.pop("binding_csv"), paths.pop("binding_md")
    paths["png"] = outdir / "binding.png"
    _bar_plot(df, paths["png"])
    co = coadsorption_table(store, campaign, protocol_hash)
    if len(co):
        paths |= _write(
            co,
            outdir,
            "coadsorption",
            "# Coadsorption (eV): Eb(A+B) = E(A+B@slab) − E(A) − E(B) − E(slab); "
            "ΔE_inter = Eb(A+B) − Eb(A) − Eb(B)\n\n",
        )
    ve = verification_table(store, campaign)
    if len(ve):
        csv, md = outdir / "verified.csv", outdir / "verified.md"
        ve.to_csv(csv, index=False, float_format="%.4f")
        md.write_text(
            "# DFT-verified binding energies (eV; negative = binding)\n\n"
            "`eb` is the DFT value where one exists (`source` names the protocol that produced it), else the "
            "screen's; `eb_screen` is the machine-learned screen's. The best configurations of the screen were "
            "relaxed again with DFT on the DFT-relaxed slab (`verified_configs`). Flags: DFT preferring another "
            "configuration, a screen off by more than the threshold, DFT results that are unusable. `bsse`: the "
            "counterpoise basis-set superposition error of an LCAO protocol's configuration, already taken out "
            "of `eb_dft` (Eb_dft = E(complex) − E(ligand) − E(slab) − BSSE; empty: not corrected). `slab_drop` / "
            "`complex_drop`: a Frenkel or vacancy analysis relaxed the DFT slab / complex again lower by that much "
            "(eV); Eb_dft against those lowest hosts is eb_dft + slab_drop − complex_drop.\n\n"
            + ve.to_markdown(index=False, floatfmt=".3f")
            + "\n"
        )
        paths |= {"verified_csv": csv, "verified_md": md}
    from ligbind.analysis.coverage import write_coverage_tables  # coverage.{csv,md,png}

    paths |= write_coverage_tables(store, outdir, campaign, protocol_hash)
    fr = frenkel_table(store, campaign, protocol_hash)
    dft_fr = frenkel_table(store, campaign, dft_protocol_hash) if dft_protocol_hash and protocol_hash else []
    if len(dft_fr):  # the verification protocol's E_F rows follow the screen's
        fr = pd.concat([fr, dft_fr], ignore_index=True)
    if len(fr):
        paths |= _write(
            fr,
            outdir,
            "frenkel",
            "# Iodine Frenkel pair energies (eV): E_F = E(defect) − E(pristine), lowest usable pair; "
            "ΔE_F = E_F(ligand) − E_F(bare). Flagged pairs (below-pristine, ligand-binds-interstitial, "
            "recombined, unconverged) are listed in `pairs` and not used. Rows whose method is DFT relax the "
            "screen's lowest usable pair again with the campaign's verification protocol on the DFT host, and "
            "the screen's next usable pair if DFT left that one unusable (both in `pairs`). E(pristine) is the "
            "lowest host known: a pair below its host starts a relaxation of the host from that pair with the "
            "halide put back; `host_drop` is how far (eV) that took the host down, and `host_gap` how far (eV) "
            "the host used lies above a lower one the vacancy analysis of the same host found (E_F low by up "
            "to that). A row whose flags still say below-pristine after that has a pair below the lowest host "
            "found: its host is not the minimum, and its E_F is a lower bound.\n\n",
        )
    from ligbind.analysis.passivation import write_passivation_table  # passivation.csv|md when present

    paths |= write_passivation_table(store, outdir, campaign, protocol_hash, dft_protocol_hash)
    from ligbind.analysis.complexes import write_complexation_table  # ion–ligand complexes

    paths |= write_complexation_table(store, outdir, campaign)
    from ligbind.analysis.polymers import write_cooperativity_table  # polymer units n = 1 vs n = 2

    paths |= write_cooperativity_table(store, outdir, campaign, protocol_hash)
    from ligbind.analysis.defect_tables import write_defect_tables  # vacancies, migration barriers

    paths |= write_defect_tables(store, outdir, campaign, protocol_hash, dft_protocol_hash)
    return paths


def _bar_plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = df.dropna(subset=["eb"])
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(usable) + 2), 4))
    labels = [f"{r.ligand}\n({r.mode})" if r.mode != "neutral" else r.ligand for r in usable.itertuples()]
    colors = ["tab:red" if r.flags not in ("none", "") else "tab:blue" for r in usable.itertuples()]
    ax.bar(range(len(usable)), usable["eb"], color=colors)
    ax.set_xticks(range(len(usable)), labels, rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("Eb (eV)")
    protocols = ", ".join(sorted(set(usable["protocol"]))) or "no results"
    ax.set_title(f"Ligand binding energies ({protocols})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
