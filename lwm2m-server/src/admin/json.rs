//! The JSON shapes of the admin API: nodes, registrations, responses.
//!
//! Nodes follow Leshan's demo server so that its users and scripts feel at
//! home:
//!
//! ```json
//! {"kind":"obj","id":3,"instances":[ ...instance... ]}
//! {"kind":"instance","id":0,"resources":[ ...resource... ]}
//! {"kind":"singleResource","id":0,"type":"STRING","value":"Open Mobile Alliance"}
//! {"kind":"multiResource","id":7,"type":"INTEGER","values":{"0":3800,"1":5000}}
//! {"kind":"resourceInstance","id":1,"type":"INTEGER","value":5000}
//! ```
//!
//! Value encodings by `type`: `STRING`, `CORELINK` → JSON string;
//! `INTEGER`, `UNSIGNED_INTEGER`, `FLOAT` → JSON number; `BOOLEAN` → JSON
//! bool; `OPAQUE` → lowercase hex string (as Leshan); `TIME` → Unix seconds
//! as a number (Leshan uses milliseconds of a Java `Date`; seconds are what
//! LwM2M carries, so nothing is lost or invented); `OBJLNK` → `"3:0"`.
//!
//! When a request body omits `type`, the object model gives it; a resource
//! the model does not know needs `type`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use lwm2m_core::coap::Code;
use lwm2m_core::format::link::DiscoverEntry;
use lwm2m_core::model::{
    Instance, ModelLookup, Node, ObjLnk, ObjectNode, Path, Resource, ResourceType, ResourceValue,
    TimestampedValue, Value,
};
use serde_json::{json, Map, Value as Json};

use crate::engine::{Content, DmResponse};
use crate::Registration;

/// Deepest JSON nesting a node body may have (object → instance → resource →
/// values); serde_json's own limit (128) guards the parser itself.
const MAX_RESOURCES: usize = 4096;

/// Leshan's name of a resource type.
pub fn type_name(t: ResourceType) -> &'static str {
    match t {
        ResourceType::String => "STRING",
        ResourceType::Integer => "INTEGER",
        ResourceType::UnsignedInteger => "UNSIGNED_INTEGER",
        ResourceType::Float => "FLOAT",
        ResourceType::Boolean => "BOOLEAN",
        ResourceType::Opaque => "OPAQUE",
        ResourceType::Time => "TIME",
        ResourceType::ObjLnk => "OBJLNK",
        ResourceType::CoreLnk => "CORELINK",
        ResourceType::None => "NONE",
    }
}

fn type_from_name(s: &str) -> Option<ResourceType> {
    Some(match s {
        "STRING" => ResourceType::String,
        "INTEGER" => ResourceType::Integer,
        "UNSIGNED_INTEGER" => ResourceType::UnsignedInteger,
        "FLOAT" => ResourceType::Float,
        "BOOLEAN" => ResourceType::Boolean,
        "OPAQUE" => ResourceType::Opaque,
        "TIME" => ResourceType::Time,
        "OBJLNK" => ResourceType::ObjLnk,
        "CORELINK" => ResourceType::CoreLnk,
        _ => return None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|c| {
            let c = std::str::from_utf8(c).ok()?;
            u8::from_str_radix(c, 16).ok()
        })
        .collect()
}

/// A value as JSON.
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::Integer(i) | Value::Time(i) => json!(i),
        Value::UnsignedInteger(u) => json!(u),
        // NaN and infinities have no JSON form: null says "not a number".
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Boolean(b) => json!(b),
        Value::String(s) | Value::CoreLnk(s) => json!(s),
        Value::Opaque(b) => json!(hex(b)),
        Value::ObjLnk(l) => json!(format!("{}:{}", l.object, l.instance)),
    }
}

fn resource_json(r: &Resource) -> Json {
    match &r.value {
        ResourceValue::Single(v) => json!({
            "kind": "singleResource",
            "id": r.id,
            "type": type_name(v.resource_type()),
            "value": value_json(v),
        }),
        ResourceValue::Multiple(values) => {
            let t = values
                .values()
                .next()
                .map_or("NONE", |v| type_name(v.resource_type()));
            let vals: Map<String, Json> = values
                .iter()
                .map(|(k, v)| (k.to_string(), value_json(v)))
                .collect();
            json!({"kind": "multiResource", "id": r.id, "type": t, "values": vals})
        }
    }
}

