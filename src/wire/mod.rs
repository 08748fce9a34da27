//! Wire formats: views over byte buffers.
//!
//! Ethernet, ARP, IPv4, UDP and DHCP come from `smoltcp` and `etherparse`;
//! this module holds the formats that are our own or that no crate covers:
//! the tunnel's messages, the fragment header inside them, the records that
//! carry them over TCP ([`tcp`]), and the Linux
//! virtio-net header the offload TAP puts in front of every frame; plus
//! [`ethernet`], the one frame classifier (VLAN, ARP, DHCP, ICMPv6, BPDU) the
//! responder, the switch and the guards share. Nothing
//! here knows about keys, sessions or sockets, and nothing here imports from
//! the protocol modules: the arrows point only into `wire`.

pub mod ethernet;
pub mod fragment;
pub mod tcp;
pub mod tunnel;
pub mod virtio;
