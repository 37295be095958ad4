"""Engine-agnostic server and client logic of fmtl's federated methods.

Nothing here knows about a network: a *message* is a pair ``(arrays, config)`` of a dict
of numpy arrays and a dict of scalars (bool, int, float, str). :mod:`fmtl.distributed.
flower` wraps them into Flower ``ArrayRecord`` / ``ConfigRecord`` objects; any other
engine can do the same, and :func:`run_local` drives a server and its clients in one
process (what the tests compare with the in-process algorithms).

What travels (MOCHA, one task per client, ``d`` features)
----------------------------------------------------------
* server -> client, train: ``w`` (d,), ``Sigma_tt``, ``rho``, ``lam``, the local step
  budget, the round's 64-bit seed, ``theta``, the pass-check interval and ``ack`` (the
  last round whose update from this client the server aggregated);
* client -> server, train: ``db`` (d,) and scalars (steps done, local gaps before/after,
  local progress, committed-update count);
* server -> client, evaluate: ``w`` (d,) and ``ack``;
* client -> server, evaluate: two scalars, the mean loss at ``w`` and the mean
  ``-l*(-alpha)``, and the committed-update count.

The dual variables ``alpha_t`` (one per sample) and the data never leave the client.

Dual consistency under failures
-------------------------------
The server keeps ``B`` with row ``t`` the sum of every ``db_t`` it aggregated, so ``B =
B(alpha)`` must hold over the *committed* duals of every client. A client therefore
keeps each round's new duals as *pending* and commits them only when the server's next
message (train or evaluate) carries ``ack`` equal to that round; any other ``ack`` (its
reply was lost, late, malformed or came from a failed node) rolls the pending update
back. A client that lost its state (restart: zero committed updates while the server
aggregated some) is detected from the count it reports, and the server resets its row
of ``B`` to zero, which restores ``B = B(alpha)``.

Reproducibility
---------------
:class:`MochaServerState` consumes its ``numpy.random.default_rng(random_state)`` exactly
as :func:`fmtl.federated.mocha` does per round (``SystemsRuntime.draw`` then
``draw_seeds``), and each client runs fmtl's numba SDCA kernel on its single task, so the
same seed and schedule give a bit-identical model to the in-process fit when every reply
arrives (a missing reply is MOCHA's dropped node).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .._random import rng_from
from ..federated._loop import (
    DualRound,
    Recorder,
    as_tasks,
    check_frac,
    check_lam,
    check_nonneg,
    check_positive_int,
    draw_seeds,
    objective_terms,
    row_norm_means,
)
from ..federated.engine import DualEngine, dual_update_bounds
from ..federated.history import History
from ..federated.mocha import check_schedule, initial_sigma, symmetric_with_precision
from ..federated.systems import SystemsModel, SystemsRuntime
from ..losses import get_loss
from ..relationships import check_ridge
from ..solvers.sgd import local_sgd_round

PROTOCOL_VERSION = 1

Message = tuple[dict, dict]  # (arrays: name -> ndarray, config: name -> scalar)

__all__ = [
    "CLIENT_METHODS",
    "PROTOCOL_VERSION",
    "SERVER_METHODS",
    "FedAvgClientState",
    "FedAvgServerState",
    "MochaClientState",
    "MochaServerState",
    "ServerResult",
    "client_handle",
    "make_server",
    "run_local",
    "seed_from_wire",
    "seed_to_wire",
]


# ----------------------------------------------------------------------------- wire helpers


def seed_to_wire(seed) -> int:
    """A uint64 seed as a signed 64-bit int (what protobuf ``sint64`` fields carry).

    Parameters
    ----------
    seed : int or numpy.uint64
        A seed in ``[0, 2**64)``.

    Returns
    -------
    int
        The same 64 bits read as a signed integer, in ``[-2**63, 2**63)``.

    Raises
    ------
    OverflowError
        If ``seed`` is outside ``[0, 2**64)``.

    See Also
    --------
    seed_from_wire : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> seed_to_wire(5), seed_to_wire(np.uint64(2**64 - 1))
    (5, -1)
    """
    return int(np.array(seed, dtype=np.uint64).view(np.int64))


def seed_from_wire(value) -> np.uint64:
    """Inverse of :func:`seed_to_wire`.

    Parameters
    ----------
    value : int
        A signed 64-bit integer from the wire.

    Returns
    -------
    numpy.uint64
        The seed.

    Raises
    ------
    OverflowError
        If ``value`` is outside ``[-2**63, 2**63)``.
    ValueError
        If ``value`` is a string ``int()`` cannot parse.

    Examples
    --------
    >>> int(seed_from_wire(-1)) == 2**64 - 1
    True
    >>> int(seed_from_wire(seed_to_wire(12345)))
    12345
    """
    return np.array(int(value), dtype=np.int64).view(np.uint64)[()]


def _vector(arrays: Mapping, key: str, d: int) -> np.ndarray:
    """``arrays[key]`` as a finite float64 (d,) vector, else ValueError."""
    if key not in arrays:
        raise ValueError(f"message has no array {key!r}")
    v = np.asarray(arrays[key])
    if v.shape != (d,) or v.dtype != np.float64:
        raise ValueError(f"array {key!r} must be float64 of shape ({d},), got {v.dtype} {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"array {key!r} is not finite")
    return v


# ---------------------------------------------------------------------------------- clients


def _client_info(tasks) -> dict:
    """A client's handshake reply for its one task (packed): rows ``n``, features ``d``,
    mean row norm and mean squared row norm (from which the server bounds a correct
    update, :func:`~fmtl.federated.engine.dual_update_bounds`, and, for a node that stops
    answering, its loss at a later model, :meth:`fmtl.losses.Loss.mean_value_bound`)."""
    return {
        "n": int(tasks.n_samples[0]),
        "d": int(tasks.n_features),
        "row_norm": float(row_norm_means(tasks)[0]),
        "row_sqnorm": float(row_norm_means(tasks, squared=True)[0]),
        "version": PROTOCOL_VERSION,
    }


def _optional_float(v) -> float | None:
    return None if v is None else float(v)


class MochaClientState:
    """One MOCHA client: its task ``(X_t, y_t)`` and dual variables ``alpha_t``.

    Parameters
    ----------
    X : array of shape (n_t, d), dense or scipy sparse
        The client's design matrix.
    y : array of shape (n_t,)
        Its targets.
    lam : float
        Regularisation strength (the server's).
    loss : str or Loss, default="hinge"
        The loss (see :func:`fmtl.losses.get_loss`).
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.

    Attributes
    ----------
    alpha : ndarray of shape (n_t,)
        Committed dual variables.
    n, d : int
        Rows and features of the task.
    n_commits, n_rollbacks : int
        Updates committed and rolled back so far.

    Raises
    ------
    ValueError
        For an unknown loss or bad ``gamma``, a ``lam`` that is not positive and finite,
        or invalid data (``X`` not 2-D, NaN or inf, ``y`` of the wrong length, labels not
        in {-1, +1} for a classification loss).
    TypeError
        For non-numeric ``X`` or ``y``.
    FloatingPointError
        From ``train``/``handle``, if the local solve gives a non-finite update.

    Notes
    -----
    ``alpha`` (committed) never leaves the client; :meth:`train` returns only the
    d-vector ``db_t = X_t^T (alpha_new - alpha) / n_t`` and scalars, and keeps
    ``alpha_new`` pending until the server acknowledges the update (module docstring).
    ``handle`` raises ``ValueError`` for an unknown message kind or a missing,
    ill-shaped or non-finite ``w`` and ``KeyError`` for a missing config entry.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(10, 3))
    >>> client = MochaClientState(X, np.sign(X[:, 0]), lam=0.1)
    >>> out = client.train(np.zeros(3), sigma_tt=1.0, rho=1.0, steps=10, seed=1, rnd=1)
    >>> out["db"].shape, out["steps_done"], client.pending_round
    ((3,), 10, 1)
    >>> client.sync(1)  # the server aggregated round 1: commit
    >>> client.n_commits, bool(np.any(client.alpha != 0))
    (1, True)
    """

    def __init__(self, X, y, lam: float, loss="hinge", gamma: float = 1.0) -> None:
        self.loss = get_loss(loss, gamma)
        self.lam = check_lam(lam)
        self.tasks = as_tasks([X], [y], self.loss)
        self.n = int(self.tasks.n_samples[0])
        self.d = int(self.tasks.n_features)
        self.alpha = np.zeros(self.n)
        self.pending_round = 0
        self.pending_alpha: np.ndarray | None = None
        self.n_commits = 0
        self.n_rollbacks = 0

    # state kept between messages (Flower keeps it in ``context.state`` on the node)
    def state_dict(self) -> tuple[dict, dict]:
        arrays = {"alpha": self.alpha}
        if self.pending_alpha is not None:
            arrays["pending_alpha"] = self.pending_alpha
        config = {
            "pending_round": int(self.pending_round),
            "n_commits": int(self.n_commits),
            "n_rollbacks": int(self.n_rollbacks),
        }
        return arrays, config

    def load_state(self, arrays: Mapping, config: Mapping) -> None:
        alpha = np.asarray(arrays["alpha"], dtype=np.float64)
        if alpha.shape != (self.n,):
            raise ValueError(f"stored alpha has shape {alpha.shape}, task has {self.n} rows")
        self.alpha = alpha.copy()
        pending = arrays.get("pending_alpha")
        self.pending_alpha = None if pending is None else np.asarray(pending, float).copy()
        self.pending_round = int(config.get("pending_round", 0))
        self.n_commits = int(config.get("n_commits", 0))
        self.n_rollbacks = int(config.get("n_rollbacks", 0))

    def sync(self, ack: int | None, scale: float | None = None) -> None:
        """Commit the pending update if the server aggregated it (``ack`` is its round),
        else roll it back. ``ack=None`` leaves it pending. ``scale``: the fraction of the
        update the server aggregated (its line search, ``sigma_prime="adaptive"``)."""
        if ack is None or self.pending_alpha is None:
            return
        if int(ack) == self.pending_round:
            if scale is None:
                self.alpha = self.pending_alpha
            else:  # the same arithmetic as the in-process pool's rescale, bit for bit
                self.alpha = self.alpha + scale * (self.pending_alpha - self.alpha)
            self.n_commits += 1
        else:
            self.n_rollbacks += 1
        self.pending_alpha = None
        self.pending_round = 0

    def train(
        self,
        w_t,
        sigma_tt: float,
        rho: float,
        steps: int,
        seed,
        theta: float = 0.0,
        commit: int | None = None,
        *,
        rnd: int = 1,
        check_every: int = 0,
        record_gaps: bool = False,
        scale: float | None = None,
    ) -> dict:
        """Run ``steps`` local SDCA steps from the committed duals at ``w_t``.

        ``commit`` is the server's ``ack`` (see :meth:`sync`, with its ``scale``), applied
        first. Returns ``{"db": (d,) array, "steps_done", "gap_start", "gap_end",
        "progress", "conj_gain", "n_commits", "n_rollbacks"}``; the new duals stay pending
        as round ``rnd``.
        """
        self.sync(commit, scale)
        # the in-process pool over this one task: the same kernel call, failure check and
        # local-progress formula as mocha()
        pool = DualRound(self.tasks, self.loss, self.lam, bool(record_gaps))
        pool.alpha[:] = self.alpha
        w = np.ascontiguousarray(np.asarray(w_t, dtype=np.float64).reshape(1, self.d))
        dB = pool.run(
            w,
            np.array([sigma_tt], dtype=np.float64),
            float(rho),
            np.array([steps], dtype=np.int64),
            np.array([seed], dtype=np.uint64),
            np.ones(1, dtype=np.bool_),
            float(theta),
            np.array([check_every], dtype=np.int64),
        )
        if pool.failed[0]:
            raise FloatingPointError("local solve produced a non-finite update")
        alpha = pool.alpha
        steps_done, gap0, gap1 = pool.steps_done, pool.gap0, pool.gap1
        progress = float(pool.progress[0]) if record_gaps else np.nan
        conj_gain = float(pool.conjugate_gain())  # the line search's c_t
        self.pending_alpha = alpha
        self.pending_round = int(rnd)
        return {
            "db": dB[0].copy(),
            "steps_done": int(steps_done[0]),
            "gap_start": float(gap0[0]),
            "gap_end": float(gap1[0]),
            "progress": progress,
            "conj_gain": conj_gain,
            "n_commits": self.n_commits,
            "n_rollbacks": self.n_rollbacks,
        }

    def evaluate(self, w_t, commit: int | None = None, scale: float | None = None) -> dict:
        """Mean loss at ``w_t`` and mean ``-l*(-alpha)`` over the committed duals."""
        self.sync(commit, scale)
        w = np.ascontiguousarray(np.asarray(w_t, dtype=np.float64).reshape(1, self.d))
        loss_mean, conj_mean = objective_terms(self.tasks, self.alpha, w, self.loss)
        return {
            "loss_mean": float(loss_mean[0]),
            "conj_mean": float(conj_mean[0]),
            "n_commits": self.n_commits,
            "n_rollbacks": self.n_rollbacks,
        }

    # engine-agnostic message handling
    def handle(self, kind: str, arrays: Mapping, config: Mapping) -> Message:
        if kind == "query":
            return {}, _client_info(self.tasks)
        if kind == "train":
            carried = _carried_eval(self, arrays, config)
            out = self.train(
                _vector(arrays, "w", self.d),
                float(config["sigma_tt"]),
                float(config["rho"]),
                int(config["steps"]),
                seed_from_wire(config["seed"]),
                float(config.get("theta", 0.0)),
                int(config["ack"]),
                rnd=int(config["round"]),
                check_every=int(config.get("check_every", 0)),
                record_gaps=bool(config.get("record_gaps", False)),
                scale=_optional_float(config.get("scale")),
            )
            db = out.pop("db")
            return {"db": db}, {"round": int(config["round"]), **out, **carried}
        if kind == "evaluate":
            out = self.evaluate(
                _vector(arrays, "w", self.d),
                int(config["ack"]),
                _optional_float(config.get("scale")),
            )
            return {}, {"round": int(config["round"]), **out}
        raise ValueError(f"MOCHA client cannot handle a {kind!r} message")


class FedAvgClientState:
    """One FedAvg client (stateless between rounds): local SGD from the global model.

    Parameters
    ----------
    X : array of shape (n_t, d), dense or scipy sparse
        The client's design matrix.
    y : array of shape (n_t,)
        Its targets.
    lam : float
        L2 regularisation (the server's).
    loss : str or Loss, default="logistic"
        The loss (see :func:`fmtl.losses.get_loss`).
    gamma : float, default=1.0
        Smoothing of ``"smoothed_hinge"``.

    Raises
    ------
    ValueError
        For an unknown loss or bad ``gamma``, a ``lam`` that is not positive and finite,
        or invalid data (``X`` not 2-D, NaN or inf, ``y`` of the wrong length, labels not
        in {-1, +1} for a classification loss).
    TypeError
        For non-numeric ``X`` or ``y``.
    FloatingPointError
        From ``train``/``handle``, if local SGD gives a non-finite model.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(10, 3))
    >>> client = FedAvgClientState(X, np.sign(X[:, 0]), lam=0.1)
    >>> w = client.train(np.zeros(3), lr=0.1, steps=10, seed=0)
    >>> w.shape, client.evaluate(w)["loss_mean"] < client.evaluate(np.zeros(3))["loss_mean"]
    ((3,), True)
    """

    def __init__(self, X, y, lam: float, loss="logistic", gamma: float = 1.0) -> None:
        self.loss = get_loss(loss, gamma)
        self.lam = check_lam(lam)
        self.tasks = as_tasks([X], [y], self.loss)
        self.n = int(self.tasks.n_samples[0])
        self.d = int(self.tasks.n_features)

    def state_dict(self) -> tuple[dict, dict]:
        return {}, {}

    def load_state(self, arrays: Mapping, config: Mapping) -> None:
        pass

    def train(self, w, lr: float, steps: int, seed) -> np.ndarray:
        W0 = np.ascontiguousarray(np.asarray(w, dtype=np.float64).reshape(1, self.d))
        Wout = np.zeros((1, self.d))
        local_sgd_round(
            *self.tasks.kernel_args,
            W0,
            self.loss.code,
            self.loss.param,
            self.lam,
            float(lr),
            np.array([steps], dtype=np.int64),
            np.array([seed], dtype=np.uint64),
            np.ones(1, dtype=np.bool_),
            Wout,
            parallel=False,
        )
        if not np.all(np.isfinite(Wout)):
            raise FloatingPointError("local SGD produced a non-finite model")
        return Wout[0].copy()

    def evaluate(self, w) -> dict:
        W0 = np.ascontiguousarray(np.asarray(w, dtype=np.float64).reshape(1, self.d))
        loss_mean, _ = objective_terms(self.tasks, np.zeros(self.n), W0, self.loss)
        return {"loss_mean": float(loss_mean[0])}

    def handle(self, kind: str, arrays: Mapping, config: Mapping) -> Message:
        if kind == "query":
            return {}, _client_info(self.tasks)
        w = _vector(arrays, "w", self.d)
        if kind == "train":
            carried = _carried_eval(self, arrays, config)
            w_out = self.train(
                w, float(config["lr"]), int(config["steps"]), seed_from_wire(config["seed"])
            )
            return {"w": w_out}, {"round": int(config["round"]), "n": self.n, **carried}
        if kind == "evaluate":
            return {}, {"round": int(config["round"]), **self.evaluate(w)}
        raise ValueError(f"FedAvg client cannot handle a {kind!r} message")


def _carried_eval(client, arrays: Mapping, config: Mapping) -> dict:
    """The certificate terms of round ``config["eval_round"]`` a train message asks for
    (the server folds the previous round's evaluation into this round's work; see
    :class:`MochaServerState`), computed first: at ``w_eval`` (``w`` if absent) over the
    duals committed by this message's ``ack``, i.e. exactly what that round's evaluate
    message would have got. ``{}`` if the message carries no evaluation."""
    if "eval_round" not in config:
        return {}
    w = _vector(arrays, "w_eval" if "w_eval" in arrays else "w", client.d)
    if isinstance(client, MochaClientState):
        out = client.evaluate(w, int(config["ack"]), _optional_float(config.get("scale")))
    else:
        out = client.evaluate(w)
    return {"eval_round": int(config["eval_round"]), **out}


# method name -> client state class; "local" and "cocoa" are MOCHA's W-step on the client
CLIENT_METHODS: dict[str, type] = {
    "mocha": MochaClientState,
    "local": MochaClientState,
    "cocoa": MochaClientState,
    "fedavg": FedAvgClientState,
}


def client_handle(
    kind: str,
    arrays: Mapping,
    config: Mapping,
    data: Callable[[], tuple],
    state: tuple[dict, dict] | None,
) -> tuple[Message, tuple[dict, dict] | None]:
    """One client step, engine-agnostic.

    Builds the method's client, restores its state, handles the message and returns the
    reply and the state to keep.

    ``kind`` is ``"query"`` (handshake: reply ``n``, ``d``), ``"train"`` or
    ``"evaluate"``; ``config["method"]`` picks the client class; ``data()`` returns the
    client's ``(X, y)``; ``state`` is what the previous call returned (None at first).

    Parameters
    ----------
    kind : {"query", "train", "evaluate"}
        The message kind.
    arrays : mapping of str to ndarray
        The message's arrays (``w`` for train and evaluate).
    config : mapping of str to scalar
        The message's scalars: ``method`` (default ``"mocha"``), ``lam``, ``loss``,
        ``gamma`` and the kind's own entries (as :meth:`MochaServerState.begin_round`
        sends them).
    data : callable
        Returns the client's ``(X, y)``.
    state : (dict, dict) or None
        The state returned by the previous call on this client.

    Returns
    -------
    reply : (dict, dict)
        The reply message ``(arrays, config)``.
    state : (dict, dict) or None
        The state to pass to the next call (unchanged for ``"query"``).

    Raises
    ------
    ValueError
        For an unknown ``method`` or ``kind``, invalid data or settings, a missing,
        ill-shaped or non-finite ``w``, or a stored state of the wrong size.
    KeyError
        If ``config`` lacks an entry the message needs (e.g. ``lam`` or ``loss``).
    TypeError
        For non-numeric data.
    FloatingPointError
        If the local solve gives a non-finite update.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(10, 3))
    >>> data = lambda: (X, np.sign(X[:, 0]))
    >>> (_, info), state = client_handle("query", {}, {"method": "mocha"}, data, None)
    >>> info["n"], info["d"], sorted(info), state
    (10, 3, ['d', 'n', 'row_norm', 'row_sqnorm', 'version'], None)
    >>> server = make_server("mocha", [10], 3, 0.1, inner_iters=1, random_state=0)
    >>> arrays, config = server.begin_round()[0]
    >>> (reply_arrays, reply_config), state = client_handle("train", arrays, config, data,
    ...                                                     None)
    >>> reply_arrays["db"].shape, state[1]["pending_round"]
    ((3,), 1)
    """
    method = str(config.get("method", "mocha"))
    if method not in CLIENT_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(CLIENT_METHODS)}")
    X, y = data()
    if kind == "query":
        # the row norms as the clients compute them (the server's bounds, bit for bit)
        loss = get_loss(str(config.get("loss", "hinge")), float(config.get("gamma", 1.0)))
        tasks = as_tasks([X], [y], loss)
        return ({}, _client_info(tasks)), state
    client = CLIENT_METHODS[method](
        X, y, float(config["lam"]), str(config["loss"]), float(config.get("gamma", 1.0))
    )
    if state is not None and state[0]:
        client.load_state(*state)
    reply = client.handle(kind, arrays, config)
    return reply, client.state_dict()


# ---------------------------------------------------------------------------------- servers


@dataclass
class ServerResult:
    """What a server state returns at the end of a run (the duals stay on the clients).

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        Task models (FedAvg: the global model, one row per task).
    sigma, omega : ndarray of shape (n_tasks, n_tasks) or None
        Final relationship and its inverse (None for FedAvg).
    B : ndarray of shape (n_tasks, n_features) or None
        The server's ``B`` (None for FedAvg).
    history : History
        One record per evaluated round.
    never_reported : ndarray of int, default=empty
        Tasks whose node never returned an update.

    Raises
    ------
    TypeError
        If a field other than ``never_reported`` is missing (dataclass constructor).

    See Also
    --------
    run_local : Drives a server to its ServerResult.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(10, 3)) for _ in range(2)]
    >>> clients = [MochaClientState(X, np.sign(X[:, 0]), 0.1) for X in Xs]
    >>> server = make_server("mocha", [10, 10], 3, 0.1, outer_iters=1, inner_iters=2)
    >>> res = run_local(server, clients)
    >>> res.coef.shape, res.sigma.shape, len(res.history), res.never_reported.size
    ((2, 3), (2, 2), 2, 0)
    """

    coef: np.ndarray
    sigma: np.ndarray | None
    omega: np.ndarray | None
    B: np.ndarray | None
    history: History
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class _ServerBase:
    """Round state machine shared by the servers.

    Per round: :meth:`begin_round` (instructions for the nodes that take part, or None
    once finished), :meth:`end_train` (the replies; a missing reply is None), then, if
    :attr:`eval_due`, :meth:`eval_instructions` and :meth:`end_eval`, and always
    :meth:`end_round`.

    With ``fold_eval`` the certificates of an evaluated round travel with the next
    round's train messages instead of a separate evaluate exchange (one round trip per
    round instead of two): :meth:`end_train` then leaves :attr:`eval_due` False and keeps
    the round's server-side terms; the next :meth:`begin_round` adds ``eval_round`` (and
    ``w_eval`` when a Sigma-step moved ``w_t`` since) to each train message, the client
    computes that round's terms first, exactly as its evaluate message would have, and
    returns them with its train reply. While :attr:`eval_pending`, the nodes without a
    train message this round (dropped by the systems model) get an evaluate message from
    :meth:`eval_instructions` in the same exchange, whose replies go to :meth:`end_train`
    (``eval_replies``); after the last round (:meth:`begin_round` returns None) the
    pending certificates take one evaluate exchange (:meth:`eval_instructions`,
    :meth:`end_eval`). Only for fits whose schedule does not depend on the certificates
    (MOCHA: ``tol = 0`` and ``outer_tol = 0``); others evaluate in place. A lost train
    reply then also loses that node's terms of the previous round's certificate, which the
    server bounds (``eval_bounded``, :meth:`MochaServerState._bound_terms`).
    """

    method = "?"
    fold_eval = False
    _late: dict | None = None  # the evaluated round whose certificates are pending

    @property
    def eval_pending(self) -> bool:
        """Whether an earlier round's certificates are still to be collected."""
        return self._late is not None

    def _can_fold(self) -> bool:
        return self.fold_eval

    def _carry_eval(self, out: dict) -> dict:
        """Add the pending evaluation to this round's train instructions ``out``."""
        late = self._late
        if late is None:
            return out
        for t, (arrays, config) in out.items():
            config["eval_round"] = late["rnd"]
            w_eval = late["W"][t]
            if w_eval.tobytes() != arrays["w"].tobytes():  # a Sigma-step moved w_t
                arrays["w_eval"] = w_eval.copy()
        return out

    def _late_instructions(self) -> dict[int, Message]:
        """Evaluate messages of the pending certificates for the nodes this round's
        train messages do not carry them to (all of them once the run is finished)."""
        late = self._late
        sent = self._round["sent"] if self._round is not None else set()
        return {
            t: ({"w": late["W"][t].copy()}, {**self._common(late["rnd"], t), **self._ack(t)})
            for t in range(self.m)
            if t not in sent
        }

    def _late_replies(self, replies: Mapping, eval_replies: Mapping | None) -> dict:
        """The pending certificates' replies: the evaluate replies, and the terms the
        train replies carried (as the evaluate replies they replace)."""
        out = dict(eval_replies or {})
        for t, reply in replies.items():
            try:
                config = reply[1]
                if "eval_round" not in config:
                    continue
                keys = ("loss_mean", "conj_mean", "n_commits", "n_rollbacks")
                carried = {k: config[k] for k in keys if k in config}
                out[int(t)] = ({}, {"round": config["eval_round"], **carried})
            except (TypeError, IndexError, KeyError):
                continue
        return out

    def _ack(self, t: int) -> dict:
        return {}

    def end_eval(self, replies: Mapping[int, Message | None]) -> dict:
        """Record the certificates from the nodes' evaluate replies in History (MOCHA: a
        node that did not answer gets bounds, so the gap over-estimates the true one;
        NaN only if it never answered); after the last round, the pending certificates
        (``fold_eval``)."""
        if self._late is not None:
            if self._round is not None:
                raise RuntimeError("pending certificates go to end_train() during a round")
            return self._certify(replies, self._late)
        return self._certify(replies)

    def handshake_config(self) -> dict:
        return {
            "method": self.method,
            "lam": self.lam,
            "loss": self.loss.name,
            "gamma": self.gamma,
        }

    def handshake(self, infos: Mapping[int, Mapping]) -> None:
        """Take the clients' handshake replies (task -> :func:`_client_info`); the dual
        servers bound each node's update by its ``row_norm`` (no entry: no bound)."""

    def _common(self, rnd: int, t: int) -> dict:
        return {**self.handshake_config(), "round": int(rnd), "task": int(t)}

    @property
    def finished(self) -> bool:
        return self._finished


