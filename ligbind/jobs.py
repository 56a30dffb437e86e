"""Calculations as small typed functions: :func:`relax` and :func:`single_point` → :class:`Result`, and
:func:`counterpoise` → :class:`Counterpoise`.

Every finished calculation is committed to the results store at once and reused when its key comes back.
Relaxations write an ASE trajectory (and the optimizer's restart file) under ``workdir`` and continue from
them after a kill. A relaxation that hits its step limit is ``unconverged``, never ``converged``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase.optimize
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import Trajectory

from ligbind.calculators import ORIGIN_SHIFT, backend_of, make_calculator
from ligbind.errors import LigbindError, NonFiniteEnergyError, UnconvergedError
from ligbind.io import drop_cut_restart, read_saved_number, write_text_atomic
from ligbind.protocols import load_protocol
from ligbind.store import ResultStore, atoms_from_row, calculation_key


@dataclass
class Result:
    """Outcome of one calculation."""

    key: str
    kind: str
    atoms: Atoms
    energy: float
    fmax: float
    converged: bool
    n_steps: int
    force_calls: int
    protocol: dict[str, Any]
    reused: bool = False
    wall_time: float = 0.0
    anomalies: list[str] = field(default_factory=list)
    prerelax: dict[str, Any] | None = None
    hessian: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return "converged" if self.converged else "unconverged"

    def require_converged(self, what: str = "relaxation") -> Result:
        """Raise :class:`UnconvergedError` unless converged."""
        if not self.converged:
            raise UnconvergedError(
                f"{what} did not converge in {self.n_steps} steps (fmax {self.fmax:.3f} eV/Å; key {self.key})"
            )
        return self


def free_fmax(atoms: Atoms, forces: np.ndarray) -> float:
    """Largest force on atoms not held by FixAtoms."""
    free = _free_indices(atoms)
    return float(np.linalg.norm(forces[free], axis=1).max()) if len(free) else 0.0


def _free_indices(atoms: Atoms) -> np.ndarray:
    """Indices of the atoms not held by FixAtoms."""
    fixed = np.zeros(len(atoms), bool)
    for c in atoms.constraints:
        if isinstance(c, FixAtoms):
            fixed[c.index] = True
    return np.flatnonzero(~fixed)


def _jsonable_info(info: dict[str, Any]) -> dict[str, Any]:
    """The JSON-storable part of ``atoms.info`` (numpy scalars, e.g. from extxyz, become Python numbers)."""
    out = {}
    for k, v in info.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (str, int, float, bool, list, dict)):
            out[k] = v
    return out


def result_from_row(row, protocol: dict[str, Any]) -> Result:
    """A stored row as a :class:`Result` (``reused`` True, no force calls)."""
    atoms = atoms_from_row(row)
    return Result(
        key=row.key,
        kind=row.kind,
        atoms=atoms,
        energy=float(row.energy),
        fmax=float(row.get("fmax_free", 0.0)),
        converged=row.status == "converged",
        n_steps=int(row.get("n_steps", 0)),
        force_calls=0,
        protocol=row.data.get("protocol", protocol),
        reused=True,
        anomalies=[a for a in str(row.get("anomalies", "")).split(",") if a and a != "none"],
        prerelax=row.data.get("prerelax"),
        hessian=row.data.get("hessian"),
    )


def _count_calls(calc) -> list[int]:
    """Count the calculator's force/energy evaluations (each ``calculate`` call).

    Each evaluation is also checked for NaN/inf at once, so that an optimizer never steps on (and a trajectory
    never records) non-finite forces.
    """
    counter = [0]
    original = calc.calculate

    def counted(*args, **kwargs):
        counter[0] += 1
        out = original(*args, **kwargs)
        _require_finite(calc)
        return out

    calc.calculate = counted
    return counter


def _require_finite(calc) -> None:
    energy = calc.results.get("energy")
    forces = calc.results.get("forces")
    if (energy is not None and not math.isfinite(float(energy))) or (
        forces is not None and not np.all(np.isfinite(forces))
    ):
        atoms = getattr(calc, "atoms", None)
        formula = atoms.get_chemical_formula() if atoms is not None else "?"
        raise NonFiniteEnergyError(f"non-finite energy or forces ({energy}) for {formula}")


def _checked_energy(atoms: Atoms) -> tuple[float, np.ndarray]:
    forces = atoms.get_forces()  # forces first: one evaluation yields both (energy first costs two)
    energy = float(atoms.get_potential_energy())
    if not math.isfinite(energy) or not np.all(np.isfinite(forces)):
        raise NonFiniteEnergyError(
            f"non-finite energy or forces ({energy}) for {atoms.get_chemical_formula()}"
        )
    return energy, forces


def _commit(store: ResultStore | None, result: Result, extra: dict[str, Any] | None = None) -> None:
    if store is None:
        return
    atoms = result.atoms
    store.put(
        atoms,
        result.key,
        data={
            "protocol": result.protocol,
            "info": _jsonable_info(atoms.info),
            "prerelax": result.prerelax,
            "hessian": result.hessian,
        },
        kind=result.kind,
        status=result.status,
        protocol=result.protocol.get("name"),
        backend=result.protocol.get("backend"),
        fmax_free=result.fmax,
        n_steps=result.n_steps,
        force_calls=result.force_calls,
        wall_time=round(result.wall_time, 3),
        label=atoms.info.get("label"),
        **(extra or {}),
    )


def _resolve(protocol: str | dict[str, Any]) -> dict[str, Any]:
    return load_protocol(protocol) if isinstance(protocol, str) else protocol


def single_point(
    atoms: Atoms,
    protocol: str | dict[str, Any],
    *,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
) -> Result:
    """Energy and forces of ``atoms`` with ``protocol`` (reused from ``store`` when the key exists)."""
    protocol = _resolve(protocol)
    key = calculation_key("single_point", atoms, protocol)
    if store is not None and (row := store.get(key)) is not None:
        return result_from_row(row, protocol)
    backend = backend_of(protocol)
    backend.check_input(atoms, protocol)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    work = backend.prepare(atoms, protocol)
    last_error: Exception | None = None
    for attempt in range(backend.scf_attempts(protocol)):
        work.calc = make_calculator(protocol, atoms=work, directory=workdir, label=key, attempt=attempt)
        counter = _count_calls(work.calc)
        try:
            energy, forces = _checked_energy(work)
            break
        except backend.scf_failures(protocol) as exc:
            last_error = exc
    else:
        raise UnconvergedError(
            f"SCF did not converge after {backend.scf_attempts(protocol)} mixer settings: {last_error}"
        )
    final = atoms.copy()
    final.calc = SinglePointCalculator(final, energy=energy, forces=forces)
    result = Result(
        key,
        "single_point",
        final,
        energy,
        free_fmax(atoms, forces),
        True,
        0,
        counter[0],
        protocol,
        wall_time=time.perf_counter() - start,
    )
    _commit(store, result)
    return result


@dataclass
class Counterpoise:
    """Basis-set superposition error of one relaxed complex (eV) and the energies it comes from."""

    key: str
    complex_key: str
    energies: dict[str, float]
    bsse: float
    protocol: str
    wall_time: float = 0.0
    reused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "bsse": self.bsse, "complex_key": self.complex_key}


def counterpoise(
    complex_: Result,
    protocol: str | dict[str, Any],
    *,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    charges: tuple[int, int] | None = None,
) -> Counterpoise:
    """Counterpoise correction of a relaxed complex (adsorbate: tags > 0; slab, or ion: tags 0) at its geometry.

    Four electronic single points (:func:`ligbind.calculators.gpaw.counterpoise_energies`), reused from
    ``store`` when the key exists; a killed run keeps the terms it finished. ``charges``: those of the
    adsorbate and of the rest (an ion–ligand complex: the ligand's and the ion's), which must add up to the
    complex's. Refused, before any work, for a protocol without an atom-centred basis, a charged complex without
    its fragments' charges, an exchange complex and a structure that is not adsorbate + slab.
    """
    from ligbind.analysis.energies import counterpoise_bsse

    protocol = _resolve(protocol)
    atoms = complex_.atoms.copy()
    total = int(atoms.info.get("charge", 0) or 0)
    key = calculation_key("counterpoise", atoms, protocol)
    if charges is not None:
        atoms.info["fragment_charges"] = [int(q) for q in charges]
        key += "-q{:+d}{:+d}".format(*charges)
    if store is not None and (row := store.get(key)) is not None:
        energies = row.data["energies"]
        return Counterpoise(
            key, complex_.key, energies, counterpoise_bsse(energies), protocol["name"], 0.0, True
        )
    backend = backend_of(protocol)
    label = atoms.info.get("label") or complex_.key
    if not backend.superposes_basis_sets(protocol):
        raise LigbindError(
            f"counterpoise: the {backend.name} backend ('{protocol['name']}') has no atom-centred basis, so no "
            "basis-set superposition error to correct"
        )
    tags = atoms.get_tags()
    if not np.any(tags > 0) or not np.any(tags == 0):
        raise LigbindError(f"counterpoise of {label}: needs an adsorbate (tags > 0) on a slab (tags 0)")
    if atoms.info.get("exchanged_indices") or atoms.info.get("exchanged_position") is not None:
        raise LigbindError(
            f"counterpoise of {label}: an exchange complex (its anion sits on a lattice site) has no molecule to "
            "split off"
        )
    if charges is None and total:
        raise LigbindError(
            f"counterpoise of {label}: a charged complex ({total:+d}) needs its fragments' charges"
        )
    if charges is not None and sum(charges) != total:
        raise LigbindError(
            f"counterpoise of {label}: fragment charges {charges[0]:+d} and {charges[1]:+d} do not add up to "
            f"the complex's {total:+d}"
        )
    start = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    energies = backend.counterpoise_energies(atoms, protocol, key, workdir)
    result = Counterpoise(
        key,
        complex_.key,
        energies,
        counterpoise_bsse(energies),
        protocol["name"],
        time.perf_counter() - start,
    )
    if store is not None:
        bare = atoms.copy()
        bare.calc = None
        store.put(
            bare,
            key,
            data={"energies": energies, "protocol": protocol, "complex_key": complex_.key},
            kind="counterpoise",
            status="ok",
            protocol=protocol["name"],
            backend=protocol["backend"],
            bsse=result.bsse,
            complex_key=complex_.key,
            label=label,
            wall_time=round(result.wall_time, 3),
        )
    return result


def relax(
    atoms: Atoms,
    protocol: str | dict[str, Any],
    *,
    store: ResultStore | None = None,
    workdir: str | Path = "runs",
    prerelax: bool = True,
    prerelax_info: dict[str, Any] | None = None,
) -> Result:
    """Relax ``atoms`` with ``protocol`` until fmax (eV/Å) or the step limit.

    Parameters
    ----------
    atoms
        Starting structure (FixAtoms constraints respected; ``info['charge']`` is the total charge).
    protocol
        Preset name or resolved protocol.
    store
        Results store; an existing key is returned without any force call.
    workdir
        Where trajectories, optimizer restart files and calculator logs go (``<key>.traj`` ...).
    prerelax
        Run the protocol's ``prerelax`` protocol (e.g. ml-screen before GPAW) first, when it names one; slab
        atoms (tags 0) are held fixed in that stage when the structure carries an adsorbate.
    prerelax_info
        What prepared ``atoms`` when the caller pre-relaxed them itself (with ``prerelax=False``), stored as the
        result's ``prerelax`` record.
    """
    protocol = _resolve(protocol)
    key = calculation_key("relax", atoms, protocol)
    if store is not None and (row := store.get(key)) is not None:
        return result_from_row(row, protocol)
    backend = backend_of(protocol)
    backend.check_input(atoms, protocol)  # before the pre-relaxation: bad input costs nothing, writes nothing
    workdir = Path(workdir)
    if protocol["run"]["dry_run"]:
        raise DryRun(str(backend.write_inputs(atoms, protocol, workdir / key)))
    start = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)

    pre_info = prerelax_info
    start_atoms = atoms
    if prerelax and protocol.get("prerelax"):
        pre_input = atoms
        if np.any(atoms.get_tags() > 0):
            # An adsorbate sits on a slab already relaxed with *this* protocol: the cheap pre-relaxation moves
            # only the adsorbate, or it would drag the slab into its own basin and DFT would have to undo it.
            pre_input = atoms.copy()
            pre_input.set_constraint(FixAtoms(mask=atoms.get_tags() == 0))
        pre = relax(
            pre_input, load_protocol(protocol["prerelax"]), store=store, workdir=workdir, prerelax=False
        )
        pre_info = {
            "key": pre.key,
            "protocol": pre.protocol["name"],
            "n_steps": pre.n_steps,
            "status": pre.status,
        }
        start_atoms = pre.atoms.copy()
        start_atoms.info = dict(atoms.info)
        start_atoms.set_constraint(atoms.constraints)

    earlier = earlier_seconds(workdir, key)  # a resumed relaxation: what its interrupted runs took
    hessian_info = seed_hessian(start_atoms, protocol, key, workdir)
    if backend.relaxes_externally(protocol):
        final, energy, fmax, converged, n_steps, calls = backend.relax(start_atoms, protocol, key, workdir)
        result = Result(key, "relax", final, energy, fmax, converged, n_steps, calls, protocol)
    else:
        result = relax_in_process(start_atoms, protocol, key, workdir)
    result.prerelax = pre_info
    result.hessian = hessian_info
    for leftover in (f"{key}.hessian.npy", f"{key}.hessian.json"):  # the optimizer's own state took over
        (workdir / leftover).unlink(missing_ok=True)
    result.atoms.info = dict(atoms.info)
    result.wall_time = earlier + time.perf_counter() - start
    _commit(store, result)
    return result


def _framework(atoms: Atoms) -> np.ndarray:
    """Indices of the periodic framework: atoms tagged 0 when they bond to their own periodic images (a slab),
    none for a molecule or ion complex in its box."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

    indices = np.flatnonzero(atoms.get_tags() == 0)
    part = atoms[indices]
    if not len(part) or not part.pbc.any():
        return np.array([], int)
    shifts = neighbor_list("S", part, natural_cutoffs(part, mult=1.2))
    return indices if np.any(shifts != 0) else np.array([], int)


