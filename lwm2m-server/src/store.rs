//! Where registrations are kept across restarts.
//!
//! The [`Engine`](crate::Engine) holds every live registration in memory
//! (its indexes by id, endpoint name and address) and writes each change
//! through a [`RegistrationStore`]; at start the driver loads the store and
//! hands the registrations to the engine, so a restarted server knows its
//! clients, their registration ids keep working and their lifetimes keep
//! running from their last Update.

use std::collections::BTreeMap;
use std::fmt;
#[cfg(feature = "sqlite")]
use std::net::SocketAddr;
#[cfg(feature = "sqlite")]
use std::path::Path;

#[cfg(feature = "sqlite")]
use lwm2m_core::format::link::RegistrationLinks;
#[cfg(feature = "sqlite")]
use lwm2m_core::model::Version;
#[cfg(feature = "sqlite")]
use lwm2m_core::time::Instant;

#[cfg(feature = "sqlite")]
use crate::registration::RegistrationSecurity;
use crate::Registration;

/// Why a store operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// The database failed.
    Database(String),
    /// A stored row could not be read back (column `column` of registration `id`).
    Corrupt {
        /// Registration id of the row.
        id: String,
        /// The column that did not parse.
        column: &'static str,
    },
    /// Creating the data directory failed.
    Io(std::io::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Database(e) => write!(f, "registration database: {e}"),
            StoreError::Corrupt { id, column } => {
                write!(f, "stored registration {id}: column {column} unreadable")
            }
            StoreError::Io(e) => write!(f, "data directory: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// An established observation as a store keeps it, so that a restarted
/// engine can match the notifications the client keeps sending with the old
/// token (the observe request carried no attributes: those are set with
/// Write-Attributes and live on the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObservation {
    /// The engine's handle of the observation (`DmRequestId.0`), kept so the
    /// application's handle stays valid across the restart.
    pub id: u64,
    /// The registration it belongs to.
    pub registration_id: String,
    /// That registration's endpoint name.
    pub endpoint: String,
    /// The observed path, like `/3/0/9`.
    pub path: String,
    /// The CoAP token of the observe request (1 to 8 bytes).
    pub token: Vec<u8>,
    /// The Accept option of the observe request, if any.
    pub accept: Option<u16>,
}

/// Persistence of registrations. Every method is called by the engine as the
/// change happens (write-through); `load` once at start.
pub trait RegistrationStore<P>: Send {
    /// Every stored registration.
    fn load(&mut self) -> Result<Vec<Registration<P>>, StoreError>;
    /// Inserts or replaces the registration with `reg.id`.
    fn put(&mut self, reg: &Registration<P>) -> Result<(), StoreError>;
    /// Removes the registration `id` (no error if absent).
    fn remove(&mut self, id: &str) -> Result<(), StoreError>;

    /// True for a store that several server nodes write (Redis): the engine
    /// then reads a registration back with [`RegistrationStore::get`] before
    /// it acts on an Update, a De-register or an expiry, since another node
    /// may have handled the client since. False (the default) for a store
    /// only this engine writes, whose memory is then the truth.
    fn is_shared(&self) -> bool {
        false
    }

    /// The registration `id` as stored now (`None` if absent). Called only
    /// when [`RegistrationStore::is_shared`]; the default knows nothing.
    fn get(&mut self, id: &str) -> Result<Option<Registration<P>>, StoreError> {
        let _ = id;
        Ok(None)
    }

    /// Every stored observation. The default keeps none, so a store that
    /// does not override these three loses observations on restart.
    fn load_observations(&mut self) -> Result<Vec<StoredObservation>, StoreError> {
        Ok(Vec::new())
    }

    /// Inserts or replaces the observation with `obs.registration_id` and `obs.token`.
    fn put_observation(&mut self, obs: &StoredObservation) -> Result<(), StoreError> {
        let _ = obs;
        Ok(())
    }

    /// Removes the observation of `registration_id` with `token` (no error if absent).
    fn remove_observation(
        &mut self,
        registration_id: &str,
        token: &[u8],
    ) -> Result<(), StoreError> {
        let _ = (registration_id, token);
        Ok(())
    }
}

/// A store that keeps nothing beyond the process: for tests and for servers
/// that do not need registrations to survive a restart.
#[derive(Debug, Default)]
pub struct MemoryStore<P> {
    regs: BTreeMap<String, Registration<P>>,
    observations: BTreeMap<(String, Vec<u8>), StoredObservation>,
}

impl<P> MemoryStore<P> {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            regs: BTreeMap::new(),
            observations: BTreeMap::new(),
        }
    }

    /// Number of stored registrations.
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    /// True if nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }
}

