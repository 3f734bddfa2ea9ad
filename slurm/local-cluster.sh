#!/usr/bin/env bash
# A real single-node SLURM cluster on loopback (slurmctld, slurmd, slurmdbd on MariaDB, munge), so
# tests and developers can run real sbatch, job arrays, dependencies and submitit (which needs sacct).
#
#   slurm/local-cluster.sh start    install what is missing, write the config, start the daemons
#   slurm/local-cluster.sh stop     stop the daemons that this script started (by their PIDs)
#   slurm/local-cluster.sh status   one line per daemon, the node state and MaxArraySize
#
# Knobs (environment):
#   LOCAL_SLURM_MAX_ARRAY_SIZE  MaxArraySize= (default 1001, SLURM's default); a new value rewrites
#                               slurm.conf and restarts the daemons so it is live
#   LOCAL_SLURM_CPUS            CPUs the node advertises (default: nproc; more uses config_overrides)
#   LOCAL_SLURM_TIMEOUT         seconds to wait for each daemon (default 60)
#
# `start` is idempotent and fast when the cluster is up. It refuses to touch a slurm.conf that it
# did not write, and `stop` never stops a daemon that it did not start.
set -euo pipefail

readonly MARKER="# written by laerebogen slurm/local-cluster.sh"
readonly SLURM_CONF=/etc/slurm/slurm.conf
readonly SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
readonly STATE_DIR=/var/lib/laerebogen-local-slurm
readonly STARTED_DIR="$STATE_DIR/started"
readonly DB_PASSWORD_FILE="$STATE_DIR/db-password"
readonly LOG_DIR=/var/log/slurm
readonly MUNGE_KEY=/etc/munge/munge.key
readonly DAEMONS=(munged mariadb slurmdbd slurmctld slurmd)
readonly PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
readonly NODE=localhost
readonly MAX_JOB_COUNT=100000
TIMEOUT="${LOCAL_SLURM_TIMEOUT:-60}"

say() { echo "local-cluster: $*"; }
die() {
    echo "local-cluster: error: $*" >&2
    exit 1
}

# Fail with one error line, then the tail of the log that explains it.
die_with_log() {
    local message="$1" log="$2"
    echo "local-cluster: error: $message (last lines of $log below)" >&2
    if [[ -r "$log" ]]; then tail -n 20 "$log" >&2; fi
    exit 1
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# --- daemons: where their pid files are and what their processes are called -------------------

pidfile_of() {
    case "$1" in
    munged) echo /run/munge/munged.pid ;;
    mariadb) echo /run/mysqld/mysqld.pid ;;
    *) echo "/run/$1.pid" ;;
    esac
}

comm_of() {
    case "$1" in
    mariadb) echo mariadbd ;;
    *) echo "$1" ;;
    esac
}

log_of() {
    case "$1" in
    munged) echo /var/log/munge/munged.log ;;
    mariadb) echo "$LOG_DIR/mariadb-start.log" ;;
    *) echo "$LOG_DIR/$1.log" ;;
    esac
}

# True when PID is alive (not a zombie) and is the named daemon (guards against a reused PID).
pid_is_daemon() {
    local pid="$1" daemon="$2" comm stat
    is_uint "$pid" || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ "${stat##*) }" != Z* ]] || return 1
    [[ "$comm" == "$(comm_of "$daemon")" || ("$daemon" == mariadb && "$comm" == mysqld) ]]
}

