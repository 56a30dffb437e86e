"""Bad input, systematically: every option of every subcommand and every campaign key, fed malformed values
(a table of the cases users met, and hypothesis-generated ones), must end with exit code 2, exactly one line
``ligbind: error: ...`` on stderr, and the working directory unchanged. Nothing here may compute: a guard
makes any relaxation, recipe or FireWorks store access fail the test.

Most cases run the command in-process (``ligbind.cli.main(argv)``); a few run it as a user does
(``python -m ligbind``), where the process, the pipe and the exit code are what is tested.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import fcc111
from bad_input_passivation import CAMPAIGN_ROWS as _PASSIVATION_CAMPAIGN
from bad_input_passivation import CLI_ROWS as _PASSIVATION_CLI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ligbind.cli as cli
from ligbind.builders.ligands import load_library
from ligbind.builders.slab import build_slab, find_layers
from ligbind.io import write_structure
from ligbind.validation import MIN_VACUUM, check_slab

MAIN = (
    [sys.executable, "-m", "ligbind"]
    if (Path(cli.__file__).parent / "__main__.py").exists()
    else [sys.executable, "-c", "import sys; from ligbind.cli import main; sys.exit(main())"]
)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


# ------------------------------------------------------------------------------------------------ fixtures
class Computed(Exception):
    """Raised by the guard: bad input reached a calculation (ligbind reports it as a bug: exit 1, not 2)."""


def _import_all_of_ligbind() -> None:
    """Import every ligbind module now, so that none is first imported while the guard is in place (a module
    doing ``from ligbind.jobs import relax`` would keep the guard for the rest of the test session)."""
    import importlib
    import pkgutil

    import ligbind

    for info in pkgutil.walk_packages(ligbind.__path__, "ligbind."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


@pytest.fixture(autouse=True)
def no_calculation(monkeypatch):
    """Any relaxation, single point, NEB, recipe or FireWorks store access fails the test, wherever a ligbind
    module holds it (``from ligbind.jobs import relax`` binds its own name)."""

    def forbidden(*args, **kwargs):
        raise Computed("bad input reached a calculation")

    import ligbind.engine.fireworks as engine
    import ligbind.jobs as jobs
    import ligbind.neb as neb
    import ligbind.recipes as recipes
    import ligbind.recipes.defects as defect_recipes

    _import_all_of_ligbind()
    guarded = {
        id(f)
        for f in (
            jobs.relax,
            jobs.single_point,
            neb.run_neb,
            recipes.bind,
            recipes.frenkel,
            recipes.relax_slab,
            defect_recipes.vacancy,
            defect_recipes.barrier,
            engine.get_launchpad,
            engine.save_campaign,
        )
    }
    for module in [m for name, m in sys.modules.items() if name == "ligbind" or name.startswith("ligbind.")]:
        for name, value in list(vars(module).items()):
            if callable(value) and id(value) in guarded:
                monkeypatch.setattr(module, name, forbidden)


def _slab():
    return build_slab("CsPbI3", "tetragonal", "2x2", layers=3, vacuum=12.0, fix_layers=1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A working directory holding every kind of bad (and one good) input file."""
    d = tmp_path_factory.mktemp("inputs")
    slab = _slab()
    write_structure(d / "slab.extxyz", slab)
    write_structure(d / "slab4.extxyz", build_slab("CsPbI3", "tetragonal", "2x2", layers=4))
    cu = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    cu.pbc = True
    cu.info.clear()
    write_structure(d / "cu.extxyz", cu)  # another material (an IndexError once)
    overlap = slab.copy()
    overlap.positions[1] = overlap.positions[0]
    write_structure(d / "overlap.extxyz", overlap)
    novac = slab.copy()
    z = novac.positions[:, 2]
    novac.cell[2, 2] = z.max() - z.min() + 1.0  # 1 Å between the slab and its periodic image
    write_structure(d / "novac.extxyz", novac)
    nan = slab.copy()
    nan.positions[3] = np.nan
    write_structure(d / "nan.extxyz", nan)
    nocell = slab.copy()
    nocell.cell = np.zeros((3, 3))
    nocell.pbc = False
    write_structure(d / "nocell.xyz", nocell)
    tagged = slab.copy()
    tags = tagged.get_tags()
    tags[-1] = 1
    tagged.set_tags(tags)
    write_structure(d / "tagged.extxyz", tagged)
    cut = slab.copy()
    del cut[find_layers(cut)[-1].tolist()]
    write_structure(d / "cut.extxyz", cut)
    (d / "garbage.extxyz").write_text("this is not a structure\n")
    (d / "empty.extxyz").write_text("")
    (d / "afile").write_text("a plain file\n")
    (d / "adir").mkdir()
    (d / "notadb.db").write_text("not a database\n")
    (d / "empty.db").write_bytes(b"")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    return d


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and directory below ``root`` with its size, mtime and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        st_ = p.lstat()
        digest = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(root))] = (p.is_dir(), st_.st_size, st_.st_mtime_ns, digest)
    return out


def run_inprocess(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, out: str, err: str, before: dict, after: dict, fragment: str = "") -> None:
    lines = err.splitlines()
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert len(lines) == 1, f"stderr is not exactly one line:\n{err}"
    assert lines[0].startswith("ligbind: error: "), lines[0]
    assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert "Traceback" not in err
    assert out == ""
    assert after == before, "bad input changed the working directory"


# ----------------------------------------------------------------------------------------- CLI: the table
@dataclass(frozen=True)
class Case:
    command: str  # subcommand path, e.g. "build slab"; "" for the top level
    option: str  # the option (or positional) fed a bad value
    argv: tuple[str, ...]
    fragment: str  # part of the one-line message

    @property
    def id(self) -> str:
        return f"{self.command or 'ligbind'} {self.option} {' '.join(self.argv)[-40:]}"


def _coverage_rows() -> list[tuple]:
    """Bad input of ``ligbind coverage`` and ``ligbind treat``."""
    cov = ("coverage", "--slab", "slab.extxyz", "--ligand", "methylamine", "--n", "2")
    tr = ("treat", "--slab", "slab.extxyz", "--treatment", "dimethyl-ether")
    return [
        ("coverage", "--slab", ("coverage", "--slab", "cu.extxyz", "--ligand", "methylamine", "--n", "1"), "not a lead-halide"),
        ("coverage", "--ligand", ("coverage", "--slab", "slab.extxyz", "--ligand", "unobtainium", "--n", "1"), "unknown ligand"),
        ("coverage", "--n", (*cov[:5], "--n", "5"), "coverage 5 does not fit"),
        ("coverage", "--n", (*cov[:5], "--n", "0"), "bad coverage '0'"),
        ("coverage", "--n", (*cov[:5], "--n", "3..1"), "bad coverage '3..1'"),
        ("coverage", "--n", (*cov[:5], "--n", "full"), "bad coverage 'full'"),
        ("coverage", "--n", (*cov[:5], "--n", "PP2"), "bad coverage 'pp2'"),
        ("coverage", "--n", (*cov[:5], "--n", "1", "monolayer", "9"), "coverage 9 does not fit"),
        # a coverage whose copies clash (slow: the placement search must fail): tests/test_coverage.py
        ("coverage", "--sets", (*cov, "--sets", "0"), "bad number of site sets 0"),
        ("coverage", "--seed", (*cov, "--seed", "-3"), "bad seed -3"),
        ("coverage", "--quiet", (*cov, "--quiet=1"), "ignored explicit"),
        ("coverage", "--protocol", (*cov, "--protocol", "xtb"), "unknown protocol 'xtb'"),
        ("coverage", "--set", (*cov, "--set", '"fmax"'), "must be a JSON object"),
        ("coverage", "--db", (*cov, "--db", "afile/x.db"), "afile is a file"),
        ("coverage", "--workdir", (*cov, "--workdir", "afile"), "not a directory"),
        ("coverage", "--json", (*cov, "--json=1"), "ignored explicit"),
        ("treat", "--slab", ("treat", "--slab", "cu.extxyz", "--treatment", "MAI-layer"), "not a lead-halide"),
        ("treat", "--treatment", ("treat", "--slab", "slab.extxyz", "--treatment", "unobtainium"), "unknown ligand"),
        ("treat", "--pairs", (*tr, "--pairs", "0"), "bad number of Frenkel pairs 0"),
        ("treat", "--seed", (*tr, "--seed", "x"), "not an integer"),
        ("treat", "--quiet", (*tr, "--quiet=1"), "ignored explicit"),
        ("treat", "--protocol", (*tr, "--protocol", "xtb"), "unknown protocol 'xtb'"),
        ("treat", "--set", (*tr, "--set", '"fmax"'), "must be a JSON object"),
        ("treat", "--db", (*tr, "--db", "afile/x.db"), "afile is a file"),
        ("treat", "--workdir", (*tr, "--workdir", "afile"), "not a directory"),
        ("treat", "--json", (*tr, "--json=1"), "ignored explicit"),
    ]  # fmt: skip


