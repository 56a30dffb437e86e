"""Reading and writing structures (ASE I/O with atomic writes), and the checks of every path a user gives.

Paths are checked before anything is computed or written: an output file must be creatable (no file where a
directory is needed on its way, write permission where it will be created), an output directory must not be
an existing file, an input file must exist and be readable. Each check raises :class:`LigbindError` with one
line naming the path and the problem.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import ase.io
from ase import Atoms
from ase.io.formats import filetype, ioformats

from ligbind.errors import LigbindError


def structure_format(path: str | Path) -> str:
    """ASE format name for ``path`` from its name: extxyz for .xyz/.extxyz, vasp for POSCAR/.vasp, cif, ..."""
    name = Path(path).name
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    try:
        fmt = filetype(str(path), read=False)
    except Exception as exc:
        raise LigbindError(f"cannot tell the structure format of '{path}' from its name") from exc
    if fmt not in ioformats:  # filetype(read=False) returns an unknown extension as it is
        raise LigbindError(f"cannot tell the structure format of '{path}' from its name")
    return fmt


SQLITE_HEADER = b"SQLite format 3\x00"


def _first_existing_ancestor(path: Path, what: str) -> Path:
    """The nearest existing ancestor of ``path``: it must be a directory we may create entries in."""
    for ancestor in Path(os.path.abspath(path)).parents:  # '..' resolved as mkdir -p would meet it
        if ancestor.exists():
            if not ancestor.is_dir():
                raise LigbindError(f"{what} {path}: {ancestor} is a file, not a directory")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise LigbindError(f"{what} {path}: no permission to write in {ancestor}")
            return ancestor
        if ancestor.is_symlink():  # a dangling symbolic link on the way
            raise LigbindError(f"{what} {path}: {ancestor} is a broken symbolic link")
    raise LigbindError(f"{what} {path}: no existing directory above it")  # pragma: no cover


def _plain_path(path: str | Path, what: str) -> Path:
    text = str(path)
    if not text.strip():
        raise LigbindError(f"{what}: empty path")
    if "\x00" in text:
        raise LigbindError(f"{what} {text!r}: a path cannot contain a NUL character")
    return Path(text)


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Refuse an output file that cannot be written: it is a directory, a file stands where a directory is
    needed on its way, or there is no write permission. Nothing is created."""
    p = _plain_path(path, what)
    if p.exists() or p.is_symlink():
        if p.is_dir():
            raise LigbindError(f"{what} {p} is a directory")
        if not p.exists():
            raise LigbindError(f"{what} {p} is a broken symbolic link")
        if not os.access(p, os.W_OK):
            raise LigbindError(f"{what} {p}: no permission to write it")
        _first_existing_ancestor(p, what)
        return p
    _first_existing_ancestor(p, what)
    return p


