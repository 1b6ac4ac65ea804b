//! Registrations in Redis, shared by several server nodes.
//!
//! Each node runs its own [`Engine`](crate::Engine) with a [`RedisStore`]
//! on the same Redis: a node that starts loads every registration, and
//! because the store says it is shared ([`RegistrationStore::is_shared`]),
//! an engine reads a registration back before it acts on an Update, a
//! De-register or an expiry. So a client may register on one node and send
//! its Updates to another (a load balancer, a fail-over), and a node never
//! expires a registration another node has seen an Update for.
//!
//! # Key layout
//!
//! With the default prefix `lwm2m:` (see [`RedisStore::with_prefix`]):
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `lwm2m:reg:{id}` | hash | `endpoint`, `address` (`ip:port`), `lifetime` (s), `lwm2m_version`, `binding`, `sms` (absent if none), `queue_mode` (`0`/`1`), `links` (link format), `registered_at`, `last_update` (ms since the Unix epoch) |
//! | `lwm2m:ep:{endpoint}` | string | the id registered under that endpoint name |
//! | `lwm2m:regs` | set | every registration id |
//! | `lwm2m:obs` | hash | `{registration id}:{token hex}` → the observation as JSON |
//!
//! Security credentials ([`RedisSecurityStore`](crate::RedisSecurityStore):
//! `lwm2m:security`, `lwm2m:psk`) and bootstrap configurations
//! ([`RedisConfigStore`](crate::bootstrap::RedisConfigStore):
//! `lwm2m:bootstrap`) live beside these, on the same prefix and with the
//! same connection handling.
//!
//! A put is one Lua script, so it is atomic: if the endpoint name points to
//! another id (the client registered again, maybe on another node), that
//! registration is deleted in the same step, and no reader ever sees two
//! registrations for one endpoint. A remove deletes the endpoint key only
//! while it still points to the removed id, so removing a replaced
//! registration never unlinks its successor.
//!
//! # Expiry
//!
//! The engines expire registrations (lifetime plus grace, from the last
//! Update) and remove them. Redis TTLs are a safety net for registrations
//! no node is left to expire: each put sets the registration and endpoint
//! keys to live `lifetime + ttl_slack` from now (relative, so the nodes'
//! and Redis's clocks need not agree), the slack being longer than the
//! engine's grace. The id set has no TTL per member; [`RegistrationStore::load`]
//! drops ids whose hash is gone.
//!
//! # Blocking
//!
//! The store uses the `redis` crate's synchronous connection: the engine's
//! store calls are synchronous and run inline on the driver task (like
//! SQLite's). Every call has a timeout ([`RedisStore::with_timeout`]), so an
//! unreachable Redis stalls the server for at most that long per change;
//! after an error the connection is dropped and the next call reconnects.
//!
//! Scripts build the replaced registration's key from the prefix, which
//! Redis Cluster does not allow (keys must be declared): use a standalone
//! Redis (or a primary with replicas / Sentinel in front).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use lwm2m_core::format::link::RegistrationLinks;
use lwm2m_core::model::Version;
use lwm2m_core::time::Instant;
use redis::{Commands, Connection, RedisResult, Script};

use crate::registration::RegistrationSecurity;
use crate::store::{RegistrationStore, StoreError, StoredObservation};
use crate::Registration;

/// Puts a registration, deleting the one its endpoint name pointed to.
/// KEYS: reg key, endpoint key, id set. ARGV: id, TTL (ms), reg key prefix,
/// endpoint key prefix, then field/value pairs. Returns the replaced id or nil.
const PUT_SCRIPT: &str = r"
local id = ARGV[1]
local ttl = tonumber(ARGV[2])
local replaced = redis.call('GET', KEYS[2])
if replaced and replaced ~= id then
  redis.call('DEL', ARGV[3] .. replaced)
  redis.call('SREM', KEYS[3], replaced)
else
  replaced = false
end
-- The engine never renames a registration; should a put do so anyway, the
-- old name must stop pointing here.
local old_ep = redis.call('HGET', KEYS[1], 'endpoint')
if old_ep and ARGV[4] .. old_ep ~= KEYS[2] and redis.call('GET', ARGV[4] .. old_ep) == id then
  redis.call('DEL', ARGV[4] .. old_ep)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SET', KEYS[2], id, 'PX', ttl)
