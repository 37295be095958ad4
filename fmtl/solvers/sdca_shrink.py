"""Local SDCA to a certified gap: shrinking (active-set) passes and cheap certificates.

The same local subproblem as :mod:`fmtl.solvers.sdca` (DESIGN.md section 2): task ``t``
maximises over its dual block

    -(1/n) sum_i l*(-a_i) - db . w_t - (kappa / 2) ||db||^2,   kappa = rho Sigma_tt / lam,

with ``v = w_t + kappa db`` and coordinate curvature ``q_i = kappa ||x_i||^2 / n``. This
kernel is selected by :func:`fmtl.solvers.sdca.sdca_round` with ``shrink=True``, a
``gap_target`` or a ``gap_rtol``; without them the original kernel runs unchanged.

What it does differently (DESIGN.md section 8):

* **Shrinking** (box losses: hinge, smoothed hinge, ``b_i = a_i y_i`` in [0, 1]), as in
  liblinear's dual coordinate descent (Hsieh et al., 2008). With ``G_i = y_i x_i.v - 1 +
  gamma b_i`` (the gradient of the minimisation form; ``gamma = 0`` for the hinge), a
  coordinate at ``b_i = 0`` with ``G_i > M`` or at ``b_i = 1`` with ``G_i < m`` leaves the
  active set, ``M``/``m`` being the previous pass's largest/smallest projected gradient
  (infinite after a certification that found none of that sign). Each pass shuffles the
  active prefix with the task's SplitMix64 stream.
* **Certification pass**: a read-only pass over *all* rows of the task computing ``x_i.v``
  once each; it gives the exact local Fenchel gap ``mean_i l(x_i.v) + l*(-a_i) + a_i
  x_i.v``, the mean loss at ``v`` and the mean ``-l*(-a_i)``, and (box losses) every
  projected gradient, from which the active set is rebuilt with the rule above (so,
  unlike liblinear, no unshrunk full update pass follows). The task stops only when a
  certified gap is at most ``max(theta g0, gap_target[t], gap_rtol P_t)`` with ``P_t =
  mean_i l(x_i.v) + ||v||^2 / (2 kappa)`` (for one task with ``Sigma = [[1]]``, ``rho = 1``
  this is the primal objective at ``w = v``, so ``gap_rtol`` is a relative duality gap).
* **When to certify** (a pass ends): (a) the running estimate predicts the target: each
  visit records the row's Fenchel-Young term *as found* (before its step; after an exact
  step it would be 0), so the sum trails the gap by about a pass (summed per pass in
  scalars; without shrinking the logistic loss samples every 4th visit); the prediction is
  the estimate times its own decrease over the last pass, times a bias measured at each
  certification (1.5 before any); (b) box losses with shrinking: the pass's
  projected-gradient spread ``M - m`` is below ``eps`` (liblinear's "active set looks
  converged"; ``eps`` starts at ``SHRINK_EPS0`` and after a failed certification shrinks
  in proportion to how far the gap is from its target); (c) a fallback after ``16 n``
  update visits without one (doubling). A certification only ever stops the task on its
  exact gap, so a bad prediction costs time, never correctness.
* **No shrinking** (squared, logistic, ``shrink=False`` or ``feedback=False``): full passes,
  each with a fresh permutation; the logistic step is Newton in the log-odds
  (:func:`fmtl.losses.logistic.sdca_delta_logodds`, a few ``exp`` and no ``log`` per step).
* **Hot loop**: the dot product uses eight accumulators in a fixed order (column ``j``
  into accumulator ``j mod 8``, dense and CSR alike, so both layouts give the same bits),
  which lets LLVM vectorise it without ``fastmath``; the row two ahead in the
  permutation is prefetched (``llvm.prefetch``, a hint: random row order, not arithmetic,
  was most of a pass); only ``v`` is updated per step
  (``db`` is recomputed exactly from the change in ``a`` at the end, one axpy per changed
  row), and there is no per-step check. With ``feedback=False`` ``v`` stays at ``w_t``
  and ``db`` is accumulated instead.

Work: ``steps_done[t]`` counts coordinate visits, of update passes and of certification
passes alike, and never exceeds ``steps[t]``: a certification runs only if its ``n``
visits fit in the budget. The starting and final gaps of ``record_gaps`` (and the
starting gap that ``theta > 0`` needs) are not counted, as in the original kernel.
Everything is deterministic: results depend only on the inputs and ``seeds``, not on the
number of threads or the layout.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..losses import logistic
from ..losses._dispatch import loss_neg_conjugate, loss_sdca_delta, loss_value
from .sdca import _shuffle_prefix

#: The packed data (``PackedTasks.kernel_args`` in order).
KernelData = namedtuple(
    "KernelData", ["Xd", "data", "indices", "indptr", "sparse", "y", "sqnorm", "offsets"]
)

#: Per-task arrays of one round: inputs, state updated in place and outputs.
RoundArrays = namedtuple(
    "RoundArrays",
    [
        "alpha",  # (N,) duals, updated in place
        "Wt",  # (m, d) current models
        "sigma_diag",  # (m,)
        "steps",  # (m,) int64 budget in coordinate visits
        "seeds",  # (m,) uint64
        "active",  # (m,) bool
        "gap_target",  # (m,) absolute certified-gap targets (-inf: none)
        "dB",  # (m, d) out: db_t
        "steps_done",  # (m,) int64 out
        "gap_start",  # (m,) out
        "gap_end",  # (m,) out
        "loss_mean",  # (m,) out: mean l(x_i.v) at the end (NaN if not evaluated)
        "neg_conj_mean",  # (m,) out: mean -l*(-a_i) at the end (NaN if not evaluated)
        "stats",  # (m, 4) int64 out: update visits, certifications, passes, active size
    ],
)

#: Scalars of one round.
RoundOptions = namedtuple(
    "RoundOptions",
    [
        "rho",  # float
        "lam",  # float
        "code",  # int64 loss code
        "param",  # float loss parameter
        "theta",  # float relative local-gap stop (0: none)
        "feedback",  # bool
        "record_gaps",  # bool
        "shrink",  # bool: shrink box losses
        "gap_rtol",  # float (0: none)
        "eps0",  # float: first projected-gradient spread that triggers a certification
    ],
)

#: Without shrinking, the logistic loss's running gap estimate takes every 4th visit.
LOGISTIC_TERM_STRIDE = 4

#: Rows ahead of the current one to prefetch (2 measured best of 1-8 on 20,000 x 300).
PREFETCH_DISTANCE = 2

_NAN = np.nan
_INF = np.inf


def _emit_prefetch(context, builder, aty, arr, idx):
    # llvm.prefetch(address of arr[idx], read, high locality, data cache)
    a = context.make_array(aty)(context, builder, arr)
    ptr = cgutils.get_item_pointer(context, builder, aty, a, idx, wraparound=False)
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
    return context.get_dummy_value()


@intrinsic
def _prefetch1(typingctx, arr, i):
    # a hint: no effect on results
    def codegen(context, builder, sig, args):
        return _emit_prefetch(context, builder, sig.args[0], args[0], [args[1]])

    return types.void(arr, i), codegen


@intrinsic
def _prefetch2(typingctx, arr, i, j):
    def codegen(context, builder, sig, args):
        return _emit_prefetch(context, builder, sig.args[0], args[0], [args[1], args[2]])

    return types.void(arr, i, j), codegen


@njit(cache=True, fastmath=False)
def _prefetch_row(D, i):
    # bring row i into cache ahead of its use: the rows are visited in random order, and
    # measured on 20,000 x 300 a pass spent most of its time waiting for them
    if D.sparse:
        lo = D.indptr[i]
        hi = D.indptr[i + 1]
        for p in range(lo, hi, 8):
            _prefetch1(D.data, p)
        for p in range(lo, hi, 8):
            _prefetch1(D.indices, p)
    else:
        for j in range(0, D.Xd.shape[1], 8):
            _prefetch2(D.Xd, i, j)


@njit(cache=True, fastmath=False)
def _dot_dense(Xd, i, v):
    # column j into accumulator j % 8, combined in a fixed tree: vectorisable, and equal
    # bit for bit to _dot_csr on the same row (skipped zeros add exact zeros)
    d = Xd.shape[1]
    d8 = d - d % 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for j in range(0, d8, 8):
        s0 += Xd[i, j] * v[j]
        s1 += Xd[i, j + 1] * v[j + 1]
        s2 += Xd[i, j + 2] * v[j + 2]
        s3 += Xd[i, j + 3] * v[j + 3]
        s4 += Xd[i, j + 4] * v[j + 4]
        s5 += Xd[i, j + 5] * v[j + 5]
        s6 += Xd[i, j + 6] * v[j + 6]
        s7 += Xd[i, j + 7] * v[j + 7]
    r = d - d8
    if r > 0:
        s0 += Xd[i, d8] * v[d8]
    if r > 1:
        s1 += Xd[i, d8 + 1] * v[d8 + 1]
    if r > 2:
        s2 += Xd[i, d8 + 2] * v[d8 + 2]
    if r > 3:
        s3 += Xd[i, d8 + 3] * v[d8 + 3]
    if r > 4:
        s4 += Xd[i, d8 + 4] * v[d8 + 4]
    if r > 5:
        s5 += Xd[i, d8 + 5] * v[d8 + 5]
    if r > 6:
        s6 += Xd[i, d8 + 6] * v[d8 + 6]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(cache=True, fastmath=False)
def _dot_csr(data, indices, indptr, i, v, acc):
    for k in range(8):
        acc[k] = 0.0
    for p in range(indptr[i], indptr[i + 1]):
        j = indices[p]
        acc[j & 7] += data[p] * v[j]
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


@njit(cache=True, fastmath=False)
def _dot(D, i, v, acc):
    if D.sparse:
        return _dot_csr(D.data, D.indices, D.indptr, i, v, acc)
    return _dot_dense(D.Xd, i, v)


@njit(cache=True, fastmath=False)
def _axpy(D, i, c, out):
    # out += c x_i
    if D.sparse:
        for p in range(D.indptr[i], D.indptr[i + 1]):
            out[D.indices[p]] += c * D.data[p]
    else:
        Xd = D.Xd
        for j in range(Xd.shape[1]):
            out[j] += c * Xd[i, j]


@njit(cache=True, fastmath=False)
def _certify(D, start, n, alpha, v, code, param, box, G, acc, out3, track, gterm, lterm, est):
    # read-only pass over all rows: out3 = (gap, mean loss, mean -l*(-a)); for box losses
    # G[k] = y x.v - 1 + gamma b (row start + k) and the return value is the spread
    # (M, m) of the projected gradients; with track, the per-row gap and loss terms and
    # their sums (est) are reset to these exact values
    y = D.y
    gamma = param if code == 1 else 0.0
    s_gap = 0.0
    s_loss = 0.0
    s_conj = 0.0
    pg_max = -_INF
    pg_min = _INF
    for k in range(n):
        i = start + k
        z = _dot(D, i, v, acc)
        lv = loss_value(code, y[i], z, param)
        cv = loss_neg_conjugate(code, y[i], alpha[i], param)
        s_loss += lv
        s_conj += cv
        gt = lv - cv + alpha[i] * z
        s_gap += gt
        if track:
            gterm[k] = gt
            lterm[k] = lv
        if box:
            b = alpha[i] * y[i]
            g = y[i] * z - 1.0 + gamma * b
            G[k] = g
            pg = g
            if b <= 0.0:
                pg = g if g < 0.0 else 0.0
            elif b >= 1.0:
                pg = g if g > 0.0 else 0.0
            if pg > pg_max:
                pg_max = pg
            if pg < pg_min:
                pg_min = pg
    out3[0] = s_gap / n
    out3[1] = s_loss / n
    out3[2] = s_conj / n
    est[0] = s_gap
    est[1] = s_loss
    return pg_max, pg_min


@njit(cache=True, fastmath=False)
def _terms(code, y, a, z, param):
    # a row's (Fenchel-Young gap term, loss) at its current (a, x.v)
    lv = loss_value(code, y, z, param)
    return lv - loss_neg_conjugate(code, y, a, param) + a * z, lv


@njit(cache=True, fastmath=False)
def _target(t, R, O, g0, loss_mean, v, kappa):
    tgt = -_INF
    if O.theta > 0.0:
        tgt = O.theta * g0
    if R.gap_target[t] > tgt:
        tgt = R.gap_target[t]
    if O.gap_rtol > 0.0:
        vv = 0.0
        for j in range(v.shape[0]):
            vv += v[j] * v[j]
        p_est = loss_mean + vv / (2.0 * kappa)
        if O.gap_rtol * p_est > tgt:
            tgt = O.gap_rtol * p_est
    return tgt


@njit(cache=True, fastmath=False)
def _shrink_task(t, D, R, O):
    d = R.Wt.shape[1]
    dbt = R.dB[t]
    for j in range(d):
        dbt[j] = 0.0
    R.steps_done[t] = 0
    R.gap_start[t] = _NAN
    R.gap_end[t] = _NAN
    R.loss_mean[t] = _NAN
    R.neg_conj_mean[t] = _NAN
    for c in range(4):
        R.stats[t, c] = 0
    start = D.offsets[t]
    n = D.offsets[t + 1] - start
    if n == 0 or not R.active[t]:
        return
    y = D.y
    alpha = R.alpha
    code = O.code
    param = O.param
    kappa = O.rho * R.sigma_diag[t] / O.lam
    feedback = O.feedback
    box = code == 0 or code == 1
    shrinking = O.shrink and box and feedback
    gamma = param if code == 1 else 0.0
    v = R.Wt[t].copy()
    a0 = alpha[start : start + n].copy()
    acc = np.zeros(8)
    G = np.empty(n if box else 0)
    out3 = np.empty(3)
    budget = R.steps[t]
    stop_on_gap = O.theta > 0.0 or R.gap_target[t] > -_INF or O.gap_rtol > 0.0
    inv_n = 1.0 / n
    # running estimate of the gap from each row's Fenchel-Young terms as last found, before
    # its step (after an exact step they are 0): it lags the gap by about a pass, the lag
    # is calibrated at each certification, and it decides when one is worth its pass
    track = stop_on_gap
    # the certification's per-row terms (written in order), from which the terms of the
    # rows it leaves out of the active set are summed
    gterm = np.zeros(n if track else 0)
    lterm = np.zeros(n if track else 0)
    est = np.zeros(2)
    # sums of the terms of the rows outside the active set (fixed while they are out); the
    # visited rows' terms are summed per pass in scalars, not stored per row: the random
    # row order made per-row stores a measured 20-30 % of a sparse pass
    out_g = 0.0
    out_l = 0.0
    # without shrinking the estimate only decides when to certify, so for the logistic
    # loss (two logs and a log1p per row) a quarter of the rows (every 4th visit, rows in
    # random order) stand for the pass
    stride = LOGISTIC_TERM_STRIDE if code == 3 and not shrinking else 1
    est_valid = False
    calib = 1.5
    est_prev = _NAN  # the estimate one pass earlier
    pred = _NAN

    g0 = _NAN
    if O.record_gaps or O.theta > 0.0:
        _certify(D, start, n, alpha, v, code, param, box, G, acc, out3, track, gterm, lterm, est)
        est_valid = track
        g0 = out3[0]
        est_prev = g0  # the estimate's trail starts from this exact gap
        R.gap_start[t] = g0
        if stop_on_gap and g0 <= _target(t, R, O, g0, out3[1], v, kappa):
            # already certified: nothing to do
            R.gap_end[t] = g0
            R.loss_mean[t] = out3[1]
            R.neg_conj_mean[t] = out3[2]
            return

    perm = np.arange(n)
    n_active = n
    state = R.seeds[t]
    s = 0  # coordinate visits (updates and certifications)
    n_updates = 0
    n_certs = 0
    n_passes = 0
    big_m = _INF  # previous pass's extreme projected gradients (liblinear's PGmax_old)
    small_m = -_INF
    eps = O.eps0
    certified = False
    # fallback (the estimate has not been seen to fail): certify at the latest after
    # k_next * n update visits, doubling
    k_next = 16
    visits_at_cert = 0

    while s < budget:
        # ---- one update pass over the active prefix ----
        state = _shuffle_prefix(perm, n_active, state)
        pg_max = -_INF
        pg_min = _INF
        pass_g = 0.0  # terms of the rows visited in this pass, as found
        pass_l = 0.0
        n_sampled = 0  # rows whose terms were taken (without shrinking, every stride-th)
        rem_g = 0.0  # of which the rows removed in this pass
        rem_l = 0.0
        k = 0
        complete = True
        while k < n_active:
            if s >= budget:
                complete = False
                break
            s += 1
            if k + PREFETCH_DISTANCE < n_active:
                _prefetch_row(D, start + perm[k + PREFETCH_DISTANCE])
            i = start + perm[k]
            xv = _dot(D, i, v, acc)
            if shrinking:
                yi = y[i]
                b = alpha[i] * yi
                g = yi * xv - 1.0 + gamma * b
                pg = 0.0
                removed = False
                if b <= 0.0:
                    if g > big_m:
                        removed = True
                    elif g < 0.0:
                        pg = g
                elif b >= 1.0:
                    if g < small_m:
                        removed = True
                    elif g > 0.0:
                        pg = g
                else:
                    pg = g
                if removed:
                    if track:
                        gt, lv = _terms(code, yi, alpha[i], xv, param)
                        pass_g += gt
                        pass_l += lv
                        rem_g += gt
                        rem_l += lv
                    n_active -= 1
                    tmp = perm[k]
                    perm[k] = perm[n_active]
                    perm[n_active] = tmp
                    continue
                if pg > pg_max:
                    pg_max = pg
                if pg < pg_min:
                    pg_min = pg
                if track:  # this row's terms as found (before its step)
                    gt, lv = _terms(code, yi, alpha[i], xv, param)
                    pass_g += gt
                    pass_l += lv
                q = kappa * D.sqnorm[i] * inv_n
                delta = 0.0
                if abs(pg) > 1e-12:
                    qq = q + gamma
                    if qq > 0.0:
                        b_new = min(1.0, max(0.0, b - g / qq))
                    else:  # zero row, hinge: the objective is linear in b
                        b_new = 1.0 if g < 0.0 else 0.0
                    a_new = yi * b_new
                    delta = a_new - alpha[i]
                    if delta != 0.0:
                        alpha[i] = a_new
                        _axpy(D, i, kappa * delta * inv_n, v)
                k += 1
            else:
                if track and k % stride == 0:
                    gt, lv = _terms(code, y[i], alpha[i], xv, param)
                    pass_g += gt
                    pass_l += lv
                    n_sampled += 1
                q = kappa * D.sqnorm[i] * inv_n
                if code == 3:  # logistic: Newton in the log-odds (a few exp, no log)
                    delta = logistic.sdca_delta_logodds(y[i], alpha[i], xv, q, param)
                else:
                    delta = loss_sdca_delta(code, y[i], alpha[i], xv, q, param)
                if delta != 0.0:
                    alpha[i] += delta
                    if feedback:
                        _axpy(D, i, kappa * delta * inv_n, v)
                    else:
                        _axpy(D, i, delta * inv_n, dbt)
                k += 1
        if not complete:
            break
        n_passes += 1
        if track:
            if not shrinking and 0 < n_sampled < n:  # a sample of the rows: scale it up
                pass_g *= n / n_sampled
                pass_l *= n / n_sampled
            est[0] = pass_g + out_g
            est[1] = pass_l + out_l
            out_g += rem_g
            out_l += rem_l
        est_valid = track  # every row has been visited (or certified) once
        if not stop_on_gap and not shrinking:
            continue

        # ---- certify? ----
        est_ok = False
        est_now = est[0] * inv_n
        if est_valid and est_prev > 0.0:
            # the estimate trails the gap by about a pass: predict the gap now from the
            # estimate's own decrease over the last pass, times its measured bias
            pred = est_now * min(1.0, est_now / est_prev) * calib
            est_ok = pred <= _target(t, R, O, g0, est[1] * inv_n, v, kappa)
        if est_valid:
            est_prev = est_now
        late = s - n * n_certs - visits_at_cert >= k_next * n
        if shrinking:
            want = n_active == 0 or pg_max - pg_min <= eps or est_ok or late
        else:
            want = est_ok or late
        if not want:
            if shrinking:
                big_m = pg_max if pg_max > 0.0 else _INF
                small_m = pg_min if pg_min < 0.0 else -_INF
            continue
        if s + n > budget:
            break  # a certification would overrun the budget
        s += n
        n_certs += 1
        pg_max, pg_min = _certify(
            D, start, n, alpha, v, code, param, box, G, acc, out3, track, gterm, lterm, est
        )
        gap = out3[0]
        if visits_at_cert + k_next * n <= s - n * n_certs:
            k_next *= 2
        visits_at_cert = s - n * n_certs
        if pred > 0.0 and gap > 0.0:
            # the prediction's bias, measured: used for the next predictions
            calib = min(1e4, max(1e-4, calib * gap / pred))
        est_prev = gap  # the terms are exact now: the trail restarts from the gap
        tgt = _target(t, R, O, g0, out3[1], v, kappa) if stop_on_gap else -_INF
        if gap <= tgt:
            certified = True
            R.gap_end[t] = gap
            R.loss_mean[t] = out3[1]
            R.neg_conj_mean[t] = out3[2]
            break
        if shrinking:
            # tighten: the gap scales roughly like the spread, so aim at the target
            spread = pg_max - pg_min
            if stop_on_gap and gap > 0.0 and tgt > 0.0:
                f = 0.5 * tgt / gap
                f = min(0.5, max(0.01, f))
            else:
                f = 0.1
            eps = min(eps, spread) * f
            big_m = pg_max if pg_max > 0.0 else _INF
            small_m = pg_min if pg_min < 0.0 else -_INF
            # rebuild the active set from every projected gradient (ascending rows first)
            n_active = 0
            n_out = n
            out_g = 0.0
            out_l = 0.0
            for kk in range(n):
                b = alpha[start + kk] * y[start + kk]
                g = G[kk]
                out = (b <= 0.0 and g > big_m) or (b >= 1.0 and g < small_m)
                if out:
                    n_out -= 1
                    perm[n_out] = kk
                    if track:
                        out_g += gterm[kk]
                        out_l += lterm[kk]
                else:
                    perm[n_active] = kk
                    n_active += 1
            # the inactive tail was filled backwards: restore ascending order
            lo = n_active
            hi = n - 1
            while lo < hi:
                tmp = perm[lo]
                perm[lo] = perm[hi]
                perm[hi] = tmp
                lo += 1
                hi -= 1

    n_updates = s - n * n_certs
    R.steps_done[t] = s
    R.stats[t, 0] = n_updates
    R.stats[t, 1] = n_certs
    R.stats[t, 2] = n_passes
    R.stats[t, 3] = n_active if shrinking else n

    # ---- db_t exactly from the change in the duals ----
    if feedback:
        for kk in range(n):
            i = start + kk
            da = alpha[i] - a0[kk]
            if da != 0.0:
                _axpy(D, i, da * inv_n, dbt)
    if not certified and O.record_gaps:
        _certify(D, start, n, alpha, v, code, param, box, G, acc, out3, False, G, G, est)
        R.gap_end[t] = out3[0]
        R.loss_mean[t] = out3[1]
        R.neg_conj_mean[t] = out3[2]


@njit(cache=True, fastmath=False, parallel=True)
def _shrink_round_parallel(D, R, O):
    for t in prange(D.offsets.shape[0] - 1):
        _shrink_task(t, D, R, O)


shrink_round_parallel = _shrink_round_parallel

#: First projected-gradient spread that triggers a certification (liblinear's default tol).
SHRINK_EPS0 = 0.01


def _out(a, dtype, shape, name):
    if not (
        isinstance(a, np.ndarray)
        and a.dtype == dtype
        and a.shape == shape
        and a.flags.c_contiguous
        and a.flags.writeable
    ):
        raise TypeError(f"{name} must be a writeable C-contiguous {np.dtype(dtype)} {shape} array")
    return a


def _inp(a, dtype):
    # inputs as the one compiled type: C-contiguous, writeable (a read-only view such as
    # np.diag(Sigma) is a different numba type and would compile a second signature)
    a = np.ascontiguousarray(a, dtype=dtype)
    return a if a.flags.writeable else a.copy()


def bundle_round(args: tuple, *, shrink: bool, gap_target, gap_rtol: float, terms, stats) -> tuple:
    """``(KernelData, RoundArrays, RoundOptions)`` from ``sdca_round``'s 26 positionals.

    Inputs are converted to the kernel's dtypes (one compiled signature); outputs must
    already have them, as they are written in place.
    """
    if len(args) != 26:
        raise TypeError(f"sdca_round takes 26 positional arguments, got {len(args)}")
    data = KernelData(*args[:8])
    (
        alpha,
        Wt,
        sigma_diag,
        rho,
        lam,
        code,
        param,
        steps,
        seeds,
        active,
        theta,
        _check_every,
        feedback,
        record_gaps,
        dB,
        steps_done,
        gap_start,
        gap_end,
    ) = args[8:]
    m = data.offsets.shape[0] - 1
    if gap_target is None:
        target = np.full(m, -np.inf)
    else:
        target = np.ascontiguousarray(np.broadcast_to(np.asarray(gap_target, float), (m,)))
        if np.isnan(target).any():
            raise ValueError("gap_target must not contain NaN")
    gap_rtol = float(gap_rtol)
    if not (np.isfinite(gap_rtol) and gap_rtol >= 0.0):
        raise ValueError(f"gap_rtol must be a finite number >= 0, got {gap_rtol!r}")
    if terms is None:
        loss_mean, neg_conj_mean = np.empty(m), np.empty(m)
    else:
        loss_mean, neg_conj_mean = terms
    if stats is None:
        stats = np.empty((m, 4), dtype=np.int64)
    d = Wt.shape[1]
    arrays = RoundArrays(
        alpha=_out(alpha, np.float64, alpha.shape, "alpha"),
        Wt=_inp(Wt, np.float64),
        sigma_diag=_inp(sigma_diag, np.float64),
        steps=_inp(steps, np.int64),
        seeds=_inp(seeds, np.uint64),
        active=_inp(active, np.bool_),
        gap_target=target,
        dB=_out(dB, np.float64, (m, d), "dB"),
        steps_done=_out(steps_done, np.int64, (m,), "steps_done"),
        gap_start=_out(gap_start, np.float64, (m,), "gap_start"),
        gap_end=_out(gap_end, np.float64, (m,), "gap_end"),
        loss_mean=_out(loss_mean, np.float64, (m,), "terms[0]"),
        neg_conj_mean=_out(neg_conj_mean, np.float64, (m,), "terms[1]"),
        stats=_out(stats, np.int64, (m, 4), "stats"),
    )
    options = RoundOptions(
        rho=float(rho),
        lam=float(lam),
        code=int(code),
        param=float(param),
        theta=float(theta),
        feedback=bool(feedback),
        record_gaps=bool(record_gaps),
        shrink=bool(shrink),
        gap_rtol=gap_rtol,
        eps0=SHRINK_EPS0,
    )
    return data, arrays, options
