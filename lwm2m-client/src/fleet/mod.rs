//! A fleet of simulated LwM2M devices in one sans-IO state machine, for
//! load tests of a server: a million devices fit in well under 100 MB.
//!
//! A simulated device is not a [`Client`](crate::Client): it holds no
//! objects, no CoAP endpoint and no strings. What it has is
//! [`Fleet::DEVICE_BYTES`] of state (phase, message id, token counter, the
//! registration location, one deadline) in a `Vec`, plus one entry in a
//! binary heap of deadlines. Everything the devices have in common lives
//! once in [`SharedObjects`]: the Register payload and the encoded answers
//! to Read and Discover of `/1/0`, `/3/0` and their resources. Endpoint
//! names are `prefix` + the device's index, made when a Register is written.
//!
//! What a device does (TS Core §6.2): Register (`POST /rd?ep=..&lt=..&lwm2m=1.1&b=U`
//! with the object links), Update (`POST /rd/{id}`, no payload) every
//! `lifetime / 2`, register again when an Update is answered 4.04 or fails,
//! answer GET (Read, and Discover with Accept: link-format) from the
//! server, De-register (`DELETE /rd/{id}`) when told to. Requests are CON
//! with RFC 7252 retransmissions; separate responses are acknowledged. A
//! device does one exchange at a time (NSTART 1).
//!
//! Like the engines, [`Fleet`] owns no socket and no clock: a driver feeds
//! datagrams for device `i` to [`Fleet::handle_datagram`], sends what
//! [`Fleet::poll_transmit`] returns from device `i`'s address, and calls
//! [`Fleet::handle_timeout`] at [`Fleet::poll_timeout`]. Two drivers use
//! it: [`in_process`] (with the server engine and a virtual network) and
//! [`udp`] (real sockets).
//!
//! Decisions: requests from the server other than GET are answered 4.05
//! (the simulated objects are read-only); an Observe is answered as a plain
//! read (without the Observe option, which RFC 7641 §2 allows a server that
//! does not want to be observed). Retransmitted server requests are
//! answered again rather than from a dedup cache: GET is idempotent and the
//! cache would cost memory per device.

#[cfg(feature = "fleet")]
pub mod in_process;
#[cfg(feature = "fleet")]
pub mod udp;

use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt::Write as _;

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter};
use lwm2m_core::format::link::{encode_discover, DiscoverEntry};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Instance, Node, Path, Resource, Value};
use lwm2m_core::time::{Duration, Instant};

/// Settings shared by every device of a [`Fleet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// Endpoint names are this prefix followed by the device index.
    pub endpoint_prefix: String,
    /// Registration lifetime (`lt`), seconds; Updates go every half of it.
    pub lifetime: u32,
    /// First Registers are spread evenly over this time from the start.
    pub register_spread: Duration,
    /// ACK_TIMEOUT of RFC 7252 (retransmissions double it).
    pub ack_timeout: Duration,
    /// MAX_RETRANSMIT of RFC 7252.
    pub max_retransmit: u8,
    /// How long a request acknowledged with an empty ACK waits for its
    /// separate response.
    pub response_timeout: Duration,
    /// Wait before registering again after a Register failed.
    pub register_retry: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            endpoint_prefix: "urn:dev:sim-".to_string(),
            lifetime: 300,
            register_spread: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(2),
            max_retransmit: 4,
            response_timeout: Duration::from_secs(93),
            register_retry: Duration::from_secs(30),
        }
    }
}

/// Read and Discover answers shared by every device, encoded once.
#[derive(Debug, Clone)]
pub struct SharedObjects {
    register_payload: Vec<u8>,
    /// Per path: the encodings (format, bytes) a Read may be answered with;
    /// the first is the answer without Accept.
    reads: BTreeMap<Path, Vec<(ContentFormat, Vec<u8>)>>,
    discovers: BTreeMap<Path, Vec<u8>>,
}

/// Formats a device answers a Read in; the first is used without Accept.
const READ_FORMATS: [ContentFormat; 4] = [
    ContentFormat::TLV,
    ContentFormat::SENML_JSON,
    ContentFormat::SENML_CBOR,
    ContentFormat::LWM2M_CBOR,
];

