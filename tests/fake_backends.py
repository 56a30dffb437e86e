"""A stand-in 'DFT' backend for fast tests of the DFT paths: CHGNet labelled as DFT.

Registered in a test with ``monkeypatch.setitem(BACKENDS, "fake-dft", "fake_backends")``. Because it is the same
potential as the ml-screen protocol, a DFT verification of an ml-screen result must give the same Eb: an
independent expectation for the verification logic.
"""

from __future__ import annotations

from ligbind.calculators.chgnet import CHGNetBackend


class FakeDFTBackend(CHGNetBackend):
    name = "fake-dft"
    is_dft = True

    def treats_spin(self, protocol) -> bool:
        return True  # no electrons: an odd count (a neutral halide vacancy) is fine, as for the ML potential


BACKEND = FakeDFTBackend()
