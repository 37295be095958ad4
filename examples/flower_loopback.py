"""MOCHA on a real Flower federation on this machine (127.0.0.1), then compared in-process.

Starts a Flower SuperLink and one SuperNode process per client (client ``i`` holds task
``i`` of the MOCHA data set ``small``), submits fmtl's Flower app with ``flwr run``
(ServerApp ``fmtl.distributed.flower:server_app``, ClientApp
``fmtl.distributed.flower:client_app``), waits for the run, prints the History and
what went over the wire, stops every process it started and checks the model against
in-process ``mocha()`` with the same seed and schedule.

    python examples/flower_loopback.py                      # 3 clients, 2 x 3 rounds
    python examples/flower_loopback.py --clients 5 --outer 2 --inner 5 --count-bytes
    python examples/flower_loopback.py --clients 5 --outer 2 --inner 5 --runtime grpc-bidi

What it runs, on free ports (see ``fmtl.distributed.flower.run_loopback``)::

    flower-superlink --insecure --host 127.0.0.1 --port P \\
        --disable-runtime-dependency-installation
    flower-supernode --insecure --superlink 127.0.0.1:P --port Q_i \\
        --node-config 'partition-id=i num-partitions=N data="/path/small.mat"'
    FLWR_HOME=<tmp> flwr run fmtl/distributed/flower_app fmtl-loopback --stream \\
        --run-config <tmp>/run_config.toml

TLS (anything beyond loopback): drop ``--insecure``; give the SuperLink
``--ssl-ca-certfile ca.crt --ssl-certfile server.pem --ssl-keyfile server.key`` and
every SuperNode ``--root-certificates ca.crt``; in ``$FLWR_HOME/config.toml`` replace
``insecure = true`` by ``root-certificates = "ca.crt"``.

Latency: Flower 1.42's SuperNode polls the SuperLink every 3 s when idle and starts a
fresh ClientApp process per message, so each exchange costs seconds whatever the
computation (docs/deploying.md, "Wall time"). A round is one exchange: an evaluated
round's certificates travel with the next round's train messages; ``--eval-every k``
evaluates them only every k rounds (and at the end of every W-step). One line per round
is printed while the run goes on.

``--runtime grpc-bidi``: Flower's gRPC bidirectional-streaming runtime instead (deprecated
by Flower since 1.13, still shipped): one server process (``flwr.server.start_server``
with ``fmtl.distributed.flower_bidi.FmtlBidiStrategy``) and one long-running client
process per task (``flwr.client.start_client``), each holding its task and duals in
memory; no per-message process, no idle polling, so a round takes milliseconds::

    python -m fmtl.distributed.flower_bidi server --address 127.0.0.1:P \
        --run-config <tmp>/run_config.json --output-dir <tmp>/output
    python -m fmtl.distributed.flower_bidi client --server 127.0.0.1:P \
        --partition-id i --num-partitions N --data /path/small.mat
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--outer", type=int, default=2, help="outer rounds (Sigma-steps + 1)")
    ap.add_argument("--inner", type=int, default=3, help="federated rounds per W-step")
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--lam", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="small")
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds for the whole run (default: 120 + 60 per client and round)",
    )
    ap.add_argument("--count-bytes", action="store_true", help="count every socket byte")
    ap.add_argument("--workdir", default=None, help="keep logs and outputs here")
    ap.add_argument(
        "--runtime",
        choices=["superlink", "grpc-bidi"],
        default="superlink",
        help="Flower runtime (grpc-bidi: deprecated by Flower, long-running clients)",
    )
    args = ap.parse_args(argv)

    from fmtl.datasets import find_mocha, load_mat
    from fmtl.distributed.flower import run_loopback
    from fmtl.federated import mocha

    path = find_mocha(args.data)
    if path is None:
        # each SuperNode loads task `partition-id` of the .mat file the server names: write
        # the embedded synthetic default in that layout (cells X and Y)
        print(f"data set {args.data!r} not found (set FMTL_DATA): using a synthetic stand-in")
        import scipy.io

        from fmtl.datasets import make_multitask_classification

        syn = make_multitask_classification(
            n_tasks=max(args.clients, 3), n_samples=50, n_features=9, random_state=args.seed
        )
        cells = {k: np.empty((1, syn.n_tasks), dtype=object) for k in ("X", "Y")}
        for t, (X_t, y_t) in enumerate(syn):
            cells["X"][0, t], cells["Y"][0, t] = X_t, y_t[:, None]
        path = Path(tempfile.mkdtemp(prefix="fmtl-loopback-")) / "synthetic.mat"
        scipy.io.savemat(path, cells)
    ds = load_mat(path)
    m = args.clients
    if not 1 <= m <= ds.n_tasks:
        raise SystemExit(f"--clients must be in [1, {ds.n_tasks}]")
    cfg = {
        "lam": args.lam,
        "outer-iters": args.outer,
        "inner-iters": args.inner,
        "eval-every": args.eval_every,
        "random-state": args.seed,
    }
    nodes = "SuperNodes" if args.runtime == "superlink" else "client processes (grpc-bidi)"
    print(
        f"Flower federation on 127.0.0.1: {m} {nodes}, tasks 0..{m - 1} of {path.name}",
        flush=True,
    )
    out = run_loopback(
        m,
        cfg,
        data=str(path),
        timeout=args.timeout
        if args.timeout is not None
        else 120.0 + 60.0 * m * args.outer * args.inner,
        workdir=args.workdir,
        count_bytes=args.count_bytes,
        verbose=True,
        progress=lambda line: print("  " + line, flush=True),  # one line per round
        runtime=args.runtime,
    )
    h = out["history"]
    rounds = int(h["round"][-1])
    print(f"\nHistory ({len(h)} records):")
    print(f"{'round':>5} {'outer':>5} {'primal':>12} {'dual':>12} {'gap':>11} {'dropped':>7}")
    for r in h:
        print(
            f"{r['round']:>5} {r['outer']:>5} {r['primal']:>12.6f} {r['dual']:>12.6f} "
            f"{r['gap']:>11.3e} {int(np.sum(r['dropped'])):>7}"
        )

    # what travelled: Flower's serialised messages (header + records + arrays)
    wire = out["wire"]
    print("\nBytes per client per round (Flower-serialised messages, mean over clients):")
    for phase in ("train", "evaluate"):
        for direction in ("down", "up"):
            sel = [w for w in wire if w["phase"] == phase and w["direction"] == direction]
            if sel:
                shapes = sorted({str(s) for w in sel for s in w["arrays"].values()}) or "none"
                size = np.mean([w["bytes"] for w in sel])
                per_round = sum(w["bytes"] for w in sel) / (m * rounds)
                print(
                    f"  {phase:>8} {direction:>4}: {size:6.0f} B/message, "
                    f"{per_round:6.0f} B/client/round, arrays {shapes}"
                )
    down = sum(w["bytes"] for w in wire if w["direction"] == "down" and w["phase"] != "query")
    up = sum(w["bytes"] for w in wire if w["direction"] == "up" and w["phase"] != "query")
    print(f"  all phases: down {down / (m * rounds):.0f} B, up {up / (m * rounds):.0f} B")
    if "socket_bytes" in out:
        sb = out["socket_bytes"]
        what = (
            "HTTP, polls, heartbeats, app bundle"
            if args.runtime == "superlink"
            else "the gRPC stream's frames and messages"
        )
        print(f"Socket bytes per client over the whole run ({what}):")
        for i, b in enumerate(sb):
            print(
                f"  client {i}: up {b['up']:,} B, down {b['down']:,} B "
                f"({b['up'] / rounds:,.0f} / {b['down'] / rounds:,.0f} B per round)"
            )

    what = "`flwr run`" if args.runtime == "superlink" else "the server process"
    print(
        f"\nWall time: {out['elapsed']:.1f} s in all (start-up included), "
        f"{out['run_time']:.1f} s for {what}, "
        f"rounds {np.mean(out['run']['round_times']):.3f} s on average"
    )
    t0 = time.perf_counter()
    ref = mocha(
        ds.X[:m],
        ds.y[:m],
        args.lam,
        outer_iters=args.outer,
        inner_iters=args.inner,
        eval_every=args.eval_every,
        random_state=args.seed,
    )
    t_in = time.perf_counter() - t0
    t0 = time.perf_counter()
    mocha(
        ds.X[:m],
        ds.y[:m],
        args.lam,
        outer_iters=args.outer,
        inner_iters=args.inner,
        eval_every=args.eval_every,
        random_state=args.seed,
    )
    t_warm = time.perf_counter() - t0
    diff = float(np.abs(out["coef"] - ref.coef).max())
    print(f"In-process mocha(): {t_in:.3f} s (first call), {t_warm:.4f} s (second call)")
    print(f"max |W_flower - W_in_process| = {diff:.3g}  (bit-identical: {diff == 0.0})")
    print(f"All {len(out['pids'])} processes stopped.")
    if out["workdir"] is not None:
        print(f"Logs and outputs in {out['workdir']}")


if __name__ == "__main__":
    main()
