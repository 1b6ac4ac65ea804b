//! What the bootstrap server writes to a client: per-endpoint
//! [`BootstrapConfig`]s, the [`BootstrapConfigStore`] that holds them and the
//! JSON file format (`bootstrap.json`) they are loaded from.

use std::collections::BTreeMap;
use std::fmt;

use lwm2m_core::model::{Instance, Node, Path, Resource, TimestampedValue, Value};
use lwm2m_objects::{access_control, security, server};
use serde::{Deserialize, Serialize};

/// Security mode of a Security (object 0) instance, resource 2 (TS Core
/// Appendix E.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// 0: Pre-Shared Key.
    Psk,
    /// 1: Raw Public Key.
    Rpk,
    /// 2: X.509 certificate.
    Certificate,
    /// 3: no security.
    NoSec,
    /// 4: X.509 certificate with EST (1.1).
    CertificateWithEst,
}

impl SecurityMode {
    /// The value of resource /0/x/2.
    pub fn code(self) -> i64 {
        match self {
            SecurityMode::Psk => 0,
            SecurityMode::Rpk => 1,
            SecurityMode::Certificate => 2,
            SecurityMode::NoSec => 3,
            SecurityMode::CertificateWithEst => 4,
        }
    }
}

/// One Security (object 0) instance: how to reach and authenticate to one
/// LwM2M server or the bootstrap server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityInstance {
    /// Object instance id.
    pub id: u16,
    /// Resource 0, LwM2M Server URI (`coap://host:5683`).
    pub uri: String,
    /// Resource 1: true for a bootstrap-server account.
    #[serde(default)]
    pub bootstrap_server: bool,
    /// Resource 2 (default `no_sec`).
    #[serde(default = "no_sec")]
    pub security_mode: SecurityMode,
    /// Resource 3, public key or identity (PSK identity, RPK, certificate),
    /// hex in JSON. Written as given; for the bootstrap-server account it
    /// is also what the bootstrap server's DTLS socket expects of the
    /// client (PSK identity, RPK public key: see
    /// [`super::credentials`]).
    #[serde(default, with = "hex_bytes", skip_serializing_if = "Vec::is_empty")]
    pub public_key_or_identity: Vec<u8>,
    /// Resource 4, server public key or certificate, hex in JSON.
    #[serde(default, with = "hex_bytes", skip_serializing_if = "Vec::is_empty")]
    pub server_public_key: Vec<u8>,
    /// Resource 5, secret key (PSK, private key), hex in JSON.
    #[serde(default, with = "hex_bytes", skip_serializing_if = "Vec::is_empty")]
    pub secret_key: Vec<u8>,
    /// Resource 10, Short Server ID (absent for the bootstrap account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_server_id: Option<u16>,
    /// Resource 11, client hold-off time in seconds (bootstrap account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_hold_off_time: Option<u32>,
    /// Resource 12, bootstrap-server account timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_server_account_timeout: Option<u32>,
}

fn no_sec() -> SecurityMode {
    SecurityMode::NoSec
}

/// One Server (object 1) instance: registration parameters for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInstance {
    /// Object instance id.
    pub id: u16,
    /// Resource 0, Short Server ID (matches a Security instance's resource 10).
    pub short_server_id: u16,
    /// Resource 1, registration lifetime in seconds (default 86400).
    #[serde(default = "default_lifetime")]
    pub lifetime: u32,
    /// Resource 2, default minimum period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_min_period: Option<u32>,
    /// Resource 3, default maximum period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_period: Option<u32>,
    /// Resource 6, store notifications while disabled or offline (default true).
    #[serde(default = "yes")]
    pub notification_storing: bool,
    /// Resource 7, binding (default `U`).
    #[serde(default = "default_binding")]
    pub binding: String,
}

fn default_lifetime() -> u32 {
    86_400
}

fn yes() -> bool {
    true
}

fn default_binding() -> String {
    "U".into()
}

