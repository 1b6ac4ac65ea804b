//! Firmware Update object (5) on top of the sans-IO state machine
//! [`lwm2m_objects::firmware::FirmwareUpdate`].
//!
//! * Push: a Write of Package (`/5/0/0`, block-wise or not: the CoAP
//!   endpoint reassembles Block1) is fed to the state machine as one chunk.
//! * Pull over CoAP: a Write of a `coap://` Package URI makes the object
//!   ask the engine for GETs ([`Object::poll_request`]), one per Block2
//!   block of 1024 bytes (or the smaller size the server picks), each
//!   stored as it arrives; a resume asks for block `stored / size` first.
//!   A server that cannot serve that block (4.xx, say an expired
//!   block-wise cache) or answers with block 0 makes the download restart
//!   at 0, once per attempt. A URI the engine's resolver cannot map, or a
//!   4.xx answer, gets Update Result 7; a timeout or reset is a lost
//!   connection (see below).
//! * Pull by the host: the schemes of Protocol Support other than `coap`
//!   (`http`, `https` with the tokio driver's fetcher) are downloaded by the
//!   integrator's host: it takes [`DownloadCommand`]s from
//!   [`FirmwareHandle::poll_download`] and feeds the bytes back with
//!   [`FirmwareHandle::download_data`] and friends. The object stays sans-IO.
//!   Schemes outside Protocol Support get Result 9, and so do `coap+tcp`
//!   and `coaps+tcp` even when listed: CoAP over TCP is a later issue.
//! * Pull over CoAPS: a `coaps://` Package URI is fetched like `coap://`,
//!   block by block; the driver carries the requests over DTLS with the
//!   credentials of the Security instance whose URI resolves to the same
//!   peer (the LwM2M server's own account when the package lives on its
//!   host and port, as Anjay does). Without such an instance the engine
//!   does not send in clear: Result 9. A failed handshake fails the
//!   attempt at once (a lost connection: retried, then Result 4).
//! * Resume ([`ResumePolicy`]): a download that loses its connection is
//!   started again from the bytes already stored (the host gets
//!   `resume_from`, HTTP uses `Range`), up to `attempts` times in a row
//!   without progress, `delay` × attempt apart; then Idle with Result 4,
//!   the bytes kept so that writing the same Package URI again resumes.
//! * Update: the optional decision hook ([`Firmware::on_update_requested`])
//!   may defer (Result 11, Downloaded, within Maximum Defer Period /5/0/13);
//!   otherwise the update starts and the integrator's hook is called with
//!   the storage holding the image. The hook answers [`UpdateOutcome`]:
//!   done (Result 1), failed, or pending, in which case the integrator
//!   reports later through a [`FirmwareHandle`] (after a reboot, say).
//! * State, Update Result and the other resources the state machine changes
//!   are reported to the engine ([`Object::take_changed`]), so observers of
//!   `/5/0/3` get a notification on each state change.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{BlockValue, Code, Request, Response};
use lwm2m_core::model::{ObjectModel, Path, ResourceValue};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_objects::firmware::{
    check_uri, DownloadError, FirmwareConfig, FirmwareSnapshot, FirmwareStateStore,
    FirmwareStorage, FirmwareUpdate, FwError, FwEvent, Protocol, Severity, State, StateStoreError,
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

/// The answer of the decision hook ([`Firmware::on_update_requested`]) to
/// an executed Update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateDecision {
    /// Install now: Updating, then the update hook.
    Install,
    /// Later: Update Result 11, State stays Downloaded. Only honoured when
    /// deferring is allowed (Maximum Defer Period not 0 and not used up);
    /// otherwise the update starts as with [`UpdateDecision::Install`]. At
    /// the end of the period the update starts by itself.
    Defer,
}

/// How a download that lost its connection is retried (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePolicy {
    /// Attempts in a row that store no new byte before giving up (Result
    /// 4). An attempt that stored bytes resets the count. Default 3.
    pub attempts: u32,
    /// Wait before attempt n: `delay` × n. Default 2 s.
    pub delay: Duration,
}

impl Default for ResumePolicy {
    fn default() -> ResumePolicy {
        ResumePolicy {
            attempts: 3,
            delay: Duration::from_secs(2),
        }
    }
}

