//! Connection limits: how many connections the broker holds in total and per client address.
//!
//! Checked in the accept loop before the session starts, so one address (a misbehaving NAT, a
//! reconnect loop, a flood) cannot take every slot, and the broker's memory stays bounded
//! whatever arrives. Each admitted connection holds a [`ConnectionGuard`] that gives its slot
//! back when dropped, so the count cannot drift whichever way the session ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The broker holds `limits.max_connections` connections.
    #[error("the broker holds its maximum of {limit} connections")]
    Total {
        /// The configured limit.
        limit: usize,
    },
    /// The client's address holds `limits.max_connections_per_ip` connections.
    #[error("{ip} holds its maximum of {limit} connections")]
    PerIp {
        /// The client address.
        ip: IpAddr,
        /// The configured limit.
        limit: usize,
    },
}

impl LimitExceeded {
    /// A short stable label, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            LimitExceeded::Total { .. } => "total",
            LimitExceeded::PerIp { .. } => "per_ip",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The connection counts and their limits. One short lock per connection opened or closed.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

impl ConnectionLimits {
    /// Limits of `max_total` connections, `max_per_ip` of them from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_ip, counts: Mutex::default() })
    }

    /// Takes a slot for a connection from `ip`, or says which limit is reached. IPv4 clients
    /// seen through a dual-stack socket (`::ffff:a.b.c.d`) count as their IPv4 address.
    ///
    /// # Errors
    /// [`LimitExceeded`] naming the limit that refuses the connection.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionGuard, LimitExceeded> {
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        if counts.total >= self.max_total {
            return Err(LimitExceeded::Total { limit: self.max_total });
        }
        let from_ip = counts.per_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(LimitExceeded::PerIp { ip, limit: self.max_per_ip });
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(ConnectionGuard { limits: self.clone(), ip })
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts are updated in one step under the lock; a panic elsewhere cannot tear them.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_ip.remove(&ip);
            }
        }
    }
}

/// One admitted connection's slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct ConnectionGuard {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid address")
    }

    #[test]
    fn per_address_and_total_limits_refuse_and_free_slots_on_drop() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.try_acquire(ip("10.0.0.1")).expect("first");
        let a2 = limits.try_acquire(ip("::ffff:10.0.0.1")).expect("second, the same address mapped");
        let refused = limits.try_acquire(ip("10.0.0.1")).expect_err("third from one address");
        assert_eq!(refused, LimitExceeded::PerIp { ip: ip("10.0.0.1"), limit: 2 });
        let b1 = limits.try_acquire(ip("10.0.0.2")).expect("another address");
        assert_eq!(limits.try_acquire(ip("10.0.0.3")).expect_err("full"), LimitExceeded::Total { limit: 3 });
        assert_eq!(limits.open(), 3);
        drop(a1);
        let a3 = limits.try_acquire(ip("10.0.0.1")).expect("a slot came back");
        drop((a2, a3, b1));
        assert_eq!(limits.open(), 0);
        assert!(limits.lock().per_ip.is_empty(), "no entry left for addresses gone");
    }
}
