"""Modules that moved keep their old import paths: every public name (and the private ones
other code used) is still importable there, is the same object, and warns on use."""

import importlib
import warnings

import pytest

MOVED = {
    "fmtl.protocols": "fmtl.experiments.error_protocol",
    "fmtl.reproduce": "fmtl.experiments.convergence",
    "fmtl.errors_benchmark": "fmtl.experiments.errors",
}


@pytest.mark.parametrize("old, new", MOVED.items())
def test_old_path_reexports_every_public_name(old, new):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shim = importlib.import_module(old)  # importing alone warns nothing
    target = importlib.import_module(new)
    assert shim.__all__ == target.__all__
    for name in target.__all__:
        with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import {name} from"):
            assert getattr(shim, name) is getattr(target, name)


def test_old_paths_serve_the_names_users_imported():
    with pytest.warns(DeprecationWarning):
        from fmtl.errors_benchmark import DATASET_NAMES, resolve_only  # noqa: F401
        from fmtl.protocols import ConstantBaseline, _task_folds, per_task_error  # noqa: F401
        from fmtl.reproduce import METHODS, _horizon, fastest_lines  # noqa: F401


def test_unknown_name_is_an_attribute_error():
    shim = importlib.import_module("fmtl.protocols")
    with pytest.raises(AttributeError, match="module 'fmtl.protocols' has no attribute 'nope'"):
        shim.nope  # noqa: B018
