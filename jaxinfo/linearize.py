"""Linearized networks and closed-form gradient descent on them (``docs/maths/ntk.md``).

The linearization of ``f`` around ``w0`` is ``f_lin(w, x) = f(w0, x) + J(x) (w - w0)``.
Training it with full-batch gradient descent on

    L(w) = (1/n) Σ_i ½‖f_lin(w, x_i) − y_i‖²  +  (λ/2)‖w − w0‖²

has a closed form in kernel space. With Θ = J Jᵀ (``[nk, nk]``, sample-major: row ``i·k + c``
is output ``c`` of sample ``i``), ``r0 = f(w0, X) − Y`` flattened, ``η = lr / n`` and
``Θ_λ = Θ + nλ I = U diag(s) Uᵀ``:

    α_t = −U diag(g_t(s)) Uᵀ r0,      w_t = w0 + Jᵀ α_t,
    f_t(X) = f0(X) + Θ α_t,           f_t(X*) = f0(X*) + Θ* α_t,

where the *spectral gain* g_t is

    discrete steps   g_t(s) = (1 − (1 − ηs)^t) / s
    continuous time  g_t(s) = (1 − e^{−ηts}) / s
    t = ∞            g_t(s) = 1 / s

with the limit ``g_t(0) = ηt``. Θ is never inverted explicitly. Discrete GD diverges when
``η·s_max ≥ 2``; that raises ``ValueError``. The training dynamics are one
:class:`jaxinfo.GradientDescent` (``lr``, ``t``, ``continuous``, ``weight_decay``).

Precision: the closed form runs in float64 by default whatever the kernel's dtype
(``dtype="float64"``). The pseudo-inverse at t = ∞ drops eigenvalues below
``max|s|·nk·eps``; with ``eps`` of float32 that threshold (≈1 for a 1000×1000 kernel of norm
1e4) discarded real directions of well-conditioned kernels and left training residuals of
0.7–0.9 where float64 interpolates to 1e-12.
"""
from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxinfo._types import ApplyFn
from jaxinfo._validation import check_finite, check_supervised, is_concrete
from jaxinfo.dynamics import GradientDescent, as_dynamics

__all__ = [
    "linearize",
    "spectral_gain",
    "as_times",
    "check_step_size",
    "kernel_matrix",
    "KernelDynamics",
    "kernel_dynamics",
    "residual_decay",
    "LinearizedTraining",
    "linearized_training",
]


def linearize(apply_fn: ApplyFn, params: Any) -> ApplyFn:
    """First-order Taylor model of ``apply_fn`` around ``params``.

    Returns ``f_lin(new_params, x) = f(params, x) + J(x)·(new_params − params)``, with the same
    signature as ``apply_fn``; the Jacobian-vector product is computed with ``jax.jvp`` and
    never materialised.
    """

    def f_lin(new_params: Any, x: jax.Array) -> jax.Array:
        delta = jax.tree_util.tree_map(jnp.subtract, new_params, params)
        f0, df = jax.jvp(lambda p: apply_fn(p, x), (params,), (delta,))
        return f0 + df

    return f_lin


def as_times(t: Any, *, continuous: bool) -> np.ndarray:
    """Normalises a time (or list of times) to a float64 numpy vector ``[T]``.

    ``None`` (or ``inf``) means t = ∞. Discrete times must be non-negative integers (numbers of
    steps); continuous times non-negative reals.
    """
    if t is None:
        return np.array([np.inf])
    ts = np.atleast_1d(np.asarray([np.inf if v is None else v for v in np.atleast_1d(t)],
                                  dtype=np.float64))
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError(f"t must be a number, None (t = ∞) or a 1-d sequence, got {t!r}")
    if np.any(np.isnan(ts)) or np.any(ts <= 0):
        raise ValueError(f"t must be > 0 (use None for t = ∞), got {t!r}")
    finite = ts[np.isfinite(ts)]
    if not continuous and np.any(finite != np.round(finite)):
        raise ValueError(f"t must be an integer number of steps for discrete GD, got {t!r} "
                         "(pass continuous=True for gradient-flow time)")
    return ts


