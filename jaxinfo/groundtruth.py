"""Ground truth for smooth unique information: exact leave-one-out (LOO) retraining.

Two references for the closed-form estimates of :mod:`jaxinfo.sui` (docs/maths/sui.md):

(a) **Exact LOO of the linearized network** (:func:`linearized_loo`, :func:`linearized_loo_kernel`).
    Brute force: for every removed sample ``i`` the closed form of linearized GD
    (:func:`jaxinfo.linearize.kernel_dynamics`) is recomputed on the ``n − 1`` remaining samples,
    with its own eigendecomposition, learning rate per sample ``lr/(n−1)`` and decay ``(n−1)λ``.
    With ``α`` the dual coefficients of the full run and ``β`` those of the LOO run (embedded
    in ``R^{nk}`` with zeros at sample ``i``), ``d = α − β``:

        w_t − w_t^{(−i)} = Jᵀ d,          ‖Δw‖² = dᵀ Θ d,
        f_t(X*) − f_t^{(−i)}(X*) = Θ* d.

    No Schur complements, no Krylov methods: ``O(n·(nk)³)`` work, the cost the fast path beats.

(b) **Real-network LOO retraining** (:func:`retrain_loo`). The actual network is trained with
    full-batch ``optax.sgd`` on

        L_m(w) = (1/Σm) Σ_j m_j ½‖f(w, x_j) − y_j‖² + (λ/2)‖w − w0‖²

    for a removal mask ``m ∈ {0,1}^n`` (``m_i = 0`` removes sample ``i``; all ones is the full
    model), the same number of steps for every model. Many masks are trained at once
    (``vmap`` over masks, ``lax.scan`` over steps, one compilation), in chunks of a static
    size, resumable from a checkpoint directory.

Both return :class:`LOOChanges`: per removed sample, ``‖w_t − w_t^{(−i)}‖²`` and the squared
change of the predictions on reference inputs (mean and sum over the inputs). These are raw
squared changes (units of weights² and outputs²); smooth unique information in nats is
``‖Δw‖²/(2σ²)`` and ``mean‖Δf‖²/(2σ_f²)``.

:func:`correlation` compares estimates with the ground truth (Pearson and Spearman).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from jaxinfo._validation import check_int_at_least, check_positive, check_supervised
from jaxinfo.linearize import check_step_size, kernel_dynamics, kernel_matrix

__all__ = [
    "LOOChanges",
    "linearized_loo_kernel",
    "linearized_loo",
    "retrain_loo",
    "Correlation",
    "correlation",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]


class LOOChanges(NamedTuple):
    """Per-sample changes caused by removing one training sample.

    ``r`` is the number of removed samples evaluated (``len(indices)``), ``m`` the number of
    reference inputs (``n − 1`` other training samples when no ``x_ref`` is given), ``k`` the
    number of outputs, ``P`` the number of parameters.

    Attributes:
      indices: ``[r]`` int, the removed training samples.
      weight_change_sq: ``[r]`` ``‖w_t − w_t^{(−i)}‖²`` (weights²).
      function_change_sq: ``[r]`` ``(1/m) Σ_{x∈X*} ‖f_t(x) − f_t^{(−i)}(x)‖²`` (outputs²).
      function_change_sq_sum: ``[r]`` the same summed over the reference inputs.
      weight_delta: ``[r, P]`` flattened ``w_t − w_t^{(−i)}`` (``ravel_pytree`` order) or ``None``.
      function_delta: ``[r, m, k]`` ``f_t(X*) − f_t^{(−i)}(X*)`` or ``None``. Without ``x_ref``
        the rows are the training inputs (the removed sample's own row is zero).
      settings: dict of the settings used.
    """

    indices: np.ndarray
    weight_change_sq: np.ndarray
    function_change_sq: np.ndarray
    function_change_sq_sum: np.ndarray
    weight_delta: np.ndarray | None
    function_delta: np.ndarray | None
    settings: dict


# ----------------------------------------------------------------------------- helpers

def _kept(i: jax.Array, n: int) -> jax.Array:
    """``[n − 1]`` indices of the samples kept when sample ``i`` is removed (static shape)."""
    j = jnp.arange(n - 1)
    return j + (j >= i)


def _check_indices(indices: Any, n: int) -> np.ndarray:
    if indices is None:
        return np.arange(n)
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be a non-empty 1-d array of sample indices, got {indices!r}")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"indices must lie in [0, {n}), got min {idx.min()} and max {idx.max()}")
    if len(np.unique(idx)) != len(idx):
        raise ValueError("indices must not repeat")
    return idx.astype(np.int64)


def _progress_bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


# ----------------------------------------------------------------------------- (a) linearized

def _linearized_loo_one(theta, r0, alpha, theta_ref, i, *, n, k, lr, t, continuous,
                        weight_decay):
    """Sample ``i`` removed: ``d = α − embed(β)``, ‖Jᵀd‖², mean/sum ‖Δf‖² and Δf ``[m, k]``."""
    rows = (_kept(i, n)[:, None] * k + jnp.arange(k)[None, :]).reshape(-1)  # [(n−1)k]
    beta = kernel_dynamics(theta[rows][:, rows], r0[rows], n=n - 1, lr=lr, t=t,
                           continuous=continuous, weight_decay=weight_decay).alpha[0]
    d = alpha.at[rows].add(-beta)  # α − embed(β)
    dw_sq = d @ (theta @ d)
    if theta_ref is None:
        df = (theta @ d).reshape(n, k)
        df = jnp.where((jnp.arange(n) == i)[:, None], 0.0, df)
        m = n - 1
    else:
        df = (theta_ref @ d).reshape(-1, k)
        m = df.shape[0]
    df_sum = jnp.sum(df ** 2)
    return d, dw_sq, df_sum / m, df_sum, df


_linearized_loo_one_jit = jax.jit(_linearized_loo_one, static_argnames=(
    "n", "k", "lr", "t", "continuous", "weight_decay"))


def linearized_loo_kernel(theta: jax.Array, r0: jax.Array, *, n: int, lr: float, t: Any = None,
                          continuous: bool = False, weight_decay: float = 0.0,
                          theta_ref: jax.Array | None = None, indices: Any = None,
                          return_vectors: bool = False, progress: bool = True) -> LOOChanges:
    """Brute-force exact leave-one-out of the linearized network, from precomputed kernels.

    For each removed sample ``i`` (``K`` its complement), the LOO run is
    ``kernel_dynamics(Θ_KK, r0_K, n = n−1, lr, t, λ)``, i.e. learning rate per sample
    ``lr/(n−1)`` and decay ``(n−1)λ``, with its own eigendecomposition. See the module docstring
    for how ``Δw`` and ``Δf`` follow from the dual coefficients.

    Args:
      theta: ``[nk, nk]`` training NTK Θ (sample-major) or ``[n, n, k, k]``.
      r0: ``[nk]`` or ``[n, k]`` initial residuals ``f(w0, X) − Y``.
      n: number of training samples.
      lr: learning rate of the averaged loss (> 0).
      t: number of steps (discrete), time (continuous) or ``None`` for t = ∞; one value.
      continuous: gradient flow instead of discrete GD.
      weight_decay: λ ≥ 0.
      theta_ref: ``[mk, nk]`` reference-vs-training NTK Θ* (or ``[m, n, k, k]``). ``None``: the
        reference inputs are the ``n − 1`` other training samples.
      indices: samples to remove (default: all ``n``).
      return_vectors: also return ``Δf`` on the reference inputs (``weight_delta`` stays
        ``None`` at kernel level: it needs J, see :func:`linearized_loo`).
      progress: tqdm bar over removed samples.

    Returns:
      :class:`LOOChanges` (``weight_change_sq`` in weights², function changes in outputs²).
      ``settings["dual_delta"]`` holds ``d = α − β`` as ``[r, nk]`` (for forming ``Jᵀd``).
    """
    check_positive("lr", lr)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    check_int_at_least("n", n, 2)
    theta = jnp.asarray(kernel_matrix(jnp.asarray(theta)))
    nk = theta.shape[0]
    if theta.ndim != 2 or theta.shape[1] != nk or nk % n:
        raise ValueError(f"theta must be a square [n·k, n·k] kernel with n={n}, got {theta.shape}")
    k = nk // n
    r0 = jnp.asarray(r0, theta.dtype).reshape(-1)
    if r0.shape[0] != nk:
        raise ValueError(f"r0 must have n·k = {nk} entries, got {r0.shape[0]}")
    if theta_ref is not None:
        theta_ref = jnp.asarray(kernel_matrix(jnp.asarray(theta_ref)), theta.dtype)
        if theta_ref.ndim != 2 or theta_ref.shape[1] != nk or theta_ref.shape[0] % k:
            raise ValueError(f"theta_ref must be [m·k, {nk}], got {theta_ref.shape}")
    if t is not None and np.ndim(t) != 0:
        raise ValueError(f"t must be a single time (or None for t = ∞), got {t!r}")
    idx = _check_indices(indices, n)

    full = kernel_dynamics(theta, r0, n=n, lr=lr, t=t, continuous=continuous,
                           weight_decay=weight_decay, theta_ref=theta_ref)
    alpha = full.alpha[0]  # [nk]
    # The LOO runs use η = lr/(n−1) on the kernel Θ_KK + (n−1)λI; λ_max(Θ_KK) ≤ λ_max(Θ)
    # (interlacing), so one check of the largest LOO step suffices.
    check_step_size(float(full.eigenvalues[-1]) - n * weight_decay + (n - 1) * weight_decay,
                    lr, n - 1, continuous=continuous)

    one = _linearized_loo_one_jit
    kw = dict(n=n, k=k, lr=lr, t=t, continuous=continuous, weight_decay=weight_decay)

    out = {key: [] for key in ("d", "w", "f", "fs", "df")}
    bar = _progress_bar(len(idx), "linearized LOO", progress)
    for i in idx:
        d, w, f, fs, df = one(theta, r0, alpha, theta_ref, jnp.asarray(i), **kw)
        out["d"].append(np.asarray(d))
        out["w"].append(float(w))
        out["f"].append(float(f))
        out["fs"].append(float(fs))
        if return_vectors:
            out["df"].append(np.asarray(df))
        bar.update(1)
    bar.close()
    settings = dict(kind="linearized", n=n, k=k, lr=lr, t=t, continuous=continuous,
                    weight_decay=weight_decay, dual_delta=np.stack(out["d"]))
    return LOOChanges(idx, np.asarray(out["w"]), np.asarray(out["f"]), np.asarray(out["fs"]),
                      None, np.stack(out["df"]) if return_vectors else None, settings)


def linearized_loo(apply_fn: ApplyFn, params: Any, x_train: jax.Array, y_train: jax.Array,
                   x_ref: jax.Array | None = None, *, lr: float, t: Any = None,
                   continuous: bool = False, weight_decay: float = 0.0, indices: Any = None,
                   return_vectors: bool = False, batch_size: int | None = None,
                   progress: bool = True) -> LOOChanges:
    """Brute-force exact leave-one-out of the linearized network ``f_lin`` around ``params``.

    Computes the NTK once (:func:`jaxinfo.ntk.empirical_ntk`, ``trace_axes=()``) and calls
    :func:`linearized_loo_kernel`. With ``return_vectors`` the weight differences
    ``Jᵀ d`` are formed with one VJP per removed sample.

    Args:
      apply_fn: ``apply_fn(params, x) -> [batch, k]``.
      params: weights w0 the network is linearized around (and training starts from).
      x_train: ``[n, ...]``; y_train: ``[n, k]`` (``[n]`` when k = 1).
      x_ref: ``[m, ...]`` reference inputs, or ``None`` (the other training samples).
      lr, t, continuous, weight_decay: as in :func:`jaxinfo.linearize.linearized_training`.
      indices: samples to remove (default all).
      return_vectors: also return ``weight_delta [r, P]`` and ``function_delta [r, m, k]``.
      batch_size: block size for the NTK.
      progress: tqdm bar.

    Returns:
      :class:`LOOChanges`.
    """
    from jaxinfo.ntk import empirical_ntk

    x_train, f0, y, x_ref = check_supervised(apply_fn, params, x_train, y_train, x_ref)
    n = x_train.shape[0]
    kw = dict(trace_axes=(), batch_size=batch_size)
    theta = kernel_matrix(empirical_ntk(apply_fn, params, x_train, **kw))
    theta_ref = None
    if x_ref is not None:
        theta_ref = kernel_matrix(empirical_ntk(apply_fn, params, x_ref, x_train, **kw))
    res = linearized_loo_kernel(theta, f0 - y, n=n, lr=lr, t=t, continuous=continuous,
                                weight_decay=weight_decay, theta_ref=theta_ref, indices=indices,
                                return_vectors=return_vectors, progress=progress)
    if not return_vectors:
        return res
    _, vjp_fn = jax.vjp(lambda p: apply_fn(p, x_train), params)
    k = f0.shape[1]
    dual = res.settings["dual_delta"].reshape(-1, n, k)
    wd = np.stack([np.asarray(ravel_pytree(vjp_fn(jnp.asarray(d, f0.dtype))[0])[0])
                   for d in dual])
    return res._replace(weight_delta=wd)


# ----------------------------------------------------------------------------- (b) real network

def _mse_masked(apply_fn, params, params0, x, y, mask, weight_decay):
    """``(1/Σm) Σ_j m_j ½‖f(w, x_j) − y_j‖² + (λ/2)‖w − w0‖²``."""
    res = apply_fn(params, x) - y
    data = 0.5 * jnp.sum(mask * jnp.sum(res ** 2, axis=-1)) / jnp.sum(mask)
    if weight_decay:
        sq = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(params),
                                                       jax.tree_util.tree_leaves(params0)))
        data = data + 0.5 * weight_decay * sq
    return data


def _make_trainer(apply_fn, lr, steps, weight_decay):
    """Returns ``train(params0, x, y, masks [c, n]) -> final params with a leading [c] axis``."""
    opt = optax.sgd(lr)

    def train_one(params0, x, y, mask):
        grad_fn = jax.grad(_mse_masked, argnums=1)

        def step(carry, _):
            p, s = carry
            g = grad_fn(apply_fn, p, params0, x, y, mask, weight_decay)
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), None

        (p, _), _ = jax.lax.scan(step, (params0, opt.init(params0)), None, length=steps)
        return p

    return jax.vmap(train_one, in_axes=(None, None, None, 0))


def _changes(apply_fn, params_full, params_loo, x_eval, removed, exclude_removed):
    """Squared changes of one LOO model (vmapped over the chunk by the caller)."""
    flat_full = ravel_pytree(params_full)[0]
    dw = flat_full - ravel_pytree(params_loo)[0]
    df = apply_fn(params_full, x_eval) - apply_fn(params_loo, x_eval)  # [m, k]
    if exclude_removed:
        df = jnp.where((jnp.arange(df.shape[0]) == removed)[:, None], 0.0, df)
    m = df.shape[0] - (1 if exclude_removed else 0)
    dfs = jnp.sum(df ** 2)
    return jnp.sum(dw ** 2), dfs / m, dfs, dw, df


def _build(apply_fn, lr, steps, weight_decay, exclude):
    train = jax.jit(_make_trainer(apply_fn, lr, steps, weight_decay))
    changes = jax.jit(jax.vmap(
        lambda pf, pl, xe, r: _changes(apply_fn, pf, pl, xe, r, exclude),
        in_axes=(None, 0, None, 0)))
    return train, changes


_COMPILED: dict = {}


def _compiled(apply_fn, lr, steps, weight_decay, exclude):
    """Jitted ``(train, changes)``, cached per settings so repeated calls compile once."""
    key = (apply_fn, lr, steps, weight_decay, exclude)
    try:
        hash(key)
    except TypeError:  # unhashable apply_fn: no caching
        return _build(*key)
    if key not in _COMPILED:
        if len(_COMPILED) > 16:
            _COMPILED.clear()
        _COMPILED[key] = _build(*key)
    return _COMPILED[key]


def _fingerprint(**kw) -> str:
    h = hashlib.sha256()
    for key in sorted(kw):
        v = kw[key]
        if isinstance(v, (np.ndarray, jax.Array)):
            a = np.ascontiguousarray(np.asarray(v))
            h.update(f"{key}:{a.dtype}:{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(f"{key}={v!r};".encode())
    return h.hexdigest()[:16]


def retrain_loo(apply_fn: ApplyFn, params: Any, x_train: jax.Array, y_train: jax.Array,
                x_ref: jax.Array | None = None, *, lr: float, steps: int,
                weight_decay: float = 0.0, indices: Any = None, chunk_size: int = 16,
                dtype: Any = None, return_vectors: bool = False,
                checkpoint_dir: str | os.PathLike | None = None,
                progress: bool = True) -> LOOChanges:
    """Real-network leave-one-out retraining, vmapped over removal masks.

    Every model starts at ``params`` and takes ``steps`` full-batch ``optax.sgd(lr)`` steps on
    the masked loss of the module docstring (mean over the kept samples, so the effective
    learning rate per sample is ``lr/(n−1)`` for LOO and ``lr/n`` for the full model). The full
    model is trained by the same compiled function (a chunk of all-ones masks), so full and LOO
    models share one code path and one round-off pattern.

    Work is split in chunks of ``chunk_size`` removed samples (the last chunk is padded with
    all-ones masks, so one shape is compiled). With ``checkpoint_dir`` the full model is saved
    as ``full.npz`` and each finished chunk as ``chunk_XXXXX.npz``; a later call with the same
    settings loads them instead of recomputing (a ``config.json`` fingerprint guards against
    mixing settings; a mismatch raises ``ValueError``).

    Round-off: removing one sample out of hundreds changes the weights by a small fraction of
    the training displacement, so float32 round-off accumulated over the steps can compete
    with the signal. Pass ``dtype=jnp.float64`` (requires ``jax_enable_x64``) to check; the
    cost is about 2× on CPU.

    Args:
      apply_fn: ``apply_fn(params, x) -> [batch, k]``.
      params: initial weights w0 (pytree).
      x_train: ``[n, ...]``; y_train: ``[n, k]`` (``[n]`` when k = 1).
      x_ref: ``[m, ...]`` reference inputs; ``None``: the other ``n − 1`` training samples.
      lr: learning rate (> 0). steps: number of full-batch steps (≥ 1).
      weight_decay: λ ≥ 0 in ``(λ/2)‖w − w0‖²``.
      indices: samples to remove (default all ``n``), order kept.
      chunk_size: models trained per compiled call (memory ~ chunk_size × model + activations).
      dtype: cast params and data to this floating dtype (default: params' dtype).
      return_vectors: also return ``weight_delta [r, P]`` and ``function_delta [r, m, k]``
        (not checkpointed: with vectors requested, chunks are recomputed).
      checkpoint_dir: folder for resumable chunks (created if missing).
      progress: tqdm bar over chunks.

    Returns:
      :class:`LOOChanges` relative to the full-data model trained identically;
      ``settings["full_loss"]`` is the full model's final training loss.
    """
    check_positive("lr", lr)
    check_int_at_least("steps", steps, 1)
    check_int_at_least("chunk_size", chunk_size, 1)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if dtype is not None:
        dtype = jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        if dtype == jnp.float64 and not jax.config.jax_enable_x64:
            raise ValueError("dtype=float64 needs float64 enabled: wrap the call in "
                             "`with jax.enable_x64(True):` or set jax_enable_x64")
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
        x_train = jnp.asarray(x_train, dtype)
        y_train = jnp.asarray(y_train, dtype)
        if x_ref is not None:
            x_ref = jnp.asarray(x_ref, dtype)
    x, _, y, x_ref = check_supervised(apply_fn, params, x_train, y_train, x_ref)
    n = x.shape[0]
    idx = _check_indices(indices, n)
    exclude = x_ref is None
    x_eval = x if exclude else x_ref
    fdtype = ravel_pytree(params)[0].dtype

    train, changes = _compiled(apply_fn, float(lr), int(steps), float(weight_decay), exclude)
    take0 = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)  # noqa: E731

    ckpt = None
    if checkpoint_dir is not None:
        ckpt = Path(checkpoint_dir)
        ckpt.mkdir(parents=True, exist_ok=True)
        fp = _fingerprint(x=x, y=y, x_ref=x_ref if x_ref is not None else "none",
                          p=ravel_pytree(params)[0], lr=float(lr), steps=int(steps),
                          wd=float(weight_decay), idx=idx, chunk=int(chunk_size),
                          dtype=str(fdtype))
        cfg = ckpt / "config.json"
        if cfg.exists():
            old = json.loads(cfg.read_text()).get("fingerprint")
            if old != fp:
                raise ValueError(f"checkpoint_dir {str(ckpt)!r} holds results of different "
                                 "settings or data; use an empty folder")
        else:
            cfg.write_text(json.dumps(dict(fingerprint=fp, n=int(n), steps=int(steps),
                                           lr=float(lr), weight_decay=float(weight_decay),
                                           chunk_size=int(chunk_size), dtype=str(fdtype))))

    n_chunks = -(-len(idx) // chunk_size)
    bar = _progress_bar(n_chunks + 1, "LOO retraining", progress)

    # The full model: one chunk of all-ones masks (same compiled function as the LOO chunks).
    ones = jnp.ones((chunk_size, n), fdtype)
    full_file = None if ckpt is None else ckpt / "full.npz"
    if full_file is not None and full_file.exists():
        with np.load(full_file) as f:
            flat_full = jnp.asarray(f["params"], fdtype)
        params_full = ravel_pytree(params)[1](flat_full)
    else:
        params_full = take0(train(params, x, y, ones))
        if full_file is not None:
            _atomic_savez(full_file, params=np.asarray(ravel_pytree(params_full)[0]))
    full_loss = float(_mse_masked(apply_fn, params_full, params, x, y, jnp.ones(n, fdtype),
                                  weight_decay))
    bar.update(1)

    w, f, fs, wds, dfs = [], [], [], [], []
    for c in range(n_chunks):
        sel = idx[c * chunk_size:(c + 1) * chunk_size]
        file = None if ckpt is None else ckpt / f"chunk_{c:05d}.npz"
        if file is not None and file.exists() and not return_vectors:
            with np.load(file) as z:
                if not np.array_equal(z["indices"], sel):
                    raise ValueError(f"{file} holds other samples; use an empty checkpoint_dir")
                w.append(z["weight_change_sq"])
                f.append(z["function_change_sq"])
                fs.append(z["function_change_sq_sum"])
            bar.update(1)
            continue
        pad = chunk_size - len(sel)
        removed = np.concatenate([sel, np.full(pad, -1)])
        masks = (np.arange(n)[None, :] != removed[:, None]).astype(np.dtype(fdtype))
        params_loo = train(params, x, y, jnp.asarray(masks))
        dw_sq, df_mean, df_sum, dw, df = changes(params_full, params_loo, x_eval,
                                                 jnp.asarray(removed))
        keep = slice(0, len(sel))
        res = dict(indices=sel, weight_change_sq=np.asarray(dw_sq, np.float64)[keep],
                   function_change_sq=np.asarray(df_mean, np.float64)[keep],
                   function_change_sq_sum=np.asarray(df_sum, np.float64)[keep])
        if file is not None:
            _atomic_savez(file, **res)
        w.append(res["weight_change_sq"])
        f.append(res["function_change_sq"])
        fs.append(res["function_change_sq_sum"])
        if return_vectors:
            wds.append(np.asarray(dw)[keep])
            dfs.append(np.asarray(df)[keep])
        bar.update(1)
    bar.close()
    settings = dict(kind="retrained", n=int(n), lr=float(lr), steps=int(steps),
                    weight_decay=float(weight_decay), chunk_size=int(chunk_size),
                    dtype=str(fdtype), full_loss=full_loss)
    return LOOChanges(idx, np.concatenate(w), np.concatenate(f), np.concatenate(fs),
                      np.concatenate(wds) if return_vectors else None,
                      np.concatenate(dfs) if return_vectors else None, settings)


def _atomic_savez(path: Path, **arrays) -> None:
    """Writes ``path`` via a temporary file and a rename (no half-written checkpoints)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- comparison

class Correlation(NamedTuple):
    """Agreement of estimated and actual per-sample changes.

    Attributes:
      pearson: Pearson correlation of the raw values.
      spearman: Spearman rank correlation.
      pearson_log: Pearson correlation of ``log`` values (the log-log scatter's linearity;
        ``nan`` if a value is ≤ 0).
      n: number of samples compared.
    """

    pearson: float
    spearman: float
    pearson_log: float
    n: int


def correlation(estimated: Any, actual: Any) -> Correlation:
    """Pearson and Spearman correlation (``scipy.stats``) of ``estimated [r]`` vs ``actual [r]``.

    Raises ``ValueError`` on mismatched shapes, fewer than 3 values or non-finite values.
    """
    from scipy import stats

    e = np.asarray(estimated, np.float64).reshape(-1)
    a = np.asarray(actual, np.float64).reshape(-1)
    if e.shape != a.shape:
        raise ValueError(f"estimated and actual must have the same length, got {e.shape} and "
                         f"{a.shape}")
    if e.size < 3:
        raise ValueError(f"need at least 3 values to correlate, got {e.size}")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(a))):
        raise ValueError("estimated and actual must be finite")
    pl = float("nan")
    if np.all(e > 0) and np.all(a > 0):
        pl = float(stats.pearsonr(np.log(e), np.log(a))[0])
    return Correlation(float(stats.pearsonr(e, a)[0]), float(stats.spearmanr(e, a)[0]), pl,
                       int(e.size))
