//! CoAP over TLS (RFC 8323 `coaps+tcp`, LwM2M binding `T` with security)
//! for the registration server's driver task (feature `tls`).
//!
//! The listener is [`crate::coap_tcp`]'s: each accepted connection's task
//! first runs the TLS 1.2 or 1.3 handshake (OpenSSL through tokio-openssl)
//! and only then hands the connection to the driver task, with the
//! [`PeerIdentity`] the handshake authenticated. Every datagram of the
//! connection reaches the engine with that identity, so Register over TLS is
//! authorized exactly as over DTLS ([`crate::SecurityChecker`]) and the
//! registration records the identity.
//!
//! Authentication is the DTLS layer's (the same OpenSSL setup code): PSK keys from
//! the [`crate::SecurityStore`], X.509 client certificates verified against
//! the CA file, raw public keys (feature `rpk`). Sessions are never resumed
//! (no tickets, no session cache), so every identity comes from a full
//! handshake.
//!
//! Denial of service: at most [`TlsOptions::max_handshakes`] handshakes run
//! at once (a connection waits for its turn), and waiting plus handshake
//! take at most [`TlsOptions::handshake_timeout`]; the connection limit of
//! [`TcpOptions::max_connections`] holds as for plain TCP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode, SslVersion,
};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_openssl::SslStream;

use crate::coap_tcp::TcpOptions;
use crate::dtls::{setup, DtlsError, PskLookup, X509Files};
use crate::peer_auth::{configure_authentication, identity_of};
use crate::security::PeerIdentity;

/// TLS 1.3 cipher suites offered (see [`TlsAcceptor::new`]).
const TLS13_CIPHERSUITES: &str =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256";

/// Settings of the CoAP-over-TLS listener.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Address, connection limit and CoAP-over-TCP settings of the listener.
    pub tcp: TcpOptions,
    /// Certificate authentication (the DTLS layer's files); `None`: PSK
    /// (and raw public keys with `rpk_private_key`) only.
    pub x509: Option<X509Files>,
    /// The server's private key (PEM) for raw public key clients (RFC 7250,
    /// feature `rpk`); with `x509` it must be the certificate's key.
    pub rpk_private_key: Option<PathBuf>,
    /// Time from accepting a connection to the end of its handshake.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
}

impl TlsOptions {
    /// Listens on `addr` (conventionally port 5684) with PSK only, a 30 s
    /// handshake timeout and 256 handshakes at once.
    pub fn new(addr: SocketAddr) -> TlsOptions {
        TlsOptions {
            tcp: TcpOptions::new(addr),
            x509: None,
            rpk_private_key: None,
            handshake_timeout: Duration::from_secs(30),
            max_handshakes: 256,
        }
    }
}

/// The TLS side of the listener: the OpenSSL context and the handshake
/// bounds, shared by the connection tasks.
#[derive(Debug)]
pub(crate) struct TlsAcceptor {
    ctx: SslContext,
    handshake_timeout: Duration,
    handshakes: Semaphore,
}