def spectral_gain(s: jax.Array, ts: jax.Array, *, eta: float, continuous: bool,
                  xp: Any = jnp) -> jax.Array:
    """The spectral gain ``g_t(s)`` of closed-form linearized GD.

    Args:
      s: ``[m]`` eigenvalues of ``Θ_λ`` (units of the kernel).
      ts: ``[T]`` times: steps (discrete) or gradient-flow time (continuous); ``inf`` for t = ∞.
      eta: effective step ``lr / n``.
      continuous: gradient flow instead of discrete steps.
      xp: the array module, ``jax.numpy`` (default: traceable) or ``numpy`` (host evaluation
        without compiling anything, e.g. for the Lanczos plan's Chebyshev fits).

    Returns:
      ``[T, m]`` with ``g_t(s)`` as in the module docstring. Near ``s = 0`` the value tends to
      ``η t`` and is evaluated without cancellation (``expm1`` / ``log1p``). For t = ∞,
      eigenvalues at the round-off level of the spectrum (null directions of Θ, possible only
      when λ = 0) get ``g = 0``: their eigenvectors lie in the null space of Jᵀ, so they change
      neither weights nor predictions (pseudo-inverse).
    """
    s = xp.asarray(s)
    ts = xp.asarray(ts, s.dtype)[:, None]
    es = eta * s[None, :]
    small = xp.abs(es) < 0.5
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if continuous:
            decay = -xp.expm1(-ts * es)  # 1 - exp(-η t s)
        else:
            safe = xp.where(small, es, 0.0)
            power = xp.power(1.0 - xp.where(small, 0.0, es), xp.where(xp.isinf(ts), 1.0, ts))
            decay = xp.where(small, -xp.expm1(ts * xp.log1p(-safe)), 1.0 - power)
        s_safe = xp.where(s == 0, 1.0, s)[None, :]
        finite_gain = xp.where(s[None, :] == 0, eta * ts, decay / s_safe)
        tol = xp.max(xp.abs(s)) * s.shape[0] * xp.finfo(s.dtype).eps
        inf_gain = xp.where(xp.abs(s) > tol, 1.0 / s_safe, 0.0)
        inf_gain = xp.broadcast_to(inf_gain, finite_gain.shape)
        return xp.where(xp.isinf(ts), inf_gain, finite_gain)


def check_step_size(s_max: Any, lr: float, n: int, *, continuous: bool) -> None:
    """Raises ``ValueError`` when discrete GD diverges: ``(lr/n)·s_max ≥ 2``.

    Args:
      s_max: largest eigenvalue of ``Θ_λ = Θ + nλI``.
      lr: learning rate of the averaged loss; n: number of training samples.
    """
    if continuous or not is_concrete(s_max):
        return
    s_max = float(s_max)
    if lr / n * s_max >= 2.0:
        raise ValueError(
            f"lr={lr:g} is too large: discrete gradient descent on the linearized network "
            f"diverges because (lr/n)·λ_max(Θ + nλI) = {lr / n * s_max:.4g} ≥ 2. "
            f"Use lr < {2.0 * n / s_max:.4g}, or continuous=True.")


def kernel_matrix(theta: jax.Array) -> jax.Array:
    """Flattens a ``[n1, n2, k, k]`` NTK (``trace_axes=()``) to ``[n1·k, n2·k]``, sample-major.

    A ``[n1, n2]`` kernel (k = 1 or traced outputs) is returned unchanged.
    """
    if theta.ndim == 2:
        return theta
    if theta.ndim != 4:
        raise ValueError(f"theta must be [n1, n2] or [n1, n2, k, k], got shape {theta.shape}")
    n1, n2, k1, k2 = theta.shape
    xp = np if isinstance(theta, np.ndarray) else jnp  # host arrays stay on the host
    return xp.transpose(theta, (0, 2, 1, 3)).reshape(n1 * k1, n2 * k2)


class KernelDynamics(NamedTuple):
    """Closed-form linearized GD in kernel space.

    Attributes:
      ts: ``[T]`` times (``inf`` for t = ∞).
      alpha: ``[T, nk]`` dual coefficients α_t (w_t = w0 + Jᵀ α_t).
      train_change: ``[T, nk]`` change of the training predictions, ``Θ α_t``.
      ref_change: ``[T, mk]`` change of the reference predictions ``Θ* α_t`` (or ``None``).
      eigenvalues: ``[nk]`` eigenvalues of ``Θ_λ = Θ + nλI``, ascending.
    """

    ts: jax.Array
    alpha: jax.Array
    train_change: jax.Array
    ref_change: jax.Array | None
    eigenvalues: jax.Array


def _kernel_dynamics(theta, r0, theta_ref, ts, n, dyn):
    eta = dyn.lr / n
    nk = theta.shape[0]
    s, u = jnp.linalg.eigh(theta + n * dyn.weight_decay * jnp.eye(nk, dtype=theta.dtype))
    g = spectral_gain(s, ts, eta=eta, continuous=dyn.continuous)  # [T, nk]
    coeff = u.T @ r0  # [nk]
    alpha = -(g * coeff[None, :]) @ u.T  # [T, nk]
    train_change = alpha @ theta.T
    ref_change = None if theta_ref is None else alpha @ theta_ref.T
    return alpha, train_change, ref_change, s


