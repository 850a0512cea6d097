"""Neuron-diversity measures over activation matrices (Bansal, Pruthi, Belinkov, NeurIPS 2022).

All measures take an activation matrix ``acts`` of shape ``[S, N]`` (``S`` unlabeled inputs,
``N`` neurons) and return values in **nats**.

*Intra-neuron diversity* — the entropy of each neuron's activation distribution, estimated by
binning the ``S`` values of a neuron into ``B`` equal-width bins (``numpy.histogram``'s
convention: bins are half-open ``[e_b, e_{b+1})`` except the last, which holds the maximum)::

    H_j = -sum_b p_jb log p_jb,        p_jb = n_jb / S.

*Inter-neuron diversity* — the mutual information between two neurons ``(i, j)``:

- ``"binned"``: the plug-in MI of the joint ``B x B`` histogram over the same bins,
  ``I_ij = H_i + H_j - H_ij`` (equals ``sklearn.metrics.mutual_info_score`` on the bin labels).
  All ``N(N-1)/2`` pairs are computed by one jit-compiled ``lax.map`` over pairs: each pair's
  joint bin codes ``a*B + b`` (``[S]``) are scatter-added into a ``B*B`` histogram, so the work is
  ``O(N^2 (S + B^2))`` with no Python loop over pairs and memory
  ``O(block_size * (S + B^2))`` on top of the ``[S, N]`` label matrix.
- ``"ksg"``: Kraskov-Stögbauer-Grassberger estimator 1 (k nearest neighbours, Chebyshev
  metric): ``I = psi(k) + psi(S) - <psi(n_x + 1) + psi(n_y + 1)>``, where ``eps_i`` is the
  max-norm distance from sample ``i`` to its k-th nearest other sample in ``(x, y)`` and ``n_x(i)``
  counts ``j != i`` with ``|x_j - x_i| < eps_i`` (strictly; likewise ``n_y``). Two conventions:
  ``"sklearn"`` (default; as ``sklearn.feature_selection.mutual_info_regression``: each column
  divided by its std, ``ddof=0``, plus a ``1e-10 * max(1, mean|x|) * N(0, 1)`` jitter) and
  ``"raw"`` (activations as they are, no scaling, no jitter — the authors' use).
  Algorithm (exact, no ``[S, S]`` matrices): each neuron is sorted once; for a pair, candidate
  neighbours come from six cheap "views" — a window of 8 samples on each side in x order and
  in y order, and strips of consecutive x-ranks (resp. y-ranks), two staggered partitions each,
  sorted lexicographically by the other coordinate, with a window of 24 on each side. Each view
  gives a candidate radius ``r`` (k-th smallest candidate distance) and a certificate ``R``
  (a lower bound on the distance of every non-candidate, from the marginal gaps at the window and
  strip boundaries); ``min r`` is exact whenever ``min r <= max R``. Samples that no view certifies
  go to a brute-force pass (``sample_chunk`` samples at a time against all ``S``). ``n_x, n_y``
  are binary searches on the sorted marginals with the rounded differences ``x_j - x_i`` as the
  predicate, so the counts equal a brute-force count bit for bit.
  Ties: the k-th distance is a value, so it does not depend on how equal distances are ordered;
  ``eps_i = 0`` (at least k exact duplicates of the point) counts the duplicates in ``n_x``
  (``|x_j - x_i| <= 0``), as scikit-learn's ``query_radius(nextafter(eps, 0))`` does; otherwise
  the counts are strict. Work per pair ``O(S log S)`` plus the brute-force share.
  On the CPU, when numba is installed, a compiled kernel with a data-dependent exact search
  replaces this one (:mod:`jaxinfo._ksg_native`, ``ksg_backend``): same estimator and tie rules,
  in float64, no fallback pass, 1.9–2.6× faster per pair on two CPU cores.

Model selection (:func:`rank_models`): low entropy / high MI signals heuristic (spurious
feature) memorization, high entropy / low MI signals example-level memorization (label noise).
"""
from __future__ import annotations

from functools import partial
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.scipy.special import digamma

from jaxinfo import _ksg_native
from jaxinfo._validation import check_finite, check_int_at_least, check_ndim

__all__ = [
    "BinnedActivations",
    "bin_activations",
    "neuron_entropy",
    "pairwise_mutual_information",
    "DiversitySummary",
    "offdiag_summary",
    "diversity_summary",
    "Ranking",
    "rank_models",
    "kendall_tau",
]

_BINNINGS = ("global", "per_neuron")
_ASSIGNMENTS = ("histogram", "digitize")


def _float_dtype():
    return jnp.result_type(float)  # float64 under enable_x64, else float32


def _check_acts(acts, name: str = "acts") -> jax.Array:
    check_ndim(name, acts, 2)
    arr = jnp.asarray(acts)
    if not jnp.issubdtype(arr.dtype, jnp.number) or jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be a real array of shape [S, N], got dtype {arr.dtype}")
    check_finite(name, arr)
    return arr.astype(_float_dtype()) if not jnp.issubdtype(arr.dtype, jnp.floating) else arr


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
        raise TypeError(f"bins must be an integer >= 2, got {bins!r}")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    return int(bins)