/// A download for the host to make (see [`FirmwareHandle::poll_download`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadJob {
    /// Tag of this attempt: every report about it carries it. Reports with
    /// an old tag are ignored (the download was cancelled or replaced).
    pub id: u32,
    /// The Package URI (an `http://` or `https://` one with the tokio
    /// driver).
    pub uri: String,
    /// Bytes already stored: fetch from there (HTTP `Range: bytes=N-`), or
    /// report [`FirmwareHandle::download_restart`] and send everything.
    pub resume_from: u64,
}

/// What the host's downloader has to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadCommand {
    /// Start a download.
    Start(DownloadJob),
    /// Stop download `id` (Cancel, reset, or replaced): its reports are
    /// ignored from now on.
    Stop(u32),
}

type UpdateHook<S> = Box<dyn FnMut(&mut S) -> UpdateOutcome>;
type DecisionHook = Box<dyn FnMut(Severity, bool) -> UpdateDecision>;

struct Inner<S> {
    fw: FirmwareUpdate<S>,
    /// Last time the engine gave (all the state machine's timestamps use it).
    now: Instant,
    /// Tag of the download in flight (CoAP request or host job).
    download: Option<u32>,
    next_tag: u32,
    /// CoAP GETs for the engine.
    requests: Vec<ObjectRequest>,
    /// The CoAP block transfer in flight.
    coap: Option<CoapFetch>,
    /// Commands for the host's downloader.
    host: VecDeque<DownloadCommand>,
    policy: ResumePolicy,
    /// Failed attempts in a row without progress.
    failures: u32,
    /// Most bytes stored so far by this download (a restart at 0 after an
    /// ignored `Range` is no progress until it gets further).
    high_water: u64,
    /// When to retry the download that lost its connection.
    retry_at: Option<Instant>,
    /// Where the state is saved across reboots.
    store: Option<Box<dyn FirmwareStateStore>>,
    /// What was saved last.
    saved: Option<FirmwareSnapshot>,
    /// The last save failure (cleared by a successful save).
    save_error: Option<StateStoreError>,
    /// Why the state could not be loaded at boot.
    load_error: Option<StateStoreError>,
}

/// Block size of CoAP downloads (Block2 SZX 6: 1024 bytes).
const COAP_BLOCK_SZX: u8 = 6;
const COAP_BLOCK_SIZE: u64 = 1024;

/// A CoAP pull, block by block (the object asks for each block, so that
/// what is stored counts and a resume starts at block N).
struct CoapFetch {
    uri: String,
    /// The GET without Block2.
    request: Request,
    /// Offset of the block asked for.
    offset: u64,
    /// Block size exponent (the server may lower it).
    szx: u8,
    /// Already restarted at block 0 once in this attempt.
    restarted: bool,
}

/// While downloading, the state is saved every this many bytes (and at
/// every other change): the bytes after it are downloaded again after a
/// reboot.
pub const SAVE_EVERY: u64 = 64 * 1024;

impl<S: FirmwareStorage> Inner<S> {
    /// Starts an attempt at downloading the Package URI from `resume_from`.
    fn start_attempt(&mut self, resume_from: u64) {
        let uri = String::from(self.fw.package_uri());
        self.next_tag = self.next_tag.wrapping_add(1);
        let tag = self.next_tag;
        self.high_water = self.high_water.max(resume_from);
        self.retry_at = None;
        let protocol = check_uri(&uri).ok();
        if matches!(protocol, Some(Protocol::CoapTcp | Protocol::CoapTls)) {
            // CoAP over TCP/TLS is not there yet (a later issue), even if
            // the configuration lists it.
            let now = self.now;
            let _ = self
                .fw
                .download_failed(DownloadError::UnsupportedProtocol, now);
            return;
        }
        if !matches!(protocol, Some(Protocol::Coap | Protocol::Coaps)) {
            self.download = Some(tag);
            self.host.push_back(DownloadCommand::Start(DownloadJob {
                id: tag,
                uri,
                resume_from,
            }));
            return;
        }
        match coap_get(&uri) {
            Some(request) => {
                // Whole blocks: a resume inside a block asks for the block
                // and the state machine skips the bytes it has.
                let offset = resume_from - resume_from % COAP_BLOCK_SIZE;
                self.coap = Some(CoapFetch {
                    uri,
                    request,
                    offset,
                    szx: COAP_BLOCK_SZX,
                    restarted: false,
                });
                self.request_block();
            }
            None => {
                let now = self.now;
                let _ = self.fw.download_failed(DownloadError::InvalidUri, now);
            }
        }
    }