class MochaServerState(_ServerBase):
    """The MOCHA server: ``B``, ``Sigma``, ``rho``, the RNG and the loop position.

    A thin adapter over :func:`fmtl.federated.mocha`'s server state machine
    (:class:`fmtl.federated.engine.DualEngine`, attribute ``engine``): it turns the
    clients' messages into the engine's per-task vectors (``dB``, work done, failures, the
    certificate terms) and keeps what only a network needs (acks, commit counts, state
    resets). Reproduces :func:`fmtl.federated.mocha` (dense Sigma, no checkpointing): same
    parameters and meaning, same RNG consumption, same History columns (``wall_time``
    aside). ``n_samples`` are the tasks' sizes (each client reports its ``n_t`` at the
    handshake); ``check_every`` and ``slowest_node_time`` exist for CoCoA
    (:func:`make_server`).

    Parameters
    ----------
    n_samples : array_like of int, shape (n_tasks,)
        ``n_t`` per task.
    n_features : int
        ``d``.
    lam, loss, gamma, relationship, sigma, outer_iters, inner_iters, local_frac, \
local_theta, tol, outer_tol, sigma_floor, sigma_prime, random_state, systems, \
record_local_gaps, eval_every, callback, ridge
        As for :func:`fmtl.federated.mocha` (``ridge``: the nodes receive the W-step
        matrix's ``Sigma_tt`` and ``sigma'``, so clients need no change).
    check_every : int or array_like of int, optional
        Local-gap check interval per node (CoCoA); None: never check.
    slowest_node_time : bool, default=False
        Estimate a round's time by its slowest node (CoCoA's accounting).

    Attributes
    ----------
    B : ndarray of shape (n_tasks, n_features)
        Row ``t`` is the sum of the aggregated ``db_t``.
    Sigma : ndarray of shape (n_tasks, n_tasks)
        The current relationship.
    finished : bool
        Whether the run is over.

    Raises
    ------
    ValueError
        From the constructor, for the invalid settings :func:`fmtl.federated.mocha`
        refuses, or no tasks / a negative ``n_samples``.
    TypeError
        For a non-numeric ``sigma``/``sigma_prime``, a non-boolean ``record_local_gaps``
        or a ``systems`` that is not a :class:`~fmtl.federated.SystemsModel`.
    RuntimeError
        From ``end_train``: called without ``begin_round``, a node's committed-update
        count contradicts ``B``, or a node fails more than ``systems.max_failures``
        times.

    Examples
    --------
    >>> import numpy as np
    >>> server = MochaServerState([10, 10], 3, 0.1, outer_iters=1, inner_iters=2,
    ...                           random_state=0)
    >>> instructions = server.begin_round()
    >>> sorted(instructions), sorted(instructions[0][0])
    ([0, 1], ['w'])
    >>> server.end_train({})  # no reply: both nodes count as failed this round
    True
    >>> server.end_eval({})["gap"]  # no node answered: no certificate
    nan
    """

    method = "mocha"

    def __init__(
        self,
        n_samples,
        n_features: int,
        lam: float,
        loss="hinge",
        *,
        gamma: float = 1.0,
        relationship: str = "learned",
        sigma: np.ndarray | None = None,
        outer_iters: int = 10,
        inner_iters: int = 50,
        local_frac: float = 1.0,
        local_theta: float = 0.0,
        tol: float = 0.0,
        outer_tol: float = 0.0,
        sigma_floor: float = 1e-6,
        sigma_prime: str | float = "gershgorin",
        random_state=None,
        systems: SystemsModel | None = None,
        record_local_gaps: bool | None = None,
        eval_every: int = 1,
        callback=None,
        check_every=None,
        slowest_node_time: bool = False,
        fold_eval: bool = False,
        ridge: float = 0.0,
    ) -> None:
        self.fold_eval = bool(fold_eval)
        self.loss = get_loss(loss, gamma)
        self.gamma = float(gamma)
        self.lam = check_lam(lam)
        ridge = check_ridge(ridge)
        self.n = np.asarray(n_samples, dtype=np.int64).ravel()
        self.m = m = int(self.n.shape[0])
        self.d = int(n_features)
        if m < 1 or np.any(self.n < 0):
            raise ValueError(f"n_samples must be >= 0 for at least one task, got {n_samples!r}")
        # the same checks, in the same order, as mocha() (this server reproduces it)
        outer_iters, inner_iters, eval_every, local_frac, tol, outer_tol, self.record = (
            check_schedule(
                outer_iters, inner_iters, eval_every, local_frac, local_theta, relationship, tol,
                outer_tol, record_local_gaps, sigma_floor, sigma_prime, systems,
                allow_adaptive=True,
            )
        )  # fmt: skip
        Sigma = initial_sigma(relationship, sigma, sigma_floor, m, accept_lowrank=False)
        if check_every is None:
            check_every = np.zeros(m, dtype=np.int64)
        else:
            check_every = np.broadcast_to(np.asarray(check_every, np.int64), (m,)).copy()
        runtime = SystemsRuntime(
            systems, self.n, local_frac, flops_factor=8.0, slowest_node_time=slowest_node_time
        )
        # the round logic, Sigma-step, sigma' and certificates are mocha()'s engine; this
        # class only turns messages into its vectors and back
        self.engine = DualEngine(
            np.zeros((m, self.d)),
            Sigma,
            self.lam,
            runtime,
            rng_from(random_state),
            learned=relationship == "learned",
            sigma_floor=float(sigma_floor),
            sigma_prime=sigma_prime,
            outer_iters=outer_iters,
            inner_iters=inner_iters,
            eval_every=eval_every,
            tol=tol,
            outer_tol=outer_tol,
            theta=float(local_theta),
            check_every=check_every,
            ridge=ridge,
            callback=callback,
        )
        # per node: last round whose update was aggregated, and how many were
        self.ack = np.zeros(m, dtype=np.int64)
        self.ack_scale = np.ones(m)  # the line search's step of the acknowledged round
        self.n_agg = np.zeros(m, dtype=np.int64)
        self.state_resets = np.zeros(m, dtype=np.int64)
        self.client_rollbacks = np.zeros(m, dtype=np.int64)  # as last reported
        self._round: dict | None = None
        self.eval_due = False
        # for nodes that stop answering: row norms (handshake), each node's last reported
        # loss and the w_t it was at, and a lower bound on its conjugate term now
        self.row_norm = np.full(m, np.nan)
        self.row_sqnorm = np.full(m, np.nan)
        self._terms_ref: dict[int, tuple[float, np.ndarray]] = {}
        self.conj_lb = np.full(m, np.nan)

    def handshake(self, infos: Mapping[int, Mapping]) -> None:
        """Bound each node's update by :func:`~fmtl.federated.engine.dual_update_bounds`
        of the mean row norm its handshake reported (no usable entry: no bound), and keep
        its row norms to bound its loss once it stops answering (:meth:`_bound_terms`)."""
        for t, info in infos.items():
            for key, stats in (("row_norm", self.row_norm), ("row_sqnorm", self.row_sqnorm)):
                v = info.get(key)
                if isinstance(v, int | float) and np.isfinite(v) and v >= 0:
                    stats[int(t)] = v
        known = np.isfinite(self.row_norm)
        bounds = dual_update_bounds(self.loss, np.where(known, self.row_norm, 0.0))
        self.engine.update_bound = np.where(known, bounds, np.inf)

    def _bound_terms(self, t: int, w: np.ndarray) -> tuple[float, float] | None:
        """Node ``t``'s certificate terms at ``w`` without its answer: a lower bound on its
        conjugate term (its last reported one plus the gains of its updates aggregated
        since; ``-l*`` is concave, so a step ``s`` of a gain ``c`` adds at least ``s c``)
        and an upper bound on its mean loss (:meth:`fmtl.losses.Loss.mean_value_bound`
        from its last reported loss and how far ``w_t`` moved since). A gap from them
        over-estimates the true one: still a certificate. None if a term is unknown."""
        ref = self._terms_ref.get(t)
        if ref is None or not np.isfinite(self.conj_lb[t]):
            return None
        loss_ref, w_ref = ref
        step = float(np.linalg.norm(w - w_ref))
        bound = self.loss.mean_value_bound(loss_ref, step, self.row_norm[t], self.row_sqnorm[t])
        return (bound, float(self.conj_lb[t])) if np.isfinite(bound) else None

    # the engine's state, under the names this server has always had
    B = property(lambda self: self.engine.B, doc="Row ``t``: the aggregated ``db_t``.")
    Sigma = property(lambda self: self.engine.Sigma, doc="The current relationship.")
    rho = property(lambda self: self.engine.rho, doc="The W-step's ``sigma'``.")
    rec = property(lambda self: self.engine.rec, doc="History and estimated time.")
    runtime = property(lambda self: self.engine.runtime, doc="The systems runtime.")
    inner_iters = property(lambda self: self.engine.inner_iters)
    outer_iters = property(lambda self: self.engine.outer_iters)

    @property
    def _finished(self) -> bool:
        return self.engine.finished

    # -- a round -----------------------------------------------------------------------
    def begin_round(self) -> dict[int, Message] | None:
        """Draw the round (work, drops, seeds) and return ``{task: (arrays, config)}``
        for the nodes that take part; None once the run is finished."""
        e = self.engine
        r = e.begin_round()
        if r is None:
            return None
        self._round = {"rnd": r.rnd, "steps": r.steps, "active": r.active, "seeds": r.seeds}
        self._round["sent"] = {int(t) for t in np.flatnonzero(r.active)}
        out = {}
        for t in np.flatnonzero(r.active):
            config = {
                **self._common(r.rnd, t),
                "sigma_tt": float(e.sdiag[t]),
                "rho": float(e.rho),
                "steps": int(r.steps[t]),
                "seed": seed_to_wire(r.seeds[t]),
                "theta": e.theta,
                "check_every": int(e.check_every[t]),
                "record_gaps": bool(self.record),
                **self._ack(t),
            }
            out[int(t)] = ({"w": e.model[t].copy()}, config)
        return self._carry_eval(out)

    def _can_fold(self) -> bool:
        # the certificates must not steer the schedule: they arrive a round late
        return self.fold_eval and not self.engine.certificates_steer

    def _ack(self, t: int) -> dict:
        # the round node t's pending update belongs to, and (line search) its step
        if self.engine.line_search:
            return {"ack": int(self.ack[t]), "scale": float(self.ack_scale[t])}
        return {"ack": int(self.ack[t])}

    def end_train(
        self, replies: Mapping[int, Message | None], eval_replies: Mapping | None = None
    ) -> bool:
        """Aggregate the replies of this round (a missing/None/invalid one: dropped).

        ``eval_replies``: the replies to this round's evaluate messages of the previous
        round's pending certificates (``fold_eval``; recorded first). Returns whether
        the certificates are evaluated now, after this round (:attr:`eval_due`)."""
        r = self._round
        if r is None:
            raise RuntimeError("end_train() without begin_round()")
        if self._late is not None:
            self._certify(self._late_replies(replies, eval_replies), self._late)
        m, d, rnd, active = self.m, self.d, r["rnd"], r["active"]
        dB = np.zeros((m, d))
        steps_done = np.zeros(m, dtype=np.int64)
        gap0 = np.full(m, np.nan)
        gap1 = np.full(m, np.nan)
        progress = np.full(m, np.nan)
        gains = np.full(m, np.nan)  # conjugate gains: the line search's, certificate bounds
        failed = np.zeros(m, dtype=np.bool_)
        for t in np.flatnonzero(active):
            reply = replies.get(int(t))
            try:
                if reply is None:
                    raise ValueError("no reply")
                arrays, config = reply
                if int(config["round"]) != rnd:
                    raise ValueError(f"reply for round {config['round']}, expected {rnd}")
                db = _vector(arrays, "db", d)
                commits = int(config["n_commits"])
                self.client_rollbacks[t] = int(config.get("n_rollbacks", 0))
                sd = int(config["steps_done"])
                g0, g1 = float(config["gap_start"]), float(config["gap_end"])
                prog = float(config["progress"])
                cg = float(config.get("conj_gain", np.nan))
                if self.engine.line_search and not np.isfinite(cg):
                    raise ValueError("missing or non-finite conj_gain")
            except (KeyError, TypeError, ValueError):
                failed[t] = True
                continue
            if commits != self.n_agg[t]:
                self._state_mismatch(t, commits)
            dB[t] = db
            steps_done[t] = sd
            gap0[t], gap1[t], progress[t] = g0, g1, prog
            gains[t] = cg
        # per-node terms summed as the in-process pool sums them (bit-identical steps)
        gain = float(np.sum(np.nan_to_num(gains, nan=0.0))) if self.engine.line_search else None
        self.eval_due = self.engine.end_train(dB, steps_done, failed, gain)  # active &= ~failed
        scale = self.engine.round.scale
        for t in np.flatnonzero(active):
            self.ack[t] = rnd
            self.ack_scale[t] = 1.0 if scale is None else scale
            self.n_agg[t] += 1
            self.conj_lb[t] += self.ack_scale[t] * gains[t]  # NaN (unknown) stays NaN
        r.update(gap0=gap0, gap1=gap1, progress=progress)
        if self.eval_due and self._can_fold():
            # certified with the next round's train messages (or, after the last round,
            # by one evaluate exchange): keep what the server side needs
            self._late = {
                "rnd": rnd,
                "round": r,
                "W": self.engine.model.copy(),
                "point": self.engine.eval_point(),
            }
            self.eval_due = False
        return self.eval_due

    def _state_mismatch(self, t: int, commits: int) -> None:
        if commits == 0:
            # the client restarted without its duals: its committed alpha_t is 0, so
            # b_t(alpha_t) = 0; reset the row to keep B = B(alpha)
            warnings.warn(
                f"node {t} lost its dual state (0 committed updates, server aggregated "
                f"{self.n_agg[t]}): resetting its row of B",
                RuntimeWarning,
                stacklevel=3,
            )
            self.B[t] = 0.0
            self.n_agg[t] = 0
            self.state_resets[t] += 1
            self.conj_lb[t] = np.nan
        else:
            raise RuntimeError(
                f"node {t} reports {commits} committed updates, the server aggregated "
                f"{self.n_agg[t]}: its dual state is inconsistent with B"
            )

    def eval_instructions(self) -> dict[int, Message]:
        """``{task: (arrays, config)}`` asking every node for its certificate terms (while
        :attr:`eval_pending`: the pending ones, from the nodes without a train message
        this round)."""
        if self._late is not None:
            return self._late_instructions()
        rnd = self._round["rnd"]
        W = self.engine.model
        return {
            t: ({"w": W[t].copy()}, {**self._common(rnd, t), **self._ack(t)})
            for t in range(self.m)
        }

    def _certify(self, replies: Mapping, late: dict | None = None) -> dict:
        r = self._round if late is None else late["round"]
        loss_mean = np.full(self.m, np.nan)
        conj_mean = np.full(self.m, np.nan)
        for t in range(self.m):
            reply = replies.get(t)
            if reply is None:
                continue
            try:
                _, config = reply
                if int(config["round"]) != r["rnd"]:
                    continue
                commits = int(config["n_commits"])
                self.client_rollbacks[t] = int(config.get("n_rollbacks", 0))
                lm, cm = float(config["loss_mean"]), float(config["conj_mean"])
            except (KeyError, TypeError, ValueError):
                continue
            if commits != self.n_agg[t]:
                continue  # not consistent with B: no certificate from it
            loss_mean[t], conj_mean[t] = lm, cm
        W = self.engine.model if late is None else late["W"]
        missing = ~np.isfinite(loss_mean)
        bounded = np.zeros(self.m, dtype=np.bool_)
        for t in range(self.m):
            if missing[t]:
                terms = self._bound_terms(t, W[t])
                if terms is not None:
                    (loss_mean[t], conj_mean[t]), bounded[t] = terms, True
            elif np.isfinite(conj_mean[t]):
                self._terms_ref[t] = (float(loss_mean[t]), W[t].copy())
                self.conj_lb[t] = conj_mean[t]
        extra = {}
        if self.record:
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(r["gap0"] > 0, r["gap1"] / r["gap0"], 0.0)
            extra = {
                "local_gap_start": r["gap0"].copy(),
                "local_gap_end": r["gap1"].copy(),
                "local_gap_ratio": ratio,
                "local_progress": r["progress"].copy(),
            }
        extra["eval_missing"] = int(np.sum(missing))
        extra["eval_bounded"] = int(np.sum(bounded))
        point = None if late is None else late["point"]
        self._late = None
        # a primal from bounds is not one outer_tol may compare
        return self.engine.end_eval(
            loss_mean, conj_mean, extra, True, point, primal_is_bound=bool(bounded.any())
        )

    def end_round(self) -> None:
        """Advance the loop position (W-step end, tolerances, Sigma-step schedule)."""
        self.engine.end_round()
        self._round = None
        self.eval_due = False

    def current_coef(self) -> np.ndarray:
        """The current model ``W = M B / lam`` (rows are tasks; ``M = Sigma`` without a
        ridge term)."""
        if self.engine.model is None:  # before the first round
            return self.engine.M @ self.B / self.lam
        return self.engine.model

    def result(self) -> ServerResult:
        silent = self.rec.warn_silent_nodes()
        Sigma, Omega = symmetric_with_precision(self.Sigma)
        return ServerResult(
            coef=self.engine.M @ self.B / self.lam,
            sigma=Sigma,
            omega=Omega,
            B=self.B.copy(),
            history=self.rec.history,
            never_reported=silent,
        )


