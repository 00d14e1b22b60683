#!/usr/bin/env bash
# LLM GPU check, run on an NVIDIA machine from the repository root with gpu-bin/ made by
# bench/gpu_models_prepare.sh on a build machine:
#   1. CUDA next-token logits against the CPU's for the same weights (prefill of the batch's
#      prompts and 8 decode steps), judged against PyTorch's own TF32-vs-f32 difference on the
#      same prompts: Burn runs f32 matmuls on TF32 tensor cores,
#   2. prefill, batch-1 decode and 16-prompt sampling throughput on the GPU, beside
#      transformers' generate on the same GPU and the same token ids.
# The GPU machine has no network and the device tool carries at most 64 MiB, so the real
# SmolLM2 weights (98 MB) cannot travel: the model is SmolLM2-135M's own config and tokenizer
# with random weights that transformers draws here (seeded) and saves as safetensors, which
# both tools then load. The CPU exactness checks on the real weights are in the test suite.
# Extra arguments go to `dagrun bench llm` (e.g. --batch 4 --new-tokens 16 for a short run).
set -u
LOG_NAME=gpu_llm.log . bench/gpu_env.sh
M=/tmp/smollm2-shape-random
rm -rf $M && mkdir -p $M && cp gpu-bin/smol-shape/* $M/
python3 - "$M" <<'PY'
import sys, torch, transformers
d = sys.argv[1]
cfg = transformers.AutoConfig.from_pretrained(d)
cfg.initializer_range = 0.05
torch.manual_seed(0)
transformers.LlamaForCausalLM(cfg).save_pretrained(d)
print("random SmolLM2-135M-shaped model written to", d)
PY
echo "== dagrun on CUDA vs the CPU, and beside transformers on the same GPU"
$B bench llm --model $M --device cuda --repeats ${REPEATS:-3} --reference python3 "$@"
