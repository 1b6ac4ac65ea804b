//! Security object (0): the server accounts (LwM2M servers and the
//! Bootstrap-Server).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use lwm2m_core::model::{ObjectModel, Resource, ResourceValue, Value};
use lwm2m_objects::security::v1_1 as sec;

use super::{as_int, as_string, fill_created, int, remove_instance, string};
use crate::object::{DmError, Object};
use crate::security::{MODE_CERTIFICATE, MODE_PSK, MODE_RPK};

/// Security mode 3: NoSec.
pub const MODE_NOSEC: i64 = 3;

/// One Security object instance: one server account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityInstance {
    /// LwM2M Server URI (resource 0), e.g. `coap://192.0.2.1:5683`.
    pub server_uri: String,
    /// Bootstrap-Server (resource 1): this account is the Bootstrap-Server's.
    pub bootstrap_server: bool,
    /// Security Mode (resource 2).
    pub security_mode: i64,
    /// Public Key or Identity (resource 3).
    pub public_key_or_identity: Vec<u8>,
    /// Server Public Key (resource 4).
    pub server_public_key: Vec<u8>,
    /// Secret Key (resource 5).
    pub secret_key: Vec<u8>,
    /// Short Server ID (resource 10); absent for the Bootstrap-Server.
    pub short_server_id: Option<u16>,
    /// Client Hold Off Time in seconds (resource 11).
    pub client_hold_off_time: Option<i64>,
    /// Certificate Usage (resource 15); absent means 3 (domain-issued
    /// certificate).
    pub certificate_usage: Option<i64>,
}

impl SecurityInstance {
    /// A NoSec LwM2M server account.
    pub fn server(server_uri: &str, short_server_id: u16) -> SecurityInstance {
        SecurityInstance {
            server_uri: String::from(server_uri),
            bootstrap_server: false,
            security_mode: MODE_NOSEC,
            public_key_or_identity: Vec::new(),
            server_public_key: Vec::new(),
            secret_key: Vec::new(),
            short_server_id: Some(short_server_id),
            client_hold_off_time: None,
            certificate_usage: None,
        }
    }

    /// This account with PSK security (mode 0): `identity` (resource 3)
    /// and `key` (resource 5, raw bytes). For a `coaps://` URI.
    pub fn with_psk(self, identity: &[u8], key: &[u8]) -> SecurityInstance {
        SecurityInstance {
            security_mode: MODE_PSK,
            public_key_or_identity: identity.to_vec(),
            secret_key: key.to_vec(),
            ..self
        }
    }

    /// This account with certificate security (mode 2): the client's
    /// certificate and private key (DER, resources 3 and 5), the server's
    /// certificate or trust anchor (DER, resource 4) and the Certificate
    /// Usage (resource 15; `None` leaves it absent, which means 3).
    pub fn with_certificate(
        self,
        certificate: &[u8],
        private_key: &[u8],
        server_certificate: &[u8],
        usage: Option<i64>,
    ) -> SecurityInstance {
        SecurityInstance {
            security_mode: MODE_CERTIFICATE,
            public_key_or_identity: certificate.to_vec(),
            secret_key: private_key.to_vec(),
            server_public_key: server_certificate.to_vec(),
            certificate_usage: usage,
            ..self
        }
    }

    /// This account with raw public key security (mode 1): the client's
    /// public key and private key (resources 3 and 5: DER
    /// SubjectPublicKeyInfo and DER private key) and the server's public key
    /// (resource 4, DER SubjectPublicKeyInfo).
    pub fn with_raw_public_key(
        self,
        public_key: &[u8],
        private_key: &[u8],
        server_public_key: &[u8],
    ) -> SecurityInstance {
        SecurityInstance {
            security_mode: MODE_RPK,
            public_key_or_identity: public_key.to_vec(),
            secret_key: private_key.to_vec(),
            server_public_key: server_public_key.to_vec(),
            certificate_usage: None,
            ..self
        }
    }

    /// A NoSec Bootstrap-Server account.
    pub fn bootstrap(server_uri: &str) -> SecurityInstance {
        SecurityInstance {
            bootstrap_server: true,
            short_server_id: None,
            client_hold_off_time: Some(0),
            ..SecurityInstance::server(server_uri, 0)
        }
    }
}

/// The Security object.
///
/// The engine never exposes it to device management (4.01 for every
/// request), as TS Core §E.1 requires; the Bootstrap-Server writes it.
#[derive(Debug, Clone)]
pub struct Security {
    model: ObjectModel,
    instances: BTreeMap<u16, SecurityInstance>,
}

impl Security {
    /// One NoSec account (instance 0) for the LwM2M server at `server_uri`
    /// (e.g. `coap://127.0.0.1:5683`) with short server id `short_server_id`.
    pub fn new(server_uri: &str, short_server_id: u16) -> Security {
        let mut s = Security::empty();
        s.insert(0, SecurityInstance::server(server_uri, short_server_id));
        s
    }

    /// One Bootstrap-Server account (instance 0): the client bootstraps first.
    pub fn bootstrap(bootstrap_uri: &str) -> Security {
        let mut s = Security::empty();
        s.insert(0, SecurityInstance::bootstrap(bootstrap_uri));
        s
    }

