"""``slab: {size: auto}`` in a campaign: every ligand on the smallest n×n slab that fits them all.

The size is found once (placement only, no calculation: :func:`ligbind.builders.cells.smallest_fitting_size`)
and remembered in ``<workdir>/size-auto.json`` under a hash of what decides it (material, phase, slab settings,
ligands and modes, seed), so later ``ligbind run/status/results`` calls on the YAML do not place again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ligbind.builders.cells import is_auto, smallest_fitting_size
from ligbind.builders.slab import build_slab

CACHE_FILE = "size-auto.json"


def _make_slab(material: str, phase: str | None, slab: dict[str, Any]):
    def make(n: int):
        return build_slab(
            material=material,
            phase=phase,
            size=(n, n),
            layers=int(slab.get("layers", 3)),
            vacuum=float(slab.get("vacuum", 12.0)),
            fix_layers=int(slab.get("fix_layers", 1)),
            br_fraction=float(slab.get("br_fraction", 0.0)),
            seed=int(slab.get("seed", 0)),
        )

    return make


def resolve_auto_size(
    material: str, phase: str | None, slab: dict[str, Any], specs: list[dict[str, Any]], seed: int, root: Path
) -> dict[str, Any]:
    """``slab`` with ``size: auto`` replaced by ``NxN`` (and ``size_auto``: each ligand's smallest n)."""
    from ligbind.engine.campaign import entry_from_spec

    if not is_auto(slab.get("size")):
        return slab
    settings = {k: v for k, v in slab.items() if k != "size"}
    ligands = [(s["smiles"], s["mode"]) for s in specs]
    tag = hashlib.sha256(
        json.dumps([material, phase, settings, ligands, seed], default=str).encode()
    ).hexdigest()
    cache = root / CACHE_FILE
    try:
        saved = json.loads(cache.read_text())
    except (OSError, ValueError):
        saved = {}
    if tag not in saved:
        n, smallest = smallest_fitting_size(
            _make_slab(material, phase, slab), [(entry_from_spec(s), s["mode"]) for s in specs], seed=seed
        )
        saved[tag] = {"n": n, "smallest": smallest}
        root.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(saved, indent=1))
    n = saved[tag]["n"]
    return {**slab, "size": f"{n}x{n}", "size_auto": saved[tag]["smallest"]}
