//! A sans-IO DTLS 1.2 client session (feature `dtls`): OpenSSL driven
//! through a [`DatagramPipe`], one session per secured peer.
//!
//! The driver feeds every datagram from the peer to
//! [`DtlsSession::handle_datagram`] and hands the decrypted CoAP
//! datagrams it returns to the engine; it passes what the engine sends to
//! that peer to [`DtlsSession::send`] (queued until the handshake is
//! done) and sends what [`DtlsSession::poll_transmit`] returns; it calls
//! [`DtlsSession::handle_timeout`] when [`DtlsSession::poll_timeout`] is
//! due. [`DtlsSession::state`] and [`DtlsSession::error`] tell whether the
//! handshake failed and why (the alert received, the certificate check
//! that failed, or no answer in time).
//!
//! Credentials come from the Security object as [`SecurityParams`]:
//! PSK (mode 0) and X.509 certificates (mode 2) with Certificate Usage 3
//! (the server's certificate must equal resource 4) or 2 (resource 4 is
//! the trust anchor of the server's chain; the server's name is not
//! checked against the URI), and raw public keys (mode 1, RFC 7250: the
//! client presents the public half of resource 5 and accepts exactly the
//! key in resource 4). Raw public keys need OpenSSL 3.2 or newer: with
//! the `rpk` feature (default) OpenSSL is built from source and linked
//! statically (crate `lwm2m-dtls`); without it mode 1 is
//! [`DtlsError::Unsupported`].
//!
//! # Timers
//!
//! The `openssl` crate has no binding for `DTLSv1_get_timeout`, and
//! OpenSSL keeps its retransmission timer on the system clock: it resends
//! a handshake flight when the handshake is driven after that timer
//! expired (1 s, doubling). So while a handshake is in progress
//! [`DtlsSession::poll_timeout`] asks to be woken every
//! [`DtlsConfig::retransmit_check`] (250 ms by default) and
//! [`DtlsSession::handle_timeout`] drives the handshake, which lets
//! OpenSSL retransmit when its own timer says so. The overall bound,
//! [`DtlsConfig::handshake_timeout`], is measured on the caller's clock.
//! A wrong PSK is one case that only ends there: DTLS servers drop
//! records they cannot decrypt without an alert (RFC 6347 §4.1.2.7).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lwm2m_core::datagram_pipe::DatagramPipe;
use lwm2m_core::time::{Duration, Instant};
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::{
    ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509VerifyResult, X509};

use crate::security::{CertificateUsage, SecurityParams};

/// The DTLS record size limit: an IPv6 minimum MTU (1280) minus the IPv6
/// and UDP headers.
pub const DEFAULT_MTU: u32 = 1232;

/// The cipher suites offered with a PSK: the two LwM2M mandates
/// (TS Transport §5.2.8: `TLS_PSK_WITH_AES_128_CCM_8`,
/// `TLS_PSK_WITH_AES_128_CBC_SHA256`), then GCM ones peers commonly have.
const PSK_CIPHERS: &str =
    "PSK-AES128-CCM8:PSK-AES128-CBC-SHA256:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384";

/// The longest PSK identity accepted (RFC 4279 allows 2^16 bytes;
/// OpenSSL's buffer holds 128 plus the terminating NUL).
const MAX_IDENTITY: usize = 128;
/// The longest pre-shared key accepted (OpenSSL's `PSK_MAX_PSK_LEN`).
const MAX_PSK: usize = 256;

/// Tuning of a [`DtlsSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsConfig {
    /// Largest datagram the session writes ([`DEFAULT_MTU`]).
    pub mtu: u32,
    /// A handshake not finished after this long fails with
    /// [`DtlsError::HandshakeTimeout`] (30 s by default).
    pub handshake_timeout: Duration,
    /// While handshaking, how often the session wants
    /// [`DtlsSession::handle_timeout`] (250 ms; see the
    /// [module documentation](self#timers)).
    pub retransmit_check: Duration,
    /// How many plaintext datagrams [`DtlsSession::send`] queues before
    /// the handshake is done (identical ones are kept once: they are CoAP
    /// retransmissions).
    pub max_queued: usize,
    /// How many received datagrams may wait unread (more are dropped).
    pub max_incoming: usize,
}

