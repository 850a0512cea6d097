#!/usr/bin/env bash
# Issue 12 on this CPU, without an accelerator: the full-size Fashion-MNIST sweep (the authors'
# protocol unchanged, one seed) replicated with --key 1, 2, ... until KEYS are done, each mode
# trained (~50 min for the 5 networks) and then measured with the authors' KSG (~6 min per
# network; figures benchmarks/figures/memorization_authors_epochs_fashion50k_s1_keyK_MODE_*),
# then all replicates pooled as seeds (memorization_replicates.py: tau with the
# bootstrap over replicates, per layer, figure). Key 0 is authors_fashion_s1. Every step is
# resumable: rerun this script after any interruption (a session's end); what is stored is
# skipped. Wall time of each step goes to memorization_runs/replicates.log.
#
#   nohup nice bash benchmarks/memorization_replicates.sh > /tmp/replicates.out 2>&1 &
#
# KEYS (default "1 2 3 4") and MODES (default "colored shuffled") pick a subset.
set -euo pipefail
cd "${JAXINFO_ROOT:-$(dirname "$0")/..}"
PY=${PY:-.venv/bin/python}
R=benchmarks/memorization_runs
export JAXINFO_DATA_DIR=${JAXINFO_DATA_DIR:-$PWD/.data}
SWEEP=(--protocol authors-epochs --dataset fashion_mnist --seeds 1 --mi binned)
step() { local t0=$SECONDS; echo "[$(date -u +%FT%TZ)] start: $1" >> $R/replicates.log; shift
         "$@"; echo "[$(date -u +%FT%TZ)] done in $((SECONDS - t0)) s" >> $R/replicates.log; }
pool() {
  local d runs=(--run 0=$R/authors_fashion_s1)
  for d in $R/authors_fashion_s1_key*; do  # every replicate stored, whatever KEYS picks
    [ -d "$d" ] && runs+=(--run ${d##*key}=$d)
  done
  step "pool the replicates" $PY benchmarks/memorization_replicates.py "${SWEEP[@]}" "${runs[@]}" \
      --out $R/replicates_fashion50k --figures benchmarks/figures/memorization_fashion50k_replicates
}
for k in ${KEYS:-1 2 3 4}; do
  for mode in ${MODES:-colored shuffled}; do
    out=$R/authors_fashion_s1_key$k
    step "train $mode, key $k" $PY benchmarks/run_memorization.py "${SWEEP[@]}" --key $k \
        --modes $mode --out $out
    step "authors' KSG, $mode, key $k" $PY benchmarks/memorization_ablation.py --base $out \
        "${SWEEP[@]}" --key $k --modes $mode --only "authors' protocol" --out /tmp/abl_${mode}_key$k \
        --figures benchmarks/figures/memorization_authors_epochs_fashion50k_s1_key${k}_$mode
    pool
  done
done
