#!/usr/bin/env bash
# Every GPU check, most valuable first, for a session that has a GPU (see tests/gpu/README.md).
#
#   bash tests/gpu/run_gpu_checks.sh [all|tests|bench]      (default: all)
#
# Sized for one device-tool call of about 8 minutes on one GPU (an H200, 16 cores): the steps
# run in order of value under one time budget (BUDGET_S, default 480 s); each step also has
# its own limit, and once the budget is spent the remaining steps are listed as not run, so a
# hang costs one step, not the session. Rerun a single step with ONLY=name (e.g. ONLY=op_table).
#
# Uses the machine's python3 (cupy, mpi4py, pytest preinstalled; no network needed) with the
# repository on PYTHONPATH. Wheels in .whl/ (the mpich wheel, for an mpiexec that matches
# mpi4py) are installed to /tmp/site first. Logs go to $OUT (the device tool's folder) or
# gpu-check-logs/, one file per step plus summary.txt; the last lines of each are printed.
# Exit status: 3 without a usable GPU, else that of the first failing step, else 0.
set -u
cd "$(dirname "$0")/../.."
what=${1:-all}
log=${OUT:-gpu-check-logs}
mkdir -p "$log"
py=${PYTHON:-python3}
budget=${BUDGET_S:-480}
only=${ONLY:-}
status=0
start=$SECONDS

