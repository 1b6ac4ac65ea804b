//! OMA LwM2M TLV: `application/vnd.oma.lwm2m+tlv`, content format 11542
//! (the pre-IANA number 1542 carries the same bytes and decodes identically).
//!
//! # Wire layout (LwM2M TS Core, TLV data format)
//!
//! Every element is `type | identifier | [length] | value`:
//!
//! * type byte, bits 7-6: what the identifier names: `00` object instance,
//!   `01` resource instance, `10` multiple resource, `11` resource with value;
//! * bit 5: identifier is 8 bits (`0`) or 16 bits (`1`);
//! * bits 4-3: length field of 0, 8, 16 or 24 bits; with `00` the length is
//!   bits 2-0 of the type byte (0..=7), otherwise bits 2-0 are ignored;
//! * the value: raw bytes for `01` and `11`, a sequence of TLVs for `00`
//!   (resources: `11`/`10`) and `10` (resource instances: `01`).
//!
//! So the format itself bounds nesting: object > object instance > multiple
//! resource > resource instance. A decoder never recurses further, and any
//! other nesting (a multiple resource inside a multiple resource, an object
//! instance inside one...) is a typed error.
//!
//! # Values
//!
//! | type | bytes |
//! | --- | --- |
//! | Integer, Time | 1, 2, 4 or 8 bytes, big-endian two's complement |
//! | Unsigned Integer | 1, 2, 4 or 8 bytes, big-endian |
//! | Float | 4 or 8 bytes, IEEE 754 big-endian |
//! | Boolean | 1 byte, `0` or `1` |
//! | String, Corelnk | UTF-8 |
//! | Opaque | raw |
//! | Objlnk | 4 bytes: object id then instance id, 16 bits each |
//!
//! The decoder rejects every other size (a 3-byte integer, a zero-length one,
//! a 3-byte float, a boolean `2`...) with [`FormatError::InvalidValue`].
//!
//! Encoding choices (the TS leaves them open):
//!
//! * integers, times and unsigned integers use the smallest of 1/2/4/8 bytes
//!   that holds the value, as Leshan and Anjay do;
//! * a float is written in 4 bytes when converting it to `f32` and back gives
//!   exactly the same value (infinities and `-0.0` included), otherwise in 8.
//!   This is Anjay's rule; Leshan always writes its `Double` values in 8 bytes.
//!   Both decode either size, so the shorter form costs nothing in interop and
//!   never loses a bit. NaN is written in 8 bytes (payload bits kept);
//! * an object instance read (`/O/I`) is written as its resource TLVs with no
//!   object instance wrapper, as in the TS example for `/3/0`; an object read
//!   (`/O`) wraps every instance in an object instance TLV, even for
//!   single-instance objects;
//! * TLVs are written in id order; a length under 8 goes in the type byte.
//!
//! # What the decoder accepts at each request path
//!
//! * `/O`: object instance TLVs. Some clients send the resources of a
//!   single-instance object directly; that is accepted (as instance 0) when
//!   the model says the object is single-instance.
//! * `/O/I`: resource TLVs, or one object instance TLV whose id is `I`
//!   wrapping them (both occur in the field).
//! * `/O/I/R`: one resource TLV (`11` or `10`) with id `R`, or a bare
//!   sequence of resource instance TLVs (`01`), taken as a multiple resource.
//! * `/O/I/R/RI`: one resource instance TLV with id `RI`.
//!
//! Values are typed with the model; a resource whose model is unknown keeps
//! its raw bytes as [`Value::Opaque`], and single vs multiple then comes from
//! the TLV types. When the model is known, a single TLV for a
//! multiple-instance resource (or the reverse) is an error. Repeated ids at
//! one level are an error rather than a silent overwrite.

use alloc::collections::btree_map::{BTreeMap, Entry};
use alloc::string::String;
use alloc::vec::Vec;

use super::FormatError;
use crate::model::{
    Instance, ModelLookup, Node, ObjLnk, ObjectNode, Path, Resource, ResourceModel, ResourceType,
    ResourceValue, Value, MAX_ID,
};

/// The longest value a TLV can carry: its length field has at most 24 bits.
pub const MAX_VALUE_LEN: usize = 0x00FF_FFFF;

/// What a TLV's identifier names (type byte bits 7-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ObjectInstance = 0,
    ResourceInstance = 1,
    MultipleResource = 2,
    ResourceValue = 3,
}

impl Kind {
    fn from_type_byte(b: u8) -> Kind {
        match b >> 6 {
            0 => Kind::ObjectInstance,
            1 => Kind::ResourceInstance,
            2 => Kind::MultipleResource,
            _ => Kind::ResourceValue,
        }
    }

    fn type_bits(self) -> u8 {
        (self as u8) << 6
    }
}

/// One parsed TLV, borrowing its value from the payload.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    kind: Kind,
    id: u16,
    value: &'a [u8],
    /// Offset of the type byte in the whole payload (for error reports).
    offset: usize,
    /// Offset of the first value byte in the whole payload.
    value_offset: usize,
}

/// Reads an `n`-byte big-endian unsigned number (`n` <= 3) at `pos`.
fn read_be(buf: &[u8], pos: usize, n: usize, base: usize) -> Result<u32, FormatError> {
    let bytes =
        pos.checked_add(n)
            .and_then(|end| buf.get(pos..end))
            .ok_or(FormatError::Truncated {
                offset: base.saturating_add(buf.len()),
            })?;
    Ok(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Parses the TLV starting at `pos` of `buf`; `buf` starts at byte `base` of
/// the payload. Returns it and the position just past it.
fn parse_one(buf: &[u8], pos: usize, base: usize) -> Result<(Tlv<'_>, usize), FormatError> {
    let offset = base.saturating_add(pos);
    let type_byte = *buf.get(pos).ok_or(FormatError::Truncated { offset })?;
    let kind = Kind::from_type_byte(type_byte);
    let mut p = pos + 1;

    let id_len = if type_byte & 0x20 != 0 { 2 } else { 1 };
    let id = read_be(buf, p, id_len, base)?;
    p += id_len;
    // 65535 is reserved by the TS; it can appear on the wire only as a 16-bit id.
    let id = u16::try_from(id)
        .ok()
        .filter(|&id| id <= MAX_ID)
        .ok_or(FormatError::InvalidPath)?;

    let len_bytes = usize::from((type_byte >> 3) & 0x03);
    let len = if len_bytes == 0 {
        usize::from(type_byte & 0x07)
    } else {
        let len = read_be(buf, p, len_bytes, base)?;
        p += len_bytes;
        usize::try_from(len).map_err(|_| FormatError::InvalidLength { offset })?
    };
    // Slice, never allocate, from the declared length: a peer may declare
    // 16 MiB and send 5 bytes.
    let end = p
        .checked_add(len)
        .ok_or(FormatError::InvalidLength { offset })?;
    let value = buf
        .get(p..end)
        .ok_or(FormatError::InvalidLength { offset })?;
    Ok((
        Tlv {
            kind,
            id,
            value,
            offset,
            value_offset: base.saturating_add(p),
        },
        end,
    ))
}

/// Parses the sequence of sibling TLVs that fills `buf` exactly.
fn parse_all(buf: &[u8], base: usize) -> Result<Vec<Tlv<'_>>, FormatError> {
    let mut tlvs = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let (tlv, next) = parse_one(buf, pos, base)?;
        tlvs.push(tlv);
        pos = next;
    }
    Ok(tlvs)
}

fn insert_unique<V>(
    map: &mut BTreeMap<u16, V>,
    id: u16,
    value: V,
    offset: usize,
    expected: &'static str,
) -> Result<(), FormatError> {
    match map.entry(id) {
        Entry::Occupied(_) => Err(FormatError::Syntax { offset, expected }),
        Entry::Vacant(slot) => {
            slot.insert(value);
            Ok(())
        }
    }
}

