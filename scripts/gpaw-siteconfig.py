"""GPAW build settings used by scripts/setup.sh (GPAW_CONFIG points here).

MPI through Debian's OpenMPI (GPAW 26 compiles its C as C++, hence mpic++), FFTW and ScaLAPACK from
Debian's libfftw3-dev and libscalapack-openmpi-dev; libxc, and OpenBLAS linked natively (a siteconfig
switches off GPAW's own BLAS detection, so it is named here).
"""

# ruff: noqa
mpi = True
compiler = "mpic++"
fftw = True
scalapack = True
libraries += ["openblas", "fftw3", "scalapack-openmpi"]
