//! When a kept answer is asked for again: before it runs out, so a long-running verifier
//! refreshes its collateral while the old one still serves, and keeps serving it (never
//! past its end) while the vendor cannot be reached.

/// What a kept answer is good for at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serve {
    /// Use it.
    Fresh,
    /// Fetch anew; use it only when the vendor cannot be reached.
    Stale,
    /// Past its end: never use it.
    Expired,
}

/// A kept answer's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Freshness {
    refresh_at: i64,
    expires: i64,
}

impl Freshness {
    /// An answer with no end (endorsements without a CRL, under `CrlPolicy::IfServed`).
    pub(crate) const NEVER: Freshness = Freshness {
        refresh_at: i64::MAX,
        expires: i64::MAX,
    };

    /// Current from `issued` to `expires`; asked for again once three quarters of that
    /// have passed.
    pub(crate) fn window(issued: i64, expires: i64) -> Self {
        let span = expires.saturating_sub(issued).max(0);
        Freshness {
            refresh_at: issued.saturating_add(span / 4 * 3).min(expires),
            expires,
        }
    }

    /// What the answer is good for at `now`.
    pub(crate) fn at(self, now: i64) -> Serve {
        if now > self.expires {
            Serve::Expired
        } else if now >= self.refresh_at {
            Serve::Stale
        } else {
            Serve::Fresh
        }
    }
}

/// A CRL's window, thisUpdate to nextUpdate; `None` when it does not parse or has no
/// nextUpdate (then it is not kept in memory).
pub(crate) fn crl_freshness(crl: &[u8]) -> Option<Freshness> {
    use x509_parser::prelude::FromDer as _;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(crl).ok()?;
    let next = crl.next_update()?.timestamp();
    Some(Freshness::window(crl.last_update().timestamp(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_fresh_then_stale_for_its_last_quarter_then_expired() {
        let f = Freshness::window(1000, 2000);
        assert_eq!(f.at(1000), Serve::Fresh);
        assert_eq!(f.at(1749), Serve::Fresh);
        assert_eq!(f.at(1750), Serve::Stale);
        assert_eq!(f.at(2000), Serve::Stale);
        assert_eq!(f.at(2001), Serve::Expired);
        assert_eq!(Freshness::NEVER.at(i64::MAX - 1), Serve::Fresh);
    }
}
