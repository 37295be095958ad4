"""Fit, fork, fit in the child; print how the child ended (run by tests/test_concurrency.py)."""

import os
import warnings

import numba

import fmtl
from fmtl.datasets import make_multitask_classification


def main() -> None:
    warnings.simplefilter("ignore")
    X, y, t = make_multitask_classification(
        n_tasks=6, n_samples=60, n_features=8, random_state=0
    ).stack()
    fmtl.MochaClassifier(random_state=0).fit(X, y, t)
    print("parent layer", numba.threading_layer(), flush=True)
    pid = os.fork()
    if pid == 0:
        try:
            fmtl.MochaClassifier(random_state=0).fit(X, y, t)
            print("child ok", flush=True)
            os._exit(0)
        except Exception as e:  # noqa: BLE001 - reported
            print("child error:", type(e).__name__, str(e)[:300], flush=True)
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    print("child status", os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
