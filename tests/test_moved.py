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


#: ``__all__`` of fmtl/datasets.py before it became a package, and the other module-level
#: names of it that code outside it used
DATASETS_NAMES = [
    "CHEM97_FEATURES",
    "MATH_ACHIEVE_FEATURES",
    "MultiTaskDataset",
    "STRUCTURES",
    "dirichlet_partition",
    "find_mocha",
    "load_chem97",
    "load_mat",
    "load_math_achieve",
    "load_mocha",
    "make_federated_digits",
    "make_multitask_classification",
    "make_multitask_regression",
    "mocha_data_paths",
    "train_test_split_per_task",
]
DATASETS_OTHER_NAMES = ["FMTL_DATA_ENV", "RandomStateLike", "_not_found_note"]


@pytest.mark.parametrize("name", DATASETS_NAMES + DATASETS_OTHER_NAMES)
def test_every_name_of_the_old_datasets_module_imports_from_fmtl_datasets(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace = {}
        exec(f"from fmtl.datasets import {name}", namespace)
    assert namespace[name] is not None


def test_fmtl_datasets_all_is_unchanged():
    import fmtl.datasets

    assert sorted(fmtl.datasets.__all__) == sorted(DATASETS_NAMES)
