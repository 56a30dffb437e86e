"""Reading and writing structures: ASE I/O with atomic writes and one clear error for bad files."""

from __future__ import annotations

import os
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
    path = Path(path)
    if not path.is_file():
        raise LigbindError(f"structure file not found: {path}")
    try:
        return ase.io.read(path, index=index)
    except Exception as exc:
        raise LigbindError(f"cannot read structure file {path}: {exc}") from exc
