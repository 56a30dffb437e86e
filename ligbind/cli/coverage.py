"""``ligbind coverage`` and ``ligbind treat``: several copies of a ligand on one slab, and surface treatments
(a ligand monolayer or an MAI layer) with the iodine Frenkel energy on them.

Registered by :mod:`ligbind.cli` (one line); bad input follows the CLI's rules (exit 2, one line, nothing
written: the largest coverage is placed on the input slab before the store is opened).
"""

from __future__ import annotations

import argparse
import time

from ligbind.calculators import ML_LABEL
from ligbind.cli import (
    MAX_SEED,
    _add_calc_options,
    _argtype,
    _print,
    _progress,
    input_file,
    int_in,
    read_slab,
    resolve_checked_ligand,
)

MAX_COPIES = 64
MAX_PAIRS = 20


@_argtype("coverage")
def coverage_value(text: str) -> list[int | str]:
    """One ``--n`` value: an integer, a range ``1..4``, or ``monolayer``."""
    from ligbind.builders.coverage import MONOLAYER

    text = text.strip().lower()
    if text == MONOLAYER:
        return [MONOLAYER]
    lo, sep, hi = text.partition("..")
    try:
        first, last = int(lo), int(hi if sep else lo)
    except ValueError:
        raise ValueError(
            f"bad coverage '{text}': give a number of ligands, a range like 1..4, or monolayer"
        ) from None
    if first < 1 or last < first or last > MAX_COPIES:
        raise ValueError(f"bad coverage '{text}': need 1 ≤ n ≤ {MAX_COPIES} (and a range low..high)")
    return list(range(first, last + 1))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f} eV"


def cmd_coverage(args: argparse.Namespace) -> None:
    from ligbind.protocols import load_protocol
    from ligbind.recipes.coverage import check_coverage_fits, coverage, coverage_levels
    from ligbind.store import ResultStore

    protocol = load_protocol(args.protocol, args.set)
    entry = resolve_checked_ligand(args.ligand, "neutral", protocol)
    slab = read_slab(args.slab, pbx2=True)
    counts = coverage_levels(slab, [n for group in args.n for n in group])
    check_coverage_fits(slab, entry, counts, args.sets, args.seed)  # before anything is written
    store = ResultStore(args.db)
    start = time.perf_counter()
    with _progress(args.json or args.quiet) as step:
        out = coverage(
            slab, entry, protocol, ns=counts, sets=args.sets, store=store, workdir=args.workdir, seed=args.seed,
            progress=step,
        )  # fmt: skip
    payload = {**out.as_dict(), "wall_time": round(time.perf_counter() - start, 2), "db": str(store.path)}
    label = "" if out.is_dft else f"  [{ML_LABEL}]"
    lines = [f"{out.ligand} coverage on {slab.get_chemical_formula()} with {out.protocol}{label}"]
    for level in out.levels:
        flags = ",".join(level["flags"]) or "ok"
        lines.append(
            f"  n = {level['n']}: Eb per ligand {_fmt(level['eb_per_ligand'])}, differential Eb "
            f"{_fmt(level['eb_differential'])}  ({flags})"
        )
    lines.append(
        f"Eb per ligand = [E(n L@slab) − n E(L) − E(slab)]/n; differential = E(n) − E(n−1) − E(L); "
        f"E(L) {out.e_ligand:.4f}, E(slab) {out.e_slab:.4f} eV; {payload['wall_time']:.1f} s; results in {store.path}"
    )
    _print(payload, args.json, "\n".join(lines))


def cmd_treat(args: argparse.Namespace) -> None:
    from ligbind.builders.coverage import MAI_LAYER
    from ligbind.protocols import load_protocol
    from ligbind.recipes.coverage import treatment_frenkel, treatment_structure
    from ligbind.store import ResultStore

    protocol = load_protocol(args.protocol, args.set)
    treatment = MAI_LAYER if args.treatment.lower() == MAI_LAYER.lower() else args.treatment
    if treatment != MAI_LAYER:
        treatment = resolve_checked_ligand(treatment, "neutral", protocol).name
    slab = read_slab(args.slab, pbx2=True)
    treatment_structure(slab, treatment, args.seed, None)  # a monolayer that does not fit: refused here
    store = ResultStore(args.db)
    start = time.perf_counter()
    with _progress(args.json or args.quiet) as step:
        out = treatment_frenkel(
            slab, treatment, protocol, max_pairs=args.pairs, store=store, workdir=args.workdir, seed=args.seed,
            progress=step,
        )  # fmt: skip
    payload = {**out.as_dict(), "wall_time": round(time.perf_counter() - start, 2), "db": str(store.path)}
    level = out.coverage["levels"][0]
    lines = [
        f"{out.treatment} on {slab.get_chemical_formula()} with {out.protocol}",
        f"  Eb per {out.coverage['ligand']} unit ({level['n']} units) = {_fmt(level['eb_per_ligand'])}  "
        f"({','.join(level['flags']) or 'ok'})",
        f"  E_F(bare) = {_fmt(out.ef_bare)};  E_F({out.treatment}) = {_fmt(out.ef_treated)};  "
        f"ΔE_F = {_fmt(out.delta_ef)}",
        *([f"  note: {out.note}"] if out.note else []),
        f"{payload['wall_time']:.1f} s; results in {store.path}",
    ]
    _print(payload, args.json, "\n".join(lines))


def register_coverage_commands(sub) -> None:
    """Add ``coverage`` and ``treat`` to the ``ligbind`` subcommands."""
    p = sub.add_parser(
        "coverage", help="Eb per ligand and differential Eb for n copies of a ligand on one slab"
    )
    p.add_argument(
        "--slab", required=True, type=input_file("structure file"), help="PbI2-terminated slab file"
    )
    p.add_argument("--ligand", required=True, help="library name")
    p.add_argument(
        "--n",
        required=True,
        nargs="+",
        type=coverage_value,
        help="numbers of copies: integers, ranges like 1..4, or monolayer (one per surface Pb)",
    )
    p.add_argument(
        "--sets",
        type=int_in("number of site sets", 1, 10),
        default=1,
        help="symmetry-distinct spread site sets relaxed per n (lowest reported; default 1)",
    )
    p.add_argument("--seed", type=int_in("seed", 0, MAX_SEED), default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_calc_options(p)
    p.set_defaults(func=cmd_coverage)

    p = sub.add_parser(
        "treat", help="surface treatment (ligand monolayer or MAI-layer): Eb per unit and E_F on it"
    )
    p.add_argument(
        "--slab", required=True, type=input_file("structure file"), help="PbI2-terminated slab file"
    )
    p.add_argument(
        "--treatment",
        required=True,
        help="a library ligand (its monolayer, e.g. dimethyl-ether) or MAI-layer",
    )
    p.add_argument(
        "--pairs",
        type=int_in("number of Frenkel pairs", 1, MAX_PAIRS),
        default=2,
        help="pairs per host (default 2)",
    )
    p.add_argument("--seed", type=int_in("seed", 0, MAX_SEED), default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_calc_options(p)
    p.set_defaults(func=cmd_treat)


__all__ = ["register_coverage_commands", "coverage_value"]
