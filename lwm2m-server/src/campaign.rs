//! Firmware update campaigns: one package rolled out to many devices in
//! waves ([`CampaignManager`]), each device updated by
//! [`crate::fota::update_device`].
//!
//! Rules:
//! - The targets are split into waves (sizes or percentages of the
//!   targets, [`WaveSize`]; devices the waves leave out form a last wave).
//!   A wave starts only when every device of the previous one has
//!   finished, and at most `max_concurrent` devices are updated at once.
//! - When the campaign's failures exceed `failure_threshold` it is
//!   **halted**: no device is started any more (those in flight finish),
//!   and later waves are never touched.
//! - **Pause** stops starting devices (those in flight finish), **resume**
//!   starts them again, **cancel** ends the campaign (in-flight devices
//!   finish, the rest stay pending). A halted, cancelled or completed
//!   campaign stays so.
//! - Every change of a campaign and of each device is written through a
//!   [`CampaignStore`] (SQLite in the data directory for the binary, Redis
//!   with `--redis`); at
//!   start the manager loads the campaigns and runs again those that were
//!   running or paused. A device that was in flight when the server
//!   stopped is started again from its delivery (the device resets and
//!   downloads again: writing a Package or Package URI restarts its state
//!   machine), since what it did in between cannot be known. A request
//!   that fails because the server is stopping is not counted as the
//!   device's failure.
//! - Decisions (record a device's end, then choose the next devices to
//!   start) happen in one step under the manager's lock, so what
//!   [`CampaignManager::get`] shows is a state the rules allowed.
//!
//! # Several nodes: leases
//!
//! A [shared](CampaignStore::is_shared) store ([`RedisCampaignStore`]) is
//! used by several server nodes, and two of them must never run one
//! campaign (both would update the same devices). Each campaign has a
//! **lease** in the store: a key naming the node that runs it, with a TTL
//! ([`LeaseSettings::duration`], 30 s by default). A node runs a campaign
//! only while it holds the lease:
//! - The lease is taken only if nobody holds it and renewed only by its
//!   holder ([`CampaignStore::acquire_lease`], one atomic step: `SET NX PX`
//!   or `PEXPIRE` after checking the holder), and released by its holder
//!   when the campaign's runner ends ([`CampaignStore::release_lease`]).
//! - At start a manager runs the unfinished campaigns whose lease it
//!   obtains (creating a campaign takes its lease too). Every third of the
//!   lease duration a task renews the leases the node holds and reloads the
//!   store: campaigns run elsewhere are shown as stored, and an unfinished
//!   one whose lease is free (its node released it or stopped renewing it)
//!   is taken over, its in-flight devices started again from their delivery
//!   as after a restart.
//! - A node that could not renew a lease for a whole lease duration (Redis
//!   unreachable, the process stalled) stops acting for the campaign: each
//!   decision and each recorded device phase first checks that the lease
//!   was renewed less than a lease duration ago, measured from before the
//!   renewal was sent, so never later than Redis's own expiry. Its runner
//!   ends at the next decision or renewal round and abandons what it had in
//!   flight to the next holder.
//! - Only the node running a campaign changes it: pause, resume and cancel
//!   on another node are refused ([`CampaignError::Conflict`]), since its
//!   copy may be behind and the runner would not see the change.
//!   [`CampaignManager::stop`] releases every lease at once, for taking a
//!   node out of service.
//!
//! [`MemoryCampaignStore`] and [`SqliteCampaignStore`] are not shared:
//! every lease is granted, nothing is renewed or reloaded, and campaigns
//! behave as with one node.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::driver::ServerHandle;
use crate::firmware::SharedFirmwareStore;
use crate::fota::{update_device, Delivery, FirmwareUris, Phase, UpdateError, UpdatePlan};

/// Most targets of one campaign.
pub const MAX_TARGETS: usize = 100_000;

/// The size of one wave: a number of devices or a percentage of the
/// targets (`"25%"`, rounded up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WaveSize {
    /// That many devices.
    Count(usize),
    /// `"N%"` of the targets.
    Percent(String),
}

/// Where a campaign is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignStatus {
    /// Starting devices.
    Running,
    /// Not starting devices until resumed.
    Paused,
    /// Stopped by the failure threshold.
    Halted,
    /// Stopped by the operator.
    Cancelled,
    /// Every device finished within the threshold.
    Completed,
}

impl CampaignStatus {
    /// Halted, cancelled or completed: nothing more will start.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CampaignStatus::Halted | CampaignStatus::Cancelled | CampaignStatus::Completed
        )
    }

    /// The status's name in the admin API.
    pub fn name(self) -> &'static str {
        match self {
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Halted => "halted",
            CampaignStatus::Cancelled => "cancelled",
            CampaignStatus::Completed => "completed",
        }
    }
}

/// A new campaign, as `POST /api/campaigns` takes it.
#[derive(Debug, Clone, Deserialize)]
pub struct CampaignSpec {
    /// A name for people.
    pub name: String,
    /// The firmware package id.
    pub package: String,
    /// How packages reach the devices.
    pub delivery: Delivery,
    /// The devices' endpoint names (distinct).
    pub targets: Vec<String>,
    /// Wave sizes, in order (none: one wave).
    #[serde(default)]
    pub waves: Vec<WaveSize>,
    /// Devices updated at once (default 10).
    #[serde(default = "default_concurrency")]
    pub max_concurrent: usize,
    /// Failures allowed: one more halts the campaign (default 0).
    #[serde(default)]
    pub failure_threshold: usize,
    /// Seconds for each device's download and again for its update
    /// (default 600).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Create it paused (it starts at the first resume).
    #[serde(default)]
    pub paused: bool,
}

fn default_concurrency() -> usize {
    10
}

fn default_timeout() -> u64 {
    600
}

