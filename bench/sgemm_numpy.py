"""The machine's SGEMM peak as numpy's BLAS (OpenBLAS) reaches it: the
reference for the GFLOP/s of nnc's products (cargo bench --bench gemm).

    OPENBLAS_NUM_THREADS=2 python3 bench/sgemm_numpy.py
"""

import time

import numpy as np

for name, m, n, k in [
    ("square 1024", 1024, 1024, 1024),
    ("layer1 3x3 64->64 @16x16", 64, 64 * 256, 576),
    ("layer2 3x3 128->128 @8x8", 128, 64 * 64, 1152),
    ("layer3 3x3 256->256 @4x4", 256, 64 * 16, 2304),
    ("layer4 3x3 512->512 @2x2", 512, 64 * 4, 4608),
]:
    a = np.ones((m, k), np.float32)
    b = np.full((k, n), 0.5, np.float32)
    a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    print(f"{name:<28} {2 * m * n * k / best / 1e9:>10.1f} GFLOP/s (numpy {np.__version__})")