fn decode_int(raw: &[u8]) -> Result<i64, FormatError> {
    Ok(match *raw {
        [a] => i64::from(i8::from_be_bytes([a])),
        [a, b] => i64::from(i16::from_be_bytes([a, b])),
        [a, b, c, d] => i64::from(i32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => i64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => {
            return Err(FormatError::InvalidValue {
                what: "TLV integer/time must be 1, 2, 4 or 8 bytes",
            })
        }
    })
}

fn decode_uint(raw: &[u8]) -> Result<u64, FormatError> {
    Ok(match *raw {
        [a] => u64::from(a),
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => {
            return Err(FormatError::InvalidValue {
                what: "TLV unsigned integer must be 1, 2, 4 or 8 bytes",
            })
        }
    })
}

fn decode_float(raw: &[u8]) -> Result<f64, FormatError> {
    Ok(match *raw {
        [a, b, c, d] => f64::from(f32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => f64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => {
            return Err(FormatError::InvalidValue {
                what: "TLV float must be 4 or 8 bytes",
            })
        }
    })
}

fn decode_utf8(raw: &[u8]) -> Result<String, FormatError> {
    core::str::from_utf8(raw)
        .map(String::from)
        .map_err(|_| FormatError::InvalidUtf8)
}

/// Types the raw bytes of a resource (instance) value; `None` = model unknown.
fn decode_value(raw: &[u8], ty: Option<ResourceType>) -> Result<Value, FormatError> {
    let Some(ty) = ty else {
        return Ok(Value::Opaque(raw.to_vec()));
    };
    Ok(match ty {
        ResourceType::Integer => Value::Integer(decode_int(raw)?),
        ResourceType::Time => Value::Time(decode_int(raw)?),
        ResourceType::UnsignedInteger => Value::UnsignedInteger(decode_uint(raw)?),
        ResourceType::Float => Value::Float(decode_float(raw)?),
        ResourceType::Boolean => match raw {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => {
                return Err(FormatError::InvalidValue {
                    what: "TLV boolean must be one byte, 0 or 1",
                })
            }
        },
        ResourceType::String => Value::String(decode_utf8(raw)?),
        ResourceType::CoreLnk => Value::CoreLnk(decode_utf8(raw)?),
        ResourceType::ObjLnk => match *raw {
            [a, b, c, d] => Value::ObjLnk(ObjLnk {
                object: u16::from_be_bytes([a, b]),
                instance: u16::from_be_bytes([c, d]),
            }),
            _ => {
                return Err(FormatError::InvalidValue {
                    what: "TLV objlnk must be 4 bytes (object id, instance id)",
                })
            }
        },
        // Executable resources have no type; keep whatever was sent.
        ResourceType::Opaque | ResourceType::None => Value::Opaque(raw.to_vec()),
    })
}

/// Decodes a TLV payload that belongs to request path `path`.
///
/// The node returned has the depth of `path` (see the module docs for what is
/// accepted at each depth). Values are typed with `models`; unknown resources
/// keep their raw bytes as [`Value::Opaque`].
///
/// ```
/// use lwm2m_core::format::tlv;
/// use lwm2m_core::model::{Node, Path, Value, NO_MODELS};
/// // Resource 9 of /3/0 with the one-byte value 100.
/// let node = tlv::decode(&[0xC1, 0x09, 0x64], &Path::Resource(3, 0, 9), &NO_MODELS).unwrap();
/// let Node::Resource(r) = node else { panic!() };
/// assert_eq!(r.id, 9);
/// ```
pub fn decode(payload: &[u8], path: &Path, models: &dyn ModelLookup) -> Result<Node, FormatError> {
    let Some(object) = path.object_id() else {
        return Err(FormatError::NotRepresentable(NO_ROOT));
    };
    let top = parse_all(payload, 0)?;
    let d = Decoder { models, object };
    match *path {
        Path::Root => Err(FormatError::NotRepresentable(NO_ROOT)),
        Path::Object(o) => Ok(Node::Object(d.object(o, &top)?)),
        Path::Instance(_, i) => Ok(Node::Instance(d.instance_at_path(i, &top)?)),
        Path::Resource(_, _, r) => Ok(Node::Resource(d.resource_at_path(r, &top)?)),
        Path::ResourceInstance(_, _, r, ri) => d.resource_instance_at_path(r, ri, &top),
    }
}

const NO_ROOT: &str = "TLV carries no object ids, so it cannot carry the root path";

/// Decoding state shared by the levels: the models and the object id of the path.
struct Decoder<'m> {
    models: &'m dyn ModelLookup,
    object: u16,
}

impl Decoder<'_> {
    fn resource_model(&self, rid: u16) -> Option<&ResourceModel> {
        self.models.resource(self.object, rid)
    }

    fn object(&self, oid: u16, top: &[Tlv<'_>]) -> Result<ObjectNode, FormatError> {
        let mut instances = BTreeMap::new();
        if let Some(first) = top.first() {
            if matches!(first.kind, Kind::ResourceValue | Kind::MultipleResource) {
                // Resources straight under the object: only meaningful when the
                // object can have no instance but one.
                let single = self.models.object(oid).is_some_and(|m| !m.multiple);
                if !single {
                    return Err(FormatError::Syntax {
                        offset: first.offset,
                        expected: "an object instance TLV (resources directly under an object \
                                   are accepted only for single-instance objects)",
                    });
                }
                let resources = self.resources(top)?;
                instances.insert(0, Instance { id: 0, resources });
                return Ok(ObjectNode { id: oid, instances });
            }
        }
        for tlv in top {
            if tlv.kind != Kind::ObjectInstance {
                return Err(FormatError::Syntax {
                    offset: tlv.offset,
                    expected: "an object instance TLV (type 00) at an object path",
                });
            }
            let resources = self.resources(&parse_all(tlv.value, tlv.value_offset)?)?;
            insert_unique(
                &mut instances,
                tlv.id,
                Instance {
                    id: tlv.id,
                    resources,
                },
                tlv.offset,
                "an object instance id not already in this object",
            )?;
        }
        Ok(ObjectNode { id: oid, instances })
    }

    fn instance_at_path(&self, iid: u16, top: &[Tlv<'_>]) -> Result<Instance, FormatError> {
        let resources = match top {
            [only] if only.kind == Kind::ObjectInstance => {
                if only.id != iid {
                    return Err(FormatError::InvalidPath);
                }
                self.resources(&parse_all(only.value, only.value_offset)?)?
            }
            // Several object instances (or one plus more) for one instance path.
            [first, _, ..] if first.kind == Kind::ObjectInstance => {
                return Err(FormatError::InvalidPath)
            }
            _ => self.resources(top)?,
        };
        Ok(Instance { id: iid, resources })
    }

    /// The resources of one object instance.
    fn resources(&self, tlvs: &[Tlv<'_>]) -> Result<BTreeMap<u16, Resource>, FormatError> {
        let mut resources = BTreeMap::new();
        for tlv in tlvs {
            if !matches!(tlv.kind, Kind::ResourceValue | Kind::MultipleResource) {
                return Err(FormatError::Syntax {
                    offset: tlv.offset,
                    expected: "a resource TLV (type 11 or 10) inside an object instance",
                });
            }
            insert_unique(
                &mut resources,
                tlv.id,
                self.resource(tlv)?,
                tlv.offset,
                "a resource id not already in this object instance",
            )?;
        }
        Ok(resources)
    }

    /// One resource TLV (`11` or `10`).
    fn resource(&self, tlv: &Tlv<'_>) -> Result<Resource, FormatError> {
        let model = self.resource_model(tlv.id);
        let ty = model.map(|m| m.resource_type);
        if tlv.kind == Kind::MultipleResource {
            if model.is_some_and(|m| !m.multiple) {
                return Err(FormatError::Syntax {
                    offset: tlv.offset,
                    expected: "a single resource TLV (type 11): the model says this resource \
                               is single-instance",
                });
            }
            let values = self.resource_instances(&parse_all(tlv.value, tlv.value_offset)?, ty)?;
            return Ok(Resource {
                id: tlv.id,
                value: ResourceValue::Multiple(values),
            });
        }
        if model.is_some_and(|m| m.multiple) {
            return Err(FormatError::Syntax {
                offset: tlv.offset,
                expected: "a multiple resource TLV (type 10): the model says this resource \
                           is multiple-instance",
            });
        }
        Ok(Resource::single(tlv.id, decode_value(tlv.value, ty)?))
    }

    /// The resource instance TLVs of one multiple resource.
    fn resource_instances(
        &self,
        tlvs: &[Tlv<'_>],
        ty: Option<ResourceType>,
    ) -> Result<BTreeMap<u16, Value>, FormatError> {
        let mut values = BTreeMap::new();
        for tlv in tlvs {
            match tlv.kind {
                Kind::ResourceInstance => {}
                // A container below a multiple resource: deeper than the format goes.
                Kind::ObjectInstance | Kind::MultipleResource => return Err(FormatError::TooDeep),
                Kind::ResourceValue => {
                    return Err(FormatError::Syntax {
                        offset: tlv.offset,
                        expected: "a resource instance TLV (type 01) inside a multiple resource",
                    })
                }
            }
            insert_unique(
                &mut values,
                tlv.id,
                decode_value(tlv.value, ty)?,
                tlv.offset,
                "a resource instance id not already in this resource",
            )?;
        }
        Ok(values)
    }

    fn resource_at_path(&self, rid: u16, top: &[Tlv<'_>]) -> Result<Resource, FormatError> {
        match top {
            [] => Err(FormatError::Truncated { offset: 0 }),
            [only] if matches!(only.kind, Kind::ResourceValue | Kind::MultipleResource) => {
                if only.id != rid {
                    return Err(FormatError::InvalidPath);
                }
                self.resource(only)
            }
            [first, ..] if first.kind == Kind::ResourceInstance => {
                // Bare resource instances: the multiple resource without its wrapper.
                let model = self.resource_model(rid);
                if model.is_some_and(|m| !m.multiple) {
                    return Err(FormatError::Syntax {
                        offset: first.offset,
                        expected: "a single resource TLV (type 11): the model says this \
                                   resource is single-instance",
                    });
                }
                let values = self.resource_instances(top, model.map(|m| m.resource_type))?;
                Ok(Resource {
                    id: rid,
                    value: ResourceValue::Multiple(values),
                })
            }
            // More than one resource for one resource path.
            [first, _, ..] if first.kind != Kind::ObjectInstance => Err(FormatError::InvalidPath),
            [first, ..] => Err(FormatError::Syntax {
                offset: first.offset,
                expected: "a resource TLV (type 11 or 10) or resource instance TLVs (type 01) \
                           at a resource path",
            }),
        }
    }

    fn resource_instance_at_path(
        &self,
        rid: u16,
        riid: u16,
        top: &[Tlv<'_>],
    ) -> Result<Node, FormatError> {
        match top {
            [] => Err(FormatError::Truncated { offset: 0 }),
            [only] if only.kind == Kind::ResourceInstance => {
                if only.id != riid {
                    return Err(FormatError::InvalidPath);
                }
                let ty = self.resource_model(rid).map(|m| m.resource_type);
                Ok(Node::ResourceInstance {
                    id: riid,
                    value: decode_value(only.value, ty)?,
                })
            }
            [only] => Err(FormatError::Syntax {
                offset: only.offset,
                expected: "a resource instance TLV (type 01) at a resource instance path",
            }),
            _ => Err(FormatError::InvalidPath),
        }
    }
}

/// Encodes `node`, which sits at `path`, appending TLV bytes to `out`.
///
/// The node's depth must match the path and its id the path's last id.
/// Integers use the smallest size, floats 4 bytes when exact in `f32` and 8
/// otherwise (see the module docs). On error `out` may hold a partial encoding.
///
/// ```
/// use lwm2m_core::format::tlv;
/// use lwm2m_core::model::{Node, Path, Resource, Value};
/// let mut out = Vec::new();
/// let node = Node::Resource(Resource::single(9, Value::Integer(100)));
/// tlv::encode(&node, &Path::Resource(3, 0, 9), &mut out).unwrap();
/// assert_eq!(out, [0xC1, 0x09, 0x64]);
/// ```
pub fn encode(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    match (node, *path) {
        (Node::Object(obj), Path::Object(o)) => {
            check_id(obj.id, o)?;
            for (&iid, inst) in &obj.instances {
                check_id(inst.id, iid)?;
                let mut content = Vec::new();
                encode_resources(inst, &mut content)?;
                write_header(out, Kind::ObjectInstance, iid, content.len())?;
                out.extend_from_slice(&content);
            }
            Ok(())
        }
        (Node::Instance(inst), Path::Instance(_, i)) => {
            check_id(inst.id, i)?;
            encode_resources(inst, out)
        }
        (Node::Resource(res), Path::Resource(_, _, r)) => {
            check_id(res.id, r)?;
            encode_resource(res, out)
        }
        (Node::ResourceInstance { id, value }, Path::ResourceInstance(_, _, _, ri)) => {
            check_id(*id, ri)?;
            write_value(out, Kind::ResourceInstance, *id, value)
        }
        _ => Err(FormatError::NotRepresentable(
            "the node's depth does not match the path (TLV cannot carry the root path)",
        )),
    }
}

/// A node's (or map entry's) id must be the one its position says, and usable.
fn check_id(id: u16, expected: u16) -> Result<(), FormatError> {
    if id != expected || id > MAX_ID {
        return Err(FormatError::InvalidPath);
    }
    Ok(())
}

fn encode_resources(inst: &Instance, out: &mut Vec<u8>) -> Result<(), FormatError> {
    for (&rid, res) in &inst.resources {
        check_id(res.id, rid)?;
        encode_resource(res, out)?;
    }
    Ok(())
}

fn encode_resource(res: &Resource, out: &mut Vec<u8>) -> Result<(), FormatError> {
    match &res.value {
        ResourceValue::Single(v) => write_value(out, Kind::ResourceValue, res.id, v),
        ResourceValue::Multiple(values) => {
            let mut content = Vec::new();
            for (&riid, v) in values {
                write_value(&mut content, Kind::ResourceInstance, riid, v)?;
            }
            write_header(out, Kind::MultipleResource, res.id, content.len())?;
            out.extend_from_slice(&content);
            Ok(())
        }
    }
}

fn write_value(out: &mut Vec<u8>, kind: Kind, id: u16, value: &Value) -> Result<(), FormatError> {
    let mut scratch = [0u8; 8];
    let bytes = value_bytes(value, &mut scratch);
    write_header(out, kind, id, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// The smallest big-endian two's complement form of `v` among 1/2/4/8 bytes.
fn int_bytes(v: i64, scratch: &mut [u8; 8]) -> &[u8] {
    let n = if i8::try_from(v).is_ok() {
        1
    } else if i16::try_from(v).is_ok() {
        2
    } else if i32::try_from(v).is_ok() {
        4
    } else {
        8
    };
    *scratch = v.to_be_bytes();
    &scratch[8 - n..]
}

fn uint_bytes(v: u64, scratch: &mut [u8; 8]) -> &[u8] {
    let n = if u8::try_from(v).is_ok() {
        1
    } else if u16::try_from(v).is_ok() {
        2
    } else if u32::try_from(v).is_ok() {
        4
    } else {
        8
    };
    *scratch = v.to_be_bytes();
    &scratch[8 - n..]
}

fn value_bytes<'a>(value: &'a Value, scratch: &'a mut [u8; 8]) -> &'a [u8] {
    match value {
        Value::Integer(v) | Value::Time(v) => int_bytes(*v, scratch),
        Value::UnsignedInteger(v) => uint_bytes(*v, scratch),
        Value::Float(v) => {
            // The `as` cast rounds to nearest; if that lost nothing, 4 bytes say it all.
            let narrow = *v as f32;
            if f64::from(narrow) == *v {
                scratch[..4].copy_from_slice(&narrow.to_be_bytes());
                &scratch[..4]
            } else {
                *scratch = v.to_be_bytes();
                &scratch[..]
            }
        }
        Value::Boolean(b) => {
            scratch[0] = u8::from(*b);
            &scratch[..1]
        }
        Value::String(s) | Value::CoreLnk(s) => s.as_bytes(),
        Value::Opaque(b) => b,
        Value::ObjLnk(l) => {
            scratch[..2].copy_from_slice(&l.object.to_be_bytes());
            scratch[2..4].copy_from_slice(&l.instance.to_be_bytes());
            &scratch[..4]
        }
    }
}

/// Writes a type byte, identifier and length field for a value of `len` bytes.
fn write_header(out: &mut Vec<u8>, kind: Kind, id: u16, len: usize) -> Result<(), FormatError> {
    if id > MAX_ID {
        return Err(FormatError::InvalidPath);
    }
    const TOO_LONG: FormatError = FormatError::NotRepresentable(
        "TLV value longer than 16777215 bytes (the 24-bit length field's limit)",
    );
    if len > MAX_VALUE_LEN {
        return Err(TOO_LONG);
    }
    let len_be = u32::try_from(len).map_err(|_| TOO_LONG)?.to_be_bytes();
    let mut type_byte = kind.type_bits();
    let id_be = id.to_be_bytes();
    let wide_id = id > 0xFF;
    if wide_id {
        type_byte |= 0x20;
    }
    let len_field: &[u8] = if len < 8 {
        type_byte |= len_be[3];
        &[]
    } else if len <= 0xFF {
        type_byte |= 0x08;
        &len_be[3..]
    } else if len <= 0xFFFF {
        type_byte |= 0x10;
        &len_be[2..]
    } else {
        type_byte |= 0x18;
        &len_be[1..]
    };
    out.push(type_byte);
    out.extend_from_slice(if wide_id { &id_be[..] } else { &id_be[1..] });
    out.extend_from_slice(len_field);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_models::object as om;
    use crate::model::{ObjectModel, NO_MODELS};
    use alloc::format;
    use alloc::vec;
    use proptest::prelude::*;

    /// Bytes written out by hand as spaced hex, the way the TS tables show them.
    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("test hex"))
            .collect()
    }

    /// Test object with one resource of every type, single (ids 0..=8, 300) and
    /// multiple (ids 10..=18, 5700): 16-bit ids included.
    const ALL: u16 = 9000;
    const TYPES: [ResourceType; 9] = [
        ResourceType::Integer,
        ResourceType::UnsignedInteger,
        ResourceType::Float,
        ResourceType::Boolean,
        ResourceType::String,
        ResourceType::Opaque,
        ResourceType::Time,
        ResourceType::ObjLnk,
        ResourceType::CoreLnk,
    ];

    fn all_resources() -> Vec<(u16, ResourceType, bool)> {
        let mut v = Vec::new();
        for (i, &t) in TYPES.iter().enumerate() {
            let i = u16::try_from(i).unwrap();
            v.push((i, t, false));
            v.push((10 + i, t, true));
        }
        v.push((300, ResourceType::Float, false));
        v.push((5700, ResourceType::Integer, true));
        v
    }

    /// Hand-made models: the parts of Server (1), Access Control (2) and Device (3)
    /// the TS examples use, objects 65/66 of the TS object-link examples, and [`ALL`].
    fn models() -> BTreeMap<u16, ObjectModel> {
        use ResourceType::*;
        let mut m = BTreeMap::new();
        let s = false;
        let mul = true;
        m.insert(
            1,
            om(
                1,
                true,
                &[
                    (0, Integer, s),
                    (1, Integer, s),
                    (6, Boolean, s),
                    (7, String, s),
                ],
            ),
        );
        m.insert(
            2,
            om(
                2,
                true,
                &[
                    (0, Integer, s),
                    (1, Integer, s),
                    (2, Integer, mul),
                    (3, Integer, s),
                ],
            ),
        );
        m.insert(
            3,
            om(
                3,
                false,
                &[
                    (0, String, s),
                    (1, String, s),
                    (2, String, s),
                    (3, String, s),
                    (6, Integer, mul),
                    (7, Integer, mul),
                    (8, Integer, mul),
                    (9, Integer, s),
                    (10, Integer, s),
                    (11, Integer, mul),
                    (13, Time, s),
                    (14, String, s),
                    (16, String, s),
                ],
            ),
        );
        m.insert(
            65,
            om(
                65,
                true,
                &[(0, ObjLnk, mul), (1, String, s), (2, Integer, s)],
            ),
        );
        m.insert(
            66,
            om(66, true, &[(0, String, s), (1, String, s), (2, ObjLnk, s)]),
        );
        m.insert(ALL, om(ALL, true, &all_resources()));
        m
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn link(object: u16, instance: u16) -> Value {
        Value::ObjLnk(ObjLnk { object, instance })
    }

    fn enc(node: &Node, path: Path) -> Vec<u8> {
        let mut out = Vec::new();
        encode(node, &path, &mut out).expect("encodes");
        out
    }

    // ---- TS examples (LwM2M TS Core, TLV format examples) ----

    /// Read /3/0: the Device object instance, resources without instance wrapper.
    const DEVICE_INSTANCE: &str = "
        C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
        C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
        C8 02 09 33 34 35 30 30 30 31 32 33
        C3 03 31 2E 30
        86 06
           41 00 01
           41 01 05
        88 07 08
           42 00 0E D8
           42 01 13 88
        87 08
           41 00 7D
           42 01 03 84
        C1 09 64
        C1 0A 0F
        83 0B
           41 00 00
        C4 0D 51 82 42 8F
        C6 0E 2B 30 32 3A 30 30
        C1 10 55";

    fn device_instance() -> Instance {
        Instance::new(
            0,
            [
                Resource::single(0, s("Open Mobile Alliance")),
                Resource::single(1, s("Lightweight M2M Client")),
                Resource::single(2, s("345000123")),
                Resource::single(3, s("1.0")),
                Resource::multiple(6, [(0, Value::Integer(1)), (1, Value::Integer(5))]),
                Resource::multiple(7, [(0, Value::Integer(3800)), (1, Value::Integer(5000))]),
                Resource::multiple(8, [(0, Value::Integer(125)), (1, Value::Integer(900))]),
                Resource::single(9, Value::Integer(100)),
                Resource::single(10, Value::Integer(15)),
                Resource::multiple(11, [(0, Value::Integer(0))]),
                Resource::single(13, Value::Time(1_367_491_215)),
                Resource::single(14, s("+02:00")),
                Resource::single(16, s("U")),
            ],
        )
    }

    #[test]
    fn ts_device_instance_decodes_and_encodes_byte_for_byte() {
        let bytes = hex(DEVICE_INSTANCE);
        let path = Path::Instance(3, 0);
        let node = decode(&bytes, &path, &models()).unwrap();
        assert_eq!(node, Node::Instance(device_instance()));
        assert_eq!(enc(&node, path), bytes);
    }

    #[test]
    fn ts_device_object_read_wraps_the_instance() {
        // Read /3: the same resources inside one object instance TLV of 0x79 bytes.
        let bytes = [hex("08 00 79"), hex(DEVICE_INSTANCE)].concat();
        let path = Path::Object(3);
        let node = decode(&bytes, &path, &models()).unwrap();
        let mut expected = ObjectNode {
            id: 3,
            ..Default::default()
        };
        expected.instances.insert(0, device_instance());
        assert_eq!(node, Node::Object(expected));
        assert_eq!(enc(&node, path), bytes);
    }

    #[test]
    fn single_instance_object_resources_without_instance_tlv_are_instance_0() {
        let bytes = hex(DEVICE_INSTANCE);
        let Node::Object(obj) = decode(&bytes, &Path::Object(3), &models()).unwrap() else {
            panic!("object expected")
        };
        assert_eq!(obj.instances.get(&0), Some(&device_instance()));
        assert_eq!(obj.instances.len(), 1);
        // Without a model saying single-instance, the instance id is unknowable.
        assert!(matches!(
            decode(&bytes, &Path::Object(3), &NO_MODELS),
            Err(FormatError::Syntax { offset: 0, .. })
        ));
        // Object 1 is multiple-instance: same refusal even with models.
        assert!(matches!(
            decode(&hex("C1 00 01"), &Path::Object(1), &models()),
            Err(FormatError::Syntax { offset: 0, .. })
        ));
    }

    #[test]
    fn ts_server_object_with_one_instance() {
        // Read /1: short server id 1, lifetime 86400, notification storing, binding "U".
        let bytes = hex("08 00 0F  C1 00 01  C4 01 00 01 51 80  C1 06 01  C1 07 55");
        let path = Path::Object(1);
        let node = decode(&bytes, &path, &models()).unwrap();
        let mut expected = ObjectNode {
            id: 1,
            ..Default::default()
        };
        expected.instances.insert(
            0,
            Instance::new(
                0,
                [
                    Resource::single(0, Value::Integer(1)),
                    Resource::single(1, Value::Integer(86400)),
                    Resource::single(6, Value::Boolean(true)),
                    Resource::single(7, s("U")),
                ],
            ),
        );
        assert_eq!(node, Node::Object(expected));
        assert_eq!(enc(&node, path), bytes);
    }

    #[test]
    fn ts_access_control_object_with_two_instances_and_16_bit_instance_id() {
        let bytes = hex("
            08 00 0E
               C1 00 01
               C1 01 00
               83 02
                  41 7F 07
               C1 03 7F
            08 02 12
               C1 00 03
               C1 01 00
               87 02
                  41 7F 07
                  61 01 36 01
               C1 03 7F");
        let path = Path::Object(2);
        let node = decode(&bytes, &path, &models()).unwrap();
        let mut expected = ObjectNode {
            id: 2,
            ..Default::default()
        };
        expected.instances.insert(
            0,
            Instance::new(
                0,
                [
                    Resource::single(0, Value::Integer(1)),
                    Resource::single(1, Value::Integer(0)),
                    Resource::multiple(2, [(127, Value::Integer(7))]),
                    Resource::single(3, Value::Integer(127)),
                ],
            ),
        );
        expected.instances.insert(
            2,
            Instance::new(
                2,
                [
                    Resource::single(0, Value::Integer(3)),
                    Resource::single(1, Value::Integer(0)),
                    Resource::multiple(2, [(127, Value::Integer(7)), (310, Value::Integer(1))]),
                    Resource::single(3, Value::Integer(127)),
                ],
            ),
        );
        assert_eq!(node, Node::Object(expected));
        assert_eq!(enc(&node, path), bytes);
    }

    #[test]
    fn ts_object_link_examples() {
        // Read /65/0: a multiple objlnk resource, a string, an integer.
        let bytes = hex("
            88 00 0C
               44 00 00 42 00 00
               44 01 00 42 00 01
            C8 01 0D 38 36 31 33 38 30 30 37 35 35 35 30 30
            C4 02 12 34 56 78");
        let path = Path::Instance(65, 0);
        let node = decode(&bytes, &path, &models()).unwrap();
        let expected = Instance::new(
            0,
            [
                Resource::multiple(0, [(0, link(66, 0)), (1, link(66, 1))]),
                Resource::single(1, s("8613800755500")),
                Resource::single(2, Value::Integer(0x1234_5678)),
            ],
        );
        assert_eq!(node, Node::Instance(expected));
        assert_eq!(enc(&node, path), bytes);

        // Read /66: two instances, the second with the null link 65535:65535.
        let bytes = hex("
            08 00 26
               C8 00 0B 6D 79 53 65 72 76 69 63 65 20 31
               C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 34
               C4 02 00 43 00 00
            08 01 26
               C8 00 0B 6D 79 53 65 72 76 69 63 65 20 32
               C8 01 0F 49 6E 74 65 72 6E 65 74 2E 31 35 2E 32 33 35
               C4 02 FF FF FF FF");
        let path = Path::Object(66);
        let Node::Object(obj) = decode(&bytes, &path, &models()).unwrap() else {
            panic!("object expected")
        };
        assert_eq!(obj.instances.len(), 2);
        let i0 = &obj.instances[&0].resources;
        let i1 = &obj.instances[&1].resources;
        assert_eq!(i0[&0].value, ResourceValue::Single(s("myService 1")));
        assert_eq!(i0[&1].value, ResourceValue::Single(s("Internet.15.234")));
        assert_eq!(i0[&2].value, ResourceValue::Single(link(67, 0)));
        assert_eq!(i1[&0].value, ResourceValue::Single(s("myService 2")));
        assert_eq!(
            i1[&2].value,
            ResourceValue::Single(Value::ObjLnk(ObjLnk::NULL))
        );
        assert_eq!(enc(&Node::Object(obj), path), bytes);
    }

    #[test]
    fn ts_resource_and_resource_instance_reads() {
        let m = models();
        // /3/0/0: one single resource TLV.
        let bytes = hex("C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65");
        let path = Path::Resource(3, 0, 0);
        let node = decode(&bytes, &path, &m).unwrap();
        assert_eq!(
            node,
            Node::Resource(Resource::single(0, s("Open Mobile Alliance")))
        );
        assert_eq!(enc(&node, path), bytes);

        // /3/0/7: a multiple resource with two 2-byte integers.
        let bytes = hex("88 07 08 42 00 0E D8 42 01 13 88");
        let path = Path::Resource(3, 0, 7);
        let node = decode(&bytes, &path, &m).unwrap();
        assert_eq!(
            node,
            Node::Resource(Resource::multiple(
                7,
                [(0, Value::Integer(3800)), (1, Value::Integer(5000))]
            ))
        );
        assert_eq!(enc(&node, path), bytes);

        // /3/0/6/1: one resource instance.
        let bytes = hex("41 01 05");
        let path = Path::ResourceInstance(3, 0, 6, 1);
        let node = decode(&bytes, &path, &m).unwrap();
        assert_eq!(
            node,
            Node::ResourceInstance {
                id: 1,
                value: Value::Integer(5)
            }
        );
        assert_eq!(enc(&node, path), bytes);
    }

    #[test]
    fn unknown_model_keeps_raw_bytes_and_shape_from_tlv_types() {
        let bytes = hex(DEVICE_INSTANCE);
        let path = Path::Instance(3, 0);
        let Node::Instance(inst) = decode(&bytes, &path, &NO_MODELS).unwrap() else {
            panic!("instance expected")
        };
        assert_eq!(
            inst.resources[&0].value,
            ResourceValue::Single(Value::Opaque(b"Open Mobile Alliance".to_vec()))
        );
        assert_eq!(
            inst.resources[&7].value,
            ResourceValue::Multiple(
                [
                    (0, Value::Opaque(vec![0x0E, 0xD8])),
                    (1, Value::Opaque(vec![0x13, 0x88]))
                ]
                .into()
            )
        );
        assert_eq!(
            inst.resources[&13].value,
            ResourceValue::Single(Value::Opaque(vec![0x51, 0x82, 0x42, 0x8F]))
        );
        // Raw values re-encode to the very same bytes.
        assert_eq!(enc(&Node::Instance(inst), path), bytes);
    }

    #[test]
    fn instance_path_accepts_an_object_instance_wrapper_with_the_right_id() {
        let m = models();
        let node = decode(&hex("08 00 03 C1 09 64"), &Path::Instance(3, 0), &m).unwrap();
        assert_eq!(
            node,
            Node::Instance(Instance::new(0, [Resource::single(9, Value::Integer(100))]))
        );
        assert_eq!(
            decode(&hex("08 01 03 C1 09 64"), &Path::Instance(3, 0), &m),
            Err(FormatError::InvalidPath)
        );
        assert_eq!(
            decode(&hex("08 00 00 08 01 00"), &Path::Instance(3, 0), &m),
            Err(FormatError::InvalidPath)
        );
    }

    #[test]
    fn resource_path_accepts_bare_resource_instances() {
        let node = decode(
            &hex("41 00 01 41 01 05"),
            &Path::Resource(3, 0, 6),
            &models(),
        )
        .unwrap();
        assert_eq!(
            node,
            Node::Resource(Resource::multiple(
                6,
                [(0, Value::Integer(1)), (1, Value::Integer(5))]
            ))
        );
        // ... but not for a resource the model says is single-instance.
        assert!(matches!(
            decode(&hex("41 00 01"), &Path::Resource(3, 0, 9), &models()),
            Err(FormatError::Syntax { .. })
        ));
    }

    // ---- known-bad inputs ----

    #[test]
    fn regression_zero_length_integer() {
        assert!(matches!(
            decode(&hex("C0 09"), &Path::Resource(3, 0, 9), &models()),
            Err(FormatError::InvalidValue { .. })
        ));
    }

    #[test]
    fn regression_three_byte_integer() {
        assert!(matches!(
            decode(&hex("C3 09 00 00 64"), &Path::Resource(3, 0, 9), &models()),
            Err(FormatError::InvalidValue { .. })
        ));
        // Same rule inside a multiple resource and for time / unsigned.
        assert!(matches!(
            decode(
                &hex("85 06 43 00 00 00 01"),
                &Path::Resource(3, 0, 6),
                &models()
            ),
            Err(FormatError::InvalidValue { .. })
        ));
        assert!(matches!(
            decode(&hex("C3 0D 51 82 42"), &Path::Resource(3, 0, 13), &models()),
            Err(FormatError::InvalidValue { .. })
        ));
        assert!(matches!(
            decode(
                &hex("C3 01 00 00 01"),
                &Path::Resource(ALL, 0, 1),
                &models()
            ),
            Err(FormatError::InvalidValue { .. })
        ));
    }

    #[test]
    fn regression_truncated_float_three_bytes() {
        assert!(matches!(
            decode(
                &hex("C3 02 3F 80 00"),
                &Path::Resource(ALL, 0, 2),
                &models()
            ),
            Err(FormatError::InvalidValue { .. })
        ));
    }

    #[test]
    fn regression_objlnk_must_be_four_bytes() {
        assert!(matches!(
            decode(
                &hex("C3 07 00 03 00"),
                &Path::Resource(ALL, 0, 7),
                &models()
            ),
            Err(FormatError::InvalidValue { .. })
        ));
    }

    #[test]
    fn regression_length_past_the_end() {
        // Declares 20 bytes, carries 2.
        assert_eq!(
            decode(&hex("C8 00 14 4F 70"), &Path::Resource(3, 0, 0), &models()),
            Err(FormatError::InvalidLength { offset: 0 })
        );
        // Length in the type byte (7) past the end, nested in an instance at offset 3.
        assert_eq!(
            decode(&hex("08 00 05 C7 00 01 02"), &Path::Object(3), &models()),
            Err(FormatError::InvalidLength { offset: 0 })
        );
        assert_eq!(
            decode(&hex("08 00 04 C7 00 01 02"), &Path::Object(3), &models()),
            Err(FormatError::InvalidLength { offset: 3 })
        );
    }

    #[test]
    fn regression_huge_24_bit_length_declared() {
        // 16 MiB declared, 2 bytes present: an error, and nothing sized from it.
        assert_eq!(
            decode(
                &hex("D8 00 FF FF FF 01 02"),
                &Path::Resource(3, 0, 0),
                &models()
            ),
            Err(FormatError::InvalidLength { offset: 0 })
        );
        assert_eq!(
            decode(
                &hex("98 06 FF FF FF 41 00 01"),
                &Path::Resource(3, 0, 6),
                &NO_MODELS
            ),
            Err(FormatError::InvalidLength { offset: 0 })
        );
    }

    #[test]
    fn regression_truncated_header() {
        assert_eq!(
            decode(&hex("C8"), &Path::Resource(3, 0, 0), &NO_MODELS),
            Err(FormatError::Truncated { offset: 1 })
        );
        // 16-bit id with one byte of it.
        assert_eq!(
            decode(&hex("E1 01"), &Path::Resource(3, 0, 0), &NO_MODELS),
            Err(FormatError::Truncated { offset: 2 })
        );
        // 16-bit length field with one byte of it.
        assert_eq!(
            decode(&hex("D0 00 01"), &Path::Resource(3, 0, 0), &NO_MODELS),
            Err(FormatError::Truncated { offset: 3 })
        );
        assert_eq!(
            decode(&[], &Path::Resource(3, 0, 0), &NO_MODELS),
            Err(FormatError::Truncated { offset: 0 })
        );
    }

    #[test]
    fn regression_nesting_beyond_the_format() {
        // A multiple resource inside a multiple resource.
        assert_eq!(
            decode(
                &hex("85 06 83 00 41 00 01"),
                &Path::Resource(3, 0, 6),
                &NO_MODELS
            ),
            Err(FormatError::TooDeep)
        );
        // An object instance inside a multiple resource.
        assert_eq!(
            decode(
                &hex("85 06 03 00 C1 00 01"),
                &Path::Resource(3, 0, 6),
                &NO_MODELS
            ),
            Err(FormatError::TooDeep)
        );
        // An object instance inside an object instance.
        assert!(matches!(
            decode(
                &hex("08 00 05 08 00 02 C0 00"),
                &Path::Object(1),
                &NO_MODELS
            ),
            Err(FormatError::Syntax { offset: 3, .. })
        ));
        // A resource instance's value is never parsed as TLV: with no model it
        // stays raw bytes, with an integer model 3 bytes are an invalid integer.
        let ri = hex("43 00 C1 00 01");
        assert_eq!(
            decode(&ri, &Path::ResourceInstance(3, 0, 6, 0), &NO_MODELS),
            Ok(Node::ResourceInstance {
                id: 0,
                value: Value::Opaque(hex("C1 00 01"))
            })
        );
        assert!(matches!(
            decode(&ri, &Path::ResourceInstance(3, 0, 6, 0), &models()),
            Err(FormatError::InvalidValue { .. })
        ));
    }

    #[test]
    fn regression_boolean_two() {
        assert!(matches!(
            decode(&hex("C1 06 02"), &Path::Resource(1, 0, 6), &models()),
            Err(FormatError::InvalidValue { .. })
        ));
        assert!(matches!(
            decode(&hex("C2 06 00 01"), &Path::Resource(1, 0, 6), &models()),
            Err(FormatError::InvalidValue { .. })
        ));
    }

    #[test]
    fn regression_invalid_utf8_string() {
        assert_eq!(
            decode(&hex("C2 00 C3 28"), &Path::Resource(3, 0, 0), &models()),
            Err(FormatError::InvalidUtf8)
        );
    }

    #[test]
    fn regression_object_instance_tlv_at_resource_path() {
        assert!(matches!(
            decode(
                &hex("08 00 03 C1 00 01"),
                &Path::Resource(3, 0, 0),
                &models()
            ),
            Err(FormatError::Syntax { offset: 0, .. })
        ));
        assert!(matches!(
            decode(
                &hex("08 00 03 C1 00 01"),
                &Path::Resource(3, 0, 0),
                &NO_MODELS
            ),
            Err(FormatError::Syntax { offset: 0, .. })
        ));
    }

    #[test]
    fn ids_must_fit_the_path_and_be_unique() {
        let m = models();
        assert_eq!(
            decode(&hex("C1 0A 0F"), &Path::Resource(3, 0, 9), &m),
            Err(FormatError::InvalidPath)
        );
        assert_eq!(
            decode(&hex("C1 09 64 C1 0A 0F"), &Path::Resource(3, 0, 9), &m),
            Err(FormatError::InvalidPath)
        );
        assert_eq!(
            decode(&hex("41 02 05"), &Path::ResourceInstance(3, 0, 6, 1), &m),
            Err(FormatError::InvalidPath)
        );
        // Repeated resource id in an instance, resource instance id, instance id.
        assert!(matches!(
            decode(&hex("C1 09 64 C1 09 65"), &Path::Instance(3, 0), &m),
            Err(FormatError::Syntax { offset: 3, .. })
        ));
        assert!(matches!(
            decode(
                &hex("86 06 41 00 01 41 00 02"),
                &Path::Resource(3, 0, 6),
                &m
            ),
            Err(FormatError::Syntax { offset: 5, .. })
        ));
        assert!(matches!(
            decode(&hex("08 00 00 08 00 00"), &Path::Object(1), &m),
            Err(FormatError::Syntax { offset: 3, .. })
        ));
        // 65535 is reserved.
        assert_eq!(
            decode(&hex("E1 FF FF 01"), &Path::Instance(3, 0), &NO_MODELS),
            Err(FormatError::InvalidPath)
        );
    }

    #[test]
    fn structure_must_match_the_model() {
        let m = models();
        // Single TLV for a multiple resource and the reverse.
        assert!(matches!(
            decode(&hex("C1 06 01"), &Path::Resource(3, 0, 6), &m),
            Err(FormatError::Syntax { .. })
        ));
        assert!(matches!(
            decode(&hex("83 09 41 00 64"), &Path::Resource(3, 0, 9), &m),
            Err(FormatError::Syntax { .. })
        ));
        // A resource instance directly in an object instance.
        assert!(matches!(
            decode(&hex("41 00 01"), &Path::Instance(3, 0), &m),
            Err(FormatError::Syntax { .. })
        ));
        // A resource TLV where a resource instance belongs.
        assert!(matches!(
            decode(&hex("C1 00 01"), &Path::ResourceInstance(3, 0, 6, 0), &m),
            Err(FormatError::Syntax { .. })
        ));
        assert!(matches!(
            decode(&hex("83 06 C1 00 01"), &Path::Resource(3, 0, 6), &m),
            Err(FormatError::Syntax { .. })
        ));
        assert!(matches!(
            decode(&[], &Path::Root, &m),
            Err(FormatError::NotRepresentable(_))
        ));
    }

    #[test]
    fn empty_containers() {
        let m = models();
        assert_eq!(
            decode(&[], &Path::Object(1), &m),
            Ok(Node::Object(ObjectNode {
                id: 1,
                instances: BTreeMap::new()
            }))
        );
        assert_eq!(
            decode(&[], &Path::Instance(1, 4), &m),
            Ok(Node::Instance(Instance::new(4, [])))
        );
        let empty_multi = Node::Resource(Resource::multiple(6, []));
        assert_eq!(
            decode(&hex("80 06"), &Path::Resource(3, 0, 6), &m),
            Ok(empty_multi.clone())
        );
        assert_eq!(enc(&empty_multi, Path::Resource(3, 0, 6)), hex("80 06"));
    }

    // ---- encoder choices ----

    /// A single resource `id` of the [`ALL`] object holding `v`, encoded.
    fn value_tlv(id: u16, v: Value) -> Vec<u8> {
        enc(
            &Node::Resource(Resource::single(id, v)),
            Path::Resource(ALL, 0, id),
        )
    }

    fn decode_all(id: u16, bytes: &[u8]) -> Result<Node, FormatError> {
        decode(bytes, &Path::Resource(ALL, 0, id), &models())
    }

    #[test]
    fn integers_use_the_smallest_size() {
        let cases: [(i64, &str); 10] = [
            (0, "C1 00 00"),
            (127, "C1 00 7F"),
            (-128, "C1 00 80"),
            (128, "C2 00 00 80"),
            (-129, "C2 00 FF 7F"),
            (32767, "C2 00 7F FF"),
            (32768, "C4 00 00 00 80 00"),
            (i64::from(i32::MIN), "C4 00 80 00 00 00"),
            (i64::from(i32::MAX) + 1, "C8 00 08 00 00 00 00 80 00 00 00"),
            (i64::MIN, "C8 00 08 80 00 00 00 00 00 00 00"),
        ];
        for (v, want) in cases {
            let bytes = value_tlv(0, Value::Integer(v));
            assert_eq!(bytes, hex(want), "{v}");
            assert_eq!(
                decode_all(0, &bytes),
                Ok(Node::Resource(Resource::single(0, Value::Integer(v))))
            );
        }
        // Time (resource 6) follows the integer rules.
        assert_eq!(
            value_tlv(6, Value::Time(1_367_491_215)),
            hex("C4 06 51 82 42 8F")
        );
        // Unsigned: 255 is one byte, and decodes back as 255 with an unsigned model.
        let bytes = value_tlv(1, Value::UnsignedInteger(255));
        assert_eq!(bytes, hex("C1 01 FF"));
        assert_eq!(
            decode_all(1, &bytes),
            Ok(Node::Resource(Resource::single(
                1,
                Value::UnsignedInteger(255)
            )))
        );
        assert_eq!(
            value_tlv(1, Value::UnsignedInteger(u64::MAX)),
            hex("C8 01 08 FF FF FF FF FF FF FF FF")
        );
    }

    #[test]
    fn floats_use_four_bytes_only_when_exact() {
        let f = |v: f64| value_tlv(2, Value::Float(v));
        assert_eq!(f(1.5), hex("C4 02 3F C0 00 00"));
        assert_eq!(f(-0.0), hex("C4 02 80 00 00 00"));
        assert_eq!(f(f64::INFINITY), hex("C4 02 7F 80 00 00"));
        assert_eq!(f(f64::from(f32::MAX)), hex("C4 02 7F 7F FF FF"));
        // 0.1 is not exact in f32: 8 bytes.
        assert_eq!(f(0.1), hex("C8 02 08 3F B9 99 99 99 99 99 9A"));
        // NaN: 8 bytes, and it decodes as NaN.
        let nan = f(f64::NAN);
        assert_eq!(nan.len(), 11);
        let Ok(Node::Resource(r)) = decode_all(2, &nan) else {
            panic!("NaN decodes")
        };
        assert!(matches!(r.value, ResourceValue::Single(Value::Float(v)) if v.is_nan()));
        // Both sizes decode.
        for b in ["C4 02 3F C0 00 00", "C8 02 08 3F F8 00 00 00 00 00 00"] {
            assert_eq!(
                decode_all(2, &hex(b)),
                Ok(Node::Resource(Resource::single(2, Value::Float(1.5))))
            );
        }
    }

    #[test]
    fn other_value_encodings() {
        assert_eq!(value_tlv(3, Value::Boolean(true)), hex("C1 03 01"));
        assert_eq!(value_tlv(3, Value::Boolean(false)), hex("C1 03 00"));
        assert_eq!(value_tlv(4, s("é")), hex("C2 04 C3 A9"));
        assert_eq!(value_tlv(7, link(3, 0x1234)), hex("C4 07 00 03 12 34"));
        assert_eq!(
            value_tlv(8, Value::CoreLnk("</3>".into())),
            hex("C4 08 3C 2F 33 3E")
        );
        assert_eq!(value_tlv(5, Value::Opaque(vec![])), hex("C0 05"));
    }

    #[test]
    fn length_fields_and_16_bit_ids() {
        let opaque = |n: usize, id: u16| {
            enc(
                &Node::Resource(Resource::single(id, Value::Opaque(vec![0xAB; n]))),
                Path::Resource(ALL, 0, id),
            )
        };
        assert_eq!(opaque(7, 5)[..2], hex("C7 05")[..]);
        assert_eq!(opaque(8, 5)[..3], hex("C8 05 08")[..]);
        assert_eq!(opaque(255, 5)[..3], hex("C8 05 FF")[..]);
        assert_eq!(opaque(256, 5)[..4], hex("D0 05 01 00")[..]);
        assert_eq!(opaque(65535, 5)[..4], hex("D0 05 FF FF")[..]);
        assert_eq!(opaque(65536, 5)[..5], hex("D8 05 01 00 00")[..]);
        assert_eq!(opaque(3, 300)[..], hex("E3 01 2C AB AB AB")[..]);
        assert_eq!(opaque(70_000, 300)[..6], hex("F8 01 2C 01 11 70")[..]);
        for (n, id) in [(7, 5), (8, 5), (256, 5), (65536, 5), (70_000, 300)] {
            let bytes = opaque(n, id);
            assert_eq!(bytes.len(), n + header_len(n, id));
            assert_eq!(
                decode(&bytes, &Path::Resource(ALL, 0, id), &NO_MODELS),
                Ok(Node::Resource(Resource::single(
                    id,
                    Value::Opaque(vec![0xAB; n])
                )))
            );
        }
    }

    fn header_len(n: usize, id: u16) -> usize {
        let id_len = if id > 255 { 2 } else { 1 };
        let len_len = match n {
            0..=7 => 0,
            8..=255 => 1,
            256..=65535 => 2,
            _ => 3,
        };
        1 + id_len + len_len
    }

    #[test]
    fn values_over_24_bits_are_refused() {
        let node = Node::Resource(Resource::single(
            5,
            Value::Opaque(vec![0; MAX_VALUE_LEN + 1]),
        ));
        let mut out = Vec::new();
        assert!(matches!(
            encode(&node, &Path::Resource(ALL, 0, 5), &mut out),
            Err(FormatError::NotRepresentable(_))
        ));
    }

    #[test]
    fn encoder_checks_depth_and_ids() {
        let mut out = Vec::new();
        let res = Node::Resource(Resource::single(9, Value::Integer(1)));
        assert!(matches!(
            encode(&res, &Path::Instance(3, 0), &mut out),
            Err(FormatError::NotRepresentable(_))
        ));
        assert!(matches!(
            encode(&res, &Path::Root, &mut out),
            Err(FormatError::NotRepresentable(_))
        ));
        assert_eq!(
            encode(&res, &Path::Resource(3, 0, 10), &mut out),
            Err(FormatError::InvalidPath)
        );
        // Map key and inner id disagree.
        let mut inst = Instance::new(0, [Resource::single(9, Value::Integer(1))]);
        inst.resources
            .insert(8, Resource::single(7, Value::Integer(1)));
        assert_eq!(
            encode(&Node::Instance(inst), &Path::Instance(3, 0), &mut out),
            Err(FormatError::InvalidPath)
        );
        // Reserved id.
        let ri = Node::Resource(Resource::multiple(6, [(u16::MAX, Value::Integer(1))]));
        assert_eq!(
            encode(&ri, &Path::Resource(3, 0, 6), &mut out),
            Err(FormatError::InvalidPath)
        );
    }

    // ---- properties ----

    fn value_strategy(ty: ResourceType) -> BoxedStrategy<Value> {
        match ty {
            ResourceType::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
            ResourceType::Time => any::<i64>().prop_map(Value::Time).boxed(),
            ResourceType::UnsignedInteger => any::<u64>().prop_map(Value::UnsignedInteger).boxed(),
            // NaN never equals itself; it has its own test above.
            ResourceType::Float => prop_oneof![
                any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
                any::<f32>()
                    .prop_filter("not NaN", |v| !v.is_nan())
                    .prop_map(f64::from),
                prop::sample::select(vec![0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, 0.1]),
            ]
            .prop_map(Value::Float)
            .boxed(),
            ResourceType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
            ResourceType::String => any::<String>().prop_map(Value::String).boxed(),
            ResourceType::CoreLnk => any::<String>().prop_map(Value::CoreLnk).boxed(),
            ResourceType::Opaque | ResourceType::None => prop::collection::vec(any::<u8>(), 0..300)
                .prop_map(Value::Opaque)
                .boxed(),
            ResourceType::ObjLnk => (any::<u16>(), any::<u16>())
                .prop_map(|(object, instance)| Value::ObjLnk(ObjLnk { object, instance }))
                .boxed(),
        }
    }

    fn typed_resource() -> BoxedStrategy<Resource> {
        prop::sample::select(all_resources())
            .prop_flat_map(|(id, ty, multiple)| {
                if multiple {
                    prop::collection::btree_map(0..=MAX_ID, value_strategy(ty), 0..4)
                        .prop_map(move |m| Resource {
                            id,
                            value: ResourceValue::Multiple(m),
                        })
                        .boxed()
                } else {
                    value_strategy(ty)
                        .prop_map(move |v| Resource::single(id, v))
                        .boxed()
                }
            })
            .boxed()
    }

    /// Resources of an object nobody has a model for: raw values only.
    fn raw_resource() -> BoxedStrategy<Resource> {
        let raw = || value_strategy(ResourceType::Opaque);
        prop_oneof![
            (0..=MAX_ID, raw()).prop_map(|(id, v)| Resource::single(id, v)),
            (
                0..=MAX_ID,
                prop::collection::btree_map(0..=MAX_ID, raw(), 0..4)
            )
                .prop_map(|(id, m)| Resource {
                    id,
                    value: ResourceValue::Multiple(m)
                }),
        ]
        .boxed()
    }

    fn object_of(oid: u16, res: BoxedStrategy<Resource>) -> impl Strategy<Value = ObjectNode> {
        prop::collection::btree_map(0..=MAX_ID, prop::collection::vec(res, 0..5), 0..4).prop_map(
            move |m| ObjectNode {
                id: oid,
                instances: m
                    .into_iter()
                    .map(|(i, rs)| (i, Instance::new(i, rs)))
                    .collect(),
            },
        )
    }

    fn roundtrip(node: &Node, path: Path, models: &dyn ModelLookup) -> Result<(), TestCaseError> {
        let mut out = Vec::new();
        encode(node, &path, &mut out).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let back = decode(&out, &path, models).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(&back, node);
        Ok(())
    }

    /// Paths the decoder is run at for arbitrary input.
    fn some_path() -> impl Strategy<Value = Path> {
        prop::sample::select(vec![
            Path::Root,
            Path::Object(3),
            Path::Object(1),
            Path::Object(ALL),
            Path::Instance(3, 0),
            Path::Instance(ALL, 1),
            Path::Resource(3, 0, 6),
            Path::Resource(ALL, 0, 2),
            Path::Resource(ALL, 0, 12),
            Path::ResourceInstance(3, 0, 6, 0),
            Path::ResourceInstance(ALL, 0, 17, 1),
        ])
    }

    proptest! {
        #[test]
        fn typed_object_roundtrips(obj in object_of(ALL, typed_resource())) {
            roundtrip(&Node::Object(obj), Path::Object(ALL), &models())?;
        }

        #[test]
        fn typed_instance_roundtrips(iid in 0..=MAX_ID, rs in prop::collection::vec(typed_resource(), 0..8)) {
            roundtrip(&Node::Instance(Instance::new(iid, rs)), Path::Instance(ALL, iid), &models())?;
        }

        #[test]
        fn typed_resource_roundtrips(res in typed_resource(), iid in 0..=MAX_ID) {
            let path = Path::Resource(ALL, iid, res.id);
            roundtrip(&Node::Resource(res), path, &models())?;
        }

        #[test]
        fn typed_resource_instance_roundtrips(
            (rid, value) in prop::sample::select(all_resources())
                .prop_filter("multiple resources only", |r| r.2)
                .prop_flat_map(|(id, ty, _)| (Just(id), value_strategy(ty))),
            riid in 0..=MAX_ID,
        ) {
            let node = Node::ResourceInstance { id: riid, value };
            roundtrip(&node, Path::ResourceInstance(ALL, 0, rid, riid), &models())?;
        }

        #[test]
        fn raw_values_roundtrip_without_models(
            obj in object_of(4242, raw_resource()),
            res in raw_resource(),
            riid in 0..=MAX_ID,
            bytes in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            roundtrip(&Node::Object(obj.clone()), Path::Object(4242), &NO_MODELS)?;
            for inst in obj.instances.values() {
                roundtrip(&Node::Instance(inst.clone()), Path::Instance(4242, inst.id), &NO_MODELS)?;
            }
            let rid = res.id;
            roundtrip(&Node::Resource(res), Path::Resource(4242, 0, rid), &NO_MODELS)?;
            let ri = Node::ResourceInstance { id: riid, value: Value::Opaque(bytes) };
            roundtrip(&ri, Path::ResourceInstance(4242, 0, 0, riid), &NO_MODELS)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_reencode_stably(
            bytes in prop::collection::vec(any::<u8>(), 0..48),
            path in some_path(),
            typed in any::<bool>(),
        ) {
            let m = models();
            let lookup: &dyn ModelLookup = if typed { &m } else { &NO_MODELS };
            if let Ok(node) = decode(&bytes, &path, lookup) {
                let mut out = Vec::new();
                encode(&node, &path, &mut out).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                let again = decode(&out, &path, lookup).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                // Debug text, so that a NaN compares equal to itself.
                prop_assert_eq!(format!("{again:?}"), format!("{node:?}"));
            }
        }
    }
}