redis.call('SADD', KEYS[3], id)
return replaced
";

/// Removes a registration and its endpoint key if that still points to it.
/// KEYS: reg key, id set. ARGV: id, endpoint key prefix.
const REMOVE_SCRIPT: &str = r"
local ep = redis.call('HGET', KEYS[1], 'endpoint')
if ep and redis.call('GET', ARGV[2] .. ep) == ARGV[1] then
  redis.call('DEL', ARGV[2] .. ep)
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 0
";

/// Registrations read per pipeline in [`RegistrationStore::load`].
const LOAD_BATCH: usize = 500;

/// Registrations in Redis (see the [module documentation](self)).
pub struct RedisStore {
    link: Link,
    prefix: String,
    ttl_slack: Duration,
    put: Script,
    remove: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("connected", &self.link.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl RedisStore {
    /// Key prefix unless [`RedisStore::with_prefix`] says otherwise.
    pub const DEFAULT_PREFIX: &'static str = "lwm2m:";
    /// Time a key outlives its registration's lifetime by default: well
    /// beyond the engine's grace (15 s by default) and clock differences
    /// between nodes, short enough that abandoned keys do not pile up.
    pub const DEFAULT_TTL_SLACK: Duration = Duration::from_secs(300);
    /// Connect, read and write timeout by default.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and checks it answers, so a wrong address fails at start rather
    /// than at the first Register.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        Ok(RedisStore {
            link: Link::open(url)?,
            prefix: Self::DEFAULT_PREFIX.to_string(),
            ttl_slack: Self::DEFAULT_TTL_SLACK,
            put: Script::new(PUT_SCRIPT),
            remove: Script::new(REMOVE_SCRIPT),
        })
    }

    /// Uses `prefix` before every key, so several deployments (or tests)
    /// can share one Redis.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// How long keys outlive a registration's lifetime (see the module doc).
    pub fn with_ttl_slack(mut self, slack: Duration) -> Self {
        self.ttl_slack = slack;
        self
    }

    /// Connect, read and write timeout of every call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.link.set_timeout(timeout);
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn reg_key(&self, id: &str) -> String {
        format!("{}reg:{id}", self.prefix)
    }

    fn ep_key(&self, endpoint: &str) -> String {
        format!("{}ep:{endpoint}", self.prefix)
    }

    /// One hash of every stored observation: field `{registration id}:{token hex}`,
    /// value the observation as JSON.
    fn obs_key(&self) -> String {
        format!("{}obs", self.prefix)
    }

    fn set_key(&self) -> String {
        format!("{}regs", self.prefix)
    }

    /// Every key this store's prefix covers, for tests and tools: the
    /// registration hashes, endpoint keys, the id set and the observations
    /// (and the keys of a [`RedisSecurityStore`](crate::RedisSecurityStore)
    /// or [`RedisConfigStore`](crate::bootstrap::RedisConfigStore) on the
    /// same prefix).
    pub fn keys(&mut self) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let mut keys: Vec<String> = self.link.run(|c| {
            let it = c.scan_match::<_, String>(pattern)?;
            it.collect::<RedisResult<Vec<String>>>()
        })?;
        keys.sort();
        Ok(keys)
    }

    /// Milliseconds the key of registration `id` has left (`None`: no such
    /// key or no TTL).
    pub fn ttl_millis(&mut self, id: &str) -> Result<Option<u64>, StoreError> {
        let key = self.reg_key(id);
        let ms: i64 = self.link.run(|c| c.pttl(key))?;
        Ok(u64::try_from(ms).ok())
    }

    /// Puts `reg` and returns the id of the registration with the same
    /// endpoint name it replaced, if any.
    pub fn put_replacing(
        &mut self,
        reg: &Registration<SocketAddr>,
    ) -> Result<Option<String>, StoreError> {
        let ttl = Duration::from_secs(u64::from(reg.lifetime)) + self.ttl_slack;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut links = Vec::new();
        // Links were parsed from a payload, so they encode; if not, store them
        // empty rather than lose the whole registration (as SqliteStore does).
        let _ = reg.links.encode(&mut links);
        let mut fields: Vec<(&str, Vec<u8>)> = vec![
            ("endpoint", reg.endpoint.as_bytes().to_vec()),
            ("address", reg.address.to_string().into_bytes()),
            ("lifetime", reg.lifetime.to_string().into_bytes()),
            ("lwm2m_version", reg.lwm2m_version.to_string().into_bytes()),
            ("binding", reg.binding.as_bytes().to_vec()),
            (
                "queue_mode",
                if reg.queue_mode { b"1" } else { b"0" }.to_vec(),
            ),
            ("links", links),
            (
                "registered_at",
                reg.registered_at.as_millis().to_string().into_bytes(),
            ),
            (
                "last_update",
                reg.last_update.as_millis().to_string().into_bytes(),
            ),
        ];
        if let Some(sms) = &reg.sms {
            fields.push(("sms", sms.as_bytes().to_vec()));
        }
        if let Some(sec) = &reg.security {
            fields.push(("security", sec.to_stored().into_bytes()));
        }
        let mut inv = self.put.key(self.reg_key(&reg.id));
        inv.key(self.ep_key(&reg.endpoint))
            .key(self.set_key())
            .arg(&reg.id)
            .arg(ttl_ms)
            .arg(self.reg_key(""))
            .arg(self.ep_key(""));
        for (name, value) in fields {
            inv.arg(name).arg(value);
        }
        Ok(self.link.run(|c| inv.invoke::<Option<String>>(c))?)
    }
}

