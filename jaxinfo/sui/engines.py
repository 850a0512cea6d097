"""Leave-one-out engines: pure, jit-able kernels over a chunk of removed samples.

Notation (``docs/maths/sui.md``): Θ ``[nk, nk]`` the training NTK (sample-major), r0 ``[nk]``
the initial residuals, λ the weight decay, D_i the mask that zeroes sample i's k rows. The
leave-one-out problem of sample i is solved on ``B_i = D_iΘD_i + (n−1)λI`` with the right-hand
side ``D_i r0`` and the step ``lr/(n−1)``; its padded solution α'_i (zeros on sample i) gives
``Δα = α'_i − α``, ``‖Δw‖² = ΔαᵀΘΔα``, ``Δf(X) = ΘΔα`` and ``Δf(X*) = Θ*Δα``.

- :func:`alpha_schur` — t = ∞, from C = (Θ + (n−1)λI)⁻¹ by a k×k Schur complement per sample.
- :func:`alpha_exact` — any t, one eigendecomposition of B_i per sample (the reference).
- :func:`lanczos_run` + a gain (:func:`power_gain` or :func:`ritz_gain`) +
  :func:`lanczos_combine` — finite t, m Lanczos steps for a whole chunk at once.
- :func:`alpha_schur_columns` — the same from each sample's own k columns of C (the
  out-of-core path, :mod:`jaxinfo.sui.out_of_core`, never holds all of C).
- :func:`chunk_stats` — the per-sample quantities from the padded α' (via
  :func:`stats_from_products`, which takes ΘΔα precomputed).
- :func:`pad_problem` — the same problem padded with inert samples (one compilation across
  sizes).
- :func:`prepare` — the full problem (α, residuals, and C or the spectrum of Θ).
- :func:`loo_statistics` — all of it for every sample in one jit-able call (the core behind
  :func:`jaxinfo.unique_information_core`); the host driver (:mod:`jaxinfo.sui.driver`) runs
  the same kernels chunk by chunk with progress bars and checkpoints.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinfo.linearize import spectral_gain

_HI = lax.Precision.HIGHEST


def _mm(a, b):
    return jnp.matmul(a, b, precision=_HI)


def _blocks(nk: int, k: int) -> jax.Array:
    return jnp.arange(nk) // k


@partial(jax.jit, static_argnames=("k",))
def alpha_schur(c_inv, r0, idx, k):
    """α'_{−i} for t = ∞ from C = A⁻¹ by the k×k Schur complement. Returns ``[c, 1, nk]``.

    For R = rest, K = block i: A_RR⁻¹ r_R = v_R − C_RK C_KK⁻¹ v_K with v = C·(D_i r0) =
    C r0 − C_{:,K} r0_K (v_K = C_KR r_R, v_R = C_RR r_R).
    """
    u = _mm(c_inv, r0)
    blocks = _blocks(r0.shape[0], k)

    def one(i):
        start = i * k
        ck = lax.dynamic_slice_in_dim(c_inv, start, k, axis=1)  # [nk, k]
        v = u - _mm(ck, lax.dynamic_slice_in_dim(r0, start, k))
        ckk = lax.dynamic_slice_in_dim(ck, start, k, axis=0)  # [k, k], SPD
        z = v - _mm(ck, jnp.linalg.solve(ckk, lax.dynamic_slice_in_dim(v, start, k)))
        return -jnp.where(blocks != i, z, 0.0)

    return jax.vmap(one)(idx)[:, None, :]


@partial(jax.jit, static_argnames=("k", "continuous"))
def alpha_exact(theta, r0, idx, ts, eta, shift, k, continuous):
    """α'_{−i}(t) by an eigendecomposition of B_i = D_iΘD_i + shift·I. Returns ``[c, T, nk]``."""
    nk = r0.shape[0]
    blocks = _blocks(nk, k)
    eye = jnp.eye(nk, dtype=theta.dtype)

    def one(i):
        keep = blocks != i
        b_mat = jnp.where(keep[:, None] & keep[None, :], theta, 0.0) + shift * eye
        s, u = jnp.linalg.eigh(b_mat)
        g = spectral_gain(s, ts, eta=eta, continuous=continuous)  # [T, nk]
        coeff = _mm(u.T, jnp.where(keep, r0, 0.0))
        return -_mm(g * coeff[None, :], u.T)

    return jax.vmap(one)(idx)


