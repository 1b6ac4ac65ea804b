//! CoAP over TCP (RFC 8323, LwM2M binding `T`) for the registration
//! server's driver task.
//!
//! A listener task accepts at most [`TcpOptions::max_connections`]
//! connections (more are closed at once) and gives each a task that moves
//! its bytes to and from the driver task. There, every connection is a
//! [`DatagramBridge`]: the engine sees it as one more datagram peer whose
//! address is the connection's remote address, so registration, device
//! management, observe and block-wise code is the same for both transports.
//! A registration made over TCP carries that address; once the connection is
//! gone the server's requests to it fail at once (those in flight through
//! [`Engine::peer_gone`](crate::engine::Engine::peer_gone), later ones with
//! the RST the bridge answers them with) until the client connects again and registers or updates, which
//! moves the registration to the new connection.
//!
//! With the `tls` feature a second listener serves CoAP over TLS
//! ([`crate::coap_tls`]): its connections handshake on their own task and
//! then are bridges like these, carrying the identity the handshake
//! authenticated into the engine with every datagram. A server request for
//! a registration made with security never goes over a connection of
//! another identity (or a plain one): it fails at once instead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use lwm2m_core::coap::tcp_bridge::{undeliverable, DatagramBridge};
use lwm2m_core::coap::tcp_endpoint::TcpConfig;
use lwm2m_core::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

#[cfg(feature = "tls")]
use crate::coap_tls::TlsAcceptor;
use crate::driver::{OsRandom, SecuredInput};
use crate::security::PeerIdentity;

/// Settings of the CoAP-over-TCP listener.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// The CoAP-over-TCP layer of each connection (Max-Message-Size, bounds).
    pub config: TcpConfig,
}

impl TcpOptions {
    /// Listens on `addr` with 10 000 connections at most and default bounds.
    pub fn new(addr: SocketAddr) -> TcpOptions {
        TcpOptions {
            addr,
            max_connections: 10_000,
            config: TcpConfig::default(),
        }
    }
}

/// What a connection task tells the driver task.
#[derive(Debug)]
pub(crate) enum StreamInput {
    /// A connection was accepted (and, over TLS, its handshake done);
    /// frames for it go to `writer`.
    Opened {
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        /// Who the peer authenticated as over TLS; `None`: plain TCP.
        identity: Option<Arc<PeerIdentity>>,
        /// The CoAP-over-TCP settings of the listener that accepted it.
        config: TcpConfig,
    },
    /// Bytes read from it.
    Data { peer: SocketAddr, bytes: Vec<u8> },
    /// It was closed by the peer or failed.
    Closed { peer: SocketAddr },
}

/// Chunks queued for one connection's socket; a peer that reads slower
/// than this is disconnected rather than buffered for without bound.
const WRITE_QUEUE: usize = 256;
/// Inputs queued from all connections for the driver task (back-pressure beyond).
const INPUT_QUEUE: usize = 1024;
/// Closed connections remembered so that requests to them fail at once.
const GONE_REMEMBERED: usize = 65_536;

/// What a listener's connections speak.
#[derive(Clone)]
pub(crate) enum Transport {
    /// CoAP over TCP in clear.
    Plain,
    /// CoAP over TLS: each connection handshakes first.
    #[cfg(feature = "tls")]
    Tls(Arc<TlsAcceptor>),
}

/// The channel every listener's connections feed the driver task with.
pub(crate) fn channel() -> (mpsc::Sender<StreamInput>, mpsc::Receiver<StreamInput>) {
    mpsc::channel(INPUT_QUEUE)
}

/// Binds a listener for `transport` and starts its accept task, whose
/// connections send their input on `tx`. Returns the bound address; the
/// tasks end when the receiver is dropped.
pub(crate) async fn listen(
    options: &TcpOptions,
    transport: Transport,
    tx: mpsc::Sender<StreamInput>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(options.addr).await?;
    let addr = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let config = options.config.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let opened = Opening { peer, config: config.clone(), input: tx.clone(), _slot: permit };
                            tokio::spawn(accepted(stream, transport.clone(), opened));
                        }
                        Err(_) => tracing::debug!(%peer, "too many CoAP-over-TCP connections; closed"),
                    },
                    Err(e) => tracing::debug!("CoAP-over-TCP accept error: {e}"),
                },
                () = tx.closed() => break,
            }
        }
    });
    Ok(addr)
}

/// An accepted connection on its way to the driver task.
struct Opening {
    peer: SocketAddr,
    config: TcpConfig,
    input: mpsc::Sender<StreamInput>,
    /// Its place under the listener's connection limit, held until it closes.
    _slot: OwnedSemaphorePermit,
}

/// Runs the TLS handshake of a connection when `transport` says so, then
/// moves its bytes.
async fn accepted(stream: TcpStream, transport: Transport, opening: Opening) {
    let _ = stream.set_nodelay(true);
    match transport {
        Transport::Plain => connection(stream, None, opening).await,
        #[cfg(feature = "tls")]
        Transport::Tls(acceptor) => {
            if let Some((tls, identity)) = acceptor.accept(stream, opening.peer).await {
                connection(tls, Some(Arc::new(identity)), opening).await;
            }
        }
    }
}

