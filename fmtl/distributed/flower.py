"""MOCHA (and other fmtl methods) on Flower's Message API: a strategy, a ServerApp and a
ClientApp for real federations.

* :class:`FmtlStrategy` — a ``flwr.serverapp.strategy.Strategy``. It first asks every
  node for its task (``partition-id``) and size (a ``query`` message), then runs the
  method's server (:mod:`fmtl.distributed.protocol`) round by round:
  ``configure_train`` sends each node its own ``w_t``, ``Sigma_tt``, ``rho``, its work
  budget and seed; ``aggregate_train`` adds the returned ``db_t`` to ``B`` and sets
  ``W = Sigma B / lam`` (a missing or error reply is MOCHA's dropped node);
  ``configure_evaluate`` / ``aggregate_evaluate`` collect two scalars per node for the
  certificates (primal, dual, gap) kept in a fmtl :class:`~fmtl.federated.History`; the
  Sigma-step runs on the server every ``inner-iters`` rounds.
* :data:`server_app` / :data:`client_app` — the ``ServerApp`` and ``ClientApp``
  (components of the Flower app in ``fmtl/distributed/flower_app``). A client loads its
  task by ``partition-id`` from its ``node_config``: task ``partition-id`` of a
  MOCHA-layout ``.mat`` (``data``: a name such as ``"small"`` found by
  :func:`fmtl.datasets.find_mocha`, or a path), or its own ``.npz`` file with arrays
  ``X`` and ``y`` (``data="/path/client.npz"``). ``data`` in the node config overrides
  the run config's.
* Methods (run config ``method``): ``"mocha"`` (learned Sigma), ``"local"`` (MOCHA with
  ``Sigma = I/m`` fixed), ``"cocoa"`` (fixed Sigma, each node to local accuracy
  ``theta``) and ``"fedavg"``, each reproducing its in-process function bit for bit
  when every reply arrives.

The clients' dual variables live in the node's ``context.state`` and never travel; see
:mod:`fmtl.distributed.protocol` for exactly what does and for the commit/rollback rule
that keeps ``B = B(alpha)`` when replies go missing.

Run config keys (``flwr run ... --run-config 'key=value ...'``; defaults in
:data:`RUN_CONFIG_DEFAULTS` and in ``flower_app/pyproject.toml``): ``method``, ``data``,
``lam``, ``loss``, ``gamma``, ``num-clients`` (0: the ``num-partitions`` the nodes
report), ``outer-iters``, ``inner-iters``, ``local-frac``, ``local-theta``,
``eval-every``, ``tol``, ``outer-tol``, ``relationship``, ``sigma-floor``,
``sigma-prime``, ``ridge`` (MOCHA's ridge term, :func:`fmtl.federated.mocha`),
``random-state`` (-1: None), ``heterogeneity`` ("" / "low" / "high"),
``drop-prob``, ``network``, ``rounds``, ``theta``, ``max-local-passes``, ``lr``,
``lr-decay``, ``local-epochs``, ``connect-timeout``, ``round-timeout``, ``output-dir``
(where the ServerApp writes ``model.npz``, ``history.json``, ``wire.json`` and
``run.json``) and ``debug-fail`` (tests: ``"round:task,..."`` makes those train replies
errors *after* the client did the work).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Mapping
from logging import INFO, WARNING
from pathlib import Path

import numpy as np

try:
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Error,
        Message,
        MessageType,
        MetricRecord,
        RecordDict,
    )
    from flwr.clientapp import ClientApp
    from flwr.common.logger import log
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import Result, Strategy
except ImportError as e:  # pragma: no cover
    raise ImportError(
        "fmtl.distributed.flower needs Flower >= 1.42: pip install 'fmtl[flower]'"
    ) from e

from ..federated.systems import SystemsModel
from .protocol import SERVER_METHODS, client_handle, make_server

# when this module finished importing (the ClientApp process's start-up cost ends here)
_IMPORTED_AT = time.time()

__all__ = [
    "RUN_CONFIG_DEFAULTS",
    "FmtlStrategy",
    "client_app",
    "from_recorddict",
    "make_server_app",
    "message_nbytes",
    "server_app",
    "run_loopback",
    "server_kwargs_from_config",
    "to_recorddict",
]

RUN_CONFIG_DEFAULTS: dict = {
    "method": "mocha",
    "data": "small",
    "lam": 0.01,
    "loss": "hinge",
    "gamma": 1.0,
    "num-clients": 0,
    "outer-iters": 2,
    "inner-iters": 5,
    "local-frac": 1.0,
    "local-theta": 0.0,
    "eval-every": 1,
    "tol": 0.0,
    "outer-tol": 0.0,
    "relationship": "learned",
    "sigma-floor": 1e-6,
    "sigma-prime": "gershgorin",
    "ridge": 0.0,
    "random-state": 0,
    "heterogeneity": "",
    "drop-prob": 0.0,
    "network": "lte",
    "rounds": 10,
    "theta": 0.5,
    "max-local-passes": 20.0,
    "lr": 0.1,
    "lr-decay": 0.0,
    "local-epochs": 1.0,
    "connect-timeout": 120.0,
    "round-timeout": 600.0,
    "fold-eval": True,
    "output-dir": "",
    "debug-fail": "",
}

# ------------------------------------------------------------------------------ the codec


def to_recorddict(arrays: Mapping, config: Mapping) -> RecordDict:
    """A protocol message ``(arrays, config)`` as a Flower ``RecordDict``.

    Parameters
    ----------
    arrays : mapping of str to ndarray
        Stored in the ``"arrays"`` ArrayRecord (as C-contiguous arrays).
    config : mapping of str to scalar
        Stored in the ``"config"`` ConfigRecord (bool, int, float, str, bytes or lists
        of one of them).

    Returns
    -------
    flwr.app.RecordDict
        With the records ``"arrays"`` and ``"config"``.

    Raises
    ------
    TypeError
        If a config value is of a type a ConfigRecord cannot hold (e.g. None or a dict).

    See Also
    --------
    from_recorddict : The inverse.

    Examples
    --------
    >>> import numpy as np
    >>> rd = to_recorddict({"w": np.arange(3.0)}, {"round": 1, "loss": "hinge"})
    >>> arrays, config = from_recorddict(rd)
    >>> arrays["w"], config
    (array([0., 1., 2.]), {'round': 1, 'loss': 'hinge'})
    """
    rd = RecordDict()
    rd["arrays"] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
    rd["config"] = ConfigRecord(dict(config))
    return rd


def from_recorddict(rd: RecordDict) -> tuple[dict, dict]:
    """Inverse of :func:`to_recorddict`.

    Parameters
    ----------
    rd : flwr.app.RecordDict
        A message's content; missing ``"arrays"``/``"config"`` records read as empty.

    Returns
    -------
    arrays : dict of str to ndarray
        The arrays.
    config : dict of str to scalar
        The scalars.

    Raises
    ------
    AttributeError
        If ``rd`` is not a RecordDict.

    Examples
    --------
    >>> import numpy as np
    >>> from flwr.app import RecordDict
    >>> from_recorddict(RecordDict())
    ({}, {})
    >>> arrays, _ = from_recorddict(to_recorddict({"db": np.ones(2)}, {}))
    >>> arrays["db"]
    array([1., 1.])
    """
    arrays = {}
    if "arrays" in rd.array_records:
        arrays = {k: v.numpy() for k, v in rd.array_records["arrays"].items()}
    config = dict(rd.config_records["config"]) if "config" in rd.config_records else {}
    return arrays, config


def message_nbytes(message: Message) -> int:
    """Bytes of a message as Flower serialises it for transport.

    Counts the message header, its RecordDict, every record and every array chunk.

    Parameters
    ----------
    message : flwr.app.Message
        The message (any Flower inflatable object, e.g. a RecordDict, also works).

    Returns
    -------
    int
        Serialised size in bytes.

    Raises
    ------
    AttributeError
        If ``message`` is not a Flower inflatable object.

    Examples
    --------
    >>> import numpy as np
    >>> from flwr.app import Message, MessageType, Metadata
    >>> def message(d):
    ...     meta = Metadata(run_id=1, message_id="", src_node_id=0, dst_node_id=1,
    ...                     reply_to_message_id="", group_id="", created_at=0.0, ttl=60.0,
    ...                     message_type=MessageType.TRAIN)
    ...     content = to_recorddict({"w": np.zeros(d)}, {"round": 1})
    ...     return Message(metadata=meta, content=content)
    >>> small, big = message_nbytes(message(100)), message_nbytes(message(200))
    >>> bool(big - small >= 800)  # 100 more float64 values
    True
    """
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

    return sum(len(o.deflate()) for o in get_all_nested_objects(message).values())


def _array_shapes(rd: RecordDict) -> dict:
    return {
        f"{name}/{k}": list(a.shape)
        for name, rec in rd.array_records.items()
        for k, a in rec.items()
    }


# ---------------------------------------------------------------------------- run config


def _none_if(value, empty):
    return None if value == empty else value


def _as_bool(value) -> bool:
    # a run config value: a TOML bool, or a string from --run-config
    if isinstance(value, str):
        if value.strip().lower() in ("true", "1", "yes"):
            return True
        if value.strip().lower() in ("false", "0", "no", ""):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


def server_kwargs_from_config(cfg: Mapping) -> tuple[str, float, dict]:
    """``(method, lam, kwargs for make_server)`` from a (run) config.

    The config has the keys of :data:`RUN_CONFIG_DEFAULTS` (missing keys take the
    defaults); a :class:`~fmtl.federated.SystemsModel` is built when heterogeneity, drops
    or a network other than ``"lte"`` are asked for.

    Parameters
    ----------
    cfg : mapping
        Run config (kebab-case keys, e.g. ``"inner-iters"``).

    Returns
    -------
    method : str
        The federated method.
    lam : float
        Regularisation strength.
    kwargs : dict
        Keyword arguments for :func:`fmtl.distributed.protocol.make_server`.

    Raises
    ------
    ValueError
        For an unknown method, a value that does not convert to the key's type (e.g.
        ``"lam": "abc"``), or systems settings :class:`~fmtl.federated.SystemsModel`
        refuses.

    Examples
    --------
    >>> method, lam, kw = server_kwargs_from_config({"method": "cocoa", "rounds": 4})
    >>> method, lam, kw["rounds"], kw["theta"], kw["systems"]
    ('cocoa', 0.01, 4, 0.5, None)
    """
    c = {**RUN_CONFIG_DEFAULTS, **cfg}
    method = str(c["method"])
    if method not in SERVER_METHODS:
        raise ValueError(f"unknown method {method!r}; known: {sorted(SERVER_METHODS)}")
    seed = int(c["random-state"])
    systems = None
    het = _none_if(str(c["heterogeneity"]), "")
    drop = float(c["drop-prob"])
    if het is not None or drop > 0 or str(c["network"]) != "lte":
        net = c["network"]
        systems = SystemsModel(heterogeneity=het, drop_prob=drop, network=net)
    kw: dict = {
        "loss": str(c["loss"]),
        "gamma": float(c["gamma"]),
        "random_state": None if seed < 0 else seed,
        "systems": systems,
        "eval_every": int(c["eval-every"]),
        "fold_eval": _as_bool(c["fold-eval"]),
    }
    if method in ("mocha", "local"):
        sp = c["sigma-prime"]
        if isinstance(sp, str) and sp not in ("gershgorin", "spectral"):
            sp = float(sp)  # a number given as a string
        kw.update(
            outer_iters=int(c["outer-iters"]),
            inner_iters=int(c["inner-iters"]),
            local_frac=float(c["local-frac"]),
            local_theta=float(c["local-theta"]),
            tol=float(c["tol"]),
            outer_tol=float(c["outer-tol"]),
            sigma_floor=float(c["sigma-floor"]),
            sigma_prime=sp if isinstance(sp, str) else float(sp),
            ridge=float(c["ridge"]),
        )
        if method == "mocha":
            kw["relationship"] = str(c["relationship"])
    elif method == "cocoa":
        kw.update(
            rounds=int(c["rounds"]),
            theta=float(c["theta"]),
            max_local_passes=float(c["max-local-passes"]),
            tol=float(c["tol"]),
        )
    elif method == "fedavg":
        kw.update(
            rounds=int(c["rounds"]),
            lr=float(c["lr"]),
            lr_decay=float(c["lr-decay"]),
            local_epochs=float(c["local-epochs"]),
        )
    return method, float(c["lam"]), kw


def _assign_tasks(info: Mapping, want: int) -> tuple[dict, np.ndarray, int]:
    """``({task: node}, n_samples, d)`` from the nodes' handshake replies (node ->
    reply with ``partition-id``, ``n``, ``d``); ValueError if they do not cover tasks
    ``0..want-1`` exactly once with one number of features."""
    tasks: dict = {}
    for node, c in info.items():
        t = int(c["partition-id"])
        if not 0 <= t < want:
            continue
        if t in tasks:
            raise ValueError(f"two nodes ({tasks[t]}, {node}) have partition-id {t}")
        tasks[t] = node
    missing = sorted(set(range(want)) - set(tasks))
    if missing:
        raise ValueError(f"no node has partition-id(s) {missing} (of {want})")
    d = {int(info[tasks[t]]["d"]) for t in range(want)}
    if len(d) != 1:
        raise ValueError(f"the nodes' tasks have different numbers of features: {d}")
    n_samples = np.array([int(info[tasks[t]]["n"]) for t in range(want)])
    return {t: tasks[t] for t in range(want)}, n_samples, d.pop()


# ------------------------------------------------------------------------------ strategy


class FmtlStrategy(Strategy):
    """A Flower strategy running one of fmtl's federated methods (MOCHA by default).

    Parameters
    ----------
    method : {"mocha", "local", "cocoa", "fedavg"}
        The federated method.
    lam : float
        Regularisation strength.
    num_clients : int, optional
        Nodes (= tasks) to wait for; None: the ``num-partitions`` the nodes report.
    connect_timeout : float
        Seconds to wait for the nodes to connect.
    round_timeout : float
        Seconds to wait for the replies of one phase; a node that has not answered by
        then is dropped for that round.
    poll_interval : float
        Seconds between pulls of replies (Flower's ``Grid.send_and_receive`` sleeps 3 s
        between pulls; this strategy pulls itself).
    data : str, optional
        The data set every client loads its task from (sent in each message's config; a
        node's own ``data`` in its node config still wins). ``None``: the clients use
        their run config's.
    **server_kwargs
        Keyword arguments of the method's in-process function (see
        :func:`fmtl.distributed.protocol.make_server`), e.g. ``outer_iters``,
        ``inner_iters``, ``random_state``, ``systems``.

    Attributes
    ----------
    server : MochaServerState or FedAvgServerState
        After :meth:`connect`.
    history : History
        One record per evaluated round (primal, dual, gap, ... as :func:`fmtl.federated.
        mocha`).
    task_of_node, node_of_task : dict
    wire : list of dict
        One entry per message: round, phase, task, direction (``down`` = server to
        client), serialised bytes and array shapes.

    Raises
    ------
    ValueError
        From the constructor, for an unknown ``method``; when the run starts, for
        settings the server refuses (as :func:`fmtl.distributed.protocol.make_server`)
        or nodes that do not cover the tasks (two nodes with one ``partition-id``, a
        missing one, different numbers of features).
    TimeoutError
        If the nodes do not answer the handshake within ``connect_timeout``.

    Examples
    --------
    >>> strategy = FmtlStrategy("mocha", 0.1, num_clients=3, inner_iters=3)
    >>> strategy.method, strategy.num_clients, strategy.server_kwargs
    ('mocha', 3, {'inner_iters': 3})
    >>> strategy.server is None and strategy.history is None  # until the run starts
    True
    >>> FmtlStrategy.from_run_config({"method": "fedavg", "rounds": 4}).server_kwargs["rounds"]
    4
    """

    def __init__(
        self,
        method: str = "mocha",
        lam: float = 0.01,
        *,
        num_clients: int | None = None,
        connect_timeout: float = 120.0,
        round_timeout: float = 600.0,
        poll_interval: float = 0.05,
        data: str | None = None,
        **server_kwargs,
    ) -> None:
        if method not in SERVER_METHODS:
            raise ValueError(f"unknown method {method!r}; known: {sorted(SERVER_METHODS)}")
        self.method = method
        self.lam = float(lam)
        self.num_clients = num_clients
        self.connect_timeout = float(connect_timeout)
        self.round_timeout = float(round_timeout)
        self.poll_interval = float(poll_interval)
        self.data = None if data is None else str(data)
        self.server_kwargs = server_kwargs
        self.server = None
        self.task_of_node: dict[int, int] = {}
        self.node_of_task: dict[int, int] = {}
        self.n_samples: np.ndarray | None = None
        self.wire: list[dict] = []
        self.round_times: list[float] = []
        self._arrived: dict[str, float] = {}

    @classmethod
    def from_run_config(cls, run_config: Mapping) -> FmtlStrategy:
        c = {**RUN_CONFIG_DEFAULTS, **run_config}
        method, lam, kw = server_kwargs_from_config(c)
        n = int(c["num-clients"])
        return cls(
            method,
            lam,
            num_clients=n if n > 0 else None,
            connect_timeout=float(c["connect-timeout"]),
            round_timeout=float(c["round-timeout"]),
            # the ServerApp's run config (with make_server_app's overrides) reaches the
            # clients only through the messages: the simulation engine gives them the
            # run's own config
            data=str(c["data"]),
            **kw,
        )

    @property
    def history(self):
        return self.server.rec.history if self.server is not None else None

    def summary(self) -> None:
        log(INFO, "\t├──> fmtl method: %s, lam=%s", self.method, self.lam)
        log(INFO, "\t└──> settings: %s", self.server_kwargs)

    # -- transport -------------------------------------------------------------------
    def _handshake_config(self) -> dict:
        loss = self.server_kwargs.get("loss", "logistic" if self.method == "fedavg" else "hinge")
        return {
            "method": self.method,
            "lam": self.lam,
            "loss": str(loss),
            "gamma": float(self.server_kwargs.get("gamma", 1.0)),
        }

    def _message(self, t_or_node: int, payload, kind: str, rnd: int, by_node=False) -> Message:
        node = t_or_node if by_node else self.node_of_task[t_or_node]
        arrays, config = payload
        if self.data is not None:
            config = {**config, "data": self.data}
        msg = Message(
            to_recorddict(arrays, config),
            dst_node_id=int(node),
            message_type=kind,
            group_id=str(rnd),
        )
        self.wire.append(
            {
                "round": rnd,
                "phase": kind,
                "task": self.task_of_node.get(node, -1),
                "direction": "down",
                "bytes": message_nbytes(msg),
                "arrays": _array_shapes(msg.content),
                "time": time.time(),
            }
        )
        return msg

    def send_and_receive(self, grid: Grid, messages: list[Message], timeout: float) -> list:
        """Push ``messages`` and pull their replies every ``poll_interval`` seconds until
        all arrived or ``timeout`` passed (late replies are dropped)."""
        if not messages:
            return []
        ids = {i for i in grid.push_messages(messages) if i}
        replies: list[Message] = []
        end = time.monotonic() + timeout
        while ids and time.monotonic() < end:
            got = list(grid.pull_messages(list(ids)))
            now = time.time()
            for m in got:  # when each reply arrived (wire.json's "time" of an upload)
                self._arrived[m.metadata.message_id] = now
            replies.extend(got)
            ids.difference_update(m.metadata.reply_to_message_id for m in got)
            if ids:
                time.sleep(self.poll_interval)
        return replies

    def _by_task(self, replies: Iterable[Message], kind: str, rnd: int) -> dict:
        out: dict[int, tuple | None] = {}
        for msg in replies:
            t = self.task_of_node.get(int(msg.metadata.src_node_id))
            if t is None:
                continue
            if msg.has_error():
                log(WARNING, "%s round %s: node of task %s failed: %s", kind, rnd, t, msg.error)
                out[t] = None
                continue
            self.wire.append(
                {
                    "round": rnd,
                    "phase": kind,
                    "task": t,
                    "direction": "up",
                    "bytes": message_nbytes(msg),
                    "arrays": _array_shapes(msg.content),
                    "time": self._arrived.pop(msg.metadata.message_id, time.time()),
                }
            )
            try:
                out[t] = from_recorddict(msg.content)
            except (KeyError, TypeError, ValueError):
                out[t] = None
        return out

    # -- handshake -------------------------------------------------------------------
    def connect(self, grid: Grid) -> None:
        """Wait for the nodes, ask each for its task and size, build the server."""
        t0 = time.monotonic()
        info: dict[int, dict] = {}
        want = self.num_clients
        while True:
            nodes = [int(n) for n in grid.get_node_ids()]
            new = [n for n in nodes if n not in info]
            if new:
                msgs = [
                    self._message(n, ({}, self._handshake_config()), MessageType.QUERY, 0, True)
                    for n in new
                ]
                left = max(1.0, self.connect_timeout - (time.monotonic() - t0))
                for msg in self.send_and_receive(grid, msgs, min(left, self.round_timeout)):
                    if msg.has_error():
                        log(
                            WARNING,
                            "handshake: node %s failed: %s",
                            msg.metadata.src_node_id,
                            msg.error,
                        )
                        continue
                    reply = from_recorddict(msg.content)[1]
                    info[int(msg.metadata.src_node_id)] = reply
                    self.wire.append(
                        {
                            "round": 0,
                            "phase": "query",
                            "task": int(reply.get("partition-id", -1)),
                            "direction": "up",
                            "bytes": message_nbytes(msg),
                            "arrays": _array_shapes(msg.content),
                            "time": self._arrived.pop(msg.metadata.message_id, time.time()),
                        }
                    )
            if want is None and info:
                want = max(int(c.get("num-partitions", 0)) for c in info.values()) or len(info)
            if want is not None and len(info) >= want:
                break
            if time.monotonic() - t0 > self.connect_timeout:
                raise TimeoutError(
                    f"{len(info)} nodes answered the handshake within "
                    f"{self.connect_timeout:.0f} s, {want or '?'} expected"
                )
            time.sleep(0.2)
        tasks, self.n_samples, d = _assign_tasks(info, want)
        self.node_of_task = tasks
        self.task_of_node = {n: t for t, n in self.node_of_task.items()}
        # fold_eval (default here): one round trip per round, see protocol._ServerBase
        self.server = make_server(
            self.method,
            self.n_samples,
            d,
            self.lam,
            **{"fold_eval": True, **self.server_kwargs},
        )
        self.server.handshake({t: info[tasks[t]] for t in range(want)})
        log(INFO, "fmtl: %d tasks, n_t = %s", want, self.n_samples.tolist())

    # -- the Strategy interface -------------------------------------------------------
    def _close_round(self) -> None:
        if self.server is not None and self.server._round is not None:
            self.server.end_round()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One message per node taking part: its ``w_t``, ``Sigma_tt``, ``rho``, work
        budget, seed (``arrays`` and ``config`` are not used: each node gets its own)."""
        if self.server is None:
            self.connect(grid)
        self._close_round()
        instructions = self.server.begin_round()
        if instructions is None:
            return []
        return [
            self._message(t, p, MessageType.TRAIN, server_round) for t, p in instructions.items()
        ]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """``B += dB``, ``W = Sigma B / lam`` over the valid replies (others: dropped).

        With the previous round's certificates folded into this round (``fold_eval``),
        they are recorded first: from the train replies and from the replies to the
        evaluate messages of the nodes without a train message (:meth:`late_evaluate`).
        """
        replies = list(replies)
        evals = [m for m in replies if m.metadata.message_type == MessageType.EVALUATE]
        trains = [m for m in replies if m.metadata.message_type != MessageType.EVALUATE]
        late = None
        if self.server.eval_pending:
            late = self._by_task(evals, "evaluate", self.server._late["rnd"])
        got = self._by_task(trains, "train", server_round)
        self.server.end_train(got, late)
        W = self.server.current_coef()
        ok = sum(v is not None for v in got.values())
        return ArrayRecord({"W": Array(np.ascontiguousarray(W))}), MetricRecord(
            {"replies": ok, "round": server_round}
        )

    def late_evaluate(self) -> list[Message]:
        """While the previous round's certificates are pending (``fold_eval``), evaluate
        messages for them: to the nodes without a train message this round (sent in the
        same exchange), or to every node after the last round."""
        if self.server is None or not self.server.eval_pending:
            return []
        rnd = self.server._late["rnd"]
        return [
            self._message(t, p, MessageType.EVALUATE, rnd)
            for t, p in self.server.eval_instructions().items()
        ]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Certificate requests (``w_t`` and the commit ack) if this round is evaluated
        now (with ``fold_eval`` only after the last round: the others ride on the next
        round's train messages)."""
        if self.server is not None and self.server.eval_pending and self.server.finished:
            return self.late_evaluate()
        if self.server is None or not self.server.eval_due:
            return []
        return [
            self._message(t, p, MessageType.EVALUATE, server_round)
            for t, p in self.server.eval_instructions().items()
        ]

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Primal, dual and gap from the nodes' scalars and the server's ``B`` and ``W``."""
        if self.server is not None and self.server.eval_pending and self.server.finished:
            server_round = self.server._late["rnd"]
        elif self.server is None or not self.server.eval_due:
            return None
        rec = self.server.end_eval(self._by_task(replies, "evaluate", server_round))
        keys = ("primal", "dual", "gap", "rel_gap", "joint_gap")
        return MetricRecord({k: float(rec[k]) for k in keys if k in rec})

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord | None = None,
        num_rounds: int | None = None,
        timeout: float | None = None,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn=None,
    ) -> Result:
        """Run the method's whole schedule (or at most ``num_rounds`` rounds).

        Returns a Flower ``Result`` whose ``arrays`` hold the final ``W`` (rows are
        tasks) and, for MOCHA, ``Sigma``; the fmtl History is :attr:`history`.
        """
        timeout = self.round_timeout if timeout is None else float(timeout)
        train_config = ConfigRecord() if train_config is None else train_config
        evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
        result = Result()
        if self.server is None:
            self.connect(grid)
        arrays = ArrayRecord() if initial_arrays is None else initial_arrays
        rnd = 0
        t_start = time.perf_counter()
        while not self.server.finished and (num_rounds is None or rnd < num_rounds):
            rnd += 1
            t0 = time.perf_counter()
            n_rec = len(self.history)
            msgs = list(self.configure_train(rnd, arrays, train_config, grid))
            if not msgs and self.server._round is None:
                break
            # the previous round's certificates (fold_eval) for nodes without a train
            # message: in the same exchange, so a round stays one round trip
            msgs += self.late_evaluate()
            replies = self.send_and_receive(grid, msgs, timeout)
            arrays, metrics = self.aggregate_train(rnd, replies)
            result.train_metrics_clientapp[rnd] = metrics
            msgs = list(self.configure_evaluate(rnd, arrays, evaluate_config, grid))
            if msgs:
                replies = self.send_and_receive(grid, msgs, timeout)
                self.aggregate_evaluate(rnd, replies)
            self._close_round()
            self.round_times.append(time.perf_counter() - t0)
            self._log_round(rnd, t_start, n_rec, result)
        if self.server.eval_pending:  # the last evaluated round's certificates
            t0 = time.perf_counter()
            n_rec = len(self.history)
            replies = self.send_and_receive(grid, self.late_evaluate(), timeout)
            self.aggregate_evaluate(rnd, replies)
            self._log_round(None, t_start, n_rec, result, time.perf_counter() - t0)
        final = self.server.result()
        self.final = final
        out = {"W": Array(np.ascontiguousarray(final.coef))}
        if final.sigma is not None:
            out["Sigma"] = Array(np.ascontiguousarray(final.sigma))
        result.arrays = ArrayRecord(out)
        return result

    def _log_round(self, rnd, t_start, n_rec, result, took=None) -> None:
        """One progress line per round (``flwr run --stream`` shows the ServerApp's log):
        the round, its time, the time so far and the certificates recorded since
        ``n_rec`` (with ``fold_eval`` those of the previous round)."""
        took = self.round_times[-1] if took is None else took
        head = f"fmtl round {rnd}" if rnd is not None else "fmtl final certificates"
        certs = []
        for rec in list(self.history)[n_rec:]:
            keys = ("primal", "dual", "gap", "rel_gap", "joint_gap")
            m = MetricRecord({k: float(rec[k]) for k in keys if k in rec})
            result.evaluate_metrics_clientapp[int(rec["round"])] = m
            shown = " ".join(f"{k}={m[k]:.6g}" for k in keys[:3] if k in m)
            certs.append(f"round {rec['round']}: {shown}")
        elapsed = time.perf_counter() - t_start
        tail = ("; certified " + ", ".join(certs)) if certs else ""
        log(INFO, "%s: %.2f s (%.1f s elapsed)%s", head, took, elapsed, tail)

    # -- output ----------------------------------------------------------------------
    def save(self, directory) -> None:
        """Write ``model.npz`` (coef, sigma, B), ``history.json``, ``wire.json`` and
        ``run.json`` (method, settings, node <-> task map, round times)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        final = self.final
        np.savez(
            d / "model.npz",
            coef=final.coef,
            **({"sigma": final.sigma, "B": final.B} if final.sigma is not None else {}),
        )
        (d / "history.json").write_text(final.history.to_json())
        (d / "wire.json").write_text(json.dumps(self.wire))
        settings = {k: repr(v) for k, v in self.server_kwargs.items()}
        (d / "run.json").write_text(
            json.dumps(
                {
                    "method": self.method,
                    "lam": self.lam,
                    "settings": settings,
                    "n_samples": self.n_samples.tolist(),
                    "node_of_task": {str(t): str(n) for t, n in self.node_of_task.items()},
                    "round_times": self.round_times,
                    "never_reported": final.never_reported.tolist(),
                    "client_rollbacks": getattr(
                        self.server, "client_rollbacks", np.zeros(0, int)
                    ).tolist(),
                }
            )
        )


# ------------------------------------------------------------------------------ ServerApp


def make_server_app(overrides: Mapping | None = None) -> ServerApp:
    """A ServerApp with run-config overrides, for Flower's simulation engine.

    Its run config is ``RUN_CONFIG_DEFAULTS``, then the run's own ``run_config``, then
    ``overrides``: the simulation engine has no ``flwr run --run-config``.

    Parameters
    ----------
    overrides : mapping, optional
        Run config entries (keys of :data:`RUN_CONFIG_DEFAULTS`) that take precedence.

    Returns
    -------
    flwr.serverapp.ServerApp
        The app; pair it with :data:`client_app`.

    Raises
    ------
    ValueError
        Not when built: the run config is read when the app runs, which raises
        ``ValueError`` for an unknown method or bad settings (as
        :func:`server_kwargs_from_config`).

    Examples
    --------
    >>> app = make_server_app({"inner-iters": 3, "output-dir": "out"})
    >>> type(app).__name__
    'ServerApp'

    Running it in the simulation engine (Ray; not run here)::

        from flwr.simulation import run_simulation
        run_simulation(make_server_app({"inner-iters": 3, "output-dir": "out"}),
                       client_app, num_supernodes=3)
    """
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        _server_main(grid, context, overrides)

    return app


server_app = ServerApp()


@server_app.main()
def _server_app_main(grid: Grid, context: Context) -> None:
    _server_main(grid, context)


def _server_main(grid: Grid, context: Context, overrides: Mapping | None = None) -> None:
    cfg = {**RUN_CONFIG_DEFAULTS, **context.run_config, **(overrides or {})}
    strategy = FmtlStrategy.from_run_config(cfg)
    strategy.start(grid)
    if cfg["output-dir"]:
        strategy.save(cfg["output-dir"])
    h = strategy.history
    if h is not None and len(h):
        log(INFO, "fmtl: %s", h)


# ------------------------------------------------------------------------------ ClientApp

client_app = ClientApp()
_STATE_ARRAYS = "fmtl.state.arrays"
_STATE_CONFIG = "fmtl.state.config"


@functools.lru_cache(maxsize=4)
def _load_dataset(data: str):
    from ..datasets import find_mocha, load_mat

    if data.endswith(".npz"):
        with np.load(data) as f:
            return [f["X"]], [f["y"]]
    path = find_mocha(data)
    if path is None:
        raise FileNotFoundError(f"MOCHA data set {data!r} not found (set FMTL_DATA)")
    ds = load_mat(path)
    return ds.X, ds.y


def _task_data(context: Context, config: Mapping) -> tuple:
    node = context.node_config
    if "partition-id" not in node:
        raise ValueError("this SuperNode has no partition-id in its --node-config")
    t = int(node["partition-id"])
    # node config > the server's (in every message) > this run's config
    default = context.run_config.get("data", RUN_CONFIG_DEFAULTS["data"])
    data = str(node.get("data", config.get("data", default)))
    Xs, ys = _load_dataset(data)
    if data.endswith(".npz"):
        return Xs[0], ys[0]
    if not 0 <= t < len(Xs):
        raise ValueError(f"partition-id {t} but {data!r} has {len(Xs)} tasks")
    return Xs[t], ys[t]


def _debug_fail(context: Context, rnd: int) -> bool:
    spec = str(context.run_config.get("debug-fail", ""))
    t = int(context.node_config.get("partition-id", -1))
    for item in filter(None, (s.strip() for s in spec.split(","))):
        r, task = item.split(":")
        if int(r) == rnd and int(task) == t:
            return True
    return False


def _process_started_at() -> float:
    """Wall-clock time this process started (NaN if unknown)."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001  (psutil missing: the trace just lacks it)
        return float("nan")


def _trace(kind: str, config: Mapping, context: Context, t_in: float) -> None:
    """Append one JSON line to ``$FMTL_FLOWER_TRACE`` (if set): when this ClientApp
    process started, finished importing fmtl and handled the message (wall clock), for
    the time breakdown in docs/deploying.md."""
    import os

    path = os.environ.get("FMTL_FLOWER_TRACE")
    if not path:
        return
    from .. import __file__ as fmtl_file

    line = {
        "kind": kind,
        "round": int(config.get("round", 0)),
        "task": int(context.node_config.get("partition-id", -1)),
        "pid": os.getpid(),
        "process_start": _process_started_at(),
        "imported": _IMPORTED_AT,
        "handler_in": t_in,
        "handler_out": time.time(),
        "fmtl": fmtl_file,
    }
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


def _client_step(kind: str, msg: Message, context: Context) -> Message:
    t_in = time.time()
    try:
        return _client_reply(kind, msg, context)
    finally:
        _trace(kind, from_recorddict(msg.content)[1], context, t_in)


def _client_reply(kind: str, msg: Message, context: Context) -> Message:
    arrays, config = from_recorddict(msg.content)
    st = context.state
    state = None
    if _STATE_ARRAYS in st.array_records:
        state = (
            {k: v.numpy() for k, v in st.array_records[_STATE_ARRAYS].items()},
            dict(st.config_records[_STATE_CONFIG]),
        )
    (r_arrays, r_config), new_state = client_handle(
        kind, arrays, config, lambda: _task_data(context, config), state
    )
    if kind == "query":
        node = context.node_config
        r_config = {
            **r_config,
            "partition-id": int(node["partition-id"]),
            "num-partitions": int(node.get("num-partitions", 0)),
        }
    if new_state is not None and new_state[0]:
        st[_STATE_ARRAYS] = ArrayRecord({k: Array(np.asarray(v)) for k, v in new_state[0].items()})
        st[_STATE_CONFIG] = ConfigRecord(dict(new_state[1]))
    if kind == "train" and _debug_fail(context, int(config.get("round", -1))):
        # test hook: the work is done and the pending duals are stored, but the reply is
        # lost (an error reply); the next message must roll the update back
        return Message(Error(code=0, reason="fmtl debug-fail"), reply_to=msg)
    return Message(to_recorddict(r_arrays, r_config), reply_to=msg)


@client_app.query()
def _client_query(msg: Message, context: Context) -> Message:
    return _client_step("query", msg, context)


@client_app.train()
def _client_train(msg: Message, context: Context) -> Message:
    return _client_step("train", msg, context)


@client_app.evaluate()
def _client_evaluate(msg: Message, context: Context) -> Message:
    return _client_step("evaluate", msg, context)


# ------------------------------------------------------------------------------ loopback

APP_DIR = Path(__file__).with_name("flower_app")


def _free_ports(k: int) -> list[int]:
    import socket

    socks = []
    try:
        for _ in range(k):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_port(port: int, timeout: float, proc=None) -> None:
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def _descendants(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc; psutil elsewhere if installed)."""
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # noqa: BLE001  (the process is gone)
        return []
    children: dict[int, list[int]] = {}
    for p in Path("/proc").glob("[0-9]*"):
        try:
            stat = (p / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    """Is ``pid`` a running (not zombie) process?"""
    import os

    if Path("/proc").is_dir():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop_all(procs: list, grace: float = 10.0) -> list[int]:
    """SIGTERM the processes we started and every descendant (by pid), wait up to
    ``grace`` seconds, SIGKILL what is left. Returns every pid it signalled."""
    import os
    import signal

    def signal_all(pids, sig):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    pids = [p.pid for p in procs]
    for p in procs:
        pids.extend(_descendants(p.pid))
    signal_all([pid for pid in pids if _alive(pid)], signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        for p in procs:
            p.poll()  # reap our children
        left = [pid for pid in pids if _alive(pid)]
        if not left:
            break
        time.sleep(0.1)
    else:
        signal_all([pid for pid in pids if _alive(pid)], signal.SIGKILL)
    for p in procs:
        try:
            p.wait(timeout=5)
        except Exception:  # noqa: BLE001
            pass
    return pids


class _CountingProxy:
    """A TCP forwarder 127.0.0.1:listen -> 127.0.0.1:target counting bytes each way
    (client -> server: ``up``; server -> client: ``down``)."""

    def __init__(self, listen: int, target: int) -> None:
        import socket
        import threading

        self.up = 0
        self.down = 0
        self._lock = threading.Lock()
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen))
        self.sock.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, "down"), daemon=True).start()

    def _pipe(self, src, dst, direction: str) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    setattr(self, direction, getattr(self, direction) + len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.sock.close()


class _LogFollower:
    """Hands the per-round lines (``fmtl round ...``, ``fmtl final ...``) that appear in
    a growing log file to ``callback``, without Flower's colour codes and level."""

    def __init__(self, path: Path, callback) -> None:
        self.path, self.callback = path, callback
        self.offset, self.partial = 0, b""

    def poll(self) -> None:
        import re

        if self.callback is None or not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for raw in lines:
            line = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode("utf-8", "replace"))
            i = line.find("fmtl round ")
            if i < 0:
                i = line.find("fmtl final ")
            if i >= 0:
                self.callback(line[i:].rstrip())


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))