@partial(jax.jit, static_argnames=("k", "m", "reorth"))
def lanczos_run(theta, r0, idx, shift, s_max, k, m, reorth):
    """m Lanczos steps on (B_i, D_i r0) for a chunk of samples at once.

    All samples of the chunk advance together: one ``[c, nk]×[nk, nk]`` matmul per step.
    Plain three-term Lanczos (no re-orthogonalisation): for f(B)b the loss of orthogonality
    only delays convergence slightly and the a-priori bound keeps holding up to round-off
    (Greenbaum 1989; Musco, Musco & Sidford 2018); re-orthogonalising would cost O(m²·nk)
    memory-bound work per sample. ``reorth=True`` (used when m reaches the dimension, i.e. tiny
    problems) re-orthogonalises fully (classical Gram–Schmidt twice), so that m = dim is exact;
    an exhausted Krylov space (β ≈ 0) is then closed by a zero block.

    Returns:
      diagonal ``[c, m]``, off-diagonal ``[c, m]`` (last entry unused) of T_m, the basis
      ``[m, c, nk]`` and ``‖b‖`` ``[c]``.
    """
    nk = r0.shape[0]
    keep = _blocks(nk, k)[None, :] != idx[:, None]  # [c, nk]
    b = jnp.where(keep, r0[None, :], 0.0)
    return lanczos_recurrence(lambda q: jnp.where(keep, _mm(q, theta), 0.0) + shift * q, b,
                              s_max, m, reorth)


def lanczos_recurrence(matvec, b, s_max, m: int, reorth: bool):
    """The Lanczos three-term recurrence for a chunk of symmetric problems at once (traceable).

    Args:
      matvec: ``q [c, d] -> B q [c, d]``, each row with its own symmetric ``B``.
      b: ``[c, d]`` starting vectors. s_max: an upper bound of the spectra (scales the
        breakdown test). m: number of steps (static). reorth: re-orthogonalise fully
        (classical Gram–Schmidt twice; used when m reaches the dimension, which is then exact).

    Returns:
      ``(diag [c, m], off [c, m], basis [m, c, d] or [0, c, d], ‖b‖ [c])``; an exhausted
      Krylov space (β ≈ 0) is closed by zero blocks.
    """
    c, d = b.shape
    bnorm = jnp.linalg.norm(b, axis=1)
    q0 = b / jnp.where(bnorm > 0, bnorm, 1.0)[:, None]
    tiny = 1e3 * d * jnp.finfo(b.dtype).eps * s_max

    def step(carry, j):
        q, q_prev, beta_prev, basis = carry
        w = matvec(q) - beta_prev[:, None] * q_prev
        a = jnp.sum(w * q, axis=1)
        w = w - a[:, None] * q
        if reorth:
            basis = basis.at[j].set(q)
            for _ in range(2):
                w = w - jnp.einsum("jc,jcn->cn",
                                   jnp.einsum("jcn,cn->jc", basis, w, precision=_HI),
                                   basis, precision=_HI)
        beta = jnp.linalg.norm(w, axis=1)
        alive = beta > tiny
        q_next = jnp.where(alive[:, None], w / jnp.where(alive, beta, 1.0)[:, None], 0.0)
        beta = jnp.where(alive, beta, 0.0)
        return (q_next, q, beta, basis), (a, beta, q)

    init = (q0, jnp.zeros_like(q0), jnp.zeros((c,), b.dtype),
            jnp.zeros((m if reorth else 0, c, d), b.dtype))
    _, (a, beta, basis) = lax.scan(step, init, jnp.arange(m))
    return a.T, beta.T, basis, bnorm


@partial(jax.jit, static_argnames=("continuous",))
def ritz_gain(ritz, vecs, ts, eta, continuous):
    """g(T_m)e₁ = V diag(g(θ)) Vᵀe₁ from the Ritz pairs. Returns ``[c, T, m]``."""
    g = jax.vmap(lambda s: spectral_gain(s, ts, eta=eta, continuous=continuous))(ritz)  # [c,T,m]
    return jnp.einsum("ctj,cij->cti", g * vecs[:, None, 0, :], vecs, precision=_HI)


