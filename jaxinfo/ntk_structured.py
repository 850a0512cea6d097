"""Empirical NTK by structured derivatives: layer inputs and output cotangents, not Jacobians.

The empirical NTK ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` (see :mod:`jaxinfo.ntk` for the axes) is a sum
over parameter leaves. For a leaf ``W`` that enters the network only through one linear layer
``y = a·W`` (a ``dot_general``) or ``y = conv(a, W)`` (a ``conv_general_dilated``), the
per-sample Jacobian has the outer-product structure

    ∂f^c(x)/∂W[b, i, o] = Σ_g a(x)[b, g, i] · δ^c(x)[b, g, o],     δ^c = ∂f^c/∂y,

with ``b`` the batch dimensions of the ``dot_general``, ``g`` the positions that share ``W``
(the free dimensions of ``a``; for a convolution the output pixels, ``a`` being the input
patches), ``i`` the contracted (input) and ``o`` the output features. Its contribution to the
kernel is therefore

    Θ_W(x, x')[c, c'] = Σ_b Σ_{g, g'} (Σ_i a[b, g, i] a'[b, g', i]) · (Σ_o δ^c[b, g, o] δ'^{c'}[b, g', o])

(a patch Gram ⊙ a cotangent Gram), which never forms the ``[n, K, d_in·d_out]`` Jacobian. For a
dense layer of an MLP (one position, ``g = 1``) it is ``(a·a')(δ^c·δ'^{c'})``: ``n1·n2·(d_in +
K²·d_out)`` multiply-adds instead of ``n1·n2·K²·d_in·d_out``. For each such leaf the cheaper of
the two contraction orders — this Gram form, or forming ``J = Σ_g a ⊗ δ`` per sample and
contracting it — is chosen from the shapes (:func:`structured_cost`), skipping a form whose
intermediates exceed ``memory_budget``.

Everything is read off the jaxpr of ``apply_fn`` (any function, Flax or not):

- ``dense``: a leaf used once, as an operand of a ``dot_general`` (any contracting and batch
  dimensions), directly or through ``reshape`` / ``transpose`` / ``squeeze`` /
  ``convert_element_type`` / ``copy`` / a ``broadcast_in_dim`` that only adds unit axes
  (permutations of the entries, which leave ``JJᵀ`` unchanged).
- ``conv``: the same, as the kernel (right operand) of a ``conv_general_dilated`` with
  ``feature_group_count = batch_group_count = 1``; patches by
  ``jax.lax.conv_general_dilated_patches`` (any strides, padding and dilations).
- ``bias``: a leaf used once, through those ops and ``broadcast_in_dim``, as an operand of
  ``add`` / ``sub``. Its Jacobian is the cotangent of the sum summed over broadcast positions,
  ``Σ_pos δ``: tiny (``K·d_out`` per sample), so it is formed directly and contracted.
- ``jacobian`` (fallback): any other leaf — used by another primitive (layer-norm or batch-norm
  scales), used twice, or used inside a nested higher-order primitive. Its per-sample Jacobian
  is formed and contracted as in ``jaxinfo.ntk`` (restricted to those leaves).

One forward pass per sample evaluates the jaxpr with an interpreter that records each targeted
layer's non-parameter input ``a`` and adds a zero perturbation ``ε`` to its output ``y``; one
VJP per output component (``vmap``-ed over the ``K`` components and the samples) then gives
``δ = ∂f/∂ε`` for every layer and the Jacobian of the ``bias`` / ``jacobian`` leaves at once.
Calls to ``jit``-ed functions inside ``apply_fn`` are inlined first.

Like the ``"jacobian"`` implementation of :mod:`jaxinfo.ntk`, samples are processed one at a
time (``apply_fn(params, x[i:i+1])``), so the result equals it (no train-mode batch norm).
"""
from __future__ import annotations

import collections
import functools
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal, Var

from jaxinfo._types import DEFAULT_MEMORY_BUDGET, ApplyFn
from jaxinfo.ntk import (_SYMMETRIC_MIN_N, _SYMMETRIC_PARTS, _check_axes, _check_inputs,
                         _subscripts)

