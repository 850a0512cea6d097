"""pretrained/full: exact linearized LOO (brute force, linearized_loo_kernel) vs the Lanczos closed form
and the real LOO fine-tuning of run_pretrained.py (needs its --work folder; run from the repo root).

    PYTHONPATH=. python benchmarks/check_pretrained_exact.py
"""
import json, os, sys, time
import jax, jax.numpy as jnp, numpy as np
sys.argv = ["x"]; sys.path.insert(0, "benchmarks")
import run_pretrained as R
from jaxinfo.groundtruth import linearized_loo_kernel, correlation
from jaxinfo.checkpoint import load_params
work = "/tmp/jaxinfo_pre"
t0 = time.time()
pre = load_params(os.path.join(work, "pretrain", "final"))
task = R.load_task(500, 500)
rec = json.load(open(os.path.join(work, "pretrained_full.json")))
with jax.enable_x64(True):
    reg, x, xr = R.build("pretrained", "full", pre, task, "lax", jnp.float64)
    theta, theta_ref, f0 = R.kernels(reg, x, xr, os.path.join(work, "kernels_pretrained_full.npz"))
    print("kernels", time.time() - t0, flush=True)
    dyn = R.GradientDescent(lr=rec["lr"], t=rec["steps"])
    idx = np.asarray(rec["indices"])
    ex = linearized_loo_kernel(theta, f0 - task.y_train.astype(np.float64), dyn, theta_ref=theta_ref, indices=idx, progress=False)
ew, ef = np.asarray(rec["est_w_all"])[idx], np.asarray(rec["est_f_all"])[idx]
out = dict(max_rel_lanczos_vs_exact_w=float(np.max(np.abs(ew - ex.weight_change_sq) / ex.weight_change_sq)),
           max_rel_lanczos_vs_exact_f=float(np.max(np.abs(ef - ex.function_change_sq) / ex.function_change_sq)),
           exact_vs_actual_w=correlation(ex.weight_change_sq, rec["act_w"])._asdict(),
           exact_vs_actual_f=correlation(ex.function_change_sq, rec["act_f"])._asdict(), seconds=time.time() - t0)
print(out, flush=True)
json.dump(out, open(os.path.join(work, "check_full_exact.json"), "w"), indent=1)
