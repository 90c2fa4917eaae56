"""Numba-compiled kernel bodies. Importing any module here imports Numba and defines (not yet
compiles) its kernels; ``lamina.kernels._runtime.load`` does that on first use. Callers go
through the checked wrappers in ``lamina.kernels``, never straight to these functions."""