impl Default for DtlsConfig {
    fn default() -> DtlsConfig {
        DtlsConfig {
            mtu: DEFAULT_MTU,
            handshake_timeout: Duration::from_secs(30),
            retransmit_check: Duration::from_millis(250),
            max_queued: 16,
            max_incoming: 32,
        }
    }
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsState {
    /// The handshake runs; [`DtlsSession::send`] queues.
    Handshaking,
    /// Application data flows both ways.
    Established,
    /// The handshake or the connection failed: see [`DtlsSession::error`].
    Failed,
    /// The peer (or [`DtlsSession::close`]) closed the session.
    Closed,
}

/// Why a session could not be set up or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtlsError {
    /// The Security instance's configuration cannot be used (see
    /// [`SecurityParams::Unusable`]).
    Unusable(&'static str),
    /// A security mode or option this build cannot do.
    Unsupported(&'static str),
    /// A credential is malformed or missing.
    BadCredential {
        /// Which one (and which Security resource holds it).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// OpenSSL refused the configuration.
    Setup(String),
    /// The handshake failed: the alert received or sent, or the check of
    /// the server's certificate that failed.
    HandshakeFailed(String),
    /// No complete handshake within [`DtlsConfig::handshake_timeout`]:
    /// the server does not answer, or drops what it cannot decrypt (a
    /// wrong PSK).
    HandshakeTimeout,
    /// A record after the handshake could not be processed (a fatal alert
    /// from the peer, a failed write).
    Connection(String),
    /// The session was closed (close_notify) and carries no more data.
    Closed,
    /// [`DtlsSession::send`] before the handshake finished with
    /// [`DtlsConfig::max_queued`] datagrams already waiting.
    QueueFull,
}

impl fmt::Display for DtlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtlsError::Unusable(why) => write!(f, "unusable Security instance: {why}"),
            DtlsError::Unsupported(what) => write!(f, "not supported: {what}"),
            DtlsError::BadCredential { what, reason } => write!(f, "bad {what}: {reason}"),
            DtlsError::Setup(e) => write!(f, "OpenSSL refused the DTLS configuration: {e}"),
            DtlsError::HandshakeFailed(why) => write!(f, "DTLS handshake failed: {why}"),
            DtlsError::HandshakeTimeout => f.write_str(
                "DTLS handshake timed out: no answer from the server, or it dropped our \
                 records (a wrong pre-shared key looks like this)",
            ),
            DtlsError::Connection(why) => write!(f, "DTLS connection failed: {why}"),
            DtlsError::Closed => f.write_str("the DTLS session is closed"),
            DtlsError::QueueFull => {
                f.write_str("too many datagrams waiting for the DTLS handshake")
            }
        }
    }
}

impl std::error::Error for DtlsError {}

fn setup(e: ErrorStack) -> DtlsError {
    DtlsError::Setup(e.to_string())
}

fn bad(what: &'static str, reason: impl fmt::Display) -> DtlsError {
    DtlsError::BadCredential {
        what,
        reason: reason.to_string(),
    }
}

/// One DTLS 1.2 client session with one peer; see the
/// [module documentation](self).
pub struct DtlsSession {
    stream: SslStream<DatagramPipe>,
    state: DtlsState,
    error: Option<DtlsError>,
    /// Plaintext sent before the handshake finished.
    queued: VecDeque<Vec<u8>>,
    config: DtlsConfig,
    /// The handshake fails at this time.
    deadline: Instant,
    /// The next time the handshake is driven (OpenSSL's retransmissions).
    next_check: Option<Instant>,
    /// Set by the verify callback when the server's certificate differs
    /// from the pinned one (Certificate Usage 3), or its raw public key
    /// from resource 4 (mode 1), for the error message.
    pin_mismatch: Arc<AtomicBool>,
    /// What [`DtlsSession::error`] says when `pin_mismatch` is set.
    pin_mismatch_reason: &'static str,
    /// The latest time any entry point was called with.
    now: Instant,
}

impl fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSession")
            .field("state", &self.state)
            .field("error", &self.error)
            .field("queued", &self.queued.len())
            .finish_non_exhaustive()
    }
}

impl DtlsSession {
    /// Starts a handshake with `params` (the first flight is then ready in
    /// [`DtlsSession::poll_transmit`]). Fails at once when the parameters
    /// cannot be used: [`SecurityParams::NoSec`] needs no session,
    /// unusable or unsupported configurations and malformed credentials
    /// are reported with what is wrong.
    pub fn connect(
        params: &SecurityParams,
        config: &DtlsConfig,
        now: Instant,
    ) -> Result<DtlsSession, DtlsError> {
        let mut ctx = SslContextBuilder::new(SslMethod::dtls_client()).map_err(setup)?;
        ctx.set_min_proto_version(Some(SslVersion::DTLS1_2))
            .map_err(setup)?;
        // The MTU is ours (set below); the BIO knows none.
        ctx.set_options(SslOptions::NO_QUERY_MTU);
        // LwM2M mandates the AES-128-CCM-8 suites, which OpenSSL 3.4 and
        // later file under security level 0 (64-bit tags): the level is
        // lowered for the cipher choice (the lists here hold no weak suite),
        // and certificate chains keep level 1's key-size checks.
        ctx.set_security_level(0);
        ctx.verify_param_mut().set_auth_level(1);
        let pin_mismatch = Arc::new(AtomicBool::new(false));
        match params {
            SecurityParams::NoSec => {
                return Err(DtlsError::Unusable(
                    "Security Mode 3 (NoSec) needs no DTLS session",
                ))
            }
            SecurityParams::Unusable(why) => return Err(DtlsError::Unusable(why)),
            #[cfg(feature = "rpk")]
            SecurityParams::RawPublicKey {
                public_key,
                server_public_key,
                private_key,
            } => configure_rpk(
                &mut ctx,
                public_key,
                server_public_key,
                private_key,
                pin_mismatch.clone(),
            )?,
            #[cfg(not(feature = "rpk"))]
            SecurityParams::RawPublicKey { .. } => {
                return Err(DtlsError::Unsupported(
                    "Security Mode 1 (Raw Public Key, RFC 7250) needs OpenSSL >= 3.2 (the \
                     `rpk` feature); this build has none: expected mode 0 (PSK) or 2 \
                     (Certificate)",
                ))
            }
            SecurityParams::Psk { identity, key } => {
                configure_psk(&mut ctx, identity, key)?;
            }
            SecurityParams::Certificate {
                certificate,
                private_key,
                server_certificate,
                usage,
            } => configure_certificate(
                &mut ctx,
                certificate,
                private_key,
                server_certificate,
                *usage,
                pin_mismatch.clone(),
            )?,
            // A future mode: refused like an unsupported one.
            #[allow(unreachable_patterns)]
            _ => return Err(DtlsError::Unsupported("this Security Mode")),
        }
        let ctx = ctx.build();
        let mut ssl = Ssl::new(&ctx).map_err(setup)?;
        ssl.set_mtu(config.mtu).map_err(setup)?;
        ssl.set_connect_state();
        let stream = SslStream::new(ssl, DatagramPipe::new(config.max_incoming)).map_err(setup)?;
        let mut session = DtlsSession {
            stream,
            state: DtlsState::Handshaking,
            error: None,
            queued: VecDeque::new(),
            config: config.clone(),
            deadline: now + config.handshake_timeout,
            next_check: None,
            pin_mismatch,
            pin_mismatch_reason: match params {
                SecurityParams::RawPublicKey { .. } => {
                    "the server's raw public key is not the one in Security resource 4 \
                     (Security Mode 1)"
                }
                _ => {
                    "the server's certificate is not the one in Security resource 4 \
                     (Certificate Usage 3, domain-issued certificate)"
                }
            },
            now,
        };
        session.drive_handshake(now);
        Ok(session)
    }