impl SharedObjects {
    /// A Server object instance `/1/0` and a Device object instance `/3/0`
    /// with the values every simulated device reports.
    pub fn standard(lifetime: u32) -> SharedObjects {
        let server = Instance::new(
            0,
            [
                Resource::single(0, Value::Integer(1)),
                Resource::single(1, Value::Integer(i64::from(lifetime))),
                Resource::single(6, Value::Boolean(false)),
                Resource::single(7, Value::String("U".into())),
            ],
        );
        let device = Instance::new(
            0,
            [
                Resource::single(0, Value::String("lwm2m-rs".into())),
                Resource::single(1, Value::String("lwm2m-fleet simulated device".into())),
                Resource::single(2, Value::String("SIM-0001".into())),
                Resource::single(3, Value::String("1.0".into())),
                Resource::multiple(6, [(0, Value::Integer(1))]),
                Resource::single(9, Value::Integer(100)),
                Resource::multiple(11, [(0, Value::Integer(0))]),
                Resource::single(13, Value::Time(1_764_720_000)),
                Resource::single(16, Value::String("U".into())),
            ],
        );
        SharedObjects::new(&[(1, server), (3, device)])
    }

    /// Answers for the given object instances (object id, instance).
    pub fn new(instances: &[(u16, Instance)]) -> SharedObjects {
        let mut reads = BTreeMap::new();
        let mut discovers = BTreeMap::new();
        let mut payload = String::from("</>;rt=\"oma.lwm2m\";ct=11542");
        for (obj, inst) in instances {
            let _ = write!(payload, ",</{obj}/{}>", inst.id);
            let ipath = Path::Instance(*obj, inst.id);
            let mut nodes = vec![(ipath, Node::Instance(inst.clone()))];
            for r in inst.resources.values() {
                nodes.push((
                    Path::Resource(*obj, inst.id, r.id),
                    Node::Resource(r.clone()),
                ));
            }
            for (path, node) in &nodes {
                let encoded: Vec<(ContentFormat, Vec<u8>)> = READ_FORMATS
                    .iter()
                    .filter_map(|cf| {
                        let mut out = Vec::new();
                        format::encode(*cf, node, path, &mut out).ok()?;
                        Some((*cf, out))
                    })
                    .collect();
                reads.insert(*path, encoded);
            }
            let mut entries = vec![DiscoverEntry::new(ipath)];
            entries.extend(
                inst.resources
                    .keys()
                    .map(|r| DiscoverEntry::new(Path::Resource(*obj, inst.id, *r))),
            );
            let mut out = Vec::new();
            if encode_discover(&entries, &mut out).is_ok() {
                discovers.insert(ipath, out.clone());
                discovers.entry(Path::Object(*obj)).or_insert(out);
            }
        }
        SharedObjects {
            register_payload: payload.into_bytes(),
            reads,
            discovers,
        }
    }

    /// The Register payload (link format).
    pub fn register_payload(&self) -> &[u8] {
        &self.register_payload
    }

    /// The answer to a Read of `path` with `accept`: content format and
    /// bytes, or the error code (4.04 unknown path, 4.06 format refused).
    pub fn read(
        &self,
        path: &Path,
        accept: Option<ContentFormat>,
    ) -> Result<(ContentFormat, &[u8]), Code> {
        let encodings = self.reads.get(path).ok_or(Code::NOT_FOUND)?;
        let found = match accept {
            None => encodings.first(),
            Some(cf) => encodings.iter().find(|(f, _)| *f == cf),
        };
        found
            .map(|(cf, b)| (*cf, b.as_slice()))
            .ok_or(Code::NOT_ACCEPTABLE)
    }

    /// The answer to a Discover of `path` (link format), or 4.04.
    pub fn discover(&self, path: &Path) -> Result<&[u8], Code> {
        self.discovers
            .get(path)
            .map(Vec::as_slice)
            .ok_or(Code::NOT_FOUND)
    }

