"""Protocol presets: loading, nested overrides, errors, the energy-relevant hash and the CLI view."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ligbind.calculators import BACKENDS
from ligbind.errors import LigbindError
from ligbind.protocols import available_protocols, deep_merge, load_protocol, protocol_hash

PRESETS = ("gpaw-laptop", "ml-screen", "vasp-pbe-d3")


def test_three_presets_are_shipped():
    assert set(PRESETS) <= set(available_protocols())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_with_its_own_name_and_a_backend(name):
    p = load_protocol(name)
    assert p["name"] == name
    assert p["backend"] in BACKENDS
    assert isinstance(p["is_dft"], bool)
    assert p["description"]
    assert "overrides" not in p  # nothing was overridden


def test_preset_values_match_the_published_and_documented_settings():
    vasp = load_protocol("vasp-pbe-d3")
    incar = vasp["vasp"]["incar"]
    assert (incar["ENCUT"], incar["EDIFF"], incar["EDIFFG"], incar["ISIF"]) == (400, 1e-5, -0.01, 2)
    assert incar["IVDW"] in (11, 12)  # DFT-D3
    assert vasp["vasp"]["slab_incar"]["LDIPOL"] is True and vasp["vasp"]["slab_incar"]["IDIPOL"] == 3
    assert (
        vasp["slab"]["size"] == [2, 2] and vasp["slab"]["vacuum"] == 20.0 and vasp["slab"]["fix_layers"] == 2
    )
    assert vasp["is_dft"] is True

    gpaw = load_protocol("gpaw-laptop")
    assert gpaw["backend"] == "gpaw" and gpaw["is_dft"] is True
    assert gpaw["gpaw"]["xc"] == "PBE" and gpaw["gpaw"]["kpts"] == [1, 1, 1]
    assert gpaw["relax"]["fmax"] == 0.05
    assert gpaw["dispersion"]["method"].startswith("d3")
    assert gpaw["prerelax"] == "ml-screen"
    assert gpaw["slab"]["layers"] == 3

    ml = load_protocol("ml-screen")
    assert ml["backend"] == "chgnet" and ml["is_dft"] is False  # never labelled DFT
    assert ml["dispersion"]["method"] == "d3bj" and ml["run"]["threads"] == 1


def test_nested_override_keeps_siblings_and_records_itself():
    base = load_protocol("gpaw-laptop")
    p = load_protocol(
        "gpaw-laptop", {"gpaw": {"basis": "sz(dzp)", "mixer": {"beta": 0.1}}, "relax": {"fmax": 0.1}}
    )
    assert p["gpaw"]["basis"] == "sz(dzp)"
    assert p["gpaw"]["mixer"] == {**base["gpaw"]["mixer"], "beta": 0.1}  # nmaxold, weight kept
    for key in ("h", "xc", "kpts", "occupations", "convergence", "maxiter", "scf_retries", "mode"):
        assert p["gpaw"][key] == base["gpaw"][key], key
    assert p["relax"] == {**base["relax"], "fmax": 0.1}
    assert p["dispersion"] == base["dispersion"] and p["slab"] == base["slab"]
    assert p["overrides"] == {"gpaw": {"basis": "sz(dzp)", "mixer": {"beta": 0.1}}, "relax": {"fmax": 0.1}}
    # the preset itself is untouched by the merge
    assert load_protocol("gpaw-laptop") == base


def test_override_can_replace_a_value_by_null_and_set_dry_run():
    p = load_protocol("gpaw-laptop", {"prerelax": None, "run": {"dry_run": True}})
    assert p["prerelax"] is None and p["run"]["dry_run"] is True


def test_run_settings_do_not_change_the_hash():
    ref = protocol_hash(load_protocol("gpaw-laptop"))
    for run in ({"threads": 4}, {"cores": 2}, {"dry_run": True}, {"command": "mpirun vasp_std"}):
        assert protocol_hash(load_protocol("gpaw-laptop", {"run": run})) == ref, run


@pytest.mark.parametrize(
    "overrides, where",
    [
        ({"relax": {"fmax": float("nan")}}, "relax.fmax"),
        ({"relax": {"fmax": -0.1}}, "relax.fmax"),
        ({"relax": {"steps": "many"}}, "relax.steps"),
        ({"relax": {"steps": 2.5}}, "relax.steps"),
        ({"gpaw": {"h": float("inf")}}, "gpaw.h"),
        ({"gpaw": {"occupations": {"name": "marzari-vanderbilt"}}}, "gpaw.occupations.name"),
        ({"gpaw": {"mixer": {"beta": 2}}}, "gpaw.mixer.beta"),
        ({"dispersion": {"method": "d4"}}, "dispersion.method"),
        ({"ligand_cell": "sphere"}, "ligand_cell"),
        ({"run": {"cores": 0}}, "run.cores"),
        ({"prerelax": "no-such-protocol"}, "prerelax"),
    ],
)
def test_values_of_the_wrong_type_or_range_are_refused_naming_the_setting(overrides, where):
    with pytest.raises(LigbindError, match=where.replace(".", r"\.")):
        load_protocol("gpaw-laptop", overrides)


def test_overrides_apply_to_a_protocol_given_as_a_dict():
    base = load_protocol("ml-screen")
    assert load_protocol(base, {"relax": {"fmax": 0.2}})["relax"]["fmax"] == 0.2
    with pytest.raises(LigbindError, match="relax.fmx"):
        load_protocol(base, {"relax": {"fmx": 0.2}})


def test_child_preset_inherits_from_its_parent(tmp_path, monkeypatch):
    import ligbind.protocols as protocols

    folder = tmp_path / "presets"
    folder.mkdir()
    for name in PRESETS:
        (folder / f"{name}.yaml").write_text(
            protocols.resources.files(protocols).joinpath(f"{name}.yaml").read_text()
        )
    (folder / "ml-tight.yaml").write_text("parent: ml-screen\nname: ml-tight\nrelax: {fmax: 0.01}\n")
    monkeypatch.setattr(protocols.resources, "files", lambda _: folder)
    child, parent = load_protocol("ml-tight"), load_protocol("ml-screen")
    assert child["relax"] == {**parent["relax"], "fmax": 0.01}
    assert child["dispersion"] == parent["dispersion"] and child["backend"] == parent["backend"]
    assert child["name"] == "ml-tight" and protocol_hash(child) != protocol_hash(parent)


@pytest.mark.parametrize(
    "overrides", [{"relax": {"fmx": 0.1}}, {"colour": "blue"}, {"gpaw": {"basiss": "sz"}}]
)
def test_misspelt_override_is_refused(overrides):
    with pytest.raises(LigbindError, match="unknown protocol setting"):
        load_protocol("gpaw-laptop", overrides)


def test_incar_and_potcar_sections_accept_any_vasp_tag():
    p = load_protocol("vasp-pbe-d3", {"vasp": {"incar": {"NELM": 120}, "potcars": {"Rb": "Rb_sv"}}})
    assert p["vasp"]["incar"]["NELM"] == 120 and p["vasp"]["potcars"]["Rb"] == "Rb_sv"


def test_deep_merge_does_not_alias_the_inputs():
    base = {"a": {"b": [1, 2], "c": 1}}
    over = {"a": {"c": 2}, "d": {"e": 1}}
    merged = deep_merge(base, over)
    merged["a"]["b"].append(3)
    merged["d"]["e"] = 5
    assert base == {"a": {"b": [1, 2], "c": 1}} and over == {"a": {"c": 2}, "d": {"e": 1}}


def test_resolved_dict_passes_through_and_takes_overrides():
    p = load_protocol("ml-screen")
    q = load_protocol(p, {"relax": {"steps": 2}})
    assert q["relax"] == {**p["relax"], "steps": 2} and p["relax"]["steps"] == 400


def test_unknown_protocol_is_refused_by_name():
    with pytest.raises(LigbindError, match="unknown protocol 'gpaw-lptop'") as err:
        load_protocol("gpaw-lptop")
    for name in PRESETS:  # the message lists what exists
        assert name in str(err.value)


@pytest.mark.parametrize(
    "override",
    [
        {"relax": {"fmax": 0.02}},
        {"relax": {"steps": 10}},
        {"gpaw": {"basis": "sz(dzp)"}},
        {"gpaw": {"h": 0.3}},
        {"gpaw": {"mixer": {"beta": 0.1}}},
        {"dispersion": {"method": "none"}},
        {"prerelax": None},
    ],
)
def test_hash_changes_with_energy_relevant_parameters(override):
    assert protocol_hash(load_protocol("gpaw-laptop", override)) != protocol_hash(
        load_protocol("gpaw-laptop")
    )


def test_hash_ignores_description_and_restated_defaults():
    ref = protocol_hash(load_protocol("gpaw-laptop"))
    assert protocol_hash(load_protocol("gpaw-laptop", {"description": "my own words"})) == ref
    # restating a preset value as an override is the same calculation (same key → reuse)
    assert protocol_hash(load_protocol("gpaw-laptop", {"relax": {"fmax": 0.05}})) == ref
    assert len(ref) == 16 and set(ref) <= set("0123456789abcdef")


def test_hash_is_stable_across_key_order():
    p = load_protocol("ml-screen")
    reordered = dict(reversed(list(p.items())))
    assert protocol_hash(reordered) == protocol_hash(p)


def test_presets_have_distinct_hashes():
    assert len({protocol_hash(load_protocol(n)) for n in PRESETS}) == len(PRESETS)


def _ligbind(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ligbind", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_prints_the_resolved_protocol_as_json():
    out = _ligbind("protocols", "gpaw-laptop", "--json", "--set", '{"gpaw": {"basis": "sz(dzp)"}}')
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown == load_protocol("gpaw-laptop", {"gpaw": {"basis": "sz(dzp)"}})
    assert shown["gpaw"]["basis"] == "sz(dzp)" and shown["gpaw"]["h"] == 0.2


def test_cli_unknown_protocol_is_a_one_line_error():
    out = _ligbind("protocols", "nope", "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown protocol 'nope'" in lines[0]


def test_dft_preset_hashes_stay_what_the_committed_results_were_computed_with():
    """The calibration database under benchmarks/ is keyed on these hashes: a schema change that alters them
    silently orphans hours of DFT (seen: a new optional setting dumped as null changed every GPAW hash)."""
    assert protocol_hash(load_protocol("gpaw-laptop")) == "75456dedcf7970ae"  # with convergence.forces 0.01
    # h 0.2 since 2026-12-04 (was 4f840263b678465a on h 0.25: the committed dft-savings / dft-barrier runs)
    assert protocol_hash(load_protocol("gpaw-quick")) == "2145f70dd4984f4e"
    assert protocol_hash(load_protocol("gpaw-complex")) == "e82361455bdbad44"  # benchmarks/complexes
    assert protocol_hash(load_protocol("ml-screen")) == "c37e4bc4a94fcda2"


def test_scf_force_convergence_is_the_preset_default_can_be_changed_and_reaches_gpaw(tmp_path):
    from ase import Atoms

    from ligbind.calculators.gpaw import gpaw_calculator

    preset = load_protocol("gpaw-quick")
    assert preset["gpaw"]["convergence"]["forces"] == 0.01
    loose = load_protocol("gpaw-quick", {"gpaw": {"convergence": {"forces": 0.05}}})
    assert protocol_hash(loose) != protocol_hash(preset)
    h2 = Atoms("H2", positions=[[3, 3, 3], [3, 3, 3.74]], cell=[6, 6, 6])
    calc = gpaw_calculator(loose, h2, tmp_path, "h2")
    assert calc.parameters.todict()["convergence"]["forces"] == 0.05
    with pytest.raises(LigbindError, match="forces"):
        load_protocol("gpaw-quick", {"gpaw": {"convergence": {"forces": -1}}})


def test_a_gpaw_grid_coarser_than_the_presets_warns():
    """h > 0.2 Å is allowed (tests and quick trials use it) but never silent: ligands feel the grid there."""
    import warnings

    with pytest.warns(UserWarning, match=r"gpaw\.h 0\.25 Å is coarser than 0\.2 Å"):
        load_protocol("gpaw-quick", {"gpaw": {"h": 0.25}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for preset in ("gpaw-quick", "gpaw-laptop", "gpaw-complex"):
            load_protocol(preset)


def test_d3_is_refused_only_where_asked_for_and_dftd3_is_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dftd3.ase", None)  # `import dftd3.ase` raises ImportError
    with pytest.raises(
        LigbindError, match=r"protocol 'ml-screen' asks for D3 dispersion \(dispersion\.method d3bj\)"
    ):
        load_protocol("ml-screen")
    assert load_protocol("ml-screen", {"dispersion": {"method": "none"}})["dispersion"]["method"] == "none"
    assert load_protocol("ml-screen", check_installed=False)["dispersion"]["method"] == "d3bj"
    monkeypatch.undo()
    assert load_protocol("ml-screen")["dispersion"]["method"] == "d3bj"


def test_bulk_k_points_stay_out_of_the_hash_and_go_into_a_crystals_key():
    """Bulk k-points change only a crystal's energy: setting them keeps every slab and molecule result (the
    protocol hash), while the key of a bulk calculation follows them (another mesh is another calculation)."""
    from ase.build import bulk, molecule

    from ligbind.store import calculation_key

    base = load_protocol("gpaw-laptop", {"gpaw": {"bulk_kpt_density": None}})
    dense = load_protocol("gpaw-laptop", {"gpaw": {"bulk_kpt_density": 6.0}})
    coarse = load_protocol("gpaw-laptop", {"gpaw": {"bulk_kpt_density": 3.0}})
    assert protocol_hash(base) == protocol_hash(dense) == protocol_hash(coarse)
    salt = bulk("KBr", "rocksalt", a=6.6)
    water = molecule("H2O")
    water.center(vacuum=4.0)
    assert calculation_key("relax", salt, dense) != calculation_key("relax", salt, coarse)
    assert calculation_key("relax", water, dense) == calculation_key("relax", water, coarse)
    ml = load_protocol("ml-screen")  # no k-points at all: the key of a crystal is the plain one
    assert calculation_key("relax", salt, ml).count("-") == 2
    vasp = load_protocol("vasp-pbe-d3")
    meshed = load_protocol("vasp-pbe-d3", {"vasp": {"bulk_kpoints": [6, 6, 6]}})
    assert protocol_hash(vasp) == protocol_hash(meshed)
    assert calculation_key("relax", salt, vasp) != calculation_key("relax", salt, meshed)
