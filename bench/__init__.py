"""Side-by-side benchmarks of Lamina against PyTorch (and raw NumPy/CuPy where that means something).

Run ``python -m bench --help``; ``bench/README.md`` explains the method and the columns. This
package imports nothing heavy at load time: the runner sets the BLAS thread count before NumPy
is first imported.
"""
