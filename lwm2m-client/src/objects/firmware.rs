//! Firmware Update object (5) on top of the sans-IO state machine
//! [`lwm2m_objects::firmware::FirmwareUpdate`].
//!
//! * Push: a Write of Package (`/5/0/0`, block-wise or not: the CoAP
//!   endpoint reassembles Block1) is fed to the state machine as one chunk.
//! * Pull: a Write of a `coap://` Package URI makes the object ask the
//!   engine for a GET ([`Object::poll_request`]); the endpoint reassembles
//!   the Block2 response and the body is stored as the image. Other schemes
//!   get Update Result 9 (the object announces CoAP only in Protocol
//!   Support); a URI the engine's resolver cannot map, or a 4.xx answer,
//!   gets 7; a timeout or reset gets 4.
//! * Update: the object starts the update at once (no deferral prompt) and
//!   calls the integrator's hook with the storage holding the image. The
//!   hook answers [`UpdateOutcome`]: done (Result 1), failed, or pending, in
//!   which case the integrator reports later through a [`FirmwareHandle`]
//!   (after a reboot, say).
//! * State, Update Result and the other resources the state machine changes
//!   are reported to the engine ([`Object::take_changed`]), so observers of
//!   `/5/0/3` get a notification on each state change.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::model::{ObjectModel, Path, ResourceValue};
use lwm2m_core::time::Instant;
use lwm2m_objects::firmware::{
    DownloadError, FirmwareConfig, FirmwareStorage, FirmwareUpdate, FwError, FwEvent, Protocol,
    UpdateFailure, UpdateResult, RESOURCES,
};
use lwm2m_objects::firmware_update as fwo;

use crate::object::{DmError, Object, ObjectRequest, ObjectRequestError};

/// What the update hook did with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Installed: Idle, Update Result 1.
    Succeeded,
    /// Failed (see [`UpdateFailure`] for where each kind leads).
    Failed(UpdateFailure),
    /// Still going (a reboot into the new image, say): the integrator
    /// reports with [`FirmwareHandle::update_succeeded`] or
    /// [`FirmwareHandle::update_failed`].
    Pending,
}

type UpdateHook<S> = Box<dyn FnMut(&mut S) -> UpdateOutcome>;

struct Inner<S> {
    fw: FirmwareUpdate<S>,
    /// Last time the engine gave (all the state machine's timestamps use it).
    now: Instant,
}

/// A handle on the state machine for the integrator: report the outcome of
/// a pending update, look at the state or the storage. Changes made through
/// it reach observers at the engine's next entry point (or at once with
/// [`Client::changed`](crate::Client::changed)).
pub struct FirmwareHandle<S> {
    inner: Rc<RefCell<Inner<S>>>,
}

impl<S> Clone for FirmwareHandle<S> {
    fn clone(&self) -> Self {
        FirmwareHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<S: FirmwareStorage> FirmwareHandle<S> {
    /// The pending update succeeded: Idle, Update Result 1.
    pub fn update_succeeded(&self, now: Instant) -> Result<(), FwError> {
        self.inner.borrow_mut().fw.update_succeeded(now)
    }

    /// The pending update failed.
    pub fn update_failed(&self, failure: UpdateFailure, now: Instant) -> Result<(), FwError> {
        self.inner.borrow_mut().fw.update_failed(failure, now)
    }

    /// Sets the SHA-256 digest the next (or current) package must have.
    pub fn set_expected_sha256(&self, digest: Option<[u8; 32]>) {
        self.inner.borrow_mut().fw.set_expected_sha256(digest);
    }

    /// Runs `f` on the state machine (to read State, the storage...).
    pub fn with<T>(&self, f: impl FnOnce(&mut FirmwareUpdate<S>) -> T) -> T {
        f(&mut self.inner.borrow_mut().fw)
    }
}

/// The Firmware Update object with one instance (0).
pub struct Firmware<S> {
    model: ObjectModel,
    inner: Rc<RefCell<Inner<S>>>,
    hook: UpdateHook<S>,
    /// Tag of the download in flight; answers with another tag are stale
    /// (the download was cancelled or replaced).
    download: Option<u32>,
    next_tag: u32,
    requests: Vec<ObjectRequest>,
}

impl<S> fmt::Debug for Firmware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Firmware")
            .field("download", &self.download)
            .finish_non_exhaustive()
    }
}

