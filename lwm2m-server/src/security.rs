//! Security credentials of clients, for the DTLS transport: which
//! credentials a client must present to be allowed to use an endpoint name
//! (as Leshan's `SecurityStore` / `EditableSecurityStore`).
//!
//! The DTLS layer looks up a handshake's PSK identity with
//! [`SecurityStore::get_by_psk_identity`] to find the key, and after the
//! handshake the server checks that the endpoint name in Register matches
//! [`SecurityInfo::endpoint`] of the credentials the peer authenticated with
//! (or, for RPK and X.509, that the peer's key or certificate matches
//! [`SecurityStore::get_by_endpoint`] of the registering endpoint).
//!
//! Keys are secrets: [`Credentials`]' `Debug` prints no key bytes, and
//! nothing in this module logs them. Public keys (RPK) are not secret, but
//! are redacted too so a log never needs to be reviewed for which is which.

use std::collections::BTreeMap;
use std::fmt;

/// What a client authenticates with in the DTLS handshake.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Pre-shared key (DTLS PSK cipher suites, Security object resources
    /// /0/x/3 identity and /0/x/5 key): the handshake's PSK identity selects
    /// this entry, and the client proves it knows `key`. An identity belongs
    /// to one endpoint only ([`SecurityError::PskIdentityInUse`]).
    Psk {
        /// PSK identity (UTF-8, as the client sends it in the handshake).
        identity: String,
        /// The shared secret.
        key: Vec<u8>,
    },
    /// Raw public key (RFC 7250): the client's handshake must present exactly
    /// this key.
    Rpk {
        /// The client's public key as a DER `SubjectPublicKeyInfo`.
        public_key: Vec<u8>,
    },
    /// X.509 certificate: the client's chain must verify against the
    /// server's trust store, and the certificate's subject Common Name must
    /// equal the endpoint name (Leshan's default rule). Nothing to store
    /// but the fact that the endpoint must use a certificate.
    X509,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The identity is not secret (it travels in clear in the
            // handshake); the key is.
            Credentials::Psk { identity, .. } => f
                .debug_struct("Psk")
                .field("identity", identity)
                .field("key", &"<redacted>")
                .finish(),
            Credentials::Rpk { .. } => f
                .debug_struct("Rpk")
                .field("public_key", &"<redacted>")
                .finish(),
            Credentials::X509 => f.write_str("X509"),
        }
    }
}

/// The credentials an endpoint must use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityInfo {
    /// Endpoint name (Register's `ep`).
    pub endpoint: String,
    /// What the endpoint authenticates with.
    pub credentials: Credentials,
}

impl SecurityInfo {
    /// PSK credentials for `endpoint`.
    pub fn psk(endpoint: &str, identity: &str, key: &[u8]) -> SecurityInfo {
        SecurityInfo {
            endpoint: endpoint.to_string(),
            credentials: Credentials::Psk {
                identity: identity.to_string(),
                key: key.to_vec(),
            },
        }
    }

    /// The PSK identity, for PSK credentials.
    pub fn psk_identity(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Psk { identity, .. } => Some(identity),
            _ => None,
        }
    }

    /// Refuses what could never authenticate: an empty endpoint name, PSK
    /// identity, key or public key.
    pub fn validate(&self) -> Result<(), SecurityError> {
        if self.endpoint.is_empty() {
            return Err(SecurityError::Invalid("empty endpoint name".into()));
        }
        match &self.credentials {
            Credentials::Psk { identity, .. } if identity.is_empty() => {
                Err(SecurityError::Invalid("empty PSK identity".into()))
            }
            Credentials::Psk { key, .. } if key.is_empty() => {
                Err(SecurityError::Invalid("empty PSK key".into()))
            }
            Credentials::Rpk { public_key } if public_key.is_empty() => {
                Err(SecurityError::Invalid("empty raw public key".into()))
            }
            _ => Ok(()),
        }
    }
}