/// One target of a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Its endpoint name.
    pub endpoint: String,
    /// Its wave (0 first).
    pub wave: usize,
    /// Where its update is.
    pub status: Phase,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A campaign's settings and state, without its devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The package id.
    pub package: String,
    /// The delivery.
    pub delivery: Delivery,
    /// Devices per wave, in order.
    pub waves: Vec<usize>,
    /// Devices updated at once.
    pub max_concurrent: usize,
    /// Failures allowed.
    pub failure_threshold: usize,
    /// Seconds per step of one device.
    pub timeout: u64,
    /// Where it is.
    pub status: CampaignStatus,
    /// Why it stopped (halted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created: u64,
    /// Milliseconds since the Unix epoch.
    pub updated: u64,
}

/// A campaign with its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    /// Settings and state.
    pub info: CampaignInfo,
    /// The targets, wave by wave.
    pub devices: Vec<DeviceStatus>,
    /// Devices being updated now (not stored).
    in_flight: usize,
}

impl Campaign {
    /// Devices per status name.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut c = BTreeMap::new();
        for d in &self.devices {
            *c.entry(d.status.name()).or_insert(0) += 1;
        }
        c
    }

    /// Devices being updated right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn failures(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.status == Phase::Failed)
            .count()
    }
}

/// Why a campaign request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignError {
    /// The spec is not acceptable (says why).
    Invalid(String),
    /// No such campaign.
    Unknown(String),
    /// The campaign's status does not allow that (says why).
    Conflict(String),
    /// The store failed.
    Store(String),
}

impl fmt::Display for CampaignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CampaignError::Invalid(m) | CampaignError::Conflict(m) => f.write_str(m),
            CampaignError::Unknown(id) => write!(f, "no campaign {id:?}"),
            CampaignError::Store(e) => write!(f, "campaign store: {e}"),
        }
    }
}

impl std::error::Error for CampaignError {}

/// Persistence of campaigns (write-through; `load` at start, and again
/// now and then when the store [is shared](CampaignStore::is_shared)).
pub trait CampaignStore: Send + fmt::Debug {
    /// Every stored campaign.
    fn load(&mut self) -> Result<Vec<Campaign>, CampaignError>;
    /// Inserts or replaces a campaign's settings and state.
    fn put_info(&mut self, info: &CampaignInfo) -> Result<(), CampaignError>;
    /// Inserts or replaces device `index` of campaign `id`.
    fn put_device(
        &mut self,
        id: &str,
        index: usize,
        device: &DeviceStatus,
    ) -> Result<(), CampaignError>;
    /// Whether other server nodes run campaigns from this store too. The
    /// manager then runs a campaign only while it holds its lease, renews
    /// the leases it holds and looks for campaigns to take over (see the
    /// module doc). False by default: one node, every lease granted.
    fn is_shared(&self) -> bool {
        false
    }
    /// Takes the lease of campaign `id` for `node` for `ttl` if nobody
    /// holds it, or extends it by `ttl` if `node` does; true if `node`
    /// holds it now. Always true by default.
    fn acquire_lease(
        &mut self,
        id: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, CampaignError> {
        let _ = (id, node, ttl);
        Ok(true)
    }
    /// Gives up `node`'s lease of campaign `id` (a lease another node
    /// holds is left alone). Nothing to do by default.
    fn release_lease(&mut self, id: &str, node: &str) -> Result<(), CampaignError> {
        let _ = (id, node);
        Ok(())
    }
}

/// Campaigns in memory only.
#[derive(Debug, Default)]
pub struct MemoryCampaignStore {
    campaigns: BTreeMap<String, Campaign>,
}

impl CampaignStore for MemoryCampaignStore {
    fn load(&mut self) -> Result<Vec<Campaign>, CampaignError> {
        Ok(self.campaigns.values().cloned().collect())
    }

    fn put_info(&mut self, info: &CampaignInfo) -> Result<(), CampaignError> {
        self.campaigns
            .entry(info.id.clone())
            .or_insert_with(|| Campaign {
                info: info.clone(),
                devices: Vec::new(),
                in_flight: 0,
            })
            .info = info.clone();
        Ok(())
    }

    fn put_device(
        &mut self,
        id: &str,
        index: usize,
        device: &DeviceStatus,
    ) -> Result<(), CampaignError> {
        let c = self
            .campaigns
            .get_mut(id)
            .ok_or_else(|| CampaignError::Unknown(id.to_string()))?;
        if index >= c.devices.len() {
            c.devices.resize(index + 1, device.clone());
        }
        c.devices[index] = device.clone();
        Ok(())
    }
}

/// Campaigns in `campaigns.sqlite3` in the data directory: a row per
/// campaign (its settings and state as JSON) and a row per device.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub struct SqliteCampaignStore {
    conn: rusqlite::Connection,
}

#[cfg(feature = "sqlite")]
fn db_error(e: impl fmt::Display) -> CampaignError {
    CampaignError::Store(e.to_string())
}

#[cfg(feature = "sqlite")]
impl SqliteCampaignStore {
    /// File name of the database inside the data directory.
    pub const FILE_NAME: &'static str = "campaigns.sqlite3";

    /// Opens (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &std::path::Path) -> Result<SqliteCampaignStore, CampaignError> {
        std::fs::create_dir_all(data_dir).map_err(db_error)?;
        let conn = rusqlite::Connection::open(data_dir.join(Self::FILE_NAME)).map_err(db_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_error)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS campaigns (
                id TEXT PRIMARY KEY NOT NULL,
                info TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS campaign_devices (
                campaign TEXT NOT NULL,
                idx INTEGER NOT NULL,
                endpoint TEXT NOT NULL,
                wave INTEGER NOT NULL,
                status TEXT NOT NULL,
                reason TEXT,
                PRIMARY KEY (campaign, idx)
            );",
        )
        .map_err(db_error)?;
        Ok(SqliteCampaignStore { conn })
    }
}

