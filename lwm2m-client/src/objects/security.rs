//! Security object (0): one instance describing the LwM2M server account.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use lwm2m_core::model::{ObjectModel, ResourceValue, Value};
use lwm2m_objects::security as sec;

use super::{int, string};
use crate::object::{DmError, Object};

/// Security mode 3: NoSec (the only mode this slice supports).
pub const MODE_NOSEC: i64 = 3;

/// The Security object with one instance (0) for the LwM2M server.
///
/// The engine never exposes it to device management (4.01 for every
/// request), as TS Core §E.1 requires; it exists so the configuration is in
/// the data model, where Bootstrap will later write it.
#[derive(Debug, Clone)]
pub struct Security {
    model: ObjectModel,
    server_uri: String,
    short_server_id: u16,
}

impl Security {
    /// A NoSec account for the server at `server_uri` (e.g.
    /// `coap://127.0.0.1:5683`) with short server id `short_server_id`.
    pub fn new(server_uri: &str, short_server_id: u16) -> Security {
        Security {
            model: sec::v1_1::MODEL.to_model(),
            server_uri: String::from(server_uri),
            short_server_id,
        }
    }

    /// The server URI.
    pub fn server_uri(&self) -> &str {
        &self.server_uri
    }
}

impl Object for Security {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        vec![0]
    }

    fn resources(&self, _instance: u16) -> Vec<u16> {
        vec![
            sec::v1_1::LWM2M_SERVER_URI,
            sec::v1_1::BOOTSTRAP_SERVER,
            sec::v1_1::SECURITY_MODE,
            sec::v1_1::PUBLIC_KEY_OR_IDENTITY,
            sec::v1_1::SERVER_PUBLIC_KEY,
            sec::v1_1::SECRET_KEY,
            sec::v1_1::SHORT_SERVER_ID,
        ]
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        Ok(match resource {
            sec::v1_1::LWM2M_SERVER_URI => string(&self.server_uri),
            sec::v1_1::BOOTSTRAP_SERVER => ResourceValue::Single(Value::Boolean(false)),
            sec::v1_1::SECURITY_MODE => int(MODE_NOSEC),
            sec::v1_1::PUBLIC_KEY_OR_IDENTITY
            | sec::v1_1::SERVER_PUBLIC_KEY
            | sec::v1_1::SECRET_KEY => ResourceValue::Single(Value::Opaque(Vec::new())),
            sec::v1_1::SHORT_SERVER_ID => int(i64::from(self.short_server_id)),
            _ => return Err(DmError::NotFound),
        })
    }
}
