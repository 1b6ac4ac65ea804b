//! A deterministic simulated network, for tests of the protocol engines.
//!
//! N nodes exchange datagrams through a [`Network`] with a virtual clock and
//! seeded faults: loss, duplication, reordering (random extra delay), fixed
//! delay and an MTU above which datagrams are dropped. Everything depends on
//! the seed alone, so a failing run is reproduced exactly by its seed; tests
//! keep a [`SeedGuard`] alive, which prints the seed if the test panics.
//!
//! Any sans-IO engine becomes a node by implementing [`SimNode`]; the CoAP
//! [`Endpoint`] already does. Tests usually wrap an endpoint together with
//! the application logic they need (a handler that answers requests) and
//! implement [`SimNode`] for the wrapper.
//!
//! ```
//! use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request};
//! use lwm2m_core::rng::SplitMix64;
//! use lwm2m_core::sim::{LinkConfig, Network};
//! use lwm2m_core::time::{Duration, Instant};
//!
//! let mut net = Network::new(42, LinkConfig::default());
//! let a = net.add(Endpoint::new(EndpointConfig::default(), SplitMix64::new(1)));
//! let b = net.add(Endpoint::new(EndpointConfig::default(), SplitMix64::new(2)));
//! let now = net.now();
//! net.node_mut(a).send_request(now, b, Request::new(Code::GET).with_path("/x")).unwrap();
//! // Nobody answers for b, so b's endpoint only acknowledges after its
//! // piggyback delay; a's request then waits for a separate response until
//! // the response timeout and fails.
//! net.run_until(Instant::from_millis(300_000), |_| false);
//! let failed = core::iter::from_fn(|| net.node_mut(a).poll_event())
//!     .any(|e| matches!(e, Event::RequestFailed { .. }));
//! assert!(failed);
//! assert!(net.now() > Instant::ZERO + Duration::from_secs(247));
//! ```

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::coap::Endpoint;
use crate::rng::{RandomSource, SplitMix64};
use crate::time::{Duration, Instant};

/// Address of a node in a [`Network`]: its index.
pub type SimAddr = u16;

/// A sans-IO engine that can live in a [`Network`].
pub trait SimNode {
    /// A datagram arrived from `from`.
    fn handle_datagram(&mut self, now: Instant, from: SimAddr, bytes: &[u8]);
    /// Next datagram to send, with its destination.
    fn poll_transmit(&mut self) -> Option<(SimAddr, Vec<u8>)>;
    /// When the node wants [`SimNode::handle_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
}

impl<R: RandomSource> SimNode for Endpoint<SimAddr, R> {
    fn handle_datagram(&mut self, now: Instant, from: SimAddr, bytes: &[u8]) {
        Endpoint::handle_datagram(self, now, from, bytes)
    }
    fn poll_transmit(&mut self) -> Option<(SimAddr, Vec<u8>)> {
        Endpoint::poll_transmit(self).map(|t| (t.peer, t.bytes))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now)
    }
}

/// Faults and timing of every link in a [`Network`]. Probabilities are in
/// per mille so the simulation needs no floating point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Chance a datagram is lost, per mille.
    pub loss_permille: u32,
    /// Chance a datagram is delivered twice, per mille.
    pub duplicate_permille: u32,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra random delay, uniform in `0..=jitter`; it reorders datagrams.
    pub jitter: Duration,
    /// Datagrams larger than this are dropped.
    pub mtu: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss_permille: 0,
            duplicate_permille: 0,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            mtu: 1280,
        }
    }
}

impl LinkConfig {
    /// A link losing `loss_percent` % of datagrams, otherwise default.
    pub fn lossy(loss_percent: u32) -> Self {
        LinkConfig {
            loss_permille: loss_percent * 10,
            ..LinkConfig::default()
        }
    }
}

/// What happened to one datagram a node sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered (once, or twice if duplicated).
    Delivered {
        /// Delivered a second time as well.
        duplicated: bool,
    },
    /// Lost.
    Lost,
    /// Larger than the MTU.
    TooBig,
}

/// One datagram sent in the network, as recorded in [`Network::trace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// When it was sent.
    pub at: Instant,
    /// Sender.
    pub from: SimAddr,
    /// Destination.
    pub to: SimAddr,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// What the network did with it.
    pub fate: Fate,
}

/// Counters of a [`Network`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetStats {
    /// Datagrams nodes sent.
    pub sent: u64,
    /// Datagrams lost.
    pub lost: u64,
    /// Datagrams dropped for the MTU.
    pub too_big: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Deliveries (including duplicates).
    pub delivered: u64,
}

/// The simulated network: nodes, a virtual clock, datagrams in flight.
#[derive(Debug)]
pub struct Network<N> {
    now: Instant,
    seed: u64,
    rng: SplitMix64,
    link: LinkConfig,
    nodes: Vec<N>,
    in_flight: BTreeMap<(Instant, u64), (SimAddr, SimAddr, Vec<u8>)>,
    seq: u64,
    stats: NetStats,
    trace: Option<Vec<TraceEntry>>,
}

