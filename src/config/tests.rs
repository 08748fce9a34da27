//! Tests for config parsing: the SPEC §4 example, defaults, and a table of
//! rejected configs, one row per validation rule, checking that the error
//! names file, line, column and key.

use super::*;
use crate::error::Chain;
use crate::responder::DhcpSettings;

const FILE: &str = "/etc/tapbridge/site-a.toml";

/// The full example of SPEC §4 (with NAME filled in).
const EXAMPLE: &str = r#"
[interface]
name = "tb0"                      # TAP device name (default: "tb-" + NAME, max 15 chars)
mtu = 1500                        # TAP MTU
mac = "02:00:00:00:00:01"         # optional fixed MAC for the TAP
addresses = ["198.19.0.1/24"]     # added on up, removed on down
routes = ["198.19.64.0/18", "198.19.128.0/18 via 198.19.0.254"]
bridge = "br-lan"                 # optional: enslave the TAP to this existing Linux bridge

[tunnel]
listen = "0.0.0.0:51901"          # UDP; IPv6 must work too ("[::]:51901")
psk_file = "/etc/tapbridge/site-a.psk"   # base64 32 bytes; refuse if group/world readable
wan_mtu = 1500                    # largest outer IP packet; bigger frames are fragmented by the tunnel
transport = "udp"
keepalive = "10s"
rekey_after = "2m"                # new session keys at least this often (and by packet count)
hub = false                       # true: forward frames between peers (hub of hub-and-spoke)

[[peer]]                          # one or more
name = "hq"
endpoint = "203.0.113.10:51901"   # optional: a peer without one waits to be contacted (roaming)

[dhcp]                            # the local DHCP responder (tap_win32-style masquerade)
enabled = true
server_address = "198.19.0.254"   # the address the responder answers as
pool = "198.19.0.100-198.19.0.199"
subnet = "198.19.0.0/24"
router = "198.19.0.1"
dns = ["198.19.0.1"]
domain = "branch.example"
lease_time = "12h"
routes = ["198.19.64.0/18 via 198.19.0.1"]   # option 121
mtu = 1500                        # option 26 (omit to leave out)
lease_file = "/var/lib/tapbridge/site-a.leases"
search = ["branch.example"]       # option 119
ntp = ["198.19.0.1"]              # option 42
conflict_check = true             # never offer an address seen in use (locally or at another
                                  # site) by another MAC; probe before offering
[[dhcp.reservation]]
mac = "02:00:00:00:aa:01"
ip = "198.19.0.10"
[[dhcp.option]]                   # any other option, passed through as is
code = 252
hex = "68747470"                  # or text = "..."

[arp]
respond = ["198.19.0.254"]        # addresses answered locally with the responder's MAC
mac = "02:00:00:00:00:fe"         # the responder's own MAC (default: derived from the TAP's
                                  # MAC, as tap_win32 derives its DHCP server's MAC)
suppress = true                   # answer for remote hosts from learned bindings; don't flood
binding_timeout = "5m"
suppress_nd = true                # the same for IPv6 neighbour solicitations (RFC 9161 proxy ND;
                                  # never for duplicate address detection)

[hooks]
up = ["/usr/lib/tapbridge/scripts/nat-up.sh"]     # run after the link is up
down = ["/usr/lib/tapbridge/scripts/nat-down.sh"] # run before it goes down
peer_up = ["peer-up.sh"]
peer_down = ["/usr/lib/tapbridge/scripts/peer-down.sh"]

[control]
socket = "/run/tapbridge/site-a.sock"   # created 0600 (or 0660 with `group`)
group = "tapbridge"                   # optional
admin_group = "tapbridge-admin"

[metrics]                             # optional
listen = "127.0.0.1:9477"             # Prometheus text format: the counters of §6, per peer
"#;

const MINIMAL: &str =
    "[interface]\n[tunnel]\npsk_file = \"/etc/tapbridge/site-a.psk\"\n[[peer]]\nname = \"hq\"\n";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse("site-a", Path::new(FILE), text)
}

/// The error as the operator reads it: its message and its causes'.
fn message(e: &ConfigError) -> String {
    Chain(e).to_string()
}

/// `MINIMAL` plus `extra`, which therefore starts on line 6.
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

#[test]
fn spec_example_parses_to_expected_values() {
    let c = parse(EXAMPLE).expect("SPEC example");
    assert_eq!(c.name, "site-a");
    assert_eq!(c.path, Path::new(FILE));
    assert_eq!(
        c.interface,
        InterfaceConfig {
            name: "tb0".into(),
            mtu: 1500,
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            addresses: vec![IpCidr {
                addr: "198.19.0.1".parse().unwrap(),
                prefix_len: 24
            }],
            routes: vec![
                Route {
                    dest: IpCidr {
                        addr: "198.19.64.0".parse().unwrap(),
                        prefix_len: 18
                    },
                    via: None
                },
                Route {
                    dest: IpCidr {
                        addr: "198.19.128.0".parse().unwrap(),
                        prefix_len: 18
                    },
                    via: Some("198.19.0.254".parse().unwrap())
                },
            ],
            bridge: Some("br-lan".into()),
        }
    );
    assert_eq!(
        c.tunnel,
        TunnelConfig {
            name: "site-a".into(),
            listen: "0.0.0.0:51901".parse().unwrap(),
            psk_file: Some(KeyFile {
                path: "/etc/tapbridge/site-a.psk".into(),
                named_in: FILE.into(),
                line: 12,
                column: 12,
                key: "tunnel.psk_file",
            }),
            wan_mtu: WanMtu::Fixed(1500),
            keepalive: Duration::from_secs(10),
            rekey_after: Duration::from_secs(120),
            hub: false,
            workers: 1,
            transport: Transport::Udp,
        }
    );
    assert_eq!(
        c.peers,
        vec![PeerConfig {
            name: "hq".into(),
            endpoints: vec![PeerEndpoint::Addr("203.0.113.10:51901".parse().unwrap())],
            psk_file: None,
            file: FILE.into(),
            policy: PeerPolicy::default(),
        }]
    );
    let subnet = Ipv4Net {
        addr: ip4("198.19.0.0"),
        prefix_len: 24,
    };
    let d = c.dhcp.as_ref().expect("dhcp");
    assert_eq!(d.lease_file, Path::new("/var/lib/tapbridge/site-a.leases"));
    assert_eq!(
        d.plan.settings(),
        &DhcpSettings {
            server_address: ip4("198.19.0.254"),
            server_mac: MacAddr::ZERO,
            pool_start: ip4("198.19.0.100"),
            pool_end: ip4("198.19.0.199"),
            subnet_addr: subnet.addr,
            prefix_len: subnet.prefix_len,
            router: Some(ip4("198.19.0.1")),
            dns: vec![ip4("198.19.0.1")],
            domain: Some("branch.example".into()),
            lease_time: Duration::from_secs(12 * 3600),
            first_lease: Duration::from_secs(300),
            routes: vec![(ip4("198.19.64.0"), 18, ip4("198.19.0.1"))],
            mtu: Some(1500),
            reservations: vec![(MacAddr([2, 0, 0, 0, 0xaa, 1]), ip4("198.19.0.10"))],
            search: vec!["branch.example".into()],
            ntp: vec![ip4("198.19.0.1")],
            extra_options: vec![(252, b"http".to_vec())],
            conflict_check: true,
        }
    );
    assert_eq!(subnet.netmask(), ip4("255.255.255.0"));
    assert_eq!(subnet.broadcast(), ip4("198.19.0.255"));
    assert_eq!(
        c.arp,
        Some(ArpConfig {
            respond: vec![ip4("198.19.0.254")],
            mac: Some(MacAddr([2, 0, 0, 0, 0, 0xfe])),
            suppress: true,
            binding_timeout: Duration::from_secs(300),
            suppress_nd: true,
        })
    );
    assert_eq!(
        c.hooks,
        HooksConfig {
            up: vec!["/usr/lib/tapbridge/scripts/nat-up.sh".into()],
            down: vec!["/usr/lib/tapbridge/scripts/nat-down.sh".into()],
            peer_up: vec!["/etc/tapbridge/peer-up.sh".into()],
            peer_down: vec!["/usr/lib/tapbridge/scripts/peer-down.sh".into()],
        }
    );
    assert_eq!(
        c.control,
        ControlConfig {
            socket: "/run/tapbridge/site-a.sock".into(),
            group: Some("tapbridge".into()),
            admin_group: Some("tapbridge-admin".into()),
        }
    );
    assert_eq!(
        c.metrics,
        Some(MetricsConfig {
            listen: "127.0.0.1:9477".parse().unwrap()
        })
    );
}