class FedAvgServerState(_ServerBase):
    """The FedAvg server, reproducing :func:`fmtl.federated.fedavg.fedavg`.

    No fine-tuning: the weighted average of the returned models over the nodes that
    reported.

    Messages carry the global ``w`` (d,) down and the local model (d,) and ``n_t`` up.

    Parameters
    ----------
    n_samples : array_like of int, shape (n_tasks,)
        ``n_t`` per task (the averaging weights).
    n_features : int
        ``d``.
    lam, loss, gamma, rounds, local_epochs, lr, lr_decay, systems, random_state, \
eval_every, callback
        As for :func:`fmtl.federated.fedavg.fedavg`.

    Attributes
    ----------
    w : ndarray of shape (n_features,)
        The current global model.
    finished : bool
        Whether the run is over.

    Raises
    ------
    ValueError
        From the constructor, for an unknown loss or bad ``gamma``; ``lam``, ``rounds``,
        ``eval_every`` or ``local_epochs`` out of range; a negative ``lr_decay``; an
        ``lr`` that is not positive with ``lr * lam < 1``; or a ``systems`` model that
        does not fit the tasks.
    TypeError
        For a non-numeric ``lr`` or a ``systems`` that is not a
        :class:`~fmtl.federated.SystemsModel`.
    RuntimeError
        From ``end_train``, once a node fails more than ``systems.max_failures`` times.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(10, 3)) for _ in range(2)]
    >>> clients = [FedAvgClientState(X, np.sign(X[:, 0]), 0.1) for X in Xs]
    >>> server = FedAvgServerState([10, 10], 3, 0.1, rounds=3, random_state=0)
    >>> res = run_local(server, clients)
    >>> res.coef.shape, res.sigma is None, len(res.history), server.finished
    ((2, 3), True, 3, True)
    """

    method = "fedavg"

    def __init__(
        self,
        n_samples,
        n_features: int,
        lam: float,
        loss="logistic",
        *,
        gamma: float = 1.0,
        rounds: int = 100,
        local_epochs: float = 1.0,
        lr: float = 0.1,
        lr_decay: float = 0.0,
        systems: SystemsModel | None = None,
        random_state=None,
        eval_every: int = 1,
        callback=None,
        fold_eval: bool = False,
    ) -> None:
        self.fold_eval = bool(fold_eval)
        self.loss = get_loss(loss, gamma)
        self.gamma = float(gamma)
        self.lam = check_lam(lam)
        self.rounds = check_positive_int("rounds", rounds)
        self.eval_every = check_positive_int("eval_every", eval_every)
        local_epochs = check_frac("local_epochs", local_epochs)
        self.lr_decay = check_nonneg("lr_decay", lr_decay)
        if isinstance(lr, bool) or not isinstance(lr, int | float | np.floating):
            raise TypeError(f"lr must be a number, got {lr!r}")
        if not (np.isfinite(lr) and 0 < lr and lr * self.lam < 1):
            raise ValueError(f"lr must be positive with lr * lam < 1, got lr={lr!r}")
        self.lr = float(lr)
        self.n_int = np.asarray(n_samples, dtype=np.int64).ravel()
        self.m = int(self.n_int.shape[0])
        self.d = int(n_features)
        n = self.n_int.astype(np.float64)
        self.weights = n / n.sum()
        self.rng = rng_from(random_state)
        self.runtime = SystemsRuntime(systems, self.n_int, local_epochs, flops_factor=4.0)
        self.rec = Recorder(self.runtime, callback)
        self.w = np.zeros(self.d)
        self.h = 0
        self._finished = False
        self._round: dict | None = None
        self.eval_due = False

    def begin_round(self) -> dict[int, Message] | None:
        if self._finished:
            return None
        steps, active = self.runtime.draw(self.rng)
        seeds = draw_seeds(self.rng, self.m)
        rnd = self.h + 1
        lr = self.lr / (1.0 + self.lr_decay * self.h)
        self._round = {"rnd": rnd, "steps": steps, "active": active}
        self._round["sent"] = {int(t) for t in np.flatnonzero(active)}
        return self._carry_eval(
            {
                int(t): (
                    {"w": self.w.copy()},
                    {
                        **self._common(rnd, t),
                        "lr": lr,
                        "steps": int(steps[t]),
                        "seed": seed_to_wire(seeds[t]),
                    },
                )
                for t in np.flatnonzero(active)
            }
        )

    def end_train(
        self, replies: Mapping[int, Message | None], eval_replies: Mapping | None = None
    ) -> bool:
        r = self._round
        if self._late is not None:  # the previous round's certificates, carried
            self._certify(self._late_replies(replies, eval_replies), self._late)
        m, d, active = self.m, self.d, r["active"]
        Wout = np.zeros((m, d))
        failed = np.zeros(m, dtype=np.bool_)
        for t in np.flatnonzero(active):
            reply = replies.get(int(t))
            try:
                if reply is None:
                    raise ValueError("no reply")
                arrays, config = reply
                if int(config["round"]) != r["rnd"]:
                    raise ValueError("stale reply")
                Wout[t] = _vector(arrays, "w", d)
            except (KeyError, TypeError, ValueError):
                failed[t] = True
        self.runtime.fail(failed, active)
        ok = active & ~failed
        if ok.any():
            self.w = (self.weights[ok] / self.weights[ok].sum()) @ Wout[ok]
        self.rec.tick(np.where(ok, r["steps"], 0))
        h = self.h
        self.eval_due = (h + 1) % self.eval_every == 0 or h + 1 == self.rounds
        if self.eval_due and self._can_fold():
            self._late = {"rnd": r["rnd"], "round": r, "W": np.tile(self.w, (m, 1))}
            self.eval_due = False
        return self.eval_due

    def eval_instructions(self) -> dict[int, Message]:
        if self._late is not None:
            return self._late_instructions()
        rnd = self._round["rnd"]
        return {t: ({"w": self.w.copy()}, self._common(rnd, t)) for t in range(self.m)}

    def _certify(self, replies: Mapping, late: dict | None = None) -> dict:
        r = self._round if late is None else late["round"]
        w = self.w if late is None else late["W"][0]
        self._late = None
        loss_mean = np.full(self.m, np.nan)
        for t in range(self.m):
            reply = replies.get(t)
            try:
                if reply is not None and int(reply[1]["round"]) == r["rnd"]:
                    loss_mean[t] = float(reply[1]["loss_mean"])
            except (KeyError, TypeError, ValueError):
                pass
        primal = float(self.weights @ loss_mean + 0.5 * self.lam * (w @ w))
        self.rec.add(
            r["rnd"],
            0,
            {"primal": primal},
            r["steps"],
            r["active"],
            {"eval_missing": int(np.sum(~np.isfinite(loss_mean)))},
        )
        return self.rec.history.last

    def end_round(self) -> None:
        self.h += 1
        if self.h == self.rounds:
            self._finished = True
        self._round = None
        self.eval_due = False

    def current_coef(self) -> np.ndarray:
        return np.tile(self.w, (self.m, 1))

    def result(self) -> ServerResult:
        silent = self.rec.warn_silent_nodes()
        return ServerResult(
            coef=np.tile(self.w, (self.m, 1)),
            sigma=None,
            omega=None,
            B=None,
            history=self.rec.history,
            never_reported=silent,
        )


