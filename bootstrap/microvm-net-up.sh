#!/usr/bin/env bash
# microvm-net-up.sh: per-project TAP + /30 + NAT for one Firecracker microVM
# (Step 3), with the egress-xds integration of seed §6.9, option A.
#
#   MICROVM_EGRESS_VIA_ENVOY=1  the microVM's egress goes through Envoy: the two
#                               egress rules (FORWARD TAP→LAN ACCEPT, POSTROUTING
#                               MASQUERADE) are NOT added, and TPROXY is NOT added
#                               here either: it is installed once per host by
#                               `egress-xds agent` (egress-xds-agent.service).
#                               Anything else the guest sends towards the LAN is
#                               dropped in FORWARD (MICROVM_EGRESS_FORWARD_DROP=0
#                               to leave FORWARD to the host's own policy).
#   unset / 0                   direct egress through NAT, as in Step 3.
#
# Ingress (SSH through a DNAT to the guest) is the same in both modes.
#
# usage: microvm-net-up.sh PROJECT TAP HOST_IP CIDR GUEST_IP LAN_IF [SSH_HOST_PORT]
#   e.g. MICROVM_EGRESS_VIA_ENVOY=1 microvm-net-up.sh web tap-web 172.31.0.1 30 172.31.0.2 eth0 2201
# Every argument may also come from the environment variable of the same name.
# Running it twice adds nothing twice.
set -euo pipefail

PROJECT=${1:-${PROJECT:-}}
TAP=${2:-${TAP:-}}
HOST_IP=${3:-${HOST_IP:-}}
CIDR=${4:-${CIDR:-}}
GUEST_IP=${5:-${GUEST_IP:-}}
LAN_IF=${6:-${LAN_IF:-}}
SSH_HOST_PORT=${7:-${SSH_HOST_PORT:-}}
VIA_ENVOY=${MICROVM_EGRESS_VIA_ENVOY:-0}
FORWARD_DROP=${MICROVM_EGRESS_FORWARD_DROP:-1}
EGRESS_XDS=${EGRESS_XDS:-egress-xds}

die() { echo "microvm-net-up: $*" >&2; exit 2; }
[ -n "$PROJECT" ] && [ -n "$TAP" ] && [ -n "$HOST_IP" ] && [ -n "$CIDR" ] && [ -n "$GUEST_IP" ] && [ -n "$LAN_IF" ] ||
  die "usage: microvm-net-up.sh PROJECT TAP HOST_IP CIDR GUEST_IP LAN_IF [SSH_HOST_PORT]"
[ "$(id -u)" = 0 ] || die "run as root (it creates $TAP and adds iptables rules)"

# Each rule carries the project's name, so net-down removes exactly these.
TAG=(-m comment --comment "microvm:$PROJECT")
add_rule() { # TABLE CHAIN RULE...
  local table=$1 chain=$2; shift 2
  iptables -w -t "$table" -C "$chain" "$@" "${TAG[@]}" 2>/dev/null || iptables -w -t "$table" -A "$chain" "$@" "${TAG[@]}"
}

# The TAP and the host's end of the /30.
ip link show "$TAP" >/dev/null 2>&1 || ip tuntap add dev "$TAP" mode tap
ip addr show dev "$TAP" | grep -q "inet ${HOST_IP}/${CIDR} " || ip addr add "${HOST_IP}/${CIDR}" dev "$TAP"
ip link set "$TAP" up

# Ingress: SSH to the guest through a port on the LAN side (Step 3), both modes.
if [ -n "$SSH_HOST_PORT" ]; then
  add_rule nat PREROUTING -i "$LAN_IF" -p tcp --dport "$SSH_HOST_PORT" -j DNAT --to-destination "${GUEST_IP}:22"
  add_rule filter FORWARD -i "$LAN_IF" -o "$TAP" -p tcp -d "$GUEST_IP" --dport 22 -j ACCEPT
  # The guest's replies: with Envoy there is no blanket TAP→LAN ACCEPT to carry them.
  add_rule filter FORWARD -i "$TAP" -o "$LAN_IF" -p tcp -s "$GUEST_IP" --sport 22 -m conntrack --ctstate ESTABLISHED -j ACCEPT
fi

if [ "$VIA_ENVOY" = 1 ]; then
  echo "microvm-net-up: $PROJECT: egress via Envoy; not adding FORWARD $TAP→$LAN_IF nor MASQUERADE (seed §6.9)"
  if [ "$FORWARD_DROP" = 1 ]; then
    # Fail closed: what is not redirected to Envoy (TPROXY'd traffic never reaches FORWARD) does not leave.
    add_rule filter FORWARD -i "$TAP" -o "$LAN_IF" -j DROP
  fi
  # TPROXY is per host, not per project: only check that it is there.
  if command -v "$EGRESS_XDS" >/dev/null 2>&1; then
    if ! "$EGRESS_XDS" agent status ${EGRESS_XDS_AGENT_FLAGS:-} >/dev/null 2>&1; then
      echo "microvm-net-up: warning: the TPROXY rules are not all in place or Envoy is not listening;" >&2
      echo "  see: $EGRESS_XDS agent status ${EGRESS_XDS_AGENT_FLAGS:-} (start egress-xds-agent.service and envoy-egress.service)" >&2
    fi
  else
    echo "microvm-net-up: warning: $EGRESS_XDS not found; cannot check the host's TPROXY rules" >&2
  fi
else
  add_rule filter FORWARD -i "$TAP" -o "$LAN_IF" -j ACCEPT
  add_rule filter FORWARD -i "$LAN_IF" -o "$TAP" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
  add_rule nat POSTROUTING -s "${HOST_IP}/${CIDR}" -o "$LAN_IF" -j MASQUERADE
fi