/// Why a security store refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityError {
    /// The PSK identity already belongs to another endpoint (identities
    /// select the key in the handshake, so they must be unique).
    PskIdentityInUse {
        /// The identity.
        identity: String,
        /// The endpoint it belongs to.
        endpoint: String,
    },
    /// The credentials are unusable (see [`SecurityInfo::validate`]).
    Invalid(String),
    /// The store failed (database error, corrupt row).
    Store(String),
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecurityError::PskIdentityInUse { identity, endpoint } => write!(
                f,
                "PSK identity {identity:?} is already used by endpoint {endpoint:?}"
            ),
            SecurityError::Invalid(m) => write!(f, "invalid security info: {m}"),
            SecurityError::Store(m) => write!(f, "security store: {m}"),
        }
    }
}

impl std::error::Error for SecurityError {}

/// Where security credentials live.
pub trait SecurityStore: Send + fmt::Debug {
    /// The credentials of `endpoint`.
    fn get_by_endpoint(&self, endpoint: &str) -> Result<Option<SecurityInfo>, SecurityError>;
    /// The PSK credentials whose identity is `identity`.
    fn get_by_psk_identity(&self, identity: &str) -> Result<Option<SecurityInfo>, SecurityError>;
    /// Every entry, sorted by endpoint.
    fn all(&self) -> Result<Vec<SecurityInfo>, SecurityError>;
    /// Adds or replaces the credentials of `info.endpoint`, returning the
    /// replaced ones. Refuses a PSK identity another endpoint uses
    /// ([`SecurityError::PskIdentityInUse`]) and invalid credentials.
    fn put(&mut self, info: SecurityInfo) -> Result<Option<SecurityInfo>, SecurityError>;
    /// Removes the credentials of `endpoint`, returning them.
    fn remove(&mut self, endpoint: &str) -> Result<Option<SecurityInfo>, SecurityError>;
}

/// A security store shared by the admin API (which edits it), the DTLS
/// layer (PSK keys) and the engine's [`SecurityChecker`].
pub type SharedSecurityStore = std::sync::Arc<std::sync::Mutex<Box<dyn SecurityStore>>>;

/// Who a datagram's sender proved to be in its DTLS handshake. A datagram
/// that came without DTLS has no identity (`None` where one is expected).
///
/// Raw public keys (RFC 7250) need OpenSSL 3.2 or newer: the DTLS layer
/// offers them with the `rpk` feature (default), see `lwm2m-dtls`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerIdentity {
    /// A PSK handshake with this identity (its key was the store's).
    Psk(String),
    /// A certificate handshake: the client's certificate, verified against
    /// the server's trust store.
    X509 {
        /// The subject's Common Name (empty if the certificate has none).
        common_name: String,
        /// The certificate, DER.
        der: Vec<u8>,
    },
    /// A raw public key handshake (RFC 7250): the key the client proved
    /// it holds, as a DER `SubjectPublicKeyInfo` (compared with
    /// [`Credentials::Rpk`]).
    Rpk {
        /// The client's public key.
        public_key: Vec<u8>,
    },
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Psk(id) => f.debug_tuple("Psk").field(id).finish(),
            // The certificate's bytes would drown a log line.
            PeerIdentity::X509 { common_name, der } => f
                .debug_struct("X509")
                .field("common_name", common_name)
                .field("der_len", &der.len())
                .finish(),
            PeerIdentity::Rpk { public_key } => f
                .debug_struct("Rpk")
                .field("public_key_len", &public_key.len())
                .finish(),
        }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Psk(id) => write!(f, "PSK identity {id:?}"),
            PeerIdentity::X509 { common_name, .. } => {
                write!(f, "certificate with CN {common_name:?}")
            }
            PeerIdentity::Rpk { public_key } => {
                write!(f, "raw public key of {} bytes", public_key.len())
            }
        }
    }
}

/// Why [`Authorizer::authorize`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationError {
    /// The sender may not act for this endpoint (answered 4.03 Forbidden).
    Forbidden(String),
    /// The credentials could not be looked up (answered 5.03).
    Unavailable(String),
}