fn instance_json(i: &Instance) -> Json {
    let resources: Vec<Json> = i.resources.values().map(resource_json).collect();
    json!({"kind": "instance", "id": i.id, "resources": resources})
}

/// A node as Leshan-style JSON.
pub fn node_json(node: &Node) -> Json {
    match node {
        Node::Object(o) => {
            let instances: Vec<Json> = o.instances.values().map(instance_json).collect();
            json!({"kind": "obj", "id": o.id, "instances": instances})
        }
        Node::Instance(i) => instance_json(i),
        Node::Resource(r) => resource_json(r),
        Node::ResourceInstance { id, value } => json!({
            "kind": "resourceInstance",
            "id": id,
            "type": type_name(value.resource_type()),
            "value": value_json(value),
        }),
    }
}

/// Why a JSON body is not a node for the path.
pub type BodyError = String;

fn field<'a>(obj: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    obj.get(name)
}

fn id_of(obj: &Map<String, Json>, what: &str) -> Result<u16, BodyError> {
    let id = field(obj, "id").ok_or_else(|| format!("{what} needs an \"id\""))?;
    id.as_u64()
        .and_then(|i| u16::try_from(i).ok())
        .filter(|&i| i <= lwm2m_core::model::MAX_ID)
        .ok_or_else(|| format!("{what} \"id\" must be an integer 0..=65534, got {id}"))
}

fn kind_of(obj: &Map<String, Json>) -> Option<&str> {
    field(obj, "kind").and_then(Json::as_str)
}

fn as_object<'a>(j: &'a Json, what: &str) -> Result<&'a Map<String, Json>, BodyError> {
    j.as_object()
        .ok_or_else(|| format!("{what} must be a JSON object"))
}

/// Parses one value of type `t`.
pub fn parse_value(j: &Json, t: ResourceType) -> Result<Value, BodyError> {
    let bad = |want: &str| format!("expected {want} for type {}, got {j}", type_name(t));
    Ok(match t {
        ResourceType::String => Value::String(j.as_str().ok_or_else(|| bad("a string"))?.into()),
        ResourceType::CoreLnk => Value::CoreLnk(j.as_str().ok_or_else(|| bad("a string"))?.into()),
        ResourceType::Integer => Value::Integer(j.as_i64().ok_or_else(|| bad("an integer"))?),
        ResourceType::Time => Value::Time(j.as_i64().ok_or_else(|| bad("Unix seconds"))?),
        ResourceType::UnsignedInteger => {
            Value::UnsignedInteger(j.as_u64().ok_or_else(|| bad("an unsigned integer"))?)
        }
        ResourceType::Float => Value::Float(j.as_f64().ok_or_else(|| bad("a number"))?),
        ResourceType::Boolean => Value::Boolean(j.as_bool().ok_or_else(|| bad("true or false"))?),
        ResourceType::Opaque => Value::Opaque(
            j.as_str()
                .and_then(unhex)
                .ok_or_else(|| bad("a hex string"))?,
        ),
        ResourceType::ObjLnk => {
            let s = j.as_str().ok_or_else(|| bad("\"object:instance\""))?;
            let (o, i) = s
                .split_once(':')
                .ok_or_else(|| bad("\"object:instance\""))?;
            Value::ObjLnk(ObjLnk {
                object: o.parse().map_err(|_| bad("\"object:instance\""))?,
                instance: i.parse().map_err(|_| bad("\"object:instance\""))?,
            })
        }
        ResourceType::None => return Err("executable resources have no value".into()),
    })
}

fn value_type(
    obj: &Map<String, Json>,
    object: u16,
    resource: u16,
    models: &dyn ModelLookup,
) -> Result<ResourceType, BodyError> {
    match field(obj, "type") {
        Some(t) => t
            .as_str()
            .and_then(type_from_name)
            .ok_or_else(|| format!("unknown \"type\" {t} (expected STRING, INTEGER, UNSIGNED_INTEGER, FLOAT, BOOLEAN, OPAQUE, TIME, OBJLNK or CORELINK)")),
        None => models
            .resource(object, resource)
            .map(|m| m.resource_type)
            .ok_or_else(|| {
                format!("resource /{object}/x/{resource} is not in the object models: give its \"type\"")
            }),
    }
}