def _cases() -> list[Case]:
    bs = ("build", "slab")
    bl = ("build", "ligand")
    bc = ("build", "complex", "--slab", "slab.extxyz", "--ligand", "methylamine")
    bind = ("bind", "--slab", "slab.extxyz", "--ligand", "methylamine")
    fr = ("frenkel", "--slab", "slab.extxyz")
    cx = ("complex-ion", "--ligand", "acetate")
    rows = [
        ("", "--debug", ("--debug=yes", "ligands"), "ignored explicit argument"),
        ("", "command", ("bogus",), "invalid choice: 'bogus'"),
        ("", "command", (), "required: COMMAND"),
        ("build", "what", ("build", "sandcastle"), "invalid choice"),
        # build slab
        (
            "build slab",
            "--material",
            (*bs, "--material", "CsPbBr9", "-o", "s.extxyz"),
            "invalid choice: 'CsPbBr9'",
        ),
        ("build slab", "--phase", (*bs, "--phase", "orthorhombic", "-o", "s.extxyz"), "invalid choice"),
        (
            "build slab",
            "--phase",
            (*bs, "--material", "MAPbI3", "--phase", "cubic", "-o", "s.extxyz"),
            "phase",
        ),
        ("build slab", "--size", (*bs, "--size", "2x", "-o", "s.extxyz"), "bad slab size '2x'"),
        ("build slab", "--size", (*bs, "--size", "0x2", "-o", "s.extxyz"), "bad slab size"),
        ("build slab", "--size", (*bs, "--size", "40x40", "-o", "s.extxyz"), "at most 10"),
        ("build slab", "--size", (*bs, "--size", "3x3", "-o", "s.extxyz"), "must be even"),
        ("build slab", "--layers", (*bs, "--layers", "0", "-o", "s.extxyz"), "bad number of layers 0"),
        ("build slab", "--layers", (*bs, "--layers", "three", "-o", "s.extxyz"), "not an integer"),
        ("build slab", "--layers", (*bs, "--layers", "2.5", "-o", "s.extxyz"), "not an integer"),
        ("build slab", "--vacuum", (*bs, "--vacuum", "nan", "-o", "s.extxyz"), "not a finite number"),
        ("build slab", "--vacuum", (*bs, "--vacuum", "inf", "-o", "s.extxyz"), "not a finite number"),
        ("build slab", "--vacuum", (*bs, "--vacuum=-5", "-o", "s.extxyz"), "bad vacuum -5.0"),
        ("build slab", "--vacuum", (*bs, "--vacuum", "4", "-o", "s.extxyz"), "only 4.0 Å of vacuum"),
        ("build slab", "--fix-layers", (*bs, "--fix-layers", "3", "-o", "s.extxyz"), "--fix-layers 3"),
        ("build slab", "--fix-layers", (*bs, "--fix-layers=-1", "-o", "s.extxyz"), "need at least 0"),
        ("build slab", "--br-fraction", (*bs, "--br-fraction", "1.5", "-o", "s.extxyz"), "Br fraction"),
        (
            "build slab",
            "--br-fraction",
            (*bs, "--br-fraction", "nan", "-o", "s.extxyz"),
            "not a finite number",
        ),
        ("build slab", "--seed", (*bs, "--seed=-1", "-o", "s.extxyz"), "bad seed -1"),
        ("build slab", "--termination", (*bs, "--termination", "MAI", "-o", "s.extxyz"), "needs MA on the A"),
        ("build slab", "--termination", (*bs, "--termination", "X", "-o", "s.extxyz"), "unknown termination"),
        ("build slab", "--output", (*bs, "-o", "s.foo"), "structure format of 's.foo'"),
        ("build slab", "--output", (*bs, "-o", "afile/s.extxyz"), "afile is a file, not a directory"),
        ("build slab", "--output", (*bs, "-o", "adir"), "output file adir is a directory"),
        (
            "build slab",
            "--output",
            (*bs, "-o", "adir.extxyz/x/s.extxyz", "--layers", "0"),
            "bad number of layers",
        ),
        ("build slab", "--json", (*bs, "--json=no", "-o", "s.extxyz"), "ignored explicit argument"),
        # build ligand
        ("build ligand", "name", (*bl, "NotALigand", "-o", "l.xyz"), "unknown ligand 'NotALigand'"),
        ("build ligand", "name", (*bl, "-o", "l.xyz"), "NAME or --smiles"),
        ("build ligand", "--smiles", (*bl, "--smiles", "C1CC(", "-o", "l.xyz"), "cannot parse SMILES"),
        ("build ligand", "--smiles", (*bl, "--smiles", "C[O]", "-o", "l.xyz"), "open-shell (1 unpaired"),
        ("build ligand", "--smiles", (*bl, "--smiles", "O[CH]", "-o", "l.xyz"), "open-shell (2 unpaired"),
        ("build ligand", "--smiles", (*bl, "--smiles", "CC", "-o", "l.xyz"), "no anchor atom"),
        ("build ligand", "--smiles", (*bl, "methylamine", "--smiles", "CN", "-o", "l.xyz"), "not both"),
        (
            "build ligand",
            "--charge",
            (*bl, "--smiles", "CC(=O)[O-]", "--charge", "0", "-o", "l.xyz"),
            "charge +0",
        ),
        ("build ligand", "--charge", (*bl, "methylamine", "--charge", "x", "-o", "l.xyz"), "not an integer"),
        ("build ligand", "--seed", (*bl, "methylamine", "--seed", "1e3", "-o", "l.xyz"), "not an integer"),
        ("build ligand", "--output", (*bl, "methylamine", "-o", "afile/l.xyz"), "is a file"),
        ("build ligand", "--output", (*bl, "methylamine", "-o", "l.mol9"), "structure format"),
        ("build ligand", "--json", (*bl, "methylamine", "--json=1", "-o", "l.xyz"), "ignored explicit"),
        # build complex
        (
            "build complex",
            "--slab",
            ("build", "complex", "--slab", "missing.extxyz", "--ligand", "methylamine", "-o", "out"),
            "structure file not found",
        ),
        (
            "build complex",
            "--slab",
            ("build", "complex", "--slab", "adir", "--ligand", "methylamine", "-o", "out"),
            "is not a file",
        ),
        *[
            (
                "build complex",
                "--slab",
                ("build", "complex", "--slab", f, "--ligand", "methylamine", "-o", "out"),
                m,
            )
            for f, m in [
                ("cu.extxyz", "not a lead-halide perovskite slab (elements: Cu)"),
                ("overlap.extxyz", "overlap (0.00 Å apart"),
                ("novac.extxyz", "of vacuum along z"),
                ("nan.extxyz", "non-finite position"),
                ("nocell.xyz", "no 3D periodic cell"),
                ("tagged.extxyz", "give the bare slab"),
                ("cut.extxyz", "not PbI2-terminated: its top layer is CsI"),
                ("garbage.extxyz", "cannot read structure file"),
                ("empty.extxyz", "structure file"),
            ]
        ],
        (
            "build complex",
            "--ligand",
            ("build", "complex", "--slab", "slab.extxyz", "--ligand", "nope", "-o", "o"),
            "unknown ligand 'nope'",
        ),
        (
            "build complex",
            "--configs",
            (*bc, "--configs", "0", "-o", "out"),
            "bad number of configurations 0",
        ),
        ("build complex", "--configs", (*bc, "--configs", "100000", "-o", "out"), "at most 50"),
        ("build complex", "--mode", (*bc, "--mode", "weird", "-o", "out"), "invalid choice: 'weird'"),
        ("build complex", "--mode", (*bc, "--mode", "exchange", "-o", "out"), "no exchange anion"),
        ("build complex", "--seed", (*bc, "--seed", "abc", "-o", "out"), "not an integer"),
        ("build complex", "--output", (*bc, "-o", "afile"), "afile is a file, not a directory"),
        ("build complex", "--output", (*bc, "-o", "afile/sub"), "afile is a file"),
        ("build complex", "--json", (*bc, "--json=x", "-o", "out"), "ignored explicit"),
        # ligands, protocols
        ("ligands", "--json", ("ligands", "--json=1"), "ignored explicit"),
        ("ligands", "extra", ("ligands", "OA"), "unrecognized arguments"),
        ("protocols", "name", ("protocols", "dft-magic"), "unknown protocol 'dft-magic'"),
        ("protocols", "--set", ("protocols", "ml-screen", "--set", "{bad"), "not valid JSON"),
        (
            "protocols",
            "--set",
            ("protocols", "ml-screen", "--set", '{"relax": {"fmax": NaN}}'),
            "not a finite",
        ),
        (
            "protocols",
            "--set",
            ("protocols", "ml-screen", "--set", '{"relax": {"fmax": 1e999}}'),
            "not a finite",
        ),
        ("protocols", "--set", ("protocols", "ml-screen", "--set", "[1, 2]"), "must be a JSON object"),
        ("protocols", "--set", ("protocols", "ml-screen", "--set", '{"relx": {}}'), "relx"),
        ("protocols", "--set", ("protocols", "ml-screen", "--set", '{"relax": {"fmax": -1}}'), "fmax"),
        ("protocols", "--set", ("protocols", "ml-screen", "--set", '{"relax": {"steps": "many"}}'), "steps"),
        ("protocols", "--set", ("protocols", "--set", "{}"), "needs a protocol NAME"),
        ("protocols", "--json", ("protocols", "--json=x"), "ignored explicit"),
        # bind
        ("bind", "--slab", ("bind", "--slab", "cu.extxyz", "--ligand", "methylamine"), "not a lead-halide"),
        ("bind", "--slab", ("bind", "--slab", "overlap.extxyz", "--ligand", "methylamine"), "overlap"),
        ("bind", "--ligand", ("bind", "--slab", "slab.extxyz", "--ligand", "unobtainium"), "unknown ligand"),
        # ion–ligand complexes (ligbind complex-ion) and build slab --size auto --fit
        ("build slab", "--fit", (*bs, "--fit", "PP1", "-o", "s.extxyz"), "--fit chooses the cell"),
        ("build slab", "--size", (*bs, "--size", "auto", "-o", "s.extxyz"), "--size auto needs"),
        ("complex-ion", "--ion", (*cx, "--ion", "Xx2+"), "bad ion 'Xx2+'"),
        ("complex-ion", "--ion", (*cx, "--ion", "Pb"), "bad ion 'Pb'"),
        ("complex-ion", "--ligand", ("complex-ion", "--ligand", "unobtainium"), "unknown ligand"),
        ("complex-ion", "--configs", (*cx, "--configs", "0"), "bad number of configurations 0"),
        ("complex-ion", "--seed", (*cx, "--seed", "-3"), "bad seed -3: need at least 0"),
        ("complex-ion", "--protocol", (*cx, "--protocol", "ml-screen"), "cannot treat charged systems"),
        ("complex-ion", "--protocol", (*cx, "--protocol", "xtb"), "unknown protocol 'xtb'"),
        ("complex-ion", "--set", (*cx, "--set", '{"relax": {"fmax": "abc"}}'), "fmax"),
        ("complex-ion", "--dry-run", (*cx, "--dry-run"), "the gpaw backend has none"),
        ("complex-ion", "--include-flagged", (*cx, "--include-flagged=1"), "ignored explicit"),
        ("complex-ion", "--quiet", (*cx, "--quiet=1"), "ignored explicit"),
        ("complex-ion", "--json", (*cx, "--json=1"), "ignored explicit"),
        ("complex-ion", "--db", (*cx, "--db", "notadb.db"), "is not an SQLite (ase.db) database"),
        ("complex-ion", "--workdir", (*cx, "--workdir", "afile"), "is a file, not a directory"),
        ("bind", "--configs", (*bind, "--configs", "0"), "bad number of configurations 0"),
        ("bind", "--configs", (*bind, "--configs", "2.7"), "not an integer"),
        ("bind", "--mode", (*bind, "--mode", "weird"), "invalid choice: 'weird'"),
        ("bind", "--mode", (*bind, "--mode", "exchange"), "no exchange anion"),
        ("bind", "--seed", (*bind, "--seed", "-3"), "bad seed -3: need at least 0"),
        ("bind", "--protocol", (*bind, "--protocol", "dft-magic"), "unknown protocol"),
        ("bind", "--set", (*bind, "--set", '{"relax": {"fmax": "abc"}}'), "fmax"),
        ("bind", "--set", (*bind, "--set", '{"relax": {"fmax": Infinity}}'), "not a finite number"),
        ("bind", "--db", (*bind, "--db", "notadb.db"), "is not an SQLite (ase.db) database"),
        ("bind", "--db", (*bind, "--db", "adir"), "is a directory"),
        ("bind", "--db", (*bind, "--db", "afile/x.db"), "afile is a file"),
        ("bind", "--workdir", (*bind, "--workdir", "afile"), "is a file, not a directory"),
        ("bind", "--workdir", (*bind, "--workdir", "afile/runs"), "afile is a file"),
        ("bind", "--dry-run", (*bind, "--dry-run"), "use it with a vasp protocol"),
        ("bind", "--verify", (*bind, "--verify", "ml-screen"), "--verify needs a DFT protocol"),
        ("bind", "--verify", (*bind, "--verify", "nope"), "unknown protocol 'nope'"),
        ("bind", "--verify", (*bind, "--verify", "gpaw-laptop", "--mode", "exchange"), "no exchange anion"),
        ("bind", "--top-k", (*bind, "--verify", "gpaw-laptop", "--top-k", "0"), "--top-k"),
        ("bind", "--reserve", (*bind, "--verify", "gpaw-laptop", "--reserve", "-1"), "--reserve"),
        ("bind", "--top-k", (*bind, "--top-k", "nan"), "--top-k"),
        ("bind", "--include-flagged", (*bind, "--include-flagged=1"), "ignored explicit"),
        ("bind", "--quiet", (*bind, "--quiet=1"), "ignored explicit"),
        ("bind", "--json", (*bind, "--json=1"), "ignored explicit"),
        # frenkel
        ("frenkel", "--slab", ("frenkel", "--slab", "novac.extxyz"), "of vacuum along z"),
        ("frenkel", "--ligand", (*fr, "--ligand", "unobtainium"), "unknown ligand"),
        ("frenkel", "--mode", (*fr, "--ligand", "methylamine", "--mode", "weird"), "invalid choice"),
        ("frenkel", "--mode", (*fr, "--mode", "exchange"), "give --ligand too"),
        ("frenkel", "--configs", (*fr, "--ligand", "methylamine", "--configs", "0"), "configurations 0"),
        ("frenkel", "--pairs", (*fr, "--pairs", "0"), "bad number of Frenkel pairs 0"),
        ("frenkel", "--pairs", (*fr, "--pairs", "many"), "not an integer"),
        (
            "frenkel",
            "--host-refinements",
            (*fr, "--host-refinements", "6"),
            "bad host refinement rounds 6: at most 5",
        ),
        ("frenkel", "--protocol", (*fr, "--protocol", "xtb"), "unknown protocol 'xtb'"),
        ("frenkel", "--set", (*fr, "--set", '"fmax"'), "must be a JSON object"),
        ("frenkel", "--db", (*fr, "--db", "afile/x.db"), "afile is a file"),
        ("frenkel", "--workdir", (*fr, "--workdir", "afile"), "not a directory"),
        ("frenkel", "--json", (*fr, "--json=1"), "ignored explicit"),
        # coverage, treat (ligbind/cli/coverage.py)
        *_coverage_rows(),
        # vacancy, barrier (ligbind/cli/defects.py)
        *_defect_rows(),
        # results, screen, run, status
        ("results", "campaign", ("results", "../../escape"), "campaign file not found"),
        ("results", "campaign", ("results", "bad name"), "not a safe campaign name"),
        ("results", "campaign", ("results", "nope"), "unknown campaign 'nope'"),
        ("results", "--db", ("results", "--db", "missing.db"), "results database not found"),
        ("results", "--db", ("results", "--db", "empty.db"), "is empty"),
        ("results", "--db", ("results", "--db", "notadb.db"), "is not an SQLite"),
        ("results", "--db", ("results",), "results database not found: ligbind.db"),
        (
            "results",
            "--output",
            ("results", "--db", "missing.db", "-o", "afile"),
            "results database not found",
        ),
        ("results", "--output", ("results", "-o", "afile"), "is a file, not a directory"),
        ("results", "--json", ("results", "--json=1"), "ignored explicit"),
        ("screen", "campaign", ("screen", "missing.yaml"), "campaign file not found"),
        ("screen", "campaign", ("screen", "adir"), "is not a file"),
        ("screen", "campaign", ("screen", "binary.yaml"), "not a text (UTF-8) file"),
        ("screen", "--launchpad", ("screen", "missing.yaml", "--launchpad", "lp.yaml"), "not found"),
        ("screen", "--json", ("screen", "afile", "--json=1"), "ignored explicit"),
        ("run", "campaign", ("run", "../../escape"), "campaign file not found"),
        ("run", "campaign", ("run", ".hidden"), "not a safe campaign name"),
        ("run", "campaign", ("run", "nope"), "unknown campaign 'nope'"),
        ("run", "--launchpad", ("run", "nope", "--launchpad", "missing.yaml"), "launchpad file not found"),
        ("run", "--max", ("run", "nope", "--max", "0"), "need at least 1"),
        ("run", "--workers", ("run", "nope", "--workers", "0"), "bad number of workers 0"),
        ("run", "--workers", ("run", "nope", "--workers", "two"), "not an integer"),
        ("run", "--json", ("run", "nope", "--json=1"), "ignored explicit"),
        ("run", "--retry-failed", ("run", "nope", "--retry-failed=yes"), "ignored explicit"),
        ("status", "campaign", ("status", "a/b/c"), "campaign file not found"),
        ("status", "--launchpad", ("status", "--launchpad", "adir"), "is not a file"),
        ("status", "--launchpad", ("status", "--launchpad", "afile"), "must be a YAML mapping"),
        ("status", "--launchpad", ("status", "--launchpad", "binary.yaml"), "is not valid YAML"),
        ("status", "--json", ("status", "--json=1"), "ignored explicit"),
    ]
    return [Case(c, o, tuple(a), f) for c, o, a, f in rows]


