#!/usr/bin/env bash
# Reproduce the equal-terms results table (scripts/results/results_table.*) for one or more datasets:
# fine-tune both MiniLM twins (JEPA4Rec and its λ2 = 0 RecFormer-style twin) from their shipped
# pre-trained checkpoints, then rank every model of the table under both protocols, with and without
# score priors, merge the records into the committed tables and rewrite the README's results block
# from them (scripts/readme_results.py).
#
#   bash scripts/reproduce_equal_terms.sh OnlineRetail ml-100k      # or Scientific_UniSRec
#
#   # the long-trained twins (scripts/pretrain_twins.sh), fine-tuned until validation stops improving, into
#   # their own runs folder and tables (the README's block untouched): Scientific on every training pair
#   # (34,101 an epoch), Online Retail on one sampled pair per user an epoch (all of its pairs would be
#   # 373,505 an epoch: about 20 hours at the 5 pairs/s its 4-epoch runs made on one thread):
#   JEPA=runs/twins/jepa4rec-lambda1/final RECFORMER=runs/twins/recformer/final RUNS=runs/twins_finetune \
#     OUT=scripts/results/twins RECIPE="pairs=all epochs=20 patience=2" \
#     RECIPE_OnlineRetail="pairs=sample epochs=40 patience=2" \
#     bash scripts/reproduce_equal_terms.sh Scientific_UniSRec OnlineRetail
#
# Resumable: a finished fine-tune (its best/ and results.json) and a model's record are reused; an
# interrupted fine-tune continues from its last save (--resume; after every epoch and every 250 steps inside
# one). Run it again after a kill or in a later session with the same runs folder. Environment: THREADS
# (default 2), RUNS (default runs/results_minilm), JEPA and RECFORMER (the pre-trained twins; default the
# shipped checkpoints/jepa4rec-minilm-pretrain and checkpoints/recformer-minilm-pretrain), RECIPE
# (fine-tuning overrides for Scientific / Online Retail, default "epochs=4"; they come last, so they win),
# SIDE_BY_SIDE (1: a dataset's two fine-tunes at once, THREADS each, e.g. THREADS=1 on 2 cores; default 0),
# RECIPE_<dataset> (one dataset's overrides in place of RECIPE, its name's characters other than letters,
# digits and _ written _, e.g. RECIPE_OnlineRetail), OUT (where the tables go, default scripts/results; any
# other folder leaves the README alone), JEPA4REC_DATA_ROOT (where the datasets are), PYTHON (default
# .venv/bin/python, else python).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
THREADS=${THREADS:-2}
RUNS=${RUNS:-runs/results_minilm}
JEPA=${JEPA:-checkpoints/jepa4rec-minilm-pretrain}
RECFORMER=${RECFORMER:-checkpoints/recformer-minilm-pretrain}
OUT=${OUT:-scripts/results}
SIDE_BY_SIDE=${SIDE_BY_SIDE:-0}
export HF_HUB_OFFLINE=1
for ckpt in "$JEPA" "$RECFORMER"; do
  [ -d "$ckpt" ] || { echo "error: no pre-trained model directory $ckpt (set JEPA / RECFORMER)" >&2; exit 2; }
done

finetune() {  # dataset model(jepa4rec|recformer) checkpoint config extra-overrides...
  local ds=$1 model=$2 ckpt=$3 config=$4; shift 4
  local out="$RUNS/$ds/$model"
  if [ -f "$out/results.json" ] && [ -d "$out/best" ]; then
    echo "== $ds $model: fine-tuned already ($out)"; return
  fi
  local resume=()
  [ -d "$out/last" ] && resume=(--resume)
  echo "== $ds $model: fine-tuning from $ckpt ($config $*) ${resume[*]}"
  "$PY" -m jepa4rec.finetune --config "$config" --init-from "$ckpt" --output-dir "$out" --threads "$THREADS" \
    --set dataset="$ds" seed=42 "$@" "${resume[@]}"
}

twins=()  # the fine-tunes started side by side, not yet waited for
start() {  # finetune ..., in the background when SIDE_BY_SIDE=1
  if [ "$SIDE_BY_SIDE" = 1 ]; then finetune "$@" & twins+=("$!"); else finetune "$@"; fi
}
finish() {  # wait for the fine-tunes started side by side; a failed one stops the script with its status
  local pid status=0
  for pid in "${twins[@]}"; do wait "$pid" || status=$?; done
  twins=()
  [ "$status" -eq 0 ] || exit "$status"
}

for ds in "$@"; do
  case "$ds" in
    ml-100k)
      # The app's ml-100k recipe (16 epochs, the whole linear schedule); the JEPA4Rec row keeps the mapping
      # loss (λ2 = 0.1) as the config says, the twin fine-tunes with λ2 = 0 as it was pre-trained.
      start "$ds" jepa4rec "$JEPA" finetune_minilm_ml100k_pretrained max_minutes=null
      start "$ds" recformer "$RECFORMER" finetune_minilm_ml100k_pretrained \
        max_minutes=null loss.lambda_map=0.0
      ;;
    *)
      # Scientific / Online Retail: finetune_minilm with the encoder moving (lr 1e-4), then RECIPE_<dataset>, else
      # RECIPE (4 epochs).
      own="RECIPE_${ds//[^A-Za-z0-9_]/_}"
      read -r -a recipe <<< "${!own:-${RECIPE:-epochs=4}}"
      start "$ds" jepa4rec "$JEPA" finetune_minilm optim.encoder_lr=0.0001 group_by_length=true \
        max_minutes=null "${recipe[@]}"
      start "$ds" recformer "$RECFORMER" finetune_minilm optim.encoder_lr=0.0001 group_by_length=true \
        max_minutes=null "${recipe[@]}"
      ;;
  esac
  finish
  echo "== $ds: the table's rows"
  "$PY" scripts/results_table.py --dataset "$ds" --models popularity sasrec frozen_last_items frozen_history_text \
    frozen_seq zeroshot_recformer zeroshot_jepa4rec recformer jepa4rec --jepa "$JEPA" \
    --recformer "$RECFORMER" --runs-dir "$RUNS" --out-dir "$OUT" --threads "$THREADS"
done
if [ "$OUT" = scripts/results ]; then
  echo "== the README's results block"
  "$PY" scripts/readme_results.py
fi
