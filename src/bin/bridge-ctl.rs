//! `bridge-ctl`: the operator's command-line interface.

fn main() {}
