"""Exact all-pairs KSG mutual information on the CPU, compiled with numba (optional extra).

The JAX kernel in :mod:`jaxinfo.diversity` runs anywhere JAX does; on XLA:CPU its per-sample
gathers and fixed-width windows cost ~8 ms per neuron pair at S = 10,000 on two cores. The
search below is data-dependent (it stops as soon as a bound proves the answer), which a scalar
compiled loop does well and XLA does not: ~1.5 ms per pair on the same two cores, ~5× faster
(``benchmarks/bench_diversity.py``; the KD-tree loop it replaces takes 56–79 ms). It is used
for ``method="ksg"`` on the CPU when numba is installed (``pip install numba`` or
``jaxinfo[fast]``). Both kernels are exact: they equal a KD-tree reference to round-off
(``tests/test_ksg.py``).

Kraskov–Stögbauer–Grassberger estimator 1 (Chebyshev metric, ``k`` neighbours), for the pair
of neurons ``(x, y)`` with ``S`` samples (nats):

    I = ψ(k) + ψ(S) − mean_i [ψ(n_x(i) + 1) + ψ(n_y(i) + 1)],

    ε_i = k-th smallest of max(|x_i − x_j|, |y_i − y_j|) over j ≠ i (with multiplicity),
    n_x(i) = #{j ≠ i : |x_i − x_j| ≤ ε_i⁻},   ε_i⁻ = the float just below ε_i,

as scikit-learn's ``_compute_mi_cc`` (KD-tree radius queries at ``nextafter(ε, 0)``), clipped
at 0. All arithmetic is in float64 on the given values.

Algorithm for one pair (per-neuron sorts are shared by all pairs):

1. **Strips.** The samples in ascending order of ``u`` (the neuron of the pair with the longer
   run of tied values) are cut into strips of about ``w`` consecutive positions; a cut that
   would split a run of equal ``u`` values moves to the run's end, so tied values share a
   strip (a ReLU's zeros form one strip). The cuts depend on ``u`` alone and are computed once
   per neuron. One pass over the samples in ascending ``v`` order drops each into its strip,
   so every strip comes out sorted by ``v`` (``O(S)``, no sort). A branch-free merge of each
   pair of neighbouring strips gives every point its insertion index in the strips beside it.
2. **Radius.** For each point, candidates are scanned in its own strip outwards in ``v`` order
   until ``|Δv|`` reaches the current k-th distance, then in the other strips in increasing
   order of their ``u``-gap (the distance from ``u_i`` to the strip's nearest ``u`` value),
   each from the point's insertion index outwards, until that gap reaches the k-th distance.
   Every unvisited point is then at least that far away: the radius is exact, no fallback.
   A point among many ``u`` ties finds its neighbours in its own strip; with the ties split
   across strips (the previous layout) it visited every strip of the run, each at gap 0.
3. **The other layout, for points far out in ``v``.** Trained networks' activations have
   dense cores and long tails. A point in the core of ``u`` but far out in ``v`` has a large
   radius, and its ``u``-band then spans dozens of the core's narrow strips (11 strips per
   sample on average, measured on a trained network, against 1.5 on Gaussian data). A search
   that needs more than ``switch_after`` strips besides its own is stopped; when more than
   1/16 of the samples stopped, the same layout is built with the roles swapped (strips along
   ``v``, sorted by ``u``), where such a point sits in a wide tail strip, and those points
   are searched there; otherwise they go on where they were. Either way the radius is exact:
   the Chebyshev distance is symmetric in the two coordinates.
4. **One axis, when the two neurons' scales differ.** After long training with the authors'
   L2 penalty, neurons' scales differ by orders of magnitude (median standard deviations from
   1e-8 to 1e-1 in one network). The Chebyshev distance of such a pair is the wider neuron's
   alone, so a point's neighbours are its neighbours along that neuron. In the strips every
   point's ``|Δv|`` stays below the radius and the whole strip is scanned (76 points per
   sample on a trained network, 8 on Gaussian data). ``d1`` (per neuron, once) is each
   sample's distance to its k-th nearest value along that neuron alone; a point whose ``d1``
   along one neuron exceeds ``one_axis_ratio`` times the other's (non-zero: ties stay in the
   strips, which handle them) is searched in that neuron's sorted order alone: one strip
   holding every sample, scanned outwards until the gap reaches the k-th distance. It is
   exact by the argument of step 2. A side is used for a pair only when over a quarter of
   every 16th sample qualify: on Gaussian data chance alone qualifies ~11 % of the points, no
   pair takes the path and the cost is the test; on a trained full-size network 84 % of the
   pairs take it, for 77 % of their points.
5. **Counts.** ``n_x`` and ``n_y`` from the sorted marginals: each edge is found from a
   bucketed guess (``S`` equal-width buckets per neuron) by galloping and bisection, so heavy
   tails (uneven buckets) cost ``O(log S)``, not a walk; the predicates are evaluated on the
   rounded differences ``|x_j − x_i|``, as a distance computation does.

Cost: ``O(S)`` per pair for the strips and about ``O(S·(k + √(kS)/w + log w))`` for the
search; measured in ``benchmarks/bench_diversity.py``.
"""
from __future__ import annotations

