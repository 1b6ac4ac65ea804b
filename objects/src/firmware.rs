//! Firmware Update (object 5, version 1.1): a sans-IO state machine.
//!
//! [`FirmwareUpdate`] holds the object's resources and its state machine
//! (State 0–3, Update Result 0–11, TS Core appendix E.6). It does no I/O and
//! reads no clock:
//!
//! * the engine feeds it server operations: [`FirmwareUpdate::read`],
//!   [`FirmwareUpdate::write`], [`FirmwareUpdate::execute`] and, for a
//!   block-wise Write of the Package, [`FirmwareUpdate::package_chunk`];
//! * the integrator's downloader (pull, Package URI) feeds it
//!   [`FirmwareUpdate::download_chunk`], [`FirmwareUpdate::download_complete`]
//!   and [`FirmwareUpdate::download_failed`];
//! * the integrator's installer answers [`FwEvent`]s with
//!   [`FirmwareUpdate::start_update`] / [`FirmwareUpdate::defer_update`] and
//!   later [`FirmwareUpdate::update_succeeded`] /
//!   [`FirmwareUpdate::update_failed`];
//! * the image bytes go through the integrator's [`FirmwareStorage`] (flash on
//!   a device, [`VecStorage`] in tests);
//! * [`FirmwareUpdate::snapshot`] / [`FirmwareUpdate::restore`] (with
//!   [`FirmwareSnapshot::encode`] / [`FirmwareSnapshot::decode`] and a
//!   [`FirmwareStateStore`]; `FileStateStore` and `FileStorage` with `std`)
//!   carry the state across a reboot, a pull download included;
//! * [`FirmwareUpdate::take_changed`] tells an observe engine which resources
//!   changed (State, Update Result, ...), [`FirmwareUpdate::poll_event`] what
//!   the integrator has to do next, [`FirmwareUpdate::next_deadline`] when to
//!   call [`FirmwareUpdate::tick`] again.
//!
//! Allowed (State, Update Result) pairs, see [`is_allowed`]: Idle with any
//! result but 11; Downloading and Updating with 0 only; Downloaded with 0, 8
//! (update failed, image kept) or 11 (deferred).
//!
//! ```
//! use lwm2m_core::model::{ResourceValue, Value};
//! use lwm2m_core::time::Instant;
//! use lwm2m_objects::firmware::*;
//! use lwm2m_objects::firmware_update as fw;
//!
//! let now = Instant::ZERO;
//! let mut obj = FirmwareUpdate::new(FirmwareConfig::default(), VecStorage::new(1024), now);
//! // A one-block push of the Package.
//! obj.write(fw::PACKAGE, Value::Opaque(b"image".to_vec()), now).unwrap();
//! assert_eq!(obj.state(), State::Downloaded);
//! obj.execute(fw::UPDATE, b"", now).unwrap();
//! assert!(matches!(obj.poll_event(), Some(FwEvent::UpdateRequested { .. })));
//! obj.start_update(now).unwrap();
//! assert_eq!(obj.poll_event(), Some(FwEvent::StartUpdate));
//! assert_eq!(obj.storage().image(), Some(&b"image"[..]));
//! obj.update_succeeded(now).unwrap();
//! assert_eq!(obj.read(fw::UPDATE_RESULT), Ok(ResourceValue::Single(Value::Integer(1))));
//! ```

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use lwm2m_core::coap::Code;
use lwm2m_core::model::{ResourceValue, Value};
use lwm2m_core::time::{Duration, Instant};
use sha2::digest::common::array::Array;
use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest, Sha256};

use crate::firmware_update as res;

/// Longest Package URI accepted (the resource's range is 0..255 bytes).
pub const MAX_URI_LEN: usize = 255;

/// Resources this implementation exposes (for Discover / registration).
pub const RESOURCES: &[u16] = &[
    res::PACKAGE,
    res::PACKAGE_URI,
    res::UPDATE,
    res::STATE,
    res::UPDATE_RESULT,
    res::PKG_NAME,
    res::PKG_VERSION,
    res::FIRMWARE_UPDATE_PROTOCOL_SUPPORT,
    res::FIRMWARE_UPDATE_DELIVERY_METHOD,
    res::CANCEL,
    res::SEVERITY,
    res::LAST_STATE_CHANGE_TIME,
    res::MAXIMUM_DEFER_PERIOD,
];

/// The State resource (/5/x/3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// 0: before downloading or after a finished (successful or failed) update.
    Idle = 0,
    /// 1: the package is on its way (push or pull).
    Downloading = 1,
    /// 2: a complete, verified package is stored.
    Downloaded = 2,
    /// 3: the package is being installed.
    Updating = 3,
}

impl State {
    /// Every state, in numeric order.
    pub const ALL: [State; 4] = [
        State::Idle,
        State::Downloading,
        State::Downloaded,
        State::Updating,
    ];

    /// The resource value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The state with resource value `v`.
    pub fn from_u8(v: u8) -> Option<State> {
        State::ALL.get(usize::from(v)).copied()
    }
}

/// The Update Result resource (/5/x/5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UpdateResult {
    /// 0: initial value; also set whenever a download or update starts.
    Initial = 0,
    /// 1: firmware updated successfully.
    Success = 1,
    /// 2: not enough flash memory for the new package.
    NotEnoughFlash = 2,
    /// 3: out of RAM during download.
    OutOfRam = 3,
    /// 4: connection lost during download.
    ConnectionLost = 4,
    /// 5: integrity check failure of the downloaded package.
    IntegrityCheckFailure = 5,
    /// 6: unsupported package type.
    UnsupportedPackageType = 6,
    /// 7: invalid URI.
    InvalidUri = 7,
    /// 8: firmware update failed.
    UpdateFailed = 8,
    /// 9: unsupported protocol (URI scheme not in Protocol Support).
    UnsupportedProtocol = 9,
    /// 10: firmware update cancelled (Cancel executed).
    Cancelled = 10,
    /// 11: firmware update deferred.
    Deferred = 11,
}

impl UpdateResult {
    /// Every result, in numeric order.
    pub const ALL: [UpdateResult; 12] = [
        UpdateResult::Initial,
        UpdateResult::Success,
        UpdateResult::NotEnoughFlash,
        UpdateResult::OutOfRam,
        UpdateResult::ConnectionLost,
        UpdateResult::IntegrityCheckFailure,
        UpdateResult::UnsupportedPackageType,
        UpdateResult::InvalidUri,
        UpdateResult::UpdateFailed,
        UpdateResult::UnsupportedProtocol,
        UpdateResult::Cancelled,
        UpdateResult::Deferred,
    ];

    /// The resource value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The result with resource value `v`.
    pub fn from_u8(v: u8) -> Option<UpdateResult> {
        UpdateResult::ALL.get(usize::from(v)).copied()
    }
}

/// Whether the TS state machine allows `result` while in `state`.
///
/// Downloading and Updating always carry 0 (the TS resets the result when a
/// download or an update starts); Downloaded carries 0, 8 (the update failed
/// but the image is still usable) or 11 (deferred); Idle carries anything but
/// 11 (a deferred update leaves Downloaded only by Update, Cancel or reset).
pub fn is_allowed(state: State, result: UpdateResult) -> bool {
    match state {
        State::Idle => result != UpdateResult::Deferred,
        State::Downloading | State::Updating => result == UpdateResult::Initial,
        State::Downloaded => matches!(
            result,
            UpdateResult::Initial | UpdateResult::UpdateFailed | UpdateResult::Deferred
        ),
    }
}

