"""GPAW over several MPI ranks: one relaxation (or counterpoise) run as ``mpiexec -n N python -m
ligbind.calculators.gpaw_mpi``.

ligbind relaxes in its own (possibly worker) process; GPAW parallelises over the ranks of the MPI job it runs
in. So a GPAW protocol with ``run.cores`` > 1 hands each relaxation to a short MPI job that runs the same ASE
relaxation (:func:`ligbind.jobs.relax_in_process`: trajectory, optimizer restart file, SCF retries) and writes
its outcome to a JSON file that the calling process reads. A killed job resumes from the trajectory like any
relaxation.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.calculators.subprocesscalculator import MPICommand, PackedCalculator, PythonSubProcessCalculator
from ase.io import read, write

from ligbind.errors import LigbindError
from ligbind.io import write_text_atomic

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",  # containers and CI run as root; OpenMPI refuses that without these two
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "GPAW_MPI_BACKEND": "cgpaw",  # GPAW 26 initialises MPI only when asked (or under `gpaw python`)
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def mpi_command(cores: int) -> list[str]:
    """The mpiexec command line that runs the GPAW relaxation on ``cores`` ranks."""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise LigbindError("run.cores > 1 needs MPI: mpiexec not found (scripts/setup.sh installs OpenMPI)")
    return dies_with_parent([
        mpiexec,
        "-n",
        str(cores),
        "--bind-to",
        "none",
        sys.executable,
        "-m",
        "ligbind.calculators.gpaw_mpi",
    ])  # fmt: skip


def dies_with_parent(command: list[str]) -> list[str]:
    """``command`` run so that it gets SIGTERM when the process that started it dies (Linux, util-linux's
    ``setpriv``; unchanged elsewhere). A killed ``ligbind run`` otherwise leaves its MPI job computing, and the
    resumed run starts a second one on the same files. mpiexec passes the signal on to its ranks."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return list(command)
    return [setpriv, "--pdeathsig", "TERM", "--", *command]


def _mpi_job(atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path, cores: int, task: str) -> dict:
    """Run ``task`` (relax, counterpoise) of ``atoms`` in an MPI job of ``cores`` ranks; its outcome record."""
    job = workdir / f"{key}.mpi"
    job.mkdir(parents=True, exist_ok=True)
    write(job / "input.traj", atoms)  # exact positions, constraints, tags, info
    (job / "protocol.json").write_text(json.dumps(protocol))
    (job / "outcome.json").unlink(missing_ok=True)
    log = job / "mpi.log"
    with open(log, "w") as out:
        proc = subprocess.run(
            [*mpi_command(cores), str(job), key, str(workdir), task],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **MPI_ENV},
        )
    outcome = job / "outcome.json"
    if not outcome.exists():
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        raise LigbindError(f"GPAW MPI job for {key} failed (exit {proc.returncode}): {tail[0]} (log: {log})")
    data = json.loads(outcome.read_text())
    if data.get("error"):
        from ligbind import errors

        raise getattr(errors, data["error_type"], LigbindError)(data["error"])
    return data


def relax_under_mpi(atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path, cores: int):
    """Relax ``atoms`` in an MPI job of ``cores`` ranks; returns (atoms, energy, fmax, converged, steps, calls)."""
    data = _mpi_job(atoms, protocol, key, workdir, cores, "relax")
    relaxed = read(workdir / f"{key}.mpi" / "final.traj")
    final = atoms.copy()
    final.positions = relaxed.positions
    # the stored row needs the energy and forces with the structure (the traj frame carries both)
    final.calc = SinglePointCalculator(
        final, energy=relaxed.get_potential_energy(), forces=relaxed.get_forces()
    )
    return final, data["energy"], data["fmax"], data["converged"], data["n_steps"], data["force_calls"]


def counterpoise_under_mpi(
    atoms: Atoms, protocol: dict[str, Any], key: str, workdir: Path, cores: int
) -> dict[str, float]:
    """:func:`ligbind.calculators.gpaw.counterpoise_energies` in an MPI job of ``cores`` ranks."""
    return _mpi_job(atoms, protocol, key, workdir, cores, "counterpoise")["energies"]


