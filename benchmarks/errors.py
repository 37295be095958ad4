"""Prediction-error table (Smith et al. 2017, Table 1 protocol): see fmtl.errors_benchmark.

python benchmarks/errors.py [--quick] [--out benchmarks/results] [--only KEYS|PATH]
"""

import sys

from fmtl.errors_benchmark import main

if __name__ == "__main__":
    sys.exit(main())