impl fmt::Display for AuthorizationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthorizationError::Forbidden(m) => write!(f, "forbidden: {m}"),
            AuthorizationError::Unavailable(m) => {
                write!(f, "credentials unavailable, retry later: {m}")
            }
        }
    }
}

impl std::error::Error for AuthorizationError {}

/// Decides whether a sender (its DTLS identity, `None` without DTLS) may
/// register, update, de-register or send for an endpoint name. The engine
/// asks it on every Registration-interface request and Send; without one
/// the engine allows every sender (an unsecured server).
pub trait Authorizer: Send + fmt::Debug {
    /// `Ok` if `identity` may act as `endpoint`.
    fn authorize(
        &self,
        endpoint: &str,
        identity: Option<&PeerIdentity>,
    ) -> Result<(), AuthorizationError>;
}

/// Leshan's `SecurityChecker` rule over a [`SecurityStore`]:
/// - the store has no credentials for the endpoint: only a sender without
///   DTLS is allowed (a DTLS identity must belong to the endpoint it names);
/// - PSK credentials: the sender's PSK identity must be exactly the stored one;
/// - X.509: the sender's certificate (already verified against the trust
///   store by the handshake) must have the endpoint name as Common Name;
/// - RPK credentials: the sender's raw public key must be exactly the
///   stored one;
/// - anything else (no DTLS, the other kind of credentials) is refused.
#[derive(Debug, Clone)]
pub struct SecurityChecker {
    store: SharedSecurityStore,
}

impl SecurityChecker {
    /// A checker reading `store` at every decision (edits through the admin
    /// API apply to the next request).
    pub fn new(store: SharedSecurityStore) -> SecurityChecker {
        SecurityChecker { store }
    }
}

impl Authorizer for SecurityChecker {
    fn authorize(
        &self,
        endpoint: &str,
        identity: Option<&PeerIdentity>,
    ) -> Result<(), AuthorizationError> {
        let stored = self
            .store
            .lock()
            .map_err(|_| AuthorizationError::Unavailable("security store lock poisoned".into()))?
            .get_by_endpoint(endpoint)
            .map_err(|e| AuthorizationError::Unavailable(e.to_string()))?;
        check_credentials(endpoint, identity, stored.as_ref().map(|s| &s.credentials))
    }
}

/// The rule of [`SecurityChecker`] for one endpoint's stored credentials.
pub fn check_credentials(
    endpoint: &str,
    identity: Option<&PeerIdentity>,
    stored: Option<&Credentials>,
) -> Result<(), AuthorizationError> {
    let forbid = |m: String| Err(AuthorizationError::Forbidden(m));
    match (stored, identity) {
        (None, None) => Ok(()),
        (None, Some(_)) => forbid(format!(
            "endpoint {endpoint:?} has no security credentials on this server; \
             use the unsecured CoAP port or ask for credentials"
        )),
        (Some(_), None) => forbid(format!(
            "endpoint {endpoint:?} has security credentials: connect over DTLS (coaps) with them"
        )),
        (Some(Credentials::Psk { identity: want, .. }), Some(PeerIdentity::Psk(got))) => {
            if want == got {
                Ok(())
            } else {
                forbid(format!(
                    "PSK identity {got:?} does not belong to endpoint {endpoint:?}"
                ))
            }
        }
        (Some(Credentials::X509), Some(PeerIdentity::X509 { common_name, .. })) => {
            if common_name == endpoint {
                Ok(())
            } else {
                forbid(format!(
                    "certificate Common Name {common_name:?} is not the endpoint name {endpoint:?}"
                ))
            }
        }
        (
            Some(Credentials::Rpk { public_key: want }),
            Some(PeerIdentity::Rpk { public_key: got }),
        ) => {
            if want == got {
                Ok(())
            } else {
                forbid(format!(
                    "the raw public key presented is not endpoint {endpoint:?}'s"
                ))
            }
        }
        (Some(c), Some(_)) => forbid(format!(
            "endpoint {endpoint:?} must authenticate with {}",
            match c {
                Credentials::Psk { .. } => "its PSK",
                Credentials::X509 => "an X.509 certificate",
                Credentials::Rpk { .. } => "a raw public key",
            }
        )),
    }
}