impl<S: FirmwareStorage + 'static> Firmware<S> {
    /// An object storing images in `storage` and installing them with
    /// `hook`. Protocol Support is CoAP only (this client has no DTLS or
    /// HTTP downloader), delivery push and pull.
    ///
    /// The hook runs inside the engine's call with the state machine
    /// borrowed: it answers with [`UpdateOutcome`] and must not use a
    /// [`FirmwareHandle`] itself (that would be a `RefCell` double borrow);
    /// a pending update is reported through the handle later, outside.
    pub fn new(storage: S, hook: impl FnMut(&mut S) -> UpdateOutcome + 'static) -> Firmware<S> {
        let config = FirmwareConfig {
            protocols: vec![Protocol::Coap],
            ..FirmwareConfig::default()
        };
        Firmware::with_config(config, storage, hook)
    }

    /// Like [`Firmware::new`] with the state machine's configuration given.
    pub fn with_config(
        config: FirmwareConfig,
        storage: S,
        hook: impl FnMut(&mut S) -> UpdateOutcome + 'static,
    ) -> Firmware<S> {
        let fw = FirmwareUpdate::new(config, storage, Instant::ZERO);
        Firmware {
            model: fwo::v1_1::MODEL.to_model(),
            inner: Rc::new(RefCell::new(Inner {
                fw,
                now: Instant::ZERO,
            })),
            hook: Box::new(hook),
            download: None,
            next_tag: 0,
            requests: Vec::new(),
        }
    }

    /// A handle for the integrator (see [`FirmwareHandle`]).
    pub fn handle(&self) -> FirmwareHandle<S> {
        FirmwareHandle {
            inner: self.inner.clone(),
        }
    }

    /// Acts on what the state machine asks for.
    fn drive(&mut self) {
        loop {
            let mut inner = self.inner.borrow_mut();
            let now = inner.now;
            let Some(event) = inner.fw.poll_event() else {
                return;
            };
            match event {
                FwEvent::Download { uri, .. } => {
                    // The endpoint's Block2 reassembly always starts at block
                    // 0; the state machine skips bytes already stored, so a
                    // resumed download simply fetches everything again.
                    match coap_get(&uri) {
                        Some(request) => {
                            self.next_tag = self.next_tag.wrapping_add(1);
                            self.download = Some(self.next_tag);
                            self.requests.push(ObjectRequest {
                                tag: self.next_tag,
                                uri,
                                request,
                            });
                        }
                        None => {
                            let _ = inner.fw.download_failed(DownloadError::InvalidUri, now);
                        }
                    }
                }
                FwEvent::Abort => self.download = None,
                FwEvent::UpdateRequested { .. } => {
                    let _ = inner.fw.start_update(now);
                }
                FwEvent::StartUpdate => {
                    let outcome = (self.hook)(inner.fw.storage_mut());
                    let _ = match outcome {
                        UpdateOutcome::Succeeded => inner.fw.update_succeeded(now),
                        UpdateOutcome::Failed(f) => inner.fw.update_failed(f, now),
                        UpdateOutcome::Pending => Ok(()),
                    };
                }
            }
        }
    }
}

/// A GET for a `coap://` URI: Uri-Path and Uri-Query from its path and
/// query (percent-encodings left as they are). `None` if it is not one.
fn coap_get(uri: &str) -> Option<Request> {
    let scheme_len = "coap://".len();
    if !uri.get(..scheme_len)?.eq_ignore_ascii_case("coap://") {
        return None;
    }
    let rest = uri.get(scheme_len..)?;
    let rest = rest.split('#').next().unwrap_or_default();
    let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
    let (_authority, tail) = rest.split_at(path_start);
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut request = Request::new(Code::GET);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        request.options.push(
            lwm2m_core::coap::option::number::URI_PATH,
            seg.as_bytes().to_vec(),
        );
    }
    for q in query.into_iter().flat_map(|q| q.split('&')) {
        request.options.push(
            lwm2m_core::coap::option::number::URI_QUERY,
            q.as_bytes().to_vec(),
        );
    }
    Some(request)
}

fn dm_error(e: FwError) -> DmError {
    match e {
        FwError::NotFound { .. } => DmError::NotFound,
        FwError::OperationNotAllowed { .. }
        | FwError::InvalidState { .. }
        | FwError::PushNotSupported
        | FwError::DeferNotAllowed
        | FwError::DeferPeriodExpired => DmError::MethodNotAllowed,
        FwError::DownloadFailed(UpdateResult::OutOfRam) => DmError::Internal,
        FwError::BadValue { .. }
        | FwError::UnexpectedOffset { .. }
        | FwError::DownloadFailed(_) => DmError::BadRequest,
    }
}

