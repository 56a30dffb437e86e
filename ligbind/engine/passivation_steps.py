"""Campaign steps of ``compute: {passivation: {mode, n, exchange, arrangements, frenkel}}`` (thin, keys passed down).

Fireworks (names): ``passivation-ref/<salt>`` (bulk KBr, CsI, KI as the reaction needs), ``passivation-config/<k>``
(arrangement k built on the relaxed slab), ``passivation`` (E_pass), and with ``frenkel: true``
``passivation-frenkel-pair/<k>`` on the best passivated slab and ``passivation-frenkel`` (E_F, ΔE_F against the
bare slab's ``frenkel/bare``, which is planned too). With ``verify:``, ``verify-passivated`` (the screen's best
arrangement DFT-relaxed), ``verify-passivation-ref/<salt>`` (the bulk salts with DFT, on the protocol's bulk
k-points), ``verify-passivation`` (E_pass from DFT terms only) and, with ``frenkel: true``,
``verify-passivation-frenkel`` (E_F on the DFT passivated slab). The science is in
:mod:`ligbind.recipes.passivation` and :mod:`ligbind.analysis.passivation`; these steps only fetch what their
ancestors stored.
"""

from __future__ import annotations

from typing import Any

from ligbind.engine.campaign import KeyMap, _calcdir, _passed, _store, campaign_slab
from ligbind.errors import LigbindError
from ligbind.jobs import Result

CALCULATION_STEPS = frozenset(
    {
        "passivation-ref",
        "passivation-config",
        "passivation-frenkel-pair",
        "verify-passivated",
        "verify-passivation-ref",
    }
)
# calculates inside the launching process (a DFT relaxation, hours): ranked with the calculations, never pooled
IN_PROCESS = frozenset({"verify-passivation-frenkel"})


def spec_of(c: dict[str, Any]) -> dict[str, Any]:
    """The campaign's resolved passivation settings (exchange filled in)."""
    from ligbind.builders.passivation import default_exchange

    p = dict(c["compute"]["passivation"])
    if p.get("exchange") is None:
        p["exchange"] = default_exchange(p["mode"], p["n"])
    return p


def check_campaign_passivation(c: dict[str, Any]) -> None:
    """Refuse (LigbindError) a treatment that cannot be built on the campaign's slab, or whose arrangements or
    bulk salts a protocol of the campaign (screen, verification) cannot compute."""
    from ligbind.recipes.passivation import check_inputs, check_passivation

    p, slab = spec_of(c), campaign_slab(c)
    check_passivation(slab, p["mode"], p["n"], p["exchange"], p["arrangements"])
    protocols = [c["protocol"], *([c["verify"]["protocol"]] if c.get("verify") else [])]
    check_inputs(slab, p["mode"], p["n"], p["exchange"], c["seed"], p["arrangements"], protocols)


def references_needed(c: dict[str, Any]) -> list[str]:
    """Bulk references of the reaction (from the unrelaxed slab: relaxation does not change compositions)."""
    from ligbind.recipes.passivation import needed_references

    p, slab = spec_of(c), campaign_slab(c)
    from ligbind.builders.passivation import passivate

    return needed_references(slab, passivate(slab, p["mode"], p["n"], p["exchange"], c["seed"], 1))


def _structures(c: dict[str, Any], slab: Result):
    from ligbind.recipes.passivation import passivated_structures

    p = spec_of(c)
    return passivated_structures(slab, p["mode"], p["n"], p["exchange"], c["seed"], p["arrangements"])


def step_passivation_ref(c: dict[str, Any], keys: KeyMap, name: str) -> Result:
    """Relax one bulk reference salt."""
    from ligbind.recipes.passivation import relax_reference

    return relax_reference(name, c["protocol"], _store(c), _calcdir(c)).require_converged(f"{name} reference")


def step_passivation_config(c: dict[str, Any], keys: KeyMap, k: int) -> Result | None:
    """Relax arrangement ``k`` on the relaxed slab (None: the slab has fewer distinct arrangements)."""
    from ligbind.jobs import relax

    slab = _passed(c, keys, "slab").require_converged("slab relaxation")
    structures = _structures(c, slab)
    if k >= len(structures):
        return None
    return relax(structures[k], c["protocol"], store=_store(c), workdir=_calcdir(c))


def step_passivation(c: dict[str, Any], keys: KeyMap):
    """E_pass from the slab, references and arrangements passed down (missing arrangements reported failed)."""
    from ligbind.analysis.passivation import analyse_passivation

    p = spec_of(c)
    slab = _passed(c, keys, "slab")
    references = {name: _passed(c, keys, f"passivation-ref/{name}") for name in references_needed(c)}
    arrangements = []
    for k, atoms in enumerate(_structures(c, slab)):
        name = f"passivation-config/{k}"
        arrangements.append((atoms, _passed(c, keys, name) if keys.get(name) else None))
    return analyse_passivation(
        slab,
        references,
        arrangements,
        c["protocol"],
        treatment=f"KBr-{p['mode']}",
        mode=p["mode"],
        n_k=p["n"],
        exchange=p["exchange"],
        seed=c["seed"],
        store=_store(c),
        campaign=c["name"],
    )


