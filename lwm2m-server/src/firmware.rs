//! Firmware packages the server hands out to devices (Firmware Update,
//! object 5): their metadata and bytes, kept by a [`FirmwareStore`].
//!
//! The engine serves a package block by block to a pulling device
//! (`GET /fw/{id}` over CoAP, see [`crate::Engine::set_firmware`]) and the
//! admin API uploads, lists and deletes packages and serves them over HTTP
//! with `Range`. Neither holds a package in memory for a transfer: each
//! block (or range) is read from the store when it is asked for
//! ([`FirmwareStore::read_range`]); the server binary puts a
//! [`CachedFirmwareStore`] in front of its store, so that many devices
//! pulling one package cost the store one read per 64 KiB segment.
//!
//! Stores: [`MemoryFirmwareStore`] (tests, servers without a data
//! directory); with feature `sqlite`, [`SqliteFirmwareStore`]: the
//! metadata in `firmware.sqlite3` and each package's bytes in the file
//! `firmware/<id>` of the data directory; with feature `redis`,
//! [`RedisFirmwareStore`]: both in Redis, shared by every server node on
//! it (a package uploaded through one node is served by all).
//!
//! Package ids are chosen by the caller and must be 1 to 64 characters of
//! `[A-Za-z0-9_-]` ([`valid_id`]): they become file names, so anything else
//! is refused (an unknown id, never a path outside the directory).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One firmware package's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwarePackage {
    /// Its id (see [`valid_id`]).
    pub id: String,
    /// A name for people (PkgName on the device, if its firmware says so).
    pub name: String,
    /// Its version (PkgVersion).
    pub version: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// When it was stored, milliseconds since the Unix epoch.
    pub created: u64,
}

impl FirmwarePackage {
    /// The metadata of `bytes` stored as `id` at `created` (ms since the
    /// Unix epoch): size and SHA-256 computed here.
    pub fn describe(id: &str, name: &str, version: &str, bytes: &[u8], created: u64) -> Self {
        FirmwarePackage {
            id: id.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
            created,
        }
    }
}

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `id` may name a package: 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a firmware store operation failed.
#[derive(Debug)]
pub enum FirmwareStoreError {
    /// The metadata database failed.
    Database(String),
    /// Reading or writing a package file failed.
    Io(std::io::Error),
    /// The id is not 1 to 64 characters of `[A-Za-z0-9_-]`.
    InvalidId(String),
    /// A package with this id is already stored.
    Exists(String),
}

impl fmt::Display for FirmwareStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareStoreError::Database(e) => write!(f, "firmware database: {e}"),
            FirmwareStoreError::Io(e) => write!(f, "firmware package file: {e}"),
            FirmwareStoreError::InvalidId(id) => write!(
                f,
                "firmware id {id:?} is not 1 to 64 characters of letters, digits, '-' and '_'"
            ),
            FirmwareStoreError::Exists(id) => write!(f, "firmware package {id:?} already exists"),
        }
    }
}

impl std::error::Error for FirmwareStoreError {}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for FirmwareStoreError {
    fn from(e: rusqlite::Error) -> Self {
        FirmwareStoreError::Database(e.to_string())
    }
}

/// Where firmware packages are kept. Shared between the engine (CoAP
/// pulls) and the admin API, hence `&self` methods and `Send + Sync`.
pub trait FirmwareStore: Send + Sync + fmt::Debug {
    /// Stores `bytes` under `package` (its metadata, as
    /// [`FirmwarePackage::describe`] makes it).
    fn put(&self, package: &FirmwarePackage, bytes: &[u8]) -> Result<(), FirmwareStoreError>;
    /// Every package, oldest first.
    fn list(&self) -> Result<Vec<FirmwarePackage>, FirmwareStoreError>;
    /// The package `id`, if stored.
    fn get(&self, id: &str) -> Result<Option<FirmwarePackage>, FirmwareStoreError>;
    /// Removes the package `id`; false if there was none.
    fn delete(&self, id: &str) -> Result<bool, FirmwareStoreError>;
    /// Up to `len` bytes of package `id` from `offset` (fewer at its end,
    /// none at or past it); `None` for an unknown id.
    fn read_range(
        &self,
        id: &str,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, FirmwareStoreError>;
}

/// A firmware store shared by the engine and the admin API.
pub type SharedFirmwareStore = Arc<dyn FirmwareStore>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The slice of `bytes` a [`FirmwareStore::read_range`] returns.
fn range_of(bytes: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start.saturating_add(len).min(bytes.len());
    bytes.get(start..end).unwrap_or_default().to_vec()
}

/// A package with its bytes, in memory.
type Held = (FirmwarePackage, Arc<[u8]>);

/// Packages in memory, lost with the process.
#[derive(Default)]
pub struct MemoryFirmwareStore {
    packages: Mutex<BTreeMap<String, Held>>,
}

impl fmt::Debug for MemoryFirmwareStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryFirmwareStore")
            .field("packages", &lock(&self.packages).len())
            .finish()
    }
}