fn parse_resource(j: &Json, object: u16, models: &dyn ModelLookup) -> Result<Resource, BodyError> {
    let obj = as_object(j, "a resource")?;
    let id = id_of(obj, "a resource")?;
    let t = value_type(obj, object, id, models)?;
    match kind_of(obj) {
        Some("multiResource") => {
            let vals = field(obj, "values")
                .and_then(Json::as_object)
                .ok_or("a multiResource needs \"values\": {\"0\": ...}")?;
            if vals.len() > MAX_RESOURCES {
                return Err(format!("more than {MAX_RESOURCES} resource instances"));
            }
            let mut out = BTreeMap::new();
            for (k, v) in vals {
                let ri: u16 = k
                    .parse()
                    .ok()
                    .filter(|&i| i <= lwm2m_core::model::MAX_ID)
                    .ok_or_else(|| format!("resource instance id {k:?} is not 0..=65534"))?;
                out.insert(ri, parse_value(v, t)?);
            }
            Ok(Resource {
                id,
                value: ResourceValue::Multiple(out),
            })
        }
        Some("singleResource") | None => {
            let v = field(obj, "value").ok_or("a singleResource needs a \"value\"")?;
            Ok(Resource::single(id, parse_value(v, t)?))
        }
        Some(k) => Err(format!(
            "resource \"kind\" {k:?} (expected singleResource or multiResource)"
        )),
    }
}

/// Parses an instance body (`{"kind":"instance","id":0,"resources":[...]}`).
/// `id` overrides a missing id (the path's instance).
pub fn parse_instance(
    j: &Json,
    object: u16,
    id: Option<u16>,
    models: &dyn ModelLookup,
) -> Result<Instance, BodyError> {
    let obj = as_object(j, "an instance")?;
    if let Some(k) = kind_of(obj).filter(|k| *k != "instance") {
        return Err(format!("\"kind\" {k:?} where an instance was expected"));
    }
    let id = match (field(obj, "id"), id) {
        (None, Some(id)) => id,
        _ => id_of(obj, "an instance")?,
    };
    let list = field(obj, "resources")
        .and_then(Json::as_array)
        .ok_or("an instance needs \"resources\": [...]")?;
    if list.len() > MAX_RESOURCES {
        return Err(format!("more than {MAX_RESOURCES} resources"));
    }
    let mut resources = Vec::new();
    for r in list {
        resources.push(parse_resource(r, object, models)?);
    }
    Ok(Instance::new(id, resources))
}

/// Parses a Write body for `path` (an instance, resource or resource
/// instance node; an object path takes `{"kind":"obj","instances":[...]}`).
pub fn parse_node(j: &Json, path: &Path, models: &dyn ModelLookup) -> Result<Node, BodyError> {
    match *path {
        Path::Root => Err("cannot write the root path".into()),
        Path::Object(o) => {
            let obj = as_object(j, "an object")?;
            let list = field(obj, "instances")
                .and_then(Json::as_array)
                .ok_or("an object node needs \"instances\": [...]")?;
            if list.len() > MAX_RESOURCES {
                return Err(format!("more than {MAX_RESOURCES} instances"));
            }
            let mut node = ObjectNode {
                id: o,
                instances: BTreeMap::new(),
            };
            for i in list {
                let i = parse_instance(i, o, None, models)?;
                node.instances.insert(i.id, i);
            }
            Ok(Node::Object(node))
        }
        Path::Instance(o, i) => {
            let inst = parse_instance(j, o, Some(i), models)?;
            if inst.id != i {
                return Err(format!(
                    "body is instance {} but the path is {path}",
                    inst.id
                ));
            }
            Ok(Node::Instance(inst))
        }
        Path::Resource(o, _, r) => {
            let mut j = j.clone();
            // The path names the resource: the body may leave the id out.
            if let Some(m) = j.as_object_mut() {
                m.entry("id").or_insert(json!(r));
            }
            let res = parse_resource(&j, o, models)?;
            if res.id != r {
                return Err(format!(
                    "body is resource {} but the path is {path}",
                    res.id
                ));
            }
            Ok(Node::Resource(res))
        }
        Path::ResourceInstance(o, _, r, ri) => {
            let obj = as_object(j, "a resource instance")?;
            let t = value_type(obj, o, r, models)?;
            let v = field(obj, "value").ok_or("a resourceInstance needs a \"value\"")?;
            Ok(Node::ResourceInstance {
                id: ri,
                value: parse_value(v, t)?,
            })
        }
    }
}