# Print the PID of the running daemon, from its pid file (or, only to detect a daemon that uses
# another pid file, from the process table); fail when it is not running.
running_pid() {
    local daemon="$1" pid=""
    pid="$(cat "$(pidfile_of "$daemon")" 2>/dev/null || true)"
    pid="${pid//[[:space:]]/}"
    if pid_is_daemon "$pid" "$daemon"; then
        echo "$pid"
        return 0
    fi
    for pid in $(pgrep -x "$(comm_of "$daemon")" 2>/dev/null || true); do
        if pid_is_daemon "$pid" "$daemon"; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# True when the daemon is running under the PID that this script recorded when it started it;
# a stale record (the daemon died or was restarted by someone else) is removed.
started_by_us() {
    local daemon="$1" record="$STARTED_DIR/$1.pid" recorded pid
    [[ -f "$record" ]] || return 1
    recorded="$(cat "$record")"
    if pid="$(running_pid "$daemon")" && [[ "$pid" == "$recorded" ]]; then
        return 0
    fi
    if [[ -w "$STARTED_DIR" ]]; then rm -f "$record"; fi
    return 1
}

# Wait for the daemon's pid file, then record its PID as started by this script.
record_started() {
    local daemon="$1" pid="" waited=0
    until pid="$(cat "$(pidfile_of "$daemon")" 2>/dev/null)" && pid_is_daemon "${pid//[[:space:]]/}" "$daemon"; do
        ((waited++ < TIMEOUT * 10)) || die_with_log "$daemon wrote no pid file within ${TIMEOUT}s" "$(log_of "$daemon")"
        sleep 0.1
    done
    echo "${pid//[[:space:]]/}" >"$STARTED_DIR/$daemon.pid"
}

# Stop the given daemons that this script started: SIGTERM to their recorded PIDs at once (each
# takes about 2 s to exit), then wait for all of them and remove their records.
stop_daemons() {
    local daemon pid waited=0
    local -A pids=()
    for daemon in "$@"; do
        started_by_us "$daemon" || continue
        pids[$daemon]="$(cat "$STARTED_DIR/$daemon.pid")"
        say "stopping $daemon (pid ${pids[$daemon]})"
        kill -TERM "${pids[$daemon]}" 2>/dev/null || true
    done
    for daemon in "${!pids[@]}"; do
        pid="${pids[$daemon]}"
        while kill -0 "$pid" 2>/dev/null; do
            ((waited++ < TIMEOUT * 10)) || die_with_log "$daemon (pid $pid) did not exit within ${TIMEOUT}s" "$(log_of "$daemon")"
            sleep 0.1
        done
        rm -f "$STARTED_DIR/$daemon.pid"
    done
}

# Poll COMMAND (a function name) every 0.2 s until it succeeds, or fail with the daemon's log.
wait_for() {
    local what="$1" log="$2" check="$3" waited=0
    until "$check"; do
        ((waited++ < TIMEOUT * 5)) || die_with_log "timed out after ${TIMEOUT}s waiting for $what" "$log"
        sleep 0.2
    done
}

# --- installation and configuration ----------------------------------------------------------

require_root() {
    [[ "$(id -u)" == 0 ]] || die "$1 needs root (the daemons run as SlurmUser=root); run it with sudo"
}

install_packages() {
    local missing=0 binary
    for binary in slurmctld munged slurmdbd mariadbd; do
        command -v "$binary" >/dev/null 2>&1 || [[ -x "/usr/sbin/$binary" ]] || missing=1
    done
    ((missing)) || return 0
    if [[ "$(id -u)" != 0 ]]; then
        die "SLURM is not installed; as root run: apt-get install -y --no-install-recommends ${PACKAGES[*]}"
    fi
    say "installing ${PACKAGES[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

# Refuse to overwrite a configuration file that this script did not write.
check_ours() {
    local file="$1"
    [[ -e "$file" ]] || return 0
    [[ "$(head -n 1 "$file")" == "$MARKER" ]] ||
        die "$file exists and was not written by this script; refusing to touch a real SLURM installation"
}

node_cpus() {
    local cpus="${LOCAL_SLURM_CPUS:-$(nproc)}"
    if ! is_uint "$cpus" || ((cpus < 1)); then
        die "LOCAL_SLURM_CPUS must be a positive integer, got '$cpus'"
    fi
    echo "$cpus"
}

max_array_size() {
    local size="${LOCAL_SLURM_MAX_ARRAY_SIZE:-1001}"
    if ! is_uint "$size" || ((size < 1 || size > 4000001)); then
        die "LOCAL_SLURM_MAX_ARRAY_SIZE must be an integer from 1 to 4000001, got '$size'"
    fi
    echo "$size"
}

slurm_conf_text() {
    local cpus="$1" array_size="$2" memory_mb overrides=""
    memory_mb="$(awk '/^MemTotal:/ { printf "%d", $2 * 95 / 100 / 1024 }' /proc/meminfo)"
    # More CPUs than the machine has: slurmd would drain the node unless told to trust the config.
    if ((cpus > $(nproc))); then overrides="SlurmdParameters=config_overrides"; fi
    cat <<EOF
$MARKER
# A single-node cluster on loopback for laerebogen's tests; rewritten by every \`start\`.
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
DependencyParameters=kill_invalid_depend
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=300
MaxArraySize=$array_size
MaxJobCount=$MAX_JOB_COUNT
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$(pidfile_of slurmctld)
SlurmdPidFile=$(pidfile_of slurmd)
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -n "$overrides" ]]; then echo "$overrides"; fi
}

