"""Per-round wall time of a real Flower federation on 127.0.0.1, both runtimes in one run
(issue 16, item 8; docs/deploying.md, "Wall time").

MOCHA on 5 clients holding tasks 0-4 of ``small`` (a synthetic stand-in if it is not
found), 10 rounds (2 W-steps x 5), certificates every round (folded into the next round's
train messages), the same seed; every process started, timed, stopped:

* ``grpc-bidi``: Flower's gRPC bidirectional-streaming runtime (``start_server`` with a
  legacy strategy, one long-running ``start_client`` process per client;
  :mod:`fmtl.distributed.flower_bidi`);
* ``superlink``: the SuperLink/SuperNode runtime (``flwr run``; a fresh ClientApp
  process per message, the SuperNode's 3-s idle polling; :mod:`fmtl.distributed.flower`).

Both models are checked against in-process ``mocha()`` (bit for bit). Per round: the
server's time from the round's first message to its end (the handshake and the process
start-up are reported apart, as ``connect`` and ``elapsed``).

    python benchmarks/flower_runtimes.py            # both runtimes, 10 rounds each
    python benchmarks/flower_runtimes.py --quick    # grpc-bidi 10 rounds, superlink 2

Writes ``flower_runtimes.csv`` (``flower_runtimes_quick.csv`` with ``--quick``): one row per
runtime and round (``round`` = 0: the whole run) to ``--out``, and prints the command that
reproduces it. On a shared machine the times vary from run to run: ``--repeat`` runs each
runtime several times.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COLUMNS = [
    "runtime", "repeat", "clients", "rounds", "round", "seconds", "elapsed", "run_time",
    "bit_identical", "load_avg",
]  # fmt: skip


def _data(clients: int, seed: int) -> str:
    from fmtl.datasets import find_mocha

    path = find_mocha("small")
    if path is not None:
        return str(path)
    import scipy.io

    from fmtl.datasets import make_multitask_classification

    print("small.mat not found (set FMTL_DATA): using a synthetic stand-in", flush=True)
    syn = make_multitask_classification(
        n_tasks=max(clients, 3), n_samples=50, n_features=9, random_state=seed
    )
    cells = {k: np.empty((1, syn.n_tasks), dtype=object) for k in ("X", "Y")}
    for t, (X_t, y_t) in enumerate(syn):
        cells["X"][0, t], cells["Y"][0, t] = X_t, y_t[:, None]
    out = Path(tempfile.mkdtemp(prefix="fmtl-runtimes-")) / "synthetic.mat"
    scipy.io.savemat(out, cells)
    return str(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="superlink: 2 rounds only")
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--runtimes", default="grpc-bidi,superlink")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)

    import os

    from fmtl.datasets import load_mat
    from fmtl.distributed.flower import run_loopback
    from fmtl.federated import mocha

    data = _data(args.clients, args.seed)
    ds = load_mat(data)
    m = args.clients
    rows = []
    for runtime in [r.strip() for r in args.runtimes.split(",") if r.strip()]:
        outer, inner = (1, 2) if (args.quick and runtime == "superlink") else (2, 5)
        cfg = {"outer-iters": outer, "inner-iters": inner, "random-state": args.seed}
        ref = mocha(ds.X[:m], ds.y[:m], 0.01, outer_iters=outer, inner_iters=inner,
                    random_state=args.seed)  # fmt: skip
        for rep in range(args.repeat):
            load = os.getloadavg()[0]
            print(f"\n{runtime}: {m} clients, {outer * inner} rounds (load {load:.1f})")
            t0 = time.monotonic()
            out = run_loopback(
                m, cfg, data=data, timeout=120.0 + 60.0 * m * outer * inner, runtime=runtime,
                progress=lambda line: print("  " + line, flush=True),
            )  # fmt: skip
            wall = time.monotonic() - t0
            same = bool(np.array_equal(out["coef"], ref.coef))
            rt = out["run"]["round_times"]
            base = {"runtime": runtime, "repeat": rep, "clients": m, "rounds": len(rt),
                    "elapsed": round(wall, 3), "run_time": round(out["run_time"], 3),
                    "bit_identical": same, "load_avg": round(load, 2)}  # fmt: skip
            rows.append({**base, "round": 0, "seconds": round(float(np.sum(rt)), 4)})
            rows += [{**base, "round": r, "seconds": round(s, 4)} for r, s in enumerate(rt, 1)]
            print(
                f"  {runtime}: rounds {np.mean(rt):.3f} s on average (median "
                f"{np.median(rt):.3f}, max {np.max(rt):.3f}), {np.sum(rt):.2f} s for "
                f"{len(rt)} rounds; {wall:.1f} s end to end (start-up, handshake and "
                f"shut-down included); bit-identical to mocha(): {same}"
            )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("flower_runtimes_quick.csv" if args.quick else "flower_runtimes.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print(f"\nwrote {path}")
    print("reproduce: python benchmarks/flower_runtimes.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