def _main(job: Path, key: str, workdir: Path, task: str = "relax") -> None:
    """Inside the MPI job: the ASE relaxation (or the counterpoise terms) with GPAW over all ranks; rank 0
    writes the outcome."""
    import gpaw.mpi  # noqa: F401  (MPI first, so that ASE's world is GPAW's communicator)
    from ase.parallel import world

    from ligbind.calculators.gpaw import (
        DOMAIN_SPLITS,
        counterpoise_energies,
        split_slab_grids_in_plane,
    )
    from ligbind.errors import LigbindError as Error
    from ligbind.jobs import relax_in_process
    from ligbind.protocols import with_run_settings

    atoms = read(job / "input.traj")
    protocol = with_run_settings(json.loads((job / "protocol.json").read_text()), cores=1)
    split_slab_grids_in_plane(atoms)
    try:
        if task == "counterpoise":
            data = {"energies": counterpoise_energies(atoms, protocol, key, workdir)}
        else:
            r = relax_in_process(atoms, protocol, key, workdir)
            data = {
                "energy": r.energy,
                "fmax": r.fmax,
                "converged": r.converged,
                "n_steps": r.n_steps,
                "force_calls": r.force_calls,
            }
            if world.rank == 0:
                write(job / "final.traj", r.atoms)
    except Error as exc:
        data = {"error": str(exc), "error_type": type(exc).__name__}
    data["domains"] = sorted(set(DOMAIN_SPLITS))  # where the split was ligbind's (slabs): what it chose
    if world.rank == 0:
        write_text_atomic(job / "outcome.json", json.dumps(data))


class PackedLigbindCalculator(PackedCalculator):
    """An NEB image's GPAW calculator (:func:`~ligbind.calculators.gpaw.image_calculator`), built inside an ASE
    subprocess calculator (see :func:`calculator_under_mpi`)."""

    def __init__(self, protocol: dict[str, Any], atoms: Atoms, directory: str, label: str):
        self.protocol, self.atoms, self.directory, self.label = protocol, atoms, directory, label

    def unpack_calculator(self):
        from ligbind.calculators.gpaw import image_calculator, split_slab_grids_in_plane
        from ligbind.protocols import with_run_settings

        protocol = with_run_settings(self.protocol, cores=1)  # GPAW spreads over the job's ranks itself
        split_slab_grids_in_plane(self.atoms)
        return image_calculator(protocol, self.atoms, Path(self.directory), self.label)


def calculator_under_mpi(
    protocol: dict[str, Any], atoms: Atoms, directory: Path, label: str, cores: int
) -> PythonSubProcessCalculator:
    """An ASE calculator whose GPAW runs in a persistent MPI job of ``cores`` ranks (ASE's subprocess calculator).

    Use it as a context manager (the job lives as long as the ``with``); the wavefunctions stay in the job
    between calls, as with an in-process GPAW.
    """
    environment = ["env", *(f"{k}={v}" for k, v in MPI_ENV.items())]  # ASE starts it with os.environ
    command = [*environment, *mpi_command(cores), "--serve"]
    pack = PackedLigbindCalculator(protocol, atoms, str(directory), label)
    return pack.calculator(mpi_command=MPICommand(command))


WAKE_TAG = 4711  # rank 0 → other ranks: an instruction has arrived


def _serve() -> None:
    """Inside the MPI job: ASE's subprocess-calculator loop, with GPAW's communicator as ASE's world.

    Between instructions only rank 0 reads its standard input; the other ranks sleep instead of spinning in
    MPI's broadcast (OpenMPI busy-polls: five idle image jobs would otherwise take the cores from the one that
    computes; measured here, an idle rank spinning took 67% of a core even with mpi_yield_when_idle).
    """
    import gpaw.mpi  # noqa: F401  (before ASE resolves its world)
    from ase.calculators.subprocesscalculator import Client, parallel_startup
    from ase.parallel import broadcast

    class SleepingClient(Client):
        def recv(self):
            world = self._world
            if world.size == 1:
                return super().recv()
            if world.rank == 0:
                obj = pickle.load(self.input_fd)
                for rank in range(1, world.size):
                    world.send(np.ones(1), rank, tag=WAKE_TAG)
                return broadcast(obj, 0, world)
            flag = np.zeros(1)
            request = world.receive(flag, 0, tag=WAKE_TAG, block=False)
            while not world.test(request):
                time.sleep(0.02)
            return broadcast(None, 0, world)

    sys.argv[1:] = ["standard"]
    started = parallel_startup()  # stdout becomes stderr; the pickles go to the real stdout
    client = SleepingClient(input_fd=started.input_fd, output_fd=started.output_fd)
    client.mainloop(client.recv().unpack_calculator())


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        _main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), *sys.argv[4:5])