def _defect_rows() -> list[tuple]:
    """Bad input of ``ligbind vacancy`` and ``ligbind barrier``: halide 12 is a top-surface I of slab.extxyz,
    its nearest I neighbour is 14 (4.46 Å, across the cell edge) and halide 13 is 6.31 Å away."""
    va = ("vacancy", "--slab", "slab.extxyz")
    ba = ("barrier", "--slab", "slab.extxyz")
    rows = []
    for cmd, base in (("vacancy", va), ("barrier", ba)):
        rows += [
            (cmd, "--slab", (cmd, "--slab", "cu.extxyz"), "not a lead-halide"),
            (cmd, "--slab", (cmd, "--slab", "cut.extxyz"), "not PbI2-terminated"),
            (cmd, "--ligand", (*base, "--ligand", "unobtainium"), "unknown ligand"),
            (cmd, "--mode", (*base, "--mode", "exchange"), "give --ligand too"),
            (cmd, "--configs", (*base, "--ligand", "methylamine", "--configs", "0"), "configurations 0"),
            (cmd, "--site", (*base, "--site", "3"), "site 3 is not a top-surface halide (I below the top"),
            (cmd, "--site", (*base, "--site", "0"), "not a halide"),
            (cmd, "--site", (*base, "--site", "999"), "no such atom"),
            (cmd, "--site", (*base, "--site", "-1"), "bad site index -1"),
            (cmd, "--protocol", (*base, "--protocol", "xtb"), "unknown protocol 'xtb'"),
            (cmd, "--set", (*base, "--set", '{"relax": {"fmax": -1}}'), "fmax"),
            (cmd, "--db", (*base, "--db", "notadb.db"), "is not an SQLite"),
            (cmd, "--workdir", (*base, "--workdir", "afile"), "not a directory"),
            (cmd, "--json", (*base, "--json=1"), "ignored explicit"),
        ]
    rows += [
        ("vacancy", "--sites", (*va, "--sites", "0"), "bad number of vacancy sites 0"),
        ("vacancy", "--host-refinements", (*va, "--host-refinements", "5"), "bad host refinement rounds 5"),
        ("vacancy", "--mu-x", (*va, "--mu-x", "0.5"), "at most 0"),
        ("vacancy", "--mu-x", (*va, "--mu-x", "nan"), "not a finite number"),
        (
            "vacancy",
            "--charge",
            (*va, "--protocol", "ml-screen", "--charge", "1", "--mu-e", "-4"),
            "ml-screen (chgnet) cannot",
        ),
        ("vacancy", "--charge", (*va, "--charge", "7"), "at most 2"),
        ("vacancy", "--charge", (*va, "--protocol", "gpaw-quick", "--charge", "1"), "needs the electron"),
        ("vacancy", "--mu-e", (*va, "--mu-e", "-4"), "give --charge too"),
        ("vacancy", "--protocol", (*va, "--protocol", "gpaw-quick"), "odd electron count"),
        ("barrier", "--protocol", (*ba, "--protocol", "gpaw-quick"), "odd electron count"),
        ("barrier", "--hopper", (*ba, "--site", "12", "--hopper", "13"), "longer than the 5.5 Å cut-off"),
        ("barrier", "--hopper", (*ba, "--site", "12", "--hopper", "12"), "is the vacancy site itself"),
        ("barrier", "--hopper", (*ba, "--site", "12", "--hopper", "2"), "not a top-surface halide"),
        ("barrier", "--hopper", (*ba, "--hopper", "14"), "--hopper needs --site"),
        ("barrier", "--images", (*ba, "--images", "12"), "bad number of NEB images 12: at most 9"),
        ("barrier", "--images", (*ba, "--images", "2"), "need at least 3"),
        ("barrier", "--neb-steps", (*ba, "--neb-steps", "0"), "bad NEB step limit 0"),
        (
            "barrier",
            "--endpoint-refinements",
            (*ba, "--endpoint-refinements", "6"),
            "bad endpoint refinement rounds 6: at most 5",
        ),
        (
            "barrier",
            "--preconverge",
            (*ba, "--protocol", "ml-screen", "--preconverge", "ml-screen"),
            "is the band's own protocol",
        ),
        ("barrier", "--preconverge", (*ba, "--preconverge", "gpaw-quick"), "is a DFT protocol"),
        ("barrier", "--preconverge", (*ba, "--preconverge", "nope"), "unknown protocol 'nope'"),
    ]
    return rows