/// Credentials in memory.
#[derive(Debug, Clone, Default)]
pub struct MemorySecurityStore {
    by_endpoint: BTreeMap<String, SecurityInfo>,
    /// PSK identity → endpoint.
    by_identity: BTreeMap<String, String>,
}

impl MemorySecurityStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SecurityStore for MemorySecurityStore {
    fn get_by_endpoint(&self, endpoint: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        Ok(self.by_endpoint.get(endpoint).cloned())
    }

    fn get_by_psk_identity(&self, identity: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        Ok(self
            .by_identity
            .get(identity)
            .and_then(|ep| self.by_endpoint.get(ep))
            .cloned())
    }

    fn all(&self) -> Result<Vec<SecurityInfo>, SecurityError> {
        Ok(self.by_endpoint.values().cloned().collect())
    }

    fn put(&mut self, info: SecurityInfo) -> Result<Option<SecurityInfo>, SecurityError> {
        info.validate()?;
        if let Some(identity) = info.psk_identity() {
            if let Some(owner) = self.by_identity.get(identity) {
                if *owner != info.endpoint {
                    return Err(SecurityError::PskIdentityInUse {
                        identity: identity.to_string(),
                        endpoint: owner.clone(),
                    });
                }
            }
        }
        let old = self.remove(&info.endpoint)?;
        if let Some(identity) = info.psk_identity() {
            self.by_identity
                .insert(identity.to_string(), info.endpoint.clone());
        }
        self.by_endpoint.insert(info.endpoint.clone(), info);
        Ok(old)
    }

    fn remove(&mut self, endpoint: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        let old = self.by_endpoint.remove(endpoint);
        if let Some(identity) = old.as_ref().and_then(SecurityInfo::psk_identity) {
            self.by_identity.remove(identity);
        }
        Ok(old)
    }
}

/// Credentials in SQLite (`security.sqlite3` in the data directory, WAL).
/// The file holds PSK keys in clear: keep the data directory readable by
/// the server's user only.
#[cfg(feature = "sqlite")]
pub struct SqliteSecurityStore {
    conn: rusqlite::Connection,
}

#[cfg(feature = "sqlite")]
impl fmt::Debug for SqliteSecurityStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteSecurityStore")
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "sqlite")]
fn db(e: rusqlite::Error) -> SecurityError {
    SecurityError::Store(e.to_string())
}

#[cfg(feature = "sqlite")]
const KIND_PSK: &str = "psk";
#[cfg(feature = "sqlite")]
const KIND_RPK: &str = "rpk";
#[cfg(feature = "sqlite")]
const KIND_X509: &str = "x509";

#[cfg(feature = "sqlite")]
type Row = (String, String, Option<String>, Option<Vec<u8>>);

#[cfg(feature = "sqlite")]
fn from_row((endpoint, kind, identity, key): Row) -> Result<SecurityInfo, SecurityError> {
    let corrupt =
        || SecurityError::Store(format!("stored security info of {endpoint:?} is corrupt"));
    let credentials = match kind.as_str() {
        KIND_PSK => Credentials::Psk {
            identity: identity.ok_or_else(corrupt)?,
            key: key.ok_or_else(corrupt)?,
        },
        KIND_RPK => Credentials::Rpk {
            public_key: key.ok_or_else(corrupt)?,
        },
        KIND_X509 => Credentials::X509,
        _ => return Err(corrupt()),
    };
    Ok(SecurityInfo {
        endpoint,
        credentials,
    })
}

#[cfg(feature = "sqlite")]
impl SqliteSecurityStore {
    /// File name of the database inside the data directory.
    pub const FILE_NAME: &'static str = "security.sqlite3";