@jax.jit
def power_gain(diag, off, ts, eta):
    """g(T_m)e₁ for discrete GD without eigenvectors: η Σ_{j<t} (I − ηT_m)^j e₁.

    t tridiagonal matvecs for all c samples at once (stable: the Ritz values θ lie in the
    spectrum interval, where |1 − ηθ| ≤ 1); the partial sum is recorded at every requested
    t. Returns ``[c, T, m]``.
    """
    c, m = diag.shape
    ts_int = ts.astype(jnp.int32)
    up = jnp.concatenate([off[:, :-1], jnp.zeros((c, 1), off.dtype)], axis=1)  # T[i, i+1]
    down = jnp.concatenate([jnp.zeros((c, 1), off.dtype), off[:, :-1]], axis=1)  # T[i, i−1]

    def body(j, carry):
        y, acc, out = carry
        acc = acc + eta * y
        ty = diag * y + up * jnp.roll(y, -1, axis=1) + down * jnp.roll(y, 1, axis=1)
        out = jnp.where((j + 1 == ts_int)[None, :, None], acc[:, None, :], out)
        return y - eta * ty, acc, out

    y0 = jnp.zeros((c, m), diag.dtype).at[:, 0].set(1.0)
    init = (y0, jnp.zeros_like(y0), jnp.zeros((c, ts.shape[0], m), diag.dtype))
    return lax.fori_loop(0, jnp.max(ts_int), body, init)[2]


@jax.jit
def lanczos_combine(y, basis, bnorm):
    """α' ≈ −‖b‖ Q_m y with y = g(T_m)e₁ ``[c, T, m]``. Returns ``[c, T, nk]``."""
    def acc(total, j):  # Σ_j y_j q_j, streaming over the basis once
        return total + y[:, :, j, None] * basis[j][:, None, :], None

    init = jnp.zeros((basis.shape[1], y.shape[1], basis.shape[2]), basis.dtype)
    total, _ = lax.scan(acc, init, jnp.arange(basis.shape[0]))
    return -bnorm[:, None, None] * total


@partial(jax.jit, static_argnames=("k",))
def alpha_schur_columns(c_cols, u, r0, idx, k):
    """:func:`alpha_schur` from each sample's own columns of C only (out-of-core path).

    Args:
      c_cols: ``[c, nk, k]`` the k columns ``C_{:,K}`` of C = A⁻¹ of each sample of the chunk.
      u: ``[nk]`` C r0. r0: ``[nk]``. idx: ``[c]`` samples.

    Returns:
      ``[c, 1, nk]`` padded α'_{−i} (zeros on sample i), as :func:`alpha_schur`.
    """
    blocks = _blocks(r0.shape[0], k)

    def one(ck, i):
        start = i * k
        v = u - _mm(ck, lax.dynamic_slice_in_dim(r0, start, k))
        ckk = lax.dynamic_slice_in_dim(ck, start, k, axis=0)  # [k, k], SPD
        z = v - _mm(ck, jnp.linalg.solve(ckk, lax.dynamic_slice_in_dim(v, start, k)))
        return -jnp.where(blocks != i, z, 0.0)

    return jax.vmap(one)(c_cols, idx)[:, None, :]


@partial(jax.jit, static_argnames=("k", "vectors"))
def chunk_stats(theta, theta_ref, r0, alpha, r_full, alpha_p, idx, k, vectors, n=None):
    """Per-sample quantities from the padded LOO coefficients ``alpha_p [c, T, nk]``."""
    d = alpha_p - alpha[None]  # Δα [c, T, nk]
    td = _mm(d, theta)  # Θ Δα (Θ symmetric)
    rd = None if theta_ref is None else _mm(d, theta_ref.T)
    return stats_from_products(d, td, rd, r_full, idx, k, vectors, n)


@partial(jax.jit, static_argnames=("k", "vectors"))
def stats_from_products(d, td, rd, r_full, idx, k, vectors, n=None):
    """Per-sample quantities from Δα ``[c, T, nk]``, ΘΔα ``[c, T, nk]`` and Θ*Δα
    ``[c, T, mk]`` (or ``None``); ``r_full [T, nk]`` the full run's residuals. Traceable.

    ``n`` (may be traced): the number of real samples when the problem is padded with inert
    samples (:func:`pad_problem`; their Δα, ΘΔα and residuals are zero, so only the loss
    normalisations need it); ``None``: ``nk // k``.
    """
    nk = d.shape[-1]
    n_rows = nk // k
    n = n_rows if n is None else n
    c, T, _ = d.shape
    keep = _blocks(nk, k)[None, None, :] != idx[:, None, None]  # [c, 1, nk]
    out = {"weight_change_sq": jnp.sum(d * td, axis=-1)}
    per = jnp.sum((td ** 2).reshape(c, T, n_rows, k), axis=-1)  # [c, T, n]
    others = jnp.arange(n_rows)[None, None, :] != idx[:, None, None]
    out["train_others_sq"] = jnp.sum(jnp.where(others, per, 0.0), axis=-1)
    if rd is not None:
        out["ref_sq"] = jnp.sum(rd ** 2, axis=-1)
    resid = jnp.where(keep, r_full[None] + td, 0.0)
    loss_loo = 0.5 / (n - 1) * jnp.sum(resid ** 2, axis=-1)
    loss = 0.5 / n * jnp.sum(r_full ** 2, axis=-1)
    out["train_loss_change"] = loss_loo - loss[None]
    if vectors:
        out["delta_alpha"] = d
        out["train_change"] = td.reshape(c, T, n_rows, k)
        if rd is not None:
            out["ref_change"] = rd
    return out


