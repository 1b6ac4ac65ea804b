//! `'static` object tables, the form the generated models take.
//!
//! The generator writes [`StaticObject`]s (plain data, no allocation, so they
//! sit in read-only memory on small targets); [`StaticObject::to_model`] turns
//! one into the owned [`ObjectModel`] the rest of the stack uses. The registry
//! does that once, when it is built.

use alloc::collections::BTreeMap;
use alloc::string::ToString;

use lwm2m_core::model::{ObjectModel, Operations, ResourceModel, ResourceType};

/// One resource definition, as static data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StaticResource {
    /// Resource id.
    pub id: u16,
    /// `<Name>`.
    pub name: &'static str,
    /// `<Operations>`.
    pub operations: Operations,
    /// `<MultipleInstances>` is `Multiple`.
    pub multiple: bool,
    /// `<Mandatory>` is `Mandatory`.
    pub mandatory: bool,
    /// `<Type>`.
    pub resource_type: ResourceType,
    /// `<RangeEnumeration>`, empty if none.
    pub range: &'static str,
    /// `<Units>`, empty if none.
    pub units: &'static str,
    /// `<Description>`.
    pub description: &'static str,
}

/// One object definition (one DDF `<Object>`), as static data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StaticObject {
    /// `<ObjectID>`.
    pub id: u16,
    /// `<Name>`.
    pub name: &'static str,
    /// `<ObjectVersion>` (`"1.0"` when the DDF has none).
    pub version: &'static str,
    /// `<LWM2MVersion>` (`"1.0"` when the DDF has none).
    pub lwm2m_version: &'static str,
    /// `<MultipleInstances>` is `Multiple`.
    pub multiple: bool,
    /// `<Mandatory>` is `Mandatory`.
    pub mandatory: bool,
    /// `<Description1>`.
    pub description: &'static str,
    /// Resource definitions, sorted by id.
    pub resources: &'static [StaticResource],
}

impl StaticResource {
    /// The owned model of this resource.
    pub fn to_model(&self) -> ResourceModel {
        ResourceModel {
            id: self.id,
            name: self.name.to_string(),
            operations: self.operations,
            multiple: self.multiple,
            mandatory: self.mandatory,
            resource_type: self.resource_type,
            range: self.range.to_string(),
            units: self.units.to_string(),
            description: self.description.to_string(),
        }
    }
}

impl StaticObject {
    /// The owned model of this object.
    pub fn to_model(&self) -> ObjectModel {
        let resources: BTreeMap<u16, ResourceModel> = self
            .resources
            .iter()
            .map(|r| (r.id, r.to_model()))
            .collect();
        ObjectModel {
            id: self.id,
            name: self.name.to_string(),
            version: self.version.to_string(),
            lwm2m_version: self.lwm2m_version.to_string(),
            multiple: self.multiple,
            mandatory: self.mandatory,
            description: self.description.to_string(),
            resources,
        }
    }

    /// The resource definition with id `id`.
    pub fn resource(&self, id: u16) -> Option<&'static StaticResource> {
        // The generator sorts resources by id.
        let resources: &'static [StaticResource] = self.resources;
        resources
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .and_then(|i| resources.get(i))
    }
}
