"""Engine-free paths for surface halide vacancies and halide migration barriers (``ligbind vacancy|barrier``).

Each calculation is a :func:`ligbind.jobs.relax` (or :func:`ligbind.neb.run_neb`) committed to the store at
once; a rerun reuses everything already computed. The analyses live in :mod:`ligbind.analysis.vacancy` and
:mod:`ligbind.analysis.migration` and are shared with the campaign steps, which call the functions here
(:func:`relax_reference`, :func:`relax_vacancy`, :func:`relax_endpoints`, :func:`barrier_on`).

Hosts: the bare slab, or the best ligand@slab complex of :func:`ligbind.recipes.bind`; the functions taking a
``host`` (a relaxed :class:`~ligbind.jobs.Result`) accept any relaxed PbX2-terminated surface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

import ligbind.jobs as jobs
from ligbind.analysis.migration import (
    ENDPOINT_REFINEMENTS,
    ENDPOINT_TOLERANCE,
    BarrierOutcome,
    analyse_barrier,
    check_distinct_endpoints,
    endpoints_above_band,
    intermediate_minima,
    load_barrier,
    reuse_barrier,
    same_state,
)
from ligbind.analysis.vacancy import HOST_REFINEMENTS as VACANCY_HOST_REFINEMENTS
from ligbind.analysis.vacancy import MAX_HOST_REFINEMENTS as MAX_VACANCY_HOST_REFINEMENTS
from ligbind.analysis.vacancy import (
    VacancyHostOutcome,
    analyse_vacancy,
    evaluate_vacancies,
    odd_electrons,
)
from ligbind.builders.slab import check_pbi2_terminated
from ligbind.builders.vacancies import (
    MAX_HOP,
    check_hop,
    check_surface_halide,
    halogen_molecule,
    hop_partner,
    make_vacancy,
    migration_endpoints,
    refill_vacancy,
    surface_halide_sites,
    symmetry_image,
)
from ligbind.calculators import backend_of
from ligbind.errors import LigbindError
from ligbind.jobs import Result
from ligbind.protocols import DEFAULT_PROTOCOL, load_protocol
from ligbind.store import ResultStore

Progress = Callable[[str], None]
MAX_DELTA_MU = 5.0  # eV: |Δμ_X| accepted (the PbI2-rich limit is ≈ −0.9 eV)


def _noop(_: str) -> None:
    pass


# ------------------------------------------------------------------------------------------- checks
def check_defect_input(atoms: Atoms, protocol: dict[str, Any], charge: int = 0) -> None:
    """Refuse a defect structure the protocol cannot compute: a charge on a backend without charges, an odd
    electron count on a DFT protocol computed spin-paired. One line, before any work.

    ML potentials have no electrons: an odd count is fine there. A DFT protocol without spin polarisation is
    refused rather than switched to spin-polarised silently, because every term of the reaction (the pristine
    slab, X2) must be computed with the same protocol: the user sets it (e.g. ``--set '{"gpaw":
    {"spinpol": true}}'``) for all of them.
    """
    backend = backend_of(protocol)
    if charge and not backend.supports_charge:
        raise LigbindError(
            f"a charged vacancy (charge {charge:+d}) needs a protocol whose backend carries a charge; "
            f"{protocol['name']} ({backend.name}) cannot: use a DFT protocol or a neutral vacancy"
        )
    if backend.is_dft and odd_electrons(atoms, charge) and not backend.treats_spin(protocol):
        n = int(atoms.get_atomic_numbers().sum()) - charge
        raise LigbindError(
            f"the vacancy leaves an odd electron count ({n}) and {protocol['name']} is spin-paired: "
            'set spin polarisation for every term (gpaw: --set \'{"gpaw": {"spinpol": true}}\') or use --charge 1'
        )
    probe = atoms.copy()
    probe.info["charge"] = charge
    backend.check_input(probe, protocol)


def check_chemical_potential(delta_mu_x: float, charge: int, mu_e: float | None) -> None:
    """Δμ_X within [−5, 0] eV (0 = X2-rich); μ_e required exactly when the vacancy is charged."""
    if not np.isfinite(delta_mu_x) or not -MAX_DELTA_MU <= delta_mu_x <= 0:
        raise LigbindError(
            f"bad Δμ_X {delta_mu_x} eV: must be between −{MAX_DELTA_MU:.0f} and 0 (0 = X2-rich; PbX2-rich = "
            "½ΔH_f(PbX2))"
        )
    if charge and mu_e is None:
        raise LigbindError(
            f"a charged vacancy (charge {charge:+d}) needs the electron chemical potential --mu-e"
        )
    if not charge and mu_e is not None:
        raise LigbindError("--mu-e applies to a charged vacancy only: give --charge too")


# --------------------------------------------------------------------------------------- calculations
def relax_reference(element: str, slab: Atoms, protocol: dict[str, Any], store, workdir: Path) -> Result:
    """Relax the X2 molecule in the ligand box convention of ``slab`` (½E(X2) is the halide reservoir)."""
    from ligbind.recipes import ligand_cell_structure

    mol = halogen_molecule(element)
    boxed = ligand_cell_structure(mol, slab, protocol)
    boxed.info = dict(mol.info)
    return jobs.relax(boxed, protocol, store=store, workdir=workdir)


def vacancy_structures(host: Result, site: int | None, max_sites: int, tag: str) -> list[Atoms]:
    """Vacancies on a relaxed host: the given site, or ``max_sites`` distinct ones (nearest the ligand first)."""
    sites = [site] if site is not None else surface_halide_sites(host.atoms, max_sites)
    out = []
    for s in sites:
        defect = make_vacancy(host.atoms, s)
        defect.info["label"] = f"vacancy:{tag}:{s}"
        out.append(defect)
    return out


def relax_vacancy(defect: Atoms, protocol: dict[str, Any], store, workdir: Path, charge: int = 0) -> Result:
    """Relax one vacancy structure with the given total charge."""
    defect = defect.copy()
    defect.info["charge"] = int(charge)
    return jobs.relax(defect, protocol, store=store, workdir=workdir)


def lower_vacancy_host(
    host: Result,
    sites: list[tuple[dict[str, Any], Result | None]],
    references: dict[str, Result],
    protocol: dict[str, Any],
    store,
    workdir: Path,
    refinements: int = VACANCY_HOST_REFINEMENTS,
    delta_mu_x: float = 0.0,
    charge: int = 0,
    mu_e: float | None = None,
) -> tuple[Result, list[dict[str, Any]]]:
    """The lowest host known and the rounds that found it: the ``refinements`` lowest usable (or below-pristine)
    vacancies, one after the other, refilled (:func:`ligbind.builders.vacancies.refill_vacancy`) and relaxed as
    the (neutral) host by :func:`ligbind.recipes.host_round`, which keeps the result if it ends lower; a round
    that ends no lower stops. Each round: site, ``e_host``, ``drop`` (eV), status, key, ``lower``.

    A vacancy relaxes the surface around it, and it can take the surface into a basin the host's own
    relaxation missed; E_vac against the host is then too low by the depth of that basin.
    """
    from ligbind.recipes import host_round

    _, rows = evaluate_vacancies(host, sites, references, protocol, delta_mu_x, charge, mu_e)
    usable = sorted(  # a vacancy below the host is no reason to leave it out here: it is the strongest hint
        (row["e_vac"], k)
        for k, row in enumerate(rows)
        if row.get("status") == "converged" and set(row["flags"]) <= {"below-pristine"}
    )
    current, rounds = host, []
    for _, k in usable[:refinements]:
        info, vacancy_result = sites[k]
        start = refill_vacancy(vacancy_result.atoms, host.atoms, int(info["site"]))
        if start is None:
            break
        label = host.atoms.info.get("label", "slab")
        start.info = {**host.atoms.info, "label": f"host:{label}:refilled-{info['site']}"}
        current, record = host_round(start, current, protocol, store, workdir, site=info["site"])
        rounds.append(record)
        if not record["lower"]:
            break
    return current, rounds


def vacancy_on_lowest_host(
    host: Result,
    sites: list[tuple[dict[str, Any], Result | None]],
    references: dict[str, Result],
    protocol: dict[str, Any],
    store,
    workdir: Path,
    *,
    refinements: int = VACANCY_HOST_REFINEMENTS,
    delta_mu_x: float = 0.0,
    charge: int = 0,
    mu_e: float | None = None,
    ligand: str | None = None,
    bare: VacancyHostOutcome | None = None,
    campaign: str | None = None,
) -> VacancyHostOutcome:
    """E_vac of relaxed vacancies on ``host`` against the lowest host known (:func:`lower_vacancy_host`), stored
    as the host's vacancy row (:func:`ligbind.analysis.vacancy.analyse_vacancy`): every path's analysis."""
    lower, rounds = lower_vacancy_host(
        host, sites, references, protocol, store, Path(workdir), refinements, delta_mu_x, charge, mu_e
    )
    return analyse_vacancy(
        host, sites, references, protocol, delta_mu_x=delta_mu_x, charge=charge, mu_e=mu_e, ligand=ligand,
        bare=bare, store=store, campaign=campaign, lower_host=lower, host_refinements=rounds,
    )  # fmt: skip


def vacancy_on(
    host: Result,
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    *,
    slab: Atoms,
    site: int | None = None,
    max_sites: int = 2,
    delta_mu_x: float = 0.0,
    charge: int = 0,
    mu_e: float | None = None,
    ligand: str | None = None,
    bare: VacancyHostOutcome | None = None,
    host_refinements: int = VACANCY_HOST_REFINEMENTS,
    progress: Progress = _noop,
) -> VacancyHostOutcome:
    """E_vac on one relaxed host (any PbX2-terminated surface): vacancies, X2 references, analysis against
    the lowest host known (:func:`lower_vacancy_host`)."""
    tag = ligand or "bare"
    sites, refs = [], {}
    for defect in vacancy_structures(host, site, max_sites, tag):
        el = defect.info["element"]
        if el not in refs:
            progress(f"{el}2 reference")
            refs[el] = relax_reference(el, slab, protocol, store, workdir).require_converged(
                f"{el}2 relaxation"
            )
        progress(f"{tag} vacancy {defect.info['site']}")
        sites.append((defect.info, relax_vacancy(defect, protocol, store, workdir, charge)))
    return vacancy_on_lowest_host(
        host, sites, refs, protocol, store, workdir, refinements=host_refinements, delta_mu_x=delta_mu_x,
        charge=charge, mu_e=mu_e, ligand=ligand, bare=bare,
    )  # fmt: skip


@dataclass
class VacancyOutcome:
    """E_vac bare (and with a ligand), ΔE_vac, with every site and the references."""

    protocol: str
    bare: dict[str, Any]
    ligand: str | None = None
    with_ligand: dict[str, Any] | None = None
    delta_e_vac: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ligand_host(slab, ligand, protocol, store, workdir, mode, n_configs, progress) -> Result:
    from ligbind.recipes import bind, stored_complex

    b = bind(
        slab,
        ligand,
        protocol,
        n_configs=n_configs,
        mode=mode,
        store=store,
        workdir=workdir,
        progress=progress,
    )
    return stored_complex(store, b, protocol)


def vacancy(
    slab: Atoms,
    protocol: str | dict[str, Any] = DEFAULT_PROTOCOL,
    *,
    ligand: str | None = None,
    mode: str = "neutral",
    n_configs: int = 3,
    site: int | None = None,
    max_sites: int = 2,
    delta_mu_x: float = 0.0,
    charge: int = 0,
    mu_e: float | None = None,
    host_refinements: int = VACANCY_HOST_REFINEMENTS,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    overrides: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> VacancyOutcome:
    """Surface halide vacancy energy on the bare slab and, with ``ligand``, on its best complex; ΔE_vac.

    ``site`` is a top-surface halide index of ``slab`` (the same index in the complex, whose slab atoms come
    first); without it, ``max_sites`` symmetry-distinct sites (nearest the ligand's anchor on the complex).
    """
    protocol = load_protocol(protocol, overrides)
    check_pbi2_terminated(slab)
    check_chemical_potential(delta_mu_x, charge, mu_e)
    if max_sites < 1:
        raise LigbindError(f"bad number of vacancy sites {max_sites}: need at least 1")
    if not 0 <= host_refinements <= MAX_VACANCY_HOST_REFINEMENTS:
        raise LigbindError(
            f"bad number of host refinements {host_refinements}: need 0 to {MAX_VACANCY_HOST_REFINEMENTS}"
        )
    if site is not None:
        check_surface_halide(slab, site)
    probe = make_vacancy(slab, site if site is not None else surface_halide_sites(slab, 1)[0])
    check_defect_input(probe, protocol, charge)
    store = store or ResultStore()
    workdir = Path(workdir)
    kw = dict(
        site=site, max_sites=max_sites, delta_mu_x=delta_mu_x, charge=charge, mu_e=mu_e, progress=progress,
        host_refinements=host_refinements,
    )  # fmt: skip
    progress("slab")
    from ligbind.recipes import relax_slab

    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    bare = vacancy_on(slab_result, protocol, store, workdir, slab=slab, **kw)
    out = VacancyOutcome(protocol["name"], bare.as_dict())
    if ligand is not None:
        host = _ligand_host(slab, ligand, protocol, store, workdir, mode, n_configs, progress)
        lig = vacancy_on(
            host, protocol, store, workdir, slab=slab, ligand=host.atoms.info["ligand"], bare=bare, **kw
        )
        out.ligand, out.with_ligand, out.delta_e_vac = lig.ligand, lig.as_dict(), lig.delta_e_vac
    return out


# ---------------------------------------------------------------------------------------------- barrier
def choose_hop(
    host: Atoms, site: int | None, hopper: int | None, max_hop: float = MAX_HOP
) -> tuple[int, int]:
    """(vacancy site, hopping halide): given ones checked; else the distinct site nearest the ligand that has
    a same-element neighbour within ``max_hop`` (mixed halides: not every site has one), and that neighbour."""
    if site is not None:
        check_surface_halide(host, site)
        hopper = hop_partner(host, site, max_hop) if hopper is None else hopper
        check_hop(host, site, hopper, max_hop)
        return site, hopper
    if hopper is not None:
        raise LigbindError("--hopper needs --site (the vacancy it hops into)")
    candidates = surface_halide_sites(host)
    for s in candidates:
        try:
            return s, hop_partner(host, s, max_hop)
        except LigbindError:
            continue
    raise LigbindError(
        f"no top-surface halide has a neighbour of the same element within the {max_hop:.1f} Å hop cut-off"
    )


def on_host(host: Atoms, bare: Atoms, indices: tuple[int, ...]) -> tuple[int, ...]:
    """Atom ``indices`` of the bare slab in ``host``'s numbering: the same on a ligand complex or a passivated
    slab (their atoms follow the slab's), shifted past the atoms an exchange took out (before, a hop on TMSBr's
    exchange complex moved other atoms than the bare slab's). Refused when the exchange took one of them out."""
    from ligbind.builders.exchange import exchanged_atoms, to_host_numbering

    removed = exchanged_atoms(host, bare)
    taken = [i for i in indices if i in removed]
    if taken:
        raise LigbindError(
            f"atom {taken[0]} of the hop is the slab atom {host.info.get('ligand', 'the ligand')}'s exchange "
            "replaced: give compute.migration a site and hopper away from it"
        )
    return to_host_numbering(indices, removed)


def relax_endpoints(
    host: Result, site: int, hopper: int, protocol: dict[str, Any], store, workdir: Path, tag: str
) -> tuple[Result, Result]:
    """Relax both endpoints of the hop (stored), checked converged and distinct minima."""
    initial, final = migration_endpoints(host.atoms, site, hopper)
    results = []
    for atoms in (initial, final):
        atoms.info["label"] = f"migration:{tag}:{site}<-{hopper}:{atoms.info['endpoint']}"
        r = jobs.relax(atoms, protocol, store=store, workdir=workdir)
        r.require_converged(f"{atoms.info['endpoint']} endpoint relaxation")
        r.atoms.info = dict(atoms.info)
        results.append(r)
    check_distinct_endpoints(results[0], results[1])
    return results[0], results[1]


def top_height(host: Atoms) -> float:
    """Mean height (Å) of the host's top layer."""
    layers = check_pbi2_terminated(host)
    return float(host.positions[layers[-1], 2].mean())


def barrier_on(
    host: Result,
    site: int,
    hopper: int,
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    *,
    images: int = 5,
    steps: int | None = None,
    ligand: str | None = None,
    bare: BarrierOutcome | None = None,
    progress: Progress = _noop,
    campaign: str | None = None,
    preconverge: dict[str, Any] | None = None,
    refinements: int = ENDPOINT_REFINEMENTS,
) -> BarrierOutcome:
    """Ea of one hop on one relaxed host: endpoints relaxed, NEB (reused when finished), analysis stored."""
    tag = ligand or "bare"
    progress(f"{tag} endpoints")
    initial, final = relax_endpoints(host, site, hopper, protocol, store, workdir, tag)
    progress(f"{tag} NEB ({images} images)")
    return barrier_from_endpoints(
        host, initial, final, protocol, store, workdir, images=images, steps=steps, ligand=ligand, bare=bare,
        campaign=campaign, preconverge=preconverge, refinements=refinements,
    )  # fmt: skip


def barrier_from_endpoints(
    host: Result,
    initial: Result,
    final: Result,
    protocol: dict[str, Any],
    store: ResultStore,
    workdir: Path,
    *,
    images: int = 5,
    steps: int | None = None,
    ligand: str | None = None,
    bare: BarrierOutcome | None = None,
    campaign: str | None = None,
    preconverge: dict[str, Any] | None = None,
    refinements: int = ENDPOINT_REFINEMENTS,
) -> BarrierOutcome:
    """NEB between relaxed endpoints (``info``: migrating, site, hopper, hop_length) and its analysis.

    A stored converged barrier is reused; an unconverged one continues from its saved band. With
    ``preconverge`` (a cheaper protocol) the band is first converged with it between the same endpoint
    geometries (their energies recomputed with it), and this protocol's band takes the migrating ion's path
    from it, the other atoms from the IDPP band (measured with DFT: the whole ML band started 0.7-1.0 eV
    above the endpoints, the ML host relaxation is not the DFT one; IDPP 0.14-0.43 eV). While a band dips
    below an endpoint, that endpoint is relaxed again from the band, at most ``refinements`` rounds
    (:func:`refine_endpoints`); a converged band with a metastable state on its path is split there in one
    more round (:func:`split_at_minimum`); a stored barrier that still dips, or still has an unsplit
    intermediate minimum, after fewer rounds is refined further.
    """
    from ligbind.neb import joined_bands, neb_key, run_neb

    check_distinct_endpoints(initial, final)
    ion = [int(initial.atoms.info["migrating"])]
    start_key = neb_key(initial, final, preconverge, images) if preconverge is not None else None
    asked = neb_key(initial, final, protocol, images, start_key, ion if start_key else None)
    stored = load_barrier(store, asked)
    if stored is not None and stored.converged:
        done = stored.refinements
        if done is None:  # stored before rounds were counted: one round if its endpoints are not these
            done = int((stored.initial_key, stored.final_key) != (initial.key, final.key))
        if done >= refinements or not stored.unresolved():
            stored = replace(stored, refinements=done)
            return reuse_barrier(stored, initial, protocol, bare=bare, store=store, campaign=campaign)

    ends, bands = {initial.key, final.key}, {}  # what it took: endpoint relaxations, bands (key → seconds)

    def preconverged(initial: Result, final: Result):
        if preconverge is None:
            return None
        points = [
            jobs.single_point(r.atoms, preconverge, store=store, workdir=workdir) for r in (initial, final)
        ]
        band = run_neb(points[0], points[1], preconverge, images=images, workdir=workdir)
        bands[band.key] = band.wall_time
        return band

    start = preconverged(initial, final)
    kw = dict(images=images, workdir=workdir, steps=steps)
    run = run_neb(
        initial, final, protocol, start=start, carry=ion if start else None,
        stop_when=endpoints_above if refinements else None, **kw,
    )  # fmt: skip
    done = 0
    # an endpoint above its basin's bottom: re-relax it from the lowest image there and run the band again;
    # each band but the last stops as soon as an image is that far below (also when it stopped at its step
    # limit: an image below an endpoint can keep a band from converging)
    while done < refinements and (lower := endpoints_above_band(list(run.energies))):
        done += 1
        refined = refine_endpoints(run, initial, final, lower, protocol, store, workdir)
        initial, final = equalise_endpoints(host, *refined, protocol, store, workdir)
        check_distinct_endpoints(initial, final)
        restart, carry = run, None  # endpoints taken from this band's images: it stays the best start
        if (initial.key, final.key) != (refined[0].key, refined[1].key):
            # an endpoint from a symmetry image instead: the band's images near it belong to the other
            # basin (seen: the climbing image pinned next to that endpoint), so a fresh band between the ends
            start = restart = preconverged(initial, final)
            carry = ion if start else None
        bands[run.key] = run.wall_time
        ends |= {initial.key, final.key, refined[0].key, refined[1].key}
        stop_when = endpoints_above if done < refinements else None
        run = run_neb(initial, final, protocol, start=restart, carry=carry, stop_when=stop_when, **kw)
    bands[run.key] = run.wall_time
    unsplit = False
    if done < refinements and (
        split := split_at_minimum(run, initial, final, protocol, store, workdir, steps)
    ):
        middle, parts = split
        ends.add(middle.key)
        unsplit = parts is None  # recorded, so that it is not tried again; no round spent
        if parts is not None:
            done += 1
            bands |= {part.key: part.wall_time for part in parts}
            run = joined_bands(*parts)
    pre = None
    if start is not None:
        pre = {
            "protocol": preconverge["name"],
            "key": start.key,
            "converged": start.converged,
            "n_steps": start.n_steps,
            "force_calls": start.force_calls,
        }
    rows = [store.get(k) for k in ends]
    wall = sum(bands.values()) + sum(float(r.get("wall_time") or 0.0) for r in rows if r is not None)
    return analyse_barrier(
        run, initial, final, protocol, z_top=top_height(host.atoms), ligand=ligand, bare=bare, store=store,
        campaign=campaign, preconverge=pre, key=asked, refinements=done, wall_time=wall,
        unsplit=unsplit,
    )  # fmt: skip


def endpoints_above(energies: list[float]) -> bool:
    """Whether a band's energies put an image ENDPOINT_TOLERANCE below an endpoint on its half: every band but
    the last of the refinement rounds stops there, since converging it would not spare the endpoint's
    re-relaxation (the DFT barrier in benchmarks/results/dft-barrier: its first band crossed at step 28 and
    ran on to 66, ~1.6 h of 2 cores)."""
    return bool(endpoints_above_band(energies))


def split_at_minimum(
    run, initial: Result, final: Result, protocol: dict[str, Any], store, workdir, steps: int | None = None
) -> tuple[Result, tuple | None] | None:
    """A converged band with a metastable state on its path, split there (None: nothing to split).

    Its lowest intermediate minimum (:func:`~ligbind.analysis.migration.intermediate_minima`: on the DFT bare
    band of the mixed-halide campaign, two equal maxima around a 0.045 eV dip, of which only one climbed) is
    relaxed as a state of its own, and a climbing-image band runs from each endpoint to it, started from the
    band's images between them (one IDPP image where there are none): each maximum then climbs to its saddle.
    Returns the relaxed minimum and the two bands, or no bands when the minimum relaxes back into an
    endpoint's basin (:func:`~ligbind.analysis.migration.same_state`): the band stays as it was.
    """
    from ligbind.neb import band_segment, run_neb

    energies = list(run.energies)
    minima = intermediate_minima(energies, run.minima)
    if not run.converged or not minima or endpoints_above_band(energies):
        return None
    m = min(minima, key=lambda i: energies[i])
    info = dict(initial.atoms.info)
    atoms = run.band[m].copy()
    atoms.info = {**info, "label": f"{info.get('label', 'endpoint')}:minimum-at-image-{m}"}
    middle = jobs.relax(atoms, protocol, store=store, workdir=workdir, prerelax=False)
    middle = middle.require_converged("intermediate minimum relaxation")
    middle.atoms.info = {**info, "endpoint": "intermediate"}
    if any(same_state(middle, end) for end in (initial, final)):
        return middle, None
    parts = []
    for lo, hi, a, b in ((0, m, initial, middle), (m, len(run.band) - 1, middle, final)):
        inner = hi - lo - 1
        start = band_segment(run, lo, hi) if inner else None
        parts.append(run_neb(a, b, protocol, images=max(inner, 1), start=start, workdir=workdir, steps=steps))
    return middle, (parts[0], parts[1])


def refine_endpoints(
    run, initial: Result, final: Result, lower: dict[int, int], protocol: dict[str, Any], store, workdir
) -> tuple[Result, Result]:
    """The endpoints, those in ``lower`` (band index → its lowest image) relaxed again from that image."""
    ends = [initial, final]
    for end, image in lower.items():
        k = 0 if end == 0 else 1
        info = dict(ends[k].atoms.info)
        atoms = run.band[image].copy()
        atoms.info = {**info, "label": f"{info.get('label', 'endpoint')}:from-image-{image}"}
        relaxed = jobs.relax(atoms, protocol, store=store, workdir=workdir, prerelax=False)
        relaxed = relaxed.require_converged(f"{info.get('endpoint', 'endpoint')} endpoint re-relaxation")
        relaxed.atoms.info = info
        ends[k] = relaxed
    return ends[0], ends[1]


def equalise_endpoints(
    host: Result, initial: Result, final: Result, protocol: dict[str, Any], store, workdir
) -> tuple[Result, Result]:
    """Endpoints that a symmetry of the host relates, brought to the same basin.

    When one endpoint lies more than ENDPOINT_TOLERANCE above the other and an operation of the host maps the
    lower one onto it (:func:`~ligbind.builders.vacancies.symmetry_image`), it is relaxed again from that image
    (no ML pre-relaxation) and the lower of the two kept. Endpoints of inequivalent sites are left alone: their
    energies may differ.
    """
    ends = [initial, final]
    if abs(initial.energy - final.energy) <= ENDPOINT_TOLERANCE:
        return initial, final
    low = 0 if initial.energy < final.energy else 1
    high = 1 - low
    info = dict(ends[high].atoms.info)
    max_shift = 0.5 * float(
        info.get("hop_length", 4.0)
    )  # a vacancy mapped elsewhere moves an atom a whole hop
    image = symmetry_image(host.atoms, ends[low].atoms, ends[high].atoms, max_shift)
    if image is None:
        return initial, final
    source = ends[low].atoms.info.get("endpoint", "other")
    image.info = {**info, "label": f"{info.get('label', 'endpoint')}:image-of-{source}"}
    relaxed = jobs.relax(image, protocol, store=store, workdir=workdir, prerelax=False)
    relaxed = relaxed.require_converged(f"{info.get('endpoint', 'endpoint')} endpoint relaxed from its image")
    relaxed.atoms.info = info
    if relaxed.energy < ends[high].energy:
        ends[high] = relaxed
    return ends[0], ends[1]


@dataclass
class MigrationOutcome:
    """Ea bare (and with a ligand), ΔEa."""

    protocol: str
    bare: dict[str, Any]
    ligand: str | None = None
    with_ligand: dict[str, Any] | None = None
    delta_ea: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_preconverge(preconverge: str | dict[str, Any] | None, protocol: dict[str, Any]):
    """The resolved pre-convergence protocol (an ML one, not the band's own), or None."""
    if preconverge is None:
        return None
    pre = load_protocol(preconverge)
    if pre["is_dft"]:
        raise LigbindError(f"--preconverge {pre['name']} is a DFT protocol: pre-converge with an ML one")
    if pre["name"] == protocol["name"]:
        raise LigbindError(f"--preconverge {pre['name']} is the band's own protocol: nothing to save")
    return pre


def check_barrier_input(slab: Atoms, protocol: dict[str, Any], images: int, site, hopper) -> tuple[int, int]:
    """Everything checkable before any work: images, the hop on the unrelaxed slab, the defect's electrons."""
    if not 3 <= images <= 9:
        raise LigbindError(f"bad number of NEB images {images}: between 3 and 9")
    check_pbi2_terminated(slab)
    chosen = choose_hop(slab, site, hopper)
    check_defect_input(make_vacancy(slab, chosen[0]), protocol)
    return chosen


def barrier(
    slab: Atoms,
    protocol: str | dict[str, Any] = DEFAULT_PROTOCOL,
    *,
    ligand: str | None = None,
    mode: str = "neutral",
    n_configs: int = 3,
    site: int | None = None,
    hopper: int | None = None,
    images: int = 5,
    steps: int | None = None,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    overrides: dict[str, Any] | None = None,
    preconverge: str | dict[str, Any] | None = None,
    refinements: int = ENDPOINT_REFINEMENTS,
    progress: Progress = _noop,
) -> MigrationOutcome:
    """Halide hop barrier into a neighbouring vacancy, bare and (with ``ligand``) on the best complex; ΔEa.

    With a ligand the vacancy site is the top halide nearest its anchor (unless given) and the bare slab gets
    the same hop (same atom indices), so ΔEa compares like with like.
    """
    protocol = load_protocol(protocol, overrides)
    given_site, given_hopper = site, hopper
    site, hopper = check_barrier_input(slab, protocol, images, site, hopper)
    pre = check_preconverge(preconverge, protocol)
    store = store or ResultStore()
    workdir = Path(workdir)
    from ligbind.recipes import relax_slab

    progress("slab")
    slab_result = relax_slab(slab, protocol, store, workdir).require_converged("slab relaxation")
    host = None
    if ligand is not None:
        host = _ligand_host(slab, ligand, protocol, store, workdir, mode, n_configs, progress)
        site, hopper = choose_hop(host.atoms, given_site, given_hopper)
    kw = dict(images=images, steps=steps, progress=progress, preconverge=pre, refinements=refinements)
    bare = barrier_on(slab_result, site, hopper, protocol, store, workdir, **kw)
    out = MigrationOutcome(protocol["name"], bare.as_dict())
    if host is not None:
        name = host.atoms.info["ligand"]
        lig = barrier_on(host, site, hopper, protocol, store, workdir, ligand=name, bare=bare, **kw)
        out.ligand, out.with_ligand, out.delta_ea = name, lig.as_dict(), lig.delta_ea
    return out
