"""pFedHN (Shamsian et al., ICML 2021) with a linear or a kernel (random-feature) hypernetwork.

The server holds the hypernetwork ``Phi`` and one embedding ``v_t`` (``k`` numbers) per
client, and maps an embedding to the client's linear model

- ``hypernetwork="linear"``: ``w_t = Phi v_t`` (``Phi`` is d x k);
- ``hypernetwork="rff"``: ``w_t = Phi psi(v_t)`` (``Phi`` is d x D) with the fixed
  random-Fourier-feature map ``psi(v) = sqrt(2/D) cos(Omega v + b)``, ``Omega ~ N(0, 2
  gamma I)`` (D x k) and ``b ~ U[0, 2 pi]`` (D), so that ``psi(v).psi(v') ~ exp(-gamma
  ||v - v'||^2)``: the hypernetwork is a kernel (RBF) machine in embedding space and ``w_t``
  can depend non-linearly on the embedding (see :func:`hypernetwork_features`).

Round: client ``t`` receives ``w_t``, takes ``local_steps`` full-batch gradient steps of size
``lr`` on ``F_t(w) = mean_i l(y_ti, w.x_ti) + (lam/2) ||w||^2`` and returns ``dw_t = w_t' -
w_t``; the server applies the chain rule with ``-dw_t`` as the gradient with respect to
``w_t``, both updates with the round's ``Phi``::

    Phi += eta sum_t p_t dw_t psi(v_t)^T        v_t += eta J_psi(v_t)^T Phi^T dw_t

(``psi`` the identity for the linear hypernetwork). With one local step this is exactly
gradient descent (step ``lr eta``) on ``sum_t p_t F_t(Phi psi(v_t))`` in ``Phi`` and on
``F_t(Phi psi(v_t))`` in ``v_t`` (tested by finite differences). Under a systems model
only the nodes that report move the server: ``p_t`` is renormalised over them and only
their embeddings change. A new client is fitted by learning only its embedding
(:func:`fit_new_embedding`), with ``Phi`` and ``psi`` fixed. Squared and logistic losses;
kernels of the *inputs* through an explicit feature map of ``X`` (``Nystroem``,
``RBFSampler``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .._random import rng_from
from ..losses import get_loss
from ._loop import as_tasks, check_frac, check_lam, check_positive_int
from ._rounds import RoundLoop
from .history import History
from .perfedavg import _grad, _value
from .systems import SystemsModel

HYPERNETWORKS = ("linear", "rff")


@dataclass
class PFedHNResult:
    """What :func:`pfedhn` returns.

    The fields are also the constructor's parameters (a plain dataclass).

    Parameters
    ----------
    coef : ndarray of shape (n_tasks, n_features)
        ``w_t = Phi psi(v_t)``.
    hypernetwork : ndarray of shape (n_features, k) or (n_features, n_components)
        ``Phi``.
    embeddings : ndarray of shape (n_tasks, k)
        The ``v_t``.
    history : History
        ``primal``: ``sum_t p_t F_t(w_t)`` per recorded round, with the systems columns
        (``est_time``, ``dropped``, ...).
    feature_map : tuple of ndarray (omega, b) or None, default=None
        The random-Fourier-feature map of the ``"rff"`` hypernetwork (``omega`` of shape
        (n_components, k), ``b`` of shape (n_components,)); ``None`` for ``"linear"``.
        Pass it to :func:`hypernetwork_features` and :func:`fit_new_embedding`.
    never_reported : ndarray of int, default=empty
        Nodes that never reported a round (their embeddings stayed at the initial ones).
    personalization_time : float, default=0.0
        Estimated time of the local phase after the last round that makes the personal
        models (none: ``w_t = Phi psi(v_t)`` is computed by the server, so 0;
        :func:`fmtl.federated.systems.local_phase_time`): add it to
        ``history["est_time"][-1]`` for the time the personal models cost.

    Raises
    ------
    TypeError
        If a field other than ``feature_map`` or ``never_reported`` is missing (dataclass
        constructor).

    See Also
    --------
    pfedhn : Produces it.

    Examples
    --------
    >>> import numpy as np
    >>> from fmtl.federated import pfedhn
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(20, 3)) for _ in range(2)]
    >>> ys = [X @ rng.normal(size=3) for X in Xs]
    >>> res = pfedhn(Xs, ys, lam=0.01, embedding_dim=2, rounds=5, random_state=0)
    >>> res.coef.shape, res.hypernetwork.shape, res.embeddings.shape, len(res.history)
    ((2, 3), (3, 2), (2, 2), 5)
    >>> res.feature_map is None, bool(np.allclose(res.coef, res.embeddings @ res.hypernetwork.T))
    (True, True)
    """

    coef: np.ndarray
    hypernetwork: np.ndarray
    embeddings: np.ndarray
    history: History
    feature_map: tuple[np.ndarray, np.ndarray] | None = None
    never_reported: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    personalization_time: float = 0.0


def _check_feature_map(omega, b, k: int | None = None):
    """Validated float arrays ``(omega, b)`` (or ``(None, None)``: the identity map)."""
    if omega is None and b is None:
        return None, None
    if omega is None or b is None:
        raise ValueError("feature_map needs both omega and b (or neither)")
    omega = np.asarray(omega, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if omega.ndim != 2 or b.shape != (omega.shape[0],):
        raise ValueError(
            f"feature_map: omega must have shape (n_components, k) and b (n_components,), "
            f"got {omega.shape} and {b.shape}"
        )
    if k is not None and omega.shape[1] != k:
        raise ValueError(f"feature_map: omega has {omega.shape[1]} columns, embeddings {k}")
    return omega, b


def hypernetwork_features(V, omega=None, b=None) -> np.ndarray:
    """The hypernetwork's features ``psi(v)`` of embeddings (the model is ``Phi psi(v)``).

    The random-Fourier-feature map of the ``"rff"`` hypernetwork, or the identity for the
    linear one.

    Parameters
    ----------
    V : array-like of shape (k,) or (n, k)
        Embeddings.
    omega : ndarray of shape (n_components, k) or None
        Frequencies of the random-Fourier-feature map.
    b : ndarray of shape (n_components,) or None
        The random-Fourier-feature map (``PFedHNResult.feature_map``); both ``None``: the
        identity (linear hypernetwork).

    Returns
    -------
    ndarray of shape (n_components,) or (n, n_components)
        ``sqrt(2 / n_components) cos(V omega^T + b)`` (``V`` itself for the identity), so
        ``psi(v).psi(v')`` approximates the RBF kernel ``exp(-gamma ||v - v'||^2)`` when
        ``omega ~ N(0, 2 gamma I)`` and ``b ~ U[0, 2 pi]``.

    Raises
    ------
    ValueError
        If exactly one of ``omega`` and ``b`` is None; if ``omega`` is not 2-D or ``b``
        not of shape ``(n_components,)``; if ``omega`` has not ``k`` (``V.shape[-1]``)
        columns; or (from numpy) if ``V``, ``omega`` or ``b`` is not numeric (``could not
        convert string to float``).
    IndexError
        From numpy, for a scalar (0-d) ``V`` (``V.shape[-1]``), with or without a
        feature map.

    See Also
    --------
    pfedhn : Fits the hypernetwork and returns the feature map.
    fit_new_embedding : Embeds a new client through the same map.

    Notes
    -----
    Not checked: NaN or inf in ``V``, ``omega`` or ``b`` (they propagate), and the
    dimension of ``V`` (an array with more than two dimensions is mapped along its last
    axis; with the identity map ``V`` is returned as a float array of any shape).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> gamma, D = 0.5, 20000
    >>> omega = rng.normal(scale=np.sqrt(2 * gamma), size=(D, 2))
    >>> b = rng.uniform(0, 2 * np.pi, size=D)
    >>> P = hypernetwork_features([[0.0, 0.0], [1.0, 0.0]], omega, b)
    >>> bool(abs(P[0] @ P[1] - np.exp(-gamma * 1.0**2)) < 0.02)  # the RBF kernel, approx.
    True
    >>> hypernetwork_features([1.0, 2.0]).tolist()  # linear: the identity
    [1.0, 2.0]
    """
    V = np.asarray(V, dtype=np.float64)
    omega, b = _check_feature_map(omega, b, V.shape[-1])
    if omega is None:
        return V
    return np.sqrt(2.0 / omega.shape[0]) * np.cos(V @ omega.T + b)


def _features_vjp(V: np.ndarray, G: np.ndarray, omega, b) -> np.ndarray:
    """Rows ``J_psi(v_t)^T g_t`` for ``V`` (n, k) and ``G`` (n, D)."""
    if omega is None:
        return G
    S = np.sin(V @ omega.T + b)
    return -np.sqrt(2.0 / omega.shape[0]) * (S * G) @ omega


def pfedhn(
    Xs,
    ys,
    lam: float,
    loss="squared",
    *,
    embedding_dim: int = 2,
    hypernetwork: str = "linear",
    n_components: int = 100,
    kernel_gamma: float = 1.0,
    rounds: int = 200,
    local_steps: int = 1,
    lr: float = 0.5,
    eta: float = 1.0,
    systems: SystemsModel | None = None,
    random_state=None,
    eval_every: int = 1,
    callback=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    resume: bool = True,
) -> PFedHNResult:
    """Fit pFedHN with a linear or random-Fourier-feature (kernel) hypernetwork.

    The server learns the hypernetwork ``Phi`` and one embedding per client by the chain
    rule through the clients' local gradient steps (see the module docstring).

    Parameters
    ----------
    Xs, ys : lists of per-task arrays
        Per-task design matrices (dense or sparse) and targets (labels in {-1, +1} for the
        logistic loss).
    lam : float
        L2 weight of each client's objective ``F_t``.
    loss : {"squared", "logistic"}, default="squared"
    embedding_dim : int, default=2
        ``k``, the size of each client's embedding.
    hypernetwork : {"linear", "rff"}, default="linear"
        ``w_t = Phi v_t`` or ``w_t = Phi psi(v_t)`` with ``psi`` a fixed random-Fourier-feature
        map of the embedding (an RBF-kernel hypernetwork; see the module docstring).
    n_components : int, default=100
        ``D``, the number of random features of ``"rff"`` (validated, unused by
        ``"linear"``).
    kernel_gamma : float, default=1.0
        RBF width ``gamma`` of ``"rff"``: ``psi(v).psi(v') ~ exp(-gamma ||v - v'||^2)``.
    rounds, local_steps : int
        ``local_steps`` full-batch gradient steps per client and round at full speed
        (fewer, at least one, under a heterogeneous systems model).
    lr : float, default=0.5
        Clients' local step size.
    eta : float, default=1.0
        Server step size on ``Phi`` and the embeddings.
    systems : SystemsModel, optional
        Heterogeneous local work, drops and the cost model (a local step costs ``4`` per
        sample, so a round's flops factor is ``4 * local_steps``), as for every fmtl
        method. Only the nodes that report enter the server step; a node whose update is
        not finite counts as failed and is dropped for the round.
    random_state : int, Generator or None
        Seeds, through one Generator and in this order, the initial ``Phi`` and embeddings
        (small Gaussians), the random features (``"rff"``) and the systems model's draws.
    eval_every : int, default=1
        Write a History record every ``eval_every`` rounds (and after the last).
    callback : callable, optional
        Called with each History record.
    checkpoint_dir, checkpoint_every, resume
        Checkpoint / resume, as :func:`fmtl.federated.fedavg.fedavg` (the checkpoint holds
        the hypernetwork, the embeddings and the random features).

    Returns
    -------
    PFedHNResult
        Client models, hypernetwork, embeddings, feature map and History.

    Raises
    ------
    ValueError
        For invalid data or parameters (named): a ``loss`` other than ``"squared"`` or
        ``"logistic"``; ``lam`` not positive and finite; ``embedding_dim``,
        ``n_components``, ``rounds``, ``local_steps`` or ``eval_every`` not an integer >=
        1; ``hypernetwork`` not ``"linear"`` or ``"rff"``; ``kernel_gamma``, ``lr`` or
        ``eta`` not positive and finite; invalid data (no tasks, mismatched lengths,
        non-2-D or non-finite arrays, labels not in {-1, +1} for the logistic loss); a
        ``systems`` model that does not fit the tasks (``drop_prob`` length,
        ``dead_nodes``); a negative
        ``checkpoint_every`` or one without ``checkpoint_dir``; or an unreadable checkpoint
        or one of another problem.
    TypeError
        For non-numeric data, ``ys`` None, or a ``systems`` that is not a
        :class:`SystemsModel`.
    RuntimeError
        If a node fails its update more than ``systems.max_failures`` times.

    Warns
    -----
    RuntimeWarning
        If some node never reported (e.g. a dead node of the systems model).

    See Also
    --------
    PFedHNResult : The result.
    fit_new_embedding : Embeds an unseen client with the fitted hypernetwork.
    hypernetwork_features : The embedding feature map ``psi``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Xs = [rng.normal(size=(30, 4)) for _ in range(5)]
    >>> ys = [X @ rng.normal(size=4) for X in Xs]
    >>> res = pfedhn(Xs, ys, lam=0.01, embedding_dim=3, rounds=100, random_state=0)
    >>> bool(res.history["primal"][-1] < res.history["primal"][0])
    True

    The kernel hypernetwork returns its feature map for new clients:

    >>> res = pfedhn(Xs, ys, lam=0.01, embedding_dim=1, hypernetwork="rff",
    ...              n_components=50, rounds=100, lr=0.2, random_state=0)
    >>> res.hypernetwork.shape, res.embeddings.shape, res.feature_map[0].shape
    ((4, 50), (5, 1), (50, 1))
    >>> bool(res.history["primal"][-1] < res.history["primal"][0])
    True
    """
    loss = get_loss(loss)
    if loss.name not in ("squared", "logistic"):
        raise ValueError(f"loss must be 'squared' or 'logistic', got {loss.name!r}")
    lam = check_lam(lam)
    k = check_positive_int("embedding_dim", embedding_dim)
    if not isinstance(hypernetwork, str) or hypernetwork not in HYPERNETWORKS:
        raise ValueError(f"hypernetwork must be one of {HYPERNETWORKS}, got {hypernetwork!r}")
    n_components = check_positive_int("n_components", n_components)
    kernel_gamma = check_frac("kernel_gamma", kernel_gamma)
    rounds = check_positive_int("rounds", rounds)
    local_steps = check_positive_int("local_steps", local_steps)
    lr = check_frac("lr", lr)
    eta = check_frac("eta", eta)
    tasks = as_tasks(Xs, ys, loss)
    m, d = tasks.n_tasks, tasks.n_features
    ys = [np.asarray(y, dtype=np.float64) for y in ys]
    n = tasks.n_samples.astype(np.float64)
    p = n / n.sum()
    rng = rng_from(random_state)
    rff = hypernetwork == "rff"
    Phi = rng.normal(scale=0.1, size=(d, n_components if rff else k))
    V = rng.normal(scale=0.1, size=(m, k))
    omega = b = None
    if rff:
        omega = rng.normal(scale=np.sqrt(2.0 * kernel_gamma), size=(n_components, k))
        b = rng.uniform(0.0, 2.0 * np.pi, size=n_components)
    Psi = hypernetwork_features(V, omega, b)
    loop = RoundLoop(tasks.n_samples, systems, 4.0 * local_steps, rng, eval_every, callback)

    def client(t, steps_t, h):
        X, y = Xs[t], ys[t]
        w = Phi @ Psi[t]
        v = w.copy()
        for _ in range(loop.local_steps(t, steps_t, local_steps)):
            v = v - lr * _grad(X, y, v, loss, lam)
        return v - w

    def server(dW, ok, h):
        q = p if ok.all() else loop.weights(p, ok)
        dW = np.where(ok[:, None], dW, 0.0)  # silent nodes move nothing
        # chain rule through w_t = Phi psi(v_t), both with the round's Phi; in place (the
        # checkpoint's state)
        Phi[...], V[...] = (
            Phi + eta * (dW * q[:, None]).T @ Psi,
            V + eta * _features_vjp(V, dW @ Phi, omega, b),
        )
        Psi[...] = hypernetwork_features(V, omega, b)

    def evaluate():
        W = Psi @ Phi.T
        primal = sum(
            pt * _value(X, y, w, loss, lam) for pt, X, y, w in zip(p, Xs, ys, W, strict=True)
        )
        return {"primal": float(primal)}

    def state():
        # the random features too: with random_state=None a restart draws other ones
        return {"Phi": Phi, "V": V, "Psi": Psi, **({"omega": omega, "b": b} if rff else {})}

    loop.checkpoint(
        checkpoint_dir,
        checkpoint_every,
        resume,
        tasks,
        "pfedhn",
        random_state,
        lam=lam,
        loss=[loss.name, loss.param],
        embedding_dim=k,
        hypernetwork=hypernetwork,
        n_components=n_components if rff else None,
        kernel_gamma=kernel_gamma if rff else None,
        rounds=rounds,
        local_steps=local_steps,
        lr=lr,
        eta=eta,
        systems=systems,
        eval_every=eval_every,
    )
    loop.run(rounds, client, server, evaluate, state=state)
    silent = loop.finish()
    return PFedHNResult(
        coef=Psi @ Phi.T,
        hypernetwork=Phi,
        embeddings=V,
        history=loop.history,
        feature_map=None if omega is None else (omega, b),
        never_reported=silent,
    )


def fit_new_embedding(
    X,
    y,
    Phi: np.ndarray,
    lam: float,
    loss="squared",
    *,
    feature_map=None,
    init=None,
    rounds: int = 500,
    lr: float = 0.5,
) -> np.ndarray:
    """Embedding ``v`` of an unseen client, ``Phi`` (and ``psi``) fixed.

    Gradient descent on ``F(Phi psi(v))`` through the same client update (``dw = -lr grad
    F(w)``) and chain rule ``v += J_psi(v)^T Phi^T dw`` as in :func:`pfedhn`; a step that
    would increase the objective is retried with half the step size (for good: the kernel
    hypernetwork's objective is not convex in ``v``, and this keeps the descent monotone).

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
        The new client's data.
    y : array-like of shape (n_samples,)
        Targets (``{-1, +1}`` for the logistic loss).
    Phi : ndarray of shape (n_features, k) or (n_features, n_components)
        The fitted hypernetwork (``PFedHNResult.hypernetwork``).
    lam : float
        L2 weight of the client's objective.
    loss : {"squared", "logistic"}, default="squared"
    feature_map : tuple (omega, b) or None, default=None
        ``PFedHNResult.feature_map``: ``None`` for the linear hypernetwork.
    init : ndarray of shape (k,) or (n_starts, k), optional
        Starting embedding(s); with several, the one with the lowest objective is used
        (e.g. the fitted embeddings of the training clients, a good start for the non-convex
        kernel case). Default: zeros.
    rounds : int, default=500
        Gradient steps on ``v`` (fewer if no step decreases the objective).
    lr : float, default=0.5
        Initial step size (halved whenever a step would increase the objective).

    Returns
    -------
    ndarray of shape (k,)
        The model of the new client is ``Phi @ hypernetwork_features(v, *feature_map)``.

    Raises
    ------
    ValueError
        For a ``loss`` other than ``"squared"`` or ``"logistic"``; ``lam`` or ``lr`` not
        positive and finite; ``rounds`` not an integer >= 1; ``X`` not 2-D with one row
        per ``y``; ``Phi`` not of shape ``(n_features, k)``; a ``feature_map`` that is not
        a pair, has only one of ``omega`` and ``b``, has bad shapes or does not match
        ``Phi``'s columns; an ``init`` not of shape ``(k,)`` or ``(n_starts, k)``; or (from
        numpy) non-numeric ``X``, ``y``, ``Phi`` or ``init``. NaN in the inputs and the
        labels of the logistic loss are not checked.
    TypeError
        For a ``feature_map`` without a length (``len(feature_map)``).

    See Also
    --------
    pfedhn : Fits ``Phi`` and the feature map.
    hypernetwork_features : Maps the returned ``v`` to ``psi(v)``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> B = rng.normal(size=(4, 2))
    >>> Xs = [rng.normal(size=(40, 4)) / 2 for _ in range(9)]
    >>> ys = [X @ B @ rng.normal(size=2) for X in Xs]
    >>> res = pfedhn(Xs[:8], ys[:8], 1e-4, rounds=1000, random_state=0)
    >>> v = fit_new_embedding(Xs[8], ys[8], res.hypernetwork, 1e-4)
    >>> bool(np.mean((Xs[8] @ res.hypernetwork @ v - ys[8]) ** 2) < 1e-2 * np.var(ys[8]))
    True
    """
    loss = get_loss(loss)
    if loss.name not in ("squared", "logistic"):
        raise ValueError(f"loss must be 'squared' or 'logistic', got {loss.name!r}")
    lam = check_lam(lam)
    rounds = check_positive_int("rounds", rounds)
    lr = check_frac("lr", lr)
    Phi = np.asarray(Phi, dtype=np.float64)
    if not sp.issparse(X):
        X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be 2-D with one row per y, got {X.shape} and {y.shape}")
    if Phi.ndim != 2 or Phi.shape[0] != X.shape[1]:
        raise ValueError(f"Phi must have shape ({X.shape[1]}, k), got {Phi.shape}")
    if feature_map is None:
        omega = b = None
        k = Phi.shape[1]
    else:
        if len(feature_map) != 2:
            raise ValueError("feature_map must be a pair (omega, b) or None")
        omega, b = _check_feature_map(*feature_map)
        k = omega.shape[1]
        if omega.shape[0] != Phi.shape[1]:
            raise ValueError(
                f"feature_map has {omega.shape[0]} components but Phi has {Phi.shape[1]} columns"
            )

    def objective(v):
        return _value(X, y, Phi @ hypernetwork_features(v, omega, b), loss, lam)

    if init is None:
        v = np.zeros(k)
    else:
        starts = np.atleast_2d(np.asarray(init, dtype=np.float64))
        if starts.ndim != 2 or starts.shape[1] != k or starts.shape[0] == 0:
            raise ValueError(f"init must have shape ({k},) or (n_starts, {k}), got {starts.shape}")
        v = starts[int(np.argmin([objective(s) for s in starts]))].copy()
    f = objective(v)
    step = lr
    for _ in range(rounds):
        psi = hypernetwork_features(v, omega, b)
        dw = -step * _grad(X, y, Phi @ psi, loss, lam)
        cand = v + _features_vjp(v[None], (Phi.T @ dw)[None], omega, b)[0]
        fc = objective(cand)
        while not fc <= f and step > lr * 2.0**-30:
            step /= 2.0
            cand = v + 0.5 * (cand - v)
            fc = objective(cand)
        if not fc <= f:
            break
        v, f = cand, fc
    return v