import numpy as np
from scipy.special import digamma

from jaxinfo._optional import require

__all__ = ["available", "ksg_all_pairs"]


def available() -> bool:
    """Whether numba can be imported (the compiled kernel is then used on the CPU)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


_KERNELS = None


def _kernels():
    """Compiles the kernels on first use (numba is imported only here)."""
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    nb = require("numba", "the compiled CPU kernel of the KSG estimator")
    njit, prange = nb.njit, nb.prange

    @njit(inline="always")
    def insert(top, d, k):
        """Inserts ``d`` into the ascending ``top[:k]`` (the k smallest distances so far)."""
        if d >= top[k - 1]:
            return
        i = k - 1
        while i > 0 and top[i - 1] > d:
            top[i] = top[i - 1]
            i -= 1
        top[i] = d

    @njit(inline="always")
    def first_ge(a, lo, hi, val):
        """First index in ``[lo, hi)`` with ``a[i] >= val`` (``a`` ascending there)."""
        while lo < hi:
            m = (lo + hi) >> 1
            if a[m] < val:
                lo = m + 1
            else:
                hi = m
        return lo

    @njit(inline="always")
    def scan(sv, su, lo, hi, right, left, vp, up, top, k):
        """Scans one strip (``[lo, hi)``, sorted by ``v``) from ``right`` up and ``left`` down
        while ``|Δv|`` is below the current k-th distance."""
        r = right
        while r < hi:
            dv = sv[r] - vp
            if dv >= top[k - 1]:
                break
            du = abs(su[r] - up)
            insert(top, du if du > dv else dv, k)
            r += 1
        r = left
        while r >= lo:
            dv = vp - sv[r]
            if dv >= top[k - 1]:
                break
            du = abs(su[r] - up)
            insert(top, du if du > dv else dv, k)
            r -= 1

    @njit(inline="always")
    def beyond(sv, j, x, ep, upper):
        """The edge predicates on the rounded differences: ``sv_j − x > ep`` (``upper``) or
        ``x − sv_j <= ep``; each is monotone (false, then true) in ``j`` over sorted ``sv``."""
        return sv[j] - x > ep if upper else x - sv[j] <= ep

    @njit(inline="always")
    def first_true(sv, x, ep, g, lo, hi, upper):
        """First ``j`` in ``(lo, hi]`` where :func:`beyond` holds, given that it holds at
        ``hi`` (``hi`` may be one past the array). Gallops from the guess ``g`` and bisects:
        ``O(log distance)``; the predicate is never evaluated at ``lo`` or ``hi``."""
        g = min(max(g, lo + 1), hi)
        if g == hi or beyond(sv, g, x, ep, upper):  # the edge is at or left of g
            right, step = g, 1
            while True:
                left = right - step
                if left <= lo:
                    left = lo
                    break
                if not beyond(sv, left, x, ep, upper):
                    break
                right, step = left, 2 * step
        else:                                        # right of g
            left, step = g, 1
            while True:
                right = left + step
                if right >= hi:
                    right = hi
                    break
                if beyond(sv, right, x, ep, upper):
                    break
                left, step = right, 2 * step
        while right - left > 1:                      # false at left (or lo), true at right
            m = (left + right) >> 1
            if beyond(sv, m, x, ep, upper):
                right = m
            else:
                left = m
        return right

    @njit(inline="always")
    def counts(sv, order, e, lo, inv_h, bstart, out):
        """``out[i] = #{j : |sv_j − x_i| <= e_i}`` (self included) for every sample ``i``,
        visiting the samples in sorted order (``sv`` ascending, ``order`` its argsort). The
        two edges are found from a bucketed guess by galloping, so a poor guess (heavy tails,
        where the equal-width buckets are uneven) costs a logarithm, not a walk."""
        nbk = bstart.shape[0] - 1
        for p in range(sv.shape[0]):
            x = sv[p]
            ep = e[order[p]]
            f = (x - ep - lo) * inv_h                # a: first j with x − sv_j <= e (≤ p)
            a = first_true(sv, x, ep, bstart[int(min(f, nbk))] if f > 0 else 0, -1, p, False)
            f = (x + ep - lo) * inv_h                # b: first j with sv_j − x > e (or S)
            b = first_true(sv, x, ep, bstart[int(min(f, nbk))] if f > 0 else 0, p,
                           sv.shape[0], True)
            out[order[p]] = b - a

    @njit(inline="always")
    def exact_radius(sv, su, u_sorted, starts, ns, g, pos, nxt, prv, top, k, limit):
        """The k-th distance of the point at ``pos`` (strip ``g``) by the data-dependent
        search: its own strip outwards in ``v``, then the other strips by ``u``-gap; -1 when
        more than ``limit`` other strips would be needed."""
        inf = np.inf
        for t in range(k):
            top[t] = inf
        vp, up = sv[pos], su[pos]
        scan(sv, su, starts[g], starts[g + 1], pos + 1, pos - 1, vp, up, top, k)
        left, right = g - 1, g + 1
        visits = 0
        while True:
            gl = up - u_sorted[starts[left + 1] - 1] if left >= 0 else inf
            gr = u_sorted[starts[right]] - up if right < ns else inf
            if gl <= gr:
                if gl >= top[k - 1]:
                    break
                h = left
                left -= 1
            else:
                if gr >= top[k - 1]:
                    break
                h = right
                right += 1
            visits += 1
            if visits > limit:
                return -1.0
            h0, h1 = starts[h], starts[h + 1]
            if h == g + 1:
                start = nxt[pos]
            elif h == g - 1:
                start = prv[pos]
            else:
                start = first_ge(sv, h0, h1, vp)
            scan(sv, su, h0, h1, start, start - 1, vp, up, top, k)
        return top[k - 1]

    @njit(inline="always")
    def layout(u_vals, u_strip, starts, ns, v_sorted, v_order, sv, su, sid, where, fill, nxt,
               prv):
        """Strips along ``u``, each sorted by ``v``, and the neighbour insertion indices."""
        for g in range(ns):
            fill[g] = starts[g]
        for q in range(u_vals.shape[0]):   # one pass in v order: strips come out sorted by v
            i = v_order[q]
            g = u_strip[i]
            pos = fill[g]
            fill[g] = pos + 1
            sv[pos] = v_sorted[q]
            su[pos] = u_vals[i]
            sid[pos] = i
            where[i] = pos
        for g in range(ns - 1):            # insertion indices between neighbouring strips
            i, a1 = starts[g], starts[g + 1]
            j, b1 = a1, starts[g + 2]
            while i < a1 and j < b1:       # branch-free merge: the last write is the one kept
                nxt[i] = j
                prv[j] = i
                take = int(sv[i] <= sv[j])
                i += take
                j += 1 - take
            for t in range(i, a1):
                nxt[t] = b1
            for t in range(j, b1):
                prv[t] = a1

    @njit(inline="always")
    def one_axis(w_sorted, w_order, o_vals, ch, c, buf, eps, top, k):
        """The k-th distance of every point with ``ch == c`` by one scan of ``w``'s sorted
        order outwards from the point (one strip holding every sample, sorted by ``w``)."""
        s = w_sorted.shape[0]
        for p in range(s):
            buf[p] = o_vals[w_order[p]]
        for p in range(s):
            i = w_order[p]
            if ch[i] == c:
                for t in range(k):
                    top[t] = np.inf
                scan(w_sorted, buf, 0, s, p + 1, p - 1, w_sorted[p], buf[p], top, k)
                eps[i] = np.nextafter(top[k - 1], 0.0)

    @njit(nogil=True)
    def one_axis_plan(u_d1, v_d1, ratio, ch):
        """Which points are searched along one axis: ``ch[i]`` = 1 (``u``'s sorted order),
        2 (``v``'s) or 0 (the strips). A side is used when over a quarter of every 16th
        sample qualify for it (its k-th neighbour distance more than ``ratio`` times the
        other's, which is not zero: ties are the strips' business). Returns ``(run_u, run_v,
        n_strips)``; ``ch`` is written only when a side is used."""
        s = u_d1.shape[0]
        m = m_u = m_v = 0
        for i in range(0, s, 16):
            a, b = u_d1[i], v_d1[i]
            m += 1
            if a > ratio * b and b > 0:
                m_u += 1
            elif b > ratio * a and a > 0:
                m_v += 1
        run_u, run_v = m_u * 4 > m, m_v * 4 > m
        n_strips = s
        if run_u or run_v:
            n_strips = 0
            for i in range(s):
                a, b = u_d1[i], v_d1[i]
                if run_u and a > ratio * b and b > 0:
                    ch[i] = 1
                elif run_v and b > ratio * a and a > 0:
                    ch[i] = 2
                else:
                    ch[i] = 0
                    n_strips += 1
        return run_u, run_v, n_strips

    @njit(nogil=True)
    def pair_mi(u_vals, u_sorted, u_order, u_strip, u_starts, u_ns, u_lo, u_ih, u_bs, u_d1,
                v_vals, v_sorted, v_order, v_strip, v_starts, v_ns, v_lo, v_ih, v_bs, v_d1,
                k, psi, const, limit, ratio, sv, su, sid, fill, nxt, prv, tv, tu, tid, twhere,
                tfill, tnxt, tprv, todo, eps, cu, cv, top, ch):
        s = u_vals.shape[0]
        run_u, run_v, n_strips = one_axis_plan(u_d1, v_d1, ratio, ch)
        if run_u:
            one_axis(u_sorted, u_order, v_vals, ch, 1, tu, eps, top, k)
        if run_v:
            one_axis(v_sorted, v_order, u_vals, ch, 2, tu, eps, top, k)
        n_todo = 0
        if n_strips > 0:                   # (positions are needed in the swapped layout only)
            layout(u_vals, u_strip, u_starts, u_ns, v_sorted, v_order, sv, su, sid, twhere,
                   fill, nxt, prv)
        for g in range(u_ns if n_strips > 0 else 0):
            for pos in range(u_starts[g], u_starts[g + 1]):
                if n_strips < s and ch[sid[pos]] != 0:
                    continue               # done along one axis
                rk = exact_radius(sv, su, u_sorted, u_starts, u_ns, g, pos, nxt, prv, top, k,
                                  limit)
                if rk < 0.0:               # many strips of u: left for the second pass
                    todo[n_todo] = pos
                    n_todo += 1
                else:
                    eps[sid[pos]] = np.nextafter(rk, 0.0)
        if n_todo * 16 > s:                # over 1/16 of them: search the strips of v
            layout(v_vals, v_strip, v_starts, v_ns, u_sorted, u_order, tv, tu, tid, twhere,
                   tfill, tnxt, tprv)
            for t in range(n_todo):
                i = sid[todo[t]]
                rk = exact_radius(tv, tu, v_sorted, v_starts, v_ns, v_strip[i], twhere[i], tnxt,
                                  tprv, top, k, s)
                eps[i] = np.nextafter(rk, 0.0)
        else:                              # a few: go on in the strips of u
            for t in range(n_todo):
                pos = todo[t]
                rk = exact_radius(sv, su, u_sorted, u_starts, u_ns, u_strip[sid[pos]], pos, nxt,
                                  prv, top, k, s)
                eps[sid[pos]] = np.nextafter(rk, 0.0)
        counts(u_sorted, u_order, eps, u_lo, u_ih, u_bs, cu)
        counts(v_sorted, v_order, eps, v_lo, v_ih, v_bs, cv)
        acc = 0.0
        for i in range(s):
            acc += psi[cu[i] - 1] + psi[cv[i] - 1]
        mi = const - acc / s
        return mi if mi > 0.0 else 0.0

    @njit(parallel=True)
    def pairs_mi(vals, sorted_vals, order, strip_of, starts, nstrips, maxtie, lo, ih, bs, d1,
                 pi, pj, k, psi, const, block, limit, ratio):
        s = vals.shape[1]
        p = pi.shape[0]
        out = np.empty(p)
        for blk in prange((p + block - 1) // block):
            m = starts.shape[1]
            sv, su, tv, tu = np.empty(s), np.empty(s), np.empty(s), np.empty(s)
            sid, nxt, prv = np.empty(s, np.int64), np.empty(s, np.int64), np.empty(s, np.int64)
            tid, twhere, tnxt, tprv = (np.empty(s, np.int64), np.empty(s, np.int64),
                                       np.empty(s, np.int64), np.empty(s, np.int64))
            fill, tfill = np.empty(m, np.int64), np.empty(m, np.int64)
            todo = np.empty(s, np.int64)
            eps = np.empty(s)
            cu, cv = np.empty(s, np.int64), np.empty(s, np.int64)
            top = np.empty(k)
            ch = np.empty(s, np.int8)
            for c in range(blk * block, min(p, (blk + 1) * block)):
                a, b = pi[c], pj[c]
                if maxtie[b] > maxtie[a]:  # strips along the neuron with more ties first
                    a, b = b, a
                out[c] = pair_mi(vals[a], sorted_vals[a], order[a], strip_of[a], starts[a],
                                 nstrips[a], lo[a], ih[a], bs[a], d1[a],
                                 vals[b], sorted_vals[b], order[b], strip_of[b], starts[b],
                                 nstrips[b], lo[b], ih[b], bs[b], d1[b],
                                 k, psi, const, limit, ratio, sv, su, sid, fill, nxt, prv,
                                 tv, tu, tid, twhere, tfill, tnxt, tprv, todo, eps, cu, cv,
                                 top, ch)
        return out

    _KERNELS = {"pairs_mi": pairs_mi, "one_axis_plan": one_axis_plan}
    return _KERNELS


def _tables(x: np.ndarray, w: int, k: int = 3):
    """Per-neuron sorts and strips, shared by all pairs.

    Args:
      x: ``[S, N]`` activations.
      w: strip width in sorted positions.
      k: the estimator's neighbours (for ``d1``).

    Returns:
      ``vals``, ``sorted`` ``[N, S]`` float64; ``order`` ``[N, S]`` (argsort); ``strip_of``
      ``[N, S]`` (each sample's strip when the neuron is the strip axis); ``starts``
      ``[N, ⌈S/w⌉ + 1]`` (strip starts in sorted positions, padded with ``S``); ``nstrips``,
      ``maxtie`` (longest run of equal values) ``[N]``; the count buckets ``lo``, ``inv_h``
      ``[N]`` and ``bstart`` ``[N, S + 1]``; ``d1`` ``[N, S]`` float32, each sample's distance
      to its k-th nearest other value of the neuron (the one-axis test of the search).

    A strip boundary falls every ``w`` sorted positions, moved forward to the end of the run
    of equal values it would cut: tied values always share a strip, so a point among many
    ties (a ReLU's zeros) finds its neighbours in one strip, sorted by the other neuron.
    """
    vals = np.ascontiguousarray(np.asarray(x, np.float64).T)
    n, s = vals.shape
    order = np.argsort(vals, axis=1, kind="stable")
    sv = np.ascontiguousarray(np.take_along_axis(vals, order, axis=1))
    new = np.ones((n, s), bool)
    new[:, 1:] = sv[:, 1:] != sv[:, :-1]
    maxtie = np.empty(n, np.int64)
    nstrips = np.empty(n, np.int64)
    starts = np.full((n, -(-s // w) + 1), s, np.int64)
    strip_of = np.empty((n, s), np.int64)
    for r in range(n):
        runs = np.append(np.flatnonzero(new[r]), s)   # where each run of equal values starts
        maxtie[r] = np.diff(runs).max()
        b = np.unique(runs[np.searchsorted(runs, np.arange(0, s, w))])
        b = b[b < s]                                  # a run may end at the last cut
        nstrips[r] = len(b)
        starts[r, :len(b)] = b
        strip_of[r, order[r]] = np.repeat(np.arange(len(b)), np.diff(np.append(b, s)))
    lo = sv[:, 0].copy()
    span = sv[:, -1] - lo
    inv_h = np.where(span > 0, s / np.where(span > 0, span, 1.0), 0.0)  # S buckets per neuron
    edges = lo[:, None] + np.arange(s + 1)[None, :] / np.where(inv_h > 0, inv_h, 1.0)[:, None]
    bstart = np.stack([np.searchsorted(sv[r], edges[r], side="left") for r in range(n)])
    kth = np.full((n, s), np.inf)      # in sorted positions: the best window of k + 1 values
    for left in range(k + 1):          # position p, window [p − left, p − left + k]
        p = slice(left, s - k + left)
        d = np.maximum(sv[:, p] - sv[:, :s - k], sv[:, k:] - sv[:, p])
        np.minimum(kth[:, p], d, out=kth[:, p])
    d1 = np.empty((n, s), np.float32)
    np.put_along_axis(d1, order, kth.astype(np.float32), axis=1)
    return (vals, sv, np.ascontiguousarray(order), strip_of, starts, nstrips, maxtie, lo, inv_h,
            bstart, d1)


def default_strip(s: int, k: int) -> int:
    """Strip width: about ``√(kS)`` positions (a power of two in [16, 512])."""
    return int(min(512, max(16, 2 ** round(np.log2(np.sqrt(k * s))))))


def ksg_all_pairs(x, *, k: int = 3, strip: int | None = None, pair_block: int = 64,
                  switch_after: int = 4, one_axis_ratio: float = 8.0) -> np.ndarray:
    """KSG-1 MI (nats, clipped at 0) between all pairs of columns of ``x``.

    Args:
      x: ``[S, N]`` array (converted to float64; no scaling or jitter here).
      k: neighbours (``S >= k + 1``).
      strip: strip width in positions (default :func:`default_strip`); any value gives the
        same result, only the speed changes.
      pair_block: pairs per parallel work item (threads: numba's default, one per core).
      switch_after: a point whose search needs more than this many strips besides its own is
        searched again in the strips of the other neuron (or, when few points need it, in
        the same strips without limit); any value gives the same result, only the speed
        changes.
      one_axis_ratio: a point whose k-th neighbour distance along one neuron alone is more
        than this many times that along the other (and not zero) is searched in that neuron's
        sorted order alone, when over a quarter of a one-in-16 sample of the pair's points
        are; ``inf`` never does. Any value gives the same result, only the speed changes.

    Returns:
      ``[N, N]`` float64, symmetric, zero diagonal.
    """
    pairs_mi = _kernels()["pairs_mi"]
    x = np.asarray(x)
    s, n = x.shape
    w = default_strip(s, k) if strip is None else int(strip)
    i, j = np.triu_indices(n, 1)
    out = np.zeros((n, n))
    if len(i) == 0:
        return out
    tables = _tables(x, w, k)
    psi = digamma(np.arange(1, s + 1, dtype=np.float64))
    const = float(digamma(k) + digamma(s))
    mi = pairs_mi(*tables, i.astype(np.int64), j.astype(np.int64), int(k), psi, const,
                  int(pair_block), int(switch_after), float(one_axis_ratio))
    out[i, j] = mi
    out[j, i] = mi
    return out