#[test]
fn minimal_config_gets_the_defaults() {
    let c = parse(MINIMAL).expect("minimal config");
    assert_eq!(c.interface.name, "tb-site-a");
    assert_eq!(c.interface.mtu, 1500);
    assert_eq!(c.interface.mac, None);
    assert!(c.interface.addresses.is_empty() && c.interface.routes.is_empty());
    assert_eq!(c.interface.bridge, None);
    assert_eq!(c.tunnel.listen, "0.0.0.0:51901".parse().unwrap());
    assert_eq!(c.tunnel.wan_mtu, WanMtu::Auto);
    assert_eq!(c.tunnel.keepalive, Duration::from_secs(10));
    assert_eq!(c.tunnel.rekey_after, Duration::from_secs(120));
    assert!(!c.tunnel.hub);
    assert_eq!(c.tunnel.transport, Transport::Udp);
    assert_eq!(
        c.peers,
        vec![PeerConfig {
            name: "hq".into(),
            endpoints: Vec::new(),
            psk_file: None,
            file: FILE.into(),
            policy: PeerPolicy::default(),
        }]
    );
    assert_eq!(c.dhcp, None);
    assert_eq!(c.arp, None);
    assert_eq!(c.hooks, HooksConfig::default());
    assert_eq!(
        c.control,
        ControlConfig {
            socket: "/run/tapbridge/site-a.sock".into(),
            group: None,
            admin_group: None,
        }
    );
    assert_eq!(c.metrics, None);
}

#[test]
fn every_transport_is_accepted() {
    for (word, mode) in [
        ("udp", Transport::Udp),
        ("tcp", Transport::Tcp),
        ("auto", Transport::Auto),
    ] {
        let text = MINIMAL.replace("[tunnel]\n", &format!("[tunnel]\ntransport = \"{word}\"\n"));
        assert_ne!(text, MINIMAL);
        assert_eq!(parse(&text).expect(word).tunnel.transport, mode);
    }
}

#[test]
fn conflict_check_can_be_turned_off() {
    // dhcp.first_lease: "0s" is a value (no cap), the default 5 minutes.
    let no_cap = dhcp("[dhcp]\n", "[dhcp]\nfirst_lease = \"0s\"\n");
    let d = parse(&no_cap).expect("config").dhcp.expect("dhcp");
    assert_eq!(d.plan.settings().first_lease, Duration::ZERO);
    let d = parse(&dhcp("[dhcp]\n", "[dhcp]\n"))
        .expect("config")
        .dhcp
        .expect("dhcp");
    assert_eq!(d.plan.settings().first_lease, Duration::from_secs(300));
    let off = dhcp("[dhcp]\n", "[dhcp]\nconflict_check = false\n");
    assert!(
        !parse(&off)
            .expect("config")
            .dhcp
            .expect("dhcp")
            .plan
            .settings()
            .conflict_check
    );
    let on = dhcp("[dhcp]\n", "[dhcp]\nconflict_check = true\n");
    assert!(
        parse(&on)
            .expect("config")
            .dhcp
            .expect("dhcp")
            .plan
            .settings()
            .conflict_check
    );
}

#[test]
fn section_defaults() {
    let c = parse(&with(
        "[dhcp]\nserver_address = \"198.19.0.1\"\npool = \"198.19.0.100-198.19.0.199\"\nsubnet = \"198.19.0.0/24\"\n[arp]\n[metrics]\n",
    ))
    .expect("config");
    let dhcp = c.dhcp.expect("dhcp on");
    assert_eq!(
        dhcp.lease_file,
        Path::new("/var/lib/tapbridge/site-a.leases")
    );
    let d = dhcp.plan.settings();
    assert_eq!(d.lease_time, Duration::from_secs(12 * 3600));
    assert_eq!((d.router, d.mtu, d.domain.as_deref()), (None, None, None));
    assert!(d.dns.is_empty() && d.routes.is_empty() && d.reservations.is_empty());
    assert!(
        d.conflict_check,
        "the conflict check is on unless turned off"
    );
    let a = c.arp.expect("arp section");
    assert_eq!((a.respond.len(), a.mac, a.suppress), (0, None, true));
    assert_eq!(a.binding_timeout, Duration::from_secs(300));
    assert!(!a.suppress_nd, "ND suppression is off unless asked for");
    assert_eq!(
        c.metrics,
        Some(MetricsConfig {
            listen: "127.0.0.1:9477".parse().unwrap()
        })
    );
}

#[test]
fn guard_defaults_follow_dhcp_enabled() {
    let off = parse(MINIMAL).expect("minimal config").guard;
    assert_eq!(off, GuardConfig::defaults(false));
    assert_eq!(
        (
            off.storm_pps,
            off.loop_detect,
            off.dhcp_guard,
            off.ra_guard,
            off.bpdu
        ),
        (2000, true, false, false, BpduPolicy::Forward)
    );
    let on = parse(&with(
        "[dhcp]\nserver_address = \"198.19.0.1\"\npool = \"198.19.0.100-198.19.0.199\"\nsubnet = \"198.19.0.0/24\"\n",
    ))
    .expect("config")
    .guard;
    assert_eq!((on.dhcp_guard, on.ra_guard), (true, true));
    let disabled = parse(&with("[dhcp]\nenabled = false\n")).expect("config");
    assert_eq!(
        (disabled.guard.dhcp_guard, disabled.guard.ra_guard),
        (false, false)
    );
}

#[test]
fn guard_section_as_in_the_spec() {
    let g = parse(&with(
        "[guard]\nstorm_pps = 0\nloop_detect = false\ndhcp_guard = true\nra_guard = true\nbpdu = \"drop\"\n",
    ))
    .expect("config")
    .guard;
    assert_eq!(
        g,
        GuardConfig {
            storm_pps: 0,
            loop_detect: false,
            dhcp_guard: true,
            ra_guard: true,
            bpdu: BpduPolicy::Drop,
        }
    );
    // Explicit values win over the dhcp.enabled default.
    let dhcp = "[dhcp]\nserver_address = \"198.19.0.1\"\npool = \"198.19.0.100-198.19.0.199\"\nsubnet = \"198.19.0.0/24\"\n";
    let g = parse(&with(&format!(
        "{dhcp}[guard]\nra_guard = false\nbpdu = \"forward\"\n"
    )))
    .expect("config")
    .guard;
    assert_eq!(
        (g.dhcp_guard, g.ra_guard, g.bpdu),
        (true, false, BpduPolicy::Forward)
    );
}