/// A download protocol (Firmware Update Protocol Support, /5/x/8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// 0: CoAP (RFC 7252) with block-wise transfer, scheme `coap`.
    Coap = 0,
    /// 1: CoAPS, scheme `coaps`.
    Coaps = 1,
    /// 2: HTTP 1.1, scheme `http`.
    Http = 2,
    /// 3: HTTPS 1.1, scheme `https`.
    Https = 3,
    /// 4: CoAP over TCP (RFC 8323), scheme `coap+tcp`.
    CoapTcp = 4,
    /// 5: CoAP over TLS (RFC 8323), scheme `coaps+tcp`.
    CoapTls = 5,
}

impl Protocol {
    /// Every protocol, in numeric order.
    pub const ALL: [Protocol; 6] = [
        Protocol::Coap,
        Protocol::Coaps,
        Protocol::Http,
        Protocol::Https,
        Protocol::CoapTcp,
        Protocol::CoapTls,
    ];

    /// The URI scheme of this protocol.
    pub const fn scheme(self) -> &'static str {
        match self {
            Protocol::Coap => "coap",
            Protocol::Coaps => "coaps",
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::CoapTcp => "coap+tcp",
            Protocol::CoapTls => "coaps+tcp",
        }
    }

    /// The protocol of URI scheme `scheme` (case-insensitive, RFC 3986 3.1).
    pub fn from_scheme(scheme: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.scheme().eq_ignore_ascii_case(scheme))
    }
}

/// Firmware Update Delivery Method (/5/x/9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMethod {
    /// 0: pull only (Package URI).
    Pull = 0,
    /// 1: push only (Package).
    Push = 1,
    /// 2: both.
    Both = 2,
}

impl DeliveryMethod {
    fn push(self) -> bool {
        matches!(self, DeliveryMethod::Push | DeliveryMethod::Both)
    }

    fn pull(self) -> bool {
        matches!(self, DeliveryMethod::Pull | DeliveryMethod::Both)
    }
}

/// Severity of the package (/5/x/11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// 0: critical.
    Critical = 0,
    /// 1: mandatory (the TS default).
    Mandatory = 1,
    /// 2: optional.
    Optional = 2,
}

impl Severity {
    fn from_i64(v: i64) -> Option<Severity> {
        match v {
            0 => Some(Severity::Critical),
            1 => Some(Severity::Mandatory),
            2 => Some(Severity::Optional),
            _ => None,
        }
    }
}

/// Why the image storage refused an operation. Each maps to an Update Result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageError {
    /// No room for the image (also the answer for a flash write error):
    /// Update Result 2.
    OutOfStorage,
    /// No RAM to buffer the image: Update Result 3.
    OutOfMemory,
    /// The image is not a package this device can install (for example a
    /// wrong header seen by the flash writer): Update Result 6.
    UnsupportedPackageType,
}

impl StorageError {
    /// The Update Result this error leads to.
    pub const fn update_result(self) -> UpdateResult {
        match self {
            StorageError::OutOfStorage => UpdateResult::NotEnoughFlash,
            StorageError::OutOfMemory => UpdateResult::OutOfRam,
            StorageError::UnsupportedPackageType => UpdateResult::UnsupportedPackageType,
        }
    }
}

/// Where the firmware image is written: implemented by the integrator (flash
/// partition, file, ...).
///
/// Calls come in this order: `begin`, any number of `write`s with increasing
/// contiguous offsets starting at 0 (or at the resume offset after a
/// resumed pull), then `finish` or `abort`. `abort` may come at any time,
/// including after `finish` (the image is discarded by a reset or a Cancel)
/// and after a failed call.
pub trait FirmwareStorage {
    /// Start a new image, discarding any previous one.
    fn begin(&mut self) -> Result<(), StorageError>;
    /// Store `data` at byte `offset` of the image (always the number of bytes
    /// stored so far).
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// The image is complete (and, when a digest was given, verified).
    fn finish(&mut self) -> Result<(), StorageError>;
    /// Discard the image, complete or not.
    fn abort(&mut self);
    /// After a reboot: reopen the image of which the first `len` bytes were
    /// stored before, dropping anything after them, to append from `len`
    /// (a pull download resumes). The default refuses
    /// ([`StorageError::OutOfStorage`]): the partial image is then aborted
    /// and the download reported lost (Update Result 4).
    fn resume(&mut self, len: u64) -> Result<(), StorageError> {
        let _ = len;
        Err(StorageError::OutOfStorage)
    }
}

/// A [`FirmwareStorage`] in a `Vec`, bounded by a capacity (for tests and
/// hosts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VecStorage {
    data: Vec<u8>,
    capacity: usize,
    open: bool,
    finished: bool,
}

impl VecStorage {
    /// An empty storage that holds at most `capacity` bytes; writing more
    /// fails with [`StorageError::OutOfStorage`].
    pub fn new(capacity: usize) -> VecStorage {
        VecStorage {
            capacity,
            ..VecStorage::default()
        }
    }

    /// The stored bytes, complete or not.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The image, once `finish` was called and until it is aborted.
    pub fn image(&self) -> Option<&[u8]> {
        self.finished.then_some(self.data.as_slice())
    }

    /// Whether an image is being written or is complete.
    pub fn is_open(&self) -> bool {
        self.open
    }
}

impl FirmwareStorage for VecStorage {
    fn begin(&mut self) -> Result<(), StorageError> {
        self.data.clear();
        self.open = true;
        self.finished = false;
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        // The state machine only writes contiguously; a mismatch would be its bug,
        // reported as a storage failure rather than a panic.
        if !self.open || self.finished || offset != self.data.len() as u64 {
            return Err(StorageError::OutOfStorage);
        }
        let end = self
            .data
            .len()
            .checked_add(data.len())
            .ok_or(StorageError::OutOfStorage)?;
        if end > self.capacity {
            return Err(StorageError::OutOfStorage);
        }
        self.data
            .try_reserve(data.len())
            .map_err(|_| StorageError::OutOfMemory)?;
        self.data.extend_from_slice(data);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StorageError> {
        if !self.open {
            return Err(StorageError::OutOfStorage);
        }
        self.finished = true;
        Ok(())
    }

    fn abort(&mut self) {
        self.data.clear();
        self.open = false;
        self.finished = false;
    }

    /// Keeps the first `len` bytes (the storage itself survived, as in tests
    /// that "reboot" by moving it into a new state machine).
    fn resume(&mut self, len: u64) -> Result<(), StorageError> {
        let len = usize::try_from(len).map_err(|_| StorageError::OutOfStorage)?;
        if len > self.data.len() {
            return Err(StorageError::OutOfStorage);
        }
        self.data.truncate(len);
        self.open = true;
        self.finished = false;
        Ok(())
    }
}

/// A failure reported by the integrator's downloader (pull) or transfer layer
/// (push, for example a block-wise transfer that timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownloadError {
    /// Connection lost: Update Result 4. A pull download keeps what it stored
    /// so that writing the same URI again resumes it.
    ConnectionLost,
    /// Not enough storage: Update Result 2.
    OutOfStorage,
    /// Out of RAM: Update Result 3.
    OutOfMemory,
    /// The package failed a check the downloader made: Update Result 5.
    IntegrityCheckFailure,
    /// Not a package this device can install: Update Result 6.
    UnsupportedPackageType,
    /// The URI could not be resolved or the resource does not exist (DNS
    /// failure, 4.04, HTTP 404): Update Result 7.
    InvalidUri,
    /// The remote end required a protocol the device lacks (for example a
    /// redirect to another scheme): Update Result 9.
    UnsupportedProtocol,
}

impl DownloadError {
    /// The Update Result this failure leads to.
    pub const fn update_result(self) -> UpdateResult {
        match self {
            DownloadError::ConnectionLost => UpdateResult::ConnectionLost,
            DownloadError::OutOfStorage => UpdateResult::NotEnoughFlash,
            DownloadError::OutOfMemory => UpdateResult::OutOfRam,
            DownloadError::IntegrityCheckFailure => UpdateResult::IntegrityCheckFailure,
            DownloadError::UnsupportedPackageType => UpdateResult::UnsupportedPackageType,
            DownloadError::InvalidUri => UpdateResult::InvalidUri,
            DownloadError::UnsupportedProtocol => UpdateResult::UnsupportedProtocol,
        }
    }
}

