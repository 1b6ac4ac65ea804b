//! Who may bootstrap which endpoint over DTLS (as Leshan's
//! `BootstrapConfigSecurityStore` and `BootstrapSecurityChecker`).
//!
//! A client's credentials towards the bootstrap server are those of the
//! bootstrap-server account (`bootstrap_server: true`) in its own
//! [`BootstrapConfig`]: Security Mode PSK gives the PSK identity (resource
//! 3, UTF-8) and key (resource 5), RPK the client's public key (resource
//! 3, DER SubjectPublicKeyInfo), Certificate (with or without EST) a
//! certificate whose Common Name is the endpoint name, as the DM server's
//! rule ([`crate::security::check_credentials`]). No bootstrap account, or
//! one in NoSec mode: the endpoint bootstraps over plain CoAP only.
//!
//! The DTLS handshake finds a PSK key by identity before it knows the
//! endpoint, so a PSK identity belongs to one endpoint only:
//! [`PskIndex`] maps identities to endpoints and keys, and
//! [`IndexedConfigStore`] keeps it in step with a [`BootstrapConfigStore`],
//! refusing a configuration whose identity another endpoint uses
//! ([`ConfigError::PskIdentityInUse`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::config::{BootstrapConfig, BootstrapConfigStore, ConfigError, SecurityMode};
use crate::security::{check_credentials, AuthorizationError, Credentials, PeerIdentity};

/// The credentials `config`'s bootstrap-server account asks of the client
/// (see the module doc); `None`: plain CoAP. Refuses what could never
/// authenticate (an empty or non-UTF-8 PSK identity, an empty key).
pub fn bootstrap_credentials(config: &BootstrapConfig) -> Result<Option<Credentials>, ConfigError> {
    let mut accounts = config.security.iter().filter(|s| s.bootstrap_server);
    let Some(account) = accounts.next() else {
        return Ok(None);
    };
    if let Some(second) = accounts.next() {
        return Err(ConfigError::BootstrapCredentials(format!(
            "security instances /0/{} and /0/{} are both bootstrap-server accounts; \
             a client has at most one",
            account.id, second.id
        )));
    }
    let bad = |m: &str| {
        Err(ConfigError::BootstrapCredentials(format!(
            "bootstrap-server account /0/{}: {m}",
            account.id
        )))
    };
    match account.security_mode {
        SecurityMode::NoSec => Ok(None),
        SecurityMode::Psk => {
            let Ok(identity) = String::from_utf8(account.public_key_or_identity.clone()) else {
                return bad("the PSK identity (public_key_or_identity) must be UTF-8");
            };
            if identity.is_empty() {
                return bad("PSK mode needs a PSK identity (public_key_or_identity, hex)");
            }
            if account.secret_key.is_empty() {
                return bad("PSK mode needs a PSK key (secret_key, hex)");
            }
            Ok(Some(Credentials::Psk {
                identity,
                key: account.secret_key.clone(),
            }))
        }
        SecurityMode::Rpk => {
            if account.public_key_or_identity.is_empty() {
                return bad("RPK mode needs the client's public key (public_key_or_identity, hex DER SubjectPublicKeyInfo)");
            }
            Ok(Some(Credentials::Rpk {
                public_key: account.public_key_or_identity.clone(),
            }))
        }
        SecurityMode::Certificate | SecurityMode::CertificateWithEst => Ok(Some(Credentials::X509)),
    }
}

/// Leshan's `BootstrapSecurityChecker` rule: may the sender of a
/// Bootstrap-Request (or Bootstrap-Pack-Request) for `endpoint`, which
/// authenticated as `identity` (`None`: plain CoAP), bootstrap it with
/// `config`? The rule of [`check_credentials`] with the credentials of
/// [`bootstrap_credentials`]; a configuration whose bootstrap account
/// cannot authenticate anyone refuses everyone.
pub fn authorize_bootstrap(
    endpoint: &str,
    identity: Option<&PeerIdentity>,
    config: &BootstrapConfig,
) -> Result<(), AuthorizationError> {
    let wanted =
        bootstrap_credentials(config).map_err(|e| AuthorizationError::Forbidden(e.to_string()))?;
    check_credentials(endpoint, identity, wanted.as_ref())
}