def _cocoa_server(
    n_samples,
    n_features,
    lam,
    loss="hinge",
    *,
    sigma=None,
    theta: float = 0.5,
    max_local_passes: float = 20.0,
    check_every: int | None = None,
    rounds: int = 100,
    systems: SystemsModel | None = None,
    **kw,
) -> MochaServerState:
    # CoCoA = the same client W-step with a fixed Sigma, each node to accuracy theta
    if not (0.0 < theta < 1.0):
        raise ValueError(f"theta must be in (0, 1), got {theta!r}")
    n = np.asarray(n_samples, dtype=np.int64)
    if check_every is None:
        check = np.maximum(1, np.ceil(n / 10)).astype(np.int64)
    else:
        if int(check_every) < 1:
            raise ValueError(f"check_every must be an integer >= 1, got {check_every!r}")
        check = np.full(n.shape[0], int(check_every), dtype=np.int64)
    if systems is not None and systems.heterogeneity is not None:
        import dataclasses

        systems = dataclasses.replace(systems, heterogeneity=None)
    s = MochaServerState(
        n,
        n_features,
        lam,
        loss,
        relationship="fixed",
        sigma=sigma,
        outer_iters=1,
        inner_iters=rounds,
        local_frac=max_local_passes,
        local_theta=theta,
        sigma_prime="gershgorin",
        systems=systems,
        record_local_gaps=True,
        check_every=check,
        slowest_node_time=True,
        **kw,
    )
    s.method = "cocoa"
    return s


