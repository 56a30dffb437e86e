"""Campaign steps for ``compute: {vacancy: ..., migration: ...}``: thin steps that get store keys and call the
calculations of :mod:`ligbind.recipes.defects` and the analyses of :mod:`ligbind.analysis.vacancy` /
:mod:`ligbind.analysis.migration`, plus the Firework plan and the schema checks of those keys.

Fireworks (names; ``tag`` is ``bare`` or the ligand):
- ``vacancy-site/<tag>/<k>``: relax vacancy k on the host (and the X2 reference of its element) → key
- ``vacancy/<tag>``: E_vac on the host from the passed keys (ΔE_vac against ``vacancy/bare`` when present)
- ``migration-end/<tag>/<0|1>``: relax the initial / final state of the hop → key
- ``migration/<tag>``: climbing-image NEB between the passed endpoints, Ea (ΔEa against ``migration/bare``)

Hosts are the relaxed bare slab, the ligand's best complex (the binding analysis' key) or, with
``passivated: true``, the best K–Br-passivated slab of ``compute.passivation`` (host tag ``KBr-passivated``).
Vacancies are neutral.
"""

from __future__ import annotations

from typing import Any

from ligbind.engine.campaign import (
    KeyMap,
    _calcdir,
    _passed,
    _store,
    campaign_slab,
    dft_host,
    frenkel_host,
    host_refinements,
    usable_in_order,
)
from ligbind.errors import LigbindError
from ligbind.jobs import Result

# ------------------------------------------------------------------------------------------- schema
PASSIVATED = "KBr-passivated"  # host tag of the passivated slab (no library ligand has this name)


def defect_compute(compute, names: list[str], refuse) -> dict[str, Any]:
    """The resolved ``vacancy`` and ``migration`` settings; ligands must be the campaign's."""
    for what in ("vacancy", "migration"):
        if getattr(compute, what).passivated and compute.passivation is None:
            raise refuse(
                f"compute.{what}.passivated", "needs compute.passivation (the treatment to compute on)"
            )
        for k, lig in enumerate(getattr(compute, what).ligands):
            if lig not in names:
                raise refuse(
                    f"compute.{what}.ligands.{k}",
                    f"{what} ligand '{lig}' is not among the campaign's ligands",
                )
    v, m = compute.vacancy, compute.migration
    return {
        "vacancy": {
            "bare": v.bare,
            "ligands": list(v.ligands),
            "sites": v.sites,
            "mu_x": v.mu_x,
            "passivated": v.passivated,
            # only where a vacancy is computed: a campaign without one keeps the settings it was screened with
            **({"host_refinements": v.host_refinements} if v.bare or v.ligands or v.passivated else {}),
        },
        "migration": {
            "bare": m.bare,
            "ligands": list(m.ligands),
            "images": m.images,
            "site": m.site,
            "hopper": m.hopper,
            "passivated": m.passivated,
            # only where a barrier is computed: a campaign without one keeps the settings it was screened with
            **(
                {"endpoint_refinements": m.endpoint_refinements}
                if m.bare or m.ligands or m.passivated
                else {}
            ),
        },
    }


def check_defect_campaign(c: dict[str, Any], refuse) -> None:
    """Refuse now what the defect steps would refuse later (an odd electron count on a spin-paired DFT
    protocol): the vacancy on the unrelaxed campaign slab stands in for every host."""
    from ligbind.builders.vacancies import make_vacancy, surface_halide_sites
    from ligbind.recipes.defects import check_defect_input, choose_hop

    for what in ("vacancy", "migration"):
        spec = c["compute"].get(what) or {}
        if defect_hosts(spec):
            slab = campaign_slab(c)
            try:
                probe = make_vacancy(slab, surface_halide_sites(slab, 1)[0])
                check_defect_input(probe, c["protocol"])
                if what == "migration":
                    choose_hop(slab, spec.get("site"), spec.get("hopper"))
            except LigbindError as exc:
                raise refuse(f"compute.{what}", exc) from None
            if verified_hosts(c, what):  # the vacancies and barriers are verified with it too
                try:
                    check_defect_input(probe, c["verify"]["protocol"])
                except LigbindError as exc:
                    raise refuse("verify.overrides", exc) from None