    /// Asks for the block of the CoAP transfer at its current offset.
    fn request_block(&mut self) {
        let Some(fetch) = self.coap.as_ref() else {
            return;
        };
        let size = 1u64 << (fetch.szx + 4);
        let num = u32::try_from(fetch.offset / size).ok();
        let Some(block) = num.and_then(|n| BlockValue::new(n, false, size as usize)) else {
            // Past the 20-bit block numbers: the package is too large.
            let now = self.now;
            let _ = self.fw.download_failed(DownloadError::OutOfStorage, now);
            self.coap = None;
            return;
        };
        let request = fetch.request.clone().with_single_block2(block);
        self.next_tag = self.next_tag.wrapping_add(1);
        self.download = Some(self.next_tag);
        self.requests.push(ObjectRequest {
            tag: self.next_tag,
            uri: fetch.uri.clone(),
            request,
        });
    }

    /// The answer to the current CoAP block request.
    fn coap_response(&mut self, result: Result<Response, ObjectRequestError>, now: Instant) {
        self.download = None;
        let Some(mut fetch) = self.coap.take() else {
            return;
        };
        let r = match result {
            Ok(r) => r,
            Err(ObjectRequestError::Unresolvable) => {
                return self.attempt_failed(DownloadError::InvalidUri, false, now);
            }
            // No credentials for that coaps:// host: retrying cannot help.
            Err(ObjectRequestError::NoCredentials) => {
                return self.attempt_failed(DownloadError::UnsupportedProtocol, false, now);
            }
            Err(_) => return self.attempt_failed(DownloadError::ConnectionLost, true, now),
        };
        if r.code.class() == 4 && fetch.offset > 0 && !fetch.restarted {
            // The server cannot serve that block (a block-wise cache that
            // expired answers 4.08): start over at block 0.
            if self.fw.restart_download(now).is_ok() {
                fetch.offset = 0;
                fetch.restarted = true;
                self.coap = Some(fetch);
                self.request_block();
            }
            return;
        }
        if r.code != Code::CONTENT {
            // 4.04 and other client errors: the URI does not lead to a
            // package. Server errors count as a lost connection.
            let error = if r.code.class() == 4 {
                DownloadError::InvalidUri
            } else {
                DownloadError::ConnectionLost
            };
            return self.attempt_failed(error, error == DownloadError::ConnectionLost, now);
        }
        let block = r.options.uint(number::BLOCK2).and_then(BlockValue::decode);
        let (offset, more) = match block {
            Some(b) => (b.offset() as u64, b.more),
            // No Block2: the whole body (the server ignored the option).
            None => (0, false),
        };
        if offset != fetch.offset {
            if offset != 0 || self.fw.restart_download(now).is_err() {
                return self.attempt_failed(DownloadError::ConnectionLost, true, now);
            }
            fetch.restarted = true;
        }
        // A storage or digest failure is already in Update Result.
        if self.fw.download_chunk(offset, &r.payload, now).is_err() {
            return;
        }
        match block {
            Some(b) if more => {
                if r.payload.len() != b.size() {
                    return self.attempt_failed(DownloadError::ConnectionLost, true, now);
                }
                fetch.offset = offset + r.payload.len() as u64;
                fetch.szx = b.szx;
                self.coap = Some(fetch);
                self.request_block();
            }
            _ => {
                self.failures = 0;
                let _ = self.fw.download_complete(now);
            }
        }
    }

    /// Stops the attempt in flight, if any.
    fn stop(&mut self) {
        if let Some(tag) = self.download.take() {
            self.host.push_back(DownloadCommand::Stop(tag));
        }
        self.retry_at = None;
        self.requests.clear();
        self.coap = None;
    }

    /// Whether `tag` is the attempt in flight.
    fn current(&self, tag: u32) -> bool {
        self.download == Some(tag)
    }

