# shellcheck shell=bash
#
# tapbridge NAT/forwarding hook library. Sourced by nat-up.sh and nat-down.sh, never run
# on its own. The settings and the rules it manages are described at the top of
# nat-up.sh. Promises:
#
#   * it only ever creates, and only ever removes, objects named after the link:
#     nftables table `inet tapbridge_NAME`, or iptables chains `TB-NAME-FWD` and
#     `TB-NAME-IN` (filter, IPv4 and IPv6) and `TB-NAME-NAT` (nat, IPv4) plus the
#     single jump to each;
#   * every value that reaches nft or iptables has been validated first (interface
#     names, IPv4 CIDRs, numbers, fixed keywords), and reaches iptables as one quoted
#     argument; nothing is eval'ed and the optional settings file is parsed, not sourced;
#   * "up" replaces whatever an earlier "up" of the same link left (running it twice
#     gives the rules once) and undoes its own partial work if a command fails;
#   * "down" is safe to run at any time, also without a preceding "up".
#
# Errors are one sentence on stderr; exit status 2 for bad settings, 1 for failures.

# Keys the settings file may carry (the same names work as environment variables,
# which take precedence over the file).
TB_SETTING_KEYS=(TAPBRIDGE_NAT_BACKEND TAPBRIDGE_NAT_IPTABLES TAPBRIDGE_NAT_WAN_IF
    TAPBRIDGE_NAT_LAN_IF TAPBRIDGE_NAT_BRIDGE TAPBRIDGE_NAT_SUBNET TAPBRIDGE_NAT_MSS
    TAPBRIDGE_NAT_MASQUERADE)

tb_usage_error() {
    printf 'error: %s\n' "$1" >&2
    exit 2
}

tb_fail() {
    printf 'error: %s\n' "$1" >&2
    exit 1
}

# Linux accepts almost anything as an interface name; we accept the sane subset so that
# no name can carry nft syntax, an iptables wildcard (`+`) or an option (`-x`).
tb_valid_ifname() {
    [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$ ]]
}

# The link name ends up in an nft table name and in iptables chain names (at most 28
# characters: "TB-" + NAME + "-FWD"). bridge-ctl applies the same rule to link names
# (src/config/value.rs, link_name), so every link it accepts gets its NAT rules.
tb_valid_linkname() {
    [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$ ]]
}