__all__ = ["LeafCost", "StructuredCost", "structured_cost", "structured_ntk"]

# Ops through which a parameter may reach its layer: they only permute (or cast) its entries.
_PERMUTING = frozenset({"reshape", "transpose", "squeeze", "convert_element_type", "copy",
                        "copy_p"})
_BIAS_USE = frozenset({"add", "sub", "add_any"})
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})


# ----------------------------------------------------------------------------- jaxpr

def _eval_jaxpr(jaxpr, consts, *args, hook=None):
    """Evaluates ``jaxpr`` by binding its primitives (so it can be traced, vmapped, differentiated).

    ``hook(index, eqn, invals)`` may return the outputs of equation ``index`` (a list) instead
    of the primitive, or ``None`` to bind it normally.
    """
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for index, eqn in enumerate(jaxpr.eqns):
        invals = [read(v) for v in eqn.invars]
        outvals = hook(index, eqn, invals) if hook is not None else None
        if outvals is None:
            outvals = _bind(eqn, invals)
        env.update(zip(eqn.outvars, outvals))
    return [read(v) for v in jaxpr.outvars]


def _bind(eqn, invals) -> list:
    """The outputs of one equation, as a list."""
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns = ()
    if isinstance(params, tuple):  # older JAX: (subfuns, params)
        subfuns, params = params
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return out if eqn.primitive.multiple_results else [out]


def _inline_calls(index, eqn, invals):
    """Hook that evaluates calls of ``jit``-ed functions equation by equation (inlining them)."""
    if eqn.primitive.name not in _CALLS:
        return None
    inner = eqn.params["jaxpr"]
    jaxpr, consts = (inner.jaxpr, inner.consts) if hasattr(inner, "consts") else (inner, ())
    return _eval_jaxpr(jaxpr, consts, *invals, hook=_inline_calls)


class _Layer(NamedTuple):
    """A ``dense`` / ``conv`` leaf: operand ``side`` of equation ``eqn``, perturbation ``slot``."""
    leaf: int
    kind: str
    eqn: int
    side: int
    slot: int
    dims: tuple[int, int, int, int]  # (B, G, C, F): batch, positions, inputs, outputs


class _Plan(NamedTuple):
    jaxpr: Any            # the flat (call-inlined) ClosedJaxpr of one sample: (*leaves, x) -> f
    out_shape: tuple      # f(x) of one sample
    layers: tuple         # _Layer per dense / conv leaf
    direct: tuple         # leaf indices whose per-sample Jacobian is formed (bias, jacobian)
    kinds: tuple          # kind per leaf: dense, conv, bias, jacobian, unused
    slots: dict           # equation index -> perturbation slot
    fwd_macs: int         # multiply-adds of the dot_general / conv equations (one sample)


def _permutes(eqn) -> bool:
    """Whether the unary ``eqn`` only rearranges (or casts) its operand's entries."""
    name = eqn.primitive.name
    if name == "broadcast_in_dim":  # adding unit axes only (e.g. ``w[None]``)
        return eqn.outvars[0].aval.size == eqn.invars[0].aval.size
    return name in _PERMUTING


def _follow(jaxpr, uses, outvars, var, bias=False):
    """End of the single-use chain from ``var`` through unary ops that permute its entries
    (any ``broadcast_in_dim`` too if ``bias``): ``(var, (eqn index, operand) or None)``."""
    while var not in outvars and len(uses[var]) == 1:
        index, pos = uses[var][0]
        eqn = jaxpr.eqns[index]
        through = _permutes(eqn) or (bias and eqn.primitive.name == "broadcast_in_dim")
        if through and len(eqn.invars) == 1:
            var = eqn.outvars[0]
            continue
        return var, (index, pos)
    return var, None


