"""The ``ligbind`` command: build, ligands, protocols, bind, frenkel, screen, run, status, results.

Every subcommand has ``--help``; those a script would parse have ``--json``. Bad input ends with exit
code 2 and one line ``ligbind: error: ...`` on stderr, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


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
    from ligbind.io import structure_format, write_structure

    structure_format(args.output)
    slab = build_slab(
        material=args.material,
        phase=args.phase,
        size=args.size,
        layers=args.layers,
        vacuum=args.vacuum,
        fix_layers=args.fix_layers,
        br_fraction=args.br_fraction,
        seed=args.seed,
    )
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
    from ligbind.builders.ligands import build_ligand
    from ligbind.io import structure_format, write_structure

    if (args.name is None) == (args.smiles is None):
        from ligbind.errors import LigbindError

        raise LigbindError("give a library ligand NAME or --smiles, not both or neither")
    structure_format(args.output)
    mol = build_ligand(name=args.name, smiles=args.smiles, seed=args.seed)
    path = write_structure(args.output, mol)
    s = _atoms_summary(mol, path)
    _print(s, args.json, f"wrote {path}: {mol.info['name']} {s['formula']}, charge {mol.info['charge']:+d}")


def cmd_build_complex(args: argparse.Namespace) -> None:
    from ligbind.builders.placement import anchor_sites, place_ligand
    from ligbind.io import read_structure, write_structure

    slab = read_structure(args.slab)
    complexes = place_ligand(slab, args.ligand, n_configs=args.configs, mode=args.mode, seed=args.seed)
    outdir = Path(args.output)
    written = []
    for atoms in complexes:
        path = write_structure(outdir / f"config_{atoms.info['config']:02d}.extxyz", atoms)
        written.append({**_atoms_summary(atoms, path), "anchor_sites": anchor_sites(atoms)})
    lines = [f"wrote {len(written)} configuration(s) of {args.ligand} ({args.mode}) to {outdir}/"]
    for w in written:
        sites = ", ".join(
            f"{s['element']}{s['anchor']}→Pb{s['pb']} {s['distance']:.2f} Å" for s in w["anchor_sites"]
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
        rows = {n: load_protocol(n).get("description", "") for n in available_protocols()}
        _print(rows, args.json, "\n".join(f"{n:<12}  {d}" for n, d in rows.items()))
        return
    protocol = load_protocol(args.name, _overrides(args.set))
    _print(protocol, args.json, yaml.safe_dump(protocol, sort_keys=False).rstrip())


# ------------------------------------------------------------------------------------------------ parser
class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (``ligbind: error: ...``), exit code 2, like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"ligbind: error: {self.prog.removeprefix('ligbind ')}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="ligbind", description="Ligand binding and defect energies on lead-halide perovskite surfaces."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser("build", help="build slabs, ligands and ligand@slab complexes")
    bsub = build.add_subparsers(dest="what", required=True, metavar="WHAT")

    p = bsub.add_parser("slab", help="a PbI2-terminated (001) slab")
    p.add_argument("--material", default="CsPbI3", help="CsPbI3 or MAPbI3 (default CsPbI3)")
    p.add_argument("--phase", default=None, help="cubic or tetragonal (default: tetragonal, tilted)")
    p.add_argument("--size", default="2x2", help="in-plane pseudo-cubic repeats, e.g. 2x2")
    p.add_argument("--layers", type=int, default=3, help="number of PbI2/AI layers (odd: PbI2 on both faces)")
    p.add_argument("--vacuum", type=float, default=12.0, help="vacuum between periodic images along z (Å)")
    p.add_argument("--fix-layers", type=int, default=1, help="bottom layers held fixed")
    p.add_argument("--br-fraction", type=float, default=0.0, help="fraction of X sites substituted by Br")
    p.add_argument("--seed", type=int, default=0, help="seed for the Br substitution")
    p.add_argument("-o", "--output", required=True, help="output file (.extxyz, POSCAR, .vasp, .cif)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_build_slab)

    p = bsub.add_parser("ligand", help="3D coordinates of a ligand (RDKit conformers)")
    p.add_argument("name", nargs="?", help="library name (see `ligbind ligands`)")
    p.add_argument("--smiles", help="a SMILES string instead of a library name")
    p.add_argument("--seed", type=int, default=42, help="RDKit embedding seed")
    p.add_argument("-o", "--output", required=True, help="output file (.extxyz, .xyz, ...)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build_ligand)

    p = bsub.add_parser("complex", help="candidate ligand@slab configurations")
    p.add_argument("--slab", required=True, help="PbI2-terminated slab file")
    p.add_argument("--ligand", required=True, help="library name")
    p.add_argument("--configs", type=int, default=3, help="number of distinct configurations")
    p.add_argument(
        "--mode", default="neutral", help="neutral (whole unit) or exchange (anion replaces a surface I)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build_complex)

    p = sub.add_parser("ligands", help="list the ligand library (ligbind/data/ligands.yaml)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ligands)

    p = sub.add_parser("protocols", help="list protocols, or print one fully resolved")
    p.add_argument("name", nargs="?")
    p.add_argument("--set", help='JSON overrides merged on top, e.g. \'{"relax": {"fmax": 0.1}}\'')
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_protocols)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


_EXTRA_COMMANDS: list = []


# ---------------------------------------------------------------------------------------- calculations
def _progress_bar(disable: bool):
    from tqdm import tqdm

    bar = tqdm(total=None, unit="calc", disable=disable, file=sys.stderr, leave=False)

    def step(what: str) -> None:
        bar.set_description(what)
        bar.update(1)

    return bar, step


def _overrides(text: str | None) -> dict | None:
    from ligbind.errors import LigbindError

    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LigbindError(f"--set is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise LigbindError("--set must be a JSON object")
    return value


def cmd_bind(args: argparse.Namespace) -> None:
    import time

    from ligbind.io import read_structure
    from ligbind.protocols import load_protocol
    from ligbind.recipes import DryRunWritten, bind
    from ligbind.store import ResultStore

    protocol = load_protocol(args.protocol, _overrides(args.set))
    if args.dry_run:
        protocol["dry_run"] = True
    slab = read_structure(args.slab)
    if args.dry_run:
        try:
            bind(slab, args.ligand, protocol, n_configs=args.configs, mode=args.mode, store=None,
                 workdir=args.workdir, seed=args.seed)
        except DryRunWritten as written:
            dirs = [str(d) for d in written.args[0]]
            _print({"dry_run": True, "directories": dirs}, args.json,
                   "dry run: wrote VASP inputs (INCAR, KPOINTS, POSCAR, POTCAR.spec) to\n  " + "\n  ".join(dirs))
        return
    store = ResultStore(args.db)
    start = time.perf_counter()
    bar, step = _progress_bar(args.json or args.quiet)
    try:
        out = bind(
            slab,
            args.ligand,
            protocol,
            n_configs=args.configs,
            mode=args.mode,
            store=store,
            workdir=args.workdir,
            include_flagged=args.include_flagged,
            seed=args.seed,
            progress=step,
        )
    finally:
        bar.close()
    payload = {**out.as_dict(), "wall_time": round(time.perf_counter() - start, 2), "db": str(store.path)}
    if args.json:
        _print(payload, True)
        return
    label = "" if out.is_dft else "  [ML potential, not DFT]"
    lines = [f"{out.ligand} ({out.mode}) on {slab.get_chemical_formula()} with {out.protocol}{label}"]
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
    lines.append(f"{out.force_calls} force calls, {payload['wall_time']:.1f} s; results in {store.path}")
    _print(payload, False, "\n".join(lines))


def cmd_frenkel(args: argparse.Namespace) -> None:
    from ligbind.io import read_structure
    from ligbind.protocols import load_protocol
    from ligbind.recipes import frenkel
    from ligbind.store import ResultStore

    protocol = load_protocol(args.protocol, _overrides(args.set))
    slab = read_structure(args.slab)
    store = ResultStore(args.db)
    bar, step = _progress_bar(args.json)
    try:
        out = frenkel(
            slab,
            protocol,
            ligand=args.ligand,
            mode=args.mode,
            n_configs=args.configs,
            max_pairs=args.pairs,
            store=store,
            workdir=args.workdir,
            progress=step,
        )
    finally:
        bar.close()
    fmt = lambda v: "n/a" if v is None else f"{v:+.3f} eV"  # noqa: E731
    lines = [f"E_F(bare) = {fmt(out.ef_bare)} (lowest of {len(out.pairs_bare)} pairs)"]
    if args.ligand:
        lines.append(f"E_F({args.ligand}) = {fmt(out.ef_ligand)};  ΔE_F = {fmt(out.delta_ef)}")
    _print(out.as_dict(), args.json, "\n".join(lines))


def cmd_results(args: argparse.Namespace) -> None:
    from ligbind.analysis.tables import binding_table, write_tables
    from ligbind.store import ResultStore

    if args.campaign:
        from ligbind.engine.campaign import campaign_results

        paths = campaign_results(args.campaign, outdir=args.output)
    else:
        if not Path(args.db).exists():
            from ligbind.errors import LigbindError

            raise LigbindError(f"results database not found: {args.db}")
        store = ResultStore(args.db)
        paths = write_tables(store, args.output or "results")
        if not args.json:
            print(binding_table(store).to_string(index=False))
    _print({k: str(v) for k, v in paths.items()}, args.json, "\n".join(f"wrote {p}" for p in paths.values()))


def _add_calc_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default="ml-screen", help="protocol preset (see `ligbind protocols`)")
    p.add_argument("--set", help="JSON overrides merged on the protocol")
    p.add_argument("--db", default="ligbind.db", help="results store (ase.db SQLite)")
    p.add_argument("--workdir", default="runs", help="trajectories and calculator logs")
    p.add_argument("--json", action="store_true")


def register_calculation_commands(sub) -> None:
    p = sub.add_parser("bind", help="binding energy of one ligand (relax slab, ligand, configurations)")
    p.add_argument("--slab", required=True, help="PbI2-terminated slab file")
    p.add_argument("--ligand", required=True, help="library name")
    p.add_argument("--configs", type=int, default=3, help="configurations to relax")
    p.add_argument("--mode", default="neutral", help="neutral or exchange")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--include-flagged", action="store_true", help="let flagged configurations count for Eb")
    p.add_argument("--dry-run", action="store_true", help="vasp: write input directories only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_calc_options(p)
    p.set_defaults(func=cmd_bind)

    p = sub.add_parser("frenkel", help="iodine Frenkel pair energy, bare and with a ligand")
    p.add_argument("--slab", required=True)
    p.add_argument("--ligand", help="library name (adds E_F with the ligand and ΔE_F)")
    p.add_argument("--mode", default="neutral")
    p.add_argument("--configs", type=int, default=3)
    p.add_argument("--pairs", type=int, default=4, help="vacancy–interstitial pairs to relax")
    _add_calc_options(p)
    p.set_defaults(func=cmd_frenkel)

    p = sub.add_parser("results", help="write the binding-energy table (CSV, Markdown, PNG)")
    p.add_argument("campaign", nargs="?", help="campaign YAML or name (writes results/<campaign>/)")
    p.add_argument("--db", default="ligbind.db")
    p.add_argument("-o", "--output", help="output directory (default results/ or results/<campaign>/)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_results)


_EXTRA_COMMANDS.append(register_calculation_commands)

# ----------------------------------------------------------------------------------------------- campaigns
def cmd_screen(args: argparse.Namespace) -> None:
    from ligbind.engine.fireworks import screen

    out = screen(args.campaign, launchpad_file=args.launchpad)
    where = "your MongoDB launchpad" if args.launchpad else f"the embedded store in {out['workdir']}"
    _print(out, args.json, f"campaign {out['campaign']}: added {out['added']} Firework(s) to {where} "
           f"({out['already_there']} already there); results store {out['store']}")


def cmd_run(args: argparse.Namespace) -> None:
    from ligbind.engine.fireworks import run

    out = run(
        args.campaign,
        launchpad_file=args.launchpad,
        max_fireworks=args.max,
        progress=not args.json,
        workers=args.workers,
    )
    states = ", ".join(f"{k} {v}" for k, v in sorted(out["states"].items()))
    _print(out, args.json, f"campaign {out['campaign']}: ran {out['ran']} Firework(s) with {out['workers']} "
           f"worker(s); now {states}")


def cmd_status(args: argparse.Namespace) -> None:
    from ligbind.engine.fireworks import status

    rows = status(args.campaign, launchpad_file=args.launchpad)
    lines = []
    for r in rows:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items())) or r.get("note", "empty")
        lines.append(f"{r['campaign']}: {states}")
        lines += [f"  FIZZLED {f['firework']}: {f['error']}" for f in r["failures"]]
    _print(rows, args.json, "\n".join(lines) or "no campaigns screened yet (ligbind screen CAMPAIGN.yaml)")


def register_campaign_commands(sub) -> None:
    p = sub.add_parser("screen", help="turn a campaign YAML into FireWorks workflows on the LaunchPad")
    p.add_argument("campaign", help="campaign YAML (e.g. workflows/demo.yaml)")
    p.add_argument("--launchpad", help="my_launchpad.yaml of a MongoDB (HPC); default: embedded store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("run", help="execute a campaign's ready Fireworks here, with a progress bar")
    p.add_argument("campaign", help="campaign YAML or name")
    p.add_argument("--launchpad", help="my_launchpad.yaml (default: embedded store)")
    p.add_argument("--max", type=int, help="stop after this many Fireworks")
    p.add_argument(
        "--workers",
        type=int,
        help="calculations run in this many processes at once (default: one per core; 1 for VASP)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="per-campaign Firework counts by state, and failures")
    p.add_argument("campaign", nargs="?", help="campaign YAML or name (default: all in runs/)")
    p.add_argument("--launchpad", help="my_launchpad.yaml (default: embedded store)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


_EXTRA_COMMANDS.append(register_campaign_commands)


def main(argv: list[str] | None = None) -> int:
    from ligbind.errors import LigbindError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except LigbindError as exc:
        print(f"ligbind: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ligbind: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