impl<P: Clone + Send> RegistrationStore<P> for MemoryStore<P> {
    fn load(&mut self) -> Result<Vec<Registration<P>>, StoreError> {
        Ok(self.regs.values().cloned().collect())
    }
    fn put(&mut self, reg: &Registration<P>) -> Result<(), StoreError> {
        self.regs.insert(reg.id.clone(), reg.clone());
        Ok(())
    }
    fn remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.regs.remove(id);
        self.observations.retain(|(reg, _), _| reg != id);
        Ok(())
    }
    fn load_observations(&mut self) -> Result<Vec<StoredObservation>, StoreError> {
        Ok(self.observations.values().cloned().collect())
    }
    fn put_observation(&mut self, obs: &StoredObservation) -> Result<(), StoreError> {
        self.observations.insert(
            (obs.registration_id.clone(), obs.token.clone()),
            obs.clone(),
        );
        Ok(())
    }
    fn remove_observation(
        &mut self,
        registration_id: &str,
        token: &[u8],
    ) -> Result<(), StoreError> {
        self.observations
            .remove(&(registration_id.to_string(), token.to_vec()));
        Ok(())
    }
}

/// A store that keeps nothing at all: for measuring the engine's own
/// memory and speed (benchmarks, the fleet simulator), where even a
/// [`MemoryStore`]'s copies would count.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullStore;

impl<P> RegistrationStore<P> for NullStore {
    fn load(&mut self) -> Result<Vec<Registration<P>>, StoreError> {
        Ok(Vec::new())
    }
    fn put(&mut self, _: &Registration<P>) -> Result<(), StoreError> {
        Ok(())
    }
    fn remove(&mut self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(feature = "sqlite")]
/// Registrations in a SQLite database `registrations.sqlite3` inside a data
/// directory, in WAL mode (readers do not block the writer, and each commit
/// is one sequential append, which suits a write per Update).
#[derive(Debug)]
pub struct SqliteStore {
    conn: rusqlite::Connection,
}

#[cfg(feature = "sqlite")]
impl SqliteStore {
    /// File name of the database inside the data directory.
    pub const FILE_NAME: &'static str = "registrations.sqlite3";

    /// Opens (creating if needed) the database in `data_dir`, creating the directory too.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(StoreError::Io)?;
        let conn = rusqlite::Connection::open(data_dir.join(Self::FILE_NAME))?;
        // WAL: see the type's doc. synchronous=NORMAL is the documented safe
        // pairing with WAL (a power loss may lose the last commits, never
        // corrupt the database); a lost Update costs a client one re-register.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS registrations (
                id TEXT PRIMARY KEY NOT NULL,
                endpoint TEXT NOT NULL,
                address TEXT NOT NULL,
                lifetime INTEGER NOT NULL,
                lwm2m_version TEXT NOT NULL,
                binding TEXT NOT NULL,
                sms TEXT,
                queue_mode INTEGER NOT NULL,
                links TEXT NOT NULL,
                registered_at INTEGER NOT NULL,
                last_update INTEGER NOT NULL,
                security TEXT
            );
            CREATE TABLE IF NOT EXISTS observations (
                registration_id TEXT NOT NULL,
                token BLOB NOT NULL,
                id INTEGER NOT NULL,
                endpoint TEXT NOT NULL,
                path TEXT NOT NULL,
                accept INTEGER,
                PRIMARY KEY (registration_id, token)
            );",
        )?;
        // Databases written before registrations recorded their DTLS
        // identity lack the column: their registrations were all plain CoAP.
        let has_security: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('registrations') WHERE name = 'security'",
            [],
            |r| r.get(0),
        )?;
        if !has_security {
            conn.execute_batch("ALTER TABLE registrations ADD COLUMN security TEXT")?;
        }
        Ok(SqliteStore { conn })
    }

    /// The journal mode in force (`"wal"` once opened).
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }
}

