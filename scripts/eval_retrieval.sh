#!/usr/bin/env bash
# Parallel-sentence retrieval accuracy of every layer of an XLM-R model (Tatoeba-style, XTREME).
#
# Usage:    scripts/eval_retrieval.sh MODEL_DIR [DATA_DIR] [extra `xlmr eval-retrieval` args]
#   MODEL_DIR  model.pt + dict.txt + sentencepiece.bpe.model
#   DATA_DIR   aligned <lang>.txt files (default: demo/corpus/udhr, written by `make demo` / `xlmr fetch-corpora`), or
#              Tatoeba's tatoeba.<xx>-eng.{<xx>,eng} files with FORMAT=tatoeba
# Recipe:   XTREME's Tatoeba settings: mean-pooled states, cosine nearest neighbour, reported at layer 7
#           of 12 (REPORT_LAYER=13 for 24-layer models); margin scoring (BUCC, k=4) is computed alongside.
# Expected: $OUT_DIR/retrieval.json (accuracy per language, layer, direction, scoring), retrieval.png
#           (accuracy per layer: middle layers beat the last one for a trained XLM-R), results.json.
# Env:      OUT_DIR (retrieval/<model dir name>), NAME (benchmark name in results.json: the data dir's name),
#           FORMAT (aligned), PIVOT (en), LANGS (all found), POOLING (mean), REPORT_LAYER (7), SCORING (cosine),
#           BATCH (32)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)  # paths given by the user stay relative to where they run it

if [[ $# -lt 1 ]]; then
  sed -n '2,15p' "$0" >&2
  exit 2
fi
MODEL_DIR=$1
shift
DATA_DIR=demo/corpus/udhr
if [[ $# -ge 1 && $1 != -* ]]; then
  DATA_DIR=$1
  shift
fi

OUT_DIR=${OUT_DIR:-retrieval/$(basename "$MODEL_DIR")}
NAME=${NAME:-$(basename "$DATA_DIR")}
FORMAT=${FORMAT:-aligned}
PIVOT=${PIVOT:-en}
POOLING=${POOLING:-mean}
REPORT_LAYER=${REPORT_LAYER:-7}
SCORING=${SCORING:-cosine}
BATCH=${BATCH:-32}
BIN=${BIN:-$REPO/.venv/bin}

inputs=(--model-dir "$MODEL_DIR" --data-dir "$DATA_DIR" --format "$FORMAT" --pivot "$PIVOT")
[[ -n "${LANGS:-}" ]] && inputs+=(--languages "$LANGS")
method=(--pooling "$POOLING" --layers all --report-layer "$REPORT_LAYER" --scoring "$SCORING" --margin-k 4
        --batch-size "$BATCH")
outputs=(--out-dir "$OUT_DIR" --name "$NAME")

"$BIN/xlmr" eval-retrieval "${inputs[@]}" "${method[@]}" "${outputs[@]}" "$@"