def _dense_dims(eqn, side):
    """``(B, G, C, F)`` sizes of a ``dot_general`` whose operand ``side`` is the parameter."""
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    a_shape = eqn.invars[1 - side].aval.shape
    w_shape = eqn.invars[side].aval.shape
    a_c, a_b = (lc, lb) if side == 1 else (rc, rb)
    w_c, w_b = (rc, rb) if side == 1 else (lc, lb)
    size = lambda shape, dims: math.prod(shape[d] for d in dims)
    a_free = [d for d in range(len(a_shape)) if d not in (*a_c, *a_b)]
    w_free = [d for d in range(len(w_shape)) if d not in (*w_c, *w_b)]
    return (size(a_shape, a_b), size(a_shape, a_free), size(a_shape, a_c), size(w_shape, w_free))


def _conv_dims(eqn):
    _, rhs_spec, out_spec = eqn.params["dimension_numbers"]
    w_shape = eqn.invars[1].aval.shape
    y_shape = eqn.outvars[0].aval.shape
    positions = math.prod(y_shape[d] for d in (out_spec[0], *out_spec[2:]))
    patch = math.prod(w_shape[d] for d in rhs_spec[1:])
    return (1, positions, patch, y_shape[out_spec[1]])


def _macs(eqn):
    name = eqn.primitive.name
    if name == "dot_general":
        (lc, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lc)
    if name == "conv_general_dilated":
        _, rhs_spec, _ = eqn.params["dimension_numbers"]
        w = eqn.invars[1].aval.shape
        return math.prod(eqn.outvars[0].aval.shape) * math.prod(w[d] for d in rhs_spec[1:])
    return 0