# tb_ipv4_network CIDR: print the network of an IPv4 CIDR ("198.18.0.7/24" ->
# "198.18.0.0/24"); return 1 if CIDR is not an IPv4 CIDR.
tb_ipv4_network() {
    local o1 o2 o3 o4 prefix ip mask net
    [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] || return 1
    o1=$((10#${BASH_REMATCH[1]}))
    o2=$((10#${BASH_REMATCH[2]}))
    o3=$((10#${BASH_REMATCH[3]}))
    o4=$((10#${BASH_REMATCH[4]}))
    prefix=$((10#${BASH_REMATCH[5]}))
    ((o1 <= 255 && o2 <= 255 && o3 <= 255 && o4 <= 255 && prefix <= 32)) || return 1
    ip=$(((o1 << 24) | (o2 << 16) | (o3 << 8) | o4))
    mask=$(((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))
    net=$((ip & mask))
    printf '%d.%d.%d.%d/%d\n' $(((net >> 24) & 255)) $(((net >> 16) & 255)) \
        $(((net >> 8) & 255)) $((net & 255)) "$prefix"
}

tb_looks_ipv6_cidr() {
    [[ $1 =~ ^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/[0-9]{1,3}$ ]]
}

# tb_load_settings FILE: read KEY=value lines (value optionally in double quotes; blank
# lines and lines starting with # ignored). Only the keys in TB_SETTING_KEYS are
# accepted; a variable already set in the environment wins. The file steers firewall
# rules, so it must not be writable by anyone but its owner, and the owner must be root
# or whoever runs the hook.
tb_load_settings() {
    local file=$1 line key value n=0 owner mode known k
    [[ -e $file ]] || return 0
    [[ -f $file && -r $file ]] || tb_usage_error "settings file $file is not a readable regular file."
    read -r owner mode < <(stat -c '%u %a' -- "$file")
    if [[ $owner != 0 && $owner != "$(id -u)" ]]; then
        tb_usage_error "settings file $file must be owned by root."
    fi
    if (((8#$mode & 8#022) != 0)); then
        tb_usage_error "settings file $file must not be writable by group or others."
    fi
    while IFS= read -r line || [[ -n $line ]]; do
        n=$((n + 1))
        [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
        if [[ ! $line =~ ^[[:space:]]*([A-Z_]+)=(\"([^\"]*)\"|([^\"[:space:]]*))[[:space:]]*$ ]]; then
            tb_usage_error "settings file $file line $n is not of the form KEY=value."
        fi
        key=${BASH_REMATCH[1]}
        value=${BASH_REMATCH[3]}${BASH_REMATCH[4]}
        known=0
        for k in "${TB_SETTING_KEYS[@]}"; do
            [[ $k == "$key" ]] && known=1
        done
        ((known)) || tb_usage_error "settings file $file line $n has unknown key $key."
        # $key is one of TB_SETTING_KEYS here, so the indirection is safe.
        if [[ -z ${!key+set} ]]; then
            printf -v "$key" '%s' "$value"
        fi
    done <"$file"
}

# tb_common: validate the link name and load the settings; sets TB_NAME, TB_BACKEND
# (nft|iptables|auto) and TB_IPT/TB_IP6T (iptables commands).
tb_common() {
    TB_NAME=${TAPBRIDGE_NAME:-}
    [[ -n $TB_NAME ]] || tb_usage_error "TAPBRIDGE_NAME is not set; run this script as a tapbridge hook."
    tb_valid_linkname "$TB_NAME" ||
        tb_usage_error "TAPBRIDGE_NAME '$TB_NAME' must be 1-21 letters, digits, '-' or '_'."
    tb_load_settings "${TAPBRIDGE_NAT_CONFIG:-/etc/tapbridge/$TB_NAME.nat}"

    TB_BACKEND=${TAPBRIDGE_NAT_BACKEND:-auto}
    case $TB_BACKEND in
    auto | nft | iptables) ;;
    *) tb_usage_error "TAPBRIDGE_NAT_BACKEND must be auto, nft or iptables, not '$TB_BACKEND'." ;;
    esac
    TB_IPT=${TAPBRIDGE_NAT_IPTABLES:-iptables}
    case $TB_IPT in
    iptables) TB_IP6T=ip6tables ;;
    iptables-nft) TB_IP6T=ip6tables-nft ;;
    iptables-legacy) TB_IP6T=ip6tables-legacy ;;
    *) tb_usage_error "TAPBRIDGE_NAT_IPTABLES must be iptables, iptables-nft or iptables-legacy, not '$TB_IPT'." ;;
    esac
    TB_TABLE="tapbridge_$TB_NAME"
    TB_FWD="TB-$TB_NAME-FWD"
    TB_IN="TB-$TB_NAME-IN"
    TB_NAT="TB-$TB_NAME-NAT"
}

# tb_listen_port LISTEN: print the port of "ADDR:PORT" or "[ADDR6]:PORT"; return 1 if
# LISTEN is not of that form or the port is not 1-65535.
tb_listen_port() {
    local port
    [[ $1 =~ ^(\[[0-9A-Fa-f:.]+\]|[0-9.]+):([0-9]{1,5})$ ]] || return 1
    port=$((10#${BASH_REMATCH[2]}))
    ((port >= 1 && port <= 65535)) || return 1
    printf '%d\n' "$port"
}

tb_have() {
    command -v "$1" >/dev/null 2>&1
}

# tb_pick_backend: resolve "auto" for "up": nft when it is installed, else iptables.
tb_pick_backend() {
    case $TB_BACKEND in
    nft) tb_have nft || tb_fail "TAPBRIDGE_NAT_BACKEND is nft but the nft command is not installed." ;;
    iptables) tb_have "$TB_IPT" || tb_fail "TAPBRIDGE_NAT_BACKEND is iptables but $TB_IPT is not installed." ;;
    auto)
        if tb_have nft; then
            TB_BACKEND=nft
        elif tb_have "$TB_IPT"; then
            TB_BACKEND=iptables
        else
            tb_fail "neither nft nor $TB_IPT is installed, so no NAT rules can be set up."
        fi
        ;;
    esac
}

# tb_up_settings: validate everything "up" needs; sets TB_OVL (the overlay interface:
# the TAP or its bridge), TB_WAN, TB_LANS (array), TB_SUBNETS (array), TB_MSS
# (pmtu|number), TB_MASQ (1|0), TB_PORT (the tunnel's UDP port, or empty).
tb_up_settings() {
    local tap=${TAPBRIDGE_INTERFACE:-} word net lan
    [[ -n $tap ]] || tb_usage_error "TAPBRIDGE_INTERFACE is not set; run this script as a tapbridge hook."
    tb_valid_ifname "$tap" || tb_usage_error "TAPBRIDGE_INTERFACE '$tap' is not a valid interface name."

    # The bridge the daemon enslaved the TAP to (TAPBRIDGE_BRIDGE) carries the overlay
    # traffic; TAPBRIDGE_NAT_BRIDGE overrides it.
    TB_OVL=${TAPBRIDGE_NAT_BRIDGE:-${TAPBRIDGE_BRIDGE:-$tap}}
    tb_valid_ifname "$TB_OVL" || tb_usage_error "the bridge '$TB_OVL' (TAPBRIDGE_NAT_BRIDGE or TAPBRIDGE_BRIDGE) is not a valid interface name."

    # The tunnel's own UDP port is opened in INPUT (a daemon too old to say leaves it out),
    # and the same TCP port when the link also listens on TCP (transport tcp or auto).
    TB_PORT=""
    if [[ -n ${TAPBRIDGE_LISTEN:-} ]]; then
        TB_PORT=$(tb_listen_port "$TAPBRIDGE_LISTEN") ||
            tb_usage_error "TAPBRIDGE_LISTEN '$TAPBRIDGE_LISTEN' is not an address:port like 0.0.0.0:51901."
    fi
    TB_TCP=0
    case ${TAPBRIDGE_TRANSPORT:-udp} in
    udp) ;;
    tcp | auto) TB_TCP=1 ;;
    *) tb_usage_error "TAPBRIDGE_TRANSPORT '$TAPBRIDGE_TRANSPORT' is none of udp, tcp, auto." ;;
    esac

    TB_WAN=${TAPBRIDGE_NAT_WAN_IF:-}
    if [[ -z $TB_WAN ]]; then
        # The interface of the first IPv4 default route of this namespace.
        TB_WAN=$(ip -4 -o route show default 2>/dev/null |
            awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
        [[ -n $TB_WAN ]] || tb_usage_error "TAPBRIDGE_NAT_WAN_IF is not set and there is no IPv4 default route to take the WAN interface from."
    fi
    tb_valid_ifname "$TB_WAN" || tb_usage_error "TAPBRIDGE_NAT_WAN_IF '$TB_WAN' is not a valid interface name."
    [[ $TB_WAN != "$TB_OVL" ]] || tb_usage_error "the WAN interface '$TB_WAN' cannot also be the overlay interface."
    # A rule on a missing interface is valid and would never match: a typo in
    # TAPBRIDGE_NAT_WAN_IF would leave the overlay without NAT and say nothing.
    ip -o link show dev "$TB_WAN" >/dev/null 2>&1 ||
        tb_usage_error "the WAN interface '$TB_WAN' (TAPBRIDGE_NAT_WAN_IF) does not exist; set TAPBRIDGE_NAT_WAN_IF to an existing interface (ip link lists them)."

    TB_LANS=()
    for lan in ${TAPBRIDGE_NAT_LAN_IF:-}; do
        tb_valid_ifname "$lan" || tb_usage_error "TAPBRIDGE_NAT_LAN_IF entry '$lan' is not a valid interface name."
        [[ $lan != "$TB_OVL" && $lan != "$TB_WAN" ]] ||
            tb_usage_error "TAPBRIDGE_NAT_LAN_IF entry '$lan' is already the overlay or WAN interface."
        TB_LANS+=("$lan")
    done

    case ${TAPBRIDGE_NAT_MASQUERADE:-yes} in
    yes | 1 | true) TB_MASQ=1 ;;
    no | 0 | false) TB_MASQ=0 ;;
    *) tb_usage_error "TAPBRIDGE_NAT_MASQUERADE must be yes or no, not '${TAPBRIDGE_NAT_MASQUERADE}'." ;;
    esac

    TB_SUBNETS=()
    if [[ -n ${TAPBRIDGE_NAT_SUBNET:-} ]]; then
        for word in $TAPBRIDGE_NAT_SUBNET; do
            net=$(tb_ipv4_network "$word") ||
                tb_usage_error "TAPBRIDGE_NAT_SUBNET entry '$word' is not an IPv4 CIDR like 198.19.0.0/24."
            TB_SUBNETS+=("$net")
        done
    else
        for word in ${TAPBRIDGE_ADDRESSES:-}; do
            if net=$(tb_ipv4_network "$word"); then
                TB_SUBNETS+=("$net")
            elif ! tb_looks_ipv6_cidr "$word"; then
                tb_usage_error "TAPBRIDGE_ADDRESSES entry '$word' is not a CIDR like 198.19.0.1/24."
            fi
        done
    fi
    if ((TB_MASQ && ${#TB_SUBNETS[@]} == 0)); then
        tb_usage_error "no IPv4 overlay subnet to masquerade: set TAPBRIDGE_NAT_SUBNET or give the link an IPv4 address."
    fi

    TB_MSS=${TAPBRIDGE_NAT_MSS:-pmtu}
    if [[ $TB_MSS != pmtu ]]; then
        if [[ ! $TB_MSS =~ ^[0-9]{3,5}$ ]] || ((10#$TB_MSS < 536 || 10#$TB_MSS > 65495)); then
            tb_usage_error "TAPBRIDGE_NAT_MSS must be pmtu or a number from 536 to 65495, not '$TB_MSS'."
        fi
        TB_MSS=$((10#$TB_MSS))
    fi
}

# ---------------------------------------------------------------- nftables backend

# tb_nft_ruleset: print the nft transaction that (re)creates our table. The leading
# "table" + "delete table" pair makes the transaction replace an existing table and
# succeed when there is none, atomically. Every interpolated value was validated by
# tb_up_settings.
tb_nft_ruleset() {
    local mss_expr=$TB_MSS lan subnets
    [[ $mss_expr == pmtu ]] && mss_expr="rt mtu"
    printf 'table inet %s\n' "$TB_TABLE"
    printf 'delete table inet %s\n' "$TB_TABLE"
    printf 'table inet %s {\n' "$TB_TABLE"
    # Clamp before any filtering, at the priority iptables' mangle table uses.
    printf '  chain mss_clamp {\n'
    printf '    type filter hook forward priority mangle; policy accept;\n'
    printf '    iifname "%s" tcp flags & (syn | rst) == syn tcp option maxseg size set %s\n' "$TB_OVL" "$mss_expr"
    printf '    oifname "%s" tcp flags & (syn | rst) == syn tcp option maxseg size set %s\n' "$TB_OVL" "$mss_expr"
    printf '  }\n'
    # Just before the usual filter priority. An accept here is final only for this
    # table: a drop policy in another table still applies (see nat-up.sh).
    printf '  chain forward {\n'
    printf '    type filter hook forward priority filter - 5; policy accept;\n'
    printf '    iifname "%s" oifname "%s" counter accept\n' "$TB_OVL" "$TB_WAN"
    printf '    iifname "%s" oifname "%s" ct state established,related counter accept\n' "$TB_WAN" "$TB_OVL"
    for lan in "${TB_LANS[@]}"; do
        printf '    iifname "%s" oifname "%s" counter accept\n' "$TB_OVL" "$lan"
        printf '    iifname "%s" oifname "%s" counter accept\n' "$lan" "$TB_OVL"
    done
    printf '  }\n'
    if [[ -n $TB_PORT ]]; then
        # The tunnel itself: accepted before a drop policy of the box's own input chain
        # in this table (the same caveat as for forward applies).
        printf '  chain input {\n'
        printf '    type filter hook input priority filter - 5; policy accept;\n'
        printf '    udp dport %s counter accept\n' "$TB_PORT"
        if ((TB_TCP)); then
            printf '    tcp dport %s counter accept\n' "$TB_PORT"
        fi
        printf '  }\n'
    fi
    if ((TB_MASQ)); then
        # After the usual srcnat priority: the box's own SNAT rules win, we only
        # masquerade what nobody else translated.
        subnets=$(printf '%s, ' "${TB_SUBNETS[@]}")
        printf '  chain postrouting {\n'
        printf '    type nat hook postrouting priority srcnat + 10; policy accept;\n'
        printf '    oifname "%s" ip saddr { %s } counter masquerade\n' "$TB_WAN" "${subnets%, }"
        printf '  }\n'
    fi
    printf '}\n'
}

tb_nft_up() {
    local err
    if ! err=$(tb_nft_ruleset | nft -f - 2>&1); then
        tb_fail "nft refused the rules for table inet $TB_TABLE: ${err//$'\n'/ }"
    fi
}

tb_nft_down() {
    tb_have nft || return 0
    local err
    if ! err=$(printf 'table inet %s\ndelete table inet %s\n' "$TB_TABLE" "$TB_TABLE" | nft -f - 2>&1); then
        tb_fail "nft could not delete table inet $TB_TABLE: ${err//$'\n'/ }"
    fi
}

# ---------------------------------------------------------------- iptables backend

# tb_ipt_remove CMD TABLE BUILTIN CHAIN: remove every jump from BUILTIN to CHAIN, then
# CHAIN itself. Absent objects are fine.
tb_ipt_remove() {
    local ipt=$1 table=$2 builtin=$3 chain=$4
    "$ipt" -w -t "$table" -S "$chain" >/dev/null 2>&1 || return 0
    while "$ipt" -w -t "$table" -D "$builtin" -j "$chain" 2>/dev/null; do :; done
    "$ipt" -w -t "$table" -F "$chain" ||
        tb_fail "$ipt could not flush chain $chain in table $table."
    "$ipt" -w -t "$table" -X "$chain" ||
        tb_fail "$ipt could not delete chain $chain in table $table."
}

tb_ipt_down() {
    if tb_have "$TB_IPT"; then
        tb_ipt_remove "$TB_IPT" filter FORWARD "$TB_FWD"
        tb_ipt_remove "$TB_IPT" filter INPUT "$TB_IN"
        tb_ipt_remove "$TB_IPT" nat POSTROUTING "$TB_NAT"
    fi
    if tb_have "$TB_IP6T"; then
        tb_ipt_remove "$TB_IP6T" filter FORWARD "$TB_FWD"
        tb_ipt_remove "$TB_IP6T" filter INPUT "$TB_IN"
    fi
}

# tb_ipt_in_chain CMD: accept the tunnel's UDP port, jumped to first thing in INPUT.
tb_ipt_in_chain() {
    local ipt=$1
    [[ -n $TB_PORT ]] || return 0
    tb_ipt "$ipt" -w -t filter -N "$TB_IN"
    tb_ipt "$ipt" -w -t filter -A "$TB_IN" -p udp --dport "$TB_PORT" -j ACCEPT
    if ((TB_TCP)); then
        tb_ipt "$ipt" -w -t filter -A "$TB_IN" -p tcp --dport "$TB_PORT" -j ACCEPT
    fi
    tb_ipt "$ipt" -w -t filter -I INPUT 1 -j "$TB_IN"
}

# tb_ipt CMD ARGS...: run one iptables command of "up"; on failure undo all of "up".
tb_ipt() {
    local err
    if ! err=$("$@" 2>&1); then
        tb_ipt_down
        tb_fail "'$*' failed (${err//$'\n'/ }); no rules were left behind."
    fi
}

# tb_ipt_fwd_chain CMD: build the filter chain for one address family and jump to it
# first thing in FORWARD, so its accepts win over the box's own drop rules.
tb_ipt_fwd_chain() {
    local ipt=$1 dir lan
    local -a mss=(--clamp-mss-to-pmtu)
    [[ $TB_MSS == pmtu ]] || mss=(--set-mss "$TB_MSS")
    tb_ipt "$ipt" -w -t filter -N "$TB_FWD"
    for dir in -i -o; do
        tb_ipt "$ipt" -w -t filter -A "$TB_FWD" "$dir" "$TB_OVL" -p tcp --tcp-flags SYN,RST SYN \
            -j TCPMSS "${mss[@]}"
    done
    tb_ipt "$ipt" -w -t filter -A "$TB_FWD" -i "$TB_OVL" -o "$TB_WAN" -j ACCEPT
    tb_ipt "$ipt" -w -t filter -A "$TB_FWD" -i "$TB_WAN" -o "$TB_OVL" \
        -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    for lan in "${TB_LANS[@]}"; do
        tb_ipt "$ipt" -w -t filter -A "$TB_FWD" -i "$TB_OVL" -o "$lan" -j ACCEPT
        tb_ipt "$ipt" -w -t filter -A "$TB_FWD" -i "$lan" -o "$TB_OVL" -j ACCEPT
    done
    tb_ipt "$ipt" -w -t filter -I FORWARD 1 -j "$TB_FWD"
}

tb_ipt_up() {
    local subnet
    tb_ipt_down
    tb_ipt_fwd_chain "$TB_IPT"
    tb_ipt_in_chain "$TB_IPT"
    # IPv6 forwarding, clamping and the tunnel port too when ip6tables is there (no
    # IPv6 NAT).
    if tb_have "$TB_IP6T"; then
        tb_ipt_fwd_chain "$TB_IP6T"
        tb_ipt_in_chain "$TB_IP6T"
    fi
    if ((TB_MASQ)); then
        tb_ipt "$TB_IPT" -w -t nat -N "$TB_NAT"
        for subnet in "${TB_SUBNETS[@]}"; do
            tb_ipt "$TB_IPT" -w -t nat -A "$TB_NAT" -s "$subnet" -o "$TB_WAN" -j MASQUERADE
        done
        # Appended: the box's own SNAT rules come first, as with the nft backend.
        tb_ipt "$TB_IPT" -w -t nat -A POSTROUTING -j "$TB_NAT"
    fi
}