/// Leshan's name of a CoAP response code (`CONTENT`, `NOT_FOUND`...).
pub fn code_name(code: Code) -> String {
    let name = match (code.class(), code.detail()) {
        (2, 1) => "CREATED",
        (2, 2) => "DELETED",
        (2, 3) => "VALID",
        (2, 4) => "CHANGED",
        (2, 5) => "CONTENT",
        (2, 31) => "CONTINUE",
        (4, 0) => "BAD_REQUEST",
        (4, 1) => "UNAUTHORIZED",
        (4, 2) => "BAD_OPTION",
        (4, 3) => "FORBIDDEN",
        (4, 4) => "NOT_FOUND",
        (4, 5) => "METHOD_NOT_ALLOWED",
        (4, 6) => "NOT_ACCEPTABLE",
        (4, 8) => "REQUEST_ENTITY_INCOMPLETE",
        (4, 9) => "CONFLICT",
        (4, 12) => "PRECONDITION_FAILED",
        (4, 13) => "REQUEST_ENTITY_TOO_LARGE",
        (4, 15) => "UNSUPPORTED_CONTENT_FORMAT",
        (5, 0) => "INTERNAL_SERVER_ERROR",
        (5, 1) => "NOT_IMPLEMENTED",
        (5, 2) => "BAD_GATEWAY",
        (5, 3) => "SERVICE_UNAVAILABLE",
        (5, 4) => "GATEWAY_TIMEOUT",
        (5, 5) => "PROXYING_NOT_SUPPORTED",
        _ => return format!("CODE_{code}"),
    };
    name.to_string()
}

/// Discover links as `[{"url":"/3/0","attributes":{"pmin":"10"}}]`.
pub fn links_json(links: &[DiscoverEntry]) -> Json {
    let list: Vec<Json> = links
        .iter()
        .map(|e| {
            let attrs: Map<String, Json> = e
                .attributes
                .to_query()
                .into_iter()
                .map(|q| match q.split_once('=') {
                    Some((k, v)) => (k.to_string(), json!(v)),
                    None => (q, Json::Null),
                })
                .collect();
            json!({"url": e.path.to_string(), "attributes": attrs})
        })
        .collect();
    Json::Array(list)
}

/// A device's answer: `{"status":"CONTENT","code":"2.05","success":true,"content":{...}}`.
pub fn response_json(r: &DmResponse) -> Json {
    let mut out = Map::new();
    out.insert("status".into(), json!(code_name(r.code)));
    out.insert("code".into(), json!(r.code.to_string()));
    out.insert("success".into(), json!(r.code.is_success()));
    match &r.content {
        Content::None => {}
        Content::Node(n) => {
            out.insert("content".into(), node_json(n));
        }
        Content::Links(l) => {
            out.insert("objectLinks".into(), links_json(l));
        }
        Content::Values(v) => {
            out.insert("values".into(), values_json(v));
        }
        Content::Created(p) => {
            if let Some(p) = p {
                out.insert("location".into(), json!(p.to_string()));
            }
        }
        Content::Raw {
            content_format,
            payload,
        } => {
            // An error response's diagnostic payload is text (RFC 7252 §5.5.2).
            if r.code.is_error() {
                out.insert(
                    "errorMessage".into(),
                    json!(String::from_utf8_lossy(payload)),
                );
            } else {
                out.insert(
                    "raw".into(),
                    json!({"contentFormat": content_format, "payload": hex(payload)}),
                );
            }
        }
    }
    Json::Object(out)
}

/// Timestamped values (Send, composite answers) as
/// `[{"path":"/3/0/9","value":87,"time":1700000000}]` (`time` only if the
/// device gave one), in the order the device sent them.
pub fn values_json(values: &[TimestampedValue]) -> Json {
    Json::Array(
        values
            .iter()
            .map(|v| {
                let mut o = Map::new();
                o.insert("path".into(), json!(v.path.to_string()));
                o.insert("value".into(), value_json(&v.value));
                if let Some(t) = v.time {
                    o.insert("time".into(), json!(t));
                }
                Json::Object(o)
            })
            .collect(),
    )
}