#[cfg(feature = "sqlite")]
impl CampaignStore for SqliteCampaignStore {
    fn load(&mut self) -> Result<Vec<Campaign>, CampaignError> {
        let mut out = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT id, info FROM campaigns ORDER BY id")
            .map_err(db_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db_error)?;
        let infos: Vec<(String, String)> = rows.collect::<Result<_, _>>().map_err(db_error)?;
        let mut dev = self
            .conn
            .prepare(
                "SELECT endpoint, wave, status, reason FROM campaign_devices
                 WHERE campaign = ?1 ORDER BY idx",
            )
            .map_err(db_error)?;
        for (id, text) in infos {
            let info: CampaignInfo = serde_json::from_str(&text)
                .map_err(|e| CampaignError::Store(format!("campaign {id}: {e}")))?;
            let devices = dev
                .query_map([&id], |r| {
                    let status: String = r.get(2)?;
                    Ok(DeviceStatus {
                        endpoint: r.get(0)?,
                        wave: usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        // An unreadable status: run it again.
                        status: Phase::parse(&status).unwrap_or(Phase::Pending),
                        reason: r.get(3)?,
                    })
                })
                .map_err(db_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_error)?;
            out.push(Campaign {
                info,
                devices,
                in_flight: 0,
            });
        }
        Ok(out)
    }

    fn put_info(&mut self, info: &CampaignInfo) -> Result<(), CampaignError> {
        let text = serde_json::to_string(info).map_err(db_error)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO campaigns (id, info) VALUES (?1, ?2)",
                rusqlite::params![info.id, text],
            )
            .map_err(db_error)?;
        Ok(())
    }

    fn put_device(
        &mut self,
        id: &str,
        index: usize,
        d: &DeviceStatus,
    ) -> Result<(), CampaignError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO campaign_devices (campaign, idx, endpoint, wave, status, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    id,
                    i64::try_from(index).unwrap_or(i64::MAX),
                    d.endpoint,
                    i64::try_from(d.wave).unwrap_or(i64::MAX),
                    d.status.name(),
                    d.reason
                ],
            )
            .map_err(db_error)?;
        Ok(())
    }
}

/// Takes or renews a lease. KEYS: lease key. ARGV: node, TTL (ms).
/// Returns 1 if the node holds it now, 0 if another node does.
#[cfg(feature = "redis")]
const ACQUIRE_LEASE_SCRIPT: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Deletes a lease if the node holds it. KEYS: lease key. ARGV: node.
#[cfg(feature = "redis")]
const RELEASE_LEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Campaigns in Redis, shared by every server node given the same URL and
/// prefix (see [`crate::redis_store`] for the connection, timeouts and
/// blocking behaviour).
///
/// | key (default prefix `lwm2m:`) | type | content |
/// | --- | --- | --- |
/// | `lwm2m:campaigns` | hash | campaign id → [`CampaignInfo`] as JSON |
/// | `lwm2m:campaign:{id}:devices` | hash | device index → [`DeviceStatus`] as JSON |
/// | `lwm2m:campaign:{id}:lease` | string | id of the node running it, with a TTL (the lease) |
///
/// The store [is shared](CampaignStore::is_shared): a lease is taken with
/// `SET NX PX` semantics and renewed only by its holder, both in one Lua
/// script (check the holder, then extend or set), and released only by its
/// holder, so two nodes never hold one campaign's lease at once.
#[cfg(feature = "redis")]
pub struct RedisCampaignStore {
    link: crate::redis_store::Link,
    prefix: String,
    acquire: redis::Script,
    release: redis::Script,
}

#[cfg(feature = "redis")]
impl fmt::Debug for RedisCampaignStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCampaignStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
fn redis_error(e: redis::RedisError) -> CampaignError {
    CampaignError::Store(format!("redis: {e}"))
}

#[cfg(feature = "redis")]
impl RedisCampaignStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and checks it answers.
    pub fn open(url: &str) -> Result<RedisCampaignStore, CampaignError> {
        Ok(RedisCampaignStore {
            link: crate::redis_store::Link::open(url).map_err(redis_error)?,
            prefix: crate::RedisStore::DEFAULT_PREFIX.to_string(),
            acquire: redis::Script::new(ACQUIRE_LEASE_SCRIPT),
            release: redis::Script::new(RELEASE_LEASE_SCRIPT),
        })
    }

    /// Uses `prefix` before every key (as [`crate::RedisStore::with_prefix`]).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Connect, read and write timeout of every call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.link.set_timeout(timeout);
        self
    }

    /// The node holding the lease of campaign `id`, if any.
    pub fn lease_holder(&mut self, id: &str) -> Result<Option<String>, CampaignError> {
        let key = self.campaign_key(id, "lease");
        self.link
            .run(|c| redis::cmd("GET").arg(key).query(c))
            .map_err(redis_error)
    }

    fn infos_key(&self) -> String {
        format!("{}campaigns", self.prefix)
    }

    fn campaign_key(&self, id: &str, what: &str) -> String {
        format!("{}campaign:{id}:{what}", self.prefix)
    }
}

