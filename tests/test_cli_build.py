"""The ``ligbind`` command, run as a user runs it (subprocess): build slab/ligand/complex, ligands, --help,
and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase.constraints import FixAtoms
from conftest import CLI, REPO_ROOT, cli_env, run_ligbind

from ligbind.builders.ligands import load_library
from ligbind.builders.placement import BOND_LENGTH, anchor_sites
from ligbind.builders.slab import build_slab, find_layers, termination
from ligbind.cli import build_parser
from ligbind.io import read_structure, write_structure


def run(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m ligbind ARGS`` from this checkout (conftest.run_ligbind), warnings silenced."""
    return run_ligbind(*args, cwd=cwd, timeout=timeout, env={"PYTHONWARNINGS": "ignore"})


def _snapshot(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def _fixed(atoms) -> set[int]:
    return {int(i) for c in atoms.constraints if isinstance(c, FixAtoms) for i in c.get_indices()}


# ---------------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """A directory with the slab files the bad-input cases read."""
    d = tmp_path_factory.mktemp("bad")
    write_structure(d / "slab.extxyz", build_slab("CsPbI3", "tetragonal", "2x2", layers=3))
    # the same kind of slab without its top PbI2 layer: CsI on top
    cut = build_slab("CsPbI3", "tetragonal", "2x2", layers=3)
    del cut[find_layers(cut)[-1].tolist()]
    write_structure(d / "cut.extxyz", cut)
    # a 4-layer slab turned upside down: CsI on top, PbI2 at the bottom
    flipped = build_slab("CsPbI3", "tetragonal", "2x2", layers=4)
    flipped.positions[:, 2] *= -1
    flipped.center(axis=2, vacuum=6.0)
    write_structure(d / "POSCAR_flipped", flipped)
    # 3.2 Å of vacuum: PbI2-terminated, but no room for EDTA below the slab's periodic image
    write_structure(d / "tight.extxyz", build_slab("CsPbI3", "tetragonal", "2x2", layers=3, vacuum=3.2))
    return d


BAD = {
    "unknown-material": (
        ["build", "slab", "--material", "CsPbBr9", "-o", "out.extxyz"],
        "invalid choice: 'CsPbBr9'",
    ),
    "unknown-phase": (
        ["build", "slab", "--phase", "orthorhombic", "-o", "out.extxyz"],
        "invalid choice: 'orthorhombic'",
    ),
    "zero-layers": (["build", "slab", "--layers", "0", "-o", "out.extxyz"], "bad number of layers 0"),
    "negative-vacuum": (["build", "slab", "--vacuum=-5", "-o", "out.extxyz"], "bad vacuum -5.0"),
    "vacuum-below-layer-spacing": (["build", "slab", "--vacuum", "3", "-o", "out.extxyz"], "bad vacuum 3.0"),
    "fix-all-layers": (
        ["build", "slab", "--layers", "3", "--fix-layers", "3", "-o", "out.extxyz"],
        "--fix-layers 3",
    ),
    "fix-more-than-layers": (
        ["build", "slab", "--layers", "3", "--fix-layers", "5", "-o", "out.extxyz"],
        "--fix-layers 5",
    ),
    "odd-size-tilted": (["build", "slab", "--size", "3x3", "-o", "out.extxyz"], "size must be even"),
    "unknown-format": (["build", "slab", "-o", "out.foo"], "structure format of 'out.foo'"),
    "unknown-ligand": (["build", "ligand", "NotALigand", "-o", "out.xyz"], "unknown ligand 'NotALigand'"),
    "bad-smiles": (["build", "ligand", "--smiles", "C1CC(", "-o", "out.xyz"], "cannot parse SMILES 'C1CC('"),
    "complex-unknown-ligand": (
        ["build", "complex", "--slab", "slab.extxyz", "--ligand", "NotALigand", "-o", "out"],
        "unknown ligand 'NotALigand'",
    ),
    "slab-file-missing": (
        ["build", "complex", "--slab", "missing.extxyz", "--ligand", "methylamine", "-o", "out"],
        "structure file not found",
    ),
    "top-layer-removed": (
        ["build", "complex", "--slab", "cut.extxyz", "--ligand", "methylamine", "-o", "out"],
        "not PbI2-terminated: its top layer is CsI",
    ),
    "slab-upside-down": (
        ["build", "complex", "--slab", "POSCAR_flipped", "--ligand", "methylamine", "-o", "out"],
        "not PbI2-terminated: its top layer is CsI",
    ),
    "no-room-for-ligand": (
        ["build", "complex", "--slab", "tight.extxyz", "--ligand", "EDTA", "--configs", "1", "-o", "out"],
        "only 3.2 Å of vacuum along z",
    ),
    "exchange-without-anion": (
        [
            "build",
            "complex",
            "--slab",
            "slab.extxyz",
            "--ligand",
            "methylamine",
            "--mode",
            "exchange",
            "-o",
            "out",
        ],
        "no exchange anion",
    ),
    "zero-configs": (
        [
            "build",
            "complex",
            "--slab",
            "slab.extxyz",
            "--ligand",
            "methylamine",
            "--configs",
            "0",
            "-o",
            "out",
        ],
        "bad number of configurations 0",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_error_nothing_written(bad_inputs, case):
    args, problem = BAD[case]
    before = _snapshot(bad_inputs)
    proc = run(*args, cwd=bad_inputs)
    assert proc.returncode != 0
    assert proc.returncode == 2  # the documented code for bad input
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"stderr is not one line:\n{proc.stderr}"
    assert lines[0].startswith("ligbind: error: ") and problem in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert _snapshot(bad_inputs) == before, "bad input left files behind"
    assert proc.stdout == ""


def test_argparse_errors_are_one_line(tmp_path):
    proc = run("build", "slab", "--layers", "three", "-o", "out.extxyz", cwd=tmp_path)
    assert proc.returncode == 2 and not list(tmp_path.iterdir())
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------------------------------------- good cases
def test_build_slab_json_matches_file(tmp_path):
    proc = run(
        "build",
        "slab",
        "--layers",
        "5",
        "--fix-layers",
        "2",
        "--vacuum",
        "15",
        "--json",
        "-o",
        "slab.extxyz",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    atoms = read_structure(tmp_path / "slab.extxyz")
    layers = find_layers(atoms)
    assert summary["formula"] == atoms.get_chemical_formula() == "Cs8I32Pb12"
    assert summary["natoms"] == len(atoms) == 52
    assert summary["layers"] == len(layers) == 5
    assert summary["termination"] == "PbI2/PbI2" == "/".join(termination(atoms))
    assert summary["fixed_layers"] == 2
    assert summary["fixed_atoms"] == len(_fixed(atoms)) == len(layers[0]) + len(layers[1])
    assert _fixed(atoms) == {int(i) for idx in layers[:2] for i in idx}
    assert abs(summary["vacuum"] - 15.0) < 1e-6
    assert summary["material"] == "CsPbI3" and summary["phase"] == "tetragonal" and summary["size"] == "2x2"
    np.testing.assert_allclose(summary["cell"], atoms.cell.cellpar(), atol=1e-3)
    assert Path(summary["file"]).name == "slab.extxyz"


def test_build_slab_text_and_poscar(tmp_path):
    proc = run("build", "slab", "--material", "MAPbI3", "--layers", "3", "-o", "POSCAR", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "termination PbI2/PbI2" in proc.stdout and "wrote POSCAR" in proc.stdout
    atoms = read_structure(tmp_path / "POSCAR")
    assert Counter(atoms.get_chemical_symbols()) == Counter({"Pb": 8, "I": 20, "C": 4, "N": 4, "H": 24})
    assert termination(atoms) == ("PbI2", "PbI2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["POSCAR"]


def test_build_ligand(tmp_path):
    proc = run("build", "ligand", "methylamine", "-o", "x.xyz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mol = read_structure(tmp_path / "x.xyz")
    assert Counter(mol.get_chemical_symbols()) == Counter({"C": 1, "N": 1, "H": 5})
    c, n = mol.get_chemical_symbols().index("C"), mol.get_chemical_symbols().index("N")
    assert 1.42 < mol.get_distance(c, n) < 1.50  # C–N single bond from the force field
    assert min(mol.cell.lengths()) > 10.0  # boxed with vacuum on every side

    proc = run("build", "ligand", "--smiles", "OCC", "-o", "ethanol.extxyz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Counter(read_structure(tmp_path / "ethanol.extxyz").get_chemical_symbols()) == Counter(
        {"C": 2, "O": 1, "H": 6}
    )


def test_build_complex_writes_k_configurations(tmp_path):
    slab = build_slab("CsPbI3", "tetragonal", "2x2", layers=3, fix_layers=1)
    write_structure(tmp_path / "slab.extxyz", slab)
    proc = run(
        "build",
        "complex",
        "--slab",
        "slab.extxyz",
        "--ligand",
        "acetic-acid",
        "--configs",
        "3",
        "--json",
        "-o",
        "complexes",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted((tmp_path / "complexes").iterdir())
    assert [f.name for f in files] == ["config_00.extxyz", "config_01.extxyz", "config_02.extxyz"]
    summary = json.loads(proc.stdout)
    assert len(summary) == 3
    for f, s in zip(files, summary, strict=True):
        atoms = read_structure(f)
        assert Path(s["file"]).name == f.name
        n = len(slab)
        np.testing.assert_allclose(atoms.positions[:n], slab.positions, atol=1e-6)
        assert atoms[:n].get_chemical_symbols() == slab.get_chemical_symbols()
        assert Counter(atoms[n:].get_chemical_symbols()) == Counter({"C": 2, "O": 2, "H": 4})
        assert list(atoms.get_tags()) == [0] * n + [1] * 8
        assert _fixed(atoms) == _fixed(slab)
        sites = anchor_sites(atoms)
        assert sites and sites == s["anchor_sites"]
        for site in sites:
            d = atoms.get_distance(site["anchor"], site["pb"], mic=True)
            assert abs(d - BOND_LENGTH[site["element"]]) <= 0.35
        assert atoms.info["mode"] == "neutral" and atoms.info["ligand"] == "acetic-acid"


def test_ligands_json_lists_the_library(tmp_path):
    proc = run("ligands", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    library = load_library()
    assert [r["name"] for r in rows] == list(library)
    for r in rows:
        e = library[r["name"]]
        assert (r["smiles"], r["charge"], r["denticity"], r["note"]) == (
            e.smiles,
            e.charge,
            e.denticity,
            e.note,
        )
        assert r["exchange"] == bool(e.exchange)
    required = {
        "OA",
        "OAm",
        "OAmI",
        "NSA",
        "NH4PF6",
        "EDTA",
        "GL",
        "acetic-acid",
        "methylamine",
        "TMSBr",
        "KBr",
    }
    assert required <= set(library)


def test_protocols_json(tmp_path):
    proc = run("protocols", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {"vasp-pbe-d3", "gpaw-laptop", "ml-screen"} <= set(json.loads(proc.stdout))
    listed = run("protocols", cwd=tmp_path).stdout.splitlines()
    from ligbind.protocols import DEFAULT_PROTOCOL

    assert [line.split()[0] for line in listed if "(default)" in line] == [DEFAULT_PROTOCOL]


def _subcommand_paths() -> list[list[str]]:
    """Every (sub)command of the parser, found from the parser itself so that new ones are covered."""
    paths: list[list[str]] = [[]]

    def walk(parser, prefix):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    paths.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return paths


HELP_PATHS = _subcommand_paths()


def test_help_covers_the_build_commands():
    names = {" ".join(p) for p in HELP_PATHS}
    assert {"build slab", "build ligand", "build complex", "ligands", "protocols"} <= names


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "ligbind")
def test_every_help_exits_zero(tmp_path, path):
    proc = run(*path, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ligbind")
    assert not list(tmp_path.iterdir())


def test_cli_subprocesses_run_this_checkout(tmp_path):
    """``python -m ligbind`` in the tests imports the package of this checkout, not an installed copy."""
    proc = subprocess.run(
        [sys.executable, "-c", "import ligbind.__main__ as m; print(m.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == REPO_ROOT / "ligbind" / "__main__.py"
    assert CLI == [sys.executable, "-m", "ligbind"]


def test_console_script(tmp_path):
    """The ``ligbind`` console script is ligbind.cli:main (pyproject), installed; run with this checkout first."""
    import tomllib
    from importlib.metadata import entry_points

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared == {"ligbind": "ligbind.cli:main"}
    (installed,) = entry_points(group="console_scripts", name="ligbind")
    assert installed.value == "ligbind.cli:main"
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    script = shutil.which("ligbind", path=search)
    assert script, f"the ligbind console script is not installed (next to {sys.executable} or on PATH)"
    proc = subprocess.run(
        [script, "build", "slab", "--json", "-o", "s.extxyz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # default slab: 2x2, PbI2/CsI/PbI2 -> 2 x (4 Pb + 8 I) + (4 Cs + 4 I)
    assert json.loads(proc.stdout)["formula"] == "Cs4I20Pb8"
