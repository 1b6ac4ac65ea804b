//! Device object (3).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use lwm2m_core::model::{ObjectModel, ResourceValue, Value};
use lwm2m_objects::device::v1_1 as dev;

use super::{as_string, int, string};
use crate::object::{DmError, Object};

/// The fixed identity of a device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// Manufacturer (resource 0).
    pub manufacturer: String,
    /// Model Number (resource 1).
    pub model_number: String,
    /// Serial Number (resource 2).
    pub serial_number: String,
    /// Firmware Version (resource 3).
    pub firmware_version: String,
    /// Supported Binding and Modes (resource 16), e.g. `U`.
    pub supported_binding: String,
}

type Hook = Box<dyn FnMut()>;
type Source = Box<dyn Fn() -> Option<i64>>;

/// The Device object (version 1.1) with one instance (0).
///
/// Always present: 0–3 from [`DeviceInfo`], Reboot (4), Error Code (11),
/// Reset Error Code (12), UTC Offset (14), Timezone (15), Supported Binding
/// (16). Present when a source or hook is set: Factory Reset (5), Memory
/// Free (10), Current Time (13). Reboot and Factory Reset call hooks, which
/// should *schedule* the action: the engine still has to send the 2.04.
///
/// ```
/// use lwm2m_client::objects::{Device, DeviceInfo};
/// use lwm2m_client::Object;
/// use std::{cell::Cell, rc::Rc};
/// let reboots = Rc::new(Cell::new(0));
/// let r = reboots.clone();
/// let info = DeviceInfo { manufacturer: "ACME".into(), ..DeviceInfo::default() };
/// let mut device = Device::new(info).on_reboot(move || r.set(r.get() + 1));
/// device.execute(0, 4, "").unwrap();
/// assert_eq!(reboots.get(), 1);
/// ```
pub struct Device {
    model: ObjectModel,
    info: DeviceInfo,
    error_codes: Vec<i64>,
    utc_offset: String,
    timezone: String,
    reboot: Option<Hook>,
    factory_reset: Option<Hook>,
    clock: Option<Source>,
    /// Seconds added to the clock after a write of Current Time.
    clock_offset: i64,
    memory_free: Option<Source>,
    /// Firmware Version (3) from here instead of [`DeviceInfo`].
    firmware_version: Option<Box<dyn Fn() -> String>>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("info", &self.info)
            .field("error_codes", &self.error_codes)
            .finish_non_exhaustive()
    }
}

/// Error Code 0: "No error".
const NO_ERROR: i64 = 0;

impl Device {
    /// A device with this identity, no hooks and no host sources.
    pub fn new(info: DeviceInfo) -> Device {
        Device {
            model: dev::MODEL.to_model(),
            info,
            error_codes: vec![NO_ERROR],
            utc_offset: String::new(),
            timezone: String::new(),
            reboot: None,
            factory_reset: None,
            clock: None,
            clock_offset: 0,
            memory_free: None,
            firmware_version: None,
        }
    }

    /// Firmware Version (3) from `source` (a device whose firmware a
    /// Firmware Update replaces reports the new version) instead of
    /// [`DeviceInfo::firmware_version`].
    pub fn with_firmware_version(mut self, source: impl Fn() -> String + 'static) -> Device {
        self.firmware_version = Some(Box::new(source));
        self
    }

    /// Calls `hook` when the server executes Reboot.
    pub fn on_reboot(mut self, hook: impl FnMut() + 'static) -> Device {
        self.reboot = Some(Box::new(hook));
        self
    }

    /// Calls `hook` when the server executes Factory Reset (and lists the resource).
    pub fn on_factory_reset(mut self, hook: impl FnMut() + 'static) -> Device {
        self.factory_reset = Some(Box::new(hook));
        self
    }

    /// Current Time (13) from `clock`, in seconds since the Unix epoch.
    pub fn with_clock(mut self, clock: impl Fn() -> Option<i64> + 'static) -> Device {
        self.clock = Some(Box::new(clock));
        self
    }

    /// Memory Free (10) from `source`, in KiB.
    pub fn with_memory_free(mut self, source: impl Fn() -> Option<i64> + 'static) -> Device {
        self.memory_free = Some(Box::new(source));
        self
    }

