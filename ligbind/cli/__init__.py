"""The ``ligbind`` command: build, ligands, protocols, bind, frenkel, screen, run, status, results.

Every subcommand has ``--help``; those a script would parse have ``--json``. Bad input ends with exit
code 2 and one line ``ligbind: error: ...`` on stderr, and nothing is written: every argument is checked by
its argparse type or choices, and every ligand, protocol and input structure is checked before the first
calculation. An unexpected exception (a bug) prints one line and a note, exit code 1; ``--debug`` shows the
full traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ligbind.calculators import ML_LABEL
from ligbind.errors import LigbindError
from ligbind.protocols import DEFAULT_PROTOCOL

BUG_NOTE = "this is a bug in ligbind; please report it with --debug output"
MAX_CONFIGS = 50  # relaxations per ligand (the campaign schema has the same limit)
MAX_PAIRS = 50
MAX_REPEATS = 10
MAX_SEED = 2**32 - 1


# ------------------------------------------------------------------------------------ argument types
def _argtype(name: str):
    """Decorator: a converter whose LigbindError/ValueError becomes argparse's one-line error."""

    def wrap(fn):
        def convert(text: str):
            try:
                return fn(text)
            except (LigbindError, ValueError) as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        convert.__name__ = name
        return convert

    return wrap


def int_in(what: str, lo: int, hi: int):
    """An integer in [lo, hi]; messages like ``bad number of layers 0: need at least 1``."""

    @_argtype(what)
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"bad {what} '{text}': not an integer") from None
        if value < lo:
            raise ValueError(f"bad {what} {value}: need at least {lo}")
        if value > hi:
            raise ValueError(f"bad {what} {value}: at most {hi}")
        return value

    return convert


def float_in(what: str, lo: float, hi: float, *, lo_open: bool = False, unit: str = ""):
    """A finite float in [lo, hi] (or (lo, hi] with ``lo_open``); NaN and infinity refused."""
    u = f" {unit}" if unit else ""

    @_argtype(what)
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"bad {what} '{text}': not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"bad {what} {text}: not a finite number")
        if (value <= lo) if lo_open else (value < lo):
            raise ValueError(
                f"bad {what} {value}{u}: must be {'positive' if lo_open and lo == 0 else f'≥ {lo}'}"
            )
        if value > hi:
            raise ValueError(f"bad {what} {value}{u}: at most {hi}{u}")
        return value

    return convert


@_argtype("size")
def slab_size(text: str) -> str:
    from ligbind.builders.slab import parse_size

    if text.strip().lower() == "auto":  # the smallest n×n every --fit ligand fits (ligbind.builders.cells)
        return "auto"

    nx, ny = parse_size(text)
    if max(nx, ny) > MAX_REPEATS:
        raise ValueError(f"bad slab size {nx}x{ny}: at most {MAX_REPEATS} repeats each way")
    return f"{nx}x{ny}"


@_argtype("structure file")
def output_structure(text: str) -> str:
    from ligbind.io import check_output_file, structure_format

    structure_format(text)
    check_output_file(text)
    return text


@_argtype("directory")
def output_dir(text: str) -> str:
    from ligbind.io import check_output_dir

    check_output_dir(text)
    return text


@_argtype("database")
def output_db(text: str) -> str:
    from ligbind.io import check_database_file

    check_database_file(text, must_exist=False)
    return text


@_argtype("database")
def input_db(text: str) -> str:
    from ligbind.io import check_database_file

    check_database_file(text, must_exist=True)
    return text


def input_file(what: str):
    @_argtype(what)
    def convert(text: str) -> str:
        from ligbind.io import check_input_file

        check_input_file(text, what)
        return text

    return convert


@_argtype("JSON")
def json_object(text: str) -> dict:
    """Protocol overrides as a JSON object (NaN and infinity refused)."""

    def refuse_constant(name: str):
        raise ValueError(f"{name} is not a finite number")

    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object, e.g. \'{"relax": {"fmax": 0.1}}\'')
    from ligbind.engine.schema import first_nonfinite

    bad = first_nonfinite(value)
    if bad:
        raise ValueError(f"{bad}: not a finite number")
    return value