/// How an installation failed (reported with [`FirmwareUpdate::update_failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateFailure {
    /// The update failed but the stored image can be tried again:
    /// Downloaded, Update Result 8.
    KeepImage,
    /// The update failed and the image is gone: Idle, Update Result 8.
    DiscardImage,
    /// The installer found the image corrupt: Idle, Update Result 5 (the TS's
    /// own example of a failure that returns to Idle).
    IntegrityCheckFailure,
    /// The installer cannot install this kind of package: Idle, Update Result 6.
    UnsupportedPackageType,
}

/// Something the integrator has to do. Drained with [`FirmwareUpdate::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FwEvent {
    /// Start (or resume) downloading `uri`, from byte `resume_from` (HTTP
    /// `Range: bytes=N-`; CoAP Block2 number `N / block size` when `N` is a
    /// multiple of the block size, else restart the block at its start and
    /// skip: [`FirmwareUpdate::download_chunk`] ignores bytes already stored).
    Download {
        /// The Package URI.
        uri: String,
        /// Bytes already stored.
        resume_from: u64,
    },
    /// Stop any download or pending update: the image was discarded (reset or
    /// Cancel).
    Abort,
    /// The server executed Update. Answer with
    /// [`FirmwareUpdate::start_update`] or, if the user (or policy) wants to
    /// wait and `may_defer`, [`FirmwareUpdate::defer_update`].
    UpdateRequested {
        /// Severity of the package, for the user prompt.
        severity: Severity,
        /// Whether deferring is allowed (Maximum Defer Period not 0 and not
        /// used up).
        may_defer: bool,
    },
    /// Install the stored image now (State is Updating); report the outcome
    /// with [`FirmwareUpdate::update_succeeded`] or
    /// [`FirmwareUpdate::update_failed`], after a reboot if need be.
    StartUpdate,
}

/// An operation the state machine refused. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FwError {
    /// The object has no such resource.
    NotFound {
        /// The resource id.
        resource: u16,
    },
    /// The resource does not support this operation (read of Package, write
    /// of State, execute of Severity, ...).
    OperationNotAllowed {
        /// The resource id.
        resource: u16,
    },
    /// The operation is not allowed in the current state (Update outside
    /// Downloaded, Cancel while Idle or Updating, a new Package URI while
    /// downloading, ...).
    InvalidState {
        /// The state the machine is in.
        state: State,
    },
    /// The value has the wrong type or is out of the resource's range.
    BadValue {
        /// The resource id.
        resource: u16,
    },
    /// A Package block arrived at the wrong offset (a gap, or a continuation
    /// without a first block).
    UnexpectedOffset {
        /// The offset the machine can accept next.
        expected: u64,
        /// The offset received.
        got: u64,
    },
    /// The Package resource was written but the delivery method is pull only.
    PushNotSupported,
    /// The download failed while handling this call; the state machine has
    /// already moved to Idle with this result (unlike the other variants,
    /// this one reports a change, not a refusal).
    DownloadFailed(UpdateResult),
    /// [`FirmwareUpdate::defer_update`] with a Maximum Defer Period of 0.
    DeferNotAllowed,
    /// [`FirmwareUpdate::defer_update`] after the Maximum Defer Period ran out.
    DeferPeriodExpired,
}

impl FwError {
    /// The CoAP response code an engine answers the server with.
    pub fn coap_code(&self) -> Code {
        match self {
            FwError::NotFound { .. } => Code::NOT_FOUND,
            FwError::OperationNotAllowed { .. }
            | FwError::InvalidState { .. }
            | FwError::PushNotSupported
            | FwError::DeferNotAllowed
            | FwError::DeferPeriodExpired => Code::METHOD_NOT_ALLOWED,
            FwError::BadValue { .. } => Code::BAD_REQUEST,
            FwError::UnexpectedOffset { .. } => Code::REQUEST_ENTITY_INCOMPLETE,
            FwError::DownloadFailed(UpdateResult::NotEnoughFlash) => Code::REQUEST_ENTITY_TOO_LARGE,
            FwError::DownloadFailed(UpdateResult::OutOfRam) => Code::INTERNAL_SERVER_ERROR,
            FwError::DownloadFailed(_) => Code::BAD_REQUEST,
        }
    }
}

impl fmt::Display for FwError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FwError::NotFound { resource } => {
                write!(f, "firmware update object has no resource {resource}")
            }
            FwError::OperationNotAllowed { resource } => write!(
                f,
                "operation not allowed on firmware update resource {resource}"
            ),
            FwError::InvalidState { state } => write!(
                f,
                "operation not allowed in firmware update state {} ({state:?})",
                state.as_u8()
            ),
            FwError::BadValue { resource } => write!(
                f,
                "bad value for firmware update resource {resource}: wrong type or out of range"
            ),
            FwError::UnexpectedOffset { expected, got } => write!(
                f,
                "firmware package block at offset {got}, expected offset {expected}"
            ),
            FwError::PushNotSupported => {
                f.write_str("firmware package push not supported: delivery method is pull only")
            }
            FwError::DownloadFailed(r) => {
                write!(f, "firmware download failed: update result {}", r.as_u8())
            }
            FwError::DeferNotAllowed => {
                f.write_str("firmware update deferral not allowed: maximum defer period is 0")
            }
            FwError::DeferPeriodExpired => {
                f.write_str("firmware update deferral refused: maximum defer period is over")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FwError {}

/// Why a Package URI is refused (see [`check_uri`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UriError {
    /// Not a URI with an authority per RFC 3986: Update Result 7.
    Invalid,
    /// A well-formed URI whose scheme is not one of the six firmware download
    /// protocols: Update Result 9.
    UnknownScheme,
}

/// Checks the syntax of a Package URI (RFC 3986, ASCII only, an authority
/// with a non-empty host) and returns the protocol of its scheme.
///
/// ```
/// use lwm2m_objects::firmware::{check_uri, Protocol, UriError};
/// assert_eq!(check_uri("coaps://example.org/firmware"), Ok(Protocol::Coaps));
/// assert_eq!(check_uri("ftp://example.org/fw"), Err(UriError::UnknownScheme));
/// assert_eq!(check_uri("coap:/no-host"), Err(UriError::Invalid));
/// ```
pub fn check_uri(uri: &str) -> Result<Protocol, UriError> {
    let (scheme, rest) = uri.split_once(':').ok_or(UriError::Invalid)?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        return Err(UriError::Invalid);
    }
    let rest = rest.strip_prefix("//").ok_or(UriError::Invalid)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    check_authority(authority)?;
    // Path and query: pchar, '/', '?'; then at most one '#' before the fragment,
    // which allows the same characters.
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (tail, None),
    };
    check_chars(before_fragment, |c| is_pchar(c) || c == b'/' || c == b'?')?;
    if let Some(fragment) = fragment {
        check_chars(fragment, |c| is_pchar(c) || c == b'/' || c == b'?')?;
    }
    Protocol::from_scheme(scheme).ok_or(UriError::UnknownScheme)
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(c: u8) -> bool {
    matches!(
        c,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn is_pchar(c: u8) -> bool {
    is_unreserved(c) || is_sub_delim(c) || matches!(c, b':' | b'@')
}

/// Checks that `s` is made of bytes accepted by `ok` and well-formed
/// percent-encodings.
fn check_chars(s: &str, ok: impl Fn(u8) -> bool) -> Result<(), UriError> {
    let mut bytes = s.bytes();
    while let Some(c) = bytes.next() {
        if c == b'%' {
            let hex = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit());
            if !hex(bytes.next()) || !hex(bytes.next()) {
                return Err(UriError::Invalid);
            }
        } else if !ok(c) {
            return Err(UriError::Invalid);
        }
    }
    Ok(())
}

fn check_authority(authority: &str) -> Result<(), UriError> {
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            check_chars(userinfo, |c| {
                is_unreserved(c) || is_sub_delim(c) || c == b':'
            })?;
            hp
        }
        None => authority,
    };
    let (host, port) = if let Some(literal) = host_port.strip_prefix('[') {
        let (inside, after) = literal.split_once(']').ok_or(UriError::Invalid)?;
        // IPv6 (or IPvFuture) literal: hex digits, ':', '.'; kept loose on purpose,
        // the downloader's resolver is the real judge.
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
        {
            return Err(UriError::Invalid);
        }
        match after {
            "" => ("x", None),
            _ => ("x", Some(after.strip_prefix(':').ok_or(UriError::Invalid)?)),
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(UriError::Invalid);
    }
    check_chars(host, |c| is_unreserved(c) || is_sub_delim(c))?;
    if let Some(port) = port {
        // RFC 3986 allows an empty port; a non-empty one must fit 16 bits.
        if !port.is_empty()
            && (!port.bytes().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err())
        {
            return Err(UriError::Invalid);
        }
    }
    Ok(())
}