    /// Opens (creating if needed) the database in `data_dir`, creating the directory too.
    pub fn open(data_dir: &std::path::Path) -> Result<SqliteSecurityStore, SecurityError> {
        std::fs::create_dir_all(data_dir).map_err(|e| SecurityError::Store(e.to_string()))?;
        let conn = rusqlite::Connection::open(data_dir.join(Self::FILE_NAME)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        // `key` is the PSK key or the raw public key; the UNIQUE constraint
        // backs the identity check in `put` (NULLs do not collide).
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS security_info (
                endpoint TEXT PRIMARY KEY NOT NULL,
                kind TEXT NOT NULL,
                psk_identity TEXT UNIQUE,
                key BLOB
            );",
        )
        .map_err(db)?;
        Ok(SqliteSecurityStore { conn })
    }

    fn query(&self, sql: &str, arg: &str) -> Result<Vec<SecurityInfo>, SecurityError> {
        let mut stmt = self.conn.prepare(sql).map_err(db)?;
        let rows = stmt
            .query_map([arg], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(from_row(row.map_err(db)?)?);
        }
        Ok(out)
    }
}

#[cfg(feature = "sqlite")]
const SELECT: &str = "SELECT endpoint, kind, psk_identity, key FROM security_info";

#[cfg(feature = "sqlite")]
impl SecurityStore for SqliteSecurityStore {
    fn get_by_endpoint(&self, endpoint: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        Ok(self
            .query(&format!("{SELECT} WHERE endpoint = ?1"), endpoint)?
            .into_iter()
            .next())
    }

    fn get_by_psk_identity(&self, identity: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        Ok(self
            .query(&format!("{SELECT} WHERE psk_identity = ?1"), identity)?
            .into_iter()
            .next())
    }

    fn all(&self) -> Result<Vec<SecurityInfo>, SecurityError> {
        // `?1 = ?1` only to share `query`'s one-parameter shape.
        self.query(&format!("{SELECT} WHERE ?1 = ?1 ORDER BY endpoint"), "")
    }

    fn put(&mut self, info: SecurityInfo) -> Result<Option<SecurityInfo>, SecurityError> {
        info.validate()?;
        if let Some(identity) = info.psk_identity() {
            if let Some(owner) = self.get_by_psk_identity(identity)? {
                if owner.endpoint != info.endpoint {
                    return Err(SecurityError::PskIdentityInUse {
                        identity: identity.to_string(),
                        endpoint: owner.endpoint,
                    });
                }
            }
        }
        let old = self.get_by_endpoint(&info.endpoint)?;
        let (kind, identity, key): (&str, Option<&str>, Option<&[u8]>) = match &info.credentials {
            Credentials::Psk { identity, key } => (KIND_PSK, Some(identity), Some(key)),
            Credentials::Rpk { public_key } => (KIND_RPK, None, Some(public_key)),
            Credentials::X509 => (KIND_X509, None, None),
        };
        self.conn
            .execute(
                "INSERT INTO security_info (endpoint, kind, psk_identity, key)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(endpoint) DO UPDATE SET kind = excluded.kind,
                   psk_identity = excluded.psk_identity, key = excluded.key",
                rusqlite::params![info.endpoint, kind, identity, key],
            )
            .map_err(db)?;
        Ok(old)
    }

    fn remove(&mut self, endpoint: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        let old = self.get_by_endpoint(endpoint)?;
        self.conn
            .execute("DELETE FROM security_info WHERE endpoint = ?1", [endpoint])
            .map_err(db)?;
        Ok(old)
    }
}

/// Puts credentials unless another endpoint owns their PSK identity.
/// KEYS: credentials hash, identity hash. ARGV: endpoint, JSON, PSK identity
/// (empty: none). Returns `{'in-use', owner}` or `{'ok'[, replaced JSON]}`.
#[cfg(feature = "redis")]
const PUT_SECURITY_SCRIPT: &str = r"
local ep, json, ident = ARGV[1], ARGV[2], ARGV[3]
if ident ~= '' then
  local owner = redis.call('HGET', KEYS[2], ident)
  if owner and owner ~= ep then
    return {'in-use', owner}
  end
end
local old = redis.call('HGET', KEYS[1], ep)
if old then
  local o = cjson.decode(old)
  if o.kind == 'psk' and redis.call('HGET', KEYS[2], o.identity) == ep then
    redis.call('HDEL', KEYS[2], o.identity)
  end
