#!/usr/bin/env bash
# GPU check, run on an NVIDIA machine from the repository root with a CUDA build of dagrun
# and the KAR reference data in gpu-bin/ (bench/gpu_prepare.sh makes both on a build machine):
#   1. CUDA scores of trained rerankers against the CPU's for the same weights (within 1e-3),
#   2. dagrun training throughput on the GPU (knowledge dim 384 and 64),
#   3. the KAR authors' PyTorch code on the same world (dim 64) on the GPU, for comparison.
set -u
# (Measured on an H200: ~4 minutes of kernel compilation for DLCM alone.)
LOG_NAME=gpu_check.log . bench/gpu_env.sh
echo "== dagrun: CUDA vs CPU scores and GPU throughput, knowledge dim 384"
$B bench rerank --device cuda --users 4000 --items 2000 --dim 384 --epochs 3
echo "== dagrun: GPU throughput, knowledge dim 64 (the world KAR's code gets below)"
$B bench rerank --device cuda --users 4000 --items 2000 --dim 64 --epochs 3
if [ -d gpu-bin/kar/RS ] && python3 -c "import torch" 2>/dev/null; then
  echo "== KAR's PyTorch code on the GPU, same world, dim 64, batch 512 (train time per epoch)"
  # KAR's main_rerank.py imports sklearn for metrics the rerank task never calls; a stub
  # stands in where sklearn is not installed.
  if ! python3 -c "import sklearn" 2>/dev/null; then
    mkdir -p /tmp/shim/sklearn && touch /tmp/shim/sklearn/__init__.py
    printf 'def roc_auc_score(*a, **k): raise NotImplementedError\ndef log_loss(*a, **k): raise NotImplementedError\n' > /tmp/shim/sklearn/metrics.py
    export PYTHONPATH=/tmp/shim
  fi
  for algo in DLCM PRM; do for aug in false true; do
    (cd gpu-bin/kar/RS && python3 main_rerank.py --data_dir ../../proc --save_dir /tmp/karmodel --algo $algo --augment $aug \
      --aug_prefix synth --epoch_num 3 --batch_size 512 --lr 0.001 --device cuda 2>&1 \
      | awk -v m="$algo augment=$aug" '/Train data size/ {n=$4} /^epoch:/ {gsub(",","",$5); printf "%s epoch %s: %.0f lists/s\n", m, $2, n/$5}')
  done; done
fi