def _lone_ions(atoms: Atoms) -> np.ndarray:
    """Indices of adsorbate atoms (tags > 0) in fragments of one or two atoms (a K+ or Br− ion, a K–Br pair, an
    I− counter-ion): no bends or torsions, only stretches and rigid motions, which a floored Hessian treats well."""
    from ase.neighborlist import build_neighbor_list, get_connectivity_matrix
    from scipy.sparse.csgraph import connected_components

    indices = np.flatnonzero(atoms.get_tags() > 0)
    if not len(indices):
        return indices
    part = atoms[indices]
    matrix = get_connectivity_matrix(build_neighbor_list(part, self_interaction=False, bothways=True).nl)
    _, labels = connected_components(matrix, directed=False)
    sizes = np.bincount(labels)
    return indices[sizes[labels] <= 2]


def seed_hessian(atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path) -> dict[str, Any] | None:
    """Write the initial BFGS Hessian of relaxation ``key`` (``<key>.hessian.npy``) when ``run.hessian`` names a
    protocol, and say what it cost; None when the protocol asks for none or the optimizer has its own state.

    BFGS starts from alpha·I with alpha = 70 eV/Å², while the curvature along a DFT relaxation of the bare 2×2
    slab is 0.6-4 eV/Å² (gpaw-quick): its steps are 10-100x too short, and the slab took 75 steps. The Hessian
    of a cheap protocol at the same structure (ASE's finite differences, free atoms only) starts BFGS with that
    curvature. Universal ML potentials are softer than DFT (CHGNet: 0.5-3.2 on the slab; 5-37 against DFT's
    8-39 for methylamine on it), and BFGS overshoots a mode whose curvature it underestimates more than
    twofold (unscaled, the methylamine complex oscillated: fmax 1.0 eV/Å after 14 steps against 0.2 with
    alpha·I), so the Hessian is multiplied by ``run.hessian_scale``; eigenvalues below ``run.hessian_floor``
    (rigid-body and soft modes, negative ones away from a minimum) are raised to it. Only the periodic framework
    (free atoms tagged 0 that bond to their own images, :func:`_framework`) gets it: molecules (tags > 0) keep
    alpha, because their soft modes are torsions, which are far from harmonic over the 0.2-0.4 Å steps a soft
    Hessian takes (methylamine's H atoms: BFGS rotated them back and forth; fmax 2.5 eV/Å after 9 steps against
    1.4 with alpha·I), unless ``run.hessian_molecules`` (a DFT verification complex, whose molecule starts at
    its DFT geometry, turns it on). Adsorbed ions alone or in pairs (:func:`_lone_ions`: the K–Br passivation
    unit) have no torsions and get it too: at alpha the K+ of the K–Br-passivated mixed-halide slab moved
    ~0.001 Å per step and held fmax at 0.06 eV/Å for 25 gpaw-quick steps. A structure without framework (a
    ligand, a complex in vacuum) is relaxed from alpha·I. A resumed run continues from the optimizer's own
    restart file instead.
    """
    name = protocol["run"].get("hessian")
    target = workdir / f"{key}.hessian.npy"
    record = workdir / f"{key}.hessian.json"
    if not name:
        return None
    if (workdir / f"{key}.opt.json").exists():  # resumed: BFGS continues from its own Hessian
        return json.loads(record.read_text()) if record.exists() else None
    from ase.vibrations import Vibrations

    cheap = load_protocol(name)
    work = atoms.copy()
    try:
        last, _ = _last_frame(workdir / f"{key}.traj")
    except Exception:  # cut mid-write: relax_in_process starts afresh, from ``atoms``
        last = None
    if last is not None:
        work.positions = last  # where the relaxation will continue
    framework = _framework(work)
    seeded = np.union1d(framework, _lone_ions(work)) if len(framework) else framework
    free = np.intersect1d(_free_indices(work), seeded)  # molecules keep alpha (see above)
    if protocol["run"].get("hessian_molecules") and len(framework):  # ... unless asked for, on a slab
        free = _free_indices(work)
    if not len(free):
        return None
    start = time.perf_counter()
    work.calc = make_calculator(cheap, atoms=work, directory=workdir, label=f"{key}.hessian")
    counter = _count_calls(work.calc)
    vib = Vibrations(work, indices=free, delta=0.01, name=str(workdir / f"{key}.vib"))
    vib.run()  # cached displacements: a killed run continues
    block = vib.get_vibrations().get_hessian_2d()
    vib.clean()
    block = 0.5 * (block + block.T)
    values, vectors = np.linalg.eigh(block * float(protocol["run"]["hessian_scale"]))
    floor = float(protocol["run"]["hessian_floor"])
    hessian = np.eye(3 * len(work)) * ase.optimize.BFGS.defaults["alpha"]
    dofs = (3 * free[:, None] + np.arange(3)).ravel()
    hessian[np.ix_(dofs, dofs)] = (vectors * np.maximum(values, floor)) @ vectors.T
    shutil.rmtree(workdir / f"{key}.vib", ignore_errors=True)
    np.save(target, hessian)
    info = {
        "protocol": name,
        "scale": float(protocol["run"]["hessian_scale"]),
        "floor": floor,
        "atoms": len(free),
        "force_calls": counter[0],
        "seconds": round(time.perf_counter() - start, 3),
        "eigenvalues_below_floor": int((values < floor).sum()),
        "max_eigenvalue": round(float(values.max()), 3),
    }
    write_text_atomic(record, json.dumps(info))
    return info


