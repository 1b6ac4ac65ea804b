//! Helpers for interop tests against third-party peers.
//!
//! * [`UdpDriver`]: a small blocking driver that runs a sans-IO
//!   [`Endpoint`] over a `std::net::UdpSocket` bound to `127.0.0.1:0`, with a
//!   monotonic [`Clock`] and the OS random number generator ([`OsRng`]).
//! * [`PeerProcess`]: a third-party program run for a bounded time, killed
//!   and reaped when the guard drops (or when its lifetime runs out, by a
//!   watchdog thread), with its output captured for failure messages.
//! * Tool lookup ([`coap_client`], [`coap_server`], [`aiocoap_python`]):
//!   environment variable first, then `PATH` or the repository's `.venv`. A
//!   missing tool is a test failure that says how to install it, never a
//!   silent pass.
//! * [`free_udp_port`], [`wait_for_coap_ping`], [`TempDir`].
//! * [`our_client::OurClient`]: our own LwM2M client on a thread of its own.
//! * [`cargo_bin`]: builds and locates a binary of another workspace crate.
//! * [`node`], [`node_peers_dir`]: the Node.js peers (lwm2m-node-lib).
//! * [`node_interpreter`], [`chromium`], [`web_ui_dir`]: the web UI's
//!   browser tests (playwright-core driving Debian's headless Chromium).
//! * [`demo`]: the demo binaries `lwm2m-server` and `lwm2m-client` as
//!   processes (free ports, addresses and registrations from the logs).
//!
//! Every socket here binds 127.0.0.1 only.
#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use lwm2m_core::coap::endpoint::{CancelReason, ObservationId};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{
    BlockValue, Code, Endpoint, EndpointConfig, Event, Message, MessageType, Request, Response,
};
use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::{Duration, Instant};

pub mod demo;
pub mod our_client;

/// The command that installs every third-party peer the tests need.
pub const INSTALL_HINT: &str = "run ./scripts/install-test-deps from the repository root";

// ---------------------------------------------------------------------------
// Time and randomness
// ---------------------------------------------------------------------------

/// Randomness from the operating system (`getrandom`): tokens and initial
/// message ids then differ between runs, as they would in production, so the
/// tests do not depend on one lucky seed. (`getrandom` is already in the
/// workspace's lock file through proptest, so it adds no new crate.)
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRng;

impl RandomSource for OsRng {
    fn fill_bytes(&mut self, buf: &mut [u8]) {
        // Without OS randomness nothing here can run; a test helper may panic.
        getrandom::fill(buf).expect("the operating system's random number generator failed");
    }
}

/// A monotonic clock whose epoch is its creation, read as the core's
/// millisecond [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            start: std::time::Instant::now(),
        }
    }

    /// Milliseconds since the clock was created.
    pub fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

// ---------------------------------------------------------------------------
// The UDP driver
// ---------------------------------------------------------------------------

/// The endpoint type the driver runs: peers are socket addresses.
pub type UdpEndpoint = Endpoint<SocketAddr, OsRng>;

/// Why [`UdpDriver::run_until`] stopped without a result.
#[derive(Debug)]
pub enum RunError {
    /// The deadline passed.
    Timeout(Duration),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Timeout(d) => write!(f, "nothing conclusive within {d:?}"),
            RunError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        RunError::Io(e)
    }
}

/// A datagram the driver sent or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRecord {
    /// When, on the driver's clock.
    pub at: Instant,
    /// Sent by us (true) or received (false).
    pub outgoing: bool,
    /// The other side.
    pub peer: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
    /// An outgoing datagram the loss filter dropped instead of sending.
    pub dropped: bool,
}

impl WireRecord {
    /// The datagram parsed, `None` if it is not a valid CoAP message.
    pub fn message(&self) -> Option<Message<'_>> {
        Message::parse(&self.bytes).ok()
    }
}

