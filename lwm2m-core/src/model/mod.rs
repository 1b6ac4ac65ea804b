//! The LwM2M data model: paths, values, nodes and object models.
//!
//! * [`Path`]: `/`, `/O`, `/O/I`, `/O/I/R`, `/O/I/R/RI`, depth part of the value.
//! * [`Value`]: one typed resource value.
//! * [`Node`]: what a Read returns or a Write carries at a path.
//! * [`ObjectModel`] / [`ResourceModel`]: the object definitions (from OMA DDF files).
//! * [`Attributes`]: notification attributes and properties (Write-Attributes, Discover).

mod attributes;
mod node;
mod object;
mod path;
mod value;

pub use attributes::{
    write_attributes, AttributeChange, AttributeError, AttributeName, AttributeUpdate, Attributes,
    Version, VersionError,
};
pub use node::{Instance, Node, ObjectNode, Resource, ResourceValue, TimestampedValue};
pub use object::{
    ModelLookup, NoModels, ObjectModel, Operations, ResourceModel, ResourceType, NO_MODELS,
};
pub use path::{Path, PathError, MAX_ID};
pub use value::{ObjLnk, Value};
