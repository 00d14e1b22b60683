# Sourced by the GPU check scripts with LOG_NAME set: logs everything to $OUT/$LOG_NAME as it
# happens (a run cut off by the device tool's time limit still returns what it measured), sets
# up the CUDA libraries, unpacks the gzipped CUDA build of dagrun from gpu-bin/ into $B and
# prints the GPU. The first CUDA run of a model spends minutes compiling and autotuning kernels.
LOG=${OUT:-/tmp}/$LOG_NAME
exec > >(tee -a "$LOG") 2>&1
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-/usr/local/cuda/lib64}
B=/tmp/dagrun-gpu
[ -f gpu-bin/dagrun.gz ] && gunzip -c gpu-bin/dagrun.gz > $B && chmod +x $B
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