/// Runs an [`Endpoint`] over a blocking UDP socket bound to `127.0.0.1:0`.
///
/// Nothing happens in the background: I/O and timers run only inside
/// [`UdpDriver::run_until`] (and [`UdpDriver::request`]), which bound their
/// own time. Every datagram is logged to stderr in one line (the test
/// harness shows it only when a test fails) and kept in [`UdpDriver::wire`]
/// for tests that check what went over the wire.
pub struct UdpDriver {
    socket: UdpSocket,
    /// The endpoint; use it freely between runs (send requests, respond...).
    pub endpoint: UdpEndpoint,
    clock: Clock,
    tick: Duration,
    name: &'static str,
    buf: Vec<u8>,
    wire: Vec<WireRecord>,
    loss: Option<LossFilter>,
}

/// Decides which outgoing datagrams are lost: see [`UdpDriver::set_outgoing_loss`].
pub type LossFilter = Box<dyn FnMut(&Message<'_>) -> bool>;

impl fmt::Debug for UdpDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpDriver")
            .field("name", &self.name)
            .field("local_addr", &self.socket.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl UdpDriver {
    /// Binds `127.0.0.1:0` and creates an endpoint with `config`. `name`
    /// prefixes the datagram log.
    pub fn bind(name: &'static str, config: EndpointConfig) -> io::Result<UdpDriver> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        Ok(UdpDriver {
            socket,
            endpoint: Endpoint::new(config, OsRng),
            clock: Clock::new(),
            tick: Duration::from_millis(20),
            name,
            // Largest UDP payload: nothing a peer sends is cut short.
            buf: vec![0; 65_536],
            wire: Vec::new(),
            loss: None,
        })
    }

    /// The address peers reach this endpoint at.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound UDP socket has a local address")
    }

    /// The driver's current time, for calls into the endpoint.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Sets how often `run_until` calls its closure with `None` when
    /// nothing happens (default 20 ms).
    pub fn set_tick(&mut self, tick: Duration) {
        self.tick = tick.max(Duration::from_millis(1));
    }

    /// Every datagram sent and received so far, in order.
    pub fn wire(&self) -> &[WireRecord] {
        &self.wire
    }

    /// Simulates the loss of our own datagrams: every outgoing datagram for
    /// which `filter` returns true is dropped instead of sent (and recorded
    /// with `dropped` set). `None` sends everything again.
    pub fn set_outgoing_loss(&mut self, filter: Option<LossFilter>) {
        self.loss = filter;
    }

    /// Sends everything the endpoint has queued.
    pub fn flush(&mut self) -> io::Result<()> {
        while let Some(t) = self.endpoint.poll_transmit() {
            let now = self.clock.now();
            let dropped = match (&mut self.loss, Message::parse(&t.bytes)) {
                (Some(filter), Ok(m)) => filter(&m),
                _ => false,
            };
            eprintln!(
                "[{} +{}ms] -> {} {}{}",
                self.name,
                now.as_millis(),
                t.peer,
                describe(&t.bytes),
                if dropped { " (dropped)" } else { "" }
            );
            if !dropped {
                self.socket.send_to(&t.bytes, t.peer)?;
            }
            self.wire.push(WireRecord {
                at: now,
                outgoing: true,
                peer: t.peer,
                bytes: t.bytes,
                dropped,
            });
        }
        Ok(())
    }

    /// Runs I/O and timers until `step` returns `Some`, or fails after
    /// `timeout`. `step` is called with each event as it comes out of the
    /// endpoint, and with `None` at least every tick, so it can also wait
    /// for something outside the endpoint (a child process exiting). It may
    /// call into the endpoint (respond, notify, send requests); what that
    /// queues is sent right after.
    pub fn run_until<T>(
        &mut self,
        timeout: Duration,
        mut step: impl FnMut(&mut UdpEndpoint, Instant, Option<Event<SocketAddr>>) -> Option<T>,
    ) -> Result<T, RunError> {
        let deadline = self.clock.now() + timeout;
        loop {
            let now = self.clock.now();
            self.endpoint.handle_timeout(now);
            self.flush()?;
            while let Some(event) = self.endpoint.poll_event() {
                let done = step(&mut self.endpoint, now, Some(event));
                self.flush()?;
                if let Some(t) = done {
                    return Ok(t);
                }
            }
            let done = step(&mut self.endpoint, now, None);
            self.flush()?;
            if let Some(t) = done {
                return Ok(t);
            }
            if now >= deadline {
                return Err(RunError::Timeout(timeout));
            }
            let mut wait = (deadline - now).min(self.tick);
            if let Some(at) = self.endpoint.poll_timeout() {
                wait = wait.min(at - now);
            }
            // A zero read timeout is an error for std; 1 ms also keeps a
            // timer due "now" from spinning.
            self.socket
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let now = self.clock.now();
                    let bytes = self.buf.get(..n).unwrap_or_default();
                    eprintln!(
                        "[{} +{}ms] <- {} {}",
                        self.name,
                        now.as_millis(),
                        from,
                        describe(bytes)
                    );
                    self.endpoint.handle_datagram(now, from, bytes);
                    self.wire.push(WireRecord {
                        at: now,
                        outgoing: false,
                        peer: from,
                        bytes: bytes.to_vec(),
                        dropped: false,
                    });
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                            // ICMP port unreachable from a peer not listening (yet):
                            // retransmission deals with it like with a lost datagram.
                            | io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends `request` to `peer` and runs until its response (reassembled
    /// if block-wise). Events about other exchanges are dropped. A failed
    /// request or a timeout is an `Err` with a message saying which.
    pub fn request(
        &mut self,
        peer: SocketAddr,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, String> {
        let what = format!("{} {}", request.code, request.path());
        let id = self
            .endpoint
            .send_request(self.clock.now(), peer, request)
            .map_err(|e| format!("{what} to {peer}: not sent: {e}"))?;
        self.run_until(timeout, |_, _, event| match event {
            Some(Event::Response { id: r, response }) if r == id => Some(Ok(response)),
            Some(Event::RequestFailed { id: r, error }) if r == id => {
                Some(Err(format!("{what} to {peer} failed: {error:?}")))
            }
            _ => None,
        })
        .map_err(|e| format!("{what} to {peer}: {e}"))?
    }
}

/// One line about a datagram for the logs: type, code, message id, token,
/// the options (block options decoded) and the payload size.
pub fn describe(bytes: &[u8]) -> String {
    let msg = match Message::parse(bytes) {
        Ok(m) => m,
        Err(e) => return format!("unparsable ({e}), {} bytes", bytes.len()),
    };
    let mtype = match msg.mtype {
        MessageType::Con => "CON",
        MessageType::Non => "NON",
        MessageType::Ack => "ACK",
        MessageType::Rst => "RST",
    };
    let mut s = format!("{mtype} {} mid={} tok=", msg.code, msg.message_id);
    for b in msg.token {
        s.push_str(&format!("{b:02x}"));
    }
    s.push_str(" [");
    for (i, o) in msg.options().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let uint = || o.value.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
        match o.number {
            number::BLOCK1 | number::BLOCK2 => {
                let name = if o.number == number::BLOCK1 {
                    "B1"
                } else {
                    "B2"
                };
                match BlockValue::decode(uint()) {
                    Some(b) => s.push_str(&format!(
                        "{name}:{}/{}/{}",
                        b.num,
                        if b.more { "M" } else { "_" },
                        b.size()
                    )),
                    None => s.push_str(&format!("{name}:bad")),
                }
            }
            number::URI_PATH => {
                s.push_str(&format!("path:{}", String::from_utf8_lossy(o.value)));
            }
            number::URI_QUERY => {
                s.push_str(&format!("query:{}", String::from_utf8_lossy(o.value)));
            }
            number::OBSERVE => s.push_str(&format!("obs:{}", uint())),
            n if o.value.len() <= 4 => s.push_str(&format!("{n}:{}", uint())),
            n => s.push_str(&format!("{n}:<{} bytes>", o.value.len())),
        }
    }
    s.push_str(&format!("] {}B", msg.payload.len()));
    s
}

// ---------------------------------------------------------------------------
// A small server application for third-party clients
// ---------------------------------------------------------------------------

/// The resources our endpoint serves to third-party clients:
///
/// * `GET /hello`: [`DemoServer::hello`], text;
/// * `GET /big`: [`DemoServer::big`] (block-wise when larger than a block);
/// * `PUT /upload`: stores the body in [`DemoServer::uploaded`], 2.04;
/// * `GET /counter`: `n=<counter>`, observable; while observed, the counter
///   goes up and a CON notification goes out every 200 ms.
///
/// Anything else is 4.04.
#[derive(Debug)]
pub struct DemoServer {
    /// Body of /hello.
    pub hello: Vec<u8>,
    /// Body of /big.
    pub big: Vec<u8>,
    /// Last body PUT to /upload.
    pub uploaded: Option<Vec<u8>>,
    /// PUTs to /upload the application saw.
    pub puts: usize,
    /// Observations of /counter being served.
    pub observers: Vec<ObservationId>,
    /// Notifications sent so far (the counter's value).
    pub counter: u32,
    /// Why observations ended, in order.
    pub cancelled: Vec<CancelReason>,
    next_notify: Option<Instant>,
}

impl DemoServer {
    /// The resources, with `big` as the body of /big.
    pub fn new(big: Vec<u8>) -> DemoServer {
        DemoServer {
            hello: b"hello from lwm2m-rs".to_vec(),
            big,
            uploaded: None,
            puts: 0,
            observers: Vec::new(),
            counter: 0,
            cancelled: Vec::new(),
            next_notify: None,
        }
    }

    /// Handles one step of [`UdpDriver::run_until`]: answers requests, and
    /// on ticks sends the counter's notifications when due.
    pub fn handle(&mut self, ep: &mut UdpEndpoint, now: Instant, event: Option<Event<SocketAddr>>) {
        match event {
            Some(Event::Request { id, request, .. }) => {
                let path = request.path();
                let observe = request.options.uint(number::OBSERVE);
                let response = match (request.code, path.as_str()) {
                    (Code::GET, "/hello") => {
                        Response::new(Code::CONTENT).with_payload(0, self.hello.clone())
                    }
                    (Code::GET, "/big") => {
                        Response::new(Code::CONTENT).with_payload(42, self.big.clone())
                    }
                    (Code::PUT, "/upload") => {
                        self.uploaded = Some(request.payload);
                        self.puts += 1;
                        Response::new(Code::CHANGED)
                    }
                    (Code::GET, "/counter") => {
                        let r = Response::new(Code::CONTENT)
                            .with_payload(0, format!("n={}", self.counter).into_bytes());
                        if observe == Some(0) {
                            if let Some(obs) = ep.respond_observe(now, id, r) {
                                self.observers.push(obs);
                                self.next_notify = Some(now + Duration::from_millis(200));
                            }
                            return;
                        }
                        r
                    }
                    _ => Response::new(Code::NOT_FOUND),
                };
                ep.respond(now, id, response);
            }
            Some(Event::ObservationCancelled { id, reason }) => {
                eprintln!("observation {id:?} cancelled: {reason:?}");
                self.observers.retain(|o| *o != id);
                self.cancelled.push(reason);
            }
            Some(_) => {}
            None => {
                if self.next_notify.is_some_and(|t| t <= now) && !self.observers.is_empty() {
                    self.counter += 1;
                    let payload = format!("n={}", self.counter).into_bytes();
                    for &obs in &self.observers {
                        // CON, so a lost notification is retransmitted.
                        let r = Response::new(Code::CONTENT).with_payload(0, payload.clone());
                        ep.notify(now, obs, r, true);
                    }
                    self.next_notify = Some(now + Duration::from_millis(200));
                }
            }
        }
    }

    /// Serves through `driver` until `peer` exits; panics (with the peer's
    /// output) if it is still running after `timeout`.
    pub fn serve_until_exit(
        &mut self,
        driver: &mut UdpDriver,
        peer: &mut PeerProcess,
        timeout: Duration,
    ) -> ExitStatus {
        let status = driver
            .run_until(timeout, |ep, now, e| {
                self.handle(ep, now, e);
                peer.try_wait()
            })
            .unwrap_or_else(|e| panic!("{} did not finish: {e}\n{}", peer.name(), peer.output()));
        // All of its output is read once it has exited.
        peer.wait_timeout(Duration::from_secs(1));
        status
    }
}

// ---------------------------------------------------------------------------
// Ports and readiness
// ---------------------------------------------------------------------------

/// A UDP port on 127.0.0.1 that was free a moment ago: bound to port 0,
/// read, released. Another process could take it before the peer binds it;
/// callers that start a server on it check it answers (see
/// [`wait_for_coap_ping`]) and can retry with a fresh port.
pub fn free_udp_port() -> io::Result<u16> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(s.local_addr()?.port())
}

/// Sends a CoAP ping (CON Empty) to `addr` every 50 ms until an RST comes
/// back (RFC 7252 §4.3), from a socket of its own. True once the peer
/// answers, false if it did not within `timeout`.
pub fn wait_for_coap_ping(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let deadline = std::time::Instant::now() + timeout;
    let mut mid: u16 = 0x5a00;
    let mut buf = [0u8; 1500];
    while std::time::Instant::now() < deadline {
        mid = mid.wrapping_add(1);
        let [hi, lo] = mid.to_be_bytes();
        // Version 1, CON, no token; code 0.00.
        if socket.send_to(&[0x40, 0x00, hi, lo], addr).is_err() {
            return false;
        }
        let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let reply = buf.get(..n).unwrap_or_default();
            if from == addr && n >= 4 && reply[0] >> 4 == 0x7 && reply.get(2..4) == Some(&[hi, lo])
            {
                return true;
            }
        }
    }
    false
}

