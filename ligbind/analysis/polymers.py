"""Cooperativity of polymer repeat units: Eb(n = 2) against 2·Eb(n = 1), from the binding rows of one cell.

ΔE_coop = Eb(n=2) − 2·Eb(n=1); negative = the second repeat unit binds more strongly than an isolated one
(cooperative), positive = anti-cooperative. Both Eb must come from the same relaxed slab (same cell, same
protocol): a pair from different slabs is reported with the flag ``different-cells`` and no ΔE_coop.
Families are recognised from the library names of the n = 1 and n = 2 units (PP1/PP2, HP1/HP2, DP1/DP2; a
truncation suffix such as ``[C6]`` is kept in the family label).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from ligbind.calculators import method_label
from ligbind.store import ResultStore

UNIT_NAME = re.compile(r"^(?P<family>[A-Za-z]+)(?P<n>[12])(?P<suffix>\[[^\]]*\])?$")


def cooperativity(eb_n2: float, eb_n1: float) -> float:
    """ΔE_coop = Eb(n=2) − 2·Eb(n=1) (eV)."""
    return eb_n2 - 2.0 * eb_n1


def _units(
    store: ResultStore, query: dict[str, Any]
) -> dict[tuple[str, str, str], dict[int, dict[str, Any]]]:
    """Binding rows of polymer units by (family, mode, protocol) and n."""
    units: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for row in store.select(**query):
        m = UNIT_NAME.match(str(row.ligand))
        if not m:
            continue
        family = m.group("family") + (m.group("suffix") or "")
        outcome = row.data.get("outcome", {})
        units.setdefault((family, row.mode, row.protocol), {})[int(m.group("n"))] = {
            "ligand": row.ligand,
            "eb": row.get("eb"),
            "slab_key": outcome.get("slab_key"),
            "method": method_label(row.get("is_dft")),
        }
    return units


def cooperativity_table(store: ResultStore, campaign: str | None = None, protocol_hash: str | None = None):
    """One row per polymer family holding both n = 1 and n = 2 binding analyses."""
    query: dict[str, Any] = {"kind": "binding"}
    if campaign:
        query["campaign"] = campaign
    if protocol_hash:
        query["protocol_hash"] = protocol_hash
    rows = []
    for (family, mode, protocol), by_n in sorted(_units(store, query).items()):
        if 1 not in by_n or 2 not in by_n:
            continue
        one, two = by_n[1], by_n[2]
        same_cell = one["slab_key"] == two["slab_key"]
        flags = [] if same_cell else ["different-cells"]
        if one["eb"] is None or two["eb"] is None:
            flags.append("missing-eb")
        usable = not flags
        slab = store.get(one["slab_key"]) if one["slab_key"] else None
        rows.append(
            {
                "family": family,
                "mode": mode,
                "eb_n1": one["eb"],
                "eb_n2": two["eb"],
                "two_eb_n1": 2 * one["eb"] if one["eb"] is not None else None,
                "delta_e_coop": cooperativity(two["eb"], one["eb"]) if usable else None,
                "cell": _cell_label(slab),
                "protocol": protocol,
                "method": one["method"],
                "flags": ",".join(flags) or "none",
            }
        )
    return pd.DataFrame(rows)


def _cell_label(slab_row) -> str:
    if slab_row is None:
        return ""
    info = slab_row.data.get("info", {})
    size = info.get("size")
    return "x".join(str(s) for s in size) if isinstance(size, (list, tuple)) else str(size or "")


def write_cooperativity_table(
    store: ResultStore, outdir, campaign=None, protocol_hash=None
) -> dict[str, Path]:
    """``polymers.csv`` and ``polymers.md`` when the store holds n = 1 and n = 2 of a family (else nothing)."""
    df = cooperativity_table(store, campaign, protocol_hash)
    if not len(df):
        return {}
    from ligbind.analysis.tables import _write

    return _write(
        df,
        Path(outdir),
        "polymers",
        "# Polymer repeat units: cooperativity (eV)\n\n"
        "ΔE_coop = Eb(n=2) − 2·Eb(n=1), both on the same relaxed slab (`cell`) with the same protocol; negative = "
        "the two-unit chain binds more strongly than two separate units (cooperative).\n\n",
    )
