//! Configuration: TOML → validated types (see SPEC §4).