impl TlsAcceptor {
    /// The acceptor of `options` with PSK keys from `psk`.
    pub(crate) fn new(options: &TlsOptions, psk: PskLookup) -> Result<TlsAcceptor, DtlsError> {
        let mut b = SslContextBuilder::new(SslMethod::tls_server()).map_err(setup)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(setup)?;
        b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_TICKET);
        // No resumption: the identity always comes from a full handshake
        // against the current credentials.
        b.set_num_tickets(0).map_err(setup)?;
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        // An external PSK in TLS 1.3 is a session to OpenSSL, which refuses
        // it with client certificates required unless the context has an id.
        b.set_session_id_context(b"lwm2m coaps+tcp")
            .map_err(setup)?;
        // OpenSSL makes an external PSK (the PSK callback) a
        // TLS_AES_128_GCM_SHA256 session, which a SHA-384 suite cannot use:
        // offering only SHA-256 suites keeps PSK clients on PSK when a
        // certificate is configured too (else the server would pick
        // TLS_AES_256_GCM_SHA384 and ask a PSK client for a certificate).
        b.set_ciphersuites(TLS13_CIPHERSUITES).map_err(setup)?;
        configure_authentication(
            &mut b,
            psk,
            options.x509.as_ref(),
            options.rpk_private_key.as_deref(),
        )?;
        Ok(TlsAcceptor {
            ctx: b.build(),
            handshake_timeout: options.handshake_timeout,
            handshakes: Semaphore::new(options.max_handshakes.max(1)),
        })
    }

    /// Runs the server handshake on `stream` from `peer`: the TLS stream and
    /// who the peer authenticated as, or `None` (logged with the reason)
    /// when it failed or took too long.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<(SslStream<TcpStream>, PeerIdentity)> {
        let handshake = async {
            let _turn = self.handshakes.acquire().await.ok()?;
            let ssl = Ssl::new(&self.ctx)
                .map_err(|e| tracing::warn!(%peer, "cannot create a TLS session: {e}"))
                .ok()?;
            let mut tls = SslStream::new(ssl, stream)
                .map_err(|e| tracing::warn!(%peer, "cannot create a TLS session: {e}"))
                .ok()?;
            match Pin::new(&mut tls).accept().await {
                Ok(()) => Some(tls),
                Err(e) => {
                    tracing::info!(%peer, "TLS handshake failed: {}", reason(&e));
                    None
                }
            }
        };
        let tls = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(tls) => tls?,
            Err(_) => {
                tracing::info!(
                    %peer,
                    "TLS handshake failed: not done within {:?}",
                    self.handshake_timeout
                );
                return None;
            }
        };
        let Some(identity) = identity_of(tls.ssl()) else {
            tracing::info!(%peer, "TLS handshake authenticated no identity; closed");
            return None;
        };
        tracing::debug!(%peer, identity = %identity, "TLS connection established");
        Some((tls, identity))
    }
}

