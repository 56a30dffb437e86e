"""Fake VASP for tests, in the style of atomate2's ``fake_run_vasp``.

``FakeVaspJob`` is a custodian ``Job``: its ``run()`` checks the inputs ligbind wrote against a reference
calculation's ``inputs/`` (INCAR keys, POSCAR species/counts/cell/selective dynamics, KPOINTS mesh) and
raises AssertionError listing every difference; then it puts the reference ``outputs/`` into the run
directory the way VASP leaves them (plain vasprun.xml, OUTCAR, CONTCAR, plus empty vasp.out and
std_err.txt), so custodian's real handlers read real outputs.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from custodian.custodian import Job
from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

INPUT_FILES = ("INCAR", "KPOINTS", "POSCAR", "POTCAR", "POTCAR.spec")


def reference_incar_overrides(reference_dir: str | Path, base_incar: dict[str, Any]) -> dict[str, Any]:
    """``vasp`` overrides that make a protocol with ``base_incar`` produce the reference INCAR.

    Reference keys are copied (MAGMOM ``n*m`` becomes the per-element mapping ligbind expects, assuming one
    moment for all atoms as in the reference data); keys of ``base_incar`` absent from the reference are set
    to None (removed); the dipole keys are removed; the KPOINTS mesh is the reference's.
    """
    ref = Path(reference_dir) / "inputs"
    incar = Incar.from_file(ref / "INCAR")
    poscar = Poscar.from_file(ref / "POSCAR")
    overrides: dict[str, Any] = {key: None for key in base_incar}
    for key, value in incar.items():
        if key == "MAGMOM":
            moments = set(np.round(np.asarray(value, dtype=float), 6))
            assert len(moments) == 1, "reference MAGMOM must be uniform"
            moment = float(next(iter(moments)))
            value = {el: moment for el in poscar.site_symbols}
        overrides[key] = value
    kpoints = Kpoints.from_file(ref / "KPOINTS")
    return {
        "incar": overrides,
        "slab_incar": {"LDIPOL": None, "IDIPOL": None, "DIPOL": None},
        "kpoints": [int(k) for k in kpoints.kpts[0]],
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b) and type(a) is type(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return bool(np.isclose(float(a), float(b), rtol=1e-6, atol=1e-10))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return a == b


def compare_inputs(
    run_dir: str | Path,
    reference_inputs: str | Path,
    check_incar_keys: Sequence[str] | None = None,
    strict_incar: bool = True,
) -> list[str]:
    """Differences between the inputs in ``run_dir`` and ``reference_inputs`` (empty list = identical).

    ``check_incar_keys`` None checks every reference INCAR key; ``strict_incar`` also reports keys the
    generated INCAR has but the reference does not.
    """
    run_dir, ref = Path(run_dir), Path(reference_inputs)
    diffs: list[str] = []

    got_incar, ref_incar = Incar.from_file(run_dir / "INCAR"), Incar.from_file(ref / "INCAR")
    keys = list(ref_incar) if check_incar_keys is None else [k.upper() for k in check_incar_keys]
    for key in keys:
        if key not in got_incar or key not in ref_incar:
            where = "generated" if key not in got_incar else "reference"
            diffs.append(f"INCAR {key}: missing from the {where} INCAR")
        elif not _same(got_incar[key], ref_incar[key]):
            diffs.append(f"INCAR {key}: generated {got_incar[key]!r} != reference {ref_incar[key]!r}")
    if strict_incar:
        for key in sorted(set(got_incar) - set(ref_incar)):
            diffs.append(f"INCAR {key}: generated {got_incar[key]!r} but absent from the reference")

    got_pos, ref_pos = Poscar.from_file(run_dir / "POSCAR"), Poscar.from_file(ref / "POSCAR")
    if got_pos.site_symbols != ref_pos.site_symbols or got_pos.natoms != ref_pos.natoms:
        diffs.append(
            f"POSCAR species: generated {got_pos.site_symbols} {got_pos.natoms} "
            f"!= reference {ref_pos.site_symbols} {ref_pos.natoms}"
        )
    elif not np.allclose(got_pos.structure.lattice.matrix, ref_pos.structure.lattice.matrix, atol=1e-4):
        diffs.append("POSCAR cell differs from the reference")
    else:
        got_sd, ref_sd = got_pos.selective_dynamics, ref_pos.selective_dynamics
        if (got_sd is None) != (ref_sd is None) or (
            got_sd is not None and not np.array_equal(np.asarray(got_sd), np.asarray(ref_sd))
        ):
            diffs.append(f"POSCAR selective dynamics: generated {got_sd} != reference {ref_sd}")

    got_k, ref_k = Kpoints.from_file(run_dir / "KPOINTS"), Kpoints.from_file(ref / "KPOINTS")
    if got_k.style != ref_k.style or [list(k) for k in got_k.kpts] != [list(k) for k in ref_k.kpts]:
        diffs.append(
            f"KPOINTS: generated {got_k.style.name} {got_k.kpts} != reference {ref_k.style.name} {ref_k.kpts}"
        )
    return diffs


class FakeVaspJob(Job):
    """Custodian job that checks inputs against ``reference_dir/inputs`` and copies ``reference_dir/outputs``.

    Parameters
    ----------
    reference_dir
        Folder with ``inputs/`` (INCAR, KPOINTS, POSCAR) and ``outputs/`` (vasprun.xml.gz, OUTCAR.gz, ...), e.g.
        ``tests/data/vasp/ir_h_adsorption/3``; FileNotFoundError if the inputs or the vasprun.xml are missing.
    check_incar_keys
        INCAR keys compared (values equal, numbers within 1e-6 relative); None compares all reference keys.
    strict_incar
        Also fail on generated INCAR keys absent from the reference.
    """

    def __init__(
        self,
        reference_dir: str | Path,
        check_incar_keys: Sequence[str] | None = None,
        strict_incar: bool = True,
    ) -> None:
        ref = Path(reference_dir)
        missing = [str(ref / "inputs" / name) for name in ("INCAR", "KPOINTS", "POSCAR")]
        missing = [m for m in missing if not Path(m).is_file()]
        if not any((ref / "outputs" / name).is_file() for name in ("vasprun.xml", "vasprun.xml.gz")):
            missing.append(str(ref / "outputs" / "vasprun.xml[.gz]"))
        if missing:  # a fake run without its reference would test nothing: fail loudly
            raise FileNotFoundError(f"FakeVaspJob: reference files missing: {', '.join(missing)}")
        self.reference_dir = str(reference_dir)
        self.check_incar_keys = list(check_incar_keys) if check_incar_keys is not None else None
        self.strict_incar = strict_incar
        self.n_runs = 0

    def setup(self, directory: str = "./") -> None:
        """Nothing to prepare."""

    def run(self, directory: str = "./") -> None:
        """Check the inputs, then write the reference outputs as VASP would (uncompressed)."""
        self.n_runs += 1
        run_dir, ref = Path(directory), Path(self.reference_dir)
        diffs = compare_inputs(run_dir, ref / "inputs", self.check_incar_keys, self.strict_incar)
        if diffs:
            raise AssertionError(
                f"FakeVaspJob: inputs in {run_dir} differ from {ref / 'inputs'}:\n  " + "\n  ".join(diffs)
            )
        for src in sorted((ref / "outputs").iterdir()):
            name = src.name.removesuffix(".gz")
            if name in INPUT_FILES:
                continue  # VASP does not rewrite its inputs
            if src.name.endswith(".gz"):
                with gzip.open(src, "rb") as fin, open(run_dir / name, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            else:
                shutil.copyfile(src, run_dir / name)
        for name in (
            "vasp.out",
            "std_err.txt",
        ):  # read by VaspErrorHandler/FrozenJobErrorHandler/StdErrHandler
            (run_dir / name).touch()

    def postprocess(self, directory: str = "./") -> None:
        """Nothing to clean up."""
