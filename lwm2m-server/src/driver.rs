//! The tokio driver: one task owns a UDP socket and the [`Engine`], moves
//! datagrams and time between them, and serves an async API through a
//! command channel.
//!
//! Time: the engine's [`Instant`] counts milliseconds from the Unix epoch
//! (wall clock read once at start, then advanced by the monotonic clock), so
//! registration and update times written to the store keep their meaning
//! after a restart and restored lifetimes run on.
//!
//! Security ([`Server::start_secured`]): with a credentials store the engine
//! gets a [`SecurityChecker`] (4.03 for a sender that may not use an
//! endpoint name), and with a coaps address a second UDP socket feeds the
//! same engine through the [`DtlsServer`] layer (feature `dtls`). Routing:
//! a datagram from the engine to a peer with an established DTLS session
//! is encrypted to it and leaves through the coaps socket; to a peer
//! without one it leaves through the plain socket, unless a registration at
//! that address was made over DTLS ([`Engine::expects_security`]): then it
//! is dropped, never sent in clear (the client must handshake again, which
//! it does at its next Update). A plain datagram from an address that has a
//! DTLS session is dropped too, so one address never mixes both transports
//! in the engine's CoAP state (deduplication, tokens).
//! The server's own requests (not its responses) go through a session only
//! if the session's identity is one a registration at that address was
//! made with ([`Engine::identities_at`]): after another identity took an
//! address over (a new handshake from the same ip:port, NAT reuse), the old
//! registration's requests are dropped rather than handed to the new peer.
//! Routing is by address, so while registrations of two identities share
//! one address (the old one not yet expired), the requests of both go to
//! the session there; closing that needs the engine to say whose
//! registration each outgoing request is for.
//!
//! CoAP over TCP and over TLS ([`crate::coap_tcp`], [`SecurityOptions::coaps_tcp`]):
//! their connections feed the same engine, a TLS connection's datagrams with
//! the identity its handshake authenticated; the same rule keeps a secured
//! registration's requests off connections of another identity or in clear
//! (they fail at once there, as to a closed connection).
//!
//! Storage calls (SQLite) run inline on the driver task: each is one short
//! write in WAL mode. A server with very high registration rates would move
//! them to a blocking thread; this slice keeps the engine's write-through
//! simple.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::SystemTime;

use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{AttributeUpdate, Instance, ModelLookup, Node, Path, TimestampedValue};
use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::coap_tcp::{self, StreamInput, TcpFront, TcpOptions, Transport};
#[cfg(feature = "tls")]
use crate::coap_tls::{TlsAcceptor, TlsOptions};
#[cfg(feature = "dtls")]
use crate::dtls::{psk_from_store, DtlsConfig, DtlsError, DtlsServer, PskLookup};
use crate::engine::{
    DmError, DmRequestId, DmResponse, Engine, ServerConfig, ServerEvent, WriteMode,
};
use crate::firmware::SharedFirmwareStore;
use crate::registration::RegistrationSecurity;
use crate::security::{PeerIdentity, SecurityChecker, SharedSecurityStore};
use crate::store::RegistrationStore;
use crate::{Registration, StoreError};

/// Randomness from the operating system (registration ids, CoAP tokens).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill_bytes(&mut self, buf: &mut [u8]) {
        // Without an OS random source the server cannot make unguessable ids
        // or tokens; carrying on with predictable ones would be worse.
        getrandom::fill(buf).expect("operating system random source failed");
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// Binding the socket failed.
    Bind(io::Error),
    /// Loading the registration store failed.
    Store(StoreError),
    /// Binding the coaps (DTLS) socket failed.
    BindSecure(io::Error),
    /// The CoAP-over-TCP listener could not be bound.
    BindTcp(io::Error),
    /// The CoAP-over-TLS listener could not be bound.
    #[cfg(feature = "tls")]
    BindTls(io::Error),
    /// The CoAP-over-TLS layer could not be set up (certificate files,
    /// OpenSSL).
    #[cfg(feature = "tls")]
    Tls(DtlsError),
    /// The DTLS layer could not be set up (certificate files, OpenSSL).
    #[cfg(feature = "dtls")]
    Dtls(DtlsError),
    /// The bootstrap configurations could not be read to index their
    /// credentials.
    BootstrapStore(crate::bootstrap::ConfigError),
}