def _outcome(c: dict[str, Any], keys: KeyMap):
    from ligbind.analysis.passivation import load_passivation

    key = keys.get("passivation")
    out = load_passivation(_store(c), key) if key else None
    if out is None:
        raise LigbindError("the passivation analysis has not finished (or failed)")
    return out


def passivated_host(c: dict[str, Any], keys: KeyMap) -> Result:
    """The relaxed best passivated slab of the campaign (a host for Frenkel pairs, vacancies, NEB).

    Needs the ``passivation`` key passed down (make the defect's Firework a child of ``passivation``).
    """
    from ligbind.recipes.passivation import passivated_host as host_of

    return host_of(_store(c), _outcome(c, keys), c["protocol"])


def step_verify_passivated(c: dict[str, Any], keys: KeyMap) -> Result:
    """The screen's best passivated slab relaxed again with the verification (DFT) protocol, from its screen
    geometry: the DFT host of the vacancies, barriers and Frenkel pair on the passivated surface, and the
    passivated term of the DFT E_pass (``verify-passivation``)."""
    from ligbind.jobs import relax

    start = passivated_host(c, keys).atoms
    start.calc = None
    start.info["label"] = "verify:passivated"
    return relax(start, c["verify"]["protocol"], store=_store(c), workdir=_calcdir(c))


def step_verify_passivation_ref(c: dict[str, Any], keys: KeyMap, name: str) -> Result:
    """Relax one bulk reference salt with the verification (DFT) protocol."""
    from ligbind.recipes.passivation import relax_reference

    dft = c["verify"]["protocol"]
    return relax_reference(name, dft, _store(c), _calcdir(c)).require_converged(f"{name} DFT reference")


def step_verify_passivation(c: dict[str, Any], keys: KeyMap):
    """E_pass with the verification (DFT) protocol (AdsorbML pattern): the screen's best arrangement relaxed
    with DFT (``verify-passivated``) against the DFT slab reference and the DFT bulk salts; its flags judge the
    DFT geometry against the arrangement as built."""
    from ligbind.analysis.passivation import analyse_passivation, best_arrangement

    screen, p = _outcome(c, keys), spec_of(c)
    built = best_arrangement(screen, _structures(c, _passed(c, keys, "slab")))
    references = {name: _passed(c, keys, f"verify-passivation-ref/{name}") for name in references_needed(c)}
    return analyse_passivation(
        _passed(c, keys, "verify-reference"), references, [(built, _passed(c, keys, "verify-passivated"))],
        c["verify"]["protocol"], treatment=screen.treatment, mode=p["mode"], n_k=p["n"], exchange=p["exchange"],
        seed=c["seed"], store=_store(c), campaign=c["name"],
    )  # fmt: skip


def step_verify_passivation_frenkel(c: dict[str, Any], keys: KeyMap):
    """E_F with the verification (DFT) protocol on the DFT-relaxed passivated slab (the screen's lowest usable
    pair there relaxed again with DFT), ΔE_F against the DFT bare slab's; both added to the DFT E_pass row."""
    from ligbind.analysis.frenkel import load_frenkel
    from ligbind.analysis.passivation import load_passivation, store_passivation
    from ligbind.engine.campaign import verify_frenkel

    store = _store(c)
    out = load_passivation(store, keys.get("verify-passivation", ""))
    if out is None:
        raise LigbindError("the DFT passivation analysis has not finished (or failed)")
    bare = load_frenkel(store, keys.get("verify-frenkel/bare", ""))
    screen = load_frenkel(store, keys.get("passivation-frenkel", ""))
    host = _passed(c, keys, "verify-passivated")
    treated = verify_frenkel(c, screen, host, out.treatment, bare)
    out.ef_bare = bare.ef if bare is not None else None
    out.ef_passivated, out.delta_ef = treated.ef, treated.delta_ef
    store_passivation(store, _passed(c, keys, "verify-reference"), out, c["verify"]["protocol"])
    return treated


def step_passivation_frenkel_pair(c: dict[str, Any], keys: KeyMap, k: int) -> Result:
    """Relax Frenkel pair ``k`` on the best passivated slab."""
    from ligbind.jobs import relax
    from ligbind.recipes import frenkel_structures

    out = _outcome(c, keys)
    pairs = frenkel_structures(passivated_host(c, keys), c["compute"]["frenkel"]["pairs"], out.treatment)
    if k >= len(pairs):
        raise LigbindError(f"only {len(pairs)} Frenkel pairs fit on the {out.treatment} slab")
    return relax(pairs[k], c["protocol"], store=_store(c), workdir=_calcdir(c))


