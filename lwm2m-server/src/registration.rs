//! What the server knows about a registered client, and the validation of
//! Register / Update parameters (TS Core §6.2.1, §6.2.2).

use std::fmt;

use lwm2m_core::coap::Code;
use lwm2m_core::format::link::RegistrationLinks;
use lwm2m_core::model::Version;
use lwm2m_core::time::Instant;

use crate::security::PeerIdentity;

/// Lifetime when a Register carries no `lt` (TS Core Table 6.2.1-1: 86400 s).
pub const DEFAULT_LIFETIME: u32 = 86_400;

/// Longest endpoint name accepted. The TS sets no limit; names are usually
/// URNs (`urn:imei:...`, `urn:uuid:...`, under 64 bytes). CoAP already caps a
/// Uri-Query option at 255 bytes (4.02 beyond); this lower bound keeps names
/// readable in logs and keys small in the store.
pub const MAX_ENDPOINT_LEN: usize = 200;

/// Longest `sms` (MSISDN) value accepted; an E.164 number has at most 15 digits.
pub const MAX_SMS_LEN: usize = 32;

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration<P> {
    /// Registration id, the last segment of the location `/rd/{id}`.
    pub id: String,
    /// Endpoint client name (`ep`).
    pub endpoint: String,
    /// Where the client was last heard from (Register or Update).
    pub address: P,
    /// Lifetime in seconds (`lt`).
    pub lifetime: u32,
    /// LwM2M enabler version (`lwm2m`).
    pub lwm2m_version: Version,
    /// Binding letters (`b`), as sent (e.g. `U`, `UQ`, `T`).
    pub binding: String,
    /// MSISDN (`sms`).
    pub sms: Option<String>,
    /// Queue mode: the `Q` parameter (1.1+) or a `Q` in the 1.0 binding.
    pub queue_mode: bool,
    /// Objects and object instances the client announced.
    pub links: RegistrationLinks,
    /// When the client registered (driver time; the tokio driver counts from
    /// the Unix epoch so stored registrations survive a restart).
    pub registered_at: Instant,
    /// When the client was last heard from with Register or Update.
    pub last_update: Instant,
    /// The DTLS identity the client registered with (`None`: plain CoAP).
    /// Update, De-register and Send must come from the same identity.
    pub security: Option<RegistrationSecurity>,
}

/// The DTLS identity a registration is bound to: the part of a
/// [`PeerIdentity`] later requests are compared on (and that the stores
/// keep). Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RegistrationSecurity {
    /// Registered over a PSK handshake with this identity.
    Psk {
        /// The PSK identity.
        identity: String,
    },
    /// Registered with a certificate with this subject Common Name.
    X509 {
        /// The certificate's Common Name.
        common_name: String,
    },
    /// Registered with this raw public key.
    Rpk {
        /// The key's DER `SubjectPublicKeyInfo` in lower-case hex, as the
        /// admin API's `{"rpk":{"key":..}}` takes it.
        public_key_hex: String,
    },
}

impl RegistrationSecurity {
    /// The part of `identity` a registration keeps.
    pub fn of(identity: &PeerIdentity) -> RegistrationSecurity {
        match identity {
            PeerIdentity::Psk(id) => RegistrationSecurity::Psk {
                identity: id.clone(),
            },
            PeerIdentity::X509 { common_name, .. } => RegistrationSecurity::X509 {
                common_name: common_name.clone(),
            },
            PeerIdentity::Rpk { public_key } => RegistrationSecurity::Rpk {
                public_key_hex: public_key.iter().map(|b| format!("{b:02x}")).collect(),
            },
        }
    }

