#!/usr/bin/env bash
# microvm-net-down.sh: undoes microvm-net-up.sh for one project. It removes the
# project's own rules (tagged "microvm:PROJECT") whichever mode net-up ran in,
# and the TAP. It never touches the host-wide TPROXY rules and policy routing of
# `egress-xds agent` (seed §6.9): other microVMs still use them.
#
# usage: microvm-net-down.sh PROJECT TAP
# Running it twice is harmless.
set -euo pipefail

PROJECT=${1:-${PROJECT:-}}
TAP=${2:-${TAP:-}}

die() { echo "microvm-net-down: $*" >&2; exit 2; }
[ -n "$PROJECT" ] && [ -n "$TAP" ] || die "usage: microvm-net-down.sh PROJECT TAP"
[ "$(id -u)" = 0 ] || die "run as root"

# Delete every rule carrying this project's comment, by number, highest first so
# the numbers of the rest do not move. `iptables -L --line-numbers` prints the
# comment as /* microvm:PROJECT */ in both iptables flavours.
remove_tagged() { # TABLE CHAIN
  local table=$1 chain=$2 number
  for number in $(iptables -w -t "$table" -L "$chain" -n --line-numbers |
    awk -v tag="/* microvm:$PROJECT */" 'index($0, tag) && $1 ~ /^[0-9]+$/ { print $1 }' | sort -rn); do
    iptables -w -t "$table" -D "$chain" "$number"
  done
}
remove_tagged filter FORWARD
remove_tagged nat PREROUTING
remove_tagged nat POSTROUTING

if ip link show "$TAP" >/dev/null 2>&1; then
  ip link del "$TAP"
fi
echo "microvm-net-down: $PROJECT: removed its rules and $TAP (host-wide TPROXY left in place)"
