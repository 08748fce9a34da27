#!/bin/bash
#
# nat-down.sh: tapbridge "down" hook; removes exactly what nat-up.sh created for the
# link TAPBRIDGE_NAME: the nftables table `inet tapbridge_NAME` and the iptables chains
# `TB-NAME-FWD` / `TB-NAME-NAT` with their jumps. Settings and design: see nat-up.sh.
#
# Only TAPBRIDGE_NAME is needed (plus TAPBRIDGE_NAT_BACKEND / TAPBRIDGE_NAT_IPTABLES if
# set for "up"). With the default backend "auto" it cleans both nftables and iptables, so
# a link whose backend changed between up and down is still cleaned. Running it when
# nothing is up succeeds and changes nothing.
#
# Exit status: 0 nothing of ours left, 1 a command failed, 2 bad settings.

set -euo pipefail
# A daemon may run hooks with a bare environment; nft and iptables live in sbin.
export PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
TB_LIB_DIR=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib
# shellcheck source=lib/nat.sh
. "$TB_LIB_DIR/nat.sh"

tb_common
case $TB_BACKEND in
nft) tb_nft_down ;;
iptables) tb_ipt_down ;;
auto)
    tb_nft_down
    tb_ipt_down
    ;;
esac
printf 'tapbridge %s: NAT rules down\n' "$TB_NAME"