    /// No accounts.
    pub fn empty() -> Security {
        Security {
            model: sec::MODEL.to_model(),
            instances: BTreeMap::new(),
        }
    }

    /// Adds or replaces instance `id`.
    pub fn insert(&mut self, id: u16, instance: SecurityInstance) {
        self.instances.insert(id, instance);
    }

    /// Instance `id`.
    pub fn instance(&self, id: u16) -> Option<&SecurityInstance> {
        self.instances.get(&id)
    }

    /// The server URI of instance 0, if any.
    pub fn server_uri(&self) -> Option<&str> {
        self.instances.get(&0).map(|i| i.server_uri.as_str())
    }
}

fn opaque(v: ResourceValue) -> Result<Vec<u8>, DmError> {
    match v {
        ResourceValue::Single(Value::Opaque(b)) => Ok(b),
        // Some servers send keys and identities as strings.
        ResourceValue::Single(Value::String(s)) => Ok(s.into_bytes()),
        _ => Err(DmError::BadRequest),
    }
}

impl Object for Security {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        self.instances.keys().copied().collect()
    }

    fn resources(&self, instance: u16) -> Vec<u16> {
        let mut r = alloc::vec![
            sec::LWM2M_SERVER_URI,
            sec::BOOTSTRAP_SERVER,
            sec::SECURITY_MODE,
            sec::PUBLIC_KEY_OR_IDENTITY,
            sec::SERVER_PUBLIC_KEY,
            sec::SECRET_KEY,
        ];
        if let Some(i) = self.instances.get(&instance) {
            if i.short_server_id.is_some() {
                r.push(sec::SHORT_SERVER_ID);
            }
            if i.client_hold_off_time.is_some() {
                r.push(sec::CLIENT_HOLD_OFF_TIME);
            }
            if i.certificate_usage.is_some() {
                r.push(sec::CERTIFICATE_USAGE);
            }
        }
        r
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        let i = self.instances.get(&instance).ok_or(DmError::NotFound)?;
        Ok(match resource {
            sec::LWM2M_SERVER_URI => string(&i.server_uri),
            sec::BOOTSTRAP_SERVER => ResourceValue::Single(Value::Boolean(i.bootstrap_server)),
            sec::SECURITY_MODE => int(i.security_mode),
            sec::PUBLIC_KEY_OR_IDENTITY => {
                ResourceValue::Single(Value::Opaque(i.public_key_or_identity.clone()))
            }
            sec::SERVER_PUBLIC_KEY => {
                ResourceValue::Single(Value::Opaque(i.server_public_key.clone()))
            }
            sec::SECRET_KEY => ResourceValue::Single(Value::Opaque(i.secret_key.clone())),
            sec::SHORT_SERVER_ID => int(i64::from(i.short_server_id.ok_or(DmError::NotFound)?)),
            sec::CLIENT_HOLD_OFF_TIME => int(i.client_hold_off_time.ok_or(DmError::NotFound)?),
            sec::CERTIFICATE_USAGE => int(i.certificate_usage.ok_or(DmError::NotFound)?),
            _ => return Err(DmError::NotFound),
        })
    }

    /// Every resource is writable here: only the Bootstrap-Server reaches
    /// this object (the engine answers 4.01 to device management).
    fn write(&mut self, instance: u16, resource: u16, value: ResourceValue) -> Result<(), DmError> {
        let i = self.instances.get_mut(&instance).ok_or(DmError::NotFound)?;
        match resource {
            sec::LWM2M_SERVER_URI => i.server_uri = as_string(value)?,
            sec::BOOTSTRAP_SERVER => match value {
                ResourceValue::Single(Value::Boolean(b)) => i.bootstrap_server = b,
                _ => return Err(DmError::BadRequest),
            },
            sec::SECURITY_MODE => i.security_mode = as_int(&value)?,
            sec::PUBLIC_KEY_OR_IDENTITY => i.public_key_or_identity = opaque(value)?,
            sec::SERVER_PUBLIC_KEY => i.server_public_key = opaque(value)?,
            sec::SECRET_KEY => i.secret_key = opaque(value)?,
            sec::SHORT_SERVER_ID => {
                i.short_server_id =
                    Some(u16::try_from(as_int(&value)?).map_err(|_| DmError::BadRequest)?)
            }
            sec::CLIENT_HOLD_OFF_TIME => i.client_hold_off_time = Some(as_int(&value)?),
            sec::CERTIFICATE_USAGE => i.certificate_usage = Some(as_int(&value)?),
            // Resources this slice does not use (SMS, TLS options) are
            // accepted and dropped so a Bootstrap-Write of a full instance
            // does not fail on them.
            _ if self.model.resource(resource).is_some() => {}
            _ => return Err(DmError::NotFound),
        }
        Ok(())
    }

    fn create(&mut self, instance: u16, resources: Vec<Resource>) -> Result<(), DmError> {
        let mut new = SecurityInstance::server("", 0);
        new.short_server_id = None;
        self.instances.insert(instance, new);
        fill_created(self, instance, resources, |o| {
            o.instances.remove(&instance);
        })
    }

    fn delete(&mut self, instance: u16) -> Result<(), DmError> {
        remove_instance(&mut self.instances, instance)
    }
}