    /// `"psk"`, `"x509"` or `"rpk"` (the admin API's `security`).
    pub fn kind(&self) -> &'static str {
        match self {
            RegistrationSecurity::Psk { .. } => "psk",
            RegistrationSecurity::X509 { .. } => "x509",
            RegistrationSecurity::Rpk { .. } => "rpk",
        }
    }

    /// The PSK identity, the certificate's Common Name or the raw public
    /// key (hex).
    pub fn identity(&self) -> &str {
        match self {
            RegistrationSecurity::Psk { identity } => identity,
            RegistrationSecurity::X509 { common_name } => common_name,
            RegistrationSecurity::Rpk { public_key_hex } => public_key_hex,
        }
    }

    /// `kind:identity`, how the stores keep it.
    pub fn to_stored(&self) -> String {
        format!("{}:{}", self.kind(), self.identity())
    }

    /// Reads [`RegistrationSecurity::to_stored`]'s text back; `None` if it
    /// is not `psk:…`, `x509:…` or `rpk:…`.
    pub fn from_stored(text: &str) -> Option<RegistrationSecurity> {
        match text.split_once(':')? {
            ("psk", id) => Some(RegistrationSecurity::Psk {
                identity: id.to_string(),
            }),
            ("x509", cn) => Some(RegistrationSecurity::X509 {
                common_name: cn.to_string(),
            }),
            ("rpk", key) => Some(RegistrationSecurity::Rpk {
                public_key_hex: key.to_string(),
            }),
            _ => None,
        }
    }
}

/// Why a Register or Update was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationError {
    /// `ep` missing, empty, too long or not printable text.
    InvalidEndpoint,
    /// `lt` is not a positive decimal integer fitting 32 bits.
    InvalidLifetime,
    /// `lwm2m` is not `major.minor`.
    InvalidVersion,
    /// `lwm2m` is well formed but not a version this server speaks.
    UnsupportedVersion(Version),
    /// `b` has unknown or repeated letters, or is empty.
    InvalidBinding,
    /// `sms` empty or too long.
    InvalidSms,
    /// `Q` carried a value.
    InvalidQueueMode,
    /// A parameter appears twice.
    DuplicateParameter(String),
    /// A query parameter is not UTF-8.
    InvalidQuery,
    /// The link-format payload is missing or malformed.
    InvalidPayload(String),
    /// The payload has a Content-Format other than 40 (application/link-format).
    UnsupportedContentFormat(u16),
}

impl RegistrationError {
    /// The CoAP response code the server answers with.
    pub fn code(&self) -> Code {
        match self {
            // TS Core 1.1 §6.2.1 (Register) and TS Transport Table 6.7-2 list
            // "4.12 Precondition Failed" for a Register whose `lwm2m` version
            // the server does not support (wording checked against a
            // requirements table quoting the TS, not the TS text itself).
            RegistrationError::UnsupportedVersion(_) => Code::PRECONDITION_FAILED,
            RegistrationError::UnsupportedContentFormat(_) => Code::UNSUPPORTED_CONTENT_FORMAT,
            _ => Code::BAD_REQUEST,
        }
    }
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationError::InvalidEndpoint => write!(
                f,
                "ep must be present, non-empty, printable and at most {MAX_ENDPOINT_LEN} bytes"
            ),
            RegistrationError::InvalidLifetime => {
                f.write_str("lt must be a positive decimal integer (seconds)")
            }
            RegistrationError::InvalidVersion => {
                f.write_str("lwm2m must be a version like 1.0, 1.1 or 1.2")
            }
            RegistrationError::UnsupportedVersion(v) => {
                write!(f, "lwm2m={v} not supported (expected 1.0, 1.1 or 1.2)")
            }
            RegistrationError::InvalidBinding => {
                f.write_str("b must be binding letters from U, T, S, N, M, H, Q, each at most once")
            }
            RegistrationError::InvalidSms => write!(
                f,
                "sms must be a non-empty MSISDN of at most {MAX_SMS_LEN} bytes"
            ),
            RegistrationError::InvalidQueueMode => f.write_str("Q takes no value"),
            RegistrationError::DuplicateParameter(p) => write!(f, "parameter {p} given twice"),
            RegistrationError::InvalidQuery => f.write_str("query parameters must be UTF-8"),
            RegistrationError::InvalidPayload(e) => {
                write!(
                    f,
                    "registration payload is not a valid object link list: {e}"
                )
            }
            RegistrationError::UnsupportedContentFormat(cf) => write!(
                f,
                "content format {cf} not supported, expected 40 (application/link-format)"
            ),
        }
    }
}