#[cfg(feature = "redis")]
impl CampaignStore for RedisCampaignStore {
    fn load(&mut self) -> Result<Vec<Campaign>, CampaignError> {
        let infos_key = self.infos_key();
        let infos: Vec<(String, String)> = self
            .link
            .run(|c| redis::cmd("HGETALL").arg(infos_key).query(c))
            .map_err(redis_error)?;
        let mut out = Vec::with_capacity(infos.len());
        for (id, text) in infos {
            let info: CampaignInfo = serde_json::from_str(&text)
                .map_err(|e| CampaignError::Store(format!("campaign {id}: {e}")))?;
            let key = self.campaign_key(&id, "devices");
            let rows: Vec<(usize, String)> = self
                .link
                .run(|c| redis::cmd("HGETALL").arg(key).query(c))
                .map_err(redis_error)?;
            let mut indexed = rows
                .into_iter()
                .map(|(i, text)| {
                    serde_json::from_str::<DeviceStatus>(&text)
                        .map(|d| (i, d))
                        .map_err(|e| CampaignError::Store(format!("campaign {id} device {i}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            indexed.sort_by_key(|(i, _)| *i);
            out.push(Campaign {
                info,
                devices: indexed.into_iter().map(|(_, d)| d).collect(),
                in_flight: 0,
            });
        }
        Ok(out)
    }

    fn put_info(&mut self, info: &CampaignInfo) -> Result<(), CampaignError> {
        let text = serde_json::to_string(info).map_err(|e| CampaignError::Store(e.to_string()))?;
        let key = self.infos_key();
        self.link
            .run(|c| redis::cmd("HSET").arg(key).arg(&info.id).arg(text).query(c))
            .map_err(redis_error)
    }

    fn put_device(
        &mut self,
        id: &str,
        index: usize,
        device: &DeviceStatus,
    ) -> Result<(), CampaignError> {
        let text =
            serde_json::to_string(device).map_err(|e| CampaignError::Store(e.to_string()))?;
        let key = self.campaign_key(id, "devices");
        self.link
            .run(|c| redis::cmd("HSET").arg(key).arg(index).arg(text).query(c))
            .map_err(redis_error)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn acquire_lease(
        &mut self,
        id: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, CampaignError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut inv = self.acquire.key(self.campaign_key(id, "lease"));
        inv.arg(node).arg(ms);
        let held: i64 = self.link.run(|c| inv.invoke(c)).map_err(redis_error)?;
        Ok(held == 1)
    }

    fn release_lease(&mut self, id: &str, node: &str) -> Result<(), CampaignError> {
        let mut inv = self.release.key(self.campaign_key(id, "lease"));
        inv.arg(node);
        self.link
            .run(|c| inv.invoke::<i64>(c))
            .map(|_| ())
            .map_err(redis_error)
    }
}

/// Splits `total` targets into waves (see [`WaveSize`]).
pub fn resolve_waves(total: usize, waves: &[WaveSize]) -> Result<Vec<usize>, CampaignError> {
    let mut out = Vec::new();
    let mut left = total;
    for w in waves {
        let n = match w {
            WaveSize::Count(n) => *n,
            WaveSize::Percent(p) => {
                let pct: f64 = p
                    .strip_suffix('%')
                    .and_then(|v| v.trim().parse().ok())
                    .filter(|v: &f64| *v > 0.0 && *v <= 100.0)
                    .ok_or_else(|| {
                        CampaignError::Invalid(format!(
                            "wave {p:?}: expected a device count or a percentage like \"25%\""
                        ))
                    })?;
                (total as f64 * pct / 100.0).ceil() as usize
            }
        };
        if n == 0 {
            return Err(CampaignError::Invalid(
                "a wave of 0 devices: every wave needs at least one".into(),
            ));
        }
        let n = n.min(left);
        if n > 0 {
            out.push(n);
            left -= n;
        }
    }
    if left > 0 {
        out.push(left);
    }
    Ok(out)
}

/// What changed in a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignChange {
    /// It was created.
    Created,
    /// Its status changed (running, paused, halted, ...).
    Status,
    /// The device at this index changed phase.
    Device(usize),
}

/// Told of every change of every campaign (SSE events, metrics).
pub type CampaignListener = Box<dyn Fn(&Campaign, CampaignChange) + Send + Sync>;

/// Runs campaigns over a [`ServerHandle`] (see the module doc). Clones
/// share the same campaigns.
#[derive(Clone)]
pub struct CampaignManager {
    inner: Arc<Inner>,
}

impl fmt::Debug for CampaignManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CampaignManager").finish_non_exhaustive()
    }
}

struct State {
    store: Box<dyn CampaignStore>,
    campaigns: BTreeMap<String, Campaign>,
    wakers: BTreeMap<String, Arc<Notify>>,
    /// Whether the store is shared with other nodes (leases matter).
    shared: bool,
    /// Campaigns whose lease this node holds, with when it was last taken
    /// or renewed (measured before the request, so never later than Redis
    /// started counting).
    leased: BTreeMap<String, std::time::Instant>,
    /// [`CampaignManager::stop`] was called: runners end, nothing is
    /// taken over.
    stopped: bool,
    /// A device request failed because the server stopped: nothing is
    /// taken over any more (the runners end by themselves).
    server_stopped: bool,
}

impl State {
    /// Whether this node may act for campaign `id`: not stopped, and with a
    /// shared store, holding a lease renewed less than `ttl` ago.
    fn holds(&self, id: &str, ttl: Duration) -> bool {
        !self.stopped && (!self.shared || self.leased.get(id).is_some_and(|t| t.elapsed() < ttl))
    }

    /// Takes (or renews) the lease of campaign `id` for this node.
    fn take_lease(&mut self, id: &str, lease: &LeaseSettings) -> Result<bool, CampaignError> {
        let asked = std::time::Instant::now();
        let held = self.store.acquire_lease(id, &lease.node, lease.duration)?;
        if held {
            self.leased.insert(id.to_string(), asked);
        }
        Ok(held)
    }

    /// Devices of `c` that were in flight when their runner ended start
    /// again from their delivery (see the module doc).
    fn reset_unfinished(&mut self, c: &mut Campaign) {
        for (i, d) in c.devices.iter_mut().enumerate() {
            if !d.status.is_final() && d.status != Phase::Pending {
                d.status = Phase::Pending;
                let _ = self.store.put_device(&c.info.id, i, d);
            }
        }
    }
}

/// How a manager holds the leases of the campaigns it runs; they matter
/// only with a [shared](CampaignStore::is_shared) store (see the module
/// doc).
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// This node's name in the leases: unique among the nodes.
    pub node: String,
    /// How long a lease lasts unless renewed. The holder renews it every
    /// third of that, and stops running a campaign whose lease it could
    /// not renew for that long; other nodes look for campaigns to take
    /// over as often.
    pub duration: Duration,
}

impl LeaseSettings {
    /// Lease duration unless told otherwise.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);

    /// A random node name (16 hex digits) and `duration`.
    pub fn random_node(duration: Duration) -> LeaseSettings {
        let mut id = [0u8; 8];
        lwm2m_core::rng::RandomSource::fill_bytes(&mut crate::driver::OsRandom, &mut id);
        LeaseSettings {
            node: id.iter().map(|b| format!("{b:02x}")).collect(),
            duration: duration.max(Duration::from_millis(3)),
        }
    }
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings::random_node(Self::DEFAULT_DURATION)
    }
}

struct Inner {
    server: ServerHandle,
    firmware: SharedFirmwareStore,
    uris: FirmwareUris,
    state: Mutex<State>,
    listener: CampaignListener,
    /// Reads of State and Update Result at least this often.
    poll_interval: Duration,
    lease: LeaseSettings,
}

/// What a runner does next.
enum Step {
    /// Start these devices (index, plan).
    Start(Vec<(usize, UpdatePlan)>),
    /// Wait for a device to finish or a control change.
    Wait,
    /// Nothing is in flight and nothing will start.
    Done,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl CampaignManager {
    /// Loads the campaigns of `store` and runs again those that were
    /// running or paused; `listener` hears of every change. Must be called
    /// on a tokio runtime.
    pub fn start(
        server: ServerHandle,
        firmware: SharedFirmwareStore,
        uris: FirmwareUris,
        store: Box<dyn CampaignStore>,
        listener: CampaignListener,
    ) -> Result<CampaignManager, CampaignError> {
        Self::start_with_lease(
            server,
            firmware,
            uris,
            store,
            listener,
            LeaseSettings::default(),
        )
    }

    /// [`CampaignManager::start`] with these lease settings. With a shared
    /// store only the campaigns whose lease this node obtains are run,
    /// and a task renews the leases and takes over campaigns whose lease
    /// another node let go (see the module doc).
    pub fn start_with_lease(
        server: ServerHandle,
        firmware: SharedFirmwareStore,
        uris: FirmwareUris,
        mut store: Box<dyn CampaignStore>,
        listener: CampaignListener,
        lease: LeaseSettings,
    ) -> Result<CampaignManager, CampaignError> {
        let loaded = store.load()?;
        let shared = store.is_shared();
        let inner = Arc::new(Inner {
            server,
            firmware,
            uris,
            state: Mutex::new(State {
                store,
                campaigns: BTreeMap::new(),
                wakers: BTreeMap::new(),
                shared,
                leased: BTreeMap::new(),
                stopped: false,
                server_stopped: false,
            }),
            listener,
            poll_interval: Duration::from_secs(5),
            lease,
        });
        let mut resume = Vec::new();
        {
            let mut st = inner.lock();
            for mut c in loaded {
                let id = c.info.id.clone();
                if !c.info.status.is_final() && st.take_lease(&id, &inner.lease)? {
                    st.reset_unfinished(&mut c);
                    resume.push(id.clone());
                }
                tracing::info!(campaign = %id, status = c.info.status.name(), runs_here = resume.last() == Some(&id), "campaign restored");
                st.campaigns.insert(id, c);
            }
        }
        for id in resume {
            Inner::spawn_runner(&inner, id);
        }
        if shared {
            tokio::spawn(keep_leases(Arc::downgrade(&inner)));
        }
        Ok(CampaignManager { inner })
    }

    /// This node's name in the campaign leases.
    pub fn node(&self) -> &str {
        &self.inner.lease.node
    }

    /// Whether this node runs campaign `id` now (with a shared store: holds
    /// its lease).
    pub fn runs(&self, id: &str) -> bool {
        let st = self.inner.lock();
        st.wakers.contains_key(id) && st.holds(id, self.inner.lease.duration)
    }

    /// Stops running campaigns here: every runner ends (device updates in
    /// flight are abandoned, to be started again from their delivery by
    /// whichever node runs the campaign next) and every lease is released
    /// at once, so another node takes the campaigns over without waiting
    /// for the leases to expire. For taking one node of several out of
    /// service; the campaigns keep their status.
    pub fn stop(&self) {
        let mut st = self.inner.lock();
        let st = &mut *st;
        st.stopped = true;
        for id in std::mem::take(&mut st.leased).into_keys() {
            if let Err(e) = st.store.release_lease(&id, &self.inner.lease.node) {
                tracing::warn!(campaign = %id, "campaign lease not released: {e}");
            }
        }
        for w in st.wakers.values() {
            w.notify_one();
        }
    }

    /// Creates and starts a campaign (after checking that the package
    /// exists and the spec makes sense).
    pub fn create(&self, spec: CampaignSpec) -> Result<Campaign, CampaignError> {
        if spec.targets.is_empty() || spec.targets.len() > MAX_TARGETS {
            return Err(CampaignError::Invalid(format!(
                "targets: expected 1 to {MAX_TARGETS} endpoint names, got {}",
                spec.targets.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = spec.targets.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(CampaignError::Invalid(format!(
                "targets: {dup:?} is listed twice"
            )));
        }
        if spec.max_concurrent == 0 {
            return Err(CampaignError::Invalid("max_concurrent: at least 1".into()));
        }
        match self.inner.firmware.get(&spec.package) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(CampaignError::Invalid(format!(
                    "package {:?}: no such firmware package",
                    spec.package
                )))
            }
            Err(e) => return Err(CampaignError::Store(e.to_string())),
        }
        let waves = resolve_waves(spec.targets.len(), &spec.waves)?;
        let mut devices = Vec::with_capacity(spec.targets.len());
        let mut targets = spec.targets.into_iter();
        for (w, n) in waves.iter().enumerate() {
            for endpoint in targets.by_ref().take(*n) {
                devices.push(DeviceStatus {
                    endpoint,
                    wave: w,
                    status: Phase::Pending,
                    reason: None,
                });
            }
        }
        let mut id = [0u8; 8];
        lwm2m_core::rng::RandomSource::fill_bytes(&mut crate::driver::OsRandom, &mut id);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let now = now_ms();
        let campaign = Campaign {
            info: CampaignInfo {
                id: id.clone(),
                name: spec.name,
                package: spec.package,
                delivery: spec.delivery,
                waves,
                max_concurrent: spec.max_concurrent,
                failure_threshold: spec.failure_threshold,
                timeout: spec.timeout.clamp(1, 86_400),
                status: if spec.paused {
                    CampaignStatus::Paused
                } else {
                    CampaignStatus::Running
                },
                reason: None,
                created: now,
                updated: now,
            },
            devices,
            in_flight: 0,
        };
        {
            let mut st = self.inner.lock();
            if st.stopped {
                return Err(CampaignError::Conflict(
                    "campaigns are stopped on this server node".into(),
                ));
            }
            if !st.take_lease(&id, &self.inner.lease)? {
                return Err(CampaignError::Store(format!(
                    "the lease of new campaign {id} is held by another node"
                )));
            }
            st.store.put_info(&campaign.info)?;
            for (i, d) in campaign.devices.iter().enumerate() {
                st.store.put_device(&id, i, d)?;
            }
            st.campaigns.insert(id.clone(), campaign.clone());
        }
        (self.inner.listener)(&campaign, CampaignChange::Created);
        Inner::spawn_runner(&self.inner, id);
        Ok(campaign)
    }

    /// Every campaign, oldest first.
    pub fn list(&self) -> Vec<Campaign> {
        let mut all: Vec<Campaign> = self.inner.lock().campaigns.values().cloned().collect();
        all.sort_by(|a, b| (a.info.created, &a.info.id).cmp(&(b.info.created, &b.info.id)));
        all
    }

    /// The campaign `id`.
    pub fn get(&self, id: &str) -> Option<Campaign> {
        self.inner.lock().campaigns.get(id).cloned()
    }

    /// Pauses a running campaign.
    pub fn pause(&self, id: &str) -> Result<Campaign, CampaignError> {
        self.control(id, CampaignStatus::Paused, &[CampaignStatus::Running])
    }

    /// Resumes a paused campaign.
    pub fn resume(&self, id: &str) -> Result<Campaign, CampaignError> {
        self.control(id, CampaignStatus::Running, &[CampaignStatus::Paused])
    }

    /// Cancels a running or paused campaign.
    pub fn cancel(&self, id: &str) -> Result<Campaign, CampaignError> {
        self.control(
            id,
            CampaignStatus::Cancelled,
            &[CampaignStatus::Running, CampaignStatus::Paused],
        )
    }

    fn control(
        &self,
        id: &str,
        to: CampaignStatus,
        from: &[CampaignStatus],
    ) -> Result<Campaign, CampaignError> {
        let (campaign, waker) = {
            let mut st = self.inner.lock();
            let st = &mut *st;
            let holds = st.holds(id, self.inner.lease.duration);
            let c = st
                .campaigns
                .get_mut(id)
                .ok_or_else(|| CampaignError::Unknown(id.to_string()))?;
            if !holds && !c.info.status.is_final() {
                return Err(CampaignError::Conflict(format!(
                    "campaign {id} is run by another server node (it holds the campaign's lease): \
                     only that node can make it {}",
                    to.name()
                )));
            }
            if !from.contains(&c.info.status) {
                return Err(CampaignError::Conflict(format!(
                    "campaign {id} is {}; cannot make it {}",
                    c.info.status.name(),
                    to.name()
                )));
            }
            c.info.status = to;
            c.info.updated = now_ms();
            st.store.put_info(&c.info)?;
            (c.clone(), st.wakers.get(id).cloned())
        };
        (self.inner.listener)(&campaign, CampaignChange::Status);
        if let Some(w) = waker {
            w.notify_one();
        }
        Ok(campaign)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_runner(inner: &Arc<Inner>, id: String) {
        let waker = Arc::new(Notify::new());
        inner.lock().wakers.insert(id.clone(), waker.clone());
        tokio::spawn(run(inner.clone(), id, waker));
    }

    /// Records the end of device `finished` (if any), then decides what
    /// starts next; one step under the lock (see the module doc).
    fn step(&self, id: &str, finished: Option<(usize, Result<(), UpdateError>)>) -> Step {
        let mut changed_device = None;
        let mut started = Vec::new();
        let (step, snapshot) = {
            let mut st = self.lock();
            let st = &mut *st;
            if !st.holds(id, self.lease.duration) {
                // Another node runs it now (or this one stopped): what this
                // runner still has in flight is abandoned to that node.
                return Step::Done;
            }
            let Some(c) = st.campaigns.get_mut(id) else {
                return Step::Done;
            };
            let mut info_changed = false;
            if let Some((i, Err(e))) = &finished {
                if stopped_server(e) {
                    st.server_stopped = true;
                    // Not the device's failure: the server is stopping.
                    // It stays to be updated again after the restart;
                    // this runner ends with the server.
                    c.in_flight = c.in_flight.saturating_sub(1);
                    if let Some(d) = c.devices.get_mut(*i) {
                        d.status = Phase::Pending;
                        let _ = st.store.put_device(id, *i, d);
                    }
                    return Step::Done;
                }
            }
            if let Some((i, r)) = finished {
                c.in_flight = c.in_flight.saturating_sub(1);
                if let Some(d) = c.devices.get_mut(i) {
                    match r {
                        Ok(()) => d.status = Phase::Succeeded,
                        Err(e) => {
                            d.status = Phase::Failed;
                            d.reason = Some(e.to_string());
                        }
                    }
                    let _ = st.store.put_device(id, i, d);
                    changed_device = Some(i);
                }
            }
            let failures = c.failures();
            if failures > c.info.failure_threshold
                && matches!(
                    c.info.status,
                    CampaignStatus::Running | CampaignStatus::Paused
                )
            {
                c.info.status = CampaignStatus::Halted;
                c.info.reason = Some(format!(
                    "{failures} failures exceed the failure threshold {}",
                    c.info.failure_threshold
                ));
                info_changed = true;
            }
            let step = match c.info.status {
                CampaignStatus::Paused => Step::Wait,
                CampaignStatus::Running => {
                    let wave = c
                        .devices
                        .iter()
                        .filter(|d| !d.status.is_final())
                        .map(|d| d.wave)
                        .min();
                    match wave {
                        None if c.in_flight == 0 => {
                            c.info.status = CampaignStatus::Completed;
                            info_changed = true;
                            Step::Done
                        }
                        None => Step::Wait,
                        Some(w) => {
                            let room = c.info.max_concurrent.saturating_sub(c.in_flight);
                            let mut starts = Vec::new();
                            let timeout = Duration::from_secs(c.info.timeout);
                            let package = self.firmware.get(&c.info.package).ok().flatten();
                            for (i, d) in c.devices.iter_mut().enumerate() {
                                if starts.len() >= room {
                                    break;
                                }
                                if d.wave != w || d.status != Phase::Pending {
                                    continue;
                                }
                                let Some(package) = package.clone() else {
                                    d.status = Phase::Failed;
                                    d.reason = Some(format!(
                                        "firmware package {:?} is gone",
                                        c.info.package
                                    ));
                                    let _ = st.store.put_device(id, i, d);
                                    continue;
                                };
                                d.status = Phase::Delivering;
                                let _ = st.store.put_device(id, i, d);
                                let mut plan =
                                    UpdatePlan::new(&d.endpoint, package, c.info.delivery);
                                plan.download_timeout = timeout;
                                plan.update_timeout = timeout;
                                plan.poll_interval = self.poll_interval;
                                starts.push((i, plan));
                            }
                            c.in_flight += starts.len();
                            started = starts.iter().map(|(i, _)| *i).collect();
                            if starts.is_empty() {
                                Step::Wait
                            } else {
                                Step::Start(starts)
                            }
                        }
                    }
                }
                _ if c.in_flight == 0 => Step::Done,
                _ => Step::Wait,
            };
            if info_changed {
                c.info.updated = now_ms();
                let _ = st.store.put_info(&c.info);
            }
            let notify = info_changed || changed_device.is_some() || !started.is_empty();
            (step, notify.then(|| (c.clone(), info_changed)))
        };
        if let Some((c, info_changed)) = snapshot {
            if let Some(i) = changed_device {
                (self.listener)(&c, CampaignChange::Device(i));
            }
            if info_changed {
                (self.listener)(&c, CampaignChange::Status);
            }
            for i in started {
                (self.listener)(&c, CampaignChange::Device(i));
            }
        }
        step
    }

    /// Renews this node's leases (a runner whose lease is lost ends), then
    /// reloads the store: campaigns run elsewhere are shown as stored, and
    /// an unfinished one whose lease this node obtains is run here.
    fn keep_leases(inner: &Arc<Inner>) {
        let ttl = inner.lease.duration;
        let mut take = Vec::new();
        {
            let mut st = inner.lock();
            let st = &mut *st;
            let held: Vec<String> = st.leased.keys().cloned().collect();
            for id in held {
                let lost = match st.take_lease(&id, &inner.lease) {
                    Ok(held) => !held,
                    Err(e) => {
                        tracing::warn!(campaign = %id, "campaign lease not renewed: {e}");
                        !st.holds(&id, ttl)
                    }
                };
                if lost {
                    tracing::warn!(campaign = %id, "campaign lease lost: another node may run it");
                    st.leased.remove(&id);
                    if let Some(w) = st.wakers.get(&id) {
                        w.notify_one();
                    }
                }
            }
            let all = match st.store.load() {
                Ok(all) => all,
                Err(e) => {
                    tracing::warn!("campaigns not reloaded: {e}");
                    return;
                }
            };
            for mut c in all {
                let id = c.info.id.clone();
                if st.leased.contains_key(&id) {
                    continue; // This node's copy is the latest.
                }
                // A runner still ending here must finish before another
                // starts; the next round tries again.
                if !c.info.status.is_final()
                    && !st.wakers.contains_key(&id)
                    && st.take_lease(&id, &inner.lease).unwrap_or(false)
                {
                    st.reset_unfinished(&mut c);
                    tracing::info!(campaign = %id, status = c.info.status.name(), "campaign taken over");
                    take.push(id.clone());
                }
                st.campaigns.insert(id, c);
            }
        }
        for id in take {
            Inner::spawn_runner(inner, id);
        }
    }

    /// Device `index` of campaign `id` entered `phase`.
    fn device_phase(&self, id: &str, index: usize, phase: Phase) {
        let snapshot = {
            let mut st = self.lock();
            let st = &mut *st;
            if !st.holds(id, self.lease.duration) {
                return;
            }
            let Some(c) = st.campaigns.get_mut(id) else {
                return;
            };
            let Some(d) = c.devices.get_mut(index) else {
                return;
            };
            // The final phase is recorded by `step`, with the reason.
            if phase.is_final() || d.status == phase {
                return;
            }
            d.status = phase;
            let _ = st.store.put_device(id, index, d);
            c.clone()
        };
        (self.listener)(&snapshot, CampaignChange::Device(index));
    }
}

/// Whether `e` says the server stopped (rather than the device failing).
fn stopped_server(e: &UpdateError) -> bool {
    matches!(
        e,
        UpdateError::Request {
            error: crate::engine::DmError::ServerStopped,
            ..
        }
    )
}

async fn run(inner: Arc<Inner>, id: String, waker: Arc<Notify>) {
    let mut tasks: JoinSet<(usize, Result<(), UpdateError>)> = JoinSet::new();
    // Which device each task updates, for a task that panics.
    let mut devices_of_tasks: std::collections::HashMap<tokio::task::Id, usize> =
        std::collections::HashMap::new();
    let mut finished = None;
    loop {
        match inner.step(&id, finished.take()) {
            Step::Done => break,
            Step::Wait => {}
            Step::Start(list) => {
                for (index, plan) in list {
                    let inner = inner.clone();
                    let id = id.clone();
                    let task = tasks.spawn(async move {
                        let progress = |phase| inner.device_phase(&id, index, phase);
                        let r = update_device(
                            &inner.server,
                            inner.firmware.as_ref(),
                            &inner.uris,
                            &plan,
                            progress,
                        )
                        .await;
                        (index, r)
                    });
                    devices_of_tasks.insert(task.id(), index);
                }
            }
        }
        tokio::select! {
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                finished = match done {
                    Ok((task, r)) => {
                        devices_of_tasks.remove(&task);
                        Some(r)
                    }
                    // A device task panicked: the device failed, and its
                    // slot is free again (else the campaign would wait for
                    // it for ever).
                    Err(e) => {
                        tracing::error!(campaign = %id, "device update task failed: {e}");
                        devices_of_tasks
                            .remove(&e.id())
                            .map(|index| (index, Err(UpdateError::Task(e.to_string()))))
                    }
                };
            }
            () = waker.notified() => {}
        }
    }
    tracing::info!(campaign = %id, "campaign runner ended");
    let mut st = inner.lock();
    st.wakers.remove(&id);
    if st.leased.remove(&id).is_some() {
        if let Err(e) = st.store.release_lease(&id, &inner.lease.node) {
            tracing::warn!(campaign = %id, "campaign lease not released: {e}");
        }
    }
}

/// With a shared store: every third of the lease duration, renews the
/// leases this node holds and takes over campaigns nobody holds; ends with
/// the manager or when it stops.
async fn keep_leases(inner: std::sync::Weak<Inner>) {
    let Some(every) = inner.upgrade().map(|i| i.lease.duration / 3) else {
        return;
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let ended = {
            let st = inner.lock();
            st.stopped || st.server_stopped
        };
        if ended {
            return;
        }
        Inner::keep_leases(&inner);
    }
}

/// Checks that a store keeps a campaign's settings and devices (a device
/// written twice keeps the last) across a reopen: `open` opens the same
/// store again each time. Panics at the first difference; shared by the
/// stores' tests in and out of this crate.
#[doc(hidden)]
pub fn check_store_round_trip(open: &mut dyn FnMut() -> Box<dyn CampaignStore>) {
    let info = CampaignInfo {
        id: "c1".into(),
        name: "n".into(),
        package: "p".into(),
        delivery: Delivery::Coap,
        waves: vec![1, 1],
        max_concurrent: 1,
        failure_threshold: 0,
        timeout: 60,
        status: CampaignStatus::Paused,
        reason: None,
        created: 1,
        updated: 2,
    };
    let dev = |ep: &str, wave, status| DeviceStatus {
        endpoint: ep.into(),
        wave,
        status,
        reason: None,
    };
    {
        let mut s = open();
        s.put_info(&info).unwrap();
        s.put_device("c1", 0, &dev("a", 0, Phase::Succeeded))
            .unwrap();
        s.put_device("c1", 1, &dev("b", 1, Phase::Pending)).unwrap();
        let mut failed = dev("b", 1, Phase::Failed);
        failed.reason = Some("why".into());
        s.put_device("c1", 1, &failed).unwrap();
    }
    let mut s = open();
    let all = s.load().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].info, info);
    assert_eq!(all[0].devices.len(), 2);
    assert_eq!(all[0].devices[0], dev("a", 0, Phase::Succeeded));
    assert_eq!(all[0].devices[1].status, Phase::Failed);
    assert_eq!(all[0].devices[1].reason.as_deref(), Some("why"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves() {
        let p = |s: &str| WaveSize::Percent(s.into());
        assert_eq!(resolve_waves(4, &[]).unwrap(), vec![4]);
        assert_eq!(
            resolve_waves(4, &[WaveSize::Count(2), WaveSize::Count(2)]).unwrap(),
            vec![2, 2]
        );
        assert_eq!(
            resolve_waves(10, &[p("10%"), p("50%")]).unwrap(),
            vec![1, 5, 4]
        );
        assert_eq!(
            resolve_waves(3, &[p("50%"), WaveSize::Count(9)]).unwrap(),
            vec![2, 1]
        );
        assert!(resolve_waves(3, &[WaveSize::Count(0)]).is_err());
        assert!(resolve_waves(3, &[p("150%")]).is_err());
        assert!(resolve_waves(3, &[p("x")]).is_err());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        check_store_round_trip(&mut || Box::new(SqliteCampaignStore::open(dir.path()).unwrap()));
    }
}