    /// Where the session is.
    pub fn state(&self) -> DtlsState {
        self.state
    }

    /// Why the session failed (state [`DtlsState::Failed`] or
    /// [`DtlsState::Closed`]).
    pub fn error(&self) -> Option<&DtlsError> {
        self.error.as_ref()
    }

    /// A datagram from the peer: returns the CoAP datagrams it carried
    /// (none while handshaking, for handshake records, or for anything
    /// OpenSSL drops: records that do not decrypt, garbage).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Vec<Vec<u8>> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        // An empty datagram holds no record; OpenSSL would read its zero
        // length as the end of the connection.
        if datagram.is_empty() || matches!(self.state, DtlsState::Failed | DtlsState::Closed) {
            return out;
        }
        // A full inbox drops the datagram; the peer retransmits.
        let _ = self.stream.get_mut().push_incoming(datagram.to_vec());
        if self.state == DtlsState::Handshaking {
            self.drive_handshake(now);
        }
        if self.state == DtlsState::Established {
            self.read_all(&mut out);
        }
        out
    }

    /// Sends one CoAP datagram: encrypted at once when the session is
    /// established, queued while handshaking (bounded by
    /// [`DtlsConfig::max_queued`]; a datagram equal to a queued one is
    /// kept once), refused once the session failed or closed.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), DtlsError> {
        match self.state {
            DtlsState::Handshaking => {
                if self.queued.iter().any(|q| q == plaintext) {
                    return Ok(());
                }
                if self.queued.len() >= self.config.max_queued {
                    return Err(DtlsError::QueueFull);
                }
                self.queued.push_back(plaintext.to_vec());
                Ok(())
            }
            DtlsState::Established => self.write(plaintext),
            DtlsState::Failed | DtlsState::Closed => {
                Err(self.error.clone().unwrap_or(DtlsError::Closed))
            }
        }
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.stream.get_mut().pop_outgoing()
    }

    /// When [`DtlsSession::handle_timeout`] should be called (only while
    /// handshaking).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != DtlsState::Handshaking {
            return None;
        }
        Some(
            self.next_check
                .map_or(self.deadline, |c| c.min(self.deadline)),
        )
    }

    /// Time passed: drives the handshake (OpenSSL retransmits a flight
    /// whose timer expired) and fails it at the deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.state != DtlsState::Handshaking {
            return;
        }
        if now >= self.deadline {
            self.fail(DtlsError::HandshakeTimeout);
            return;
        }
        self.drive_handshake(now);
    }

    /// Closes the session: sends close_notify if it is established.
    pub fn close(&mut self) {
        if self.state == DtlsState::Established {
            // Only the alert matters; the peer's answer is not awaited.
            let _ = self.stream.shutdown();
        }
        if !matches!(self.state, DtlsState::Failed) {
            self.state = DtlsState::Closed;
            self.error.get_or_insert(DtlsError::Closed);
        }
        self.queued.clear();
    }

    fn fail(&mut self, error: DtlsError) {
        self.state = DtlsState::Failed;
        self.error = Some(error);
        self.queued.clear();
        self.next_check = None;
    }

    fn drive_handshake(&mut self, now: Instant) {
        match self.stream.do_handshake() {
            Ok(()) => {
                self.state = DtlsState::Established;
                self.next_check = None;
                for datagram in core::mem::take(&mut self.queued) {
                    if self.write(&datagram).is_err() {
                        break;
                    }
                }
            }
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {
                self.next_check = Some(now + self.config.retransmit_check);
            }
            Err(e) => {
                let why = self.describe(&e);
                self.fail(DtlsError::HandshakeFailed(why));
            }
        }
    }

    fn write(&mut self, plaintext: &[u8]) -> Result<(), DtlsError> {
        match self.stream.ssl_write(plaintext) {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = DtlsError::Connection(self.describe(&e));
                self.fail(error.clone());
                Err(error)
            }
        }
    }

    /// Every application record waiting, one datagram each.
    fn read_all(&mut self, out: &mut Vec<Vec<u8>>) {
        // Records hold at most 2^14 bytes of plaintext.
        let mut buf = vec![0u8; 16 * 1024 + 1];
        // Each read consumes a datagram or ends the loop; the bound only
        // guards against a library that would do neither.
        let bound = self.stream.get_ref().incoming_len() + 8;
        for _ in 0..bound {
            match self.stream.ssl_read(&mut buf) {
                Ok(n) => {
                    if let Some(data) = buf.get(..n).filter(|d| !d.is_empty()) {
                        out.push(data.to_vec());
                    }
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => return,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.state = DtlsState::Closed;
                    self.error = Some(DtlsError::Closed);
                    return;
                }
                Err(e) => {
                    let why = self.describe(&e);
                    self.fail(DtlsError::Connection(why));
                    return;
                }
            }
        }
    }

    /// What OpenSSL reported, in words: the alert or error reasons, and
    /// the certificate verification result.
    fn describe(&self, e: &openssl::ssl::Error) -> String {
        if self.pin_mismatch.load(Ordering::Relaxed) {
            return self.pin_mismatch_reason.into();
        }
        let mut parts: Vec<String> = e
            .ssl_error()
            .map(|stack| {
                stack
                    .errors()
                    .iter()
                    .map(|err| err.reason().unwrap_or("unknown error").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let verify = self.stream.ssl().verify_result();
        if verify != X509VerifyResult::OK {
            parts.push(format!(
                "server certificate verification: {}",
                verify.error_string()
            ));
        }
        if parts.is_empty() {
            parts.push(e.to_string());
        }
        parts.join("; ")
    }
}

fn configure_psk(
    ctx: &mut SslContextBuilder,
    identity: &[u8],
    key: &[u8],
) -> Result<(), DtlsError> {
    const IDENTITY: &str = "PSK identity (Security resource 3)";
    const KEY: &str = "pre-shared key (Security resource 5)";
    if identity.is_empty() || identity.len() > MAX_IDENTITY || identity.contains(&0) {
        return Err(bad(
            IDENTITY,
            format_args!(
                "expected 1 to {MAX_IDENTITY} bytes without NUL, got {} bytes",
                identity.len()
            ),
        ));
    }
    if key.is_empty() || key.len() > MAX_PSK {
        return Err(bad(
            KEY,
            format_args!("expected 1 to {MAX_PSK} bytes, got {}", key.len()),
        ));
    }
    ctx.set_cipher_list(PSK_CIPHERS).map_err(setup)?;
    ctx.set_verify(SslVerifyMode::NONE);
    // The identity is written as a C string.
    let mut c_identity = identity.to_vec();
    c_identity.push(0);
    let key = key.to_vec();
    ctx.set_psk_client_callback(move |_ssl, _hint, identity_out, key_out| {
        match (
            identity_out.get_mut(..c_identity.len()),
            key_out.get_mut(..key.len()),
        ) {
            (Some(id_dst), Some(key_dst)) => {
                id_dst.copy_from_slice(&c_identity);
                key_dst.copy_from_slice(&key);
                Ok(key.len())
            }
            _ => Err(ErrorStack::get()),
        }
    });
    Ok(())
}

fn configure_certificate(
    ctx: &mut SslContextBuilder,
    certificate: &[u8],
    private_key: &[u8],
    server_certificate: &[u8],
    usage: CertificateUsage,
    pin_mismatch: Arc<AtomicBool>,
) -> Result<(), DtlsError> {
    const CERT: &str = "client certificate (Security resource 3, DER)";
    const KEY: &str = "client private key (Security resource 5, DER)";
    const SERVER: &str = "server certificate (Security resource 4, DER)";
    let cert = X509::from_der(certificate).map_err(|e| bad(CERT, e))?;
    let key = PKey::private_key_from_der(private_key).map_err(|e| bad(KEY, e))?;
    ctx.set_certificate(&cert).map_err(|e| bad(CERT, e))?;
    ctx.set_private_key(&key).map_err(|e| bad(KEY, e))?;
    ctx.check_private_key()
        .map_err(|_| bad(KEY, "it does not belong to the certificate in resource 3"))?;
    if server_certificate.is_empty() {
        return Err(bad(
            SERVER,
            "empty: Certificate Usage 2 and 3 need the server's certificate or trust anchor",
        ));
    }
    let server = X509::from_der(server_certificate).map_err(|e| bad(SERVER, e))?;
    match usage {
        CertificateUsage::DomainIssuedCertificate => {
            let expected = server.to_der().map_err(|e| bad(SERVER, e))?;
            // The chain is not checked (self-signed and private-CA
            // certificates are the point of this usage): the callback
            // accepts every issuer and decides on the leaf alone.
            ctx.set_verify_callback(SslVerifyMode::PEER, move |_preverified, store| {
                if store.error_depth() != 0 {
                    return true;
                }
                let same = store
                    .current_cert()
                    .and_then(|c| c.to_der().ok())
                    .is_some_and(|der| der == expected);
                if !same {
                    pin_mismatch.store(true, Ordering::Relaxed);
                }
                same
            });
        }
        CertificateUsage::TrustAnchorAssertion => {
            let mut store = X509StoreBuilder::new().map_err(setup)?;
            store.add_cert(server).map_err(|e| bad(SERVER, e))?;
            ctx.set_cert_store(store.build());
            ctx.set_verify(SslVerifyMode::PEER);
        }
        CertificateUsage::CaConstraint | CertificateUsage::ServiceCertificateConstraint => {
            return Err(DtlsError::Unsupported(
                "Certificate Usage 0 (CA constraint) and 1 (service certificate constraint): \
                 expected 2 (trust anchor assertion) or 3 (domain-issued certificate)",
            ))
        }
    }
    Ok(())
}

/// The cipher suites offered with raw public keys: the one LwM2M mandates
/// for certificate-based modes (TS Transport §5.2.8:
/// `TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8`), then common ECDSA and RSA ones.
#[cfg(feature = "rpk")]
const RPK_CIPHERS: &str = "ECDHE-ECDSA-AES128-CCM8:ECDHE-ECDSA-AES128-GCM-SHA256:\
     ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256";

/// Mode 1: the client presents the public key of `private_key` and accepts
/// exactly `server_public_key` (both DER SubjectPublicKeyInfo, compared
/// after a parse and re-encoding so equivalent encodings match).
#[cfg(feature = "rpk")]
fn configure_rpk(
    ctx: &mut SslContextBuilder,
    public_key: &[u8],
    server_public_key: &[u8],
    private_key: &[u8],
    mismatch: Arc<AtomicBool>,
) -> Result<(), DtlsError> {
    const OWN: &str = "client public key (Security resource 3, DER SubjectPublicKeyInfo)";
    const KEY: &str = "client private key (Security resource 5, DER)";
    const SERVER: &str = "server public key (Security resource 4, DER SubjectPublicKeyInfo)";
    let key = PKey::private_key_from_der(private_key).map_err(|e| bad(KEY, e))?;
    let own = key.public_key_to_der().map_err(|e| bad(KEY, e))?;
    // Resource 3 may be left empty: the key pair is in resource 5.
    if !public_key.is_empty() {
        let given = PKey::public_key_from_der(public_key)
            .and_then(|k| k.public_key_to_der())
            .map_err(|e| bad(OWN, e))?;
        if given != own {
            return Err(bad(OWN, "it is not the public half of resource 5"));
        }
    }
    if server_public_key.is_empty() {
        return Err(bad(SERVER, "empty: mode 1 needs the server's public key"));
    }
    let expected = PKey::public_key_from_der(server_public_key)
        .and_then(|k| k.public_key_to_der())
        .map_err(|e| bad(SERVER, e))?;
    ctx.set_private_key(&key).map_err(|e| bad(KEY, e))?;
    lwm2m_dtls::rpk::offer_only_raw_public_keys(ctx).map_err(setup)?;
    ctx.set_cipher_list(RPK_CIPHERS).map_err(setup)?;
    ctx.set_verify_callback(SslVerifyMode::PEER, move |_preverified, store| {
        // OpenSSL would only accept a key listed as a DANE record; the
        // comparison with resource 4 is the whole verification.
        let same = lwm2m_dtls::rpk::store_context_public_key(store).is_some_and(|k| k == expected);
        if !same {
            mismatch.store(true, Ordering::Relaxed);
        }
        same
    });
    Ok(())
}

#[cfg(test)]
#[path = "../tests/support/pki.rs"]
mod test_pki;

#[cfg(test)]
mod tests {
    use super::test_pki::{certificate, ec_key, pki, Pki};
    use super::*;
    use openssl::ssl::SslContext;

    /// A DTLS server on OpenSSL over its own [`DatagramPipe`].
    struct Server {
        stream: SslStream<DatagramPipe>,
        established: bool,
        failed: Option<String>,
    }

    impl Server {
        fn new(ctx: SslContext) -> Server {
            let mut ssl = Ssl::new(&ctx).unwrap();
            ssl.set_mtu(DEFAULT_MTU).unwrap();
            ssl.set_accept_state();
            Server {
                stream: SslStream::new(ssl, DatagramPipe::new(64)).unwrap(),
                established: false,
                failed: None,
            }
        }

        fn input(&mut self, d: Vec<u8>) -> Vec<Vec<u8>> {
            self.stream.get_mut().push_incoming(d);
            let mut out = Vec::new();
            if !self.established && self.failed.is_none() {
                match self.stream.do_handshake() {
                    Ok(()) => self.established = true,
                    Err(e) if e.code() == ErrorCode::WANT_READ => {}
                    Err(e) => self.failed = Some(e.to_string()),
                }
            }
            if self.established {
                let mut buf = [0u8; 2048];
                while let Ok(n) = self.stream.ssl_read(&mut buf) {
                    out.push(buf[..n].to_vec());
                }
            }
            out
        }
    }

    fn ctx_builder() -> SslContextBuilder {
        let mut b = SslContextBuilder::new(SslMethod::dtls_server()).unwrap();
        b.set_options(SslOptions::NO_QUERY_MTU);
        b
    }

    fn psk_server(key: &'static [u8]) -> Server {
        psk_server_with(key, "PSK")
    }

    fn psk_server_with(key: &'static [u8], ciphers: &str) -> Server {
        let mut b = ctx_builder();
        b.set_cipher_list(ciphers).unwrap();
        b.set_security_level(0);
        b.set_psk_server_callback(move |_ssl, identity, out| {
            if identity != Some(&b"device-1"[..]) {
                return Ok(0); // unknown identity: unknown_psk_identity alert
            }
            out[..key.len()].copy_from_slice(key);
            Ok(key.len())
        });
        Server::new(b.build())
    }

    fn cert_server(p: &Pki) -> Server {
        let mut b = ctx_builder();
        b.set_certificate(&p.cert).unwrap();
        b.set_private_key(&p.key).unwrap();
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(p.ca.clone()).unwrap();
        b.set_cert_store(store.build());
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        Server::new(b.build())
    }

    /// Moves datagrams both ways until both sides are quiet; returns what
    /// each side decrypted (client's, server's).
    fn pump(c: &mut DtlsSession, s: &mut Server, now: Instant) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut to_client, mut to_server) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            let mut moved = false;
            while let Some(d) = c.poll_transmit() {
                to_server.extend(s.input(d));
                moved = true;
            }
            while let Some(d) = s.stream.get_mut().pop_outgoing() {
                to_client.extend(c.handle_datagram(now, &d));
                moved = true;
            }
            if !moved {
                break;
            }
        }
        (to_client, to_server)
    }

    fn psk(identity: &[u8], key: &[u8]) -> SecurityParams {
        SecurityParams::Psk {
            identity: identity.to_vec(),
            key: key.to_vec(),
        }
    }

    fn cert_params(p: &Pki, server: &X509, usage: CertificateUsage) -> SecurityParams {
        SecurityParams::Certificate {
            certificate: p.client_cert.to_der().unwrap(),
            private_key: p.client_key.private_key_to_der().unwrap(),
            server_certificate: server.to_der().unwrap(),
            usage,
        }
    }

    fn t0() -> Instant {
        Instant::from_millis(1000)
    }

    /// Data both ways once the handshake is done; a datagram sent while
    /// handshaking (twice, like a CoAP retransmission) arrives once.
    fn exchange(c: &mut DtlsSession, s: &mut Server) {
        let (_, got) = pump(c, s, t0());
        assert_eq!(c.state(), DtlsState::Established, "{:?}", c.error());
        assert!(s.established, "server: {:?}", s.failed);
        assert_eq!(got, vec![b"register".to_vec()]);
        c.send(b"update").unwrap();
        let (_, got) = pump(c, s, t0());
        assert_eq!(got, vec![b"update".to_vec()]);
        s.stream.ssl_write(b"2.04").unwrap();
        s.stream.ssl_write(b"GET /3/0").unwrap();
        let (got, _) = pump(c, s, t0());
        assert_eq!(got, vec![b"2.04".to_vec(), b"GET /3/0".to_vec()]);
        assert_eq!(c.poll_timeout(), None);
    }

    fn start(params: &SecurityParams) -> DtlsSession {
        let mut c = DtlsSession::connect(params, &DtlsConfig::default(), t0()).unwrap();
        assert_eq!(c.state(), DtlsState::Handshaking);
        assert!(c.poll_timeout().is_some());
        c.send(b"register").unwrap();
        c.send(b"register").unwrap();
        c
    }

    #[test]
    fn psk_handshake_then_data_both_ways() {
        let mut c = start(&psk(b"device-1", b"secret-key-0123"));
        let mut s = psk_server(b"secret-key-0123");
        exchange(&mut c, &mut s);
        c.close();
        assert_eq!(c.state(), DtlsState::Closed);
        assert!(c.poll_transmit().is_some(), "close_notify");
        assert_eq!(c.send(b"x"), Err(DtlsError::Closed));
    }

    #[test]
    fn a_server_with_only_the_mandatory_ccm_8_suite_is_reached() {
        // As a tinydtls server: TLS_PSK_WITH_AES_128_CCM_8 alone.
        let mut c = start(&psk(b"device-1", b"secret-key-0123"));
        let mut s = psk_server_with(b"secret-key-0123", "PSK-AES128-CCM8");
        exchange(&mut c, &mut s);
        assert_eq!(
            s.stream.ssl().current_cipher().map(|c| c.name()),
            Some("PSK-AES128-CCM8")
        );
    }

    #[test]
    fn an_unknown_psk_identity_fails_with_the_alert() {
        let mut c = start(&psk(b"stranger", b"secret-key-0123"));
        let mut s = psk_server(b"secret-key-0123");
        pump(&mut c, &mut s, t0());
        assert_eq!(c.state(), DtlsState::Failed);
        match c.error() {
            Some(DtlsError::HandshakeFailed(why)) => {
                assert!(why.contains("unknown psk identity"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(c.send(b"x").is_err());
    }

    #[test]
    fn a_wrong_psk_fails_the_handshake() {
        let mut c = start(&psk(b"device-1", b"wrong-key"));
        let mut s = psk_server(b"secret-key-0123");
        let (got, _) = pump(&mut c, &mut s, t0());
        assert!(got.is_empty());
        assert!(!s.established);
        // The server drops what it cannot decrypt, or alerts: either the
        // alert ends the handshake or the deadline does.
        if c.state() == DtlsState::Handshaking {
            let deadline = c
                .poll_timeout()
                .unwrap()
                .max(t0() + Duration::from_secs(30));
            c.handle_timeout(deadline);
            assert_eq!(c.error(), Some(&DtlsError::HandshakeTimeout));
        }
        assert_eq!(c.state(), DtlsState::Failed, "{:?}", c.error());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn x509_with_the_pinned_server_certificate_usage_3() {
        let p = pki();
        let mut c = start(&cert_params(
            &p,
            &p.cert,
            CertificateUsage::DomainIssuedCertificate,
        ));
        let mut s = cert_server(&p);
        exchange(&mut c, &mut s);
    }

    #[test]
    fn x509_with_the_ca_as_trust_anchor_usage_2() {
        let p = pki();
        let mut c = start(&cert_params(
            &p,
            &p.ca,
            CertificateUsage::TrustAnchorAssertion,
        ));
        let mut s = cert_server(&p);
        exchange(&mut c, &mut s);
    }

    #[test]
    fn a_different_server_certificate_is_refused() {
        let p = pki();
        let other_key = ec_key();
        let other = certificate("someone else", &other_key, None);
        // Usage 3: the server's certificate is not the pinned one (even the
        // CA that issued it is not).
        for pinned in [&other, &p.ca] {
            let mut c = start(&cert_params(
                &p,
                pinned,
                CertificateUsage::DomainIssuedCertificate,
            ));
            let mut s = cert_server(&p);
            pump(&mut c, &mut s, t0());
            assert_eq!(c.state(), DtlsState::Failed);
            match c.error() {
                Some(DtlsError::HandshakeFailed(why)) => {
                    assert!(why.contains("not the one in Security resource 4"), "{why}")
                }
                e => panic!("{e:?}"),
            }
        }
        // Usage 2: the chain does not lead to the given trust anchor.
        let mut c = start(&cert_params(
            &p,
            &other,
            CertificateUsage::TrustAnchorAssertion,
        ));
        let mut s = cert_server(&p);
        pump(&mut c, &mut s, t0());
        assert_eq!(c.state(), DtlsState::Failed);
        match c.error() {
            Some(DtlsError::HandshakeFailed(why)) => {
                assert!(why.contains("certificate verif"), "{why}")
            }
            e => panic!("{e:?}"),
        }
        assert!(!s.established);
    }

    #[test]
    fn unusable_parameters_are_refused_with_a_reason() {
        let cfg = DtlsConfig::default();
        let err = |p: &SecurityParams| DtlsSession::connect(p, &cfg, t0()).unwrap_err();
        let rpk = SecurityParams::RawPublicKey {
            public_key: vec![1],
            server_public_key: vec![2],
            private_key: vec![3],
        };
        if cfg!(feature = "rpk") {
            // Keys that are not DER: the resource holding them is named.
            assert!(err(&rpk).to_string().contains("resource 5"));
        } else {
            assert!(err(&rpk).to_string().contains("OpenSSL >= 3.2"));
        }
        assert!(matches!(
            err(&SecurityParams::NoSec),
            DtlsError::Unusable(_)
        ));
        assert!(matches!(
            err(&psk(b"", b"k")),
            DtlsError::BadCredential { what, .. } if what.contains("resource 3")
        ));
        assert!(matches!(
            err(&psk(b"id", b"")),
            DtlsError::BadCredential { what, .. } if what.contains("resource 5")
        ));
        let p = pki();
        let mut garbage = cert_params(&p, &p.cert, CertificateUsage::DomainIssuedCertificate);
        if let SecurityParams::Certificate { certificate, .. } = &mut garbage {
            *certificate = b"not DER".to_vec();
        }
        assert!(err(&garbage).to_string().contains("resource 3"));
        let usage_1 = cert_params(&p, &p.cert, CertificateUsage::ServiceCertificateConstraint);
        assert!(matches!(err(&usage_1), DtlsError::Unsupported(_)));
    }

    /// A DTLS server presenting `own` as a raw public key and accepting
    /// only `client` (SubjectPublicKeyInfo DER).
    #[cfg(feature = "rpk")]
    fn rpk_server(own: &PKey<openssl::pkey::Private>, client: Vec<u8>) -> Server {
        let mut b = ctx_builder();
        b.set_private_key(own).unwrap();
        lwm2m_dtls::rpk::offer_only_raw_public_keys(&mut b).unwrap();
        b.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            move |_, store| {
                lwm2m_dtls::rpk::store_context_public_key(store).is_some_and(|k| k == client)
            },
        );
        Server::new(b.build())
    }

    #[cfg(feature = "rpk")]
    fn rpk_params(
        own: &PKey<openssl::pkey::Private>,
        server: &PKey<openssl::pkey::Private>,
    ) -> SecurityParams {
        SecurityParams::RawPublicKey {
            public_key: own.public_key_to_der().unwrap(),
            server_public_key: server.public_key_to_der().unwrap(),
            private_key: own.private_key_to_der().unwrap(),
        }
    }

    #[cfg(feature = "rpk")]
    #[test]
    fn raw_public_keys_both_ways_mode_1() {
        let (own, server) = (ec_key(), ec_key());
        let mut c = start(&rpk_params(&own, &server));
        let mut s = rpk_server(&server, own.public_key_to_der().unwrap());
        exchange(&mut c, &mut s);
        // The server saw our key, not a certificate.
        assert_eq!(
            lwm2m_dtls::rpk::peer_public_key(s.stream.ssl()),
            Some(own.public_key_to_der().unwrap())
        );
        assert!(s.stream.ssl().peer_certificate().is_none());
        // Resource 3 may be empty: the public half comes from resource 5.
        let mut params = rpk_params(&own, &server);
        if let SecurityParams::RawPublicKey { public_key, .. } = &mut params {
            public_key.clear();
        }
        let mut c = start(&params);
        let mut s = rpk_server(&server, own.public_key_to_der().unwrap());
        exchange(&mut c, &mut s);
    }

    #[cfg(feature = "rpk")]
    #[test]
    fn a_server_raw_public_key_other_than_resource_4_is_refused() {
        let (own, server, other) = (ec_key(), ec_key(), ec_key());
        let mut c = start(&rpk_params(&own, &other));
        let mut s = rpk_server(&server, own.public_key_to_der().unwrap());
        pump(&mut c, &mut s, t0());
        assert_eq!(c.state(), DtlsState::Failed);
        match c.error() {
            Some(DtlsError::HandshakeFailed(why)) => {
                assert!(why.contains("raw public key is not the one"), "{why}")
            }
            e => panic!("{e:?}"),
        }
        assert!(!s.established);
    }

    #[cfg(feature = "rpk")]
    #[test]
    fn raw_public_key_credentials_that_do_not_fit_are_refused() {
        let (own, server, other) = (ec_key(), ec_key(), ec_key());
        let cfg = DtlsConfig::default();
        let err = |p: &SecurityParams| DtlsSession::connect(p, &cfg, t0()).unwrap_err();
        let mut wrong_half = rpk_params(&own, &server);
        if let SecurityParams::RawPublicKey { public_key, .. } = &mut wrong_half {
            *public_key = other.public_key_to_der().unwrap();
        }
        assert!(err(&wrong_half).to_string().contains("not the public half"));
        let mut no_server = rpk_params(&own, &server);
        if let SecurityParams::RawPublicKey {
            server_public_key, ..
        } = &mut no_server
        {
            server_public_key.clear();
        }
        assert!(err(&no_server).to_string().contains("resource 4"));
    }

    #[test]
    fn garbage_datagrams_never_panic_and_do_not_break_the_session() {
        let mut c = start(&psk(b"device-1", b"secret-key-0123"));
        let mut s = psk_server(b"secret-key-0123");
        let mut seed = 0x1234_5678_u64;
        let mut junk = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect()
        };
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![22], vec![23, 0xfe, 0xfd]];
        for n in [1, 13, 14, 40, 300, 1500, 20000] {
            inputs.push(junk(n));
        }
        // Random bytes are dropped: the handshake still completes.
        for i in &inputs {
            assert!(c.handle_datagram(t0(), i).is_empty());
        }
        exchange(&mut c, &mut s);
        // Record headers that look right with random bodies, of every
        // content type and both epochs. (While handshaking, a plaintext
        // handshake record that parses as the wrong message ends the
        // handshake, as DTLS 1.2 allows.)
        for n in [0, 1, 13, 40, 300, 1400] {
            for (content, epoch) in [(20, 0), (21, 0), (22, 0), (22, 1), (23, 1), (24, 1)] {
                let mut r = vec![content, 0xfe, 0xfd, 0, epoch, 0, 0, 0, 0, 0, 9];
                r.extend((n as u16).to_be_bytes());
                r.extend(junk(n));
                inputs.push(r);
            }
        }
        for i in &inputs {
            let _ = c.handle_datagram(t0(), i);
        }
        // Still established unless a record was taken for an alert.
        if c.state() == DtlsState::Established {
            c.send(b"after").unwrap();
            let (_, got) = pump(&mut c, &mut s, t0());
            assert_eq!(got, vec![b"after".to_vec()]);
        }
    }
}
