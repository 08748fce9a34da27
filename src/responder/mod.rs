//! Local ARP and DHCP responder (pure).