impl<N: SimNode> Network<N> {
    /// An empty network whose faults are drawn from `seed`. The clock starts at 0.
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        Network {
            now: Instant::ZERO,
            seed,
            rng: SplitMix64::new(seed),
            link,
            nodes: Vec::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            stats: NetStats::default(),
            trace: None,
        }
    }

    /// Records every datagram in [`Network::trace`] from now on.
    pub fn enable_trace(&mut self) {
        self.trace.get_or_insert_with(Vec::new);
    }

    /// Datagrams recorded since [`Network::enable_trace`].
    pub fn trace(&self) -> &[TraceEntry] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Changes the link behaviour from now on.
    pub fn set_link(&mut self, link: LinkConfig) {
        self.link = link;
    }

    /// Adds a node and returns its address.
    ///
    /// # Panics
    /// Beyond 65536 nodes.
    pub fn add(&mut self, node: N) -> SimAddr {
        let addr = SimAddr::try_from(self.nodes.len()).expect("at most 65536 simulated nodes");
        self.nodes.push(node);
        addr
    }

    /// The node at `addr`.
    pub fn node(&self, addr: SimAddr) -> &N {
        &self.nodes[usize::from(addr)]
    }

    /// The node at `addr`, mutably (to drive its application side).
    pub fn node_mut(&mut self, addr: SimAddr) -> &mut N {
        &mut self.nodes[usize::from(addr)]
    }

    fn chance(&mut self, permille: u32) -> bool {
        permille > 0 && self.rng.below(1000) < u64::from(permille)
    }

    /// Takes what every node wants to send and puts it on the wire, applying the link's faults.
    pub fn collect_transmits(&mut self) {
        for from in 0..self.nodes.len() {
            while let Some((to, bytes)) = self.nodes[from].poll_transmit() {
                self.send(from as SimAddr, to, bytes);
            }
        }
    }

    fn send(&mut self, from: SimAddr, to: SimAddr, bytes: Vec<u8>) {
        self.stats.sent += 1;
        let fate = if bytes.len() > self.link.mtu {
            self.stats.too_big += 1;
            Fate::TooBig
        } else if self.chance(self.link.loss_permille) {
            self.stats.lost += 1;
            Fate::Lost
        } else {
            let duplicated = self.chance(self.link.duplicate_permille);
            Fate::Delivered { duplicated }
        };
        if let Some(trace) = &mut self.trace {
            trace.push(TraceEntry {
                at: self.now,
                from,
                to,
                bytes: bytes.clone(),
                fate,
            });
        }
        if let Fate::Delivered { duplicated } = fate {
            if usize::from(to) >= self.nodes.len() {
                return;
            }
            if duplicated {
                self.stats.duplicated += 1;
                let at = self.delivery_time();
                self.seq += 1;
                self.in_flight
                    .insert((at, self.seq), (from, to, bytes.clone()));
            }
            let at = self.delivery_time();
            self.seq += 1;
            self.in_flight.insert((at, self.seq), (from, to, bytes));
        }
    }

    fn delivery_time(&mut self) -> Instant {
        let jitter = self.link.jitter.as_millis() as u64;
        self.now + self.link.delay + Duration::from_millis(self.rng.below(jitter + 1))
    }

    /// When the next thing happens: a delivery or a node's timeout.
    pub fn next_event(&self) -> Option<Instant> {
        let delivery = self.in_flight.keys().next().map(|(t, _)| *t);
        let timeout = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
        match (delivery, timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends what is pending, then advances the clock to the next event (not
    /// past `limit`) and runs it. Returns false when nothing is left to do
    /// before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.collect_transmits();
        let Some(next) = self.next_event() else {
            return false;
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (from, to, bytes) = entry.remove();
            self.stats.delivered += 1;
            let now = self.now;
            self.nodes[usize::from(to)].handle_datagram(now, from, &bytes);
        }
        let now = self.now;
        for node in &mut self.nodes {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
        }
        self.collect_transmits();
        true
    }

    /// Steps until `done` returns true (checked before every step) or nothing
    /// is left to do before `deadline`. Returns the last value of `done`.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if !self.step(deadline) {
                return done(self);
            }
        }
    }

    /// Moves the clock forward to `to` without events (they run at the next step).
    pub fn advance_to(&mut self, to: Instant) {
        self.now = self.now.max(to);
    }
}

/// Prints the simulation seed if the test holding it panics, so the failing
/// run can be repeated with `LWM2M_SIM_SEED=<seed>`.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct SeedGuard(pub u64);

#[cfg(feature = "std")]
impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::eprintln!(
                "simulation failed with seed {0}; rerun with LWM2M_SIM_SEED={0}",
                self.0
            );
        }
    }
}

/// The seeds a simulation test should run: the one in `LWM2M_SIM_SEED` if
/// set, otherwise `count` seeds derived from `base`.
#[cfg(feature = "std")]
pub fn seeds(base: u64, count: u64) -> Vec<u64> {
    match std::env::var("LWM2M_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => alloc::vec![seed],
        None => (0..count)
            .map(|i| base.wrapping_mul(1_000_003).wrapping_add(i))
            .collect(),
    }
}
