"""Campaign steps and Fireworks of ``compute.coverage`` and ``compute.treatments`` (thin: store keys in, the
calculations of :mod:`ligbind.recipes.coverage` and the analysis of :mod:`ligbind.analysis.coverage` out).

Campaign keys::

    compute:
      coverage: {ligands: [methylamine], n: "1..4" | [1, 2, monolayer] | monolayer, sets: 1}
      treatments: [dimethyl-ether, MAI-layer]     # monolayer of a library ligand, or MAI-layer
      frenkel: {pairs: 2}                          # pairs per host, also for the treated surfaces

Fireworks: ``coverage-config/<L>/<n>/<set>`` (a relaxation, parents slab and ligand/<L>) → ``coverage/<L>`` (also
under ``reference``, the slab reference binding uses);
``treatment-unit/<T>`` → ``treatment/<T>`` (the treated slab) → ``treatment-pair/<T>/<k>`` →
``treatment-frenkel/<T>`` (Eb per unit and E_F, ΔE_F against ``frenkel/bare``, which is added when needed; also
under ``reference`` when the campaign has ligands).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ligbind.builders.coverage import MAI_LAYER, mai_unit, place_coverage, spread_site_sets
from ligbind.builders.ligands import resolve_ligand
from ligbind.engine.campaign import (
    KeyMap,
    _calcdir,
    _passed,
    _store,
    campaign_slab,
    entry_from_spec,
    ligand_spec,
)
from ligbind.errors import LigbindError
from ligbind.jobs import Result

# ------------------------------------------------------------------------------------------ resolution


def _treatment_name(text: str) -> str:
    return MAI_LAYER if text.lower() == MAI_LAYER.lower() else resolve_ligand(text).name


def resolve_coverage(compute, names: list[str], c: dict[str, Any], refuse: Callable) -> dict[str, Any]:
    """``compute.coverage`` and ``compute.treatments`` checked against the campaign (ligands, slab: every
    coverage and treatment must fit), as plain data for the campaign dict."""
    cov = compute.coverage
    out: dict[str, Any] = {"coverage": {"ligands": [], "n": [], "sets": cov.sets}, "treatments": []}
    if not cov.ligands and not compute.treatments:
        return out
    slab = campaign_slab(c)
    if cov.ligands:
        out["coverage"] = _resolve_coverage_ligands(cov, names, c, slab, refuse)
    out["treatments"] = _resolve_treatments(compute.treatments, c, slab, refuse)
    return out


def _resolve_coverage_ligands(
    cov, names: list[str], c: dict[str, Any], slab, refuse: Callable
) -> dict[str, Any]:
    """The coverage ligands (campaign ligands in neutral mode) and the resolved numbers of copies (all fit)."""
    from ligbind.recipes.coverage import check_coverage_fits, coverage_levels

    for k, lig in enumerate(cov.ligands):
        if lig not in names:
            raise refuse(
                f"compute.coverage.ligands.{k}",
                f"coverage ligand '{lig}' is not among the campaign's ligands",
            )
        if ligand_spec(c, lig)["mode"] != "neutral":
            raise refuse(
                f"compute.coverage.ligands.{k}",
                f"coverage places neutral ligands; '{lig}' is in exchange mode",
            )
    try:
        counts = coverage_levels(slab, cov.n)
    except LigbindError as exc:
        raise refuse("compute.coverage.n", exc) from None
    for k, lig in enumerate(cov.ligands):
        try:
            check_coverage_fits(slab, entry_from_spec(ligand_spec(c, lig)), counts, cov.sets, c["seed"])
        except LigbindError as exc:
            raise refuse(f"compute.coverage.ligands.{k}", exc) from None
    return {"ligands": list(cov.ligands), "n": counts, "sets": cov.sets}


def _resolve_treatments(treatments: list[str], c: dict[str, Any], slab, refuse: Callable) -> list[str]:
    """Treatment names (library ligand or MAI-layer), each checked to fit on the slab, none twice."""
    from ligbind.recipes.coverage import treatment_structure

    out: list[str] = []
    for k, text in enumerate(treatments):
        try:
            name = _treatment_name(text)
            treatment_structure(slab, name, c["seed"], None)
        except LigbindError as exc:
            raise refuse(f"compute.treatments.{k}", exc) from None
        if name in out:
            raise refuse(f"compute.treatments.{k}", f"'{name}' is listed twice")
        out.append(name)
    return out


# ------------------------------------------------------------------------------------------------- steps
def step_coverage_config(c: dict[str, Any], keys: KeyMap, name: str, k: int, n: int) -> Result | None:
    """Relax site set ``k`` of ``n`` copies of ``name`` on the relaxed slab (None: fewer distinct sets)."""
    from ligbind.recipes.coverage import relax_covered

    slab = _passed(c, keys, "slab").require_converged("slab relaxation")
    ligand = _passed(c, keys, f"ligand/{name}")
    if k >= len(spread_site_sets(slab.atoms, n)):
        return None
    placed = place_coverage(
        slab.atoms,
        entry_from_spec(ligand_spec(c, name)),
        n,
        site_set=k,
        seed=c["seed"],
        relaxed_ligand=ligand.atoms,
    )
    return relax_covered(placed, slab.atoms, c["protocol"], _store(c), _calcdir(c))


def step_coverage(c: dict[str, Any], keys: KeyMap, name: str):
    """Eb per ligand and differential Eb of ``name`` for every n (site sets that failed are left out), against
    the campaign's slab reference, the one its binding rows use (``basin-changed`` judged against it as
    :func:`ligbind.recipes.against_reference` does)."""
    from ligbind.analysis.coverage import analyse_coverage
    from ligbind.recipes import against_reference

    cov, store = c["compute"]["coverage"], _store(c)
    reference = _passed(c, keys, "reference")
    levels: dict[int, list[Result]] = {}
    for n in cov["n"]:
        levels[n] = []
        for k in range(cov["sets"]):
            step = f"coverage-config/{name}/{n}/{k}"
            if keys.get(step):
                levels[n].append(_passed(c, keys, step))
        levels[n] = against_reference(levels[n], reference, c["protocol"], store)
    return analyse_coverage(
        name,
        c["protocol"],
        reference,
        _passed(c, keys, f"ligand/{name}"),
        levels,
        store=store,
        campaign=c["name"],
    )


def _unit(treatment: str):
    return mai_unit() if treatment == MAI_LAYER else resolve_ligand(treatment)


def step_treatment_unit(c: dict[str, Any], keys: KeyMap, treatment: str) -> Result:
    """Relax the treatment's unit (the ligand, or an MAI ion pair) in its box."""
    from ligbind.recipes import relax_ligand

    return relax_ligand(_unit(treatment), campaign_slab(c), c["protocol"], _store(c), _calcdir(c))


