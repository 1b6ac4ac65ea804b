//! Ready objects: Security (0), Server (1), Access Control (2), Device (3), Connectivity
//! Monitoring (4), Firmware Update (5), Location (6) and Connectivity
//! Statistics (7).
//!
//! They live here rather than in `lwm2m-objects` because they implement this
//! crate's [`Object`] trait: `lwm2m-objects` holds the
//! models, which the server uses too, and must not depend on the client.
//! Host integration (clock, free memory) is behind the `std` feature; without
//! it the objects take those values from closures the integrator supplies.

mod access_control;
mod connectivity;
mod device;
mod firmware;
mod location;
mod security;
mod server;
mod statistics;

pub use access_control::{rights, AccessControl, AclInstance, CREATE_INSTANCE};
pub use connectivity::ConnectivityMonitoring;
pub use device::{Device, DeviceInfo};
pub use firmware::{
    DownloadCommand, DownloadHost, DownloadJob, Firmware, FirmwareHandle, ResumePolicy,
    UpdateDecision, UpdateOutcome, SAVE_EVERY,
};
pub use location::{horizontal_velocity, Fix, Location};
pub use security::{Security, SecurityInstance};
pub use server::{Server, ServerConfig};
pub use statistics::{ConnectivityStatistics, TrafficCounters};

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use lwm2m_core::model::{Resource, ResourceValue, Value};

use crate::object::{DmError, Object};

/// The second half of a Create: writes `resources` into `instance`, which
/// the caller just inserted with its defaults, and calls `undo` (removing
/// it) if one of them is refused.
pub(crate) fn fill_created<O: Object>(
    object: &mut O,
    instance: u16,
    resources: Vec<Resource>,
    undo: impl FnOnce(&mut O),
) -> Result<(), DmError> {
    for r in resources {
        if let Err(e) = object.write(instance, r.id, r.value) {
            undo(object);
            return Err(e);
        }
    }
    Ok(())
}

/// Delete of an instance kept in a map.
pub(crate) fn remove_instance<T>(
    instances: &mut BTreeMap<u16, T>,
    instance: u16,
) -> Result<(), DmError> {
    instances
        .remove(&instance)
        .map(|_| ())
        .ok_or(DmError::NotFound)
}

/// A single string value.
pub(crate) fn string(s: &str) -> ResourceValue {
    ResourceValue::Single(Value::String(String::from(s)))
}

/// A single integer value.
pub(crate) fn int(v: i64) -> ResourceValue {
    ResourceValue::Single(Value::Integer(v))
}

/// The integer in a written value (Integer or Unsigned Integer).
pub(crate) fn as_int(v: &ResourceValue) -> Result<i64, DmError> {
    match v {
        ResourceValue::Single(Value::Integer(i)) => Ok(*i),
        ResourceValue::Single(Value::UnsignedInteger(u)) => {
            i64::try_from(*u).map_err(|_| DmError::BadRequest)
        }
        _ => Err(DmError::BadRequest),
    }
}

/// The string in a written value.
pub(crate) fn as_string(v: ResourceValue) -> Result<String, DmError> {
    match v {
        ResourceValue::Single(Value::String(s)) => Ok(s),
        _ => Err(DmError::BadRequest),
    }
}