/// The security settings of [`Server::start_secured`].
#[derive(Debug, Default)]
pub struct SecurityOptions {
    /// The clients' credentials: who may register which endpoint name
    /// ([`SecurityChecker`]) and the PSK keys of the DTLS layer. `None`:
    /// every sender may use every endpoint name.
    pub store: Option<SharedSecurityStore>,
    /// The coaps socket's address and the DTLS layer's settings; `None`:
    /// plain CoAP only. Needs `store` for PSK keys (without it no PSK
    /// identity is known).
    #[cfg(feature = "dtls")]
    pub coaps: Option<(SocketAddr, DtlsConfig)>,
    /// The CoAP-over-TLS listener (RFC 8323 `coaps+tcp`, feature `tls`);
    /// `None`: none. Its PSK keys come from `store` too, and its
    /// connections are authorized as DTLS sessions are.
    #[cfg(feature = "tls")]
    pub coaps_tcp: Option<TlsOptions>,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(e) => write!(f, "cannot bind the CoAP socket: {e}"),
            StartError::Store(e) => write!(f, "cannot load registrations: {e}"),
            StartError::BindSecure(e) => write!(f, "cannot bind the coaps (DTLS) socket: {e}"),
            StartError::BindTcp(e) => write!(f, "cannot bind the CoAP-over-TCP listener: {e}"),
            #[cfg(feature = "tls")]
            StartError::BindTls(e) => write!(f, "cannot bind the CoAP-over-TLS listener: {e}"),
            #[cfg(feature = "tls")]
            StartError::Tls(e) => write!(f, "CoAP over TLS: {e}"),
            #[cfg(feature = "dtls")]
            StartError::Dtls(e) => write!(f, "{e}"),
            StartError::BootstrapStore(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

enum Op {
    Read(Path, Option<ContentFormat>),
    Discover(Path),
    Write(Path, WriteMode, ContentFormat, Node),
    Execute(Path, Option<String>),
    Create(u16, ContentFormat, Instance),
    Delete(Path),
    WriteAttributes(Path, AttributeUpdate),
    Observe(Path, Option<ContentFormat>),
    ReadComposite(Vec<Path>, ContentFormat, Option<ContentFormat>),
    WriteComposite(Vec<TimestampedValue>, ContentFormat),
    ObserveComposite(Vec<Path>, ContentFormat, Option<ContentFormat>),
}

type DmReply = oneshot::Sender<Result<(DmRequestId, DmResponse), DmError>>;

enum Command {
    Dm {
        endpoint: String,
        op: Op,
        reply: DmReply,
    },
    CancelObserve {
        id: DmRequestId,
        reply: DmReply,
    },
    Registrations {
        reply: oneshot::Sender<Vec<Registration<SocketAddr>>>,
    },
    Registration {
        endpoint: String,
        reply: oneshot::Sender<Option<Registration<SocketAddr>>>,
    },
    RegistrationCount {
        reply: oneshot::Sender<usize>,
    },
    Observations {
        reply: oneshot::Sender<Vec<(DmRequestId, String, Path)>>,
    },
    SetFirmware {
        store: Option<SharedFirmwareStore>,
        reply: oneshot::Sender<()>,
    },
}

/// A running server. Dropping it without [`Server::shutdown`] stops the
/// task once every [`ServerHandle`] is gone too.
#[derive(Debug)]
pub struct Server {
    handle: ServerHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// A cheap, cloneable handle to the async API of a running [`Server`].
#[derive(Debug, Clone)]
pub struct ServerHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<ServerEvent<SocketAddr>>,
    local_addr: SocketAddr,
    secure_addr: Option<SocketAddr>,
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// Depth of the command channel: callers wait (back-pressure) beyond it.
const COMMAND_QUEUE: usize = 1024;
/// Events kept for slow subscribers before they see `Lagged`.
const EVENT_QUEUE: usize = 4096;

impl Server {
    /// Binds `addr` and starts the driver task on the current tokio runtime.
    /// Registrations in `store` are restored.
    pub async fn start(
        addr: SocketAddr,
        config: ServerConfig,
        store: Box<dyn RegistrationStore<SocketAddr>>,
        models: Box<dyn ModelLookup + Send>,
    ) -> Result<Server, StartError> {
        Self::start_secured(addr, config, store, models, SecurityOptions::default()).await
    }

    /// [`Server::start`] with credentials checks and, with the `dtls`
    /// feature, a coaps socket (see the module doc).
    pub async fn start_secured(
        addr: SocketAddr,
        config: ServerConfig,
        store: Box<dyn RegistrationStore<SocketAddr>>,
        models: Box<dyn ModelLookup + Send>,
        security: SecurityOptions,
    ) -> Result<Server, StartError> {
        Self::start_with_tcp(addr, config, store, models, security, None).await
    }

    /// [`Server::start_secured`] with, given `tcp`, a CoAP-over-TCP
    /// listener (RFC 8323, LwM2M binding `T`) feeding the same engine.
    pub async fn start_with_tcp(
        addr: SocketAddr,
        config: ServerConfig,
        store: Box<dyn RegistrationStore<SocketAddr>>,
        models: Box<dyn ModelLookup + Send>,
        security: SecurityOptions,
        tcp: Option<TcpOptions>,
    ) -> Result<Server, StartError> {
        let socket = UdpSocket::bind(addr).await.map_err(StartError::Bind)?;
        let local_addr = socket.local_addr().map_err(StartError::Bind)?;
        let mut engine =
            Engine::new(config, OsRandom, OsRandom, store, models).map_err(StartError::Store)?;
        if let Some(store) = &security.store {
            engine.set_authorizer(Some(Box::new(SecurityChecker::new(store.clone()))));
        }
        #[cfg(feature = "dtls")]
        let keys: PskLookup = match &security.store {
            Some(store) => psk_from_store(store.clone()),
            None => std::sync::Arc::new(|_: &str| None),
        };
        #[cfg(feature = "dtls")]
        let (coaps, secure) = Coaps::bind(security.coaps, keys.clone()).await?;
        #[cfg(not(feature = "dtls"))]
        let (coaps, secure) = (Coaps::default(), None::<UdpSocket>);
        let secure_addr = match &secure {
            Some(s) => Some(s.local_addr().map_err(StartError::BindSecure)?),
            None => None,
        };
        let (stream_tx, stream_rx) = coap_tcp::channel();
        let tcp_addr = match &tcp {
            Some(options) => Some(
                coap_tcp::listen(options, Transport::Plain, stream_tx.clone())
                    .await
                    .map_err(StartError::BindTcp)?,
            ),
            None => None,
        };
        #[cfg(feature = "tls")]
        let tls_addr = match &security.coaps_tcp {
            Some(options) => {
                let acceptor = TlsAcceptor::new(options, keys).map_err(StartError::Tls)?;
                let transport = Transport::Tls(std::sync::Arc::new(acceptor));
                Some(
                    coap_tcp::listen(&options.tcp, transport, stream_tx)
                        .await
                        .map_err(StartError::BindTls)?,
                )
            }
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        let tls_addr = {
            drop(stream_tx);
            None
        };
        let streams = (tcp_addr.is_some() || tls_addr.is_some()).then_some(stream_rx);
        let tcp = streams.as_ref().map(|_| TcpFront::new());
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, _) = broadcast::channel(EVENT_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let clock = Clock::new();
        for reg in engine.registrations() {
            tracing::info!(endpoint = %reg.endpoint, id = %reg.id, address = %reg.address, "restored registration");
        }
        let p = ServerPump {
            io: Secured {
                engine,
                coaps,
                now: clock.now(),
            },
            events: ev_tx.clone(),
            waiting: HashMap::new(),
            last_sweep: clock.now(),
            tcp,
            streams,
        };
        let task = tokio::spawn(run(p, socket, secure, clock, cmd_rx, stop_rx));
        Ok(Server {
            handle: ServerHandle {
                commands: cmd_tx,
                events: ev_tx,
                local_addr,
                secure_addr,
                tcp_addr,
                tls_addr,
            },
            shutdown: Some(stop_tx),
            task,
        })
    }

    /// A handle to the async API.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops the driver task: pending transmissions are sent, unanswered
    /// requests fail with [`DmError::ServerStopped`], registrations stay in
    /// the store for the next start.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl std::ops::Deref for Server {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.handle
    }
}

impl ServerHandle {
    /// The address the CoAP socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the coaps (DTLS) socket is bound to, if there is one.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure_addr
    }

    /// The address the CoAP-over-TCP listener is bound to, if there is one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The address the CoAP-over-TLS (`coaps+tcp`) listener is bound to, if
    /// there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Registration and device-management events from now on.
    pub fn events(&self) -> broadcast::Receiver<ServerEvent<SocketAddr>> {
        self.events.subscribe()
    }

    /// Every live registration.
    pub async fn registrations(&self) -> Vec<Registration<SocketAddr>> {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Registrations { reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The registration of `endpoint`, if registered (without copying every
    /// registration as [`ServerHandle::registrations`] does).
    pub async fn registration(&self, endpoint: &str) -> Option<Registration<SocketAddr>> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Registration {
            endpoint: endpoint.to_string(),
            reply,
        };
        self.commands.send(cmd).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Number of live registrations.
    pub async fn registration_count(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::RegistrationCount { reply })
            .await
            .is_err()
        {
            return 0;
        }
        rx.await.unwrap_or_default()
    }

    /// Every established observation (handle, endpoint name, path),
    /// including those restored from the store at start.
    pub async fn observations(&self) -> Vec<(DmRequestId, String, Path)> {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Observations { reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Serves the packages of `store` to devices on `GET /fw/{id}` over
    /// CoAP and CoAPS ([`Engine::set_firmware`]); `None` stops.
    pub async fn set_firmware_store(&self, store: Option<SharedFirmwareStore>) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::SetFirmware { store, reply })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    async fn dm(&self, endpoint: &str, op: Op) -> Result<(DmRequestId, DmResponse), DmError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Dm {
            endpoint: endpoint.to_string(),
            op,
            reply,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| DmError::ServerStopped)?;
        rx.await.map_err(|_| DmError::ServerStopped)?
    }

    /// Read `path` of `endpoint` in the client's default format.
    pub async fn read(&self, endpoint: &str, path: Path) -> Result<DmResponse, DmError> {
        self.read_as(endpoint, path, None).await
    }

    /// Read with an Accept format.
    pub async fn read_as(
        &self,
        endpoint: &str,
        path: Path,
        accept: Option<ContentFormat>,
    ) -> Result<DmResponse, DmError> {
        Ok(self.dm(endpoint, Op::Read(path, accept)).await?.1)
    }

    /// Discover.
    pub async fn discover(&self, endpoint: &str, path: Path) -> Result<DmResponse, DmError> {
        Ok(self.dm(endpoint, Op::Discover(path)).await?.1)
    }

    /// Write `node` at `path`.
    pub async fn write(
        &self,
        endpoint: &str,
        path: Path,
        mode: WriteMode,
        format: ContentFormat,
        node: Node,
    ) -> Result<DmResponse, DmError> {
        Ok(self
            .dm(endpoint, Op::Write(path, mode, format, node))
            .await?
            .1)
    }

    /// Execute with optional arguments.
    pub async fn execute(
        &self,
        endpoint: &str,
        path: Path,
        args: Option<&str>,
    ) -> Result<DmResponse, DmError> {
        let args = args.map(str::to_string);
        Ok(self.dm(endpoint, Op::Execute(path, args)).await?.1)
    }

    /// Create `instance` in `object`.
    pub async fn create(
        &self,
        endpoint: &str,
        object: u16,
        format: ContentFormat,
        instance: Instance,
    ) -> Result<DmResponse, DmError> {
        Ok(self
            .dm(endpoint, Op::Create(object, format, instance))
            .await?
            .1)
    }

    /// Delete.
    pub async fn delete(&self, endpoint: &str, path: Path) -> Result<DmResponse, DmError> {
        Ok(self.dm(endpoint, Op::Delete(path)).await?.1)
    }

    /// Write-Attributes.
    pub async fn write_attributes(
        &self,
        endpoint: &str,
        path: Path,
        update: AttributeUpdate,
    ) -> Result<DmResponse, DmError> {
        Ok(self
            .dm(endpoint, Op::WriteAttributes(path, update))
            .await?
            .1)
    }

    /// Observe: returns the observation handle and the first response;
    /// notifications arrive as [`ServerEvent::Notification`] on [`ServerHandle::events`].
    pub async fn observe(
        &self,
        endpoint: &str,
        path: Path,
        accept: Option<ContentFormat>,
    ) -> Result<(DmRequestId, DmResponse), DmError> {
        self.dm(endpoint, Op::Observe(path, accept)).await
    }

    /// Read-Composite: `paths` sent as a FETCH body in `format` (SenML
    /// JSON/CBOR or LwM2M CBOR), the answer in `accept` (default: `format`);
    /// a decodable answer comes as [`crate::Content::Values`].
    pub async fn read_composite(
        &self,
        endpoint: &str,
        paths: Vec<Path>,
        format: ContentFormat,
        accept: Option<ContentFormat>,
    ) -> Result<DmResponse, DmError> {
        Ok(self
            .dm(endpoint, Op::ReadComposite(paths, format, accept))
            .await?
            .1)
    }

    /// Write-Composite: `values` sent with iPATCH in `format`.
    pub async fn write_composite(
        &self,
        endpoint: &str,
        values: Vec<TimestampedValue>,
        format: ContentFormat,
    ) -> Result<DmResponse, DmError> {
        Ok(self
            .dm(endpoint, Op::WriteComposite(values, format))
            .await?
            .1)
    }

    /// Observe-Composite: like [`ServerHandle::observe`] for a path list;
    /// cancel with [`ServerHandle::cancel_observe`].
    pub async fn observe_composite(
        &self,
        endpoint: &str,
        paths: Vec<Path>,
        format: ContentFormat,
        accept: Option<ContentFormat>,
    ) -> Result<(DmRequestId, DmResponse), DmError> {
        self.dm(endpoint, Op::ObserveComposite(paths, format, accept))
            .await
    }

    /// Cancels an observation actively; returns the client's answer (or an
    /// empty 2.05 if the observe was still held for a sleeping client).
    pub async fn cancel_observe(&self, id: DmRequestId) -> Result<DmResponse, DmError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::CancelObserve { id, reply })
            .await
            .map_err(|_| DmError::ServerStopped)?;
        Ok(rx.await.map_err(|_| DmError::ServerStopped)??.1)
    }
}

/// Engine time from the wall clock at start plus the monotonic clock since.
pub(crate) struct Clock {
    base: Instant,
    start: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            base: Instant::from_millis(unix_ms),
            start: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.base + self.start.elapsed()
    }

    pub(crate) fn to_tokio(&self, t: Instant) -> tokio::time::Instant {
        self.start + t.saturating_duration_since(self.base)
    }
}

type Eng = Engine<SocketAddr, OsRandom>;

/// The pump of a driver task: what [`pump`] needs of an engine and the
/// state its driver keeps beside it. Shared by this driver and the
/// bootstrap server's.
pub(crate) trait Pumped {
    /// A command from the async API.
    type Command;
    /// The sans-IO engine.
    type Engine: SecuredInput;
    /// Put before "recv error" in the log ("" or "bootstrap ").
    const LOG_PREFIX: &'static str;
    /// The engine with its coaps side, which datagrams and time go to.
    fn secured(&mut self) -> &mut Secured<Self::Engine>;
    /// A command from the async API arrived.
    fn command(&mut self, now: Instant, cmd: Self::Command);
    /// The input channel of CoAP-over-TCP connections, taken once when the
    /// pump starts (`None`: no TCP listener).
    fn take_streams(&mut self) -> Option<mpsc::Receiver<StreamInput>> {
        None
    }
    /// Input from a CoAP-over-TCP connection arrived.
    fn stream_input(&mut self, now: Instant, input: StreamInput) {
        let _ = (now, input);
    }
    /// A datagram or stream input is about to reach the engine (which may
    /// wake a sleeping client and send what is held for it).
    fn before_input(&mut self, now: Instant) {
        let _ = now;
    }
    /// Sends the datagrams due (plain ones on `socket`, DTLS ones on
    /// `secure`) and hands out the events.
    fn flush(
        &mut self,
        socket: &UdpSocket,
        secure: Option<&UdpSocket>,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// Moves datagrams, time and commands between `socket` (and the secure
/// socket, if any) and `engine` until `stop` fires or every command sender
/// is gone, then flushes once more.
pub(crate) async fn pump<P: Pumped>(
    engine: &mut P,
    socket: &UdpSocket,
    secure: Option<&UdpSocket>,
    clock: &Clock,
    commands: &mut mpsc::Receiver<P::Command>,
    stop: &mut oneshot::Receiver<()>,
) {
    // Largest UDP payload: a datagram is never truncated.
    let mut buf = vec![0u8; 65_535];
    let mut secure_buf = vec![0u8; if secure.is_some() { 65_535 } else { 0 }];
    let mut streams = engine.take_streams();
    loop {
        engine.flush(socket, secure).await;
        let deadline = engine.secured().poll_timeout().map(|t| clock.to_tokio(t));
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    let bytes = buf.get(..n).unwrap_or_default();
                    let now = clock.now();
                    engine.before_input(now);
                    engine.secured().handle_datagram(now, peer, bytes);
                }
                // ICMP port unreachable and the like surface here on some
                // systems; they concern one peer, never the server.
                Err(e) => tracing::debug!("{}recv error: {e}", P::LOG_PREFIX),
            },
            r = recv_opt(secure, &mut secure_buf) => match r {
                Ok((n, peer)) => {
                    let bytes = secure_buf.get(..n).unwrap_or_default();
                    let now = clock.now();
                    engine.before_input(now);
                    engine.secured().handle_secure_datagram(now, peer, bytes);
                }
                Err(e) => tracing::debug!("{}coaps recv error: {e}", P::LOG_PREFIX),
            },
            cmd = commands.recv() => match cmd {
                Some(cmd) => {
                    let now = clock.now();
                    engine.secured().now = now;
                    engine.command(now, cmd);
                }
                None => break,
            },
            input = recv_stream(streams.as_mut()) => {
                let now = clock.now();
                engine.secured().now = now;
                engine.before_input(now);
                engine.stream_input(now, input);
            }
            () = sleep_until(deadline) => engine.secured().handle_timeout(clock.now()),
            _ = &mut *stop => break,
        }
    }
    engine.flush(socket, secure).await;
}

