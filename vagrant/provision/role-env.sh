#!/usr/bin/env bash
# Write the environment file of one dockyard role: the single place a role's
# settings live, read by run-role.sh both under systemd (EnvironmentFile=) on a
# Vagrant node and under `dockyard lab` in a namespace node.
#
#   role-env.sh ROLE FILE KEY=VALUE...     (keys are DOCKYARD_*)
#
# Values are written as KEY="VALUE", which systemd and bash both read the same
# way, so characters that would mean different things to the two are refused.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 ROLE FILE [DOCKYARD_KEY=VALUE...]" >&2
  exit 2
fi
role=$1
file=$2
shift 2

case $role in
  zookeeper|master|agent|scheduler|router) ;;
  *) echo "role-env.sh: unknown role '$role' (zookeeper, master, agent, scheduler, router)" >&2; exit 2 ;;
esac

body="# dockyard $role settings, written by role-env.sh
DOCKYARD_ROLE=\"$role\"
"
for pair in "$@"; do
  key=${pair%%=*}
  value=${pair#*=}
  if [[ $pair != *=* || ! $key =~ ^DOCKYARD_[A-Z0-9_]+$ ]]; then
    echo "role-env.sh: '$pair' is not DOCKYARD_KEY=VALUE" >&2
    exit 2
  fi
  if [[ $value == *[\"\\\$\`]* || $value == *$'\n'* ]]; then
    echo "role-env.sh: value of $key holds a quote, backslash, \$, backtick or newline" >&2
    exit 2
  fi
  body+="$key=\"$value\""$'\n'
done

mkdir -p "$(dirname "$file")"
tmp=$(mktemp "$file.XXXXXX")
printf '%s' "$body" > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$file"