CASES = _cases()
CASES += [Case(c, o, tuple(a), f) for c, o, a, f in _PASSIVATION_CLI]  # tests/bad_input_passivation.py


def _parser_options() -> set[tuple[str, str]]:
    """(subcommand path, option) for every option and positional of the real parser (help excluded)."""
    found: set[tuple[str, str]] = set()

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or (path and "--debug" in action.option_strings):
                continue
            if isinstance(action, argparse._SubParsersAction):
                found.add((path, action.dest))
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())
                continue
            long = [o for o in action.option_strings if o.startswith("--")]
            found.add((path, long[0] if long else action.dest))

    walk(cli.build_parser(), "")
    return found


def test_the_table_covers_every_option_of_every_subcommand():
    covered = {(c.command, c.option) for c in CASES}
    missing = _parser_options() - covered
    assert not missing, f"options without a bad-input case: {sorted(missing)}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_cli_input_is_one_line_exit_2_nothing_written(case, inputs, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    before = snapshot(inputs)
    code, out, err = run_inprocess(list(case.argv), capsys)
    assert_refused(code, out, err, before, snapshot(inputs), case.fragment)


def test_unwritable_output_is_refused(inputs, capsys, monkeypatch, tmp_path):
    """No write permission where an output would be created (root ignores file modes: simulated by os.access)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: False if Path(p) == locked and mode & os.W_OK else real_access(p, mode),
    )
    monkeypatch.chdir(inputs)
    for argv, fragment in [
        (["build", "slab", "-o", str(locked / "s.extxyz")], "no permission to write"),
        (
            ["build", "complex", "--slab", "slab.extxyz", "--ligand", "methylamine", "-o", str(locked)],
            "no permission",
        ),
        (
            ["bind", "--slab", "slab.extxyz", "--ligand", "methylamine", "--db", str(locked / "x.db")],
            "no permission",
        ),
        (["frenkel", "--slab", "slab.extxyz", "--workdir", str(locked / "runs")], "no permission"),
    ]:
        before = snapshot(inputs), snapshot(tmp_path)
        code, out, err = run_inprocess(argv, capsys)
        assert_refused(code, out, err, before, (snapshot(inputs), snapshot(tmp_path)), fragment)


# --------------------------------------------------------------------------- CLI: generated bad values
def _bad_int(lo: int, hi: int):
    def bad(text: str) -> bool:
        try:
            return not lo <= int(text) <= hi
        except ValueError:
            return True

    return st.one_of(
        st.integers(max_value=lo - 1).map(str),
        st.integers(min_value=hi + 1).map(str),
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not float(x).is_integer()).map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e3", "0x10", "", " ", "three", "١٠٠٠٠٠٠٠٠٠٠٠"]),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    ).filter(bad)


def _bad_float(lo: float, hi: float, lo_open: bool = False):
    def bad(text: str) -> bool:
        try:
            x = float(text)
        except ValueError:
            return True
        return not math.isfinite(x) or x > hi or (x <= lo if lo_open else x < lo)

    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e400", "", "twelve", "1,5"]),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    ).filter(bad)


def _json_or_none(text: str):
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


def _bad_choice(choices):
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=16).filter(
        lambda t: t not in choices
    )


BASE = {
    "build slab": ["build", "slab", "-o", "s.extxyz"],
    "build ligand": ["build", "ligand", "methylamine", "-o", "l.xyz"],
    "build complex": ["build", "complex", "--slab", "slab.extxyz", "--ligand", "methylamine", "-o", "out"],
    "bind": ["bind", "--slab", "slab.extxyz", "--ligand", "methylamine"],
    "frenkel": ["frenkel", "--slab", "slab.extxyz", "--ligand", "methylamine"],
    "protocols": ["protocols", "ml-screen"],
    "run": ["run", "demo"],
}
SEED = (0, 2**32 - 1)
GENERATED = {
    ("build slab", "--layers"): _bad_int(1, 21),
    ("build slab", "--vacuum"): _bad_float(MIN_VACUUM, 100),
    ("build slab", "--fix-layers"): _bad_int(0, 2),
    ("build slab", "--br-fraction"): _bad_float(0, 1),
    ("build slab", "--seed"): _bad_int(*SEED),
    ("build slab", "--size"): st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
        st.tuples(st.integers(-5, 50), st.integers(-5, 50)).map(lambda t: f"{t[0]}x{t[1]}"),
    ).filter(lambda t: not _valid_size(t)),
    ("build slab", "--material"): _bad_choice({"CsPbI3", "MAPbI3"}),
    ("build slab", "--phase"): _bad_choice({"cubic", "tetragonal"}),
    ("build ligand", "--seed"): _bad_int(*SEED),
    ("build ligand", "--charge"): _bad_int(0, 0),
    ("build complex", "--configs"): _bad_int(1, 50),
    ("build complex", "--seed"): _bad_int(*SEED),
    ("build complex", "--mode"): _bad_choice({"neutral"}),
    ("bind", "--configs"): _bad_int(1, 50),
    ("bind", "--seed"): _bad_int(*SEED),
    ("bind", "--mode"): _bad_choice({"neutral"}),
    ("bind", "--protocol"): _bad_choice({"ml-screen", "gpaw-laptop", "vasp-pbe-d3"}),
    ("frenkel", "--configs"): _bad_int(1, 50),
    ("frenkel", "--pairs"): _bad_int(1, 50),
    ("frenkel", "--host-refinements"): _bad_int(0, 5),
    ("frenkel", "--mode"): _bad_choice({"neutral"}),
    ("protocols", "--set"): st.one_of(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),
        st.sampled_from(
            [
                '{"relax": {"fmax": NaN}}',
                '{"relax": {"fmax": -0.1}}',
                '{"relax": {"steps": 0}}',
                '{"relax": {"steps": 1.5}}',
                '{"nope": 1}',
                "[]",
                "null",
                "3",
            ]
        ),
    ).filter(lambda t: _json_or_none(t) != {}),
    ("run", "--workers"): _bad_int(1, 1024),
    ("run", "--max"): _bad_int(1, 10**9),
}


@SETTINGS
@given(data=st.data())
def test_generated_bad_option_values(data, inputs, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    command, option = data.draw(st.sampled_from(sorted(GENERATED)), label="option")
    value = data.draw(GENERATED[(command, option)], label="value")
    argv = [*BASE[command], f"{option}={value}"]
    before = snapshot(inputs)
    code, out, err = run_inprocess(argv, capsys)
    assert_refused(code, out, err, before, snapshot(inputs))


# ------------------------------------------------------------------------------------ campaigns: the table
MINI = {
    "name": "probe",
    "protocol": "ml-screen",
    "overrides": {"relax": {"fmax": 0.1}},
    "ligands": ["methylamine", "acetic-acid"],
    "configs": 2,
    "compute": {"binding": True},
}


def _set(spec: dict, path: str, value) -> dict:
    """A copy of ``spec`` with ``path`` ('slab.layers', 'ligands[].smiles', 'compute.frenkel.pairs') set."""
    out = yaml.safe_load(yaml.safe_dump(spec))
    if path.startswith("ligands[]."):
        key = path.split(".", 1)[1]
        item = (
            {"ligand": value, "name": "alias"} if key == "ligand" else {"smiles": "CC(=O)O", "name": "acid"}
        )
        item[key] = value
        out["ligands"] = ["methylamine", item]
        return out
    if path.startswith("verify."):
        out["verify"] = {"protocol": "gpaw-laptop"}
    *parents, key = path.split(".")
    node = out
    for p in parents:
        node = node.setdefault(p, {}) if isinstance(node.get(p), dict) or p not in node else node[p]
    node[key] = value
    return out


CAMPAIGN_TABLE = [
    ("configs", "abc", "configs: Input should be a valid integer"),
    ("configs", 2.7, "configs: Input should be a valid integer"),
    ("configs", True, "configs: Input should be a valid integer"),
    ("configs", 100000, "configs: Input should be less than or equal to 50"),
    ("configs", 0, "configs: Input should be greater than or equal to 1"),
    ("seed", "abc", "seed: Input should be a valid integer"),
    ("seed", -1, "seed: Input should be greater than or equal to 0"),
    ("compute", ["binding"], "compute: Input should be a mapping (key: value) (got ['binding'])"),
    ("compute.bindng", True, "compute.bindng: unknown key (did you mean 'binding'?"),
    ("compute.binding", "yes", "compute.binding: Input should be a valid boolean"),
    ("compute.frenkel.pairs", 0, "compute.frenkel.pairs"),
    ("compute.frenkel.host_refinements", 6, "compute.frenkel.host_refinements"),
    ("compute.frenkel.pair", 3, "compute.frenkel.pair: unknown key"),
    ("compute.frenkel.ligands", ["OA"], "Frenkel ligand 'OA' is not among"),
    ("compute.frenkel.ligands", ["methylamine", "methylamine"], "listed twice"),
    ("compute.frenkel.bare", 1, "compute.frenkel.bare: Input should be a valid boolean"),
    ("compute.complexes.ion", "Xx2+", "compute.complexes.ion: bad ion"),
    ("compute.complexes.protocol", "ml-screen", "compute.complexes.protocol: 'ml-screen'"),
    ("compute.complexes.ligands", ["unobtainium"], "compute.complexes.ligands.0"),
    ("compute.complexes.configs", 0, "compute.complexes.configs"),
    ("compute.complexes.ionn", "Pb2+", "compute.complexes.ionn: unknown key"),
    ("slab.size", "auto2", "slab.size"),
    ("compute.vacancy.ligands", ["OA"], "vacancy ligand 'OA' is not among"),
    ("compute.vacancy.ligands", ["methylamine", "methylamine"], "listed twice"),
    ("compute.vacancy.sites", 0, "compute.vacancy.sites"),
    ("compute.vacancy.host_refinements", -1, "compute.vacancy.host_refinements"),
    ("compute.vacancy.mu_x", 0.5, "compute.vacancy.mu_x"),
    ("compute.vacancy.charge", 1, "compute.vacancy.charge: unknown key"),
    ("compute.migration.images", 12, "compute.migration.images"),
    ("compute.migration.endpoint_refinements", -1, "compute.migration.endpoint_refinements"),
    ("compute.migration.ligands", ["OA"], "migration ligand 'OA' is not among"),
    ("compute.migration.bare", "yes", "compute.migration.bare: Input should be a valid boolean"),
    ("compute.vacancy", ["bare"], "compute.vacancy: Input should be a mapping"),
    ("compute.migration", True, "compute.migration: Input should be a mapping"),
    ("compute.coadsorption", [["methylamine"]], "compute.coadsorption.0"),
    ("compute.coadsorption", [["methylamine", "OA"]], "coadsorption pair"),
    ("compute.coadsorption", "methylamine+acetic-acid", "compute.coadsorption"),
    ("slab", "2x2", "slab: Input should be a mapping (key: value) (got '2x2')"),
    ("slab.sise", "2x2", "slab.sise: unknown key (did you mean 'size'?"),
    ("slab.size", "2x", "slab.size"),
    ("slab.size", "3x3", "must be even"),
    ("slab.layers", 0, "slab.layers"),
    ("slab.layers", "3", "slab.layers: Input should be a valid integer"),
    ("slab.vacuum", float("nan"), "slab.vacuum: not a finite number"),
    ("slab.vacuum", float("inf"), "slab.vacuum: not a finite number"),
    ("slab.vacuum", 4.0, "only 4.0 Å of vacuum"),
    ("slab.fix_layers", 3, "--fix-layers 3"),
    ("slab.br_fraction", 2, "slab.br_fraction"),
    ("slab.seed", -1, "slab.seed"),
    ("slab.termination", "MAI", "slab.termination: termination 'MAI' needs MA"),
    ("slab.termination", "AX", "ligands.0: the slab is not PbI2-terminated: its top layer is AX"),
    ("overrides.relax.fmax", -0.1, "overrides"),
    ("overrides.relax.fmax", "abc", "overrides"),
    ("overrides.relax.fmax", float("nan"), "overrides.relax.fmax: not a finite number"),
    ("overrides.relax.steps", -5, "overrides"),
    ("overrides.relax.fmxa", 0.1, "overrides"),
    ("overrides", ["relax"], "overrides"),
    ("overrides.relax.fmax", True, "overrides"),  # a boolean is not a number
    ("overrides.relax.steps", True, "overrides"),
    ("overrides.is_dft", True, "overrides"),  # follows the backend, cannot be set
    ("name", "../../escape", "name: '../../escape' is not a safe campaign name"),
    ("name", "a/b", "not a safe campaign name"),
    ("name", "..", "not a safe campaign name"),
    ("name", 42, "name: Input should be a valid string"),
    ("description", ["x"], "description"),
    ("material", "CsPbBr9", "material"),
    ("phase", "orthorhombic", "phase: unknown phase 'orthorhombic'"),
    ("protocol", "dft-magic", "protocol: unknown protocol 'dft-magic'"),
    ("mode", "weird", "mode"),
    ("mode", "exchange", "no exchange anion"),
    ("truncate_tails", 0, "truncate_tails"),
    ("truncate_tails", "long", "truncate_tails"),
    ("ligands", [], "ligands: List should have at least 1 item"),
    ("ligands", "methylamine", "ligands: Input should be a valid list"),
    ("ligands", ["methylamine", "unobtainium"], "ligands.1: unknown ligand 'unobtainium'"),
    ("ligands", ["methylamine", "methylamine"], "listed twice"),
    ("ligands", ["methylamine", {"smiles": "CN", "name": "mm"}], "is the same molecule as 'methylamine'"),
    ("ligands", ["methylamine", {"smiles": "NC", "name": "mm"}], "is the same molecule as 'methylamine'"),
    ("ligands", ["methylamine", 7], "ligands.1"),
    ("ligands[].smiles", "C[O]", "open-shell"),
    ("ligands[].smiles", "C1CC((", "cannot parse SMILES"),
    ("ligands[].smiles", 12, "ligands.1.smiles: Input should be a valid string"),
    ("ligands[].charge", 1, "charge +1 given"),
    ("ligands[].charge", "zero", "ligands.1.charge"),
    ("ligands[].name", "acid/../x", "cannot label a ligand"),
    ("ligands[].name", "OA", "is a library entry"),
    ("ligands[].mode", "weird", "ligands.1.mode"),
    ("ligands[].ligand", "methylamine", "is the same molecule as 'methylamine'"),
    ("ligands[].ligand", "unobtainium", "ligands.1: unknown ligand 'unobtainium'"),
    ("ligands[].colour", "blue", "ligands.1.colour: unknown key"),
    ("workdir", "afile/runs", "workdir: workdir afile/runs: "),
    ("workdir", "afile", "workdir: workdir afile is a file"),
    ("workdir", 3, "workdir: Input should be a valid string"),
    ("store", "afile/x.db", "store: results store afile/x.db"),
    ("store", "notadb.db", "is not an SQLite"),
    ("store", "adir", "is a directory"),
    ("colour", "blue", "colour: unknown key"),
    ("verify", "gpaw-laptop", "verify: Input should be a mapping"),
    ("verify.protocol", "ml-screen", "verify.protocol 'ml-screen' is not a DFT protocol"),
    ("verify.protocol", "dft-magic", "verify.protocol: unknown protocol 'dft-magic'"),
    ("verify.overrides", {"gpaw": {"h": -1}}, "verify.overrides"),
    ("verify.top_k", 0, "verify.top_k"),
    ("verify.reserve", -1, "verify.reserve"),
    ("verify.reserve", 6, "verify.reserve"),
    ("verify.threshold", float("nan"), "verify.threshold: not a finite number"),
    ("verify.colour", "blue", "verify.colour: unknown key"),
    # compute.coverage, compute.treatments (ligbind/engine/coverage_steps.py)
    ("compute.coverage.ligands", ["OA"], "coverage ligand 'OA' is not among"),
    ("compute.coverage.ligands", ["methylamine", "methylamine"], "listed twice"),
    ("compute.coverage", {"ligands": ["methylamine"], "n": 5}, "coverage 5 does not fit"),
    ("compute.coverage", {"ligands": ["methylamine"], "n": "0..2"}, "bad coverage range"),
    ("compute.coverage", {"ligands": ["methylamine"], "n": "full"}, "compute.coverage.n"),
    ("compute.coverage", {"ligands": ["methylamine"], "n": [0]}, "compute.coverage.n"),
    ("compute.coverage.sets", 0, "compute.coverage.sets"),
    ("compute.coverage.colour", 1, "compute.coverage.colour: unknown key"),
    ("compute.coverage", "1..4", "compute.coverage: Input should be a mapping"),
    ("compute.treatments", ["unobtainium"], "compute.treatments.0: unknown ligand 'unobtainium'"),
    ("compute.treatments", ["MAI-layer", "mai-layer"], "listed twice"),
    ("compute.treatments", "MAI-layer", "compute.treatments"),
    ("compute.treatments", [""], "compute.treatments.0"),
]


CAMPAIGN_TABLE += _PASSIVATION_CAMPAIGN  # tests/bad_input_passivation.py


def _screen(spec_or_text, inputs: Path, capsys) -> tuple[int, str, str, dict, dict]:
    path = inputs / "campaign.yaml"
    path.write_text(spec_or_text if isinstance(spec_or_text, str) else yaml.safe_dump(spec_or_text))
    before = snapshot(inputs)
    code, out, err = run_inprocess(["screen", "campaign.yaml"], capsys)
    return code, out, err, before, snapshot(inputs)


@pytest.mark.parametrize(("path", "value", "fragment"), CAMPAIGN_TABLE, ids=lambda v: str(v)[:30])
def test_bad_campaign_value(path, value, fragment, inputs, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    code, out, err, before, after = _screen(_set(MINI, path, value), inputs, capsys)
    assert_refused(code, out, err, before, after, fragment)
    assert err.startswith("ligbind: error: campaign campaign.yaml: ")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\nligands: [a, b\n", "not valid YAML (line"),
        ("name: x\nconfigs: 2\nconfigs: 3\nligands: [methylamine]\n", "duplicate key 'configs'"),
        ("- methylamine\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
        ("ligands: [methylamine]\n1: x\n", "keys must be names"),
        ("? [a, b]\n: 1\nligands: [methylamine]\n", "keys must be names"),
        ("ligands: [methylamine]\nconfigs: .nan\n", "configs: not a finite number"),
    ],
)
def test_bad_campaign_file(text, fragment, inputs, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    code, out, err, before, after = _screen(text, inputs, capsys)
    assert_refused(code, out, err, before, after, fragment)


def test_campaign_name_from_an_unsafe_file_name(inputs, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    spec = {k: v for k, v in MINI.items() if k != "name"}
    path = inputs / "my campaign.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        before = snapshot(inputs)
        code, out, err = run_inprocess(["screen", "my campaign.yaml"], capsys)
        assert_refused(code, out, err, before, snapshot(inputs), "taken from the file name")
    finally:
        path.unlink()


# ---------------------------------------------------------------------------- campaigns: generated values
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
    st.lists(st.one_of(st.integers(), _TEXT), max_size=3),
    st.dictionaries(_TEXT, st.integers(), max_size=2),
)
LIBRARY = {n.lower() for n in load_library()}
LIBRARY_NAMES = set(load_library())
PROTOCOLS = set(cli._protocol_names())


def _valid_size(v) -> bool:
    """Even in-plane repeats 2..10 (the tilted phase needs even ones), as 'NxM' or [N, M]."""
    if isinstance(v, str):
        parts = v.lower().split("x")
        try:
            v = [int(p) for p in parts]
        except ValueError:
            return False
    return (
        isinstance(v, list) and len(v) == 2 and all(type(n) is int and 2 <= n <= 10 and n % 2 == 0 for n in v)
    )


def _number(v) -> bool:
    return type(v) in (int, float)


def _int_in(lo, hi, none_ok=True):
    return lambda v: (v is None and none_ok) or (type(v) is int and lo <= v <= hi)


def _bad(valid, strategy=_ANY):
    return strategy.filter(lambda v: not valid(v))


SAFE_NAME = __import__("re").compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
# For every campaign key: values that are wrong by the documented rules (README, issue 8), from an independent
# statement of what is valid (None = key absent = default wherever the key is optional).
CAMPAIGN_BAD = {
    "name": _bad(lambda v: v is None or (isinstance(v, str) and SAFE_NAME.fullmatch(v) and ".." not in v)),
    "description": _bad(lambda v: v is None or isinstance(v, str)),
    "material": _bad(lambda v: v in (None, "CsPbI3")),
    "phase": _bad(lambda v: v in (None, "cubic", "tetragonal")),
    "slab": _bad(lambda v: v is None or isinstance(v, dict) and not v),
    "slab.size": _bad(
        lambda v: v is None or _valid_size(v) or (isinstance(v, str) and v.strip().lower() == "auto")
    ),
    "slab.layers": _bad(_int_in(2, 21)),
    "slab.vacuum": _bad(lambda v: v is None or (_number(v) and MIN_VACUUM <= v <= 100)),
    "slab.fix_layers": _bad(_int_in(0, 2)),
    "slab.br_fraction": _bad(lambda v: v is None or (_number(v) and 0 <= v <= 1)),
    "slab.seed": _bad(_int_in(0, 2**32 - 1)),
    # the campaign's ligands bind in neutral mode, which an AX (CsI) surface refuses
    "slab.termination": _bad(lambda v: v in (None, "PbX2", "PbI2")),
    "protocol": _bad(lambda v: v in (None, "ml-screen", "gpaw-laptop", "vasp-pbe-d3")),
    "overrides": st.one_of(
        _bad(lambda v: v is None or isinstance(v, dict) and not v),
        st.builds(lambda k: {k: {"fmax": 0.1}}, _TEXT.filter(lambda k: k not in ("relax", "slab", "run"))),
    ),
    # strings left out: pydantic reads "0.1" as 0.1 (the table has the non-numeric string case)
    "overrides.relax.fmax": _bad(lambda v: v is None or isinstance(v, str) or (_number(v) and 0 < v <= 10)),
    "overrides.relax.steps": _bad(
        lambda v: v is None or isinstance(v, str) or (_number(v) and v >= 1 and float(v).is_integer())
    ),
    "ligands": st.one_of(
        _bad(
            lambda v: (
                isinstance(v, list) and v and all(isinstance(x, str) and x.lower() in LIBRARY for x in v)
            )
        ),
        st.lists(_TEXT.filter(lambda t: t.lower() not in LIBRARY), min_size=1, max_size=2),
    ),
    "ligands[].name": _bad(
        lambda v: (
            v is None
            or (
                isinstance(v, str)
                and v not in LIBRARY_NAMES
                and "/" not in v
                and v.strip()
                and not v.startswith(".")
                and v.isprintable()
                and v != "methylamine"
            )
        )
    ),
    "ligands[].smiles": st.one_of(
        _bad(lambda v: isinstance(v, str)),
        st.sampled_from(
            ["C1CC((", "C[O]", "[CH2]", "CC", "[Na]", "", "CN", "NC", "C(N", "c1ccccc1[", "[O][O]"]
        ),
    ),
    "ligands[].ligand": st.one_of(
        _bad(lambda v: v is None or isinstance(v, str)),
        _TEXT.filter(lambda t: t.lower() not in LIBRARY - {"methylamine"}),
    ),
    "ligands[].mode": _bad(lambda v: v in (None, "neutral")),
    "ligands[].charge": _bad(lambda v: v is None or (type(v) is int and v == 0)),
    "mode": _bad(lambda v: v in (None, "neutral")),
    "configs": _bad(_int_in(1, 50)),
    "truncate_tails": _bad(_int_in(1, 200)),
    "compute": _bad(lambda v: v is None or isinstance(v, dict) and not v),
    "compute.binding": _bad(lambda v: v is None or isinstance(v, bool)),
    "compute.coadsorption": st.one_of(
        _bad(lambda v: v is None or v == []),
        st.lists(st.lists(_TEXT, min_size=1, max_size=3), min_size=1, max_size=2),
    ).filter(
        lambda v: (
            not (
                isinstance(v, list)
                and all(
                    isinstance(p, list) and len(p) == 2 and set(p) <= {"methylamine", "acetic-acid"}
                    for p in v
                )
            )
        )
    ),
    "compute.frenkel": _bad(lambda v: v is None or isinstance(v, dict) and not v),
    "compute.frenkel.bare": _bad(lambda v: v is None or isinstance(v, bool)),
    "compute.frenkel.ligands": st.one_of(
        _bad(lambda v: v is None or v == []),
        st.lists(_TEXT.filter(lambda t: t not in ("methylamine", "acetic-acid")), min_size=1, max_size=2),
    ),
    "compute.frenkel.pairs": _bad(_int_in(1, 50)),
    "compute.frenkel.host_refinements": _bad(_int_in(0, 5)),
    "compute.complexes": _bad(lambda v: v is None or isinstance(v, dict) and not v),
    "compute.coverage": _bad(lambda v: v is None or isinstance(v, dict) and not v),
    "compute.treatments": st.one_of(
        _bad(
            lambda v: (
                v is None
                or v == []
                or (
                    isinstance(v, list)
                    and any(isinstance(x, str) and x.lower() in LIBRARY | {"mai-layer"} for x in v)
                )
            )
        ),
        st.lists(_TEXT.filter(lambda t: t.lower() not in LIBRARY | {"mai-layer"}), min_size=1, max_size=2),
    ),
    "compute.vacancy": _bad(lambda v: v is None or isinstance(v, dict) and not v),
    "compute.migration": _bad(lambda v: v is None or isinstance(v, dict) and not v),
    "workdir": st.one_of(
        _bad(lambda v: v is None or isinstance(v, str)),
        st.sampled_from(["afile", "afile/runs", "adir.x/../afile/x", "", " "]),
    ),
    "store": st.one_of(
        _bad(lambda v: v is None or isinstance(v, str)),
        st.sampled_from(["afile/x.db", "adir", "notadb.db", "", "afile"]),
    ),
    "seed": _bad(_int_in(0, 2**32 - 1)),
    "verify": _bad(lambda v: v is None),
    "verify.protocol": _bad(lambda v: isinstance(v, str) and v in PROTOCOLS and v != "ml-screen"),
    "verify.overrides": st.one_of(
        _bad(lambda v: v is None or isinstance(v, dict) and not v),
        st.builds(lambda k: {k: 1}, _TEXT.filter(lambda k: k not in ("relax", "slab", "run", "gpaw"))),
    ),
    "verify.top_k": _bad(_int_in(1, 10)),
    "verify.reserve": _bad(_int_in(0, 5)),
    "verify.threshold": _bad(lambda v: v is None or (_number(v) and 0 < v <= 5)),
}
CAMPAIGN_BAD["compute.passivation"] = _bad(lambda v: v is None or isinstance(v, dict) and not v)
UNKNOWN_KEYS = ["(top)", "slab", "compute", "compute.frenkel", "ligands[]", "verify"]


def _schema_keys() -> set[str]:
    """Every key path of the campaign schema (as CAMPAIGN_BAD names them)."""
    from ligbind.engine.schema import CampaignSpec, ComputeSpec, FrenkelSpec, LigandItem, SlabSpec, VerifySpec

    keys = set(CampaignSpec.model_fields)
    keys |= {f"slab.{k}" for k in SlabSpec.model_fields}
    keys |= {f"compute.{k}" for k in ComputeSpec.model_fields}
    keys |= {f"compute.frenkel.{k}" for k in FrenkelSpec.model_fields}
    keys |= {f"ligands[].{k}" for k in LigandItem.model_fields}
    keys |= {f"verify.{k}" for k in VerifySpec.model_fields}
    return keys


def test_generated_cases_cover_every_campaign_key():
    missing = _schema_keys() - set(CAMPAIGN_BAD)
    assert not missing, f"campaign keys without generated bad values: {sorted(missing)}"


@SETTINGS
@given(data=st.data())
def test_generated_bad_campaign_values(data, inputs, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    if data.draw(st.integers(0, 9), label="unknown key?") == 0:
        where = data.draw(st.sampled_from(UNKNOWN_KEYS), label="section")
        key = data.draw(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), label="key")
        path = key if where == "(top)" else f"{where}.{key}"
        known = _schema_keys() | {"ligands[].smiles"}
        if path in known or (where == "(top)" and key in known):
            return
        value = data.draw(_ANY.filter(lambda v: v is not None), label="value")
    else:
        path = data.draw(st.sampled_from(sorted(CAMPAIGN_BAD)), label="key")
        value = data.draw(CAMPAIGN_BAD[path], label="value")
    spec = _set(MINI, path, value)
    if path == "ligands" and value is None:
        spec.pop("ligands")
    code, out, err, before, after = _screen(spec, inputs, capsys)
    assert_refused(code, out, err, before, after, "campaign campaign.yaml")


# ------------------------------------------------------------------------------------- structure checks
def test_structure_check_accepts_real_slabs_and_warns_on_even_layers():
    assert check_slab(_slab()) == []
    wrapped = _slab()  # a slab crossing the periodic boundary along z (as a relaxed POSCAR may be) is fine
    wrapped.positions[:, 2] += wrapped.cell[2, 2] * 0.9
    wrapped.wrap()
    assert check_slab(wrapped) == []
    (warning,) = check_slab(build_slab("CsPbI3", "tetragonal", "2x2", layers=4))
    assert "4 layers (even)" in warning and "top PbI2, bottom CsI" in warning
    assert check_slab(build_slab("MAPbI3", None, "2x2", layers=3)) == []


def test_even_layer_slab_is_computed_with_one_warning_line(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        "build",
        "complex",
        "--slab",
        str(inputs / "slab4.extxyz"),
        "--ligand",
        "methylamine",
        "--configs",
        "1",
        "-o",
        "out",
    ]
    code, out, err = run_inprocess(argv, capsys)
    assert code == 0, err
    assert err.splitlines() == [err.strip()] and err.startswith("ligbind: warning: slab ")
    assert "4 layers (even)" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config_00.extxyz"]


# ------------------------------------------------------------------------------------ bugs and --debug
def test_a_bug_is_one_line_a_note_and_exit_1(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "cmd_ligands", broken)
    code, out, err = run_inprocess(["ligands"], capsys)
    assert code == 1
    assert err.splitlines() == ["ligbind: internal error: ZeroDivisionError: division by zero", cli.BUG_NOTE]
    code, out, err = run_inprocess(["--debug", "ligands"], capsys)
    assert code == 1 and err.startswith("Traceback (most recent call last):")
    assert 'raise ZeroDivisionError("division by zero")' in err and err.endswith(cli.BUG_NOTE + "\n")


def test_debug_shows_the_traceback_of_bad_input_too(inputs, capsys, monkeypatch):
    monkeypatch.chdir(inputs)
    code, out, err = run_inprocess(["build", "ligand", "nope", "-o", "x.xyz", "--debug"], capsys)
    assert code == 2
    assert err.startswith("Traceback") and err.splitlines()[-1].startswith(
        "ligbind: error: unknown ligand 'nope'"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["barrier", "--slab", "slab.extxyz", "--protocol", "ml-screen"],
        ["vacancy", "--slab", "slab.extxyz", "--protocol", "gpaw-quick"],
        ["bind", "--slab", "slab.extxyz", "--ligand", "methylamine", "--protocol", "ml-screen-7net"],
        ["screen", "d3.yaml"],
    ],
    ids=["barrier", "vacancy", "bind", "screen"],
)
def test_d3_without_the_dftd3_package_is_refused_before_any_work(argv, inputs, capsys, monkeypatch):
    """A protocol that asks for D3 on a machine whose dftd3 cannot be imported: one line naming the package
    (was an ImportError reported as a ligbind bug at the first force call, after the store was created)."""
    (inputs / "d3.yaml").write_text(yaml.safe_dump({**MINI, "protocol": "ml-screen"}))
    monkeypatch.setitem(sys.modules, "dftd3.ase", None)  # `import dftd3.ase` raises ImportError
    monkeypatch.chdir(inputs)
    before = snapshot(inputs)
    code, out, err = run_inprocess(argv, capsys)
    assert_refused(code, out, err, before, snapshot(inputs), "asks for D3 dispersion")
    assert "dftd3 package cannot be imported" in err
    code, out, _ = run_inprocess(["protocols", "ml-screen"], capsys)  # shown all the same
    assert code == 0 and "d3bj" in out


# ------------------------------------------------------------------------------- as a user runs it
def _env() -> dict[str, str]:
    """This checkout first on the path; no PYTHONWARNINGS: what a user sees (no warning may add a line)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    env.pop("PYTHONWARNINGS", None)
    return env