def _check_binning(binning: str) -> str:
    if binning not in _BINNINGS:
        raise ValueError(f"binning must be one of {_BINNINGS}, got {binning!r}")
    return binning


class BinnedActivations(NamedTuple):
    """Bin labels of an activation matrix.

    Attributes:
      labels: ``[S, N]`` int32 bin index of every activation, in ``0..num_labels-1``.
      edges: ``[B+1]`` (``"global"``) or ``[B+1, N]`` (``"per_neuron"``) bin edges.
      num_labels: ``B`` (``assignment="histogram"``) or ``B + 1`` (``"digitize"``: the
        maximum has a label of its own).
    """

    labels: jax.Array
    edges: jax.Array
    num_labels: int


def _edges(lo, hi, bins: int):
    # numpy.histogram: a degenerate range [v, v] becomes [v - 0.5, v + 0.5]; edges from linspace.
    same = lo == hi
    lo = jnp.where(same, lo - 0.5, lo)
    hi = jnp.where(same, hi + 0.5, hi)
    steps = jnp.arange(bins + 1, dtype=lo.dtype).reshape((-1,) + (1,) * lo.ndim)
    edges = steps * ((hi - lo) / bins) + lo
    return edges.at[-1].set(hi), lo, hi


@partial(jax.jit, static_argnames=("bins", "binning"))
def _bin(acts, bins: int, binning: str):
    if binning == "global":
        lo, hi = jnp.min(acts), jnp.max(acts)
    else:
        lo, hi = jnp.min(acts, axis=0), jnp.max(acts, axis=0)
    edges, lo, hi = _edges(lo, hi, bins)
    # numpy.histogram's index computation, including its 1-ulp corrections against the edges.
    idx = (((acts - lo) / (hi - lo)) * bins).astype(jnp.int32)
    idx = jnp.where(idx == bins, bins - 1, idx)
    idx = jnp.clip(idx, 0, bins - 1)
    if binning == "global":
        left, right = edges[idx], edges[idx + 1]
    else:
        cols = jnp.arange(acts.shape[1])[None, :]
        left, right = edges[idx, cols], edges[jnp.minimum(idx + 1, bins), cols]
    idx = jnp.where(acts < left, idx - 1, idx)
    if binning == "global":
        right = edges[idx + 1]
    else:
        right = edges[idx + 1, cols]
    idx = jnp.where((acts >= right) & (idx != bins - 1), idx + 1, idx)
    return idx.astype(jnp.int32), edges


def bin_activations(acts, *, bins: int = 100, binning: str = "global",
                    assignment: str = "histogram") -> BinnedActivations:
    """Assigns every activation to one of ``bins`` equal-width bins.

    Args:
      acts: ``[S, N]`` activations (finite).
      bins: number of bins ``B >= 2``.
      binning: ``"global"`` — edges from the min/max over the whole matrix (pass all hidden
        layers concatenated for the authors' one set of edges); ``"per_neuron"`` — edges from
        each neuron's own min/max.
      assignment: ``"histogram"`` — ``numpy.histogram``'s rule (the maximum falls in the last
        bin: ``B`` labels); ``"digitize"`` — the authors' ``np.digitize(x, edges) - 1`` (the
        same except that values equal to the last edge, the maximum, get label ``B`` of their
        own: ``B + 1`` labels).

    Returns:
      :class:`BinnedActivations` with ``labels`` ``[S, N]`` int32, identical to the bin index
      ``numpy.histogram(acts[:, j], bins=edges)`` (or ``np.digitize``) assigns.
    """
    acts = _check_acts(acts)
    bins = _check_bins(bins)
    binning = _check_binning(binning)
    if assignment not in _ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {_ASSIGNMENTS}, got {assignment!r}")
    labels, edges = _bin(acts, bins, binning)
    if assignment == "digitize":
        labels = jnp.where(acts >= edges[-1], bins, labels).astype(jnp.int32)
        return BinnedActivations(labels, edges, bins + 1)
    return BinnedActivations(labels, edges, bins)


def _xlogx(c):
    return jnp.where(c > 0, c * jnp.log(jnp.where(c > 0, c, 1)), 0.0)


@partial(jax.jit, static_argnames=("bins", "miller_madow"))
def _entropy_from_labels(labels, bins: int, miller_madow: bool):
    s, n = labels.shape
    dt = _float_dtype()
    counts = jnp.zeros((n, bins), jnp.int32).at[jnp.arange(n)[None, :], labels].add(1)
    c = counts.astype(dt)
    h = jnp.maximum(jnp.log(jnp.asarray(s, dt)) - jnp.sum(_xlogx(c), axis=1) / s, 0.0)
    h = jnp.where(jnp.max(counts, axis=1) == s, 0.0, h)  # one occupied bin: exactly 0
    if miller_madow:
        h = h + (jnp.sum(counts > 0, axis=1) - 1).astype(dt) / (2 * s)
    return h


