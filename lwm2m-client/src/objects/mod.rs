//! Ready objects: Security (0), Server (1), Device (3), Connectivity
//! Monitoring (4), Firmware Update (5), Location (6) and Connectivity
//! Statistics (7).
//!
//! They live here rather than in `lwm2m-objects` because they implement this
//! crate's [`Object`](crate::object::Object) trait: `lwm2m-objects` holds the
//! models, which the server uses too, and must not depend on the client.
//! Host integration (clock, free memory) is behind the `std` feature; without
//! it the objects take those values from closures the integrator supplies.

mod connectivity;
mod device;
mod firmware;
mod location;
mod security;
mod server;
mod statistics;

pub use connectivity::ConnectivityMonitoring;
pub use device::{Device, DeviceInfo};
pub use firmware::{
    DownloadCommand, DownloadHost, DownloadJob, Firmware, FirmwareHandle, ResumePolicy,
    UpdateDecision, UpdateOutcome, SAVE_EVERY,
};
pub use location::{horizontal_velocity, Fix, Location};
pub use security::Security;
pub use server::{Server, ServerConfig};
pub use statistics::{ConnectivityStatistics, TrafficCounters};

use alloc::string::String;
use lwm2m_core::model::{ResourceValue, Value};

use crate::object::DmError;

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