def _run(*args: str | bytes, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*MAIN, *args], cwd=cwd, capture_output=True, timeout=300, env=_env(), check=False)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("screen", "campaign.yaml"), "campaign campaign.yaml: configs: Input should be a valid integer"),
        (("build", "complex", "--slab", "cu.extxyz", "--ligand", "methylamine", "-o", "out"), "elements: Cu"),
        (("build", "slab", "--layers", b"\xff\xfe", "-o", "s.extxyz"), "not an integer"),
        (("bind", "--slab", "slab.extxyz", "--ligand", "methylamine", "--configs", "0"), "configurations 0"),
    ],
)
def test_subprocess_bad_input(args, fragment, inputs):
    (inputs / "campaign.yaml").write_text(yaml.safe_dump({**MINI, "configs": "abc"}))
    before = snapshot(inputs)
    proc = _run(*args, cwd=inputs)
    err = proc.stderr.decode("utf-8", "replace")
    assert_refused(proc.returncode, proc.stdout.decode(), err, before, snapshot(inputs), fragment)


def test_closed_stdout_is_not_an_error(tmp_path):
    """`ligbind ligands | head`: the reader goes away; no BrokenPipeError traceback, nothing on stderr."""
    proc = subprocess.Popen(
        [*MAIN, "ligands"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    proc.stdout.close()  # the reader is gone before ligbind writes its first line
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert err == "", err
    assert proc.returncode == 141
    shell = subprocess.run(
        f"{shlex.join(MAIN)} ligands | head -n 2",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert shell.returncode == 0 and len(shell.stdout.splitlines()) == 2 and shell.stderr == ""
