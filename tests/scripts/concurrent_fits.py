"""Fit estimators from several threads at once; print the threading layer, the errors and
whether every concurrent model equals its serial fit (run by tests/test_concurrency.py)."""

import sys
import threading
import warnings

import numba
import numpy as np

import fmtl
from fmtl.datasets import make_multitask_classification


def main() -> None:
    warnings.simplefilter("ignore")
    X, y, t = make_multitask_classification(
        n_tasks=6, n_samples=60, n_features=8, random_state=0
    ).stack()
    classes = {n: getattr(fmtl, n) for n in sys.argv[1].split(",")}
    serial = {n: c(random_state=0).fit(X, y, t).coef_ for n, c in classes.items()}
    out, errors = {}, []

    def fit(name, k):
        try:
            out[name, k] = classes[name](random_state=0).fit(X, y, t).coef_
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=fit, args=(n, k)) for n in classes for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print("layer", numba.threading_layer(), "errors", errors)
    same = all(np.array_equal(out[n, k], serial[n]) for n in classes for k in range(2))
    print("identical", same)


if __name__ == "__main__":
    main()
