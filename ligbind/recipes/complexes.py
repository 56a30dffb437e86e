"""Direct path (no workflow engine) for ion–ligand complexes in vacuum: ``ligbind complex-ion``.

The ion, the free ligand and ``n_configs`` chelating complexes are relaxed with one protocol and committed to
the store at once (a rerun or a campaign sharing the store reuses them); :mod:`ligbind.analysis.complexes`
turns them into ΔE = E(complex) − E(ion) − E(ligand). The campaign steps call the same functions.

Charged structures (the ion, the complex) are never pre-relaxed with the protocol's ``prerelax`` potential:
the ML potentials cannot treat a charge. The neutral free ligand is, as in ``ligbind bind``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase import Atoms

from ligbind.analysis.complexes import ComplexationOutcome, analyse_complexation
from ligbind.builders.complexes import (
    Ion,
    build_complexes,
    free_ligand_structure,
    ion_structure,
    parse_ion,
)
from ligbind.builders.library import LigandEntry, resolve_ligand
from ligbind.calculators import backend_of
from ligbind.errors import LigbindError
from ligbind.jobs import Result, relax
from ligbind.protocols import load_protocol
from ligbind.recipes import Progress, _noop
from ligbind.store import ResultStore


def box_vacuum(protocol: dict[str, Any]) -> float:
    """Vacuum (Å) on each side of a molecule: half the protocol's slab vacuum, at least 4 Å."""
    return max(float(protocol["slab"]["vacuum"]) / 2, 4.0)


def check_complex_protocol(protocol: dict[str, Any], ion: Ion, entry: LigandEntry) -> None:
    """Refuse a backend that cannot carry the complex's charge (ML potentials), before any work."""
    charge = ion.charge + int(entry.charge)
    backend = backend_of(protocol)
    if (charge or ion.charge) and not backend.supports_charge:
        raise LigbindError(
            f"protocol '{protocol['name']}' ({backend.name}) cannot treat charged systems: {ion.name} and its "
            f"complex with {entry.name} (charge {charge:+d}) need a DFT protocol (e.g. gpaw-complex, vasp-pbe-d3)"
        )


def relax_ion(ion: Ion, protocol: dict[str, Any], store: ResultStore, workdir: Path) -> Result:
    """The bare ion in its box (no pre-relaxation: it is charged)."""
    return relax(
        ion_structure(ion, box_vacuum(protocol)), protocol, store=store, workdir=workdir, prerelax=False
    )


def relax_free_ligand(
    entry: LigandEntry, protocol: dict[str, Any], store: ResultStore, workdir: Path
) -> Result:
    """The free ligand in its box (pre-relaxed when neutral and the protocol names a prerelax)."""
    atoms = free_ligand_structure(entry, box_vacuum(protocol))
    return relax(atoms, protocol, store=store, workdir=workdir, prerelax=not int(entry.charge))


def complex_structures(
    ion: Ion, entry: LigandEntry, protocol: dict[str, Any], n_configs: int, seed: int = 0
) -> list[Atoms]:
    """The built (unrelaxed) complexes, in the protocol's box."""
    return build_complexes(ion, entry, box_vacuum(protocol), n_configs=n_configs, seed=seed)


def relax_complex(atoms: Atoms, protocol: dict[str, Any], store: ResultStore, workdir: Path) -> Result | None:
    """One complex (charged: no pre-relaxation); None when the ion ran out of the box (it left the ligand).

    A small ligand can release a dication in vacuum (the charge-separated Pb+ + L+ lies lower, and the two
    cations repel); GPAW then stops with a GridBoundsError once the ion reaches the box edge.
    """
    try:
        return relax(atoms, protocol, store=store, workdir=workdir, prerelax=False)
    except Exception as exc:
        if _ion_left_box(exc):
            return None
        raise