/// The connection, made on first use and after an error (shared by the
/// Redis stores of registrations, bootstrap configurations and security
/// credentials).
pub(crate) struct Link {
    client: redis::Client,
    conn: Option<Connection>,
    timeout: Duration,
}

impl Link {
    /// A link to the Redis at `url`, checked with a PING so a wrong address
    /// fails at start rather than at first use.
    pub(crate) fn open(url: &str) -> RedisResult<Link> {
        let mut link = Link {
            client: redis::Client::open(url)?,
            conn: None,
            timeout: RedisStore::DEFAULT_TIMEOUT,
        };
        link.run(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(link)
    }

    /// Connect, read and write timeout of every later call.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.conn = None;
    }

    /// Runs `f` on the connection, connecting first if needed. Any error
    /// drops the connection: after a timeout its replies may be out of step.
    pub(crate) fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let c = self.client.get_connection_with_timeout(self.timeout)?;
                c.set_read_timeout(Some(self.timeout))?;
                c.set_write_timeout(Some(self.timeout))?;
                self.conn.insert(c)
            }
        };
        let r = f(conn);
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

/// Escapes the glob characters of a SCAN MATCH pattern.
fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Reads a registration back from its hash fields.
fn decode(
    id: &str,
    mut h: HashMap<String, Vec<u8>>,
) -> Result<Registration<SocketAddr>, StoreError> {
    let corrupt = |column| StoreError::Corrupt {
        id: id.to_string(),
        column,
    };
    let mut text = |column: &'static str| -> Result<String, StoreError> {
        h.remove(column)
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| corrupt(column))
    };
    let endpoint = text("endpoint")?;
    let address = text("address")?.parse().map_err(|_| corrupt("address"))?;
    let lifetime = text("lifetime")?.parse().map_err(|_| corrupt("lifetime"))?;
    let lwm2m_version: Version = text("lwm2m_version")?
        .parse()
        .map_err(|_| corrupt("lwm2m_version"))?;
    let binding = text("binding")?;
    let queue_mode = match text("queue_mode")?.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(corrupt("queue_mode")),
    };
    let links =
        RegistrationLinks::decode(text("links")?.as_bytes()).map_err(|_| corrupt("links"))?;
    let registered_at = Instant::from_millis(
        text("registered_at")?
            .parse()
            .map_err(|_| corrupt("registered_at"))?,
    );
    let last_update = Instant::from_millis(
        text("last_update")?
            .parse()
            .map_err(|_| corrupt("last_update"))?,
    );
    let sms = match h.remove("sms") {
        Some(v) => Some(String::from_utf8(v).map_err(|_| corrupt("sms"))?),
        None => None,
    };
    let security = match h.remove("security") {
        Some(v) => Some(
            String::from_utf8(v)
                .ok()
                .and_then(|t| RegistrationSecurity::from_stored(&t))
                .ok_or_else(|| corrupt("security"))?,
        ),
        None => None,
    };
    Ok(Registration {
        id: id.to_string(),
        endpoint,
        address,
        lifetime,
        lwm2m_version,
        binding,
        sms,
        queue_mode,
        links,
        registered_at,
        last_update,
        security,
    })
}