    /// Bytes held by the answers (what all devices share).
    pub fn heap_bytes(&self) -> usize {
        self.register_payload.capacity()
            + self
                .reads
                .values()
                .flat_map(|v| v.iter().map(|(_, b)| b.capacity() + 32))
                .sum::<usize>()
            + self.discovers.values().map(Vec::capacity).sum::<usize>()
    }
}

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for its (first or next) Register.
    Unregistered,
    /// A Register is in flight.
    Registering,
    /// Registered; the deadline is the next Update.
    Registered,
    /// An Update is in flight.
    Updating,
    /// A De-register is in flight.
    Deregistering,
    /// De-registered (or the De-register failed): done.
    Done,
}

/// Location tag: none.
const LOC_NONE: u8 = 0;
/// Location tag: `/rd/{20 lowercase hex digits}`, kept as 10 bytes.
const LOC_HEX20: u8 = 0xFE;
/// Location tag: kept in [`Fleet::long_locations`].
const LOC_LONG: u8 = 0xFF;
/// Longest `/rd/{x}` segment kept inline as raw bytes (tag = its length).
const LOC_INLINE: usize = 12;
/// No deadline.
const NEVER: u64 = u64::MAX;

/// One simulated device: [`Fleet::DEVICE_BYTES`] bytes.
#[derive(Debug, Clone, Copy)]
struct Device {
    /// Milliseconds; [`NEVER`] for none. The heap may hold stale entries:
    /// an entry counts only if it equals this.
    deadline: u64,
    /// Exchange counter: the token of the request in flight.
    seq: u32,
    /// Message id of the request in flight (the next one is `mid + 1`).
    mid: u16,
    /// Successful Updates (saturating).
    updates: u16,
    phase: Phase,
    /// Transmissions of the request in flight so far; 0xFF once an empty
    /// ACK came (waiting for the separate response).
    tries: u8,
    loc_tag: u8,
    loc: [u8; LOC_INLINE],
}

/// Waiting for a separate response.
const ACKED: u8 = 0xFF;

/// A datagram a device sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The sending device's index.
    pub device: u32,
    /// The CoAP message.
    pub bytes: Vec<u8>,
}

/// An exchange of a device that ended with a datagram (for the driver's
/// round-trip measurement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// Register answered 2.01.
    Registered,
    /// Update answered 2.04.
    Updated,
    /// Update answered 4.04: the device registers again.
    UpdateRefused,
    /// De-register answered.
    Deregistered,
    /// Register or Update answered with another code: the device
    /// registers again (at once after an Update, later after a Register).
    Failed,
    /// A request of the server was answered.
    Answered,
}

/// Counters over the whole fleet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// Registers sent (first transmissions).
    pub registers_sent: u64,
    /// Registers answered 2.01.
    pub registrations: u64,
    /// Registers refused or timed out.
    pub register_failures: u64,
    /// Updates answered 2.04.
    pub updates: u64,
    /// Updates answered 4.04 (the device registered again).
    pub update_not_found: u64,
    /// Updates failed otherwise (timeout, other error): registered again.
    pub update_failures: u64,
    /// De-registers answered 2.02.
    pub deregistrations: u64,
    /// Retransmissions of CON requests.
    pub retransmissions: u64,
    /// Reads answered 2.05.
    pub reads: u64,
    /// Discovers answered 2.05.
    pub discovers: u64,
    /// Server requests answered with an error code.
    pub requests_refused: u64,
    /// Datagrams that were not for an exchange in flight (duplicates, junk).
    pub ignored: u64,
}

/// Many simulated devices (see the module doc).
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    shared: SharedObjects,
    devices: Vec<Device>,
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    transmits: VecDeque<Transmit>,
    /// Locations that fit no inline form: every segment.
    long_locations: BTreeMap<u32, Vec<Vec<u8>>>,
    /// Once set, due devices De-register instead of updating.
    ending: bool,
    registered: usize,
    stats: FleetStats,
}

impl Fleet {
    /// Bytes of state per device, besides its timer-heap entry.
    pub const DEVICE_BYTES: usize = core::mem::size_of::<Device>();

