"""``ligbind vacancy`` and ``ligbind barrier``: surface halide vacancies and halide migration barriers.

Registered by :mod:`ligbind.cli` (one line there); same conventions: every argument checked by its type
before any work, bad input one line and exit 2, ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ligbind.cli import (
    _add_calc_options,
    _host_arguments,
    _host_inputs,
    _print,
    _progress,
    float_in,
    int_in,
    protocol_name,
)

MAX_SITES = 20
MAX_ATOM_INDEX = 100000


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:+.3f} eV"


def _vacancy_lines(host: dict) -> list[str]:
    """Table rows of one host: references, then one row per site."""
    name = host["ligand"] or "bare"
    lines = []
    for el, ref in host["references"].items():
        lines.append(
            f"  [{name}] μ_{el} = ½E({el}2) {0.5 * ref['e_x2']:.4f} + Δμ_{el} {host['delta_mu_x']:+.3f} = "
            f"{ref['mu_x']:.4f} eV"
        )
    for s in host["sites"]:
        flags = ",".join(s["flags"]) or "none"
        e = f"{s['e_vac']:+.3f} eV (E(slab−X) {s['e_defect']:.4f})" if "e_vac" in s else "n/a"
        lines.append(
            f"  [{name}] site {s['site']} ({s['element']}): E_vac = {e}  {s['status']}, flags {flags}"
        )
    charge = f", charge {host['charge']:+d}, μ_e {host['mu_e']}" if host["charge"] else ""
    lines.append(
        f"E_vac({name}) = {_fmt(host['e_vac'])} ({host.get('element')}) = E(slab−X) + μ_X − E(slab), lowest usable site; "
        f"E(slab) {host['e_host']:.4f} eV{charge}"
    )
    if host.get("host_drop"):
        lines.append(
            f"  [{name}] slab relaxed again from a refilled vacancy: {host['host_drop']:.3f} eV lower"
        )
    return lines


def cmd_vacancy(args: argparse.Namespace) -> None:
    from ligbind.recipes.defects import vacancy
    from ligbind.store import ResultStore

    mode, configs, protocol, slab = _host_inputs(args)
    _precheck_vacancy(slab, protocol, args)
    store = ResultStore(args.db)
    with _progress(args.json) as step:
        out = vacancy(
            slab,
            protocol,
            ligand=args.ligand,
            mode=mode,
            n_configs=configs,
            site=args.site,
            max_sites=args.sites,
            delta_mu_x=args.mu_x,
            charge=args.charge,
            mu_e=args.mu_e,
            host_refinements=args.host_refinements,
            store=store,
            workdir=args.workdir,
            progress=step,
        )
    lines = _vacancy_lines(out.bare)
    if out.with_ligand is not None:
        lines += _vacancy_lines(out.with_ligand)
        lines.append(f"ΔE_vac = {_fmt(out.delta_e_vac)}  (E_vac({out.ligand}) − E_vac(bare), same halide)")
    _print(out.as_dict(), args.json, "\n".join(lines))


def _precheck_vacancy(slab, protocol: dict, args: argparse.Namespace) -> None:
    """Everything the vacancy recipe refuses, checked before the results store is opened (nothing written)."""
    from ligbind.builders.vacancies import check_surface_halide, make_vacancy, surface_halide_sites
    from ligbind.recipes.defects import check_chemical_potential, check_defect_input

    check_chemical_potential(args.mu_x, args.charge, args.mu_e)
    if args.site is not None:
        check_surface_halide(slab, args.site)
    site = args.site if args.site is not None else surface_halide_sites(slab, 1)[0]
    check_defect_input(make_vacancy(slab, site), protocol, args.charge)


def _barrier_lines(host: dict) -> list[str]:
    name = host["ligand"] or "bare"
    lines = [
        f"  [{name}] hop of halide {host['hopper']} into the vacancy at {host['site']} ({host['hop_length']:.2f} Å)"
    ]
    lines.append(f"  [{name}] image  s (Å)   E − E(initial) (eV)")
    for p in host["profile"]:
        lines.append(f"  [{name}] {p['image']:5d} {p['s']:7.3f}   {p['e_rel']:+.4f}")
    lines.append(
        f"Ea({name}) = {_fmt(host['ea_forward'])} forward, {_fmt(host['ea_backward'])} backward  "
        f"({'converged' if host['converged'] else 'unconverged'}, {host['n_steps']} steps, "
        f"{host['force_calls']} force calls; flags {','.join(host['flags']) or 'none'})"
    )
    if host.get("refinements"):
        lines.append(f"  [{name}] endpoints re-relaxed from the band: {host['refinements']} round(s)")
    if host.get("preconverge"):
        pre = host["preconverge"]
        lines.append(
            f"  [{name}] band started from a {pre['protocol']} band ({pre['n_steps']} steps, "
            f"{pre['force_calls']} {pre['protocol']} force calls)"
        )
    return lines


def cmd_barrier(args: argparse.Namespace) -> None:
    from ligbind.analysis.migration import BarrierOutcome, plot_profiles
    from ligbind.recipes.defects import barrier, check_barrier_input, check_preconverge
    from ligbind.store import ResultStore

    mode, configs, protocol, slab = _host_inputs(args)
    check_barrier_input(slab, protocol, args.images, args.site, args.hopper)
    check_preconverge(args.preconverge, protocol)
    store = ResultStore(args.db)
    with _progress(args.json) as step:
        out = barrier(
            slab,
            protocol,
            ligand=args.ligand,
            mode=mode,
            n_configs=configs,
            site=args.site,
            hopper=args.hopper,
            images=args.images,
            steps=args.neb_steps,
            preconverge=args.preconverge,
            **({} if args.endpoint_refinements is None else {"refinements": args.endpoint_refinements}),
            store=store,
            workdir=args.workdir,
            progress=step,
        )
    hosts = [out.bare] + ([out.with_ligand] if out.with_ligand else [])
    png = plot_profiles([BarrierOutcome(**h) for h in hosts], Path(args.workdir) / f"{hosts[-1]['key']}.png")
    payload = {**out.as_dict(), "png": str(png)}
    lines = [line for h in hosts for line in _barrier_lines(h)]
    if out.with_ligand is not None:
        lines.append(f"ΔEa = {_fmt(out.delta_ea)}  (Ea({out.ligand}) − Ea(bare), forward)")
    lines.append(f"profile plot: {png}; results in {store.path}")
    _print(payload, args.json, "\n".join(lines))


def _ligand_arguments(p: argparse.ArgumentParser, what: str) -> None:
    _host_arguments(p, what)
    p.add_argument(
        "--site",
        type=int_in("site index", 0, MAX_ATOM_INDEX),
        help="index of the top-surface halide removed (default: symmetry-distinct sites, nearest the ligand)",
    )


def register_defect_commands(sub) -> None:
    p = sub.add_parser("vacancy", help="surface halide vacancy energy, bare and with a ligand")
    _ligand_arguments(p, "E_vac")
    p.add_argument(
        "--sites",
        type=int_in("number of vacancy sites", 1, MAX_SITES),
        default=2,
        help="symmetry-distinct sites relaxed per host when --site is not given (default 2)",
    )
    p.add_argument(
        "--host-refinements",
        type=int_in("host refinement rounds", 0, 4),
        default=1,
        help="lowest vacancies refilled and relaxed again as the slab; E_vac against the lowest (default 1)",
    )
    p.add_argument(
        "--mu-x",
        type=float_in("Δμ_X", -5, 0, unit="eV"),
        default=0.0,
        help="halide chemical potential relative to ½E(X2), eV (0 = X2-rich; PbX2-rich = ½ΔH_f(PbX2))",
    )
    p.add_argument(
        "--charge",
        type=int_in("vacancy charge", -2, 2),
        default=0,
        help="charge of the vacancy structure (DFT protocols only; needs --mu-e)",
    )
    p.add_argument(
        "--mu-e",
        type=float_in("μ_e", -100, 100, unit="eV"),
        help="electron chemical potential (eV, the protocol's energy scale) for a charged vacancy",
    )
    _add_calc_options(p)
    p.set_defaults(func=cmd_vacancy)

    p = sub.add_parser("barrier", help="halide migration barrier into a neighbouring vacancy (NEB)")
    _ligand_arguments(p, "Ea")
    p.add_argument(
        "--hopper",
        type=int_in("hopping halide index", 0, MAX_ATOM_INDEX),
        help="index of the halide that hops (default: the nearest top-surface halide of the same element)",
    )
    p.add_argument(
        "--images", type=int_in("number of NEB images", 3, 9), default=5, help="intermediate images (3-9)"
    )
    p.add_argument(
        "--neb-steps",
        type=int_in("NEB step limit", 1, 100000),
        help="NEB optimizer steps in total (default: the protocol's relax.steps)",
    )
    p.add_argument(
        "--preconverge",
        metavar="PROTOCOL",
        type=protocol_name,
        help="converge the band first with this ML protocol (e.g. ml-screen); the band of --protocol takes "
        "the migrating ion's path from it (the other atoms from IDPP)",
    )
    p.add_argument(
        "--endpoint-refinements",
        type=int_in("endpoint refinement rounds", 0, 5),
        help="rounds of re-relaxing an endpoint from a band that dips below it (default 3, the recipe's "
        "ENDPOINT_REFINEMENTS; 0: flag endpoint-not-minimum at once)",
    )
    _add_calc_options(p)
    p.set_defaults(func=cmd_barrier)
