//! Tests of the value parsers: durations, MACs, prefixes, routes, pools,
//! listen addresses, endpoints and names, and the messages they give.

use super::addr::network;
use super::*;
use crate::config::PeerEndpoint;
use crate::error::Chain;

/// The whole message, causes included, as the operator reads it.
fn text(e: ValueError) -> String {
    Chain(&e).to_string()
}

#[test]
fn durations() {
    assert_eq!(duration("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(duration("12h"), Ok(Duration::from_secs(12 * 3600)));
    assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(duration("1d"), Ok(Duration::from_secs(86_400)));
    assert_eq!(duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(duration("0s"), Ok(Duration::ZERO));
    for bad in [
        "",
        "10",
        "s",
        "10x",
        "1.5s",
        "-1s",
        "10 s",
        "99999999999999999999d",
    ] {
        assert!(duration(bad).is_err(), "{bad:?} accepted");
    }
    assert!(
        duration("366d")
            .map_err(text)
            .unwrap_err()
            .contains("365 days")
    );
}

#[test]
fn macs() {
    assert_eq!(mac("02:00:00:00:aa:01"), Ok(MacAddr([2, 0, 0, 0, 0xaa, 1])));
    assert_eq!(mac("02-00-00-00-AA-01"), Ok(MacAddr([2, 0, 0, 0, 0xaa, 1])));
    for bad in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:01:02",
        "2:0:0:0:0:1",
        "zz:00:00:00:00:01",
        "+2:00:00:00:00:01",
    ] {
        assert!(mac(bad).is_err(), "{bad:?} accepted");
    }
    assert!(
        unicast_mac("01:00:5e:00:00:01")
            .map_err(text)
            .unwrap_err()
            .contains("multicast")
    );
    assert!(unicast_mac("ff:ff:ff:ff:ff:ff").is_err());
    assert!(unicast_mac("00:00:00:00:00:00").is_err());
    assert_eq!(
        MacAddr([2, 0, 0, 0, 0xaa, 1]).to_string(),
        "02:00:00:00:aa:01"
    );
}

#[test]
fn prefixes_and_routes() {
    let c = host_cidr("198.19.0.1/24").unwrap();
    assert_eq!(c.to_string(), "198.19.0.1/24");
    assert!(host_cidr("198.19.0.1/33").is_err());
    assert!(host_cidr("198.19.0.1").is_err());
    assert!(host_cidr("2001:2::1/64").is_ok());
    assert!(
        network("198.19.0.1/24")
            .map_err(text)
            .unwrap_err()
            .contains("198.19.0.0/24")
    );
    assert!(network("2001:2::/48").is_ok());
    assert!(network("0.0.0.0/0").is_ok());
    let r = route("198.19.128.0/18 via 198.19.0.254").unwrap();
    assert_eq!(r.via, Some("198.19.0.254".parse().unwrap()));
    assert!(
        route("198.19.128.0/18 via 2001:2::1")
            .map_err(text)
            .unwrap_err()
            .contains("family")
    );
    assert!(route("198.19.128.0/18 by 198.19.0.254").is_err());
    assert!(
        ipv4_route("198.19.64.0/18")
            .map_err(text)
            .unwrap_err()
            .contains("gateway")
    );
    assert_eq!(
        pool("198.19.0.100 - 198.19.0.199"),
        Ok((
            "198.19.0.100".parse().unwrap(),
            "198.19.0.199".parse().unwrap()
        ))
    );
    assert!(
        pool("198.19.0.199-198.19.0.100")
            .map_err(text)
            .unwrap_err()
            .contains("after")
    );
}

#[test]
fn addresses_and_names() {
    assert!(listen_addr("[::]:51901").is_ok());
    assert!(endpoint("198.18.0.2:0").is_err());
    assert!(endpoint("[2001:2::2]:51901").is_ok());
    assert!(ifname("tb0").is_ok());
    assert!(ifname("tb-0123456789abc").is_err());
    assert!(ifname("tb 0").is_err());
    assert!(link_name("../etc").is_err());
    assert!(link_name("site-a").is_ok());
    assert!(peer_name("hq b").is_err());
    assert!(domain("branch.example").is_ok());
    assert!(domain("bad_domain").is_err());
}

#[test]
fn endpoints_literal_or_host_name() {
    let name = |h: &str, port| PeerEndpoint::Name {
        host: h.into(),
        port,
    };
    assert_eq!(
        endpoint("198.18.0.1:51901"),
        Ok(PeerEndpoint::Addr("198.18.0.1:51901".parse().unwrap()))
    );
    assert_eq!(
        endpoint(" [2001:2::1]:51901 "),
        Ok(PeerEndpoint::Addr("[2001:2::1]:51901".parse().unwrap()))
    );
    assert_eq!(
        endpoint("hq.example.net:51901"),
        Ok(name("hq.example.net", 51901))
    );
    assert_eq!(endpoint("HQ.Example.NET.:1"), Ok(name("hq.example.net", 1)));
    assert_eq!(endpoint("localhost:9"), Ok(name("localhost", 9)));
    assert_eq!(
        endpoint("7-eleven.example:9"),
        Ok(name("7-eleven.example", 9))
    );
    let max_label = "a".repeat(63);
    assert!(endpoint(&format!("{max_label}.example:9")).is_ok());
    let long = [max_label.as_str(); 4].join(".");
    assert_eq!(long.len(), 255);
    let cases = [
        ("hq.example.net", "no port"),
        ("hq.example.net:", "not a port"),
        ("hq.example.net:65536", "not a port"),
        ("hq.example.net:0", "port 0"),
        (":51901", "empty"),
        ("hq..example:1", "empty label"),
        ("hq_gw.example:1", "'_' is not allowed"),
        ("hq gw:1", "' ' is not allowed"),
        ("-hq.example:1", "hyphen"),
        ("hq-.example:1", "hyphen"),
        ("bücher.example:1", "'ü' is not allowed"),
        ("198.18.0:51901", "neither"),
        ("0x7f000001:51901", "neither"),
        ("2001:2::1:51901", "IPv6"),
        ("[2001:2::1:51901", "IPv6"),
        ("0.0.0.0:51901", "cannot be a peer's address"),
        ("224.0.0.1:51901", "cannot be a peer's address"),
    ];
    for (text, why) in cases {
        let e = Chain(&endpoint(text).expect_err(text)).to_string();
        assert!(e.contains(why), "{text}: {e}");
    }
    let too_long = format!("{}.example:1", "a".repeat(64));
    assert!(
        endpoint(&too_long)
            .map_err(text)
            .unwrap_err()
            .contains("longer than 63")
    );
    assert!(
        endpoint(&format!("{long}:1"))
            .map_err(text)
            .unwrap_err()
            .contains("longer than 253")
    );
}
