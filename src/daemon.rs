//! Daemon wiring: config → netlink → datapath → control, clean shutdown.
