"""Every public name has a numpydoc docstring with Parameters, Returns (functions), Raises
and Examples; the Examples themselves run as doctests (``--doctest-modules`` in pytest's
configuration), so this checks that the sections exist and parse."""

import importlib
import inspect

import pytest
from numpydoc.docscrape import ClassDoc, FunctionDoc

PUBLIC_MODULES = [
    "fmtl",
    "fmtl.federated",
    "fmtl.federated.engine",
    "fmtl.federated.line_search",
    "fmtl.relationships",
    "fmtl.losses",
    "fmtl.solvers",
    "fmtl.datasets",
    "fmtl.theory",
    "fmtl.reference",
    "fmtl.persistence",
    "fmtl.experiments.error_protocol",
    "fmtl.personalized",
    "fmtl.kernel_estimators",
    "fmtl.compose",
    "fmtl.cv",
    "fmtl.distributed.dask",
    "fmtl.distributed.flower",
    "fmtl.distributed.flower_bidi",
    "fmtl.distributed.protocol",
]


def _public_objects():
    seen = {}
    for name in PUBLIC_MODULES:
        mod = importlib.import_module(name)
        for attr in mod.__all__:
            obj = getattr(mod, attr)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return sorted(seen.items())


PUBLIC = _public_objects()


def test_public_api_is_large_enough_to_mean_something():
    # guards against the discovery above silently finding nothing
    assert len(PUBLIC) > 100


@pytest.mark.parametrize("qualname, obj", PUBLIC, ids=[q for q, _ in PUBLIC])
def test_numpydoc_sections(qualname, obj):
    doc = ClassDoc(obj, config={"show_class_members": False}) if inspect.isclass(obj) else None
    if doc is None:
        doc = FunctionDoc(obj)
    assert doc["Summary"], f"{qualname}: no summary line"
    missing = [s for s in ("Parameters", "Raises") if not doc[s]]
    if inspect.isfunction(obj) and not (doc["Returns"] or doc["Yields"]):
        missing.append("Returns")
    if ">>>" not in "\n".join(doc["Examples"]):
        missing.append("Examples")
    assert not missing, f"{qualname} lacks numpydoc sections: {missing}"


def _public_methods():
    out = {}
    for _qualname, cls in PUBLIC:
        if not inspect.isclass(cls) or not hasattr(cls, "fit"):
            continue
        for name, member in inspect.getmembers(
            cls, lambda m: inspect.isfunction(m) or inspect.ismethod(m)
        ):
            meth = getattr(member, "__func__", member)  # classmethods (load)
            # fmtl's own public methods (scikit-learn's are documented there)
            if not name.startswith("_") and (meth.__module__ or "").startswith("fmtl"):
                out.setdefault(meth.__qualname__, (f"{meth.__module__}.{meth.__qualname__}", meth))
    return sorted(out.values())


METHODS = _public_methods()


def test_estimator_methods_are_found():
    assert {m.rsplit(".", 1)[1] for m, _ in METHODS} >= {"fit", "predict", "score", "save"}


@pytest.mark.parametrize("qualname, meth", METHODS, ids=[q for q, _ in METHODS])
def test_estimator_method_numpydoc_sections(qualname, meth):
    doc = FunctionDoc(meth)
    params = [p for p in inspect.signature(meth).parameters if p not in ("self", "cls")]
    missing = [s for s in ("Returns", "Raises") if not doc[s]]
    if params and not doc["Parameters"]:
        missing.append("Parameters")
    if ">>>" not in "\n".join(doc["Examples"]):
        missing.append("Examples")
    assert not missing, f"{qualname} lacks numpydoc sections: {missing}"