if ls .whl/*.whl >/dev/null 2>&1; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
    export LD_LIBRARY_PATH=/tmp/site/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}  # the mpich wheel's
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ -z "${DISTGRAD_MPIEXEC:-}" ] && command -v mpiexec >/dev/null; then
    export DISTGRAD_MPIEXEC=$(command -v mpiexec)
fi

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$py" -c "import sys, numpy, cupy; print(sys.version); print('numpy', numpy.__version__,
'cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())"
    "$py" -c "from cupy.cuda import nccl; print('NCCL', nccl.get_version(), 'available',
nccl.available)"
    "$py" -c "from mpi4py import MPI; print(MPI.Get_library_version().strip())"
    echo "mpiexec: ${DISTGRAD_MPIEXEC:-none}"
    "$py" -c "import xdist; print('pytest-xdist', xdist.__version__)" 2>/dev/null ||
        echo "pytest-xdist: none (the op table runs in one process)"
    "$py" -c "import distgrad as dg; print('distgrad sees', dg.cuda.device_count(), 'GPU(s):',
dg.cuda.get_device_name() if dg.cuda.is_available() else dg.backend.cuda_unavailable_reason())"
} >"$log/env.txt" 2>&1
cat "$log/env.txt"
if ! "$py" -c "import sys, distgrad as dg; sys.exit(not dg.cuda.is_available())" 2>/dev/null \
        && [ "${ALLOW_NO_GPU:-0}" != 1 ]; then
    echo "no usable GPU here: every GPU check would be skipped, so nothing would be verified" \
         "(ALLOW_NO_GPU=1 runs anyway)"
    exit 3
fi
gpus=$("$py" -c "import distgrad as dg; print(dg.cuda.device_count())" 2>/dev/null || echo 0)
# The op table is the largest step: spread it over 8 processes when pytest-xdist is there.
parallel=()
"$py" -c "import xdist" 2>/dev/null && parallel=(-n 8)

pytest_=("$py" -m pytest -q -rs -p no:cacheprovider)

step() {  # step NAME LIMIT_S COMMAND...: run within its limit and the budget, log, summarise
    local name=$1 limit=$2
    shift 2
    if [ -n "$only" ] && [ "$only" != "$name" ]; then
        return 0
    fi
    local left=$((budget - (SECONDS - start)))
    if [ $left -lt 15 ]; then
        echo "=== $name: not run (budget of ${budget} s spent)" | tee -a "$log/summary.txt"
        return 0
    fi
    [ $limit -gt $left ] && limit=$left
    echo "=== $name (limit ${limit} s): $*"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" >"$log/$name.txt" 2>&1
    local rc=$?
    tail -n 25 "$log/$name.txt"
    local verdict="exit $rc"
    [ $rc -eq 124 ] && verdict="TIMED OUT after ${limit} s"
    echo "=== $name: $verdict after $((SECONDS - t0)) s" | tee -a "$log/summary.txt"
    [ $rc -ne 0 ] && [ $status -eq 0 ] && status=$rc
    return 0
}

: >"$log/summary.txt"
if [ "$what" = tests ] || [ "$what" = all ]; then
    # 1. distgrad's cupy/NCCL calls exist in this machine's cupy (seconds; no kernel runs)
    step cupy_api 60 "${pytest_[@]}" tests/gpu/test_cupy_api.py
    # 2. devices: moves, factories, Module.to, memory figures, mixing devices, double backward
    step devices 90 "${pytest_[@]}" tests/gpu/test_gpu_devices.py
    # 3. the op table on cupy against the CPU: every family's test_cuda_matches_cpu (float64
    #    forward + first gradients) and tests/gpu/test_gpu_ops.py (float32 forwards).
    #    New ops added through the op harness (tests/ops/harness.py) are in it automatically.
    step op_table 240 "${pytest_[@]}" "${parallel[@]}" -m gpu tests/ops tests/nn tests/gpu/test_gpu_ops.py
    # 4. training the examples' MLP and CNN on the GPU against the CPU
    step training 120 "${pytest_[@]}" tests/gpu/test_gpu_training.py
    # 5. NCCL at world size 1: every collective and dtype, AVG both ways, staging, streams
    step nccl_one_rank 90 "${pytest_[@]}" -m "gpu and not multiprocess" tests/gpu/test_gpu_nccl.py
    # 6. two ranks sharing the GPU through host-staged MPI (and over NCCL with 2+ GPUs)
    step two_ranks 120 "${pytest_[@]}" -m "gpu and multiprocess" tests/gpu/test_gpu_nccl.py
    # 7. CUDA-graph replay, optimizers on GPU tensors, checkpoints with map_location
    step graph_optim_ckpt 90 "${pytest_[@]}" -m gpu tests/jit tests/optim tests/test_serialization.py
    # 8. ZeRO-1/2/3 on cupy arrays, two ranks sharing the GPU, against one process (sharding, #14)
    #    SLOT: further sharding GPU tests (fully_shard, DDP reducer) join this line at merge
    step sharding_gpu 150 "${pytest_[@]}" tests/gpu/test_gpu_sharding.py
    # 9. every other gpu-marked test anywhere (new tests/gpu files, layers, amp, ...)
    #    (pytest's exit 5, nothing selected, just means there is nothing else yet)
    step gpu_rest 120 bash -c '"$@"; rc=$?; [ $rc -eq 5 ] && rc=0; exit $rc' _ \
        "${pytest_[@]}" -m gpu tests --ignore=tests/ops --ignore=tests/nn \
        --ignore=tests/jit --ignore=tests/optim --ignore=tests/test_serialization.py \
        --ignore=tests/gpu/test_cupy_api.py --ignore=tests/gpu/test_gpu_devices.py \
        --ignore=tests/gpu/test_gpu_ops.py --ignore=tests/gpu/test_gpu_training.py \
        --ignore=tests/gpu/test_gpu_nccl.py --ignore=tests/gpu/test_gpu_sharding.py
    # 10. the CPU-side logic of the same code (fake cupy/NCCL), on this machine's Python
    step gpu_logic 60 "${pytest_[@]}" tests/distributed/test_nccl_logic.py tests/autograd/test_devices.py
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    # 11. MLP/CNN steps GPU vs CPU, NCCL all_reduce bandwidth (1 rank), per-op overhead
    step bench_gpu 150 "$py" benchmarks/bench_gpu.py --quick
    # 12. eager vs CUDA-graph replay of a training step
    step bench_replay 90 "$py" benchmarks/bench_graph_mode.py --cuda --quick
    # SLOT (kernels/layers helpers): new GPU benchmark rows (e.g. an LM step) go here.
    if [ "${gpus:-0}" -ge 2 ] && [ -n "${DISTGRAD_MPIEXEC:-}" ]; then
        step bench_nccl_ranks 90 "$DISTGRAD_MPIEXEC" -n "$gpus" "$py" benchmarks/bench_gpu.py \
            --only nccl --quick
    fi
fi
echo "=== total $((SECONDS - start)) s of a ${budget} s budget; exit $status"
cat "$log/summary.txt"
exit $status
