//! `application/vnd.oma.lwm2m+cbor` (11544): LwM2M CBOR (LwM2M 1.2 TS Core
//! §7.4.6).
//!
//! A payload is a map of nested maps keyed by ids, rooted at the object id
//! whatever the request path: `{3: {0: {0: "Open Mobile Alliance", 9: 100,
//! 6: {0: 1, 1: 5}}}}`. A key may be an array of ids, which stands for that
//! chain of nested keys (`{[3, 0]: {0: ...}}`, `{[3, 0, 9]: 100}`). Leaves are
//! values written as in [`cbor`](super::cbor) (time as tag 1, object links
//! as text `"O:I"`), or `null` in path lists.
//!
//! Decisions where the specification leaves room:
//!
//! * The encoder writes plain nested maps with definite lengths and ids in
//!   ascending order, and does not compress single-child chains into array
//!   keys: every reader must accept the plain form, it is what Anjay
//!   writes (Anjay uses indefinite lengths), and compression saves at most
//!   one byte per chain of three or more ids. The decoder accepts both
//!   forms, definite and indefinite lengths, and repeated intermediate keys
//!   (their subtrees merge); a leaf path that repeats is an error.
//! * Empty maps are meaningful: `{3: {0: {}}}` is an instance without
//!   resources, `{3: {0: {6: {}}}}` a multiple resource without instances.
//!   The encoder writes them so that such nodes survive a round trip.
//! * LwM2M CBOR has no timestamps: [`decode_values`] returns `time: None`
//!   and [`encode_values`] rejects values that have a time (use SenML).
//! * Path lists (Read-Composite / Observe-Composite bodies) are written as
//!   path keys with `null` values, one key per path, an array key from
//!   depth 2 on (`{3: null, [3, 0, 1]: null}`), in the caller's order.
//! * `null` as a value (Write-Composite deletion) cannot be held in a
//!   [`Node`] or [`TimestampedValue`], so [`decode`] and [`decode_values`]
//!   reject it.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::ops::Bound;

use minicbor::data::Type;

use super::cbor::{
    check_node_path, done, enc, typed_value, write_value, NodeBuilder, Reader, Scalar, Seq,
};
use super::FormatError;
use crate::model::{
    Instance, ModelLookup, Node, ObjectNode, Path, Resource, ResourceValue, TimestampedValue,
    MAX_ID,
};

/// Decodes a LwM2M CBOR payload for a Read response or Write request on
/// `path` into the node at that path. Every leaf must lie at or below `path`.
///
/// ```
/// use lwm2m_core::format::lwm2m_cbor;
/// use lwm2m_core::model::{Node, Path, Resource, Value, NO_MODELS};
/// // {[3, 0, 9]: 100}
/// let node = lwm2m_cbor::decode(b"\xa1\x83\x03\x00\x09\x18\x64", &Path::Resource(3, 0, 9), &NO_MODELS);
/// assert_eq!(node, Ok(Node::Resource(Resource::single(9, Value::Integer(100)))));
/// ```
pub fn decode(payload: &[u8], path: &Path, models: &dyn ModelLookup) -> Result<Node, FormatError> {
    let mut builder = NodeBuilder::new(*path, models)?;
    walk(payload, &mut |p, leaf, at| match leaf {
        Leaf::Empty => builder.container(p, at),
        Leaf::Value(s) => {
            if !builder.covers(&p) {
                return Err(FormatError::InvalidPath);
            }
            value_depth(&p, at)?;
            let v = typed_value(s, builder.resource_type(&p))?;
            builder.value(p, v, at)
        }
    })?;
    builder.finish()
}

