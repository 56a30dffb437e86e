"""K–Br passivation end to end without a workflow engine: E_pass, and E_F with and without the treatment.

Same shape as :mod:`ligbind.recipes`: every calculation is a :func:`ligbind.jobs.relax` committed to the store
at once (a rerun or a campaign sharing the store reuses it); the analysis is
:mod:`ligbind.analysis.passivation`, shared with the campaign steps (:mod:`ligbind.engine.passivation_steps`),
which call the calculation functions here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase import Atoms

from ligbind.analysis.passivation import (
    PassivationOutcome,
    analyse_passivation,
    reaction_coefficients,
    reference_structure,
    store_passivation,
)
from ligbind.builders.passivation import default_exchange, distinct_arrangements, passivate
from ligbind.builders.slab import check_pbi2_terminated
from ligbind.errors import LigbindError
from ligbind.jobs import Result, relax, result_from_row
from ligbind.protocols import DEFAULT_PROTOCOL, load_protocol
from ligbind.recipes import Progress, _frenkel_on, _noop, relax_slab
from ligbind.store import ResultStore

MAX_ARRANGEMENTS = 3  # arrangements relaxed by default (the symmetry-distinct ones, seeded subset beyond)


def check_passivation(slab: Atoms, mode: str, n: int, exchange: int | None, max_arrangements: int) -> None:
    """Refuse a treatment that cannot be built on ``slab`` (bad mode, n or exchange too large), before any work."""
    if max_arrangements < 1:
        raise LigbindError(f"bad number of arrangements {max_arrangements}: need at least 1")
    distinct_arrangements(slab, mode, n, exchange)


def check_inputs(
    slab: Atoms,
    mode: str,
    n: int,
    exchange: int,
    seed: int,
    max_arrangements: int,
    protocols: list[dict[str, Any]],
) -> None:
    """Refuse, before any work, what a protocol cannot compute: an arrangement (built here on the unrelaxed slab,
    as it will be on the relaxed one: e.g. too little vacuum above the K–Br for GPAW's box) or a bulk salt of the
    reaction (a DFT protocol without k-points for crystals)."""
    from ligbind.calculators import backend_of

    built = passivate(slab, mode, n, exchange, seed=seed, max_arrangements=max_arrangements)
    salts = [reference_structure(name) for name in needed_references(slab, built)]
    for protocol in protocols:
        for atoms in [*built, *salts]:
            backend_of(protocol).check_input(atoms, protocol)


def relax_reference(name: str, protocol: dict[str, Any], store: ResultStore, workdir: Path) -> Result:
    """Relax one bulk reference salt (KBr, KI, CsI) per formula unit, at its experimental lattice constant."""
    return relax(reference_structure(name), protocol, store=store, workdir=workdir)


def passivated_structures(
    slab: Result, mode: str, n: int, exchange: int | None, seed: int, max_arrangements: int
) -> list[Atoms]:
    """The treatment's arrangements built on the relaxed slab (same basin, fewer steps)."""
    return passivate(slab.atoms, mode, n, exchange, seed=seed, max_arrangements=max_arrangements)


def needed_references(slab: Atoms, structures: list[Atoms]) -> list[str]:
    """Names of the bulk references the reactions of ``structures`` use (sorted)."""
    return sorted({name for s in structures for name in reaction_coefficients(slab, s)})


def passivation(
    slab: Atoms,
    protocol: str | dict[str, Any] = DEFAULT_PROTOCOL,
    *,
    mode: str = "hollow",
    n: int = 1,
    exchange: int | None = None,
    seed: int = 0,
    max_arrangements: int = MAX_ARRANGEMENTS,
    frenkel: bool = False,
    max_pairs: int = 3,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> PassivationOutcome:
    """E_pass of a K–Br treatment of ``slab`` (and, with ``frenkel``, E_F bare, passivated, and ΔE_F).

    The slab is relaxed, the arrangements are built on it and relaxed, the bulk references relaxed; E_pass is
    the lowest usable arrangement's (see :mod:`ligbind.analysis.passivation`). With ``frenkel``, Frenkel pairs
    are relaxed on the bare slab and on the best passivated slab, each host storing its own ``frenkel`` row
    (the passivated host under the treatment's name), and ΔE_F = E_F(passivated) − E_F(bare).
    """
    protocol = load_protocol(protocol, overrides)
    check_pbi2_terminated(slab)
    check_passivation(slab, mode, n, exchange, max_arrangements)
    if frenkel and max_pairs < 1:
        raise LigbindError(f"bad number of Frenkel pairs {max_pairs}: need at least 1")
    exchange = default_exchange(mode, n) if exchange is None else exchange
    check_inputs(slab, mode, n, exchange, seed, max_arrangements, [protocol])
    store = store or ResultStore()
    workdir = Path(workdir)
    progress("slab")
    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    structures = passivated_structures(slab_result, mode, n, exchange, seed, max_arrangements)
    references = {}
    for name in needed_references(slab_result.atoms, structures):
        progress(f"reference {name}")
        references[name] = relax_reference(name, protocol, store, workdir).require_converged(
            f"{name} reference"
        )
    arrangements = []
    for atoms in structures:
        progress(f"arrangement {atoms.info['arrangement']}")
        arrangements.append((atoms, relax(atoms, protocol, store=store, workdir=workdir)))
    out = analyse_passivation(
        slab_result,
        references,
        arrangements,
        protocol,
        treatment=f"KBr-{mode}",
        mode=mode,
        n_k=n,
        exchange=exchange,
        seed=seed,
        store=store,
    )
    if frenkel:
        add_frenkel(out, slab_result, protocol, store, workdir, max_pairs, progress)
    return out


def passivated_host(store: ResultStore, out: PassivationOutcome, protocol: dict[str, Any]) -> Result:
    """The relaxed best arrangement of ``out`` from the store: the host for defects on the passivated surface.

    It is PbX2-terminated with the adsorbed K–Br unit tagged as an adsorbate (hollow mode), so the defect
    builders (Frenkel pairs, vacancies) use it like a ligand@slab complex.
    """
    if out.best_key is None:
        raise LigbindError(f"no usable {out.treatment} arrangement to build defects on")
    return result_from_row(store.get(out.best_key), protocol)


def add_frenkel(
    out: PassivationOutcome,
    slab_result: Result,
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    max_pairs: int,
    progress: Progress = _noop,
) -> PassivationOutcome:
    """E_F on the bare slab and on the best passivated slab; ΔE_F(passivation) into ``out`` and its row."""
    bare = _frenkel_on(slab_result, protocol, store, workdir, max_pairs, progress, None)
    out.ef_bare = bare.ef
    if out.best_key is not None:
        host = passivated_host(store, out, protocol)
        treated = _frenkel_on(host, protocol, store, workdir, max_pairs, progress, out.treatment, bare)
        out.ef_passivated, out.delta_ef = treated.ef, treated.delta_ef
    store_passivation(store, slab_result, out, protocol)
    return out
