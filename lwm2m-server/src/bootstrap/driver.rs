//! The tokio driver of the bootstrap server: one task owns a UDP socket (the
//! bootstrap port, separate from the registration server's) and the
//! [`BootstrapEngine`], and serves an async API through a command channel.
//!
//! With [`BootstrapServer::start_secured`] (feature `dtls`) a second UDP
//! socket feeds the same engine through the registration server's DTLS
//! layer ([`crate::dtls::DtlsServer`], shared driver code in
//! [`crate::driver`]). PSK keys come from the bootstrap-server accounts of
//! the configurations ([`IndexedConfigStore`], which also keeps PSK
//! identities unique); the engine decides who may bootstrap which endpoint
//! ([`super::credentials::authorize_bootstrap`]). Routing is the
//! registration server's: to a peer with a DTLS session through it, else
//! in clear, unless the peer's bootstrap session was started over DTLS
//! ([`BootstrapEngine::expects_security`]): then it is dropped, never sent
//! in clear (it carries the DM server's keys); and the engine's requests
//! go through a DTLS session only if its identity is the one the bootstrap
//! session was authorized for ([`BootstrapEngine::identities_at`]). A plain datagram from a
//! peer with a DTLS session is dropped. A server-initiated session
//! ([`BootstrapHandle::start_session`]) to a peer with a DTLS session runs
//! over it, with that session's identity checked as a Bootstrap-Request's
//! would be.

use std::net::SocketAddr;

use lwm2m_core::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::credentials::IndexedConfigStore;
#[cfg(feature = "dtls")]
use super::credentials::SharedPskIndex;
use super::{
    BootstrapConfig, BootstrapConfigStore, BootstrapEngine, BootstrapEvent, BootstrapServerConfig,
    ConfigError, StartSessionError,
};
use crate::driver::{
    is_request, pump, send_plain, Clock, Coaps, OsRandom, Pumped, Route, Secured, SecuredInput,
};
#[cfg(feature = "dtls")]
use crate::dtls::DtlsConfig;
use crate::security::PeerIdentity;
use crate::StartError;