impl std::error::Error for RegistrationError {}

/// Enabler versions this server speaks.
pub const SUPPORTED_VERSIONS: [Version; 3] =
    [Version::new(1, 0), Version::new(1, 1), Version::new(1, 2)];

/// Parsed Uri-Query of a Register or Update. Unknown parameters are ignored
/// (later TS versions add some, and rejecting them would lock out newer clients).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationParams {
    /// `ep`.
    pub endpoint: Option<String>,
    /// `lt`.
    pub lifetime: Option<u32>,
    /// `lwm2m`.
    pub version: Option<Version>,
    /// `b`.
    pub binding: Option<String>,
    /// `sms`.
    pub sms: Option<String>,
    /// `Q` present.
    pub queue: bool,
}

impl RegistrationParams {
    /// Parses and validates the Uri-Query options (each `name=value` or a bare `name`).
    pub fn parse<'a>(
        items: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<RegistrationParams, RegistrationError> {
        let mut p = RegistrationParams::default();
        let mut seen: Vec<&str> = Vec::new();
        for raw in items {
            let item = std::str::from_utf8(raw).map_err(|_| RegistrationError::InvalidQuery)?;
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item, None),
            };
            let known = matches!(name, "ep" | "lt" | "lwm2m" | "b" | "sms" | "Q");
            if !known {
                continue;
            }
            if seen.contains(&name) {
                return Err(RegistrationError::DuplicateParameter(name.to_string()));
            }
            seen.push(name);
            match name {
                "ep" => p.endpoint = Some(parse_endpoint(value)?),
                "lt" => p.lifetime = Some(parse_lifetime(value)?),
                "lwm2m" => p.version = Some(parse_version(value)?),
                "b" => p.binding = Some(parse_binding(value)?),
                "sms" => p.sms = Some(parse_sms(value)?),
                _ => {
                    if value.is_some() {
                        return Err(RegistrationError::InvalidQueueMode);
                    }
                    p.queue = true;
                }
            }
        }
        Ok(p)
    }
}

fn parse_endpoint(v: Option<&str>) -> Result<String, RegistrationError> {
    let v = v.ok_or(RegistrationError::InvalidEndpoint)?;
    if v.is_empty() || v.len() > MAX_ENDPOINT_LEN || v.chars().any(char::is_control) {
        return Err(RegistrationError::InvalidEndpoint);
    }
    Ok(v.to_string())
}

fn parse_lifetime(v: Option<&str>) -> Result<u32, RegistrationError> {
    let v = v.ok_or(RegistrationError::InvalidLifetime)?;
    // Digits only: `u32::from_str` would accept a leading '+'.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RegistrationError::InvalidLifetime);
    }
    match v.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(RegistrationError::InvalidLifetime),
    }
}

fn parse_version(v: Option<&str>) -> Result<Version, RegistrationError> {
    let v: Version = v
        .ok_or(RegistrationError::InvalidVersion)?
        .parse()
        .map_err(|_| RegistrationError::InvalidVersion)?;
    if !SUPPORTED_VERSIONS.contains(&v) {
        return Err(RegistrationError::UnsupportedVersion(v));
    }
    Ok(v)
}