# -------------------------------------------------------------------------------------------- steps
def defect_hosts(spec: dict[str, Any]) -> list[str | None]:
    """Hosts of a ``compute.frenkel|vacancy|migration`` spec: None (the bare slab, needed for every Δ), the
    ligands, and the passivated slab when asked for."""
    treated = [PASSIVATED] if spec.get("passivated") else []
    return ([None] if spec["bare"] or spec["ligands"] or treated else []) + list(spec["ligands"]) + treated


def _host(c: dict[str, Any], keys: KeyMap, tag: str | None) -> Result:
    """The relaxed host: bare slab (None), a ligand's best complex, or the passivated slab."""
    if tag == PASSIVATED:
        from ligbind.engine.passivation_steps import passivated_host

        return passivated_host(c, keys)
    return frenkel_host(c, keys, tag)


def _vacancies(c: dict[str, Any], host: Result, tag: str):
    from ligbind.recipes.defects import vacancy_structures

    return vacancy_structures(host, None, c["compute"]["vacancy"]["sites"], tag)


def step_vacancy_site(c: dict[str, Any], keys: KeyMap, ligand: str | None, k: int) -> Result:
    """Relax vacancy ``k`` on the bare slab (ligand None) or the ligand's best complex, and its X2 reference."""
    from ligbind.recipes.defects import relax_reference, relax_vacancy

    defects = _vacancies(c, _host(c, keys, ligand), ligand or "bare")
    if k >= len(defects):
        raise LigbindError(f"only {len(defects)} symmetry-distinct vacancy sites on this surface")
    store, workdir = _store(c), _calcdir(c)
    relax_reference(defects[k].info["element"], campaign_slab(c), c["protocol"], store, workdir)
    return relax_vacancy(defects[k], c["protocol"], store, workdir)


def step_vacancy(c: dict[str, Any], keys: KeyMap, ligand: str | None):
    """E_vac on one host from the vacancy keys passed down (against the lowest host known:
    :func:`ligbind.recipes.defects.lower_vacancy_host`); ΔE_vac against the bare slab's row."""
    from ligbind.analysis.vacancy import load_vacancy, vacancy_key
    from ligbind.recipes.defects import relax_reference, vacancy_on_lowest_host

    spec, tag = c["compute"]["vacancy"], ligand or "bare"
    store, workdir, protocol = _store(c), _calcdir(c), c["protocol"]
    host = _host(c, keys, ligand)
    sites, refs = [], {}
    for k, defect in enumerate(_vacancies(c, host, tag)):
        name = f"vacancy-site/{tag}/{k}"
        r = _passed(c, keys, name) if keys.get(name) else None
        if r is not None:
            r.atoms.info = dict(defect.info)  # the row may hold the info of an identical structure
        el = defect.info["element"]
        if el not in refs:
            refs[el] = relax_reference(el, campaign_slab(c), protocol, store, workdir)
        sites.append((defect.info, r))
    bare = None
    if ligand is not None:
        bare = load_vacancy(store, vacancy_key(_passed(c, keys, "slab"), None, spec["mu_x"], 0))
    return vacancy_on_lowest_host(
        host, sites, refs, protocol, store, workdir, refinements=host_refinements(c, "vacancy"),
        delta_mu_x=spec["mu_x"], ligand=ligand, bare=bare, campaign=c["name"],
    )  # fmt: skip


def _endpoints(c: dict[str, Any], keys: KeyMap, host: Result):
    """Endpoints of the campaign's hop on ``host``: the same (site, hopping halide) on every host, given in
    ``compute.migration`` or chosen on the relaxed bare slab, so that ΔEa compares the same hop."""
    from ligbind.builders.vacancies import migration_endpoints

    return migration_endpoints(host.atoms, *_hop(c, keys, host))


def _hop(c: dict[str, Any], keys: KeyMap, host: Result) -> tuple[int, int]:
    """(vacancy site, hopping halide) of the campaign's hop on ``host``: given, or chosen on the relaxed bare
    slab, in the host's atom numbering (an exchange complex lacks the atoms the exchange took out)."""
    from ligbind.recipes.defects import choose_hop, on_host

    spec = c["compute"]["migration"]
    bare = _passed(c, keys, "slab").atoms
    return on_host(host.atoms, bare, choose_hop(bare, spec.get("site"), spec.get("hopper")))


