//! A user-space UDP impairment proxy on loopback, between QUIC clients and the broker: each
//! datagram, in either direction, may be dropped, duplicated, held back (so later ones overtake
//! it) or delayed, by a seeded generator; and the test can switch a blackhole on and off, during
//! which nothing passes at all. It is `tc netem` without root, so it runs in CI.
//!
//! Clients connect to [`UdpProxy::addr`]. Each client address gets its own upstream socket, so
//! the broker sees one peer per client, as it would through a NAT. The seed fixes the sequence of
//! fates drawn, not which datagram each falls on (that depends on thread timing), so a failing
//! seed usually but not always fails again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use super::rng::SplitMix64;

/// Largest datagram relayed; QUIC's are at most about 1500 bytes on loopback paths.
const MAX_DATAGRAM: usize = 65_536;

/// What happens to datagrams, as probabilities per datagram and delays.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Probability a datagram is dropped.
    pub drop: f64,
    /// Probability a datagram is sent twice.
    pub duplicate: f64,
    /// Probability a datagram is held back by `reorder_by`, so later ones overtake it.
    pub reorder: f64,
    /// How long a reordered datagram is held.
    pub reorder_by: Duration,
    /// Delay added to every datagram.
    pub delay: Duration,
    /// Random extra delay, up to this, per datagram.
    pub jitter: Duration,
}

impl Impairment {
    /// Nothing impaired: the proxy only relays.
    pub fn none() -> Self {
        Self::default()
    }

    /// `loss` dropped, a quarter as many duplicated and half as many reordered by 10 ms,
    /// every datagram delayed by up to 2 ms.
    pub fn lossy(loss: f64) -> Self {
        Self {
            drop: loss,
            duplicate: loss / 4.0,
            reorder: loss / 2.0,
            reorder_by: Duration::from_millis(10),
            delay: Duration::ZERO,
            jitter: Duration::from_millis(2),
        }
    }
}

/// What the proxy did, in both directions together.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub relayed: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
    pub blackholed: AtomicU64,
}

impl ProxyStats {
    /// One line of counts.
    pub fn summary(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} datagrams relayed, {} dropped, {} duplicated, {} reordered, {} lost in blackholes",
            n(&self.relayed),
            n(&self.dropped),
            n(&self.duplicated),
            n(&self.reordered),
            n(&self.blackholed)
        )
    }
}

/// State shared by the relay tasks.
#[derive(Debug)]
struct Shared {
    impairment: Mutex<Impairment>,
    rng: Mutex<SplitMix64>,
    blackhole: AtomicBool,
    /// Drop what the broker sends back, relay what clients send.
    replies_blocked: AtomicBool,
    stats: ProxyStats,
}

/// A datagram's fate, drawn once per datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Drop,
    Blackholed,
    /// Send after this delay, this many times (1 or 2); `held` if it was held back to reorder.
    Send {
        after: Duration,
        copies: u8,
        held: bool,
    },
}

impl Shared {
    fn fate(&self) -> Fate {
        if self.blackhole.load(Ordering::Acquire) {
            return Fate::Blackholed;
        }
        let impairment = *self.impairment.lock().expect("impairment lock");
        let mut rng = self.rng.lock().expect("rng lock");
        if rng.chance(impairment.drop) {
            return Fate::Drop;
        }
        let copies = if rng.chance(impairment.duplicate) { 2 } else { 1 };
        let held = rng.chance(impairment.reorder);
        let jitter_us = u64::try_from(impairment.jitter.as_micros()).unwrap_or(u64::MAX);
        let mut after = impairment.delay + Duration::from_micros(rng.in_range(0..=jitter_us));
        if held {
            after += impairment.reorder_by;
        }
        Fate::Send { after, copies, held }
    }

    /// Sends `datagram` to `to` on `socket` according to its fate.
    fn forward(self: &Arc<Self>, socket: &Arc<UdpSocket>, datagram: &[u8], to: Option<SocketAddr>) {
        let (after, copies, held) = match self.fate() {
            Fate::Drop => return count(&self.stats.dropped),
            Fate::Blackholed => return count(&self.stats.blackholed),
            Fate::Send { after, copies, held } => (after, copies, held),
        };
        count(&self.stats.relayed);
        if copies > 1 {
            count(&self.stats.duplicated);
        }
        if held {
            count(&self.stats.reordered);
        }
        let (socket, datagram) = (socket.clone(), datagram.to_vec());
        let send = async move {
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            for _ in 0..copies {
                // A full socket buffer or a vanished peer is just another lost datagram.
                let _ = match to {
                    Some(to) => socket.send_to(&datagram, to).await,
                    None => socket.send(&datagram).await,
                };
            }
        };
        tokio::spawn(send);
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The proxy. Dropping it stops every relay task.
#[derive(Debug)]
pub struct UdpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl UdpProxy {
    /// Starts relaying from a fresh loopback port to `upstream`, impaired as `impairment` says,
    /// with fates drawn from `seed`.
    pub async fn start(upstream: SocketAddr, impairment: Impairment, seed: u64) -> Result<Self> {
        let front = Arc::new(UdpSocket::bind(("127.0.0.1", 0)).await?);
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            impairment: Mutex::new(impairment),
            rng: Mutex::new(SplitMix64(seed)),
            blackhole: AtomicBool::new(false),
            replies_blocked: AtomicBool::new(false),
            stats: ProxyStats::default(),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(relay_from_clients(front, upstream, shared.clone()));
        Ok(Self { addr, shared, tasks })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the impairment, from the next datagram on.
    pub fn set_impairment(&self, impairment: Impairment) {
        *self.shared.impairment.lock().expect("impairment lock") = impairment;
    }

    /// Switches the blackhole on (nothing passes, either way) or off.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::Release);
    }

    /// Drops everything the broker sends back while on, while clients' datagrams still arrive:
    /// the broker sees peers that vanished halfway through a handshake.
    pub fn set_replies_blocked(&self, on: bool) {
        self.shared.replies_blocked.store(on, Ordering::Release);
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.shared.stats
    }

    /// Stops relaying.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Reads datagrams from clients; the first from a new client address opens its upstream socket
/// and the task relaying the broker's answers back.
async fn relay_from_clients(front: Arc<UdpSocket>, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut flows: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut returns = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((len, client)) = front.recv_from(&mut buf).await else { continue };
        let upstream_socket = match flows.get(&client) {
            Some(socket) => socket.clone(),
            None => {
                let Ok(socket) = connect_upstream(upstream).await else { continue };
                returns.spawn(relay_to_client(socket.clone(), front.clone(), client, shared.clone()));
                flows.insert(client, socket.clone());
                socket
            }
        };
        let Some(datagram) = buf.get(..len) else { continue };
        shared.forward(&upstream_socket, datagram, None);
    }
}

async fn connect_upstream(upstream: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let socket = UdpSocket::bind(("127.0.0.1", 0)).await?;
    socket.connect(upstream).await?;
    Ok(Arc::new(socket))
}

/// Relays the broker's datagrams for one client back through the front socket.
async fn relay_to_client(upstream: Arc<UdpSocket>, front: Arc<UdpSocket>, client: SocketAddr, shared: Arc<Shared>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        // An ICMP "port unreachable" surfaces as an error on a connected socket; keep going.
        let Ok(len) = upstream.recv(&mut buf).await else { continue };
        if shared.replies_blocked.load(Ordering::Acquire) {
            count(&shared.stats.blackholed);
            continue;
        }
        let Some(datagram) = buf.get(..len) else { continue };
        shared.forward(&front, datagram, Some(client));
    }
}
