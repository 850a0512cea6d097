"""Sharding over a device mesh equals the single-device path (8 host CPU devices).

Each check runs a small script in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` and ``JAX_PLATFORMS=cpu``, so the main
pytest process keeps its single device. Everything runs in float64; sample counts are chosen
not divisible by 8 (padding) and, where the sharding itself is checked, divisible by 8.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_PRELUDE = """
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import jaxinfo
from jax.sharding import NamedSharding
from jaxinfo import GradientDescent, LOOSolver
from jaxinfo.distributed import data_mesh

assert jax.device_count() == 8, jax.devices()
k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
D, W, K = 5, 16, 2
params = {"w1": jax.random.normal(k1, (D, W)) / np.sqrt(D), "b1": 0.1 * jnp.ones(W),
          "w2": jax.random.normal(k2, (W, K)) / np.sqrt(W)}


def f(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"]


def rel(a, b, atol=0.0):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), atol))


def row_sharded(a):
    s = a.sharding
    return (isinstance(s, NamedSharding) and not s.is_fully_replicated
            and s.spec[0] is not None and "data" in np.atleast_1d(s.spec[0]))
"""


def _run(body: str, timeout: int = 120) -> str:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    script = _PRELUDE + textwrap.dedent(body) + '\nprint("OK")\n'
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), \
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_empirical_ntk_sharded_equals_single_device():
    _run("""
    x = jax.random.normal(k3, (13, D))           # 13: not divisible by 8 (padded, sliced)
    x2 = jax.random.normal(k4, (11, D))
    for model, impl, kw in [(1, "jacobian", dict(trace_axes=())),   # data=8: the ring
                            (2, "jacobian", dict(x2=x2)),           # data=4 x model=2
                            (2, "structured", dict(trace_axes=(), x2=x2))]:
        mesh = data_mesh(model)
        assert dict(mesh.shape) == {"data": 8 // model, "model": model}
        xb = kw.pop("x2", None)
        ref = jaxinfo.empirical_ntk(f, params, x, xb, implementation=impl, **kw)
        out = jaxinfo.empirical_ntk(f, params, x, xb, implementation=impl, mesh=mesh, **kw)
        assert rel(out, ref) <= 1e-10, (model, impl, kw, rel(out, ref))

    # n divisible by the data axis: the kernel stays sharded by rows over "data"; a mesh made
    # with jax.make_mesh's default (Explicit) axis types works the same
    x16 = jax.random.normal(k3, (16, D))
    ref = jaxinfo.empirical_ntk(f, params, x16, trace_axes=(), implementation="jacobian")
    for mesh in (data_mesh(2), jax.make_mesh((8,), ("data",))):
        out = jaxinfo.empirical_ntk(f, params, x16, trace_axes=(), implementation="jacobian",
                                    mesh=mesh)
        assert rel(out, ref) <= 1e-10 and row_sharded(out), out.sharding
        assert out.addressable_shards[0].data.shape[0] == 16 // mesh.shape["data"]
    """)


def test_unique_information_sharded_equals_single_device_padded():
    _run("""
    n = 13                                       # not divisible by 8: padded to 16 samples
    x, y = jax.random.normal(k3, (n, D)), jax.random.normal(k4, (n, K))
    kw = dict(dynamics=GradientDescent(lr=0.5, t=None), solver=LOOSolver(chunk_size=5),
              progress=False)
    a = jaxinfo.unique_information(f, params, x, y, x[:5] + 0.3, **kw)
    b = jaxinfo.unique_information(f, params, x, y, x[:5] + 0.3, mesh=data_mesh(), **kw)
    assert a.method == b.method == "schur"
    for q in ("weight_si", "functional_si", "sample_loss"):
        # t = ∞ without decay interpolates: the losses are round-off around 0
        assert rel(getattr(b, q), getattr(a, q), atol=1e-12) <= 1e-10, q
    """)


def test_uneven_n_padded_to_a_bucket_is_sharded():
    _run("""
    from jaxinfo.sui import driver
    n = 13                                       # 26 rows: not divisible by 8; padded to 16
    x, y = jax.random.normal(k3, (n, D)), jax.random.normal(k4, (n, K))
    mesh, solver = data_mesh(), LOOSolver(pad_to="bucket", chunk_size=5)
    for t in (None, 30.0):
        kw = dict(dynamics=GradientDescent(lr=0.5, t=t, weight_decay=1e-3), progress=False)
        a = jaxinfo.unique_information(f, params, x, y, x[:5] + 0.3, **kw)
        b = jaxinfo.unique_information(f, params, x, y, x[:5] + 0.3, mesh=mesh, solver=solver,
                                       **kw)
        assert a.method == b.method
        for q in ("weight_si", "functional_si", "sample_loss"):
            assert rel(getattr(b, q), getattr(a, q)) <= 1e-10, (t, q)
    # 26 rows would be replicated (8 devices split only equal blocks): padded to 16 samples
    # by default (or to the bucket), Θ is sharded by rows
    theta = np.asarray(jaxinfo.kernel_matrix(jaxinfo.empirical_ntk(f, params, x, trace_axes=())))
    r0 = np.asarray(f(params, x) - y)
    dyn = GradientDescent(lr=0.5, t=None, weight_decay=1e-3)
    for pad, rows in ((None, 32), ("bucket", 32)):
        th, r, _ = driver._place("float64", mesh, theta, r0, None)
        assert not row_sharded(th)
        st = driver._setup(th, r, dyn, None, "auto", mesh, LOOSolver(pad_to=pad))
        assert row_sharded(st.prob.theta) and st.prob.theta.shape == (rows, rows), pad
    """)


def test_projected_and_out_of_core_paths_on_a_mesh(tmp_path):
    _run(f"""
    import os
    n = 13
    x, y = jax.random.normal(k3, (n, D)), jax.random.normal(k4, (n, K))
    mesh, key = data_mesh(), jax.random.PRNGKey(5)
    # d = 16 < nk = 26: the weight-space (SMW / Lanczos) path; d = 64 ≥ nk: the dual kernel
    # path on Θ̃ = ΦΦᵀ. P = 128, so both are sketches.
    for d in (16, 64):
        for t in (None, 30.0):
            kw = dict(dynamics=GradientDescent(lr=0.2, t=t, weight_decay=1e-3), progress=False,
                      projection_dim=d, key=key)
            a = jaxinfo.unique_information(f, params, x, y, x[:5] + 0.3, **kw)
            b = jaxinfo.unique_information(f, params, x, y, x[:5] + 0.3, mesh=mesh, **kw)
            for q in ("weight_si", "functional_si", "sample_loss"):
                assert rel(getattr(b, q), getattr(a, q)) <= 1e-10, (d, t, q)
    # out of core: a memory budget below Θ's 5.4 kB sends Θ to disk, tile by tile
    kw = dict(dynamics=GradientDescent(lr=0.5, t=None, weight_decay=1e-3), progress=False,
              solver=LOOSolver(memory_budget=2000))
    a = jaxinfo.unique_information(f, params, x, y, kernel_dir="{tmp_path}/a", **kw)
    b = jaxinfo.unique_information(f, params, x, y, kernel_dir="{tmp_path}/b", mesh=mesh, **kw)
    assert os.path.exists("{tmp_path}/b/theta.npy")
    for q in ("weight_si", "functional_si", "sample_loss"):
        assert rel(getattr(b, q), getattr(a, q)) <= 1e-10, q
    th_a, th_b = np.load("{tmp_path}/a/theta.npy"), np.load("{tmp_path}/b/theta.npy")
    assert rel(th_b, th_a) <= 1e-12
    """)


def test_unique_information_sharded_equals_single_device_finite_t():
    _run("""
    n = 16                                       # Θ [32, 32] sharded by rows over "data"
    x, y = jax.random.normal(k3, (n, D)), jax.random.normal(k4, (n, K))
    mesh = data_mesh(2)
    dyn = GradientDescent(lr=0.5, t=40.0)
    kw = dict(dynamics=dyn, solver=LOOSolver(method="lanczos", chunk_size=5), progress=False)
    a = jaxinfo.unique_information(f, params, x, y, **kw)
    b = jaxinfo.unique_information(f, params, x, y, mesh=mesh, **kw)
    assert a.method == b.method == "lanczos"
    for q in ("weight_si", "functional_si", "sample_loss"):
        assert rel(getattr(b, q), getattr(a, q)) <= 1e-10, q
    # from a host kernel: placed on the mesh by rows
    theta = jaxinfo.kernel_matrix(jaxinfo.empirical_ntk(f, params, x, trace_axes=()))
    c = jaxinfo.unique_information_from_kernel(np.asarray(theta), f(params, x) - y, mesh=mesh,
                                               **kw)
    assert rel(c.weight_si, a.weight_si) <= 1e-10 and rel(c.functional_si, a.functional_si) <= 1e-10
    """)


def test_capture_activations_sharded_equals_single_device():
    _run("""
    from flax import linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Dense(6)(x))
            return nn.Dense(2)(nn.tanh(nn.Dense(4)(h)))

    model = MLP()
    x = np.asarray(jax.random.normal(k3, (13, D)))   # batches of 5, 5, 3: padded to 8
    variables = model.init(k1, x[:1])
    a = jaxinfo.capture_activations(model, variables, x, batch_size=5)
    b = jaxinfo.capture_activations(model, variables, x, batch_size=5, mesh=data_mesh(2))
    assert list(a) == list(b) and all(b[k].shape == (13, a[k].shape[1]) for k in a)
    assert all(rel(b[k], a[k]) <= 1e-12 for k in a)
    """)


def test_data_mesh_and_initialize_errors(monkeypatch):
    import jax

    from jaxinfo import distributed

    mesh = distributed.data_mesh()
    assert mesh.axis_names == ("data", "model")
    assert dict(mesh.shape) == {"data": jax.device_count(), "model": 1}
    with pytest.raises(ValueError, match="model"):
        distributed.data_mesh(model=jax.device_count() + 1)
    with pytest.raises(ValueError, match="'data' axis"):
        distributed.auto_mesh(jax.make_mesh((1,), ("batch",)))

    def fail(**kwargs):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", fail)
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "2")
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "1")
    with pytest.raises(RuntimeError, match="num_processes=2, process_id=1"):
        distributed.initialize()
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "one")
    with pytest.raises(ValueError, match="JAXINFO_PROCESS_ID"):
        distributed.initialize()


_WORKER = """
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from jaxinfo.distributed import initialize, to_host
initialize()                                  # from JAXINFO_* environment variables
""" + _PRELUDE.replace("assert jax.device_count() == 8, jax.devices()",
                       "assert jax.device_count() == 8 and jax.local_device_count() == 4") + """