slurmdbd_conf_text() {
    cat <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$1
StorageLoc=slurm_acct_db
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$(pidfile_of slurmdbd)
EOF
}

# Write FILE with TEXT (mode MODE) unless it already says exactly that; true when it changed.
write_if_changed() {
    local file="$1" text="$2" mode="$3"
    if [[ -f "$file" && "$(cat "$file")" == "$text" ]]; then return 1; fi
    printf '%s\n' "$text" >"$file.tmp"
    chmod "$mode" "$file.tmp"
    mv -f "$file.tmp" "$file"
}

db_password() {
    if [[ ! -s "$DB_PASSWORD_FILE" ]]; then
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$DB_PASSWORD_FILE")
    fi
    cat "$DB_PASSWORD_FILE"
}

prepare_directories() {
    mkdir -p "$STARTED_DIR" "$LOG_DIR" /etc/slurm /var/spool/slurmctld /var/spool/slurmd
    chmod 755 "$STATE_DIR" "$STARTED_DIR"
}

create_munge_key() {
    [[ -s "$MUNGE_KEY" ]] && return 0
    say "creating $MUNGE_KEY"
    mkdir -p "$(dirname "$MUNGE_KEY")"
    dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    chown munge:munge "$MUNGE_KEY"
    chmod 400 "$MUNGE_KEY"
}

# --- starting each daemon ---------------------------------------------------------------------

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# Start daemon $1 with the command that follows, unless it runs already; its output goes to
# its start log and its pid is recorded as one this script started.
launch_daemon() {
    local name="$1"
    shift
    running_pid "$name" >/dev/null && return 0
    say "starting $name"
    "$@" </dev/null >>"$LOG_DIR/$name-start.log" 2>&1 ||
        die_with_log "$name did not start" "$(log_of "$name")"
    record_started "$name"
}

start_munged() {
    # /run is a tmpfs: the socket directory is gone after every boot.
    running_pid munged >/dev/null || {
        mkdir -p /run/munge
        chown munge:munge /run/munge
        chmod 755 /run/munge
    }
    launch_daemon munged runuser -u munge -- /usr/sbin/munged
    wait_for "munge to answer" "$(log_of munged)" munge_works
}

mariadb_answers() { mariadb-admin --silent ping >/dev/null 2>&1; }

start_mariadb() {
    running_pid mariadb >/dev/null && return 0
    say "starting mariadb"
    # Packages cannot start services here (policy-rc.d), so the init script is called directly;
    # its output goes to a log so mysqld_safe does not hold a caller's pipe open, and it runs in
    # its own session: unlike the SLURM daemons, mysqld_safe does not detach, and would die with
    # the caller's process group (a CI step, a terminal).
    setsid /etc/init.d/mariadb start </dev/null >>"$(log_of mariadb)" 2>&1 ||
        die_with_log "mariadb did not start" "$(log_of mariadb)"
    wait_for "mariadb to answer" "$(log_of mariadb)" mariadb_answers
    record_started mariadb
}

create_database_user() {
    local password="$1"
    mariadb --batch <<EOF || die "could not create the MariaDB user 'slurm'"
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$password';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$password';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

port_listening() {
    local hex
    hex="$(printf ':%04X' "$1")"
    awk -v port="$hex" '$4 == "0A" && substr($2, length($2) - 4) == port { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

slurmdbd_listens() { port_listening 6819; }

start_slurmdbd() {
    launch_daemon slurmdbd slurmdbd
    wait_for "slurmdbd to listen on port 6819" "$(log_of slurmdbd)" slurmdbd_listens
}

slurmctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_slurmctld() {
    launch_daemon slurmctld slurmctld
    wait_for "slurmctld to answer scontrol ping" "$(log_of slurmctld)" slurmctld_up
}

start_slurmd() { launch_daemon slurmd slurmd -N "$NODE"; }

node_state() {
    local state
    state="$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1)" || true
    # Drop the flag characters sinfo appends (not responding '*', powered down '~', ...).
    echo "${state%%[^a-z]*}"
}

# The node is usable; a node that came up down or drained is resumed once it has registered.
node_usable() {
    local state
    state="$(node_state)"
    case "$state" in
    idle | mixed | allocated | completing) return 0 ;;
    down | drained | draining | drain)
        if running_pid slurmd >/dev/null; then
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        fi
        ;;
    esac
    return 1
}

