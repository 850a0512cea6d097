"""Empirical neural tangent kernel (NTK) of any ``apply_fn(params, x)``.

For a network ``f(w, x)`` with outputs ``[n, *out]`` and Jacobian ``J(x) = ∂f(w, x)/∂w`` at the
given weights, the empirical NTK is

    Θ(x1, x2) = J(x1) J(x2)ᵀ        (a sum over every parameter leaf of the pytree).

Output axes follow neural-tangents' vocabulary. Axes index the output of ``f`` *including* the
batch axis 0:

- ``trace_axes``: output axes summed over (the trace of the covariance along that pair); the
  default ``(-1,)`` traces the logits axis, giving ``[n1, n2]`` for ``[n, k]`` outputs.
- ``diagonal_axes``: output axes along which only the diagonal is kept (one axis in the
  result); ``(0,)`` gives per-sample kernels Θ(x_i, x_i) and needs ``x2 = None`` or
  ``len(x1) == len(x2)``.
- every other axis ``a`` appears twice, for x1 and x2, interleaved in order:
  ``trace_axes=()`` on ``[n, k]`` outputs gives ``[n1, n2, k, k]``.

Two implementations give equal results:

- ``"jacobian"`` — per-sample Jacobians (``vmap`` of ``jacrev``), contracted with one einsum.
  Cost: about ``(n1 + n2)·K`` backward passes plus ``n1·n2·K²·P`` multiply-adds (``K`` the
  output size per sample, ``P`` the number of parameters). Memory: ``(b1 + b2)·K·P`` numbers
  for blocks of ``b`` samples. Assumes samples are processed independently (no train-mode
  batch norm), as neural-tangents' ``vmap_axes`` does.
- ``"ntvp"`` — NTK-vector products: ``Θ e = J(x1)(J(x2)ᵀ e)`` (one VJP and one JVP) for every
  basis vector ``e`` of the x2 outputs, ``batch_size`` of them at a time. Cost about
  ``n2·K·(n1 + n2)`` forward-backward passes per sample (≈ 6× the FLOPs of the contraction on a
  dense net, in small matmuls), but memory only ``batch_size·P`` plus activations: it never
  materialises a Jacobian and makes no per-sample independence assumption.

- ``"structured"`` — structured derivatives (:mod:`jaxinfo.ntk_structured`): for parameters that
  enter through dense (``dot_general``) or convolution primitives, found in the jaxpr of any
  ``apply_fn``, each layer's contribution is formed from layer inputs and output cotangents,
  ``(AAᵀ)⊙(ΔΔᵀ)``, instead of full per-sample Jacobians; other parameters fall back to the
  contraction. 50–85× faster than ``"jacobian"`` on a 196-1024-1 MLP at n = 1024 (CPU).

``"auto"`` (the cost model): ``"structured"`` when its multiply-add count
(:func:`jaxinfo.ntk_structured.structured_cost`) is below the contraction's and its largest
intermediate fits ``memory_budget``; otherwise the contraction whenever one block of
per-sample Jacobians fits ``memory_budget`` bytes (``batch_size`` samples per block, or the
whole input if ``batch_size`` is ``None``, shrunk automatically until it fits); only when a
single sample's Jacobian ``K·P`` does not fit is ``"ntvp"`` used.
"""
from __future__ import annotations

import functools
import string
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxinfo import distributed as _dist
from jaxinfo._types import DEFAULT_MEMORY_BUDGET, ApplyFn
from jaxinfo._validation import check_finite, check_int_at_least

__all__ = ["empirical_ntk", "empirical_ntk_fn", "ntk_vector_product"]

_IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")
# neural-tangents' NtkImplementation enum values.
_NT_IMPLEMENTATIONS = {0: "auto", 1: "jacobian", 2: "ntvp", 3: "structured"}
# Basis vectors per NTK-vector-product batch. Small batches keep the [chunk, n, width]
# intermediates in cache: on CPU, 8 was 30x faster than 256 for a 512-wide MLP at n = 256.
_NTVP_CHUNK = 8
# Symmetric kernels Θ(x, x) of at least this many samples are contracted block-triangularly.
_SYMMETRIC_MIN_N = 64
_SYMMETRIC_PARTS = 4


# ----------------------------------------------------------------------------- axes