def _throttled(dump, share: float = 0.05):
    """Write the optimizer's restart file at most ``share`` of the time.

    BFGS writes its whole Hessian as JSON every step: 70 ms for a 131-atom complex, 15 % of a CHGNet force call.
    A resumed run only needs a recent Hessian (its next update spans the missed steps), so skip writes until
    ``1/share`` times the last write's duration has passed.
    """
    last = {"end": -math.inf, "took": 0.0}

    def write(data) -> None:
        now = time.perf_counter()
        if now - last["end"] < last["took"] / share:
            return
        dump(data)
        last["end"] = time.perf_counter()
        last["took"] = last["end"] - now

    return write


def _frame_writer(traj: Trajectory, work: Atoms, last_positions: np.ndarray | None, after=lambda: None):
    """Trajectory observer that skips a frame identical to the last one written (the start of a resumed run).

    ``after`` runs once each frame is written (it records the force calls so far, for a resumed run's total).
    """
    last = [last_positions]

    def write() -> None:
        if last[0] is not None and np.array_equal(work.positions, last[0]):
            return
        traj.write()
        last[0] = work.positions.copy()
        after()

    return write


def _last_frame(traj_path: Path) -> tuple[np.ndarray | None, int]:
    """Positions of a trajectory's last frame (None if it has none) and its frame count.

    Raises whatever ASE raises for a trajectory cut mid-write (the caller decides what to do with it).
    """
    if not traj_path.exists() or traj_path.stat().st_size == 0:
        return None, 0
    frames = Trajectory(str(traj_path))
    return (frames[-1].positions.copy() if len(frames) else None), len(frames)