def run_loopback(
    n_clients: int = 3,
    run_config: Mapping | None = None,
    *,
    data: str = "small",
    timeout: float = 120.0,
    workdir=None,
    count_bytes: bool = False,
    task_poll_interval: float = 0.1,
    verbose: bool = False,
    progress=None,
    runtime: str = "superlink",
) -> dict:
    """Run a federation of separate processes on 127.0.0.1.

    A SuperLink, ``n_clients`` SuperNodes (client ``i`` holds task ``i`` of ``data``) and
    ``flwr run`` of the fmtl Flower app; every process it started (and their children) is
    stopped at the end, whatever happens.

    Insecure (no TLS) on purpose: loopback only. Across machines give the SuperLink
    ``--ssl-ca-certfile``, ``--ssl-certfile`` and ``--ssl-keyfile`` and each SuperNode
    ``--root-certificates`` (the CA certificate) instead of ``--insecure``.

    Parameters
    ----------
    n_clients : int
        Number of SuperNodes (= tasks).
    run_config : mapping, optional
        Run config overrides (keys of :data:`RUN_CONFIG_DEFAULTS`).
    data : str
        Data set name or path every node loads its task from (node config ``data``).
    timeout : float
        Seconds for the whole run (start-up included); TimeoutError after it.
    workdir : path, optional
        Where logs, ``FLWR_HOME`` and the ServerApp's output go, kept afterwards.
        Default: a new temporary directory, deleted after a successful run and kept
        (its path in the error) after a failed one.
    count_bytes : bool
        Put a byte-counting TCP forwarder between each SuperNode and the SuperLink:
        ``socket_bytes`` in the result is every byte each client sent and received
        (HTTP, polling, heartbeats, the app bundle and the messages).
    task_poll_interval : float
        ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` of the SuperExec processes (Flower's
        default is 1 s; the SuperNodes themselves poll the SuperLink every 3 s when
        idle, which is hard-coded in Flower 1.42).
    verbose : bool, default=False
        Print each command before starting it.
    progress : callable, optional
        Called with each per-round line of the ServerApp's log (``"fmtl round 3: 2.95 s
        (9.1 s elapsed); certified round 2: primal=... dual=... gap=..."``) while the
        run goes on (``flwr run --stream`` relays the log), e.g. ``print``.
    runtime : {"superlink", "grpc-bidi"}, default="superlink"
        ``"grpc-bidi"``: Flower's (deprecated) gRPC bidirectional-streaming runtime
        instead, a server process and long-running client processes
        (:func:`fmtl.distributed.flower_bidi.run_loopback_bidi`; milliseconds per round
        instead of seconds; ``task_poll_interval`` does not apply).

    Returns
    -------
    dict
        ``coef``, ``sigma`` (None for FedAvg), ``history`` (a History), ``wire`` (per
        message: round, phase, task, direction, bytes, array shapes), ``run`` (settings,
        node map, round times), ``elapsed`` (s, whole run incl. start-up),
        ``run_time`` (s, ``flwr run``), ``socket_bytes`` (``count_bytes``),
        ``workdir`` (None if it was a deleted temporary one) and ``pids`` (every
        process it started or found below them; all stopped).

    Raises
    ------
    TimeoutError
        If a process does not start listening, or the run does not finish, within
        ``timeout``.
    RuntimeError
        If a process it started exits early, or the ServerApp writes no output (the
        error names the directory with the logs).
    ValueError
        For an unknown ``runtime``.

    Examples
    --------
    Skipped by the doctests: a run takes about a minute (Flower's 3-second idle polling)
    and starts a SuperLink, SuperNodes and ``flwr run`` as processes.

    >>> out = run_loopback(3, {"outer-iters": 2, "inner-iters": 3})  # doctest: +SKIP
    >>> out["coef"].shape[0]  # one model per client  # doctest: +SKIP
    3
    >>> fast = run_loopback(3, runtime="grpc-bidi")  # a few seconds  # doctest: +SKIP
    """
    if runtime == "grpc-bidi":
        from .flower_bidi import run_loopback_bidi

        return run_loopback_bidi(
            n_clients,
            run_config,
            data=data,
            timeout=timeout,
            workdir=workdir,
            count_bytes=count_bytes,
            verbose=verbose,
            progress=progress,
        )
    if runtime != "superlink":
        raise ValueError(f"unknown runtime {runtime!r}: 'superlink' or 'grpc-bidi'")
    import os
    import sys
    import tempfile

    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="fmtl_flower_") if workdir is None else workdir)
    work.mkdir(parents=True, exist_ok=True)
    home = work / "flwr_home"
    home.mkdir(exist_ok=True)
    out_dir = work / "output"
    link_port, *node_ports = _free_ports(1 + 2 * n_clients)
    runtime_ports, proxy_ports = node_ports[:n_clients], node_ports[n_clients:]
    (home / "config.toml").write_text(
        "[superlink]\n"
        'default = "fmtl-loopback"\n\n'
        "[superlink.fmtl-loopback]\n"
        f'address = "127.0.0.1:{link_port}"\n'
        "insecure = true\n"
    )
    from ..datasets import find_mocha

    if not str(data).endswith(".npz"):
        found = find_mocha(data)  # give the nodes an absolute path
        data = str(found) if found is not None else str(data)
    cfg = {**(run_config or {}), "output-dir": str(out_dir), "data": data}
    cfg.setdefault("num-clients", n_clients)
    cfg.setdefault("connect-timeout", float(timeout))
    run_cfg = work / "run_config.toml"
    run_cfg.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in cfg.items()))
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        # the SuperLink starts flower-superexec by name: find it beside this python even
        # when its virtual environment is not activated
        "PATH": os.pathsep.join([str(bindir), os.environ.get("PATH", "")]),
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(task_poll_interval),
    }

    def exe(name: str) -> str:
        p = bindir / name
        return str(p) if p.exists() else name

    run = _LoopbackProcesses(work, env, verbose)
    spawn, proxies = run.spawn, run.proxies

    try:
        link = spawn(
            [
                exe("flower-superlink"),
                "--insecure",  # TLS: --ssl-ca-certfile CA --ssl-certfile CERT --ssl-keyfile KEY
                "--host",
                "127.0.0.1",
                "--port",
                str(link_port),
                "--disable-runtime-dependency-installation",
            ],
            "superlink",
        )
        _wait_port(link_port, 30.0, link)
        for i in range(n_clients):
            target = link_port
            if count_bytes:
                proxies.append(_CountingProxy(proxy_ports[i], link_port))
                target = proxy_ports[i]
            node_config = f"partition-id={i} num-partitions={n_clients} data={json.dumps(data)}"
            spawn(
                [
                    exe("flower-supernode"),
                    "--insecure",  # TLS: --root-certificates CA (the SuperLink's CA cert)
                    "--superlink",
                    f"127.0.0.1:{target}",
                    "--port",
                    str(runtime_ports[i]),
                    "--node-config",
                    node_config,
                ],
                f"supernode{i}",
            )
        cmd = [exe("flwr"), "run", str(APP_DIR), "fmtl-loopback", "--run-config", str(run_cfg)]
        cmd.append("--stream")
        left = timeout - (time.monotonic() - t_start)
        t_run = time.monotonic()
        flwr_run = spawn(cmd, "flwr_run")
        end = time.monotonic() + max(1.0, left)
        _wait_for_run(flwr_run, work / "flwr_run.log", progress, end, timeout, work, 0.2)
        run_time = time.monotonic() - t_run
        if not (out_dir / "run.json").exists():
            raise RuntimeError(
                f"the ServerApp wrote no output (exit {flwr_run.returncode}); logs in {work}"
            )
    finally:
        pids = run.stop()
    return _loopback_result(out_dir, work, workdir, t_start, run_time, pids, proxies, count_bytes)