end
redis.call('HSET', KEYS[1], ep, json)
if ident ~= '' then
  redis.call('HSET', KEYS[2], ident, ep)
end
if old then
  return {'ok', old}
end
return {'ok'}
";

/// Removes credentials and frees their PSK identity. KEYS: credentials
/// hash, identity hash. ARGV: endpoint. Returns the removed JSON or nil.
#[cfg(feature = "redis")]
const REMOVE_SECURITY_SCRIPT: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then
  return false
end
local o = cjson.decode(old)
if o.kind == 'psk' and redis.call('HGET', KEYS[2], o.identity) == ARGV[1] then
  redis.call('HDEL', KEYS[2], o.identity)
end
redis.call('HDEL', KEYS[1], ARGV[1])
return old
";

/// Credentials in Redis, shared by every server node given the same URL
/// and prefix (see [`crate::redis_store`] for the connection, timeouts and
/// blocking behaviour).
///
/// | key (default prefix `lwm2m:`) | type | content |
/// | --- | --- | --- |
/// | `lwm2m:security` | hash | endpoint → credentials as JSON (`{"kind":"psk","identity":..,"key":"hex"}`, `{"kind":"rpk","public_key":"hex"}`, `{"kind":"x509"}`) |
/// | `lwm2m:psk` | hash | PSK identity → endpoint |
///
/// A put or remove is one Lua script, so a PSK identity stays unique even
/// when two nodes put the same identity for two endpoints at once. Redis
/// holds the keys in clear: protect it as the secret store it is.
#[cfg(feature = "redis")]
pub struct RedisSecurityStore {
    link: std::sync::Mutex<crate::redis_store::Link>,
    prefix: String,
    put: redis::Script,
    remove: redis::Script,
}

#[cfg(feature = "redis")]
impl fmt::Debug for RedisSecurityStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSecurityStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Credentials as stored in Redis.
#[cfg(feature = "redis")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum StoredCredentials {
    Psk {
        identity: String,
        #[serde(with = "crate::bootstrap::config::hex_bytes")]
        key: Vec<u8>,
    },
    Rpk {
        #[serde(with = "crate::bootstrap::config::hex_bytes")]
        public_key: Vec<u8>,
    },
    X509,
}

#[cfg(feature = "redis")]
fn redis_error(e: redis::RedisError) -> SecurityError {
    SecurityError::Store(e.to_string())
}

#[cfg(feature = "redis")]
fn from_json(endpoint: &str, json: &str) -> Result<SecurityInfo, SecurityError> {
    let stored: StoredCredentials = serde_json::from_str(json).map_err(|e| {
        SecurityError::Store(format!(
            "stored security info of {endpoint:?} is corrupt: {e}"
        ))
    })?;
    let credentials = match stored {
        StoredCredentials::Psk { identity, key } => Credentials::Psk { identity, key },
        StoredCredentials::Rpk { public_key } => Credentials::Rpk { public_key },
        StoredCredentials::X509 => Credentials::X509,
    };
    Ok(SecurityInfo {
        endpoint: endpoint.to_string(),
        credentials,
    })
}

#[cfg(feature = "redis")]
fn to_json(info: &SecurityInfo) -> Result<String, SecurityError> {
    let stored = match &info.credentials {
        Credentials::Psk { identity, key } => StoredCredentials::Psk {
            identity: identity.clone(),
            key: key.clone(),
        },
        Credentials::Rpk { public_key } => StoredCredentials::Rpk {
            public_key: public_key.clone(),
        },
        Credentials::X509 => StoredCredentials::X509,
    };
    serde_json::to_string(&stored).map_err(|e| SecurityError::Store(e.to_string()))
}