/// Parses a SHA-256 digest written as 64 hex digits (either case), a common
/// way vendors convey the expected digest (in a manifest or a custom resource).
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    unhex(hex)?.try_into().ok()
}

/// A set of resource ids of object 5 (all below 16), for notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChangedResources(u16);

impl ChangedResources {
    /// The empty set.
    pub const EMPTY: ChangedResources = ChangedResources(0);

    fn insert(&mut self, resource: u16) {
        if let Some(bit) = 1u16.checked_shl(u32::from(resource)) {
            self.0 |= bit;
        }
    }

    /// Whether `resource` changed.
    pub fn contains(self, resource: u16) -> bool {
        1u16.checked_shl(u32::from(resource))
            .is_some_and(|bit| self.0 & bit != 0)
    }

    /// Whether nothing changed.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The changed resource ids, ascending.
    pub fn iter(self) -> impl Iterator<Item = u16> {
        (0u16..16).filter(move |r| self.contains(*r))
    }
}

/// Static configuration of a [`FirmwareUpdate`] instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareConfig {
    /// Delivery Method (/5/x/9). Default: both.
    pub delivery: DeliveryMethod,
    /// Protocol Support (/5/x/8): schemes the downloader handles. Default:
    /// CoAP and CoAPS.
    pub protocols: Vec<Protocol>,
    /// Unix time (seconds) of [`Instant::ZERO`], to report Last State Change
    /// Time (/5/x/12) as a Unix timestamp. Default 0 (time since the driver's
    /// epoch).
    pub unix_time_at_zero: i64,
    /// Initial Maximum Defer Period (/5/x/13), seconds; 0 = no deferral
    /// (default).
    pub max_defer_period: u32,
    /// Initial Severity (/5/x/11). Default: mandatory (the TS default).
    pub severity: Severity,
}

impl Default for FirmwareConfig {
    fn default() -> FirmwareConfig {
        FirmwareConfig {
            delivery: DeliveryMethod::Both,
            protocols: alloc::vec![Protocol::Coap, Protocol::Coaps],
            unix_time_at_zero: 0,
            max_defer_period: 0,
            severity: Severity::Mandatory,
        }
    }
}

/// The state to keep across a reboot (the device reboots into the new
/// firmware while Updating, or loses power mid-download). Plain data: the
/// integrator stores it as it likes, taken with [`FirmwareUpdate::snapshot`]
/// after every change ([`FirmwareUpdate::take_changed`] not empty) and given
/// back to [`FirmwareUpdate::restore`] at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareSnapshot {
    /// State.
    pub state: State,
    /// Update Result.
    pub result: UpdateResult,
    /// Package URI.
    pub package_uri: String,
    /// PkgName.
    pub pkg_name: String,
    /// PkgVersion.
    pub pkg_version: String,
    /// Severity.
    pub severity: Severity,
    /// Maximum Defer Period, seconds.
    pub max_defer_period: u32,
    /// Last State Change Time, Unix seconds (as read from /5/x/12).
    pub last_state_change: i64,
    /// Bytes of the image in storage: the whole image in Downloaded and
    /// Updating.
    pub image_len: u64,
    /// The SHA-256 digest the package must have, if one was given.
    pub expected_sha256: Option<[u8; 32]>,
    /// For a pull download in progress, or paused after a lost connection:
    /// the state of the SHA-256 computation over the first `image_len`
    /// bytes (sha2's serialized state), so that the download resumes after
    /// a reboot. `None` otherwise.
    pub pull_hash_state: Option<Vec<u8>>,
}

/// Why [`FirmwareSnapshot::decode`] refused a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// The first line is not `lwm2m-fw-state 1`.
    BadHeader,
    /// A line is not `key=value`, or longer than 1024 bytes.
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// A value does not parse.
    BadValue {
        /// The key.
        key: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A required key is missing.
    Missing {
        /// The key.
        key: &'static str,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::BadHeader => {
                f.write_str("firmware state: first line is not \"lwm2m-fw-state 1\"")
            }
            SnapshotError::BadLine { line } => write!(
                f,
                "firmware state line {line}: expected key=value of at most 1024 bytes"
            ),
            SnapshotError::BadValue { key, expected } => {
                write!(f, "firmware state: {key} is not {expected}")
            }
            SnapshotError::Missing { key } => write!(f, "firmware state: no {key}= line"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SnapshotError {}

const SNAPSHOT_HEADER: &str = "lwm2m-fw-state 1";
const MAX_SNAPSHOT_LINE: usize = 1024;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            'n' => '\n',
            'r' => '\r',
            _ => return None,
        });
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    // from_str_radix alone would take a sign ("+f").
    if !s.len().is_multiple_of(2) || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| {
            let pair = core::str::from_utf8(p).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

impl FirmwareSnapshot {
    /// The snapshot as UTF-8 text (`key=value` lines after a version line),
    /// for a file or a flash record; read back with
    /// [`FirmwareSnapshot::decode`].
    pub fn encode(&self) -> String {
        use core::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{SNAPSHOT_HEADER}");
        let _ = writeln!(out, "state={}", self.state.as_u8());
        let _ = writeln!(out, "result={}", self.result.as_u8());
        let _ = writeln!(out, "uri={}", escape(&self.package_uri));
        let _ = writeln!(out, "pkg_name={}", escape(&self.pkg_name));
        let _ = writeln!(out, "pkg_version={}", escape(&self.pkg_version));
        let _ = writeln!(out, "severity={}", self.severity as u8);
        let _ = writeln!(out, "max_defer_period={}", self.max_defer_period);
        let _ = writeln!(out, "last_state_change={}", self.last_state_change);
        let _ = writeln!(out, "image_len={}", self.image_len);
        let digest = self.expected_sha256.map(|d| hex(&d)).unwrap_or_default();
        let _ = writeln!(out, "expected_sha256={digest}");
        let hash = self.pull_hash_state.as_deref().map(hex).unwrap_or_default();
        let _ = writeln!(out, "pull_hash_state={hash}");
        out
    }

    /// Parses what [`FirmwareSnapshot::encode`] wrote. Unknown keys are
    /// ignored; lines are at most 1024 bytes; a (State, Update Result) pair
    /// the TS does not allow is left for [`FirmwareUpdate::restore`] to
    /// repair.
    pub fn decode(text: &str) -> Result<FirmwareSnapshot, SnapshotError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim_end) != Some(SNAPSHOT_HEADER) {
            return Err(SnapshotError::BadHeader);
        }
        let mut fields: [Option<&str>; 12] = [None; 12];
        const KEYS: [&str; 12] = [
            "state",
            "result",
            "uri",
            "pkg_name",
            "pkg_version",
            "severity",
            "max_defer_period",
            "last_state_change",
            "image_len",
            "expected_sha256",
            "pull_hash_state",
            "",
        ];
        for (n, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .filter(|_| line.len() <= MAX_SNAPSHOT_LINE)
                .ok_or(SnapshotError::BadLine { line: n + 2 })?;
            if let Some(i) = KEYS.iter().position(|k| !k.is_empty() && *k == key) {
                fields[i] = Some(value);
            }
        }
        let get = |i: usize| fields[i].ok_or(SnapshotError::Missing { key: KEYS[i] });
        let bad = |key, expected| SnapshotError::BadValue { key, expected };
        let small = |i: usize| {
            get(i)?
                .parse::<u8>()
                .map_err(|_| bad(KEYS[i], "a small integer"))
        };
        let text_field = |i: usize| {
            let v = unescape(get(i)?).ok_or(bad(KEYS[i], "escaped text"))?;
            if v.len() > MAX_URI_LEN {
                return Err(bad(KEYS[i], "at most 255 bytes"));
            }
            Ok(v)
        };
        let state = State::from_u8(small(0)?).ok_or(bad("state", "0..3"))?;
        let result = UpdateResult::from_u8(small(1)?).ok_or(bad("result", "0..11"))?;
        let severity = Severity::from_i64(i64::from(small(5)?)).ok_or(bad("severity", "0..2"))?;
        let expected_sha256 = match get(9)? {
            "" => None,
            h => Some(parse_sha256_hex(h).ok_or(bad("expected_sha256", "64 hex digits"))?),
        };
        let pull_hash_state = match get(10)? {
            "" => None,
            h => Some(unhex(h).ok_or(bad("pull_hash_state", "hex digits"))?),
        };
        Ok(FirmwareSnapshot {
            state,
            result,
            package_uri: text_field(2)?,
            pkg_name: text_field(3)?,
            pkg_version: text_field(4)?,
            severity,
            max_defer_period: get(6)?
                .parse()
                .map_err(|_| bad("max_defer_period", "seconds (u32)"))?,
            last_state_change: get(7)?
                .parse()
                .map_err(|_| bad("last_state_change", "Unix seconds (i64)"))?,
            image_len: get(8)?
                .parse()
                .map_err(|_| bad("image_len", "a byte count (u64)"))?,
            expected_sha256,
            pull_hash_state,
        })
    }
}

