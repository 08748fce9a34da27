//! `[ha]`: one box of a high-availability pair. The role it starts in, and
//! the partner channel: the other box's address (a literal: a name would
//! have to be resolved while failing over; its port, which this box binds
//! too, not the tunnel's) and the channel's key file, which must not be the
//! tunnel's (the channel's key is its own).

use std::ops::Range;

use super::{Cx, Result};
use crate::config::raw::RawHa;
use crate::config::value;
use crate::config::{HaConfig, PeerEndpoint, Role, TunnelConfig};

impl Cx<'_> {
    pub(super) fn ha(
        &self,
        raw: &RawHa,
        section: &Range<usize>,
        tunnel: &TunnelConfig,
    ) -> Result<HaConfig> {
        let start_as = match &raw.start_as {
            Some(v) => v
                .get_ref()
                .parse::<Role>()
                .map_err(|e| self.err(&v.span(), "ha.start_as", e.to_string()))?,
            None => Role::Standby,
        };
        let partner = match &raw.partner {
            Some(v) => match self.conv(v, "ha.partner", value::endpoint)? {
                PeerEndpoint::Addr(a) => {
                    if a.is_ipv4() != tunnel.listen.is_ipv4()
                        && !tunnel.listen.ip().is_unspecified()
                    {
                        return Err(self.err(
                            &v.span(),
                            "ha.partner",
                            format!(
                                "{a} is of another address family than tunnel.listen ({})",
                                tunnel.listen
                            ),
                        ));
                    }
                    if a.port() == tunnel.listen.port() {
                        return Err(self.err(
                            &v.span(),
                            "ha.partner",
                            format!(
                                "port {} is tunnel.listen's; the partner channel needs a \
                                 port of its own (each box binds it)",
                                a.port()
                            ),
                        ));
                    }
                    Some(a)
                }
                PeerEndpoint::Name { .. } => {
                    return Err(self.err(
                        &v.span(),
                        "ha.partner",
                        "the partner must be an IP address and port, not a host name \
                         (nothing is resolved while failing over)",
                    ));
                }
            },
            None => None,
        };
        let partner_psk_file = self.key_file(&raw.partner_psk_file, "ha.partner_psk_file")?;
        if partner.is_some() && partner_psk_file.is_none() {
            return Err(self.err(
                section,
                "ha.partner_psk_file",
                "this required key is missing: the partner channel needs its own key",
            ));
        }
        if let (Some(k), Some(t)) = (&partner_psk_file, &tunnel.psk_file)
            && k.path == t.path
        {
            let v = raw.partner_psk_file.as_ref().expect("a key file was given");
            return Err(self.err(
                &v.span(),
                "ha.partner_psk_file",
                "the partner channel needs a key of its own, not tunnel.psk_file",
            ));
        }
        Ok(HaConfig {
            start_as,
            partner,
            partner_psk_file,
            announce: raw.announce.unwrap_or(true),
        })
    }
}
