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
