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
      # An offer no framework answers is taken back after 10 s, so one silent framework
      # cannot hold the cluster (docs/security.md).
      argv=(mesos-master "--ip=$DOCKYARD_IP" "--port=${DOCKYARD_PORT:-5050}"
            "--work_dir=$DOCKYARD_WORK_DIR" "--hostname=${DOCKYARD_HOSTNAME:-$DOCKYARD_IP}"
            --offer_timeout=10secs)
      if [[ -n ${DOCKYARD_ZK:-} ]]; then
        argv+=("--zk=$DOCKYARD_ZK" --quorum=1)
      fi
    else
      argv=("${dockyard[@]}" master --ip "$DOCKYARD_IP" --port "${DOCKYARD_PORT:-5050}"
            --work-dir "$DOCKYARD_WORK_DIR" --hostname "${DOCKYARD_HOSTNAME:-$DOCKYARD_IP}"
            --offer-timeout 10)
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
  router)
    # HAProxy following the scheduler's apps, on this node's address: HTTP virtual hosts on
    # DOCKYARD_PORT, each app's service port, the stats page on DOCKYARD_STATS_PORT (docs/router.md).
    need DOCKYARD_IP; need DOCKYARD_WORK_DIR; need DOCKYARD_SCHEDULER
    argv=("${dockyard[@]}" router --url "$DOCKYARD_SCHEDULER" --ip "$DOCKYARD_IP"
          --http-port "${DOCKYARD_PORT:-80}" --stats-ip "$DOCKYARD_IP"
          --stats-port "${DOCKYARD_STATS_PORT:-9090}" --work-dir "$DOCKYARD_WORK_DIR")
    ;;
  *)
    echo "run-role.sh: unknown role '$role' (zookeeper, master, agent, scheduler, router)" >&2
    exit 2
    ;;
esac

# Security (docs/security.md). DOCKYARD_SECURITY_DIR is a bundle made by `dockyard lab up`
# or `dockyard security init`; DOCKYARD_TLS_NAME names this node's certificate in it (TLS
# on). Without a bundle, DOCKYARD_INSECURE=1 is the explicit way to serve the lab open.
# The router is a client of the scheduler: DOCKYARD_CLIENT_CONFIG names its client settings
# (credentials and the bundle's CA; they also guard its stats page).
sec=${DOCKYARD_SECURITY_DIR:-}
if [[ -n $sec && $role == router ]]; then
  need DOCKYARD_CLIENT_CONFIG
  argv+=(--config "$DOCKYARD_CLIENT_CONFIG")
elif [[ -n $sec && $role != zookeeper ]]; then
  tls=()
  tls_env=()
  if [[ -n ${DOCKYARD_TLS_NAME:-} ]]; then
    cert="$sec/$DOCKYARD_TLS_NAME.pem"
    key="$sec/$DOCKYARD_TLS_NAME.key"
    tls=(--tls-cert "$cert" --tls-key "$key" --tls-ca "$sec/ca.pem")
    # Apache Mesos reads its TLS settings from the environment (libprocess).
    tls_env=(env LIBPROCESS_SSL_ENABLED=true "LIBPROCESS_SSL_CERT_FILE=$cert" "LIBPROCESS_SSL_KEY_FILE=$key"
             "LIBPROCESS_SSL_CA_FILE=$sec/ca.pem" LIBPROCESS_SSL_VERIFY_SERVER_CERT=true)
  fi
  case $role/$impl in
    master/embedded)
      argv+=(--credentials "$sec/credentials.json" --authenticate-http-frameworks
             --authenticate-http-readonly --authenticate-http-readwrite --authenticate-agents
             --acls "$sec/acls.json" "${tls[@]}") ;;
    agent/embedded)
      argv+=(--credential "$sec/agent-$hostname.json" --http-credentials "$sec/credentials.json"
             --authenticate-http-readonly --authenticate-http-readwrite --authenticate-http-executors
             --executor-secret-key "$sec/executor.key" --acls "$sec/acls.json" "${tls[@]}") ;;
    master/apache)
      argv=("${tls_env[@]}" "${argv[@]}" "--credentials=$sec/credentials.json" --authenticate_http_frameworks
            --http_framework_authenticators=basic --authenticate_http_readonly --authenticate_http_readwrite
            --authenticate_agents "--acls=$sec/acls.json") ;;
    agent/apache)
      argv=("${tls_env[@]}" "${argv[@]}" "--credential=$sec/agent-$hostname.json"
            "--http_credentials=$sec/credentials.json" --authenticate_http_readonly
            --authenticate_http_readwrite --authenticate_http_executors "--jwt_secret_key=$sec/executor.key"
            "--acls=$sec/acls.json") ;;
    scheduler/*)
      argv+=(--mesos-authentication-principal dockyard
             --mesos-authentication-secret-file "$sec/scheduler.secret" --http-users "$sec/users.json"
             --acls "$sec/acls.json" --secrets-key-file "$sec/secrets.key" --secrets-acls "$sec/secrets-acls.json"
             "${tls[@]}") ;;
  esac
elif [[ ${DOCKYARD_INSECURE:-0} == 1 && $role != zookeeper && $role != router && ( $impl == embedded || $role == scheduler ) ]]; then
  argv+=(--insecure)
fi

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