def neuron_entropy(acts, *, bins: int = 100, binning: str = "global",
                   correction: str | None = None, assignment: str = "histogram") -> jax.Array:
    """Entropy of each neuron's binned activation distribution (intra-neuron diversity).

    ``H_j = -sum_b p_jb log p_jb`` with ``p_jb`` the fraction of the ``S`` samples in bin ``b``
    (bins from :func:`bin_activations`). A constant neuron has ``H = 0``.

    Args:
      acts: ``[S, N]`` activations.
      bins: number of equal-width bins ``B >= 2`` (default 100, as the authors).
      binning: ``"global"`` (edges over the whole matrix) or ``"per_neuron"``.
      correction: ``None`` (plug-in) or ``"miller_madow"``: adds ``(m_j - 1) / (2S)`` where
        ``m_j`` is the number of non-empty bins.
      assignment: ``"histogram"`` or ``"digitize"`` (see :func:`bin_activations`).

    Returns:
      ``[N]`` entropies in nats.
    """
    if correction not in (None, "miller_madow"):
        raise ValueError(f"correction must be None or 'miller_madow', got {correction!r}")
    binned = bin_activations(acts, bins=bins, binning=binning, assignment=assignment)
    return _entropy_from_labels(binned.labels, binned.num_labels, correction == "miller_madow")


def _upper_pairs(n: int):
    i, j = np.triu_indices(n, k=1)
    return i.astype(np.int32), j.astype(np.int32)


def _pad_pairs(i, j, block: int):
    p = len(i)
    pad = (-p) % block if p else block
    return (np.concatenate([i, np.zeros(pad, np.int32)]),
            np.concatenate([j, np.zeros(pad, np.int32)]), p)


@partial(jax.jit, static_argnames=("bins", "block_size"))
def _binned_pair_mi(labels_t, pi, pj, ent, bins: int, block_size: int):
    # labels_t: [N, S] int32; pi, pj: [P] pair indices; ent: [N] plug-in entropies (nats).
    s = labels_t.shape[1]
    dt = ent.dtype
    log_s = jnp.log(jnp.asarray(s, dt))

    def one(pair):
        a, b = pair
        code = labels_t[a] * bins + labels_t[b]
        counts = jnp.zeros(bins * bins, jnp.int32).at[code].add(1, mode="promise_in_bounds")
        h_joint = log_s - jnp.sum(_xlogx(counts.astype(dt))) / s
        mi = jnp.maximum(ent[a] + ent[b] - h_joint, 0.0)
        return jnp.where((ent[a] == 0) | (ent[b] == 0), 0.0, mi)

    return jax.lax.map(one, (pi, pj), batch_size=block_size)


_KSG_CONVENTIONS = ("sklearn", "raw")
_KSG_WINDOW = 24        # candidates on each side inside a strip
_KSG_LINE_WINDOW = 8    # candidates on each side in a marginal order


def _ksg_prepare(acts, key, jitter):
    """scikit-learn's preprocessing for ``mutual_info_regression`` (continuous features).

    Each column is divided by its standard deviation (``ddof=0``, as ``sklearn.preprocessing.scale``;
    a zero std leaves the column unscaled) and ``jitter * max(1, mean|x|) * N(0, 1)`` is added.
    """
    std = jnp.std(acts, axis=0)
    x = acts / jnp.where(std > 0, std, 1.0)
    if jitter == 0:
        return x
    scale = jnp.maximum(1.0, jnp.mean(jnp.abs(x), axis=0))
    return x + jitter * scale * jax.random.normal(key, x.shape, x.dtype)


class _KSGTables(NamedTuple):
    """Per-neuron sort results, computed once (``O(N S log S)``) and shared by all pairs.

    Attributes (``N`` neurons, ``S`` samples):
      vals: ``[N, S]`` values by sample.
      sorted_vals: ``[N, S + 1]`` values ascending, then ``+inf``.
      order: ``[N, S]`` sample index of the q-th smallest value (stable argsort).
      dense1: ``[N, S + 1]`` ``1 +`` dense rank of each sample's value among the distinct values;
        slot ``S`` (a padding sample) holds ``S + 1``.
      uniq: ``[N, S + 3]`` ``-inf``, the distinct values ascending, then ``+inf`` (so
        ``uniq[dense1]`` is the value and ``uniq[dense1 -/+ 1]`` its distinct neighbours).
    """

    vals: jax.Array
    sorted_vals: jax.Array
    order: jax.Array
    dense1: jax.Array
    uniq: jax.Array


@jax.jit
def _ksg_tables(xt) -> _KSGTables:
    n, s = xt.shape
    dt = xt.dtype
    order = jnp.argsort(xt, axis=1, stable=True).astype(jnp.int32)
    sv = jnp.take_along_axis(xt, order, axis=1)
    new = (sv[:, 1:] != sv[:, :-1]).astype(jnp.int32)
    dsorted = jnp.cumsum(jnp.concatenate([jnp.ones((n, 1), jnp.int32), new], axis=1), axis=1)
    rows = jnp.arange(n)[:, None]
    dense1 = jnp.full((n, s + 1), s + 1, jnp.int32).at[rows, order].set(dsorted)
    uniq = jnp.full((n, s + 3), jnp.inf, dt).at[:, 0].set(-jnp.inf).at[rows, dsorted].set(sv)
    sorted_vals = jnp.concatenate([sv, jnp.full((n, 1), jnp.inf, dt)], axis=1)
    return _KSGTables(xt, sorted_vals, order, dense1, uniq)