# The MaxArraySize that the running slurmctld uses, or "unknown".
live_max_array_size() {
    local size
    size="$(scontrol show config 2>/dev/null | awk '$1 == "MaxArraySize" { print $3 }')" || true
    echo "${size:-unknown}"
}

# Before slurm.conf changes: stop the daemons that read it and that this script started (start
# brings them back); print the names of those running that it did not start, to reconfigure later.
stop_slurm_daemons_for_new_conf() {
    local daemon foreign=""
    stop_daemons slurmd slurmctld >&2
    for daemon in slurmd slurmctld; do
        if running_pid "$daemon" >/dev/null; then foreign="${foreign:+$foreign and }$daemon"; fi
    done
    echo "$foreign"
}

cmd_start() {
    local cpus array_size password desired foreign_reconfigure=""
    install_packages
    cpus="$(node_cpus)"
    array_size="$(max_array_size)"
    # Without root nothing can be changed, but a cluster that is already as asked is fine.
    if [[ "$(id -u)" != 0 ]] && slurmctld_up && [[ "$(live_max_array_size)" == "$array_size" ]] &&
        cmd_status; then
        return 0
    fi
    require_root "start"
    check_ours "$SLURM_CONF"
    check_ours "$SLURMDBD_CONF"
    prepare_directories
    password="$(db_password)"
    create_munge_key
    write_if_changed "$SLURMDBD_CONF" "$(slurmdbd_conf_text "$password")" 600 &&
        started_by_us slurmdbd && stop_daemons slurmdbd
    desired="$(slurm_conf_text "$cpus" "$array_size")"
    if [[ -f "$SLURM_CONF" && "$(cat "$SLURM_CONF")" != "$desired" ]]; then
        say "slurm.conf changed (MaxArraySize=$array_size, CPUs=$cpus): restarting the SLURM daemons"
        foreign_reconfigure="$(stop_slurm_daemons_for_new_conf)"
    fi
    write_if_changed "$SLURM_CONF" "$desired" 644 || true

    start_munged
    start_mariadb
    if ! running_pid slurmdbd >/dev/null; then create_database_user "$password"; fi
    start_slurmdbd
    start_slurmctld
    start_slurmd
    if [[ -n "$foreign_reconfigure" ]]; then
        say "warning: $foreign_reconfigure not started by this script; asking slurmctld to reread slurm.conf"
        scontrol reconfigure >/dev/null 2>&1 || true
    fi
    wait_for "node $NODE to become idle" "$(log_of slurmd)" node_usable
    if [[ "$(live_max_array_size)" != "$array_size" ]]; then
        die_with_log "slurmctld runs with MaxArraySize=$(live_max_array_size), not $array_size" "$(log_of slurmctld)"
    fi
    cmd_status
}

cmd_stop() {
    require_root "stop"
    # Reverse start order, so slurmctld can still reach slurmdbd, and slurmdbd MariaDB, while they
    # shut down; munge only authenticates new connections.
    stop_daemons slurmd slurmctld
    stop_daemons slurmdbd munged
    stop_daemons mariadb
    say "stopped every daemon that this script had started"
}

cmd_status() {
    local daemon pid state usable=0 missing=0
    for daemon in "${DAEMONS[@]}"; do
        if pid="$(running_pid "$daemon")"; then
            if started_by_us "$daemon"; then
                echo "$daemon: running (pid $pid, started by local-cluster.sh)"
            else
                echo "$daemon: running (pid $pid, not started by local-cluster.sh)"
            fi
        else
            echo "$daemon: not running"
            missing=1
        fi
    done
    state="$(node_state)"
    echo "node $NODE: ${state:-unknown}"
    echo "MaxArraySize: $(live_max_array_size)"
    case "$state" in idle | mixed | allocated | completing) usable=1 ;; esac
    ((usable && !missing))
}

main() {
    is_uint "$TIMEOUT" || die "LOCAL_SLURM_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"
    case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: $0 start|stop|status" ;;
    esac
}

main "$@"