    /// Attempt `tag` failed with `error`: retry later (a lost connection,
    /// within the policy) or end the download.
    fn attempt_failed(&mut self, error: DownloadError, retryable: bool, now: Instant) {
        self.download = None;
        let stored = self.fw.resume_offset().unwrap_or(0);
        if stored > self.high_water {
            self.high_water = stored;
            self.failures = 0;
        }
        if error == DownloadError::ConnectionLost
            && retryable
            && self.failures < self.policy.attempts
        {
            self.failures += 1;
            let wait = self.policy.delay.saturating_mul(self.failures);
            self.retry_at = Some(now + wait);
            return;
        }
        self.failures = 0;
        let _ = self.fw.download_failed(error, now);
    }

    /// Saves the state if it changed (download progress alone: every
    /// [`SAVE_EVERY`] bytes).
    fn persist(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let snap = self.fw.snapshot();
        if let Some(saved) = &self.saved {
            if *saved == snap {
                return;
            }
            let progress_only = FirmwareSnapshot {
                image_len: saved.image_len,
                pull_hash_state: saved.pull_hash_state.clone(),
                ..snap.clone()
            } == *saved;
            if progress_only && snap.image_len < saved.image_len.saturating_add(SAVE_EVERY) {
                return;
            }
        }
        match store.save(&snap) {
            Ok(()) => {
                self.saved = Some(snap);
                self.save_error = None;
            }
            Err(e) => self.save_error = Some(e),
        }
    }

    /// Time passed: a due retry starts.
    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.fw.tick(now);
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            if let Some(from) = self.fw.resume_offset() {
                self.start_attempt(from);
            }
        }
    }
}

/// A handle on the state machine for the integrator: report the outcome of
/// a pending update, look at the state or the storage, and run the
/// downloads the object leaves to the host. Changes made through it reach
/// observers at the engine's next entry point (or at once with
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

    /// The last failure of the state store: the last save if it failed,
    /// else the load at boot if that failed.
    pub fn store_error(&self) -> Option<StateStoreError> {
        let inner = self.inner.borrow();
        inner
            .save_error
            .clone()
            .or_else(|| inner.load_error.clone())
    }

    /// Runs `f` on the state machine (to read State, the storage...).
    pub fn with<T>(&self, f: impl FnOnce(&mut FirmwareUpdate<S>) -> T) -> T {
        f(&mut self.inner.borrow_mut().fw)
    }
}

/// The download side of the object that the host runs (implemented by
/// [`FirmwareHandle`]; the tokio driver's fetcher takes a `&dyn
/// DownloadHost`).
pub trait DownloadHost {
    /// The next command for the host's downloader (`http`/`https` and any
    /// other non-CoAP scheme in Protocol Support).
    fn poll_download(&self) -> Option<DownloadCommand>;

    /// Bytes of download `id` at byte `offset` of the package (the first
    /// report starts at the job's `resume_from`, or at 0 after
    /// [`DownloadHost::download_restart`]). `false`: stop fetching (the
    /// download is stale, or storage failed and Update Result says why).
    fn download_data(&self, id: u32, offset: u64, bytes: &[u8], now: Instant) -> bool;

    /// Download `id` starts over at byte 0 (the server ignored the resume
    /// request): the stored bytes are discarded. `false`: stop fetching.
    fn download_restart(&self, id: u32, now: Instant) -> bool;

    /// Download `id` reached the end of the package: digest check,
    /// Downloaded (or Idle with the failure's Update Result).
    fn download_done(&self, id: u32, now: Instant);

    /// Download `id` failed. A lost connection that is `retryable` is
    /// retried from the stored bytes per the [`ResumePolicy`]; anything
    /// else ends the download (Idle with `error`'s Update Result).
    fn download_failed(&self, id: u32, error: DownloadError, retryable: bool, now: Instant);
}

impl<S: FirmwareStorage> DownloadHost for FirmwareHandle<S> {
    fn poll_download(&self) -> Option<DownloadCommand> {
        self.inner.borrow_mut().host.pop_front()
    }