impl MemoryFirmwareStore {
    /// An empty store.
    pub fn new() -> MemoryFirmwareStore {
        MemoryFirmwareStore::default()
    }
}

impl FirmwareStore for MemoryFirmwareStore {
    fn put(&self, package: &FirmwarePackage, bytes: &[u8]) -> Result<(), FirmwareStoreError> {
        if !valid_id(&package.id) {
            return Err(FirmwareStoreError::InvalidId(package.id.clone()));
        }
        let mut p = lock(&self.packages);
        if p.contains_key(&package.id) {
            return Err(FirmwareStoreError::Exists(package.id.clone()));
        }
        p.insert(package.id.clone(), (package.clone(), Arc::from(bytes)));
        Ok(())
    }

    fn list(&self) -> Result<Vec<FirmwarePackage>, FirmwareStoreError> {
        let mut all: Vec<FirmwarePackage> = lock(&self.packages)
            .values()
            .map(|(m, _)| m.clone())
            .collect();
        all.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(all)
    }

    fn get(&self, id: &str) -> Result<Option<FirmwarePackage>, FirmwareStoreError> {
        Ok(lock(&self.packages).get(id).map(|(m, _)| m.clone()))
    }

    fn delete(&self, id: &str) -> Result<bool, FirmwareStoreError> {
        Ok(lock(&self.packages).remove(id).is_some())
    }

    fn read_range(
        &self,
        id: &str,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, FirmwareStoreError> {
        // Only the Arc is cloned under the lock; the slice is copied after.
        let bytes = lock(&self.packages).get(id).map(|(_, b)| b.clone());
        Ok(bytes.map(|b| range_of(&b, offset, len)))
    }
}

/// Bytes of one segment of [`CachedFirmwareStore`]: 64 blocks of 1024
/// bytes, so that devices pulling block by block cost the store one read
/// per 64 blocks (CoAP block offsets are multiples of the block size, a
/// power of two up to 1024: a block never spans two segments).
pub const CACHE_SEGMENT: usize = 64 * 1024;

/// Cached metadata of one package: what the store said and when it was asked.
#[derive(Debug)]
struct CachedMeta {
    package: FirmwarePackage,
    checked: std::time::Instant,
}

/// One cached segment of a package, with when it was last served (a use
/// counter: least recently used goes first).
#[derive(Debug)]
struct CachedSegment {
    bytes: Arc<[u8]>,
    last_use: u64,
}

#[derive(Debug, Default)]
struct CacheState {
    meta: BTreeMap<String, CachedMeta>,
    segments: BTreeMap<(String, u64), CachedSegment>,
    bytes: usize,
    uses: u64,
}

impl CacheState {
    fn forget(&mut self, id: &str) {
        self.meta.remove(id);
        let keys: Vec<(String, u64)> = self
            .segments
            .range((id.to_string(), 0)..=(id.to_string(), u64::MAX))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(seg) = self.segments.remove(&k) {
                self.bytes -= seg.bytes.len();
            }
        }
    }
}