#[test]
fn disabled_dhcp_is_none_and_not_validated() {
    let c = parse(&with("[dhcp]\nenabled = false\npool = \"junk\"\n")).expect("config");
    assert_eq!(c.dhcp, None);
}

/// Every peer with its own key file: `tunnel.psk_file` is optional; with
/// both, a peer's own file wins and the others use the link's.
#[test]
fn per_peer_key_files() {
    let c = parse(
        "[interface]\n[tunnel]\n[[peer]]\nname = \"b\"\npsk_file = \"b.psk\"\n[[peer]]\nname = \"c\"\npsk_file = \"/k/c.psk\"\n",
    )
    .expect("config");
    assert_eq!(c.tunnel.psk_file, None);
    let files: Vec<_> = (0..2)
        .map(|i| c.key_file(i).expect("key").clone())
        .collect();
    assert_eq!(files[0].path, Path::new("/etc/tapbridge/b.psk"));
    assert_eq!((files[0].line, files[0].column), (5, 12));
    assert_eq!(files[0].key, "peer.psk_file");
    assert_eq!(files[1].path, Path::new("/k/c.psk"));
    let c = parse(
        "[interface]\n[tunnel]\npsk_file = \"link.psk\"\n[[peer]]\nname = \"b\"\npsk_file = \"b.psk\"\n[[peer]]\nname = \"c\"\n",
    )
    .expect("config");
    assert_eq!(
        c.key_file(0).map(|k| k.path.as_path()),
        Some(Path::new("/etc/tapbridge/b.psk"))
    );
    let link = c.key_file(1).expect("key");
    assert_eq!(link.path, Path::new("/etc/tapbridge/link.psk"));
    assert_eq!(link.key, "tunnel.psk_file");
    // A missing key file is reported at the key that names it.
    let err = message(&c.peer_keys().expect_err("no such files"));
    assert!(
        err.starts_with("/etc/tapbridge/site-a.toml:6:12: peer.psk_file: cannot read PSK file /etc/tapbridge/b.psk"),
        "{err}"
    );
}

#[test]
fn ipv6_listen_and_endpoints() {
    let c = parse(
        "[interface]\naddresses = [\"2001:2::1/64\"]\n[tunnel]\nlisten = \"[::]:51901\"\npsk_file = \"k\"\n[[peer]]\nname = \"b\"\nendpoint = \"[2001:2::2]:51901\"\n",
    )
    .expect("config");
    assert_eq!(c.tunnel.listen, "[::]:51901".parse().unwrap());
    assert_eq!(
        c.peers[0].endpoints,
        vec![PeerEndpoint::Addr("[2001:2::2]:51901".parse().unwrap())]
    );
    // Relative paths are relative to the config file's directory.
    assert_eq!(
        c.tunnel.psk_file.as_ref().map(|k| k.path.as_path()),
        Some(Path::new("/etc/tapbridge/k"))
    );
}

#[test]
fn durations_in_combination() {
    let c = parse(
        "[interface]\n[tunnel]\npsk_file = \"k\"\nkeepalive = \"500ms\"\nrekey_after = \"1h30m\"\n[[peer]]\nname = \"b\"\n",
    )
    .expect("config");
    assert_eq!(c.tunnel.keepalive, Duration::from_millis(500));
    assert_eq!(c.tunnel.rekey_after, Duration::from_secs(5400));
    assert_eq!(c.tunnel.workers, 1, "one worker unless asked");
}

#[test]
fn workers_are_read() {
    let c = parse("[interface]\n[tunnel]\npsk_file = \"k\"\nworkers = 4\n[[peer]]\nname = \"b\"\n")
        .expect("config");
    assert_eq!(c.tunnel.workers, 4);
}

// ---- the validation rules: one row per rejected config ----

#[test]
fn syntax_error() {
    let err = message(&parse("[interface\n").expect_err("accepted"));
    assert!(err.starts_with(&format!("{FILE}:1:11: ")), "{err}");
}

