"""Settings of the command line's own process, made before numpy loads OpenBLAS.

Imported first by :mod:`tuningfork.cli` (the library never changes its
caller's environment).  Worker processes of a local Dask cluster inherit them.
"""

import os

# OpenBLAS's threads spin for about 2**28 cycles (0.1 s) after it loads and
# after every multi-threaded product before they sleep: 0.1-0.2 CPU-s of a
# 4 CPU-s catalog of 1,000 galaxies, for nothing (benchmarks/bench_scale.py).
# With 2**4 they sleep at once, and still share out large products.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
