#!/usr/bin/env bash
# The issue-12 background queue on the bundled MNIST (each step resumable: rerun this script
# after any interruption). Wall time of each step goes to memorization_runs/queue.log.
set -euo pipefail
cd "${JAXINFO_ROOT:-$(dirname "$0")/..}"   # JAXINFO_ROOT: run a copy of this script
PY=${PY:-.venv/bin/python}
R=benchmarks/memorization_runs
step() { local t0=$SECONDS; echo "[$(date -u +%FT%TZ)] start: $1" >> $R/queue.log; shift
         "$@"; echo "[$(date -u +%FT%TZ)] done in $((SECONDS - t0)) s" >> $R/queue.log; }
ABL=(benchmarks/memorization_ablation.py --base $R/authors_epochs_mnist_s10 --seeds 10
     --protocol authors-epochs --dataset mnist --mi binned --out $R)
step "authors-epochs, bundled MNIST, 10 seeds" $PY benchmarks/run_memorization.py \
    --protocol authors-epochs --dataset mnist --seeds 10 --mi binned --out $R/authors_epochs_mnist_s10
step "entropy and binned-MI ablations" $PY "${ABL[@]}" \
    --only "MI: binned (100 bins);binning: per layer;binning: per neuron;bin assignment: histogram"
step "the authors' protocol (KSG)" $PY "${ABL[@]}" --only "authors' protocol"
step "all ablations" $PY "${ABL[@]}" --figures benchmarks/figures/memorization_authors_epochs_mnist_s10 \
    --train-run "schedule: steps (1 seed)=$R/authors_steps_mnist_s1" \
    --train-run "data: Fashion-MNIST 4,000=$R/authors_epochs_fashion4000_s10" \
    --train-run "data: Fashion-MNIST 50,000 (1 seed)=$R/authors_fashion_s1"
# Full-size data (hours on this CPU): the data-size ablation (Fashion-MNIST, 4,000 vs 50,000
# training images, the same 10,000 validation images), then the table again.
step "data size: Fashion-MNIST, 4,000 training images, 10 seeds" $PY benchmarks/run_memorization.py \
    --protocol authors-epochs --dataset fashion_mnist --n-train 4000 --seeds 10 --mi binned \
    --out $R/authors_epochs_fashion4000_s10
step "data size: Fashion-MNIST, 50,000 training images, 1 seed" $PY benchmarks/run_memorization.py \
    --protocol authors-epochs --dataset fashion_mnist --seeds 1 --mi binned --out $R/authors_fashion_s1
step "all ablations, with the full-size runs" $PY "${ABL[@]}" \
    --train-run "schedule: steps (1 seed)=$R/authors_steps_mnist_s1" \
    --train-run "data: Fashion-MNIST 4,000=$R/authors_epochs_fashion4000_s10" \
    --train-run "data: Fashion-MNIST 50,000 (1 seed)=$R/authors_fashion_s1"
# The step-matched schedule on the bundled MNIST (48,500 Adam steps per model, 5 seeds
# vmapped: about four hours here, 4 min on one H200 with benchmarks/memorization_device.sh,
# whose rows are stored), then the table with it.
step "schedule: steps, bundled MNIST, 5 seeds" $PY benchmarks/run_memorization.py \
    --protocol authors-steps --dataset mnist --seeds 5 --mi binned --out $R/authors_steps_mnist_s5
# The L2 ablation at full size (1 seed, ~1 h here).
step "no L2 penalty: Fashion-MNIST 50,000, 1 seed" $PY benchmarks/run_memorization.py \
    --protocol authors-epochs --dataset fashion_mnist --seeds 1 --mi binned \
    --set l2=0.0 --out $R/authors_fashion_l2zero_s1
step "all ablations, with the step-matched and 5-seed full-size runs" $PY "${ABL[@]}" \
    --train-run "schedule: steps (1 seed, MI binned)=$R/authors_steps_mnist_s1" \
    --train-run "schedule: steps (5 seeds, MI binned)=$R/authors_steps_mnist_s5" \
    --train-run "data: Fashion-MNIST 4,000 (MI binned)=$R/authors_epochs_fashion4000_s10" \
    --train-run "data: Fashion-MNIST 50,000 (1 seed, MI binned)=$R/authors_fashion_s1" \
    --train-run "data: Fashion-MNIST 50,000 (5 seeds, MI binned)=$R/authors_fashion_s5" \
    --train-run "no L2 penalty: Fashion-MNIST 50,000 (1 seed, MI binned)=$R/authors_fashion_l2zero_s1"