/// One Access Control (object 2) instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclInstance {
    /// Object instance id.
    pub id: u16,
    /// Resource 0, the object this instance governs.
    pub object_id: u16,
    /// Resource 1, the object instance it governs (65535: Create on the object).
    pub object_instance_id: u16,
    /// Resource 2, access rights by Short Server ID (resource instance id;
    /// 0 is the default for servers without an entry). Bits: 1 Read/Observe,
    /// 2 Write, 4 Execute, 8 Delete, 16 Create.
    #[serde(default)]
    pub acl: BTreeMap<u16, u16>,
    /// Resource 3, Short Server ID of the owner (65535: the bootstrap server).
    pub owner: u16,
}

/// What the bootstrap server does to one client, in order: Bootstrap-Discover
/// (if `discover`), Bootstrap-Delete of each path in `delete`,
/// Bootstrap-Write of each Security, Server and ACL instance, then
/// Bootstrap-Finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Send a Bootstrap-Discover on `/` first (LwM2M 1.1): learns the
    /// client's version (which picks the write format) and instances, and
    /// reports them in the Finished event. A 1.0 client's error answer is
    /// not a failure.
    #[serde(default)]
    pub discover: bool,
    /// Paths to Bootstrap-Read after Discover (LwM2M 1.1; only under the
    /// Server `/1` and Access Control `/2` objects, TS Core §5.2.7.2), e.g.
    /// `["/1"]` to learn the client's server accounts before changing them.
    /// The answers come in the Finished event.
    #[serde(default, with = "path_list", skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<Path>,
    /// Paths to Bootstrap-Delete first, as strings (`"/0"`, `"/1"`). Default
    /// `["/0", "/1"]`: the client keeps its own bootstrap-server account
    /// (TS Core §5.2.7.5 excludes it from deletion).
    #[serde(default = "default_delete", with = "path_list")]
    pub delete: Vec<Path>,
    /// Security (object 0) instances to write.
    #[serde(default)]
    pub security: Vec<SecurityInstance>,
    /// Server (object 1) instances to write.
    #[serde(default)]
    pub servers: Vec<ServerInstance>,
    /// Access Control (object 2) instances to write.
    #[serde(default)]
    pub acls: Vec<AclInstance>,
    /// Content format for the writes, overriding the choice from the
    /// client's `pct` and version (e.g. 11542 for TLV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_format: Option<u16>,
}

fn default_delete() -> Vec<Path> {
    vec![Path::Object(security::ID), Path::Object(server::ID)]
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            discover: false,
            read: Vec::new(),
            delete: default_delete(),
            security: Vec::new(),
            servers: Vec::new(),
            acls: Vec::new(),
            content_format: None,
        }
    }
}

fn int(id: u16, v: impl Into<i64>) -> Resource {
    Resource::single(id, Value::Integer(v.into()))
}

impl SecurityInstance {
    /// The instance as written to /0/id.
    pub fn to_instance(&self) -> Instance {
        let mut r = vec![
            Resource::single(security::LWM2M_SERVER_URI, Value::String(self.uri.clone())),
            Resource::single(
                security::BOOTSTRAP_SERVER,
                Value::Boolean(self.bootstrap_server),
            ),
            int(security::SECURITY_MODE, self.security_mode.code()),
            Resource::single(
                security::PUBLIC_KEY_OR_IDENTITY,
                Value::Opaque(self.public_key_or_identity.clone()),
            ),
            Resource::single(
                security::SERVER_PUBLIC_KEY,
                Value::Opaque(self.server_public_key.clone()),
            ),
            Resource::single(security::SECRET_KEY, Value::Opaque(self.secret_key.clone())),
        ];
        if let Some(ssid) = self.short_server_id {
            r.push(int(security::SHORT_SERVER_ID, ssid));
        }
        if let Some(t) = self.client_hold_off_time {
            r.push(int(security::CLIENT_HOLD_OFF_TIME, t));
        }
        if let Some(t) = self.bootstrap_server_account_timeout {
            r.push(int(security::BOOTSTRAP_SERVER_ACCOUNT_TIMEOUT, t));
        }
        Instance::new(self.id, r)
    }
}