/// A [`FirmwareStore`] in front of another that keeps recently served
/// packages in memory, in segments of [`CACHE_SEGMENT`] bytes within a
/// byte budget (least recently used segments go first).
///
/// The engine reads `/fw/{id}` blocks on its driver task: without the cache
/// each block costs the store a metadata lookup and a read, which for
/// [`RedisFirmwareStore`] are two network round trips per 1024 bytes with
/// the driver waiting. With it, a campaign's devices pulling one package
/// cost one read per segment per node, and metadata one lookup per
/// `revalidate` period.
///
/// Packages are immutable once stored, so cached bytes are never stale; a
/// package deleted through this store is forgotten at once, one deleted
/// through another node (shared Redis) is still served by this node for up
/// to `revalidate`.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use lwm2m_server::firmware::{
///     CachedFirmwareStore, FirmwarePackage, FirmwareStore, MemoryFirmwareStore,
/// };
///
/// let store = CachedFirmwareStore::new(
///     Arc::new(MemoryFirmwareStore::new()),
///     64 << 20,
///     Duration::from_secs(5),
/// );
/// let p = FirmwarePackage::describe("fw-1", "demo", "2", b"image", 0);
/// store.put(&p, b"image").unwrap();
/// assert_eq!(store.read_range("fw-1", 1, 3).unwrap().unwrap(), b"mag");
/// ```
pub struct CachedFirmwareStore {
    inner: SharedFirmwareStore,
    budget: usize,
    revalidate: std::time::Duration,
    state: Mutex<CacheState>,
}

impl fmt::Debug for CachedFirmwareStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("CachedFirmwareStore")
            .field("inner", &self.inner)
            .field("budget", &self.budget)
            .field("cached_bytes", &state.bytes)
            .field("cached_segments", &state.segments.len())
            .finish()
    }
}

