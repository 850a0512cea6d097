"""Regenerates ``kernels.npz``: empirical NTKs computed by neural-tangents itself.

Runs ONLY in a separate environment with neural-tangents 0.6.5 and JAX 0.4.25, never in
jaxinfo's (neural-tangents' last release does not import on JAX >= 0.6, and its implementation 3
fails on JAX >= 0.4.26; see README.md). jaxinfo is not needed here:

    python3 -m venv /tmp/ntenv
    /tmp/ntenv/bin/pip install "jax[cpu]==0.4.25" "jaxlib==0.4.25" "neural-tangents==0.6.5" "numpy<2"
    /tmp/ntenv/bin/python tests/data/neural_tangents/make_kernels.py

See README.md beside this file for what every key means. Everything is float64.
"""
from __future__ import annotations

import datetime
import itertools
import sys
import traceback
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

OUT = Path(__file__).resolve().parent / "kernels.npz"

N1, N2 = 6, 4
MLP_IN = 8
IMG = (6, 6, 2)
IMPLEMENTATIONS = (1, 2, 3)  # JACOBIAN_CONTRACTION, NTK_VECTOR_PRODUCTS, STRUCTURED_DERIVATIVES

# (trace_axes, diagonal_axes, x2 given?) -- every valid combination asked for; diag (0,) needs
# x2 = None (or len(x1) == len(x2)). trace (-1,) with diag (-1,) is not valid (same axis).
CASES = [
    ((-1,), (), False), ((-1,), (), True),
    ((), (), False), ((), (), True),
    ((), (-1,), False), ((), (-1,), True),
    ((-1,), (0,), False),
    ((), (0,), False),
]


def axes_tag(axes) -> str:
    """``(-1,)`` -> ``"-1"``, ``()`` -> ``""``, ``(0, -1)`` -> ``"0,-1"``."""
    return ",".join(str(a) for a in axes)


def kernel_key(model: str, impl: int, trace, diag, x2_given: bool) -> str:
    return (f"{model}/impl{impl}/trace{axes_tag(trace)}/diag{axes_tag(diag)}/"
            f"{'x2given' if x2_given else 'x2none'}")


def models():
    mlp = stax.serial(
        stax.Dense(64, W_std=1.5, b_std=0.1),
        stax.Erf(),
        stax.Dense(64, W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Dense(5, W_std=1.5, b_std=0.1),
    )
    cnn = stax.serial(
        stax.Conv(8, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(3),  # W_std = 1, no bias (b_std = None): stax's defaults
    )
    return {"mlp": (mlp, (MLP_IN,)), "cnn": (cnn, IMG)}


def flatten_params(prefix: str, params, out: dict) -> None:
    """stax.serial params: a list with one ``(W, b)`` or ``()`` per layer."""
    for i, layer in enumerate(params):
        if layer == ():
            continue
        W, b = layer
        out[f"{prefix}/params/{i}/W"] = np.asarray(W)
        if b is not None:
            out[f"{prefix}/params/{i}/b"] = np.asarray(b)


def main() -> None:
    out: dict[str, np.ndarray] = {}
    failures: list[str] = []
    index: list[str] = []
    root = jax.random.PRNGKey(20240611)
    for m, (name, ((init_fn, apply_fn, _), in_shape)) in enumerate(models().items()):
        k_init, k_x1, k_x2 = jax.random.split(jax.random.fold_in(root, m), 3)
        x1 = jax.random.normal(k_x1, (N1,) + in_shape, dtype=jnp.float64)
        x2 = jax.random.normal(k_x2, (N2,) + in_shape, dtype=jnp.float64)
        _, params = init_fn(k_init, (-1,) + in_shape)
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(params))
        flatten_params(name, params, out)
        out[f"{name}/x1"] = np.asarray(x1)
        out[f"{name}/x2"] = np.asarray(x2)
        out[f"{name}/fx1"] = np.asarray(apply_fn(params, x1))
        out[f"{name}/fx2"] = np.asarray(apply_fn(params, x2))

        for impl, (trace, diag, given) in itertools.product(IMPLEMENTATIONS, CASES):
            key = kernel_key(name, impl, trace, diag, given)
            try:
                fn = nt.empirical_ntk_fn(apply_fn, trace_axes=trace, diagonal_axes=diag,
                                         vmap_axes=0, implementation=impl)
                k = np.asarray(jax.jit(fn)(x1, x2 if given else None, params))
                if k.dtype != np.float64 or not np.all(np.isfinite(k)):
                    raise ValueError(f"bad result: dtype {k.dtype}, finite {np.isfinite(k).all()}")
            except Exception as e:  # record, keep going
                msg = f"{key}: {type(e).__name__}: {e}".replace("\n", " ")[:500]
                failures.append(msg)
                print("FAILED", msg, file=sys.stderr)
                traceback.print_exc()
                continue
            out[key] = k
            index.append(f"{key}|{name}|{impl}|{trace}|{diag}|{'x2' if given else 'None'}"
                         f"|{k.shape}")
            print(f"{key:40s} {k.shape}")

    versions = [f"jax={jax.__version__}", f"jaxlib={jaxlib.__version__}",
                f"neural_tangents={nt.__version__}", f"numpy={np.__version__}",
                f"python={sys.version.split()[0]}",
                f"generated={datetime.date.today().isoformat()}"]
    out["meta/versions"] = np.array(versions)
    out["meta/index"] = np.array(index)  # key|model|implementation|trace|diag|x2|shape
    out["meta/failures"] = np.array(failures, dtype=str).reshape(-1)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), {len(index)} kernels, "
          f"{len(failures)} failures")
    print("\n".join(versions))


if __name__ == "__main__":
    main()