def _ksg_view(tab: _KSGTables, ua, vb, off: int, k: int, strip: int, window: int):
    """Candidate k-th-neighbour radius and its certificate from one strip partition.

    The samples, in the ascending order of the primary neuron ``u = ua``, are cut into strips of
    ``strip`` consecutive positions (the first strip is shortened by ``off`` padding positions).
    Inside a strip the points are sorted lexicographically by (value of ``v = vb``, position in
    ``u`` order). Each point's candidates are the ``window`` points before and after it in that
    order; ``r`` is the k-th smallest Chebyshev distance to them (``inf`` if fewer than k).
    ``R`` is a lower bound on the distance to every non-candidate: the ``u``-gaps to the points
    just outside the strip, and the gaps to the first non-candidate on each side in the strip
    (``|v_q - v_i|``, or when ``v_q == v_i`` the smaller of ``|u_q - u_i|`` and the gap from
    ``v_i`` to its next distinct ``v`` value, since in lexicographic order the points beyond
    ``q`` with the same ``v`` lie beyond ``q`` in ``u``). If ``r <= R`` the candidate radius is
    the exact one. Returns ``r, R`` of shape ``[S + 1]`` by sample (slot ``S`` is junk).
    """
    s = tab.order.shape[1]
    dt = tab.sorted_vals.dtype
    inf = jnp.asarray(jnp.inf, dt)
    g = -(-(s + off) // strip)
    length = g * strip
    tail = length - off - s
    # line position p <-> index p + 1 in u_line; -inf / +inf outside the samples
    u_line = jnp.concatenate([jnp.full((off + 1,), -inf), tab.sorted_vals[ua, :s],
                              jnp.full((tail + 1,), inf)])
    id_line = jnp.concatenate([jnp.full((off,), s, jnp.int32), tab.order[ua],
                               jnp.full((tail,), s, jnp.int32)])
    dr = tab.dense1[vb][id_line]                                    # padding -> S + 1 (v = inf)
    local = jnp.arange(length, dtype=jnp.int32) % strip
    key = jnp.sort((dr * strip + local).reshape(g, strip), axis=1)  # lexicographic (v, u)
    dr_s = key // strip
    starts = jnp.arange(g, dtype=jnp.int32)[:, None] * strip
    pos = starts + key % strip
    uq = tab.uniq[vb]
    u_s = u_line[pos + 1]
    v_s = uq[dr_s]
    ids = id_line[pos]
    gap_u = jnp.minimum(u_s - u_line[starts], u_line[starts + strip + 1] - u_s)

    w = window
    up = jnp.pad(u_s, ((0, 0), (w + 1, w + 1)))
    vp = jnp.concatenate([jnp.full((g, w + 1), -inf), v_s, jnp.full((g, w + 1), inf)], axis=1)
    top = [jnp.full((g, strip), inf)] * k
    for o in range(1, w + 1):
        for c in (w + 1 - o, w + 1 + o):
            d = jnp.maximum(jnp.abs(up[:, c:c + strip] - u_s), jnp.abs(vp[:, c:c + strip] - v_s))
            for lev in range(k):   # insert d into the sorted top-k
                top[lev], d = jnp.minimum(top[lev], d), jnp.maximum(top[lev], d)
    r = top[k - 1]
    qu, qv = up[:, 2 * w + 2:], vp[:, 2 * w + 2:]                   # first non-candidate after
    after = jnp.where(qv > v_s, qv - v_s, jnp.minimum(qu - u_s, uq[dr_s + 1] - v_s))
    qu, qv = up[:, :strip], vp[:, :strip]                            # ... and before
    before = jnp.where(qv < v_s, v_s - qv, jnp.minimum(u_s - qu, v_s - uq[dr_s - 1]))
    big_r = jnp.minimum(jnp.minimum(after, before), gap_u)
    ids = ids.reshape(-1)
    r_out = jnp.full((s + 1,), inf).at[ids].set(r.reshape(-1))
    big_out = jnp.full((s + 1,), -inf).at[ids].set(big_r.reshape(-1))
    return r_out[:s], big_out[:s]


def _ksg_line_view(tab: _KSGTables, ua, vb, k: int, window: int):
    """Candidate radius and certificate from a window in the ascending order of neuron ``ua``.

    Candidates: the ``window`` points before and after each point in ``u`` order. Every other
    point is at least ``R = min(u_{p+w+1} - u_p, u_p - u_{p-w-1})`` away in ``u`` alone. Suits
    points whose ``u``-neighbourhood of radius eps is sparse (e.g. a tie block in ``v``). Returns
    ``r, R`` of shape ``[S]`` by sample.
    """
    s = tab.order.shape[1]
    dt = tab.sorted_vals.dtype
    inf = jnp.asarray(jnp.inf, dt)
    w = window
    u = tab.sorted_vals[ua, :s]
    v = tab.vals[vb][tab.order[ua]]
    up = jnp.concatenate([jnp.full((w + 1,), -inf), u, jnp.full((w + 1,), inf)])
    vp = jnp.pad(v, (w + 1, w + 1))
    top = [jnp.full((s,), inf)] * k
    for o in range(1, w + 1):
        for c in (w + 1 - o, w + 1 + o):
            d = jnp.maximum(jnp.abs(up[c:c + s] - u), jnp.abs(vp[c:c + s] - v))
            for lev in range(k):
                top[lev], d = jnp.minimum(top[lev], d), jnp.maximum(top[lev], d)
    big_r = jnp.minimum(up[2 * w + 2:] - u, u - up[:s])
    order = tab.order[ua]
    return (jnp.zeros((s,), dt).at[order].set(top[k - 1]),
            jnp.zeros((s,), dt).at[order].set(big_r))


def _ksg_brute_radius(x, y, r, redo, k: int, chunk: int):
    """Exact k-th-neighbour Chebyshev radius for the samples flagged ``redo`` (``[S]`` bool).

    The flagged samples are compacted into a buffer and processed ``chunk`` at a time against
    all ``S`` samples (``[chunk, S]`` distances per step, a ``while_loop`` over chunks).
    """
    s = x.shape[0]
    inf = jnp.asarray(jnp.inf, x.dtype)
    n_redo = jnp.sum(redo)
    slot = jnp.where(redo, jnp.cumsum(redo) - 1, s + chunk)
    buf = jnp.full((s + chunk,), s, jnp.int32).at[slot].set(jnp.arange(s, dtype=jnp.int32),
                                                            mode="drop")
    cols = jnp.arange(s, dtype=jnp.int32)

    def body(carry):
        c, r = carry
        ids = jax.lax.dynamic_slice(buf, (c * chunk,), (chunk,))
        idc = jnp.minimum(ids, s - 1)
        d = jnp.maximum(jnp.abs(x[None, :] - x[idc][:, None]), jnp.abs(y[None, :] - y[idc][:, None]))
        d = jnp.where(cols[None, :] == idc[:, None], inf, d)
        # k-th smallest with multiplicity: the least distinct value t with #{d <= t} >= k
        t = jnp.full((chunk,), -inf)
        eps = jnp.full((chunk,), inf)
        done = jnp.zeros((chunk,), bool)
        for _ in range(k):
            t = jnp.min(jnp.where(d > t[:, None], d, inf), axis=1)
            hit = ~done & (jnp.sum(d <= t[:, None], axis=1) >= k)
            eps = jnp.where(hit, t, eps)
            done = done | hit
        return c + 1, r.at[ids].set(eps, mode="drop")

    return jax.lax.while_loop(lambda carry: carry[0] * chunk < n_redo, body, (0, r))[1]


def _count_within(sv, x, e):
    """``#{j : |sv_j - x_i| <= e_i}`` for every ``i`` by two fixed-step binary searches.

    ``sv`` is ``[S + 1]`` ascending (last ``+inf``). The predicates are evaluated on the rounded
    differences ``sv_j - x_i`` (the same numbers a distance computation produces), which are
    monotone in ``sv_j``, so the counts agree exactly with a brute-force count.
    """
    s = sv.shape[0] - 1

    def prefix(pred):
        pos = jnp.zeros(x.shape, jnp.int32)
        for st in reversed(range(s.bit_length())):
            cand = pos + (1 << st)
            ok = (cand <= s) & pred(sv[jnp.minimum(cand, s) - 1])
            pos = jnp.where(ok, cand, pos)
        return pos

    upto = prefix(lambda v: v - x <= e)        # sv_j - x_i <= e
    below = prefix(lambda v: x - v > e)        # sv_j - x_i < -e
    return upto - below


@partial(jax.jit, static_argnames=("k", "strip", "window", "line_window", "chunk",
                                   "block_size"))
def _ksg_pairs(tab: _KSGTables, pi, pj, k: int, strip: int, window: int, line_window: int,
               chunk: int, block_size: int):
    """KSG-1 MI (nats, clipped at 0) and the number of brute-force samples for each pair."""
    s = tab.order.shape[1]
    dt = tab.sorted_vals.dtype
    psi = digamma(jnp.arange(1, s + 1, dtype=dt))          # psi(n + 1), n = 0..S-1
    const = digamma(jnp.asarray(k, dt)) + digamma(jnp.asarray(s, dt))
    offs = (0, strip // 2) if s > strip else (0,)

    def one(pair):
        a, b = pair
        r, big_r = None, None
        for u, v in ((a, b), (b, a)):
            r1, b1 = _ksg_line_view(tab, u, v, k, line_window)
            r = r1 if r is None else jnp.minimum(r, r1)
            big_r = b1 if big_r is None else jnp.maximum(big_r, b1)
            for off in offs:
                r1, b1 = _ksg_view(tab, u, v, off, k, strip, window)
                r = r1 if r is None else jnp.minimum(r, r1)
                big_r = b1 if big_r is None else jnp.maximum(big_r, b1)
        redo = ~(r <= big_r)
        x, y = tab.vals[a], tab.vals[b]
        eps = _ksg_brute_radius(x, y, r, redo, k, chunk)
        e = jnp.nextafter(eps, jnp.zeros_like(eps))   # strict: |d| < eps  <=>  |d| <= e
        nx = _count_within(tab.sorted_vals[a], x, e) - 1
        ny = _count_within(tab.sorted_vals[b], y, e) - 1
        mi = const - jnp.mean(psi[nx] + psi[ny])
        return jnp.maximum(mi, 0.0), jnp.sum(redo)

    return jax.lax.map(one, (pi, pj), batch_size=block_size)


def _ksg_default_strip(s: int, k: int) -> int:
    target = 2.0 * np.sqrt(k * s)
    return int(min(512, max(16, 1 << int(np.ceil(np.log2(target))))))


def _ksg_all_pairs(x, *, k: int = 3, strip: int | None = None, window: int = 24,
                   line_window: int = 8, chunk: int = 64, block_size: int = 1):
    """KSG-1 MI between all pairs of columns of ``x`` ``[S, N]`` (no preprocessing).

    Returns ``(mi, n_brute)``: ``[N, N]`` MI in nats and ``[P]`` number of samples per pair
    (upper-triangle order) whose radius needed the brute-force fallback.
    """
    s, n = x.shape
    strip = _ksg_default_strip(s, k) if strip is None else strip
    tab = _ksg_tables(jnp.asarray(x).T)
    counts = []

    def values(pi, pj):
        mi, nb = _ksg_pairs(tab, pi, pj, k, strip, window, line_window, chunk,
                            block_size)
        counts.append(nb)
        return mi

    mi = _over_pairs(n, block_size, x.dtype, values)
    p = n * (n - 1) // 2
    return mi, (counts[0][:p] if counts else jnp.zeros((0,), jnp.int32))


def _over_pairs(n: int, block: int, dt, pair_values) -> jax.Array:
    """Symmetric ``[n, n]`` matrix (zero diagonal) of ``pair_values(pi, pj)`` over all pairs.

    The ``n(n-1)/2`` upper pairs are padded to a multiple of ``block`` (static shapes for the
    jitted per-pair kernels); padded results are dropped before assembly.
    """
    i, j = _upper_pairs(n)
    if len(i) == 0:
        return jnp.zeros((n, n), dt)
    pi, pj, p = _pad_pairs(i, j, block)
    vals = pair_values(jnp.asarray(pi), jnp.asarray(pj))[:p]
    return jnp.zeros((n, n), dt).at[i, j].set(vals).at[j, i].set(vals)


_KSG_BACKENDS = ("auto", "numba", "jax")


def _use_native_ksg(backend: str) -> bool:
    """Whether ``method="ksg"`` runs the compiled CPU kernel (see ``ksg_backend``)."""
    if backend not in _KSG_BACKENDS:
        raise ValueError(f"ksg_backend must be one of {_KSG_BACKENDS}, got {backend!r}")
    if backend == "auto":
        return jax.default_backend() == "cpu" and _ksg_native.available()
    return backend == "numba"


def pairwise_mutual_information(acts, *, method: str = "binned", bins: int = 100,
                                binning: str = "global", k: int = 3, key=None,
                                block_size: int | None = None, sample_chunk: int | None = None,
                                jitter: float | None = None, labels=None,
                                ksg_convention: str = "sklearn", ksg_backend: str = "auto",
                                progress: bool = False) -> jax.Array:
    """Mutual information between every pair of neurons (inter-neuron diversity).

    Args:
      acts: ``[S, N]`` activations.
      method: ``"binned"`` (plug-in MI of the joint ``B x B`` histogram; equals
        ``sklearn.metrics.mutual_info_score`` of the bin labels) or ``"ksg"`` (Kraskov
        estimator 1, Chebyshev metric, ``k`` neighbours; exact, see the module docstring).
      bins, binning: binning for ``"binned"`` (see :func:`bin_activations`).
      k: neighbours for ``"ksg"`` (default 3); needs ``S >= k + 1``.
      key: ``jax.random`` key for the KSG jitter (required for ``ksg_convention="sklearn"``
        unless ``jitter=0``; unused for ``"raw"``).
      block_size: number of neuron pairs processed at once (memory
        ``O(block_size * (S + B^2))`` for binned, ``O(block_size * S)`` for KSG). Default 16
        (binned) / 1 (KSG: per-pair gathers are faster unbatched on CPU).
      sample_chunk: KSG only: samples per brute-force step for the radii no window certifies
        (``[sample_chunk, S]`` distances per step; default 64).
      jitter: KSG ``"sklearn"`` only: jitter scale relative to the unit-std data (default
        ``1e-10`` in float64, as scikit-learn; ``1e-6`` in float32 where 1e-10 would be below
        resolution); ``0`` disables it.
      labels: optional precomputed ``[S, N]`` int bin labels in ``0..bins-1`` (binned only;
        ``acts`` may then be ``None``) — e.g. layer-wise global bins concatenated across layers.
      ksg_convention: ``"sklearn"`` (scale to unit std, ddof=0, and jitter; equals
        ``mutual_info_regression`` given the same jitter) or ``"raw"`` (no preprocessing).
      ksg_backend: ``"numba"`` (the compiled CPU kernel of :mod:`jaxinfo._ksg_native`, in
        float64 whatever the input dtype; needs numba), ``"jax"`` (the jitted kernel below, in
        the input dtype, any JAX device) or ``"auto"``: numba when it is installed and JAX's
        default backend is the CPU. Both are exact; only the speed differs (2–2.6× on a CPU).
      progress: unused placeholder for API symmetry (the computation is a single jit call).

    Returns:
      ``[N, N]`` symmetric matrix of MI in nats; the diagonal is set to 0 (use
      :func:`neuron_entropy` for ``I(X; X) = H(X)``). Negative estimates are clipped to 0
      (as scikit-learn does).
    """
    del progress
    if method not in ("binned", "ksg"):
        raise ValueError(f"method must be 'binned' or 'ksg', got {method!r}")
    if method == "binned":
        bins = _check_bins(bins)
        if labels is None:
            labels = bin_activations(acts, bins=bins, binning=binning).labels
        else:
            check_ndim("labels", labels, 2)
            labels = jnp.asarray(labels)
            if not jnp.issubdtype(labels.dtype, jnp.integer):
                raise TypeError(f"labels must be integer bin indices, got dtype {labels.dtype}")
            if int(jnp.min(labels)) < 0 or int(jnp.max(labels)) >= bins:
                raise ValueError(f"labels must lie in 0..bins-1 = 0..{bins - 1}")
            labels = labels.astype(jnp.int32)
        block = 16 if block_size is None else block_size
        check_int_at_least("block_size", block, 1)
        n = labels.shape[1]
        ent = _entropy_from_labels(labels, bins, False)
        return _over_pairs(n, block, ent.dtype, lambda pi, pj: _binned_pair_mi(
            labels.T, pi, pj, ent, bins, block))

    acts = _check_acts(acts)
    check_int_at_least("k", k, 1)
    if ksg_convention not in _KSG_CONVENTIONS:
        raise ValueError(f"ksg_convention must be one of {_KSG_CONVENTIONS}, got "
                         f"{ksg_convention!r}")
    s, n = acts.shape
    if s < k + 1:
        raise ValueError(f"acts must have at least k + 1 = {k + 1} samples (rows) for the KSG "
                         f"estimator, got S = {s}")
    block = 1 if block_size is None else block_size
    check_int_at_least("block_size", block, 1)
    chunk = 64 if sample_chunk is None else sample_chunk
    check_int_at_least("sample_chunk", chunk, 1)
    if ksg_convention == "sklearn":
        if jitter is None:
            jitter = 1e-10 if acts.dtype == jnp.float64 else 1e-6
        if key is None and jitter != 0:
            raise ValueError("key must be a jax.random key for method='ksg' with "
                             "ksg_convention='sklearn' (it seeds the jitter that breaks ties)")
        x = _ksg_prepare(acts, key, jitter)
    else:
        x = acts
    if _use_native_ksg(ksg_backend):
        return jnp.asarray(_ksg_native.ksg_all_pairs(np.asarray(x), k=k), acts.dtype)
    strip = _ksg_default_strip(s, k)
    tab = _ksg_tables(x.T)
    return _over_pairs(n, block, acts.dtype, lambda pi, pj: _ksg_pairs(
        tab, pi, pj, k, strip, _KSG_WINDOW, _KSG_LINE_WINDOW, chunk, block)[0])


class DiversitySummary(NamedTuple):
    """Scalar summaries of one activation matrix (all in nats).

    Attributes:
      mean_entropy, median_entropy: over the ``N`` neurons.
      mean_mi, median_mi: over the ``N(N-1)/2`` off-diagonal pairs.
      n_neurons: ``N``.
    """

    mean_entropy: float
    median_entropy: float
    mean_mi: float
    median_mi: float
    n_neurons: int


def offdiag_summary(mi) -> tuple[float, float]:
    """Mean and median of the off-diagonal (upper-triangle) entries of an ``[N, N]`` MI matrix."""
    check_ndim("mi", mi, 2)
    mi = np.asarray(mi)
    if mi.shape[0] != mi.shape[1]:
        raise ValueError(f"mi must be square [N, N], got shape {mi.shape}")
    vals = mi[np.triu_indices(mi.shape[0], k=1)]
    if vals.size == 0:
        return float("nan"), float("nan")
    return float(vals.mean()), float(np.median(vals))


def diversity_summary(layers: Mapping[str, object], *, bins: int = 100, binning: str = "global",
                      mi_method: str | None = "binned", k: int = 3, key=None,
                      block_size: int | None = None, correction: str | None = None,
                      assignment: str = "histogram",
                      ksg_convention: str = "sklearn",
                      ksg_backend: str = "auto") -> dict[str, DiversitySummary]:
    """Entropy and MI summaries per layer and over all layers together.

    For ``"overall"``, entropies of all neurons are pooled, and MI is computed over all neurons
    of all layers together (cross-layer pairs included; binned MI uses the entropy's bins).

    Args:
      layers: ``{layer_name: [S, N_l]}`` activations (same ``S`` for all layers).
      bins, correction, assignment: see :func:`neuron_entropy`.
      binning: ``"all_layers"`` — one set of edges over every layer's activations together
        (the authors' release); ``"global"`` — edges per layer; ``"per_neuron"``.
      mi_method, k, key, block_size, ksg_convention, ksg_backend: see
        :func:`pairwise_mutual_information`;
        ``mi_method=None`` skips MI (NaN in the summaries).

    Returns:
      ``{layer_name: DiversitySummary, ..., "overall": DiversitySummary}``.
    """
    if not layers:
        raise ValueError("layers must hold at least one activation matrix")
    if binning not in _BINNINGS + ("all_layers",):
        raise ValueError(f"binning must be one of {_BINNINGS + ('all_layers',)}, got {binning!r}")
    names = list(layers)
    mats = [_check_acts(a, f"layers[{name!r}]") for name, a in layers.items()]
    sizes = [m.shape[1] for m in mats]
    if binning == "all_layers":
        binned = [bin_activations(jnp.concatenate(mats, axis=1), bins=bins, binning="global",
                                  assignment=assignment)]
    else:
        binned = [bin_activations(m, bins=bins, binning=binning, assignment=assignment)
                  for m in mats]
    lab = jnp.concatenate([b.labels for b in binned], axis=1)
    num_labels = binned[0].num_labels
    ent_all = np.asarray(_entropy_from_labels(lab, num_labels, correction == "miller_madow"))
    # One MI matrix over all neurons; per-layer values are its diagonal blocks.
    n_all = sum(sizes)
    if mi_method is None:  # entropy only
        mi = np.full((n_all, n_all), np.nan)
    elif mi_method == "binned":
        mi = pairwise_mutual_information(None, labels=lab, bins=num_labels,
                                         block_size=block_size)
    else:
        mi = pairwise_mutual_information(jnp.concatenate(mats, axis=1), method=mi_method, k=k,
                                         key=key, block_size=block_size,
                                         ksg_convention=ksg_convention,
                                         ksg_backend=ksg_backend)
    mi = np.asarray(mi)
    out, start = {}, 0
    for name, n in zip(names, sizes):
        ent = ent_all[start:start + n]
        m, med = offdiag_summary(mi[start:start + n, start:start + n])
        out[name] = DiversitySummary(float(ent.mean()), float(np.median(ent)), m, med, n)
        start += n
    m, med = offdiag_summary(mi)
    out["overall"] = DiversitySummary(float(ent_all.mean()), float(np.median(ent_all)), m, med,
                                      ent_all.size)
    return out


_DIRECTIONS = {
    # (measure, memorization) -> +1 if a higher value predicts a better model.
    ("entropy", "heuristic"): +1.0,   # spurious-feature memorization lowers entropy
    ("mi", "heuristic"): -1.0,        # ... and raises MI
    ("entropy", "example"): -1.0,     # label-noise memorization raises entropy
    ("mi", "example"): +1.0,          # ... and lowers MI
}


class Ranking(NamedTuple):
    """Models ranked by a diversity measure.

    Attributes:
      order: ``[M]`` model indices, predicted best first.
      scores: ``[M]`` signed scores (higher = predicted better).
      tau: Kendall τ between ``scores`` and ``metric`` (NaN if no metric given).
      pvalue: two-sided p-value of ``tau`` (NaN if no metric given).
    """

    order: np.ndarray
    scores: np.ndarray
    tau: float
    pvalue: float


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Kendall's τ-b between two score vectors (``scipy.stats.kendalltau``); returns (τ, p)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D of equal length, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError(f"need at least 2 models to compute Kendall tau, got {a.size}")
    res = scipy.stats.kendalltau(a, b)
    return float(res.statistic), float(res.pvalue)


def rank_models(values: Sequence[float], *, measure: str = "entropy",
                memorization: str = "heuristic",
                metric: Sequence[float] | None = None) -> Ranking:
    """Ranks models/checkpoints by a diversity summary, without labels.

    Direction: for suspected *heuristic* (spurious-feature) memorization prefer high entropy and
    low MI; for *example*-level memorization (label noise) prefer low entropy and high MI.

    Args:
      values: ``[M]`` per-model summary (e.g. mean entropy or mean MI in nats).
      measure: ``"entropy"`` or ``"mi"``.
      memorization: ``"heuristic"`` or ``"example"``.
      metric: optional ``[M]`` labeled metric (e.g. held-out accuracy, higher is better); if
        given, Kendall τ of the ranking against it is returned.

    Returns:
      :class:`Ranking`.
    """
    if (measure, memorization) not in _DIRECTIONS:
        raise ValueError("measure must be 'entropy' or 'mi' and memorization 'heuristic' or "
                         f"'example', got {measure!r}, {memorization!r}")
    v = np.asarray(values, float)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D [M], got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values contains NaN or Inf")
    scores = _DIRECTIONS[(measure, memorization)] * v
    order = np.argsort(-scores, kind="stable")
    tau = p = float("nan")
    if metric is not None:
        tau, p = kendall_tau(scores, metric)
    return Ranking(order, scores, tau, p)
