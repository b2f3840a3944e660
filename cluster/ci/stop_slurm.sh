#!/usr/bin/env bash
# Stop the test cluster started by start_slurm.sh STATE_DIR: cancel its jobs (when its
# controller runs), then SIGTERM its daemons by the pids in their pid files (SIGKILL
# after 10 s).
set -uo pipefail
state=$(cd "${1:?usage: stop_slurm.sh STATE_DIR}" && pwd) || exit 1
ctld=$(cat "$state/slurmctld.pid" 2>/dev/null) || ctld=
if [ -n "$ctld" ] && [ "$(cat "/proc/$ctld/comm" 2>/dev/null)" = slurmctld ]; then
    SLURM_CONF=$state/slurm.conf timeout 10 scancel --user="$(id -un)" 2>/dev/null
fi

pids=()
for entry in slurmd-n1:slurmd slurmd-n2:slurmd slurmctld:slurmctld munge/munged:munged; do
    pidfile=$state/${entry%%:*}.pid
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    # Only a live daemon of the expected name: a stale pid may belong to someone else now.
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${entry##*:}" ] && pids+=("$pid")
done
[ ${#pids[@]} -gt 0 ] || exit 0
kill "${pids[@]}" 2>/dev/null
for _ in $(seq 100); do
    alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [ ${#alive[@]} -gt 0 ] || exit 0
    sleep 0.1
done
kill -KILL "${alive[@]}" 2>/dev/null
exit 0
