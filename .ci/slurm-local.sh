#!/usr/bin/env bash
# A private one-node Slurm cluster on this machine (docs/reproducing.md, "Slurm"), for
# tests/slurm_test.ts and .ci/run. Everything lives in STATE_DIR: its own munge key, slurm.conf
# (on free ports, so that it never meets another cluster), state, spool and logs, except munge's
# socket (a folder /tmp/missl-munge.* of its own); nothing under /etc is written. Needs root (slurmd and munged run as root) and the Debian
# packages slurm-wlm and munge.
#
#   .ci/slurm-local.sh start STATE_DIR   start munged, slurmctld and slurmd; wait until the node
#                                        is idle; print SLURM_CONF=STATE_DIR/slurm.conf
#   .ci/slurm-local.sh stop STATE_DIR    stop the daemons started in STATE_DIR (by their pids)
#
# Clients (sbatch, squeue, sinfo) find the cluster through SLURM_CONF.
set -euo pipefail

usage() { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
D=$(realpath -m "$2")

# Whether a pid is a live process (an exited daemon whose parent does not reap it stays a zombie).
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" | cut -c1)" != Z ]; }

# Stop the daemons started in $D: TERM all, wait up to 10 s, then KILL what is left.
stop() {
  local pids=() f pid
  for f in "$D/slurmd.pid" "$D/slurmctld.pid" "$D/munged.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if alive "$pid"; then
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$f"
  done
  for _ in $(seq 100); do
    left=0
    for pid in ${pids[@]+"${pids[@]}"}; do alive "$pid" && left=1; done
    if [ $left -eq 0 ]; then
      remove_socket_dir
      return 0
    fi
    sleep 0.1
  done
  for pid in ${pids[@]+"${pids[@]}"}; do alive "$pid" && kill -9 "$pid" 2>/dev/null; done
  remove_socket_dir
}

remove_socket_dir() {
  if [ -f "$D/socket-dir" ]; then
    rm -rf "$(cat "$D/socket-dir")"
    rm -f "$D/socket-dir"
  fi
  return 0
}

# A TCP port nothing listens on, from a range away from Slurm's defaults (6817, 6818).
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port found" >&2
  exit 1
}

start() {
  for b in munged slurmctld slurmd; do
    if ! command -v "$b" >/dev/null && [ ! -x "/usr/sbin/$b" ]; then
      echo "$b is not installed (apt-get install -y slurm-wlm munge)" >&2
      exit 3
    fi
  done
  if [ "$(id -u)" -ne 0 ]; then
    echo "a private Slurm cluster needs root (slurmd and munged run as root)" >&2
    exit 3
  fi
  local sbin=/usr/sbin H cpus mem
  mkdir -p "$D/key" "$D/state" "$D/spool" "$D/log"
  chmod 700 "$D/key"
  # munged wants its socket's folder and every folder above it searchable by all (STATE_DIR may
  # be in a private temporary folder): the socket goes to a folder of its own under /tmp
  S=$(mktemp -d /tmp/missl-munge.XXXXXX)
  chmod 755 "$S"
  echo "$S" >"$D/socket-dir"
  if [ ! -f "$D/key/munge.key" ]; then
    dd if=/dev/urandom bs=1 count=1024 of="$D/key/munge.key" 2>/dev/null
    chmod 400 "$D/key/munge.key"
  fi
  "$sbin/munged" --socket="$S/munge.socket" --key-file="$D/key/munge.key" \
    --pid-file="$D/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/key/munged.seed"
  H=$(hostname)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ { print int($2 / 1024 / 2) }' /proc/meminfo)
  cat >"$D/slurm.conf" <<CONF
ClusterName=missl
SlurmctldHost=$H
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$S/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
JobCompType=jobcomp/none
MpiDefault=none
NodeName=$H CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$D/slurm.conf"
  "$sbin/slurmctld" -f "$SLURM_CONF"
  "$sbin/slurmd" -f "$SLURM_CONF"
  for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -q idle; then
      echo "SLURM_CONF=$SLURM_CONF"
      return
    fi
    sleep 0.2
  done
  echo "the node did not become idle in 20 s; logs in $D/log" >&2
  sinfo >&2 || true
  stop
  exit 1
}

case "$cmd" in
  start) trap 'stop' ERR; start ;;
  stop) stop ;;
  *) usage ;;
esac