// ---------------------------------------------------------------------------
// Third-party processes
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Captured {
    text: Mutex<String>,
    grew: Condvar,
}

/// A third-party program run by a test.
///
/// Its lifetime is bounded twice: dropping the guard kills and reaps it
/// (also when the test panics), and a watchdog thread kills it when
/// `lifetime` runs out even if the test is stuck. Its stdout and stderr are
/// captured (see [`PeerProcess::output`]) to explain failures. Only a test
/// process killed with SIGKILL can leave it running, for at most its
/// lifetime if the program bounds itself (as the aiocoap peer does).
pub struct PeerProcess {
    name: String,
    child: Arc<Mutex<Child>>,
    status: Option<ExitStatus>,
    out: Arc<Captured>,
    stop_watchdog: Option<mpsc::Sender<()>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl fmt::Debug for PeerProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerProcess")
            .field("name", &self.name)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl PeerProcess {
    /// Starts `command` (stdin piped and kept open, stdout and stderr
    /// captured) for at most `lifetime`.
    pub fn spawn(mut command: Command, lifetime: Duration) -> io::Result<PeerProcess> {
        let name = format!("{command:?}");
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start {name}: {e} ({INSTALL_HINT})"),
            )
        })?;
        eprintln!("[peer] started pid {}: {name}", child.id());
        let out = Arc::new(Captured::default());
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(capture(stdout, out.clone(), ""));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(capture(stderr, out.clone(), "stderr: "));
        }
        let child = Arc::new(Mutex::new(child));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let watched = child.clone();
        let watchdog_name = name.clone();
        thread::spawn(move || {
            // Woken early (Ok or Disconnected) when the guard is dropped.
            if let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(lifetime) {
                if let Ok(mut c) = watched.lock() {
                    if matches!(c.try_wait(), Ok(None)) {
                        eprintln!("[peer] lifetime {lifetime:?} over, killing {watchdog_name}");
                        let _ = c.kill();
                    }
                }
            }
        });
        Ok(PeerProcess {
            name,
            child,
            status: None,
            out,
            stop_watchdog: Some(stop_tx),
            readers,
        })
    }

    /// The command line, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating system's process id.
    pub fn id(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `signal` (a name `kill -s` knows, e.g. `INT`, `TERM`) to the
    /// program if it is still running, through `kill(1)`: the crate forbids
    /// the `unsafe` a direct `kill(2)` call would need.
    pub fn signal(&mut self, signal: &str) -> io::Result<()> {
        if self.try_wait().is_some() {
            return Ok(());
        }
        let status = Command::new("kill")
            .args(["-s", signal, &self.id().to_string()])
            .stdin(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -s {signal} {} failed: {status}",
                self.id()
            )))
        }
    }

    /// Everything the program wrote so far (stderr lines prefixed
    /// `stderr: `).
    pub fn output(&self) -> String {
        self.out.text.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until a line of its output satisfies `pred`, the program
    /// exits, or `timeout` passes. Returns that line.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let exited = self.try_wait().is_some();
            if exited {
                // All of its output is in once the readers saw end of file.
                self.join_readers();
            }
            let text = self.out.text.lock().ok()?;
            if let Some(line) = text.lines().find(|l| pred(l)) {
                return Some(line.to_owned());
            }
            let now = std::time::Instant::now();
            if exited || now >= deadline {
                return None;
            }
            // Woken by new output; the short bound notices an exit too.
            let wait = (deadline - now).min(Duration::from_millis(50));
            drop(self.out.grew.wait_timeout(text, wait).ok()?);
        }
    }

    /// The exit status if the program has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let mut c = self.child.lock().ok()?;
            self.status = c.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the program to exit by itself, then gives
    /// the output that is left to read. `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                self.join_readers();
                return Some(s);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes `bytes` to its standard input (for programs that take
    /// commands there).
    pub fn write_stdin(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let mut c = self
            .child
            .lock()
            .map_err(|_| io::Error::other("child lock poisoned"))?;
        let stdin = c
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("stdin already closed"))?;
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    /// Closes its standard input (programs that exit on EOF then exit).
    pub fn close_stdin(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            drop(c.stdin.take());
        }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        drop(self.stop_watchdog.take());
        if let Ok(mut c) = self.child.lock() {
            drop(c.stdin.take());
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            // Reap it: no zombie outlives the test.
            let _ = c.wait();
        }
        self.join_readers();
        eprintln!("[peer] stopped {}", self.name);
    }
}