def earlier_seconds(workdir: Path, key: str) -> float:
    """Wall seconds that earlier, interrupted runs of relaxation ``key`` spent up to their last stored step
    (0 for a fresh one), so that a resumed relaxation's ``wall_time`` counts every run, as its force calls do."""
    if not (workdir / f"{key}.traj").exists():
        return 0.0
    return read_saved_number(workdir / f"{key}.seconds")


def relax_in_process(atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path) -> Result:
    """The ASE relaxation itself (no store, no pre-relaxation): trajectory, restart file, SCF retries."""
    settings = protocol["relax"]
    traj_path = workdir / f"{key}.traj"
    restart_path = workdir / f"{key}.opt.json"
    calls_path = workdir / f"{key}.calls"  # force calls of earlier, interrupted runs of this relaxation
    seconds_path = workdir / f"{key}.seconds"  # and their wall seconds (see earlier_seconds)
    run_start = time.perf_counter()
    backend = backend_of(protocol)
    work = backend.prepare(atoms, protocol)
    done_steps = 0
    try:
        last_frame, n_frames = _last_frame(traj_path)
    except Exception:  # a trajectory cut mid-write is unreadable: start afresh, optimizer state included
        last_frame, n_frames = None, 0
        traj_path.unlink(missing_ok=True)  # every rank of an MPI job gets here: one removes the files
        restart_path.unlink(missing_ok=True)
    if last_frame is not None:
        work.positions = last_frame  # resume where the killed run stopped
        done_steps = n_frames - 1
    previous_calls = int(read_saved_number(calls_path)) if traj_path.exists() else 0
    previous_seconds = earlier_seconds(workdir, key)
    drop_cut_restart(restart_path)
    optimizer_cls = getattr(ase.optimize, settings["optimizer"])
    max_steps = int(settings["steps"])
    fmax = float(settings["fmax"])
    calls = previous_calls
    converged = False
    last_error: Exception | None = None
    for attempt in range(backend.scf_attempts(protocol)):
        work.calc = make_calculator(protocol, atoms=work, directory=workdir, label=key, attempt=attempt)
        counter = _count_calls(work.calc)
        opt_kwargs: dict[str, Any] = {"logfile": str(workdir / f"{key}.log")}
        if optimizer_cls.__name__ in ("BFGS", "LBFGS"):
            opt_kwargs["restart"] = str(restart_path)
        try:
            with Trajectory(str(traj_path), "a", work) as traj:
                opt = optimizer_cls(work, **opt_kwargs)
                seeded = workdir / f"{key}.hessian.npy"
                if optimizer_cls is ase.optimize.BFGS and not restart_path.exists() and seeded.exists():
                    opt.H0 = np.load(seeded)  # see seed_hessian
                if "restart" in opt_kwargs:
                    opt.dump = _throttled(opt.dump)

                def record() -> None:
                    write_text_atomic(calls_path, str(calls + counter[0]))  # noqa: B023
                    write_text_atomic(
                        seconds_path, f"{previous_seconds + time.perf_counter() - run_start:.3f}"
                    )

                opt.attach(_frame_writer(traj, work, last_frame, record), interval=1)
                converged = bool(opt.run(fmax=fmax, steps=max(0, max_steps - done_steps)))
            calls += counter[0]
            break
        except backend.scf_failures(protocol) as exc:
            calls += counter[0]
            last_error = exc
            last_frame, n_frames = _last_frame(traj_path)
            done_steps = max(0, n_frames - 1)
    else:
        raise UnconvergedError(
            f"SCF did not converge with any of {backend.scf_attempts(protocol)} mixer settings: {last_error}"
        )
    done_steps = max(0, _last_frame(traj_path)[1] - 1)  # steps = distinct frames after the start
    energy, forces = _checked_energy(work)
    final = atoms.copy()
    # back in the caller's frame (a backend may have translated the atoms, e.g. GPAW along a non-periodic z)
    final.positions = work.positions - np.asarray(work.info.get(ORIGIN_SHIFT, np.zeros(3)))
    final.calc = SinglePointCalculator(final, energy=energy, forces=forces)
    fmax_now = free_fmax(final, forces)
    return Result(
        key,
        "relax",
        final,
        energy,
        fmax_now,
        converged and fmax_now <= fmax + 1e-9,
        done_steps,
        calls,
        protocol,
    )


class DryRun(Exception):
    """Raised when a calculation was only written (``run.dry_run``); carries the input directory."""
