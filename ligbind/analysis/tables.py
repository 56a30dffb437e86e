"""Binding-energy and Frenkel tables from the results store: pandas → CSV, Markdown, PNG bar plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ligbind.store import ResultStore

BINDING_COLUMNS = [
    "ligand",
    "mode",
    "eb",
    "eb_including_flagged",
    "flagged_configs",
    "e_complex",
    "e_ligand",
    "e_slab",
    "e_byproduct",
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


def binding_table(store: ResultStore, campaign: str | None = None) -> pd.DataFrame:
    """One row per (ligand, mode, protocol) binding analysis; Eb in eV, negative = binding."""
    rows = []
    query = {"kind": "binding"}
    if campaign:
        query["campaign"] = campaign
    for row in store.select(**query):
        outcome = row.data.get("outcome", {})
        rows.append(
            {
                "ligand": row.ligand,
                "mode": row.mode,
                "eb": row.get("eb"),
                "eb_including_flagged": row.get("eb_including_flagged"),
                "e_complex": row.get("e_complex"),
                "e_ligand": row.get("e_ligand"),
                "e_slab": row.get("e_slab"),
                "e_byproduct": row.get("e_byproduct"),
                "protocol": row.protocol,
                "backend": row.backend,
                "method": "DFT" if row.get("is_dft") else "ML potential (not DFT)",
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
    df = pd.DataFrame(rows, columns=BINDING_COLUMNS)
    df["best_config"] = df["best_config"].astype("Int64")
    df["configs_tried"] = df["configs_tried"].astype("Int64")
    return df.sort_values(["protocol", "eb"], na_position="last").reset_index(drop=True)


def frenkel_table(store: ResultStore, campaign: str | None = None) -> pd.DataFrame:
    """One row per Frenkel analysis: E_F bare, with ligand, ΔE_F (eV)."""
    query = {"kind": "frenkel"}
    if campaign:
        query["campaign"] = campaign
    rows = [
        {
            "ligand": row.get("ligand") or "(bare)",
            "ef_bare": row.get("ef_bare"),
            "ef_ligand": row.get("ef_ligand"),
            "delta_ef": row.get("delta_ef"),
            "protocol": row.protocol,
        }
        for row in store.select(**query)
    ]
    return pd.DataFrame(rows, columns=["ligand", "ef_bare", "ef_ligand", "delta_ef", "protocol"])


def write_tables(store: ResultStore, outdir: str | Path, campaign: str | None = None) -> dict[str, Path]:
    """Write binding.csv, binding.md, binding.png (and frenkel.* if any) to ``outdir``; return the paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    df = binding_table(store, campaign)
    paths["csv"] = outdir / "binding.csv"
    df.to_csv(paths["csv"], index=False, float_format="%.4f")
    paths["md"] = outdir / "binding.md"
    note = ""
    if (df["method"] != "DFT").any():
        note = (
            "\n\nRows with method 'ML potential (not DFT)' come from a machine-learned potential, not DFT.\n"
        )
    if (df["truncated_from"] != "").any():
        note += "\nRows with truncated_from set used a ligand whose alkyl chains were truncated.\n"
    header = (
        "# Binding energies (eV; negative = binding)\n\n"
        "`eb` is the lowest converged configuration without anomaly flags; `eb_including_flagged` also counts "
        "flagged ones (desorbed, dissociated, reconstructed, basin-changed), for information only; "
        "`flagged_configs` lists each flagged configuration with its flags and Eb.\n\n"
    )
    paths["md"].write_text(header + df.to_markdown(index=False, floatfmt=".3f") + note + "\n")
    paths["png"] = outdir / "binding.png"
    _bar_plot(df, paths["png"])
    ft = frenkel_table(store, campaign)
    if len(ft):
        paths["frenkel_csv"] = outdir / "frenkel.csv"
        ft.to_csv(paths["frenkel_csv"], index=False, float_format="%.4f")
        paths["frenkel_md"] = outdir / "frenkel.md"
        paths["frenkel_md"].write_text(
            "# Iodine Frenkel pair energies (eV)\n\n" + ft.to_markdown(index=False, floatfmt=".3f") + "\n"
        )
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