/// Whether a CoAP datagram is a request (code class 0, not Empty): the
/// server's own, as opposed to its answers to the peer.
pub(crate) fn is_request(datagram: &[u8]) -> bool {
    datagram
        .get(1)
        .is_some_and(|code| *code != 0 && code >> 5 == 0)
}

/// The next input of the CoAP-over-TCP connections, or waits forever
/// without a listener (or once its tasks are gone).
async fn recv_stream(streams: Option<&mut mpsc::Receiver<StreamInput>>) -> StreamInput {
    match streams {
        Some(rx) => match rx.recv().await {
            Some(input) => input,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Receives from `socket`, or waits forever without one.
async fn recv_opt(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The coaps side of a driver task, shared by the registration server's
/// and the bootstrap server's: the [`DtlsServer`] (none without a coaps
/// socket or without the `dtls` feature) and the routing rules of the
/// module doc that do not depend on the engine.
#[derive(Debug, Default)]
pub(crate) struct Coaps {
    #[cfg(feature = "dtls")]
    dtls: Option<DtlsServer>,
}

/// Where [`Coaps::route`] says a datagram of the engine goes.
pub(crate) enum Route {
    /// Encrypted to the peer's DTLS session (already queued).
    #[cfg_attr(not(feature = "dtls"), allow(dead_code))]
    Sent,
    /// In clear on the plain socket.
    Plain,
    /// Nowhere.
    Dropped,
}

impl Coaps {
    /// The DTLS layer for `coaps` (address and settings; `None`: no coaps
    /// socket) with PSK keys from `keys`, and its bound socket.
    #[cfg(feature = "dtls")]
    pub(crate) async fn bind(
        coaps: Option<(SocketAddr, DtlsConfig)>,
        keys: PskLookup,
    ) -> Result<(Coaps, Option<UdpSocket>), StartError> {
        let Some((addr, config)) = coaps else {
            return Ok((Coaps::default(), None));
        };
        let mut secret = [0u8; 32];
        OsRandom.fill_bytes(&mut secret);
        let dtls = DtlsServer::new(config, keys, secret).map_err(StartError::Dtls)?;
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(StartError::BindSecure)?;
        Ok((Coaps { dtls: Some(dtls) }, Some(socket)))
    }

    /// The earlier of `engine`'s timeout and the DTLS layer's.
    pub(crate) fn poll_timeout(&self, engine: Option<Instant>) -> Option<Instant> {
        #[cfg(feature = "dtls")]
        if let Some(dtls) = self.dtls.as_ref().and_then(DtlsServer::poll_timeout) {
            return Some(engine.map_or(dtls, |e| e.min(dtls)));
        }
        engine
    }

    /// Whether a plain datagram from `peer` must be dropped: the peer has
    /// a DTLS session (one address never mixes both transports).
    pub(crate) fn drops_plain(&self, peer: &SocketAddr) -> bool {
        let drop = self.session_identity(peer).is_some();
        if drop {
            tracing::debug!(%peer, "plain CoAP from a peer with a DTLS session dropped");
        }
        drop
    }

    /// The identity of `peer`'s established DTLS session.
    pub(crate) fn session_identity(&self, peer: &SocketAddr) -> Option<&PeerIdentity> {
        #[cfg(feature = "dtls")]
        if let Some(dtls) = &self.dtls {
            return dtls.session_identity(peer);
        }
        let _ = peer;
        None
    }

    /// A datagram of the coaps socket; what it decrypts to goes to
    /// `deliver` (peer, identity, plaintext).
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        bytes: &[u8],
        deliver: impl FnMut(SocketAddr, &PeerIdentity, &[u8]),
    ) {
        #[cfg(feature = "dtls")]
        if let Some(dtls) = &mut self.dtls {
            dtls.handle_datagram(now, peer, bytes);
            Self::deliver(dtls, deliver);
        }
        #[cfg(not(feature = "dtls"))]
        let _ = (now, peer, bytes, deliver);
    }

    /// Time passed for the DTLS layer (see [`Coaps::handle_datagram`]).
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        deliver: impl FnMut(SocketAddr, &PeerIdentity, &[u8]),
    ) {
        #[cfg(feature = "dtls")]
        if let Some(dtls) = &mut self.dtls {
            dtls.handle_timeout(now);
            Self::deliver(dtls, deliver);
        }
        #[cfg(not(feature = "dtls"))]
        let _ = (now, deliver);
    }

    #[cfg(feature = "dtls")]
    fn deliver(dtls: &mut DtlsServer, mut deliver: impl FnMut(SocketAddr, &PeerIdentity, &[u8])) {
        while let Some(r) = dtls.poll_received() {
            deliver(r.peer, &r.identity, &r.data);
        }
    }

    /// Routes one datagram of the engine to `peer`: through its DTLS
    /// session if it has one (unless `refuse_session` says the session's
    /// identity may not have it), else in clear unless `secured` (the
    /// engine expects DTLS with that peer).
    pub(crate) fn route(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        bytes: &[u8],
        secured: impl FnOnce() -> bool,
        refuse_session: impl FnOnce(&PeerIdentity) -> bool,
    ) -> Route {
        #[cfg(feature = "dtls")]
        if let Some(dtls) = self.dtls.as_mut().filter(|d| d.has_session(&peer)) {
            if dtls.session_identity(&peer).is_some_and(refuse_session) {
                tracing::debug!(%peer, "DTLS session is not the identity the request is for; dropped");
                return Route::Dropped;
            }
            if let Err(e) = dtls.send(now, peer, bytes) {
                tracing::debug!(%peer, "{e}");
            }
            return Route::Sent;
        }
        #[cfg(not(feature = "dtls"))]
        let _ = (now, bytes, refuse_session);
        if secured() {
            tracing::debug!(%peer, "no DTLS session with a secured client; datagram dropped");
            return Route::Dropped;
        }
        Route::Plain
    }

    /// Sends what the DTLS layer has to send on `secure`.
    pub(crate) async fn flush(&mut self, secure: Option<&UdpSocket>) {
        #[cfg(feature = "dtls")]
        if let (Some(dtls), Some(secure)) = (&mut self.dtls, secure) {
            while let Some((peer, bytes)) = dtls.poll_transmit() {
                if let Err(e) = secure.send_to(&bytes, peer).await {
                    tracing::debug!(%peer, "coaps send error: {e}");
                }
            }
        }
        #[cfg(not(feature = "dtls"))]
        let _ = secure;
    }
}

/// What [`Secured`] needs of a sans-IO engine.
pub(crate) trait SecuredInput {
    /// When the engine's timers next fire.
    fn poll_timeout(&self) -> Option<Instant>;
    /// A datagram from `peer`, which authenticated as `identity` (`None`:
    /// plain CoAP).
    fn handle_datagram_secured(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        identity: Option<&PeerIdentity>,
        bytes: &[u8],
    );
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The connection to `peer` closed: its requests fail now.
    fn peer_gone(&mut self, now: Instant, peer: SocketAddr);
}

/// An engine with its coaps side: where both drivers' datagrams and time
/// go (plain ones dropped from peers with a DTLS session, decrypted ones
/// with their identity).
#[derive(Debug)]
pub(crate) struct Secured<E> {
    pub(crate) engine: E,
    pub(crate) coaps: Coaps,
    /// The time of the latest input (for the DTLS layer's bookkeeping
    /// when flushing).
    pub(crate) now: Instant,
}

impl<E: SecuredInput> Secured<E> {
    /// When [`Secured::handle_timeout`] should next be called.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.coaps.poll_timeout(self.engine.poll_timeout())
    }

    /// A datagram of the plain socket.
    pub(crate) fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, bytes: &[u8]) {
        self.now = now;
        if !self.coaps.drops_plain(&peer) {
            self.engine.handle_datagram_secured(now, peer, None, bytes);
        }
    }

    /// A datagram of the coaps socket.
    pub(crate) fn handle_secure_datagram(&mut self, now: Instant, peer: SocketAddr, bytes: &[u8]) {
        self.now = now;
        let engine = &mut self.engine;
        self.coaps.handle_datagram(now, peer, bytes, |p, id, data| {
            engine.handle_datagram_secured(now, p, Some(id), data);
        });
    }

    /// Time passed, for the engine and the DTLS layer.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.engine.handle_timeout(now);
        let engine = &mut self.engine;
        self.coaps.handle_timeout(now, |p, id, data| {
            engine.handle_datagram_secured(now, p, Some(id), data);
        });
    }
}

