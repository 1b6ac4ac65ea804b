//! Raw Public Keys (RFC 7250) on an OpenSSL ≥ 3.2 context.
//!
//! Both sides offer and accept only RPK as the certificate type (LwM2M
//! security mode 1 has no certificate fallback). A peer's key comes as
//! the DER of its SubjectPublicKeyInfo, the form LwM2M keeps in Security
//! resources 3 and 4 and the form compared with stored credentials.
//!
//! OpenSSL verifies a raw public key only against DANE records; the
//! callers here compare keys themselves instead, so they install a verify
//! callback that looks at the key with [`store_context_public_key`] and
//! answers whether it is the expected one (a refused key fails the
//! handshake with a `bad_certificate` alert), and may read it again after
//! the handshake with [`peer_public_key`].
//!
//! ```
//! use openssl::ec::{EcGroup, EcKey};
//! use openssl::nid::Nid;
//! use openssl::pkey::PKey;
//! use openssl::ssl::{SslContext, SslMethod, SslVerifyMode};
//!
//! let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
//! let own = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
//! let expected_server_key: Vec<u8> = Vec::new(); // from Security resource 4
//! let mut ctx = SslContext::builder(SslMethod::dtls()).unwrap();
//! ctx.set_private_key(&own).unwrap(); // no certificate needed with RPK
//! lwm2m_dtls::rpk::offer_only_raw_public_keys(&mut ctx).unwrap();
//! ctx.set_verify_callback(SslVerifyMode::PEER, move |_, store| {
//!     lwm2m_dtls::rpk::store_context_public_key(store)
//!         .is_some_and(|key| key == expected_server_key)
//! });
//! ```
// The project's one FFI module: the rest of the workspace forbids unsafe.
#![allow(unsafe_code)]

use foreign_types_shared::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::pkey::{PKeyRef, Public};
use openssl::ssl::{SslContextBuilder, SslRef};
use openssl::x509::X509StoreContextRef;

/// `TLSEXT_cert_type_rpk` (RFC 7250 certificate type 2).
const CERT_TYPE_RPK: u8 = 2;
/// `TLSEXT_cert_type_x509` (RFC 7250 certificate type 0).
const CERT_TYPE_X509: u8 = 0;

// Declarations as in OpenSSL 3.2's <openssl/ssl.h> and <openssl/x509_vfy.h>
// (SSL_CTX_set1_client_cert_type(3), SSL_get0_peer_rpk(3),
// X509_STORE_CTX_get0_rpk(3)). They link because the `rpk` feature builds
// OpenSSL 3.2 or newer (openssl-src 300.x).
extern "C" {
    fn SSL_CTX_set1_client_cert_type(
        ctx: *mut openssl_sys::SSL_CTX,
        val: *const u8,
        len: usize,
    ) -> std::os::raw::c_int;
    fn SSL_CTX_set1_server_cert_type(
        ctx: *mut openssl_sys::SSL_CTX,
        val: *const u8,
        len: usize,
    ) -> std::os::raw::c_int;
    fn SSL_get0_peer_rpk(ssl: *const openssl_sys::SSL) -> *mut openssl_sys::EVP_PKEY;
    fn X509_STORE_CTX_get0_rpk(
        ctx: *const openssl_sys::X509_STORE_CTX,
    ) -> *mut openssl_sys::EVP_PKEY;
}

/// Makes `ctx` present its own key as a raw public key and accept only a
/// raw public key from the peer, as client or as server. The context needs
/// a private key ([`SslContextBuilder::set_private_key`]) and no
/// certificate.
pub fn offer_only_raw_public_keys(ctx: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    offer_raw_public_keys(ctx, false)
}