def step_passivation_frenkel(c: dict[str, Any], keys: KeyMap):
    """E_F on the best passivated slab, ΔE_F against the bare slab; both added to the passivation row."""
    from ligbind.analysis.frenkel import frenkel_key, load_frenkel
    from ligbind.analysis.passivation import store_passivation
    from ligbind.engine.campaign import host_refinements
    from ligbind.recipes import frenkel_on_lowest_host

    store, out = _store(c), _outcome(c, keys)
    pairs = []
    for k in range(c["compute"]["frenkel"]["pairs"]):
        name = f"passivation-frenkel-pair/{k}"
        r = _passed(c, keys, name) if keys.get(name) else None
        pairs.append((r.atoms.info if r is not None else {"pair": k}, r))
    slab = _passed(c, keys, "slab")
    bare = load_frenkel(store, frenkel_key(slab, None))
    treated = frenkel_on_lowest_host(
        passivated_host(c, keys), pairs, c["protocol"], store, _calcdir(c),
        refinements=host_refinements(c), ligand=out.treatment, bare=bare, campaign=c["name"],
    )  # fmt: skip
    out.ef_bare = bare.ef if bare is not None else None
    out.ef_passivated, out.delta_ef = treated.ef, treated.delta_ef
    store_passivation(store, slab, out, c["protocol"])
    return treated


STEPS = {
    "passivation-ref": lambda c, keys, ligand, config, other: step_passivation_ref(c, keys, config),
    "passivation-config": lambda c, keys, ligand, config, other: step_passivation_config(
        c, keys, int(config)
    ),
    "passivation": lambda c, keys, ligand, config, other: step_passivation(c, keys),
    "passivation-frenkel-pair": lambda c, keys, ligand, config, other: step_passivation_frenkel_pair(
        c, keys, int(config)
    ),
    "passivation-frenkel": lambda c, keys, ligand, config, other: step_passivation_frenkel(c, keys),
    "verify-passivated": lambda c, keys, ligand, config, other: step_verify_passivated(c, keys),
    "verify-passivation-ref": lambda c, keys, ligand, config, other: step_verify_passivation_ref(
        c, keys, config
    ),
    "verify-passivation": lambda c, keys, ligand, config, other: step_verify_passivation(c, keys),
    "verify-passivation-frenkel": lambda c, keys, ligand, config, other: step_verify_passivation_frenkel(
        c, keys
    ),
}


def plan_passivation(c: dict[str, Any], add, slab: str, frenkel_ids: dict[str, str]) -> str | None:
    """Add the passivation Fireworks to a campaign plan (``add(step, name, parents, allow_fizzled, **params)``).

    A reference's name travels in ``config`` (the parallel runner passes ligand and config to its workers).
    """
    if not c["compute"].get("passivation"):
        return None
    p = spec_of(c)
    refs = [
        add("passivation-ref", f"passivation-ref/{name}", [], config=name) for name in references_needed(c)
    ]
    configs = [
        add("passivation-config", f"passivation-config/{k}", [slab], config=k)
        for k in range(p["arrangements"])
    ]
    analysis = add("passivation", "passivation", [slab, *refs, *configs], allow_fizzled=True)
    if not p["frenkel"]:
        return analysis
    n_pairs = c["compute"]["frenkel"]["pairs"]
    if (
        "bare" not in frenkel_ids
    ):  # ΔE_F needs E_F of the bare slab: the same Fireworks a Frenkel campaign plans
        bare_pairs = [
            add("frenkel-pair", f"frenkel-pair/bare/{k}", [slab], ligand=None, config=k)
            for k in range(n_pairs)
        ]
        frenkel_ids["bare"] = add(
            "frenkel", "frenkel/bare", [slab, *bare_pairs], allow_fizzled=True, ligand=None
        )
    pairs = [
        add("passivation-frenkel-pair", f"passivation-frenkel-pair/{k}", [analysis], config=k)
        for k in range(n_pairs)
    ]
    add(
        "passivation-frenkel",
        "passivation-frenkel",
        [analysis, *pairs, frenkel_ids["bare"]],
        allow_fizzled=True,
    )
    return analysis


def plan_passivation_verification(c: dict[str, Any], add, passivation: str | None, reference: str) -> None:
    """With ``verify:``, the DFT Fireworks of the treatment (``reference``: the DFT slab reference's Firework):
    the best arrangement and the bulk salts relaxed with DFT, and E_pass from them."""
    if not passivation or not c.get("verify"):
        return
    host = add("verify-passivated", "verify-passivated", [passivation])
    refs = [
        add("verify-passivation-ref", f"verify-passivation-ref/{name}", [], config=name)
        for name in references_needed(c)
    ]
    add("verify-passivation", "verify-passivation", [passivation, reference, host, *refs])


def plan_passivation_frenkel_verification(c: dict[str, Any], add, reference: str, planned) -> None:
    """With ``verify:`` and ``frenkel: true``, E_F on the DFT passivated slab, and on the DFT bare slab unless
    ``planned`` (the names planned so far) holds it; after :func:`plan_passivation_verification`."""
    if not c["compute"].get("passivation") or not c.get("verify") or not spec_of(c)["frenkel"]:
        return
    bare = "verify-frenkel/bare"
    if bare not in planned:  # ΔE_F needs the DFT bare E_F: the Firework a verified Frenkel campaign plans
        add("verify-frenkel", bare, ["frenkel/bare", reference], ligand=None)
    parents = ["verify-passivation", "passivation-frenkel", "verify-passivated", bare, reference]
    add("verify-passivation-frenkel", "verify-passivation-frenkel", parents)