/// PSK identity → (endpoint, key) of every bootstrap configuration with a
/// PSK bootstrap-server account.
#[derive(Debug, Default, Clone)]
pub struct PskIndex {
    by_identity: BTreeMap<String, (String, Vec<u8>)>,
    by_endpoint: BTreeMap<String, String>,
}

impl PskIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The PSK key of `identity`.
    pub fn key(&self, identity: &str) -> Option<&[u8]> {
        self.by_identity.get(identity).map(|(_, k)| k.as_slice())
    }

    /// The endpoint `identity` belongs to.
    pub fn endpoint(&self, identity: &str) -> Option<&str> {
        self.by_identity.get(identity).map(|(e, _)| e.as_str())
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.by_identity.len()
    }

    /// Whether no endpoint has a PSK bootstrap account.
    pub fn is_empty(&self) -> bool {
        self.by_identity.is_empty()
    }

    /// The PSK credentials `config` would give `endpoint`, refused if
    /// another endpoint holds the identity.
    fn check(
        &self,
        endpoint: &str,
        config: &BootstrapConfig,
    ) -> Result<Option<(String, Vec<u8>)>, ConfigError> {
        let Some(Credentials::Psk { identity, key }) = bootstrap_credentials(config)? else {
            return Ok(None);
        };
        match self.endpoint(&identity) {
            Some(owner) if owner != endpoint => Err(ConfigError::PskIdentityInUse {
                identity,
                endpoint: owner.to_string(),
            }),
            _ => Ok(Some((identity, key))),
        }
    }

    /// Records `config` as `endpoint`'s (replacing what it had), refusing a
    /// PSK identity another endpoint uses or unusable credentials.
    pub fn insert(&mut self, endpoint: &str, config: &BootstrapConfig) -> Result<(), ConfigError> {
        let psk = self.check(endpoint, config)?;
        self.remove(endpoint);
        if let Some((identity, key)) = psk {
            self.by_endpoint
                .insert(endpoint.to_string(), identity.clone());
            self.by_identity
                .insert(identity, (endpoint.to_string(), key));
        }
        Ok(())
    }

    /// Forgets `endpoint`'s identity.
    pub fn remove(&mut self, endpoint: &str) {
        if let Some(identity) = self.by_endpoint.remove(endpoint) {
            self.by_identity.remove(&identity);
        }
    }
}

/// A [`PskIndex`] shared by an [`IndexedConfigStore`] (which edits it) and
/// the DTLS layer's handshakes (which look keys up).
pub type SharedPskIndex = Arc<Mutex<PskIndex>>;

/// A [`BootstrapConfigStore`] with the [`PskIndex`] of its configurations:
/// [`BootstrapConfigStore::put`] refuses a PSK identity another endpoint
/// uses. The index is built once from the store's contents and then
/// follows the edits made through this wrapper; a store shared by several
/// nodes (Redis) edited by another node is seen by the next start (PSK
/// keys for handshakes), while [`authorize_bootstrap`] always reads the
/// configuration itself.
pub struct IndexedConfigStore {
    inner: Box<dyn BootstrapConfigStore>,
    index: SharedPskIndex,
}

impl std::fmt::Debug for IndexedConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexedConfigStore").finish_non_exhaustive()
    }
}

fn lock(index: &SharedPskIndex) -> std::sync::MutexGuard<'_, PskIndex> {
    // The index holds no invariant a panic in another holder could break
    // half-way (each edit is one insert or remove).
    index.lock().unwrap_or_else(|e| e.into_inner())
}

impl IndexedConfigStore {
    /// Wraps `inner`, indexing what it holds. A stored configuration whose
    /// PSK identity an endpoint earlier in name order already has (stored
    /// before this check existed, or by hand) is left out of the index, so
    /// that identity stays the first endpoint's; it is logged.
    pub fn new(inner: Box<dyn BootstrapConfigStore>) -> Result<IndexedConfigStore, ConfigError> {
        let mut index = PskIndex::new();
        for ep in inner.endpoints()? {
            let Some(config) = inner.get(&ep)? else {
                continue;
            };
            if let Err(e) = index.insert(&ep, &config) {
                #[cfg(feature = "tokio")]
                tracing::warn!(endpoint = %ep, "bootstrap configuration not usable over DTLS: {e}");
                #[cfg(not(feature = "tokio"))]
                let _ = e;
            }
        }
        Ok(IndexedConfigStore {
            inner,
            index: Arc::new(Mutex::new(index)),
        })
    }