/// Accepts the union of the binding letters of TS 1.0 (`U`, `S`, `Q`), 1.1
/// (`T`, `N`) and 1.2 (`M`, `H`), each at most once. The server does not
/// check per-version combinations: it only needs to know whether the client
/// is in queue mode and the binding is reported to the application as sent.
fn parse_binding(v: Option<&str>) -> Result<String, RegistrationError> {
    let v = v.ok_or(RegistrationError::InvalidBinding)?;
    if v.is_empty() || v.len() > 7 {
        return Err(RegistrationError::InvalidBinding);
    }
    let mut seen = 0u8;
    for b in v.bytes() {
        let bit = match b {
            b'U' => 0,
            b'T' => 1,
            b'S' => 2,
            b'N' => 3,
            b'M' => 4,
            b'H' => 5,
            b'Q' => 6,
            _ => return Err(RegistrationError::InvalidBinding),
        };
        if seen & (1 << bit) != 0 {
            return Err(RegistrationError::InvalidBinding);
        }
        seen |= 1 << bit;
    }
    if seen & !(1 << 6) == 0 {
        // Only "Q": queue mode of no transport.
        return Err(RegistrationError::InvalidBinding);
    }
    Ok(v.to_string())
}

fn parse_sms(v: Option<&str>) -> Result<String, RegistrationError> {
    let v = v.ok_or(RegistrationError::InvalidSms)?;
    if v.is_empty() || v.len() > MAX_SMS_LEN || v.chars().any(char::is_control) {
        return Err(RegistrationError::InvalidSms);
    }
    Ok(v.to_string())
}

/// Parses a Register/Update payload.
pub fn parse_links(payload: &[u8]) -> Result<RegistrationLinks, RegistrationError> {
    RegistrationLinks::decode(payload).map_err(|e| RegistrationError::InvalidPayload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(items: &[&str]) -> Result<RegistrationParams, RegistrationError> {
        RegistrationParams::parse(items.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn parses_all_parameters() {
        let p = parse(&[
            "ep=dev1",
            "lt=300",
            "lwm2m=1.1",
            "b=U",
            "sms=123",
            "Q",
            "x=y",
        ])
        .unwrap();
        assert_eq!(p.endpoint.as_deref(), Some("dev1"));
        assert_eq!(p.lifetime, Some(300));
        assert_eq!(p.version, Some(Version::new(1, 1)));
        assert_eq!(p.binding.as_deref(), Some("U"));
        assert_eq!(p.sms.as_deref(), Some("123"));
        assert!(p.queue);
    }

    #[test]
    fn rejects_bad_values() {
        use RegistrationError as E;
        let cases: &[(&[&str], RegistrationError)] = &[
            (&["ep="], E::InvalidEndpoint),
            (&["ep"], E::InvalidEndpoint),
            (&["ep=a\u{1}b"], E::InvalidEndpoint),
            (&["lt=0"], E::InvalidLifetime),
            (&["lt=-1"], E::InvalidLifetime),
            (&["lt=+5"], E::InvalidLifetime),
            (&["lt=4294967296"], E::InvalidLifetime),
            (&["lwm2m=x"], E::InvalidVersion),
            (&["lwm2m=2.0"], E::UnsupportedVersion(Version::new(2, 0))),
            (&["b=UU"], E::InvalidBinding),
            (&["b=Q"], E::InvalidBinding),
            (&["b=X"], E::InvalidBinding),
            (&["b="], E::InvalidBinding),
            (&["Q=1"], E::InvalidQueueMode),
            (&["sms="], E::InvalidSms),
            (&["ep=a", "ep=b"], E::DuplicateParameter("ep".into())),
        ];
        for (items, want) in cases {
            assert_eq!(parse(items).unwrap_err(), *want, "{items:?}");
        }
        assert_eq!(
            RegistrationParams::parse([&b"ep=\xff"[..]]).unwrap_err(),
            E::InvalidQuery
        );
    }

    #[test]
    fn codes() {
        assert_eq!(
            RegistrationError::UnsupportedVersion(Version::new(9, 9)).code(),
            Code::PRECONDITION_FAILED
        );
        assert_eq!(RegistrationError::InvalidLifetime.code(), Code::BAD_REQUEST);
        assert_eq!(
            RegistrationError::UnsupportedContentFormat(0).code(),
            Code::UNSUPPORTED_CONTENT_FORMAT
        );
    }
}