fn capture(
    stream: impl Read + Send + 'static,
    out: Arc<Captured>,
    prefix: &'static str,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    if let Ok(mut s) = out.text.lock() {
                        s.push_str(prefix);
                        s.push_str(&text);
                        if !text.ends_with('\n') {
                            s.push('\n');
                        }
                    }
                    out.grew.notify_all();
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Locating tools
// ---------------------------------------------------------------------------

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The first of `names` that is an executable file in a directory of `PATH`.
pub fn find_in_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn tool(env_var: &str, names: &[&str], what: &str) -> PathBuf {
    if let Some(v) = std::env::var_os(env_var) {
        let p = PathBuf::from(v);
        assert!(
            is_executable(&p),
            "{env_var}={} is not an executable file ({what}); unset it or {INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    find_in_path(names).unwrap_or_else(|| {
        panic!(
            "{what} not found: none of {names:?} is in PATH and {env_var} is not set; \
             {INSTALL_HINT} (Debian package libcoap3-bin), or set {env_var}"
        )
    })
}

/// libcoap's `coap-client`: `$COAP_CLIENT`, else the first of
/// `coap-client-notls`, `coap-client`, `coap-client-openssl`,
/// `coap-client-gnutls` in `PATH` (Debian's libcoap3-bin installs only the
/// suffixed names). Panics with installation advice if there is none.
pub fn coap_client() -> PathBuf {
    tool(
        "COAP_CLIENT",
        &[
            "coap-client-notls",
            "coap-client",
            "coap-client-openssl",
            "coap-client-gnutls",
        ],
        "libcoap's coap-client",
    )
}

