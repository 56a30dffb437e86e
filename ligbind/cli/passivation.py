"""``ligbind passivate``: K–Br passivation energy of a slab, and E_F with and without it (``--frenkel``).

Registered by :mod:`ligbind.cli`; bad input (a slab file together with build options, an unknown mode, n or
exchange too large, substitution on a slab without surface Cs) is refused with one line and exit code 2
before anything is written.
"""

from __future__ import annotations

import argparse

from ligbind.cli import (
    MAX_CONFIGS,
    MAX_PAIRS,
    MAX_SEED,
    _add_calc_options,
    _materials,
    _phases,
    _print,
    _progress,
    _warn,
    float_in,
    input_file,
    int_in,
    read_slab,
    slab_size,
)
from ligbind.errors import LigbindError

BUILD_OPTIONS = ("material", "phase", "size", "layers", "vacuum", "fix_layers", "br_fraction")
MAX_K = 64  # K per slab (the builder refuses more than the slab's sites)


def _slab(args: argparse.Namespace):
    """The slab file, or a slab built from the build options (``--seed`` also seeds the Br substitution)."""
    from ligbind.builders.slab import build_slab
    from ligbind.validation import check_slab

    given = [f"--{o.replace('_', '-')}" for o in BUILD_OPTIONS if getattr(args, o) is not None]
    if args.slab is not None:
        if given:
            raise LigbindError(f"give --slab or build options ({', '.join(given)}), not both")
        return read_slab(args.slab, pbx2=True)
    slab = build_slab(
        material=args.material or "CsPbI3",
        phase=args.phase,
        size=args.size or "2x2",
        layers=args.layers or 3,
        vacuum=args.vacuum or 12.0,
        fix_layers=1 if args.fix_layers is None else args.fix_layers,
        br_fraction=args.br_fraction or 0.0,
        seed=args.seed,
    )
    for message in check_slab(slab, "the slab"):
        _warn(message)
    return slab


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f} eV"


def _text(out, lowest: tuple[float | None, ...] = (None, None, None)) -> str:
    lines = [f"{out.treatment}  n_K={out.n_k}  exchanged I={out.exchange}  [{out.protocol}]  {out.reaction}"]
    refs = ", ".join(f"E({k}, {v['structure']}) = {v['energy']:.4f} eV" for k, v in out.references.items())
    lines.append(f"E(slab) = {out.e_slab:.4f} eV; {refs}")
    lines.append(f"{'arr':>4} {'E_pass (eV)':>12} {'status':>12}  flags")
    for a in out.arrangements:
        e = "" if a.get("e_pass") is None else f"{a['e_pass']:+.4f}"
        lines.append(f"{a['arrangement']:>4} {e:>12} {a['status']:>12}  {','.join(a['flags']) or '-'}")
    lines.append(f"E_pass = {_fmt(out.e_pass)} (lowest usable arrangement; negative = favourable)")
    e_pass, slab_drop, treated_drop = lowest
    if slab_drop or treated_drop:
        lines.append(
            f"E_pass = {_fmt(e_pass)} against the lowest hosts the Frenkel analysis found (slab "
            f"{slab_drop or 0.0:.3f} eV lower, {out.treatment} {treated_drop or 0.0:.3f} eV lower)"
        )
    if out.ef_bare is not None or out.ef_passivated is not None:
        lines.append(
            f"E_F(bare) = {_fmt(out.ef_bare)};  E_F({out.treatment}) = {_fmt(out.ef_passivated)};  "
            f"ΔE_F = {_fmt(out.delta_ef)}"
        )
    return "\n".join(lines)


def cmd_passivate(args: argparse.Namespace) -> None:
    from ligbind.analysis.passivation import e_pass_on_lowest_hosts
    from ligbind.protocols import load_protocol
    from ligbind.recipes.passivation import check_passivation, passivation
    from ligbind.store import ResultStore

    if args.pairs is not None and not args.frenkel:
        raise LigbindError("--pairs sets the Frenkel pairs: give --frenkel too")
    protocol = load_protocol(args.protocol, args.set)
    slab = _slab(args)
    check_passivation(slab, args.mode, args.n, args.exchange, args.arrangements)  # before anything is written
    store = ResultStore(args.db)
    with _progress(args.json or args.quiet) as step:
        out = passivation(
            slab,
            protocol,
            mode=args.mode,
            n=args.n,
            exchange=args.exchange,
            seed=args.seed,
            max_arrangements=args.arrangements,
            frenkel=args.frenkel,
            max_pairs=args.pairs or 3,
            store=store,
            workdir=args.workdir,
            progress=step,
        )
    lowest = e_pass_on_lowest_hosts(store, store.get(out.key))
    record = {**out.as_dict(), "e_pass_per_k": out.e_pass_per_k}
    record |= dict(zip(("e_pass_lowest_hosts", "slab_drop", "treated_drop"), lowest, strict=True))
    _print(record, args.json, _text(out, lowest))


def register_passivation_commands(sub) -> None:
    p = sub.add_parser("passivate", help="K–Br surface passivation energy (and E_F with/without it)")
    p.add_argument("--slab", type=input_file("structure file"), help="PbX2-terminated slab file")
    p.add_argument("--material", choices=_materials(), help="build the slab instead (default CsPbI3)")
    p.add_argument("--phase", choices=_phases(), help="default: tetragonal (tilted)")
    p.add_argument("--size", type=slab_size, help="in-plane repeats (default 2x2)")
    p.add_argument("--layers", type=int_in("number of layers", 1, 21), help="default 3")
    p.add_argument("--vacuum", type=float_in("vacuum", 0, 100, lo_open=True, unit="Å"), help="Å, default 12")
    p.add_argument("--fix-layers", type=int_in("--fix-layers", 0, 20), help="default 1")
    p.add_argument("--br-fraction", type=float_in("Br fraction", 0, 1), help="X sites made Br (mixed halide)")
    p.add_argument(
        "--seed",
        type=int_in("seed", 0, MAX_SEED),
        default=0,
        help="seeds the Br substitution of a built slab and the choice among distinct arrangements",
    )
    p.add_argument(
        "--mode",
        choices=("hollow", "substitute"),
        default="hollow",
        help="hollow: K–Br unit adsorbed at the A-type hollow; substitute: K for a surface Cs, Br for an I",
    )
    p.add_argument("--n", type=int_in("number of K per slab", 1, MAX_K), default=1, help="K+ per slab")
    p.add_argument(
        "--exchange",
        type=int_in("number of exchanged I", 0, 64),
        help="top-layer I next to the K replaced by Br (default: 0 hollow, n substitute)",
    )
    p.add_argument(
        "--arrangements",
        type=int_in("number of arrangements", 1, MAX_CONFIGS),
        default=3,
        help="symmetry-distinct arrangements relaxed (seeded subset when there are more)",
    )
    p.add_argument("--frenkel", action="store_true", help="also E_F bare and passivated, and ΔE_F")
    p.add_argument("--pairs", type=int_in("number of Frenkel pairs", 1, MAX_PAIRS), help="default 3")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_calc_options(p)
    p.set_defaults(func=cmd_passivate)
