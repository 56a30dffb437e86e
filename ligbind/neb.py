"""A nudged-elastic-band calculation as a small typed function (ASE's NEB), resumable like a relaxation.

:func:`run_neb` takes two relaxed endpoints (:class:`ligbind.jobs.Result`), interpolates ``images``
intermediate images with IDPP under the minimum-image convention (ASE's default ``mic=False`` would drag an
ion across the whole cell for a hop over the cell edge), and optimises the band with a climbing image (ASE
``DyNEB(climb=True)`` with dynamic relaxation, FIRE: an image already below fmax is not moved, so it
costs no new force call, while its neighbours still move; every image ends below fmax as with a plain NEB).
Every step appends the whole band (endpoints included) to ``<key>.band.traj``;
a rerun with the same key continues from the last complete band in that file instead of interpolating again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import Trajectory
from ase.mep import NEB, DyNEB
from ase.optimize import FIRE

from ligbind.calculators import ORIGIN_SHIFT, backend_of, counted, make_calculator
from ligbind.io import drop_cut_restart, read_saved_number, write_text_atomic
from ligbind.jobs import Result
from ligbind.protocols import protocol_hash
from ligbind.store import structure_hash


@dataclass
class NebRun:
    """A (possibly partial) band: images with energies and forces, and how it got there."""

    key: str
    band: list[Atoms]
    energies: list[float]
    converged: bool
    n_steps: int
    force_calls: int
    resumed_from_step: int
    wall_time: float  # wall seconds of every run of this band up to its last saved step (as a relaxation's)
    stopped: bool = False  # ended by ``stop_when`` before converging
    minima: tuple[int, ...] = ()  # band indices that are relaxed intermediate minima (:func:`joined_bands`)


def neb_key(
    initial: Result,
    final: Result,
    protocol: dict[str, Any],
    images: int,
    start: str | None = None,
    carry: list[int] | None = None,
) -> str:
    """Key of a barrier: both relaxed endpoints' structure hashes, the protocol hash and the image count (and
    the protocol hash of the band it started from, when pre-converged with another protocol, with the atoms
    taken from it when not all)."""
    key = (
        f"barrier-{structure_hash(initial.atoms)}-{structure_hash(final.atoms)}-"
        f"{protocol_hash(protocol)}-{images}i"
    )
    if not start:
        return key
    key = f"{key}-from-{start.split('-')[3]}"
    return key if carry is None else key + "-atoms-" + "_".join(str(i) for i in sorted(carry))


def _endpoint(result: Result, shift: np.ndarray, pbc) -> Atoms:
    """A relaxed endpoint in the band's frame (the calculator's: see :func:`_band`) with its stored energy."""
    atoms = result.atoms.copy()
    atoms.positions += shift
    atoms.pbc = pbc
    atoms.calc = SinglePointCalculator(atoms, energy=result.energy, forces=result.atoms.get_forces())
    return atoms


def _last_band(path: Path, n_total: int) -> tuple[list[np.ndarray] | None, int]:
    """Positions of the last complete band in ``path`` and the steps it records (None, 0: nothing usable)."""
    if not path.exists() or path.stat().st_size == 0:
        return None, 0
    try:
        frames = Trajectory(str(path))
        n_bands = len(frames) // n_total
    except Exception:  # cut mid-write: unreadable, start afresh
        path.unlink(missing_ok=True)
        return None, 0
    if n_bands == 0:
        path.unlink(missing_ok=True)
        return None, 0
    if len(frames) % n_total:  # killed while writing a band: keep the complete ones only
        complete = [frames[k] for k in range(n_bands * n_total)]
        tmp = path.with_suffix(".partial")
        with Trajectory(str(tmp), "w") as out:
            for atoms in complete:
                out.write(atoms)
        tmp.replace(path)
        frames = Trajectory(str(path))
    start = (n_bands - 1) * n_total
    return [frames[start + k].positions.copy() for k in range(n_total)], n_bands - 1


def image_label(key: str, k: int) -> str:
    """Label (log ``<label>.txt``) of intermediate image ``k`` (from 0) of band ``key``."""
    return f"{key}-{k + 1}"


def _band(
    initial: Result,
    final: Result,
    protocol,
    images: int,
    workdir: Path,
    key: str,
    saved,
    start=None,
    calculators: ExitStack | None = None,
    carry: list[int] | None = None,
) -> list[Atoms]:
    """Endpoints (with their stored energies) and ``images`` intermediate images, each with its calculator.

    The images come from the saved band, else from ``start`` (the atoms in ``carry``, or all, on the IDPP
    band), else from the IDPP band.

    The image calculators live as long as ``calculators`` (GPAW over several cores: one MPI job per image,
    computed one after another, each keeping its wavefunctions between NEB steps).
    """
    backend = backend_of(protocol)
    prepared = backend.prepare(initial.atoms, protocol)  # e.g. GPAW: z non-periodic and atoms centred along z
    shift = np.asarray(prepared.info.get(ORIGIN_SHIFT, np.zeros(3)))
    band = [_endpoint(initial, shift, prepared.pbc)]
    for k in range(images):
        image = prepared.copy()
        label = image_label(key, k)
        if calculators is None:
            image.calc = make_calculator(protocol, atoms=image, directory=workdir, label=label)
        else:
            image.calc = calculators.enter_context(
                backend.lasting_calculator(protocol, image, workdir, label)
            )
        band.append(image)
    band.append(_endpoint(final, shift, prepared.pbc))
    if saved is not None:  # written in the band's frame
        for image, positions in zip(band[1:-1], saved[1:-1], strict=True):
            image.positions = positions
        return band
    if start is None or carry is not None:
        NEB(band, climb=True, method="improvedtangent").interpolate(
            method="idpp", mic=True, apply_constraint=True
        )
    if start is not None:  # a band of another protocol, in the caller's frame
        moved = slice(None) if carry is None else list(carry)
        for image, positions in zip(band[1:-1], start[1:-1], strict=True):
            new = image.positions.copy()
            new[moved] = positions[moved] + shift
            image.positions = new
    return band


def run_neb(
    initial: Result,
    final: Result,
    protocol: dict[str, Any],
    *,
    images: int = 5,
    workdir: str | Path = "runs",
    fmax: float | None = None,
    steps: int | None = None,
    start: NebRun | None = None,
    carry: list[int] | None = None,
    stop_when: Callable[[list[float]], bool] | None = None,
) -> NebRun:
    """Climbing-image NEB between two relaxed endpoints, continuing a saved band with the same key.

    Parameters
    ----------
    initial, final
        Relaxed endpoints (same atoms in the same order).
    protocol
        Resolved protocol (its calculator; ``relax.fmax`` and ``relax.steps`` unless given).
    images
        Intermediate images.
    workdir
        Where ``<key>.band.traj`` and the optimizer log go.
    fmax, steps
        Convergence (eV/Å on the band's NEB forces) and total step limit, counting the steps of earlier runs.
    start
        A band converged with a cheaper protocol (same endpoints' geometry): its intermediate images start
        this band instead of the IDPP interpolation (a pre-converged band; the key records it).
    carry
        Only these atoms (e.g. the migrating ion) are taken from ``start``, the others from the IDPP band
        between this protocol's endpoints; None: every atom from ``start``.
    stop_when
        Called with the band's energies (endpoints included) after every step: True ends the optimisation
        there (``stopped``; a saved band it holds for is handed back as it stands), e.g. once an image lies
        below an endpoint, which makes the caller relax that endpoint again and start a new band anyway.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    key = neb_key(initial, final, protocol, images, start.key if start is not None else None, carry)
    fmax = float(fmax if fmax is not None else protocol["relax"]["fmax"])
    steps = int(steps if steps is not None else protocol["relax"]["steps"])
    traj_path = workdir / f"{key}.band.traj"
    calls_path = workdir / f"{key}.calls"
    saved, done = _last_band(traj_path, images + 2)
    previous_calls = int(read_saved_number(calls_path)) if saved is not None else 0
    earlier = read_saved_number(workdir / f"{key}.seconds") if saved is not None else 0.0
    if saved is not None:  # converged, or stopped at its step limit: nothing to optimise or recompute
        as_saved = _saved_run(traj_path, key, initial, images, fmax, done, previous_calls, earlier)
        if not as_saved.converged and done < steps and stop_when is not None:
            as_saved.stopped = stop_when(as_saved.energies)
        if as_saved.converged or as_saved.stopped or done >= steps:
            return _finished(as_saved, protocol, workdir, images)
    start_positions = [im.positions.copy() for im in start.band] if start is not None else None
    with ExitStack() as calculators:
        band = _band(
            initial, final, protocol, images, workdir, key, saved, start_positions, calculators, carry
        )
        frame = (band[0].positions[0] - initial.atoms.positions[0], initial.atoms.pbc)  # band's → caller's
        run = _optimise(
            band, key, workdir, saved, done, (previous_calls, earlier), images, fmax, steps, frame, stop_when
        )
    return _finished(run, protocol, workdir, images)


def _finished(run: NebRun, protocol: dict[str, Any], workdir: Path, images: int) -> NebRun:
    """``run``, its images' saved calculator states dropped once it goes no further (converged, stopped)."""
    if run.converged or run.stopped:
        backend_of(protocol).forget_lasting(workdir, [image_label(run.key, k) for k in range(images)])
    return run


def _saved_run(
    traj_path: Path,
    key: str,
    initial: Result,
    images: int,
    fmax: float,
    done: int,
    calls: int,
    seconds: float,
) -> NebRun:
    """The last saved band as it stands, from the energies and forces its frames carry (no calculator runs:
    with DFT, re-evaluating a converged band, or one at its step limit, costs one SCF per image per rerun)."""
    frames = Trajectory(str(traj_path))
    n_total = images + 2
    band = [frames[len(frames) - n_total + k] for k in range(n_total)]
    residual = NEB(band, climb=True, method="improvedtangent").get_forces()
    shift = band[0].positions[0] - initial.atoms.positions[0]  # band's frame → caller's (see _band)
    return NebRun(
        key=key,
        band=[_frozen(im, shift, initial.atoms.pbc) for im in band],
        energies=[float(im.get_potential_energy()) for im in band],
        converged=bool((residual**2).sum(axis=1).max() < fmax**2),  # FIRE's own test
        n_steps=done,
        force_calls=calls,
        resumed_from_step=done,
        wall_time=seconds,
    )


def _optimise(
    band, key, workdir, saved, done, previous, images, fmax, steps, frame, stop_when=None
) -> NebRun:
    """FIRE on the climbing-image band, appending every band to ``<key>.band.traj`` (in the band's frame).

    ASE's DyNEB with ``dynamic_relaxation`` (``scale_fmax`` 0: the same criterion for every image): an image
    below fmax keeps its positions and so its cached energy and forces, and moves again if its neighbours
    push it back above fmax. The band converges when every image is below fmax, the test
    :func:`_saved_run` applies to a saved band. ``force_calls`` counts the evaluations the image
    calculators really made.
    """
    traj_path = workdir / f"{key}.band.traj"
    calls_path = workdir / f"{key}.calls"
    seconds_path = workdir / f"{key}.seconds"  # wall seconds of every run, up to its last saved band
    previous_calls, earlier = previous
    calls: dict[str, int] = {}
    for image in band[1:-1]:
        counted(image.calc, calls)
    neb = DyNEB(
        band, climb=True, method="improvedtangent", fmax=fmax, dynamic_relaxation=True, scale_fmax=0.0
    )
    start = time.perf_counter()
    counter = {"bands": 0}

    def write_band() -> None:
        counter["bands"] += 1
        if saved is not None and counter["bands"] == 1:  # the resumed band is already the file's last
            return
        with Trajectory(str(traj_path), "a") as traj:
            for image in band:
                traj.write(image)
        write_text_atomic(calls_path, str(previous_calls + calls["calls"]))
        write_text_atomic(seconds_path, str(earlier + time.perf_counter() - start))

    # FIRE's velocities and time step, so that a resumed band keeps its momentum
    restart = workdir / f"{key}.fire.json"
    if saved is None:
        restart.unlink(missing_ok=True)  # a band started afresh owes nothing to an earlier run's state
    drop_cut_restart(restart)
    opt = FIRE(neb, logfile=str(workdir / f"{key}.neb.log"), restart=str(restart))
    opt.attach(write_band, interval=1)
    converged = stopped = False
    for converged in opt.irun(fmax=fmax, steps=max(0, steps - done)):
        if not converged and stop_when is not None and stop_when([im.get_potential_energy() for im in band]):
            stopped = True
            break
    converged = bool(converged)
    energies = [float(im.get_potential_energy()) for im in band]
    n_steps = done + opt.nsteps
    return NebRun(
        key=key,
        band=[_frozen(im, *frame) for im in band],
        energies=energies,
        converged=converged,
        n_steps=n_steps,
        force_calls=previous_calls + calls["calls"],
        resumed_from_step=done if saved is not None else -1,
        wall_time=earlier + time.perf_counter() - start,
        stopped=stopped,
    )


def _frozen(image: Atoms, shift: np.ndarray, pbc) -> Atoms:
    """A copy of ``image`` in the caller's frame (``shift`` undone, ``pbc``) with its energy and forces."""
    out = image.copy()
    out.positions -= shift
    out.pbc = pbc
    out.calc = SinglePointCalculator(
        out, energy=image.get_potential_energy(), forces=image.get_forces(apply_constraint=False)
    )
    return out


def joined_bands(first: NebRun, second: NebRun) -> NebRun:
    """Two bands that share an endpoint (``first`` ends where ``second`` starts: a relaxed intermediate
    minimum) as one path, keyed by the first; that endpoint is recorded in ``minima``."""
    return NebRun(
        key=first.key,
        band=first.band + second.band[1:],
        energies=list(first.energies) + list(second.energies[1:]),
        converged=first.converged and second.converged,
        n_steps=first.n_steps + second.n_steps,
        force_calls=first.force_calls + second.force_calls,
        resumed_from_step=-1,
        wall_time=first.wall_time + second.wall_time,
        minima=(*first.minima, len(first.band) - 1, *(len(first.band) - 1 + m for m in second.minima)),
    )


def band_segment(run: NebRun, lo: int, hi: int) -> NebRun:
    """Images ``lo``..``hi`` of a band (both included) as a band of their own, to start a band between
    those two ends from (``run_neb(start=...)``; keyed by ``run``'s key, which names its protocol)."""
    return NebRun(
        key=run.key,
        band=run.band[lo : hi + 1],
        energies=list(run.energies[lo : hi + 1]),
        converged=False,
        n_steps=0,
        force_calls=0,
        resumed_from_step=-1,
        wall_time=0.0,
    )
