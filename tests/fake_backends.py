"""A stand-in 'DFT' backend for fast tests of the DFT paths: CHGNet labelled as DFT.

Registered, with a preset 'fake-dft' (ml-screen's settings on this backend), by :func:`registration` (the
``fake_dft`` fixture of test_verification.py, benchmarks/rehearse_verify.py). Because it is the same
potential as the ml-screen protocol, a DFT verification of an ml-screen result must give the same Eb: an
independent expectation for the verification logic.
"""

from __future__ import annotations

import copy
from typing import Any

from ligbind.calculators.chgnet import CHGNetBackend


class FakeDFTBackend(CHGNetBackend):
    name = "fake-dft"
    is_dft = True

    def treats_spin(self, protocol) -> bool:
        return True  # no electrons: an odd count (a neutral halide vacancy) is fine, as for the ML potential


BACKEND = FakeDFTBackend()


def registration() -> list[tuple[Any, str, Any]]:
    """(target, name, value) to set for backend and preset 'fake-dft': a dict item where the target is a dict,
    else an attribute (with ``monkeypatch.setitem`` / ``setattr`` in a test, to undo it after)."""
    import ligbind.protocols as protocols
    from ligbind.calculators import BACKENDS

    preset = {**protocols._read_preset("ml-screen"), "name": "fake-dft", "backend": "fake-dft"}
    read, available = protocols._read_preset, protocols.available_protocols
    return [
        (BACKENDS, "fake-dft", "fake_backends"),
        (
            protocols,
            "_read_preset",
            lambda n, seen=(): copy.deepcopy(preset) if n == "fake-dft" else read(n, seen),
        ),
        (protocols, "available_protocols", lambda: [*available(), "fake-dft"]),
    ]