@_argtype("launchpad file")
def launchpad_file(text: str) -> str:
    """A FireWorks my_launchpad.yaml: an existing, readable YAML mapping (host, name, ... of the MongoDB)."""
    import yaml

    from ligbind.io import check_input_file

    check_input_file(text, "launchpad file")
    try:
        content = yaml.safe_load(Path(text).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ValueError(f"launchpad file {text} is not valid YAML") from None
    if not isinstance(content, dict):
        raise ValueError(f"launchpad file {text} must be a YAML mapping (host, port, name, ...)")
    return text


@_argtype("campaign")
def campaign_ref(text: str) -> str:
    """A campaign YAML file, or the name of a screened campaign (one safe path component under runs/)."""
    from ligbind.engine.schema import check_campaign_name
    from ligbind.io import check_input_file

    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        check_input_file(text, "campaign file")
    else:
        check_campaign_name(text)
    return text


def _materials() -> list[str]:
    from ligbind.builders.bulk import PHASES

    return sorted({m for m, _ in PHASES})


def _phases() -> list[str]:
    from ligbind.builders.bulk import PHASES

    return sorted({p for _, p in PHASES})


def _protocol_names() -> list[str]:
    from ligbind.protocols import available_protocols

    return available_protocols()


@_argtype("protocol")
def protocol_name(text: str) -> str:
    """A shipped protocol preset (the message lists them)."""
    if text not in _protocol_names():
        raise ValueError(f"unknown protocol '{text}' (available: {', '.join(_protocol_names())})")
    return text


MODES = ("neutral", "exchange")


# ------------------------------------------------------------------------------- checks before work
def _warn(message: str) -> None:
    print(f"ligbind: warning: {message}", file=sys.stderr)


def read_slab(path: str, *, pbx2: bool = False):
    """Read a slab file and run the structure check (warnings printed, one line each).

    With ``pbx2`` a slab that is not PbX2-terminated is refused before any warning is printed.
    """
    from ligbind.builders.slab import check_pbi2_terminated
    from ligbind.io import read_structure
    from ligbind.validation import check_slab

    atoms = read_structure(path)
    messages = check_slab(atoms, f"slab {path}")
    if pbx2:
        check_pbi2_terminated(atoms, f"slab {path}")
    for message in messages:
        _warn(message)
    return atoms


def read_slab_for(path: str, ligand: str, mode: str, protocol: dict | None):
    """(slab, ligand entry): the slab read and checked, the ligand checked against it (its surface, PbX2 or
    AX, decides the modes), and only then the slab's warnings printed (a refused input prints one line)."""
    from ligbind.io import read_structure
    from ligbind.validation import check_slab

    atoms = read_structure(path)
    messages = check_slab(atoms, f"slab {path}")
    entry = resolve_checked_ligand(ligand, mode, protocol, atoms)
    for message in messages:
        _warn(message)
    return atoms, entry


def resolve_checked_ligand(name: str, mode: str, protocol: dict | None, slab=None):
    """The library entry of ``name``, refused now if ``mode``, ``protocol`` (or the ``slab``'s surface,
    PbX2 or AX) cannot use it."""
    from ligbind.builders.ligands import resolve_ligand
    from ligbind.builders.termination import check_slab_mode
    from ligbind.validation import check_molecule

    entry = resolve_ligand(name)
    if slab is not None:
        check_slab_mode(entry, mode, slab)
    elif mode == "exchange" and not entry.exchange:
        raise LigbindError(f"ligand '{entry.name}' has no exchange anion: use --mode neutral")
    check_molecule(entry, protocol)
    return entry


def _print(payload: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text if text is not None else payload)


def _atoms_summary(atoms, path: Path | None = None) -> dict[str, Any]:
    from ligbind.builders.slab import slab_mask

    summary = {
        "formula": atoms.get_chemical_formula(),
        "natoms": len(atoms),
        "cell": [round(float(x), 4) for x in atoms.cell.cellpar()],
        "fixed_atoms": sum(len(c.index) for c in atoms.constraints if hasattr(c, "index")),
        "slab_atoms": int(slab_mask(atoms).sum()),
        **{k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool))},
    }
    if path is not None:
        summary["file"] = str(path)
    return summary


# ----------------------------------------------------------------------------------------------- build
def cmd_build_slab(args: argparse.Namespace) -> None:
    from ligbind.builders.slab import build_slab
    from ligbind.cli.complexes import auto_slab_size
    from ligbind.io import write_structure
    from ligbind.validation import check_slab

    slab = build_slab(
        material=args.material,
        phase=args.phase,
        size=auto_slab_size(args),
        layers=args.layers,
        vacuum=args.vacuum,
        fix_layers=args.fix_layers,
        br_fraction=args.br_fraction,
        seed=args.seed,
        termination=args.termination,
    )
    for message in check_slab(slab, "the slab"):  # what every later command will check, refused now
        _warn(message)
    path = write_structure(args.output, slab)
    s = _atoms_summary(slab, path)
    _print(
        s,
        args.json,
        f"wrote {path}: {s['formula']} ({s['natoms']} atoms), {slab.info['material']} {slab.info['phase']} "
        f"{slab.info['size']}, {slab.info['layers']} layers, termination {slab.info['termination']}, "
        f"vacuum {slab.info['vacuum']:.2f} Å, bottom {slab.info['fixed_layers']} layer(s) fixed "
        f"({s['fixed_atoms']} atoms)",
    )


def cmd_build_ligand(args: argparse.Namespace) -> None:
    from ligbind.builders.ligands import build_ligand, resolve_ligand
    from ligbind.io import write_structure
    from ligbind.validation import check_molecule

    if (args.name is None) == (args.smiles is None):
        raise LigbindError("give a library ligand NAME or --smiles, not both or neither")
    entry = resolve_ligand(name=args.name, smiles=args.smiles)
    check_molecule(entry, None, charge=args.charge)
    mol = build_ligand(name=args.name, smiles=args.smiles, seed=args.seed)
    path = write_structure(args.output, mol)
    s = _atoms_summary(mol, path)
    _print(s, args.json, f"wrote {path}: {mol.info['name']} {s['formula']}, charge {mol.info['charge']:+d}")


