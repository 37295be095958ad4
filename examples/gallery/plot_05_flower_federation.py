"""
Deploying on Flower, locally
============================

fmtl's MOCHA server is a Flower strategy (:class:`fmtl.distributed.flower.FmtlStrategy`)
and each client a Flower ``ClientApp`` that holds one task and its dual variables; only
``d``-vectors and scalars travel. This example runs the *same* apps in Flower's simulation
engine (Ray actors on this machine): three virtual SuperNodes holding tasks 0–2 of
``small``, two outer rounds of three federated rounds each. The federation's model equals
the in-process :func:`fmtl.federated.mocha.mocha` fit for the same seed and schedule.

The deployment path is real processes — a SuperLink, one SuperNode per client and
``flwr run`` — which :func:`fmtl.distributed.flower.run_loopback` starts on 127.0.0.1
(about a minute even for two clients, mostly Flower's 3-second idle polling, so it is not
executed here)::

    from fmtl.distributed.flower import run_loopback

    out = run_loopback(3, {"outer-iters": 2, "inner-iters": 3, "random-state": 5})
    out["coef"], out["history"]["gap"], out["wire"][:2]   # model, certificates, bytes

or from a shell: ``python examples/flower_loopback.py --clients 5`` (see
:doc:`/deploying` for the commands on real machines, with TLS).
"""

# %%
import json
import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.io

from fmtl.datasets import find_mocha, load_mat, make_multitask_classification
from fmtl.federated import mocha

workdir = Path(tempfile.mkdtemp(prefix="fmtl-flower-"))
path = find_mocha("small")
if path is None:
    # Each virtual SuperNode loads task `partition-id` of the data set the server names
    # (``data`` below): write a MOCHA-layout stand-in (cells X and Y).
    print("small.mat not found (set FMTL_DATA): writing a synthetic stand-in")
    ds = make_multitask_classification(n_tasks=3, n_samples=50, n_features=9, random_state=0)
    cells = {k: np.empty((1, ds.n_tasks), dtype=object) for k in ("X", "Y")}
    for t, (X_t, y_t) in enumerate(ds):
        cells["X"][0, t], cells["Y"][0, t] = X_t, y_t[:, None]
    path = workdir / "small.mat"
    scipy.io.savemat(path, cells)
print("data:", path)

# %%
# The federation
# --------------
# ``make_server_app`` fixes the run config (Flower's simulation engine has no
# ``--run-config``); ``output-dir`` receives ``model.npz``, ``history.json`` and
# ``wire.json``. One CPU per virtual client, two for Ray in all.
from flwr.simulation import run_simulation  # noqa: E402

from fmtl.distributed.flower import client_app, make_server_app  # noqa: E402

config = {"outer-iters": 2, "inner-iters": 3, "random-state": 5, "data": str(path)}
out = workdir / "out"
logging.getLogger("flwr").setLevel(logging.ERROR)  # Flower logs every round at INFO
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # run_simulation's deprecation notice, Ray's tips
    run_simulation(
        make_server_app({**config, "output-dir": str(out)}),
        client_app,
        num_supernodes=3,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2}},
    )

coef = np.load(out / "model.npz")["coef"]
history = json.loads((out / "history.json").read_text())
print("files written:", sorted(p.name for p in out.iterdir()))
print("model (3 tasks x d):", coef.shape)

# %%
# Same model as in process
# ------------------------
ds = load_mat(path)
ref = mocha(ds.X[:3], ds.y[:3], 0.01, outer_iters=2, inner_iters=3, random_state=5)
print("max |W_flower - W_in_process| =", np.abs(coef - ref.coef).max())

# %%
# The certificates the server computed from the clients' scalars, round by round, beside
# the in-process History.
gap = np.array([record["gap"] for record in history])  # one record per evaluated round
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(np.arange(1, len(gap) + 1), gap, "o-", label="Flower federation (server History)")
ax.semilogy(ref.history["round"], ref.history["gap"], "x--", label="in-process mocha()")
ax.set_xlabel("federated round")
ax.set_ylabel("duality gap")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The run's files (and the stand-in data set, if one was written) are temporary.
import shutil  # noqa: E402

shutil.rmtree(workdir, ignore_errors=True)
