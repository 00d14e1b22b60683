#!/usr/bin/env bash
# Encoder GPU check, run on an NVIDIA machine from the repository root with gpu-bin/ made by
# bench/gpu_models_prepare.sh on a build machine:
#   1. CUDA sentence vectors against the CPU's for the same weights (lowest cosine over 256
#      texts at least 0.9999),
#   2. texts per second on the GPU beside sentence-transformers on the same GPU and texts.
# The real MiniLM weights (87 MB) do not fit the device tool's carry, so the model is
# all-MiniLM-L6-v2's own config, tokenizer and pooling files with random weights that
# transformers draws here (seeded); the CPU exactness test on the real weights is in the suite.
# Extra arguments go to `dagrun bench encode`; TEXTS and REPEATS set its sizes.
set -u
LOG_NAME=gpu_encode.log . bench/gpu_env.sh
M=/tmp/minilm-shape-random
rm -rf $M && mkdir -p $M && cp -r gpu-bin/minilm-shape/* $M/
python3 - "$M" <<'PY'
import sys, torch, transformers
d = sys.argv[1]
cfg = transformers.AutoConfig.from_pretrained(d)
torch.manual_seed(0)
transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(d)
print("random all-MiniLM-L6-v2-shaped encoder written to", d)
PY
echo "== dagrun on CUDA vs the CPU, and beside sentence-transformers on the same GPU"
$B bench encode --model $M --device cuda --texts ${TEXTS:-2000} --repeats ${REPEATS:-3} --reference python3 "$@"
