//! Hand-made object models for the format modules' unit tests. Every
//! resource is read-write with an empty name: the codecs look only at ids,
//! types and multiplicity.

use alloc::collections::BTreeMap;
use alloc::string::String;

use crate::model::{ObjectModel, Operations, ResourceModel, ResourceType};

/// An object model with resources given as `(id, type, multiple)`.
pub(crate) fn object(
    id: u16,
    multiple: bool,
    resources: &[(u16, ResourceType, bool)],
) -> ObjectModel {
    ObjectModel {
        id,
        name: String::new(),
        version: "1.0".into(),
        lwm2m_version: "1.1".into(),
        multiple,
        mandatory: false,
        description: String::new(),
        resources: resources
            .iter()
            .map(|&(rid, resource_type, multiple)| {
                let model = ResourceModel {
                    id: rid,
                    name: String::new(),
                    operations: Operations::ReadWrite,
                    multiple,
                    mandatory: false,
                    resource_type,
                    range: String::new(),
                    units: String::new(),
                    description: String::new(),
                };
                (rid, model)
            })
            .collect(),
    }
}

/// A model registry of these objects, by id.
pub(crate) fn registry(
    objects: impl IntoIterator<Item = ObjectModel>,
) -> BTreeMap<u16, ObjectModel> {
    objects.into_iter().map(|o| (o.id, o)).collect()
}
