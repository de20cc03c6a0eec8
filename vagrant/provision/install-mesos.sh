#!/usr/bin/env bash
# Decide which master (and agent) this node runs, installing Apache Mesos when
# asked and possible. Prints the answer: "apache" or "embedded".
#
#   DOCKYARD_MESOS=auto|apache|embedded install-mesos.sh
#
# auto: Apache Mesos when the box's apt sources carry a `mesos` package (or
# mesos-master is already installed), the embedded dockyard master otherwise.
# Debian itself ships no Mesos; DOCKYARD_MESOS_APT="deb URL SUITE COMPONENT"
# adds a repository that does (with [trusted=yes] or a key you installed).
set -euo pipefail

want=${DOCKYARD_MESOS:-auto}
case $want in
  auto|apache|embedded) ;;
  *) echo "install-mesos.sh: DOCKYARD_MESOS must be auto, apache or embedded, not '$want'" >&2; exit 2 ;;
esac
if [[ $want == embedded ]]; then
  echo embedded
  exit 0
fi
if command -v mesos-master >/dev/null && command -v mesos-agent >/dev/null; then
  echo apache
  exit 0
fi
if [[ -n ${DOCKYARD_MESOS_APT:-} ]]; then
  echo "$DOCKYARD_MESOS_APT" > /etc/apt/sources.list.d/dockyard-mesos.list
  apt-get update -qq >&2
fi
candidate=$(apt-cache policy mesos 2>/dev/null | awk '/Candidate:/ {print $2}')
if [[ -n $candidate && $candidate != "(none)" ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesos >&2
  # The packaged services would fight ours over ports 5050/5051.
  systemctl disable --now mesos-master mesos-slave mesos-agent >/dev/null 2>&1 || true
  echo apache
  exit 0
fi
if [[ $want == apache ]]; then
  echo "install-mesos.sh: DOCKYARD_MESOS=apache but no 'mesos' package can be installed on" \
       "this box; set DOCKYARD_MESOS_APT to a repository that has one, or use embedded" >&2
  exit 1
fi
echo embedded
