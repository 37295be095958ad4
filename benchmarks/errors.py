"""Prediction-error table (Smith et al. 2017, Table 1 protocol): see fmtl.experiments.errors.

python benchmarks/errors.py [--quick] [--out benchmarks/results] [--only KEYS|PATH]
"""

import sys

from fmtl.experiments.errors import main

if __name__ == "__main__":
    sys.exit(main())