/// Why a [`FirmwareStateStore`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateStoreError {
    /// Reading or writing failed.
    Io {
        /// What failed (path and system error).
        message: String,
    },
    /// The stored state does not parse.
    Corrupt(SnapshotError),
}

impl fmt::Display for StateStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateStoreError::Io { message } => write!(f, "firmware state store: {message}"),
            StateStoreError::Corrupt(e) => write!(f, "firmware state store: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StateStoreError {}

/// Where the firmware object keeps its [`FirmwareSnapshot`] across reboots
/// (a file with [`FileStateStore`], a flash record on a device).
pub trait FirmwareStateStore {
    /// The snapshot saved last, `None` if there is none (first boot).
    fn load(&mut self) -> Result<Option<FirmwareSnapshot>, StateStoreError>;
    /// Replaces the saved snapshot.
    fn save(&mut self, snapshot: &FirmwareSnapshot) -> Result<(), StateStoreError>;
}

#[cfg(feature = "std")]
mod files;
#[cfg(feature = "std")]
pub use files::{FileStateStore, FileStorage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Push,
    Pull,
}

/// The image in storage: being written, paused (a pull that lost its
/// connection) or complete.
#[derive(Clone)]
struct Transfer {
    mode: Mode,
    written: u64,
    hasher: Sha256,
}

/// The Firmware Update object (one instance) and its state machine.
pub struct FirmwareUpdate<S> {
    storage: S,
    config: FirmwareConfig,
    state: State,
    result: UpdateResult,
    uri: String,
    pkg_name: String,
    pkg_version: String,
    severity: Severity,
    max_defer_period: u32,
    last_state_change: Instant,
    transfer: Option<Transfer>,
    expected_sha256: Option<[u8; 32]>,
    deferred_since: Option<Instant>,
    events: VecDeque<FwEvent>,
    changed: ChangedResources,
}

impl<S: fmt::Debug> fmt::Debug for FirmwareUpdate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirmwareUpdate")
            .field("state", &self.state)
            .field("result", &self.result)
            .field("uri", &self.uri)
            .field("written", &self.transfer.as_ref().map(|t| t.written))
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl<S: FirmwareStorage> FirmwareUpdate<S> {
    /// A new instance in Idle with Update Result 0; `now` is the initial Last
    /// State Change Time.
    pub fn new(config: FirmwareConfig, storage: S, now: Instant) -> FirmwareUpdate<S> {
        FirmwareUpdate {
            storage,
            state: State::Idle,
            result: UpdateResult::Initial,
            uri: String::new(),
            pkg_name: String::new(),
            pkg_version: String::new(),
            severity: config.severity,
            max_defer_period: config.max_defer_period,
            last_state_change: now,
            transfer: None,
            expected_sha256: None,
            deferred_since: None,
            events: VecDeque::new(),
            changed: ChangedResources::EMPTY,
            config,
        }
    }

    /// The state to persist across a reboot (see [`FirmwareSnapshot`]).
    pub fn snapshot(&self) -> FirmwareSnapshot {
        FirmwareSnapshot {
            state: self.state,
            result: self.result,
            package_uri: self.uri.clone(),
            pkg_name: self.pkg_name.clone(),
            pkg_version: self.pkg_version.clone(),
            severity: self.severity,
            max_defer_period: self.max_defer_period,
            last_state_change: self.last_state_change_unix(),
            image_len: self.transfer.as_ref().map_or(0, |t| t.written),
            expected_sha256: self.expected_sha256,
            pull_hash_state: self
                .transfer
                .as_ref()
                .filter(|t| t.mode == Mode::Pull && self.state != State::Downloaded)
                .map(|t| t.hasher.serialize().to_vec()),
        }
    }

    /// An instance restored after a reboot from what
    /// [`FirmwareUpdate::snapshot`] returned before it; `storage` must still
    /// hold the image in Downloaded and Updating.
    ///
    /// * Updating stays Updating: the integrator now reports how the update
    ///   went ([`FirmwareUpdate::update_succeeded`] when the new firmware
    ///   runs, [`FirmwareUpdate::update_failed`] otherwise).
    /// * Downloaded stays Downloaded; a deferred update (Result 11) gets a new
    ///   Maximum Defer Period counted from `now` (no clock survives the
    ///   reboot).
    /// * A pull download (Downloading, or Idle after a lost connection) whose
    ///   storage can [`FirmwareStorage::resume`] keeps its bytes: Downloading
    ///   resumes at once ([`FwEvent::Download`] with `resume_from` the bytes
    ///   stored), Idle resumes when the same Package URI is written again.
    /// * Otherwise Downloading becomes Idle with Update Result 4 (the reboot
    ///   cut the connection) and the partial image is aborted (a push cannot
    ///   be resumed by the client).
    /// * A (State, Result) pair the TS does not allow (a corrupt snapshot)
    ///   keeps the State with Update Result 0.
    pub fn restore(
        config: FirmwareConfig,
        storage: S,
        snapshot: FirmwareSnapshot,
        now: Instant,
    ) -> FirmwareUpdate<S> {
        let mut m = FirmwareUpdate::new(config, storage, now);
        let secs_since_zero = snapshot
            .last_state_change
            .saturating_sub(m.config.unix_time_at_zero);
        m.last_state_change = u64::try_from(secs_since_zero)
            .map(|s| Instant::from_millis(s.saturating_mul(1000)))
            .unwrap_or(Instant::ZERO);
        m.uri = snapshot.package_uri;
        m.pkg_name = snapshot.pkg_name;
        m.pkg_version = snapshot.pkg_version;
        m.severity = snapshot.severity;
        m.max_defer_period = snapshot.max_defer_period;
        let result = if is_allowed(snapshot.state, snapshot.result) {
            snapshot.result
        } else {
            UpdateResult::Initial
        };
        m.expected_sha256 = snapshot.expected_sha256;
        let resumed = match (&snapshot.pull_hash_state, snapshot.state) {
            (Some(h), State::Idle | State::Downloading) => {
                let hasher = Array::try_from(h.as_slice())
                    .ok()
                    .and_then(|a| Sha256::deserialize(&a).ok());
                match hasher {
                    Some(hasher) if m.storage.resume(snapshot.image_len).is_ok() => {
                        m.transfer = Some(Transfer {
                            mode: Mode::Pull,
                            written: snapshot.image_len,
                            hasher,
                        });
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        match snapshot.state {
            State::Idle => m.result = result,
            State::Downloading if resumed => {
                m.state = State::Downloading;
                m.result = UpdateResult::Initial;
                m.events.push_back(FwEvent::Download {
                    uri: m.uri.clone(),
                    resume_from: snapshot.image_len,
                });
            }
            State::Downloading => {
                m.storage.abort();
                m.state = State::Idle;
                m.result = UpdateResult::ConnectionLost;
                m.last_state_change = now;
                m.expected_sha256 = None;
            }
            State::Downloaded | State::Updating => {
                m.state = snapshot.state;
                m.result = result;
                m.transfer = Some(Transfer {
                    mode: Mode::Push,
                    written: snapshot.image_len,
                    hasher: Sha256::new(),
                });
                if result == UpdateResult::Deferred {
                    m.deferred_since = Some(now);
                }
            }
        }
        m
    }

    /// The State resource.
    pub fn state(&self) -> State {
        self.state
    }

    /// The Update Result resource.
    pub fn result(&self) -> UpdateResult {
        self.result
    }

    /// The Package URI resource ("" when none).
    pub fn package_uri(&self) -> &str {
        &self.uri
    }

    /// The Severity resource.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The Maximum Defer Period resource, seconds.
    pub fn max_defer_period(&self) -> u32 {
        self.max_defer_period
    }

    /// When the State last changed.
    pub fn last_state_change(&self) -> Instant {
        self.last_state_change
    }

    /// The configuration given at creation.
    pub fn config(&self) -> &FirmwareConfig {
        &self.config
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, giving up the object (at shutdown, with
    /// [`FirmwareUpdate::snapshot`]).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// The storage, mutably (for the installer, to read the image).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Bytes of the current pull download already stored: where the
    /// downloader resumes (HTTP `Range`, CoAP Block2). `Some` while a pull
    /// download is in progress and in Idle after it lost its connection
    /// (writing the same Package URI again resumes it).
    pub fn resume_offset(&self) -> Option<u64> {
        match (&self.transfer, self.state) {
            (Some(t), State::Downloading | State::Idle) if t.mode == Mode::Pull => Some(t.written),
            _ => None,
        }
    }

    /// Sets the SHA-256 digest the package must have, or none. It applies to
    /// the download in progress or the next one and is checked when the
    /// download completes (mismatch: Idle, Update Result 5); it is cleared by
    /// that check, a reset and a Cancel. How the server conveys the digest is
    /// vendor-specific (see [`parse_sha256_hex`]).
    pub fn set_expected_sha256(&mut self, digest: Option<[u8; 32]>) {
        self.expected_sha256 = digest;
    }

    /// Sets PkgName and PkgVersion (/5/x/6, /5/x/7), typically from the
    /// package header; cleared by a reset.
    pub fn set_package_info(&mut self, name: &str, version: &str) {
        if self.pkg_name != name {
            self.pkg_name = String::from(name);
            self.changed.insert(res::PKG_NAME);
        }
        if self.pkg_version != version {
            self.pkg_version = String::from(version);
            self.changed.insert(res::PKG_VERSION);
        }
    }

    /// The next thing the integrator has to do.
    pub fn poll_event(&mut self) -> Option<FwEvent> {
        self.events.pop_front()
    }

    /// Resources whose value changed since the last call (State, Update
    /// Result, Last State Change Time, Package URI, ...), for notifications.
    pub fn take_changed(&mut self) -> ChangedResources {
        core::mem::take(&mut self.changed)
    }

    /// When [`FirmwareUpdate::tick`] has something to do: the end of the
    /// Maximum Defer Period while an update is deferred.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.state == State::Downloaded && self.result == UpdateResult::Deferred {
            self.defer_deadline()
        } else {
            None
        }
    }

    /// Advances time: a deferred update whose Maximum Defer Period is over
    /// starts (Updating, [`FwEvent::StartUpdate`]).
    pub fn tick(&mut self, now: Instant) {
        if self.next_deadline().is_some_and(|d| now >= d) {
            self.begin_update(now);
        }
    }

    // ----- server operations -----

    /// Reads a resource.
    pub fn read(&self, resource: u16) -> Result<ResourceValue, FwError> {
        let single = |v| Ok(ResourceValue::Single(v));
        match resource {
            res::PACKAGE_URI => single(Value::String(self.uri.clone())),
            res::STATE => single(Value::Integer(i64::from(self.state.as_u8()))),
            res::UPDATE_RESULT => single(Value::Integer(i64::from(self.result.as_u8()))),
            res::PKG_NAME => single(Value::String(self.pkg_name.clone())),
            res::PKG_VERSION => single(Value::String(self.pkg_version.clone())),
            res::FIRMWARE_UPDATE_PROTOCOL_SUPPORT => Ok(ResourceValue::Multiple(
                (0u16..)
                    .zip(&self.config.protocols)
                    .map(|(i, p)| (i, Value::Integer(*p as i64)))
                    .collect(),
            )),
            res::FIRMWARE_UPDATE_DELIVERY_METHOD => {
                single(Value::Integer(self.config.delivery as i64))
            }
            res::SEVERITY => single(Value::Integer(self.severity as i64)),
            res::LAST_STATE_CHANGE_TIME => single(Value::Time(self.last_state_change_unix())),
            res::MAXIMUM_DEFER_PERIOD => {
                single(Value::UnsignedInteger(u64::from(self.max_defer_period)))
            }
            res::PACKAGE | res::UPDATE | res::CANCEL => {
                Err(FwError::OperationNotAllowed { resource })
            }
            _ => Err(FwError::NotFound { resource }),
        }
    }

    /// Writes a resource: Package (a whole, one-block package; block-wise
    /// transfers use [`FirmwareUpdate::package_chunk`]), Package URI,
    /// Severity, Maximum Defer Period.
    pub fn write(&mut self, resource: u16, value: Value, now: Instant) -> Result<(), FwError> {
        match (resource, value) {
            (res::PACKAGE, Value::Opaque(bytes)) => self.package_chunk(0, &bytes, true, now),
            (res::PACKAGE_URI, Value::String(uri)) => self.write_uri(uri, now),
            (res::SEVERITY, v) => {
                let severity = int_value(&v)
                    .and_then(Severity::from_i64)
                    .ok_or(FwError::BadValue { resource })?;
                if severity != self.severity {
                    self.severity = severity;
                    self.changed.insert(res::SEVERITY);
                }
                Ok(())
            }
            (res::MAXIMUM_DEFER_PERIOD, v) => {
                let secs = int_value(&v)
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or(FwError::BadValue { resource })?;
                if secs != self.max_defer_period {
                    self.max_defer_period = secs;
                    self.changed.insert(res::MAXIMUM_DEFER_PERIOD);
                }
                Ok(())
            }
            (res::PACKAGE | res::PACKAGE_URI, _) => Err(FwError::BadValue { resource }),
            (r, _) if RESOURCES.contains(&r) => Err(FwError::OperationNotAllowed { resource }),
            _ => Err(FwError::NotFound { resource }),
        }
    }

    /// Executes Update (/5/x/2) or Cancel (/5/x/10). The TS defines no
    /// arguments for either; `args` is ignored.
    ///
    /// Update is allowed in Downloaded only; it queues
    /// [`FwEvent::UpdateRequested`] and leaves the state as it is until the
    /// integrator starts or defers the update. Cancel is allowed in
    /// Downloading and Downloaded (before the update started): Idle, Update
    /// Result 10, [`FwEvent::Abort`].
    pub fn execute(&mut self, resource: u16, args: &[u8], now: Instant) -> Result<(), FwError> {
        let _ = args;
        match resource {
            res::UPDATE => {
                if self.state != State::Downloaded {
                    return Err(FwError::InvalidState { state: self.state });
                }
                let may_defer =
                    self.max_defer_period > 0 && self.defer_deadline().is_none_or(|d| now < d);
                self.events.push_back(FwEvent::UpdateRequested {
                    severity: self.severity,
                    may_defer,
                });
                Ok(())
            }
            res::CANCEL => {
                // TS: Cancel before the update process started; in Updating (and
                // Idle: nothing to cancel, or an update already done) Method Not Allowed.
                if !matches!(self.state, State::Downloading | State::Downloaded) {
                    return Err(FwError::InvalidState { state: self.state });
                }
                self.discard_image();
                self.events.push_back(FwEvent::Abort);
                self.set_state(State::Idle, now);
                self.set_result(UpdateResult::Cancelled);
                Ok(())
            }
            r if RESOURCES.contains(&r) => Err(FwError::OperationNotAllowed { resource }),
            _ => Err(FwError::NotFound { resource }),
        }
    }

    /// One block of a (block-wise) Write of the Package resource: `bytes` at
    /// byte `offset` of the package, `last` on the final block.
    ///
    /// * An empty package or a single `\0` (offset 0, last) resets the state
    ///   machine from any state: Idle, Update Result 0, image discarded.
    /// * Offset 0 in Idle starts a push download (Downloading, Result 0); in a
    ///   push Downloading it restarts it (the server retried the transfer).
    /// * A block that overlaps what is stored (a retransmission) has its
    ///   stored part skipped; a gap is refused ([`FwError::UnexpectedOffset`],
    ///   4.08).
    /// * The last block completes the download: digest check, storage
    ///   `finish`, Downloaded.
    pub fn package_chunk(
        &mut self,
        offset: u64,
        bytes: &[u8],
        last: bool,
        now: Instant,
    ) -> Result<(), FwError> {
        if offset == 0 && last && matches!(bytes, [] | [0]) {
            self.reset(now);
            return Ok(());
        }
        if !self.config.delivery.push() {
            return Err(FwError::PushNotSupported);
        }
        let push_in_progress = self.state == State::Downloading
            && self.transfer.as_ref().is_some_and(|t| t.mode == Mode::Push);
        match (self.state, offset) {
            (State::Idle, 0) => self.start_transfer(Mode::Push, now)?,
            // The server retried the whole transfer: start over.
            (State::Downloading, 0) if push_in_progress => self.start_transfer(Mode::Push, now)?,
            (State::Idle, got) => return Err(FwError::UnexpectedOffset { expected: 0, got }),
            (State::Downloading, _) if push_in_progress => {}
            (state, _) => return Err(FwError::InvalidState { state }),
        }
        self.append(offset, bytes, now)?;
        if last {
            self.complete(now)?;
        }
        Ok(())
    }

    fn write_uri(&mut self, uri: String, now: Instant) -> Result<(), FwError> {
        if uri.is_empty() {
            self.reset(now);
            return Ok(());
        }
        if uri.len() > MAX_URI_LEN {
            return Err(FwError::BadValue {
                resource: res::PACKAGE_URI,
            });
        }
        if self.state != State::Idle {
            return Err(FwError::InvalidState { state: self.state });
        }
        let same_uri = uri == self.uri;
        if !same_uri {
            self.uri = uri;
            self.changed.insert(res::PACKAGE_URI);
        }
        // TS: the Write itself succeeds; a URI the client cannot use is reported
        // through Update Result only.
        let protocol = match check_uri(&self.uri) {
            Ok(p) => p,
            Err(UriError::Invalid) => {
                self.set_result(UpdateResult::InvalidUri);
                return Ok(());
            }
            Err(UriError::UnknownScheme) => {
                self.set_result(UpdateResult::UnsupportedProtocol);
                return Ok(());
            }
        };
        if !self.config.delivery.pull() || !self.config.protocols.contains(&protocol) {
            self.set_result(UpdateResult::UnsupportedProtocol);
            return Ok(());
        }
        let resumable = same_uri && self.resume_offset().is_some();
        let resume_from = if resumable {
            self.set_state(State::Downloading, now);
            self.set_result(UpdateResult::Initial);
            self.resume_offset().unwrap_or(0)
        } else {
            match self.start_transfer(Mode::Pull, now) {
                Ok(()) => 0,
                // The failure is in Update Result; the Write itself succeeded.
                Err(_) => return Ok(()),
            }
        };
        self.events.push_back(FwEvent::Download {
            uri: self.uri.clone(),
            resume_from,
        });
        Ok(())
    }

    // ----- the integrator's downloader (pull) -----

    /// Bytes of a pull download at byte `offset` of the package. Bytes
    /// already stored are skipped; a gap is refused
    /// ([`FwError::UnexpectedOffset`], resume from
    /// [`FirmwareUpdate::resume_offset`]). A storage failure ends the
    /// download: [`FwError::DownloadFailed`], Idle with Update Result 2, 3
    /// or 6.
    pub fn download_chunk(
        &mut self,
        offset: u64,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), FwError> {
        self.require_pull()?;
        self.append(offset, bytes, now)
    }

    /// The pull download starts over from byte 0 (the server ignored a
    /// resume request, for example an HTTP 200 answer to a `Range`
    /// request): the stored bytes are discarded (storage `abort` then
    /// `begin`), the digest computation restarts, the state stays
    /// Downloading. A storage failure ends the download like in
    /// [`FirmwareUpdate::download_chunk`].
    pub fn restart_download(&mut self, now: Instant) -> Result<(), FwError> {
        self.require_pull()?;
        self.start_transfer(Mode::Pull, now)
    }

    /// The pull download reached the end of the package: digest check,
    /// storage `finish`, Downloaded (or Idle with Update Result 5/2/3/6 and
    /// [`FwError::DownloadFailed`]).
    pub fn download_complete(&mut self, now: Instant) -> Result<(), FwError> {
        self.require_pull()?;
        self.complete(now)
    }

    /// The download (pull, or a push the transfer layer gave up on) failed:
    /// Idle with the matching Update Result. A pull that lost its connection
    /// keeps what it stored: writing the same Package URI again resumes it.
    pub fn download_failed(&mut self, error: DownloadError, now: Instant) -> Result<(), FwError> {
        if self.state != State::Downloading {
            return Err(FwError::InvalidState { state: self.state });
        }
        let keep = error == DownloadError::ConnectionLost
            && self.transfer.as_ref().is_some_and(|t| t.mode == Mode::Pull);
        if !keep {
            self.discard_image();
        }
        self.set_state(State::Idle, now);
        self.set_result(error.update_result());
        Ok(())
    }

    fn require_pull(&self) -> Result<(), FwError> {
        match &self.transfer {
            Some(t) if self.state == State::Downloading && t.mode == Mode::Pull => Ok(()),
            _ => Err(FwError::InvalidState { state: self.state }),
        }
    }

    // ----- the integrator's installer -----

    /// Starts the update of the downloaded image (the answer to
    /// [`FwEvent::UpdateRequested`], or the user accepting a deferred update,
    /// or an automatic update): Updating, Update Result 0,
    /// [`FwEvent::StartUpdate`]. Allowed in Downloaded only.
    pub fn start_update(&mut self, now: Instant) -> Result<(), FwError> {
        if self.state != State::Downloaded {
            return Err(FwError::InvalidState { state: self.state });
        }
        self.begin_update(now);
        Ok(())
    }

    /// Defers the update (the user said "later"): stays Downloaded with
    /// Update Result 11 until [`FirmwareUpdate::start_update`] or the end of
    /// the Maximum Defer Period, counted from the first deferral of this
    /// image, at which [`FirmwareUpdate::tick`] starts the update. Returns
    /// that deadline. Refused when the period is 0
    /// ([`FwError::DeferNotAllowed`]) or over
    /// ([`FwError::DeferPeriodExpired`]); the state is then unchanged and the
    /// integrator should start the update.
    pub fn defer_update(&mut self, now: Instant) -> Result<Instant, FwError> {
        if self.state != State::Downloaded {
            return Err(FwError::InvalidState { state: self.state });
        }
        if self.max_defer_period == 0 {
            return Err(FwError::DeferNotAllowed);
        }
        let since = self.deferred_since.unwrap_or(now);
        let deadline = since + Duration::from_secs(u64::from(self.max_defer_period));
        if now >= deadline {
            return Err(FwError::DeferPeriodExpired);
        }
        self.deferred_since = Some(since);
        self.set_result(UpdateResult::Deferred);
        Ok(deadline)
    }

    /// The installation succeeded: Idle, Update Result 1.
    pub fn update_succeeded(&mut self, now: Instant) -> Result<(), FwError> {
        if self.state != State::Updating {
            return Err(FwError::InvalidState { state: self.state });
        }
        // The image is installed: nothing to keep, and `abort` would be wrong for
        // storages that install in place, so just forget it.
        self.transfer = None;
        self.deferred_since = None;
        self.set_state(State::Idle, now);
        self.set_result(UpdateResult::Success);
        Ok(())
    }

    /// The installation failed (see [`UpdateFailure`] for where each kind
    /// leads).
    pub fn update_failed(&mut self, failure: UpdateFailure, now: Instant) -> Result<(), FwError> {
        if self.state != State::Updating {
            return Err(FwError::InvalidState { state: self.state });
        }
        let (state, result) = match failure {
            UpdateFailure::KeepImage => (State::Downloaded, UpdateResult::UpdateFailed),
            UpdateFailure::DiscardImage => (State::Idle, UpdateResult::UpdateFailed),
            UpdateFailure::IntegrityCheckFailure => {
                (State::Idle, UpdateResult::IntegrityCheckFailure)
            }
            UpdateFailure::UnsupportedPackageType => {
                (State::Idle, UpdateResult::UnsupportedPackageType)
            }
        };
        if state == State::Idle {
            self.discard_image();
        }
        self.set_state(state, now);
        self.set_result(result);
        Ok(())
    }

    // ----- internals -----

    fn set_state(&mut self, state: State, now: Instant) {
        if state != self.state {
            self.state = state;
            self.last_state_change = now;
            self.changed.insert(res::STATE);
            self.changed.insert(res::LAST_STATE_CHANGE_TIME);
        }
        if state != State::Downloaded {
            self.deferred_since = None;
        }
    }

    fn last_state_change_unix(&self) -> i64 {
        let secs = i64::try_from(self.last_state_change.as_millis() / 1000).unwrap_or(i64::MAX);
        self.config.unix_time_at_zero.saturating_add(secs)
    }

    fn set_result(&mut self, result: UpdateResult) {
        if result != self.result {
            self.result = result;
            self.changed.insert(res::UPDATE_RESULT);
        }
    }

    fn defer_deadline(&self) -> Option<Instant> {
        self.deferred_since
            .map(|since| since + Duration::from_secs(u64::from(self.max_defer_period)))
    }

    fn begin_update(&mut self, now: Instant) {
        self.set_state(State::Updating, now);
        self.set_result(UpdateResult::Initial);
        self.events.push_back(FwEvent::StartUpdate);
    }

    /// Drops the stored image (complete or not) and the digest that went
    /// with it.
    fn discard_image(&mut self) {
        if self.transfer.take().is_some() {
            self.storage.abort();
        }
        self.expected_sha256 = None;
    }

    /// The reset of the TS (empty Package or Package URI): Idle, Result 0,
    /// from any state; the image, URI and package info are dropped.
    fn reset(&mut self, now: Instant) {
        let busy = self.state != State::Idle;
        self.discard_image();
        if busy {
            self.events.push_back(FwEvent::Abort);
        }
        if !self.uri.is_empty() {
            self.uri.clear();
            self.changed.insert(res::PACKAGE_URI);
        }
        self.set_package_info("", "");
        self.set_state(State::Idle, now);
        self.set_result(UpdateResult::Initial);
    }

    /// Moves to Idle with `result` after a failure of ours (storage, digest)
    /// and reports it to the caller.
    fn fail(&mut self, result: UpdateResult, now: Instant) -> FwError {
        self.discard_image();
        self.set_state(State::Idle, now);
        self.set_result(result);
        FwError::DownloadFailed(result)
    }

    fn start_transfer(&mut self, mode: Mode, now: Instant) -> Result<(), FwError> {
        if self.transfer.take().is_some() {
            self.storage.abort();
        }
        if let Err(e) = self.storage.begin() {
            return Err(self.fail(e.update_result(), now));
        }
        self.transfer = Some(Transfer {
            mode,
            written: 0,
            hasher: Sha256::new(),
        });
        self.set_state(State::Downloading, now);
        self.set_result(UpdateResult::Initial);
        Ok(())
    }

    fn append(&mut self, offset: u64, bytes: &[u8], now: Instant) -> Result<(), FwError> {
        let Some(t) = self.transfer.as_mut() else {
            return Err(FwError::InvalidState { state: self.state });
        };
        if offset > t.written {
            return Err(FwError::UnexpectedOffset {
                expected: t.written,
                got: offset,
            });
        }
        // Skip what a retransmitted or overlapping block repeats.
        let skip = usize::try_from(t.written - offset).unwrap_or(usize::MAX);
        let Some(new) = bytes.get(skip..).filter(|b| !b.is_empty()) else {
            return Ok(());
        };
        let Some(end) = u64::try_from(new.len())
            .ok()
            .and_then(|n| t.written.checked_add(n))
        else {
            return Err(self.fail(UpdateResult::NotEnoughFlash, now));
        };
        if let Err(e) = self.storage.write(t.written, new) {
            return Err(self.fail(e.update_result(), now));
        }
        t.hasher.update(new);
        t.written = end;
        Ok(())
    }

    fn complete(&mut self, now: Instant) -> Result<(), FwError> {
        let Some(t) = self.transfer.as_ref() else {
            return Err(FwError::InvalidState { state: self.state });
        };
        if let Some(expected) = self.expected_sha256.take() {
            let digest = t.hasher.clone().finalize();
            if digest.as_slice() != expected.as_slice() {
                return Err(self.fail(UpdateResult::IntegrityCheckFailure, now));
            }
        }
        if let Err(e) = self.storage.finish() {
            return Err(self.fail(e.update_result(), now));
        }
        self.set_state(State::Downloaded, now);
        self.set_result(UpdateResult::Initial);
        Ok(())
    }
}

/// An integer of either LwM2M integer type.
fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::UnsignedInteger(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}
