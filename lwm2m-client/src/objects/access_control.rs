//! Access Control object (2): which LwM2M server may do what on which
//! object instance. The engine enforces it (see the
//! [engine documentation](crate::engine#access-control)); this object only
//! stores the instances.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use lwm2m_core::model::{ObjectModel, Resource, ResourceValue, Value};
use lwm2m_objects::access_control::v1_1 as ac;

use super::{as_int, fill_created, int, remove_instance};
use crate::object::{DmError, Object};

/// Access right bits of the ACL resource (TS Core 1.1 §E.1.3).
pub mod rights {
    /// Read, Observe, Discover, Write-Attributes.
    pub const READ: u16 = 1;
    /// Write.
    pub const WRITE: u16 = 2;
    /// Execute.
    pub const EXECUTE: u16 = 4;
    /// Delete.
    pub const DELETE: u16 = 8;
    /// Create (meaningful on the instance whose Object Instance ID is 65535).
    pub const CREATE: u16 = 16;
    /// Every right but Create: what an instance's owner gets without an ACL
    /// entry of its own.
    pub const FULL: u16 = READ | WRITE | EXECUTE | DELETE;
}

/// The Object Instance ID of the Access Control instance that governs
/// Create on its object.
pub const CREATE_INSTANCE: u16 = 65_535;

/// One Access Control instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclInstance {
    /// Object ID (resource 0).
    pub object_id: u16,
    /// Object Instance ID (resource 1); [`CREATE_INSTANCE`] for Create.
    pub instance_id: u16,
    /// ACL (resource 2): rights ([`rights`]) by Short Server ID; entry 0 is
    /// the default for servers without their own.
    pub acl: BTreeMap<u16, u16>,
    /// Access Control Owner (resource 3): a Short Server ID.
    pub owner: u16,
}

impl AclInstance {
    /// An instance for `/object_id/instance_id` owned by `owner`, no ACL entries.
    pub fn new(object_id: u16, instance_id: u16, owner: u16) -> AclInstance {
        AclInstance {
            object_id,
            instance_id,
            acl: BTreeMap::new(),
            owner,
        }
    }

    /// With rights `bits` for server `ssid` (0: the default).
    pub fn grant(mut self, ssid: u16, bits: u16) -> AclInstance {
        self.acl.insert(ssid, bits);
        self
    }
}

/// The Access Control object (version 1.1). A Bootstrap-Server writes it
/// freely; for LwM2M servers the engine allows only the owner of an
/// instance to read it and to write its ACL resource.
#[derive(Debug, Clone)]
pub struct AccessControl {
    model: ObjectModel,
    instances: BTreeMap<u16, AclInstance>,
}

impl Default for AccessControl {
    fn default() -> Self {
        AccessControl::new()
    }
}

impl AccessControl {
    /// No instances.
    pub fn new() -> AccessControl {
        AccessControl {
            model: ac::MODEL.to_model(),
            instances: BTreeMap::new(),
        }
    }

    /// Adds or replaces instance `id`.
    pub fn insert(&mut self, id: u16, instance: AclInstance) {
        self.instances.insert(id, instance);
    }

    /// With instance `instance` added at the lowest free id.
    pub fn with(mut self, instance: AclInstance) -> AccessControl {
        let id = (0..=u16::MAX - 1)
            .find(|i| !self.instances.contains_key(i))
            .unwrap_or(u16::MAX - 1);
        self.instances.insert(id, instance);
        self
    }

    /// Instance `id`.
    pub fn instance(&self, id: u16) -> Option<&AclInstance> {
        self.instances.get(&id)
    }

    /// The instance governing `/object_id/instance_id`.
    pub fn find(&self, object_id: u16, instance_id: u16) -> Option<&AclInstance> {
        self.instances
            .values()
            .find(|a| a.object_id == object_id && a.instance_id == instance_id)
    }
}

fn id16(v: &ResourceValue) -> Result<u16, DmError> {
    u16::try_from(as_int(v)?).map_err(|_| DmError::BadRequest)
}

impl Object for AccessControl {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        self.instances.keys().copied().collect()
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        let a = self.instances.get(&instance).ok_or(DmError::NotFound)?;
        Ok(match resource {
            ac::OBJECT_ID => int(i64::from(a.object_id)),
            ac::OBJECT_INSTANCE_ID => int(i64::from(a.instance_id)),
            ac::ACL => ResourceValue::Multiple(
                a.acl
                    .iter()
                    .map(|(&s, &bits)| (s, Value::Integer(i64::from(bits))))
                    .collect(),
            ),
            ac::ACCESS_CONTROL_OWNER => int(i64::from(a.owner)),
            _ => return Err(DmError::NotFound),
        })
    }

    fn write(&mut self, instance: u16, resource: u16, value: ResourceValue) -> Result<(), DmError> {
        let a = self.instances.get_mut(&instance).ok_or(DmError::NotFound)?;
        match resource {
            // Object ID and Object Instance ID are read-only for device
            // management: only a Bootstrap-Write (or the engine's Create)
            // gets here.
            ac::OBJECT_ID => {
                a.object_id = id16(&value)
                    .ok()
                    .filter(|&o| (1..=65_534).contains(&o))
                    .ok_or(DmError::BadRequest)?
            }
            ac::OBJECT_INSTANCE_ID => a.instance_id = id16(&value)?,
            ac::ACL => {
                let ResourceValue::Multiple(map) = value else {
                    return Err(DmError::BadRequest);
                };
                let mut acl = BTreeMap::new();
                for (ssid, v) in map {
                    let bits = id16(&ResourceValue::Single(v))?;
                    if bits > 31 {
                        return Err(DmError::BadRequest);
                    }
                    acl.insert(ssid, bits);
                }
                a.acl = acl;
            }
            ac::ACCESS_CONTROL_OWNER => a.owner = id16(&value)?,
            _ => return Err(DmError::NotFound),
        }
        Ok(())
    }

    fn create(&mut self, instance: u16, resources: Vec<Resource>) -> Result<(), DmError> {
        self.instances.insert(instance, AclInstance::new(0, 0, 0));
        fill_created(self, instance, resources, |o| {
            o.instances.remove(&instance);
        })
    }

    fn delete(&mut self, instance: u16) -> Result<(), DmError> {
        remove_instance(&mut self.instances, instance)
    }
}
