#!/usr/bin/env bash
# Every GPU check of issue 6, for a session that has a GPU (see tests/gpu/README.md).
#
#   bash tests/gpu/run_gpu_checks.sh [tests|bench|all]     (default: all)
#
# Uses the machine's python3 (cupy, mpi4py, pytest preinstalled; no network needed) with the
# repository on PYTHONPATH. Wheels in .whl/ (e.g. mpich, for an mpiexec) are installed to
# /tmp/site first. Logs go to $OUT (the device tool's folder) or gpu-check-logs/; the last
# lines of each log are printed. Exit status: that of the failing step, else 0.
set -u
cd "$(dirname "$0")/../.."
what=${1:-all}
log=${OUT:-gpu-check-logs}
mkdir -p "$log"
py=${PYTHON:-python3}
status=0

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

step() {  # step NAME COMMAND...: run, log to $log/NAME.txt, keep the first failure's status
    local name=$1
    shift
    echo "=== $name: $*"
    "$@" >"$log/$name.txt" 2>&1
    local rc=$?
    tail -n 25 "$log/$name.txt"
    echo "=== $name: exit $rc"
    [ $rc -ne 0 ] && [ $status -eq 0 ] && status=$rc
    return 0
}

if [ "$what" = tests ] || [ "$what" = all ]; then
    # every test marked gpu: tests/gpu (devices, op tables in float32, training examples,
    # NCCL with one rank, 2 ranks sharing the GPU, DataParallel), each op family's
    # test_cuda_matches_cpu, optimizers, checkpoints, CUDA-graph replay
    step gpu_tests "$py" -m pytest -m gpu tests -q -rs -p no:cacheprovider
    # the CPU-side logic of the same code, on this machine's Python
    step gpu_logic "$py" -m pytest -q -p no:cacheprovider tests/distributed/test_nccl_logic.py \
        tests/autograd/test_devices.py
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    step bench_gpu "$py" benchmarks/bench_gpu.py
    gpus=$("$py" -c "import distgrad as dg; print(dg.cuda.device_count())" 2>/dev/null || echo 0)
    if [ "${gpus:-0}" -ge 2 ] && [ -n "${DISTGRAD_MPIEXEC:-}" ]; then
        step bench_nccl_ranks "$DISTGRAD_MPIEXEC" -n "$gpus" "$py" benchmarks/bench_gpu.py \
            --only nccl
    fi
fi
exit $status