impl ServerInstance {
    /// The instance as written to /1/id.
    pub fn to_instance(&self) -> Instance {
        let mut r = vec![
            int(server::SHORT_SERVER_ID, self.short_server_id),
            int(server::LIFETIME, self.lifetime),
            Resource::single(
                server::NOTIFICATION_STORING_WHEN_DISABLED_OR_OFFLINE,
                Value::Boolean(self.notification_storing),
            ),
            Resource::single(server::BINDING, Value::String(self.binding.clone())),
        ];
        if let Some(p) = self.default_min_period {
            r.push(int(server::DEFAULT_MINIMUM_PERIOD, p));
        }
        if let Some(p) = self.default_max_period {
            r.push(int(server::DEFAULT_MAXIMUM_PERIOD, p));
        }
        Instance::new(self.id, r)
    }
}

impl AclInstance {
    /// The instance as written to /2/id.
    pub fn to_instance(&self) -> Instance {
        let mut r = vec![
            int(access_control::OBJECT_ID, self.object_id),
            int(access_control::OBJECT_INSTANCE_ID, self.object_instance_id),
            int(access_control::ACCESS_CONTROL_OWNER, self.owner),
        ];
        if !self.acl.is_empty() {
            r.push(Resource::multiple(
                access_control::ACL,
                self.acl
                    .iter()
                    .map(|(&ssid, &bits)| (ssid, Value::Integer(i64::from(bits)))),
            ));
        }
        Instance::new(self.id, r)
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// Two instances of one object share an id.
    DuplicateInstance(Path),
    /// A non-bootstrap Security instance has no Short Server ID, or a Server
    /// instance's Short Server ID matches no Security instance.
    ShortServerId(String),
    /// A Bootstrap-Read path outside the Server and Access Control objects.
    ReadPath(Path),
    /// The JSON did not parse.
    Json(String),
    /// The bootstrap server (driver) has stopped.
    Stopped,
    /// The configuration store failed (database error, corrupt row).
    Store(String),
    /// The bootstrap-server account's credentials could never authenticate
    /// a client (see [`super::credentials::bootstrap_credentials`]).
    BootstrapCredentials(String),
    /// The bootstrap-server account's PSK identity is another endpoint's
    /// (the DTLS handshake finds the key by identity, so identities are
    /// unique across configurations).
    PskIdentityInUse {
        /// The identity.
        identity: String,
        /// The endpoint whose configuration has it.
        endpoint: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::DuplicateInstance(p) => write!(f, "instance {p} is configured twice"),
            ConfigError::ShortServerId(m) => f.write_str(m),
            ConfigError::ReadPath(p) => write!(
                f,
                "Bootstrap-Read of {p}: only /1 (Server) and /2 (Access Control) may be read"
            ),
            ConfigError::Json(m) => write!(f, "bootstrap configuration JSON: {m}"),
            ConfigError::Stopped => f.write_str("bootstrap server stopped"),
            ConfigError::Store(m) => write!(f, "bootstrap configuration store: {m}"),
            ConfigError::BootstrapCredentials(m) => f.write_str(m),
            ConfigError::PskIdentityInUse { identity, endpoint } => write!(
                f,
                "bootstrap PSK identity {identity:?} is already used by endpoint {endpoint:?} \
                 (identities select the key in the DTLS handshake: give each endpoint its own)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl BootstrapConfig {
    /// Checks what a client would reject or what could never work: duplicate
    /// instance ids, a server account without a Short Server ID, a Server
    /// instance with no Security instance of the same Short Server ID,
    /// bootstrap-server credentials that could never authenticate.
    pub fn validate(&self) -> Result<(), ConfigError> {
        super::credentials::bootstrap_credentials(self)?;
        let mut seen = std::collections::BTreeSet::new();
        for (path, _) in self.writes() {
            if !seen.insert(path) {
                return Err(ConfigError::DuplicateInstance(path));
            }
        }
        for p in &self.read {
            if !matches!(p.object_id(), Some(server::ID | access_control::ID)) {
                return Err(ConfigError::ReadPath(*p));
            }
        }
        for s in &self.security {
            if !s.bootstrap_server && s.short_server_id.is_none() {
                return Err(ConfigError::ShortServerId(format!(
                    "security instance /0/{} is a server account without short_server_id",
                    s.id
                )));
            }
        }
        for s in &self.servers {
            let matched = self
                .security
                .iter()
                .any(|c| !c.bootstrap_server && c.short_server_id == Some(s.short_server_id));
            if !matched {
                return Err(ConfigError::ShortServerId(format!(
                    "server instance /1/{} has short_server_id {} but no security instance has it",
                    s.id, s.short_server_id
                )));
            }
        }
        Ok(())
    }

    /// The instances to Bootstrap-Write, in order: Security, Server, ACL.
    pub fn writes(&self) -> Vec<(Path, Instance)> {
        let sec = self
            .security
            .iter()
            .map(|s| (Path::Instance(security::ID, s.id), s.to_instance()));
        let srv = self
            .servers
            .iter()
            .map(|s| (Path::Instance(server::ID, s.id), s.to_instance()));
        let acl = self
            .acls
            .iter()
            .map(|a| (Path::Instance(access_control::ID, a.id), a.to_instance()));
        sec.chain(srv).chain(acl).collect()
    }

    /// Every resource (and resource instance) of the configuration as path /
    /// value records, sorted by path: the body of a Bootstrap-Pack.
    pub fn to_values(&self) -> Vec<TimestampedValue> {
        let mut out = Vec::new();
        for (path, inst) in self.writes() {
            let (Some(o), Some(i)) = (path.object_id(), path.instance_id()) else {
                continue;
            };
            for res in inst.resources.values() {
                match &res.value {
                    lwm2m_core::model::ResourceValue::Single(v) => out.push(TimestampedValue {
                        path: Path::Resource(o, i, res.id),
                        value: v.clone(),
                        time: None,
                    }),
                    lwm2m_core::model::ResourceValue::Multiple(m) => {
                        for (ri, v) in m {
                            out.push(TimestampedValue {
                                path: Path::ResourceInstance(o, i, res.id, *ri),
                                value: v.clone(),
                                time: None,
                            });
                        }
                    }
                }
            }
        }
        out.sort_by_key(|v| v.path);
        out
    }

    /// The instance written at `path` as a node, for encoding.
    pub fn node_at(&self, path: &Path) -> Option<Node> {
        self.writes()
            .into_iter()
            .find(|(p, _)| p == path)
            .map(|(_, i)| Node::Instance(i))
    }
}

/// The `bootstrap.json` file: configurations by endpoint name.
///
/// ```json
/// { "endpoints": { "dev-1": { "security": [ ... ], "servers": [ ... ] } } }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapFile {
    /// Configuration per endpoint name.
    pub endpoints: BTreeMap<String, BootstrapConfig>,
}

impl BootstrapFile {
    /// Parses and validates a `bootstrap.json`.
    pub fn from_json(text: &str) -> Result<BootstrapFile, ConfigError> {
        let file: BootstrapFile =
            serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
        for (ep, c) in &file.endpoints {
            c.validate()
                .map_err(|e| ConfigError::Json(format!("endpoint {ep:?}: {e}")))?;
        }
        Ok(file)
    }

    /// The file as pretty-printed JSON (what [`BootstrapFile::from_json`] reads).
    pub fn to_json(&self) -> Result<String, ConfigError> {
        serde_json::to_string_pretty(self).map_err(|e| ConfigError::Json(e.to_string()))
    }
}

/// Where the bootstrap server finds configurations. Implementations
/// validate on [`BootstrapConfigStore::put`] ([`BootstrapConfig::validate`]).
pub trait BootstrapConfigStore: Send {
    /// The configuration of `endpoint`, if there is one.
    fn get(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, ConfigError>;
    /// Adds or replaces the configuration of `endpoint`.
    fn put(&mut self, endpoint: &str, config: BootstrapConfig) -> Result<(), ConfigError>;
    /// Removes the configuration of `endpoint`; true if there was one.
    fn remove(&mut self, endpoint: &str) -> Result<bool, ConfigError>;
    /// Every configured endpoint name, sorted.
    fn endpoints(&self) -> Result<Vec<String>, ConfigError>;
}

/// Configurations in memory (loaded from `bootstrap.json` or set by the API).
#[derive(Debug, Clone, Default)]
pub struct MemoryConfigStore {
    configs: BTreeMap<String, BootstrapConfig>,
}

impl MemoryConfigStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl From<BootstrapFile> for MemoryConfigStore {
    fn from(f: BootstrapFile) -> Self {
        MemoryConfigStore {
            configs: f.endpoints,
        }
    }
}

impl BootstrapConfigStore for MemoryConfigStore {
    fn get(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, ConfigError> {
        Ok(self.configs.get(endpoint).cloned())
    }
    fn put(&mut self, endpoint: &str, config: BootstrapConfig) -> Result<(), ConfigError> {
        config.validate()?;
        self.configs.insert(endpoint.to_string(), config);
        Ok(())
    }
    fn remove(&mut self, endpoint: &str) -> Result<bool, ConfigError> {
        Ok(self.configs.remove(endpoint).is_some())
    }
    fn endpoints(&self) -> Result<Vec<String>, ConfigError> {
        Ok(self.configs.keys().cloned().collect())
    }
}

/// A configuration as the database stores it: validated, as JSON.
#[cfg(any(feature = "sqlite", feature = "redis"))]
fn to_stored(config: &BootstrapConfig) -> Result<String, ConfigError> {
    config.validate()?;
    serde_json::to_string(config).map_err(|e| ConfigError::Json(e.to_string()))
}

/// A configuration read back from the database.
#[cfg(any(feature = "sqlite", feature = "redis"))]
fn from_stored(endpoint: &str, json: &str) -> Result<BootstrapConfig, ConfigError> {
    serde_json::from_str(json).map_err(|e| {
        ConfigError::Store(format!(
            "stored configuration of {endpoint:?} is corrupt: {e}"
        ))
    })
}

/// Configurations in SQLite (`bootstrap.sqlite3` in the data directory),
/// one JSON document per endpoint: the same format as `bootstrap.json`, so
/// a row can be read and fixed by hand, and new optional fields need no
/// schema migration.
#[cfg(feature = "sqlite")]
pub struct SqliteConfigStore {
    conn: rusqlite::Connection,
}

#[cfg(feature = "sqlite")]
impl fmt::Debug for SqliteConfigStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConfigStore").finish_non_exhaustive()
    }
}

#[cfg(feature = "sqlite")]
fn db(e: rusqlite::Error) -> ConfigError {
    ConfigError::Store(e.to_string())
}

#[cfg(feature = "sqlite")]
impl SqliteConfigStore {
    /// File name of the database inside the data directory.
    pub const FILE_NAME: &'static str = "bootstrap.sqlite3";

    /// Opens (creating if needed) the database in `data_dir`, creating the directory too.
    pub fn open(data_dir: &std::path::Path) -> Result<SqliteConfigStore, ConfigError> {
        std::fs::create_dir_all(data_dir).map_err(|e| ConfigError::Store(e.to_string()))?;
        let conn = rusqlite::Connection::open(data_dir.join(Self::FILE_NAME)).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS bootstrap_configs (
                endpoint TEXT PRIMARY KEY NOT NULL,
                config TEXT NOT NULL
            );",
        )
        .map_err(db)?;
        Ok(SqliteConfigStore { conn })
    }
}

#[cfg(feature = "sqlite")]
impl BootstrapConfigStore for SqliteConfigStore {
    fn get(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, ConfigError> {
        use rusqlite::OptionalExtension;
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT config FROM bootstrap_configs WHERE endpoint = ?1",
                [endpoint],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        json.map(|j| from_stored(endpoint, &j)).transpose()
    }

    fn put(&mut self, endpoint: &str, config: BootstrapConfig) -> Result<(), ConfigError> {
        let json = to_stored(&config)?;
        self.conn
            .execute(
                "INSERT INTO bootstrap_configs (endpoint, config) VALUES (?1, ?2)
                 ON CONFLICT(endpoint) DO UPDATE SET config = excluded.config",
                [endpoint, json.as_str()],
            )
            .map_err(db)?;
        Ok(())
    }

    fn remove(&mut self, endpoint: &str) -> Result<bool, ConfigError> {
        let n = self
            .conn
            .execute(
                "DELETE FROM bootstrap_configs WHERE endpoint = ?1",
                [endpoint],
            )
            .map_err(db)?;
        Ok(n > 0)
    }

    fn endpoints(&self) -> Result<Vec<String>, ConfigError> {
        let mut stmt = self
            .conn
            .prepare("SELECT endpoint FROM bootstrap_configs ORDER BY endpoint")
            .map_err(db)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(db)?;
        rows.collect::<Result<Vec<String>, _>>().map_err(db)
    }
}

/// Configurations in Redis, shared by every bootstrap server node given
/// the same URL and prefix (see [`crate::redis_store`] for the connection,
/// timeouts and blocking behaviour): one hash, `lwm2m:bootstrap` with the
/// default prefix, endpoint → configuration as JSON (the format of a
/// `bootstrap.json` entry, as [`SqliteConfigStore`] keeps it). Each call is
/// one Redis command, so a put or remove is atomic.
#[cfg(feature = "redis")]
pub struct RedisConfigStore {
    link: std::sync::Mutex<crate::redis_store::Link>,
    key: String,
}

#[cfg(feature = "redis")]
impl fmt::Debug for RedisConfigStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfigStore")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
impl RedisConfigStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and checks it answers.
    pub fn open(url: &str) -> Result<RedisConfigStore, ConfigError> {
        let link =
            crate::redis_store::Link::open(url).map_err(|e| ConfigError::Store(e.to_string()))?;
        Ok(RedisConfigStore {
            link: std::sync::Mutex::new(link),
            key: format!("{}bootstrap", crate::RedisStore::DEFAULT_PREFIX),
        })
    }