    /// The index, for PSK key lookups.
    pub fn index(&self) -> SharedPskIndex {
        self.index.clone()
    }
}

impl BootstrapConfigStore for IndexedConfigStore {
    fn get(&self, endpoint: &str) -> Result<Option<BootstrapConfig>, ConfigError> {
        self.inner.get(endpoint)
    }

    fn put(&mut self, endpoint: &str, config: BootstrapConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut index = lock(&self.index);
        // Checked before the store is written, recorded after it was.
        index.check(endpoint, &config)?;
        self.inner.put(endpoint, config.clone())?;
        index.insert(endpoint, &config)
    }

    fn remove(&mut self, endpoint: &str) -> Result<bool, ConfigError> {
        let removed = self.inner.remove(endpoint)?;
        lock(&self.index).remove(endpoint);
        Ok(removed)
    }

    fn endpoints(&self) -> Result<Vec<String>, ConfigError> {
        self.inner.endpoints()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::{MemoryConfigStore, SecurityInstance};

    fn account(mode: SecurityMode, identity: &[u8], key: &[u8]) -> SecurityInstance {
        SecurityInstance {
            id: 0,
            uri: "coaps://bs.example:5784".into(),
            bootstrap_server: true,
            security_mode: mode,
            public_key_or_identity: identity.to_vec(),
            server_public_key: vec![],
            secret_key: key.to_vec(),
            short_server_id: None,
            client_hold_off_time: None,
            bootstrap_server_account_timeout: None,
        }
    }

    fn psk_config(identity: &str, key: &[u8]) -> BootstrapConfig {
        BootstrapConfig {
            security: vec![account(SecurityMode::Psk, identity.as_bytes(), key)],
            ..BootstrapConfig::default()
        }
    }

    fn psk(identity: &str) -> PeerIdentity {
        PeerIdentity::Psk(identity.into())
    }

    #[test]
    fn credentials_come_from_the_bootstrap_account_only() {
        let mut c = psk_config("id-a", b"key-a");
        // A DM server account in PSK mode is not the bootstrap credential.
        let mut dm = account(SecurityMode::Psk, b"dm-id", b"dm-key");
        dm.bootstrap_server = false;
        dm.id = 1;
        dm.short_server_id = Some(1);
        c.security.insert(0, dm);
        assert_eq!(
            bootstrap_credentials(&c).unwrap(),
            Some(Credentials::Psk {
                identity: "id-a".into(),
                key: b"key-a".to_vec()
            })
        );
        c.security.remove(1);
        assert_eq!(bootstrap_credentials(&c).unwrap(), None);
        let nosec = BootstrapConfig {
            security: vec![account(SecurityMode::NoSec, b"", b"")],
            ..BootstrapConfig::default()
        };
        assert_eq!(bootstrap_credentials(&nosec).unwrap(), None);
        let cert = BootstrapConfig {
            security: vec![account(SecurityMode::Certificate, b"", b"")],
            ..BootstrapConfig::default()
        };
        assert_eq!(
            bootstrap_credentials(&cert).unwrap(),
            Some(Credentials::X509)
        );
    }

    #[test]
    fn unusable_bootstrap_credentials_are_refused() {
        let msg = |c: &BootstrapConfig| bootstrap_credentials(c).unwrap_err().to_string();
        assert!(msg(&psk_config("", b"k")).contains("needs a PSK identity"));
        assert!(msg(&psk_config("id", b"")).contains("needs a PSK key"));
        let not_utf8 = BootstrapConfig {
            security: vec![account(SecurityMode::Psk, &[0xff, 0xfe], b"k")],
            ..BootstrapConfig::default()
        };
        assert!(msg(&not_utf8).contains("must be UTF-8"));
        let mut two = psk_config("id", b"k");
        let mut second = account(SecurityMode::NoSec, b"", b"");
        second.id = 3;
        two.security.push(second);
        assert!(msg(&two).contains("/0/0 and /0/3 are both bootstrap-server accounts"));
        // validate() refuses them too, so no store keeps one.
        assert!(psk_config("id", b"").validate().is_err());
    }

    #[test]
    fn authorization_follows_the_bootstrap_account() {
        let c = psk_config("id-a", b"key-a");
        assert!(authorize_bootstrap("a", Some(&psk("id-a")), &c).is_ok());
        // Another endpoint's identity, or plain CoAP, is refused.
        let e = authorize_bootstrap("a", Some(&psk("id-b")), &c).unwrap_err();
        assert!(e
            .to_string()
            .contains("\"id-b\" does not belong to endpoint \"a\""));
        let e = authorize_bootstrap("a", None, &c).unwrap_err();
        assert!(e.to_string().contains("connect over DTLS"), "{e}");
        // An unsecured configuration is for plain CoAP only.
        let open = BootstrapConfig::default();
        assert!(authorize_bootstrap("a", None, &open).is_ok());
        assert!(authorize_bootstrap("a", Some(&psk("id-a")), &open).is_err());
        // Certificates: the Common Name must be the endpoint name.
        let cert = BootstrapConfig {
            security: vec![account(SecurityMode::Certificate, b"", b"")],
            ..BootstrapConfig::default()
        };
        let x509 = |cn: &str| PeerIdentity::X509 {
            common_name: cn.into(),
            der: vec![1],
        };
        assert!(authorize_bootstrap("a", Some(&x509("a")), &cert).is_ok());
        assert!(authorize_bootstrap("a", Some(&x509("b")), &cert).is_err());
        assert!(authorize_bootstrap("a", Some(&psk("id-a")), &cert).is_err());
        // RPK: exactly the configured key.
        let rpk = BootstrapConfig {
            security: vec![account(SecurityMode::Rpk, b"spki-a", b"")],
            ..BootstrapConfig::default()
        };
        let key = |k: &[u8]| PeerIdentity::Rpk {
            public_key: k.to_vec(),
        };
        assert!(authorize_bootstrap("a", Some(&key(b"spki-a")), &rpk).is_ok());
        assert!(authorize_bootstrap("a", Some(&key(b"spki-b")), &rpk).is_err());
    }

    #[test]
    fn index_keeps_identities_unique_and_follows_edits() {
        let mut index = PskIndex::new();
        index.insert("a", &psk_config("id-a", b"key-a")).unwrap();
        index.insert("b", &psk_config("id-b", b"key-b")).unwrap();
        assert_eq!(index.key("id-a"), Some(&b"key-a"[..]));
        assert_eq!(index.endpoint("id-b"), Some("b"));
        // b may not take a's identity; b keeps its own.
        let e = index.insert("b", &psk_config("id-a", b"x")).unwrap_err();
        assert_eq!(
            e,
            ConfigError::PskIdentityInUse {
                identity: "id-a".into(),
                endpoint: "a".into()
            }
        );
        assert_eq!(index.endpoint("id-b"), Some("b"));
        // a changes its identity: the old one is free again.
        index.insert("a", &psk_config("id-a2", b"key-a2")).unwrap();
        assert_eq!(index.key("id-a"), None);
        index.insert("b", &psk_config("id-a", b"x")).unwrap();
        assert_eq!(index.endpoint("id-a"), Some("b"));
        assert_eq!(index.key("id-b"), None);
        // An unsecured configuration drops the endpoint's identity.
        index.insert("b", &BootstrapConfig::default()).unwrap();
        assert_eq!(index.endpoint("id-a"), None);
        index.remove("a");
        assert!(index.is_empty());
    }

    #[test]
    fn indexed_store_refuses_a_taken_identity_and_keeps_the_store_unchanged() {
        let mut inner = MemoryConfigStore::new();
        inner.put("a", psk_config("id-a", b"key-a")).unwrap();
        // Stored before the check existed: the first endpoint keeps it.
        inner.put("z", psk_config("id-a", b"key-z")).unwrap();
        let mut store = IndexedConfigStore::new(Box::new(inner)).unwrap();
        let index = store.index();
        assert_eq!(lock(&index).endpoint("id-a"), Some("a"));
        let e = store.put("b", psk_config("id-a", b"k")).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"id-a\" is already used by endpoint \"a\""),
            "{e}"
        );
        assert_eq!(store.get("b").unwrap(), None);
        store.put("b", psk_config("id-b", b"key-b")).unwrap();
        assert_eq!(lock(&index).key("id-b"), Some(&b"key-b"[..]));
        assert!(store.remove("a").unwrap());
        assert_eq!(lock(&index).key("id-a"), None);
        store.put("b", psk_config("id-a", b"k2")).unwrap();
        assert_eq!(lock(&index).endpoint("id-a"), Some("b"));
    }
}
