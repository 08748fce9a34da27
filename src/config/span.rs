//! Where things are in the config text: byte offsets (the spans TOML
//! reports) turned into the 1-based line and column every error shows,
//! and the place of a key's value looked up again after validation.

use super::raw::RawConfig;

/// Where the `index`-th value of `key` is in config `text` (1-based line and
/// column), for errors found after validation (`bridge-ctl check`). Keys:
/// `hooks.up`, `hooks.down`, `hooks.peer_up`, `hooks.peer_down`,
/// `control.group`, `control.admin_group`, and the sections `dhcp`, `arp`.
pub(super) fn position(text: &str, key: &str, index: usize) -> Option<(usize, usize)> {
    let raw: RawConfig = toml::from_str(text).ok()?;
    let hooks = || raw.hooks.as_ref().map(|h| h.get_ref());
    let control = || raw.control.as_ref().map(|c| c.get_ref());
    let span = match key {
        "hooks.up" => hooks()?.up.get(index)?.span(),
        "hooks.down" => hooks()?.down.get(index)?.span(),
        "hooks.peer_up" => hooks()?.peer_up.get(index)?.span(),
        "hooks.peer_down" => hooks()?.peer_down.get(index)?.span(),
        "interface.bridge" => raw.interface.as_ref()?.get_ref().bridge.as_ref()?.span(),
        "control.group" => control()?.group.as_ref()?.span(),
        "control.admin_group" => control()?.admin_group.as_ref()?.span(),
        "dhcp" => raw.dhcp.as_ref()?.span(),
        "arp" => raw.arp.as_ref()?.span(),
        _ => return None,
    };
    Some(line_col(text, span.start))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests;
