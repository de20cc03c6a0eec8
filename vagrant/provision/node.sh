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
#   DOCKYARD_MESOS       auto|apache|embedded (default auto, see install-mesos.sh)
#   DOCKYARD_SRC         the checkout (default /vagrant)
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
etc=${DOCKYARD_ETC:-/etc/dockyard}
data=${DOCKYARD_DATA:-/var/lib/dockyard}
control=$DOCKYARD_CONTROL_IP

read -r -a hosts <<<"${DOCKYARD_HOSTS:-}"
"$here/hosts.sh" /etc/hosts "${hosts[@]}"
if [[ $kind == control && $zk == 1 ]]; then
  DOCKYARD_WITH_ZOOKEEPER=1 "$here/install-dockyard.sh"
else
  "$here/install-dockyard.sh"
fi
impl=$("$here/install-mesos.sh")
echo "node.sh: $DOCKYARD_NODE runs the $impl Mesos master/agent"

if [[ $zk == 1 ]]; then
  master_url="zk://$control:2181/mesos"
else
  master_url="$control:5050"
fi
common=(DOCKYARD_IP="$DOCKYARD_IP" DOCKYARD_HOSTNAME="$DOCKYARD_NODE" DOCKYARD_MESOS="$impl")

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
else
  "$here/role-env.sh" agent "$etc/agent.env" "${common[@]}" \
    DOCKYARD_MASTER="$master_url" DOCKYARD_PORT=5051 DOCKYARD_WORK_DIR="$data/agent" \
    DOCKYARD_ATTRIBUTES="node:$DOCKYARD_NODE" ${DOCKYARD_RESOURCES:+DOCKYARD_RESOURCES="$DOCKYARD_RESOURCES"}
  "$here/install-unit.sh" agent
fi
echo "node.sh: $DOCKYARD_NODE provisioned as $kind"
