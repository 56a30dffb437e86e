"""The rules of the calibration benchmark (benchmarks/calibration.py) that choose the screening default: which
ligands are judged, what counts as a success, what ρ ranks. Synthetic numbers: the rules, not the data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration.py"
_SPEC = importlib.util.spec_from_file_location("calibration_benchmark", _PATH)
calibration = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(calibration)


def test_a_ligand_is_judged_on_the_configurations_the_campaign_relaxes():
    plain = {"a": {0: -1.0, 1: -0.8}, "b": {0: -0.5}, "c": {0: -0.7, 2: -0.9}}
    complete = {"a": {0, 1}, "b": {0, 1}, "c": {0, 1, 2}}  # a: 2 distinct minima of K = 3
    finished = {"a": {0, 1}, "b": {0}, "c": {0, 1, 2}}  # b: one still running; c: 1 flagged (no Eb)
    judged = calibration.judged_ligands(plain, plain, complete, finished)
    assert judged == {"a": {0, 1}, "c": {0, 1, 2}}
    # against the counterpoise-corrected reference a ligand waits for every usable configuration's correction
    corrected = {"a": {0: -0.7}, "c": {0: -0.5, 2: -0.6}}
    assert calibration.judged_ligands(corrected, plain, complete, finished) == {"c": {0, 1, 2}}


def test_success_rho_and_errors_follow_the_documented_rules():
    ref = {"a": {0: -1.0, 1: -0.8}, "c": {0: -0.7, 2: -0.9}, "d": {0: -0.3, 1: -0.35}}
    judged = {"a": {0, 1}, "c": {0, 1, 2}, "d": {0, 1}}
    ml = {
        "a": {
            0: -0.9,
            1: -0.7,
            2: -1.5,
        },  # best is 2, not DFT-relaxed (a duplicate): judged among 0 and 1 → 0
        "c": {0: -0.6, 1: -0.95, 2: -0.85},  # best pick 1 was flagged in DFT: a miss
        "d": {0: -0.2, 1: -0.1},  # picks 0, 0.05 eV above the lowest DFT: within 0.1, a success
    }
    f = calibration.figures(ref, ml, judged)
    assert f["ligands"] == 3 and f["success"] == pytest.approx(2 / 3)
    errors = [0.1, 0.1, 0.1, 0.05, 0.1, 0.25]
    assert (
        f["configs"] == 6 and f["mae"] == pytest.approx(sum(errors) / 6) and f["max"] == pytest.approx(0.25)
    )
    # ρ ranks each preset's best Eb (a: −1.5, c: −0.95, d: −0.2) against the lowest DFT Eb (−1.0, −0.9, −0.35)
    assert f["spearman"] == pytest.approx(1.0)
    assert calibration.figures(ref, ml, {})["ligands"] == 0  # nothing judged: errors only