def step_migration_end(c: dict[str, Any], keys: KeyMap, ligand: str | None, k: int) -> Result:
    """Relax the initial (k = 0) or final (k = 1) state of the hop on the host."""
    from ligbind.jobs import relax

    atoms = _endpoints(c, keys, _host(c, keys, ligand))[k]
    atoms.info["label"] = f"migration:{ligand or 'bare'}:{atoms.info['endpoint']}"
    result = relax(atoms, c["protocol"], store=_store(c), workdir=_calcdir(c))
    return result.require_converged(f"{atoms.info['endpoint']} endpoint relaxation")


def endpoint_refinements(c: dict[str, Any]) -> int:
    """The campaign's compute.migration.endpoint_refinements (a campaign saved before it existed: one round)."""
    return int(c["compute"]["migration"].get("endpoint_refinements", 1))


def step_migration(c: dict[str, Any], keys: KeyMap, ligand: str | None):
    """NEB between the endpoints passed down, Ea; ΔEa against the bare slab's barrier."""
    from ligbind.analysis.migration import load_barrier
    from ligbind.recipes.defects import barrier_from_endpoints

    tag = ligand or "bare"
    host = _host(c, keys, ligand)
    ends = []
    for k, built in enumerate(_endpoints(c, keys, host)):
        r = _passed(c, keys, f"migration-end/{tag}/{k}").require_converged("endpoint relaxation")
        r.atoms.info = dict(built.info)
        ends.append(r)
    bare = None
    if ligand is not None and keys.get("migration/bare"):
        bare = load_barrier(_store(c), keys["migration/bare"])
    return barrier_from_endpoints(
        host, ends[0], ends[1], c["protocol"], _store(c), _calcdir(c),
        images=c["compute"]["migration"]["images"], ligand=ligand, bare=bare, campaign=c["name"],
        refinements=endpoint_refinements(c),
    )  # fmt: skip


def verified_hosts(c: dict[str, Any], what: str = "vacancy") -> list[str | None]:
    """Hosts of ``compute.<what>`` (frenkel, vacancy, migration) that a campaign's ``verify:`` recomputes with
    DFT: all of them (the bare slab, the ligands' complexes, the passivated slab)."""
    spec = c["compute"].get(what) or {}
    return defect_hosts(spec) if c.get("verify") and spec else []


def step_verify_vacancy(c: dict[str, Any], keys: KeyMap, ligand: str | None):
    """E_vac with the verification (DFT) protocol at the screen's lowest usable site of the host (AdsorbML
    pattern): the same halide removed from the DFT-relaxed host, relaxed with DFT, against DFT ½E(X2); the
    screen's next usable site in its place if DFT leaves it unusable (refilled: :data:`DEFECT_RESERVE`); E_vac
    against the lowest DFT host known (:func:`ligbind.recipes.defects.lower_vacancy_host`)."""
    from ligbind.analysis.vacancy import evaluate_vacancies, load_vacancy
    from ligbind.recipes.defects import (
        relax_reference,
        relax_vacancy,
        vacancy_on_lowest_host,
        vacancy_structures,
    )

    dft, spec, tag = c["verify"]["protocol"], c["compute"]["vacancy"], ligand or "bare"
    store, workdir = _store(c), _calcdir(c)
    screen = load_vacancy(store, keys.get(f"vacancy/{tag}", ""))
    sites = [s for s in (screen.sites if screen is not None else []) if s.get("element") == screen.element]
    host, tried, references = dft_host(c, keys, ligand), [], {}
    for site in usable_in_order(sites, "e_vac", f"vacancy on the {tag} host"):
        (defect,) = vacancy_structures(host, site["site"], 1, f"verify:{tag}")
        element = defect.info["element"]
        references[element] = relax_reference(element, campaign_slab(c), dft, store, workdir)
        tried.append((defect.info, relax_vacancy(defect, dft, store, workdir)))
        if evaluate_vacancies(host, tried, references, dft, spec["mu_x"])[0] is not None:
            break  # usable with DFT; else the screen's next site
    bare = (
        load_vacancy(store, keys["verify-vacancy/bare"])
        if ligand and keys.get("verify-vacancy/bare")
        else None
    )
    return vacancy_on_lowest_host(
        host, tried, references, dft, store, workdir, refinements=host_refinements(c, "vacancy"),
        delta_mu_x=spec["mu_x"], ligand=ligand, bare=bare, campaign=c["name"],
    )  # fmt: skip


