//! What a driver needs to secure the traffic with one peer: the
//! credentials of a Security object (0) instance, as
//! [`Client::peer_security`](crate::Client::peer_security) hands them out.
//!
//! `no_std` + `alloc` like the engine: this module only reads resources;
//! the DTLS session that uses them (OpenSSL) is the std-side
//! `crate::dtls` (feature `dtls`).
//!
//! The URI scheme decides whether the traffic is secured at all: a
//! `coap://` account is [`SecurityParams::NoSec`] whatever its mode says,
//! a `coaps://` account uses the mode (resource 2):
//!
//! | mode | resources | variant |
//! |------|-----------|---------|
//! | 0 PSK | 3 identity, 5 key | [`SecurityParams::Psk`] |
//! | 1 RPK | 3 own public key, 4 server's public key, 5 private key | [`SecurityParams::RawPublicKey`] |
//! | 2 Certificate | 3 certificate (DER), 4 server certificate or trust anchor (DER), 5 private key (DER), 15 usage | [`SecurityParams::Certificate`] |
//! | 3 NoSec | — | [`SecurityParams::Unusable`]: a `coaps://` URI needs a security mode |
//! | 4 Certificate with EST, others | — | [`SecurityParams::Unusable`] |

use alloc::vec::Vec;

/// Security Mode (`/0/x/2`) 0: Pre-Shared Key.
pub const MODE_PSK: i64 = 0;
/// Security Mode 1: Raw Public Key.
pub const MODE_RPK: i64 = 1;
/// Security Mode 2: Certificate (X.509).
pub const MODE_CERTIFICATE: i64 = 2;
/// Security Mode 3: NoSec.
pub const MODE_NOSEC: i64 = 3;
/// Security Mode 4: Certificate with EST (LwM2M 1.1).
pub const MODE_EST: i64 = 4;

/// Certificate Usage (`/0/x/15`, the DANE usages of RFC 6698 §2.1.1):
/// how resource 4 constrains the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CertificateUsage {
    /// 0 "CA constraint": resource 4 is a CA that must appear in the
    /// server's chain, which must also be valid against the trust store.
    CaConstraint,
    /// 1 "service certificate constraint": the server's certificate equals
    /// resource 4 and its chain is valid against the trust store.
    ServiceCertificateConstraint,
    /// 2 "trust anchor assertion": resource 4 is the trust anchor the
    /// server's chain must lead to.
    TrustAnchorAssertion,
    /// 3 "domain-issued certificate" (the TS default): the server's
    /// certificate must equal resource 4; no chain is checked.
    DomainIssuedCertificate,
}

impl CertificateUsage {
    /// The usage for resource 15's value; `None` for values outside 0–3.
    pub fn from_value(v: i64) -> Option<CertificateUsage> {
        Some(match v {
            0 => CertificateUsage::CaConstraint,
            1 => CertificateUsage::ServiceCertificateConstraint,
            2 => CertificateUsage::TrustAnchorAssertion,
            3 => CertificateUsage::DomainIssuedCertificate,
            _ => return None,
        })
    }

    /// Resource 15's value for this usage.
    pub fn value(self) -> i64 {
        match self {
            CertificateUsage::CaConstraint => 0,
            CertificateUsage::ServiceCertificateConstraint => 1,
            CertificateUsage::TrustAnchorAssertion => 2,
            CertificateUsage::DomainIssuedCertificate => 3,
        }
    }
}

/// How to secure the traffic with one peer.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityParams {
    /// Plain CoAP (a `coap://` URI).
    NoSec,
    /// DTLS with a pre-shared key (mode 0).
    Psk {
        /// PSK identity (resource 3).
        identity: Vec<u8>,
        /// The key itself (resource 5), raw bytes.
        key: Vec<u8>,
    },
    /// DTLS with raw public keys (mode 1, RFC 7250).
    RawPublicKey {
        /// The client's public key (resource 3, DER SubjectPublicKeyInfo).
        public_key: Vec<u8>,
        /// The server's public key (resource 4).
        server_public_key: Vec<u8>,
        /// The client's private key (resource 5).
        private_key: Vec<u8>,
    },
    /// DTLS with X.509 certificates (mode 2).
    Certificate {
        /// The client's certificate (resource 3, DER).
        certificate: Vec<u8>,
        /// The client's private key (resource 5, DER: PKCS#8 or the
        /// algorithm's own form).
        private_key: Vec<u8>,
        /// The server's certificate or trust anchor (resource 4, DER),
        /// read according to `usage`.
        server_certificate: Vec<u8>,
        /// Certificate Usage (resource 15; 3 when absent).
        usage: CertificateUsage,
    },
    /// A `coaps://` account whose configuration cannot be used: the text
    /// says what is wrong (NoSec mode on a `coaps://` URI, an unsupported
    /// mode, a bad Certificate Usage).
    Unusable(&'static str),
}

impl core::fmt::Debug for SecurityParams {
    /// Keys are never printed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SecurityParams::NoSec => f.write_str("NoSec"),
            SecurityParams::Psk { identity, .. } => f
                .debug_struct("Psk")
                .field(
                    "identity",
                    &alloc::string::String::from_utf8_lossy(identity),
                )
                .finish_non_exhaustive(),
            SecurityParams::RawPublicKey { .. } => {
                f.debug_struct("RawPublicKey").finish_non_exhaustive()
            }
            SecurityParams::Certificate { usage, .. } => f
                .debug_struct("Certificate")
                .field("usage", usage)
                .finish_non_exhaustive(),
            SecurityParams::Unusable(why) => f.debug_tuple("Unusable").field(why).finish(),
        }
    }
}

