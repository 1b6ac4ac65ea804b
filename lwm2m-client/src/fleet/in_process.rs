//! A [`Fleet`] and the server [`Engine`] in one process, joined by a
//! virtual network with a fixed one-way latency and a virtual clock that
//! jumps from one due event to the next (so an hour of device life costs
//! only the work done in it).
//!
//! `lwm2m_core::sim::Network` is not used: it addresses nodes with a `u16`
//! and keeps a node object per address, which fits tens of engines, not a
//! million devices behind one state machine. Here the server's peer
//! address is the device index (`u32`).

use std::collections::{BTreeMap, VecDeque};

use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::Path;
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::{
    DmError, DmRequestId, DmResponse, Engine, NullStore, ServerConfig, ServerEvent,
};

use super::Fleet;

/// A server engine whose peers are device indexes.
pub type SimServer = Engine<u32, SplitMix64>;

/// A server engine for an in-process run: seeded randomness, no store
/// ([`NullStore`]: the run measures the engine's memory, not a store's).
pub fn sim_server(config: ServerConfig, seed: u64) -> SimServer {
    Engine::new(
        config,
        SplitMix64::new(seed),
        SplitMix64::new(seed ^ 0x5eed),
        Box::new(NullStore),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .expect("a NullStore loads nothing and cannot fail")
}

/// Counts of what the server engine reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// `Registered` events.
    pub registered: u64,
    /// `Updated` events.
    pub updated: u64,
    /// `Deregistered` events.
    pub deregistered: u64,
    /// `Expired` events.
    pub expired: u64,
    /// Device-management responses (successful or not).
    pub responses: u64,
}

/// The fleet, the server and the network between them.
pub struct InProcess {
    /// The devices.
    pub fleet: Fleet,
    /// The server engine.
    pub server: SimServer,
    now: Instant,
    latency: Duration,
    /// Device → server datagrams: (due, device, bytes). One latency for
    /// all, so each queue is in due order.
    up: VecDeque<(Instant, u32, Vec<u8>)>,
    /// Server → device datagrams.
    down: VecDeque<(Instant, u32, Vec<u8>)>,
    counts: ServerCounts,
    /// Device-management results not yet taken by [`InProcess::take_response`].
    responses: BTreeMap<DmRequestId, Result<DmResponse, DmError>>,
    delivered: u64,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("now", &self.now)
            .field("devices", &self.fleet.len())
            .field("registered", &self.server.registration_count())
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// Joins `fleet` and `server`; datagrams take `latency` each way. The
    /// clock starts at [`Instant::ZERO`].
    pub fn new(fleet: Fleet, server: SimServer, latency: Duration) -> InProcess {
        InProcess {
            fleet,
            server,
            now: Instant::ZERO,
            latency,
            up: VecDeque::new(),
            down: VecDeque::new(),
            counts: ServerCounts::default(),
            responses: BTreeMap::new(),
            delivered: 0,
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// What the server reported so far.
    pub fn server_counts(&self) -> ServerCounts {
        self.counts
    }

    /// Datagrams delivered so far, both ways.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Moves everything both sides want to send onto the network.
    fn collect(&mut self) {
        let due = self.now + self.latency;
        while let Some(t) = self.fleet.poll_transmit() {
            self.up.push_back((due, t.device, t.bytes));
        }
        while let Some(t) = self.server.poll_transmit() {
            self.down.push_back((due, t.peer, t.bytes));
        }
        while let Some(ev) = self.server.poll_event() {
            match ev {
                ServerEvent::Registered { .. } => self.counts.registered += 1,
                ServerEvent::Updated { .. } => self.counts.updated += 1,
                ServerEvent::Deregistered { .. } => self.counts.deregistered += 1,
                ServerEvent::Expired { .. } => self.counts.expired += 1,
                ServerEvent::Response { id, result, .. } => {
                    self.counts.responses += 1;
                    self.responses.insert(id, result);
                }
                _ => {}
            }
        }
    }

    /// The next moment something is due, if anything is.
    fn next_due(&mut self) -> Option<Instant> {
        [
            self.fleet.poll_timeout(),
            self.server.poll_timeout(),
            self.up.front().map(|(t, _, _)| *t),
            self.down.front().map(|(t, _, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances to the next due moment (at most `limit`) and handles it.
    /// False when nothing is due before `limit` (the clock is then at `limit`).
    pub fn step(&mut self, limit: Instant) -> bool {
        self.collect();
        let Some(next) = self.next_due().filter(|t| *t <= limit) else {
            self.now = self.now.max(limit);
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        self.fleet.handle_timeout(now);
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        while self.up.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, dev, bytes) = self.up.pop_front().expect("front checked");
            self.server.handle_datagram(now, dev, &bytes);
            self.delivered += 1;
        }
        while self.down.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, dev, bytes) = self.down.pop_front().expect("front checked");
            self.fleet.handle_datagram(now, dev, &bytes);
            self.delivered += 1;
        }
        self.collect();
        true
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        while self.step(until) {}
    }

    /// Runs while `keep_going` holds, at most until `limit`; true if it
    /// stopped because `keep_going` turned false.
    pub fn run_while(&mut self, limit: Instant, mut keep_going: impl FnMut(&Self) -> bool) -> bool {
        loop {
            if !keep_going(self) {
                return true;
            }
            if !self.step(limit) {
                return !keep_going(self);
            }
        }
    }

    /// Starts a Read (Discover if `accept` is link-format) of `path` on
    /// device `i` through the server engine.
    pub fn start_read(
        &mut self,
        i: u32,
        path: Path,
        accept: Option<ContentFormat>,
    ) -> Result<DmRequestId, DmError> {
        let ep = self.fleet.endpoint_name(i);
        if accept == Some(ContentFormat::LINK_FORMAT) {
            self.server.discover(self.now, &ep, path)
        } else {
            self.server.read(self.now, &ep, path, accept)
        }
    }

    /// The result of device-management request `id`, once it came.
    pub fn take_response(&mut self, id: DmRequestId) -> Option<Result<DmResponse, DmError>> {
        self.responses.remove(&id)
    }

    /// Number of device-management results waiting to be taken.
    pub fn responses_waiting(&self) -> usize {
        self.responses.len()
    }
}

/// Resident memory of this process (Linux `/proc/self/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS, bytes.
    pub rss: u64,
    /// VmHWM (peak resident), bytes.
    pub hwm: u64,
}

impl Memory {
    /// Now; `None` where `/proc/self/status` is not available.
    pub fn now() -> Option<Memory> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kb: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some(kb * 1024)
        };
        Some(Memory {
            rss: field("VmRSS:")?,
            hwm: field("VmHWM:")?,
        })
    }
}
