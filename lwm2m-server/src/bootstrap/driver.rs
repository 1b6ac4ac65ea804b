//! The tokio driver of the bootstrap server: one task owns a UDP socket (the
//! bootstrap port, separate from the registration server's) and the
//! [`BootstrapEngine`], and serves an async API through a command channel.

use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{
    BootstrapConfig, BootstrapConfigStore, BootstrapEngine, BootstrapEvent, BootstrapServerConfig,
    ConfigError, StartSessionError,
};
use crate::driver::{pump, Clock, OsRandom, Pumped};
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
}

const COMMAND_QUEUE: usize = 256;
const EVENT_QUEUE: usize = 1024;

type Eng = BootstrapEngine<SocketAddr, OsRandom>;

impl BootstrapServer {
    /// Binds `addr` and starts the driver task on the current tokio runtime.
    pub async fn start(
        addr: SocketAddr,
        config: BootstrapServerConfig,
        store: Box<dyn BootstrapConfigStore>,
    ) -> Result<BootstrapServer, StartError> {
        let socket = UdpSocket::bind(addr).await.map_err(StartError::Bind)?;
        let local_addr = socket.local_addr().map_err(StartError::Bind)?;
        let engine = BootstrapEngine::new(config, OsRandom, store);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, _) = broadcast::channel(EVENT_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(engine, socket, cmd_rx, ev_tx.clone(), stop_rx));
        Ok(BootstrapServer {
            handle: BootstrapHandle {
                commands: cmd_tx,
                events: ev_tx,
                local_addr,
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

/// The bootstrap engine with where its events go.
struct BootstrapPump {
    engine: Eng,
    events: broadcast::Sender<BootstrapEvent<SocketAddr>>,
}

impl Pumped for BootstrapPump {
    type Command = Command;
    const LOG_PREFIX: &'static str = "bootstrap ";
    fn poll_timeout(&self) -> Option<lwm2m_core::time::Instant> {
        self.engine.poll_timeout()
    }
    fn handle_datagram(&mut self, now: lwm2m_core::time::Instant, peer: SocketAddr, bytes: &[u8]) {
        self.engine.handle_datagram(now, peer, bytes);
    }
    fn handle_timeout(&mut self, now: lwm2m_core::time::Instant) {
        self.engine.handle_timeout(now);
    }
    fn command(&mut self, now: lwm2m_core::time::Instant, cmd: Command) {
        command(&mut self.engine, now, cmd);
    }
    async fn flush(&mut self, socket: &UdpSocket, _secure: Option<&UdpSocket>) {
        flush(&mut self.engine, socket, &self.events).await;
    }
}

async fn run(
    engine: Eng,
    socket: UdpSocket,
    mut commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<BootstrapEvent<SocketAddr>>,
    mut stop: oneshot::Receiver<()>,
) {
    let clock = Clock::new();
    let mut p = BootstrapPump { engine, events };
    pump(&mut p, &socket, None, &clock, &mut commands, &mut stop).await;
    tracing::info!("bootstrap server stopped");
}

fn command(engine: &mut Eng, now: lwm2m_core::time::Instant, cmd: Command) {
    match cmd {
        Command::StartSession {
            endpoint,
            peer,
            reply,
        } => {
            let _ = reply.send(engine.start_session(now, &endpoint, peer));
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

async fn flush(
    engine: &mut Eng,
    socket: &UdpSocket,
    events: &broadcast::Sender<BootstrapEvent<SocketAddr>>,
) {
    while let Some(t) = engine.poll_transmit() {
        if let Err(e) = socket.send_to(&t.bytes, t.peer).await {
            tracing::debug!(peer = %t.peer, "bootstrap send error: {e}");
        }
    }
    while let Some(ev) = engine.poll_event() {
        log_event(&ev);
        let _ = events.send(ev);
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
