"""DFT force calls per verified Eb: ML screen + DFT on the best k vs the plain DFT loop (issue 10).

Two ways to the DFT binding energy of the same ligands on the same slab, in one run:

- plain loop (what a user would write without ligbind): relax the slab and the ligand with DFT, place K
  configurations on the *unrelaxed* slab from the raw conformer, DFT-relax every one, report the lowest Eb.
  No ML anywhere (the DFT protocol's ``prerelax`` is switched off).
- verified (ligbind's AdsorbML path): ``bind`` with the screening protocol (K configurations, ML only), then
  ``verify`` with the DFT protocol on the best ``top_k`` (DFT slab, DFT ligand, ML pose rebuilt on the DFT
  slab with the DFT ligand's geometry, ML pre-relaxation of the slab and ligand).

It counts DFT force calls only (ML calls are cheap and counted apart), from the store rows of each path, so an
interrupted run resumes (the store is ``<workdir>/savings.db``) and still reports every call it made.

    python benchmarks/dft_savings.py                                  # gpaw-quick, 2 ligands x 3 configs
    python benchmarks/dft_savings.py --protocol gpaw-laptop --top-k 2

Targets (issue 10): >= 5x fewer DFT force calls per verified Eb, verified Eb within 0.05 eV of the plain
loop's lowest. The plain loop's slab, relaxed from the bulk cut, sits higher than ligbind's searched slab
(the symmetric saddle), and its complexes can relax the framework further still, so the Eb of both paths are
also given against one reference: the lowest bare framework either path found (including the frameworks of
the plain loop's lowest complexes relaxed without their ligand, whose DFT calls are reported apart) and the
lowest ligand. That comparison is of the complexes alone. The target compares the verified Eb with the plain
loop's lowest configuration that carries no anomaly flag, judged against that reference as ligbind judges
every Eb (a configuration that left the reference's slab basin counts once its bare framework, relaxed, is
shown no lower than the reference); the lowest flagged one is printed beside it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ligbind.protocols import DEFAULT_PROTOCOL

ROOT = Path(__file__).resolve().parents[1]


BASIN = "slab-basin:"  # label prefix of a complex's framework relaxed without its ligand (lowest_slab)


def dft_calls(store, protocol: dict, basins: bool = False) -> tuple[int, int]:
    """(force calls, relaxations) of the stored relaxations computed with ``protocol`` (by its hash): those
    of the path itself, or (``basins``) the ligand-free frameworks relaxed to find the lowest reference."""
    from ligbind.store import protocol_hash

    suffix = "-" + protocol_hash(protocol)
    calls = n = 0
    for row in store.select(kind="relax"):
        if row.key.endswith(suffix) and str(row.get("label", "")).startswith(BASIN) == basins:
            calls += int(row.get("force_calls", 0))
            n += 1
    return calls, n


def verified_relaxations(store, outcomes, dft: dict) -> set[str]:
    """Store keys of the relaxations the DFT ``outcomes`` used: slab, molecule, the verified configurations and
    their frameworks relaxed alone (:func:`ligbind.recipes.basin_framework`, where
    :func:`~ligbind.recipes.lowest_slab` relaxed one; keys of frameworks never relaxed are included)."""
    from ligbind.jobs import result_from_row
    from ligbind.recipes import basin_framework
    from ligbind.store import calculation_key

    keys = set()
    for o in outcomes:
        keys |= {o.slab_key, o.ligand_key}
        slab = result_from_row(store.get(o.slab_key), dft)
        for c in o.configs:
            complex_ = result_from_row(store.get(c["key"]), dft)
            keys |= {c["key"], calculation_key("relax", basin_framework(complex_, slab), dft)}
    return keys


def plain_loop(slab, entries, dft: dict, n_configs: int, seed: int, store, workdir: Path) -> dict:
    """Every configuration DFT-relaxed from its raw placement on the unrelaxed slab; the lowest Eb per ligand.

    ``dft`` has no ML in it (no pre-relaxation, no slab search, no seeded Hessian): the slab is relaxed
    once from the bulk cut, as a user's own loop would, and the lowest converged configuration counts
    whatever ligbind's anomaly checks would say of it (the flags are printed).
    """
    from ligbind.analysis.binding import analyse_binding
    from ligbind.recipes import candidate_configurations, relax_configuration, relax_ligand, relax_slab

    slab_r = relax_slab(slab, dft, store, workdir).require_converged("plain-loop slab")
    out = {}
    for entry in entries:
        lig = relax_ligand(entry, slab, dft, store, workdir).require_converged(f"plain-loop {entry.name}")
        configs = []
        for atoms in candidate_configurations(slab, entry, n_configs, "neutral", seed):
            atoms.info["label"] = f"plain:{entry.name}:{atoms.info['config']}"
            configs.append(
                relax_configuration(atoms, slab_r.atoms, dft, store, workdir, label=atoms.info["label"])
            )
        out[entry.name] = analyse_binding(entry, "neutral", dft, slab_r, lig, configs, store=store)
    return out


def plain_floor(outcomes: dict, dft: dict, store, workdir: Path):
    """The lowest bare framework under the plain loop's lowest complexes: each one's framework relaxed without
    its ligand where it left the slab's basin (:func:`ligbind.recipes.lowest_slab`). Not part of the plain
    loop (its force calls are counted apart): it only puts both paths on one reference."""
    from ligbind.jobs import result_from_row
    from ligbind.recipes import lowest_slab

    first = next(iter(outcomes.values()))
    slab_r = result_from_row(store.get(first.slab_key), dft)
    lowest = []
    for o in outcomes.values():
        done = [c for c in o.configs if c["status"] == "converged"]  # flagged ones too
        if done:
            lowest.append(result_from_row(store.get(min(done, key=lambda c: c["energy"])["key"]), dft))
    return lowest_slab(slab_r, lowest, dft, store, workdir)


def verified(slab, entries, screen: str, dft: dict, n_configs, seed, top_k, reserve, store, workdir) -> dict:
    """ligbind's path: ML screen of K configurations, DFT on the best ``top_k`` (and on up to ``reserve`` next
    ones in place of top-k ones DFT leaves unusable)."""
    from ligbind.analysis.binding import load_binding
    from ligbind.recipes import bind, verify

    out = {}
    for entry in entries:
        s = bind(slab, entry, screen, n_configs=n_configs, seed=seed, store=store, workdir=workdir)
        v = verify(slab, s, entry, dft, top_k=top_k, reserve=reserve, store=store, workdir=workdir)
        out[entry.name] = (v, load_binding(store, v.dft_key) if v.dft_key else None)
    return out


def on_reference(outcome, entry, reference, ligand, protocol: dict, store):
    """``outcome``'s configurations analysed again on the common ``reference`` slab and ``ligand``: flags judged
    as ligbind judges them (:func:`ligbind.recipes.against_reference`), Eb by :func:`analyse_binding` (not
    stored)."""
    from ligbind.analysis.binding import analyse_binding
    from ligbind.jobs import result_from_row
    from ligbind.recipes import against_reference

    configs = [result_from_row(store.get(c["key"]), protocol) for c in outcome.configs]
    configs = against_reference(configs, reference, protocol, store)
    return analyse_binding(entry, "neutral", protocol, reference, ligand, configs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="gpaw-quick", help="DFT protocol (default gpaw-quick)")
    p.add_argument(
        "--screen", default=DEFAULT_PROTOCOL, help=f"screening protocol (default {DEFAULT_PROTOCOL})"
    )
    p.add_argument("--ligands", nargs="+", default=["methylamine", "methanethiol"])
    p.add_argument("--configs", type=int, default=3)
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--reserve", type=int, default=1, help="verify.reserve (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=str(ROOT / "benchmarks" / "results" / "dft-savings"))  # committable
    args = p.parse_args(argv)

    from ligbind.builders.ligands import resolve_ligand
    from ligbind.builders.slab import build_slab
    from ligbind.jobs import result_from_row
    from ligbind.protocols import load_protocol
    from ligbind.store import ResultStore

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store = ResultStore(workdir / "savings.db")
    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=3, vacuum=12.0, fix_layers=1)
    entries = [resolve_ligand(name) for name in args.ligands]
    dft = load_protocol(args.protocol)
    no_ml = {"prerelax": None, "slab": {"search": None, "starts": 1, "rattle": 0.0}, "run": {"hessian": None}}
    plain = load_protocol(args.protocol, no_ml)

    t0 = time.perf_counter()
    ver = verified(
        slab, entries, args.screen, dft, args.configs, args.seed, args.top_k, args.reserve, store, workdir
    )
    t_ver = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = plain_loop(slab, entries, plain, args.configs, args.seed, store, workdir)
    t_loop = time.perf_counter() - t0

    floor = plain_floor(loop, plain, store, workdir)

    # the verified path's cost: its DFT slab, molecules and complexes, and the frameworks of its complexes
    # relaxed without their ligand (lowest_slab); not those of another screen's run in the same store (its
    # molecules start from that screen's geometry), nor a reserve that an earlier flag criterion asked for and no
    # outcome uses
    verified_outcomes = [o for _, o in ver.values() if o is not None]
    rows = [store.get(k) for k in sorted(verified_relaxations(store, verified_outcomes, dft))]
    spent = [int(row.get("force_calls", 0)) for row in rows if row is not None]
    calls_ver, n_ver = sum(spent), len(spent)
    calls_loop, n_loop = dft_calls(store, plain)
    calls_floor, n_floor = dft_calls(store, plain, basins=True)
    first = loop[entries[0].name]
    slabs = [result_from_row(store.get(o.slab_key), dft) for _, o in ver.values() if o is not None]
    reference = min(
        [*slabs, result_from_row(store.get(first.slab_key), plain), floor], key=lambda r: r.energy
    )
    outcomes = verified_outcomes + list(loop.values())
    ligands = {}
    for e in entries:
        key = min((o for o in outcomes if o.ligand == e.name), key=lambda o: o.e_ligand).ligand_key
        ligands[e.name] = result_from_row(store.get(key), dft)
    n = len(entries)
    print(
        f"DFT protocol {args.protocol}, screen {args.screen}, {n} ligands x {args.configs} configurations, "
        f"verified top {args.top_k} (reserve {args.reserve}); CsPbI3 tetragonal 2x2, 3 layers "
        "(wall times of this run only)"
    )
    ver_slab = min((r.energy for r in slabs), default=float("nan"))
    print(
        f"slab: plain loop (relaxed from the bulk cut) {first.e_slab:.3f} eV, ligbind reference {ver_slab:.3f} eV, "
        f"frameworks of the plain loop's lowest complexes {floor.energy:.3f} eV ({n_floor} relaxed, "
        f"{calls_floor} DFT force calls, not counted below); common reference {reference.energy:.3f} eV"
    )
    print(
        "Eb on the common reference (lowest slab and ligand); plain 'clean': its lowest configuration without "
        "anomaly flags (ligbind's rule, AdsorbML's too); 'any': flagged ones included"
    )
    print(
        f"{'ligand':<16}{'plain own slab':>15}{'plain any':>11}{'plain clean':>13}{'verified':>10}{'diff':>8}"
    )
    diffs = []
    for e in entries:
        o_loop = loop[e.name]
        v, o_ver = ver[e.name]
        p_common = on_reference(o_loop, e, reference, ligands[e.name], plain, store)
        v_common = on_reference(o_ver, e, reference, ligands[e.name], dft, store) if o_ver else None
        own, any_, clean = o_loop.eb_including_flagged, p_common.eb_including_flagged, p_common.eb
        b = v_common.eb if v_common else None
        d = b - clean if clean is not None and b is not None else float("nan")
        diffs.append(d)
        cells = [
            f"{x:{w}.3f}" if x is not None else f"{'-':>{w}}"
            for x, w in ((own, 15), (any_, 11), (clean, 13), (b, 10))
        ]
        shown = f"{d:8.3f}" if d == d else "       -"
        print(f"{e.name:<16}{''.join(cells)}{shown}")
        for name, o in (("plain", p_common), ("verified", v_common)):
            rows = o.configs if o else []
            cfg = ", ".join(f"{c['config']}: {c['eb']:.3f} {'/'.join(c['flags'])}".strip() for c in rows)
            print(f"{'':<16}{name} configurations: {cfg or '-'}")
    print(
        f"plain loop: {calls_loop} DFT force calls in {n_loop} relaxations ({calls_loop / n:.0f} per Eb), "
        f"{t_loop:.0f} s"
    )
    print(
        f"verified:   {calls_ver} DFT force calls in {n_ver} relaxations ({calls_ver / n:.0f} per Eb), "
        f"{t_ver:.0f} s"
    )
    ratio = calls_loop / calls_ver if calls_ver else float("inf")
    compared = [d for d in diffs if d == d]
    missing = [e.name for e, d in zip(entries, diffs, strict=True) if d != d]
    worst = f"{max(compared):+.3f} eV over {len(compared)} ligand(s)" if compared else "none to compare"
    print(
        f"DFT force calls saved: {ratio:.1f}x (target >= 5x); verified - plain clean Eb on the common "
        f"reference, worst {worst} (target <= +0.05 eV; negative: the verified configuration is lower)"
        + (
            f"; not compared (no clean plain configuration or no verified Eb): {', '.join(missing)}"
            if missing
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