#[cfg(feature = "redis")]
impl RedisSecurityStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and checks it answers.
    pub fn open(url: &str) -> Result<RedisSecurityStore, SecurityError> {
        Ok(RedisSecurityStore {
            link: std::sync::Mutex::new(crate::redis_store::Link::open(url).map_err(redis_error)?),
            prefix: crate::RedisStore::DEFAULT_PREFIX.to_string(),
            put: redis::Script::new(PUT_SECURITY_SCRIPT),
            remove: redis::Script::new(REMOVE_SECURITY_SCRIPT),
        })
    }

    /// Uses `prefix` before every key (as [`crate::RedisStore::with_prefix`]).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Connect, read and write timeout of every call.
    pub fn with_timeout(self, timeout: std::time::Duration) -> Self {
        self.lock().set_timeout(timeout);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, crate::redis_store::Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, SecurityError> {
        self.lock().run(f).map_err(redis_error)
    }

    fn keys(&self) -> (String, String) {
        (
            format!("{}security", self.prefix),
            format!("{}psk", self.prefix),
        )
    }
}

#[cfg(feature = "redis")]
impl SecurityStore for RedisSecurityStore {
    fn get_by_endpoint(&self, endpoint: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        let (infos, _) = self.keys();
        let json: Option<String> =
            self.run(|c| redis::cmd("HGET").arg(infos).arg(endpoint).query(c))?;
        json.map(|j| from_json(endpoint, &j)).transpose()
    }

    fn get_by_psk_identity(&self, identity: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        let (_, idents) = self.keys();
        let owner: Option<String> =
            self.run(|c| redis::cmd("HGET").arg(idents).arg(identity).query(c))?;
        let Some(owner) = owner else {
            return Ok(None);
        };
        // A put between the two reads may have moved the identity: answer
        // only credentials that still carry it.
        Ok(self
            .get_by_endpoint(&owner)?
            .filter(|info| info.psk_identity() == Some(identity)))
    }

    fn all(&self) -> Result<Vec<SecurityInfo>, SecurityError> {
        let (infos, _) = self.keys();
        let all: BTreeMap<String, String> =
            self.run(|c| redis::cmd("HGETALL").arg(infos).query(c))?;
        all.iter().map(|(ep, j)| from_json(ep, j)).collect()
    }

    fn put(&mut self, info: SecurityInfo) -> Result<Option<SecurityInfo>, SecurityError> {
        info.validate()?;
        let json = to_json(&info)?;
        let (infos, idents) = self.keys();
        let mut inv = self.put.key(infos);
        inv.key(idents)
            .arg(&info.endpoint)
            .arg(json)
            .arg(info.psk_identity().unwrap_or(""));
        let reply: Vec<String> = self.run(|c| inv.invoke(c))?;
        match reply.as_slice() {
            [status, owner] if status == "in-use" => Err(SecurityError::PskIdentityInUse {
                identity: info.psk_identity().unwrap_or("").to_string(),
                endpoint: owner.clone(),
            }),
            [status] if status == "ok" => Ok(None),
            [status, old] if status == "ok" => from_json(&info.endpoint, old).map(Some),
            // Not the reply itself: it may hold a key.
            _ => Err(SecurityError::Store(format!(
                "unexpected reply of the put script ({} items)",
                reply.len()
            ))),
        }
    }

