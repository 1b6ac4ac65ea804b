//! Server object (1): one instance with the registration parameters.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use lwm2m_core::model::{ObjectModel, Resource, ResourceValue, Value};
use lwm2m_objects::server::v1_1 as srv;

use super::{as_int, as_string, fill_created, int, remove_instance, string};
use crate::object::{DmError, Object};

/// The values of the Server object instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Short Server ID (resource 0).
    pub short_server_id: u16,
    /// Lifetime in seconds (resource 1).
    pub lifetime: u32,
    /// Default Minimum Period in seconds (resource 2), if set.
    pub default_pmin: Option<u32>,
    /// Default Maximum Period in seconds (resource 3), if set.
    pub default_pmax: Option<u32>,
    /// Disable Timeout in seconds (resource 5, default 86400): how long
    /// the account stays disabled after an Execute of Disable (4).
    pub disable_timeout: u32,
    /// Notification Storing When Disabled or Offline (resource 6): when
    /// set, notifications that come due while the server is disabled or
    /// unreachable are kept (the newest per observation) and sent once it
    /// is registered again; otherwise they are dropped.
    pub notification_storing: bool,
    /// Binding (resource 7).
    pub binding: String,
    /// Mute Send (resource 23): the client does not use Send while set.
    pub mute_send: bool,
    /// Bootstrap on Registration Failure (resource 16, default true): when
    /// the registration retry schedule is exhausted, the client bootstraps
    /// (if it has a Bootstrap-Server account) instead of giving up.
    pub bootstrap_on_registration_failure: bool,
    /// Registration Priority Order (resource 13): lower values register
    /// first; servers without one register after those that have one.
    pub registration_priority: Option<u32>,
    /// Initial Registration Delay Timer in seconds (resource 14): the wait
    /// before Register, counted from when the previous server in the
    /// registration order completed.
    pub initial_registration_delay: Option<u32>,
    /// Registration Failure Block (resource 15): while registration with
    /// this server fails, the servers after it in the order wait.
    pub registration_failure_block: Option<bool>,
    /// Communication Retry Count (resource 17); `None`: the client's
    /// configured [`RetryPolicy`](crate::engine::RetryPolicy).
    pub communication_retry_count: Option<u32>,
    /// Communication Retry Timer in seconds (resource 18).
    pub communication_retry_timer: Option<u32>,
    /// Communication Sequence Delay Timer in seconds (resource 19).
    pub communication_sequence_delay: Option<u32>,
    /// Communication Sequence Retry Count (resource 20).
    pub communication_sequence_retry_count: Option<u32>,
}

impl ServerConfig {
    /// Short server id 1, the given lifetime, no default periods, binding
    /// `U`, Disable Timeout 86400 s, Notification Storing off (the TS
    /// gives resource 6 no default; off keeps a new registration free of
    /// old observations).
    pub fn new(lifetime: u32) -> ServerConfig {
        ServerConfig {
            short_server_id: 1,
            lifetime,
            default_pmin: None,
            default_pmax: None,
            disable_timeout: 86_400,
            notification_storing: false,
            binding: String::from("U"),
            mute_send: false,
            bootstrap_on_registration_failure: true,
            registration_priority: None,
            initial_registration_delay: None,
            registration_failure_block: None,
            communication_retry_count: None,
            communication_retry_timer: None,
            communication_sequence_delay: None,
            communication_sequence_retry_count: None,
        }
    }
}

/// The Server object (version 1.1): one instance per LwM2M server account.
///
/// Writable: lifetime, default periods, notification storing, binding, Mute
/// Send (the
/// engine sends an Update with the new lifetime after a lifetime write).
/// Executable: Disable (4), Registration Update Trigger (8) and
/// Bootstrap-Request Trigger (9), which the engine carries out (a
/// De-register and a Register after Disable Timeout (5), an Update, a
/// client-initiated bootstrap). Device management cannot write the Short Server ID (the model
/// makes it read-only); a Bootstrap-Server can, and can create and delete
/// instances.
#[derive(Debug, Clone)]
pub struct Server {
    model: ObjectModel,
    instances: BTreeMap<u16, ServerConfig>,
}

impl Server {
    /// The Server object with instance 0 holding `config`.
    pub fn new(config: ServerConfig) -> Server {
        let mut s = Server::empty();
        s.instances.insert(0, config);
        s
    }

    /// No instances (a client that bootstraps first).
    pub fn empty() -> Server {
        Server {
            model: srv::MODEL.to_model(),
            instances: BTreeMap::new(),
        }
    }

