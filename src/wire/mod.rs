//! Wire formats: views over byte buffers.
//!
//! Ethernet, ARP, IPv4, UDP and DHCP come from `smoltcp` and `etherparse`;
//! this module holds the formats that are our own.

pub mod tunnel;