def pad_problem(theta, r0, theta_ref, k: int, n_pad: int, m_pad: int | None = None):
    """The problem padded to ``n_pad`` samples with inert ones (one compilation for all n ≤ n_pad).

    Θ becomes ``[[Θ, 0], [0, c·I]]`` with c = tr(Θ)/nk, the mean eigenvalue (inside
    [λ_min, λ_max], so step-size checks, Lanczos bounds and singularity tests see the real
    spectrum), r0 gets zero rows, Θ* zero columns for the padded samples and zero rows up to
    ``m_pad`` reference inputs. Every matrix function of a block-diagonal matrix is block
    diagonal and the padded right-hand sides are zero, so α, each α'_i and Δα are *exactly*
    zero on the padded entries (Cholesky and the Schur complements keep the zeros exactly; the
    eigendecomposition of the finite-t path up to round-off) and the real samples' results are
    those of the unpadded problem. Only the loss normalisations need the real n
    (:func:`stats_from_products`).

    Args:
      theta: ``[nk, nk]``; r0: ``[nk]``; theta_ref: ``[mk, nk]`` or ``None`` (NumPy arrays stay
        NumPy). k: outputs per sample. n_pad ≥ n, m_pad ≥ m (``None``: m).

    Returns:
      ``(theta [n_pad·k, n_pad·k], r0 [n_pad·k], theta_ref [m_pad·k, n_pad·k] or None)``.
    """
    xp = np if isinstance(theta, np.ndarray) else jnp
    nk, big = theta.shape[0], n_pad * k
    if big < nk:
        raise ValueError(f"cannot pad {nk // k} samples to {n_pad}")
    c = xp.trace(theta) / nk
    c = xp.where(xp.isfinite(c) & (c > 0), c, 1.0)
    theta = xp.pad(theta, ((0, big - nk), (0, big - nk)))
    pad = xp.arange(nk, big)
    if xp is np:
        theta[pad, pad] = c
    else:
        theta = theta.at[pad, pad].set(c)
    r0 = xp.pad(r0, (0, big - nk))
    if theta_ref is not None:
        rows = theta_ref.shape[0] if m_pad is None else m_pad * k
        theta_ref = xp.pad(theta_ref, ((0, rows - theta_ref.shape[0]), (0, big - nk)))
    return theta, r0, theta_ref


@jax.jit
def lambda_max(theta):
    """λ_max(Θ) by 64 power iterations (from below; used only for the step-size check)."""
    v = jnp.cos(jnp.arange(theta.shape[0], dtype=theta.dtype)) + 1.5

    def body(_, v):
        w = _mm(theta, v)
        return w / jnp.linalg.norm(w)

    v = lax.fori_loop(0, 64, body, v / jnp.linalg.norm(v))
    return v @ _mm(theta, v)


class Problem(NamedTuple):
    """The full (no sample removed) problem, as arrays.

    Attributes:
      theta: ``[nk, nk]`` Θ. r0: ``[nk]``. theta_ref: ``[mk, nk]`` Θ* or ``None``.
      alpha: ``[T, nk]`` α_t of the full run. r_full: ``[T, nk]`` residuals ``r0 + Θα_t``.
      eigvals, eigvecs: spectrum of Θ (ascending), or ``None`` on the Cholesky path.
      c_inv: ``(Θ + (n−1)λI)⁻¹`` (t = ∞ Schur path) or ``None``.
      min_pivot: smallest squared Cholesky pivot of ``Θ + (n−1)λI`` (≈ 0 when it is singular),
        or ``None``.
    """

    theta: jax.Array
    r0: jax.Array
    theta_ref: jax.Array | None
    alpha: jax.Array
    r_full: jax.Array
    eigvals: jax.Array | None
    eigvecs: jax.Array | None
    c_inv: jax.Array | None
    min_pivot: jax.Array | None


