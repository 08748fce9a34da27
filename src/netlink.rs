//! Netlink programming of links, addresses, routes and bridge membership.
