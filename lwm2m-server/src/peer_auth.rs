//! Peer authentication shared by the DTLS layer ([`crate::dtls`]) and CoAP
//! over TLS ([`crate::coap_tcp`], feature `tls`): the cipher suites, the PSK
//! server callback over the [`crate::SecurityStore`], X.509 client
//! certificates verified against a CA file, raw public keys (feature `rpk`)
//! and the [`PeerIdentity`] a finished handshake authenticated. Both layers
//! configure their OpenSSL context with [`configure_authentication`], so a
//! device authenticates the same way over UDP and TCP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::nid::Nid;
#[cfg(feature = "rpk")]
use openssl::pkey::PKey;
use openssl::ssl::{Ssl, SslContextBuilder, SslFiletype, SslRef, SslVerifyMode};
use openssl::x509::X509Name;

use crate::dtls::{setup, DtlsError};
use crate::security::{Credentials, PeerIdentity, SharedSecurityStore};

/// Cipher suites offered: the LwM2M mandatory ones first
/// (TLS_PSK_WITH_AES_128_CCM_8, TLS_PSK_WITH_AES_128_CBC_SHA256,
/// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8), then common AEAD suites.
pub(crate) const CIPHERS: &str = "PSK-AES128-CCM8:PSK-AES128-CBC-SHA256:PSK-AES128-GCM-SHA256:\
PSK-AES256-GCM-SHA384:ECDHE-PSK-AES128-CBC-SHA256:ECDHE-ECDSA-AES128-CCM8:\
ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-RSA-AES256-GCM-SHA384";

/// Finds the PSK key of an identity (`None`: unknown identity).
pub type PskLookup = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

/// PSK keys from the server's security store.
pub fn psk_from_store(store: SharedSecurityStore) -> PskLookup {
    Arc::new(move |identity| {
        let info = store.lock().ok()?.get_by_psk_identity(identity).ok()??;
        match info.credentials {
            Credentials::Psk { key, .. } => Some(key),
            _ => None,
        }
    })
}

/// The server certificate, its key and the CA that signs client certificates
/// (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509Files {
    /// The server's certificate chain (leaf first).
    pub certificate: PathBuf,
    /// The server certificate's private key.
    pub private_key: PathBuf,
    /// Trusted CA certificates for client certificates.
    pub ca: PathBuf,
}

/// Sets the cipher suites, the PSK server callback (keys from `psk`),
/// X.509 client certificates with `x509` and raw public keys with the
/// private key file `rpk_private_key`.
pub(crate) fn configure_authentication(
    b: &mut SslContextBuilder,
    psk: PskLookup,
    x509: Option<&X509Files>,
    rpk_private_key: Option<&Path>,
) -> Result<(), DtlsError> {
    b.set_cipher_list(CIPHERS).map_err(setup)?;
    // LwM2M mandates the AES-128-CCM-8 suites, which OpenSSL 3.4 and
    // later file under security level 0 (64-bit tags): the level is
    // lowered for the cipher choice (CIPHERS holds no weak suite), and
    // client certificate chains keep level 1's key-size checks.
    b.set_security_level(0);
    b.verify_param_mut().set_auth_level(1);
    let identity_index = psk_identity_index()?;
    b.set_psk_server_callback(move |ssl, identity, key_out| {
        let identity = identity
            .and_then(|i| std::str::from_utf8(i).ok())
            .ok_or_else(ErrorStack::get)?;
        let key = psk(identity).ok_or_else(ErrorStack::get)?;
        let out = key_out.get_mut(..key.len()).ok_or_else(ErrorStack::get)?;
        out.copy_from_slice(&key);
        ssl.set_ex_data(identity_index, PskIdentity(identity.to_string()));
        Ok(key.len())
    });
    if let Some(x) = x509 {
        fn file<'a>(
            what: &'static str,
            path: &'a std::path::Path,
        ) -> impl Fn(ErrorStack) -> DtlsError + 'a {
            move |e: ErrorStack| DtlsError::File {
                what,
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        }
        b.set_certificate_chain_file(&x.certificate)
            .map_err(file("certificate", &x.certificate))?;
        b.set_private_key_file(&x.private_key, SslFiletype::PEM)
            .map_err(file("private key", &x.private_key))?;
        b.check_private_key().map_err(file(
            "private key (does not match the certificate)",
            &x.private_key,
        ))?;
        b.set_ca_file(&x.ca).map_err(file("CA", &x.ca))?;
        let names = X509Name::load_client_ca_file(&x.ca).map_err(file("CA", &x.ca))?;
        b.set_client_ca_list(names);
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    if let Some(path) = rpk_private_key {
        let certificate = x509.map(|x| x.certificate.as_path());
        configure_rpk(b, path, certificate)?;
    }
    Ok(())
}

