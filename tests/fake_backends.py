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


BACKEND = FakeDFTBackend()
