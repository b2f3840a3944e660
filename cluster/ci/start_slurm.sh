#!/usr/bin/env bash
# Start a throw-away Slurm cluster on this machine: one munged, one slurmctld
# and two slurmd daemons (nodes n1 and n2, distinct ports) sharing this host.
#
#   cluster/ci/start_slurm.sh STATE_DIR     # then: export SLURM_CONF=STATE_DIR/slurm.conf
#   cluster/ci/stop_slurm.sh STATE_DIR
#
# Needs root and Debian's slurm-wlm and munge (cluster/ci/install_slurm.sh installs
# them). Everything else (config, keys, sockets, logs, pid files) lives in
# STATE_DIR, so the system's own Slurm/munge are untouched.
# Ports come from SLURM_CI_PORT (default 16817): controller, then n1, then n2.
# Exits 0 once both nodes are idle; non-zero with the reason otherwise.
set -euo pipefail

state=$(mkdir -p "${1:?usage: start_slurm.sh STATE_DIR}" && cd "$1" && pwd)
port=${SLURM_CI_PORT:-16817}
cpus=${SLURM_CI_CPUS_PER_NODE:-2}

for program in slurmctld slurmd sbatch srun munged; do
    if ! command -v "$program" >/dev/null; then
        echo "start_slurm: $program not found; install Debian's slurm-wlm and munge" \
            "(cluster/ci/install_slurm.sh, which .ci/run calls)" >&2
        exit 3
    fi
done

mkdir -p "$state/munge" "$state/ctld" "$state/spool"
chmod 700 "$state/munge"
if [ ! -f "$state/munge/munge.key" ]; then
    dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
    chmod 600 "$state/munge/munge.key"
fi
munged --force --socket="$state/munge/socket" --key-file="$state/munge/munge.key" \
    --pid-file="$state/munge/munged.pid" --log-file="$state/munge/munged.log" \
    --seed-file="$state/munge/seed"

host=$(hostname -s)
cat >"$state/slurm.conf" <<CONF
ClusterName=distgrad-ci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$state/munge/socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool/%n
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd-%n.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd-%n.log
KillWait=1
InactiveLimit=0
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((port + 1)) CPUs=$cpus RealMemory=1000 State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((port + 2)) CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=ci Nodes=n1,n2 Default=YES MaxTime=UNLIMITED State=UP
CONF
export SLURM_CONF=$state/slurm.conf

slurmctld -i
slurmd -N n1
slurmd -N n2

for _ in $(seq 60); do
    if [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" = 2 ]; then
        echo "start_slurm: nodes n1 n2 idle; export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.5
done
echo "start_slurm: nodes did not become idle within 30 s; sinfo says:" >&2
sinfo -N >&2 || true
tail -n 5 "$state"/*.log >&2 || true
exit 1