/// Encodes `node`, which sits at `path`, as nested maps from the object id down.
///
/// ```
/// use lwm2m_core::format::lwm2m_cbor;
/// use lwm2m_core::model::{Node, Path, Resource, Value};
/// let mut out = Vec::new();
/// let node = Node::Resource(Resource::single(9, Value::Integer(100)));
/// lwm2m_cbor::encode(&node, &Path::Resource(3, 0, 9), &mut out).unwrap();
/// assert_eq!(out, b"\xa1\x03\xa1\x00\xa1\x09\x18\x64"); // {3: {0: {9: 100}}}
/// ```
pub fn encode(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    check_node_path(node, path)?;
    // One single-entry map per ancestor id, then the node under its own id.
    path.with_ids(|ids| -> Result<(), FormatError> {
        for id in ids {
            done(enc(out).map(1));
            write_id(out, *id)?;
        }
        Ok(())
    })?;
    match node {
        Node::Object(obj) => write_object(out, obj),
        Node::Instance(inst) => write_instance(out, inst),
        Node::Resource(res) => write_resource(out, res),
        Node::ResourceInstance { value, .. } => {
            write_value(out, value);
            Ok(())
        }
    }
}

/// Decodes the values of a Send or Read-Composite / Observe-Composite
/// payload in payload order, typed by the model. Times are always `None`.
pub fn decode_values(
    payload: &[u8],
    models: &dyn ModelLookup,
) -> Result<Vec<TimestampedValue>, FormatError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    walk(payload, &mut |p, leaf, at| {
        let Leaf::Value(s) = leaf else {
            // An empty container carries no value.
            return Ok(());
        };
        value_depth(&p, at)?;
        check_multiplicity(models, &p)?;
        claim(&mut seen, p, at)?;
        let value = typed_value(s, super::cbor::model_type(models, &p))?;
        out.push(TimestampedValue {
            path: p,
            value,
            time: None,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Encodes values (without timestamps) as one tree of nested maps, ids in
/// ascending order whatever the order of `values`.
pub fn encode_values(values: &[TimestampedValue], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let mut objects: BTreeMap<u16, ObjectNode> = BTreeMap::new();
    let clash = FormatError::NotRepresentable(
        "the same path twice, or a resource both single and with instances",
    );
    for tv in values {
        if tv.time.is_some() {
            return Err(FormatError::NotRepresentable(
                "LwM2M CBOR carries no timestamps; use SenML CBOR for timestamped values",
            ));
        }
        let (o, i, r) = match tv.path {
            Path::Resource(o, i, r) | Path::ResourceInstance(o, i, r, _) => (o, i, r),
            _ => {
                return Err(FormatError::NotRepresentable(
                    "a value needs a resource or resource instance path",
                ))
            }
        };
        let inst = objects
            .entry(o)
            .or_insert_with(|| ObjectNode {
                id: o,
                instances: BTreeMap::new(),
            })
            .instances
            .entry(i)
            .or_insert_with(|| Instance {
                id: i,
                resources: BTreeMap::new(),
            });
        match tv.path {
            Path::ResourceInstance(.., ri) => {
                let res = inst.resources.entry(r).or_insert_with(|| Resource {
                    id: r,
                    value: ResourceValue::Multiple(BTreeMap::new()),
                });
                match &mut res.value {
                    ResourceValue::Multiple(m) if !m.contains_key(&ri) => {
                        m.insert(ri, tv.value.clone());
                    }
                    _ => return Err(clash),
                }
            }
            _ => {
                if inst.resources.contains_key(&r) {
                    return Err(clash);
                }
                inst.resources
                    .insert(r, Resource::single(r, tv.value.clone()));
            }
        }
    }
    done(enc(out).map(objects.len() as u64));
    for obj in objects.values() {
        write_id(out, obj.id)?;
        write_object(out, obj)?;
    }
    Ok(())
}

/// Decodes a path list: every leaf must be `null`.
pub fn decode_paths(payload: &[u8]) -> Result<Vec<Path>, FormatError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    walk(payload, &mut |p, leaf, at| {
        if !matches!(leaf, Leaf::Value(Scalar::Null)) {
            return Err(FormatError::Syntax {
                offset: at,
                expected: "null after each path in a path list",
            });
        }
        if !seen.insert(p) {
            return Err(FormatError::Syntax {
                offset: at,
                expected: "each path only once",
            });
        }
        out.push(p);
        Ok(())
    })?;
    Ok(out)
}

/// Encodes a path list as `{key: null, ...}` in the caller's order.
pub fn encode_paths(paths: &[Path], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let mut seen = BTreeSet::new();
    done(enc(out).map(paths.len() as u64));
    for p in paths {
        if !seen.insert(*p) {
            return Err(FormatError::NotRepresentable(
                "the same path twice in a map",
            ));
        }
        p.with_ids(|ids| -> Result<(), FormatError> {
            match ids {
                [] => {
                    return Err(FormatError::NotRepresentable(
                        "`/` has no key in LwM2M CBOR",
                    ))
                }
                [id] => write_id(out, *id)?,
                _ => {
                    done(enc(out).array(ids.len() as u64));
                    for id in ids {
                        write_id(out, *id)?;
                    }
                }
            }
            Ok(())
        })?;
        done(enc(out).null());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// What sits at the end of a key path.
enum Leaf<'b> {
    /// A non-container item.
    Value(Scalar<'b>),
    /// An empty map (a container with nothing in it).
    Empty,
}

type Sink<'s, 'b> = dyn FnMut(Path, Leaf<'b>, usize) -> Result<(), FormatError> + 's;

/// Walks the whole payload, calling `sink` with every leaf's full path, the
/// leaf, and the offset of the key that led to it.
fn walk<'b>(payload: &'b [u8], sink: &mut Sink<'_, 'b>) -> Result<(), FormatError> {
    let mut rd = Reader::new(payload);
    let at = rd.pos();
    if !matches!(rd.datatype()?, Type::Map | Type::MapIndef) {
        return Err(FormatError::Syntax {
            offset: at,
            expected: "a map at the top of a LwM2M CBOR payload",
        });
    }
    let seq = rd.map()?;
    walk_map(&mut rd, seq, Ids::default(), sink)?;
    rd.finish()
}

/// Up to four ids: the path walked so far.
#[derive(Clone, Copy, Default)]
struct Ids {
    ids: [u16; 4],
    len: usize,
}

impl Ids {
    fn push(&mut self, id: u16) -> Result<(), FormatError> {
        // A fifth id is deeper than any LwM2M path.
        let slot = self.ids.get_mut(self.len).ok_or(FormatError::TooDeep)?;
        *slot = id;
        self.len += 1;
        Ok(())
    }

    fn path(&self) -> Result<Path, FormatError> {
        Path::from_ids(self.ids.get(..self.len).unwrap_or(&[]))
            .map_err(|_| FormatError::InvalidPath)
    }
}

/// Recursion is bounded: each level adds at least one id and a map below
/// four ids is rejected, so this nests at most five deep.
fn walk_map<'b>(
    rd: &mut Reader<'b>,
    mut seq: Seq,
    prefix: Ids,
    sink: &mut Sink<'_, 'b>,
) -> Result<(), FormatError> {
    while seq.next(rd)? {
        let key_at = rd.pos();
        let ids = read_key(rd, prefix)?;
        let path = ids.path()?;
        match rd.datatype()? {
            Type::Map | Type::MapIndef => {
                if ids.len >= 4 {
                    return Err(FormatError::TooDeep);
                }
                let mut inner = rd.map()?;
                if inner.is_empty(rd)? {
                    // Consumes the break of an empty indefinite map.
                    inner.next(rd)?;
                    sink(path, Leaf::Empty, key_at)?;
                } else {
                    walk_map(rd, inner, ids, sink)?;
                }
            }
            _ => {
                let value = rd.scalar()?;
                sink(path, Leaf::Value(value), key_at)?;
            }
        }
    }
    Ok(())
}

/// Reads a map key (an id or a non-empty array of ids) and appends it to `prefix`.
fn read_key(rd: &mut Reader<'_>, mut prefix: Ids) -> Result<Ids, FormatError> {
    match rd.datatype()? {
        Type::Array | Type::ArrayIndef => {
            let mut seq = rd.array()?;
            let mut n = 0;
            while seq.next(rd)? {
                prefix.push(read_id(rd)?)?;
                n += 1;
            }
            if n == 0 {
                return Err(FormatError::InvalidPath);
            }
        }
        _ => prefix.push(read_id(rd)?)?,
    }
    Ok(prefix)
}

/// Reads one id: an unsigned integer up to 65534 (65535 is reserved).
fn read_id(rd: &mut Reader<'_>) -> Result<u16, FormatError> {
    let at = rd.pos();
    match rd.datatype()? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => {}
        _ => {
            return Err(FormatError::Syntax {
                offset: at,
                expected: "an id (unsigned integer) or an array of ids as map key",
            })
        }
    }
    let v = rd.int()?;
    u16::try_from(v)
        .ok()
        .filter(|id| *id <= MAX_ID)
        .ok_or(FormatError::InvalidPath)
}

/// Values sit at resource or resource-instance paths only.
fn value_depth(p: &Path, at: usize) -> Result<(), FormatError> {
    if p.depth() < 3 {
        return Err(FormatError::Syntax {
            offset: at,
            expected: "a map (not a value) under an object or instance id",
        });
    }
    Ok(())
}

fn check_multiplicity(models: &dyn ModelLookup, p: &Path) -> Result<(), FormatError> {
    let multiple = match *p {
        Path::Resource(o, _, r) | Path::ResourceInstance(o, _, r, _) => {
            models.resource(o, r).map(|m| m.multiple)
        }
        _ => None,
    };
    match (multiple, p) {
        (Some(true), Path::Resource(..)) => Err(FormatError::InvalidValue {
            what: "single value for a multiple-instance resource",
        }),
        (Some(false), Path::ResourceInstance(..)) => Err(FormatError::InvalidValue {
            what: "resource instance of a single-instance resource",
        }),
        _ => Ok(()),
    }
}

/// Records a value path, rejecting repeats and a resource that is both a
/// value and a parent of resource instances.
fn claim(seen: &mut BTreeSet<Path>, p: Path, at: usize) -> Result<(), FormatError> {
    let parent_is_value = p.depth() == 4 && seen.contains(&p.parent());
    // Paths sort with a prefix first, so a child of `p` would come right after it.
    let has_child = seen
        .range((Bound::Excluded(p), Bound::Unbounded))
        .next()
        .is_some_and(|q| p.is_prefix_of(q));
    if parent_is_value || has_child || !seen.insert(p) {
        return Err(FormatError::Syntax {
            offset: at,
            expected: "each path only once (this one repeats or clashes with another)",
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

fn write_id(out: &mut Vec<u8>, id: u16) -> Result<(), FormatError> {
    if id > MAX_ID {
        return Err(FormatError::NotRepresentable(
            "an id in the node is above 65534",
        ));
    }
    done(enc(out).u16(id));
    Ok(())
}

fn write_object(out: &mut Vec<u8>, obj: &ObjectNode) -> Result<(), FormatError> {
    done(enc(out).map(obj.instances.len() as u64));
    for inst in obj.instances.values() {
        write_id(out, inst.id)?;
        write_instance(out, inst)?;
    }
    Ok(())
}

fn write_instance(out: &mut Vec<u8>, inst: &Instance) -> Result<(), FormatError> {
    done(enc(out).map(inst.resources.len() as u64));
    for res in inst.resources.values() {
        write_id(out, res.id)?;
        write_resource(out, res)?;
    }
    Ok(())
}

fn write_resource(out: &mut Vec<u8>, res: &Resource) -> Result<(), FormatError> {
    match &res.value {
        ResourceValue::Single(v) => write_value(out, v),
        ResourceValue::Multiple(m) => {
            done(enc(out).map(m.len() as u64));
            for (ri, v) in m {
                write_id(out, *ri)?;
                write_value(out, v);
            }
        }
    }
    Ok(())
}