def _mocha_server(*args, **kw) -> MochaServerState:
    return MochaServerState(*args, **kw)


def _local_server(*args, **kw) -> MochaServerState:
    # Local: MOCHA's W-step with Sigma = I/m fixed (tasks decouple)
    kw.pop("relationship", None)
    kw.pop("sigma", None)
    s = MochaServerState(*args, relationship="fixed", sigma=None, **kw)
    s.method = "local"
    return s


SERVER_METHODS: dict[str, Callable] = {
    "mocha": _mocha_server,
    "local": _local_server,
    "cocoa": _cocoa_server,
    "fedavg": FedAvgServerState,
}


def make_server(method: str, n_samples, n_features: int, lam: float, **kw):
    """A server state for ``method`` with the in-process function's keyword arguments.

    Methods: ``"mocha"``, ``"local"``, ``"cocoa"`` and ``"fedavg"``.

    ``"local"`` is MOCHA with ``Sigma = I/m`` fixed (= ``mocha(relationship="fixed")``);
    ``"cocoa"`` takes :func:`fmtl.federated.cocoa.cocoa`'s arguments (``theta``,
    ``max_local_passes``, ``check_every``, ``rounds``, ``sigma``); ``"fedavg"`` those of
    :func:`fmtl.federated.fedavg.fedavg` except ``finetune_epochs``.

    Parameters
    ----------
    method : {"mocha", "local", "cocoa", "fedavg"}
        The federated method.
    n_samples : array_like of int, shape (n_tasks,)
        ``n_t`` per task.
    n_features : int
        ``d``.
    lam : float
        Regularisation strength.
    **kw
        The in-process function's other keyword arguments.

    Returns
    -------
    MochaServerState or FedAvgServerState
        A server ready for its first :meth:`~MochaServerState.begin_round`.

    Raises
    ------
    ValueError
        For an unknown ``method``, or settings the server refuses (as
        :class:`MochaServerState`, :class:`FedAvgServerState`; for ``"cocoa"`` also
        ``theta`` outside (0, 1) or ``check_every < 1``).
    TypeError
        For an argument the method does not take, or of the wrong type.

    Examples
    --------
    >>> server = make_server("cocoa", [10, 20], 3, 0.1, theta=0.5, rounds=5)
    >>> server.method, server.inner_iters, server.finished
    ('cocoa', 5, False)
    >>> make_server("newton", [10], 3, 0.1)
    Traceback (most recent call last):
    ...
    ValueError: unknown method 'newton'; known: ['cocoa', 'fedavg', 'local', 'mocha']
    """
    if method not in SERVER_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(SERVER_METHODS)}")
    return SERVER_METHODS[method](n_samples, n_features, lam, **kw)