    /// Uses `prefix` before the key (as [`crate::RedisStore::with_prefix`]).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.key = format!("{prefix}bootstrap");
        self
    }

    /// Connect, read and write timeout of every call.
    pub fn with_timeout(self, timeout: std::time::Duration) -> Self {
        self.link
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_timeout(timeout);
        self
    }

    /// Runs one command on the hash (its key is the command's first argument).
    fn hash<T: redis::FromRedisValue>(&self, cmd: &str, args: &[&str]) -> Result<T, ConfigError> {
        let mut c = redis::cmd(cmd);
        c.arg(&self.key).arg(args);
        self.link
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .run(|conn| c.query(conn))
            .map_err(|e| ConfigError::Store(e.to_string()))
    }
}

#[cfg(feature = "redis")]
impl BootstrapConfigStore for RedisConfigStore {
    fn get(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, ConfigError> {
        let json: Option<String> = self.hash("HGET", &[endpoint])?;
        json.map(|j| from_stored(endpoint, &j)).transpose()
    }

    fn put(&mut self, endpoint: &str, config: BootstrapConfig) -> Result<(), ConfigError> {
        let json = to_stored(&config)?;
        self.hash::<()>("HSET", &[endpoint, &json])
    }

    fn remove(&mut self, endpoint: &str) -> Result<bool, ConfigError> {
        let n: i64 = self.hash("HDEL", &[endpoint])?;
        Ok(n > 0)
    }

    fn endpoints(&self) -> Result<Vec<String>, ConfigError> {
        let mut eps: Vec<String> = self.hash("HKEYS", &[])?;
        eps.sort();
        Ok(eps)
    }
}

pub(crate) mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.as_bytes();
        if s.len() % 2 != 0 {
            return Err(D::Error::custom("hex string has an odd number of digits"));
        }
        s.chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| D::Error::custom("expected hex digits 0-9a-f"))
            })
            .collect()
    }
}

