//! Who counts as one peer for the limits that are kept per client address: the public
//! listener's pending connections, the internal listener's connections and the connect hook's
//! share of its slots.

use std::net::IpAddr;

/// The address that per-peer limits count `ip` under. An IPv4 client of a dual-stack listener
/// arrives as `::ffff:a.b.c.d` and counts as `a.b.c.d` (masked as IPv6, every IPv4 client would
/// be one peer); an IPv6 host usually has a whole /64 to pick addresses from, so that counts as
/// one.
pub fn peer_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_through_a_dual_stack_socket_is_ipv4_and_ipv6_counts_by_slash_64() {
        let group = |s: &str| peer_group(s.parse().expect("address"));
        assert_eq!(group("::ffff:192.0.2.7"), group("192.0.2.7"));
        assert_ne!(group("::ffff:192.0.2.7"), group("::ffff:192.0.2.8"));
        assert_eq!(group("2001:db8:1:2::1"), group("2001:db8:1:2:ffff::9"));
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
    }
}