# ------------------------------------------------------------------------ in-process driver


def run_local(
    server,
    clients: list,
    fail: Callable[[int, int, str], bool] | None = None,
    on_message: Callable[[str, int, Message, Message], None] | None = None,
) -> ServerResult:
    """Drive ``server`` and its ``clients`` (one per task, in task order) in one process.

    ``fail(round, task, phase)`` (phase ``"train"`` or ``"evaluate"``) returning True
    makes that client's reply go missing after it did the work (the worst case for dual
    consistency: the client holds a pending update the server never saw).
    ``on_message(kind, task, request, reply)`` sees every message pair (wire tests).

    Parameters
    ----------
    server : MochaServerState or FedAvgServerState
        A fresh server (from :func:`make_server`).
    clients : list of MochaClientState or FedAvgClientState
        One per task, in task order.
    fail : callable, optional
        ``fail(round, task, phase) -> bool``: drop that reply.
    on_message : callable, optional
        ``on_message(kind, task, request, reply)``, called for every message pair.

    Returns
    -------
    ServerResult
        The server's result once it has finished.

    Raises
    ------
    RuntimeError
        If a node fails more than ``systems.max_failures`` times (a client raising any
        ``Exception`` counts as a missing reply).
    IndexError
        If there are fewer clients than tasks.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.distributed.protocol import MochaClientState, make_server, run_local
    >>> from fmtl.federated import mocha
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(3)]
    >>> ys = [np.sign(X @ np.ones(4)) for X in Xs]
    >>> kw = dict(outer_iters=2, inner_iters=3, random_state=0)
    >>> def run(fail=None):
    ...     clients = [MochaClientState(X, y, 0.1) for X, y in zip(Xs, ys)]
    ...     return run_local(make_server("mocha", [30] * 3, 4, 0.1, **kw), clients, fail)
    >>> bool(np.array_equal(run().coef, mocha(Xs, ys, 0.1, **kw).coef))
    True
    >>> lost = run(fail=lambda rnd, t, phase: (rnd, t, phase) == (2, 1, "train"))
    >>> lost.history["failed"][1].tolist()
    [False, True, False]
    """

    def exchange(kind: str, instructions: dict[int, Message], rnd: int) -> dict:
        replies = {}
        for t, (arrays, config) in instructions.items():
            try:
                reply = clients[t].handle(kind, arrays, config)
            except Exception:  # noqa: BLE001 - any client error is a failed node
                # (a crashed client is what systems.max_failures is for; the round goes on
                # without its reply, and a node that keeps failing stops the fit)
                reply = None
            if on_message is not None:
                on_message(kind, t, (arrays, config), reply)
            if reply is not None and not (fail is not None and fail(rnd, t, kind)):
                replies[t] = reply
        return replies

    query = {**server.handshake_config(), "round": 0}
    infos = exchange("query", {t: ({}, query) for t in range(len(clients))}, 0)
    server.handshake({t: reply[1] for t, reply in infos.items()})
    while True:
        instructions = server.begin_round()
        if instructions is None:
            if server.eval_pending:  # the last round's certificates (fold_eval)
                late = server.eval_instructions()
                server.end_eval(exchange("evaluate", late, server._late["rnd"]))
            break
        rnd = server._round["rnd"]
        # fold_eval: the previous round's certificates ride on the train messages; nodes
        # without one this round get an evaluate message in the same exchange
        late = server.eval_instructions() if server.eval_pending else {}
        evals = exchange("evaluate", late, server._late["rnd"]) if late else None
        if server.end_train(exchange("train", instructions, rnd), evals):
            server.end_eval(exchange("evaluate", server.eval_instructions(), rnd))
        server.end_round()
    return server.result()