_kernel_dynamics_jit = jax.jit(_kernel_dynamics, static_argnames=("n",))


def precision_scope(dtype: str | None):
    """Context for closed-form arithmetic: float64 (``jax.enable_x64``) or the input dtype."""
    if dtype not in ("float64", None):
        raise ValueError(f"dtype must be 'float64' or None (keep the input dtype), got {dtype!r}")
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def to_host64(dtype: str | None, *arrays):
    """Host float64 copies of concrete arrays when ``dtype == "float64"`` (``None`` passes)."""
    if dtype is None:
        return arrays
    return tuple(a if a is None or not is_concrete(a) else np.asarray(a, np.float64)
                 for a in arrays)


def kernel_dynamics(theta: jax.Array, r0: jax.Array, dynamics: GradientDescent, *,
                    n: int | None = None, theta_ref: jax.Array | None = None,
                    dtype: str | None = "float64") -> KernelDynamics:
    """Closed-form linearized GD from a precomputed kernel (``docs/maths/ntk.md``).

    Args:
      theta: ``[nk, nk]`` training NTK Θ, sample-major (see :func:`kernel_matrix`).
      r0: ``[n, k]`` (or ``[nk]`` with ``n``) initial residuals ``f(w0, X) − Y``.
      dynamics: :class:`jaxinfo.GradientDescent`; ``t`` may be a sequence of times.
      n: number of training samples (η = lr / n, decay term nλ); inferred from a 2-d ``r0``.
      theta_ref: ``[mk, nk]`` reference-vs-training NTK Θ* (optional).
      dtype: ``"float64"`` (default: the eigendecomposition runs in float64 whatever the
        kernel's dtype) or ``None`` (the kernel's dtype). Under ``jax.jit``/``jax.vmap`` the
        inputs' dtype is used (enable float64 around the trace for float64).

    Returns:
      :class:`KernelDynamics` (kernel units; α in units of residual / kernel), in the working
      dtype.
    """
    dyn = as_dynamics(dynamics)
    theta = jnp.asarray(theta)
    if n is None:
        n = r0.shape[0] if np.ndim(r0) == 2 else theta.shape[0]
    r0 = jnp.asarray(r0, theta.dtype).reshape(-1)
    if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
        raise ValueError(f"theta must be a square [nk, nk] matrix, got shape {theta.shape}")
    if r0.shape[0] != theta.shape[0]:
        raise ValueError(f"r0 has {r0.shape[0]} entries but theta is {theta.shape}")
    if theta.shape[0] % n:
        raise ValueError(f"n={n} does not divide the kernel size {theta.shape[0]}")
    if theta_ref is not None:
        theta_ref = jnp.asarray(theta_ref, theta.dtype)
        if theta_ref.ndim != 2 or theta_ref.shape[1] != theta.shape[0]:
            raise ValueError(f"theta_ref must be [mk, {theta.shape[0]}], got {theta_ref.shape}")
    check_finite("theta", theta)
    check_finite("r0", r0)
    ts = dyn.times() if dyn.is_concrete else jnp.atleast_1d(jnp.asarray(
        jnp.inf if dyn.t is None else dyn.t))
    if not (dyn.is_concrete and is_concrete((theta, r0, theta_ref))):
        dtype = None  # under jit/vmap: the float64 scope cannot be entered inside a trace
    with precision_scope(dtype):
        theta, r0, theta_ref = to_host64(dtype, theta, r0, theta_ref)
        theta = jnp.asarray(theta)
        alpha, train_change, ref_change, s = _kernel_dynamics_jit(
            theta, jnp.asarray(r0, theta.dtype), theta_ref, jnp.asarray(ts, theta.dtype), int(n),
            dyn)
        if dyn.is_concrete:
            check_step_size(s[-1], float(dyn.lr), int(n), continuous=dyn.continuous)
    return KernelDynamics(jnp.asarray(ts), alpha, train_change, ref_change, s)