def _plan(apply_fn: ApplyFn, params: Any, x_sample: jax.ShapeDtypeStruct) -> _Plan:
    """Traces one sample of ``apply_fn`` and classifies every parameter leaf."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    specs = [jax.ShapeDtypeStruct(np.shape(leaf), jnp.result_type(leaf)) for leaf in leaves]

    def single(flat, xi):
        return apply_fn(jax.tree_util.tree_unflatten(treedef, flat), xi[None])[0]

    closed = jax.make_jaxpr(single)(specs, x_sample)
    flat = jax.make_jaxpr(lambda fl, xi: _eval_jaxpr(closed.jaxpr, closed.consts, *fl, xi,
                                                     hook=_inline_calls))(specs, x_sample)
    jaxpr = flat.jaxpr
    if len(jaxpr.outvars) != 1:
        raise TypeError("apply_fn(params, x) must return one array [n, *out]")
    uses = collections.defaultdict(list)
    for index, eqn in enumerate(jaxpr.eqns):
        for pos, v in enumerate(eqn.invars):
            if isinstance(v, Var):
                uses[v].append((index, pos))
    outvars = {v for v in jaxpr.outvars if isinstance(v, Var)}

    layers, direct, kinds, slots = [], [], [], {}
    for leaf, var in enumerate(jaxpr.invars[:len(leaves)]):
        if not uses[var] and var not in outvars:
            kinds.append("unused")
            continue
        _, use = _follow(jaxpr, uses, outvars, var)
        kind = None
        if use is not None:
            index, side = use
            eqn = jaxpr.eqns[index]
            if eqn.primitive.name == "dot_general":
                kind, dims = "dense", _dense_dims(eqn, side)
            elif (eqn.primitive.name == "conv_general_dilated" and side == 1
                  and eqn.params["feature_group_count"] == 1
                  and eqn.params["batch_group_count"] == 1):
                kind, dims = "conv", _conv_dims(eqn)
        if kind is not None:
            slot = slots.setdefault(index, len(slots))
            layers.append(_Layer(leaf, kind, index, side, slot, dims))
        else:
            _, use = _follow(jaxpr, uses, outvars, var, bias=True)
            bias = use is not None and jaxpr.eqns[use[0]].primitive.name in _BIAS_USE
            kind = "bias" if bias else "jacobian"
            direct.append(leaf)
        kinds.append(kind)
    fwd = sum(_macs(eqn) for eqn in jaxpr.eqns)
    return _Plan(flat, tuple(flat.out_avals[0].shape), tuple(layers), tuple(direct),
                 tuple(kinds), slots, fwd)


# ----------------------------------------------------------------------------- per sample

def _layer_inputs(layer: _Layer, eqn, a: jax.Array) -> jax.Array:
    """The non-parameter operand of one sample as ``[B, G, C]`` (patches for a convolution)."""
    if layer.kind == "dense":
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        a_c, a_b = (lc, lb) if layer.side == 1 else (rc, rb)
        a_free = [d for d in range(a.ndim) if d not in (*a_c, *a_b)]
        return jnp.transpose(a, (*a_b, *a_free, *a_c)).reshape(layer.dims[:3])
    lhs_spec, rhs_spec, _ = eqn.params["dimension_numbers"]
    w_shape = eqn.invars[1].aval.shape
    patches = jax.lax.conv_general_dilated_patches(
        jnp.transpose(a, lhs_spec), [w_shape[d] for d in rhs_spec[2:]],
        eqn.params["window_strides"], eqn.params["padding"], eqn.params["lhs_dilation"],
        eqn.params["rhs_dilation"], precision=jax.lax.Precision.HIGHEST)  # [N, C·k, *pixels]
    patches = patches.reshape(patches.shape[:2] + (-1,))
    return jnp.swapaxes(patches, 1, 2).reshape(layer.dims[:3])


def _layer_cotangents(layer: _Layer, eqn, delta: jax.Array, out_shape) -> jax.Array:
    """``δ = ∂f/∂y`` of one sample, ``[K, *y]`` → ``[*out, B, G, F]``."""
    k = delta.shape[0]
    if layer.kind == "dense":
        (lc, _), (lb, _) = eqn.params["dimension_numbers"]
        y_shape = eqn.outvars[0].aval.shape
        lhs_free = eqn.invars[0].aval.ndim - len(lc) - len(lb)
        lhs_free_size = math.prod(y_shape[len(lb):len(lb) + lhs_free])
        d = delta.reshape(k, layer.dims[0], lhs_free_size, -1)  # [K, B, lhs free, rhs free]
        if layer.side == 0:  # the parameter is the lhs: its free dims are the outputs F
            d = jnp.swapaxes(d, 2, 3)
    else:
        _, _, out_spec = eqn.params["dimension_numbers"]
        d = jnp.transpose(delta, (0, 1 + out_spec[0], *(1 + s for s in out_spec[2:]),
                                  1 + out_spec[1]))  # [K, N, *pixels, O]
    return d.reshape(tuple(out_shape) + layer.dims[:2] + (layer.dims[3],))


def _sample_features(plan: _Plan, leaves: list, xi: jax.Array):
    """Layer inputs ``[B, G, C]``, layer cotangents ``[*out, B, G, F]`` and per-sample
    Jacobians ``[*out, P_leaf]`` of the directly differentiated leaves, for one sample."""
    jaxpr, consts = plan.jaxpr.jaxpr, plan.jaxpr.consts
    eqn_avals = {s: jaxpr.eqns[i].outvars[0].aval for i, s in plan.slots.items()}
    eps0 = [jnp.zeros(eqn_avals[s].shape, eqn_avals[s].dtype) for s in range(len(plan.slots))]

    def f(eps, direct):
        full = list(leaves)
        for leaf, value in zip(plan.direct, direct):
            full[leaf] = value
        inputs = {}

        def hook(index, eqn, invals):
            if index not in plan.slots:
                return None
            inputs[index] = invals
            return [_bind(eqn, invals)[0] + eps[plan.slots[index]]]

        out = _eval_jaxpr(jaxpr, consts, *full, xi, hook=hook)[0]
        return out, inputs

    direct0 = [leaves[leaf] for leaf in plan.direct]
    out, vjp_fn, inputs = jax.vjp(f, eps0, direct0, has_aux=True)
    k = math.prod(out.shape)
    basis = jnp.eye(k, dtype=out.dtype).reshape((k,) + out.shape)
    d_eps, d_direct = jax.vmap(vjp_fn)(basis)
    a_list, d_list = [], []
    for layer in plan.layers:
        eqn = jaxpr.eqns[layer.eqn]
        a_list.append(_layer_inputs(layer, eqn, inputs[layer.eqn][1 - layer.side]))
        d_list.append(_layer_cotangents(layer, eqn, d_eps[layer.slot], out.shape))
    j_list = [j.reshape(out.shape + (-1,)) for j in d_direct]
    return a_list, d_list, j_list


# ----------------------------------------------------------------------------- cost

class _Sizes(NamedTuple):
    n_pairs: int    # n1·n2, or n for a batch-diagonal kernel
    pair: int       # letters of the x1·x2 contraction: n_pairs · traced k · diagonal k · other k²
    out: int        # entries of the result
    k: int          # outputs per sample
    n_feat: int     # samples whose per-sample quantities are formed


def _sizes(out_shape, n1, n2, trace, diag, same) -> _Sizes:
    full = (None,) + tuple(out_shape)
    n_pairs = n1 if 0 in diag else n1 * n2
    pair = out = n_pairs
    for a in range(1, len(full)):
        if a in trace:
            pair *= full[a]
        elif a in diag:
            pair, out = pair * full[a], out * full[a]
        else:
            pair, out = pair * full[a] ** 2, out * full[a] ** 2
    return _Sizes(n_pairs, pair, out, math.prod(out_shape), n1 if same else n1 + n2)


def _layer_forms(layer: _Layer, s: _Sizes) -> dict:
    """``{form: (multiply-adds, intermediate entries)}`` for the two contraction orders."""
    b, g, c, f = layer.dims
    return {"gram": (s.n_pairs * b * g * g * c + s.pair * b * g * g * f + s.out * b * g * g,
                     (s.n_pairs + s.out) * b * g * g),
            "jacobian": (s.n_feat * s.k * b * g * c * f + s.pair * b * c * f,
                         s.n_feat * s.k * b * c * f)}


def _choose(forms: dict, budget_entries: float) -> str:
    fits = [name for name, (_, mem) in forms.items() if mem <= budget_entries]
    if not fits:
        return min(forms, key=lambda name: forms[name][1])
    return min(fits, key=lambda name: forms[name][0])


class LeafCost(NamedTuple):
    """How one parameter leaf is handled: ``kind`` (dense, conv, bias, jacobian, unused),
    the contraction ``form`` (gram or jacobian; ``None`` if unused) and its multiply-adds."""
    path: str
    kind: str
    form: str | None
    flops: int


class StructuredCost(NamedTuple):
    """Cost estimate (multiply-adds) and largest intermediates (bytes), structured vs Jacobian.

    Both FLOP counts include the same per-sample forward/backward passes
    (``≈ (1 + 2K)·forward`` per sample, the dot_general/conv multiply-adds of the network);
    ``flops_jacobian`` counts the block-triangular contraction ``jaxinfo.ntk`` uses for large
    symmetric kernels.
    """
    flops_structured: int
    flops_jacobian: int
    bytes_structured: int
    bytes_jacobian: int
    leaves: tuple


def _leaf_costs(plan, num_params, s: _Sizes, budget_entries):
    """``[(kind, form, flops, entries)]`` per leaf."""
    by_leaf = {layer.leaf: layer for layer in plan.layers}
    out = []
    for leaf, kind in enumerate(plan.kinds):
        if kind in ("dense", "conv"):
            forms = _layer_forms(by_leaf[leaf], s)
            form = _choose(forms, budget_entries)
            out.append((kind, form) + forms[form])
        elif kind == "unused":
            out.append((kind, None, 0, 0))
        else:
            p = num_params[leaf]
            out.append((kind, "jacobian", s.pair * p, s.n_feat * s.k * p))
    return out


def structured_cost(apply_fn: ApplyFn, params: Any, x_shape: Sequence[int], *,
                    n2: int | None = None, trace_axes: Sequence[int] = (-1,),
                    diagonal_axes: Sequence[int] = (), dtype: Any = None,
                    memory_budget: int = DEFAULT_MEMORY_BUDGET) -> StructuredCost:
    """Estimated cost of :func:`structured_ntk` vs the per-sample Jacobian contraction.

    Nothing is computed: ``apply_fn`` is only traced (abstractly) on one sample.

    Args:
      apply_fn, params: as for :func:`structured_ntk`.
      x_shape: shape ``[n1, ...]`` of ``x1``.
      n2: number of ``x2`` samples; ``None`` means ``x2 = None`` (the symmetric kernel).
      trace_axes, diagonal_axes: as for :func:`structured_ntk`.
      dtype: of the inputs (default: that of the first parameter leaf).
      memory_budget: bytes an intermediate of one leaf's contraction may take.

    Returns:
      A :class:`StructuredCost`: ``flops_structured`` and ``flops_jacobian`` (multiply-adds),
      the largest intermediates of each (bytes: per-sample features of one leaf for
      structured, all per-sample Jacobians ``(n1 + n2)·K·P`` for the contraction), and a
      :class:`LeafCost` per parameter leaf. ``"auto"`` may pick structured when
      ``flops_structured < flops_jacobian``.
    """
    leaves_with_path = jax.tree_util.tree_leaves_with_path(params)
    if dtype is None:
        dtype = jnp.result_type(leaves_with_path[0][1]) if leaves_with_path else jnp.float32
    x_shape = tuple(int(d) for d in x_shape)
    plan = _plan(apply_fn, params, jax.ShapeDtypeStruct(x_shape[1:], dtype))
    same = n2 is None
    n1, n2 = x_shape[0], x_shape[0] if same else int(n2)
    trace, diag = _check_axes(1 + len(plan.out_shape), n1, n2, trace_axes, diagonal_axes)
    s = _sizes(plan.out_shape, n1, n2, trace, diag, same)
    itemsize = jnp.dtype(dtype).itemsize
    num_params = [int(np.prod(np.shape(leaf))) for _, leaf in leaves_with_path]
    costs = _leaf_costs(plan, num_params, s, memory_budget / itemsize)
    passes = s.n_feat * (1 + 2 * s.k) * plan.fwd_macs
    total = sum(num_params)
    contraction = s.pair * total
    if same and 0 not in diag and n1 >= _SYMMETRIC_MIN_N:  # jaxinfo.ntk's block triangle
        contraction = contraction * (_SYMMETRIC_PARTS + 1) // (2 * _SYMMETRIC_PARTS)
    leaves = tuple(LeafCost(jax.tree_util.keystr(path), kind, form, int(flops))
                   for (path, _), (kind, form, flops, _) in zip(leaves_with_path, costs))
    return StructuredCost(
        flops_structured=int(passes + sum(c[2] for c in costs)),
        flops_jacobian=int(passes + contraction),
        bytes_structured=int(max([c[3] for c in costs], default=0) * itemsize),
        bytes_jacobian=int(s.n_feat * s.k * total * itemsize),
        leaves=leaves)


# ----------------------------------------------------------------------------- kernel

def _contract_layer(form, subs, a1, d1, a2, d2, precision):
    """One ``dense`` / ``conv`` leaf: ``a [n, B, G, C]``, ``d [n, *out, B, G, F]``."""
    s1, s2, out = subs
    if form == "gram":
        i, j = s1[0], s2[0]
        ij = i + j if i != j else i
        ga = jnp.einsum(f"{i}YWV,{j}YXV->{ij}YWX", a1, a2, precision=precision)
        gd = jnp.einsum(f"{s1}YWU,{s2}YXU->{out}YWX", d1, d2, precision=precision)
        return jnp.einsum(f"{ij}YWX,{out}YWX->{out}", ga, gd, precision=precision)
    j1 = jnp.einsum("NYWV,N...YWU->N...YVU", a1, d1, precision=precision)
    j2 = jnp.einsum("NYWV,N...YWU->N...YVU", a2, d2, precision=precision)
    j1 = j1.reshape(j1.shape[:len(s1)] + (-1,))
    j2 = j2.reshape(j2.shape[:len(s2)] + (-1,))
    return jnp.einsum(f"{s1}Z,{s2}Z->{out}", j1, j2, precision=precision)


@functools.partial(jax.jit, static_argnames=("apply_fn", "trace", "diag", "same", "budget"))
def _structured_ntk(apply_fn, params, x1, x2, trace, diag, same, budget):
    plan = _plan(apply_fn, params, jax.ShapeDtypeStruct(x1.shape[1:], x1.dtype))
    leaves = jax.tree_util.tree_leaves(params)
    n1, n2 = x1.shape[0], x2.shape[0]
    s = _sizes(plan.out_shape, n1, n2, trace, diag, same)
    subs = _subscripts(1 + len(plan.out_shape), trace, diag)
    num_params = [int(np.prod(np.shape(leaf))) for leaf in leaves]
    dtype = jnp.result_type(*leaves, x1) if leaves else x1.dtype
    forms = [c[1] for c in _leaf_costs(plan, num_params, s,
                                       budget / jnp.dtype(dtype).itemsize)]
    precision = None if jax.default_backend() == "cpu" else jax.lax.Precision.HIGHEST

    features = jax.vmap(lambda xi: _sample_features(plan, leaves, xi))
    a1, d1, j1 = features(x1)
    a2, d2, j2 = (a1, d1, j1) if same else features(x2)

    shape = (n1,) if 0 in diag else (n1, n2)  # in the axis order _subscripts writes
    for axis, k in enumerate(plan.out_shape, 1):
        shape += () if axis in trace else (k,) if axis in diag else (k, k)
    theta = jnp.zeros(shape, dtype)
    for index, layer in enumerate(plan.layers):
        theta = theta + _contract_layer(forms[layer.leaf], subs, a1[index], d1[index],
                                        a2[index], d2[index], precision)
    s1, s2, out = subs
    for index, _ in enumerate(plan.direct):
        theta = theta + jnp.einsum(f"{s1}Z,{s2}Z->{out}", j1[index], j2[index],
                                   precision=precision)
    return theta


def structured_ntk(apply_fn: ApplyFn, params: Any, x1: jax.Array, x2: jax.Array | None = None,
                   *, trace_axes: Sequence[int] = (-1,), diagonal_axes: Sequence[int] = (),
                   memory_budget: int = DEFAULT_MEMORY_BUDGET) -> jax.Array:
    """Empirical NTK ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` by structured derivatives (module docstring).

    Equal to ``jaxinfo.ntk.empirical_ntk(..., implementation="jacobian")``; pure and jit-able.

    Args:
      apply_fn: ``apply_fn(params, x) -> [n, *out]``, any JAX function (plain ``jnp`` code or
        e.g. :func:`jaxinfo.flax_apply`); samples must be processed independently.
      params: the weights (any pytree).
      x1: ``[n1, ...]`` inputs.
      x2: ``[n2, ...]`` inputs; ``None`` means ``x1`` (per-sample quantities computed once).
      trace_axes: output axes (batch axis 0 included) summed over; ``(-1,)`` gives
        ``[n1, n2]`` for ``[n, k]`` outputs, ``()`` gives ``[n1, n2, k, k]``.
      diagonal_axes: output axes of which only the diagonal is kept (``(0,)``: per-sample
        kernels ``Θ(x_i, x_i)``, needs ``len(x1) == len(x2)``).
      memory_budget: bytes an intermediate of one leaf's contraction may take; the cheaper
        contraction order that fits is used (the smaller one if neither fits).

    Returns:
      The kernel, with the axes of :func:`jaxinfo.ntk.empirical_ntk`.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be callable as apply_fn(params, x), got {apply_fn!r}")
    same = x2 is None
    x1, x2 = _check_inputs(params, x1, x2)
    out_shape = jax.eval_shape(lambda x: apply_fn(params, x), x1[:1]).shape
    trace, diag = _check_axes(len(out_shape), x1.shape[0], x2.shape[0], trace_axes,
                              diagonal_axes)
    return _structured_ntk(apply_fn, params, x1, x2, trace, diag, same, int(memory_budget))
