#!/bin/bash
# Start a real single-node SLURM cluster on localhost, as root, without systemd, for development and CI.
#
# Usage: slurm/start_cluster.sh [BASE]        (BASE: scratch folder; default $WRN_SLURM_BASE or /tmp/wrn-slurm)
# Then:  source BASE/env.sh                   (sets SLURM_CONF, and PATH for the sacct stand-in if used)
#
# Needs the Debian packages (installed with --no-install-recommends):
#   slurmctld slurmd slurm-client munge       the cluster
#   slurmdbd mariadb-server                   accounting (real sacct); without them a squeue-based sacct
#                                             stand-in is used, which knows jobs for MinJobAge (1 h)
# Why accounting at all: submitit learns that a job died without writing its result (scancel, OOM kill,
# node failure) only through sacct; without it, waiting on such a job blocks forever.
#
# WRN_SLURM_ACCOUNTING=stand-in forces the stand-in; WRN_SLURMCTLD_PORT, WRN_SLURMD_PORT,
# WRN_SLURMDBD_PORT, WRN_MARIADB_PORT move the daemons (defaults 6817, 6818, 6819, 6829).
#
# Everything lives under BASE (munge key and socket, MariaDB data, slurm.conf, state, spool, logs, pid
# files); nothing is written to /etc, /var or /run. The daemons listen on 127.0.0.1 only. Running it again
# while the cluster is up just prints the environment. slurm/stop_cluster.sh stops it by its pid files.
# Why each setting is there: docs/slurm.md, "The development cluster" (tested with SLURM 22.05, munge 0.5.15).
set -euo pipefail
BASE=$(realpath -m "${1:-${WRN_SLURM_BASE:-/tmp/wrn-slurm}}")
SLURMCTLD_PORT=${WRN_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${WRN_SLURMD_PORT:-6818}
DBD_PORT=${WRN_SLURMDBD_PORT:-6819}
DB_PORT=${WRN_MARIADB_PORT:-6829}

die() { echo "start_cluster.sh: $*" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
for tool in munged mungekey slurmctld slurmd sbatch srun sinfo; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
done
# WRN_SLURM_ACCOUNTING: auto (slurmdbd when installed, else the stand-in), slurmdbd, or stand-in
ACCOUNTING=${WRN_SLURM_ACCOUNTING:-auto}
if [ "$ACCOUNTING" = auto ]; then
  if command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; then ACCOUNTING=slurmdbd; else ACCOUNTING=stand-in; fi
fi
case "$ACCOUNTING" in
  slurmdbd) command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null \
              || die "slurmdbd or mariadbd not found: apt-get install -y --no-install-recommends slurmdbd mariadb-server" ;;
  stand-in) ;;
  *) die "WRN_SLURM_ACCOUNTING=$ACCOUNTING: allowed: auto, slurmdbd, stand-in" ;;
esac

if alive "$BASE/run/slurmctld.pid" && alive "$BASE/run/slurmd.pid" && alive "$BASE/munge/munged.pid"; then
  echo "already running under $BASE"
  cat "$BASE/env.sh"
  exit 0
fi
for port in $SLURMCTLD_PORT $SLURMD_PORT $DBD_PORT $DB_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is in use (another cluster? stop it, or set WRN_SLURMCTLD_PORT/WRN_SLURMD_PORT/WRN_SLURMDBD_PORT/WRN_MARIADB_PORT)"
  fi
done

