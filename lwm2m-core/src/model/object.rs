use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// The data type of a resource, as in the OMA DDF `<Type>` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// `String`
    String,
    /// `Integer`
    Integer,
    /// `Unsigned Integer`
    UnsignedInteger,
    /// `Float`
    Float,
    /// `Boolean`
    Boolean,
    /// `Opaque`
    Opaque,
    /// `Time`
    Time,
    /// `Objlnk`
    ObjLnk,
    /// `Corelnk`
    CoreLnk,
    /// Executable resources have no type (empty `<Type>`).
    None,
}

/// Operations a resource allows, as in the DDF `<Operations>` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operations {
    /// No operation (used by Security object resources, only bootstrap may touch them).
    None,
    /// `R`
    Read,
    /// `W`
    Write,
    /// `RW`
    ReadWrite,
    /// `E`
    Execute,
}

impl Operations {
    /// True for `R` and `RW`.
    pub fn readable(self) -> bool {
        matches!(self, Operations::Read | Operations::ReadWrite)
    }
    /// True for `W` and `RW`.
    pub fn writable(self) -> bool {
        matches!(self, Operations::Write | Operations::ReadWrite)
    }
    /// True for `E`.
    pub fn executable(self) -> bool {
        matches!(self, Operations::Execute)
    }
}

/// One resource definition of an object model.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceModel {
    /// Resource id.
    pub id: u16,
    /// Human-readable name.
    pub name: String,
    /// Allowed operations.
    pub operations: Operations,
    /// True for multiple-instance resources.
    pub multiple: bool,
    /// True if every instance must have it.
    pub mandatory: bool,
    /// Data type.
    pub resource_type: ResourceType,
    /// `<RangeEnumeration>` text, empty if none.
    pub range: String,
    /// `<Units>` text, empty if none.
    pub units: String,
    /// `<Description>` text.
    pub description: String,
}

/// An object definition (one OMA DDF file).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectModel {
    /// Object id.
    pub id: u16,
    /// Human-readable name.
    pub name: String,
    /// Object version, `"1.0"` when the DDF gives none.
    pub version: String,
    /// LwM2M version the object definition targets (`"1.0"`, `"1.1"`...).
    pub lwm2m_version: String,
    /// True if the object may have several instances.
    pub multiple: bool,
    /// True if every client must have it.
    pub mandatory: bool,
    /// `<Description1>` text.
    pub description: String,
    /// Resource definitions by id.
    pub resources: BTreeMap<u16, ResourceModel>,
}

impl ObjectModel {
    /// The resource definition with id `id`.
    pub fn resource(&self, id: u16) -> Option<&ResourceModel> {
        self.resources.get(&id)
    }

    /// Resource definitions in id order.
    pub fn resources(&self) -> Vec<&ResourceModel> {
        self.resources.values().collect()
    }
}

/// Where decoders look up object models. Implemented by the `objects`
/// crate's registry; [`NO_MODELS`] knows none (decoders then keep raw values).
pub trait ModelLookup {
    /// The model of object `id`, if known.
    fn object(&self, id: u16) -> Option<&ObjectModel>;

    /// The model of resource `resource` of object `object`, if known.
    fn resource(&self, object: u16, resource: u16) -> Option<&ResourceModel> {
        self.object(object).and_then(|o| o.resource(resource))
    }
}

/// A [`ModelLookup`] that knows no object.
pub const NO_MODELS: NoModels = NoModels;

/// The type of [`NO_MODELS`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoModels;

impl ModelLookup for NoModels {
    fn object(&self, _id: u16) -> Option<&ObjectModel> {
        None
    }
}

impl ModelLookup for BTreeMap<u16, ObjectModel> {
    fn object(&self, id: u16) -> Option<&ObjectModel> {
        self.get(&id)
    }
}