@partial(jax.jit, static_argnames=("spectral", "continuous", "zero_decay"))
def prepare(theta, r0, theta_ref, ts, lr, weight_decay, n, *, spectral: bool,
            continuous: bool, zero_decay: bool = False) -> Problem:
    """The full problem: α_t = −g_t(Θ + nλI) r0 and what the leave-one-out engines need.

    ``n`` (traced) is the number of real samples: one compilation serves every n of a padded
    size (:func:`pad_problem`).

    ``spectral=True``: one eigendecomposition of Θ (finite times, or the exact method).
    ``spectral=False`` (t = ∞ only): Cholesky factorisations, ~15× cheaper than ``eigh`` on
    CPU; ``C = (Θ + (n−1)λI)⁻¹`` is formed for the Schur complements (each sample needs its k
    columns and k×k block of C, i.e. all of C). ``zero_decay=True`` (λ known to be 0) reuses C
    for α instead of factorising Θ + nλI as well.
    """
    nk = theta.shape[0]
    eye = jnp.eye(nk, dtype=theta.dtype)
    if spectral:
        s, u = jnp.linalg.eigh(theta)
        g = spectral_gain(s + n * weight_decay, ts, eta=lr / n, continuous=continuous)
        alpha = -_mm(g * _mm(u.T, r0)[None, :], u.T)
        c_inv = min_pivot = None
    else:
        s = u = None
        chol = jnp.linalg.cholesky(theta + (n - 1) * weight_decay * eye)
        min_pivot = jnp.min(jnp.diag(chol) ** 2)
        c_inv = jax.scipy.linalg.cho_solve((chol, True), eye)
        if zero_decay:
            alpha = -_mm(c_inv, r0)[None, :]
        else:
            full = jnp.linalg.cholesky(theta + n * weight_decay * eye)
            alpha = -jax.scipy.linalg.cho_solve((full, True), r0)[None, :]
    r_full = r0[None, :] + _mm(alpha, theta)
    return Problem(theta, r0, theta_ref, alpha, r_full, s, u, c_inv, min_pivot)


def schur_inverse(prob: Problem, n: int, weight_decay) -> jax.Array:
    """C = (Θ + (n−1)λI)⁻¹: from the Cholesky path, or ``U diag(1/s) Uᵀ`` from the spectrum."""
    if prob.c_inv is not None:
        return prob.c_inv
    s = prob.eigvals + (n - 1) * weight_decay
    return _mm(prob.eigvecs / s[None, :], prob.eigvecs.T)


def loo_statistics(theta, r0, theta_ref, ts, lr, weight_decay, *, k: int, method: str,
                   continuous: bool, iterations: int = 0) -> dict:
    """Every sample's leave-one-out quantities in one traceable computation.

    Args:
      theta: ``[nk, nk]``; r0: ``[nk]``; theta_ref: ``[mk, nk]`` or ``None``; ts: ``[T]``.
      lr, weight_decay: the dynamics (may be traced).
      k: outputs per sample. method: ``"schur"`` (ts must be ∞), ``"exact"`` or
        ``"lanczos"`` (``iterations`` steps, gain by the tridiagonal eigendecomposition).
      continuous: gradient flow.

    Returns:
      :func:`chunk_stats`'s dict over all n samples plus ``"sample_loss"`` ``[T, n]``.
    """
    nk = theta.shape[0]
    n = nk // k
    prob = prepare(theta, r0, theta_ref, ts, lr, weight_decay, n,
                   spectral=method != "schur", continuous=continuous)
    idx = jnp.arange(n)
    shift = (n - 1) * weight_decay
    eta = lr / (n - 1)
    if method == "schur":
        alpha_p = alpha_schur(schur_inverse(prob, n, weight_decay), r0, idx, k)
    elif method == "exact":
        alpha_p = alpha_exact(theta, r0, idx, ts, eta, shift, k, continuous)
    elif method == "lanczos":
        diag, off, basis, bnorm = lanczos_run(theta, r0, idx, shift, prob.eigvals[-1] + shift,
                                              k, iterations, iterations >= nk - k)
        tri = jax.vmap(lambda d, o: jnp.diag(d) + jnp.diag(o[:-1], 1) + jnp.diag(o[:-1], -1))(
            diag, off)
        ritz, vecs = jnp.linalg.eigh(tri)
        alpha_p = lanczos_combine(ritz_gain(ritz, vecs, ts, eta, continuous), basis, bnorm)
    else:
        raise ValueError(f"method must be 'schur', 'exact' or 'lanczos', got {method!r}")
    out = chunk_stats(theta, theta_ref, r0, prob.alpha, prob.r_full, alpha_p, idx, k, False)
    out["sample_loss"] = 0.5 * jnp.sum(prob.r_full.reshape(len(ts), n, k) ** 2, axis=-1)
    return out
