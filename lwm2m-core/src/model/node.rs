use alloc::collections::BTreeMap;

use super::{Path, Value};

/// The value of a resource: single, or a map of resource instances.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceValue {
    /// A single-instance resource.
    Single(Value),
    /// A multiple-instance resource, keyed by resource instance id.
    Multiple(BTreeMap<u16, Value>),
}

/// A resource with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Resource id.
    pub id: u16,
    /// Its value(s).
    pub value: ResourceValue,
}

impl Resource {
    /// A single-instance resource.
    pub fn single(id: u16, value: Value) -> Resource {
        Resource {
            id,
            value: ResourceValue::Single(value),
        }
    }

    /// A multiple-instance resource from `(instance id, value)` pairs.
    pub fn multiple(id: u16, values: impl IntoIterator<Item = (u16, Value)>) -> Resource {
        Resource {
            id,
            value: ResourceValue::Multiple(values.into_iter().collect()),
        }
    }
}

/// An object instance: its id and its resources keyed by resource id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instance {
    /// Object instance id.
    pub id: u16,
    /// Resources by id.
    pub resources: BTreeMap<u16, Resource>,
}

impl Instance {
    /// An instance holding `resources`.
    pub fn new(id: u16, resources: impl IntoIterator<Item = Resource>) -> Instance {
        Instance {
            id,
            resources: resources.into_iter().map(|r| (r.id, r)).collect(),
        }
    }
}

/// An object: its id and its instances keyed by instance id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectNode {
    /// Object id.
    pub id: u16,
    /// Instances by id.
    pub instances: BTreeMap<u16, Instance>,
}

/// What a Read returns or a Write carries at one path.
///
/// The node's depth matches the path it belongs to: an [`Node::Object`] for
/// `/O`, an [`Node::Instance`] for `/O/I`, a [`Node::Resource`] for `/O/I/R`
/// and a [`Node::ResourceInstance`] for `/O/I/R/RI`.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A whole object.
    Object(ObjectNode),
    /// One object instance.
    Instance(Instance),
    /// One resource (single or multiple).
    Resource(Resource),
    /// One resource instance.
    ResourceInstance {
        /// Resource instance id.
        id: u16,
        /// Its value.
        value: Value,
    },
}

/// A value at a path, with an optional timestamp, as carried by Send,
/// composite operations and notifications in SenML / LwM2M CBOR.
#[derive(Debug, Clone, PartialEq)]
pub struct TimestampedValue {
    /// Full path of the resource or resource instance.
    pub path: Path,
    /// The value.
    pub value: Value,
    /// Seconds since the Unix epoch (SenML allows fractions), if the record had one.
    pub time: Option<f64>,
}
