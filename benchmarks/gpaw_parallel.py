"""Parallel GPAW on 2 cores (issue 10): serial vs. 2 MPI ranks vs. threaded BLAS, and campaign throughput.

The structure is what ligbind computes: the 2x2 three-layer CsPbI3 slab (tetragonal, 12 Å vacuum, bottom layer
fixed) with methylamine placed by ligbind, and the calculator is ligbind's own
``gpaw_calculator(load_protocol("gpaw-laptop"), ...)`` (LCAO dzp, h 0.2, PBE, Fermi-Dirac 0.05, Γ, its mixer,
symmetry off, dipole layer). D3 is left out: it costs milliseconds and does not depend on the GPAW build.

For every mode it times, in a fresh process (each mode is a child process started by this script):

- a single point (energy + forces, GPAW's initialisation included), and
- one BFGS relaxation step: ASE's BFGS moves the atoms by its first step and the second energy + forces
  evaluation, which starts from the previous wavefunctions and density, is timed.

Modes: ``serial`` (1 process, OMP/OPENBLAS threads 1), ``mpi2`` (``mpiexec -n 2``, GPAW's default split, and
variants with ``parallel={...}``), ``blas2`` (1 process, OPENBLAS_NUM_THREADS=2). Then the campaign question: two
serial calculations side by side (both started at once) vs. one 2-rank job at a time, as SCF evaluations per hour.

    python benchmarks/gpaw_parallel.py                        # dzp, as gpaw-laptop (~10 min)
    python benchmarks/gpaw_parallel.py --basis 'sz(dzp)'      # quick check of the script
    python benchmarks/gpaw_parallel.py --out benchmarks/results/gpaw_parallel.txt

Running as root, OpenMPI's mpiexec needs OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1: the
script sets them for its own mpiexec children.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]

# a variant key: the child decomposes as ligbind's MPI jobs do, not by parallel={...}
IN_PLANE = "ligbind-in-plane"
# GPAW parallel={...} variants tried with 2 ranks (LCAO, Γ, no spin: only domains and bands can be split).
# GPAW 26 runs LCAO in its new code (gpaw.new): the LCAO matrix is distributed over the band communicator and
# diagonalised with ScaLAPACK there; over domains only, rank 0 diagonalises alone (sl_* keys are not read).
MPI_VARIANTS: dict[str, dict | None] = {
    "mpi2": None,  # GPAW's default: domain decomposition over the 2 ranks
    "mpi2-band": {"domain": 1, "band": 2},  # bands: LCAO matrices distributed, ScaLAPACK diagonalisation
    "mpi2-sl": {"domain": 2, "sl_auto": True},  # asks for ScaLAPACK with domains
    # GPAW cuts a slab's tall cell along z (and its new code reads no shape from parallel['domain']); ligbind's
    # MPI jobs cut it across the surface (calculators.gpaw.split_slab_grids_in_plane): what ligbind runs
    "mpi2-inplane": {IN_PLANE: True},
}

MAX_FOREIGN = 0.2  # a timing during which other processes used more cores than this is repeated (--retries)

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --------------------------------------------------------------------------------------------- child process
def child(args: argparse.Namespace) -> None:
    """Single point + one BFGS step of the structure in ``args.structure``; JSON written by rank 0."""
    import gpaw  # noqa: F401  (first: it initialises MPI, so that ase.parallel.world sees the 2 ranks)
    from ase.io import read
    from ase.optimize import BFGS
    from ase.parallel import world
    from gpaw.mpi import world as gpaw_world

    if world.size != args.ranks or gpaw_world.size != args.ranks:
        raise SystemExit(f"expected {args.ranks} MPI ranks: ASE sees {world.size}, GPAW {gpaw_world.size}")
    from ligbind.calculators.gpaw import gpaw_calculator, prepare_atoms  # noqa: F401 (prepare_atoms: hashed)
    from ligbind.protocols import load_protocol

    protocol = load_protocol("gpaw-laptop", {"gpaw": {"basis": args.basis}})
    atoms = read(
        args.structure
    )  # already through prepare_atoms (in the parent: every mode gets the same atoms)
    source = inspect.getsource(gpaw_calculator) + inspect.getsource(prepare_atoms)
    workdir = Path(args.workdir)
    calc = gpaw_calculator(protocol, atoms, workdir, args.label)
    parallel = json.loads(args.parallel) if args.parallel else None
    if parallel and parallel.pop(IN_PLANE, False):
        from ligbind.calculators.gpaw import split_slab_grids_in_plane

        split_slab_grids_in_plane(atoms)
    if parallel:
        calc.params.parallel = parallel  # read when the first calculation builds the DFT object
    atoms.calc = calc

    world.barrier()
    t0 = time.perf_counter()
    e0 = atoms.get_potential_energy()
    f0 = atoms.get_forces()
    t_sp = time.perf_counter() - t0
    niter0 = calc.get_number_of_iterations()
    timers0 = dict(calc.timer.times)

    opt = BFGS(atoms, logfile=None)
    opt.step(f0)  # moves the atoms by BFGS's first step (forces already known: no evaluation)
    world.barrier()
    t1 = time.perf_counter()
    e1 = atoms.get_potential_energy()
    atoms.get_forces()
    t_step = time.perf_counter() - t1
    niter1 = calc.get_number_of_iterations()

    # GPAW's own timers (rank 0): Init, SCF, Forces for the single point; Move, SCF, Forces for the step
    timers = {f"sp {k}": v for k, v in timers0.items() if k != "Total"}
    timers.update({f"step {k}": v - timers0.get(k, 0.0) for k, v in calc.timer.times.items() if k != "Total"})
    ibzwfs = calc.dft.ibzwfs
    wfs = next(iter(ibzwfs))
    out = {
        "label": args.label,
        "ranks": world.size,
        "parallel": parallel,
        "layout": {
            "domain": [int(n) for n in calc.dft.density.nt_sR.desc.parsize_c],
            "band": ibzwfs.band_comm.size,
            "kpt": ibzwfs.kpt_comm.size,
            "C_nM": type(wfs.C_nM.dist).__name__,
        },
        "natoms": len(atoms),
        "shape_C_nM": list(wfs.C_nM.shape),
        "threads": {v: os.environ.get(v) for v in THREAD_VARS},
        "calculator_source": hashlib.sha256(source.encode()).hexdigest()[:12],
        "gpaw_build": describe_build(),
        "t_sp": t_sp,
        "t_step": t_step,
        "e0": float(e0),
        "e1": float(e1),
        "niter0": int(niter0),
        "niter1": int(niter1),
        "fmax0": float(((f0**2).sum(1) ** 0.5).max()),
        "timers": timers,
    }
    if world.rank == 0:
        Path(args.result).write_text(json.dumps(out))


def describe_build() -> str:
    """Where the GPAW C extension comes from and what it was compiled with."""
    import _gpaw
    import gpaw.cgpaw as cgpaw

    flags = [name for name, ok in (("MPI", cgpaw.have_mpi), ("native BLAS", hasattr(cgpaw, "mmm"))) if ok]
    return f"{Path(_gpaw.__file__).parent}: " + (", ".join(flags) or "serial, numpy/scipy BLAS")


# -------------------------------------------------------------------------------------------- parent process
def build_structure(path: Path, basis: str) -> str:
    """ligbind's 2x2 three-layer CsPbI3 slab + methylamine (first configuration) as GPAW gets it, to ``path``.

    ``prepare_atoms`` runs here once (it does not import gpaw), so that every mode computes the same atoms even
    if ligbind's GPAW module is edited while the benchmark runs.
    """
    from ase.io import write

    from ligbind.builders.placement import place_ligand
    from ligbind.builders.slab import build_slab
    from ligbind.calculators.gpaw import prepare_atoms
    from ligbind.protocols import load_protocol

    slab = build_slab(material="CsPbI3", size=(2, 2), layers=3, vacuum=12.0, fix_layers=1)
    complex_ = place_ligand(slab, "methylamine", n_configs=1)[0]
    atoms = prepare_atoms(complex_, load_protocol("gpaw-laptop", {"gpaw": {"basis": basis}}))
    write(path, atoms, format="extxyz")
    return atoms.get_chemical_formula()


def cpu_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (/proc/stat), niced processes excluded."""
    with open("/proc/stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4] + fields[1]  # idle + iowait + nice (a nice-19 job barely competes)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_for_idle(max_wait: float, threshold: float = 0.15, quiet: int = 4) -> float:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` cores in ``quiet`` successive 5-s
    windows; return the last window's load.

    The machine has 2 cores and is shared: a timing taken while something else runs is meaningless.
    """
    start = time.monotonic()
    told = -math.inf
    calm = 0
    while True:
        b0, t0 = cpu_busy_seconds(), time.monotonic()
        time.sleep(5)
        load = (cpu_busy_seconds() - b0) / (time.monotonic() - t0)
        waited = time.monotonic() - start
        calm = calm + 1 if load < threshold else 0
        if calm >= quiet or waited > max_wait:
            if load >= threshold:
                print(f"  (machine still busy after {waited:.0f} s: {load:.2f} cores in use; timing anyway)")
            return load
        if waited - told >= 60:
            print(f"  (machine busy: {load:.2f} cores used by other processes; waiting)", flush=True)
            told = waited


def timed(func):
    """Run ``func()``; return its value, wall time and the foreign load (cores used by other processes)."""
    b0, c0, t0 = cpu_busy_seconds(), children_cpu_seconds(), time.perf_counter()
    value = func()
    wall = time.perf_counter() - t0
    foreign = (cpu_busy_seconds() - b0) - (children_cpu_seconds() - c0)
    return value, wall, max(foreign, 0.0) / wall


def env_for(threads: int, mpi: bool = False) -> dict[str, str]:
    """Environment of a child: BLAS threads; for mpiexec GPAW's MPI backend and OpenMPI's root permission.

    GPAW 26 started by plain ``python`` uses its "serial" backend (no MPI_Init at all) and refuses to run
    under an MPI launcher unless ``GPAW_MPI_BACKEND=cgpaw`` is set (or ``gpaw python`` is the interpreter).
    """
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(threads)
    # nothing of an MPI launcher around this process may leak into the children
    for k in list(env):
        if k.startswith(("OMPI_COMM_WORLD", "PMIX_", "PMI_", "OMPI_MCA_orte_ess", "OMPI_MCA_ess")):
            del env[k]
    env.pop("GPAW_MPI_BACKEND", None)
    if mpi:
        env["GPAW_MPI_BACKEND"] = "cgpaw"
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    return env


def child_cmd(args, label: str, workdir: Path, ranks: int, parallel: dict | None) -> tuple[list[str], Path]:
    result = workdir / f"{label}.json"
    cmd = [
        sys.executable, str(SCRIPT), "--child",
        "--structure", str(workdir / "complex.extxyz"),
        "--basis", args.basis,
        "--workdir", str(workdir / label),
        "--label", label,
        "--result", str(result),
        "--ranks", str(ranks),
    ]  # fmt: skip
    if parallel:
        cmd += ["--parallel", json.dumps(parallel)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec") or "mpiexec"
        cmd = [mpiexec, "-n", str(ranks), "--bind-to", "core"] + cmd
    return cmd, result


def run_mode(
    args,
    label: str,
    workdir: Path,
    ranks: int = 1,
    threads: int = 1,
    parallel=None,
    pythonpath: str | None = None,
) -> dict:
    cmd, result = child_cmd(args, label, workdir, ranks, parallel)
    env = env_for(threads, mpi=ranks > 1)
    if pythonpath:  # another GPAW build first on the path (--reference)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH")) if p)
    for attempt in range(1 + args.retries):
        idle = wait_for_idle(args.max_wait)
        result.unlink(missing_ok=True)
        proc, wall, foreign = timed(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True))
        if foreign < MAX_FOREIGN or proc.returncode != 0 or attempt == args.retries:
            break
        print(f"  {label}: other processes used {foreign:.2f} cores meanwhile: timing again", flush=True)
    if proc.returncode != 0 or not result.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        print(f"  {label}: FAILED (exit {proc.returncode}): " + " | ".join(tail), flush=True)
        return {"label": label, "failed": " | ".join(tail)}
    out = json.loads(result.read_text())
    out["wall"] = wall  # process wall time: interpreter + imports (+ mpiexec) + structure + both evaluations
    out["foreign"] = foreign  # cores used by other processes meanwhile (should be ~0)
    out["idle_before"] = idle
    print(
        f"  {label}: single point {out['t_sp']:.1f} s ({out['niter0']} SCF it.), step {out['t_step']:.1f} s "
        f"({out['niter1']} it.), E {out['e0']:.4f} eV, layout {out['layout']}, process {wall:.1f} s, "
        f"other processes {foreign:.2f} cores",
        flush=True,
    )
    return out


def run_side_by_side(args, workdir: Path) -> tuple[float, list[dict]]:
    """Two serial children started together (1 thread each); wall time until both are done."""

    def both() -> list[tuple[str, Path, subprocess.CompletedProcess]]:
        procs = []
        for i in (1, 2):
            label = f"pair{i}"
            cmd, result = child_cmd(args, label, workdir, 1, None)
            procs.append((label, result, subprocess.Popen(cmd, env=env_for(1), stdout=subprocess.PIPE,
                                                          stderr=subprocess.PIPE, text=True)))  # fmt: skip
        for _, _, p in procs:
            p.communicate()
        return procs

    for attempt in range(1 + args.retries):
        wait_for_idle(args.max_wait)
        procs, wall, foreign = timed(both)
        if foreign < MAX_FOREIGN or attempt == args.retries:
            break
        print(f"  pair: other processes used {foreign:.2f} cores meanwhile: timing again", flush=True)
    outs = []
    for label, result, p in procs:
        if p.returncode != 0 or not result.exists():
            raise SystemExit(f"{label} failed (exit {p.returncode})")
        outs.append(json.loads(result.read_text()))
    for o in outs:
        print(
            f"  {o['label']}: single point {o['t_sp']:.1f} s, step {o['t_step']:.1f} s, E {o['e0']:.4f} eV, "
            f"other processes {foreign:.2f} cores",
            flush=True,
        )
    return wall, outs, foreign


def gpaw_info() -> list[str]:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("gpaw")), "info"], env=env_for(1), capture_output=True, text=True
    )
    keep = ("gpaw ", "python", "numpy", "scipy", "ase ", "_gpaw", "MPI enabled", "OpenMP", "GPU",
            "MAGMA", "scalapack", "Elpa", "FFTW", "libvdwxc", "libxc", "BLAS", "PAW-datasets")  # fmt: skip
    return [
        line.rstrip() for line in proc.stdout.splitlines() if any(k.lower() in line.lower() for k in keep)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--basis", default="dzp", help="LCAO basis (gpaw-laptop: dzp; quick check: 'sz(dzp)')"
    )
    parser.add_argument("--variants", default=",".join(MPI_VARIANTS), help="2-rank parallel={...} variants")
    parser.add_argument(
        "--no-pair", action="store_true", help="skip the two-serial-side-by-side throughput run"
    )
    parser.add_argument("--no-blas2", action="store_true", help="skip the threaded-BLAS serial mode")
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=300,
        help="seconds to wait for an idle machine before each timing (default 300)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="repeat a timing disturbed by other processes up to this many times (default 2)",
    )
    parser.add_argument("--keep", help="work directory to keep (default: a temporary one, removed)")
    parser.add_argument(
        "--reference",
        metavar="DIR",
        help="also time serially the GPAW build installed in DIR (pip install --target DIR), "
        "e.g. the serial build without MPI and native BLAS the MPI build replaced",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--structure", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--parallel", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    unknown = [v for v in args.variants.split(",") if v and v not in MPI_VARIANTS]
    if unknown:
        parser.error(f"unknown --variants {', '.join(unknown)} (known: {', '.join(MPI_VARIANTS)})")
    if args.reference and not (Path(args.reference) / "gpaw" / "__init__.py").is_file():
        parser.error(f"--reference {args.reference}: no GPAW installed there (pip install --target DIR gpaw)")

    # The parent never imports gpaw: with an MPI build that would start an MPI singleton in this process.
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="gpaw_parallel_"))
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    formula = build_structure(workdir / "complex.extxyz", args.basis)
    lines: list[str] = []
    info = gpaw_info()
    print("\n".join(info), flush=True)
    print(f"nproc {os.cpu_count()}; structure {formula}; basis {args.basis}; work dir {workdir}", flush=True)

    runs: list[dict] = [run_mode(args, "serial", workdir)]
    if args.reference:
        runs.append(run_mode(args, "serial-ref", workdir, pythonpath=args.reference))
    for name in [v for v in args.variants.split(",") if v]:
        runs.append(run_mode(args, name, workdir, ranks=2, parallel=MPI_VARIANTS[name]))
    if not args.no_blas2:
        runs.append(run_mode(args, "blas2", workdir, threads=2))
    pair = None if args.no_pair else run_side_by_side(args, workdir)

    ser = runs[0]
    ok = [r for r in runs if "failed" not in r]
    lines += [f"# GPAW on {os.cpu_count()} cores: {formula} (ligbind 2x2 3-layer CsPbI3 + methylamine), "
              f"gpaw-laptop, basis {args.basis}", ""]  # fmt: skip
    lines += ["gpaw info:"] + ["  " + s.strip() for s in info] + [""]
    head = (f"{'mode':<10} {'ranks':>5} {'BLAS thr':>8} {'layout (domain / band, C_nM dist)':<36} "
            f"{'single point s':>14} {'step s':>7} {'SCF it':>7} {'E (eV)':>12} {'|dE| meV':>9} "
            f"{'speedup sp':>10} {'speedup step':>12} {'process s':>9} {'other load':>10}")  # fmt: skip
    lines += [head, "-" * len(head)]
    for r in runs:
        if "failed" in r:
            lines.append(f"{r['label']:<10} FAILED: {r['failed'][:150]}")
            continue
        lay = r["layout"]
        layout = f"{'x'.join(map(str, lay['domain']))} / {lay['band']}, {lay['C_nM']}"
        de = max(abs(r["e0"] - ser["e0"]), abs(r["e1"] - ser["e1"])) * 1000
        thr = r["threads"]["OPENBLAS_NUM_THREADS"]
        lines.append(
            f"{r['label']:<10} {r['ranks']:>5} {thr:>8} {layout:<36} {r['t_sp']:>14.1f} {r['t_step']:>7.1f} "
            f"{r['niter0']:>3}+{r['niter1']:<3} {r['e0']:>12.4f} {de:>9.3f} "
            f"{ser['t_sp'] / r['t_sp']:>9.2f}x {ser['t_step'] / r['t_step']:>11.2f}x {r['wall']:>9.1f} "
            f"{r['foreign']:>10.2f}"
        )
    lines += ["", "|dE|: largest of the single-point and step energy differences to serial; speedup: serial time / "
              "mode time; process s: whole child process (interpreter, imports, mpiexec, both evaluations); other load: "
              "cores used by other processes during the mode (~0 for a clean timing)."]  # fmt: skip
    sources = {r["calculator_source"] for r in ok}
    if len(sources) > 1:
        lines.append(
            f"WARNING: ligbind's gpaw_calculator/prepare_atoms changed during the benchmark: {sources}"
        )
    best = min((r for r in ok if r["ranks"] > 1), key=lambda r: r["t_sp"] + r["t_step"], default=None)
    if best is not None:
        target = min(ser["t_sp"] / best["t_sp"], ser["t_step"] / best["t_step"])
        lines += [
            f"best 2-rank setting: {best['label']} parallel={best['parallel'] or 'default'} "
            f"(layout {best['layout']}); speedup single point {ser['t_sp'] / best['t_sp']:.2f}x, "
            f"step {ser['t_step'] / best['t_step']:.2f}x: target 1.7x {'MET' if target >= 1.7 else 'NOT met'}",
        ]
        ref = next((r for r in ok if r["label"] == "serial-ref"), None)
        if ref is not None:  # issue 10's baseline: the serial build (no MPI, no FFTW) the MPI build replaced
            target = min(ref["t_sp"] / best["t_sp"], ref["t_step"] / best["t_step"])
            lines.append(
                f"against the reference serial build ({ref['gpaw_build']}): single point "
                f"{ref['t_sp'] / best['t_sp']:.2f}x, step {ref['t_step'] / best['t_step']:.2f}x: target 1.7x "
                f"{'MET' if target >= 1.7 else 'NOT met'}; the reference's energy differs from serial by "
                f"{max(abs(ref['e0'] - ser['e0']), abs(ref['e1'] - ser['e1'])) * 1000:.3f} meV"
            )
    lines += ["", "GPAW timers, seconds (rank 0, single point + step):"]
    cats = sorted({k for r in ok for k in r["timers"]}, key=lambda k: -ser["timers"].get(k, 0))
    lines.append(f"  {'category':<28}" + "".join(f"{r['label']:>10}" for r in ok))
    for k in cats:
        lines.append(f"  {k:<28}" + "".join(f"{r['timers'].get(k, 0):>10.1f}" for r in ok))

    if pair is not None:
        wall, outs, foreign = pair
        evals_pair = 2 * 3600 / max(o["t_sp"] for o in outs)
        steps_pair = 2 * 3600 / max(o["t_step"] for o in outs)
        lines += ["", "Campaign throughput on 2 cores (SCF evaluations per hour; one evaluation = energy + forces):",
                  f"  two serial side by side: single points {outs[0]['t_sp']:.1f} s and {outs[1]['t_sp']:.1f} s, "
                  f"steps {outs[0]['t_step']:.1f} s and {outs[1]['t_step']:.1f} s (both processes {wall:.1f} s; "
                  f"other processes {foreign:.2f} cores)"]  # fmt: skip
        rows = [("two serial side by side", evals_pair, steps_pair)]
        for r in [ser] + ([best] if best else []):
            rows.append((f"one {r['label']} at a time", 3600 / r["t_sp"], 3600 / r["t_step"]))
        lines.append(f"  {'how':<28} {'single points/h':>16} {'relaxation steps/h':>19}")
        for how, a, b in rows:
            lines.append(f"  {how:<28} {a:>16.0f} {b:>19.0f}")
        if best:
            lines.append(
                f"  → {'one 2-rank job at a time' if 3600 / best['t_step'] > steps_pair else 'two serial side by side'}"
                " gives more relaxation steps (hence Eb) per hour"
            )
    lines += ["", f"benchmark wall time {time.perf_counter() - start:.0f} s"]
    report = "\n".join(lines)
    print("\n" + report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report + "\n")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