    /// Current Time from the system clock and Memory Free from
    /// `/proc/meminfo` (MemAvailable) where the host has it.
    #[cfg(feature = "std")]
    pub fn with_host_sources(self) -> Device {
        self.with_clock(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok())
        })
        .with_memory_free(host_memory_free_kib)
    }

    /// Replaces the Error Code list (an empty list reads as `[0]`, no error).
    pub fn set_error_codes(&mut self, codes: Vec<i64>) {
        self.error_codes = if codes.is_empty() {
            vec![NO_ERROR]
        } else {
            codes
        };
    }

    /// The identity.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }
}

/// MemAvailable from `/proc/meminfo`, in KiB.
#[cfg(feature = "std")]
fn host_memory_free_kib() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Object for Device {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        vec![0]
    }

    fn resources(&self, _instance: u16) -> Vec<u16> {
        let mut r = vec![
            dev::MANUFACTURER,
            dev::MODEL_NUMBER,
            dev::SERIAL_NUMBER,
            dev::FIRMWARE_VERSION,
            dev::REBOOT,
        ];
        if self.factory_reset.is_some() {
            r.push(dev::FACTORY_RESET);
        }
        if self.memory_free.is_some() {
            r.push(dev::MEMORY_FREE);
        }
        r.extend([dev::ERROR_CODE, dev::RESET_ERROR_CODE]);
        if self.clock.is_some() {
            r.push(dev::CURRENT_TIME);
        }
        r.extend([
            dev::UTC_OFFSET,
            dev::TIMEZONE,
            dev::SUPPORTED_BINDING_AND_MODES,
        ]);
        r
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        let i = &self.info;
        Ok(match resource {
            dev::MANUFACTURER => string(&i.manufacturer),
            dev::MODEL_NUMBER => string(&i.model_number),
            dev::SERIAL_NUMBER => string(&i.serial_number),
            dev::FIRMWARE_VERSION => match &self.firmware_version {
                Some(source) => string(&source()),
                None => string(&i.firmware_version),
            },
            dev::MEMORY_FREE => {
                let source = self.memory_free.as_ref().ok_or(DmError::NotFound)?;
                int(source().ok_or(DmError::Internal)?)
            }
            dev::ERROR_CODE => ResourceValue::Multiple(
                (0u16..)
                    .zip(self.error_codes.iter().map(|c| Value::Integer(*c)))
                    .collect(),
            ),
            dev::CURRENT_TIME => {
                let clock = self.clock.as_ref().ok_or(DmError::NotFound)?;
                let now = clock().ok_or(DmError::Internal)?;
                ResourceValue::Single(Value::Time(now.saturating_add(self.clock_offset)))
            }
            dev::UTC_OFFSET => string(&self.utc_offset),
            dev::TIMEZONE => string(&self.timezone),
            dev::SUPPORTED_BINDING_AND_MODES => string(&i.supported_binding),
            _ => return Err(DmError::NotFound),
        })
    }

    fn write(&mut self, instance: u16, resource: u16, value: ResourceValue) -> Result<(), DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        match resource {
            dev::CURRENT_TIME => {
                let clock = self.clock.as_ref().ok_or(DmError::NotFound)?;
                let written = match value {
                    ResourceValue::Single(Value::Time(t) | Value::Integer(t)) => t,
                    _ => return Err(DmError::BadRequest),
                };
                let now = clock().ok_or(DmError::Internal)?;
                self.clock_offset = written.saturating_sub(now);
            }
            dev::UTC_OFFSET => self.utc_offset = as_string(value)?,
            dev::TIMEZONE => self.timezone = as_string(value)?,
            _ => return Err(DmError::MethodNotAllowed),
        }
        Ok(())
    }

    fn execute(&mut self, instance: u16, resource: u16, _args: &str) -> Result<(), DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        let hook = match resource {
            dev::REBOOT => self.reboot.as_mut(),
            dev::FACTORY_RESET => self.factory_reset.as_mut(),
            dev::RESET_ERROR_CODE => {
                self.error_codes = vec![NO_ERROR];
                return Ok(());
            }
            _ => return Err(DmError::MethodNotAllowed),
        };
        // Reboot is mandatory in the model, but a device without a way to
        // reboot must not pretend it did.
        let hook = hook.ok_or(DmError::MethodNotAllowed)?;
        hook();
        Ok(())
    }
}