impl CachedFirmwareStore {
    /// Caches up to `budget` bytes of `inner`'s packages; metadata is asked
    /// of `inner` again when older than `revalidate`.
    pub fn new(
        inner: SharedFirmwareStore,
        budget: usize,
        revalidate: std::time::Duration,
    ) -> CachedFirmwareStore {
        CachedFirmwareStore {
            inner,
            budget,
            revalidate,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// Bytes of package data cached now.
    pub fn cached_bytes(&self) -> usize {
        lock(&self.state).bytes
    }

    /// Segment `index` of package `id`: cached, or read from the store
    /// (without holding the lock: readers of other segments do not wait).
    /// `None` when the store no longer has the package.
    fn segment(&self, id: &str, index: u64) -> Result<Option<Arc<[u8]>>, FirmwareStoreError> {
        let key = (id.to_string(), index);
        {
            let mut state = lock(&self.state);
            state.uses += 1;
            let uses = state.uses;
            if let Some(seg) = state.segments.get_mut(&key) {
                seg.last_use = uses;
                return Ok(Some(seg.bytes.clone()));
            }
        }
        let offset = index.saturating_mul(CACHE_SEGMENT as u64);
        let Some(bytes) = self.inner.read_range(id, offset, CACHE_SEGMENT)? else {
            lock(&self.state).forget(id);
            return Ok(None);
        };
        let bytes: Arc<[u8]> = Arc::from(bytes);
        if bytes.len() > self.budget {
            return Ok(Some(bytes));
        }
        let mut state = lock(&self.state);
        // Only a package still known is cached (a concurrent delete wins).
        if !state.meta.contains_key(id) || state.segments.contains_key(&key) {
            return Ok(Some(bytes));
        }
        while state.bytes + bytes.len() > self.budget {
            let oldest = state
                .segments
                .iter()
                .min_by_key(|(_, s)| s.last_use)
                .map(|(k, _)| k.clone());
            let Some(k) = oldest else { break };
            if let Some(seg) = state.segments.remove(&k) {
                state.bytes -= seg.bytes.len();
            }
        }
        state.uses += 1;
        let last_use = state.uses;
        state.bytes += bytes.len();
        state.segments.insert(
            key,
            CachedSegment {
                bytes: bytes.clone(),
                last_use,
            },
        );
        Ok(Some(bytes))
    }
}

impl FirmwareStore for CachedFirmwareStore {
    fn put(&self, package: &FirmwarePackage, bytes: &[u8]) -> Result<(), FirmwareStoreError> {
        self.inner.put(package, bytes)?;
        lock(&self.state).forget(&package.id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<FirmwarePackage>, FirmwareStoreError> {
        self.inner.list()
    }

    fn get(&self, id: &str) -> Result<Option<FirmwarePackage>, FirmwareStoreError> {
        let now = std::time::Instant::now();
        if let Some(m) = lock(&self.state).meta.get(id) {
            if now.saturating_duration_since(m.checked) < self.revalidate {
                return Ok(Some(m.package.clone()));
            }
        }
        let fresh = self.inner.get(id)?;
        let mut state = lock(&self.state);
        match &fresh {
            Some(package) => {
                state.meta.insert(
                    id.to_string(),
                    CachedMeta {
                        package: package.clone(),
                        checked: now,
                    },
                );
            }
            None => state.forget(id),
        }
        Ok(fresh)
    }

    fn delete(&self, id: &str) -> Result<bool, FirmwareStoreError> {
        let deleted = self.inner.delete(id)?;
        lock(&self.state).forget(id);
        Ok(deleted)
    }

    fn read_range(
        &self,
        id: &str,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, FirmwareStoreError> {
        let Some(package) = self.get(id)? else {
            return Ok(None);
        };
        let end = offset.saturating_add(len as u64).min(package.size);
        let mut out = Vec::with_capacity(usize::try_from(end.saturating_sub(offset)).unwrap_or(0));
        let mut at = offset;
        while at < end {
            let index = at / CACHE_SEGMENT as u64;
            let Some(seg) = self.segment(id, index)? else {
                return Ok(None);
            };
            let start = index * CACHE_SEGMENT as u64;
            let from = usize::try_from(at - start).unwrap_or(usize::MAX);
            let to = usize::try_from(end - start)
                .unwrap_or(usize::MAX)
                .min(seg.len());
            let Some(part) = seg.get(from..to).filter(|p| !p.is_empty()) else {
                // The store has fewer bytes than its metadata says: serve
                // what there is.
                break;
            };
            out.extend_from_slice(part);
            at += part.len() as u64;
        }
        Ok(Some(out))
    }
}

/// Metadata in SQLite (`firmware.sqlite3` in the data directory), bytes in
/// `firmware/<id>` files beside it. A package file is written under a
/// temporary name and renamed before its row is inserted, so a crash never
/// leaves a row without its complete file.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
pub struct SqliteFirmwareStore {
    conn: Mutex<rusqlite::Connection>,
    dir: std::path::PathBuf,
}

#[cfg(feature = "sqlite")]
impl SqliteFirmwareStore {
    /// File name of the metadata database inside the data directory.
    pub const FILE_NAME: &'static str = "firmware.sqlite3";
    /// Directory of the package files inside the data directory.
    pub const DIR_NAME: &'static str = "firmware";

    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &std::path::Path) -> Result<SqliteFirmwareStore, FirmwareStoreError> {
        let dir = data_dir.join(Self::DIR_NAME);
        std::fs::create_dir_all(&dir).map_err(FirmwareStoreError::Io)?;
        let conn = rusqlite::Connection::open(data_dir.join(Self::FILE_NAME))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS packages (
                id TEXT PRIMARY KEY NOT NULL,
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                size INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                created INTEGER NOT NULL
            );",
        )?;
        Ok(SqliteFirmwareStore {
            conn: Mutex::new(conn),
            dir,
        })
    }

    /// The file holding package `id`'s bytes.
    fn file(&self, id: &str) -> Option<std::path::PathBuf> {
        valid_id(id).then(|| self.dir.join(id))
    }
}

#[cfg(feature = "sqlite")]
fn package_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FirmwarePackage> {
    Ok(FirmwarePackage {
        id: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        size: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        sha256: r.get(4)?,
        created: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
    })
}

#[cfg(feature = "sqlite")]
impl FirmwareStore for SqliteFirmwareStore {
    fn put(&self, package: &FirmwarePackage, bytes: &[u8]) -> Result<(), FirmwareStoreError> {
        let file = self
            .file(&package.id)
            .ok_or_else(|| FirmwareStoreError::InvalidId(package.id.clone()))?;
        let conn = lock(&self.conn);
        if self.get_locked(&conn, &package.id)?.is_some() {
            return Err(FirmwareStoreError::Exists(package.id.clone()));
        }
        let part = self.dir.join(format!("{}.part", package.id));
        std::fs::write(&part, bytes).map_err(FirmwareStoreError::Io)?;
        std::fs::rename(&part, &file).map_err(FirmwareStoreError::Io)?;
        conn.execute(
            "INSERT INTO packages (id, name, version, size, sha256, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                package.id,
                package.name,
                package.version,
                i64::try_from(package.size).unwrap_or(i64::MAX),
                package.sha256,
                i64::try_from(package.created).unwrap_or(i64::MAX),
            ],
        )?;
        Ok(())
    }

    fn list(&self) -> Result<Vec<FirmwarePackage>, FirmwareStoreError> {
        let conn = lock(&self.conn);
        let mut stmt = conn.prepare(
            "SELECT id, name, version, size, sha256, created FROM packages ORDER BY created, id",
        )?;
        let rows = stmt.query_map([], package_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn get(&self, id: &str) -> Result<Option<FirmwarePackage>, FirmwareStoreError> {
        self.get_locked(&lock(&self.conn), id)
    }

    fn delete(&self, id: &str) -> Result<bool, FirmwareStoreError> {
        let Some(file) = self.file(id) else {
            return Ok(false);
        };
        let n = lock(&self.conn).execute("DELETE FROM packages WHERE id = ?1", [id])?;
        match std::fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FirmwareStoreError::Io(e)),
        }
        Ok(n > 0)
    }

    fn read_range(
        &self,
        id: &str,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, FirmwareStoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let Some(path) = self.file(id) else {
            return Ok(None);
        };
        if self.get(id)?.is_none() {
            return Ok(None);
        }
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FirmwareStoreError::Io(e)),
        };
        // Seeking past i64::MAX fails (EINVAL): at or past the end is
        // nothing to read, whatever the offset.
        let size = file.metadata().map_err(FirmwareStoreError::Io)?.len();
        if offset >= size {
            return Ok(Some(Vec::new()));
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(FirmwareStoreError::Io)?;
        let mut out = Vec::with_capacity(len.min(1 << 20));
        file.take(len as u64)
            .read_to_end(&mut out)
            .map_err(FirmwareStoreError::Io)?;
        Ok(Some(out))
    }
}

#[cfg(feature = "sqlite")]
impl SqliteFirmwareStore {
    fn get_locked(
        &self,
        conn: &rusqlite::Connection,
        id: &str,
    ) -> Result<Option<FirmwarePackage>, FirmwareStoreError> {
        use rusqlite::OptionalExtension;
        Ok(conn
            .query_row(
                "SELECT id, name, version, size, sha256, created FROM packages WHERE id = ?1",
                [id],
                package_row,
            )
            .optional()?)
    }
}

/// Puts a package unless its id is taken. KEYS: metadata hash, bytes key.
/// ARGV: id, metadata JSON, bytes. Returns 1 if stored, 0 if the id exists.
#[cfg(feature = "redis")]
const PUT_FIRMWARE_SCRIPT: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Packages in Redis, shared by every server node given the same URL and
/// prefix (see [`crate::redis_store`] for the connection, timeouts and
/// blocking behaviour).
///
/// | key (default prefix `lwm2m:`) | type | content |
/// | --- | --- | --- |
/// | `lwm2m:firmware` | hash | id → [`FirmwarePackage`] as JSON |
/// | `lwm2m:firmware:{id}` | string | the package's bytes |
///
/// A put is one Lua script (bytes, then metadata, refused if the id is
/// taken), so a listed package always has all its bytes and two nodes
/// uploading the same id at once cannot both succeed. A read of a range
/// is one `GETRANGE` (with the metadata check in the same `MULTI`), so
/// serving a block never fetches the whole package. A delete removes
/// both keys in one `MULTI`. Redis holds each package in memory: size its
/// `maxmemory` for the packages (`--max-firmware-size` bounds each).
#[cfg(feature = "redis")]
pub struct RedisFirmwareStore {
    link: Mutex<crate::redis_store::Link>,
    prefix: String,
    put: redis::Script,
}

#[cfg(feature = "redis")]
impl fmt::Debug for RedisFirmwareStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFirmwareStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
fn redis_error(e: redis::RedisError) -> FirmwareStoreError {
    FirmwareStoreError::Database(format!("redis: {e}"))
}

#[cfg(feature = "redis")]
fn package_from_json(id: &str, json: &str) -> Result<FirmwarePackage, FirmwareStoreError> {
    serde_json::from_str(json).map_err(|e| {
        FirmwareStoreError::Database(format!(
            "stored metadata of firmware package {id:?} is corrupt: {e}"
        ))
    })
}

#[cfg(feature = "redis")]
impl RedisFirmwareStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`)
    /// and checks it answers.
    pub fn open(url: &str) -> Result<RedisFirmwareStore, FirmwareStoreError> {
        Ok(RedisFirmwareStore {
            link: Mutex::new(crate::redis_store::Link::open(url).map_err(redis_error)?),
            prefix: crate::RedisStore::DEFAULT_PREFIX.to_string(),
            put: redis::Script::new(PUT_FIRMWARE_SCRIPT),
        })
    }

    /// Uses `prefix` before every key (as [`crate::RedisStore::with_prefix`]).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Connect, read and write timeout of every call. Uploads of large
    /// packages need it long enough to carry them.
    pub fn with_timeout(self, timeout: std::time::Duration) -> Self {
        lock(&self.link).set_timeout(timeout);
        self
    }

    fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, FirmwareStoreError> {
        lock(&self.link).run(f).map_err(redis_error)
    }

    fn meta_key(&self) -> String {
        format!("{}firmware", self.prefix)
    }

    fn bytes_key(&self, id: &str) -> String {
        format!("{}firmware:{id}", self.prefix)
    }
}

#[cfg(feature = "redis")]
impl FirmwareStore for RedisFirmwareStore {
    fn put(&self, package: &FirmwarePackage, bytes: &[u8]) -> Result<(), FirmwareStoreError> {
        if !valid_id(&package.id) {
            return Err(FirmwareStoreError::InvalidId(package.id.clone()));
        }
        let json = serde_json::to_string(package)
            .map_err(|e| FirmwareStoreError::Database(e.to_string()))?;
        let mut inv = self.put.key(self.meta_key());
        inv.key(self.bytes_key(&package.id))
            .arg(&package.id)
            .arg(json)
            .arg(bytes);
        let stored: i64 = self.run(|c| inv.invoke(c))?;
        if stored == 0 {
            return Err(FirmwareStoreError::Exists(package.id.clone()));
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<FirmwarePackage>, FirmwareStoreError> {
        let all: Vec<(String, String)> =
            self.run(|c| redis::cmd("HGETALL").arg(self.meta_key()).query(c))?;
        let mut out = all
            .iter()
            .map(|(id, json)| package_from_json(id, json))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    fn get(&self, id: &str) -> Result<Option<FirmwarePackage>, FirmwareStoreError> {
        let json: Option<String> =
            self.run(|c| redis::cmd("HGET").arg(self.meta_key()).arg(id).query(c))?;
        json.map(|j| package_from_json(id, &j)).transpose()
    }

    fn delete(&self, id: &str) -> Result<bool, FirmwareStoreError> {
        let (removed, _): (i64, i64) = self.run(|c| {
            redis::pipe()
                .atomic()
                .cmd("HDEL")
                .arg(self.meta_key())
                .arg(id)
                .cmd("DEL")
                .arg(self.bytes_key(id))
                .query(c)
        })?;
        Ok(removed > 0)
    }

    fn read_range(
        &self,
        id: &str,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, FirmwareStoreError> {
        // GETRANGE takes signed, inclusive bounds: past i64 is past any end.
        let start = i64::try_from(offset).unwrap_or(i64::MAX);
        let last = start.saturating_add(i64::try_from(len).unwrap_or(i64::MAX)) - 1;
        if len == 0 || start == i64::MAX {
            return Ok(self.get(id)?.map(|_| Vec::new()));
        }
        let (known, bytes): (bool, Vec<u8>) = self.run(|c| {
            redis::pipe()
                .atomic()
                .cmd("HEXISTS")
                .arg(self.meta_key())
                .arg(id)
                .cmd("GETRANGE")
                .arg(self.bytes_key(id))
                .arg(start)
                .arg(last)
                .query(c)
        })?;
        Ok(known.then_some(bytes))
    }
}

/// Checks that `store` (empty) behaves as [`FirmwareStore`] says: put
/// (and refusing a taken or invalid id), list, get, read ranges (inside,
/// up to the end, past it), delete. Panics at the first difference; shared
/// by the stores' tests in and out of this crate.
#[doc(hidden)]
pub fn check_store(store: &dyn FirmwareStore) {
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let p = FirmwarePackage::describe("pkg-1", "demo", "2.0", &bytes, 10);
    assert_eq!(p.size, 5000);
    assert_eq!(p.sha256, sha256_hex(&bytes));
    store.put(&p, &bytes).unwrap();
    assert!(matches!(
        store.put(&p, &bytes),
        Err(FirmwareStoreError::Exists(_))
    ));
    let bad = FirmwarePackage::describe("../x", "demo", "2.0", &bytes, 10);
    assert!(matches!(
        store.put(&bad, &bytes),
        Err(FirmwareStoreError::InvalidId(_))
    ));
    assert_eq!(store.get("pkg-1").unwrap(), Some(p.clone()));
    assert_eq!(store.list().unwrap(), vec![p]);
    let r = store.read_range("pkg-1", 4096, 1024).unwrap().unwrap();
    assert_eq!(r, bytes[4096..]);
    assert_eq!(
        store.read_range("pkg-1", 1024, 16).unwrap().unwrap(),
        bytes[1024..1040]
    );
    assert!(store
        .read_range("pkg-1", 9999, 16)
        .unwrap()
        .unwrap()
        .is_empty());
    assert_eq!(
        store.read_range("pkg-1", 4999, 16).unwrap().unwrap(),
        bytes[4999..]
    );
    for (offset, len) in [(5000, 16), (u64::MAX, 16), (0, 0)] {
        assert_eq!(
            store.read_range("pkg-1", offset, len).unwrap(),
            Some(Vec::new()),
            "offset {offset} len {len}"
        );
    }
    assert_eq!(store.read_range("nope", 0, 16).unwrap(), None);
    assert_eq!(store.read_range("../etc", 0, 16).unwrap(), None);
    assert!(store.delete("pkg-1").unwrap());
    assert!(!store.delete("pkg-1").unwrap());
    assert_eq!(store.get("pkg-1").unwrap(), None);
    assert_eq!(store.read_range("pkg-1", 0, 16).unwrap(), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store() {
        check_store(&MemoryFirmwareStore::new());
    }

    /// A memory store that counts what is asked of it.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryFirmwareStore,
        gets: std::sync::atomic::AtomicUsize,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Counting {
        fn counts(&self) -> (usize, usize) {
            use std::sync::atomic::Ordering::SeqCst;
            (self.gets.load(SeqCst), self.reads.load(SeqCst))
        }
    }

    impl FirmwareStore for Counting {
        fn put(&self, package: &FirmwarePackage, bytes: &[u8]) -> Result<(), FirmwareStoreError> {
            self.inner.put(package, bytes)
        }
        fn list(&self) -> Result<Vec<FirmwarePackage>, FirmwareStoreError> {
            self.inner.list()
        }
        fn get(&self, id: &str) -> Result<Option<FirmwarePackage>, FirmwareStoreError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.get(id)
        }
        fn delete(&self, id: &str) -> Result<bool, FirmwareStoreError> {
            self.inner.delete(id)
        }
        fn read_range(
            &self,
            id: &str,
            offset: u64,
            len: usize,
        ) -> Result<Option<Vec<u8>>, FirmwareStoreError> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.read_range(id, offset, len)
        }
    }

    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

    fn cached(
        budget: usize,
        revalidate: std::time::Duration,
    ) -> (Arc<Counting>, CachedFirmwareStore) {
        let inner = Arc::new(Counting::default());
        let store = CachedFirmwareStore::new(inner.clone(), budget, revalidate);
        (inner, store)
    }

    /// A package of `len` pseudo-random bytes stored as `id` in `store`.
    fn stored(store: &dyn FirmwareStore, id: &str, len: usize) -> Vec<u8> {
        let bytes: Vec<u8> = (0..len as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        let p = FirmwarePackage::describe(id, "demo", "1", &bytes, 0);
        store.put(&p, &bytes).unwrap();
        bytes
    }

    #[test]
    fn cached_store_keeps_the_store_contract() {
        check_store(&cached(1 << 20, HOUR).1);
        check_store(&cached(0, std::time::Duration::ZERO).1);
    }

    #[test]
    fn cached_store_reads_each_segment_once_for_many_block_pulls() {
        let (inner, store) = cached(16 << 20, HOUR);
        let bytes = stored(&store, "fw", 200 * 1024 + 17);
        // Three devices pull it block by block as the engine serves them
        // (metadata, then the block).
        for _ in 0..3 {
            let mut got = Vec::new();
            loop {
                let size = store.get("fw").unwrap().unwrap().size;
                let block = store
                    .read_range("fw", got.len() as u64, 1024)
                    .unwrap()
                    .unwrap();
                got.extend_from_slice(&block);
                if got.len() as u64 >= size {
                    break;
                }
            }
            assert_eq!(got, bytes);
        }
        // 4 segments (64 KiB each) read once, the metadata asked once.
        assert_eq!(inner.counts(), (1, 4));
        assert_eq!(store.cached_bytes(), bytes.len());
    }

    #[test]
    fn cached_store_ranges_match_the_store_across_segments() {
        let (_, store) = cached(1 << 20, HOUR);
        let bytes = stored(&store, "fw", 3 * CACHE_SEGMENT + 5);
        let seg = CACHE_SEGMENT as u64;
        for (offset, len) in [
            (0, 10),
            (seg - 3, 7),
            (seg - 1, 2 * CACHE_SEGMENT + 2),
            (3 * seg, 100),
            (3 * seg + 4, 1),
            (3 * seg + 5, 1),
            (0, 4 * CACHE_SEGMENT),
            (u64::MAX - 1, 10),
        ] {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let end = start.saturating_add(len).min(bytes.len());
            assert_eq!(
                store.read_range("fw", offset, len).unwrap().unwrap(),
                bytes[start..end],
                "offset {offset} len {len}"
            );
        }
    }

    #[test]
    fn cached_store_evicts_the_least_recently_used_segment_within_its_budget() {
        let (inner, store) = cached(2 * CACHE_SEGMENT, HOUR);
        stored(&store, "fw", 3 * CACHE_SEGMENT);
        let seg = CACHE_SEGMENT as u64;
        for index in [0, 1, 0, 2] {
            store.read_range("fw", index * seg, 16).unwrap().unwrap();
        }
        // 0 and 1 read, 0 served again from memory, 2 evicted 1 (least
        // recently used): now 0 and 2 are cached, 1 is read again.
        assert_eq!(inner.counts().1, 3);
        assert_eq!(store.cached_bytes(), 2 * CACHE_SEGMENT);
        store.read_range("fw", 0, 16).unwrap().unwrap();
        store.read_range("fw", 2 * seg, 16).unwrap().unwrap();
        assert_eq!(inner.counts().1, 3);
        store.read_range("fw", seg, 16).unwrap().unwrap();
        assert_eq!(inner.counts().1, 4);
        assert!(store.cached_bytes() <= 2 * CACHE_SEGMENT);
    }

    #[test]
    fn cached_store_forgets_deleted_packages() {
        // Deleted through the cache: gone at once.
        let (_, store) = cached(1 << 20, HOUR);
        stored(&store, "fw", 1000);
        assert!(store.read_range("fw", 0, 10).unwrap().is_some());
        assert!(store.delete("fw").unwrap());
        assert_eq!(store.get("fw").unwrap(), None);
        assert_eq!(store.read_range("fw", 0, 10).unwrap(), None);
        assert_eq!(store.cached_bytes(), 0);

        // Deleted behind its back (another node): gone once the metadata
        // is asked again.
        let (inner, store) = cached(1 << 20, std::time::Duration::ZERO);
        stored(&store, "fw", 1000);
        assert!(store.read_range("fw", 0, 10).unwrap().is_some());
        assert!(inner.delete("fw").unwrap());
        assert_eq!(store.read_range("fw", 0, 10).unwrap(), None);
        assert_eq!(store.cached_bytes(), 0);

        // Within `revalidate` it is still served from memory (documented).
        let (inner, store) = cached(1 << 20, HOUR);
        let bytes = stored(&store, "fw", 1000);
        assert!(store.read_range("fw", 0, 10).unwrap().is_some());
        assert!(inner.delete("fw").unwrap());
        assert_eq!(store.read_range("fw", 0, 10).unwrap().unwrap(), bytes[..10]);
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_store_keeps_bytes_in_files_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        check_store(&SqliteFirmwareStore::open(dir.path()).unwrap());
        let s = SqliteFirmwareStore::open(dir.path()).unwrap();
        let p = FirmwarePackage::describe("keep", "demo", "3", b"abc", 1);
        s.put(&p, b"abc").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("firmware").join("keep")).unwrap(),
            b"abc"
        );
        drop(s);
        let s = SqliteFirmwareStore::open(dir.path()).unwrap();
        assert_eq!(s.list().unwrap(), vec![p]);
        assert_eq!(s.read_range("keep", 1, 10).unwrap().unwrap(), b"bc");
    }
}