/// Parses a Write-Composite body: an object of path → value,
/// `{"/3/0/14":"+02:00","/1/0/1":300}`. Values are typed by the object
/// models; a resource the models do not know takes
/// `{"type":"STRING","value":...}`. Paths are resources or resource
/// instances.
pub fn parse_values(
    j: &Json,
    models: &dyn ModelLookup,
) -> Result<Vec<TimestampedValue>, BodyError> {
    let obj = as_object(j, "an object of path → value")?;
    if obj.is_empty() {
        return Err("no values to write: expected {\"/O/I/R\": value, ...}".into());
    }
    if obj.len() > MAX_RESOURCES {
        return Err(format!("more than {MAX_RESOURCES} values"));
    }
    let mut out = Vec::new();
    for (p, v) in obj {
        let path: Path = p
            .parse()
            .map_err(|_| format!("bad path {p:?}: expected /O/I/R or /O/I/R/RI"))?;
        let (o, r) = match path {
            Path::Resource(o, _, r) | Path::ResourceInstance(o, _, r, _) => (o, r),
            _ => return Err(format!("{p}: Write-Composite values need a resource path")),
        };
        let (t, value) = match v.as_object() {
            Some(vo) => (
                value_type(vo, o, r, models)?,
                field(vo, "value").ok_or_else(|| format!("{p}: missing \"value\""))?,
            ),
            None => (
                models
                    .resource(o, r)
                    .map(|m| m.resource_type)
                    .ok_or_else(|| {
                        format!("resource {p} is not in the object models: give {{\"type\":..., \"value\":...}}")
                    })?,
                v,
            ),
        };
        let value = parse_value(value, t).map_err(|e| format!("{p}: {e}"))?;
        out.push(TimestampedValue {
            path,
            value,
            time: None,
        });
    }
    Ok(out)
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC (`2026-11-23T18:00:00.000Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A registration as Leshan's demo shows it. `sleeping` is computed by the
/// caller (queue mode and outside the awake window).
pub fn registration_json(r: &Registration<SocketAddr>, sleeping: bool) -> Json {
    let links: Vec<Json> = r
        .links
        .objects
        .iter()
        .map(|(p, ver)| {
            let mut attrs = Map::new();
            if let Some(v) = ver {
                attrs.insert("ver".into(), json!(v.to_string()));
            }
            json!({"url": p.to_string(), "attributes": attrs})
        })
        .collect();
    json!({
        "endpoint": r.endpoint,
        "registrationId": r.id,
        "address": r.address.to_string(),
        "lifetime": r.lifetime,
        "lwM2mVersion": r.lwm2m_version.to_string(),
        "bindingMode": r.binding,
        "sms": r.sms,
        "queueMode": r.queue_mode,
        "sleeping": sleeping,
        "rootPath": r.links.root.clone().unwrap_or_else(|| "/".into()),
        "supportedContentFormats": r.links.content_formats,
        "objectLinks": links,
        "registrationDate": rfc3339(r.registered_at.as_millis()),
        "lastUpdate": rfc3339(r.last_update.as_millis()),
        // The DTLS identity (PSK identity or certificate CN), never a key.
        "security": r.security.as_ref().map_or("none", |s| s.kind()),
        "identity": r.security.as_ref().map(|s| s.identity()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m_core::model::NO_MODELS;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day of a century leap year) 12:34:56.789
        assert_eq!(rfc3339(951_827_696_789), "2000-02-29T12:34:56.789Z");
        // Checked with `date -u -d @1795000000`.
        assert_eq!(rfc3339(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn instance_round_trip_with_every_type() {
        let inst = Instance::new(
            0,
            [
                Resource::single(0, Value::String("x".into())),
                Resource::single(1, Value::Integer(-3)),
                Resource::single(2, Value::UnsignedInteger(u64::MAX)),
                Resource::single(3, Value::Float(1.5)),
                Resource::single(4, Value::Boolean(true)),
                Resource::single(5, Value::Opaque(vec![0, 0xab])),
                Resource::single(6, Value::Time(1_700_000_000)),
                Resource::single(
                    7,
                    Value::ObjLnk(ObjLnk {
                        object: 3,
                        instance: 0,
                    }),
                ),
                Resource::single(8, Value::CoreLnk("</3>".into())),
                Resource::multiple(9, [(0, Value::Integer(1)), (5, Value::Integer(2))]),
            ],
        );
        let j = node_json(&Node::Instance(inst.clone()));
        assert_eq!(j["kind"], "instance");
        assert_eq!(j["resources"][5]["value"], "00ab");
        assert_eq!(j["resources"][7]["value"], "3:0");
        assert_eq!(j["resources"][9]["values"]["5"], 2);
        let back = parse_node(&j, &Path::Instance(9, 0), &NO_MODELS).unwrap();
        assert_eq!(back, Node::Instance(inst));
    }

    #[test]
    fn resource_body_typed_by_the_model() {
        let models = lwm2m_objects::Registry::standard();
        let n = parse_node(&json!({"value": 120}), &Path::Resource(1, 0, 1), &models).unwrap();
        // Lifetime's type comes from whichever Server object version is the default.
        let expected = match models.resource(1, 1).map(|m| m.resource_type) {
            Some(ResourceType::Integer) => Value::Integer(120),
            Some(ResourceType::UnsignedInteger) => Value::UnsignedInteger(120),
            t => panic!("unexpected Lifetime type {t:?}"),
        };
        assert_eq!(n, Node::Resource(Resource::single(1, expected)));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let e = parse_node(
            &json!({"value": 1}),
            &Path::Resource(9999, 0, 1),
            &NO_MODELS,
        )
        .unwrap_err();
        assert!(e.contains("give its \"type\""), "{e}");
        let e = parse_node(
            &json!({"kind":"instance","id":1,"resources":[]}),
            &Path::Instance(3, 0),
            &NO_MODELS,
        )
        .unwrap_err();
        assert!(e.contains("path is /3/0"), "{e}");
        let e = parse_node(
            &json!({"type":"OPAQUE","value":"abc"}),
            &Path::Resource(3, 0, 1),
            &NO_MODELS,
        )
        .unwrap_err();
        assert!(e.contains("hex"), "{e}");
        let e = parse_node(
            &json!({"type":"INTEGER","value":"1"}),
            &Path::Resource(3, 0, 1),
            &NO_MODELS,
        )
        .unwrap_err();
        assert!(e.contains("integer"), "{e}");
    }

    /// Odd bodies at every depth are errors, never panics (the body is
    /// whatever an HTTP caller sent).
    #[test]
    fn odd_bodies_never_panic() {
        let models = lwm2m_objects::Registry::standard();
        let bodies = [
            "null",
            "[]",
            "{}",
            "1",
            "\"x\"",
            "true",
            r#"{"kind":"obj"}"#,
            r#"{"kind":"obj","instances":[null]}"#,
            r#"{"kind":"obj","instances":[{"id":70000,"resources":[]}]}"#,
            r#"{"kind":"instance","id":-1,"resources":[]}"#,
            r#"{"kind":"instance","id":0,"resources":[{"id":0}]}"#,
            r#"{"kind":"instance","id":0,"resources":[{"id":0,"value":null}]}"#,
            r#"{"kind":"instance","id":0,"resources":[{"id":0,"kind":"multiResource","values":[]}]}"#,
            r#"{"kind":"instance","id":0,"resources":[{"id":7,"kind":"multiResource","values":{"x":1}}]}"#,
            r#"{"kind":"instance","id":0,"resources":[{"id":7,"kind":"multiResource","values":{"65535":1}}]}"#,
            r#"{"kind":"singleResource","id":0,"type":"OBJLNK","value":"1:"}"#,
            r#"{"kind":"singleResource","id":0,"type":"OBJLNK","value":"70000:1"}"#,
            r#"{"kind":"singleResource","id":0,"type":"OPAQUE","value":"zz"}"#,
            r#"{"kind":"singleResource","id":0,"type":"OPAQUE","value":"é0"}"#,
            r#"{"kind":"singleResource","id":0,"type":"UNSIGNED_INTEGER","value":-1}"#,
            r#"{"kind":"singleResource","id":0,"type":"INTEGER","value":1e300}"#,
            r#"{"kind":"singleResource","id":0,"type":"NONE","value":1}"#,
            r#"{"kind":"singleResource","id":0,"type":7,"value":1}"#,
            r#"{"kind":"resourceInstance","id":0,"value":1}"#,
        ];
        let paths = [
            Path::Root,
            Path::Object(3),
            Path::Instance(3, 0),
            Path::Resource(3, 0, 0),
            Path::Resource(3, 0, 7),
            Path::ResourceInstance(3, 0, 7, 0),
            Path::Resource(9999, 0, 0),
        ];
        for b in bodies {
            let j: Json = serde_json::from_str(b).unwrap();
            for p in &paths {
                // Only "does not panic" is asserted for the odd ones; the
                // clearly wrong ones must be errors.
                let r = parse_node(&j, p, &models);
                if matches!(b, "null" | "[]" | "1" | "true") || *p == Path::Root {
                    assert!(r.is_err(), "{b} at {p}");
                }
            }
        }
    }

    #[test]
    fn response_shapes() {
        let r = DmResponse {
            code: Code::NOT_FOUND,
            content: Content::None,
        };
        assert_eq!(
            response_json(&r),
            json!({"status":"NOT_FOUND","code":"4.04","success":false})
        );
    }
}
