import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from fmtl.datasets import find_mocha, load_mocha

ROOT = Path(__file__).resolve().parents[1]


def model_file_parts(path) -> tuple[dict, dict]:
    """A saved model file's arrays and its parsed JSON header (to craft bad files)."""
    import json

    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads(str(arrays.pop("__header__")))


def write_model_file(path, header, arrays: dict):
    """Write ``arrays`` with ``header`` (a dict, JSON text written as is, or None for no
    header) as a model file's ``.npz``; returns ``path``."""
    import json

    extra = {}
    if header is not None:
        text = header if isinstance(header, str) else json.dumps(header)
        extra["__header__"] = np.array(text)
    np.savez(path, **extra, **arrays)
    return path


def load_script(relpath: str):
    """Import a script of the repository (``benchmarks/*.py``, ``examples/*.py``) as a module
    named after its file, registered in ``sys.modules`` (its dataclasses need that)."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def small():
    """The MOCHA reference data set (29 tasks), skipped when it is not on this machine."""
    if find_mocha("small") is None:
        pytest.skip("small.mat not found (set FMTL_DATA)")
    return load_mocha("small")


def random_tasks(m=5, n=30, d=6, seed=0, regression=False, sparse=False):
    """Related tasks: w_t = w0 + 0.5 e_t; labels sign(x.w_t + noise)."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=d)
    Xs, ys = [], []
    for t in range(m):
        X = rng.normal(size=(n + 3 * t, d))
        z = X @ (w0 + 0.5 * rng.normal(size=d)) + 0.3 * rng.normal(size=X.shape[0])
        Xs.append(X)
        ys.append(z if regression else np.where(z > 0, 1.0, -1.0))
    return Xs, ys