/// libcoap's `coap-server`: `$COAP_SERVER`, else the first of
/// `coap-server-notls`, `coap-server`, `coap-server-openssl`,
/// `coap-server-gnutls` in `PATH`. Panics with installation advice if
/// there is none.
pub fn coap_server() -> PathBuf {
    tool(
        "COAP_SERVER",
        &[
            "coap-server-notls",
            "coap-server",
            "coap-server-openssl",
            "coap-server-gnutls",
        ],
        "libcoap's coap-server",
    )
}

/// A Python interpreter that can import aiocoap: `$AIOCOAP_PYTHON`, else
/// `<repo>/.venv/bin/python`. Panics with installation advice if it is
/// missing or cannot import aiocoap.
pub fn aiocoap_python() -> PathBuf {
    let python = match std::env::var_os("AIOCOAP_PYTHON") {
        Some(v) => PathBuf::from(v),
        None => repo_root().join(".venv/bin/python"),
    };
    let works = Command::new(&python)
        .args(["-c", "import aiocoap"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        works,
        "no Python with aiocoap at {} (set AIOCOAP_PYTHON or {INSTALL_HINT}, which creates \
         <repo>/.venv with the pinned aiocoap)",
        python.display()
    );
    python
}

/// Builds binary `bin` of workspace package `package` and returns its path.
///
/// Cargo gives `CARGO_BIN_EXE_<name>` only to the tests of the package that
/// owns the binary, and artifact dependencies (`bindeps`) are unstable, so
/// interop tests ask cargo itself: `cargo build -p PACKAGE --bin BIN
/// --message-format=json` in the repository, with the cargo that runs the
/// tests (`$CARGO`) and the profile of this test build, then take the
/// `executable` of the artifact cargo reports. That follows
/// `CARGO_TARGET_DIR`, `--release` and any target directory layout instead
/// of guessing `target/debug/`, and rebuilds a binary whose sources changed.
/// An up-to-date binary costs one no-op cargo run (well under a second).
/// Panics with cargo's output if the build fails.
pub fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    // One build at a time in this process; cargo's own lock orders it with
    // other processes.
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == bin) {
        return p.clone();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "-p", package, "--bin", bin])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(repo_root())
        .stdin(Stdio::null());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| {
            panic!(
                "cargo build -p {package} --bin {bin} reported no executable:\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
    assert!(is_executable(&exe), "{} is not executable", exe.display());
    built.push((bin.to_string(), exe.clone()));
    exe
}

/// The directory of the Node.js peers: `interop-tests/node`, holding
/// `package.json`, `package-lock.json`, the peer scripts and (once
/// installed) `node_modules`.
pub fn node_peers_dir() -> PathBuf {
    repo_root().join("interop-tests/node")
}

/// Node.js (`$NODE`, else `node` in `PATH`), checked to have the pinned
/// lwm2m-node-lib installed in [`node_peers_dir`]: the version in
/// `node_modules` must be the one `package.json` pins. Panics with
/// installation advice otherwise. Returns the interpreter and that version.
pub fn node() -> (PathBuf, String) {
    let node = node_interpreter();
    let dir = node_peers_dir();
    let read_json = |p: PathBuf| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(p).ok()?).ok()
    };
    let pinned = read_json(dir.join("package.json"))
        .and_then(|j| {
            j["dependencies"]["lwm2m-node-lib"]
                .as_str()
                .map(str::to_owned)
        })
        .expect("interop-tests/node/package.json pins lwm2m-node-lib");
    let installed = read_json(dir.join("node_modules/lwm2m-node-lib/package.json"))
        .and_then(|j| j["version"].as_str().map(str::to_owned));
    assert!(
        installed.as_deref() == Some(pinned.as_str()),
        "lwm2m-node-lib {pinned} is not installed in {} (found {installed:?}); {INSTALL_HINT} \
         (it runs npm ci there)",
        dir.display()
    );
    (node, pinned)
}