x, y = jax.random.normal(k3, (16, D)), jax.random.normal(k4, (16, K))
mesh = data_mesh(2)
ref = jaxinfo.empirical_ntk(f, params, x, trace_axes=(), implementation="jacobian")
out = jaxinfo.empirical_ntk(f, params, x, trace_axes=(), implementation="jacobian", mesh=mesh)
assert row_sharded(out) and not out.is_fully_addressable
assert rel(to_host(out), ref) <= 1e-10
kw = dict(dynamics=GradientDescent(lr=0.5, t=40.0), solver=LOOSolver(chunk_size=5),
          progress=False)
a = jaxinfo.unique_information(f, params, x, y, **kw)
b = jaxinfo.unique_information(f, params, x, y, mesh=mesh, **kw)
assert rel(b.weight_si, a.weight_si) <= 1e-10 and rel(b.functional_si, a.functional_si) <= 1e-10
print("OK")
"""


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("JAXINFO_TEST_MULTIPROCESS") != "1",
                    reason="two processes x 4 CPU devices on localhost ports (15-60 s): set "
                           "JAXINFO_TEST_MULTIPROCESS=1")
def test_two_processes_like_two_hosts():
    """jaxinfo.distributed.initialize + a mesh over two processes (gloo CPU collectives)."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = []
    for pid in range(2):
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
                   JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
                   JAXINFO_COORDINATOR_ADDRESS=f"localhost:{port}", JAXINFO_NUM_PROCESSES="2",
                   JAXINFO_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, "-c", _WORKER], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip().endswith("OK"), f"{out}\n{err[-4000:]}"
