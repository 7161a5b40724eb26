#!/usr/bin/env bash
# Pre-train the twins for the zero-shot curve: JEPA4Rec and its RecFormer-style twin (λ2 = 0), the shipped
# MiniLM recipe (pretrain_minilm: single-domain batches, mean pooling, 20 items / 128 tokens, 32 histories a
# step), same start, same data order, same seeds, same steps; only loss.lambda_map differs. Each exports a
# model directory at the curve's steps (step-<n>/, never pruned) and saves a resumable checkpoint every
# SAVE_EVERY steps; the two advance in turns of CHUNK_MINUTES each, so both have the same number of steps
# whenever the script is stopped. SIDE_BY_SIDE=1 runs the two at once instead, THREADS each (on a 2-core CPU
# without native bf16, 2026-12-07: two 1-thread runs side by side made 8.8 + 7.6 s a step, 1.5x the steps of
# one 2-thread run's 6.2 s; a step's dropout sampling, copies and Python do not share the second thread).
#
#   bash scripts/pretrain_twins.sh                      # runs/twins/{jepa4rec,recformer}, 7,300 steps each
#   STEPS=1825 bash scripts/pretrain_twins.sh           # a shorter budget (the schedules follow STEPS)
#   SIDE_BY_SIDE=1 THREADS=1 bash scripts/pretrain_twins.sh   # both at once, one thread each
#   LAMBDA_MAP=1 bash scripts/pretrain_twins.sh         # JEPA4Rec with λ2 = 1 (runs/twins/jepa4rec-lambda1)
#   python scripts/zeroshot_curve.py --twins "JEPA4Rec=runs/twins/jepa4rec" "RecFormer-style (λ2 = 0)=runs/twins/recformer"
#   LAMBDA_MAP=1 bash scripts/pretrain_twins.sh --status   # where each twin is, its pace and the time left; trains nothing
#
# Resumable: run it again (after a kill, or in a later session with the same runs folder) and each twin
# continues from its last checkpoint. Environment: STEPS (default 7300, 20× the shipped 365), EXPORTS
# (default "365,1000,2000,4000"), RUNS (default runs/twins), THREADS (default 2), CHUNK_MINUTES (default 30),
# SAVE_EVERY (default 100), SIDE_BY_SIDE (default 0), LAMBDA_MAP (JEPA4Rec's λ2, default 0.1: the paper's;
# another value trains into jepa4rec-lambda<LAMBDA_MAP>/ beside the default's jepa4rec/), CONFIG (default pretrain_minilm), EXTRA (more --set overrides for both twins, e.g.
# "mixed_precision=no"), PYTHON (default .venv/bin/python, else python), JEPA4REC_DATA_ROOT.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
STEPS=${STEPS:-7300}
EXPORTS=${EXPORTS:-365,1000,2000,4000}
RUNS=${RUNS:-runs/twins}
THREADS=${THREADS:-2}
CHUNK_MINUTES=${CHUNK_MINUTES:-30}
SIDE_BY_SIDE=${SIDE_BY_SIDE:-0}
LAMBDA_MAP=${LAMBDA_MAP:-0.1}
JEPA=jepa4rec
[ "$LAMBDA_MAP" = 0.1 ] || JEPA="jepa4rec-lambda$LAMBDA_MAP"
SAVE_EVERY=${SAVE_EVERY:-100}
CONFIG=${CONFIG:-pretrain_minilm}
read -r -a EXTRA <<< "${EXTRA:-}"
export HF_HUB_OFFLINE=1

status() {  # each twin's logged step, newest checkpoint, exports, recent pace, time left (jepa4rec.pretraining.run_status)
  local name
  for name in "$JEPA" recformer; do
    "$PY" -c 'import sys; from jepa4rec.pretraining import run_status; print(run_status(sys.argv[1], int(sys.argv[2])))' \
      "$RUNS/$name" "$STEPS"
  done
}

steps_done() {  # the step of a twin's final/ (0 when it has none)
  local card="$RUNS/$1/final/training_card.json"
  [ -f "$card" ] && "$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('step', 0))" "$card" || echo 0
}

turn() {  # twin lambda_map: one chunk of CHUNK_MINUTES, resumed when the twin has a checkpoint
  local name=$1 lambda_map=$2 out="$RUNS/$1" resume=()
  compgen -G "$out/checkpoint-*" >/dev/null && resume=(--resume)
  echo "== $name: from step $(steps_done "$name") (λ2 = $lambda_map) ${resume[*]}"
  "$PY" -m jepa4rec.pretrain --config "$CONFIG" --output-dir "$out" --threads "$THREADS" "${resume[@]}" \
    --set max_steps="$STEPS" schedule_steps="$STEPS" max_minutes="$CHUNK_MINUTES" save_every="$SAVE_EVERY" \
    export_steps="[$EXPORTS]" loss.lambda_map="$lambda_map" seed=42 "${EXTRA[@]}"
}

if [ "${1:-}" = "--status" ]; then
  status
  exit 0
fi

while :; do
  a=$(steps_done "$JEPA"); b=$(steps_done recformer)
  if [ "$a" -ge "$STEPS" ] && [ "$b" -ge "$STEPS" ]; then
    echo "== both twins reached $STEPS steps: $RUNS/$JEPA, $RUNS/recformer"; break
  fi
  if [ "$SIDE_BY_SIDE" = 1 ]; then
    # Both at once, each for one chunk; a twin that has reached STEPS just exports and exits.
    echo "== side by side, $THREADS thread(s) each"
    turn "$JEPA" "$LAMBDA_MAP" & j=$!
    turn recformer 0.0 & r=$!
    wait "$j"; wait "$r"
  # The twin behind goes next, so neither runs ahead by more than one chunk.
  elif [ "$a" -le "$b" ]; then turn "$JEPA" "$LAMBDA_MAP"; else turn recformer 0.0; fi
done
