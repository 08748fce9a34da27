# shellcheck shell=bash
#
# kernel_config.sh — what the running kernel was built with, for the end-to-end tests
# that must tell "this kernel cannot do it" (the one reason a check may be skipped: no
# package fixes it) from "a tool is missing, not loaded or broken" (a failure).
#
# Source it, then:
#
#   tb_kernel_config SYMBOL      prints y or m (built in or as a module), n (the kernel's
#                                configuration says "# CONFIG_SYMBOL is not set"), absent
#                                (the configuration is readable but has no such line: an
#                                older or newer kernel, or a dependency is off) or unknown
#                                (no configuration found: /proc/config.gz,
#                                /boot/config-$(uname -r))
#   tb_kernel_lacks SYMBOL...    true if the configuration says one of SYMBOLs is not set;
#                                prints that CONFIG_SYMBOL. Only an explicit "is not set"
#                                counts: an absent or unreadable configuration proves
#                                nothing, so the caller fails rather than skips.

# _tb_kernel_config_text: the running kernel's configuration, or nothing.
_tb_kernel_config_text() {
    if [[ -r /proc/config.gz ]]; then
        gzip -dc /proc/config.gz 2>/dev/null && return 0
    fi
    local f
    f=/boot/config-$(uname -r)
    if [[ -r "$f" ]]; then
        cat -- "$f"
    fi
}

tb_kernel_config() {
    local sym=CONFIG_$1 text line
    text=$(_tb_kernel_config_text)
    if [[ -z "$text" ]]; then
        echo unknown
        return 0
    fi
    line=$(grep -E "^(# )?${sym}[= ]" <<<"$text" | head -n 1 || true)
    case $line in
    "$sym=y") echo y ;;
    "$sym=m") echo m ;;
    "# $sym is not set") echo n ;;
    *) echo absent ;;
    esac
}

tb_kernel_lacks() {
    local sym
    for sym in "$@"; do
        if [[ "$(tb_kernel_config "$sym")" == n ]]; then
            echo "CONFIG_$sym"
            return 0
        fi
    done
    return 1
}
