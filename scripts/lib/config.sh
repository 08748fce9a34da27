# shellcheck shell=bash
#
# config.sh — the one writer of tapbridge link configurations (TOML) for the demo
# lab, the benchmark and the end-to-end tests. Source it; it defines functions only.
#
#   tb_link_config FILE [OPTION...]
#
# writes FILE with exactly the keys the options name (nothing is defaulted here, so
# every caller keeps its own settings), sections in this order: [interface],
# [tunnel], [[peer]]..., [dhcp] with [[dhcp.reservation]]..., [arp], [hooks],
# [control], [metrics]. A section without options is left out.
#
#   --comment TEXT           a leading "# TEXT" line
#   --ifname NAME            [interface] name
#   --mtu N                  [interface] mtu
#   --mac MAC                [interface] mac
#   --address CIDR           [interface] addresses (repeat for more)
#   --route ROUTE            [interface] routes (repeat for more)
#   --bridge BRIDGE          [interface] bridge
#   --listen ADDR:PORT       [tunnel] listen
#   --psk FILE               [tunnel] psk_file
#   --wan-mtu N              [tunnel] wan_mtu
#   --keepalive DURATION     [tunnel] keepalive
#   --rekey-after DURATION   [tunnel] rekey_after
#   --hub true|false         [tunnel] hub
#   --transport T            [tunnel] transport (udp, tcp or auto)
#   --workers N              [tunnel] workers
#   --peer NAME[=ENDPOINT]   one [[peer]] (repeat for more); ENDPOINT A,B,... is an array
#   --peer-key NAME=FILE     psk_file of the [[peer]] called NAME
#   --dhcp KEY=VALUE         one [dhcp] key (repeat for more)
#   --reservation MAC=IP     one [[dhcp.reservation]] (repeat for more)
#   --arp KEY=VALUE          one [arp] key (repeat for more)
#   --hook-up PATH           [hooks] up (repeat for more)
#   --hook-down PATH         [hooks] down (repeat for more)
#   --socket PATH            [control] socket
#   --metrics ADDR:PORT      [metrics] listen
#
# VALUE of --dhcp/--arp: true, false and whole numbers are written as they are;
# "[a, b]" is written as a list of the strings a and b; anything else as a string.
# Strings are quoted for TOML (backslashes and double quotes escaped).

