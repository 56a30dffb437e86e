"""The results store: an ase.db SQLite file, one row per finished calculation, committed at once.

Unique key = kind + hash(structure) + hash(resolved protocol). A calculation whose key exists is reused, never
recomputed. Rows are browsable with ``ase db FILE``. Analysis rows (kind ``binding``, ``frenkel``, ...) hold the
structure they describe and the energy terms as key-value pairs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ase.db
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms

from ligbind.calculators import is_bulk
from ligbind.protocols import bulk_settings, protocol_hash

DEFAULT_DB = "ligbind.db"


def default_db_path() -> Path:
    """``$LIGBIND_DB`` or ./ligbind.db."""
    return Path(os.environ.get("LIGBIND_DB", DEFAULT_DB))


def structure_hash(atoms: Atoms) -> str:
    """Hash of what defines a calculation's input: species, positions (1e-4 Å), cell, pbc, fixed atoms, charge."""
    fixed = sorted(int(i) for c in atoms.constraints if isinstance(c, FixAtoms) for i in c.index)
    payload = {
        "numbers": atoms.numbers.tolist(),
        "positions": np.round(atoms.positions, 4).tolist(),
        "cell": np.round(atoms.cell.array, 4).tolist(),
        "pbc": atoms.pbc.tolist(),
        "fixed": fixed,
        "tags": atoms.get_tags().tolist(),
        "charge": int(atoms.info.get("charge", 0) or 0),
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def calculation_key(kind: str, atoms: Atoms, protocol: dict[str, Any]) -> str:
    """Unique key of a calculation: ``kind-structurehash-protocolhash``, and for a bulk crystal ``-k`` and a hash
    of the protocol's k-point settings for bulk cells (kept out of the protocol hash: see ``BULK_ONLY``)."""
    key = f"{kind}-{structure_hash(atoms)}-{protocol_hash(protocol)}"
    if is_bulk(atoms) and (bulk := bulk_settings(protocol)):
        text = json.dumps(bulk, sort_keys=True, default=str)
        key += f"-k{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return key


def _clean(value: Any) -> Any:
    """Key-value pairs in ase.db must be str, int, float or bool."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class ResultStore:
    """Thin layer over an ase.db SQLite database keyed by :func:`calculation_key`."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = ase.db.connect(str(self.path), type="db")
        self._fixed: dict[str, Any] = {}
        self._keep: Callable[[Any], bool] | None = None

    @classmethod
    def open_existing(cls, path: str | Path) -> ResultStore:
        """Open a results store for reading only: refuse a missing, empty or non-database file (never create)."""
        import sqlite3

        from ligbind.errors import LigbindError

        path = Path(path)
        if not path.is_file():
            raise LigbindError(f"results database not found: {path}")
        with open(path, "rb") as fh:
            header = fh.read(16)
        if header != b"SQLite format 3\x00":
            raise LigbindError(f"{path} is not a ligbind results database (not an SQLite file)")
        try:
            with sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True) as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise LigbindError(f"{path} is not a readable results database: {exc}") from None
        if "systems" not in tables:
            raise LigbindError(f"{path} is not a ligbind results database (no ase.db tables)")
        return cls(path)

    def get(self, key: str):
        """The row with ``key`` or None."""
        rows = list(self.db.select(key=key, limit=1))
        return rows[0] if rows else None

    def put(self, atoms: Atoms, key: str, data: dict[str, Any] | None = None, **pairs: Any) -> int:
        """Commit one row (replacing an existing row with the same key); returns its id."""
        for name, value in pairs.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"refusing to store non-finite {name}={value}")
        clean = {k: _clean(v) for k, v in pairs.items() if v is not None}
        old = self.get(key)
        with self.db:
            if old is not None:
                del self.db[old.id]
            return self.db.write(atoms, key=key, data=data or {}, **clean)

    def put_analysis(
        self,
        atoms: Atoms,
        key: str,
        kind: str,
        outcome: dict[str, Any],
        protocol: dict[str, Any],
        flags: list[str] | tuple[str, ...],
        **columns: Any,
    ) -> int:
        """Commit one analysis row (Eb, E_vac, Ea, ...): the outcome and its protocol in ``data``, the protocol's
        name, hash and ``is_dft`` and the ``flags`` (in their order; "none" when empty) as columns beside
        ``columns``."""
        data = {"outcome": json.loads(json.dumps(outcome, default=float)), "protocol": protocol}
        return self.put(
            atoms,
            key,
            data=data,
            kind=kind,
            protocol=protocol["name"],
            protocol_hash=protocol_hash(protocol),
            is_dft=bool(protocol["is_dft"]),
            flags=",".join(flags) or "none",
            **columns,
        )

    def update(self, key: str, **pairs: Any) -> None:
        """Add or change key-value pairs of the row with ``key``."""
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        self.db.update(row.id, **{k: _clean(v) for k, v in pairs.items() if v is not None})

    def select(self, **query: Any):
        """Rows matching key-value pairs."""
        rows = self.db.select(**{**self._fixed, **query})
        return rows if self._keep is None else (row for row in rows if self._keep(row))

    def count(self, **query: Any) -> int:
        if self._keep is None:
            return self.db.count(**{**self._fixed, **query})
        return sum(1 for _ in self.select(include_data=False, **query))

    def restricted(self, keep: Callable[[Any], bool] | None = None, **fixed: Any) -> ResultStore:
        """The same store, whose ``select`` and ``count`` also match ``fixed`` (e.g. one campaign's settings)
        and, given ``keep``, only rows for which ``keep(row)`` is true."""
        view = copy.copy(self)
        view._fixed = {**self._fixed, **fixed}
        if keep is not None:
            view._keep = keep if self._keep is None else (lambda row, a=self._keep: a(row) and keep(row))
        return view


def atoms_from_row(row) -> Atoms:
    """The row's structure with its stored energy/forces attached (and info restored from data)."""
    atoms = row.toatoms()
    energy = row.get("energy")
    forces = row.get("forces")
    if energy is not None:
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    atoms.info.update(row.data.get("info", {}))
    return atoms