def residual_decay(theta: jax.Array, dynamics: GradientDescent, *, n: int) -> jax.Array:
    """The residual propagator ``E_t`` of linearized GD, ``[T, nk, nk]``.

    ``E_t = (I − ηΘ_λ)^t`` (discrete), ``exp(−ηtΘ_λ)`` (continuous), ``0`` (t = ∞), formed as
    ``I − U diag(s·g_t(s)) Uᵀ`` from the eigendecomposition ``Θ_λ = U diag(s) Uᵀ``. With λ = 0
    the training residual at time t is ``E_t r0`` (the official implementation's "exp matrix").
    Dimensionless; in the kernel's dtype.
    """
    dyn = as_dynamics(dynamics)
    theta = jnp.asarray(theta)
    ts = dyn.times()
    nk = theta.shape[0]
    s, u = jnp.linalg.eigh(theta + n * dyn.weight_decay * jnp.eye(nk, dtype=theta.dtype))
    check_step_size(s[-1], dyn.lr, n, continuous=dyn.continuous)
    g = spectral_gain(s, jnp.asarray(ts, theta.dtype), eta=dyn.lr / n, continuous=dyn.continuous)
    eye = jnp.eye(nk, dtype=theta.dtype)
    return eye[None] - jnp.einsum("ij,tj,kj->tik", u, s[None, :] * g, u)
class LinearizedTraining(NamedTuple):
    """Closed-form GD of the linearized network, at each requested time.

    Attributes:
      ts: ``[T]`` times (``inf`` for t = ∞).
      train_pred: ``[T, n, k]`` predictions on the training inputs.
      ref_pred: ``[T, m, k]`` predictions on the reference inputs (``None`` without ``x_ref``).
      params: the weights ``w_t = w0 + Jᵀ α_t``: a pytree like ``params`` whose leaves carry a
        leading ``[T]`` axis.
      alpha: ``[T, n, k]`` dual coefficients.
      ntk: ``[nk, nk]`` training NTK used.
    """

    ts: jax.Array
    train_pred: jax.Array
    ref_pred: jax.Array | None
    params: Any
    alpha: jax.Array
    ntk: jax.Array


def linearized_training(apply_fn: ApplyFn, params: Any, x_train: Any, y_train: Any = None,
                        x_ref: Any = None, *, dynamics: GradientDescent,
                        batch_size: int | None = None,
                        dtype: str | None = "float64") -> LinearizedTraining:
    """Trains the linearized network in closed form (MSE, full batch; ``docs/maths/ntk.md``).

    Args:
      apply_fn: ``apply_fn(params, x) -> [batch, k]``.
      params: initial weights w0 (any pytree).
      x_train: ``[n, ...]`` training inputs (n ≥ 2), a :class:`jaxinfo.data.Dataset`, or an
        iterable of dict batches with ``"x"`` and ``"y"``.
      y_train: ``[n, k]`` targets (``[n]`` accepted when k = 1); ``None`` when ``x_train``
        carries them.
      x_ref: ``[m, ...]`` reference inputs (or batches; optional).
      dynamics: :class:`jaxinfo.GradientDescent` (``t`` may be a sequence of times).
      batch_size: samples per NTK block (bounds memory; default: the iterable's batch size).
      dtype: precision of the closed form (see :func:`kernel_dynamics`).

    Returns:
      :class:`LinearizedTraining` in the model's dtype. Weights are formed as ``w0 + Jᵀα``
      with one VJP per time, without materialising J.
    """
    from jaxinfo.ntk import empirical_ntk

    dyn = as_dynamics(dynamics)
    sup = check_supervised(apply_fn, params, x_train, y_train, x_ref)
    x_train, f0, y, x_ref = sup.x, sup.f0, sup.y, sup.x_ref
    n, k = f0.shape

    ntk_kw = dict(trace_axes=(), batch_size=batch_size or sup.batch_size)
    theta = kernel_matrix(empirical_ntk(apply_fn, params, x_train, **ntk_kw))
    theta_ref = None
    if x_ref is not None:
        theta_ref = kernel_matrix(empirical_ntk(apply_fn, params, x_ref, x_train, **ntk_kw))
    r0 = (f0 - y).reshape(-1)
    dyn_out = kernel_dynamics(theta, r0, dyn, n=n, theta_ref=theta_ref, dtype=dtype)
    T = len(dyn_out.ts)
    alpha = dyn_out.alpha.reshape(T, n, k).astype(f0.dtype)
    _, vjp_fn = jax.vjp(lambda p: apply_fn(p, x_train), params)
    deltas = jax.vmap(lambda a: vjp_fn(a)[0])(alpha)
    params_t = jax.tree_util.tree_map(lambda p, d: p[None] + d, params, deltas)
    train_pred = f0[None] + dyn_out.train_change.reshape(alpha.shape).astype(f0.dtype)
    ref_pred = None
    if x_ref is not None:
        ref_pred = apply_fn(params, x_ref)[None] + \
            dyn_out.ref_change.reshape(T, -1, k).astype(f0.dtype)
    return LinearizedTraining(dyn_out.ts, train_pred, ref_pred, params_t, alpha,
                              theta)