def step_verify_migration(c: dict[str, Any], keys: KeyMap, ligand: str | None):
    """Ea with the verification (DFT) protocol: the campaign's hop on the DFT host, endpoints DFT-relaxed, the
    band first converged with the screen protocol between them (cheap), then with DFT from that band."""
    from ligbind.analysis.migration import load_barrier
    from ligbind.recipes.defects import barrier_from_endpoints, relax_endpoints

    dft, tag, store, workdir = c["verify"]["protocol"], ligand or "bare", _store(c), _calcdir(c)
    host = dft_host(c, keys, ligand)
    ends = relax_endpoints(host, *_hop(c, keys, host), dft, store, workdir, f"verify:{tag}")
    bare = (
        load_barrier(store, keys["verify-migration/bare"])
        if ligand and keys.get("verify-migration/bare")
        else None
    )
    return barrier_from_endpoints(
        host, *ends, dft, store, workdir, images=c["compute"]["migration"]["images"],
        ligand=ligand, bare=bare, campaign=c["name"], preconverge=c["protocol"],
        refinements=endpoint_refinements(c),
    )  # fmt: skip


# relaxations only (results reused from the store when the Firework runs): they may run in parallel workers;
# the NEB step stays in the launching process (a rerun would evaluate its last band again)
DEFECT_CALCULATION_STEPS = frozenset({"vacancy-site", "migration-end"})

DEFECT_STEPS = {
    "vacancy-site": lambda c, keys, ligand, config, other: step_vacancy_site(c, keys, ligand, int(config)),
    "vacancy": lambda c, keys, ligand, config, other: step_vacancy(c, keys, ligand),
    "migration-end": lambda c, keys, ligand, config, other: step_migration_end(c, keys, ligand, int(config)),
    "migration": lambda c, keys, ligand, config, other: step_migration(c, keys, ligand),
    "verify-vacancy": lambda c, keys, ligand, config, other: step_verify_vacancy(c, keys, ligand),
    "verify-migration": lambda c, keys, ligand, config, other: step_verify_migration(c, keys, ligand),
}


# --------------------------------------------------------------------------------------------- plan
def plan_defects(
    c: dict[str, Any], add, slab: str, binding_ids: dict[str, str], passivation: str | None = None
) -> None:
    """Add the vacancy and migration Fireworks (``add`` as in ``planned_fireworks``); ``passivation`` is the
    passivation analysis' Firework, parent of the defects on the passivated slab."""
    binding_ids = {**binding_ids, PASSIVATED: passivation} if passivation else binding_ids
    vac = c["compute"].get("vacancy")
    done: dict[str, str] = {}
    for host in defect_hosts(vac) if vac else []:
        tag = host or "bare"
        base = [slab] if host is None else [binding_ids[host]]
        sites = [
            add("vacancy-site", f"vacancy-site/{tag}/{k}", base, ligand=host, config=k)
            for k in range(vac["sites"])
        ]
        extra = [done["bare"]] if host is not None and "bare" in done else []
        done[tag] = add("vacancy", f"vacancy/{tag}", [*base, *sites, *extra], allow_fizzled=True, ligand=host)
    mig = c["compute"].get("migration")
    done = {}
    for host in defect_hosts(mig) if mig else []:
        tag = host or "bare"
        base = [slab] if host is None else [binding_ids[host]]
        ends = [add("migration-end", f"migration-end/{tag}/{k}", base, ligand=host, config=k) for k in (0, 1)]
        extra = [done["bare"]] if host is not None and "bare" in done else []
        done[tag] = add(
            "migration", f"migration/{tag}", [*base, *ends, *extra], allow_fizzled=True, ligand=host
        )
