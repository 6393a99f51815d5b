#!/usr/bin/env bash
# Start a single-node SLURM cluster (controller + compute node + slurmdbd accounting on MariaDB) on this
# machine, so the workflow's SLURM profile can be exercised for real. Idempotent: run it again and it only
# does what is missing. Must run as root on Debian 12 (bookworm); there is no init system here, so the
# daemons are started by hand. Stop everything with scripts/slurm_down.sh.
#
# Environment overrides: SPINEFX_SLURM_CLUSTER (default spinefx), SPINEFX_SLURM_ACCOUNT (default spinefx),
# SPINEFX_SLURM_USERS (space-separated users added to the account; default: root and $SUDO_USER).
set -euo pipefail

CLUSTER=${SPINEFX_SLURM_CLUSTER:-spinefx}
ACCOUNT=${SPINEFX_SLURM_ACCOUNT:-spinefx}
USERS=$(echo ${SPINEFX_SLURM_USERS:-root ${SUDO_USER:-}})
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
CONF_DIR=/etc/slurm
STATE_DIR=/var/lib/slurm
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS_FILE=$CONF_DIR/.spinefx-dbpass
# The stand-in GPU of gres.conf: a character device like /dev/null (this machine has no GPU).
GPU_DEVICE=/dev/spinefx-gpu0
# What this script started, one daemon per line; slurm_down.sh stops exactly these (plus the SLURM daemons).
STARTED_FILE=$STATE_DIR/spinefx-started
TEMPLATES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/slurm"
T0=$(date +%s.%N)

say() { printf '[slurm_up] %s\n' "$*"; }
die() { printf '[slurm_up] ERROR: %s\n' "$*" >&2; exit 1; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || die "timed out after ${limit}s waiting for $what (see $LOG_DIR/)"
        sleep 0.5
    done
}
record_started() { grep -qx "$1" "$STARTED_FILE" 2>/dev/null || echo "$1" >>"$STARTED_FILE"; }
pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and starts system daemons)"
[[ -d $TEMPLATES ]] || die "config templates not found in $TEMPLATES"

