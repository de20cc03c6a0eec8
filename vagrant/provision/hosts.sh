#!/usr/bin/env bash
# Put the lab's node names into a hosts file, between markers, so running it
# again replaces the block instead of adding to it. Vagrant nodes use it on
# /etc/hosts; `dockyard lab` on each namespace's /etc/netns/NS/hosts.
#
#   hosts.sh FILE NAME=IP...
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 FILE [NAME=IP...]" >&2
  exit 2
fi
file=$1
shift
begin="# BEGIN dockyard lab"
end="# END dockyard lab"

block="$begin"$'\n'
for pair in "$@"; do
  name=${pair%%=*}
  ip=${pair#*=}
  if [[ ! $name =~ ^[a-z0-9][a-z0-9.-]*$ || ! $ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    echo "hosts.sh: '$pair' is not NAME=IPv4" >&2
    exit 2
  fi
  block+="$ip"$'\t'"$name"$'\n'
done
block+="$end"

mkdir -p "$(dirname "$file")"
if [[ -e $file ]]; then
  kept=$(sed "/^$begin\$/,/^$end\$/d" "$file")
else
  kept=$'127.0.0.1\tlocalhost'
fi
tmp=$(mktemp "$file.XXXXXX")
printf '%s\n%s\n' "$kept" "$block" > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$file"
