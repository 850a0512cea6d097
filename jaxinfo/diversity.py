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
  metric), ``I = psi(k) + psi(S) - <psi(n_x + 1) + psi(n_y + 1)>``, with each variable scaled to
  unit standard deviation and a tiny Gaussian jitter against ties (as scikit-learn's
  ``mutual_info_regression``). Work ``O(N^2 S^2)``: every pair needs the ``[S, S]`` max-norm
  distances (computed in row chunks of ``sample_chunk`` so memory stays
  ``O(block_size * sample_chunk * S)``). For 768 neurons and S = 10,000 that is ~3e13 distance
  evaluations — hours on a CPU; use a neuron subset or the binned estimator there.

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
      labels: ``[S, N]`` int32 bin index in ``0..B-1`` of every activation.
      edges: ``[B+1]`` (``"global"``) or ``[B+1, N]`` (``"per_neuron"``) bin edges.
    """

    labels: jax.Array
    edges: jax.Array


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


def bin_activations(acts, *, bins: int = 100, binning: str = "global") -> BinnedActivations:
    """Assigns every activation to one of ``bins`` equal-width bins.

    Args:
      acts: ``[S, N]`` activations (finite).
      bins: number of bins ``B >= 2``.
      binning: ``"global"`` — edges from the min/max over the whole matrix (the authors'
        choice, per layer); ``"per_neuron"`` — edges from each neuron's own min/max.

    Returns:
      :class:`BinnedActivations` with ``labels`` ``[S, N]`` int32, identical to the bin index
      ``numpy.histogram(acts[:, j], bins=edges)`` assigns (maximum in the last bin).
    """
    acts = _check_acts(acts)
    bins = _check_bins(bins)
    binning = _check_binning(binning)
    labels, edges = _bin(acts, bins, binning)
    return BinnedActivations(labels, edges)


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
                   correction: str | None = None) -> jax.Array:
    """Entropy of each neuron's binned activation distribution (intra-neuron diversity).

    ``H_j = -sum_b p_jb log p_jb`` with ``p_jb`` the fraction of the ``S`` samples in bin ``b``
    (bins from :func:`bin_activations`). A constant neuron has ``H = 0``.

    Args:
      acts: ``[S, N]`` activations.
      bins: number of equal-width bins ``B >= 2`` (default 100, as the authors).
      binning: ``"global"`` (edges over the whole matrix) or ``"per_neuron"``.
      correction: ``None`` (plug-in) or ``"miller_madow"``: adds ``(m_j - 1) / (2S)`` where
        ``m_j`` is the number of non-empty bins.

    Returns:
      ``[N]`` entropies in nats.
    """
    if correction not in (None, "miller_madow"):
        raise ValueError(f"correction must be None or 'miller_madow', got {correction!r}")
    binned = bin_activations(acts, bins=bins, binning=binning)
    return _entropy_from_labels(binned.labels, _check_bins(bins), correction == "miller_madow")


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


def _ksg_prepare(acts, key, jitter):
    # Scale each neuron to unit std (ddof=1) and add a tiny jitter against ties (as sklearn).
    std = jnp.std(acts, axis=0, ddof=1)
    x = acts / jnp.where(std > 0, std, 1.0)
    scale = jnp.maximum(1.0, jnp.mean(jnp.abs(x), axis=0))
    return x + jitter * scale * jax.random.normal(key, x.shape, x.dtype)


@partial(jax.jit, static_argnames=("k", "block_size", "sample_chunk"))
def _ksg_pair_mi(xt, pi, pj, k: int, block_size: int, sample_chunk: int):
    # xt: [N, S] scaled, jittered activations. Kraskov estimator 1 per pair (i, j).
    n_neuron, s = xt.shape
    dt = xt.dtype
    n_chunks = -(-s // sample_chunk)
    s_pad = n_chunks * sample_chunk
    rows = jnp.arange(s_pad)

    def one(pair):
        x, y = xt[pair[0]], xt[pair[1]]
        xp = jnp.pad(x, (0, s_pad - s))
        yp = jnp.pad(y, (0, s_pad - s))

        def chunk(c):
            r = jax.lax.dynamic_slice(rows, (c * sample_chunk,), (sample_chunk,))
            xr = jax.lax.dynamic_slice(xp, (c * sample_chunk,), (sample_chunk,))
            yr = jax.lax.dynamic_slice(yp, (c * sample_chunk,), (sample_chunk,))
            dx = jnp.abs(xr[:, None] - x[None, :])                    # [chunk, S]
            dy = jnp.abs(yr[:, None] - y[None, :])
            d = jnp.maximum(dx, dy)
            d = jnp.where(r[:, None] == jnp.arange(s)[None, :], jnp.inf, d)  # exclude self
            eps = -jax.lax.top_k(-d, k)[0][:, -1]                      # k-th neighbour distance
            nx = jnp.sum(dx < eps[:, None], axis=1) - 1                # strictly closer, minus self
            ny = jnp.sum(dy < eps[:, None], axis=1) - 1
            val = digamma((nx + 1).astype(dt)) + digamma((ny + 1).astype(dt))
            return jnp.sum(jnp.where(r < s, val, 0.0))

        tot = jnp.sum(jax.lax.map(chunk, jnp.arange(n_chunks)))
        mi = digamma(jnp.asarray(k, dt)) + digamma(jnp.asarray(s, dt)) - tot / s
        return jnp.maximum(mi, 0.0)

    return jax.lax.map(one, (pi, pj), batch_size=block_size)


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


def pairwise_mutual_information(acts, *, method: str = "binned", bins: int = 100,
                                binning: str = "global", k: int = 3, key=None,
                                block_size: int | None = None, sample_chunk: int | None = None,
                                jitter: float | None = None, labels=None,
                                progress: bool = False) -> jax.Array:
    """Mutual information between every pair of neurons (inter-neuron diversity).

    Args:
      acts: ``[S, N]`` activations.
      method: ``"binned"`` (plug-in MI of the joint ``B x B`` histogram; equals
        ``sklearn.metrics.mutual_info_score`` of the bin labels) or ``"ksg"`` (Kraskov
        estimator 1, Chebyshev metric, ``k`` neighbours).
      bins, binning: binning for ``"binned"`` (see :func:`bin_activations`).
      k: neighbours for ``"ksg"`` (default 3); needs ``S >= k + 1``.
      key: ``jax.random`` key for the KSG jitter (required for ``"ksg"``).
      block_size: number of neuron pairs processed at once (memory
        ``O(block_size * (S + B^2))`` for binned, ``O(block_size * sample_chunk * S)`` for KSG).
        Default 16 (binned) / 4 (KSG).
      sample_chunk: KSG only: rows of the ``[S, S]`` distance matrix per step (default
        ``min(S, 1024)``).
      jitter: KSG only: jitter scale relative to the unit-std data (default ``1e-10`` in
        float64, as scikit-learn; ``1e-6`` in float32 where 1e-10 would be below resolution).
      labels: optional precomputed ``[S, N]`` int bin labels in ``0..bins-1`` (binned only;
        ``acts`` may then be ``None``) — e.g. layer-wise global bins concatenated across layers.
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
    s, n = acts.shape
    if s < k + 1:
        raise ValueError(f"acts must have at least k + 1 = {k + 1} samples (rows) for the KSG "
                         f"estimator, got S = {s}")
    if key is None:
        raise ValueError("key must be a jax.random key for method='ksg' (it seeds the jitter "
                         "that breaks ties)")
    block = 4 if block_size is None else block_size
    check_int_at_least("block_size", block, 1)
    chunk = min(s, 1024) if sample_chunk is None else sample_chunk
    check_int_at_least("sample_chunk", chunk, 1)
    if jitter is None:
        jitter = 1e-10 if acts.dtype == jnp.float64 else 1e-6
    x = _ksg_prepare(acts, key, jitter)
    return _over_pairs(n, block, acts.dtype, lambda pi, pj: _ksg_pair_mi(
        x.T, pi, pj, k, block, chunk))


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
                      block_size: int | None = None,
                      correction: str | None = None) -> dict[str, DiversitySummary]:
    """Entropy and MI summaries per layer and over all layers together.

    Entropy uses bins per layer (``binning="global"`` = edges over that layer's matrix, as the
    authors). For ``"overall"``, entropies of all neurons are pooled, and MI is computed over all
    neurons of all layers together (cross-layer pairs included; binned MI uses each layer's own
    bins).

    Args:
      layers: ``{layer_name: [S, N_l]}`` activations (same ``S`` for all layers).
      bins, binning, correction: see :func:`neuron_entropy`.
      mi_method, k, key, block_size: see :func:`pairwise_mutual_information`;
        ``mi_method=None`` skips MI (NaN in the summaries).

    Returns:
      ``{layer_name: DiversitySummary, ..., "overall": DiversitySummary}``.
    """
    if not layers:
        raise ValueError("layers must hold at least one activation matrix")
    names = list(layers)
    mats = [_check_acts(a, f"layers[{name!r}]") for name, a in layers.items()]
    sizes = [m.shape[1] for m in mats]
    ents = [np.asarray(neuron_entropy(m, bins=bins, binning=binning, correction=correction))
            for m in mats]
    # One MI matrix over all neurons; per-layer values are its diagonal blocks.
    n_all = sum(sizes)
    if mi_method is None:  # entropy only
        mi = np.full((n_all, n_all), np.nan)
    elif mi_method == "binned":
        lab = jnp.concatenate([bin_activations(m, bins=bins, binning=binning).labels
                               for m in mats], axis=1)
        mi = pairwise_mutual_information(None, labels=lab, bins=bins, block_size=block_size)
    else:
        mi = pairwise_mutual_information(jnp.concatenate(mats, axis=1), method=mi_method, k=k,
                                         key=key, block_size=block_size)
    mi = np.asarray(mi)
    out, start = {}, 0
    for name, ent, n in zip(names, ents, sizes):
        m, med = offdiag_summary(mi[start:start + n, start:start + n])
        out[name] = DiversitySummary(float(ent.mean()), float(np.median(ent)), m, med, n)
        start += n
    ent = np.concatenate(ents)
    m, med = offdiag_summary(mi)
    out["overall"] = DiversitySummary(float(ent.mean()), float(np.median(ent)), m, med, ent.size)
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