# --- 1. packages --------------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    t=$(date +%s.%N)
    # Keep the packages' maintainer scripts from starting daemons; this script starts them itself.
    policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
    fi
    if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then apt-get update -q; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || { ((policy_added)) && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
    ((policy_added)) && rm -f /usr/sbin/policy-rc.d
    say "installed ${#missing[@]} package(s) in $(since "$t") s"
else
    say "packages already installed: ${PACKAGES[*]}"
fi
id slurm >/dev/null 2>&1 || die "user 'slurm' missing after install"

# --- 2. directories and configuration -----------------------------------------------------------------
mkdir -p "$CONF_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR" "$RUN_DIR"
chown slurm:slurm "$STATE_DIR/slurmctld" "$LOG_DIR" "$RUN_DIR"
chmod 755 "$RUN_DIR"
touch "$STARTED_FILE"

if [[ ! -s $DB_PASS_FILE ]]; then
    (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DB_PASS_FILE")
fi
DB_PASS=$(cat "$DB_PASS_FILE")
# CPUs, sockets, cores, threads and RealMemory as slurmd measures them on this machine.
NODE_HW=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
NODE_HW=${NODE_HW% }
CTLD_HOST=$(hostname -s)

# render TEMPLATE DEST MODE OWNER: fill the @NAME@ placeholders; rewrite DEST only if it would change.
CONFIG_CHANGED=0
render() {
    local src=$TEMPLATES/$1 dest=$2 mode=$3 owner=$4 tmp
    tmp=$(mktemp)
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@CTLD_HOST@|$CTLD_HOST|g" -e "s|@STATE_DIR@|$STATE_DIR|g" \
        -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@LOG_DIR@|$LOG_DIR|g" -e "s|@NODE_HW@|$NODE_HW|g" \
        -e "s|@DB_NAME@|$DB_NAME|g" -e "s|@DB_USER@|$DB_USER|g" -e "s|@DB_PASS@|$DB_PASS|g" \
        -e "s|@GPU_DEVICE@|$GPU_DEVICE|g" "$src" >"$tmp"
    if grep -q '@[A-Z_]*@' "$tmp"; then rm -f "$tmp"; die "unfilled placeholder in $src"; fi
    if [[ -f $dest ]] && cmp -s "$tmp" "$dest"; then
        rm -f "$tmp"
        say "config unchanged: $dest"
    else
        install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$dest"
        rm -f "$tmp"
        CONFIG_CHANGED=1
        say "wrote config: $dest"
    fi
}
if [[ ! -c $GPU_DEVICE ]]; then
    rm -f "$GPU_DEVICE"
    mknod -m 666 "$GPU_DEVICE" c 1 3 || die "cannot create the stand-in GPU device $GPU_DEVICE (mknod)"
    say "created stand-in GPU device $GPU_DEVICE (char 1,3, like /dev/null)"
fi
render slurm.conf "$CONF_DIR/slurm.conf" 644 root:root
render gres.conf "$CONF_DIR/gres.conf" 644 root:root
render slurmdbd.conf "$CONF_DIR/slurmdbd.conf" 600 slurm:slurm
say "node: NodeName=localhost $NODE_HW Gres=gpu:1 ($GPU_DEVICE); partitions cpu (default) and gpu;" \
    "controller host $CTLD_HOST"

# --- 3. munge (authentication between all SLURM components) -------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then mungekey --create --force; else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    say "created /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
munge_ok() { { munge -n </dev/null | unmunge; } >/dev/null 2>&1; }
if munge_ok; then
    say "munged already running"
else
    t=$(date +%s.%N)
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 munged munge_ok
    record_started munged
    say "started munged ($(since "$t") s)"
fi

# --- 4. MariaDB (storage for slurmdbd) ----------------------------------------------------------------
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
db_ok() { mariadb -uroot -e 'SELECT 1' >/dev/null 2>&1; }
if db_ok; then
    say "mariadb already running"
else
    t=$(date +%s.%N)
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        say "initialised /var/lib/mysql"
    fi
    # Small InnoDB settings recommended for slurmdbd; logs to the system's default error log.
    setsid /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        --log-error="$LOG_DIR/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb db_ok
    record_started mariadb
    say "started mariadb ($(since "$t") s)"
fi
mariadb -uroot <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
say "database $DB_NAME and user $DB_USER@localhost ready"

# --- 5. slurmdbd --------------------------------------------------------------------------------------
dbd_ok() { sacctmgr -n -P list cluster format=cluster; }
if pid_alive "$RUN_DIR/slurmdbd.pid" && ((CONFIG_CHANGED == 0)); then
    say "slurmdbd already running"
else
    pid_alive "$RUN_DIR/slurmdbd.pid" && { kill "$(cat "$RUN_DIR/slurmdbd.pid")"; sleep 1; }
    t=$(date +%s.%N)
    /usr/sbin/slurmdbd
    wait_for 60 slurmdbd dbd_ok
    record_started slurmdbd
    say "started slurmdbd ($(since "$t") s)"
fi
# The cluster must exist in the accounting database before slurmctld registers with it.
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    say "added cluster $CLUSTER to accounting"
fi

# --- 6. slurmctld and slurmd --------------------------------------------------------------------------
# A changed node or GRES definition takes a restart of both daemons (`scontrol reconfigure` is not enough).
if ((CONFIG_CHANGED)); then
    for d in slurmd slurmctld; do
        if pid_alive "$RUN_DIR/$d.pid"; then
            kill "$(cat "$RUN_DIR/$d.pid")"
            for _ in $(seq 60); do pid_alive "$RUN_DIR/$d.pid" || break; sleep 0.5; done
            rm -f "$RUN_DIR/$d.pid"
            say "stopped $d to restart it with the new configuration"
        fi
    done
fi
if pid_alive "$RUN_DIR/slurmctld.pid"; then
    say "slurmctld already running"
else
    t=$(date +%s.%N)
    /usr/sbin/slurmctld
    wait_for 60 slurmctld scontrol ping
    record_started slurmctld
    say "started slurmctld ($(since "$t") s)"
fi
if pid_alive "$RUN_DIR/slurmd.pid"; then
    say "slurmd already running"
else
    t=$(date +%s.%N)
    # -N localhost: the node is called localhost in slurm.conf; the real host name differs.
    /usr/sbin/slurmd -N localhost
    record_started slurmd
    say "started slurmd -N localhost ($(since "$t") s)"
fi

# --- 7. account and users -----------------------------------------------------------------------------
if ! sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description="spinefx workflow" \
        organization=spinefx >/dev/null
    say "added account $ACCOUNT"
fi
for u in $USERS; do
    if ! sacctmgr -n -P list assoc cluster="$CLUSTER" account="$ACCOUNT" user="$u" format=user | grep -qx "$u"; then
        sacctmgr -i add user "$u" account="$ACCOUNT" cluster="$CLUSTER" defaultaccount="$ACCOUNT" >/dev/null
        say "added user $u to account $ACCOUNT"
    fi
done

# --- 8. ready? ----------------------------------------------------------------------------------------
node_idle() { [[ $(sinfo -h -N -n localhost -o %T 2>/dev/null) == idle* ]]; }
if ! node_idle; then
    # A node left down/drained by an earlier run comes back only on request.
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
fi
wait_for 60 "node localhost to become idle" node_idle
wait_for 30 "sacct" sacct -n -X -S now-1hour
say "cluster $CLUSTER is up in $(since "$T0") s:"
sinfo
say "account: $ACCOUNT; users: $USERS; daemon logs in $LOG_DIR/; stop with scripts/slurm_down.sh"