def _canonical_axes(axes: Sequence[int] | int, ndim: int, name: str) -> tuple[int, ...]:
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise ValueError(f"{name} entries must be output axes in [-{ndim}, {ndim}), got {a!r} "
                             f"for outputs with {ndim} axes (batch axis included)")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated axes: {axes}")
    return tuple(sorted(out))


def _check_axes(out_ndim: int, n1: int, n2: int, trace_axes, diagonal_axes
                ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Canonical ``(trace, diag)`` axes for outputs with ``out_ndim`` axes (batch included)."""
    trace = _canonical_axes(trace_axes, out_ndim, "trace_axes")
    diag = _canonical_axes(diagonal_axes, out_ndim, "diagonal_axes")
    if set(trace) & set(diag):
        raise ValueError(f"an axis cannot be both traced and diagonal: trace_axes={trace_axes}, "
                         f"diagonal_axes={diagonal_axes}")
    if 0 in trace:
        raise ValueError("trace_axes may not contain the batch axis 0")
    if 0 in diag and n1 != n2:
        raise ValueError(f"diagonal_axes containing 0 needs len(x1) == len(x2), got {n1} and {n2}")
    return trace, diag


def _check_inputs(params: Any, x1: Any, x2: Any) -> tuple[jax.Array, jax.Array]:
    """``(x1, x2)`` as arrays (``x2 = x1`` when ``None``), with shapes and values checked."""
    same = x2 is None
    x1 = jnp.asarray(x1)
    x2 = x1 if same else jnp.asarray(x2)
    if x1.ndim < 1 or x1.shape[0] < 1:
        raise ValueError(f"x1 must be a non-empty batch [n1, ...], got shape {x1.shape}")
    if x2.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x2 must have the feature shape of x1 {x1.shape[1:]}, "
                         f"got {x2.shape[1:]}")
    check_finite("x1", x1)
    if not same:
        check_finite("x2", x2)
    check_finite("params", params)
    return x1, x2


def _subscripts(ndim: int, trace: tuple[int, ...], diag: tuple[int, ...]) -> tuple[str, str, str]:
    """einsum letters for the x1 side, the x2 side and the result, axis by axis."""
    letters = iter(string.ascii_letters.replace("Z", ""))
    s1, s2, out = "", "", ""
    for a in range(ndim):
        if a in trace:
            c = next(letters)
            s1, s2 = s1 + c, s2 + c
        elif a in diag:
            c = next(letters)
            s1, s2, out = s1 + c, s2 + c, out + c
        else:
            c1, c2 = next(letters), next(letters)
            s1, s2, out = s1 + c1, s2 + c2, out + c1 + c2
    return s1, s2, out


# ----------------------------------------------------------------------------- jacobian

def _per_sample_jacobian(apply_fn: ApplyFn, params: Any, x: jax.Array) -> list[jax.Array]:
    """Per-sample Jacobians, one ``[n, *out, P_leaf]`` array per parameter leaf."""

    def single(xi):
        return apply_fn(params, xi[None])[0]

    def jac_one(xi):
        return jax.jacrev(lambda p: apply_fn(p, xi[None])[0])(params)

    out_ndim = jax.eval_shape(single, x[0]).ndim
    jac = jax.vmap(jac_one)(x)
    return [leaf.reshape(leaf.shape[:1 + out_ndim] + (-1,))
            for leaf in jax.tree_util.tree_leaves(jac)]


def _contract(j1: list[jax.Array], j2: list[jax.Array], subs: tuple[str, str, str]) -> jax.Array:
    s1, s2, out = subs
    expr = f"{s1}Z,{s2}Z->{out}"  # Z (the parameter axis) is never used for output axes
    # Full-precision matmuls on accelerators (no TF32/bf16 passes); on CPU float32 matmuls are
    # already exact-precision and HIGHEST only costs time (~13% measured).
    precision = None if jax.default_backend() == "cpu" else jax.lax.Precision.HIGHEST
    return sum(jnp.einsum(expr, a, b, precision=precision) for a, b in zip(j1, j2))


def _contract_symmetric(j: list[jax.Array], subs: tuple[str, str, str], n: int) -> jax.Array:
    """``Θ(x, x)`` computing only the upper block triangle (the kernel is symmetric).

    The rows are split into ``_SYMMETRIC_PARTS`` equal (zero-padded) parts; block ``(b, a)`` for
    ``a < b`` is block ``(a, b)`` with the x1/x2 roles of every output-axis pair swapped. With 4
    parts this is 10 of 16 block products: 62.5 % of the contraction FLOPs (a ``syrk``).
    """
    s1, s2, out = subs
    swap = dict(zip(s1, s2)) | dict(zip(s2, s1))
    transposed = "".join(swap.get(c, c) for c in out)
    parts = _SYMMETRIC_PARTS
    size = -(-n // parts)
    padded = [jnp.pad(leaf, [(0, parts * size - n)] + [(0, 0)] * (leaf.ndim - 1)) for leaf in j]
    rows = [[leaf[a * size:(a + 1) * size] for leaf in padded] for a in range(parts)]
    blocks = {}
    for a in range(parts):
        for b in range(a, parts):
            blocks[a, b] = _contract(rows[a], rows[b], subs)
            if b > a:
                blocks[b, a] = jnp.einsum(f"{out}->{transposed}", blocks[a, b])
    # out starts with the x1 batch letter then the x2 batch letter: axes 0 and 1
    full = jnp.concatenate([jnp.concatenate([blocks[a, b] for b in range(parts)], axis=1)
                            for a in range(parts)], axis=0)
    return full[:n, :n]


def _pad_blocks(x: jax.Array, b: int) -> jax.Array:
    """``[n, ...]`` → ``[ceil(n/b), b, ...]``, zero-padded."""
    n = x.shape[0]
    nb = -(-n // b)
    pad = nb * b - n
    if pad:
        x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    return x.reshape((nb, b) + x.shape[1:])


@functools.partial(jax.jit, static_argnames=("apply_fn", "trace", "diag", "block", "same"))
def _ntk_jacobian(apply_fn, params, x1, x2, trace, diag, block, same):
    ndim = 1 + jax.eval_shape(lambda xi: apply_fn(params, xi[None])[0], x1[0]).ndim
    subs = _subscripts(ndim, trace, diag)
    n1, n2 = x1.shape[0], x2.shape[0]
    if block is None:
        j1 = _per_sample_jacobian(apply_fn, params, x1)
        if same and 0 not in diag and n1 >= _SYMMETRIC_MIN_N:
            return _contract_symmetric(j1, subs, n1)
        j2 = j1 if same else _per_sample_jacobian(apply_fn, params, x2)
        return _contract(j1, j2, subs)

    b1, b2 = _pad_blocks(x1, block), _pad_blocks(x2, block)
    if 0 in diag:  # only the diagonal blocks are needed
        def diag_block(xs):
            ja = _per_sample_jacobian(apply_fn, params, xs[0])
            return _contract(ja, _per_sample_jacobian(apply_fn, params, xs[1]), subs)
        out = jax.lax.map(diag_block, (b1, b2))  # [nb, b, ...]
        return out.reshape((-1,) + out.shape[2:])[:n1]

    def row(xa):
        ja = _per_sample_jacobian(apply_fn, params, xa)
        return jax.lax.map(lambda xb: _contract(ja, _per_sample_jacobian(apply_fn, params, xb),
                                                subs), b2)

    out = jax.lax.map(row, b1)  # [nb1, nb2, b, b, rest]
    nb1, nb2 = out.shape[:2]
    out = jnp.moveaxis(out, 2, 1)  # [nb1, b, nb2, b, rest]
    out = out.reshape((nb1 * block, nb2 * block) + out.shape[4:])
    return out[:n1, :n2]


# ----------------------------------------------------------------------------- ntvp

@functools.partial(jax.jit, static_argnames=("apply_fn", "trace", "diag", "chunk"))
def _ntk_ntvp(apply_fn, params, x1, x2, trace, diag, chunk):
    f2, vjp_fn = jax.vjp(lambda p: apply_fn(p, x2), params)
    _, jvp_fn = jax.linearize(lambda p: apply_fn(p, x1), params)
    size = f2.size

    def column(idx):
        e = jax.nn.one_hot(idx, size, dtype=f2.dtype).reshape(f2.shape)
        return jvp_fn(vjp_fn(e)[0])  # Θ(x1, x2) e : [n1, *out]

    cols = jax.lax.map(column, jnp.arange(size), batch_size=chunk)  # [size, n1, *out]
    full = jnp.moveaxis(cols.reshape(f2.shape + cols.shape[1:]), tuple(range(f2.ndim)),
                        tuple(range(f2.ndim, 2 * f2.ndim)))  # [n1, *out, n2, *out]
    s1, s2, out = _subscripts(f2.ndim, trace, diag)
    return jnp.einsum(f"{s1}{s2}->{out}", full)


# ----------------------------------------------------------------------------- sharded

def _flat_jacobian(apply_fn: ApplyFn, params: Any, x: jax.Array, model: int) -> list[jax.Array]:
    """Per-sample Jacobians of this device's samples, as the contraction operands.

    ``model == 1``: one ``[s, *out, P_leaf]`` array per leaf. ``model > 1``: the devices of a
    ``"model"`` row each hold ``s`` of the block's ``model·s`` samples; the leaves are
    concatenated to ``[s, *out, P]`` (``P`` zero-padded to a multiple of ``model``) and an
    all-to-all over ``"model"`` turns samples-split into parameters-split: every device ends
    with all ``model·s`` samples of its block and its ``P/model`` slice of the parameter axis
    (no Jacobian entry is computed twice).
    """
    leaves = _per_sample_jacobian(apply_fn, params, x)
    if model == 1:
        return leaves
    j = jnp.concatenate(leaves, axis=-1) if len(leaves) > 1 else leaves[0]
    j = jnp.pad(j, [(0, 0)] * (j.ndim - 1) + [(0, -j.shape[-1] % model)])
    return [jax.lax.all_to_all(j, "model", j.ndim - 1, 0, tiled=True)]


@functools.partial(jax.jit, static_argnames=("apply_fn", "trace", "diag", "same", "mesh", "n1",
                                             "n2"))
def _ntk_ring(apply_fn, params, x1, x2, trace, diag, same, mesh, n1, n2):
    """Θ(x1, x2) by per-sample Jacobians, rows sharded over ``"data"`` (a ring over devices).

    ``x1 [n1p, ...]``, ``x2 [n2p, ...]`` are padded to a multiple of the device count and split
    over ``("data", "model")``. Device ``(d, m)`` forms the Jacobians ``J₁`` of row block
    ``d`` (parameter slice ``m``) once and keeps them; the x2 Jacobian blocks travel around the
    ``"data"`` ring (``ppermute``), so at step ``s`` it contracts ``J₁ J₂[(d + s) mod D]ᵀ``,
    tile ``(d, (d + s) mod D)`` of Θ, and after ``D`` steps holds its row block
    ``[n1p/D, n2p]``; the partial sums over the parameter slices are added over ``"model"``
    (``psum``).
    Memory per device: about ``3·(n/D)·K·P/M`` numbers (own block, travelling block, the one
    arriving). With ``0 in diag`` only the diagonal tiles are needed: no ring.
    """
    ndim = 1 + jax.eval_shape(lambda xi: apply_fn(params, xi[None])[0], x1[0]).ndim
    subs = _subscripts(ndim, trace, diag)
    data, model = _dist.axis_size(mesh, "data"), _dist.axis_size(mesh, "model")
    samples = P(_dist.sample_axes(mesh))
    ring = [(j, (j - 1) % data) for j in range(data)]  # device j sends to j − 1

    def body(p, xa, xb):
        ja = _flat_jacobian(apply_fn, p, xa, model)
        jb = ja if same else _flat_jacobian(apply_fn, p, xb, model)
        if 0 in diag:
            out = _contract(ja, jb, subs)
        else:
            d = jax.lax.axis_index("data")
            b2 = jb[0].shape[0]
            first = _contract(ja, jb, subs)  # [b1, b2, rest]: tile (d, d)
            out = jnp.zeros(first.shape[:1] + (data * b2,) + first.shape[2:], first.dtype)

            def place(out, s, tile):
                return jax.lax.dynamic_update_slice_in_dim(out, tile, ((d + s) % data) * b2, 1)

            def step(s, carry):
                out, cur = carry
                cur = [jax.lax.ppermute(c, "data", ring) for c in cur]
                return place(out, s, _contract(ja, cur, subs)), cur

            out = jax.lax.fori_loop(1, data, step, (place(out, 0, first), jb))[0]
        if "model" in mesh.axis_names:
            out = jax.lax.psum(out, "model")
        return out

    out = jax.shard_map(body, mesh=mesh, in_specs=(P(), samples, samples), out_specs=P("data"),
                        check_vma=False)(params, x1, x2)
    out = out[:n1] if 0 in diag else out[:n1, :n2]
    return jax.lax.with_sharding_constraint(out, _out_sharding(mesh, n1, ("data",)))


def _out_sharding(mesh, n1: int, axes: tuple[str, ...]):
    """Rows over ``axes`` when they divide ``n1``, else over ``"data"`` alone, else replicated
    (JAX shards only in equal blocks)."""
    if n1 % int(np.prod([_dist.axis_size(mesh, a) for a in axes])) == 0:
        return _dist.rows_sharding(mesh, n1, axes)
    return _dist.rows_sharding(mesh, n1, "data")


@functools.partial(jax.jit, static_argnames=("apply_fn", "impl", "trace", "diag", "block",
                                             "budget", "mesh", "n1"))
def _ntk_rows(apply_fn, params, x1, x2, impl, trace, diag, block, budget, mesh, n1):
    """Θ(x1, x2) with the rows of x1 split over every device, any implementation.

    ``x1 [n1p, ...]`` is padded to a multiple of the device count; each device computes its
    row block ``Θ(x1_local, x2)`` against all of ``x2`` (replicated inputs; the x2-side
    per-sample quantities are formed on every device) with the single-device kernel of
    ``impl``. With ``0 in diag`` x2 is split like x1 (only matching rows are needed).
    """
    samples = P(_dist.sample_axes(mesh))

    def body(p, xa, xb):
        if impl == "structured":
            from jaxinfo.ntk_structured import _structured_ntk

            return _structured_ntk(apply_fn, p, xa, xb, trace, diag, False, budget)
        if impl == "ntvp":
            return _ntk_ntvp(apply_fn, p, xa, xb, trace, diag, block or _NTVP_CHUNK)
        local = block if block is not None and block < max(xa.shape[0], xb.shape[0]) else None
        return _ntk_jacobian(apply_fn, p, xa, xb, trace, diag, local, False)

    out = jax.shard_map(body, mesh=mesh, in_specs=(P(), samples, samples if 0 in diag else P()),
                        out_specs=samples, check_vma=False)(params, x1, x2)
    return jax.lax.with_sharding_constraint(out[:n1], _out_sharding(
        mesh, n1, _dist.sample_axes(mesh)))


def _empirical_ntk_sharded(apply_fn, params, x1, x2, same, trace, diag, trace_axes,
                           diagonal_axes, impl, batch_size, memory_budget, mesh, out_shape):
    """The ``mesh`` path of :func:`empirical_ntk`: chooses the ring or the row split."""
    mesh = _dist.auto_mesh(mesh)
    data, model = _dist.axis_size(mesh, "data"), _dist.axis_size(mesh, "model")
    devices = data * model
    n1, n2 = x1.shape[0], x2.shape[0]
    local = -(-n1 // devices)  # rows per device in the row split
    if impl == "auto" and _structured_is_cheaper(apply_fn, params, (local,) + x1.shape[1:],
                                                 n2, trace_axes, diagonal_axes, x1.dtype,
                                                 memory_budget):
        impl = "structured"
    per_sample = int(np.prod(out_shape[1:])) * _num_params(params) * x1.dtype.itemsize
    block = -(-max(n1, n2) // data)  # samples of one "data" block
    ring_bytes = 3 * block * per_sample // model
    blocks_fit = batch_size is None or batch_size >= block
    if impl == "auto":
        if ring_bytes <= memory_budget and blocks_fit:
            impl = "ring"
        elif 2 * per_sample <= memory_budget:
            impl = "jacobian"
            fits = max(1, memory_budget // (2 * per_sample))
            if batch_size is None and fits < max(local, n2):
                batch_size = int(fits)
        else:
            impl = "ntvp"
    elif impl == "jacobian" and blocks_fit:
        impl = "ring"
    params = jax.tree_util.tree_map(lambda a: _dist.put(a, _dist.replicated(mesh)), params)
    split = _dist.rows_sharding(mesh, None, _dist.sample_axes(mesh))
    x1p = _dist.put(_dist.pad_rows(x1, devices), split)
    if impl == "ring":
        x2p = x1p if same else _dist.put(_dist.pad_rows(x2, devices), split)
        return _ntk_ring(apply_fn, params, x1p, x2p, trace, diag, same, mesh, n1, n2)
    x2p = (_dist.put(_dist.pad_rows(x2, devices), split) if 0 in diag
           else _dist.put(x2, _dist.replicated(mesh)))
    return _ntk_rows(apply_fn, params, x1p, x2p, impl, trace, diag, batch_size,
                     int(memory_budget), mesh, n1)


# ----------------------------------------------------------------------------- public

class _Bound:
    """``f(params, x, **kwargs)`` with fixed keyword arguments, hashable when they are (so the
    jitted kernels see the same static function across calls and compile once)."""

    def __init__(self, f: Callable[..., Any], kwargs: dict):
        self.f, self.kwargs = f, kwargs
        self._key = (f, tuple(sorted(kwargs.items())))

    def __call__(self, params, x):
        return self.f(params, x, **self.kwargs)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Bound) and self._key == other._key


def _bind(f: Callable[..., Any], kwargs: dict) -> ApplyFn:
    if not kwargs:
        return f
    try:
        hash(tuple(sorted(kwargs.items())))
    except TypeError:  # unhashable values (arrays): a fresh closure, traced per call
        return functools.partial(f, **kwargs)
    return _Bound(f, kwargs)


def empirical_ntk_fn(f: Callable[..., Any], trace_axes: Sequence[int] = (-1,),
                     diagonal_axes: Sequence[int] = (), vmap_axes: Any = 0,
                     implementation: int | str = "auto", *, batch_size: int | None = None,
                     memory_budget: int = DEFAULT_MEMORY_BUDGET
                     ) -> Callable[..., jax.Array]:
    """A neural-tangents-compatible kernel factory: ``ntk(x1, x2, params, **apply_kwargs)``.

    Drop-in for ``neural_tangents.empirical_ntk_fn`` (whose last release does not import on
    JAX ≥ 0.6): same arguments, same call signature, same conventions — in particular, traced
    axes are **averaged** (neural-tangents divides the trace by the size of the traced axes),
    whereas :func:`empirical_ntk` sums them. A ``stax`` model's ``apply_fn`` works unchanged::

        # import neural_tangents as nt
        import jaxinfo as nt
        kernel_fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)
        k = kernel_fn(x1, None, params)          # [n1, n1, k, k]

    Args:
      f: ``f(params, x, **apply_kwargs) -> [n, *out]``.
      trace_axes: output axes averaged over (batch axis included in the numbering).
      diagonal_axes: output axes of which only the diagonal is kept.
      vmap_axes: ``0`` (samples are independent along axis 0: per-sample Jacobians) or ``None``
        (no independence assumed: NTK-vector products of the whole batch). Other layouts of
        neural-tangents' ``vmap_axes`` are not supported (``NotImplementedError``).
      implementation: neural-tangents' enum values ``0`` (auto), ``1`` (Jacobian contraction),
        ``2`` (NTK-vector products), ``3`` (structured derivatives), or the names of
        :func:`empirical_ntk` (``"auto"``, ``"jacobian"``, ``"ntvp"``, ``"structured"``).
      batch_size, memory_budget: as in :func:`empirical_ntk`.

    Returns:
      A pure function ``ntk(x1, x2, params, **apply_kwargs)`` (``x2=None`` means ``x1``) that
      can be wrapped in ``jax.jit`` and ``jax.vmap`` (e.g. over an ensemble of ``params``).
    """
    if vmap_axes not in (0, None):
        raise NotImplementedError(f"vmap_axes={vmap_axes!r}: only 0 (batch axis first) and None "
                                  "are supported")
    if isinstance(implementation, (int, np.integer)) and not isinstance(implementation, bool):
        if int(implementation) not in _NT_IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {sorted(_NT_IMPLEMENTATIONS)} "
                             f"(neural-tangents' NtkImplementation) or a name, got "
                             f"{implementation!r}")
        implementation = _NT_IMPLEMENTATIONS[int(implementation)]
    elif hasattr(implementation, "value"):  # a neural-tangents NtkImplementation enum member
        implementation = _NT_IMPLEMENTATIONS[int(implementation.value)]
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {_IMPLEMENTATIONS} or 0..3, got "
                         f"{implementation!r}")
    if vmap_axes is None:
        if implementation not in ("auto", "ntvp"):
            raise ValueError("vmap_axes=None (samples not assumed independent) needs "
                             "implementation 0 / 'auto' or 2 / 'ntvp' (NTK-vector products)")
        implementation = "ntvp"
    trace_axes = tuple(int(a) for a in np.atleast_1d(trace_axes))
    diagonal_axes = tuple(int(a) for a in np.atleast_1d(diagonal_axes))

    def ntk(x1: Any, x2: Any = None, params: Any = None, **apply_kwargs: Any) -> jax.Array:
        from jaxinfo.data import gather

        x1, x2 = gather(x1, name="x1").x, gather(x2, name="x2").x
        apply_fn = _bind(f, apply_kwargs)
        kernel = empirical_ntk(apply_fn, params, x1, x2, trace_axes=trace_axes,
                               diagonal_axes=diagonal_axes, implementation=implementation,
                               batch_size=batch_size, memory_budget=memory_budget)
        out_shape = jax.eval_shape(lambda x: apply_fn(params, x), jnp.asarray(x1)[:1]).shape
        traced = _canonical_axes(trace_axes, len(out_shape), "trace_axes")
        return kernel / int(np.prod([out_shape[a] for a in traced]))

    return ntk


def _num_params(params: Any) -> int:
    return sum(int(np.prod(np.shape(p))) for p in jax.tree_util.tree_leaves(params))


def _structured_is_cheaper(apply_fn, params, x_shape, n2, trace_axes, diagonal_axes, dtype,
                           memory_budget) -> bool:
    """The ``"auto"`` rule: fewer multiply-adds than the contraction, within the budget."""
    from jaxinfo.ntk_structured import structured_cost

    try:
        cost = structured_cost(apply_fn, params, x_shape, n2=n2, trace_axes=trace_axes,
                               diagonal_axes=diagonal_axes, dtype=dtype,
                               memory_budget=memory_budget)
    except Exception:  # noqa: BLE001 - a jaxpr the planner cannot read: use the contraction
        return False
    return cost.flops_structured < cost.flops_jacobian and cost.bytes_structured <= memory_budget


def empirical_ntk(apply_fn: ApplyFn, params: Any, x1: jax.Array, x2: jax.Array | None = None, *,
                  trace_axes: Sequence[int] = (-1,), diagonal_axes: Sequence[int] = (),
                  implementation: str = "auto", batch_size: int | None = None,
                  memory_budget: int = DEFAULT_MEMORY_BUDGET, mesh: Mesh | None = None
                  ) -> jax.Array:
    """Empirical NTK ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` at ``params``.

    Args:
      apply_fn: ``apply_fn(params, x) -> [n, *out]`` (e.g. from :func:`jaxinfo.flax_apply`).
      params: the weights (any pytree).
      x1: ``[n1, ...]`` inputs, or an iterable of dict batches ``{"x", "mask"?}``
        (:mod:`jaxinfo.data`'s batch convention; then the kernel is computed in blocks of the
        iterable's batch size unless ``batch_size`` is given, so only one block of Jacobians
        is in memory at a time).
      x2: ``[n2, ...]`` inputs or batches; ``None`` means ``x1`` (the symmetric kernel).
      trace_axes: output axes to trace over (see the module docstring).
      diagonal_axes: output axes to keep only the diagonal of.
      implementation: ``"jacobian"``, ``"ntvp"``, ``"structured"`` or ``"auto"`` (module
        docstring).
      batch_size: samples per block (``"jacobian"``: the kernel is assembled block by block,
        so peak memory is about ``2·batch_size·K·P`` numbers; ``"ntvp"``: basis vectors
        processed at once). ``None``: one block (``"auto"`` shrinks it to fit the budget).
        With a mesh, a ``batch_size`` below the per-device block ``ceil(n/D)`` replaces the
        ring by blocks of that size on each device.
      memory_budget: bytes one block of Jacobians may use (``"auto"`` only; with a mesh,
        per device).
      mesh: a :class:`jax.sharding.Mesh` with a ``"data"`` axis (samples) and optionally a
        ``"model"`` axis (e.g. :func:`jaxinfo.distributed.data_mesh`), or ``None`` (one
        device). The inputs are padded to a multiple of the device count (padded rows are
        sliced off) and split over the devices, each device computes the rows of Θ of its own
        samples, and the kernel is returned as a sharded ``jax.Array``, rows over ``"data"``
        (never gathered on one device) — when the device count divides ``n1``; otherwise it
        is returned replicated (JAX shards only in equal blocks). ``"jacobian"`` (and
        ``"auto"`` when it picks the contraction and ``3·(n/D)·K·P/M`` numbers fit the budget)
        keeps each device's Jacobian block and passes the x2 blocks around a ring of the D
        ``"data"`` devices, the parameter axis split over the M ``"model"`` devices;
        ``"structured"`` and ``"ntvp"`` split the x1 rows over all devices and form the x2
        side on each (``docs/scaling.md``). Equal to the single-device result up to
        round-off.

    Returns:
      The kernel, ``[n1, n2]`` by default; generally the batch and non-traced output axes as
      described in the module docstring. Units: (output units)² per (parameter units)².
    """
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {_IMPLEMENTATIONS}, got {implementation!r}")
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable as apply_fn(params, x), got {apply_fn!r}")
    from jaxinfo.data import gather

    same = x2 is None
    g1, g2 = gather(x1, name="x1"), gather(x2, name="x2")
    x1, x2 = g1.x, g2.x
    if batch_size is None and (g1.batch_size or g2.batch_size):
        batch_size = max(g1.batch_size or 0, g2.batch_size or 0)
    x1, x2 = _check_inputs(params, x1, None if same else x2)
    if batch_size is not None:
        check_int_at_least("batch_size", batch_size, 1)

    out_shape = jax.eval_shape(lambda x: apply_fn(params, x), x1[:1]).shape
    trace, diag = _check_axes(len(out_shape), x1.shape[0], x2.shape[0], trace_axes,
                              diagonal_axes)

    if mesh is not None:
        return _empirical_ntk_sharded(apply_fn, params, x1, x2, same, trace, diag, trace_axes,
                                      diagonal_axes, implementation, batch_size, memory_budget,
                                      mesh, out_shape)
    impl = implementation
    if impl == "auto" and _structured_is_cheaper(apply_fn, params, x1.shape,
                                                 None if same else x2.shape[0], trace_axes,
                                                 diagonal_axes, x1.dtype, memory_budget):
        impl = "structured"
    if impl == "structured":
        from jaxinfo.ntk_structured import structured_ntk

        return structured_ntk(apply_fn, params, x1, None if same else x2, trace_axes=trace,
                              diagonal_axes=diag, memory_budget=memory_budget)
    per_sample = int(np.prod(out_shape[1:])) * _num_params(params) * x1.dtype.itemsize
    if impl == "auto":
        impl = "jacobian" if 2 * per_sample <= memory_budget else "ntvp"
        if impl == "jacobian":
            fits = max(1, memory_budget // (2 * per_sample))
            if batch_size is None and fits < max(x1.shape[0], x2.shape[0]):
                batch_size = int(fits)
    if impl == "ntvp":
        chunk = batch_size or _NTVP_CHUNK
        return _ntk_ntvp(apply_fn, params, x1, x2, trace, diag, chunk)
    block = batch_size if batch_size is not None and batch_size < max(x1.shape[0],
                                                                      x2.shape[0]) else None
    return _ntk_jacobian(apply_fn, params, x1, x2, trace, diag, block, same and block is None)


def ntk_vector_product(apply_fn: ApplyFn, params: Any, x1: jax.Array, x2: jax.Array,
                       v: jax.Array) -> jax.Array:
    """``Θ(x1, x2) v = J(x1) (J(x2)ᵀ v)`` without forming the kernel or a Jacobian.

    Args:
      x1: ``[n1, ...]``; x2: ``[n2, ...]`` inputs.
      v: ``[n2, *out]`` (same shape as ``apply_fn(params, x2)``).

    Returns:
      ``[n1, *out]``. Cost: one VJP over ``x2`` and one JVP over ``x1``.
    """
    _, vjp_fn = jax.vjp(lambda p: apply_fn(p, x2), params)
    tangent = vjp_fn(jnp.asarray(v))[0]
    return jax.jvp(lambda p: apply_fn(p, x1), (params,), (tangent,))[1]
