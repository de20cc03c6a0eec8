#!/usr/bin/env bash
# Run one lab role in the foreground from its environment file (see role-env.sh).
# systemd units on Vagrant nodes and `dockyard lab` namespace nodes both start
# roles through this script, so a role's command line is defined only here.
#
#   run-role.sh [--print] ROLE ENV_FILE
#
# --print writes the command line instead of running it (one word per line).
set -euo pipefail

print=0
if [[ ${1:-} == --print ]]; then
  print=1
  shift
fi
if [[ $# -ne 2 ]]; then
  echo "usage: $0 [--print] ROLE ENV_FILE" >&2
  exit 2
fi
role=$1
env_file=$2

set -a
# shellcheck source=/dev/null
. "$env_file"
set +a

need() {
  local name=$1
  if [[ -z ${!name:-} ]]; then
    echo "run-role.sh: $role needs $name in $env_file" >&2
    exit 2
  fi
}

# How to call dockyard: the installed console script, or e.g. "python dockyard.py".
read -r -a dockyard <<<"${DOCKYARD_CMD:-dockyard}"
impl=${DOCKYARD_MESOS:-embedded}
case $impl in
  embedded|apache) ;;
  *) echo "run-role.sh: DOCKYARD_MESOS must be embedded or apache, not '$impl'" >&2; exit 2 ;;
esac

case $role in
  zookeeper)
    need DOCKYARD_WORK_DIR
    mkdir -p "$DOCKYARD_WORK_DIR"
    # The admin server is off: it would take port 8080, the scheduler's.
    argv=(java -Dzookeeper.4lw.commands.whitelist=ruok,stat,srvr
          -Dzookeeper.admin.enableServer=false "-Xmx${DOCKYARD_ZK_HEAP:-256m}"
          -cp "${DOCKYARD_ZK_CLASSPATH:-/etc/zookeeper/conf:/usr/share/java/zookeeper.jar}"
          org.apache.zookeeper.server.ZooKeeperServerMain
          "${DOCKYARD_PORT:-2181}" "$DOCKYARD_WORK_DIR")
    ;;
  master)
    need DOCKYARD_IP; need DOCKYARD_WORK_DIR
    if [[ $impl == apache ]]; then
      argv=(mesos-master "--ip=$DOCKYARD_IP" "--port=${DOCKYARD_PORT:-5050}"
            "--work_dir=$DOCKYARD_WORK_DIR" "--hostname=${DOCKYARD_HOSTNAME:-$DOCKYARD_IP}")
      if [[ -n ${DOCKYARD_ZK:-} ]]; then
        argv+=("--zk=$DOCKYARD_ZK" --quorum=1)
      fi
    else
      argv=("${dockyard[@]}" master --ip "$DOCKYARD_IP" --port "${DOCKYARD_PORT:-5050}"
            --work-dir "$DOCKYARD_WORK_DIR" --hostname "${DOCKYARD_HOSTNAME:-$DOCKYARD_IP}")
      if [[ -n ${DOCKYARD_ZK:-} ]]; then
        argv+=(--zk "$DOCKYARD_ZK")
      fi
    fi
    ;;
  agent)
    need DOCKYARD_IP; need DOCKYARD_WORK_DIR; need DOCKYARD_MASTER
    hostname=${DOCKYARD_HOSTNAME:-$DOCKYARD_IP}
    if [[ $impl == apache ]]; then
      argv=(mesos-agent "--master=$DOCKYARD_MASTER" "--ip=$DOCKYARD_IP"
            "--port=${DOCKYARD_PORT:-5051}" "--work_dir=$DOCKYARD_WORK_DIR"
            "--hostname=$hostname" --containerizers=mesos)
      if [[ -n ${DOCKYARD_ATTRIBUTES:-} ]]; then argv+=("--attributes=$DOCKYARD_ATTRIBUTES"); fi
      if [[ -n ${DOCKYARD_RESOURCES:-} ]]; then argv+=("--resources=$DOCKYARD_RESOURCES"); fi
    else
      argv=("${dockyard[@]}" agent --master "$DOCKYARD_MASTER" --ip "$DOCKYARD_IP"
            --port "${DOCKYARD_PORT:-5051}" --work-dir "$DOCKYARD_WORK_DIR"
            --hostname "$hostname")
      if [[ -n ${DOCKYARD_ATTRIBUTES:-} ]]; then argv+=(--attributes "$DOCKYARD_ATTRIBUTES"); fi
      if [[ -n ${DOCKYARD_RESOURCES:-} ]]; then argv+=(--resources "$DOCKYARD_RESOURCES"); fi
    fi
    ;;
  scheduler)
    need DOCKYARD_IP; need DOCKYARD_WORK_DIR; need DOCKYARD_MASTER
    argv=("${dockyard[@]}" scheduler --master "$DOCKYARD_MASTER" --ip "$DOCKYARD_IP"
          --port "${DOCKYARD_PORT:-8080}" --data-dir "$DOCKYARD_WORK_DIR")
    if [[ -n ${DOCKYARD_ZK:-} ]]; then
      argv+=(--zk "$DOCKYARD_ZK")
    fi
    ;;
  *)
    echo "run-role.sh: unknown role '$role' (zookeeper, master, agent, scheduler)" >&2
    exit 2
    ;;
esac

if [[ -n ${DOCKYARD_EXTRA_ARGS:-} ]]; then
  read -r -a extra <<<"$DOCKYARD_EXTRA_ARGS"
  argv+=("${extra[@]}")
fi

if [[ $print == 1 ]]; then
  printf '%s\n' "${argv[@]}"
  exit 0
fi
mkdir -p "$DOCKYARD_WORK_DIR"
exec "${argv[@]}"
