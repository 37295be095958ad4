"""Where a Flower round's wall time goes (loopback federation, docs/deploying.md).

Runs ``fmtl.distributed.flower.run_loopback`` with ``FMTL_FLOWER_TRACE`` set, so every
ClientApp process appends when it started, when it had imported fmtl and when it
handled its message; with the server's send and receive times (``wire.json``) each
message's time splits into

* ``wait``: server sends -> the node's ClientApp process starts (the SuperNode's idle
  polling of the SuperLink, the SuperExec's task polling, the process spawn);
* ``startup``: process start -> handler entry (interpreter, Flower's imports, task
  input and app bundle, importing fmtl);
* ``compute``: the handler (loading the task, the local solve, serialising);
* ``return``: handler exit -> the server has the reply (the SuperNode's wait for the
  reply, the push to the SuperLink, the server's pull).

    python benchmarks/flower_breakdown.py --clients 5 --outer 2 --inner 5 --eval-every 5
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np


def breakdown(wire: list[dict], trace: list[dict]) -> dict:
    """Per phase kind, the mean seconds of each part of a message's trip.

    Parameters
    ----------
    wire : list of dict
        The strategy's wire log (``time`` of each message sent and reply received).
    trace : list of dict
        The ClientApp processes' trace lines.

    Returns
    -------
    dict
        ``{kind: {"messages", "wait", "startup", "import", "compute", "return",
        "phase"}}`` (seconds; ``phase``: first send to last reply, per phase).
    """
    sent, got = {}, {}
    for w in wire:
        if "time" not in w:
            continue
        key = (w["phase"], w["round"], w["task"])
        (sent if w["direction"] == "down" else got)[key] = w["time"]
    parts = defaultdict(lambda: defaultdict(list))
    phases = defaultdict(lambda: defaultdict(list))
    for t in trace:
        key = (t["kind"], t["round"], t["task"])
        if key not in sent or key not in got:
            continue
        p = parts[t["kind"]]
        p["wait"].append(t["process_start"] - sent[key])
        p["startup"].append(t["handler_in"] - t["process_start"])
        p["import"].append(t["imported"] - t["process_start"])
        p["compute"].append(t["handler_out"] - t["handler_in"])
        p["return"].append(got[key] - t["handler_out"])
        phases[t["kind"]][t["round"]].append((sent[key], got[key]))
    out = {}
    for kind, p in parts.items():
        spans = [max(g for _, g in v) - min(s for s, _ in v) for v in phases[kind].values()]
        out[kind] = {k: float(np.mean(v)) for k, v in p.items()}
        out[kind]["messages"] = len(p["wait"])
        out[kind]["phase"] = float(np.mean(spans))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=5)
    ap.add_argument("--outer", type=int, default=2)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--data", default="small")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)

    from fmtl.distributed.flower import run_loopback

    work = Path(args.workdir or tempfile.mkdtemp(prefix="fmtl_breakdown_"))
    trace_file = work / "trace.jsonl"
    os.environ["FMTL_FLOWER_TRACE"] = str(trace_file)  # inherited by every process
    cfg = {"outer-iters": args.outer, "inner-iters": args.inner, "eval-every": args.eval_every}
    rounds = args.outer * args.inner
    out = run_loopback(
        args.clients, cfg, data=args.data, timeout=120 + 60 * args.clients * rounds,
        workdir=work,
    )  # fmt: skip
    trace = [json.loads(line) for line in trace_file.read_text().splitlines()]
    imported = {t["fmtl"] for t in trace}
    print(f"ClientApps imported fmtl from: {sorted(imported)}")
    rt = out["run"]["round_times"]
    print(
        f"{args.clients} clients, {len(rt)} rounds: {out['elapsed']:.1f} s in all, "
        f"{out['run_time']:.1f} s in `flwr run`, {np.mean(rt):.2f} s a round "
        f"(median {np.median(rt):.2f}, min {np.min(rt):.2f}, max {np.max(rt):.2f})"
    )
    print(f"{'kind':>9} {'msgs':>5} {'wait':>6} {'startup':>8} {'(import)':>8} "
          f"{'compute':>8} {'return':>7} {'phase':>6}")  # fmt: skip
    for kind, b in sorted(breakdown(out["wire"], trace).items()):
        print(
            f"{kind:>9} {b['messages']:>5} {b['wait']:>6.2f} {b['startup']:>8.2f} "
            f"{b['import']:>8.2f} {b['compute']:>8.3f} {b['return']:>7.2f} {b['phase']:>6.2f}"
        )
    print(f"(seconds, means over messages; logs in {work})")


if __name__ == "__main__":
    main()
