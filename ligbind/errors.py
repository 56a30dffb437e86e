"""The one exception type users see: a clear, one-line message naming the problem."""

from __future__ import annotations


class LigbindError(Exception):
    """Bad input or a calculation that cannot be used; the CLI prints the message and exits 2."""


class UnconvergedError(LigbindError):
    """An SCF or a relaxation did not converge and cannot be used for an energy."""


class NonFiniteEnergyError(LigbindError):
    """A calculator returned NaN or inf."""