def step_treatment(c: dict[str, Any], keys: KeyMap, treatment: str) -> Result:
    """Relax the treated slab (monolayer or MAI layer) built on the relaxed slab."""
    from ligbind.recipes.coverage import relax_covered, treatment_structure

    slab = _passed(c, keys, "slab").require_converged("slab relaxation")
    unit = _passed(c, keys, f"treatment-unit/{treatment}")
    placed, _ = treatment_structure(slab.atoms, treatment, c["seed"], unit.atoms)
    return relax_covered(placed, slab.atoms, c["protocol"], _store(c), _calcdir(c))


def step_treatment_pair(c: dict[str, Any], keys: KeyMap, treatment: str, k: int) -> Result | None:
    """Relax Frenkel pair ``k`` on the relaxed treated slab (None: fewer pairs fit, or none)."""
    from ligbind.jobs import relax
    from ligbind.recipes.coverage import treatment_frenkel_structures

    host = _passed(c, keys, f"treatment/{treatment}").require_converged(f"{treatment} relaxation")
    try:
        pairs = treatment_frenkel_structures(host, treatment, c["compute"]["frenkel"]["pairs"])
    except LigbindError:  # the treatment leaves no interstitial site free
        return None
    if k >= len(pairs):
        return None
    return relax(pairs[k], c["protocol"], store=_store(c), workdir=_calcdir(c))