/// How the text of a [`REJECTED`] row is made.
enum Text {
    /// Exactly this.
    Raw(&'static str),
    /// [`with`]: `MINIMAL` plus this, which therefore starts on line 6.
    With(&'static str),
    /// [`dhcp`]: the valid `[dhcp]` section with the first `.0` replaced by `.1`.
    Dhcp(&'static str, &'static str),
    /// The valid `[dhcp]` section followed by this.
    DhcpPlus(&'static str),
    /// The valid `[dhcp]` section followed by these `(mac, ip)` reservations.
    Reservations(&'static [(&'static str, &'static str)]),
    /// [`iface_with_dhcp`]: interface address, then the valid `[dhcp]` section.
    IfaceDhcp(&'static str),
    /// Built by a function, for the odd text the others cannot express.
    Built(fn() -> String),
}

impl Text {
    fn build(&self) -> String {
        match self {
            Text::Raw(t) => (*t).to_owned(),
            Text::With(extra) => with(extra),
            Text::Dhcp(replace, by) => dhcp(replace, by),
            Text::DhcpPlus(extra) => format!("{}{extra}", dhcp("", "")),
            Text::Reservations(list) => {
                let mut t = dhcp("", "");
                for (mac, ip) in *list {
                    t.push_str(&format!(
                        "[[dhcp.reservation]]\nmac = \"{mac}\"\nip = \"{ip}\"\n"
                    ));
                }
                t
            }
            Text::IfaceDhcp(addr) => iface_with_dhcp(addr),
            Text::Built(f) => f(),
        }
    }
}

/// A valid `[dhcp]` section starting at line 6, with `replace` replaced by `by`.
fn dhcp(replace: &str, by: &str) -> String {
    let base = "[dhcp]\nserver_address = \"198.19.0.254\"\npool = \"198.19.0.100-198.19.0.199\"\nsubnet = \"198.19.0.0/24\"\n";
    assert!(base.contains(replace), "test bug");
    with(&base.replacen(replace, by, 1))
}

/// An interface with address `addr` and a valid `[dhcp]` section from line 7.
fn iface_with_dhcp(addr: &str) -> String {
    format!(
        "[interface]\naddresses = [\"{addr}\"]\n[tunnel]\npsk_file = \"k\"\n[[peer]]\nname = \"hq\"\n\
         [dhcp]\nserver_address = \"198.19.0.254\"\npool = \"198.19.0.100-198.19.0.199\"\nsubnet = \"198.19.0.0/24\"\n"
    )
}

/// `interface.mtu = 1400` and `dhcp.mtu = 1500`.
fn dhcp_mtu_above_interface_mtu() -> String {
    format!(
        "[interface]\nmtu = 1400\n{}",
        &dhcp("[dhcp]\n", "[dhcp]\nmtu = 1500\n")["[interface]\n".len()..]
    )
}

/// A config that must be rejected: (name, text, line, column, key, a fragment
/// of the sentence).
type Rejected = (&'static str, Text, usize, usize, &'static str, &'static str);

use Text::{Built, Dhcp, DhcpPlus, IfaceDhcp, Raw, Reservations, With};

/// Every rejection rule, with the position and key the error must name.
#[rustfmt::skip]
const REJECTED: &[Rejected] = &[
    // unknown keys
    ("unknown key", Raw("[interface]\nnmae = \"x\"\n"), 2, 1, "interface.nmae", "unknown field `nmae`"),
    ("unknown section", With("[tunnel2]\n"), 6, 2, "tunnel2", "unknown field"),
    ("unknown peer key", With("endpont = \"1.2.3.4:5\"\n"), 6, 1, "peer.endpont", "unknown field"),
    (
        "unknown reservation key",
        With("[dhcp]\n[[dhcp.reservation]]\nmac = \"02:00:00:00:00:01\"\nipp = \"x\"\n"),
        9, 1, "dhcp.reservation.ipp", "unknown field",
    ),
    // wrong types
    ("table for a list of peers", Raw("[interface]\n[tunnel]\npsk_file = \"k\"\n[peer]\nname = \"b\"\n"), 4, 1, "peer", "write [[peer]] (double brackets) for each peer, not [peer]"),
    ("key set twice", Raw("[interface]\nmtu = 1500\nmtu = 1400\n"), 3, 1, "interface.mtu", "interface.mtu is set twice; keep one"),
    ("duration as a number", Raw("[interface]\n[tunnel]\npsk_file = \"k\"\nkeepalive = 10\n[[peer]]\nname = \"b\"\n"), 4, 13, "tunnel.keepalive", "must be a duration in quotes, like \"90s\" or \"12h\", not the number 10"),
    ("IPv6 endpoint without brackets", With("endpoint = \"2001:2::2:51901\"\n"), 6, 12, "peer.endpoint", "has no brackets around its IPv6 address; write \"[2001:2::2]:51901\""),
    ("string mtu", Raw("[interface]\nmtu = \"1500\"\n"), 2, 7, "interface.mtu", "must be an integer (a number without quotes), not the string \"1500\""),
    ("integer endpoint", With("endpoint = 5\n"), 6, 12, "peer.endpoint", "or a list of them, not a number"),
    ("string bool", With("[arp]\nsuppress = \"yes\"\n"), 7, 12, "arp.suppress", "must be true or false (without quotes), not the string \"yes\""),
    // required sections and keys
    (
        "no [interface]",
        Raw("[tunnel]\npsk_file = \"k\"\n[[peer]]\nname = \"a\"\n"),
        1, 1, "interface", "[interface] is missing",
    ),
    ("no [tunnel]", Raw("[interface]\n[[peer]]\nname = \"a\"\n"), 1, 1, "tunnel", "[tunnel] is missing"),
    ("no [[peer]]", Raw("[interface]\n[tunnel]\npsk_file = \"k\"\n"), 1, 1, "peer", "at least one [[peer]]"),
    (
        "empty peer list",
        Raw("peer = []\n[interface]\n[tunnel]\npsk_file = \"k\"\n"),
        1, 8, "peer", "at least one [[peer]]",
    ),
    (
        "no psk_file",
        Raw("[interface]\n\n[tunnel]\n[[peer]]\nname = \"a\"\n"),
        3, 1, "tunnel.psk_file", "missing",
    ),
    (
        "empty psk_file",
        Raw("[interface]\n[tunnel]\npsk_file = \"\"\n[[peer]]\nname = \"a\"\n"),
        3, 12, "tunnel.psk_file", "empty",
    ),
    (
        "a peer without any key",
        Raw("[interface]\n[tunnel]\n[[peer]]\nname = \"a\"\npsk_file = \"ka\"\n[[peer]]\nname = \"b\"\n"),
        2, 1, "tunnel.psk_file", "peer \"b\" has no psk_file of its own",
    ),
    (
        "empty peer psk_file",
        Raw("[interface]\n[tunnel]\n[[peer]]\nname = \"a\"\npsk_file = \"\"\n"),
        5, 12, "peer.psk_file", "empty",
    ),
    (
        "peer name longer than the handshake carries",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\n[[peer]]\nname = \"abcdefghijabcdefghijabcdefghijab\"\n"),
        5, 8, "peer.name", "longer than 31 bytes",
    ),
    (
        "peer named like this link",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\n[[peer]]\nname = \"site-a\"\n"),
        5, 8, "peer.name", "this site's own name",
    ),
    (
        "peer named like this site's tunnel.name",
        Raw("[interface]\n[tunnel]\nname = \"hq-1\"\npsk_file = \"k\"\n[[peer]]\nname = \"hq-1\"\n"),
        6, 8, "peer.name", "this site's own name",
    ),
    (
        "tunnel.name longer than the handshake carries",
        Raw("[interface]\n[tunnel]\nname = \"abcdefghijabcdefghijabcdefghijab\"\n"),
        3, 8, "tunnel.name", "longer than 31 bytes",
    ),
    (
        "tunnel.name with a space",
        Raw("[interface]\n[tunnel]\nname = \"h q\"\n"),
        3, 8, "tunnel.name", "",
    ),
    (
        "empty tunnel.name",
        Raw("[interface]\n[tunnel]\nname = \"\"\n"),
        3, 8, "tunnel.name", "",
    ),
    // interface name
    (
        "long interface name",
        Raw("[interface]\nname = \"a-very-long-name0\"\n"),
        2, 8, "interface.name", "longer than 15 bytes",
    ),
    ("space in interface name", Raw("[interface]\nname = \"tb 0\"\n"), 2, 8, "interface.name", "contains ' '"),
    // MTUs
    ("small mtu", Raw("[interface]\nmtu = 575\n"), 2, 7, "interface.mtu", "576..=9000"),
    ("large mtu", Raw("[interface]\nmtu = 9001\n"), 2, 7, "interface.mtu", "576..=9000"),
    (
        "negative wan_mtu",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\nwan_mtu = -1\n"),
        4, 11, "tunnel.wan_mtu", "576..=9000",
    ),
    (
        "suppress_nd not a bool",
        With("[arp]\nsuppress_nd = 1\n"),
        7, 15, "arp.suppress_nd", "must be true or false (without quotes), not the number 1",
    ),
    (
        "transport unknown",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\ntransport = \"quic\"\n"),
        4, 13, "tunnel.transport", "none of",
    ),
    (
        "wan_mtu word other than auto",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\nwan_mtu = \"big\"\n"),
        4, 11, "tunnel.wan_mtu", "neither \"auto\" nor a number",
    ),
    (
        "dhcp option set by the responder",
        With("[dhcp]\nenabled = true\nsubnet = \"198.19.0.0/24\"\npool = \"198.19.0.100-198.19.0.199\"\nserver_address = \"198.19.0.1\"\n[[dhcp.option]]\ncode = 6\ntext = \"x\"\n"),
        12, 8, "dhcp.option.code", "set by the responder itself (dhcp.dns)",
    ),
    (
        "dhcp option with bad hex",
        With("[dhcp]\nenabled = true\nsubnet = \"198.19.0.0/24\"\npool = \"198.19.0.100-198.19.0.199\"\nserver_address = \"198.19.0.1\"\n[[dhcp.option]]\ncode = 252\nhex = \"abc\"\n"),
        13, 7, "dhcp.option.hex", "odd number of hex digits",
    ),
    (
        "dhcp option with both hex and text",
        With("[dhcp]\nenabled = true\nsubnet = \"198.19.0.0/24\"\npool = \"198.19.0.100-198.19.0.199\"\nserver_address = \"198.19.0.1\"\n[[dhcp.option]]\ncode = 252\nhex = \"ab\"\ntext = \"x\"\n"),
        11, 1, "dhcp.option", "exactly one of",
    ),
    (
        "dhcp search that is no domain",
        With("[dhcp]\nenabled = true\nsubnet = \"198.19.0.0/24\"\npool = \"198.19.0.100-198.19.0.199\"\nserver_address = \"198.19.0.1\"\nsearch = [\"bad domain\"]\n"),
        11, 11, "dhcp.search", "not a domain name",
    ),
    (
        "small dhcp mtu",
        With("[dhcp]\nenabled = true\nsubnet = \"198.19.0.0/24\"\npool = \"198.19.0.100-198.19.0.199\"\nserver_address = \"198.19.0.1\"\nmtu = 100\n"),
        11, 7, "dhcp.mtu", "576..=9000",
    ),
    // MACs
    ("multicast mac", Raw("[interface]\nmac = \"01:00:5e:00:00:01\"\n"), 2, 7, "interface.mac", "multicast"),
    ("short mac", Raw("[interface]\nmac = \"02:00:00:00:01\"\n"), 2, 7, "interface.mac", "not a MAC address"),
    ("broadcast arp mac", With("[arp]\nmac = \"ff:ff:ff:ff:ff:ff\"\n"), 7, 7, "arp.mac", "multicast"),
    // addresses and routes
    (
        "address without prefix",
        Raw("[interface]\naddresses = [\"198.19.0.1\"]\n"),
        2, 14, "interface.addresses", "prefix length",
    ),
    (
        "address twice",
        Raw("[interface]\naddresses = [\"198.19.0.1/24\", \"198.19.0.1/16\"]\n"),
        2, 31, "interface.addresses", "listed twice",
    ),
    (
        "route with host bits",
        Raw("[interface]\nroutes = [\"198.19.64.1/18\"]\n"),
        2, 11, "interface.routes", "host bits set",
    ),
    (
        "route via other family",
        Raw("[interface]\nroutes = [\"198.19.64.0/18 via 2001:2::1\"]\n"),
        2, 11, "interface.routes", "same address family",
    ),
    (
        "route syntax",
        Raw("[interface]\nroutes = [\"198.19.64.0/18 through 198.19.0.1\"]\n"),
        2, 11, "interface.routes", "not a route",
    ),
    ("bridge name", Raw("[interface]\nbridge = \"bridge/0\"\n"), 2, 10, "interface.bridge", "contains '/'"),
    // tunnel values
    (
        "listen host name",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\nlisten = \"localhost:1\"\n"),
        4, 10, "tunnel.listen", "not an IP address and port",
    ),
    (
        "zero keepalive",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\nkeepalive = \"0s\"\n"),
        4, 13, "tunnel.keepalive", "longer than zero",
    ),
    (
        "rekey_after syntax",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\nrekey_after = \"2 minutes\"\n"),
        4, 15, "tunnel.rekey_after", "not a duration",
    ),
    (
        "no workers",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\nworkers = 0\n"),
        4, 11, "tunnel.workers", "outside the allowed range 1..=16",
    ),
    (
        "too many workers",
        Raw("[interface]\n[tunnel]\npsk_file = \"k\"\nworkers = 17\n"),
        4, 11, "tunnel.workers", "outside the allowed range",
    ),
    // peers
    ("peer name twice", With("[[peer]]\nname = \"hq\"\n"), 7, 8, "peer.name", "used twice"),
    (
        "peer without name",
        With("[[peer]]\nendpoint = \"198.18.0.2:51901\"\n"),
        6, 1, "peer.name", "missing",
    ),
    ("endpoint bad host name", With("endpoint = \"gw_1.example:51901\"\n"), 6, 12, "peer.endpoint", "not a valid host name"),
    ("endpoint name without port", With("endpoint = \"gw.example\"\n"), 6, 12, "peer.endpoint", "no port"),
    ("endpoint name port 0", With("endpoint = \"gw.example:0\"\n"), 6, 12, "peer.endpoint", "port 0"),
    ("endpoint empty array", With("endpoint = []\n"), 6, 12, "peer.endpoint", "1 to 8 addresses, not 0"),
    (
        "endpoint array of nine",
        With("endpoint = [\"a.test:1\", \"b.test:1\", \"c.test:1\", \"d.test:1\", \"e.test:1\", \"f.test:1\", \"g.test:1\", \"h.test:1\", \"i.test:1\"]\n"),
        6, 12, "peer.endpoint", "1 to 8 addresses, not 9",
    ),
    ("endpoint array non-string", With("endpoint = [\"198.18.0.2:1\", 5]\n"), 6, 12, "peer.endpoint", "element 2 (integer) is not a string"),
    ("endpoint array nested", With("endpoint = [[\"198.18.0.2:1\"]]\n"), 6, 12, "peer.endpoint", "element 1 (array) is not a string"),
    ("endpoint array duplicate", With("endpoint = [\"198.18.0.2:1\", \"198.18.0.3:1\", \"198.18.0.2:1\"]\n"), 6, 12, "peer.endpoint", "element 3: 198.18.0.2:1 is listed twice"),
    ("endpoint array duplicate name", With("endpoint = [\"GW.example:1\", \"gw.example.:1\"]\n"), 6, 12, "peer.endpoint", "element 2: gw.example:1 is listed twice"),
    ("endpoint array bad element", With("endpoint = [\"198.18.0.2:1\", \"198.18.0.3:0\"]\n"), 6, 12, "peer.endpoint", "element 2: 198.18.0.3:0 has port 0"),
    ("endpoint array bad name", With("endpoint = [\"gw_1.example:1\"]\n"), 6, 12, "peer.endpoint", "element 1: \"gw_1.example\" is not a valid host name"),
    ("endpoint table", With("endpoint = { a = 1 }\n"), 6, 12, "peer.endpoint", "not a table"),
    ("endpoint port 0", With("endpoint = \"198.18.0.2:0\"\n"), 6, 12, "peer.endpoint", "port 0"),
    ("empty peer name", With("[[peer]]\nname = \"\"\n"), 7, 8, "peer.name", "empty"),
    // DHCP pool and subnet
    ("no pool", Dhcp("pool = \"198.19.0.100-198.19.0.199\"\n", ""), 6, 1, "dhcp.pool", "missing"),
    ("no subnet", Dhcp("subnet = \"198.19.0.0/24\"\n", ""), 6, 1, "dhcp.subnet", "missing"),
    (
        "pool outside subnet",
        Dhcp("198.19.0.199\"", "198.19.1.10\""),
        8, 8, "dhcp.pool", "198.19.1.10 is outside subnet 198.19.0.0/24",
    ),
    (
        "pool reversed",
        Dhcp("198.19.0.100-198.19.0.199", "198.19.0.199-198.19.0.100"),
        8, 8, "dhcp.pool", "after",
    ),
    ("pool from network address", Dhcp("198.19.0.100-", "198.19.0.0-"), 8, 8, "dhcp.pool", "network or broadcast"),
    ("subnet with host bits", Dhcp("198.19.0.0/24", "198.19.0.1/24"), 9, 10, "dhcp.subnet", "host bits"),
    ("subnet /31", Dhcp("198.19.0.0/24", "198.19.0.0/31"), 9, 10, "dhcp.subnet", "too small"),
    ("subnet IPv6", Dhcp("198.19.0.0/24", "2001:2::/64"), 9, 10, "dhcp.subnet", "not an IPv4 network"),
    // DHCP server address
    (
        "no server_address",
        Dhcp("server_address = \"198.19.0.254\"\n", ""),
        6, 1, "dhcp.server_address", "missing",
    ),
    (
        "server_address outside subnet",
        Dhcp("198.19.0.254", "198.19.1.254"),
        7, 18, "dhcp.server_address", "outside subnet",
    ),
    (
        "server_address in pool",
        Dhcp("198.19.0.254", "198.19.0.150"),
        7, 18, "dhcp.server_address", "inside the pool",
    ),
    // DHCP options
    ("router syntax", Dhcp("[dhcp]\n", "[dhcp]\nrouter = \"x\"\n"), 7, 10, "dhcp.router", "not an IPv4 address"),
    (
        "IPv6 dns",
        Dhcp("[dhcp]\n", "[dhcp]\ndns = [\"198.19.0.1\", \"::1\"]\n"),
        7, 22, "dhcp.dns", "not an IPv4 address",
    ),
    ("domain syntax", Dhcp("[dhcp]\n", "[dhcp]\ndomain = \"a..b\"\n"), 7, 10, "dhcp.domain", "not a domain name"),
    (
        "short lease_time",
        Dhcp("[dhcp]\n", "[dhcp]\nlease_time = \"500ms\"\n"),
        7, 14, "dhcp.lease_time", "at least 10s",
    ),
    (
        "lease_time under the responder's minimum",
        Dhcp("[dhcp]\n", "[dhcp]\nlease_time = \"9s\"\n"),
        7, 14, "dhcp.lease_time", "at least 10s",
    ),
    (
        "router outside the subnet",
        Dhcp("[dhcp]\n", "[dhcp]\nrouter = \"198.18.0.1\"\n"),
        7, 10, "dhcp.router", "outside subnet 198.19.0.0/24",
    ),
    (
        "option 121 without gateway",
        Dhcp("[dhcp]\n", "[dhcp]\nroutes = [\"198.19.64.0/18\"]\n"),
        7, 11, "dhcp.routes", "needs a gateway",
    ),
    // DHCP avoids addresses in use
    (
        "pool holds the interface address",
        IfaceDhcp("198.19.0.150/24"),
        9, 8, "dhcp.pool", "contains 198.19.0.150, an address of interface tb-site-a",
    ),
    (
        "server_address is the interface address",
        IfaceDhcp("198.19.0.254/24"),
        8, 18, "dhcp.server_address", "an address of its own",
    ),
    (
        "router in pool",
        Dhcp("[dhcp]\n", "[dhcp]\nrouter = \"198.19.0.100\"\n"),
        7, 10, "dhcp.router", "inside the pool",
    ),
    (
        "router reserved",
        DhcpPlus("router = \"198.19.0.1\"\n[[dhcp.reservation]]\nmac = \"02:00:00:00:aa:01\"\nip = \"198.19.0.1\"\n"),
        13, 6, "dhcp.reservation.ip", "already used",
    ),
    (
        "dhcp mtu above interface mtu",
        Built(dhcp_mtu_above_interface_mtu),
        8, 7, "dhcp.mtu", "larger than interface.mtu 1400",
    ),
    // DHCP reservations
    (
        "mac reserved twice",
        Reservations(&[("02:00:00:00:aa:01", "198.19.0.10"), ("02:00:00:00:aa:01", "198.19.0.11")]),
        14, 7, "dhcp.reservation.mac", "reserved twice",
    ),
    (
        "ip reserved twice",
        Reservations(&[("02:00:00:00:aa:01", "198.19.0.10"), ("02:00:00:00:aa:02", "198.19.0.10")]),
        15, 6, "dhcp.reservation.ip", "reserved twice",
    ),
    (
        "reservation outside subnet",
        Reservations(&[("02:00:00:00:aa:01", "198.19.1.10")]),
        12, 6, "dhcp.reservation.ip", "outside subnet",
    ),
    (
        "reservation of the server address",
        Reservations(&[("02:00:00:00:aa:01", "198.19.0.254")]),
        12, 6, "dhcp.reservation.ip", "server address",
    ),
    (
        "multicast reservation",
        Reservations(&[("03:00:00:00:aa:01", "198.19.0.10")]),
        11, 7, "dhcp.reservation.mac", "multicast",
    ),
    (
        "reservation without ip",
        DhcpPlus("[[dhcp.reservation]]\nmac = \"02:00:00:00:aa:01\"\n"),
        10, 1, "dhcp.reservation.ip", "missing",
    ),
    // ARP
    (
        "respond twice",
        With("[arp]\nrespond = [\"198.19.0.254\", \"198.19.0.254\"]\n"),
        7, 28, "arp.respond", "listed twice",
    ),
    ("respond multicast", With("[arp]\nrespond = [\"224.0.0.1\"]\n"), 7, 12, "arp.respond", "not a host address"),
    (
        "zero binding_timeout",
        With("[arp]\nbinding_timeout = \"0m\"\n"),
        7, 19, "arp.binding_timeout", "longer than zero",
    ),
    // hooks, control, metrics
    ("empty hook", With("[hooks]\nup = [\"\"]\n"), 7, 7, "hooks.up", "empty"),
    ("group syntax", With("[control]\ngroup = \"a b\"\n"), 7, 9, "control.group", "not a group name"),
    ("admin group syntax", With("[control]\nadmin_group = \"a:b\"\n"), 7, 15, "control.admin_group", "not a group name"),
    ("metrics without address", With("[metrics]\nlisten = \"9477\"\n"), 7, 10, "metrics.listen", "not an IP address"),
    // guard
    ("unknown guard key", With("[guard]\nstorm = 5\n"), 7, 1, "guard.storm", "unknown field"),
    ("negative storm_pps", With("[guard]\nstorm_pps = -1\n"), 7, 13, "guard.storm_pps", "outside the allowed range"),
    ("huge storm_pps", With("[guard]\nstorm_pps = 10000001\n"), 7, 13, "guard.storm_pps", "outside the allowed range"),
    ("string storm_pps", With("[guard]\nstorm_pps = \"2000\"\n"), 7, 13, "guard.storm_pps", "must be an integer"),
    ("bpdu block", With("[guard]\nbpdu = \"block\"\n"), 7, 8, "guard.bpdu", "neither"),
    ("string loop_detect", With("[guard]\nloop_detect = \"yes\"\n"), 7, 15, "guard.loop_detect", "must be true or false"),
    // [ha]
    ("unknown ha key", With("[ha]\nstart = \"active\"\n"), 7, 1, "ha.start", "unknown field"),
    ("ha role misspelt", With("[ha]\nstart_as = \"master\"\n"), 7, 12, "ha.start_as", "\"master\" is not a role"),
    ("ha partner without port", With("[ha]\npartner = \"198.18.0.6\"\npartner_psk_file = \"p\"\n"), 7, 11, "ha.partner", ""),
    ("ha partner name", With("[ha]\npartner = \"gw2.example:51903\"\npartner_psk_file = \"p\"\n"), 7, 11, "ha.partner", "not a host name"),
    ("ha partner without key", With("[ha]\npartner = \"198.18.0.6:51903\"\n"), 6, 1, "ha.partner_psk_file", "needs its own key"),
    ("ha key is the tunnel's", With("[ha]\npartner = \"198.18.0.6:51903\"\npartner_psk_file = \"/etc/tapbridge/site-a.psk\"\n"), 8, 20, "ha.partner_psk_file", "a key of its own"),
    ("ha partner on the tunnel's port", With("[ha]\npartner = \"198.18.0.6:51901\"\npartner_psk_file = \"p\"\n"), 7, 11, "ha.partner", "a port of its own"),
    ("ha announce as a string", With("[ha]\nannounce = \"yes\"\n"), 7, 12, "ha.announce", "must be true or false"),
];

