"""``ligbind complex-ion``: complexation energy of a metal ion (Pb2+) with a ligand in vacuum.

Registered by :mod:`ligbind.cli` (one line); every argument is checked before the results store is opened,
so bad input (an unknown ion or ligand, a protocol that cannot carry a charge) writes nothing.
"""

from __future__ import annotations

import argparse

from ligbind.cli import (
    MAX_CONFIGS,
    MAX_SEED,
    _print,
    _progress,
    int_in,
    json_object,
    output_db,
    output_dir,
    protocol_name,
)
from ligbind.errors import LigbindError


def cmd_complex_ion(args: argparse.Namespace) -> None:
    from ligbind.builders.complexes import parse_ion
    from ligbind.builders.library import resolve_ligand
    from ligbind.calculators import backend_of
    from ligbind.protocols import load_protocol, with_run_settings
    from ligbind.recipes import DryRunWritten
    from ligbind.recipes.complexes import check_complex_protocol, complex_ion
    from ligbind.store import ResultStore

    protocol = load_protocol(args.protocol, args.set)
    ion = parse_ion(args.ion)
    entry = resolve_ligand(args.ligand)
    check_complex_protocol(protocol, ion, entry)
    if args.dry_run:
        if not backend_of(protocol).writes_inputs:
            raise LigbindError(f"--dry-run writes input files; the {protocol['backend']} backend has none")
        protocol = with_run_settings(protocol, dry_run=True)
        try:
            complex_ion(
                ion.name, entry, protocol, n_configs=args.configs, workdir=args.workdir, seed=args.seed
            )
        except DryRunWritten as written:
            dirs = [str(d) for d in written.args[0]]
            _print({"written": dirs}, args.json, "\n".join(f"wrote {d}" for d in dirs))
        return
    store = ResultStore(args.db)
    with _progress(args.json or args.quiet) as step:
        out = complex_ion(
            ion.name,
            entry,
            protocol,
            n_configs=args.configs,
            store=store,
            workdir=args.workdir,
            include_flagged=args.include_flagged,
            seed=args.seed,
            progress=step,
        )
    value = "n/a (no usable complex)" if out.delta_e is None else f"{out.delta_e:+.3f} eV"
    text = (
        f"ΔE({out.ion} + {out.ligand}) = {value}  [complex charge {out.charge:+d}, "
        f"{out.denticity if out.denticity is not None else '?'} anchors on the ion, "
        f"best of {out.configs_tried}; {out.protocol}]"
    )
    if out.flags:
        text += f"\nflags: {', '.join(out.flags)}"
    _print(out.as_dict(), args.json, text)


def register_complex_commands(sub) -> None:
    p = sub.add_parser(
        "complex-ion", help="complexation energy of a metal ion with a ligand in vacuum (DFT, charged)"
    )
    p.add_argument("--ion", default="Pb2+", help="the ion, e.g. Pb2+ (default)")
    p.add_argument("--ligand", required=True, help="library name")
    p.add_argument(
        "--configs",
        type=int_in("number of configurations", 1, MAX_CONFIGS),
        default=2,
        help="chelating geometries to relax (default 2)",
    )
    p.add_argument("--seed", type=int_in("seed", 0, MAX_SEED), default=0)
    p.add_argument("--include-flagged", action="store_true", help="let flagged complexes count for ΔE")
    p.add_argument("--dry-run", action="store_true", help="vasp: write input directories only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--protocol",
        default="gpaw-complex",
        type=protocol_name,
        help="a protocol whose backend treats charged systems (default gpaw-complex)",
    )
    p.add_argument("--set", type=json_object, help="JSON overrides merged on the protocol")
    p.add_argument("--db", default="ligbind.db", type=output_db, help="results store (ase.db SQLite)")
    p.add_argument("--workdir", default="runs", type=output_dir, help="trajectories and calculator logs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_complex_ion)


def auto_slab_size(args: argparse.Namespace) -> str:
    """``build slab --size auto --fit L ...``: the smallest n×n cell each ``--fit`` ligand fits (else ``--size``)."""
    if args.size != "auto":
        if args.fit:
            raise LigbindError("--fit chooses the cell for --size auto: give --size auto or leave --fit out")
        return args.size
    if not args.fit:
        raise LigbindError("--size auto needs the ligands the cell must fit: --fit LIGAND (repeatable)")
    from ligbind.builders.cells import smallest_fitting_size
    from ligbind.builders.library import resolve_ligand
    from ligbind.builders.slab import build_slab

    entries = [(resolve_ligand(name), "neutral") for name in args.fit]

    def make(n: int):
        return build_slab(
            material=args.material,
            phase=args.phase,
            size=(n, n),
            layers=args.layers,
            vacuum=args.vacuum,
            fix_layers=args.fix_layers,
            br_fraction=args.br_fraction,
            seed=args.seed,
        )

    n, _ = smallest_fitting_size(make, entries, seed=args.seed)
    return f"{n}x{n}"