def step_treatment_frenkel(c: dict[str, Any], keys: KeyMap, treatment: str):
    """Eb per unit of the treatment layer (against the campaign's slab reference, as coverage; the slab in a
    campaign without ligands), and E_F on it with ΔE_F against the bare slab's Frenkel row."""
    from ligbind.analysis.coverage import analyse_coverage
    from ligbind.analysis.frenkel import frenkel_key, load_frenkel
    from ligbind.engine.campaign import host_refinements
    from ligbind.recipes import against_reference, frenkel_on_lowest_host
    from ligbind.recipes.coverage import treatment_label

    store, protocol = _store(c), c["protocol"]
    slab = _passed(c, keys, "slab")
    reference = _passed(c, keys, "reference") if c["ligands"] else slab  # planned as a parent when ligands
    host = _passed(c, keys, f"treatment/{treatment}")
    label = treatment_label(treatment)
    analyse_coverage(
        _unit(treatment).name,
        protocol,
        reference,
        _passed(c, keys, f"treatment-unit/{treatment}"),
        {int(host.atoms.info.get("n", 0)): against_reference([host], reference, protocol, store)},
        treatment=label,
        store=store,
        campaign=c["name"],
    )
    pairs = []
    for k in range(c["compute"]["frenkel"]["pairs"]):
        step = f"treatment-pair/{treatment}/{k}"
        if keys.get(step):
            r = _passed(c, keys, step)
            pairs.append((r.atoms.info, r))
    bare = load_frenkel(store, frenkel_key(slab, None))
    return frenkel_on_lowest_host(
        host, pairs, protocol, store, _calcdir(c), refinements=host_refinements(c), ligand=label, bare=bare,
        campaign=c["name"],
    )  # fmt: skip


def _split(config: str) -> tuple[str, int]:
    """``"a/k"`` → ("a", k): Fireworks pass one ``config`` value to parallel workers, so steps that need two
    parameters (n and site set, treatment and pair) carry both in it."""
    head, _, k = str(config).rpartition("/")
    return head, int(k)


COVERAGE_STEPS = {
    "coverage-config": lambda c, keys, ligand, config, other: step_coverage_config(
        c, keys, ligand, _split(config)[1], int(_split(config)[0])
    ),
    "coverage": lambda c, keys, ligand, config, other: step_coverage(c, keys, ligand),
    "treatment-unit": lambda c, keys, ligand, config, other: step_treatment_unit(c, keys, config),
    "treatment": lambda c, keys, ligand, config, other: step_treatment(c, keys, config),
    "treatment-pair": lambda c, keys, ligand, config, other: step_treatment_pair(c, keys, *_split(config)),
    "treatment-frenkel": lambda c, keys, ligand, config, other: step_treatment_frenkel(c, keys, config),
}
COVERAGE_CALCULATIONS = frozenset({"coverage-config", "treatment-unit", "treatment", "treatment-pair"})


# ------------------------------------------------------------------------------------------------- plan
def plan_coverage(
    c: dict[str, Any], add: Callable, slab: str, frenkel_ids: dict[str, str], reference: str | None
) -> None:
    """Add the coverage and treatment Fireworks to a campaign's plan (``add`` as in planned_fireworks;
    ``reference``: the slab reference Firework, a parent of each coverage and treatment analysis)."""
    cov = c["compute"].get("coverage") or {"ligands": []}
    for lig in cov["ligands"]:
        configs = [
            add(
                "coverage-config",
                f"coverage-config/{lig}/{n}/{k}",
                [slab, f"ligand/{lig}"],
                ligand=lig,
                config=f"{n}/{k}",
            )
            for n in cov["n"]
            for k in range(cov["sets"])
        ]
        parents = [slab, f"ligand/{lig}", *configs, *([reference] if reference else [])]
        add("coverage", f"coverage/{lig}", parents, allow_fizzled=True, ligand=lig)
    treatments = c["compute"].get("treatments") or []
    if treatments and "bare" not in frenkel_ids:
        pairs = [
            add("frenkel-pair", f"frenkel-pair/bare/{k}", [slab], config=k)
            for k in range(c["compute"]["frenkel"]["pairs"])
        ]
        frenkel_ids["bare"] = add("frenkel", "frenkel/bare", [slab, *pairs], allow_fizzled=True)
    for t in treatments:
        unit = add("treatment-unit", f"treatment-unit/{t}", [slab], config=t)
        host = add("treatment", f"treatment/{t}", [slab, unit], config=t)
        pairs = [
            add("treatment-pair", f"treatment-pair/{t}/{k}", [host], config=f"{t}/{k}")
            for k in range(c["compute"]["frenkel"]["pairs"])
        ]
        add(
            "treatment-frenkel",
            f"treatment-frenkel/{t}",
            [slab, unit, host, *pairs, frenkel_ids["bare"], *([reference] if reference else [])],
            allow_fizzled=True,
            config=t,
        )