def check_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """Refuse an output directory that is an existing file, lies below a file, or cannot be written."""
    p = _plain_path(path, what)
    if p.exists():
        if not p.is_dir():
            raise LigbindError(f"{what} {p} is a file, not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise LigbindError(f"{what} {p}: no permission to write in it")
        return p
    _first_existing_ancestor(p, what)
    return p


def check_input_file(path: str | Path, what: str = "file") -> Path:
    """An existing, readable regular file."""
    p = _plain_path(path, what)
    if not p.exists():
        raise LigbindError(f"{what} not found: {p}")
    if not p.is_file():
        raise LigbindError(f"{what} {p} is not a file")
    if not os.access(p, os.R_OK):
        raise LigbindError(f"{what} {p}: no permission to read it")
    return p


def check_database_file(path: str | Path, *, must_exist: bool, what: str = "results database") -> Path:
    """An ase.db (SQLite) results store. To read (``must_exist``): an existing, non-empty SQLite database. To
    write: a file that can be created, or an existing SQLite database (or empty file). Nothing is created."""
    p = check_input_file(path, what) if must_exist else check_output_file(path, what)
    if p.exists() and (must_exist or p.stat().st_size > 0):  # an empty file may become a new store
        with open(p, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
        if head != SQLITE_HEADER:
            state = "is empty" if not head else "is not an SQLite (ase.db) database"
            raise LigbindError(f"{what} {p} {state}")
    return p


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path``'s content with ``text`` atomically: a process killed mid-write leaves the old content,
    never an empty or cut file (a resumed relaxation reads its earlier force calls and seconds from such files).
    Every process writes its own temporary file: all ranks of a GPAW MPI job record the same count."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_saved_number(path: str | Path) -> float:
    """The number :func:`write_text_atomic` last wrote to ``path``; 0 when there is none, or when the file is
    unreadable (cut by a kill before these writes were atomic)."""
    try:
        return float(Path(path).read_text())
    except (OSError, ValueError):
        return 0.0


def drop_cut_restart(path: str | Path) -> None:
    """Remove an ASE optimizer restart file that a kill cut mid-write (ASE writes it in place), which the
    optimizer would fail to read at every rerun; a readable or missing one is left as it is."""
    path = Path(path)
    try:
        json.loads(path.read_text())
    except FileNotFoundError:
        pass
    except ValueError:
        path.unlink(missing_ok=True)


def write_structure(path: str | Path, atoms: Atoms) -> Path:
    """Write ``atoms`` to ``path`` atomically (a temporary file renamed into place: no partial files)."""
    path = Path(path)
    fmt = structure_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    kwargs = {"direct": True} if fmt == "vasp" else {}
    try:
        ase.io.write(tmp, atoms, format=fmt, **kwargs)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_structure(path: str | Path, index: int | str = -1) -> Atoms:
    """Read one structure, with a one-line error when the file is missing or unreadable."""
    path = check_input_file(path, "structure file")
    try:
        with warnings.catch_warnings():  # ASE warns about info it skips; the structure is what we read
            warnings.simplefilter("ignore")
            atoms = ase.io.read(path, index=index)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LigbindError(f"cannot read structure file {path}: {reason}") from exc
    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise LigbindError(f"structure file {path} holds no atoms")
    return atoms


# ------------------------------------------------------------------------------------- optimizer logs
_OPTIMIZER_LINE = re.compile(r"^(\w+):\s+(\d+)\s+(\d\d):(\d\d):(\d\d)\s+(-?\d+\.\d+)\*?\s+(\d+\.\d+)")


@dataclass(frozen=True)
class OptimizerStep:
    """One line of an ASE optimizer's text log: optimizer name, step, clock time (s after midnight), E, fmax."""

    optimizer: str
    step: int
    clock: int
    energy: float
    fmax: float


def read_optimizer_log(path: str | Path) -> list[OptimizerStep | None]:
    """The steps an ASE optimizer wrote to its text logfile, in order, with None where a header line interrupts
    them (a resumed relaxation or band appends a new header: no step interval spans it). Unreadable: []."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    out: list[OptimizerStep | None] = []
    for line in text.splitlines():
        m = _OPTIMIZER_LINE.match(line)
        if m:
            h, mi, sec = (int(g) for g in m.group(3, 4, 5))
            clock = 3600 * h + 60 * mi + sec
            out.append(
                OptimizerStep(m.group(1), int(m.group(2)), clock, float(m.group(6)), float(m.group(7)))
            )
        elif out and out[-1] is not None:
            out.append(None)
    return out


_SCF_LINE = re.compile(r"^\|?iter:\s*(\d+)", re.MULTILINE)


def last_scf_iteration(path: str | Path) -> int | None:
    """The last SCF iteration a GPAW text log reports (``iter: N``), or None when it reports none yet."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    found = _SCF_LINE.findall(text)
    return int(found[-1]) if found else None


def step_intervals(steps: list[OptimizerStep | None], longest: float = float("inf")) -> list[float]:
    """Seconds between consecutive logged steps (across midnight), none across a header or above ``longest``
    (an interruption)."""
    out = []
    for a, b in zip(steps[:-1], steps[1:], strict=True):
        if a is not None and b is not None:
            gap = (b.clock - a.clock) % 86400
            if gap < longest:
                out.append(float(gap))
    return out
