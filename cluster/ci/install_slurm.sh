#!/usr/bin/env bash
# Install Debian's slurm-wlm and munge for the test cluster (start_slurm.sh), when missing.
#
#   cluster/ci/install_slurm.sh      # as root; .ci/run calls it before the tests
#
# Best effort and bounded: apt-get gets SLURM_INSTALL_TIMEOUT seconds in all (default 240)
# and waits at most 60 s for the dpkg lock. The packages' daemons are not started (a
# policy-rc.d refuses it during the install): start_slurm.sh runs its own. Exits 0 when
# the programs are there, non-zero with the reason otherwise; the Slurm tests then skip.
set -uo pipefail

missing() {
    local program
    for program in slurmctld slurmd sbatch srun munged; do
        command -v "$program" >/dev/null || { echo "$program"; return 0; }
    done
    return 1
}

absent=$(missing) || { echo "install_slurm: Slurm and munge are installed"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install_slurm: $absent is missing and this is not root on a Debian-like system" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
echo "install_slurm: installing slurm-wlm and munge (at most ${SLURM_INSTALL_TIMEOUT:-240} s)"
started=$SECONDS
export DEBIAN_FRONTEND=noninteractive
timeout -k 10 "${SLURM_INSTALL_TIMEOUT:-240}" sh -c '
    apt-get -o DPkg::Lock::Timeout=60 update -qq &&
    apt-get -o DPkg::Lock::Timeout=60 install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null'
status=$?
if absent=$(missing); then
    echo "install_slurm: failed after $((SECONDS - started)) s (apt-get status $status;" \
        "$absent still missing)" >&2
    exit 1
fi
echo "install_slurm: done in $((SECONDS - started)) s"
