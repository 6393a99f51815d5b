#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by scripts/slurm_up.sh. Idempotent: stopping a stopped
# cluster does nothing. Stops slurmd, slurmctld and slurmdbd, then MariaDB and munged only if
# slurm_up.sh started them (it records that in /var/lib/slurm/spinefx-started). Packages, configuration,
# the accounting database and job history stay, so the next slurm_up.sh is quick.
set -euo pipefail

RUN_DIR=/run/slurm
STARTED_FILE=/var/lib/slurm/spinefx-started

say() { printf '[slurm_down] %s\n' "$*"; }
[[ $(id -u) -eq 0 ]] || { echo "[slurm_down] ERROR: run as root" >&2; exit 1; }

# stop NAME PIDFILE: SIGTERM the daemon whose pid is in PIDFILE, wait up to 30 s, then SIGKILL.
stop() {
    local name=$1 pidfile=$2 pid=""
    [[ -s $pidfile ]] && pid=$(cat "$pidfile")
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        say "$name not running"
        rm -f "$pidfile"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
        say "$name (pid $pid) killed after 30 s"
    else
        say "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

started() { [[ -f $STARTED_FILE ]] && grep -qx "$1" "$STARTED_FILE"; }

# Running jobs die with slurmd; say so rather than hide it.
if command -v squeue >/dev/null && n=$(squeue -h -t RUNNING,PENDING 2>/dev/null | wc -l) && ((n > 0)); then
    say "note: $n job(s) still queued or running; they are cancelled"
    squeue -h -o %A | xargs -r scancel 2>/dev/null || true
fi
stop slurmd "$RUN_DIR/slurmd.pid"
stop slurmctld "$RUN_DIR/slurmctld.pid"
stop slurmdbd "$RUN_DIR/slurmdbd.pid"
# MariaDB and munged may serve other things on a real machine: stop them only if slurm_up.sh started them.
for d in "mariadb /run/mysqld/mysqld.pid" "munged /run/munge/munged.pid"; do
    set -- $d
    if started "$1"; then
        stop "$1" "$2"
    elif [[ -s $2 ]] && kill -0 "$(cat "$2")" 2>/dev/null; then
        say "$1 left running (not started by slurm_up.sh)"
    else
        say "$1 not running"
    fi
done
[[ -f $STARTED_FILE ]] && : >"$STARTED_FILE"
say "cluster down"