/// What went wrong in a handshake, for the log: OpenSSL's error stack, or
/// the I/O error (a peer that closed the connection).
fn reason(e: &openssl::ssl::Error) -> String {
    if let Some(stack) = e.ssl_error() {
        return stack.to_string();
    }
    match e.io_error() {
        Some(io) => format!("{io}"),
        None if e.code() == openssl::ssl::ErrorCode::ZERO_RETURN => {
            "the peer closed the connection".into()
        }
        None => format!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::test_pki;
    use openssl::ssl::SslVerifyMode;
    use std::sync::Arc;

    fn psk() -> PskLookup {
        Arc::new(|identity: &str| (identity == "dev-1").then(|| b"secret-key-1".to_vec()))
    }

    /// A PSK client over TLS at most `version`, with `key`.
    fn psk_client(
        tcp: std::net::TcpStream,
        version: SslVersion,
        key: &'static [u8],
    ) -> Result<openssl::ssl::SslStream<std::net::TcpStream>, String> {
        let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
        b.set_max_proto_version(Some(version)).unwrap();
        // PSK suites only in TLS 1.2, as a PSK device offers.
        b.set_cipher_list("PSK").unwrap();
        b.set_verify(SslVerifyMode::NONE);
        b.set_psk_client_callback(move |_, _, identity, key_out| {
            identity[..5].copy_from_slice(b"dev-1");
            identity[5] = 0;
            key_out[..key.len()].copy_from_slice(key);
            Ok(key.len())
        });
        let ssl = Ssl::new(&b.build()).unwrap();
        ssl.connect(tcp).map_err(|e| e.to_string())
    }

    /// Accepts one connection with `acceptor` while `client` connects.
    async fn handshake<T: Send + 'static>(
        acceptor: TlsAcceptor,
        client: impl FnOnce(std::net::TcpStream) -> T + Send + 'static,
    ) -> (Option<PeerIdentity>, T) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::task::spawn_blocking(move || {
            client(std::net::TcpStream::connect(addr).unwrap())
        });
        let (stream, peer) = listener.accept().await.unwrap();
        let accepted = acceptor.accept(stream, peer).await;
        let identity = accepted.map(|(_, identity)| identity);
        (identity, client.await.unwrap())
    }

    fn x509_files(dir: &std::path::Path) -> X509Files {
        let ca_key = test_pki::ec_key();
        let ca = test_pki::certificate("Test CA", &ca_key, None);
        let key = test_pki::ec_key();
        let cert = test_pki::certificate("server", &key, Some((&ca, &ca_key)));
        let write = |name: &str, pem: Vec<u8>| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        X509Files {
            certificate: write("server.pem", cert.to_pem().unwrap()),
            private_key: write("server.key", key.private_key_to_pem_pkcs8().unwrap()),
            ca: write("ca.pem", ca.to_pem().unwrap()),
        }
    }

    #[tokio::test]
    async fn psk_over_tls_1_2_and_1_3_with_and_without_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let addr = "127.0.0.1:0".parse().unwrap();
        for x509 in [None, Some(x509_files(dir.path()))] {
            for version in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
                let options = TlsOptions {
                    x509: x509.clone(),
                    ..TlsOptions::new(addr)
                };
                let acceptor = TlsAcceptor::new(&options, psk()).unwrap();
                let (identity, client) = handshake(acceptor, move |tcp| {
                    psk_client(tcp, version, b"secret-key-1").map(|s| s.ssl().version2())
                })
                .await;
                let case = format!("{version:?}, x509 {}", x509.is_some());
                assert_eq!(client, Ok(Some(version)), "{case}");
                assert_eq!(identity, Some(PeerIdentity::Psk("dev-1".into())), "{case}");
            }
        }
    }

    #[tokio::test]
    async fn a_wrong_key_a_silent_peer_and_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let x509 = x509_files(dir.path());
        let options = TlsOptions {
            x509: Some(x509.clone()),
            handshake_timeout: Duration::from_millis(200),
            ..TlsOptions::new("127.0.0.1:0".parse().unwrap())
        };
        for version in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
            let acceptor = TlsAcceptor::new(&options, psk()).unwrap();
            let (identity, client) = handshake(acceptor, move |tcp| {
                psk_client(tcp, version, b"wrong-key").map(|_| ())
            })
            .await;
            assert_eq!(identity, None, "{version:?}");
            assert!(client.is_err(), "{version:?}");
        }
        // A peer that never says hello is dropped at the timeout.
        let acceptor = TlsAcceptor::new(&options, psk()).unwrap();
        let (identity, _tcp) = handshake(acceptor, |tcp| tcp).await;
        assert_eq!(identity, None);
        // A client certificate signed by the CA: identified by it.
        let acceptor = TlsAcceptor::new(&options, psk()).unwrap();
        let ca_pem = std::fs::read(&x509.ca).unwrap();
        let (identity, client) = handshake(acceptor, move |tcp| {
            let ca = openssl::x509::X509::from_pem(&ca_pem).unwrap();
            let ca_key = test_pki::ec_key();
            // Not the CA's key: this certificate does not verify.
            let forged = test_pki::certificate("ep-forged", &ca_key, Some((&ca, &ca_key)));
            let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
            b.set_verify(SslVerifyMode::NONE);
            b.set_certificate(&forged).unwrap();
            b.set_private_key(&ca_key).unwrap();
            let ssl = Ssl::new(&b.build()).unwrap();
            ssl.connect(tcp).map(|_| ()).map_err(|e| e.to_string())
        })
        .await;
        assert_eq!(identity, None, "{client:?}");
    }

    #[cfg(feature = "rpk")]
    #[tokio::test]
    async fn raw_public_key_clients_are_identified_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("rpk.pem");
        let server_key = test_pki::ec_key();
        std::fs::write(&key_file, server_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let options = TlsOptions {
            rpk_private_key: Some(key_file),
            ..TlsOptions::new("127.0.0.1:0".parse().unwrap())
        };
        let device = test_pki::ec_key();
        let device_public = device.public_key_to_der().unwrap();
        for version in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
            let acceptor = TlsAcceptor::new(&options, psk()).unwrap();
            let device = device.clone();
            let (identity, client) = handshake(acceptor, move |tcp| {
                let mut b = SslContextBuilder::new(SslMethod::tls_client()).unwrap();
                b.set_max_proto_version(Some(version)).unwrap();
                b.set_private_key(&device).unwrap();
                lwm2m_dtls::rpk::offer_only_raw_public_keys(&mut b).unwrap();
                b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
                let ssl = Ssl::new(&b.build()).unwrap();
                let stream = ssl.connect(tcp).map_err(|e| e.to_string())?;
                Ok::<_, String>(lwm2m_dtls::rpk::peer_public_key(stream.ssl()))
            })
            .await;
            assert_eq!(
                client,
                Ok(Some(server_key.public_key_to_der().unwrap())),
                "{version:?}: the client saw the server's key"
            );
            assert_eq!(
                identity,
                Some(PeerIdentity::Rpk {
                    public_key: device_public.clone()
                }),
                "{version:?}"
            );
        }
    }
}
