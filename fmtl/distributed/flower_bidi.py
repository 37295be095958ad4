"""fmtl's federated methods on Flower's gRPC bidirectional-streaming runtime: long-running
client processes, one persistent stream each, no polling.

Flower's SuperLink/SuperNode runtime (:mod:`fmtl.distributed.flower`, the default and the
one for production) costs seconds per exchange on a small model: the SuperNode sleeps 3 s
whenever a pull finds no message, and every message starts a fresh ``flwr-clientapp``
process (docs/deploying.md, "Wall time"). Flower still ships its original runtime,
``flwr.server.start_server`` with a legacy ``flwr.server.strategy.Strategy`` and
``flwr.client.start_client`` with a legacy ``flwr.client.Client``: each client is one
process holding one gRPC bidirectional stream to the server, messages are pushed down the
stream as soon as the server has them, and the client answers from memory. Flower marks
this runtime deprecated (since 1.13; it may go away in a later release), so this module is
the fast path for loopback and trusted clusters, not a replacement for the default.

* :class:`FmtlBidiStrategy` — a legacy ``Strategy`` driving the same transport-independent
  server state machine (:func:`fmtl.distributed.protocol.make_server`) in the order of
  :func:`~fmtl.distributed.protocol.run_local`: a handshake (``get_properties``: each
  client's ``partition-id``, ``n``, ``d`` and mean row norm), then per round one ``fit``
  exchange carrying every node's own train message (and, with the folded evaluation, the
  evaluate messages of the nodes the systems model dropped), an ``evaluate`` exchange only
  when certificates cannot ride on the next round, and one for the last round's
  certificates. A client's error reply, a timeout or a lost connection is a missing reply,
  i.e. MOCHA's dropped node, exactly as in ``run_local``.
* :class:`FmtlBidiClient` — a legacy ``Client`` holding its task and the method's client
  state (:class:`~fmtl.distributed.protocol.MochaClientState`, duals included) in memory
  for the whole run.
* :func:`run_server`, :func:`run_client` — ``start_server`` / ``start_client`` with them;
  ``python -m fmtl.distributed.flower_bidi server|client ...`` runs either as a process.
* :func:`run_loopback_bidi` — a server process and ``n`` client processes on 127.0.0.1
  (``fmtl.distributed.flower.run_loopback(..., runtime="grpc-bidi")``).

Messages use the legacy records: a protocol message ``(arrays, config)`` travels as
``Parameters`` (the arrays, ``numpy.save`` bytes, in the order named by the config entry
``fmtl-arrays``) and a config dict (plus ``fmtl-kind``: ``"train"`` or ``"evaluate"``);
replies come back the same way in ``FitRes``/``EvaluateRes`` (``metrics``). The same
d-vectors and scalars travel as on the Message API; duals and data never leave a client.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from logging import INFO, WARNING
from pathlib import Path

import numpy as np

try:
    from flwr.client import Client
    from flwr.common import (
        Code,
        EvaluateIns,
        EvaluateRes,
        FitIns,
        FitRes,
        GetPropertiesIns,
        GetPropertiesRes,
        Parameters,
        Status,
        bytes_to_ndarray,
        ndarray_to_bytes,
    )
    from flwr.common.logger import log
    from flwr.server.strategy import Strategy
except ImportError as e:  # pragma: no cover
    raise ImportError(
        "fmtl.distributed.flower_bidi needs Flower >= 1.42: pip install 'fmtl[flower]'"
    ) from e

from .flower import (
    RUN_CONFIG_DEFAULTS,
    FmtlStrategy,
    _assign_tasks,
    _free_ports,
    _loopback_result,
    _LoopbackProcesses,
    _wait_for_run,
    server_kwargs_from_config,
)
from .protocol import CLIENT_METHODS, SERVER_METHODS, client_handle, make_server

__all__ = [
    "FmtlBidiClient",
    "FmtlBidiStrategy",
    "decode_message",
    "encode_message",
    "run_client",
    "run_loopback_bidi",
    "run_server",
]

_KIND = "fmtl-kind"
_ARRAYS = "fmtl-arrays"


# ------------------------------------------------------------------------------ the codec


def encode_message(arrays: Mapping, config: Mapping, kind: str) -> tuple[Parameters, dict]:
    """A protocol message as the legacy records: ``(Parameters, config dict)``.

    Parameters
    ----------
    arrays : mapping of str to ndarray
        The message's arrays (sent as ``numpy.save`` bytes, bit for bit).
    config : mapping of str to scalar
        Its scalars (bool, int, float, str or bytes).
    kind : {"query", "train", "evaluate"}
        The protocol message kind (config entry ``fmtl-kind``).

    Returns
    -------
    parameters : flwr.common.Parameters
        The arrays in the order of the config entry ``fmtl-arrays``.
    config : dict
        ``config`` with ``fmtl-kind`` and ``fmtl-arrays`` added.

    Raises
    ------
    ValueError
        If ``config`` already has an entry ``fmtl-kind`` or ``fmtl-arrays`` or an array
        name contains a comma.

    See Also
    --------
    decode_message : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> params, config = encode_message({"w": np.arange(3.0)}, {"round": 1}, "train")
    >>> config
    {'round': 1, 'fmtl-kind': 'train', 'fmtl-arrays': 'w'}
    >>> arrays, config, kind = decode_message(params, config)
    >>> arrays["w"], config, kind
    (array([0., 1., 2.]), {'round': 1}, 'train')
    """
    if _KIND in config or _ARRAYS in config:
        raise ValueError(f"config entries {_KIND!r} and {_ARRAYS!r} are reserved")
    names = list(arrays)
    if any("," in n for n in names):
        raise ValueError(f"array names must not contain commas: {names}")
    tensors = [ndarray_to_bytes(np.ascontiguousarray(arrays[n])) for n in names]
    out = {**config, _KIND: str(kind), _ARRAYS: ",".join(names)}
    return Parameters(tensors=tensors, tensor_type="numpy.ndarray"), out


def decode_message(parameters: Parameters, config: Mapping) -> tuple[dict, dict, str]:
    """Inverse of :func:`encode_message`.

    Parameters
    ----------
    parameters : flwr.common.Parameters
        The arrays.
    config : mapping
        The scalars, with ``fmtl-kind`` and ``fmtl-arrays``.

    Returns
    -------
    arrays : dict of str to ndarray
        The arrays by name.
    config : dict
        The scalars without the two entries above.
    kind : str
        The message kind (``""`` if absent).

    Raises
    ------
    ValueError
        If the number of arrays does not match the names.

    Examples
    --------
    >>> from flwr.common import Parameters
    >>> decode_message(Parameters(tensors=[], tensor_type=""), {"fmtl-kind": "evaluate"})
    ({}, {}, 'evaluate')
    """
    config = dict(config)
    kind = str(config.pop(_KIND, ""))
    names = [n for n in str(config.pop(_ARRAYS, "")).split(",") if n]
    if len(names) != len(parameters.tensors):
        raise ValueError(f"{len(parameters.tensors)} arrays for the names {names}")
    arrays = {n: bytes_to_ndarray(b) for n, b in zip(names, parameters.tensors, strict=True)}
    return arrays, config, kind


def _proto_nbytes(obj) -> int:
    """Serialised size of a legacy instruction or result (its protobuf message)."""
    from flwr.common import serde

    to_proto = {
        FitIns: serde.fit_ins_to_proto,
        FitRes: serde.fit_res_to_proto,
        EvaluateIns: serde.evaluate_ins_to_proto,
        EvaluateRes: serde.evaluate_res_to_proto,
        GetPropertiesIns: serde.get_properties_ins_to_proto,
        GetPropertiesRes: serde.get_properties_res_to_proto,
    }[type(obj)]
    return int(to_proto(obj).ByteSize())


def _shapes(arrays: Mapping) -> dict:
    return {k: list(np.shape(v)) for k, v in arrays.items()}


# ------------------------------------------------------------------------------- client


class FmtlBidiClient(Client):
    """A legacy Flower client holding one task and its method's client state in memory.

    The state (for MOCHA the committed and pending duals) lives in this object for the
    whole run; :meth:`fit` handles the server's train and evaluate messages (the kind is
    in the config), :meth:`evaluate` its evaluate messages, :meth:`get_properties` the
    handshake. Any exception becomes an error status (Flower's legacy ``Code`` has no
    generic error: ``FIT_NOT_IMPLEMENTED`` / ``EVALUATE_NOT_IMPLEMENTED`` with the error
    in the message), which the server treats as a missing reply; the process goes on.

    Parameters
    ----------
    X : array of shape (n_t, d), dense or scipy sparse
        The client's design matrix.
    y : array of shape (n_t,)
        Its targets.
    partition_id : int
        Its task index.
    num_partitions : int, default=0
        The number of tasks, if known (the server's ``num_clients`` wins).
    debug_fail : iterable of int, default=()
        Test hook: the train replies of these rounds are error replies *after* the work
        was done (the pending update must then be rolled back).
    debug_exit : int, optional
        Test hook: the process exits (``os._exit(3)``) on receiving this round's train
        message, after doing the work and before replying (a killed client).

    Attributes
    ----------
    state : MochaClientState or FedAvgClientState or None
        The method's client state, built at the first train or evaluate message.

    Raises
    ------
    ValueError
        Not from the constructor; handling a message catches every exception (above).

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.distributed.protocol import make_server
    >>> X = np.random.default_rng(0).normal(size=(10, 3))
    >>> client = FmtlBidiClient(X, np.sign(X[:, 0]), partition_id=0)
    >>> server = make_server("mocha", [10], 3, 0.1, inner_iters=1, random_state=0)
    >>> params, config = encode_message(*server.begin_round()[0], "train")
    >>> res = client.fit(FitIns(params, config))
    >>> arrays, reply, kind = decode_message(res.parameters, res.metrics)
    >>> res.status.code.name, arrays["db"].shape, reply["round"], kind
    ('OK', (3,), 1, 'train')
    """

    def __init__(
        self,
        X,
        y,
        partition_id: int,
        num_partitions: int = 0,
        *,
        debug_fail=(),
        debug_exit: int | None = None,
    ) -> None:
        self.X, self.y = X, y
        self.partition_id = int(partition_id)
        self.num_partitions = int(num_partitions)
        self.debug_fail = {int(r) for r in debug_fail}
        self.debug_exit = None if debug_exit is None else int(debug_exit)
        self.state = None
        self._key: tuple | None = None

    def _state_for(self, config: Mapping):
        method = str(config.get("method", "mocha"))
        if method not in CLIENT_METHODS:
            raise ValueError(f"unknown method {method!r}; known: {sorted(CLIENT_METHODS)}")
        key = (method, float(config["lam"]), str(config["loss"]), float(config.get("gamma", 1)))
        if self.state is None or key != self._key:
            self.state = CLIENT_METHODS[method](self.X, self.y, *key[1:])
            self._key = key
        return self.state

    def handle(self, kind: str, arrays: Mapping, config: Mapping) -> tuple[dict, dict]:
        """One protocol message on the state kept in memory (built, or rebuilt when the
        method, ``lam``, ``loss`` or ``gamma`` change, from the config).

        Parameters
        ----------
        kind : {"train", "evaluate"}
            The message kind.
        arrays : mapping of str to ndarray
            The message's arrays (``w``, and ``w_eval`` with a folded evaluation).
        config : mapping of str to scalar
            Its scalars (``method``, ``lam``, ``loss``, ``gamma``, the kind's entries).

        Returns
        -------
        (dict, dict)
            The reply ``(arrays, config)``.

        Raises
        ------
        ValueError, KeyError, FloatingPointError
            As :meth:`fmtl.distributed.protocol.MochaClientState.handle` (:meth:`fit` and
            :meth:`evaluate` turn them into error replies).

        Examples
        --------
        >>> import numpy as np
        >>> from fmtl.distributed.protocol import make_server
        >>> X = np.random.default_rng(0).normal(size=(10, 3))
        >>> client = FmtlBidiClient(X, np.sign(X[:, 0]), partition_id=0)
        >>> server = make_server("mocha", [10], 3, 0.1, inner_iters=1, random_state=0)
        >>> arrays, reply = client.handle("train", *server.begin_round()[0])
        >>> arrays["db"].shape, reply["round"], client.state.pending_round
        ((3,), 1, 1)
        """
        return self._state_for(config).handle(kind, arrays, config)

    def get_properties(self, ins: GetPropertiesIns) -> GetPropertiesRes:
        """The handshake: ``partition-id``, ``num-partitions``, ``n``, ``d``,
        ``row_norm`` (mean row norm, for the server's update screening) and the protocol
        version.

        Parameters
        ----------
        ins : flwr.common.GetPropertiesIns
            The server's query (its config: ``method``, ``lam``, ``loss``, ``gamma``).

        Returns
        -------
        flwr.common.GetPropertiesRes
            Status OK and the properties above; an error status if the data are invalid.

        Raises
        ------
        None
            Errors become an error status.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.ones((4, 2))
        >>> client = FmtlBidiClient(X, np.ones(4), partition_id=2, num_partitions=3)
        >>> props = client.get_properties(GetPropertiesIns({"method": "mocha"})).properties
        >>> props["partition-id"], props["n"], props["d"], round(props["row_norm"], 4)
        (2, 4, 2, 1.4142)
        """
        try:
            (_, info), _ = client_handle("query", {}, ins.config, lambda: (self.X, self.y), None)
            props = {
                **info,
                "partition-id": self.partition_id,
                "num-partitions": self.num_partitions,
            }
            return GetPropertiesRes(Status(Code.OK, ""), props)
        except Exception as e:  # noqa: BLE001 - an error reply, the process goes on
            status = Status(Code.GET_PROPERTIES_NOT_IMPLEMENTED, f"fmtl client error: {e!r}")
            return GetPropertiesRes(status, {})

    def _reply(self, parameters: Parameters, config: Mapping):
        arrays, config, kind = decode_message(parameters, config)
        rnd = int(config.get("round", -1))
        reply_arrays, reply = self.handle(kind, arrays, config)
        if kind == "train" and rnd == self.debug_exit:
            os._exit(3)  # test hook: killed after the work, before the reply
        if kind == "train" and rnd in self.debug_fail:
            raise RuntimeError("fmtl debug-fail")  # test hook: the reply is lost
        return encode_message(reply_arrays, reply, kind)

    def fit(self, ins: FitIns) -> FitRes:
        """A train message (or, folded into the same exchange, an evaluate message).

        Parameters
        ----------
        ins : flwr.common.FitIns
            The message (:func:`encode_message`; the kind is in ``fmtl-kind``).

        Returns
        -------
        flwr.common.FitRes
            The reply (arrays in ``parameters``, scalars in ``metrics``), or an error
            status (``FIT_NOT_IMPLEMENTED`` with the error) that the server treats as a
            missing reply.

        Raises
        ------
        None
            Errors become an error status (the process goes on).

        Examples
        --------
        >>> import numpy as np
        >>> client = FmtlBidiClient(np.ones((4, 2)), np.ones(4), partition_id=0)
        >>> bad = FitIns(*encode_message({}, {"round": 1}, "train"))  # no lam, no w
        >>> res = client.fit(bad)
        >>> res.status.code.name, res.status.message.startswith("fmtl client error")
        ('FIT_NOT_IMPLEMENTED', True)
        """
        try:
            params, metrics = self._reply(ins.parameters, ins.config)
            n = 0 if self.state is None else int(self.state.n)
            return FitRes(Status(Code.OK, ""), params, n, metrics)
        except Exception as e:  # noqa: BLE001 - an error reply, the process goes on
            status = Status(Code.FIT_NOT_IMPLEMENTED, f"fmtl client error: {e!r}")
            return FitRes(status, Parameters(tensors=[], tensor_type=""), 0, {})

    def evaluate(self, ins: EvaluateIns) -> EvaluateRes:
        """An evaluate message: the certificate terms (``loss`` is the mean loss).

        Parameters
        ----------
        ins : flwr.common.EvaluateIns
            The message (:func:`encode_message`, kind ``"evaluate"``).

        Returns
        -------
        flwr.common.EvaluateRes
            The scalars in ``metrics``, or an error status (``EVALUATE_NOT_IMPLEMENTED``).

        Raises
        ------
        None
            Errors become an error status (the process goes on).

        Examples
        --------
        >>> import numpy as np
        >>> client = FmtlBidiClient(np.ones((4, 2)), np.ones(4), partition_id=0)
        >>> config = {"method": "mocha", "lam": 0.1, "loss": "hinge", "round": 1, "ack": 0}
        >>> res = client.evaluate(EvaluateIns(*encode_message({"w": np.zeros(2)}, config,
        ...                                                   "evaluate")))
        >>> res.status.code.name, res.loss, res.metrics["n_commits"]
        ('OK', 1.0, 0)
        """
        try:
            params, metrics = self._reply(ins.parameters, ins.config)
            if params.tensors:
                raise ValueError("an evaluate reply carries no arrays")
            n = 0 if self.state is None else int(self.state.n)
            loss = float(metrics.get("loss_mean", 0.0))
            return EvaluateRes(Status(Code.OK, ""), loss, n, metrics)
        except Exception as e:  # noqa: BLE001 - an error reply, the process goes on
            status = Status(Code.EVALUATE_NOT_IMPLEMENTED, f"fmtl client error: {e!r}")
            return EvaluateRes(status, 0.0, 0, {})


# ----------------------------------------------------------------------------- strategy


def _probe(method: str, lam: float, m: int, kw: Mapping) -> tuple[int, dict]:
    """An upper bound on the server's rounds and its handshake config, from a probe
    server on dummy sizes (which also checks the settings)."""
    probe = make_server(method, np.ones(max(m, 1), dtype=np.int64), 1, lam, **kw)
    rounds = getattr(probe, "rounds", None)
    if rounds is None:
        rounds = int(probe.outer_iters) * int(probe.inner_iters)
    return int(rounds), probe.handshake_config()


class FmtlBidiStrategy(Strategy):
    """A legacy Flower strategy running one of fmtl's federated methods on the gRPC
    bidirectional-streaming runtime (``flwr.server.start_server``).

    Parameters
    ----------
    method : {"mocha", "local", "cocoa", "fedavg"}
        The federated method.
    lam : float
        Regularisation strength.
    num_clients : int
        Clients (= tasks) to wait for; client ``t`` has ``partition-id`` ``t``.
    connect_timeout : float
        Seconds to wait for the clients to connect and answer the handshake.
    progress : callable, optional
        Called with one line per round (``"fmtl round 3: 0.012 s (0.1 s elapsed);
        certified round 2: primal=... dual=... gap=..."``); default: Flower's log.
    **server_kwargs
        Keyword arguments of the method's in-process function (see
        :func:`fmtl.distributed.protocol.make_server`), e.g. ``outer_iters``,
        ``inner_iters``, ``random_state``, ``systems``, ``fold_eval`` (default True).

    Attributes
    ----------
    server : MochaServerState or FedAvgServerState
        After the handshake.
    final : ServerResult
        After the run.
    history : History
        One record per evaluated round.
    node_of_task, task_of_node : dict
        Task <-> Flower client id (``cid``).
    wire : list of dict
        One entry per message: round, phase, task, direction, serialised bytes, array
        shapes, time.
    round_times : list of float
        Seconds per round (from the round's first instruction to its end).
    connect_time : float
        Seconds from the first round's start to the end of the handshake.

    Raises
    ------
    ValueError
        From the constructor, for an unknown ``method`` or settings the server refuses;
        when the run starts, for clients that do not cover the tasks.
    TimeoutError
        If the clients do not connect and answer within ``connect_timeout``.

    Notes
    -----
    The Flower loop (``Server.fit``) runs :meth:`num_rounds` rounds of ``fit`` then
    ``evaluate``; the strategy maps them onto the state machine as
    :func:`~fmtl.distributed.protocol.run_local` drives it: ``configure_fit`` takes the
    handshake (first round) and :meth:`~fmtl.distributed.protocol.MochaServerState.
    begin_round`, ``aggregate_fit`` ``end_train``, ``configure_evaluate`` /
    ``aggregate_evaluate`` the certificates when they are due now (after the last round:
    the pending ones) and ``end_round``; the rounds after the last are empty. Failures
    (an error status, a timeout, a closed stream) are missing replies; a client that
    disconnected gets no more messages (a failed node every round after).

    Examples
    --------
    >>> strategy = FmtlBidiStrategy("mocha", 0.1, num_clients=3, outer_iters=2, inner_iters=3)
    >>> strategy.num_rounds()  # six server rounds, one more for the last certificates
    7
    >>> strategy.server is None and strategy.history is None  # until the run starts
    True
    """

    def __init__(
        self,
        method: str = "mocha",
        lam: float = 0.01,
        *,
        num_clients: int,
        connect_timeout: float = 120.0,
        progress: Callable[[str], None] | None = None,
        **server_kwargs,
    ) -> None:
        if method not in SERVER_METHODS:
            raise ValueError(f"unknown method {method!r}; known: {sorted(SERVER_METHODS)}")
        self.method = method
        self.lam = float(lam)
        self.num_clients = int(num_clients)
        self.connect_timeout = float(connect_timeout)
        self.progress = progress
        self.server_kwargs = {"fold_eval": True, **server_kwargs}
        self._max_rounds, self._query = _probe(
            method, self.lam, self.num_clients, self.server_kwargs
        )
        self.server = None
        self.final = None
        self.node_of_task: dict[int, str] = {}
        self.task_of_node: dict[str, int] = {}
        self.n_samples: np.ndarray | None = None
        self.wire: list[dict] = []
        self.round_times: list[float] = []
        self.connect_time = float("nan")
        self._done = False
        self._final_eval = False
        self._trained = False
        self._t_start = 0.0
        self._t_round = 0.0
        self._n_rec = 0
        self._rnd = 0

    def num_rounds(self) -> int:
        """Flower rounds to ask ``start_server`` for: the method's rounds, plus one for
        the last round's certificates (the rounds after the last do nothing)."""
        return self._max_rounds + 1

    @property
    def history(self):
        return self.server.rec.history if self.server is not None else None

    def __repr__(self) -> str:
        return f"FmtlBidiStrategy(method={self.method!r}, lam={self.lam})"

    # -- messages --------------------------------------------------------------------
    def _log_wire(self, rnd, phase, task, direction, nbytes, arrays) -> None:
        self.wire.append(
            {
                "round": int(rnd),
                "phase": phase,
                "task": int(task),
                "direction": direction,
                "bytes": int(nbytes),
                "arrays": _shapes(arrays),
                "time": time.time(),
            }
        )

    def _instructions(self, client_manager, messages: Mapping, kind: str, rnd: int, cls):
        """``[(proxy, FitIns/EvaluateIns)]`` for the tasks whose client is connected."""
        proxies = client_manager.all()
        out = []
        for t, (arrays, config) in messages.items():
            proxy = proxies.get(self.node_of_task.get(int(t), ""))
            if proxy is None:  # disconnected: a missing reply
                continue
            ins = cls(*encode_message(arrays, config, kind))
            self._log_wire(rnd, kind, t, "down", _proto_nbytes(ins), arrays)
            out.append((proxy, ins))
        return out

    def _replies(self, results, failures, rnd: int, phase: str) -> dict[str, dict]:
        """``{kind: {task: (arrays, config)}}`` from Flower's results; failures are
        missing replies (logged)."""
        out: dict[str, dict] = {"train": {}, "evaluate": {}}
        for proxy, res in results:
            t = self.task_of_node.get(proxy.cid)
            if t is None:
                continue
            config = res.metrics
            try:
                # an EvaluateRes has no Parameters: evaluate replies carry scalars only
                params = getattr(res, "parameters", Parameters(tensors=[], tensor_type=""))
                arrays, reply, kind = decode_message(params, config)
            except (KeyError, TypeError, ValueError):
                continue
            self._log_wire(rnd, kind, t, "up", _proto_nbytes(res), arrays)
            out.setdefault(kind, {})[t] = (arrays, reply)
        for f in failures:
            if isinstance(f, BaseException):
                log(WARNING, "fmtl %s round %s: a client failed: %r", phase, rnd, f)
            else:
                proxy, res = f
                t = self.task_of_node.get(proxy.cid, -1)
                log(WARNING, "fmtl %s round %s: task %s: %s", phase, rnd, t, res.status.message)
        return out

    # -- handshake -------------------------------------------------------------------
    def connect(self, client_manager) -> None:
        """Wait for ``num_clients`` clients, ask each for its task and size, build the
        server."""
        t0 = time.monotonic()
        if not client_manager.wait_for(self.num_clients, timeout=int(self.connect_timeout)):
            raise TimeoutError(
                f"{client_manager.num_available()} clients connected within "
                f"{self.connect_timeout:.0f} s, {self.num_clients} expected"
            )
        proxies = list(client_manager.all().values())
        ins = GetPropertiesIns(config={**self._query, "round": 0})
        left = max(1.0, self.connect_timeout - (time.monotonic() - t0))

        def ask(proxy):
            return proxy.get_properties(ins, timeout=left, group_id=0)

        info: dict[str, dict] = {}
        with ThreadPoolExecutor(max_workers=len(proxies)) as pool:
            for proxy, fut in [(p, pool.submit(ask, p)) for p in proxies]:
                try:
                    res = fut.result()
                except Exception as e:  # noqa: BLE001 - that client is not used
                    log(WARNING, "fmtl handshake: client %s failed: %r", proxy.cid, e)
                    continue
                if res.status.code != Code.OK:
                    log(WARNING, "fmtl handshake: %s", res.status.message)
                    continue
                info[proxy.cid] = dict(res.properties)
                t = int(res.properties.get("partition-id", -1))
                self._log_wire(0, "query", t, "up", _proto_nbytes(res), {})
        tasks, self.n_samples, d = _assign_tasks(info, self.num_clients)
        self.node_of_task = tasks
        self.task_of_node = {n: t for t, n in tasks.items()}
        self.server = make_server(self.method, self.n_samples, d, self.lam, **self.server_kwargs)
        self.server.handshake({t: info[tasks[t]] for t in range(self.num_clients)})
        self.connect_time = time.monotonic() - t0
        log(INFO, "fmtl: %d tasks, n_t = %s", self.num_clients, self.n_samples.tolist())

    # -- the legacy Strategy interface -----------------------------------------------
    def initialize_parameters(self, client_manager) -> Parameters | None:
        """No global parameters: each client gets its own ``w_t`` with its message."""
        return Parameters(tensors=[], tensor_type="")

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager):
        """This round's train messages, one per connected node taking part (each its
        own), with the evaluate messages of the previous round's pending certificates
        for the nodes without one (folded evaluation): one exchange."""
        if self.server is None:
            self._t_start = time.perf_counter()
            self.connect(client_manager)
        if self._done:
            return []
        self._t_round = time.perf_counter()
        self._n_rec = len(self.history)
        s = self.server
        instructions = s.begin_round()
        if instructions is None:
            self._done = True
            return []
        self._rnd = rnd = int(s._round["rnd"])
        self._trained = False
        out = self._instructions(client_manager, instructions, "train", rnd, FitIns)
        if s.eval_pending:
            late = s.eval_instructions()
            out += self._instructions(client_manager, late, "evaluate", s._late["rnd"], FitIns)
        if not out:  # nobody to ask: every reply is missing
            self._end_train({})
        return out

    def _end_train(self, got: Mapping) -> None:
        s = self.server
        late = None
        if s.eval_pending:
            late = got.get("evaluate", {})
        s.end_train(got.get("train", {}), late)
        self._trained = True

    def aggregate_fit(self, server_round: int, results, failures):
        """``B += dB``, ``W = Sigma B / lam`` over the valid replies (the others: dropped
        nodes); the folded certificates first."""
        if self.server is None or self._trained or self._done:
            return None, {}
        got = self._replies(results, failures, self._rnd, "train")
        self._end_train(got)
        ok = len(got.get("train", {}))
        return None, {"replies": ok}

    def evaluate(self, server_round: int, parameters: Parameters):
        """No centralised evaluation (the certificates come from the clients)."""
        return None

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager):
        """Certificate requests if this round's are due now (not folded), or, after the
        last round, the pending ones; otherwise the round ends here."""
        s = self.server
        if s is None:
            return []
        if self._done:
            if not s.eval_pending or self._final_eval:
                return []
            self._final_eval = True
            self._t_round = time.perf_counter()
            self._n_rec = len(self.history)
            rnd = s._late["rnd"]
            out = self._instructions(
                client_manager, s.eval_instructions(), "evaluate", rnd, EvaluateIns
            )
            if not out:
                s.end_eval({})
                self._log_round(None, time.perf_counter() - self._t_round)
            return out
        if not self._trained:
            self._end_train({})
        if s.eval_due:
            out = self._instructions(
                client_manager, s.eval_instructions(), "evaluate", self._rnd, EvaluateIns
            )
            if out:
                return out
            s.end_eval({})
        self._close_round()
        return []

    def aggregate_evaluate(self, server_round: int, results, failures):
        """Primal, dual and gap from the nodes' scalars and the server's ``B``, ``W``."""
        s = self.server
        if s is None:
            return None, {}
        if self._final_eval and s._round is None:
            got = self._replies(results, failures, s._late["rnd"], "evaluate")
            s.end_eval(got.get("evaluate", {}))
            self._log_round(None, time.perf_counter() - self._t_round)
            return None, {}
        got = self._replies(results, failures, self._rnd, "evaluate")
        s.end_eval(got.get("evaluate", {}))
        self._close_round()
        return None, {}

    def _close_round(self) -> None:
        self.server.end_round()
        self.round_times.append(time.perf_counter() - self._t_round)
        self._log_round(self._rnd, self.round_times[-1])

    def _log_round(self, rnd, took: float) -> None:
        head = f"fmtl round {rnd}" if rnd is not None else "fmtl final certificates"
        certs = []
        keys = ("primal", "dual", "gap")
        for rec in list(self.history)[self._n_rec :]:
            shown = " ".join(f"{k}={float(rec[k]):.6g}" for k in keys if k in rec)
            certs.append(f"round {rec['round']}: {shown}")
        elapsed = time.perf_counter() - self._t_start
        tail = ("; certified " + ", ".join(certs)) if certs else ""
        line = f"{head}: {took:.3f} s ({elapsed:.1f} s elapsed){tail}"
        if self.progress is not None:
            self.progress(line)
        else:
            log(INFO, "%s", line)

    def result(self):
        """The server's :class:`~fmtl.distributed.protocol.ServerResult` (after the run)."""
        self.final = self.server.result()
        return self.final

    save = FmtlStrategy.save


# ---------------------------------------------------------------------- start-up helpers


class _DropDeprecation(logging.Filter):
    """Flower's multi-line deprecation notice of start_server/start_client, replaced by
    one line of ours (the module docstring says why this runtime is used)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if "DEPRECATED FEATURE" in msg and any(
            "start_server" in str(a) or "start_client" in str(a) for a in record.args or ()
        ):
            return False
        return True


def _quiet_deprecation(what: str) -> logging.Filter:
    f = _DropDeprecation()
    logging.getLogger("flwr").addFilter(f)
    log(
        INFO,
        "fmtl: %s uses Flower's gRPC bidirectional-streaming runtime (deprecated by Flower "
        "since 1.13, may be removed; the SuperLink/SuperNode runtime is the default)",
        what,
    )
    return f


def run_server(
    strategy: FmtlBidiStrategy,
    server_address: str = "127.0.0.1:8080",
    *,
    round_timeout: float | None = 600.0,
    certificates: tuple[bytes, bytes, bytes] | None = None,
):
    """Run ``strategy`` with ``flwr.server.start_server`` until the method finishes.

    Must run in the main thread (``start_server`` installs signal handlers; the previous
    handlers are put back afterwards).

    Parameters
    ----------
    strategy : FmtlBidiStrategy
        The strategy (a fresh one).
    server_address : str
        Where to listen, ``host:port``.
    round_timeout : float, optional
        Seconds a client has for one message; a client that has not answered is dropped
        for that round (Flower closes its stream: it gets no more messages).
    certificates : (bytes, bytes, bytes), optional
        CA certificate, server certificate and key for TLS (``start_server``'s
        ``certificates``); None: insecure, for loopback only.

    Returns
    -------
    ServerResult
        The final model, Sigma, B and History.

    Raises
    ------
    TimeoutError
        If the clients do not connect within ``strategy.connect_timeout``.
    ValueError
        If the clients do not cover the tasks, or not called from the main thread.
    RuntimeError
        If a node fails more than ``systems.max_failures`` times.

    Examples
    --------
    A server for three client processes (:func:`run_client`); not run here::

        strategy = FmtlBidiStrategy("mocha", 0.01, num_clients=3, outer_iters=2,
                                    inner_iters=5, random_state=0)
        result = run_server(strategy, "0.0.0.0:9092")  # blocks until the run ends

    >>> callable(run_server)
    True
    """
    import signal

    from flwr.server import ServerConfig, start_server

    sigs = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGQUIT") if hasattr(signal, n)]
    saved = {s: signal.getsignal(s) for s in sigs}
    f = _quiet_deprecation("the server")
    try:
        start_server(
            server_address=server_address,
            strategy=strategy,
            config=ServerConfig(num_rounds=strategy.num_rounds(), round_timeout=round_timeout),
            certificates=certificates,
        )
    finally:
        logging.getLogger("flwr").removeFilter(f)
        for s, h in saved.items():
            signal.signal(s, h)
    if strategy.server is None:
        raise RuntimeError("the run ended before the handshake")
    return strategy.result()


def run_client(
    server_address: str,
    client: FmtlBidiClient,
    *,
    root_certificates: bytes | str | None = None,
    connect_timeout: float = 120.0,
) -> None:
    """Connect ``client`` with ``flwr.client.start_client`` (transport ``grpc-bidi``)
    and serve the server's messages until it ends the run.

    Parameters
    ----------
    server_address : str
        The server's ``host:port``.
    client : FmtlBidiClient
        The client (its task in memory).
    root_certificates : bytes or str, optional
        The server's CA certificate (PEM bytes or a path) for TLS; None: insecure.
    connect_timeout : float
        Seconds to wait for the server to listen (checked with a TCP connect first, for
        ``host:port`` addresses).

    Returns
    -------
    None
        When the server ends the run.

    Raises
    ------
    TimeoutError
        If nothing listens at ``server_address`` within ``connect_timeout``.

    Examples
    --------
    One client process per task; not run here::

        X, y = ...  # this client's task
        run_client("server:9092", FmtlBidiClient(X, y, partition_id=0))

    >>> callable(run_client)
    True
    """
    import socket

    from flwr.client import start_client

    host, _, port = server_address.rpartition(":")
    end = time.monotonic() + connect_timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                break
        except OSError:
            if time.monotonic() > end:
                raise TimeoutError(
                    f"nothing listens on {server_address} after {connect_timeout:.0f} s"
                ) from None
            time.sleep(0.05)
    f = _quiet_deprecation(f"client {client.partition_id}")
    try:
        start_client(
            server_address=server_address,
            client=client,
            insecure=root_certificates is None,
            root_certificates=root_certificates,
            transport="grpc-bidi",
        )
    finally:
        logging.getLogger("flwr").removeFilter(f)


def _warm_up(X, y) -> None:
    """Compile/load numba's kernels before the first message (a throwaway state)."""
    from .protocol import MochaClientState

    k = min(int(X.shape[0]), 4)
    st = MochaClientState(X[:k], y[:k], 1.0)
    st.train(np.zeros(st.d), 1.0, 1.0, 1, 1, rnd=1)
    st.evaluate(np.zeros(st.d), commit=1)


def _task(data: str, t: int):
    from .flower import _load_dataset

    Xs, ys = _load_dataset(data)
    if data.endswith(".npz"):
        return Xs[0], ys[0]
    if not 0 <= t < len(Xs):
        raise ValueError(f"partition-id {t} but {data!r} has {len(Xs)} tasks")
    return Xs[t], ys[t]


def _main(argv=None) -> None:
    """``python -m fmtl.distributed.flower_bidi server|client ...`` (see --help)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m fmtl.distributed.flower_bidi")
    sub = ap.add_subparsers(dest="role", required=True)
    srv = sub.add_parser("server", help="run the strategy (start_server)")
    srv.add_argument("--address", required=True, help="host:port to listen on")
    srv.add_argument("--run-config", required=True, help="JSON file of run config keys")
    srv.add_argument("--output-dir", required=True)
    cli = sub.add_parser("client", help="serve one task (start_client, grpc-bidi)")
    cli.add_argument("--server", required=True, help="the server's host:port")
    cli.add_argument("--partition-id", type=int, required=True)
    cli.add_argument("--num-partitions", type=int, default=0)
    cli.add_argument("--data", required=True, help="MOCHA .mat name or path, or a .npz")
    cli.add_argument("--connect-timeout", type=float, default=120.0)
    cli.add_argument("--debug-fail", default="", help="test hook: rounds, comma-separated")
    cli.add_argument("--debug-exit", type=int, default=None, help="test hook: a round")
    args = ap.parse_args(argv)
    if args.role == "client":
        X, y = _task(args.data, args.partition_id)
        _warm_up(X, y)
        fail = [int(r) for r in args.debug_fail.split(",") if r.strip()]
        client = FmtlBidiClient(
            X,
            y,
            args.partition_id,
            args.num_partitions,
            debug_fail=fail,
            debug_exit=args.debug_exit,
        )
        run_client(args.server, client, connect_timeout=args.connect_timeout)
        return
    cfg = {**RUN_CONFIG_DEFAULTS, **json.loads(Path(args.run_config).read_text())}
    method, lam, kw = server_kwargs_from_config(cfg)

    def progress(line: str) -> None:
        print(line, flush=True)

    strategy = FmtlBidiStrategy(
        method,
        lam,
        num_clients=int(cfg["num-clients"]),
        connect_timeout=float(cfg["connect-timeout"]),
        progress=progress,
        **kw,
    )
    t0 = time.perf_counter()
    run_server(strategy, args.address, round_timeout=float(cfg["round-timeout"]))
    strategy.save(args.output_dir)
    run = json.loads((Path(args.output_dir) / "run.json").read_text())
    run.update(connect_time=strategy.connect_time, server_time=time.perf_counter() - t0)
    (Path(args.output_dir) / "run.json").write_text(json.dumps(run))


# ------------------------------------------------------------------------------ loopback


def run_loopback_bidi(
    n_clients: int = 3,
    run_config: Mapping | None = None,
    *,
    data: str = "small",
    timeout: float = 120.0,
    workdir=None,
    count_bytes: bool = False,
    verbose: bool = False,
    progress=None,
) -> dict:
    """A federation of separate processes on 127.0.0.1 on Flower's gRPC bidi runtime.

    One server process (:func:`run_server` with a :class:`FmtlBidiStrategy`) and
    ``n_clients`` long-running client processes (client ``i`` holds task ``i`` of
    ``data``: :func:`run_client`); every process it started is stopped at the end,
    whatever happens. Same arguments and result as
    :func:`fmtl.distributed.flower.run_loopback` (which calls this for
    ``runtime="grpc-bidi"``). Insecure (no TLS): loopback only.

    Parameters
    ----------
    n_clients : int
        Number of client processes (= tasks).
    run_config : mapping, optional
        Run config overrides (keys of :data:`~fmtl.distributed.flower.
        RUN_CONFIG_DEFAULTS`; ``debug-fail`` ``"round:task,..."`` makes those train
        replies errors after the work, ``debug-exit`` ``"round:task"`` kills that client
        process on that round's train message after the work).
    data : str
        Data set name or path every client loads its task from.
    timeout : float
        Seconds for the whole run (start-up included); TimeoutError after it.
    workdir : path, optional
        Where logs and the server's output go, kept afterwards. Default: a temporary
        directory, deleted after a successful run (kept, named in the error, otherwise).
    count_bytes : bool
        Put a byte-counting TCP forwarder between each client and the server
        (``socket_bytes`` in the result).
    verbose : bool
        Print each command before starting it.
    progress : callable, optional
        Called with each per-round line of the server (``"fmtl round 3: 0.012 s ..."``)
        while the run goes on.

    Returns
    -------
    dict
        ``coef``, ``sigma``, ``history``, ``wire``, ``run`` (settings, node map,
        ``round_times``, ``connect_time``, ``server_time``), ``elapsed`` (s, whole run
        incl. start-up), ``run_time`` (s, the server process), ``socket_bytes``
        (``count_bytes``), ``workdir`` and ``pids``.

    Raises
    ------
    TimeoutError
        If the run does not finish within ``timeout``.
    RuntimeError
        If the server process exits without output (the error names the logs).

    Examples
    --------
    Skipped by the doctests (it starts processes; a few seconds)::

        out = run_loopback_bidi(3, {"outer-iters": 2, "inner-iters": 3})
        out["coef"].shape[0]  # 3, one model per client

    >>> callable(run_loopback_bidi)
    True
    """
    import tempfile

    from ..datasets import find_mocha
    from .flower import _CountingProxy

    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="fmtl_bidi_") if workdir is None else workdir)
    work.mkdir(parents=True, exist_ok=True)
    out_dir = work / "output"
    port, *proxy_ports = _free_ports(1 + n_clients)
    if not str(data).endswith(".npz"):
        found = find_mocha(data)
        data = str(found) if found is not None else str(data)
    cfg = {**(run_config or {})}
    fails: dict[int, list[int]] = {}
    for item in filter(None, (s.strip() for s in str(cfg.pop("debug-fail", "")).split(","))):
        r, t = item.split(":")
        fails.setdefault(int(t), []).append(int(r))
    exits: dict[int, int] = {}
    for item in filter(None, (s.strip() for s in str(cfg.pop("debug-exit", "")).split(","))):
        r, t = item.split(":")
        exits[int(t)] = int(r)
    cfg.setdefault("num-clients", n_clients)
    cfg.setdefault("connect-timeout", float(timeout))
    cfg["data"] = data
    (work / "run_config.json").write_text(json.dumps(cfg))
    env = {
        **os.environ,
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    me = [sys.executable, "-m", "fmtl.distributed.flower_bidi"]
    run = _LoopbackProcesses(work, env, verbose)
    spawn, proxies = run.spawn, run.proxies

    addr = f"127.0.0.1:{port}"
    try:
        server = spawn(
            [*me, "server", "--address", addr, "--run-config", str(work / "run_config.json"),
             "--output-dir", str(out_dir)],
            "server",
        )  # fmt: skip
        for i in range(n_clients):
            target = addr
            if count_bytes:
                proxies.append(_CountingProxy(proxy_ports[i], port))
                target = f"127.0.0.1:{proxy_ports[i]}"
            cmd = [*me, "client", "--server", target, "--partition-id", str(i),
                   "--num-partitions", str(n_clients), "--data", data,
                   "--connect-timeout", str(float(timeout))]  # fmt: skip
            if i in fails:
                cmd += ["--debug-fail", ",".join(map(str, fails[i]))]
            if i in exits:
                cmd += ["--debug-exit", str(exits[i])]
            spawn(cmd, f"client{i}")
        t_run = time.monotonic()
        _wait_for_run(
            server, work / "server.log", progress, t_start + timeout, timeout, work, 0.05
        )
        run_time = time.monotonic() - t_run
        if not (out_dir / "run.json").exists():
            raise RuntimeError(
                f"the server wrote no output (exit {server.returncode}); logs in {work}"
            )
    finally:
        pids = run.stop()
    return _loopback_result(out_dir, work, workdir, t_start, run_time, pids, proxies, count_bytes)


if __name__ == "__main__":
    _main()
