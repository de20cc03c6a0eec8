#!/usr/bin/env bash
# Install (and, on a systemd host, enable and start) the unit of one role.
# The unit runs run-role.sh with the role's environment file, so the service
# and `dockyard lab` start a role the same way.
#
#   install-unit.sh ROLE
#
# DOCKYARD_ROOT writes into another root (a chroot, a test directory) and
# never starts anything; DOCKYARD_NO_START=1 only writes and enables nothing.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 ROLE" >&2
  exit 2
fi
role=$1
root=${DOCKYARD_ROOT:-}
libexec=${DOCKYARD_LIBEXEC:-/usr/local/lib/dockyard}
etc=${DOCKYARD_ETC:-/etc/dockyard}

after="network-online.target"
wants="network-online.target"
extra=""
case $role in
  zookeeper) ;;
  master)
    if [[ -e $root/etc/systemd/system/dockyard-zookeeper.service ]]; then
      after+=" dockyard-zookeeper.service"
      wants+=" dockyard-zookeeper.service"
    fi
    ;;
  agent)
    # Executors and tasks outlive an agent restart, as with a Mesos agent; the
    # agent manages their cgroups itself.
    extra=$'KillMode=process\nDelegate=yes'
    ;;
  scheduler) ;;
  router)
    # Stopping the unit stops its HAProxy too (same cgroup); the router itself retries until
    # the scheduler answers.
    if [[ -e $root/etc/systemd/system/dockyard-scheduler.service ]]; then
      after+=" dockyard-scheduler.service"
    fi
    ;;
  *) echo "install-unit.sh: unknown role '$role' (zookeeper, master, agent, scheduler, router)" >&2; exit 2 ;;
esac

if [[ ! -f $root$etc/$role.env ]]; then
  echo "install-unit.sh: $root$etc/$role.env is missing (write it with role-env.sh)" >&2
  exit 2
fi

unit_dir=$root/etc/systemd/system
unit=$unit_dir/dockyard-$role.service
mkdir -p "$unit_dir"
tmp=$(mktemp "$unit.XXXXXX")
cat > "$tmp" <<UNIT
[Unit]
Description=dockyard lab role: $role
After=$after
Wants=$wants

[Service]
Type=simple
EnvironmentFile=$etc/$role.env
ExecStart=$libexec/run-role.sh $role $etc/$role.env
Restart=always
RestartSec=2
LimitNOFILE=65536
${extra}

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$tmp"
mv -f "$tmp" "$unit"

if [[ -z $root && ${DOCKYARD_NO_START:-0} != 1 && -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemctl enable "dockyard-$role.service"
  systemctl restart "dockyard-$role.service"
fi
echo "$unit"