impl RegistrationStore<SocketAddr> for RedisStore {
    fn load(&mut self) -> Result<Vec<Registration<SocketAddr>>, StoreError> {
        let set = self.set_key();
        let mut ids: Vec<String> = self.link.run(|c| c.smembers(&set))?;
        ids.sort();
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for batch in ids.chunks(LOAD_BATCH) {
            let mut pipe = redis::pipe();
            for id in batch {
                pipe.hgetall(self.reg_key(id));
            }
            let hashes: Vec<HashMap<String, Vec<u8>>> = self.link.run(|c| pipe.query(c))?;
            for (id, h) in batch.iter().zip(hashes) {
                if h.is_empty() {
                    // Its key expired (TTL safety net) or it was removed
                    // between SMEMBERS and HGETALL.
                    gone.push(id.clone());
                } else {
                    out.push(decode(id, h)?);
                }
            }
        }
        if !gone.is_empty() {
            self.link.run(|c| c.srem::<_, _, ()>(&set, &gone))?;
        }
        Ok(out)
    }

    fn put(&mut self, reg: &Registration<SocketAddr>) -> Result<(), StoreError> {
        self.put_replacing(reg).map(|_| ())
    }

    fn remove(&mut self, id: &str) -> Result<(), StoreError> {
        let mut inv = self.remove.key(self.reg_key(id));
        inv.key(self.set_key()).arg(id).arg(self.ep_key(""));
        self.link.run(|c| inv.invoke::<i64>(c))?;
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn load_observations(&mut self) -> Result<Vec<StoredObservation>, StoreError> {
        let key = self.obs_key();
        let h: HashMap<String, String> = self.link.run(|c| c.hgetall(key))?;
        let mut out = Vec::new();
        for (field, json) in h {
            let o: ObsJson = serde_json::from_str(&json).map_err(|_| StoreError::Corrupt {
                id: field,
                column: "observation",
            })?;
            out.push(StoredObservation {
                id: o.id,
                registration_id: o.registration_id,
                endpoint: o.endpoint,
                path: o.path,
                token: o.token,
                accept: o.accept,
            });
        }
        out.sort_by_key(|o| o.id);
        Ok(out)
    }

    fn put_observation(&mut self, obs: &StoredObservation) -> Result<(), StoreError> {
        let json = serde_json::to_string(&ObsJson {
            id: obs.id,
            registration_id: obs.registration_id.clone(),
            endpoint: obs.endpoint.clone(),
            path: obs.path.clone(),
            token: obs.token.clone(),
            accept: obs.accept,
        })
        .map_err(|e| StoreError::Database(e.to_string()))?;
        let (key, field) = (self.obs_key(), obs_field(&obs.registration_id, &obs.token));
        self.link.run(|c| c.hset::<_, _, _, ()>(key, field, json))?;
        Ok(())
    }

    fn remove_observation(
        &mut self,
        registration_id: &str,
        token: &[u8],
    ) -> Result<(), StoreError> {
        let (key, field) = (self.obs_key(), obs_field(registration_id, token));
        self.link.run(|c| c.hdel::<_, _, ()>(key, field))?;
        Ok(())
    }

    fn get(&mut self, id: &str) -> Result<Option<Registration<SocketAddr>>, StoreError> {
        let key = self.reg_key(id);
        let h: HashMap<String, Vec<u8>> = self.link.run(|c| c.hgetall(key))?;
        if h.is_empty() {
            return Ok(None);
        }
        decode(id, h).map(Some)
    }
}

/// The field of an observation in the observations hash.
fn obs_field(registration_id: &str, token: &[u8]) -> String {
    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    format!("{registration_id}:{hex}")
}

/// An observation as stored in Redis.
#[derive(serde::Serialize, serde::Deserialize)]
struct ObsJson {
    id: u64,
    registration_id: String,
    endpoint: String,
    path: String,
    token: Vec<u8>,
    accept: Option<u16>,
}