class _LoopbackProcesses:
    """The processes of a loopback run, each logging to ``work/<name>.log``, and its
    byte-counting proxies; :meth:`stop` ends them all and returns the processes' pids."""

    def __init__(self, work: Path, env: dict, verbose: bool) -> None:
        self.work, self.env, self.verbose = work, env, verbose
        self.procs: list = []
        self.proxies: list[_CountingProxy] = []
        self.logs: list = []

    def spawn(self, cmd: list[str], name: str):
        import subprocess

        f = open(self.work / f"{name}.log", "wb")  # noqa: SIM115
        self.logs.append(f)
        if self.verbose:
            print("$", " ".join(cmd), flush=True)
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=self.env, cwd=self.work)
        self.procs.append(p)
        return p

    def stop(self) -> list[int]:
        pids = _stop_all(self.procs)
        for px in self.proxies:
            px.close()
        for f in self.logs:
            f.close()
        return pids


def _wait_for_run(proc, log: Path, progress, deadline: float, timeout, work, poll: float):
    """Wait for the process that runs the federation, passing its log's new progress
    lines on; TimeoutError past ``deadline``."""
    follow = _LogFollower(log, progress)
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the Flower run did not finish within {timeout:.0f} s (logs in {work})"
            )
        follow.poll()
        time.sleep(poll)
    follow.poll()


def _loopback_result(
    out_dir, work, workdir, t_start, run_time, pids, proxies, count_bytes
) -> dict:
    """A loopback run's result from what the server wrote to ``out_dir`` (and the work
    directory removed unless the caller named it)."""
    from ..federated.history import History

    with np.load(out_dir / "model.npz") as model:
        coef = model["coef"]
        sigma = model["sigma"] if "sigma" in model else None
    history = History()
    for r in json.loads((out_dir / "history.json").read_text()):
        history.append(**{k: np.asarray(v) if isinstance(v, list) else v for k, v in r.items()})
    result = {
        "coef": coef,
        "sigma": sigma,
        "history": history,
        "wire": json.loads((out_dir / "wire.json").read_text()),
        "run": json.loads((out_dir / "run.json").read_text()),
        "elapsed": time.monotonic() - t_start,
        "run_time": run_time,
        "workdir": work if workdir is not None else None,
        "pids": pids,
    }
    if count_bytes:
        result["socket_bytes"] = [{"up": px.up, "down": px.down} for px in proxies]
    if workdir is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return result