def cmd_build_complex(args: argparse.Namespace) -> None:
    from ligbind.builders.placement import anchor_sites, place_ligand
    from ligbind.io import write_structure

    slab, entry = read_slab_for(args.slab, args.ligand, args.mode, None)
    complexes = place_ligand(slab, entry, n_configs=args.configs, mode=args.mode, seed=args.seed)
    outdir = Path(args.output)
    written = []
    for atoms in complexes:
        path = write_structure(outdir / f"config_{atoms.info['config']:02d}.extxyz", atoms)
        written.append({**_atoms_summary(atoms, path), "anchor_sites": anchor_sites(atoms)})
    lines = [f"wrote {len(written)} configuration(s) of {args.ligand} ({args.mode}) to {outdir}/"]
    for w in written:
        sites = (
            ", ".join(
                f"{s['element']}{s['anchor']}→Pb{s['pb']} {s['distance']:.2f} Å" for s in w["anchor_sites"]
            )
            or f"N{w.get('anchor')} on the {w.get('exchanged_cation')} site, byproduct {w.get('byproduct_smiles')}"
        )
        lines.append(f"  {Path(w['file']).name}: {w['motif']}, conformer {w['conformer']}: {sites}")
    _print(written, args.json, "\n".join(lines))


def cmd_ligands(args: argparse.Namespace) -> None:
    from ligbind.builders.ligands import load_library

    lib = load_library()
    rows = [
        {
            "name": e.name,
            "smiles": e.smiles,
            "charge": e.charge,
            "denticity": e.denticity,
            "anchors": e.anchors,
            "exchange": bool(e.exchange),
            "note": e.note,
        }
        for e in lib.values()
    ]
    if args.json:
        _print(rows, True)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['charge']:+d}  {r['smiles']}\n{'':<{width}}      {r['note']}")


# ------------------------------------------------------------------------------------------- protocols
def cmd_protocols(args: argparse.Namespace) -> None:
    import yaml

    from ligbind.protocols import available_protocols, load_protocol

    if args.name is None:
        if args.set is not None:
            raise LigbindError("--set needs a protocol NAME (ligbind protocols NAME --set ...)")
        rows = {
            n: load_protocol(n, check_installed=False).get("description", "") for n in available_protocols()
        }
        width = max(map(len, rows)) + len(" (default)")
        names = {n: f"{n} (default)" if n == DEFAULT_PROTOCOL else n for n in rows}
        _print(rows, args.json, "\n".join(f"{names[n]:<{width}}  {d}" for n, d in rows.items()))
        return
    protocol = load_protocol(args.name, args.set, check_installed=False)  # shown, not run
    _print(protocol, args.json, yaml.safe_dump(protocol, sort_keys=False).rstrip())