# tb_toml_str TEXT: TEXT as a TOML basic string.
tb_toml_str() {
    local s=${1//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

# tb_toml_list ITEM...: a TOML list of strings, ["a", "b"].
tb_toml_list() {
    local out="" item
    for item in "$@"; do
        out+="${out:+, }$(tb_toml_str "$item")"
    done
    printf '[%s]' "$out"
}

# tb_toml_value VALUE: VALUE typed as described above.
tb_toml_value() {
    local v=$1 inner items=() item
    if [[ "$v" =~ ^(true|false|-?[0-9]+)$ ]]; then
        printf '%s' "$v"
    elif [[ "$v" == \[*\] ]]; then
        inner=${v:1:${#v}-2}
        if [[ -n "${inner// /}" ]]; then
            IFS=',' read -r -a items <<<"$inner"
        fi
        local trimmed=()
        for item in "${items[@]}"; do
            item=${item#"${item%%[! ]*}"}
            item=${item%"${item##*[! ]}"}
            trimmed+=("$item")
        done
        tb_toml_list "${trimmed[@]}"
    else
        tb_toml_str "$v"
    fi
}

# _tb_toml_kv KEY=VALUE: one "key = value" line.
_tb_toml_kv() {
    printf '%s = %s\n' "${1%%=*}" "$(tb_toml_value "${1#*=}")"
}

tb_link_config() {
    local file=$1
    shift
    local comment="" ifname="" mtu="" mac="" bridge="" listen="" psk="" wan_mtu=""
    local keepalive="" socket="" metrics="" rekey="" hub="" transport="" workers=""
    local addrs=() rts=() peers=() dhcp=() resv=() arp=() ups=() downs=() pkeys=()
    while (($# > 0)); do
        (($# >= 2)) || {
            printf 'error: tb_link_config: option %s needs a value\n' "$1" >&2
            return 2
        }
        case "$1" in
        --comment) comment=$2 ;;
        --ifname) ifname=$2 ;;
        --mtu) mtu=$2 ;;
        --mac) mac=$2 ;;
        --address) addrs+=("$2") ;;
        --route) rts+=("$2") ;;
        --bridge) bridge=$2 ;;
        --listen) listen=$2 ;;
        --psk) psk=$2 ;;
        --wan-mtu) wan_mtu=$2 ;;
        --keepalive) keepalive=$2 ;;
        --rekey-after) rekey=$2 ;;
        --hub) hub=$2 ;;
        --transport) transport=$2 ;;
        --workers) workers=$2 ;;
        --peer) peers+=("$2") ;;
        --peer-key) pkeys+=("$2") ;;
        --dhcp) dhcp+=("$2") ;;
        --reservation) resv+=("$2") ;;
        --arp) arp+=("$2") ;;
        --hook-up) ups+=("$2") ;;
        --hook-down) downs+=("$2") ;;
        --socket) socket=$2 ;;
        --metrics) metrics=$2 ;;
        *)
            printf 'error: tb_link_config: unknown option %s\n' "$1" >&2
            return 2
            ;;
        esac
        shift 2
    done

    local p kv
    {
        [[ -z "$comment" ]] || printf '# %s\n' "$comment"
        printf '[interface]\n'
        [[ -z "$ifname" ]] || printf 'name = %s\n' "$(tb_toml_str "$ifname")"
        [[ -z "$mtu" ]] || printf 'mtu = %s\n' "$mtu"
        [[ -z "$mac" ]] || printf 'mac = %s\n' "$(tb_toml_str "$mac")"
        ((${#addrs[@]} == 0)) || printf 'addresses = %s\n' "$(tb_toml_list "${addrs[@]}")"
        ((${#rts[@]} == 0)) || printf 'routes = %s\n' "$(tb_toml_list "${rts[@]}")"
        [[ -z "$bridge" ]] || printf 'bridge = %s\n' "$(tb_toml_str "$bridge")"

        printf '\n[tunnel]\n'
        [[ -z "$listen" ]] || printf 'listen = %s\n' "$(tb_toml_str "$listen")"
        [[ -z "$psk" ]] || printf 'psk_file = %s\n' "$(tb_toml_str "$psk")"
        [[ -z "$wan_mtu" ]] || printf 'wan_mtu = %s\n' "$(tb_toml_value "$wan_mtu")"
        [[ -z "$keepalive" ]] || printf 'keepalive = %s\n' "$(tb_toml_str "$keepalive")"
        [[ -z "$rekey" ]] || printf 'rekey_after = %s\n' "$(tb_toml_str "$rekey")"
        [[ -z "$hub" ]] || printf 'hub = %s\n' "$hub"
        [[ -z "$transport" ]] || printf 'transport = %s\n' "$(tb_toml_str "$transport")"
        [[ -z "$workers" ]] || printf 'workers = %s\n' "$workers"

        local k
        for p in "${peers[@]}"; do
            printf '\n[[peer]]\nname = %s\n' "$(tb_toml_str "${p%%=*}")"
            if [[ "$p" == *=*,* ]]; then
                local -a eps
                IFS=, read -r -a eps <<<"${p#*=}"
                printf 'endpoint = %s\n' "$(tb_toml_list "${eps[@]}")"
            elif [[ "$p" == *=* ]]; then
                printf 'endpoint = %s\n' "$(tb_toml_str "${p#*=}")"
            fi
            for k in "${pkeys[@]}"; do
                [[ "${k%%=*}" != "${p%%=*}" ]] ||
                    printf 'psk_file = %s\n' "$(tb_toml_str "${k#*=}")"
            done
        done

        if ((${#dhcp[@]} + ${#resv[@]} > 0)); then
            printf '\n[dhcp]\n'
            for kv in "${dhcp[@]}"; do
                _tb_toml_kv "$kv"
            done
            for kv in "${resv[@]}"; do
                printf '[[dhcp.reservation]]\nmac = %s\nip = %s\n' \
                    "$(tb_toml_str "${kv%%=*}")" "$(tb_toml_str "${kv#*=}")"
            done
        fi
        if ((${#arp[@]} > 0)); then
            printf '\n[arp]\n'
            for kv in "${arp[@]}"; do
                _tb_toml_kv "$kv"
            done
        fi
        if ((${#ups[@]} + ${#downs[@]} > 0)); then
            printf '\n[hooks]\n'
            ((${#ups[@]} == 0)) || printf 'up = %s\n' "$(tb_toml_list "${ups[@]}")"
            ((${#downs[@]} == 0)) || printf 'down = %s\n' "$(tb_toml_list "${downs[@]}")"
        fi
        [[ -z "$socket" ]] || printf '\n[control]\nsocket = %s\n' "$(tb_toml_str "$socket")"
        [[ -z "$metrics" ]] || printf '\n[metrics]\nlisten = %s\n' "$(tb_toml_str "$metrics")"
    } >"$file"
}