impl SecuredInput for Eng {
    fn poll_timeout(&self) -> Option<Instant> {
        Engine::poll_timeout(self)
    }
    fn handle_datagram_secured(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        identity: Option<&PeerIdentity>,
        bytes: &[u8],
    ) {
        Engine::handle_datagram_secured(self, now, peer, identity, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Engine::handle_timeout(self, now);
    }
    fn peer_gone(&mut self, now: Instant, peer: SocketAddr) {
        Engine::peer_gone(self, now, &peer);
    }
}

/// Sends `bytes` to `peer` on the plain socket (`what`: log prefix).
pub(crate) async fn send_plain(socket: &UdpSocket, peer: SocketAddr, bytes: &[u8], what: &str) {
    if let Err(e) = socket.send_to(bytes, peer).await {
        tracing::debug!(%peer, "{what}send error: {e}");
    }
}

/// The registration server's engine with the replies it still owes.
struct ServerPump {
    io: Secured<Eng>,
    events: broadcast::Sender<ServerEvent<SocketAddr>>,
    waiting: HashMap<DmRequestId, DmReply>,
    /// When requests whose callers gave up were last looked for.
    last_sweep: Instant,
    /// The CoAP-over-TCP connections, with a TCP listener.
    tcp: Option<TcpFront>,
    streams: Option<mpsc::Receiver<StreamInput>>,
}

/// How often [`ServerPump::abandon_given_up`] runs at most: a request given
/// up less than this before its sleeping client wakes may still go out.
const SWEEP_INTERVAL: lwm2m_core::time::Duration = lwm2m_core::time::Duration::from_secs(1);

impl Pumped for ServerPump {
    type Command = Command;
    type Engine = Eng;
    const LOG_PREFIX: &'static str = "";
    fn secured(&mut self) -> &mut Secured<Eng> {
        &mut self.io
    }
    fn command(&mut self, now: Instant, cmd: Command) {
        command(&mut self.io.engine, now, cmd, &mut self.waiting);
    }
    fn take_streams(&mut self) -> Option<mpsc::Receiver<StreamInput>> {
        self.streams.take()
    }
    fn stream_input(&mut self, now: Instant, input: StreamInput) {
        if let Some(tcp) = &mut self.tcp {
            tcp.input(now, input, &mut self.io.engine);
        }
    }
    fn before_input(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_INTERVAL {
            self.last_sweep = now;
            self.abandon_given_up(now);
        }
    }
    async fn flush(&mut self, socket: &UdpSocket, secure: Option<&UdpSocket>) {
        self.route_transmits(socket).await;
        self.io.coaps.flush(secure).await;
        flush_events(&mut self.io.engine, &self.events, &mut self.waiting);
    }
}

impl ServerPump {
    /// Abandons the requests whose callers dropped their answer's receiver
    /// (a timeout around a request of the async API): held for a sleeping
    /// client they would otherwise go out at its wake-up ([`Engine::abandon`]).
    fn abandon_given_up(&mut self, now: Instant) {
        let engine = &mut self.io.engine;
        self.waiting.retain(|id, reply| {
            if reply.is_closed() {
                engine.abandon(now, *id);
                false
            } else {
                true
            }
        });
    }

