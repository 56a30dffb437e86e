"""GPAW build settings used by scripts/setup.sh (GPAW_CONFIG points here).

MPI through Debian's OpenMPI (GPAW 26 compiles its C as C++, hence mpic++), FFTW and ScaLAPACK from
Debian's libfftw3-dev and libscalapack-openmpi-dev; libxc and OpenBLAS as before.
"""
# ruff: noqa
mpi = True
compiler = "mpic++"
fftw = True
scalapack = True
libraries += ["fftw3", "scalapack-openmpi"]