/// Moves one connection's bytes until either side closes it.
async fn connection<S: AsyncRead + AsyncWrite + Send>(
    stream: S,
    identity: Option<Arc<PeerIdentity>>,
    opening: Opening,
) {
    let Opening {
        peer,
        config,
        input,
        _slot,
    } = opening;
    let (writer, mut frames) = mpsc::channel(WRITE_QUEUE);
    let opened = StreamInput::Opened {
        peer,
        writer,
        identity,
        config,
    };
    if input.send(opened).await.is_err() {
        return;
    }
    let (mut read, mut write) = tokio::io::split(stream);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = read.read(&mut buf) => match r {
                Ok(n) if n > 0 => {
                    let bytes = buf.get(..n).unwrap_or_default().to_vec();
                    if input.send(StreamInput::Data { peer, bytes }).await.is_err() {
                        return;
                    }
                }
                _ => break,
            },
            out = frames.recv() => match out {
                Some(bytes) => {
                    if write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                // The driver is done with the connection (Release, Abort,
                // shutdown): what was queued is written, so close.
                None => {
                    let _ = write.shutdown().await;
                    return;
                }
            },
        }
    }
    let _ = input.send(StreamInput::Closed { peer }).await;
}

struct Conn {
    bridge: DatagramBridge<OsRandom>,
    writer: mpsc::Sender<Vec<u8>>,
    /// Who the peer authenticated as over TLS; `None`: plain TCP.
    identity: Option<Arc<PeerIdentity>>,
}

/// The connections, on the driver task.
pub(crate) struct TcpFront {
    conns: HashMap<SocketAddr, Conn>,
    gone: HashSet<SocketAddr>,
    gone_order: VecDeque<SocketAddr>,
}

impl std::fmt::Debug for TcpFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpFront")
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl TcpFront {
    pub(crate) fn new() -> TcpFront {
        TcpFront {
            conns: HashMap::new(),
            gone: HashSet::new(),
            gone_order: VecDeque::new(),
        }
    }

    /// Input from a connection task; what it decodes to goes to `engine`.
    pub(crate) fn input(
        &mut self,
        now: Instant,
        input: StreamInput,
        engine: &mut impl SecuredInput,
    ) {
        let peer = match input {
            StreamInput::Opened {
                peer,
                writer,
                identity,
                config,
            } => {
                self.gone.remove(&peer);
                let bridge = DatagramBridge::new(config, OsRandom);
                tracing::debug!(%peer, tls = identity.is_some(), "CoAP-over-TCP connection");
                let conn = Conn {
                    bridge,
                    writer,
                    identity,
                };
                self.conns.insert(peer, conn);
                peer
            }
            StreamInput::Data { peer, bytes } => {
                if let Some(c) = self.conns.get_mut(&peer) {
                    c.bridge.handle_bytes(&bytes);
                }
                peer
            }
            StreamInput::Closed { peer } => {
                if let Some(c) = self.conns.get_mut(&peer) {
                    c.bridge.handle_eof();
                }
                peer
            }
        };
        self.settle(now, peer, engine);
    }

    /// The identity of the open connection from `peer`: `None` if there is
    /// none, `Some(None)` for plain TCP.
    pub(crate) fn identity(&self, peer: &SocketAddr) -> Option<Option<&PeerIdentity>> {
        self.conns.get(peer).map(|c| c.identity.as_deref())
    }

    /// Routes a datagram of the engine: `true` if `peer` is (or was) a TCP
    /// connection, so the datagram must not go out on UDP. `refused`: the
    /// datagram may not go over the connection open there (see
    /// [`TcpFront::identity`]); it fails as if the connection were gone.
    pub(crate) fn route(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        datagram: &[u8],
        refused: bool,
        engine: &mut impl SecuredInput,
    ) -> bool {
        if let Some(c) = self.conns.get_mut(&peer).filter(|_| !refused) {
            c.bridge.handle_transmit(datagram);
            self.settle(now, peer, engine);
            return true;
        }
        if refused {
            tracing::debug!(%peer, "TCP connection is not the identity the request is for; not sent");
        }
        if refused || self.gone.contains(&peer) {
            if let Some(rst) = undeliverable(datagram) {
                engine.handle_datagram_secured(now, peer, None, &rst);
            }
            return true;
        }
        false
    }

    /// Hands `peer`'s decoded datagrams to the engine, queues its outgoing
    /// bytes, and forgets it once closed (dropping the writer closes the socket).
    fn settle(&mut self, now: Instant, peer: SocketAddr, engine: &mut impl SecuredInput) {
        let Some(c) = self.conns.get_mut(&peer) else {
            return;
        };
        while let Some(d) = c.bridge.poll_datagram() {
            engine.handle_datagram_secured(now, peer, c.identity.as_deref(), &d);
        }
        let out = c.bridge.take_outgoing();
        if !out.is_empty() && c.writer.try_send(out).is_err() {
            tracing::debug!(%peer, "CoAP-over-TCP peer does not read; disconnected");
            c.bridge.handle_eof();
            // What the close decoded (nothing reaches the engine but
            // bookkeeping) is dropped with the bridge.
        }
        if !c.bridge.is_closed() {
            return;
        }
        if let Some(reason) = c.bridge.close_reason() {
            tracing::debug!(%peer, "CoAP-over-TCP connection closed: {reason}");
        }
        self.conns.remove(&peer);
        // Requests the bridge already wrote to the connection (and
        // acknowledged to the engine) fail now, not at their response timeout.
        engine.peer_gone(now, peer);
        if self.gone.insert(peer) {
            self.gone_order.push_back(peer);
            if self.gone_order.len() > GONE_REMEMBERED {
                if let Some(old) = self.gone_order.pop_front() {
                    self.gone.remove(&old);
                }
            }
        }
    }
}