    fn download_data(&self, id: u32, offset: u64, bytes: &[u8], now: Instant) -> bool {
        let mut inner = self.inner.borrow_mut();
        if !inner.current(id) {
            return false;
        }
        inner.now = inner.now.max(now);
        match inner.fw.download_chunk(offset, bytes, now) {
            Ok(()) => true,
            Err(FwError::UnexpectedOffset { .. }) => {
                // A gap: the fetcher lost track of where it is; retry from
                // what is stored.
                inner.attempt_failed(DownloadError::ConnectionLost, true, now);
                false
            }
            Err(_) => {
                inner.download = None;
                false
            }
        }
    }

    fn download_restart(&self, id: u32, now: Instant) -> bool {
        let mut inner = self.inner.borrow_mut();
        if !inner.current(id) {
            return false;
        }
        let ok = inner.fw.restart_download(now).is_ok();
        if !ok {
            inner.download = None;
        }
        ok
    }

    fn download_done(&self, id: u32, now: Instant) {
        let mut inner = self.inner.borrow_mut();
        if !inner.current(id) {
            return;
        }
        inner.download = None;
        inner.failures = 0;
        let _ = inner.fw.download_complete(now);
    }

    fn download_failed(&self, id: u32, error: DownloadError, retryable: bool, now: Instant) {
        let mut inner = self.inner.borrow_mut();
        if !inner.current(id) {
            return;
        }
        inner.attempt_failed(error, retryable, now);
    }
}

/// The Firmware Update object with one instance (0).
pub struct Firmware<S> {
    model: ObjectModel,
    inner: Rc<RefCell<Inner<S>>>,
    hook: UpdateHook<S>,
    decide: Option<DecisionHook>,
}

impl<S> fmt::Debug for Firmware<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("Firmware")
            .field("download", &inner.download)
            .field("retry_at", &inner.retry_at)
            .finish_non_exhaustive()
    }
}