/// How a rejection differs from the one a table row expects.
#[derive(Debug, thiserror::Error)]
enum Mismatch {
    #[error("config accepted")]
    Accepted,
    #[error("{msg:?} does not start with {prefix:?}")]
    Place { msg: String, prefix: String },
    #[error("{msg:?} does not mention {fragment:?}")]
    Fragment { msg: String, fragment: String },
    #[error("{msg:?} is not one line")]
    Lines { msg: String },
    #[error("fields say {found}, not {line}:{col} {key:?}")]
    Fields {
        found: String,
        line: usize,
        col: usize,
        key: String,
    },
    #[error("unexpected variant {0:?}")]
    Variant(ConfigError),
}

/// Why `text` is not rejected at `line:col` for `key` with a one-line
/// sentence that mentions `fragment`; `Ok` if it is.
fn check_rejected(
    text: &str,
    line: usize,
    col: usize,
    key: &str,
    fragment: &str,
) -> Result<(), Mismatch> {
    let err = match parse(text) {
        Ok(_) => return Err(Mismatch::Accepted),
        Err(e) => e,
    };
    let msg = message(&err);
    let prefix = format!("{FILE}:{line}:{col}: {key}: ");
    if !msg.starts_with(&prefix) {
        return Err(Mismatch::Place { msg, prefix });
    }
    if !msg.contains(fragment) {
        let fragment = fragment.to_owned();
        return Err(Mismatch::Fragment { msg, fragment });
    }
    if msg.contains('\n') {
        return Err(Mismatch::Lines { msg });
    }
    match err {
        ConfigError::Invalid {
            line: l,
            column: c,
            key: k,
            ..
        } if (l, c, k.as_str()) == (line, col, key) => Ok(()),
        ConfigError::Invalid {
            line: l,
            column: c,
            key: k,
            ..
        } => Err(Mismatch::Fields {
            found: format!("{l}:{c} {k:?}"),
            line,
            col,
            key: key.to_owned(),
        }),
        other => Err(Mismatch::Variant(other)),
    }
}