#[cfg(feature = "sqlite")]
fn to_i64(t: Instant) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(feature = "sqlite")]
impl RegistrationStore<SocketAddr> for SqliteStore {
    fn load(&mut self) -> Result<Vec<Registration<SocketAddr>>, StoreError> {
        type Row = (
            String,
            String,
            String,
            i64,
            String,
            String,
            Option<String>,
            bool,
            String,
            i64,
            i64,
            Option<String>,
        );
        let mut stmt = self.conn.prepare(
            "SELECT id, endpoint, address, lifetime, lwm2m_version, binding, sms, queue_mode,
                    links, registered_at, last_update, security FROM registrations",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok::<Row, rusqlite::Error>((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                endpoint,
                address,
                lifetime,
                version,
                binding,
                sms,
                queue,
                links,
                reg,
                upd,
                sec,
            ) = row?;
            let corrupt = |column| StoreError::Corrupt {
                id: id.clone(),
                column,
            };
            let address = address.parse().map_err(|_| corrupt("address"))?;
            let lifetime = u32::try_from(lifetime).map_err(|_| corrupt("lifetime"))?;
            let lwm2m_version: Version = version.parse().map_err(|_| corrupt("lwm2m_version"))?;
            let links =
                RegistrationLinks::decode(links.as_bytes()).map_err(|_| corrupt("links"))?;
            let registered_at =
                Instant::from_millis(u64::try_from(reg).map_err(|_| corrupt("registered_at"))?);
            let last_update =
                Instant::from_millis(u64::try_from(upd).map_err(|_| corrupt("last_update"))?);
            let security = match sec {
                Some(text) => Some(
                    RegistrationSecurity::from_stored(&text).ok_or_else(|| corrupt("security"))?,
                ),
                None => None,
            };
            out.push(Registration {
                id,
                endpoint,
                address,
                lifetime,
                lwm2m_version,
                binding,
                sms,
                queue_mode: queue,
                links,
                registered_at,
                last_update,
                security,
            });
        }
        Ok(out)
    }

    fn put(&mut self, reg: &Registration<SocketAddr>) -> Result<(), StoreError> {
        let mut links = Vec::new();
        // Links were parsed from a payload, so they encode; if not, store them
        // empty rather than lose the whole registration.
        let _ = reg.links.encode(&mut links);
        self.conn.execute(
            "INSERT OR REPLACE INTO registrations (id, endpoint, address, lifetime, lwm2m_version,
                binding, sms, queue_mode, links, registered_at, last_update, security)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            rusqlite::params![
                reg.id,
                reg.endpoint,
                reg.address.to_string(),
                i64::from(reg.lifetime),
                reg.lwm2m_version.to_string(),
                reg.binding,
                reg.sms,
                reg.queue_mode,
                String::from_utf8_lossy(&links),
                to_i64(reg.registered_at),
                to_i64(reg.last_update),
                reg.security.as_ref().map(RegistrationSecurity::to_stored),
            ],
        )?;
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM registrations WHERE id = ?1", [id])?;
        // Observations end with their registration.
        self.conn
            .execute("DELETE FROM observations WHERE registration_id = ?1", [id])?;
        Ok(())
    }

    fn load_observations(&mut self) -> Result<Vec<StoredObservation>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, registration_id, endpoint, path, token, accept FROM observations",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, registration_id, endpoint, path, token, accept) = row?;
            let corrupt = |column| StoreError::Corrupt {
                id: registration_id.clone(),
                column,
            };
            let id = u64::try_from(id).map_err(|_| corrupt("observations.id"))?;
            let accept = accept
                .map(u16::try_from)
                .transpose()
                .map_err(|_| corrupt("observations.accept"))?;
            out.push(StoredObservation {
                id,
                registration_id,
                endpoint,
                path,
                token,
                accept,
            });
        }
        Ok(out)
    }

    fn put_observation(&mut self, obs: &StoredObservation) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO observations (registration_id, token, id, endpoint, path, accept)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                obs.registration_id,
                obs.token,
                i64::try_from(obs.id).unwrap_or(i64::MAX),
                obs.endpoint,
                obs.path,
                obs.accept.map(i64::from),
            ],
        )?;
        Ok(())
    }

    fn remove_observation(
        &mut self,
        registration_id: &str,
        token: &[u8],
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM observations WHERE registration_id = ?1 AND token = ?2",
            rusqlite::params![registration_id, token],
        )?;
        Ok(())
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use lwm2m_core::model::Path as LPath;

    fn sample(id: &str) -> Registration<SocketAddr> {
        Registration {
            id: id.into(),
            endpoint: format!("ep-{id}"),
            address: "127.0.0.1:5683".parse().unwrap(),
            lifetime: 300,
            lwm2m_version: Version::new(1, 1),
            binding: "UQ".into(),
            sms: Some("+123".into()),
            queue_mode: true,
            links: RegistrationLinks {
                root: None,
                content_formats: vec![110],
                objects: vec![(LPath::Instance(3, 0), Some(Version::new(1, 1)))],
            },
            registered_at: Instant::from_millis(1_700_000_000_000),
            last_update: Instant::from_millis(1_700_000_060_000),
            security: Some(RegistrationSecurity::Psk {
                identity: format!("id-{id}"),
            }),
        }
    }

    #[test]
    fn sqlite_round_trip_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SqliteStore::open(dir.path()).unwrap();
            assert_eq!(s.journal_mode().unwrap(), "wal");
            s.put(&sample("a")).unwrap();
            s.put(&sample("b")).unwrap();
            let mut changed = sample("a");
            changed.lifetime = 60;
            s.put(&changed).unwrap();
            s.remove("b").unwrap();
            s.remove("nope").unwrap();
        }
        let mut s = SqliteStore::open(dir.path()).unwrap();
        let loaded = s.load().unwrap();
        let mut want = sample("a");
        want.lifetime = 60;
        assert_eq!(loaded, vec![want]);
    }

    #[test]
    fn sqlite_adds_the_security_column_to_an_older_database() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
            conn.execute_batch(
                "CREATE TABLE registrations (id TEXT PRIMARY KEY NOT NULL, endpoint TEXT NOT NULL,
                    address TEXT NOT NULL, lifetime INTEGER NOT NULL, lwm2m_version TEXT NOT NULL,
                    binding TEXT NOT NULL, sms TEXT, queue_mode INTEGER NOT NULL,
                    links TEXT NOT NULL, registered_at INTEGER NOT NULL,
                    last_update INTEGER NOT NULL);
                 INSERT INTO registrations VALUES
                    ('old', 'ep-old', '127.0.0.1:1', 60, '1.1', 'U', NULL, 0, '</3/0>', 1, 2);",
            )
            .unwrap();
        }
        let mut s = SqliteStore::open(dir.path()).unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].security, None, "old rows were plain CoAP");
        s.put(&sample("new")).unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded.iter().filter(|r| r.security.is_some()).count(), 1);
        s.conn
            .execute(
                "UPDATE registrations SET security = 'token:x' WHERE id = 'new'",
                [],
            )
            .unwrap();
        assert!(matches!(
            s.load(),
            Err(StoreError::Corrupt {
                column: "security",
                ..
            })
        ));
    }

    #[test]
    fn sqlite_reports_corrupt_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        s.put(&sample("a")).unwrap();
        s.conn
            .execute("UPDATE registrations SET address = 'nowhere'", [])
            .unwrap();
        assert!(matches!(
            s.load(),
            Err(StoreError::Corrupt {
                column: "address",
                ..
            })
        ));
    }

    fn observation(id: u64, reg: &str, token: &[u8]) -> StoredObservation {
        StoredObservation {
            id,
            registration_id: reg.into(),
            endpoint: format!("ep-{reg}"),
            path: "/3/0/9".into(),
            token: token.to_vec(),
            accept: Some(110),
        }
    }

    fn observation_round_trip(s: &mut dyn RegistrationStore<SocketAddr>) {
        s.put(&sample("a")).unwrap();
        s.put(&sample("b")).unwrap();
        s.put_observation(&observation(1, "a", &[1, 2, 3, 4]))
            .unwrap();
        s.put_observation(&observation(2, "a", &[5, 6, 7, 8]))
            .unwrap();
        s.put_observation(&observation(3, "b", &[9; 8])).unwrap();
        let mut changed = observation(2, "a", &[5, 6, 7, 8]);
        changed.accept = None;
        s.put_observation(&changed).unwrap();
        s.remove_observation("a", &[1, 2, 3, 4]).unwrap();
        s.remove_observation("a", &[0]).unwrap();
        let mut loaded = s.load_observations().unwrap();
        loaded.sort_by_key(|o| o.id);
        assert_eq!(loaded, vec![changed, observation(3, "b", &[9; 8])]);
    }

    #[test]
    fn sqlite_observations_survive_reopen_and_end_with_their_registration() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = SqliteStore::open(dir.path()).unwrap();
            observation_round_trip(&mut s);
        }
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.load_observations().unwrap().len(), 2);
        s.remove("a").unwrap();
        assert_eq!(
            s.load_observations().unwrap(),
            vec![observation(3, "b", &[9; 8])]
        );
    }

    #[test]
    fn memory_store_keeps_observations() {
        observation_round_trip(&mut MemoryStore::new());
    }

    #[test]
    fn memory_store() {
        let mut s = MemoryStore::new();
        s.put(&sample("a")).unwrap();
        s.put(&sample("a")).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.load().unwrap(), vec![sample("a")]);
        s.remove("a").unwrap();
        assert!(s.is_empty());
    }
}
