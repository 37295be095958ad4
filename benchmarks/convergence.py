"""MOCHA convergence reproduction: sub-optimality vs estimated time.

See fmtl.experiments.convergence.

    python benchmarks/convergence.py [--quick] [--out benchmarks/results] [--network lte]

Writes convergence.csv, convergence_summary.csv and convergence_{statistical,systems,
network,faults}.png, prints the fastest method per panel and the reproducing command.
"""

from __future__ import annotations

import argparse
import sys
import time

from fmtl.experiments.convergence import fastest_lines, run_convergence


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--network", default="lte", choices=("wifi", "lte", "3g"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    summary = run_convergence(args.out, quick=args.quick, network=args.network)
    print("\n".join(fastest_lines(summary)))
    print(f"total {time.perf_counter() - t0:.0f}s")
    print(
        "reproduce: python benchmarks/convergence.py"
        + (" --quick" if args.quick else "")
        + f" --out {args.out} --network {args.network}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