enum Command {
    StartSession {
        endpoint: String,
        peer: SocketAddr,
        reply: oneshot::Sender<Result<(), StartSessionError>>,
    },
    PutConfig {
        endpoint: String,
        config: Box<BootstrapConfig>,
        reply: oneshot::Sender<Result<(), ConfigError>>,
    },
    RemoveConfig {
        endpoint: String,
        reply: oneshot::Sender<Result<bool, ConfigError>>,
    },
    GetConfig {
        endpoint: String,
        reply: oneshot::Sender<Result<Option<BootstrapConfig>, ConfigError>>,
    },
    Endpoints {
        reply: oneshot::Sender<Result<Vec<String>, ConfigError>>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// A running bootstrap server. Dropping it without
/// [`BootstrapServer::shutdown`] stops the task once every
/// [`BootstrapHandle`] is gone too.
#[derive(Debug)]
pub struct BootstrapServer {
    handle: BootstrapHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// A cheap, cloneable handle to the async API of a running [`BootstrapServer`].
#[derive(Debug, Clone)]
pub struct BootstrapHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<BootstrapEvent<SocketAddr>>,
    local_addr: SocketAddr,
    secure_addr: Option<SocketAddr>,
}

const COMMAND_QUEUE: usize = 256;
const EVENT_QUEUE: usize = 1024;

type Eng = BootstrapEngine<SocketAddr, OsRandom>;

impl BootstrapServer {
    /// Binds `addr` and starts the driver task on the current tokio runtime.
    /// Configurations go through an [`IndexedConfigStore`] over `store`
    /// (PSK identities unique).
    pub async fn start(
        addr: SocketAddr,
        config: BootstrapServerConfig,
        store: Box<dyn BootstrapConfigStore>,
    ) -> Result<BootstrapServer, StartError> {
        let store = IndexedConfigStore::new(store).map_err(StartError::BootstrapStore)?;
        Self::launch(addr, config, store, Coaps::default(), None).await
    }

    /// [`BootstrapServer::start`] with a coaps socket at `coaps`' address
    /// and DTLS settings (`None`: plain CoAP only); see the module doc.
    #[cfg(feature = "dtls")]
    pub async fn start_secured(
        addr: SocketAddr,
        config: BootstrapServerConfig,
        store: Box<dyn BootstrapConfigStore>,
        coaps: Option<(SocketAddr, DtlsConfig)>,
    ) -> Result<BootstrapServer, StartError> {
        let store = IndexedConfigStore::new(store).map_err(StartError::BootstrapStore)?;
        let (coaps, secure) = Coaps::bind(coaps, psk_from_index(store.index())).await?;
        Self::launch(addr, config, store, coaps, secure).await
    }

    async fn launch(
        addr: SocketAddr,
        config: BootstrapServerConfig,
        store: IndexedConfigStore,
        coaps: Coaps,
        secure: Option<UdpSocket>,
    ) -> Result<BootstrapServer, StartError> {
        let socket = UdpSocket::bind(addr).await.map_err(StartError::Bind)?;
        let local_addr = socket.local_addr().map_err(StartError::Bind)?;
        let secure_addr = match &secure {
            Some(s) => Some(s.local_addr().map_err(StartError::BindSecure)?),
            None => None,
        };
        let engine = BootstrapEngine::new(config, OsRandom, Box::new(store));
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, _) = broadcast::channel(EVENT_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let clock = Clock::new();
        let p = BootstrapPump {
            io: Secured {
                engine,
                coaps,
                now: clock.now(),
            },
            events: ev_tx.clone(),
        };
        let task = tokio::spawn(run(p, socket, secure, clock, cmd_rx, stop_rx));
        Ok(BootstrapServer {
            handle: BootstrapHandle {
                commands: cmd_tx,
                events: ev_tx,
                local_addr,
                secure_addr,
            },
            shutdown: Some(stop_tx),
            task,
        })
    }

    /// A handle to the async API.
    pub fn handle(&self) -> BootstrapHandle {
        self.handle.clone()
    }

    /// Stops the driver task; running sessions end without a Failed event.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl std::ops::Deref for BootstrapServer {
    type Target = BootstrapHandle;
    fn deref(&self) -> &BootstrapHandle {
        &self.handle
    }
}

impl BootstrapHandle {
    /// The address the bootstrap socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the coaps (DTLS) socket is bound to, if there is one.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure_addr
    }

    /// Bootstrap events from now on.
    pub fn events(&self) -> broadcast::Receiver<BootstrapEvent<SocketAddr>> {
        self.events.subscribe()
    }

    /// Server-initiated bootstrap of `endpoint`, listening at `peer`. Returns
    /// once the session started; its end comes as an event.
    pub async fn start_session(
        &self,
        endpoint: &str,
        peer: SocketAddr,
    ) -> Result<(), StartSessionError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::StartSession {
            endpoint: endpoint.to_string(),
            peer,
            reply,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| StartSessionError::Stopped)?;
        rx.await.map_err(|_| StartSessionError::Stopped)?
    }

    /// Adds or replaces the configuration of `endpoint` (validated first).
    pub async fn put_config(
        &self,
        endpoint: &str,
        config: BootstrapConfig,
    ) -> Result<(), ConfigError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::PutConfig {
            endpoint: endpoint.to_string(),
            config: Box::new(config),
            reply,
        };
        self.commands
            .send(cmd)
            .await
            .map_err(|_| ConfigError::Stopped)?;
        rx.await.map_err(|_| ConfigError::Stopped)?
    }

    /// Removes the configuration of `endpoint`; true if there was one.
    pub async fn remove_config(&self, endpoint: &str) -> Result<bool, ConfigError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::RemoveConfig {
            endpoint: endpoint.to_string(),
            reply,
        };
        self.ask(cmd, rx).await
    }

    /// The configuration of `endpoint`.
    pub async fn config(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, ConfigError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::GetConfig {
            endpoint: endpoint.to_string(),
            reply,
        };
        self.ask(cmd, rx).await
    }

    /// Every configured endpoint name, sorted.
    pub async fn endpoints(&self) -> Result<Vec<String>, ConfigError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Command::Endpoints { reply }, rx).await
    }

    async fn ask<T>(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<T, ConfigError>>,
    ) -> Result<T, ConfigError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| ConfigError::Stopped)?;
        rx.await.map_err(|_| ConfigError::Stopped)?
    }
}