#[test]
fn ha_section_defaults_and_values() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!((c.ha.as_ref(), c.start_role()), (None, Role::Active));
    let c = parse(&with("[ha]\n")).expect("valid");
    let ha = c.ha.clone().expect("[ha]");
    assert_eq!(
        (ha.start_as, ha.partner, ha.announce),
        (Role::Standby, None, true)
    );
    assert_eq!(c.start_role(), Role::Standby);
    let c = parse(&with(
        "[ha]\nstart_as = \"active\"\npartner = \"198.18.0.6:51903\"\n\
         partner_psk_file = \"site-a-partner.psk\"\nannounce = false\n",
    ))
    .expect("valid");
    let ha = c.ha.expect("[ha]");
    assert_eq!(ha.start_as, Role::Active);
    assert_eq!(ha.partner, Some("198.18.0.6:51903".parse().expect("addr")));
    let key = ha.partner_psk_file.expect("a key file");
    assert_eq!(key.path, Path::new("/etc/tapbridge/site-a-partner.psk"));
    assert_eq!((key.line, key.key), (9, "ha.partner_psk_file"));
    assert!(!ha.announce);
}

#[test]
fn rejected_configs_name_file_line_column_and_key() {
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for (name, text, line, col, key, fragment) in REJECTED {
        assert!(names.insert(*name), "two rows are named {name:?}");
        if let Err(why) = check_rejected(&text.build(), *line, *col, key, fragment) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_site_name_defaults_to_the_link_name_and_survives_a_rename() {
    let c = Config::parse("site-a", Path::new(FILE), MINIMAL).unwrap();
    assert_eq!(c.tunnel.name, "site-a");
    // A copy of branch.toml as branch-new.toml keeps the identity it names.
    let text = MINIMAL.replace("[tunnel]\n", "[tunnel]\nname = \"branch\"\n");
    let c = Config::parse(
        "branch-new",
        Path::new("/etc/tapbridge/branch-new.toml"),
        &text,
    )
    .unwrap();
    assert_eq!(
        (c.name.as_str(), c.tunnel.name.as_str()),
        ("branch-new", "branch")
    );
    // Any name a peer may have, up to 31 bytes, not just link-name characters.
    let text = MINIMAL.replace("[tunnel]\n", "[tunnel]\nname = \"br.example/7\"\n");
    let c = Config::parse("site-a", Path::new(FILE), &text).unwrap();
    assert_eq!(c.tunnel.name, "br.example/7");
}

#[test]
fn default_interface_name_must_fit() {
    let err = Config::parse("a-long-site-name", Path::new(FILE), MINIMAL).expect_err("accepted");
    let msg = message(&err);
    assert!(
        msg.starts_with(&format!("{FILE}:1:1: interface.name: ")),
        "{msg}"
    );
    assert!(
        msg.contains("tb-a-long-site-name") && msg.contains("set interface.name"),
        "{msg}"
    );
}

#[test]
fn dhcp_beside_an_interface_address_outside_the_pool() {
    assert!(parse(&iface_with_dhcp("198.19.0.1/24")).is_ok());
}

#[test]
fn two_dhcp_reservations() {
    let ok = Reservations(&[
        ("02:00:00:00:aa:01", "198.19.0.10"),
        ("02:00:00:00:aa:02", "198.19.0.150"),
    ])
    .build();
    assert_eq!(
        parse(&ok)
            .expect("two reservations")
            .dhcp
            .expect("dhcp")
            .plan
            .settings()
            .reservations
            .len(),
        2
    );
}

#[test]
fn hook_paths_and_control_socket() {
    let c = parse(&with(
        "[hooks]\ndown = [\"nat-down.sh\"]\n[control]\nsocket = \"/tmp/x.sock\"\n",
    ))
    .expect("config");
    assert_eq!(
        c.hooks.down,
        vec![PathBuf::from("/etc/tapbridge/nat-down.sh")]
    );
    assert_eq!(c.control.socket, Path::new("/tmp/x.sock"));
}

#[test]
fn bad_link_names() {
    assert!(matches!(
        Config::parse("../x", Path::new(FILE), MINIMAL),
        Err(ConfigError::Name { .. })
    ));
}

#[test]
fn locate_follows_the_cli_convention() {
    assert_eq!(
        locate(Some("site-a"), None).expect("name"),
        (
            "site-a".to_owned(),
            PathBuf::from("/etc/tapbridge/site-a.toml")
        )
    );
    assert_eq!(
        locate(None, Some(Path::new("/tmp/x/site-b.toml"))).expect("file"),
        ("site-b".to_owned(), PathBuf::from("/tmp/x/site-b.toml"))
    );
    assert!(locate(Some("site-b"), Some(Path::new("/tmp/site-b.toml"))).is_ok());
    // The NAT hooks name iptables chains after it: 21 bytes at most.
    assert!(locate(Some(&"a".repeat(21)), None).is_ok());
    let err = locate(Some(&"a".repeat(22)), None).expect_err("too long");
    assert!(message(&err).contains("longer than 21 bytes"), "{err}");
    for bad in ["a.b", "_a", "-a", "a+b", "a b"] {
        assert!(
            matches!(locate(Some(bad), None), Err(ConfigError::Name { .. })),
            "{bad}"
        );
    }
    let err = locate(Some("a"), Some(Path::new("/tmp/site-b.toml"))).expect_err("mismatch");
    assert!(message(&err).contains("does not match"), "{err}");
    assert!(matches!(locate(None, None), Err(ConfigError::NoLink)));
    assert!(matches!(
        locate(Some("../../etc/passwd"), None),
        Err(ConfigError::Name { .. })
    ));
}

#[test]
fn load_reads_the_file_and_names_the_link_after_its_stem() {
    let dir = std::env::temp_dir().join(format!("tapbridge-config-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("branch1.toml");
    std::fs::write(&path, MINIMAL).expect("write config");
    let loaded = Config::load(&path);
    let missing = Config::load(&dir.join("nope.toml"));
    let _ = std::fs::remove_dir_all(&dir);
    let c = loaded.expect("load");
    assert_eq!(
        (c.name.as_str(), c.interface.name.as_str()),
        ("branch1", "tb-branch1")
    );
    assert_eq!(c.path, path);
    let missing = message(&missing.expect_err("missing file"));
    assert!(missing.starts_with("cannot read config file"), "{missing}");
    assert!(
        missing.contains("No such file"),
        "the cause is kept: {missing}"
    );
}

/// Cheap stand-in for the fuzzer in ordinary `cargo test`: every prefix of
/// the example, and the example with each line dropped or mangled, gives a
/// config or a one-line error positioned inside the text — never a panic.
#[test]
fn mangled_examples_never_panic() {
    let check = |text: &str| match parse(text) {
        Ok(c) => assert!(!c.peers.is_empty()),
        Err(e) => {
            let msg = message(&e);
            assert!(!msg.contains('\n'), "{msg:?}");
            if let ConfigError::Invalid { line, .. } = e {
                assert!(
                    line >= 1 && line <= text.lines().count().max(1) + 1,
                    "{msg}"
                );
            }
        }
    };
    for (i, _) in EXAMPLE.char_indices() {
        check(&EXAMPLE[..i]);
    }
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for skip in 0..lines.len() {
        for mangle in [
            "",
            "x = 1",
            "\"a\\nb\" = 1",
            "[\"a\\nb\"]",
            "[tunnel.\"x\\ny\"]",
            "é",
            "[",
            "= \"ü\"",
            "0",
        ] {
            let mut v = lines.clone();
            v[skip] = mangle;
            check(&v.join("\n"));
            let mut v = lines.clone();
            let replaced = v[skip].replace('"', "").replace('1', "\u{7f}");
            v[skip] = &replaced;
            check(&v.join("\n"));
        }
    }
}

#[test]
fn host_name_endpoint_is_kept_as_a_name() {
    let c = parse(
        "[interface]\n[tunnel]\npsk_file = \"k\"\n[[peer]]\nname = \"hq\"\nendpoint = \"HQ.tapbridge.test:51901\"\n",
    )
    .expect("config");
    assert_eq!(
        c.peers[0].endpoints,
        vec![PeerEndpoint::Name {
            host: "hq.tapbridge.test".into(),
            port: 51901
        }]
    );
    assert_eq!(
        c.peers[0].endpoints[0].to_string(),
        "hq.tapbridge.test:51901"
    );
}

#[test]
fn endpoint_array_keeps_its_order_of_preference() {
    let c = parse(
        "[interface]\n[tunnel]\nlisten = \"[::]:51901\"\npsk_file = \"k\"\n[[peer]]\nname = \"hq\"\nendpoint = [\"198.18.1.2:51901\", \"HQ2.tapbridge.test:51901\", \"[2001:2::2]:51901\"]\n",
    )
    .expect("config");
    assert_eq!(
        c.peers[0].endpoints,
        vec![
            PeerEndpoint::Addr("198.18.1.2:51901".parse().unwrap()),
            PeerEndpoint::Name {
                host: "hq2.tapbridge.test".into(),
                port: 51901
            },
            PeerEndpoint::Addr("[2001:2::2]:51901".parse().unwrap()),
        ]
    );
    let one = parse(
        "[interface]\n[tunnel]\npsk_file = \"k\"\n[[peer]]\nname = \"hq\"\nendpoint = [\"198.18.1.2:51901\"]\n",
    )
    .expect("config");
    assert_eq!(one.peers[0].endpoints.len(), 1);
    let none = parse("[interface]\n[tunnel]\npsk_file = \"k\"\n[[peer]]\nname = \"hq\"\n")
        .expect("config");
    assert!(none.peers[0].endpoints.is_empty());
}

#[test]
fn peer_policy_keys_parse_with_their_defaults() {
    let c = parse(MINIMAL).expect("minimal");
    assert_eq!(c.peers[0].policy, PeerPolicy::default());
    assert_eq!(c.peers[0].policy.max_macs, 1024);
    let c = parse(&with(
        "isolate = true\nmax_macs = 8\nmacs = [\"02:00:00:00:0b:00/40\", \"02:00:00:00:0c:01\"]\nvlans = [0, 20]\n",
    ))
    .expect("policy");
    let p = &c.peers[0].policy;
    assert!(p.isolate);
    assert_eq!(p.max_macs, 8);
    assert_eq!(
        p.macs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["02:00:00:00:0b:00/40", "02:00:00:00:0c:01/48"]
    );
    assert_eq!(p.vlans, VlanSet::new([0, 20]));
}

#[test]
fn peer_policy_errors_name_file_line_column_and_key() {
    let cases = [
        (
            "max_macs = 0\n",
            "6:12: peer.max_macs: 0 is outside the allowed range 1..=8192",
        ),
        ("max_macs = 9000\n", "6:12: peer.max_macs: 9000 is outside"),
        (
            "macs = []\n",
            "6:8: peer.macs: an empty list would refuse every frame",
        ),
        (
            "macs = [\"02:00:00:00:0b:00/40\", \"02:00:00:00:0b:01/40\"]\n",
            "6:33: peer.macs: element 2: \"02:00:00:00:0b:01/40\" has bits set beyond its /40 prefix",
        ),
        (
            "macs = [\"02:00:00:00:0b/40\"]\n",
            "6:9: peer.macs: element 1: \"02:00:00:00:0b/40\" is not a MAC prefix",
        ),
        (
            "macs = [\"02:00:00:00:0b:00/49\"]\n",
            "6:9: peer.macs: element 1: \"02:00:00:00:0b:00/49\": the prefix length must be 1 to 48 bits",
        ),
        (
            "macs = [\"02:00:00:00:0b:00/0\"]\n",
            "the prefix length must be 1 to 48 bits",
        ),
        (
            "vlans = [0, 4095]\n",
            "6:13: peer.vlans: element 2: 4095 is not a VLAN id in 0..=4094 (0: untagged)",
        ),
        (
            "vlans = [-1]\n",
            "6:10: peer.vlans: element 1: -1 is not a VLAN id",
        ),
        (
            "vlans = [20, 20]\n",
            "6:14: peer.vlans: element 2: VLAN 20 is listed twice",
        ),
        (
            "vlans = []\n",
            "6:9: peer.vlans: an empty list would refuse every frame",
        ),
        ("isolate = \"yes\"\n", "peer.isolate"),
    ];
    for (extra, want) in cases {
        let err = message(&parse(&with(extra)).expect_err(extra));
        assert!(err.starts_with(FILE), "{extra}: {err}");
        assert!(err.contains(want), "{extra}: {err}\nwanted: {want}");
    }
}