    /// `count` devices, which register from `start` on, spread over
    /// [`FleetConfig::register_spread`].
    pub fn new(config: FleetConfig, shared: SharedObjects, count: u32, start: Instant) -> Fleet {
        let spread = u64::try_from(config.register_spread.as_millis()).unwrap_or(u64::MAX);
        let mut devices = Vec::with_capacity(count as usize);
        let mut timers = BinaryHeap::with_capacity(count as usize);
        for i in 0..count {
            let at =
                start.as_millis() + spread.saturating_mul(u64::from(i)) / u64::from(count.max(1));
            devices.push(Device {
                deadline: at,
                seq: 0,
                mid: (mix(u64::from(i)) & 0xFFFF) as u16,
                updates: 0,
                phase: Phase::Unregistered,
                tries: 0,
                loc_tag: LOC_NONE,
                loc: [0; LOC_INLINE],
            });
            timers.push(Reverse((at, i)));
        }
        Fleet {
            config,
            shared,
            devices,
            timers,
            transmits: VecDeque::new(),
            long_locations: BTreeMap::new(),
            ending: false,
            registered: 0,
            stats: FleetStats::default(),
        }
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True for a fleet of no devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Devices registered now.
    pub fn registered(&self) -> usize {
        self.registered
    }

    /// The counters.
    pub fn stats(&self) -> FleetStats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Where device `i` is.
    pub fn phase(&self, i: u32) -> Option<Phase> {
        self.devices.get(i as usize).map(|d| d.phase)
    }

    /// Successful Updates of device `i` (saturating at 65535).
    pub fn updates_of(&self, i: u32) -> u16 {
        self.devices.get(i as usize).map_or(0, |d| d.updates)
    }

    /// The endpoint name of device `i`.
    pub fn endpoint_name(&self, i: u32) -> String {
        format!("{}{i}", self.config.endpoint_prefix)
    }

    /// The registration location of device `i` (`/rd/...`), if registered.
    pub fn location(&self, i: u32) -> Option<String> {
        let mut out = String::new();
        self.for_location_segments(i, |seg| {
            out.push('/');
            out.push_str(&String::from_utf8_lossy(seg));
        });
        (!out.is_empty()).then_some(out)
    }

    /// Bytes held by the fleet's own structures (devices, timers, queued
    /// datagrams, shared answers), from their capacities.
    pub fn heap_bytes(&self) -> usize {
        self.devices.capacity() * Self::DEVICE_BYTES
            + self.timers.capacity() * core::mem::size_of::<Reverse<(u64, u32)>>()
            + self
                .transmits
                .iter()
                .map(|t| t.bytes.capacity())
                .sum::<usize>()
            + self.transmits.capacity() * core::mem::size_of::<Transmit>()
            + self.long_locations.len() * 64
            + self.shared.heap_bytes()
    }

    /// From now on, each registered device De-registers at its next
    /// deadline; `spread` > 0 moves all deadlines into `[now, now + spread)`.
    pub fn deregister_all(&mut self, now: Instant, spread: Duration) {
        self.ending = true;
        let spread = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
        let n = self.devices.len().max(1) as u64;
        for i in 0..self.devices.len() as u32 {
            let d = &mut self.devices[i as usize];
            match d.phase {
                Phase::Registered => {
                    let at = now.as_millis() + spread.saturating_mul(u64::from(i)) / n;
                    self.set_deadline(i, at);
                }
                Phase::Unregistered => {
                    d.phase = Phase::Done;
                    d.deadline = NEVER;
                }
                _ => {}
            }
        }
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`Fleet::handle_timeout`] is next due.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, i))) = self.timers.peek().copied() {
            if self.devices[i as usize].deadline == at {
                return Some(Instant::from_millis(at));
            }
            self.timers.pop();
        }
        None
    }

    /// Time passed: Registers, Updates, retransmissions, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_ms = now.as_millis();
        while let Some(Reverse((at, i))) = self.timers.peek().copied() {
            if at > now_ms {
                break;
            }
            self.timers.pop();
            if self.devices[i as usize].deadline != at {
                continue;
            }
            self.devices[i as usize].deadline = NEVER;
            self.on_deadline(now_ms, i);
        }
    }

    fn set_deadline(&mut self, i: u32, at: u64) {
        self.devices[i as usize].deadline = at;
        self.timers.push(Reverse((at, i)));
    }

    fn on_deadline(&mut self, now: u64, i: u32) {
        let d = self.devices[i as usize];
        match d.phase {
            Phase::Unregistered => self.start(now, i, Phase::Registering),
            Phase::Registered if self.ending => self.start(now, i, Phase::Deregistering),
            Phase::Registered => self.start(now, i, Phase::Updating),
            Phase::Registering | Phase::Updating | Phase::Deregistering => {
                if d.tries != ACKED && d.tries <= self.config.max_retransmit {
                    self.stats.retransmissions += 1;
                    self.transmit_request(now, i);
                } else {
                    self.exchange_failed(now, i);
                }
            }
            Phase::Done => {}
        }
    }

    /// Starts a new exchange of device `i`.
    fn start(&mut self, now: u64, i: u32, phase: Phase) {
        let d = &mut self.devices[i as usize];
        d.phase = phase;
        d.seq = d.seq.wrapping_add(1);
        d.mid = d.mid.wrapping_add(1);
        d.tries = 0;
        if phase == Phase::Registering {
            self.stats.registers_sent += 1;
        }
        self.transmit_request(now, i);
    }

    /// (Re)sends the request in flight of device `i` and arms its
    /// retransmission timer (ACK_TIMEOUT × a factor in [1, 1.5), doubled
    /// per transmission).
    fn transmit_request(&mut self, now: u64, i: u32) {
        let bytes = self.request_bytes(i);
        let d = &mut self.devices[i as usize];
        let base = u64::try_from(self.config.ack_timeout.as_millis()).unwrap_or(u64::MAX);
        let jitter = mix(u64::from(i) << 32 | u64::from(d.seq)) % (base / 2 + 1);
        let timeout = (base + jitter).saturating_mul(1 << d.tries.min(16));
        d.tries += 1;
        self.transmits.push_back(Transmit { device: i, bytes });
        self.set_deadline(i, now.saturating_add(timeout));
    }

    /// The CoAP request device `i` has in flight; a pure function of its
    /// state, so retransmissions rebuild it instead of keeping bytes.
    fn request_bytes(&self, i: u32) -> Vec<u8> {
        let d = &self.devices[i as usize];
        let token = d.seq.to_be_bytes();
        let mut buf = Vec::with_capacity(64);
        let code = if d.phase == Phase::Deregistering {
            Code::DELETE
        } else {
            Code::POST
        };
        let mut w = MessageWriter::udp(&mut buf, MessageType::Con, code, d.mid, &token)
            .expect("4-byte token");
        // Option writes cannot fail: every value is far below 64 KiB.
        if d.phase == Phase::Registering {
            let _ = w.option(number::URI_PATH, b"rd");
            let _ = w.uint_option(number::CONTENT_FORMAT, 40);
            let ep = format!("ep={}{i}", self.config.endpoint_prefix);
            let _ = w.option(number::URI_QUERY, ep.as_bytes());
            let lt = format!("lt={}", self.config.lifetime);
            let _ = w.option(number::URI_QUERY, lt.as_bytes());
            let _ = w.option(number::URI_QUERY, b"lwm2m=1.1");
            let _ = w.option(number::URI_QUERY, b"b=U");
            w.finish(&self.shared.register_payload);
        } else {
            let mut segs: Vec<Vec<u8>> = Vec::with_capacity(2);
            self.for_location_segments(i, |s| segs.push(s.to_vec()));
            for s in &segs {
                let _ = w.option(number::URI_PATH, s);
            }
            w.finish(&[]);
        }
        buf
    }

    fn for_location_segments(&self, i: u32, mut f: impl FnMut(&[u8])) {
        let Some(d) = self.devices.get(i as usize) else {
            return;
        };
        match d.loc_tag {
            LOC_NONE => {}
            LOC_HEX20 => {
                let mut hex = [0u8; 20];
                for (k, b) in d.loc[..10].iter().enumerate() {
                    hex[2 * k] = HEX[usize::from(b >> 4)];
                    hex[2 * k + 1] = HEX[usize::from(b & 15)];
                }
                f(b"rd");
                f(&hex);
            }
            LOC_LONG => {
                for s in self.long_locations.get(&i).into_iter().flatten() {
                    f(s);
                }
            }
            n => {
                f(b"rd");
                f(&d.loc[..usize::from(n)]);
            }
        }
    }

    fn set_location<'a>(&mut self, i: u32, segments: impl Iterator<Item = &'a [u8]>) {
        let segs: Vec<&[u8]> = segments.collect();
        self.long_locations.remove(&i);
        let d = &mut self.devices[i as usize];
        match segs.as_slice() {
            [rd, id] if *rd == b"rd" && id.len() == 20 && id.iter().all(|c| HEX.contains(c)) => {
                for k in 0..10 {
                    d.loc[k] = (hex_val(id[2 * k]) << 4) | hex_val(id[2 * k + 1]);
                }
                d.loc_tag = LOC_HEX20;
            }
            [rd, id] if *rd == b"rd" && !id.is_empty() && id.len() <= LOC_INLINE => {
                d.loc[..id.len()].copy_from_slice(id);
                d.loc_tag = id.len() as u8;
            }
            _ => {
                d.loc_tag = LOC_LONG;
                self.long_locations
                    .insert(i, segs.iter().map(|s| s.to_vec()).collect());
            }
        }
    }

    /// A datagram arrived for device `i`. Returns the exchange it ended, if any.
    pub fn handle_datagram(&mut self, now: Instant, i: u32, bytes: &[u8]) -> Option<Completed> {
        let Ok(msg) = Message::parse(bytes) else {
            self.stats.ignored += 1;
            return None;
        };
        if i as usize >= self.devices.len() {
            self.stats.ignored += 1;
            return None;
        }
        let now = now.as_millis();
        if msg.code.is_request() {
            return self.on_server_request(i, &msg);
        }
        let d = self.devices[i as usize];
        let in_flight = matches!(
            d.phase,
            Phase::Registering | Phase::Updating | Phase::Deregistering
        );
        match msg.mtype {
            MessageType::Ack | MessageType::Rst if in_flight && msg.message_id == d.mid => {
                if msg.mtype == MessageType::Rst {
                    self.exchange_failed(now, i);
                    return None;
                }
                if msg.code == Code::EMPTY {
                    // Separate response to come.
                    self.devices[i as usize].tries = ACKED;
                    let wait =
                        u64::try_from(self.config.response_timeout.as_millis()).unwrap_or(u64::MAX);
                    self.set_deadline(i, now.saturating_add(wait));
                    return None;
                }
                if msg.token != d.seq.to_be_bytes() {
                    self.stats.ignored += 1;
                    return None;
                }
                Some(self.on_response(now, i, &msg))
            }
            MessageType::Con | MessageType::Non if msg.code.is_response() => {
                let ours = in_flight && msg.token == d.seq.to_be_bytes();
                if msg.mtype == MessageType::Con {
                    // Acknowledge (or reject, RFC 7252 §4.2) either way.
                    let mtype = if ours {
                        MessageType::Ack
                    } else {
                        MessageType::Rst
                    };
                    let mut buf = Vec::with_capacity(4);
                    let w = MessageWriter::udp(&mut buf, mtype, Code::EMPTY, msg.message_id, &[])
                        .expect("empty token");
                    w.finish(&[]);
                    self.transmits.push_back(Transmit {
                        device: i,
                        bytes: buf,
                    });
                }
                if !ours {
                    self.stats.ignored += 1;
                    return None;
                }
                Some(self.on_response(now, i, &msg))
            }
            _ => {
                self.stats.ignored += 1;
                None
            }
        }
    }

    /// The response to device `i`'s request in flight.
    fn on_response(&mut self, now: u64, i: u32, msg: &Message<'_>) -> Completed {
        let phase = self.devices[i as usize].phase;
        match phase {
            Phase::Registering if msg.code == Code::CREATED && msg.location_path().count() == 0 => {
                // Nowhere to send Updates to: as good as refused.
                self.exchange_failed(now, i);
                Completed::Failed
            }
            Phase::Registering if msg.code == Code::CREATED => {
                self.set_location(i, msg.location_path());
                self.devices[i as usize].phase = Phase::Registered;
                self.registered += 1;
                self.stats.registrations += 1;
                self.set_deadline(i, self.next_update(now));
                Completed::Registered
            }
            Phase::Updating if msg.code == Code::CHANGED => {
                let d = &mut self.devices[i as usize];
                d.phase = Phase::Registered;
                d.updates = d.updates.saturating_add(1);
                self.stats.updates += 1;
                self.set_deadline(i, self.next_update(now));
                Completed::Updated
            }
            Phase::Updating if msg.code == Code::NOT_FOUND => {
                // The server forgot the registration: register again now.
                self.stats.update_not_found += 1;
                self.lose_registration(i);
                self.start(now, i, Phase::Registering);
                Completed::UpdateRefused
            }
            Phase::Deregistering => {
                if msg.code == Code::DELETED {
                    self.stats.deregistrations += 1;
                }
                self.lose_registration(i);
                self.devices[i as usize].phase = Phase::Done;
                Completed::Deregistered
            }
            _ => {
                self.exchange_failed(now, i);
                Completed::Failed
            }
        }
    }

    /// When a device just registered or updated acts next: Update at
    /// lifetime / 2, or De-register at once once the fleet is ending.
    fn next_update(&self, now: u64) -> u64 {
        if self.ending {
            now
        } else {
            now + u64::from(self.config.lifetime) * 500
        }
    }

    fn lose_registration(&mut self, i: u32) {
        let d = &mut self.devices[i as usize];
        if matches!(
            d.phase,
            Phase::Registered | Phase::Updating | Phase::Deregistering
        ) {
            self.registered -= 1;
        }
        d.loc_tag = LOC_NONE;
        d.deadline = NEVER;
        self.long_locations.remove(&i);
    }

    /// The request in flight of device `i` timed out or was refused.
    fn exchange_failed(&mut self, now: u64, i: u32) {
        let retry = u64::try_from(self.config.register_retry.as_millis()).unwrap_or(u64::MAX);
        match self.devices[i as usize].phase {
            Phase::Registering => {
                self.stats.register_failures += 1;
                self.devices[i as usize].phase = Phase::Unregistered;
                let jitter = mix(u64::from(i) ^ now) % (retry / 4 + 1);
                self.set_deadline(i, now + retry + jitter);
            }
            Phase::Updating => {
                self.stats.update_failures += 1;
                self.lose_registration(i);
                self.start(now, i, Phase::Registering);
            }
            Phase::Deregistering => {
                self.lose_registration(i);
                self.devices[i as usize].phase = Phase::Done;
            }
            _ => {}
        }
    }

    /// A request of the server to device `i`: answered piggybacked (CON)
    /// or with a NON response.
    fn on_server_request(&mut self, i: u32, msg: &Message<'_>) -> Option<Completed> {
        let path = Path::from_segments(
            msg.uri_path()
                .map(|s| core::str::from_utf8(s).unwrap_or("x")),
        );
        let accept = msg.accept().map(ContentFormat);
        let answer = match (msg.code, path) {
            (Code::GET, Ok(path)) if accept == Some(ContentFormat::LINK_FORMAT) => self
                .shared
                .discover(&path)
                .map(|b| (ContentFormat::LINK_FORMAT, b)),
            (Code::GET, Ok(path)) => self.shared.read(&path, accept),
            (Code::GET, Err(_)) => Err(Code::NOT_FOUND),
            _ => Err(Code::METHOD_NOT_ALLOWED),
        };
        let (mtype, mid) = if msg.mtype == MessageType::Con {
            (MessageType::Ack, msg.message_id)
        } else {
            // A NON response needs an id of its own: one far from the
            // device's request ids, which count up from `mid`.
            (
                MessageType::Non,
                self.devices[i as usize].mid.wrapping_add(0x8000),
            )
        };
        let mut buf = Vec::with_capacity(64);
        let code = match answer {
            Ok(_) => Code::CONTENT,
            Err(c) => c,
        };
        let mut w = MessageWriter::udp(&mut buf, mtype, code, mid, msg.token).ok()?;
        match answer {
            Ok((cf, body)) => {
                let _ = w.uint_option(number::CONTENT_FORMAT, u32::from(cf.0));
                w.finish(body);
                if cf == ContentFormat::LINK_FORMAT {
                    self.stats.discovers += 1;
                } else {
                    self.stats.reads += 1;
                }
            }
            Err(_) => {
                w.finish(&[]);
                self.stats.requests_refused += 1;
            }
        }
        self.transmits.push_back(Transmit {
            device: i,
            bytes: buf,
        });
        Some(Completed::Answered)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

/// SplitMix64's output function: jitter that depends on its input alone.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