/// PSK keys of the bootstrap-server accounts, for the DTLS handshake.
#[cfg(feature = "dtls")]
fn psk_from_index(index: SharedPskIndex) -> crate::dtls::PskLookup {
    std::sync::Arc::new(move |identity| {
        let index = index.lock().unwrap_or_else(|e| e.into_inner());
        index.key(identity).map(<[u8]>::to_vec)
    })
}

/// The bootstrap engine with its coaps side and where its events go.
struct BootstrapPump {
    io: Secured<Eng>,
    events: broadcast::Sender<BootstrapEvent<SocketAddr>>,
}

impl SecuredInput for Eng {
    fn poll_timeout(&self) -> Option<Instant> {
        BootstrapEngine::poll_timeout(self)
    }
    fn handle_datagram_secured(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        identity: Option<&PeerIdentity>,
        bytes: &[u8],
    ) {
        BootstrapEngine::handle_datagram_secured(self, now, peer, identity, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        BootstrapEngine::handle_timeout(self, now);
    }
    fn peer_gone(&mut self, now: Instant, peer: SocketAddr) {
        BootstrapEngine::peer_gone(self, now, &peer);
    }
}

impl Pumped for BootstrapPump {
    type Command = Command;
    type Engine = Eng;
    const LOG_PREFIX: &'static str = "bootstrap ";
    fn secured(&mut self) -> &mut Secured<Eng> {
        &mut self.io
    }
    fn command(&mut self, now: Instant, cmd: Command) {
        command(&mut self.io.engine, &self.io.coaps, now, cmd);
    }
    async fn flush(&mut self, socket: &UdpSocket, secure: Option<&UdpSocket>) {
        let io = &mut self.io;
        while let Some(t) = io.engine.poll_transmit() {
            let engine = &io.engine;
            let route = io.coaps.route(
                io.now,
                t.peer,
                &t.bytes,
                || engine.expects_security(&t.peer),
                // The bootstrap requests of a secured session go to its
                // identity only (another handshake may have taken the
                // address over); answers to the peer's requests go as is.
                |session| {
                    is_request(&t.bytes)
                        && engine.expects_security(&t.peer)
                        && !engine.identities_at(&t.peer).any(|i| i == session)
                },
            );
            if let Route::Plain = route {
                send_plain(socket, t.peer, &t.bytes, "bootstrap ").await;
            }
        }
        io.coaps.flush(secure).await;
        while let Some(ev) = io.engine.poll_event() {
            log_event(&ev);
            let _ = self.events.send(ev);
        }
    }
}

async fn run(
    mut p: BootstrapPump,
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
    tracing::info!("bootstrap server stopped");
}

fn command(engine: &mut Eng, coaps: &Coaps, now: Instant, cmd: Command) {
    match cmd {
        Command::StartSession {
            endpoint,
            peer,
            reply,
        } => {
            let identity = coaps.session_identity(&peer);
            let _ = reply.send(engine.start_session_secured(now, &endpoint, peer, identity));
        }
        Command::PutConfig {
            endpoint,
            config,
            reply,
        } => {
            let _ = reply.send(engine.store_mut().put(&endpoint, *config));
        }
        Command::RemoveConfig { endpoint, reply } => {
            let _ = reply.send(engine.store_mut().remove(&endpoint));
        }
        Command::GetConfig { endpoint, reply } => {
            let _ = reply.send(engine.store().get(&endpoint));
        }
        Command::Endpoints { reply } => {
            let _ = reply.send(engine.store().endpoints());
        }
    }
}

fn log_event(ev: &BootstrapEvent<SocketAddr>) {
    match ev {
        BootstrapEvent::Started {
            endpoint,
            peer,
            client_initiated,
        } => {
            tracing::info!(endpoint = %endpoint, address = %peer, client_initiated, "bootstrap started")
        }
        BootstrapEvent::Finished {
            endpoint, format, ..
        } => tracing::info!(endpoint = %endpoint, format = format.0, "bootstrap finished"),
        BootstrapEvent::Failed {
            endpoint,
            step,
            reason,
        } => tracing::warn!(endpoint = %endpoint, "bootstrap failed at {step}: {reason}"),
        BootstrapEvent::PackServed { endpoint, peer } => {
            tracing::info!(endpoint = %endpoint, address = %peer, "bootstrap pack served")
        }
    }
}
