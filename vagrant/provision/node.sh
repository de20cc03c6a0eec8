#!/usr/bin/env bash
# Provision one Vagrant node: install dockyard, pick the master implementation,
# write each role's environment file and start it as a systemd service.
#
#   node.sh control|agent     (settings from the environment, set by the Vagrantfile)
#
#   DOCKYARD_NODE        node name (control, agent1...)       required
#   DOCKYARD_IP          this node's private address           required
#   DOCKYARD_CONTROL_IP  the control node's address            required
#   DOCKYARD_HOSTS       "control=IP agent1=IP ..." for /etc/hosts
#   DOCKYARD_ZK          1: ZooKeeper on the control node (default 1)
#   DOCKYARD_ROUTER      1: the router (HAProxy following the apps) on the control node (default 1)
#   DOCKYARD_MESOS       auto|apache|embedded (default auto, see install-mesos.sh)
#   DOCKYARD_SRC         the checkout (default /vagrant)
#   DOCKYARD_SEED_FILE   the seed every node derives the cluster's security from
#   DOCKYARD_INSECURE    1: no authentication, no TLS (default 0)
set -euo pipefail

# Vagrant uploads this script alone, so its siblings are found in the checkout.
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -x $here/role-env.sh ]]; then
  here=${DOCKYARD_SRC:-/vagrant}/vagrant/provision
fi
kind=${1:-}
case $kind in
  control|agent) ;;
  *) echo "usage: $0 control|agent" >&2; exit 2 ;;
esac
for name in DOCKYARD_NODE DOCKYARD_IP DOCKYARD_CONTROL_IP; do
  if [[ -z ${!name:-} ]]; then
    echo "node.sh: $name is not set" >&2
    exit 2
  fi
done
zk=${DOCKYARD_ZK:-1}
router=0
if [[ $kind == control ]]; then
  router=${DOCKYARD_ROUTER:-1}
fi
etc=${DOCKYARD_ETC:-/etc/dockyard}
data=${DOCKYARD_DATA:-/var/lib/dockyard}
control=$DOCKYARD_CONTROL_IP

read -r -a hosts <<<"${DOCKYARD_HOSTS:-}"
"$here/hosts.sh" /etc/hosts "${hosts[@]}"
with_zookeeper=0
if [[ $kind == control && $zk == 1 ]]; then
  with_zookeeper=1
fi
DOCKYARD_WITH_ZOOKEEPER=$with_zookeeper DOCKYARD_WITH_ROUTER=$router "$here/install-dockyard.sh"
impl=$("$here/install-mesos.sh")
echo "node.sh: $DOCKYARD_NODE runs the $impl Mesos master/agent"

if [[ $zk == 1 ]]; then
  master_url="zk://$control:2181/mesos"
else
  master_url="$control:5050"
fi
common=(DOCKYARD_IP="$DOCKYARD_IP" DOCKYARD_HOSTNAME="$DOCKYARD_NODE" DOCKYARD_MESOS="$impl")

# Security (docs/security.md): the same bundle on every node, from the shared seed, and
# this node's own certificate in it.
if [[ ${DOCKYARD_INSECURE:-0} == 1 ]]; then
  common+=(DOCKYARD_INSECURE=1)
else
  seed=${DOCKYARD_SEED_FILE:-${DOCKYARD_SRC:-/vagrant}/vagrant/.security-seed}
  if [[ ! -s $seed ]]; then
    echo "node.sh: no security seed at $seed (the Vagrantfile makes it); DOCKYARD_INSECURE=1 runs open" >&2
    exit 2
  fi
  agents=()
  for pair in "${hosts[@]}"; do
    name=${pair%%=*}
    [[ $name == agent* ]] && agents+=(--agent "$name")
  done
  read -r -a dockyard_cmd <<<"${DOCKYARD_CMD:-dockyard}"
  "${dockyard_cmd[@]}" security init "$etc/security" --seed-file "$seed" "${agents[@]}" \
    --cert "$DOCKYARD_NODE" --host "$DOCKYARD_IP" --host "$DOCKYARD_NODE"
  common+=(DOCKYARD_SECURITY_DIR="$etc/security" DOCKYARD_TLS_NAME="$DOCKYARD_NODE")
fi

if [[ $kind == control ]]; then
  if [[ $zk == 1 ]]; then
    "$here/role-env.sh" zookeeper "$etc/zookeeper.env" "${common[@]}" \
      DOCKYARD_PORT=2181 DOCKYARD_WORK_DIR="$data/zookeeper"
    "$here/install-unit.sh" zookeeper
    master_zk=(DOCKYARD_ZK="zk://$control:2181/mesos")
    scheduler_zk=(DOCKYARD_ZK="zk://$control:2181/dockyard")
  else
    master_zk=()
    scheduler_zk=()
  fi
  "$here/role-env.sh" master "$etc/master.env" "${common[@]}" "${master_zk[@]}" \
    DOCKYARD_PORT=5050 DOCKYARD_WORK_DIR="$data/master"
  "$here/install-unit.sh" master
  "$here/role-env.sh" scheduler "$etc/scheduler.env" "${common[@]}" "${scheduler_zk[@]}" \
    DOCKYARD_MASTER="$master_url" DOCKYARD_PORT=8080 DOCKYARD_WORK_DIR="$data/scheduler"
  "$here/install-unit.sh" scheduler
  if [[ $router == 1 ]]; then
    router_settings=(DOCKYARD_PORT=80 DOCKYARD_STATS_PORT=9090 DOCKYARD_WORK_DIR="$data/router")
    if [[ ${DOCKYARD_INSECURE:-0} == 1 ]]; then
      router_settings+=(DOCKYARD_SCHEDULER="http://$DOCKYARD_IP:8080")
    else
      # The router reads the apps as the operator, as the host's CLI does; the secret goes
      # from the bundle into a 0600 file (a shell builtin writes it: it is on no command line).
      scheduler_url="https://$DOCKYARD_IP:8080"
      client="$etc/router-client.json"
      rm -f "$client"
      (umask 077; printf '{"url": "%s", "principal": "operator", "secret": "%s", "ca": "%s"}\n' \
        "$scheduler_url" "$(cat "$etc/security/operator.secret")" "$etc/security/ca.pem" > "$client")
      router_settings+=(DOCKYARD_SCHEDULER="$scheduler_url" DOCKYARD_CLIENT_CONFIG="$client")
    fi
    "$here/role-env.sh" router "$etc/router.env" "${common[@]}" "${router_settings[@]}"
    "$here/install-unit.sh" router
  fi
else
  "$here/role-env.sh" agent "$etc/agent.env" "${common[@]}" \
    DOCKYARD_MASTER="$master_url" DOCKYARD_PORT=5051 DOCKYARD_WORK_DIR="$data/agent" \
    DOCKYARD_ATTRIBUTES="node:$DOCKYARD_NODE" ${DOCKYARD_RESOURCES:+DOCKYARD_RESOURCES="$DOCKYARD_RESOURCES"}
  "$here/install-unit.sh" agent
fi
echo "node.sh: $DOCKYARD_NODE provisioned as $kind"
