//! The object API integrators implement, one implementation per LwM2M object.
//!
//! The [`engine`](crate::engine) does everything protocol-related (paths,
//! content formats, operation checks against the model, attributes,
//! observations); an [`Object`] only stores and produces resource values.
//! Before calling an object the engine checks, against [`Object::model`]:
//! that the instance exists ([`Object::instances`]), that the resource is
//! defined and present ([`Object::resources`]) and that the model allows the
//! operation (R, W, RW, E). So `read` is never called for an executable
//! resource, `execute` never for a readable one, and so on.
//!
//! Every method but `model`, `instances` and `read` has a default that
//! refuses with 4.05 Method Not Allowed, so a read-only object is short:
//!
//! ```
//! use lwm2m_client::object::{DmError, Object};
//! use lwm2m_core::model::{ObjectModel, ResourceValue, Value};
//!
//! /// A temperature sensor (IPSO 3303) with one instance and one resource.
//! struct Temperature {
//!     model: ObjectModel,
//!     celsius: f64,
//! }
//!
//! impl Object for Temperature {
//!     fn model(&self) -> &ObjectModel {
//!         &self.model
//!     }
//!     fn instances(&self) -> Vec<u16> {
//!         vec![0]
//!     }
//!     fn read(&self, _instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
//!         match resource {
//!             5700 => Ok(ResourceValue::Single(Value::Float(self.celsius))),
//!             _ => Err(DmError::NotFound),
//!         }
//!     }
//! }
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use lwm2m_core::coap::endpoint::RequestError;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::model::{ObjectModel, Path, Resource, ResourceValue};
use lwm2m_core::time::Instant;

/// A request an object wants sent (a firmware download, say): the engine
/// maps `uri` to a peer with the resolver given to
/// [`Client::set_resolver`](crate::Client::set_resolver) and sends
/// `request` there; the answer comes back through
/// [`Object::handle_response`] with the same `tag`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRequest {
    /// Chosen by the object to match the answer.
    pub tag: u32,
    /// Where to send it (`coap://host[:port]/...`).
    pub uri: String,
    /// The request (Uri-Path and Uri-Query set by the object).
    pub request: Request,
}

/// Why an [`ObjectRequest`] got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectRequestError {
    /// The resolver could not map the URI to a peer (or none is set).
    Unresolvable,
    /// A `coaps://` URI whose host and port no `coaps://` Security instance
    /// resolves to: the client has no credentials to authenticate with
    /// there (and never sends such a request in clear).
    NoCredentials,
    /// The CoAP layer refused to send it (queue full, body too large).
    Refused,
    /// Sent, but it failed (timeout, reset, block-wise trouble).
    Failed(RequestError),
}

/// Why an object refused an operation. Each variant is answered with one
/// CoAP response code ([`DmError::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DmError {
    /// 4.00: the request is not valid for this object (bad value, bad
    /// arguments, missing mandatory resource in a Create).
    BadRequest,
    /// 4.01: the server may not access this object.
    Unauthorized,
    /// 4.04: no such instance, resource or resource instance.
    NotFound,
    /// 4.05: the object does not support this operation.
    MethodNotAllowed,
    /// 5.00: the device failed doing it.
    Internal,
}

impl DmError {
    /// The response code the engine answers with.
    pub fn code(self) -> Code {
        match self {
            DmError::BadRequest => Code::BAD_REQUEST,
            DmError::Unauthorized => Code::UNAUTHORIZED,
            DmError::NotFound => Code::NOT_FOUND,
            DmError::MethodNotAllowed => Code::METHOD_NOT_ALLOWED,
            DmError::Internal => Code::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for DmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DmError::BadRequest => "bad request",
            DmError::Unauthorized => "unauthorized",
            DmError::NotFound => "not found",
            DmError::MethodNotAllowed => "method not allowed",
            DmError::Internal => "internal error",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DmError {}

/// One LwM2M object: its model and its instances' values.
///
/// See the [module documentation](self) for what the engine checks before
/// calling each method.
pub trait Object {
    /// The object definition: id, version (announced as `ver=` when it is not
    /// 1.0), resources with their operations and types. Content-format
    /// decoders use it to type written values.
    fn model(&self) -> &ObjectModel;

    /// The ids of the existing instances.
    fn instances(&self) -> Vec<u16>;

    /// The resources present in `instance` (Discover lists them, an instance
    /// or object Read reads the readable ones). The default is every resource
    /// of the model; an instance Read skips the ones whose `read` answers
    /// [`DmError::NotFound`], so optional resources an object does not
    /// implement only show up in Discover unless this is overridden.
    fn resources(&self, instance: u16) -> Vec<u16> {
        let _ = instance;
        self.model().resources.keys().copied().collect()
    }

    /// The value of a readable resource: [`ResourceValue::Single`] for a
    /// single-instance resource, [`ResourceValue::Multiple`] for a
    /// multiple-instance one.
    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError>;

    /// Stores a new value of a writable resource. For a multiple-instance
    /// resource `value` is the complete new set of resource instances (the
    /// engine merges partial updates before calling). Default: 4.05.
    fn write(&mut self, instance: u16, resource: u16, value: ResourceValue) -> Result<(), DmError> {
        let _ = (instance, resource, value);
        Err(DmError::MethodNotAllowed)
    }

    /// Runs an executable resource. `args` is the Execute payload (TS Core
    /// §5.4.5 argument list such as `0='v1',1`; empty if none), already
    /// checked to be UTF-8. Default: 4.05.
    fn execute(&mut self, instance: u16, resource: u16, args: &str) -> Result<(), DmError> {
        let _ = (instance, resource, args);
        Err(DmError::MethodNotAllowed)
    }

    /// Creates instance `instance` (chosen by the server, or the lowest free
    /// id) with the resources of the Create payload. Default: 4.05.
    fn create(&mut self, instance: u16, resources: Vec<Resource>) -> Result<(), DmError> {
        let _ = (instance, resources);
        Err(DmError::MethodNotAllowed)
    }

    /// Deletes an instance. Default: 4.05.
    fn delete(&mut self, instance: u16) -> Result<(), DmError> {
        let _ = instance;
        Err(DmError::MethodNotAllowed)
    }

    /// The current time, given by the engine at every entry point before
    /// any other call (objects with timers or timestamps keep it), and at
    /// [`Object::poll_timeout`]. Default: nothing.
    fn tick(&mut self, now: Instant) {
        let _ = now;
    }

    /// When [`Object::tick`] has something to do. Default: never.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Paths whose values changed by themselves since the last call (a
    /// state machine moved), for observations. The engine asks after every
    /// entry point. Default: none.
    fn take_changed(&mut self) -> Vec<Path> {
        Vec::new()
    }

    /// The next request the object wants sent (see [`ObjectRequest`]).
    /// Default: none.
    fn poll_request(&mut self) -> Option<ObjectRequest> {
        None
    }

    /// The answer to the [`ObjectRequest`] tagged `tag`. Default: ignored.
    fn handle_response(
        &mut self,
        now: Instant,
        tag: u32,
        result: Result<Response, ObjectRequestError>,
    ) {
        let _ = (now, tag, result);
    }
}
