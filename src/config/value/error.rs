//! Why a value in the config file (or a link name) is not usable:
//! [`ValueError`], each message of which finishes the operator's sentence
//! `FILE:LINE:COL: KEY: <message>`, and [`HostNameError`], the reason an
//! endpoint's host is not a valid DNS name. The limits the messages quote
//! are defined with the parsers that enforce them.

use std::net::{IpAddr, Ipv4Addr};

use super::addr::{MAX_HOST_NAME, MAX_LABEL};
use super::{MAX_IFNAME, MAX_LINK_NAME, MAX_SITE_NAME};
use crate::config::IpCidr;

/// How to write an endpoint, appended to the messages about a malformed one.
const ENDPOINT_USAGE: &str = "use an address or host name and a port like \"203.0.113.10:51901\", \"[2001:db8::1]:51901\" or \"hq.example.net:51901\"";

/// Why a value in the config file (or a link name) is not usable.
///
/// Each message is the part of the operator's sentence after the key; the
/// value as written is quoted in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a duration such as `"90s"`.
    #[error("{text:?} is not a duration; use a number with a unit ms, s, m, h or d, e.g. \"90s\"")]
    NotADuration {
        /// The value.
        text: String,
    },
    /// A duration beyond the longest accepted.
    #[error("{text:?} is longer than 365 days")]
    DurationTooLong {
        /// The value.
        text: String,
    },
    /// Not a MAC address.
    #[error("{text:?} is not a MAC address like \"02:00:00:00:00:01\"")]
    NotAMac {
        /// The value.
        text: String,
    },
    /// A group (multicast or broadcast) MAC where a station's own is needed.
    #[error("{text} is a multicast MAC address; use a unicast one such as 02:00:00:00:00:01")]
    MulticastMac {
        /// The value.
        text: String,
    },
    /// The all-zero MAC.
    #[error("00:00:00:00:00:00 is not a usable MAC address")]
    ZeroMac,
    /// Not an IPv4 address.
    #[error("{text:?} is not an IPv4 address")]
    NotIpv4 {
        /// The value.
        text: String,
    },
    /// Not `address/prefix`.
    #[error("{text:?} is not an address with a prefix length, like \"198.19.0.1/24\"")]
    NotAPrefix {
        /// The value.
        text: String,
    },
    /// A prefix length beyond the address's bits.
    #[error("{text:?} has prefix length {prefix}, more than {max}")]
    PrefixTooLong {
        /// The value.
        text: String,
        /// Its prefix length.
        prefix: u8,
        /// 32 or 128.
        max: u8,
    },
    /// The unspecified or a multicast address as an interface's own.
    #[error("{addr} cannot be assigned to an interface")]
    NotAssignable {
        /// The address.
        addr: IpAddr,
    },
    /// A network prefix with host bits set.
    #[error("{text} has host bits set; did you mean {base}/{prefix_len}?")]
    HostBits {
        /// The value.
        text: String,
        /// The network it probably means.
        base: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
    },
    /// An IPv6 network where an IPv4 one is needed.
    #[error("{text} is not an IPv4 network")]
    NotIpv4Network {
        /// The value.
        text: String,
    },
    /// Not `prefix` or `prefix via gateway`.
    #[error(
        "{text:?} is not a route like \"198.19.64.0/18\" or \"198.19.128.0/18 via 198.19.0.254\""
    )]
    NotARoute {
        /// The value.
        text: String,
    },
    /// A route's gateway is not an IP address.
    #[error("gateway {gw:?} is not an IP address")]
    GatewayNotIp {
        /// The gateway as written.
        gw: String,
    },
    /// A route's gateway and destination differ in address family.
    #[error("gateway {gw} is not of the same address family as {dest}")]
    GatewayFamily {
        /// The gateway.
        gw: IpAddr,
        /// The destination.
        dest: IpCidr,
    },
    /// The unspecified or a multicast address as a gateway.
    #[error("{gw} cannot be a gateway")]
    NotAGateway {
        /// The gateway.
        gw: IpAddr,
    },
    /// A DHCP option 121 route without a gateway.
    #[error("{text:?} needs a gateway for DHCP option 121, like \"198.19.64.0/18 via 198.19.0.1\"")]
    RouteNeedsGateway {
        /// The value.
        text: String,
    },
    /// An IPv6 route where an IPv4 one is needed.
    #[error("{text:?} is not an IPv4 route")]
    NotIpv4Route {
        /// The value.
        text: String,
    },
    /// Not `first-last`.
    #[error("{text:?} is not a range like \"198.19.0.100-198.19.0.199\"")]
    NotARange {
        /// The value.
        text: String,
    },
    /// A pool whose start is after its end.
    #[error("pool start {start} is after pool end {end}")]
    PoolReversed {
        /// First address.
        start: Ipv4Addr,
        /// Last address.
        end: Ipv4Addr,
    },
    /// Not an IP literal and a port.
    #[error("{text:?} is not an IP address and port like \"0.0.0.0:51901\" or \"[::]:51901\"")]
    NotAListenAddress {
        /// The value.
        text: String,
    },
    /// An endpoint with port 0.
    #[error("{text} has port 0")]
    PortZero {
        /// The value, trimmed.
        text: String,
    },
    /// The unspecified or a multicast address as a peer's.
    #[error("{ip} cannot be a peer's address")]
    NotAPeerAddress {
        /// The address.
        ip: IpAddr,
    },
    /// An endpoint without a port.
    #[error("{text:?} has no port; {ENDPOINT_USAGE}")]
    NoPort {
        /// The value.
        text: String,
    },
    /// An IPv6 address and a port without the brackets between them.
    #[error("{text:?} has no brackets around its IPv6 address; write {with:?}")]
    Ipv6Unbracketed {
        /// The value, trimmed.
        text: String,
        /// The same with brackets.
        with: String,
    },
    /// Something like an IPv6 address that is not one.
    #[error("{text:?} is not a valid IPv6 address and port; {ENDPOINT_USAGE}")]
    NotIpv6 {
        /// The value.
        text: String,
    },
    /// An endpoint's port is not a number in 0..=65535.
    #[error("{port:?} in {text:?} is not a port number; {ENDPOINT_USAGE}")]
    NotAPort {
        /// The port as written.
        port: String,
        /// The value.
        text: String,
    },
    /// An endpoint's host is not a valid DNS name.
    #[error("{host:?} is not a valid host name")]
    HostName {
        /// The host as written (without a trailing dot).
        host: String,
        /// What is wrong with it.
        #[source]
        why: HostNameError,
    },
    /// A host whose last label is a number: neither an address nor a name.
    #[error("{host:?} is neither an IP address nor a host name (its last label is a number)")]
    NumericHost {
        /// The host as written.
        host: String,
    },
    /// An empty interface name.
    #[error("an interface name cannot be empty")]
    EmptyIfname,
    /// An interface name longer than the kernel allows.
    #[error("interface name {name:?} is longer than {MAX_IFNAME} bytes")]
    IfnameTooLong {
        /// The name.
        name: String,
    },
    /// `.` or `..` as an interface name.
    #[error("{name:?} is not a valid interface name")]
    IfnameDots {
        /// The name.
        name: String,
    },
    /// An interface name with a character outside `[A-Za-z0-9._-]`.
    #[error("interface name {name:?} contains {c:?}; use letters, digits, '-', '_' and '.'")]
    IfnameChar {
        /// The name.
        name: String,
        /// The first character not allowed.
        c: char,
    },
    /// An empty link name.
    #[error("it is empty")]
    EmptyLinkName,
    /// A link name longer than the NAT hooks allow.
    #[error(
        "it is longer than {MAX_LINK_NAME} bytes (the NAT hooks name firewall chains after it)"
    )]
    LinkNameTooLong,
    /// A link name that starts with neither a letter nor a digit.
    #[error("it does not start with a letter or digit")]
    LinkNameStart,
    /// A link name with a character outside `[A-Za-z0-9_-]`.
    #[error("it contains {0:?}; use letters, digits, '-' and '_'")]
    LinkNameChar(char),
    /// Not a Unix group name.
    #[error("{name:?} is not a group name")]
    NotAGroup {
        /// The name.
        name: String,
    },
    /// An empty peer name.
    #[error("a peer name cannot be empty")]
    EmptyPeerName,
    /// A peer name longer than the handshake carries.
    #[error(
        "peer name {name:?} is longer than {MAX_SITE_NAME} bytes (it travels in the handshake)"
    )]
    PeerNameTooLong {
        /// The name.
        name: String,
    },
    /// A peer name with whitespace or control characters.
    #[error("peer name {name:?} contains whitespace or control characters")]
    PeerNameChar {
        /// The name.
        name: String,
    },
    /// Not a DNS domain name.
    #[error("{name:?} is not a domain name")]
    NotADomain {
        /// The value.
        name: String,
    },
    /// Hex digits that do not make whole bytes.
    #[error("{text:?} has an odd number of hex digits")]
    OddHex {
        /// The value.
        text: String,
    },
    /// Not hex digits.
    #[error("{text:?} is not hex")]
    NotHex {
        /// The value.
        text: String,
    },
}

/// Why a host name is not a valid DNS name (RFC 1123).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostNameError {
    /// No name at all.
    #[error("it is empty")]
    Empty,
    /// Longer than DNS allows.
    #[error("it is longer than {MAX_HOST_NAME} bytes")]
    TooLong,
    /// Two dots in a row (or a leading dot).
    #[error("it has an empty label")]
    EmptyLabel,
    /// A label longer than DNS allows.
    #[error("a label is longer than {MAX_LABEL} bytes")]
    LabelTooLong,
    /// A character other than a letter, digit, hyphen or dot.
    #[error("{0:?} is not allowed (letters, digits, hyphens and dots only)")]
    Char(char),
    /// A label that starts or ends with a hyphen.
    #[error("label {label:?} starts or ends with a hyphen")]
    Hyphen {
        /// The label.
        label: String,
    },
}
