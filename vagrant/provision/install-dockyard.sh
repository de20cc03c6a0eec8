#!/usr/bin/env bash
# Install dockyard from a checkout into a virtualenv, with the Debian packages
# its roles need, and put the role scripts where the systemd units expect them.
#
#   DOCKYARD_SRC=/vagrant install-dockyard.sh
set -euo pipefail

src=${DOCKYARD_SRC:-/vagrant}
prefix=${DOCKYARD_PREFIX:-/opt/dockyard}
libexec=${DOCKYARD_LIBEXEC:-/usr/local/lib/dockyard}
debs=(python3 python3-venv ca-certificates iproute2 procps runc crun tini busybox-static)
if [[ ${DOCKYARD_WITH_ZOOKEEPER:-0} == 1 ]]; then
  debs+=(zookeeper default-jre-headless)
fi
if [[ ${DOCKYARD_WITH_ROUTER:-0} == 1 ]]; then
  debs+=(haproxy)
fi

if [[ ! -f $src/setup.py ]]; then
  echo "install-dockyard.sh: no dockyard checkout at $src (set DOCKYARD_SRC)" >&2
  exit 2
fi

missing=()
for deb in "${debs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$deb")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [[ ${DOCKYARD_WITH_ROUTER:-0} == 1 ]]; then
  # The router runs its own HAProxy (dockyard-router.service); Debian's would be a second one.
  systemctl disable --now haproxy.service >/dev/null 2>&1 || true
fi

if [[ ! -x $prefix/bin/python ]]; then
  python3 -m venv "$prefix"
fi
# Build from a copy: the checkout may be a read-only synced folder.
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
tar -C "$src" --exclude=./.venv --exclude=./.venv-pymesos --exclude=./.git \
    --exclude='*.egg-info' -cf - . | tar -C "$build" -xf -
"$prefix/bin/pip" install -q "$build"
ln -sf "$prefix/bin/dockyard" /usr/local/bin/dockyard

install -d "$libexec"
for script in run-role.sh role-env.sh hosts.sh install-unit.sh; do
  install -m 0755 "$src/vagrant/provision/$script" "$libexec/$script"
done
echo "dockyard installed in $prefix"
