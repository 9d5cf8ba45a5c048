#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests and trying the cluster launcher:
#   scripts/slurm-local.sh up       install (Debian's slurm-wlm and munge, as root), configure, start; print sinfo
#   scripts/slurm-local.sh down     stop the daemons
#   scripts/slurm-local.sh status   sinfo, or say it is down
# Idempotent: `up` on a running cluster only prints sinfo. The node has this machine's CPUs and 80% of its
# memory; one partition, `debug`, the default. State lives under /var/spool/slurm*; accounting goes to a
# text file, so `sacct` (which submitit asks about job states) lists jobs.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOG=/var/log/slurm

running() { pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null; }

install() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "slurm-local: installing SLURM needs root (apt-get install slurm-wlm munge)" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
}

configure() {
  local host cpus memory
  host=$(hostname)
  cpus=$(nproc)
  memory=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
  mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOG" /run/munge /var/lib/munge /var/log/munge /etc/munge
  cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
MinJobAge=300
SchedulerParameters=batch_sched_delay=0
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown -R root:root /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 700 /etc/munge /var/lib/munge /var/log/munge
  chmod 755 /run/munge
  chmod 400 /etc/munge/munge.key
}

up() {
  if running; then sinfo; return; fi
  install
  configure
  pgrep -x munged >/dev/null || munged --force
  slurmctld
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then sinfo; return; fi
    sleep 0.5
  done
  echo "slurm-local: the node did not come up; see $LOG" >&2
  exit 1
}

down() {
  pkill -x slurmd || true
  pkill -x slurmctld || true
  echo "slurm-local: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then sinfo; else echo "slurm-local: down"; exit 3; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