def complex_counterpoise(
    initial: Atoms,
    complex_: Result | None,
    ion: Result,
    ligand: Result,
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    include_flagged: bool = False,
):
    """Counterpoise BSSE job of one relaxed complex, the ligand and the ion as fragments with their own charges
    (:func:`ligbind.jobs.counterpoise`); None when the protocol does not ask for it, or the complex gives no ΔE
    (missing, unconverged, flagged unless ``include_flagged``)."""
    from ligbind.analysis.complexes import complex_flags
    from ligbind.jobs import counterpoise

    if complex_ is None or not complex_.converged or not backend_of(protocol).wants_counterpoise(protocol):
        return None
    if complex_flags(initial, complex_) and not include_flagged:
        return None
    charges = (int(ligand.atoms.info.get("charge", 0)), int(ion.atoms.info.get("charge", 0)))
    return counterpoise(complex_, protocol, store=store, workdir=workdir, charges=charges)


def _ion_left_box(exc: Exception) -> bool:
    """GPAW's GridBoundsError, in process or reported by a failed MPI job (its last log line)."""
    return type(exc).__name__ == "GridBoundsError" or (
        isinstance(exc, LigbindError) and ("GridBoundsError" in str(exc) or "too close to edge" in str(exc))
    )


def complex_ion(
    ion: str,
    ligand: str | LigandEntry,
    protocol: str | dict[str, Any] = "gpaw-complex",
    *,
    n_configs: int = 2,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    include_flagged: bool = False,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> ComplexationOutcome:
    """ΔE = E(ion–ligand complex) − E(ion) − E(ligand) in vacuum, the best of ``n_configs`` complexes.

    Raises
    ------
    LigbindError
        Bad ion or ligand, a protocol whose backend cannot carry the charge, bad ``n_configs``.
    """
    protocol = load_protocol(protocol, overrides)
    the_ion = parse_ion(ion)
    entry = ligand if isinstance(ligand, LigandEntry) else resolve_ligand(ligand)
    check_complex_protocol(protocol, the_ion, entry)
    if n_configs < 1:
        raise LigbindError(f"need at least one configuration, got {n_configs}")
    built = complex_structures(the_ion, entry, protocol, n_configs, seed)
    workdir = Path(workdir)
    if protocol["run"]["dry_run"]:
        from ligbind.recipes import DryRunWritten

        raise DryRunWritten(write_complex_inputs(the_ion, entry, protocol, built, workdir))
    store = store or ResultStore()
    progress(f"ion {the_ion.name}")
    ion_result = relax_ion(the_ion, protocol, store, workdir)
    progress(f"ligand {entry.name}")
    lig_result = relax_free_ligand(entry, protocol, store, workdir)
    configs = []
    for atoms in built:
        progress(f"complex {atoms.info['config']}")
        configs.append((atoms, relax_complex(atoms, protocol, store, workdir)))
    bsse = None
    if backend_of(protocol).wants_counterpoise(protocol):
        bsse = {}
        for atoms, r in configs:
            progress(f"counterpoise {atoms.info['config']}")
            args = (ion_result, lig_result, protocol, store, workdir, include_flagged)
            if (cp := complex_counterpoise(atoms, r, *args)) is not None:
                bsse[r.key] = cp.bsse
    return analyse_complexation(
        ion_result, lig_result, configs, protocol, include_flagged=include_flagged, bsse=bsse, store=store
    )


def write_complex_inputs(
    ion: Ion, entry: LigandEntry, protocol: dict[str, Any], built: list[Atoms], workdir: Path
) -> list[Path]:
    """``--dry-run``: the input directories of the ion, the ligand and every complex (VASP: NELECT set)."""
    from ligbind.store import calculation_key

    backend = backend_of(protocol)
    structures = [
        ion_structure(ion, box_vacuum(protocol)),
        free_ligand_structure(entry, box_vacuum(protocol)),
        *built,
    ]
    return [
        backend.write_inputs(a, protocol, workdir / calculation_key("relax", a, protocol)) for a in structures
    ]