/// The Security resources [`SecurityParams::from_resources`] reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecurityResources<'a> {
    /// LwM2M Server URI (resource 0).
    pub uri: &'a str,
    /// Security Mode (resource 2); `None` when absent.
    pub mode: Option<i64>,
    /// Public Key or Identity (resource 3).
    pub public_key_or_identity: &'a [u8],
    /// Server Public Key (resource 4).
    pub server_public_key: &'a [u8],
    /// Secret Key (resource 5).
    pub secret_key: &'a [u8],
    /// Certificate Usage (resource 15); `None` when absent.
    pub certificate_usage: Option<i64>,
}

impl SecurityParams {
    /// The parameters of one Security instance (see the
    /// [module documentation](self) for the mapping).
    pub fn from_resources(r: SecurityResources<'_>) -> SecurityParams {
        if !is_coaps(r.uri) {
            return SecurityParams::NoSec;
        }
        match r.mode {
            Some(MODE_PSK) => SecurityParams::Psk {
                identity: r.public_key_or_identity.to_vec(),
                key: r.secret_key.to_vec(),
            },
            Some(MODE_RPK) => SecurityParams::RawPublicKey {
                public_key: r.public_key_or_identity.to_vec(),
                server_public_key: r.server_public_key.to_vec(),
                private_key: r.secret_key.to_vec(),
            },
            Some(MODE_CERTIFICATE) => {
                let usage = match r.certificate_usage {
                    None => CertificateUsage::DomainIssuedCertificate,
                    Some(v) => match CertificateUsage::from_value(v) {
                        Some(u) => u,
                        None => {
                            return SecurityParams::Unusable(
                                "Certificate Usage (resource 15) must be 0, 1, 2 or 3",
                            )
                        }
                    },
                };
                SecurityParams::Certificate {
                    certificate: r.public_key_or_identity.to_vec(),
                    private_key: r.secret_key.to_vec(),
                    server_certificate: r.server_public_key.to_vec(),
                    usage,
                }
            }
            Some(MODE_NOSEC) => SecurityParams::Unusable(
                "a coaps:// server URI with Security Mode 3 (NoSec): expected mode 0 (PSK), \
                 1 (RPK) or 2 (Certificate), or a coap:// URI",
            ),
            Some(MODE_EST) => SecurityParams::Unusable(
                "Security Mode 4 (Certificate with EST) is not supported: expected mode 0 \
                 (PSK) or 2 (Certificate)",
            ),
            Some(_) => SecurityParams::Unusable(
                "unknown Security Mode (resource 2): expected 0 (PSK), 1 (RPK), 2 \
                 (Certificate) or 3 (NoSec)",
            ),
            None => {
                SecurityParams::Unusable("a coaps:// server URI without Security Mode (resource 2)")
            }
        }
    }

    /// Whether the traffic goes through a DTLS session (every variant but
    /// [`SecurityParams::NoSec`]; an unusable one fails when the session
    /// is set up).
    pub fn is_secure(&self) -> bool {
        !matches!(self, SecurityParams::NoSec)
    }
}

/// Whether `uri` has the `coaps` scheme (case-insensitive).
pub fn is_coaps(uri: &str) -> bool {
    uri.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("coaps://"))
}

/// Whether `uri` has the `coap+tcp` scheme (CoAP over TCP, RFC 8323;
/// binding `T`), case-insensitive.
pub fn is_coap_tcp(uri: &str) -> bool {
    uri.get(..11)
        .is_some_and(|s| s.eq_ignore_ascii_case("coap+tcp://"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(uri: &str, mode: i64) -> SecurityResources<'_> {
        SecurityResources {
            uri,
            mode: Some(mode),
            public_key_or_identity: b"id",
            server_public_key: b"srv",
            secret_key: b"key",
            certificate_usage: None,
        }
    }

    #[test]
    fn the_scheme_and_the_mode_give_the_parameters() {
        assert_eq!(
            SecurityParams::from_resources(res("coap://h", MODE_PSK)),
            SecurityParams::NoSec
        );
        assert_eq!(
            SecurityParams::from_resources(res("COAPS://h", MODE_PSK)),
            SecurityParams::Psk {
                identity: b"id".to_vec(),
                key: b"key".to_vec()
            }
        );
        match SecurityParams::from_resources(res("coaps://h", MODE_CERTIFICATE)) {
            SecurityParams::Certificate { usage, .. } => {
                assert_eq!(usage, CertificateUsage::DomainIssuedCertificate)
            }
            other => panic!("{other:?}"),
        }
        let mut r = res("coaps://h", MODE_CERTIFICATE);
        r.certificate_usage = Some(2);
        assert!(matches!(
            SecurityParams::from_resources(r),
            SecurityParams::Certificate {
                usage: CertificateUsage::TrustAnchorAssertion,
                ..
            }
        ));
        r.certificate_usage = Some(7);
        assert!(matches!(
            SecurityParams::from_resources(r),
            SecurityParams::Unusable(_)
        ));
        for mode in [MODE_NOSEC, MODE_EST, 99] {
            assert!(matches!(
                SecurityParams::from_resources(res("coaps://h", mode)),
                SecurityParams::Unusable(_)
            ));
        }
        assert!(matches!(
            SecurityParams::from_resources(res("coaps://h", MODE_RPK)),
            SecurityParams::RawPublicKey { .. }
        ));
    }

    #[test]
    fn debug_output_hides_keys() {
        let p = SecurityParams::Psk {
            identity: b"me".to_vec(),
            key: b"SECRET".to_vec(),
        };
        let text = alloc::format!("{p:?}");
        assert!(text.contains("me") && !text.contains("SECRET"), "{text}");
    }
}