    /// Adds or replaces instance `id` (one per LwM2M server account).
    pub fn insert(&mut self, id: u16, config: ServerConfig) {
        self.instances.insert(id, config);
    }

    /// The values of instance `id`.
    pub fn instance(&self, id: u16) -> Option<&ServerConfig> {
        self.instances.get(&id)
    }
}

/// An optional unsigned resource: absent reads as 4.04.
fn unsigned(v: Option<u32>) -> Result<ResourceValue, DmError> {
    Ok(int(i64::from(v.ok_or(DmError::NotFound)?)))
}

fn period(v: &ResourceValue) -> Result<u32, DmError> {
    u32::try_from(as_int(v)?).map_err(|_| DmError::BadRequest)
}

impl Object for Server {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        self.instances.keys().copied().collect()
    }

    fn resources(&self, instance: u16) -> Vec<u16> {
        let mut r = vec![srv::SHORT_SERVER_ID, srv::LIFETIME];
        let Some(c) = self.instances.get(&instance) else {
            return r;
        };
        if c.default_pmin.is_some() {
            r.push(srv::DEFAULT_MINIMUM_PERIOD);
        }
        if c.default_pmax.is_some() {
            r.push(srv::DEFAULT_MAXIMUM_PERIOD);
        }
        r.extend([
            srv::DISABLE,
            srv::DISABLE_TIMEOUT,
            srv::NOTIFICATION_STORING_WHEN_DISABLED_OR_OFFLINE,
            srv::BINDING,
            srv::REGISTRATION_UPDATE_TRIGGER,
            srv::BOOTSTRAP_REQUEST_TRIGGER,
        ]);
        for (id, set) in [
            (
                srv::REGISTRATION_PRIORITY_ORDER,
                c.registration_priority.is_some(),
            ),
            (
                srv::INITIAL_REGISTRATION_DELAY_TIMER,
                c.initial_registration_delay.is_some(),
            ),
            (
                srv::REGISTRATION_FAILURE_BLOCK,
                c.registration_failure_block.is_some(),
            ),
        ] {
            if set {
                r.push(id);
            }
        }
        r.push(srv::BOOTSTRAP_ON_REGISTRATION_FAILURE);
        for (id, v) in [
            (srv::COMMUNICATION_RETRY_COUNT, c.communication_retry_count),
            (srv::COMMUNICATION_RETRY_TIMER, c.communication_retry_timer),
            (
                srv::COMMUNICATION_SEQUENCE_DELAY_TIMER,
                c.communication_sequence_delay,
            ),
            (
                srv::COMMUNICATION_SEQUENCE_RETRY_COUNT,
                c.communication_sequence_retry_count,
            ),
        ] {
            if v.is_some() {
                r.push(id);
            }
        }
        r.push(srv::MUTE_SEND);
        r
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        let c = self.instances.get(&instance).ok_or(DmError::NotFound)?;
        Ok(match resource {
            srv::SHORT_SERVER_ID => int(i64::from(c.short_server_id)),
            srv::LIFETIME => int(i64::from(c.lifetime)),
            srv::DEFAULT_MINIMUM_PERIOD => int(i64::from(c.default_pmin.ok_or(DmError::NotFound)?)),
            srv::DEFAULT_MAXIMUM_PERIOD => int(i64::from(c.default_pmax.ok_or(DmError::NotFound)?)),
            srv::NOTIFICATION_STORING_WHEN_DISABLED_OR_OFFLINE => {
                ResourceValue::Single(Value::Boolean(c.notification_storing))
            }
            srv::DISABLE_TIMEOUT => int(i64::from(c.disable_timeout)),
            srv::BINDING => string(&c.binding),
            srv::MUTE_SEND => ResourceValue::Single(Value::Boolean(c.mute_send)),
            srv::BOOTSTRAP_ON_REGISTRATION_FAILURE => {
                ResourceValue::Single(Value::Boolean(c.bootstrap_on_registration_failure))
            }
            srv::REGISTRATION_PRIORITY_ORDER => unsigned(c.registration_priority)?,
            srv::INITIAL_REGISTRATION_DELAY_TIMER => unsigned(c.initial_registration_delay)?,
            srv::REGISTRATION_FAILURE_BLOCK => ResourceValue::Single(Value::Boolean(
                c.registration_failure_block.ok_or(DmError::NotFound)?,
            )),
            srv::COMMUNICATION_RETRY_COUNT => unsigned(c.communication_retry_count)?,
            srv::COMMUNICATION_RETRY_TIMER => unsigned(c.communication_retry_timer)?,
            srv::COMMUNICATION_SEQUENCE_DELAY_TIMER => unsigned(c.communication_sequence_delay)?,
            srv::COMMUNICATION_SEQUENCE_RETRY_COUNT => {
                unsigned(c.communication_sequence_retry_count)?
            }
            _ => return Err(DmError::NotFound),
        })
    }

    fn write(&mut self, instance: u16, resource: u16, value: ResourceValue) -> Result<(), DmError> {
        let c = self.instances.get_mut(&instance).ok_or(DmError::NotFound)?;
        match resource {
            // Only a Bootstrap-Write gets here (the model makes it R).
            srv::SHORT_SERVER_ID => {
                c.short_server_id = u16::try_from(as_int(&value)?)
                    .ok()
                    .filter(|&s| (1..=65534).contains(&s))
                    .ok_or(DmError::BadRequest)?
            }
            srv::LIFETIME => {
                let lt = period(&value)?;
                // A zero lifetime would make the registration expire at once.
                if lt == 0 {
                    return Err(DmError::BadRequest);
                }
                c.lifetime = lt;
            }
            srv::DEFAULT_MINIMUM_PERIOD => c.default_pmin = Some(period(&value)?),
            srv::DEFAULT_MAXIMUM_PERIOD => c.default_pmax = Some(period(&value)?),
            srv::DISABLE_TIMEOUT => c.disable_timeout = period(&value)?,
            srv::NOTIFICATION_STORING_WHEN_DISABLED_OR_OFFLINE => match value {
                ResourceValue::Single(Value::Boolean(b)) => c.notification_storing = b,
                _ => return Err(DmError::BadRequest),
            },
            srv::BINDING => c.binding = as_string(value)?,
            srv::MUTE_SEND => match value {
                ResourceValue::Single(Value::Boolean(b)) => c.mute_send = b,
                _ => return Err(DmError::BadRequest),
            },
            srv::BOOTSTRAP_ON_REGISTRATION_FAILURE => match value {
                ResourceValue::Single(Value::Boolean(b)) => c.bootstrap_on_registration_failure = b,
                _ => return Err(DmError::BadRequest),
            },
            srv::REGISTRATION_PRIORITY_ORDER => c.registration_priority = Some(period(&value)?),
            srv::INITIAL_REGISTRATION_DELAY_TIMER => {
                c.initial_registration_delay = Some(period(&value)?)
            }
            srv::REGISTRATION_FAILURE_BLOCK => match value {
                ResourceValue::Single(Value::Boolean(b)) => c.registration_failure_block = Some(b),
                _ => return Err(DmError::BadRequest),
            },
            srv::COMMUNICATION_RETRY_COUNT => c.communication_retry_count = Some(period(&value)?),
            srv::COMMUNICATION_RETRY_TIMER => c.communication_retry_timer = Some(period(&value)?),
            srv::COMMUNICATION_SEQUENCE_DELAY_TIMER => {
                c.communication_sequence_delay = Some(period(&value)?)
            }
            srv::COMMUNICATION_SEQUENCE_RETRY_COUNT => {
                c.communication_sequence_retry_count = Some(period(&value)?)
            }
            // Resources this object does not implement: accepted and
            // dropped for a Bootstrap-Write of a full instance.
            _ if self.model.resource(resource).is_some() => {}
            _ => return Err(DmError::NotFound),
        }
        Ok(())
    }

    fn execute(&mut self, instance: u16, resource: u16, _args: &str) -> Result<(), DmError> {
        if !self.instances.contains_key(&instance) {
            return Err(DmError::NotFound);
        }
        match resource {
            // The engine sends the Update, De-registers or bootstraps;
            // nothing to do here.
            srv::DISABLE | srv::REGISTRATION_UPDATE_TRIGGER | srv::BOOTSTRAP_REQUEST_TRIGGER => {
                Ok(())
            }
            _ => Err(DmError::MethodNotAllowed),
        }
    }

    fn create(&mut self, instance: u16, resources: Vec<Resource>) -> Result<(), DmError> {
        self.instances.insert(instance, ServerConfig::new(86_400));
        fill_created(self, instance, resources, |o| {
            o.instances.remove(&instance);
        })
    }

    fn delete(&mut self, instance: u16) -> Result<(), DmError> {
        remove_instance(&mut self.instances, instance)
    }
}
