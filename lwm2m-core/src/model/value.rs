use alloc::string::String;
use alloc::vec::Vec;

use super::ResourceType;

/// An object link (`objlnk`): object id and instance id. `65535:65535` is the null link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjLnk {
    /// Object id.
    pub object: u16,
    /// Object instance id.
    pub instance: u16,
}

impl ObjLnk {
    /// The null object link, `65535:65535`.
    pub const NULL: ObjLnk = ObjLnk {
        object: u16::MAX,
        instance: u16::MAX,
    };
}

/// One typed LwM2M resource value.
///
/// ```
/// use lwm2m_core::model::{Value, ResourceType};
/// let v = Value::Integer(42);
/// assert_eq!(v.resource_type(), ResourceType::Integer);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Signed integer (the TS allows 8 bytes).
    Integer(i64),
    /// Unsigned integer (LwM2M 1.1).
    UnsignedInteger(u64),
    /// IEEE 754 float (4 or 8 bytes on the wire, held as f64).
    Float(f64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string.
    String(String),
    /// Raw bytes. Also what decoders produce when the model of a binary
    /// format's resource is unknown (raw TLV bytes, for example).
    Opaque(Vec<u8>),
    /// Time: seconds since the Unix epoch, signed.
    Time(i64),
    /// Object link.
    ObjLnk(ObjLnk),
    /// CoRE link (LwM2M 1.1): a link-format string.
    CoreLnk(String),
}

impl Value {
    /// The resource type this value carries.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Value::Integer(_) => ResourceType::Integer,
            Value::UnsignedInteger(_) => ResourceType::UnsignedInteger,
            Value::Float(_) => ResourceType::Float,
            Value::Boolean(_) => ResourceType::Boolean,
            Value::String(_) => ResourceType::String,
            Value::Opaque(_) => ResourceType::Opaque,
            Value::Time(_) => ResourceType::Time,
            Value::ObjLnk(_) => ResourceType::ObjLnk,
            Value::CoreLnk(_) => ResourceType::CoreLnk,
        }
    }
}
