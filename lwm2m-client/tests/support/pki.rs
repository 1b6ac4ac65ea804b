//! Test certificates made at run time with OpenSSL: a CA, a server
//! certificate for 127.0.0.1 and a client certificate, both signed by it
//! (P-256 keys, valid for two days). Shared by the https firmware tests,
//! the DTLS session's unit tests and the DTLS interop tests (included with
//! `#[path]`).
#![allow(dead_code)]

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};

/// A fresh P-256 key.
pub fn ec_key() -> PKey<Private> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `cn` with `key`: self-signed CA without `issuer`,
/// else signed by it with subjectAltName IP 127.0.0.1.
pub fn certificate(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(63, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    match issuer {
        None => {
            b.set_issuer_name(&name).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .build(&b.x509v3_context(Some(ca), None))
                .unwrap();
            b.append_extension(san).unwrap();
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

/// A CA with a server and a client certificate signed by it.
pub struct Pki {
    /// The CA certificate.
    pub ca: X509,
    /// The CA certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// The CA's key.
    pub ca_key: PKey<Private>,
    /// The server certificate (CN and subjectAltName 127.0.0.1).
    pub cert: X509,
    /// The server's key.
    pub key: PKey<Private>,
    /// The client certificate.
    pub client_cert: X509,
    /// The client's key.
    pub client_key: PKey<Private>,
}

/// A fresh [`Pki`].
pub fn pki() -> Pki {
    let ca_key = ec_key();
    let ca = certificate("lwm2m-rs test CA", &ca_key, None);
    let key = ec_key();
    let cert = certificate("127.0.0.1", &key, Some((&ca, &ca_key)));
    let client_key = ec_key();
    let client_cert = certificate("lwm2m-rs test client", &client_key, Some((&ca, &ca_key)));
    Pki {
        ca_pem: ca.to_pem().unwrap(),
        ca,
        ca_key,
        cert,
        key,
        client_cert,
        client_key,
    }
}

/// PEM files for a DTLS server with X.509 credentials and a device whose
/// certificate (Common Name `device_cn`) the same CA signed, written into
/// a directory: the server's `--dtls-cert/--dtls-key/--dtls-ca` and the
/// device's `--cert/--key`.
pub struct X509Files {
    /// The CA and the server's certificate and key.
    pub pki: Pki,
    /// The device's certificate.
    pub device_cert: X509,
    /// The device's key.
    pub device_key: PKey<Private>,
    /// The server certificate, PEM.
    pub server_cert: std::path::PathBuf,
    /// The server's key, PEM (PKCS#8).
    pub server_key: std::path::PathBuf,
    /// The CA certificate, PEM.
    pub ca: std::path::PathBuf,
    /// The device certificate, PEM.
    pub client_cert: std::path::PathBuf,
    /// The device's key, PEM (PKCS#8).
    pub client_key: std::path::PathBuf,
}

/// Makes a fresh [`Pki`] and a device certificate for `device_cn`, and
/// writes their [`X509Files`] into `dir`.
pub fn write_x509_files(dir: &std::path::Path, device_cn: &str) -> X509Files {
    let pki = pki();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let device_key = ec_key();
    let device_cert = certificate(device_cn, &device_key, Some((&pki.ca, &pki.ca_key)));
    X509Files {
        server_cert: write("server.pem", &pki.cert.to_pem().unwrap()),
        server_key: write(
            "server-key.pem",
            &pki.key.private_key_to_pem_pkcs8().unwrap(),
        ),
        ca: write("ca.pem", &pki.ca_pem),
        client_cert: write("client.pem", &device_cert.to_pem().unwrap()),
        client_key: write(
            "client-key.pem",
            &device_key.private_key_to_pem_pkcs8().unwrap(),
        ),
        pki,
        device_cert,
        device_key,
    }
}

impl X509Files {
    /// The server's `--dtls-cert FILE --dtls-key FILE --dtls-ca FILE`.
    pub fn server_flags(&self) -> [&std::ffi::OsStr; 6] {
        [
            "--dtls-cert".as_ref(),
            self.server_cert.as_os_str(),
            "--dtls-key".as_ref(),
            self.server_key.as_os_str(),
            "--dtls-ca".as_ref(),
            self.ca.as_os_str(),
        ]
    }
}

/// PEM files for raw public keys (RFC 7250) on both sides, written into a
/// directory: the server's `--dtls-rpk-key` and the device's `--rpk-key`
/// and `--server-public-key`.
pub struct RpkFiles {
    /// The server's key pair.
    pub server_key: PKey<Private>,
    /// The device's key pair.
    pub device_key: PKey<Private>,
    /// The server's private key, PEM (PKCS#8).
    pub server_key_file: std::path::PathBuf,
    /// The server's public key, PEM.
    pub server_public: std::path::PathBuf,
    /// The device's private key, PEM (PKCS#8).
    pub device_key_file: std::path::PathBuf,
}

/// Fresh server and device keys and their [`RpkFiles`] in `dir`.
pub fn write_rpk_files(dir: &std::path::Path) -> RpkFiles {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let (server_key, device_key) = (ec_key(), ec_key());
    RpkFiles {
        server_key_file: write(
            "server-key.pem",
            &server_key.private_key_to_pem_pkcs8().unwrap(),
        ),
        server_public: write(
            "server-public.pem",
            &server_key.public_key_to_pem().unwrap(),
        ),
        device_key_file: write(
            "device-key.pem",
            &device_key.private_key_to_pem_pkcs8().unwrap(),
        ),
        server_key,
        device_key,
    }
}