HOST=$(hostname -s)                       # slurmd finds its NodeName from the short hostname
NCPU=$(nproc)
HW=$(slurmd -C | head -1)                 # what slurmd will detect; RealMemory above it makes the node INVALID
MEM=$(( $(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW") - 512 ))
TOPO=$(grep -o 'SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$HW" | sed 's/SocketsPerBoard/Sockets/')

mkdir -p "$BASE"/{etc,state,spool,log,run,munge,bin}
chmod 755 "$BASE"

# ---- munge: own key, socket, pid, log and seed, run as user munge (the socket dir must be world-executable)
[ -f "$BASE/munge/munge.key" ] || mungekey --create --keyfile="$BASE/munge/munge.key"
chown -R munge:munge "$BASE/munge"
chmod 755 "$BASE/munge"
chmod 400 "$BASE/munge/munge.key"
alive "$BASE/munge/munged.pid" || runuser -u munge -- /usr/sbin/munged \
  --socket="$BASE/munge/munge.socket.2" --key-file="$BASE/munge/munge.key" \
  --log-file="$BASE/munge/munged.log" --pid-file="$BASE/munge/munged.pid" --seed-file="$BASE/munge/munged.seed"

# ---- accounting
if [ "$ACCOUNTING" = slurmdbd ]; then
  ACCOUNTING_CONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=${DBD_PORT}
AccountingStoragePass=${BASE}/munge/munge.socket.2"
  mkdir -p "$BASE/mysql"
  if [ ! -d "$BASE/mysql/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$BASE/mysql/data" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$BASE/log/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed, see $BASE/log/mariadb-install.log"
    FRESH_DB=1
  fi
  alive "$BASE/run/mariadbd.pid" || (setsid mariadbd --no-defaults --datadir="$BASE/mysql/data" --user=root \
      --socket="$BASE/mysql/mysqld.sock" --pid-file="$BASE/run/mariadbd.pid" --port="$DB_PORT" \
      --bind-address=127.0.0.1 --log-error="$BASE/log/mariadbd.log" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
      --skip-name-resolve </dev/null >/dev/null 2>&1 &)
  for i in $(seq 1 100); do
    mariadb-admin --no-defaults --socket="$BASE/mysql/mysqld.sock" -u root ping >/dev/null 2>&1 && break
    sleep 0.2
  done
  mariadb-admin --no-defaults --socket="$BASE/mysql/mysqld.sock" -u root ping >/dev/null 2>&1 \
    || die "MariaDB did not start, see $BASE/log/mariadbd.log"
  if [ "${FRESH_DB:-0}" = 1 ]; then
    mariadb --no-defaults --socket="$BASE/mysql/mysqld.sock" -u root -e \
      "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  fi
  rm -f "$BASE/bin/sacct"                 # a stand-in left from an earlier start without slurmdbd
else
  ACCOUNTING_CONF="AccountingStorageType=accounting_storage/none"
  # answers submitit's `sacct -o JobID,State,NodeList --parsable2 -j ID...` from squeue --states=all
  cat > "$BASE/bin/sacct" <<'SH'
#!/bin/bash
# sacct stand-in (no slurmdbd): job states from squeue, which keeps finished jobs for MinJobAge.
ids=()
while [ $# -gt 0 ]; do
  case "$1" in
    -j|--jobs) ids+=("$2"); shift 2 ;;
    -j*) ids+=("${1#-j}"); shift ;;
    --jobs=*) ids+=("${1#--jobs=}"); shift ;;
    *) shift ;;
  esac
done
echo "JobID|State|NodeList"
for j in "${ids[@]}"; do
  for k in ${j//,/ }; do squeue -h --states=all -j "$k" -o '%i|%T|%N' 2>/dev/null; done
done
exit 0
SH
  chmod 755 "$BASE/bin/sacct"
fi

# ---- slurm.conf (and slurmdbd.conf: slurmdbd reads it from the folder of SLURM_CONF)
cat > "$BASE/etc/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=${HOST}(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=${BASE}/munge/munge.socket.2,cred_expire=10
CredType=cred/munge
StateSaveLocation=${BASE}/state
SlurmdSpoolDir=${BASE}/spool
SlurmctldPidFile=${BASE}/run/slurmctld.pid
SlurmdPidFile=${BASE}/run/slurmd.pid
SlurmctldLogFile=${BASE}/log/slurmctld.log
SlurmdLogFile=${BASE}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
# jobs start on the next 1 s tick; a requeued job waits for the next pass after BeginTime=now+cred_expire
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job without --mem gets the whole node's memory and runs alone
DefMemPerCPU=$(( MEM / NCPU ))
MailProg=/bin/true
# reject impossible requests (more CPUs than the node has, 2 nodes, ...) at sbatch time, not pend forever
EnforcePartLimits=ALL
${ACCOUNTING_CONF}
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
InactiveLimit=0
KillWait=10
# keep finished jobs visible to squeue/scontrol for 1 h
MinJobAge=3600
SlurmctldTimeout=120
SlurmdTimeout=300
Waittime=0
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${NCPU} ${TOPO} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$BASE/etc/slurm.conf"

if [ "$ACCOUNTING" = slurmdbd ]; then
  (umask 077; cat > "$BASE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=${BASE}/munge/munge.socket.2
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=${DBD_PORT}
SlurmUser=root
LogFile=${BASE}/log/slurmdbd.log
PidFile=${BASE}/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=${DB_PORT}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
  )
  alive "$BASE/run/slurmdbd.pid" || /usr/sbin/slurmdbd
  for i in $(seq 1 100); do
    sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1 && break
    sleep 0.2
  done
  sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx local \
    || sacctmgr -i add cluster local >/dev/null || die "slurmdbd did not start, see $BASE/log/slurmdbd.log"
fi

# ---- daemons (they fork into the background and write their pid files)
alive "$BASE/run/slurmctld.pid" || /usr/sbin/slurmctld -f "$SLURM_CONF"
alive "$BASE/run/slurmd.pid" || /usr/sbin/slurmd -f "$SLURM_CONF"

state=""
for i in $(seq 1 120); do
  state=$(sinfo -h -N -o '%t' 2>/dev/null | head -1)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "$state" = idle ] || die "the node did not become idle (state '$state'), see $BASE/log/"

{
  echo "export SLURM_CONF=$SLURM_CONF"
  [ "$ACCOUNTING" = slurmdbd ] || echo "export PATH=$BASE/bin:\$PATH"
} > "$BASE/env.sh"
echo "started under $BASE (accounting: $ACCOUNTING; node $HOST: $NCPU CPUs, ${MEM} MB)"
cat "$BASE/env.sh"