/// Node.js: `$NODE`, else `node` (or `nodejs`) in `PATH`. Panics with
/// installation advice if there is none.
pub fn node_interpreter() -> PathBuf {
    match std::env::var_os("NODE") {
        Some(v) => PathBuf::from(v),
        None => find_in_path(&["node", "nodejs"]).unwrap_or_else(|| {
            panic!("Node.js not found: no node in PATH and NODE is not set; {INSTALL_HINT}")
        }),
    }
}

/// Chromium for the web UI tests: `$CHROMIUM`, else Debian's
/// `/usr/bin/chromium`. Panics with installation advice if it is missing.
pub fn chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        is_executable(&p),
        "Chromium not found at {} (set CHROMIUM or {INSTALL_HINT}, which installs Debian's \
         chromium)",
        p.display()
    );
    p
}

/// `interop-tests/ui`: the browser scripts (`web_ui.mjs`, ...), checked to
/// have playwright-core installed in its `node_modules`. Panics with
/// installation advice otherwise.
pub fn web_ui_dir() -> PathBuf {
    let dir = repo_root().join("interop-tests/ui");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core not installed in {} ({INSTALL_HINT}, which runs npm ci there)",
        dir.display()
    );
    dir
}

/// The version a libcoap tool reports in its help text (`vX.Y.Z`), for logs.
pub fn libcoap_version(tool: &Path) -> String {
    let out = Command::new(tool)
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        })
        .unwrap_or_default();
    out.split_whitespace()
        .find(|w| w.starts_with('v') && w[1..].starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("unknown")
        .to_owned()
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/lwm2m-interop-<pid>-<n>-<random>`.
    pub fn new() -> io::Result<TempDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let r = OsRng.next_u64();
        let path =
            std::env::temp_dir().join(format!("lwm2m-interop-{}-{n}-{r:016x}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_starts_near_zero() {
        let c = Clock::new();
        let a = c.now();
        thread::sleep(Duration::from_millis(15));
        let b = c.now();
        assert!(a.as_millis() < 5, "{a:?}");
        assert!(b.as_millis() >= 15 && b > a, "{a:?} {b:?}");
    }

    #[test]
    fn os_rng_varies() {
        let mut r = OsRng;
        let a: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        let b: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn describe_decodes_blocks() {
        // CON GET mid 0x1234 tok cafe, Uri-Path "a", Block2 1/M/64 (0x1a).
        let bytes = [0x42, 0x01, 0x12, 0x34, 0xca, 0xfe, 0xb1, b'a', 0xc1, 0x1a];
        assert_eq!(
            describe(&bytes),
            "CON 0.01 mid=4660 tok=cafe [path:a, B2:1/M/64] 0B"
        );
    }

    #[test]
    fn peer_process_is_killed_on_drop() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let p = PeerProcess::spawn(cmd, Duration::from_secs(30)).unwrap();
        let child = p.child.clone();
        drop(p);
        let status = child.lock().unwrap().try_wait().unwrap();
        assert!(status.is_some(), "sleep still running after drop");
    }

    #[test]
    fn peer_process_lifetime_is_enforced() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut p = PeerProcess::spawn(cmd, Duration::from_millis(100)).unwrap();
        let status = p.wait_timeout(Duration::from_secs(5));
        assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    }

    #[test]
    fn peer_output_is_captured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo ready 42; echo oops >&2"]);
        let mut p = PeerProcess::spawn(cmd, Duration::from_secs(5)).unwrap();
        let line = p.wait_for_line(Duration::from_secs(5), |l| l.starts_with("ready"));
        assert_eq!(line.as_deref(), Some("ready 42"));
        assert!(p.wait_timeout(Duration::from_secs(5)).is_some());
        assert!(p.output().contains("stderr: oops"), "{}", p.output());
    }

    #[test]
    fn ping_of_a_silent_port_fails_in_time() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let t = std::time::Instant::now();
        assert!(!wait_for_coap_ping(
            silent.local_addr().unwrap(),
            Duration::from_millis(200)
        ));
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn driver_ping_is_answered_with_rst() {
        // Our own endpoint answers a CoAP ping with RST: checks the driver
        // loop end to end without a third-party peer.
        let mut d = UdpDriver::bind("self", EndpointConfig::default()).unwrap();
        let addr = d.local_addr();
        let pinger = thread::spawn(move || wait_for_coap_ping(addr, Duration::from_secs(3)));
        let t = std::time::Instant::now();
        let _ = d.run_until(Duration::from_millis(300), |_, _, _| None::<()>);
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(pinger.join().unwrap());
    }
}