# ------------------------------------------------------------------------------------------------ parser
class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (``ligbind: error: ...``), exit code 2, like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        where = self.prog.removeprefix("ligbind").strip()
        message = " ".join(message.split())
        self.exit(2, f"ligbind: error: {where + ': ' if where else ''}{message}\n")

    def add_subparsers(self, **kwargs):  # every (sub)subcommand also takes the global --debug
        action = super().add_subparsers(**kwargs)
        add_parser = action.add_parser

        def add_with_debug(*args, **kw):
            p = add_parser(*args, **kw)
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            return p

        action.add_parser = add_with_debug
        return action


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="ligbind", description="Ligand binding and defect energies on lead-halide perovskite surfaces."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser("build", help="build slabs, ligands and ligand@slab complexes")
    bsub = build.add_subparsers(dest="what", required=True, metavar="WHAT")

    p = bsub.add_parser("slab", help="a PbI2- or AX-terminated (001) slab")
    p.add_argument("--material", default="CsPbI3", choices=_materials(), help="default CsPbI3")
    p.add_argument("--phase", default=None, choices=_phases(), help="default: tetragonal (tilted)")
    p.add_argument(
        "--size",
        type=slab_size,
        default="2x2",
        help="in-plane pseudo-cubic repeats, e.g. 2x2, or auto (see --fit)",
    )
    p.add_argument(
        "--fit", action="append", metavar="LIGAND", help="with --size auto: ligands the cell must fit"
    )
    p.add_argument(
        "--layers",
        type=int_in("number of layers", 1, 21),
        default=3,
        help="number of PbI2/AI layers (odd: the termination on both faces)",
    )
    p.add_argument(
        "--vacuum",
        type=float_in("vacuum", 0, 100, lo_open=True, unit="Å"),
        default=12.0,
        help="vacuum between periodic images along z (Å)",
    )
    p.add_argument(
        "--fix-layers", type=int_in("--fix-layers", 0, 20), default=1, help="bottom layers held fixed"
    )
    p.add_argument(
        "--br-fraction", type=float_in("Br fraction", 0, 1), default=0.0, help="fraction of X sites made Br"
    )
    p.add_argument("--seed", type=int_in("seed", 0, MAX_SEED), default=0, help="seed for the Br substitution")
    p.add_argument(
        "--termination",
        default="PbX2",
        help="top layer: PbX2 (alias PbI2, default) or AX (alias CsI / MAI: the material's A halide)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        type=output_structure,
        help="output file (.extxyz, POSCAR, .vasp, .cif)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_build_slab)

    p = bsub.add_parser("ligand", help="3D coordinates of a ligand (RDKit conformers)")
    p.add_argument("name", nargs="?", help="library name (see `ligbind ligands`)")
    p.add_argument("--smiles", help="a SMILES string instead of a library name")
    p.add_argument(
        "--charge", type=int_in("charge", -8, 8), help="expected total charge (refused if the SMILES differs)"
    )
    p.add_argument("--seed", type=int_in("seed", 0, MAX_SEED), default=42, help="RDKit embedding seed")
    p.add_argument(
        "-o", "--output", required=True, type=output_structure, help="output file (.extxyz, .xyz, ...)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build_ligand)

    p = bsub.add_parser("complex", help="candidate ligand@slab configurations")
    p.add_argument(
        "--slab", required=True, type=input_file("structure file"), help="PbI2-terminated slab file"
    )
    p.add_argument("--ligand", required=True, help="library name")
    p.add_argument(
        "--configs",
        type=int_in("number of configurations", 1, MAX_CONFIGS),
        default=3,
        help="number of distinct configurations",
    )
    p.add_argument(
        "--mode",
        default="neutral",
        choices=MODES,
        help="neutral (whole unit) or exchange (anion replaces a surface I)",
    )
    p.add_argument("--seed", type=int_in("seed", 0, MAX_SEED), default=0)
    p.add_argument("-o", "--output", required=True, type=output_dir, help="output directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build_complex)

    p = sub.add_parser("ligands", help="list the ligand library (ligbind/data/ligands.yaml)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ligands)

    p = sub.add_parser("protocols", help="list protocols, or print one fully resolved")
    p.add_argument("name", nargs="?", type=protocol_name)
    p.add_argument(
        "--set", type=json_object, help='JSON overrides merged on top, e.g. \'{"relax": {"fmax": 0.1}}\''
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_protocols)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


_EXTRA_COMMANDS: list = []


# ---------------------------------------------------------------------------------------- calculations
@contextmanager
def _progress(disable: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr (none when ``disable``) for the ``with`` block; yields the recipes' ``progress``
    callback, which names the calculation under way and counts it."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="calc", disable=disable, file=sys.stderr, leave=False)

    def step(what: str) -> None:
        bar.set_description(what)
        bar.update(1)

    try:
        yield step
    finally:
        bar.close()


def cmd_bind(args: argparse.Namespace) -> None:
    import time

    from ligbind.protocols import load_protocol
    from ligbind.recipes import DryRunWritten, bind
    from ligbind.store import ResultStore

    protocol = load_protocol(args.protocol, args.set)
    verify_protocol = _verify_protocol(args)
    if args.dry_run and verify_protocol is None:
        from ligbind.calculators import backend_of

        if not backend_of(protocol).writes_inputs:
            raise LigbindError(
                f"--dry-run writes input files; the {protocol['backend']} backend has none: use it with a vasp protocol"
            )
        from ligbind.protocols import with_run_settings

        protocol = with_run_settings(protocol, dry_run=True)
    slab, entry = read_slab_for(args.slab, args.ligand, args.mode, protocol)
    common = dict(n_configs=args.configs, mode=args.mode, workdir=args.workdir, seed=args.seed)
    if args.dry_run and verify_protocol is None:
        try:
            bind(slab, args.ligand, protocol, store=None, **common)
        except DryRunWritten as written:
            dirs = [str(d) for d in written.args[0]]
            _print(
                {"dry_run": True, "directories": dirs},
                args.json,
                "dry run: wrote VASP inputs (INCAR, KPOINTS, POSCAR, POTCAR.spec) to\n  " + "\n  ".join(dirs),
            )
        return
    store = ResultStore(args.db)
    start = time.perf_counter()
    with _progress(args.json or args.quiet) as step:
        out = bind(
            slab,
            args.ligand,
            protocol,
            store=store,
            include_flagged=args.include_flagged,
            progress=step,
            **common,
        )
    verified = None
    if verify_protocol is not None:
        from ligbind.recipes import verify

        try:
            with _progress(args.json or args.quiet) as step:
                verified = verify(
                    slab,
                    out,
                    entry,
                    verify_protocol,
                    top_k=args.top_k,
                    reserve=args.reserve,
                    store=store,
                    workdir=args.workdir,
                    progress=step,
                )
        except DryRunWritten as written:
            dirs = [str(d) for d in written.args[0]]
            _print(
                {"dry_run": True, "screen": out.as_dict(), "directories": dirs},
                args.json,
                f"screen Eb = {out.eb} eV ({out.protocol}); dry run: wrote the verification inputs to\n  "
                + "\n  ".join(dirs),
            )
            return
    payload = {**out.as_dict(), "wall_time": round(time.perf_counter() - start, 2), "db": str(store.path)}
    if verified is not None:
        payload["verification"] = verified.as_dict()
    if args.json:
        _print(payload, True)
        return
    label = "" if out.is_dft else f"  [{ML_LABEL}]"
    lines = [
        f"{out.ligand} ({out.mode}) on {slab.get_chemical_formula()} ({out.termination}-terminated) "
        f"with {out.protocol}{label}"
    ]
    for c in out.configs:
        flags = ",".join(c["flags"]) or "ok"
        lines.append(
            f"  config {c['config']} ({c['motif']}): Eb = {c['eb']:+.3f} eV  {c['status']}, {c['n_steps']} steps, {flags}"
        )
    if out.eb is None:
        lines.append("  no usable configuration (all unconverged or flagged; --include-flagged to use them)")
    else:
        terms = f"E(complex) {out.e_complex:.4f} − E(ligand) {out.e_ligand:.4f} − E(slab) {out.e_slab:.4f}"
        if out.e_byproduct is not None:
            terms += f" + E(byproduct) {out.e_byproduct:.4f}"
        lines.append(f"Eb = {out.eb:+.3f} eV  (config {out.best_config}: {terms} eV)")
        if out.eb_cp is not None:
            lines.append(
                f"Eb_CP = {out.eb_cp:+.3f} eV  (config {out.cp_config}: Eb − BSSE {out.bsse:+.3f} eV, counterpoise)"
            )
    if verified is not None:
        fmt = lambda v: "n/a" if v is None else f"{v:+.3f} eV"  # noqa: E731
        bsse = "" if verified.bsse is None else f", counterpoise-corrected (BSSE {verified.bsse:+.3f} eV)"
        lines.append(
            f"verified with {verified.dft_protocol} (DFT, best {args.top_k}; configs "
            f"{', '.join(map(str, verified.verified_configs)) or 'none'}): Eb = {fmt(verified.eb_dft)}{bsse} "
            f"(screen {fmt(verified.eb_screen)}; DFT config {verified.dft_config}); "
            f"flags: {','.join(verified.flags) or 'none'}"
        )
    lines.append(f"{out.force_calls} force calls, {payload['wall_time']:.1f} s; results in {store.path}")
    _print(payload, False, "\n".join(lines))


def _verify_protocol(args: argparse.Namespace) -> dict | None:
    """The DFT protocol of ``--verify`` (checked before anything runs), with ``--dry-run`` applied to it."""
    if args.verify is None:
        return None
    from ligbind.analysis.verification import check_verification
    from ligbind.calculators import backend_of
    from ligbind.protocols import load_protocol, with_run_settings

    dft = load_protocol(args.verify)
    check_verification(dft, "--verify")
    if args.dry_run:
        if not backend_of(dft).writes_inputs:
            raise LigbindError(f"--dry-run writes input files; the {dft['backend']} backend has none")
        dft = with_run_settings(dft, dry_run=True)
    return dft


def _host_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """--slab, and the optional ligand whose best complex is the second host of a defect energy ``what``."""
    p.add_argument(
        "--slab", required=True, type=input_file("structure file"), help="PbX2-terminated slab file"
    )
    p.add_argument("--ligand", help=f"library name (adds {what} on its best complex and the difference)")
    p.add_argument("--mode", choices=MODES, help="the ligand's binding mode (default neutral)")
    p.add_argument(
        "--configs",
        type=int_in("number of configurations", 1, MAX_CONFIGS),
        help="ligand configurations (default 3)",
    )


def _host_inputs(args: argparse.Namespace) -> tuple[str, int, dict[str, Any], Any]:
    """(mode, configurations, protocol, slab) of a defect command: the ligand checked against the protocol, the
    slab read and refused unless PbX2-terminated."""
    from ligbind.protocols import load_protocol

    if args.ligand is None and (args.mode is not None or args.configs is not None):
        raise LigbindError("--mode and --configs choose the ligand's configurations: give --ligand too")
    mode, configs = args.mode or "neutral", args.configs or 3
    protocol = load_protocol(args.protocol, args.set)
    if args.ligand is not None:
        resolve_checked_ligand(args.ligand, mode, protocol)
    return mode, configs, protocol, read_slab(args.slab, pbx2=True)


def cmd_frenkel(args: argparse.Namespace) -> None:
    from ligbind.recipes import frenkel
    from ligbind.store import ResultStore

    mode, configs, protocol, slab = _host_inputs(args)  # Frenkel pairs need surface Pb (not an AX surface)
    store = ResultStore(args.db)
    with _progress(args.json) as step:
        out = frenkel(
            slab,
            protocol,
            ligand=args.ligand,
            mode=mode,
            n_configs=configs,
            max_pairs=args.pairs,
            host_refinements=args.host_refinements,
            store=store,
            workdir=args.workdir,
            progress=step,
        )
    fmt = lambda v: "n/a" if v is None else f"{v:+.3f} eV"  # noqa: E731
    lines = [f"E_F(bare) = {fmt(out.ef_bare)} (lowest of {len(out.pairs_bare)} pairs)"]
    for host, drop in (("bare", out.host_drop_bare), (args.ligand, out.host_drop_ligand)):
        if drop:  # E_F was taken against a host relaxed again from a pair below it
            lines.append(f"  ({host} host relaxed again from a pair below it: {drop:.3f} eV lower)")
    if args.ligand:
        lines.append(f"E_F({args.ligand}) = {fmt(out.ef_ligand)};  ΔE_F = {fmt(out.delta_ef)}")
    _print(out.as_dict(), args.json, "\n".join(lines))


def cmd_results(args: argparse.Namespace) -> None:
    from ligbind.analysis.tables import binding_table, write_tables
    from ligbind.store import ResultStore

    if args.campaign:
        if args.db is not None:
            raise LigbindError("give a campaign or --db, not both (a campaign names its own results store)")
        from ligbind.engine.campaign import campaign_results

        paths = campaign_results(args.campaign, outdir=args.output)
    else:
        from ligbind.io import check_database_file

        db = args.db or "ligbind.db"
        check_database_file(db, must_exist=True)  # the default, checked like a given one
        store = ResultStore.open_existing(db)  # reading never creates or changes a database
        paths = write_tables(store, args.output or "results")
        if not args.json:
            print(binding_table(store).to_string(index=False))
    _print({k: str(v) for k, v in paths.items()}, args.json, "\n".join(f"wrote {p}" for p in paths.values()))


def _add_calc_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--protocol",
        default=DEFAULT_PROTOCOL,
        type=protocol_name,
        help=f"protocol preset (default {DEFAULT_PROTOCOL}; see `ligbind protocols`)",
    )
    p.add_argument("--set", type=json_object, help="JSON overrides merged on the protocol")
    p.add_argument("--db", default="ligbind.db", type=output_db, help="results store (ase.db SQLite)")
    p.add_argument("--workdir", default="runs", type=output_dir, help="trajectories and calculator logs")
    p.add_argument("--json", action="store_true")


def register_calculation_commands(sub) -> None:
    p = sub.add_parser("bind", help="binding energy of one ligand (relax slab, ligand, configurations)")
    p.add_argument(
        "--slab", required=True, type=input_file("structure file"), help="PbI2-terminated slab file"
    )
    p.add_argument("--ligand", required=True, help="library name")
    p.add_argument(
        "--configs",
        type=int_in("number of configurations", 1, MAX_CONFIGS),
        default=3,
        help="configurations to relax",
    )
    p.add_argument("--mode", default="neutral", choices=MODES, help="neutral or exchange")
    p.add_argument("--seed", type=int_in("seed", 0, MAX_SEED), default=0)
    p.add_argument("--include-flagged", action="store_true", help="let flagged configurations count for Eb")
    p.add_argument("--dry-run", action="store_true", help="vasp: write input directories only")
    p.add_argument(
        "--verify",
        metavar="PROTOCOL",
        type=protocol_name,
        help="relax the best configurations again with this DFT protocol (e.g. gpaw-laptop); Eb from DFT terms",
    )
    p.add_argument(
        "--top-k",
        type=int_in("--top-k", 1, 10),
        default=2,
        help="configurations verified with DFT (default 2)",
    )
    p.add_argument(
        "--reserve",
        type=int_in("--reserve", 0, 5),
        default=1,
        help="further configurations verified only in place of top-k ones DFT leaves unusable (default 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_calc_options(p)
    p.set_defaults(func=cmd_bind)

    p = sub.add_parser("frenkel", help="iodine Frenkel pair energy, bare and with a ligand")
    _host_arguments(p, "E_F")
    p.add_argument(
        "--pairs",
        type=int_in("number of Frenkel pairs", 1, MAX_PAIRS),
        default=4,
        help="vacancy–interstitial pairs to relax",
    )
    p.add_argument(
        "--host-refinements",
        type=int_in("host refinement rounds", 0, 5),
        default=2,
        help="times the host is relaxed again from a pair that lies below it (default 2; 0: flag the pair)",
    )
    _add_calc_options(p)
    p.set_defaults(func=cmd_frenkel)

    p = sub.add_parser("results", help="write the binding-energy table (CSV, Markdown, PNG)")
    p.add_argument(
        "campaign", nargs="?", type=campaign_ref, help="campaign YAML or name (writes results/<campaign>/)"
    )
    p.add_argument("--db", type=input_db, help="results store to read (default ligbind.db)")
    p.add_argument(
        "-o", "--output", type=output_dir, help="output directory (default results/ or results/<campaign>/)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_results)


_EXTRA_COMMANDS.append(register_calculation_commands)


def _register_coverage_commands(sub) -> None:
    """``ligbind coverage`` and ``ligbind treat`` (defined in :mod:`ligbind.cli.coverage`)."""
    from ligbind.cli.coverage import register_coverage_commands

    register_coverage_commands(sub)


_EXTRA_COMMANDS.append(_register_coverage_commands)


def _register_defect_commands(sub) -> None:
    """``vacancy`` and ``barrier`` (ligbind/cli/defects.py)."""
    from ligbind.cli.defects import register_defect_commands

    register_defect_commands(sub)


_EXTRA_COMMANDS.append(_register_defect_commands)


# ----------------------------------------------------------------------------------------------- campaigns
def cmd_screen(args: argparse.Namespace) -> None:
    from ligbind.engine.fireworks import screen

    out = screen(args.campaign, launchpad_file=args.launchpad)
    where = "your MongoDB launchpad" if args.launchpad else f"the embedded store in {out['workdir']}"
    _print(
        out,
        args.json,
        f"campaign {out['campaign']}: added {out['added']} Firework(s) to {where} "
        f"({out['already_there']} already there); results store {out['store']}"
        + (
            "\nsettings changed since the last screen: "
            + "; ".join(out["protocol_changes"])
            + ". New Fireworks for the new settings (unchanged calculations are reused from the store); results"
            " of the old settings are kept under their own keys and not shown in the tables."
            if out["protocol_changes"]
            else ""
        )
        + (
            "\nrun-time settings changed: "
            + "; ".join(out["run_changes"])
            + " (the unfinished Fireworks run with"
            " them; nothing computed changes)"
            if out["run_changes"]
            else ""
        )
        + (
            f"\nanalyses to redo ({', '.join(out['rerun'])}): a plan screened in between rewrote their rows, or "
            "they were left without them"
            if out["rerun"]
            else ""
        )
        + (
            f"\nbarriers to refine further ({', '.join(out['refine'])}): stored before a refinement round they "
            "now get (a band with an intermediate minimum is split there); their stored bands are taken up "
            "again, and what depends on them (ΔEa, tables) runs after them"
            if out.get("refine")
            else ""
        ),
    )


def cmd_run(args: argparse.Namespace) -> None:
    from ligbind.engine.fireworks import run

    out = run(
        args.campaign,
        launchpad_file=args.launchpad,
        max_fireworks=args.max,
        progress=not args.json,
        workers=args.workers,
        retry_failed=args.retry_failed,
    )
    states = ", ".join(f"{k} {v}" for k, v in sorted(out["states"].items()))
    retried = f"retried {len(out['retried'])} failed: {', '.join(out['retried'])}; " if out["retried"] else ""
    _print(
        out,
        args.json,
        f"campaign {out['campaign']}: {retried}ran {out['ran']} Firework(s) with {out['workers']} "
        f"worker(s); now {states}" + _problems(out),
    )
    return UNFINISHED_WORK if out["failed"] or out["unconverged"] else 0


UNFINISHED_WORK = 3  # exit code of run/status when something failed or ended unconverged


def _problems(out: dict) -> str:
    """A warning line for failed and unconverged work (empty when there is none)."""
    if not (out.get("failed") or out.get("unconverged")):
        return ""
    return (
        f"\nwarning: {out.get('failed', 0)} failed, {out.get('unconverged', 0)} unconverged "
        "(`ligbind status` lists them; the tables mark them; `ligbind run --retry-failed` runs the failed "
        "ones again, each calculation resuming where it stopped)"
    )


def _duration(seconds: float) -> str:
    minutes = int(max(seconds, 0) // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _calculation_line(k: dict[str, Any]) -> str:
    """One line of `ligbind status` on a relaxation, band or counterpoise correction in progress (from its log)."""
    ago = _duration(time.time() - k["last_step"])
    if k["kind"] == "counterpoise":
        doing = f"; '{k['term']}' at SCF iteration {k['scf_iteration'] or 0}" if k["term"] else ""
        return f"    counterpoise {k['key']}: {k['terms_done']} of {k['terms']} terms done{doing}; last written {ago} ago"
    pace = f", {k['seconds_per_step']:.0f} s per step" if k["seconds_per_step"] is not None else ""
    target = f" (to {k['fmax_target']:g})" if k.get("fmax_target") is not None else ""
    return (
        f"    {k['kind']} {k['key']} ({k['optimizer']}): step {k['step']}, fmax {k['fmax']:.3f}{target} eV/Å, "
        f"E {k['energy']:.4f} eV{pace}; last step {ago} ago"
    )


def _time_left_line(t: dict[str, Any]) -> str:
    """`ligbind status`: the time left at the campaign's pace (:func:`ligbind.engine.fireworks.time_left`)."""
    parts = []
    if t["steps"]:
        side = f" over {t['workers']} workers" if t["workers"] > 1 else ""
        paces = ", ".join(f"{s['step']} {s['left']} × {_duration(s['pace'])}" for s in t["steps"])
        parts.append(f"about {_duration(t['seconds'])}{side} at this campaign's pace ({paces})")
    if t["untimed"]:
        untimed = ", ".join(f"{k} {n}" for k, n in t["untimed"].items())
        parts.append(f"not timed yet (no Firework of theirs finished): {untimed}")
    if t["overdue"]:
        late = ", ".join(f"{k} (for {_duration(s)})" for k, s in t["overdue"].items())
        parts.append(f"running longer than any finished one of its step, counted as nearly done: {late}")
    return "  left: " + "; ".join(parts)


def cmd_status(args: argparse.Namespace) -> None:
    from ligbind.engine.fireworks import status

    rows = status(args.campaign, launchpad_file=args.launchpad)
    lines = []
    for r in rows:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items())) or r.get("note", "empty")
        counts = f"; {r['failed']} failed, {r['unconverged']} unconverged" if "failed" in r else ""
        lines.append(f"{r['campaign']}: {states}{counts}")
        if r.get("time_left"):
            lines.append(_time_left_line(r["time_left"]))
        if r.get("running") is not None:
            lines.append(f"  a run is working on it ({r['worker']})")
            lines += [
                f"  RUNNING {f['firework']}: for {_duration(time.time() - f['since'])}" for f in r["running"]
            ]
            lines += [_calculation_line(k) for k in r.get("calculations", [])]
        lines += [f"  FIZZLED {f['firework']}: {f['error']}" for f in r["failures"]]
        if r["failures"]:
            lines.append(
                f"  (`ligbind run --retry-failed {r['campaign']}` runs them again once the cause is fixed)"
            )
    _print(rows, args.json, "\n".join(lines) or "no campaigns screened yet (ligbind screen CAMPAIGN.yaml)")
    return UNFINISHED_WORK if any(r.get("failed") or r.get("unconverged") for r in rows) else 0


def register_campaign_commands(sub) -> None:
    p = sub.add_parser("screen", help="turn a campaign YAML into FireWorks workflows on the LaunchPad")
    p.add_argument(
        "campaign", type=input_file("campaign file"), help="campaign YAML (e.g. workflows/demo.yaml)"
    )
    p.add_argument(
        "--launchpad",
        type=launchpad_file,
        help="my_launchpad.yaml of a MongoDB (HPC); default: embedded store",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("run", help="execute a campaign's ready Fireworks here, with a progress bar")
    p.add_argument("campaign", type=campaign_ref, help="campaign YAML or name")
    p.add_argument("--launchpad", type=launchpad_file, help="my_launchpad.yaml (default: embedded store)")
    p.add_argument("--max", type=int_in("--max", 1, 10**9), help="stop after this many Fireworks")
    p.add_argument(
        "--workers",
        type=int_in("number of workers", 1, 1024),
        help="calculations run in this many processes at once (default: one per core; 1 for VASP)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="run the failed (FIZZLED) Fireworks again, and what waits on them; calculations resume",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="per-campaign Firework counts by state, and failures")
    p.add_argument(
        "campaign", nargs="?", type=campaign_ref, help="campaign YAML or name (default: all in runs/)"
    )
    p.add_argument("--launchpad", type=launchpad_file, help="my_launchpad.yaml (default: embedded store)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


_EXTRA_COMMANDS.append(register_campaign_commands)


def _register_passivation(sub) -> None:  # `ligbind passivate` (ligbind/cli/passivation.py)
    from ligbind.cli.passivation import register_passivation_commands

    register_passivation_commands(sub)


_EXTRA_COMMANDS.append(_register_passivation)


def _register_complex_commands(sub) -> None:
    """Ion–ligand complexes (``ligbind complex-ion``), defined in their own module (imported when used)."""
    from ligbind.cli.complexes import register_complex_commands

    register_complex_commands(sub)


_EXTRA_COMMANDS.append(_register_complex_commands)


def _stdout_closed() -> bool:
    """True when stdout is a pipe whose reader went away (``ligbind ligands | head``)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except Exception:
        return True


@contextmanager
def _one_line_warnings(debug: bool):
    """Python warnings as ``ligbind: warning: ...`` lines (the usual two-line form with --debug)."""
    with warnings.catch_warnings():
        if not debug:  # library deprecation notices are for developers, not for ligbind's users
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.filterwarnings("ignore", category=category)
            warnings.showwarning = lambda message, *_a, **_k: _warn(" ".join(str(message).split()))
        yield


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    0 ok, 2 bad input, 3 the campaign has failed or unconverged work (``run``, ``status``), 1 a bug,
    130 interrupted.
    """
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        with _one_line_warnings(debug):
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as exc:  # argparse: --help (0) or a one-line error (2)
                return exc.code if isinstance(exc.code, int) else 0
            code = args.func(args)
            sys.stdout.flush()
            if code:
                return int(code)
    except LigbindError as exc:
        if debug:
            traceback.print_exc()
        print(f"ligbind: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ligbind: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            return _bug(debug)
        # the reader of our output went away: stop quietly, like any Unix tool (no flush error at exit)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception:
        return _bug(debug)
    return 0


def _bug(debug: bool) -> int:
    exc = sys.exc_info()[1]
    if debug:
        traceback.print_exc()
    text = " ".join(str(exc).split())
    print(f"ligbind: internal error: {type(exc).__name__}{': ' + text if text else ''}", file=sys.stderr)
    print(BUG_NOTE, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