/// Offers raw public keys with the private key in `path`. With a server
/// `certificate` (PEM) certificates stay possible for clients that do not
/// ask for RPK, and the key must be the certificate's.
#[cfg(feature = "rpk")]
fn configure_rpk(
    b: &mut SslContextBuilder,
    path: &std::path::Path,
    certificate: Option<&std::path::Path>,
) -> Result<(), DtlsError> {
    let file = |reason: String| DtlsError::File {
        what: "raw public key private key",
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| file(e.to_string()))?;
    let key = PKey::private_key_from_pem(&pem).map_err(|e| file(e.to_string()))?;
    if let Some(certificate) = certificate {
        // OpenSSL keeps one key per algorithm, already set from the
        // certificate's key file; RPK presents that key.
        let own = std::fs::read(certificate)
            .ok()
            .and_then(|pem| openssl::x509::X509::from_pem(&pem).ok())
            .and_then(|c| c.public_key().ok())
            .and_then(|k| k.public_key_to_der().ok());
        if key.public_key_to_der().ok() != own {
            return Err(file(
                "with --dtls-cert it must be the certificate's own key (OpenSSL holds one \
                 key per algorithm)"
                    .into(),
            ));
        }
    } else {
        b.set_private_key(&key).map_err(|e| file(e.to_string()))?;
    }
    lwm2m_dtls::rpk::offer_raw_public_keys(b, certificate.is_some()).map_err(setup)?;
    // A raw public key has no issuer to verify: any key is accepted here
    // and the Authorizer compares it with the endpoint's stored key when
    // it registers. Certificates are verified as before.
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        |preverified, store| {
            preverified || lwm2m_dtls::rpk::store_context_public_key(store).is_some()
        },
    );
    Ok(())
}

#[cfg(not(feature = "rpk"))]
fn configure_rpk(
    _b: &mut SslContextBuilder,
    path: &std::path::Path,
    _certificate: Option<&std::path::Path>,
) -> Result<(), DtlsError> {
    Err(DtlsError::File {
        what: "raw public key private key",
        path: path.to_path_buf(),
        reason: "this build has no raw public keys (they need OpenSSL >= 3.2: feature `rpk`)"
            .into(),
    })
}

/// The PSK identity whose key the server callback gave (OpenSSL keeps it
/// for TLS 1.2 and DTLS, but not for an external PSK in TLS 1.3).
struct PskIdentity(String);

/// The index of [`PskIdentity`] in an `Ssl`'s extra data, one for the
/// process (OpenSSL indexes are global and never freed).
fn psk_identity_index() -> Result<Index<Ssl, PskIdentity>, DtlsError> {
    static INDEX: OnceLock<Index<Ssl, PskIdentity>> = OnceLock::new();
    if let Some(index) = INDEX.get() {
        return Ok(*index);
    }
    let index = Ssl::new_ex_index().map_err(setup)?;
    Ok(*INDEX.get_or_init(|| index))
}

/// The identity a finished handshake authenticated.
pub(crate) fn identity_of(ssl: &SslRef) -> Option<PeerIdentity> {
    #[cfg(feature = "rpk")]
    if let Some(public_key) = lwm2m_dtls::rpk::peer_public_key(ssl) {
        return Some(PeerIdentity::Rpk { public_key });
    }
    if let Some(cert) = ssl.peer_certificate() {
        let common_name = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_default();
        let der = cert.to_der().ok()?;
        return Some(PeerIdentity::X509 { common_name, der });
    }
    let index = psk_identity_index().ok()?;
    if let Some(PskIdentity(identity)) = ssl.ex_data(index) {
        return Some(PeerIdentity::Psk(identity.clone()));
    }
    let psk = ssl.psk_identity()?;
    Some(PeerIdentity::Psk(String::from_utf8(psk.to_vec()).ok()?))
}