/// Like [`offer_only_raw_public_keys`]; with `x509_too` X.509 certificates
/// stay possible (preferred, so peers that do not negotiate a certificate
/// type, the usual X.509 clients, see no change): a server with a
/// certificate uses this to serve both kinds of clients.
pub fn offer_raw_public_keys(
    ctx: &mut SslContextBuilder,
    x509_too: bool,
) -> Result<(), ErrorStack> {
    let both = [CERT_TYPE_X509, CERT_TYPE_RPK];
    let only = [CERT_TYPE_RPK];
    let types: &[u8] = if x509_too { &both } else { &only };
    // SAFETY: `ctx.as_ptr()` is a live SSL_CTX owned by `ctx` for the whole
    // call; OpenSSL copies `types` (pointer and length of a live array)
    // ("set1": it keeps its own copy) and keeps no pointer to it.
    let (client, server) = unsafe {
        (
            SSL_CTX_set1_client_cert_type(ctx.as_ptr(), types.as_ptr(), types.len()),
            SSL_CTX_set1_server_cert_type(ctx.as_ptr(), types.as_ptr(), types.len()),
        )
    };
    if client == 1 && server == 1 {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

/// The DER SubjectPublicKeyInfo of `key` (borrowed from OpenSSL), or `None`
/// for a null pointer.
///
/// # Safety
/// `key` is null or an EVP_PKEY that stays alive while this runs.
unsafe fn spki_der(key: *mut openssl_sys::EVP_PKEY) -> Option<Vec<u8>> {
    if key.is_null() {
        return None;
    }
    // SAFETY: not null, alive for this call (the caller's promise); the
    // reference does not outlive this function and is only read.
    let key: &PKeyRef<Public> = unsafe { PKeyRef::from_ptr(key) };
    key.public_key_to_der().ok()
}

/// The raw public key the peer presented in the handshake of `ssl` (DER
/// SubjectPublicKeyInfo), or `None` when it presented none (or a
/// certificate).
pub fn peer_public_key(ssl: &SslRef) -> Option<Vec<u8>> {
    // SAFETY: `ssl.as_ptr()` is a live SSL borrowed for this call; get0
    // returns a key owned by the SSL (or null), read before `ssl` can go.
    unsafe { spki_der(SSL_get0_peer_rpk(ssl.as_ptr())) }
}

/// Inside a verify callback: the raw public key being verified (DER
/// SubjectPublicKeyInfo), or `None` when the peer sent a certificate.
pub fn store_context_public_key(store: &X509StoreContextRef) -> Option<Vec<u8>> {
    // SAFETY: `store.as_ptr()` is the live X509_STORE_CTX of the running
    // verification; get0 returns a key it owns (or null), read at once.
    unsafe { spki_der(X509_STORE_CTX_get0_rpk(store.as_ptr())) }
}

#[cfg(test)]
mod tests {
    use super::{offer_only_raw_public_keys, peer_public_key, store_context_public_key};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::{ErrorCode, Ssl, SslContext, SslMethod, SslStream, SslVerifyMode};
    use std::collections::VecDeque;
    use std::io::{self, Read, Write};
    use std::sync::{Arc, Mutex};

    type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

    /// One side of an in-memory datagram link.
    struct End {
        rx: Queue,
        tx: Queue,
    }

    impl Read for End {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let d = self.rx.lock().unwrap().pop_front();
            let d = d.ok_or(io::ErrorKind::WouldBlock)?;
            buf[..d.len()].copy_from_slice(&d);
            Ok(d.len())
        }
    }

    impl Write for End {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.tx.lock().unwrap().push_back(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    fn spki(k: &PKey<Private>) -> Vec<u8> {
        k.public_key_to_der().unwrap()
    }

    /// A context presenting `own` and accepting only `expected_peer`.
    fn context(own: &PKey<Private>, expected_peer: Vec<u8>) -> SslContext {
        let mut b = SslContext::builder(SslMethod::dtls()).unwrap();
        b.set_private_key(own).unwrap();
        offer_only_raw_public_keys(&mut b).unwrap();
        b.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            move |_, store| store_context_public_key(store).is_some_and(|k| k == expected_peer),
        );
        b.build()
    }

    /// Runs a handshake to its end; `Err` names the side that failed.
    fn handshake(
        client: SslContext,
        server: SslContext,
    ) -> Result<(SslStream<End>, SslStream<End>), &'static str> {
        let (a, b): (Queue, Queue) = Default::default();
        let end_c = End {
            rx: a.clone(),
            tx: b.clone(),
        };
        let end_s = End { rx: b, tx: a };
        let mut c = SslStream::new(Ssl::new(&client).unwrap(), end_c).unwrap();
        let mut s = SslStream::new(Ssl::new(&server).unwrap(), end_s).unwrap();
        let (mut c_done, mut s_done) = (false, false);
        for _ in 0..10 {
            if !c_done {
                match c.connect() {
                    Ok(()) => c_done = true,
                    Err(e) if e.code() == ErrorCode::WANT_READ => {}
                    Err(_) => return Err("client"),
                }
            }
            if !s_done {
                match s.accept() {
                    Ok(()) => s_done = true,
                    Err(e) if e.code() == ErrorCode::WANT_READ => {}
                    Err(_) => return Err("server"),
                }
            }
            if c_done && s_done {
                return Ok((c, s));
            }
        }
        Err("no progress")
    }

    #[test]
    fn both_sides_see_the_others_raw_public_key_and_data_flows() {
        let (kc, ks) = (key(), key());
        let (mut c, mut s) = handshake(context(&kc, spki(&ks)), context(&ks, spki(&kc))).unwrap();
        assert_eq!(c.ssl().version_str(), "DTLSv1.2");
        assert_eq!(peer_public_key(c.ssl()), Some(spki(&ks)));
        assert_eq!(peer_public_key(s.ssl()), Some(spki(&kc)));
        // No certificate travelled: RPK only.
        assert!(c.ssl().peer_certificate().is_none());
        c.write_all(b"coap").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"coap");
    }

    #[test]
    fn a_server_key_other_than_the_expected_one_fails_the_clients_handshake() {
        let (kc, ks, other) = (key(), key(), key());
        let r = handshake(context(&kc, spki(&other)), context(&ks, spki(&kc)));
        assert_eq!(r.err(), Some("client"));
    }

    #[test]
    fn a_client_key_other_than_the_expected_one_fails_the_servers_handshake() {
        let (kc, ks, other) = (key(), key(), key());
        let r = handshake(context(&kc, spki(&ks)), context(&ks, spki(&other)));
        assert_eq!(r.err(), Some("server"));
    }
}
