#!/bin/bash
# Stop the dev cluster that slurm/start_cluster.sh started, by the pids in its own pid files only.
# Usage: slurm/stop_cluster.sh [BASE]   (BASE: as given to start_cluster.sh; default $WRN_SLURM_BASE or
# /tmp/wrn-slurm). The state (munge key, job ids, accounting database) stays, so a restart carries on.
# munged goes last: slurmctld is slow to exit without it.
BASE=$(realpath -m "${1:-${WRN_SLURM_BASE:-/tmp/wrn-slurm}}")
for f in "$BASE/run/slurmd.pid" "$BASE/run/slurmctld.pid" "$BASE/run/slurmdbd.pid" \
         "$BASE/run/mariadbd.pid" "$BASE/munge/munged.pid"; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $(basename "$f" .pid) ($pid)"
  fi
  rm -f "$f"
done