    /// Sends the engine's datagrams: through the peer's DTLS session if it
    /// has one (the server's own requests only if the session's identity
    /// is one a registration at that address was made with), else in
    /// clear unless the peer registered over DTLS.
    async fn route_transmits(&mut self, socket: &UdpSocket) {
        let io = &mut self.io;
        while let Some(t) = io.engine.poll_transmit() {
            if let Some(tcp) = &mut self.tcp {
                let refused = tcp
                    .identity(&t.peer)
                    .is_some_and(|session| refuses(&io.engine, &t.peer, &t.bytes, session));
                if tcp.route(io.now, t.peer, &t.bytes, refused, &mut io.engine) {
                    continue;
                }
            }
            let engine = &io.engine;
            let refuse = |session: &PeerIdentity| refuses(engine, &t.peer, &t.bytes, Some(session));
            let route = io.coaps.route(
                io.now,
                t.peer,
                &t.bytes,
                || engine.expects_security(&t.peer),
                refuse,
            );
            if let Route::Plain = route {
                send_plain(socket, t.peer, &t.bytes, "").await;
            }
        }
    }
}

/// Whether `bytes` to `peer` may not go through a secured connection of
/// `session` (`None`: a plain one): it is one of the server's own requests
/// and a registration at that address was made with security, but not
/// with that identity.
fn refuses(engine: &Eng, peer: &SocketAddr, bytes: &[u8], session: Option<&PeerIdentity>) -> bool {
    is_request(bytes)
        && engine.expects_security(peer)
        && !session.is_some_and(|session| {
            let session = RegistrationSecurity::of(session);
            engine.identities_at(peer).any(|s| *s == session)
        })
}

async fn run(
    mut p: ServerPump,
    socket: UdpSocket,
    secure: Option<UdpSocket>,
    clock: Clock,
    mut commands: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<()>,
) {
    pump(
        &mut p,
        &socket,
        secure.as_ref(),
        &clock,
        &mut commands,
        &mut stop,
    )
    .await;
    for (_, reply) in p.waiting.drain() {
        let _ = reply.send(Err(DmError::ServerStopped));
    }
    tracing::info!("server stopped");
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn command(
    engine: &mut Eng,
    now: Instant,
    cmd: Command,
    waiting: &mut HashMap<DmRequestId, DmReply>,
) {
    match cmd {
        Command::Registrations { reply } => {
            let _ = reply.send(engine.registrations().cloned().collect());
        }
        Command::Registration { endpoint, reply } => {
            let _ = reply.send(engine.registration(&endpoint).cloned());
        }
        Command::RegistrationCount { reply } => {
            let _ = reply.send(engine.registration_count());
        }
        Command::Observations { reply } => {
            let list = engine
                .observations()
                .map(|(id, ep, path)| (id, ep.to_string(), *path))
                .collect();
            let _ = reply.send(list);
        }
        Command::SetFirmware { store, reply } => {
            engine.set_firmware(store);
            let _ = reply.send(());
        }
        Command::CancelObserve { id, reply } => match engine.cancel_observe(now, id) {
            Ok(Some(cancel)) => {
                waiting.insert(cancel, reply);
            }
            Ok(None) => {
                let empty = DmResponse {
                    code: lwm2m_core::coap::Code::CONTENT,
                    content: crate::Content::None,
                };
                let _ = reply.send(Ok((id, empty)));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        },
        Command::Dm {
            endpoint,
            op,
            reply,
        } => {
            let ep = endpoint.as_str();
            let r = match op {
                Op::Read(p, a) => engine.read(now, ep, p, a),
                Op::Discover(p) => engine.discover(now, ep, p),
                Op::Write(p, m, f, n) => engine.write(now, ep, p, m, f, &n),
                Op::Execute(p, a) => engine.execute(now, ep, p, a.as_deref()),
                Op::Create(o, f, i) => engine.create(now, ep, o, f, i),
                Op::Delete(p) => engine.delete(now, ep, p),
                Op::WriteAttributes(p, u) => engine.write_attributes(now, ep, p, &u),
                Op::Observe(p, a) => engine.observe(now, ep, p, a),
                Op::ReadComposite(p, f, a) => engine.read_composite(now, ep, &p, f, a),
                Op::WriteComposite(v, f) => engine.write_composite(now, ep, &v, f),
                Op::ObserveComposite(p, f, a) => engine.observe_composite(now, ep, &p, f, a),
            };
            match r {
                Ok(id) => {
                    waiting.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

/// Hands out the engine's events (and the replies they complete).
fn flush_events(
    engine: &mut Eng,
    events: &broadcast::Sender<ServerEvent<SocketAddr>>,
    waiting: &mut HashMap<DmRequestId, DmReply>,
) {
    while let Some(ev) = engine.poll_event() {
        log_event(&ev);
        if let ServerEvent::Response { id, result, .. } = &ev {
            if let Some(reply) = waiting.remove(id) {
                let _ = reply.send(result.clone().map(|r| (*id, r)));
            }
        }
        // No subscriber is fine: events are also logged.
        let _ = events.send(ev);
    }
}

fn log_event(ev: &ServerEvent<SocketAddr>) {
    match ev {
        ServerEvent::Registered {
            registration: r,
            replaced,
        } => tracing::info!(
            endpoint = %r.endpoint, id = %r.id, address = %r.address, lifetime = r.lifetime,
            lwm2m = %r.lwm2m_version, binding = %r.binding, queue = r.queue_mode,
            replaced = replaced.as_ref().map(|o| o.id.as_str()).unwrap_or("-"),
            "registered"
        ),
        ServerEvent::Updated { registration: r } => tracing::info!(
            endpoint = %r.endpoint, id = %r.id, address = %r.address, lifetime = r.lifetime,
            "updated"
        ),
        ServerEvent::Deregistered { registration: r } => {
            tracing::info!(endpoint = %r.endpoint, id = %r.id, "deregistered")
        }
        ServerEvent::Expired { registration: r } => {
            tracing::info!(endpoint = %r.endpoint, id = %r.id, lifetime = r.lifetime, "expired")
        }
        ServerEvent::StoreFailed { error } => tracing::warn!("store failed: {error}"),
        ServerEvent::Send {
            endpoint, values, ..
        } => tracing::info!(endpoint = %endpoint, values = values.len(), "send"),
        ServerEvent::Response { .. } | ServerEvent::Notification { .. } => {}
    }
}