mod path_list {
    use lwm2m_core::model::Path;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(paths: &[Path], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(paths.iter().map(|p| p.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Path>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|p| {
                p.parse::<Path>().map_err(|e| {
                    D::Error::custom(format!("delete path {p:?}: {e} (expected like \"/0\")"))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field, defaults left out where they can be.
    const EXAMPLE: &str = r#"{
  "endpoints": {
    "my-device": {
      "security": [
        { "id": 1, "uri": "coap://127.0.0.1:5683", "short_server_id": 101 }
      ],
      "servers": [
        { "id": 0, "short_server_id": 101, "lifetime": 300 }
      ]
    },
    "psk-device": {
      "discover": true,
      "delete": ["/0/1", "/1"],
      "security": [
        { "id": 1, "uri": "coaps://lwm2m.example:5684", "security_mode": "psk",
          "public_key_or_identity": "6d792d6964", "secret_key": "0102030405060708",
          "short_server_id": 7 }
      ],
      "servers": [
        { "id": 0, "short_server_id": 7, "lifetime": 86400, "binding": "UQ",
          "default_min_period": 10, "default_max_period": 600, "notification_storing": false }
      ],
      "acls": [
        { "id": 0, "object_id": 3, "object_instance_id": 0, "acl": { "7": 15 }, "owner": 7 }
      ],
      "content_format": 11542
    }
  }
}"#;

    #[test]
    fn readme_example_parses_with_defaults_filled_in() {
        let f = BootstrapFile::from_json(EXAMPLE).unwrap();
        let c = &f.endpoints["my-device"];
        assert!(!c.discover);
        assert_eq!(c.delete, [Path::Object(0), Path::Object(1)]);
        assert_eq!(c.security[0].security_mode, SecurityMode::NoSec);
        assert!(!c.security[0].bootstrap_server);
        assert_eq!(c.servers[0].binding, "U");
        assert!(c.servers[0].notification_storing);
        assert_eq!(c.content_format, None);
        let p = &f.endpoints["psk-device"];
        assert_eq!(p.delete, [Path::Instance(0, 1), Path::Object(1)]);
        assert_eq!(p.security[0].public_key_or_identity, b"my-id");
        assert_eq!(p.security[0].secret_key, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.security[0].security_mode.code(), 0);
        assert_eq!(p.acls[0].acl, BTreeMap::from([(7, 15)]));
        assert_eq!(p.content_format, Some(11542));
        // Serializing and parsing again gives the same configurations.
        let again = BootstrapFile::from_json(&f.to_json().unwrap()).unwrap();
        assert_eq!(again, f);
    }

    #[test]
    fn the_readme_example_is_a_valid_file() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("## Bootstrap a client")
            .and_then(|i| readme[i..].find("```json").map(|j| i + j + "```json".len()))
            .expect("README has a bootstrap.json example");
        let len = readme[start..].find("```").unwrap();
        let f = BootstrapFile::from_json(&readme[start..start + len]).unwrap();
        let c = &f.endpoints["my-device"];
        assert_eq!(c.security[0].uri, "coap://127.0.0.1:5683");
        assert_eq!(c.servers[0].lifetime, 300);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = |j: &str| BootstrapFile::from_json(j).unwrap_err().to_string();
        assert!(err(r#"{"endpoints":{"a":{"delete":["0"]}}}"#).contains("delete path"));
        assert!(err(
            r#"{"endpoints":{"a":{"security":[{"id":0,"uri":"coap://x","secret_key":"abc"}]}}}"#
        )
        .contains("odd number"));
        assert!(
            err(r#"{"endpoints":{"a":{"servers":[{"id":0,"short_server_id":1}]}}}"#)
                .contains("no security instance has it")
        );
        assert!(
            err(r#"{"endpoints":{"a":{"security":[{"id":0,"uri":"coap://x"}]}}}"#)
                .contains("without short_server_id")
        );
        assert!(err(r#"{"endpoints":{"a":{"lifetime":5}}}"#).contains("unknown field"));
        assert!(err(r#"{"endpoints":{"a":{"read":["/0"]}}}"#).contains("only /1"));
        assert!(BootstrapFile::from_json(r#"{"endpoints":{"a":{"read":["/1","/2/0"]}}}"#).is_ok());
        let dup = r#"{"endpoints":{"a":{"security":[
            {"id":0,"uri":"coap://x","short_server_id":1},
            {"id":0,"uri":"coap://y","short_server_id":2}]}}}"#;
        assert!(err(dup).contains("/0/0 is configured twice"));
    }

    #[test]
    fn bootstrap_account_has_no_short_server_id_resource() {
        let s = SecurityInstance {
            id: 0,
            uri: "coap://bs".into(),
            bootstrap_server: true,
            security_mode: SecurityMode::NoSec,
            public_key_or_identity: vec![],
            server_public_key: vec![],
            secret_key: vec![],
            short_server_id: None,
            client_hold_off_time: Some(5),
            bootstrap_server_account_timeout: None,
        };
        let i = s.to_instance();
        assert!(!i.resources.contains_key(&security::SHORT_SERVER_ID));
        assert!(i.resources.contains_key(&security::CLIENT_HOLD_OFF_TIME));
        assert_eq!(
            i.resources.keys().copied().collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5, 11]
        );
    }

    #[test]
    fn memory_store_validates_on_put() {
        let mut s = MemoryConfigStore::new();
        let bad = BootstrapConfig {
            servers: vec![ServerInstance {
                id: 0,
                short_server_id: 9,
                lifetime: 60,
                default_min_period: None,
                default_max_period: None,
                notification_storing: true,
                binding: "U".into(),
            }],
            ..BootstrapConfig::default()
        };
        assert!(s.put("a", bad).is_err());
        s.put("b", BootstrapConfig::default()).unwrap();
        assert_eq!(s.endpoints().unwrap(), ["b"]);
        assert!(s.get("b").unwrap().is_some());
        assert!(s.remove("b").unwrap());
        assert!(!s.remove("b").unwrap());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_store_keeps_configurations_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let file = BootstrapFile::from_json(EXAMPLE).unwrap();
        {
            let mut s = SqliteConfigStore::open(dir.path()).unwrap();
            for (ep, c) in &file.endpoints {
                s.put(ep, c.clone()).unwrap();
            }
            // Replacing keeps one row.
            s.put("my-device", file.endpoints["my-device"].clone())
                .unwrap();
            assert!(s
                .put(
                    "bad",
                    BootstrapConfig {
                        servers: file.endpoints["my-device"].servers.clone(),
                        ..BootstrapConfig::default()
                    }
                )
                .is_err());
        }
        let mut s = SqliteConfigStore::open(dir.path()).unwrap();
        assert_eq!(s.endpoints().unwrap(), ["my-device", "psk-device"]);
        assert_eq!(
            s.get("psk-device").unwrap().as_ref(),
            file.endpoints.get("psk-device")
        );
        assert_eq!(s.get("nobody").unwrap(), None);
        assert!(s.remove("my-device").unwrap());
        assert!(!s.remove("my-device").unwrap());
        assert_eq!(s.endpoints().unwrap(), ["psk-device"]);
        s.conn
            .execute(
                "UPDATE bootstrap_configs SET config = '{' WHERE endpoint = 'psk-device'",
                [],
            )
            .unwrap();
        let err = s.get("psk-device").unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