    fn remove(&mut self, endpoint: &str) -> Result<Option<SecurityInfo>, SecurityError> {
        let (infos, idents) = self.keys();
        let mut inv = self.remove.key(infos);
        inv.key(idents).arg(endpoint);
        let old: Option<String> = self.run(|c| inv.invoke(c))?;
        old.map(|j| from_json(endpoint, &j)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpk(ep: &str, k: &[u8]) -> SecurityInfo {
        SecurityInfo {
            endpoint: ep.into(),
            credentials: Credentials::Rpk {
                public_key: k.to_vec(),
            },
        }
    }

    /// The contract every store keeps.
    fn contract(s: &mut dyn SecurityStore) {
        assert_eq!(s.all().unwrap(), vec![]);
        assert_eq!(s.put(SecurityInfo::psk("b", "id-b", b"kb")).unwrap(), None);
        assert_eq!(s.put(rpk("a", b"pub-a")).unwrap(), None);
        let x = SecurityInfo {
            endpoint: "c".into(),
            credentials: Credentials::X509,
        };
        assert_eq!(s.put(x.clone()).unwrap(), None);
        let eps: Vec<_> = s.all().unwrap().into_iter().map(|i| i.endpoint).collect();
        assert_eq!(eps, ["a", "b", "c"]);
        assert_eq!(s.get_by_endpoint("c").unwrap(), Some(x));
        assert_eq!(
            s.get_by_psk_identity("id-b").unwrap(),
            Some(SecurityInfo::psk("b", "id-b", b"kb"))
        );
        assert_eq!(s.get_by_psk_identity("id-x").unwrap(), None);

        // Another endpoint may not take b's identity.
        assert_eq!(
            s.put(SecurityInfo::psk("a", "id-b", b"other")),
            Err(SecurityError::PskIdentityInUse {
                identity: "id-b".into(),
                endpoint: "b".into()
            })
        );
        assert_eq!(s.get_by_endpoint("a").unwrap(), Some(rpk("a", b"pub-a")));

        // b may replace its own key; then its identity.
        assert_eq!(
            s.put(SecurityInfo::psk("b", "id-b", b"kb2")).unwrap(),
            Some(SecurityInfo::psk("b", "id-b", b"kb"))
        );
        s.put(SecurityInfo::psk("b", "id-b2", b"kb2")).unwrap();
        assert_eq!(s.get_by_psk_identity("id-b").unwrap(), None);
        // The freed identity is free for another endpoint.
        assert_eq!(
            s.put(SecurityInfo::psk("a", "id-b", b"ka")).unwrap(),
            Some(rpk("a", b"pub-a"))
        );
        assert_eq!(
            s.get_by_psk_identity("id-b").unwrap().unwrap().endpoint,
            "a"
        );

        // Invalid credentials are refused, the old ones kept.
        assert!(matches!(
            s.put(SecurityInfo::psk("a", "", b"k")),
            Err(SecurityError::Invalid(_))
        ));
        assert!(matches!(
            s.put(SecurityInfo::psk("a", "i", b"")),
            Err(SecurityError::Invalid(_))
        ));
        assert!(matches!(
            s.put(rpk("", b"k")),
            Err(SecurityError::Invalid(_))
        ));
        assert_eq!(
            s.get_by_endpoint("a").unwrap(),
            Some(SecurityInfo::psk("a", "id-b", b"ka"))
        );

        // Remove frees the identity.
        assert_eq!(
            s.remove("a").unwrap(),
            Some(SecurityInfo::psk("a", "id-b", b"ka"))
        );
        assert_eq!(s.remove("a").unwrap(), None);
        assert_eq!(s.get_by_psk_identity("id-b").unwrap(), None);
        s.put(SecurityInfo::psk("z", "id-b", b"kz")).unwrap();
    }

    #[test]
    fn memory_store_contract() {
        contract(&mut MemorySecurityStore::new());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_store_contract_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let before = {
            let mut s = SqliteSecurityStore::open(dir.path()).unwrap();
            contract(&mut s);
            s.all().unwrap()
        };
        let mut s = SqliteSecurityStore::open(dir.path()).unwrap();
        assert_eq!(s.all().unwrap(), before);
        assert_eq!(
            s.get_by_psk_identity("id-b").unwrap(),
            Some(SecurityInfo::psk("z", "id-b", b"kz"))
        );
        // Uniqueness still holds after reopening.
        assert!(matches!(
            s.put(SecurityInfo::psk("y", "id-b", b"k")),
            Err(SecurityError::PskIdentityInUse { .. })
        ));
    }

    #[test]
    fn debug_redacts_keys() {
        let psk = SecurityInfo::psk("ep", "ident", b"SECRETKEY");
        let text = format!("{psk:?} {:#?}", psk);
        assert!(text.contains("ident"), "{text}");
        assert!(!text.contains("SECRETKEY"), "{text}");
        // Nor as the byte list Vec<u8>'s Debug would print.
        assert!(!text.contains("83, 69"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        let text = format!("{:?}", rpk("ep", &[0xAB, 0xCD]));
        assert!(!text.contains("171"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}