impl<S: FirmwareStorage + 'static> Firmware<S> {
    /// An object storing images in `storage` and installing them with
    /// `hook`. Protocol Support is CoAP only (see [`Firmware::with_config`]
    /// for HTTP/HTTPS through the host), delivery push and pull.
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
    /// The protocols of `config.protocols` other than CoAP and CoAPS are
    /// downloaded by the host ([`FirmwareHandle::poll_download`]): list
    /// `Http` and `Https` only when a fetcher runs (the tokio driver's,
    /// feature `http`), and `Coaps` only when the driver speaks DTLS (the
    /// tokio driver with feature `dtls`).
    pub fn with_config(
        config: FirmwareConfig,
        storage: S,
        hook: impl FnMut(&mut S) -> UpdateOutcome + 'static,
    ) -> Firmware<S> {
        Firmware::from_state_machine(FirmwareUpdate::new(config, storage, Instant::ZERO), hook)
    }

    /// An object around an existing state machine (one restored from a
    /// snapshot after a reboot, say).
    pub fn from_state_machine(
        fw: FirmwareUpdate<S>,
        hook: impl FnMut(&mut S) -> UpdateOutcome + 'static,
    ) -> Firmware<S> {
        Firmware {
            model: fwo::v1_1::MODEL.to_model(),
            inner: Rc::new(RefCell::new(Inner {
                fw,
                now: Instant::ZERO,
                download: None,
                next_tag: 0,
                requests: Vec::new(),
                coap: None,
                host: VecDeque::new(),
                policy: ResumePolicy::default(),
                failures: 0,
                high_water: 0,
                retry_at: None,
                store: None,
                saved: None,
                save_error: None,
                load_error: None,
            })),
            hook: Box::new(hook),
            decide: None,
        }
    }

    /// An object whose state survives reboots in `store`: restored from it
    /// when it holds a snapshot ([`FirmwareUpdate::restore`]: a pull
    /// download resumes, Downloaded stays Downloaded...), saved to it after
    /// every change. If the device rebooted while Updating (into the new
    /// firmware, say), `on_boot` tells how the update went: Update Result 1
    /// ([`UpdateOutcome::Succeeded`]), 8 or another failure result, or
    /// still pending. A store that fails to load is reported by
    /// [`FirmwareHandle::store_error`] and the object starts fresh.
    pub fn with_state_store(
        config: FirmwareConfig,
        storage: S,
        mut store: impl FirmwareStateStore + 'static,
        hook: impl FnMut(&mut S) -> UpdateOutcome + 'static,
        on_boot: impl FnOnce(&mut S) -> UpdateOutcome,
    ) -> Firmware<S> {
        let now = Instant::ZERO;
        let (mut fw, load_error) = match store.load() {
            Ok(Some(snap)) => (FirmwareUpdate::restore(config, storage, snap, now), None),
            Ok(None) => (FirmwareUpdate::new(config, storage, now), None),
            Err(e) => (FirmwareUpdate::new(config, storage, now), Some(e)),
        };
        if fw.state() == State::Updating {
            let _ = match on_boot(fw.storage_mut()) {
                UpdateOutcome::Succeeded => fw.update_succeeded(now),
                UpdateOutcome::Failed(f) => fw.update_failed(f, now),
                UpdateOutcome::Pending => Ok(()),
            };
        }
        let mut obj = Firmware::from_state_machine(fw, hook);
        {
            let mut inner = obj.inner.borrow_mut();
            inner.store = Some(Box::new(store));
            inner.load_error = load_error;
        }
        obj.drive();
        obj
    }

    /// Sets how lost connections are retried.
    pub fn with_resume_policy(self, policy: ResumePolicy) -> Firmware<S> {
        self.inner.borrow_mut().policy = policy;
        self
    }

    /// Asks `decide(severity, may_defer)` whether to install or defer when
    /// the server executes Update (without it: install at once).
    pub fn on_update_requested(
        mut self,
        decide: impl FnMut(Severity, bool) -> UpdateDecision + 'static,
    ) -> Firmware<S> {
        self.decide = Some(Box::new(decide));
        self
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
                inner.persist();
                return;
            };
            match event {
                FwEvent::Download { resume_from, .. } => {
                    inner.stop();
                    inner.failures = 0;
                    inner.high_water = 0;
                    inner.start_attempt(resume_from);
                }
                FwEvent::Abort => inner.stop(),
                FwEvent::UpdateRequested {
                    severity,
                    may_defer,
                } => {
                    let decision = self
                        .decide
                        .as_mut()
                        .map_or(UpdateDecision::Install, |d| d(severity, may_defer));
                    let deferred =
                        decision == UpdateDecision::Defer && inner.fw.defer_update(now).is_ok();
                    if !deferred {
                        let _ = inner.fw.start_update(now);
                    }
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
    let scheme_len = if uri.get(..7)?.eq_ignore_ascii_case("coap://") {
        7
    } else if uri.get(..8)?.eq_ignore_ascii_case("coaps://") {
        8
    } else {
        return None;
    };
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
        request
            .options
            .push(number::URI_PATH, seg.as_bytes().to_vec());
    }
    for q in query.into_iter().flat_map(|q| q.split('&')) {
        request
            .options
            .push(number::URI_QUERY, q.as_bytes().to_vec());
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
        self.inner.borrow_mut().tick(now);
        self.drive();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let inner = self.inner.borrow();
        match (inner.fw.next_deadline(), inner.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn take_changed(&mut self) -> Vec<Path> {
        // Events queued through the handle (a reported update) first.
        self.drive();
        let changed = self.inner.borrow_mut().fw.take_changed();
        changed.iter().map(|r| Path::Resource(5, 0, r)).collect()
    }

    fn poll_request(&mut self) -> Option<ObjectRequest> {
        let mut inner = self.inner.borrow_mut();
        if inner.requests.is_empty() {
            None
        } else {
            Some(inner.requests.remove(0))
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        tag: u32,
        result: Result<Response, ObjectRequestError>,
    ) {
        {
            let mut inner = self.inner.borrow_mut();
            if !inner.current(tag) {
                return;
            }
            inner.now = inner.now.max(now);
            inner.coap_response(result, now);
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
        let r = coap_get("coaps://host:5684/fw").unwrap();
        assert_eq!(options(&r, number::URI_PATH), [&b"fw"[..]]);
        assert!(coap_get("coap+tcp://host/fw").is_none());
        assert!(coap_get("http://host/fw").is_none());
        assert!(coap_get("coa").is_none());
    }
}
