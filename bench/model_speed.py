"""Time the golden model's matrix form against float32 `@` on a 256 × 4608 layer, batch 64.

Run with `make bench` (or `python bench/model_speed.py`). Prints the best of several repeats.
Both sides run on one thread: `ternary_matmul` is single-threaded NumPy, and a multi-threaded
BLAS on a shared 2-core machine measures the other load more than the matrix product.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from rtn_hw import model

P, N, B, REPEATS, SEED = 256, 4608, 64, 7, 2026


def best_time(fn):
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    rng = np.random.default_rng(SEED)
    t_w = rng.integers(-1, 2, (P, N)).astype(np.int8)
    t_a = rng.integers(-1, 2, (B, N)).astype(np.int8)
    w, a = model.pack(t_w), model.pack(t_a)
    f_w, f_a = t_w.astype(np.float32), t_a.astype(np.float32)
    d, _ = model.ternary_matmul(w, a)
    assert (d == (f_a @ f_w.T).astype(np.int64)).all()

    t_pack = best_time(lambda: model.pack(t_a))
    t_popcount = best_time(lambda: model.ternary_matmul(w, a))
    t_float = best_time(lambda: f_a @ f_w.T)
    print(f"seed {SEED}; numpy {np.__version__}; {platform.processor() or platform.machine()}; "
          f"best of {REPEATS}; BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}")
    print(f"ternary_matmul {P}x{N}, batch {B} (packed planes): {t_popcount * 1e3:8.2f} ms")
    print(f"pack activations ({B}x{N} trits):                {t_pack * 1e3:8.2f} ms")
    print(f"float32 @ on the same shapes:                    {t_float * 1e3:8.2f} ms")
    print(f"ratio popcount / float32 @:                      {t_popcount / t_float:8.2f}x")


if __name__ == "__main__":
    main()