impl<S: FirmwareStorage + 'static> Object for Firmware<S> {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        vec![0]
    }

    fn resources(&self, _instance: u16) -> Vec<u16> {
        RESOURCES.to_vec()
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        self.inner.borrow().fw.read(resource).map_err(dm_error)
    }

    fn write(&mut self, instance: u16, resource: u16, value: ResourceValue) -> Result<(), DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        let ResourceValue::Single(value) = value else {
            return Err(DmError::BadRequest);
        };
        let result = {
            let mut inner = self.inner.borrow_mut();
            let now = inner.now;
            inner.fw.write(resource, value, now)
        };
        self.drive();
        match result {
            // The Write was taken; the failure is in Update Result (the
            // storage refused the image, the digest did not match).
            Err(FwError::DownloadFailed(r)) if r != UpdateResult::OutOfRam => Ok(()),
            other => other.map_err(dm_error),
        }
    }

    fn execute(&mut self, instance: u16, resource: u16, args: &str) -> Result<(), DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        let result = {
            let mut inner = self.inner.borrow_mut();
            let now = inner.now;
            inner.fw.execute(resource, args.as_bytes(), now)
        };
        self.drive();
        result.map_err(dm_error)
    }

    fn tick(&mut self, now: Instant) {
        {
            let mut inner = self.inner.borrow_mut();
            inner.now = inner.now.max(now);
            inner.fw.tick(now);
        }
        self.drive();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.borrow().fw.next_deadline()
    }

    fn take_changed(&mut self) -> Vec<Path> {
        // Events queued through the handle (a reported update) first.
        self.drive();
        let changed = self.inner.borrow_mut().fw.take_changed();
        changed.iter().map(|r| Path::Resource(5, 0, r)).collect()
    }

    fn poll_request(&mut self) -> Option<ObjectRequest> {
        if self.requests.is_empty() {
            None
        } else {
            Some(self.requests.remove(0))
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        tag: u32,
        result: Result<Response, ObjectRequestError>,
    ) {
        if self.download != Some(tag) {
            return;
        }
        self.download = None;
        {
            let mut inner = self.inner.borrow_mut();
            inner.now = inner.now.max(now);
            let fw = &mut inner.fw;
            let failure = match result {
                Ok(r) if r.code == Code::CONTENT => {
                    // A storage or digest failure is already in Update Result.
                    let stored = fw.download_chunk(0, &r.payload, now).is_ok();
                    if stored {
                        let _ = fw.download_complete(now);
                    }
                    None
                }
                // 4.04 and other client errors: the URI does not lead to a
                // package. Server errors count as a lost connection, which
                // keeps what was stored for a retry.
                Ok(r) if r.code.class() == 4 => Some(DownloadError::InvalidUri),
                Ok(_) => Some(DownloadError::ConnectionLost),
                Err(ObjectRequestError::Unresolvable) => Some(DownloadError::InvalidUri),
                Err(ObjectRequestError::Refused | ObjectRequestError::Failed(_)) => {
                    Some(DownloadError::ConnectionLost)
                }
            };
            if let Some(e) = failure {
                let _ = fw.download_failed(e, now);
            }
        }
        self.drive();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m_core::coap::option::number;

    fn options(r: &Request, n: u16) -> Vec<&[u8]> {
        r.options.get_all(n).collect()
    }

    #[test]
    fn coap_uris_become_get_requests() {
        let r = coap_get("coap://host:5683/fw/image.bin?v=2&x#frag").unwrap();
        assert_eq!(r.code, Code::GET);
        assert_eq!(
            options(&r, number::URI_PATH),
            [&b"fw"[..], &b"image.bin"[..]]
        );
        assert_eq!(options(&r, number::URI_QUERY), [&b"v=2"[..], &b"x"[..]]);
        let r = coap_get("COAP://host").unwrap();
        assert!(options(&r, number::URI_PATH).is_empty());
        assert!(coap_get("coaps://host/fw").is_none());
        assert!(coap_get("http://host/fw").is_none());
        assert!(coap_get("coa").is_none());
    }
}
