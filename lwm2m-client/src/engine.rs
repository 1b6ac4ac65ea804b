//! The sans-IO LwM2M client engine: registration with one or more LwM2M
//! servers and the Device Management & Information Reporting interfaces.
//!
//! A [`Client`] wraps a CoAP [`Endpoint`] and a set of [`Object`]s. Like the
//! endpoint it owns no socket, clock or task; a driver (the tokio one in
//! [`crate::tokio_driver`], or a test's simulated network):
//!
//! 1. calls [`Client::start`] once, which sends Register (or Bootstrap-Request),
//! 2. passes every received datagram to [`Client::handle_datagram`],
//! 3. sends what [`Client::poll_transmit`] returns,
//! 4. calls [`Client::handle_timeout`] when [`Client::poll_timeout`] is due,
//! 5. reads [`ClientEvent`]s from [`Client::poll_event`],
//! 6. calls [`Client::deregister`] to shut down (De-register to every
//!    server), and stops after [`ClientEvent::Deregistered`], which comes
//!    once for all servers.
//!
//! The application tells the engine about values that changed on their own
//! (a sensor reading) with [`Client::changed`]: observations of that path
//! then notify, respecting `pmin`. Writes by the server mark their path
//! changed automatically.
//!
//! # Bootstrap
//!
//! When the Security object has a Bootstrap-Server account and no LwM2M
//! server account, [`Client::start`] sends `POST /bs?ep=<name>` to the
//! address given to [`Client::new`]. Until Bootstrap-Finish (or
//! [`ClientConfig::bootstrap_timeout`]) that peer may Bootstrap-Write
//! (PUT `/O`, `/O/I`, `/O/I/R`, creating instances and writing read-only
//! resources, executables excepted), Bootstrap-Delete (`/`, `/O`, `/O/I`;
//! its own account and the Device object stay), Bootstrap-Discover (GET
//! Accept 40 on `/` or `/O`) and Bootstrap-Read the Server and Access
//! Control objects. Bootstrap-Finish (`POST /bs`) is answered 2.04 when a
//! Security instance and a Server instance share a Short Server ID and
//! [`Client::set_resolver`] maps its URI to an address; the client then
//! registers with every such account (see [several servers](#several-servers)),
//! each with its Server instance's lifetime and binding; accounts whose URI
//! does not resolve are left out. Otherwise 4.06, and the Bootstrap-Server may fix the configuration.
//! Failed attempts follow the same retry schedule as Register.
//!
//! # Several servers
//!
//! The client keeps one registration per LwM2M server account: a Security
//! instance that is not a Bootstrap-Server account, with the Server object
//! instance of the same Short Server ID. Each registration has its own
//! Register / Update / De-register, location, lifetime and binding (the
//! Server instance's resources 1 and 7; [`ClientConfig::lifetime`] and
//! [`ClientConfig::binding`] are the defaults when the instance lacks
//! them), LwM2M version fallback, retry schedule (resources 17–20),
//! queue-mode awake window, observations and Write-Attributes (attributes
//! one server sets do not apply to another's observations or Discover).
//! The resolver given to [`Client::set_resolver`] maps each account's URI
//! to a peer; the first account (lowest Security instance) whose URI does
//! not resolve uses the address given to [`Client::new`], other
//! unresolvable accounts are left out. Without any account the client
//! registers with that address alone (Short Server ID of the first Server
//! instance, or 1). A request is attributed to the server whose address
//! it comes from; requests from other peers get 4.01.
//! [`Client::poll_server_event`] tells which server (Short Server ID) an
//! event concerns.
//!
//! ## Registration order (Server resources 13–15, TS Core 1.1 §6.2.1.1)
//!
//! * Servers with a Registration Priority Order (13) register one after
//!   the other, lowest value first (ties by Short Server ID); the servers
//!   without one register after all of those, together.
//! * A server "completes" its turn when Register succeeds or, unless its
//!   Registration Failure Block (15) is true, when a Register attempt
//!   fails (the retries go on, but the next server does not wait for the
//!   whole retry schedule, which may last days). With the block set, the
//!   servers after it wait until it registers; if its schedule is
//!   exhausted they stay blocked until [`Client::start`] or a bootstrap.
//! * Initial Registration Delay Timer (14): the server's first Register
//!   waits that long after its turn came (after [`Client::start`] or a
//!   Bootstrap-Finish for the first server); re-registrations after a
//!   failed Update do not wait, and the order only governs the initial
//!   registrations.
//! * Bootstrap on Registration Failure (16) applies once the server's
//!   schedule is exhausted and every other server failed for good too:
//!   one healthy registration is not dropped for another's failure.
//!
//! # Registration
//!
//! * Register: `POST /rd?ep=<name>&lt=<lifetime>&lwm2m=<version>&b=<binding>`,
//!   Content-Format 40, payload `</>;rt="oma.lwm2m";ct=...` (the `ct` list only
//!   from LwM2M 1.1 on, where it was introduced) followed by one link per
//!   object and object instance, Security (0) and OSCORE (21) left out as TS
//!   Core §6.2.1 requires; an object link carries `ver=` when the object
//!   version is not 1.0, and objects without instances are listed as `</O>`.
//! * Version fallback: a server that answers Register with 4.00 Bad Request
//!   or 4.12 Precondition Failed may not speak the announced version
//!   (TS Core 1.1 §6.2.1); the client registers again at once with the next
//!   lower one (1.2 → 1.1 → 1.0), in that version's terms (1.0: binding
//!   `UQ` for queue mode, no `ct` list, TLV as the default multi-value
//!   format, no Send), and keeps it for the session
//!   ([`Client::lwm2m_version`]) until [`Client::start`] or a
//!   Bootstrap-Finish. The refusal does not count as a failed attempt.
//! * Update: `POST /<location>` at lifetime / 2 after the last successful
//!   Register or Update (so the registration never expires even if one Update
//!   needs the whole CoAP retransmission budget, about 93 s), with `lt=` when
//!   the lifetime changed (a write to `/1/x/1`) and the link payload when the
//!   objects changed ([`Client::objects_changed`], Create, Delete). Executing
//!   the Server object's Registration Update Trigger (`/1/x/8`) sends one now.
//! * An Update that fails (4.04 because the server forgot us, any other
//!   error, or no answer) starts a new registration at once.
//! * Deregister: `DELETE /<location>`.
//!
//! ## Disable, Bootstrap-Request Trigger, Notification Storing
//!
//! * Disable (`/1/x/4`, Execute): answered 2.04, then `DELETE /<location>`
//!   to that server only (TS Core: the client de-registers after the
//!   response); the registration is [`RegistrationState::Disabled`] and
//!   [`ClientEvent::Disabled`] tells until when. For Disable Timeout
//!   (`/1/x/5`, default 86400 s, counted from the Execute) the client
//!   sends that server nothing and drops its datagrams; then it registers
//!   afresh (new Register, new retry sequences). Other servers are not
//!   affected. A Send to it still unanswered ends at once
//!   ([`ClientEvent::SendCompleted`] without a code); a confirmable
//!   notification already in flight is still retransmitted by the CoAP
//!   layer (it has no way to withdraw one).
//! * Bootstrap-Request Trigger (`/1/x/9`, Execute, LwM2M 1.1): answered
//!   2.04, then every registration is dropped (no De-register: the
//!   Bootstrap-Server may reconfigure them anyway) and the client sends
//!   `POST /bs?ep=<name>` to the Bootstrap-Server account's address (its
//!   URI through [`Client::set_resolver`]); after Bootstrap-Finish it
//!   registers with the configured servers as after any bootstrap.
//!   Without a Bootstrap-Server account, or when its URI does not
//!   resolve, the Execute is answered 4.05 Method Not Allowed and nothing
//!   happens (the TS names no code; 4.05 is "operation not available").
//! * Notification Storing When Disabled or Offline (`/1/x/6`): a server is
//!   *away* while it is disabled or the client has no registration with
//!   it (Register being retried after a failed Update, or failed for
//!   good). A notification that comes due for an away server is not sent;
//!   with storing set the newest payload of each observation is kept (one
//!   per observation: that is the bound) and the observations survive the
//!   Register that ends the absence, right after which the stored
//!   notifications go out, oldest observation first. Without storing (the
//!   [`crate::objects::ServerConfig::new`] default; the TS gives none)
//!   they are dropped, Disable ends that server's observations, and a new
//!   registration starts without observations as before. Queue mode does
//!   not make a server away: a notification due while sleeping wakes the
//!   client and goes out (TS Core 1.1 §6.5 lets the client send at any
//!   time).
//!
//! ## Retry schedule when Register fails
//!
//! The Server object defaults of TS Core 1.1 §E.2 (resources 17–20), in
//! [`RetryPolicy`]: a *communication sequence* is up to `retry_count` (5)
//! Register attempts; after the n-th failed attempt the next one waits
//! `retry_timer · 2^(n-1)` (60 s, 120 s, 240 s, 480 s). When a whole sequence
//! failed, the next one starts after `sequence_delay` (24 h), up to
//! `sequence_retry_count` (1) sequences; then the engine gives up
//! ([`RegistrationState::Failed`]) until [`Client::start`] is called again.
//! Resources 17–20 of the Server object instance of the account, when it
//! has them, override the configured values.
//!
//! Bootstrap on registration failure (Server resource 16, true unless the
//! instance says false): when the schedule is exhausted and the Security
//! object holds a Bootstrap-Server account whose URI
//! [`Client::set_resolver`] resolves, the client reports
//! [`ClientEvent::BootstrapOnRegistrationFailure`] instead of giving up,
//! sends Bootstrap-Request there, and after Bootstrap-Finish registers with
//! the server it configured (the Bootstrap-Request attempts follow their
//! own fresh schedule).
//! An attempt fails on an error response or when the CoAP layer gives up
//! (no ACK after its retransmissions, about 93 s with the default
//! parameters).
//!
//! # Device management
//!
//! Requests from the server are dispatched by method and path depth:
//!
//! | Request | Operation |
//! |---|---|
//! | GET, Accept 40 | Discover (object, instance or resource) |
//! | GET, Observe 0 | Observe (any depth below the root) |
//! | GET (Observe 1 or none) | Read (Observe 1 also cancels) |
//! | PUT without payload, with Uri-Query | Write-Attributes |
//! | PUT with payload | Write (replace) on an instance, resource or resource instance |
//! | POST `/O` | Create |
//! | POST `/O/I` | Write (partial update) |
//! | POST `/O/I/R` | Execute |
//! | DELETE `/O/I` | Delete |
//! | FETCH `/` (SenML path list) | Read-Composite |
//! | iPATCH `/` (SenML values) | Write-Composite |
//!
//! Read formats: with no Accept option a single value goes out as
//! text/plain (opaque values as application/octet-stream) and anything larger
//! as TLV to an LwM2M 1.0 server, SenML CBOR from 1.1 on (the TS default;
//! [`ClientConfig::preferred_format`] picks another). An Accept the
//! engine cannot produce for that node (text/plain for an instance, an
//! unknown format) gets 4.06 Not Acceptable.
//!
//! [`Client::send`] reports values unasked (`POST /dp`, LwM2M 1.1), unless
//! the Server object's Mute Send is set. Queue mode: see
//! [`ClientConfig::queue_mode`].
//!
//! The Security object (0) and OSCORE (21) are not reachable through device
//! management: every request on them gets 4.01 Unauthorized (TS Core §E.1).
//!
//! # Access control
//!
//! With more than one LwM2M server account and an Access Control object
//! (2, [`crate::objects::AccessControl`]) among the objects, every
//! device-management request is checked against it (TS Core 1.1 §E.1.3,
//! Appendix E); with one server, or without that object, every server has
//! full access (Anjay's choice too: access control is optional).
//!
//! * The rights of a server on `/O/I` come from the Access Control
//!   instance whose Object ID and Object Instance ID are `O` and `I`: the
//!   ACL resource instance keyed by its Short Server ID; else, if it is
//!   the Access Control Owner, Read, Write, Execute and Delete; else ACL
//!   instance 0 (the default for servers not listed); else none. An
//!   object instance without an Access Control instance grants nothing.
//! * Read, Observe, Discover and Write-Attributes need bit 1, Write bit 2,
//!   Execute bit 4, Delete bit 8; Create on `/O` needs bit 16 in the
//!   Access Control instance of `/O/65535` (whose owner also gets it).
//!   Refusals are 4.01 Unauthorized; a target that does not exist is still
//!   4.04.
//! * An object-level Read, Observe or Discover leaves out the instances
//!   the server may not read (4.01 if it has instances but none
//!   readable); Read-Composite and Observe-Composite leave out unreadable
//!   paths like missing ones (4.01 if none is readable); Write-Composite
//!   is refused (4.01, nothing written) if any value is not writable.
//! * A Create makes the creating server the owner: an Access Control
//!   instance for the new instance is created with it as owner and no
//!   ACL entries. A Delete deletes the instance's Access Control instance.
//! * The Access Control object itself: an instance is readable by its
//!   owner only, which may write its ACL resource (not the Object ID,
//!   Object Instance ID or owner); Create and Delete on it are the
//!   Bootstrap-Server's (Bootstrap-Write / -Delete, not checked).
//! * Send ([`Client::send`], [`Client::send_to`]) leaves out the values
//!   the target server has no Read right on, as Read-Composite does (an
//!   object path keeps its readable instances); when none of the paths
//!   is readable it sends nothing and returns
//!   [`SendError::Read`]`(`[`DmError::Unauthorized`]`)`.
//!
//! # Observations
//!
//! The attributes in effect for an observed path are those of the object,
//! instance, resource and resource instance levels, the most specific level
//! winning; `pmin`/`pmax` fall back on the Server object's Default Minimum
//! and Maximum Period (`/1/x/2`, `/1/x/3`). A notification goes out when the
//! path was marked changed and its encoded value differs from the last one
//! sent, but not before `last + pmin`; and at `last + pmax` in any case.
//! `con=1` makes notifications confirmable (default: non-confirmable).
//! Notifications for a server that is disabled or not registered are
//! held or dropped per its Notification Storing resource (see
//! [above](#disable-bootstrap-request-trigger-notification-storing)).
//! Observe-Composite (FETCH `/` with Observe 0) notifies when any listed
//! path changes; its timing uses the Server object's default periods only
//! (attributes attached to the listed paths are not combined).
//! With [`ClientConfig::poll_observed`] the engine also re-reads observed
//! values periodically, for values that change without [`Client::changed`].
//! On a single numeric resource, `gt` / `lt` / `st` narrow "differs" to
//! "crossed gt or lt, or moved by at least st since the last notification".
//! `edge` on a boolean resource narrows it to the rising (1) or falling (0)
//! transition. `epmin` delays the evaluation of a change after the last
//! one; `epmax` makes the engine read the value at least that often even
//! if nobody called [`Client::changed`]. `hqmax` (1.2) is stored and
//! reported by Discover but not used.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Debug;

use lwm2m_core::coap::endpoint::{IncomingId, ObservationId, RequestError};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{
    Code, Endpoint, EndpointConfig, Event, Request, RequestId, Response, Transmit,
};
use lwm2m_core::format::link::{
    encode_discover, encode_links, BootstrapDiscover, DiscoverEntry, Link, LinkParam,
};
use lwm2m_core::format::{self, ContentFormat, FormatError};
use lwm2m_core::model::{
    write_attributes, Attributes, Instance, ModelLookup, Node, ObjectModel, ObjectNode, Path,
    Resource, ResourceModel, ResourceValue, TimestampedValue, Value, Version,
};
use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::{Duration, Instant};

use crate::object::{DmError, Object, ObjectRequestError};
use crate::objects::{rights, CREATE_INSTANCE};
use crate::security::{SecurityParams, SecurityResources};

/// Object id of the Security object, never reachable through device management.
const SECURITY: u16 = 0;
/// Object id of the Server object.
const SERVER: u16 = 1;
/// Object id of the Access Control object.
const ACCESS_CONTROL: u16 = 2;
/// Access Control object resources: ACL and Access Control Owner.
const ACL_RESOURCE: u16 = 2;
const ACL_OWNER: u16 = 3;
/// Object id of the OSCORE object, never reachable through device management.
const OSCORE: u16 = 21;
/// Server object resources the engine reacts to.
const SERVER_LIFETIME: u16 = 1;
const SERVER_DEFAULT_PMIN: u16 = 2;
const SERVER_DEFAULT_PMAX: u16 = 3;
const SERVER_DISABLE: u16 = 4;
const SERVER_DISABLE_TIMEOUT: u16 = 5;
const SERVER_NOTIFICATION_STORING: u16 = 6;
const SERVER_UPDATE_TRIGGER: u16 = 8;
const SERVER_BOOTSTRAP_TRIGGER: u16 = 9;
/// Disable Timeout when the Server instance has none (TS Core, object 1).
const DEFAULT_DISABLE_TIMEOUT: u32 = 86_400;
const SERVER_MUTE_SEND: u16 = 23;
const SERVER_BINDING: u16 = 7;
const SERVER_PRIORITY: u16 = 13;
const SERVER_INITIAL_DELAY: u16 = 14;
const SERVER_FAILURE_BLOCK: u16 = 15;
const SERVER_BOOTSTRAP_ON_FAILURE: u16 = 16;
const SERVER_RETRY_COUNT: u16 = 17;
const SERVER_RETRY_TIMER: u16 = 18;
const SERVER_SEQUENCE_DELAY: u16 = 19;
const SERVER_SEQUENCE_RETRY_COUNT: u16 = 20;

/// Content formats this client reads and writes beyond text/plain, opaque
/// and link format, announced in the `ct` parameter of the registration.
const ANNOUNCED_FORMATS: [u16; 6] = [60, 110, 112, 11542, 11543, 11544];

/// Formats [`ClientConfig::preferred_format`] may name.
const MULTI_VALUE_FORMATS: [ContentFormat; 4] = [
    ContentFormat::TLV,
    ContentFormat::SENML_JSON,
    ContentFormat::SENML_CBOR,
    ContentFormat::LWM2M_CBOR,
];

/// When to try Register again after a failure; see the
/// [module documentation](self#retry-schedule-when-register-fails).
/// Defaults are the Server object's (TS Core 1.1 §E.2, resources 17–20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per communication sequence (resource 17, default 5).
    pub retry_count: u32,
    /// Base delay between attempts, doubled after each failure (resource 18, default 60 s).
    pub retry_timer: Duration,
    /// Delay between sequences (resource 19, default 86400 s).
    pub sequence_delay: Duration,
    /// Number of sequences before giving up (resource 20, default 1).
    pub sequence_retry_count: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retry_count: 5,
            retry_timer: Duration::from_secs(60),
            sequence_delay: Duration::from_secs(86_400),
            sequence_retry_count: 1,
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt after `failed_attempts` failures in
    /// the current sequence (1-based) and `failed_sequences` whole sequences
    /// before it; `None` means give up.
    ///
    /// ```
    /// use lwm2m_client::engine::RetryPolicy;
    /// use lwm2m_core::time::Duration;
    /// let p = RetryPolicy::default();
    /// assert_eq!(p.next_delay(1, 0), Some(Duration::from_secs(60)));
    /// assert_eq!(p.next_delay(4, 0), Some(Duration::from_secs(480)));
    /// assert_eq!(p.next_delay(5, 0), None); // one sequence only by default
    /// ```
    pub fn next_delay(&self, failed_attempts: u32, failed_sequences: u32) -> Option<Duration> {
        if failed_attempts < self.retry_count.max(1) {
            let factor = 1u32
                .checked_shl(failed_attempts.saturating_sub(1))
                .unwrap_or(u32::MAX);
            Some(self.retry_timer.saturating_mul(factor))
        } else if failed_sequences + 1 < self.sequence_retry_count {
            Some(self.sequence_delay)
        } else {
            None
        }
    }
}

/// Configuration of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Endpoint client name (`ep`).
    pub endpoint: String,
    /// Registration lifetime in seconds (`lt`); also updated by writes to `/1/x/1`.
    pub lifetime: u32,
    /// LwM2M enabler version announced (`lwm2m`): 1.0 or 1.1.
    pub lwm2m_version: Version,
    /// Binding mode (`b`), `U` for UDP.
    pub binding: String,
    /// Register retry schedule.
    pub retry: RetryPolicy,
    /// CoAP transmission parameters.
    pub coap: EndpointConfig,
    /// Most observations served at once; beyond it an Observe request is
    /// answered as a plain Read (RFC 7641 §4.1 lets a server decline).
    pub max_observations: usize,
    /// When set, observed paths are read again at this period and treated
    /// as changed if their value differs: for values that change by
    /// themselves (clocks, sensors) when the application does not call
    /// [`Client::changed`]. `None` (default): only `changed` and server
    /// writes trigger value-change notifications.
    pub poll_observed: Option<Duration>,
    /// Queue mode (TS Core 1.1 §6.5): `Some(awake)` registers with the `Q`
    /// parameter (binding `UQ` for LwM2M 1.0) and keeps the client
    /// reachable for `awake` after its last transmission only (the TS
    /// recommends MAX_TRANSMIT_WAIT, 93 s). While asleep, received
    /// datagrams are dropped as a powered-down radio would;
    /// [`ClientEvent::Sleeping`] tells the driver it may power down. Any
    /// uplink (Update at lifetime / 2, a notification, a Send) wakes it.
    pub queue_mode: Option<Duration>,
    /// How long the Bootstrap-Server has, after accepting Bootstrap-Request,
    /// to send Bootstrap-Finish before the attempt counts as failed.
    pub bootstrap_timeout: Duration,
    /// Format of multi-value Read and Observe responses when the server
    /// sends no Accept option, from LwM2M 1.1 on: one of TLV, SenML JSON,
    /// SenML CBOR or LwM2M CBOR (anything else is ignored). `None`: SenML
    /// CBOR, the TS default. With an LwM2M 1.0 server it is always TLV.
    pub preferred_format: Option<ContentFormat>,
}

impl ClientConfig {
    /// A configuration with lifetime 86400 s, LwM2M 1.1, binding U and the
    /// default retry schedule and CoAP parameters.
    pub fn new(endpoint: &str) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.to_string(),
            lifetime: 86_400,
            lwm2m_version: Version::new(1, 1),
            binding: "U".to_string(),
            retry: RetryPolicy::default(),
            coap: EndpointConfig::default(),
            max_observations: 64,
            poll_observed: None,
            queue_mode: None,
            bootstrap_timeout: Duration::from_secs(120),
            preferred_format: None,
        }
    }
}

/// Where the client stands with a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// [`Client::start`] was not called yet.
    Idle,
    /// Bootstrapping: the Bootstrap-Server is configuring the client.
    Bootstrapping,
    /// A Register request is in flight.
    Registering,
    /// Registered, no request in flight.
    Registered,
    /// Registered, an Update is in flight.
    Updating,
    /// Register failed; the next attempt waits for the retry schedule.
    WaitingRetry,
    /// Every attempt allowed by the retry schedule failed.
    Failed,
    /// A De-register request is in flight.
    Deregistering,
    /// Deregistered (or never registered and shut down).
    Deregistered,
    /// The server account is disabled (Server resource 4 was executed):
    /// Register follows when its Disable Timeout (resource 5) has passed.
    Disabled,
}

/// What happened, for the application (and the driver's log).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Register succeeded; `location` is the registration path, e.g. `/rd/5a3f`.
    Registered {
        /// Location-Path segments joined with `/`, with a leading `/`.
        location: String,
    },
    /// Register failed: the server answered `code`, or nothing came back
    /// (`code` is `None`). `retry_at` is the next attempt, `None` if the
    /// engine gave up.
    RegistrationFailed {
        /// The error response, if any.
        code: Option<Code>,
        /// When the next attempt goes out.
        retry_at: Option<Instant>,
    },
    /// Every Register attempt of the retry schedule failed (`code` of the
    /// last one, as for `RegistrationFailed`) and the Server object's
    /// Bootstrap on Registration Failure (`/1/x/16`) is set: a
    /// Bootstrap-Request to the Bootstrap-Server account follows.
    BootstrapOnRegistrationFailure {
        /// The last error response, if any.
        code: Option<Code>,
    },
    /// Bootstrap-Finish accepted: Register to the configured server follows.
    Bootstrapped,
    /// Bootstrap failed (error response, no answer, or no Bootstrap-Finish
    /// in time); `retry_at` as for `RegistrationFailed`.
    BootstrapFailed {
        /// The error response to Bootstrap-Request, if any.
        code: Option<Code>,
        /// When the next Bootstrap-Request goes out.
        retry_at: Option<Instant>,
    },
    /// An Update succeeded.
    Updated,
    /// An Update failed (`code` as for `RegistrationFailed`); a new Register follows.
    UpdateFailed {
        /// The error response, if any.
        code: Option<Code>,
    },
    /// Deregistered (or shut down before registering).
    Deregistered,
    /// The server executed Disable (`/1/x/4`): the client de-registered
    /// from it (or gave up trying) and registers again at `until`.
    Disabled {
        /// When the Disable Timeout (`/1/x/5`) ends and Register goes out.
        until: Instant,
    },
    /// Queue mode: the awake window after the last transmission ended;
    /// datagrams are dropped until the client sends again.
    Sleeping,
    /// The server answered a Send ([`Client::send`]): `code` is its
    /// response (2.04 on success), `None` if no answer came.
    SendCompleted {
        /// The id `send` returned.
        id: RequestId,
        /// The response code, if any.
        code: Option<Code>,
    },
}

/// Why [`Client::send`] sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// Not registered.
    NotRegistered,
    /// Send needs LwM2M 1.1 or later.
    Unsupported,
    /// The Server object's Mute Send (`/1/x/23`) is set.
    Muted,
    /// A path could not be read (error as for a Read; `Unauthorized` when
    /// access control leaves the target server no Read right on any of
    /// the paths).
    Read(DmError),
    /// The CoAP layer refused the request (queue full, body too large).
    Busy,
}

/// One observation this client serves.
#[derive(Debug, Clone)]
struct Observation {
    /// Short Server ID of the observer.
    ssid: u16,
    /// The observer, when access control filters what it sees.
    viewer: Option<u16>,
    path: Path,
    /// Observe-Composite: the observed paths (`path` is then `/`); empty
    /// for a plain observation.
    composite: Vec<Path>,
    format: ContentFormat,
    last_sent: Instant,
    last_payload: Vec<u8>,
    /// The numeric value last sent, for gt / lt / st.
    last_value: Option<f64>,
    /// When the value was last read, for epmin / epmax.
    last_eval: Instant,
    /// The boolean value last read, for edge.
    last_bool: Option<bool>,
    dirty: bool,
    /// Notification Storing (`/1/x/6`): the newest notification payload
    /// that came due while the observer was disabled or unreachable.
    stored: Option<Vec<u8>>,
}

/// The value of a single boolean resource, for the edge condition.
fn boolean(node: &Node) -> Option<bool> {
    match node {
        Node::Resource(Resource {
            value: ResourceValue::Single(Value::Boolean(b)),
            ..
        })
        | Node::ResourceInstance {
            value: Value::Boolean(b),
            ..
        } => Some(*b),
        _ => None,
    }
}

/// Whether a change of a boolean from `last` to `value` passes `edge`
/// (TS Core 1.2 §7.3.2: 1 notifies on false → true only, 0 on true → false
/// only). Without edge, or for non-boolean values, any change passes.
fn passes_edge(edge: Option<bool>, last: Option<bool>, value: Option<bool>) -> bool {
    match (edge, value) {
        (Some(rising), Some(v)) => last == Some(!rising) && v == rising,
        _ => true,
    }
}

/// The leaf values of `node` (at `path`) as path/value records.
fn flatten(path: Path, node: &Node, out: &mut Vec<TimestampedValue>) {
    let mut push = |path: Option<Path>, value: &Value| {
        if let Some(path) = path {
            out.push(TimestampedValue {
                path,
                value: value.clone(),
                time: None,
            });
        }
    };
    let resource = |base: Path, r: &Resource, push: &mut dyn FnMut(Option<Path>, &Value)| {
        let rp = base.child(r.id);
        match &r.value {
            ResourceValue::Single(v) => push(rp, v),
            ResourceValue::Multiple(map) => {
                for (ri, v) in map {
                    push(rp.and_then(|p| p.child(*ri)), v);
                }
            }
        }
    };
    match node {
        Node::Object(o) => {
            for inst in o.instances.values() {
                if let Some(ip) = path.child(inst.id) {
                    for r in inst.resources.values() {
                        resource(ip, r, &mut push);
                    }
                }
            }
        }
        Node::Instance(inst) => {
            for r in inst.resources.values() {
                resource(path, r, &mut push);
            }
        }
        Node::Resource(r) => resource(path.parent(), r, &mut push),
        Node::ResourceInstance { value, .. } => push(Some(path), value),
    }
}

/// The value of a single numeric resource (or resource instance), for the
/// gt / lt / st conditions.
fn numeric(node: &Node) -> Option<f64> {
    let v = match node {
        Node::Resource(Resource {
            value: ResourceValue::Single(v),
            ..
        })
        | Node::ResourceInstance { value: v, .. } => v,
        _ => return None,
    };
    match *v {
        Value::Integer(i) => Some(i as f64),
        Value::UnsignedInteger(u) => Some(u as f64),
        Value::Float(f) => Some(f),
        _ => None,
    }
}

/// Whether a change from `last` to `value` passes the change conditions
/// (TS Core 1.1 §5.1.2): with none of gt / lt / st set any change does;
/// otherwise the value must cross gt or lt (in either direction) or move by
/// at least st since the last notification. Non-numeric values always pass.
fn passes_thresholds(attrs: &Attributes, last: Option<f64>, value: Option<f64>) -> bool {
    let (Some(last), Some(value)) = (last, value) else {
        return true;
    };
    if attrs.gt.is_none() && attrs.lt.is_none() && attrs.st.is_none() {
        return true;
    }
    let diff = value - last;
    let moved = if diff < 0.0 { -diff } else { diff };
    attrs.gt.is_some_and(|gt| (last > gt) != (value > gt))
        || attrs.lt.is_some_and(|lt| (last < lt) != (value < lt))
        || attrs.st.is_some_and(|st| moved >= st)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    /// Not started: [`Client::start`] was not called, or a server earlier
    /// in the registration order did not complete yet.
    Idle,
    /// Bootstrap-Request in flight.
    Bootstrapping(RequestId),
    /// Bootstrap-Request accepted; the Bootstrap-Server configures the
    /// client until Bootstrap-Finish or the deadline.
    BootstrapWaiting(Instant),
    /// Initial Registration Delay Timer (`/1/x/14`) running.
    Delayed(Instant),
    Registering(RequestId),
    Registered,
    Updating(RequestId),
    WaitingRetry(Instant),
    Failed,
    Deregistering(RequestId),
    Deregistered,
    /// De-register after Disable (`/1/x/4`) in flight; disabled until then.
    Disabling(RequestId, Instant),
    /// Disabled until then (messages from the server are ignored).
    Disabled(Instant),
}

impl Reg {
    fn in_flight(self) -> Option<RequestId> {
        match self {
            Reg::Registering(id)
            | Reg::Updating(id)
            | Reg::Deregistering(id)
            | Reg::Disabling(id, _)
            | Reg::Bootstrapping(id) => Some(id),
            _ => None,
        }
    }

    fn public(self) -> RegistrationState {
        match self {
            Reg::Idle => RegistrationState::Idle,
            Reg::Bootstrapping(_) | Reg::BootstrapWaiting(_) => RegistrationState::Bootstrapping,
            Reg::Registering(_) => RegistrationState::Registering,
            Reg::Registered => RegistrationState::Registered,
            Reg::Updating(_) => RegistrationState::Updating,
            Reg::WaitingRetry(_) | Reg::Delayed(_) => RegistrationState::WaitingRetry,
            Reg::Failed => RegistrationState::Failed,
            Reg::Deregistering(_) | Reg::Disabling(..) => RegistrationState::Deregistering,
            Reg::Deregistered => RegistrationState::Deregistered,
            Reg::Disabled(_) => RegistrationState::Disabled,
        }
    }
}

/// The registration with one server: an LwM2M server account, or the
/// Bootstrap-Server while bootstrapping (`ssid` 0, `bootstrap` set).
#[derive(Debug)]
struct Slot<P> {
    /// Short Server ID of the account (0 for the Bootstrap-Server).
    ssid: u16,
    bootstrap: bool,
    peer: P,
    reg: Reg,
    location: Option<String>,
    /// The Location-Path segments exactly as received: a segment may hold
    /// bytes (even `/`) that a joined string would not round-trip.
    location_segments: Vec<Vec<u8>>,
    next_update: Option<Instant>,
    /// An Update is wanted now (objects changed or the trigger was executed).
    update_now: bool,
    /// The next Update carries the link payload.
    send_links: bool,
    /// The next Update carries `lt=`.
    send_lifetime: bool,
    failed_attempts: u32,
    failed_sequences: u32,
    /// The LwM2M version of this registration: the configured one until
    /// the server refuses it (4.00 / 4.12), then the next lower one.
    version: Version,
    lifetime: u32,
    binding: String,
    /// Registration Priority Order (`/1/x/13`); `None` registers after the
    /// servers that have one.
    priority: Option<u32>,
    /// Initial Registration Delay Timer (`/1/x/14`).
    initial_delay: Duration,
    /// Registration Failure Block (`/1/x/15`).
    failure_blocks: bool,
    /// This server no longer holds back the next ones in the registration
    /// order (it registered, or failed without blocking).
    released: bool,
    /// Queue mode: reachable until then.
    awake_until: Instant,
    /// Queue mode: `Sleeping` was reported and nothing was sent since.
    asleep: bool,
}

impl<P> Slot<P> {
    fn new(ssid: u16, bootstrap: bool, peer: P, config: &ClientConfig) -> Slot<P> {
        Slot {
            ssid,
            bootstrap,
            peer,
            reg: Reg::Idle,
            location: None,
            location_segments: Vec::new(),
            next_update: None,
            update_now: false,
            send_links: false,
            send_lifetime: false,
            failed_attempts: 0,
            failed_sequences: 0,
            version: config.lwm2m_version,
            lifetime: config.lifetime,
            binding: config.binding.clone(),
            priority: None,
            initial_delay: Duration::ZERO,
            failure_blocks: false,
            released: false,
            awake_until: Instant::ZERO,
            asleep: true,
        }
    }
}

/// A [`ClientEvent`] with the server it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    /// Short Server ID of the LwM2M server account the event concerns;
    /// `None` for the Bootstrap-Server and for events about the whole
    /// client (the final [`ClientEvent::Deregistered`], object requests).
    pub ssid: Option<u16>,
    /// What happened.
    pub event: ClientEvent,
}

/// What a DM request turned into.
enum Outcome {
    Respond(Response),
    Observe {
        response: Response,
        path: Path,
        composite: Vec<Path>,
        format: ContentFormat,
    },
}

impl From<Response> for Outcome {
    fn from(r: Response) -> Outcome {
        Outcome::Respond(r)
    }
}

/// The LwM2M version to fall back on when the server refuses `v`:
/// 1.2 → 1.1 → 1.0.
fn lower_version(v: Version) -> Version {
    if v > Version::new(1, 1) {
        Version::new(1, 1)
    } else {
        Version::new(1, 0)
    }
}

fn error(code: Code) -> Response {
    Response::new(code)
}

impl From<DmError> for Response {
    fn from(e: DmError) -> Response {
        Response::new(e.code())
    }
}

fn format_code(e: &FormatError) -> Code {
    let (c, d) = e.coap_code();
    Code::new(c, d)
}

/// The LwM2M path a request addresses (4.00 if it is not one).
fn request_path(request: &Request) -> Result<Path, Response> {
    let mut segments = Vec::new();
    for seg in request.options.get_all(number::URI_PATH) {
        match core::str::from_utf8(seg) {
            Ok(s) => segments.push(s),
            Err(_) => return Err(error(Code::BAD_REQUEST)),
        }
    }
    // A single empty segment is how some servers address the root.
    if segments == [""] {
        segments.clear();
    }
    Path::from_segments(segments.iter().copied()).map_err(|_| error(Code::BAD_REQUEST))
}

/// The objects' models, for the content-format decoders.
struct Models<'a>(&'a BTreeMap<u16, Box<dyn Object>>);

impl ModelLookup for Models<'_> {
    fn object(&self, id: u16) -> Option<&ObjectModel> {
        self.0.get(&id).map(|o| o.model())
    }
}

/// Turns a server URI (from the Security object) into a peer address.
type Resolver<P> = Box<dyn Fn(&str) -> Option<P>>;

/// The sans-IO LwM2M client; see the [module documentation](self).
pub struct Client<P, R> {
    ep: Endpoint<P, R>,
    config: ClientConfig,
    /// The address given to [`Client::new`] (after a Bootstrap-Finish, the
    /// configured server's): used for the first LwM2M server account when
    /// the resolver does not map its URI, for the only server when there
    /// is no account, and for the Bootstrap-Server when the client starts
    /// by bootstrapping.
    server: P,
    objects: BTreeMap<u16, Box<dyn Object>>,
    /// Write-Attributes by (Short Server ID, path): attributes are per
    /// server (TS Core 1.1 §5.1.1).
    attributes: BTreeMap<(u16, Path), Attributes>,
    observations: BTreeMap<ObservationId, Observation>,
    /// One registration per server, in registration order.
    slots: Vec<Slot<P>>,
    /// [`Client::deregister`] was called with no registration to end.
    stopped: bool,
    /// Next re-read of observed values (with `poll_observed`).
    next_poll: Option<Instant>,
    /// Send requests waiting for their answer, with the server's SSID.
    sends: Vec<(RequestId, u16)>,
    /// The latest time any entry point was called with: `poll_transmit`
    /// has no `now`, and a transmission is what opens the awake window.
    last_now: Instant,
    /// Queue mode: when the last transmission to anyone keeps the client
    /// reachable for peers that are not servers (firmware downloads).
    awake_until: Instant,
    /// Turns a server URI (Security object) into a peer.
    resolver: Option<Resolver<P>>,
    events: VecDeque<ServerEvent>,
    /// Requests sent for objects ([`Object::poll_request`]): object id and tag.
    object_requests: BTreeMap<RequestId, (u16, u32, P)>,
    /// Servers that executed Disable: de-registered once the 2.04 is out.
    pending_disable: Vec<u16>,
    /// Bootstrap-Request Trigger executed: bootstrap once the 2.04 is out.
    pending_bootstrap: bool,
}

/// Who a device-management request comes from.
#[derive(Debug, Clone, Copy)]
struct Requester {
    ssid: u16,
    version: Version,
    /// Access control applies (several LwM2M servers and an Access
    /// Control object).
    acl: bool,
}

impl Requester {
    /// The server whose rights filter what it sees, when access control applies.
    fn viewer(self) -> Option<u16> {
        self.acl.then_some(self.ssid)
    }
}

impl<P: Clone + Ord + Debug, R: RandomSource> Client<P, R> {
    /// A client for the LwM2M server at `server` (see the
    /// [module documentation](self#several-servers) for how it combines with
    /// the Security object's accounts), with no objects yet.
    pub fn new(config: ClientConfig, server: P, rng: R) -> Self {
        Client {
            ep: Endpoint::new(config.coap.clone(), rng),
            config,
            server,
            objects: BTreeMap::new(),
            attributes: BTreeMap::new(),
            observations: BTreeMap::new(),
            slots: Vec::new(),
            stopped: false,
            next_poll: None,
            sends: Vec::new(),
            last_now: Instant::ZERO,
            awake_until: Instant::ZERO,
            resolver: None,
            events: VecDeque::new(),
            object_requests: BTreeMap::new(),
            pending_disable: Vec::new(),
            pending_bootstrap: false,
        }
    }

    /// Adds an object (replacing and returning one with the same id). Call
    /// [`Client::objects_changed`] if the client is already registered.
    pub fn add_object(&mut self, object: Box<dyn Object>) -> Option<Box<dyn Object>> {
        self.objects.insert(object.model().id, object)
    }

    /// The object with id `id`.
    pub fn object(&self, id: u16) -> Option<&dyn Object> {
        self.objects.get(&id).map(|o| &**o)
    }

    /// The object with id `id`, mutably (to change values; then call
    /// [`Client::changed`]).
    pub fn object_mut(&mut self, id: u16) -> Option<&mut (dyn Object + 'static)> {
        self.objects.get_mut(&id).map(|o| &mut **o)
    }

    /// The configuration in use (lifetime follows writes to the first
    /// server's `/1/x/1`).
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The CoAP endpoint underneath.
    pub fn endpoint(&self) -> &Endpoint<P, R> {
        &self.ep
    }

    fn slot(&self, ssid: u16) -> Option<&Slot<P>> {
        self.slots.iter().find(|s| !s.bootstrap && s.ssid == ssid)
    }

    /// The registration state with the first server in registration order
    /// (the only one in a single-server setup; the Bootstrap-Server while
    /// bootstrapping). [`Client::server_state`] tells about the others.
    pub fn state(&self) -> RegistrationState {
        match self.slots.first() {
            Some(s) => s.reg.public(),
            None if self.stopped => RegistrationState::Deregistered,
            None => RegistrationState::Idle,
        }
    }

    /// The registration state with the LwM2M server `ssid`.
    pub fn server_state(&self, ssid: u16) -> Option<RegistrationState> {
        self.slot(ssid).map(|s| s.reg.public())
    }

    /// The Short Server IDs of the LwM2M servers the client registers
    /// with, in registration order (empty before [`Client::start`] and
    /// while bootstrapping).
    pub fn servers(&self) -> Vec<u16> {
        self.slots
            .iter()
            .filter(|s| !s.bootstrap)
            .map(|s| s.ssid)
            .collect()
    }

    /// The LwM2M version of the session with the first server:
    /// [`ClientConfig::lwm2m_version`] unless the server refused it and the
    /// client fell back to a lower one.
    pub fn lwm2m_version(&self) -> Version {
        self.slots
            .first()
            .map_or(self.config.lwm2m_version, |s| s.version)
    }

    /// The registration location (`/rd/...`) with the first server while
    /// registered.
    pub fn location(&self) -> Option<&str> {
        self.slots.first().and_then(|s| s.location.as_deref())
    }

    /// The registration location with the LwM2M server `ssid`.
    pub fn server_location(&self, ssid: u16) -> Option<&str> {
        self.slot(ssid).and_then(|s| s.location.as_deref())
    }

    /// Number of observations being served (all servers).
    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }

    /// Starts (again, from fresh retry sequences): Register to every
    /// LwM2M server account in registration order or, when the Security
    /// object holds no LwM2M server account (a non-bootstrap instance
    /// whose Short Server ID matches a Server object instance) but a
    /// Bootstrap-Server account, Bootstrap-Request to the address given to
    /// [`Client::new`], which is then the Bootstrap-Server's. After
    /// Bootstrap-Finish the client registers with the configured servers,
    /// whose URIs [`Client::set_resolver`] maps to addresses.
    pub fn start(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.cancel_all(now);
        self.stopped = false;
        let bootstrap = self.dm_accounts().is_empty() && self.bootstrap_account().is_some();
        self.slots = if bootstrap {
            alloc::vec![Slot::new(0, true, self.server.clone(), &self.config)]
        } else {
            self.build_slots(true)
        };
        self.advance_chain(now);
    }

    /// How server URIs (Security object, firmware package URIs) become peer
    /// addresses (the driver knows: DNS, `coap://` parsing).
    pub fn set_resolver(&mut self, resolver: impl Fn(&str) -> Option<P> + 'static) {
        self.resolver = Some(Box::new(resolver));
    }

    /// One registration per LwM2M server account, sorted in registration
    /// order. With `fallback`, the first account whose URI does not resolve
    /// uses the address given to [`Client::new`], and with no account at
    /// all that address is the only server.
    fn build_slots(&self, fallback: bool) -> Vec<Slot<P>> {
        let accounts = self.dm_accounts();
        let mut slots = Vec::new();
        if accounts.is_empty() {
            if fallback {
                let j = self
                    .objects
                    .get(&SERVER)
                    .and_then(|s| s.instances().into_iter().min());
                let ssid = j
                    .and_then(|j| self.int_value(SERVER, j, 0))
                    .and_then(|v| u16::try_from(v).ok())
                    .unwrap_or(1);
                slots.push(self.slot_for(ssid, j, self.server.clone()));
            }
            return slots;
        }
        for (n, (ssid, uri, j)) in accounts.into_iter().enumerate() {
            let peer = match self.resolver.as_ref().and_then(|r| r(&uri)) {
                Some(p) => p,
                None if n == 0 && fallback => self.server.clone(),
                // An account nobody can reach is left out.
                None => continue,
            };
            slots.push(self.slot_for(ssid, Some(j), peer));
        }
        slots.sort_by_key(|s| (s.priority.map_or(u64::MAX, u64::from), s.ssid));
        slots
    }

    /// A registration with the parameters of Server object instance `j`.
    fn slot_for(&self, ssid: u16, j: Option<u16>, peer: P) -> Slot<P> {
        let mut s = Slot::new(ssid, false, peer, &self.config);
        let Some(j) = j else {
            return s;
        };
        if let Some(lt) = self
            .server_resource_u32(j, SERVER_LIFETIME)
            .filter(|&v| v > 0)
        {
            s.lifetime = lt;
        }
        if let Some(Value::String(b)) = self.value(SERVER, j, SERVER_BINDING) {
            if !b.is_empty() {
                s.binding = b;
            }
        }
        s.priority = self.server_resource_u32(j, SERVER_PRIORITY);
        s.initial_delay = Duration::from_secs(u64::from(
            self.server_resource_u32(j, SERVER_INITIAL_DELAY)
                .unwrap_or(0),
        ));
        s.failure_blocks = matches!(
            self.value(SERVER, j, SERVER_FAILURE_BLOCK),
            Some(Value::Boolean(true))
        );
        s
    }

    /// Starts the registrations whose turn came: walking the registration
    /// order, every server not started yet starts (after its Initial
    /// Registration Delay), and a server with a priority that has not
    /// completed holds back the ones after it.
    fn advance_chain(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.slots.len() {
            if self.slots[k].reg == Reg::Idle {
                let delay = self.slots[k].initial_delay;
                if delay > Duration::ZERO {
                    self.slots[k].reg = Reg::Delayed(now + delay);
                } else {
                    self.begin(now, k);
                }
            }
            // `begin` may have replaced the registrations (bootstrap).
            match self.slots.get(k) {
                Some(s) if s.priority.is_some() && !s.released => break,
                Some(_) => k += 1,
                None => break,
            }
        }
    }

    fn begin(&mut self, now: Instant, k: usize) {
        if self.slots[k].bootstrap {
            self.send_bootstrap_request(now, k);
        } else {
            self.send_register(now, k);
        }
    }

    fn event(&mut self, ssid: Option<u16>, event: ClientEvent) {
        self.events.push_back(ServerEvent { ssid, event });
    }

    /// Sends De-register to every server the client is registered with;
    /// [`ClientEvent::Deregistered`] follows once all answered or gave up
    /// (at once if there was no registration). Returns true if a request
    /// went out.
    pub fn deregister(&mut self, now: Instant) -> bool {
        self.last_now = self.last_now.max(now);
        self.drop_observations(None);
        self.stopped = true;
        let mut sent = false;
        for k in 0..self.slots.len() {
            if let Some(id) = self.slots[k].reg.in_flight() {
                self.ep.cancel_request(now, id);
            }
            let s = &mut self.slots[k];
            s.next_update = None;
            s.reg = Reg::Deregistered;
            if s.location.take().is_some() {
                let req = Self::location_request(s, Code::DELETE);
                if let Ok(id) = self.ep.send_request(now, s.peer.clone(), req) {
                    s.reg = Reg::Deregistering(id);
                    sent = true;
                }
            }
        }
        if !sent {
            self.finish_deregister();
        }
        sent
    }

    /// The objects or their instances changed (added, removed): the next
    /// Update to every server, sent now if registered, carries the new link
    /// payload.
    pub fn objects_changed(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        for s in &mut self.slots {
            s.send_links = true;
            s.update_now = true;
        }
        self.drive_registration(now);
    }

    /// Asks for an Update to every server now (what the Registration
    /// Update Trigger does for its own server).
    pub fn trigger_update(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        for s in &mut self.slots {
            s.update_now = true;
        }
        self.drive_registration(now);
    }

    /// The value at `path` (or below it) changed: observations of `path`,
    /// of its ancestors and of its descendants notify, respecting `pmin`.
    pub fn changed(&mut self, now: Instant, path: Path) {
        self.last_now = self.last_now.max(now);
        self.tick_objects(now);
        self.mark_changed(&path);
        self.evaluate_observations(now);
        self.pump_objects(now);
    }

    /// Send (TS Core 1.1 §6.4.6) to the first registered server in
    /// registration order; see [`Client::send_to`].
    pub fn send(&mut self, now: Instant, paths: &[Path]) -> Result<RequestId, SendError> {
        let first = self
            .slots
            .iter()
            .find(|s| !s.bootstrap && s.location.is_some())
            .map(|s| s.ssid);
        match first {
            Some(ssid) => self.send_to(now, ssid, paths),
            None => Err(SendError::NotRegistered),
        }
    }

    /// Send (TS Core 1.1 §6.4.6): reports the current values of `paths` to
    /// the LwM2M server `ssid` with `POST /dp`, SenML JSON, without being
    /// asked. [`ClientEvent::SendCompleted`] follows with the returned id.
    pub fn send_to(
        &mut self,
        now: Instant,
        ssid: u16,
        paths: &[Path],
    ) -> Result<RequestId, SendError> {
        self.last_now = self.last_now.max(now);
        let Some((peer, version)) = self
            .slot(ssid)
            .filter(|s| s.location.is_some())
            .map(|s| (s.peer.clone(), s.version))
        else {
            return Err(SendError::NotRegistered);
        };
        if version < Version::new(1, 1) {
            return Err(SendError::Unsupported);
        }
        let muted = self.server_instance(ssid).is_some_and(|j| {
            matches!(
                self.value(SERVER, j, SERVER_MUTE_SEND),
                Some(Value::Boolean(true))
            )
        });
        if muted {
            return Err(SendError::Muted);
        }
        // Access control: values the server may not read are left out,
        // as Read-Composite does; nothing readable at all is refused.
        let viewer = self.acl_enforced().then_some(ssid);
        let mut values = Vec::new();
        let mut readable = paths.is_empty();
        for path in paths {
            if matches!(path.object_id(), Some(SECURITY | OSCORE)) {
                return Err(SendError::Read(DmError::Unauthorized));
            }
            if !self.may_read_any(viewer, path) {
                continue;
            }
            let node = self.read_node_as(viewer, path).map_err(SendError::Read)?;
            readable = true;
            flatten(*path, &node, &mut values);
        }
        if !readable {
            return Err(SendError::Read(DmError::Unauthorized));
        }
        let mut out = Vec::new();
        format::encode_values(ContentFormat::SENML_JSON, &values, &mut out)
            .map_err(|_| SendError::Read(DmError::Internal))?;
        let req = Request::new(Code::POST)
            .with_path("/dp")
            .with_payload(ContentFormat::SENML_JSON.0, out);
        let id = self
            .ep
            .send_request(now, peer, req)
            .map_err(|_| SendError::Busy)?;
        self.sends.push((id, ssid));
        Ok(id)
    }

    /// The Register payload for the current objects, in the terms of the
    /// first server's LwM2M version.
    pub fn registration_payload(&self) -> Vec<u8> {
        self.payload_for(self.lwm2m_version())
    }

    fn payload_for(&self, version: Version) -> Vec<u8> {
        let mut links = Vec::new();
        let mut root = Link::new("/").with(LinkParam::quoted("rt", "oma.lwm2m"));
        if version >= Version::new(1, 1) {
            let cts: Vec<String> = ANNOUNCED_FORMATS.iter().map(|c| c.to_string()).collect();
            root = root.with(match cts.as_slice() {
                [one] => LinkParam::token("ct", one),
                many => LinkParam::quoted("ct", &many.join(" ")),
            });
        }
        links.push(root);
        for (&id, object) in &self.objects {
            if id == SECURITY || id == OSCORE {
                continue;
            }
            let instances = object.instances();
            let version = object.model().version.as_str();
            let announce_version = !version.is_empty() && version != "1.0";
            if announce_version || instances.is_empty() {
                let mut l = Link::new(&format!("/{id}"));
                if announce_version {
                    l = l.with(LinkParam::token("ver", version));
                }
                links.push(l);
            }
            let mut instances = instances;
            instances.sort_unstable();
            for i in instances {
                links.push(Link::new(&format!("/{id}/{i}")));
            }
        }
        let mut out = Vec::new();
        // Every target and parameter above is well formed, so encoding
        // cannot fail; an empty payload would be the visible symptom if it did.
        let _ = encode_links(&links, &mut out);
        out
    }

    // ------------------------------------------------------------------
    // I/O
    // ------------------------------------------------------------------

    /// A datagram arrived from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: P, bytes: &[u8]) {
        self.last_now = self.last_now.max(now);
        if self
            .slots
            .iter()
            .any(|s| s.peer == peer && matches!(s.reg, Reg::Disabled(_)))
        {
            // A disabled server is ignored (TS Core, Server resource 4).
            return;
        }
        if self.config.queue_mode.is_some() {
            let until = self
                .slots
                .iter()
                .find(|s| s.peer == peer)
                .map_or(self.awake_until, |s| s.awake_until);
            if now >= until {
                // Asleep: the radio (or this server's socket) would be off.
                return;
            }
        }
        self.tick_objects(now);
        self.ep.handle_datagram(now, peer, bytes);
        self.process(now);
        self.advance_chain(now);
        self.pump_objects(now);
    }

    /// The driver could not reach `peer` (its DTLS handshake failed, for
    /// one): every request in flight to it fails at once, as if its CoAP
    /// retransmissions had run out, so the registration retry schedule
    /// (or bootstrap fallback, or the object's error handling) runs now
    /// instead of after `MAX_TRANSMIT_WAIT` (93 s by default).
    pub fn peer_unreachable(&mut self, now: Instant, peer: &P) {
        self.last_now = self.last_now.max(now);
        let mut ids: Vec<RequestId> = self
            .slots
            .iter()
            .filter(|s| s.peer == *peer)
            .filter_map(|s| s.reg.in_flight())
            .collect();
        ids.extend(
            self.sends
                .iter()
                .filter(|(_, ssid)| {
                    self.slots
                        .iter()
                        .any(|s| !s.bootstrap && s.ssid == *ssid && s.peer == *peer)
                })
                .map(|(id, _)| *id),
        );
        ids.extend(
            self.object_requests
                .iter()
                .filter(|(_, (_, _, p))| p == peer)
                .map(|(id, _)| *id),
        );
        for id in ids {
            self.ep.cancel_request(now, id);
            self.handle_response(now, id, Err(RequestError::Timeout));
        }
        self.advance_chain(now);
        self.pump_objects(now);
    }

    /// The peer of the registration with server `ssid` (`None`: the
    /// Bootstrap-Server while bootstrapping).
    pub fn server_peer(&self, ssid: Option<u16>) -> Option<&P> {
        self.slots
            .iter()
            .find(|s| match ssid {
                Some(ssid) => !s.bootstrap && s.ssid == ssid,
                None => s.bootstrap,
            })
            .map(|s| &s.peer)
    }

    /// How to secure the traffic with `peer`: the credentials of the
    /// Security instance of the registration (or bootstrap) with that
    /// peer, else of the first Security instance whose URI the resolver
    /// maps to it (a firmware download from a server's host and port).
    /// `None` when no Security instance belongs to `peer` (plain CoAP).
    /// See [`crate::security`] for how the resources map to parameters.
    pub fn peer_security(&self, peer: &P) -> Option<SecurityParams> {
        let instance = self.peer_security_instance(peer)?;
        Some(self.security_params(instance))
    }

    /// Whether the Security instance of `peer` (found as for
    /// [`Client::peer_security`]) has a `coap+tcp://` URI: the driver then
    /// carries the traffic with `peer` over a TCP connection.
    pub fn peer_is_tcp(&self, peer: &P) -> bool {
        self.peer_security_instance(peer)
            .and_then(|i| match self.value(SECURITY, i, 0) {
                Some(Value::String(uri)) => Some(crate::security::is_coap_tcp(&uri)),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// The Security instance `peer` belongs to (see [`Client::peer_security`]).
    fn peer_security_instance(&self, peer: &P) -> Option<u16> {
        self.slots
            .iter()
            .find(|s| s.peer == *peer)
            .and_then(|s| {
                if s.bootstrap {
                    self.bootstrap_account()
                } else {
                    self.security_instance(s.ssid)
                }
            })
            .or_else(|| {
                let resolver = self.resolver.as_ref()?;
                let mut all = self.objects.get(&SECURITY)?.instances();
                all.sort_unstable();
                all.into_iter().find(|&i| match self.value(SECURITY, i, 0) {
                    Some(Value::String(uri)) => resolver(&uri).as_ref() == Some(peer),
                    _ => false,
                })
            })
    }

    /// The Security instance (not a Bootstrap-Server account) of `ssid`.
    fn security_instance(&self, ssid: u16) -> Option<u16> {
        let mut all = self.objects.get(&SECURITY)?.instances();
        all.sort_unstable();
        all.into_iter().find(|&i| {
            !self.is_bootstrap_account(i)
                && self.int_value(SECURITY, i, 10) == Some(i64::from(ssid))
        })
    }

    /// The [`SecurityParams`] of Security instance `i`.
    fn security_params(&self, i: u16) -> SecurityParams {
        let uri = match self.value(SECURITY, i, 0) {
            Some(Value::String(u)) => u,
            _ => String::new(),
        };
        let bytes = |r: u16| match self.value(SECURITY, i, r) {
            Some(Value::Opaque(b)) => b,
            Some(Value::String(s)) => s.into_bytes(),
            _ => Vec::new(),
        };
        let (identity, server_key, secret) = (bytes(3), bytes(4), bytes(5));
        SecurityParams::from_resources(SecurityResources {
            uri: &uri,
            mode: self.int_value(SECURITY, i, 2),
            public_key_or_identity: &identity,
            server_public_key: &server_key,
            secret_key: &secret,
            certificate_usage: self.int_value(SECURITY, i, 15),
        })
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        let t = self.ep.poll_transmit()?;
        if let Some(awake) = self.config.queue_mode {
            let until = self.last_now + awake;
            self.awake_until = until;
            if let Some(s) = self.slots.iter_mut().find(|s| s.peer == t.peer) {
                s.awake_until = until;
                s.asleep = false;
            }
        }
        Some(t)
    }

    /// False while a queue-mode client sleeps (datagrams are dropped).
    pub fn is_listening(&self, now: Instant) -> bool {
        self.config.queue_mode.is_none() || now < self.awake_until
    }

    /// The next event for the application; [`Client::poll_server_event`]
    /// also tells which server it concerns.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front().map(|e| e.event)
    }

    /// The next event with the Short Server ID of the server it concerns.
    pub fn poll_server_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.ep.poll_timeout();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for s in &self.slots {
            match s.reg {
                Reg::WaitingRetry(at)
                | Reg::BootstrapWaiting(at)
                | Reg::Delayed(at)
                | Reg::Disabled(at) => consider(Some(at)),
                Reg::Registered => consider(s.next_update),
                _ => {}
            }
            if self.config.queue_mode.is_some() && !s.asleep {
                consider(Some(s.awake_until));
            }
        }
        for o in self.observations.values() {
            consider(self.observation_due(o));
        }
        if !self.observations.is_empty() {
            consider(self.next_poll);
        }
        for o in self.objects.values() {
            consider(o.poll_timeout());
        }
        t
    }

    /// Time passed: retransmissions, retries, Updates, notifications.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.tick_objects(now);
        self.ep.handle_timeout(now);
        self.process(now);
        self.drive_registration(now);
        self.poll_observed(now);
        self.evaluate_observations(now);
        if self.config.queue_mode.is_some() {
            let mut sleeping = Vec::new();
            for s in &mut self.slots {
                if !s.asleep && now >= s.awake_until {
                    s.asleep = true;
                    sleeping.push((!s.bootstrap).then_some(s.ssid));
                }
            }
            for ssid in sleeping {
                self.event(ssid, ClientEvent::Sleeping);
            }
        }
        self.pump_objects(now);
    }

    /// Gives every object the time.
    fn tick_objects(&mut self, now: Instant) {
        for o in self.objects.values_mut() {
            o.tick(now);
        }
    }

    /// Sends the objects' requests and notifies what changed by itself
    /// ([`Object::poll_request`], [`Object::take_changed`]). A request that
    /// fails at once is answered at once, which may queue more: bounded
    /// rounds so a misbehaving object cannot spin the engine.
    fn pump_objects(&mut self, now: Instant) {
        for _ in 0..8 {
            let mut requests = Vec::new();
            let mut changed = Vec::new();
            for (&id, o) in &mut self.objects {
                while let Some(r) = o.poll_request() {
                    requests.push((id, r));
                }
                changed.extend(o.take_changed());
            }
            if requests.is_empty() && changed.is_empty() {
                return;
            }
            for path in &changed {
                self.mark_changed(path);
            }
            if !changed.is_empty() {
                self.evaluate_observations(now);
            }
            for (o, r) in requests {
                let peer = self.resolver.as_ref().and_then(|res| res(&r.uri));
                let sent = match peer {
                    None => Err(ObjectRequestError::Unresolvable),
                    // A coaps:// request goes only where a Security instance
                    // gives DTLS credentials (never in clear).
                    Some(peer)
                        if crate::security::is_coaps(&r.uri)
                            && !self.peer_security(&peer).is_some_and(|p| p.is_secure()) =>
                    {
                        Err(ObjectRequestError::NoCredentials)
                    }
                    Some(peer) => self
                        .ep
                        .send_request(now, peer.clone(), r.request)
                        .map(|id| (id, peer))
                        .map_err(|_| ObjectRequestError::Refused),
                };
                match sent {
                    Ok((id, peer)) => {
                        self.object_requests.insert(id, (o, r.tag, peer));
                    }
                    Err(e) => {
                        if let Some(obj) = self.objects.get_mut(&o) {
                            obj.handle_response(now, r.tag, Err(e));
                        }
                    }
                }
            }
        }
    }

    /// With `poll_observed`: marks every observation changed once per
    /// period; evaluation then notifies only those whose value differs.
    fn poll_observed(&mut self, now: Instant) {
        let Some(period) = self.config.poll_observed else {
            return;
        };
        if self.observations.is_empty() {
            self.next_poll = None;
            return;
        }
        match self.next_poll {
            Some(at) if now >= at => {
                for o in self.observations.values_mut() {
                    o.dirty = true;
                }
                self.next_poll = Some(now + period.max(Duration::from_millis(1)));
            }
            Some(_) => {}
            None => self.next_poll = Some(now + period.max(Duration::from_millis(1))),
        }
    }

    fn process(&mut self, now: Instant) {
        while let Some(event) = self.ep.poll_event() {
            match event {
                Event::Request { id, peer, request } => self.handle_request(now, id, peer, request),
                Event::Response { id, response } => self.handle_response(now, id, Ok(response)),
                Event::RequestFailed { id, error } => self.handle_response(now, id, Err(error)),
                Event::ObservationCancelled { id, .. } => {
                    self.observations.remove(&id);
                }
                // This client never observes anything itself.
                Event::Notification { .. } => {}
            }
        }
    }

    // ------------------------------------------------------------------
    // Registration
    // ------------------------------------------------------------------

    fn cancel_all(&mut self, now: Instant) {
        for s in &self.slots {
            if let Some(id) = s.reg.in_flight() {
                self.ep.cancel_request(now, id);
            }
        }
    }

    /// Ends the observations of server `ssid` (of every server with `None`).
    fn drop_observations(&mut self, ssid: Option<u16>) {
        let gone: Vec<ObservationId> = self
            .observations
            .iter()
            .filter(|(_, o)| ssid.is_none_or(|s| s == o.ssid))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.observations.remove(&id);
            self.ep.remove_observation(id);
        }
    }

    fn send_register(&mut self, now: Instant, k: usize) {
        if let Some(id) = self.slots[k].reg.in_flight() {
            self.ep.cancel_request(now, id);
        }
        let payload = self.payload_for(self.slots[k].version);
        let c = &self.config;
        let s = &mut self.slots[k];
        s.location = None;
        s.next_update = None;
        let queue = c.queue_mode.is_some();
        let legacy = s.version < Version::new(1, 1);
        // LwM2M 1.0 spells queue mode as a `Q` in the binding, 1.1 as a
        // separate `Q` parameter; 1.0 bindings are made of U, S and Q only
        // (1.1's T and N mean nothing to a 1.0 server).
        let binding: String = if legacy {
            let mut b: String = s
                .binding
                .chars()
                .filter(|ch| *ch == 'U' || *ch == 'S')
                .collect();
            if b.is_empty() {
                b.push('U');
            }
            if queue || s.binding.contains('Q') {
                b.push('Q');
            }
            b
        } else {
            s.binding.clone()
        };
        let mut req = Request::new(Code::POST)
            .with_path("/rd")
            .with_query(&format!("ep={}", c.endpoint))
            .with_query(&format!("lt={}", s.lifetime))
            .with_query(&format!("lwm2m={}", s.version))
            .with_query(&format!("b={binding}"));
        if queue && !legacy {
            req = req.with_query("Q");
        }
        let req = req.with_payload(ContentFormat::LINK_FORMAT.0, payload);
        match self.ep.send_request(now, s.peer.clone(), req) {
            Ok(id) => s.reg = Reg::Registering(id),
            Err(_) => self.register_failed(now, k, None),
        }
    }

    /// A Register (or Bootstrap-Request) attempt of registration `k` failed.
    fn register_failed(&mut self, now: Instant, k: usize, code: Option<Code>) {
        let policy = self.retry_policy(k);
        let s = &mut self.slots[k];
        s.failed_attempts += 1;
        let delay = policy.next_delay(s.failed_attempts, s.failed_sequences);
        if s.failed_attempts >= policy.retry_count.max(1) {
            s.failed_attempts = 0;
            s.failed_sequences += 1;
        }
        if !s.failure_blocks {
            s.released = true;
        }
        let (ssid, bootstrap) = (s.ssid, s.bootstrap);
        let retry_at = delay.map(|d| now + d);
        // Bootstrap on registration failure once no server is left: every
        // other registration failed for good too.
        let last_hope = self
            .slots
            .iter()
            .enumerate()
            .all(|(n, o)| n == k || o.reg == Reg::Failed);
        if retry_at.is_none() && !bootstrap && last_hope {
            if let Some(peer) = self.bootstrap_fallback(ssid) {
                self.event(
                    Some(ssid),
                    ClientEvent::BootstrapOnRegistrationFailure { code },
                );
                self.start_bootstrap(now, peer);
                return;
            }
        }
        self.slots[k].reg = match retry_at {
            Some(at) => Reg::WaitingRetry(at),
            None => Reg::Failed,
        };
        if bootstrap {
            self.event(None, ClientEvent::BootstrapFailed { code, retry_at });
        } else {
            self.event(
                Some(ssid),
                ClientEvent::RegistrationFailed { code, retry_at },
            );
        }
    }

    /// The retry schedule of registration `k`: the configured one, with
    /// the Server object's resources 17–20 of its account where they are
    /// set (for the Bootstrap-Server, of the first LwM2M server account).
    fn retry_policy(&self, k: usize) -> RetryPolicy {
        let mut p = self.config.retry.clone();
        let s = &self.slots[k];
        let j = if s.bootstrap {
            self.dm_accounts().first().map(|a| a.2)
        } else {
            self.server_instance(s.ssid)
        };
        let Some(j) = j else {
            return p;
        };
        if let Some(v) = self.server_resource_u32(j, SERVER_RETRY_COUNT) {
            p.retry_count = v;
        }
        if let Some(v) = self.server_resource_u32(j, SERVER_RETRY_TIMER) {
            p.retry_timer = Duration::from_secs(u64::from(v));
        }
        if let Some(v) = self.server_resource_u32(j, SERVER_SEQUENCE_DELAY) {
            p.sequence_delay = Duration::from_secs(u64::from(v));
        }
        if let Some(v) = self.server_resource_u32(j, SERVER_SEQUENCE_RETRY_COUNT) {
            p.sequence_retry_count = v;
        }
        p
    }

    /// Where to bootstrap when registration with `ssid` gave up: the
    /// Bootstrap-Server account's address, unless that server's resource
    /// 16 is false (absent means true, the TS default) or there is no such
    /// account.
    fn bootstrap_fallback(&self, ssid: u16) -> Option<P> {
        if let Some(j) = self.server_instance(ssid) {
            if let Some(Value::Boolean(false)) = self.value(SERVER, j, SERVER_BOOTSTRAP_ON_FAILURE)
            {
                return None;
            }
        }
        self.bootstrap_peer()
    }

    /// The Bootstrap-Server account's address, if there is an account and
    /// [`Client::set_resolver`] resolves its URI.
    fn bootstrap_peer(&self) -> Option<P> {
        let bs = self.bootstrap_account()?;
        let Some(Value::String(uri)) = self.value(SECURITY, bs, 0) else {
            return None;
        };
        self.resolver.as_ref().and_then(|r| r(&uri))
    }

    /// Replaces every registration by a Bootstrap-Request to `peer`.
    fn start_bootstrap(&mut self, now: Instant, peer: P) {
        self.cancel_all(now);
        self.drop_observations(None);
        self.slots = alloc::vec![Slot::new(0, true, peer, &self.config)];
        self.send_bootstrap_request(now, 0);
    }

    /// Whether `viewer` may read something at `path`: its instance, or
    /// for an object path one of its instances (or the object is empty).
    fn may_read_any(&self, viewer: Option<u16>, path: &Path) -> bool {
        match (path.object_id(), path.instance_id()) {
            (Some(o), Some(i)) => self.may(viewer, o, i, rights::READ),
            (Some(o), None) => self.objects.get(&o).is_none_or(|ob| {
                let all = ob.instances();
                all.is_empty() || all.iter().any(|&i| self.may(viewer, o, i, rights::READ))
            }),
            _ => true,
        }
    }

    /// Carries out Disable and Bootstrap-Request Trigger executed by a
    /// server, once their response is queued.
    fn run_pending(&mut self, now: Instant) {
        for ssid in core::mem::take(&mut self.pending_disable) {
            if let Some(k) = self
                .slots
                .iter()
                .position(|s| !s.bootstrap && s.ssid == ssid)
            {
                self.disable(now, k);
            }
        }
        if core::mem::take(&mut self.pending_bootstrap) {
            if let Some(peer) = self.bootstrap_peer() {
                self.start_bootstrap(now, peer);
            }
        }
    }

    /// Disable (`/1/x/4`): De-register from server `k`, then stay away
    /// for its Disable Timeout (`/1/x/5`), counted from now.
    fn disable(&mut self, now: Instant, k: usize) {
        let ssid = self.slots[k].ssid;
        let timeout = self
            .server_instance(ssid)
            .and_then(|j| self.server_resource_u32(j, SERVER_DISABLE_TIMEOUT))
            .unwrap_or(DEFAULT_DISABLE_TIMEOUT);
        let until = now + Duration::from_secs(u64::from(timeout));
        if !self.notification_storing(ssid) {
            self.drop_observations(Some(ssid));
        }
        if let Some(id) = self.slots[k].reg.in_flight() {
            self.ep.cancel_request(now, id);
        }
        // A Send still waiting for its answer is not retransmitted to a
        // disabled server: it ends unanswered.
        let (gone, kept): (Vec<_>, Vec<_>) = self.sends.drain(..).partition(|x| x.1 == ssid);
        self.sends = kept;
        for (id, _) in gone {
            self.ep.cancel_request(now, id);
            self.event(Some(ssid), ClientEvent::SendCompleted { id, code: None });
        }
        let s = &mut self.slots[k];
        s.next_update = None;
        s.update_now = false;
        s.reg = Reg::Disabled(until);
        if s.location.is_some() {
            let req = Self::location_request(s, Code::DELETE);
            s.location = None;
            if let Ok(id) = self.ep.send_request(now, s.peer.clone(), req) {
                s.reg = Reg::Disabling(id, until);
                return;
            }
        }
        self.event(Some(ssid), ClientEvent::Disabled { until });
    }

    /// Notification Storing When Disabled or Offline (`/1/x/6`) of server
    /// `ssid` (false without a Server instance).
    fn notification_storing(&self, ssid: u16) -> bool {
        self.server_instance(ssid).is_some_and(|j| {
            matches!(
                self.value(SERVER, j, SERVER_NOTIFICATION_STORING),
                Some(Value::Boolean(true))
            )
        })
    }

    /// Whether notifications to server `ssid` can go out: it is
    /// registered (a client without a registration for `ssid`, before
    /// [`Client::start`], notifies as before).
    fn reachable(&self, ssid: u16) -> bool {
        self.slot(ssid).is_none_or(|s| s.location.is_some())
    }

    /// Sends the notifications stored for server `ssid` while it was
    /// away, oldest observation first.
    fn flush_stored(&mut self, now: Instant, ssid: u16) {
        let ids: Vec<ObservationId> = self
            .observations
            .iter()
            .filter(|(_, o)| o.ssid == ssid && o.stored.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(o) = self.observations.get_mut(&id) else {
                continue;
            };
            let (Some(payload), format, path) = (o.stored.take(), o.format, o.path) else {
                continue;
            };
            let confirmable = self.effective_attributes(ssid, &path).con.unwrap_or(false);
            let response = Response::new(Code::CONTENT).with_payload(format.0, payload);
            self.ep.notify(now, id, response, confirmable);
        }
    }

    fn send_update(&mut self, now: Instant, k: usize) {
        let s = &self.slots[k];
        if s.location.is_none() {
            return;
        }
        let mut req = Self::location_request(s, Code::POST);
        if s.send_lifetime {
            req = req.with_query(&format!("lt={}", s.lifetime));
        }
        if s.send_links {
            req = req.with_payload(ContentFormat::LINK_FORMAT.0, self.payload_for(s.version));
        }
        let s = &mut self.slots[k];
        s.update_now = false;
        s.send_links = false;
        s.send_lifetime = false;
        match self.ep.send_request(now, s.peer.clone(), req) {
            Ok(id) => s.reg = Reg::Updating(id),
            Err(_) => {
                let ssid = s.ssid;
                self.event(Some(ssid), ClientEvent::UpdateFailed { code: None });
                self.send_register(now, k);
            }
        }
    }

    /// A request to the registration location (Update, De-register).
    fn location_request(s: &Slot<P>, code: Code) -> Request {
        let mut req = Request::new(code);
        for seg in &s.location_segments {
            req.options.push(number::URI_PATH, seg.clone());
        }
        req
    }

    fn drive_registration(&mut self, now: Instant) {
        let mut k = 0;
        // `register_failed` may replace the registrations by one
        // Bootstrap-Server registration: the bound is re-read each time.
        while k < self.slots.len() {
            let s = &self.slots[k];
            match s.reg {
                Reg::WaitingRetry(at) | Reg::Delayed(at) if now >= at => self.begin(now, k),
                Reg::Disabled(at) if now >= at => {
                    // A fresh registration: new retry sequences.
                    let s = &mut self.slots[k];
                    s.failed_attempts = 0;
                    s.failed_sequences = 0;
                    self.send_register(now, k);
                }
                Reg::BootstrapWaiting(deadline) if now >= deadline => {
                    self.register_failed(now, k, None)
                }
                Reg::Registered if s.update_now || s.next_update.is_some_and(|t| now >= t) => {
                    self.send_update(now, k)
                }
                _ => {}
            }
            k += 1;
        }
        self.advance_chain(now);
    }

    fn schedule_update(&mut self, now: Instant, k: usize) {
        let s = &mut self.slots[k];
        let half = Duration::from_secs(u64::from(s.lifetime / 2).max(1));
        s.next_update = Some(now + half);
    }

    /// Reports [`ClientEvent::Deregistered`] once no De-register is in flight.
    fn finish_deregister(&mut self) {
        if self
            .slots
            .iter()
            .any(|s| matches!(s.reg, Reg::Deregistering(_)))
        {
            return;
        }
        self.event(None, ClientEvent::Deregistered);
    }

    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Response, RequestError>,
    ) {
        if let Some((o, tag, _)) = self.object_requests.remove(&id) {
            if let Some(obj) = self.objects.get_mut(&o) {
                obj.handle_response(now, tag, result.map_err(ObjectRequestError::Failed));
            }
            return;
        }
        if let Some(pos) = self.sends.iter().position(|s| s.0 == id) {
            let (_, ssid) = self.sends.swap_remove(pos);
            let code = result.ok().map(|r| r.code);
            self.event(Some(ssid), ClientEvent::SendCompleted { id, code });
            return;
        }
        let Some(k) = self
            .slots
            .iter()
            .position(|s| s.reg.in_flight() == Some(id))
        else {
            return;
        };
        let ssid = self.slots[k].ssid;
        match self.slots[k].reg {
            Reg::Bootstrapping(_) => match result {
                Ok(resp) if resp.code == Code::CHANGED => {
                    self.slots[k].reg = Reg::BootstrapWaiting(now + self.config.bootstrap_timeout);
                }
                Ok(resp) => self.register_failed(now, k, Some(resp.code)),
                Err(_) => self.register_failed(now, k, None),
            },
            Reg::Registering(_) => match result {
                Ok(resp) if resp.code == Code::CREATED => {
                    let segments: Vec<Vec<u8>> = resp
                        .options
                        .get_all(number::LOCATION_PATH)
                        .map(<[u8]>::to_vec)
                        .collect();
                    let mut location = String::new();
                    for seg in &segments {
                        location.push('/');
                        location.push_str(&String::from_utf8_lossy(seg));
                    }
                    if location.is_empty() {
                        // Without a location there is nothing to Update or
                        // De-register: treat it as a failed attempt.
                        self.register_failed(now, k, Some(resp.code));
                        return;
                    }
                    // A new registration starts without observations: the
                    // server forgets them when the client registers again;
                    // unless Notification Storing (`/1/x/6`) keeps them
                    // and what came due while away goes out now.
                    let storing = self.notification_storing(ssid);
                    if !storing {
                        self.drop_observations(Some(ssid));
                    }
                    let s = &mut self.slots[k];
                    s.location_segments = segments;
                    s.failed_attempts = 0;
                    s.failed_sequences = 0;
                    s.location = Some(location.clone());
                    s.reg = Reg::Registered;
                    s.send_links = false;
                    s.send_lifetime = false;
                    s.update_now = false;
                    s.released = true;
                    self.schedule_update(now, k);
                    self.event(Some(ssid), ClientEvent::Registered { location });
                    if storing {
                        self.flush_stored(now, ssid);
                    }
                }
                Ok(resp)
                    if matches!(resp.code, Code::BAD_REQUEST | Code::PRECONDITION_FAILED)
                        && self.slots[k].version > Version::new(1, 0) =>
                {
                    // The server does not speak this version (TS Core 1.1
                    // §6.2.1 lets it answer 4.00 / 4.12): try the next lower
                    // one at once, without counting a failed attempt, and
                    // keep it for the rest of the session.
                    let s = &mut self.slots[k];
                    s.version = lower_version(s.version);
                    self.event(
                        Some(ssid),
                        ClientEvent::RegistrationFailed {
                            code: Some(resp.code),
                            retry_at: Some(now),
                        },
                    );
                    self.send_register(now, k);
                }
                Ok(resp) => self.register_failed(now, k, Some(resp.code)),
                Err(_) => self.register_failed(now, k, None),
            },
            Reg::Updating(_) => match result {
                Ok(resp) if resp.code == Code::CHANGED => {
                    self.slots[k].reg = Reg::Registered;
                    self.schedule_update(now, k);
                    self.event(Some(ssid), ClientEvent::Updated);
                    // Something asked for another Update while this one was in flight.
                    self.drive_registration(now);
                }
                other => {
                    let code = other.ok().map(|r| r.code);
                    self.event(Some(ssid), ClientEvent::UpdateFailed { code });
                    let s = &mut self.slots[k];
                    s.failed_attempts = 0;
                    s.failed_sequences = 0;
                    self.send_register(now, k);
                }
            },
            Reg::Deregistering(_) => {
                self.slots[k].reg = Reg::Deregistered;
                self.finish_deregister();
            }
            Reg::Disabling(_, until) => {
                self.slots[k].reg = Reg::Disabled(until);
                self.event(Some(ssid), ClientEvent::Disabled { until });
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------
    // Device management dispatch
    // ------------------------------------------------------------------

    fn handle_request(&mut self, now: Instant, id: IncomingId, peer: P, request: Request) {
        let who = match self.slots.iter().find(|s| s.peer == peer) {
            Some(s) if matches!(s.reg, Reg::Bootstrapping(_) | Reg::BootstrapWaiting(_)) => {
                self.bootstrap_request(now, id, &request);
                return;
            }
            Some(s) if !s.bootstrap => Requester {
                ssid: s.ssid,
                version: s.version,
                acl: false,
            },
            // Before `start`, the server given to `new`.
            None if self.slots.is_empty() && peer == self.server => Requester {
                ssid: 1,
                version: self.config.lwm2m_version,
                acl: false,
            },
            _ => {
                self.ep.respond(now, id, error(Code::UNAUTHORIZED));
                return;
            }
        };
        let who = Requester {
            acl: self.acl_enforced(),
            ..who
        };
        match self.dispatch(now, who, &request) {
            Outcome::Respond(response) => {
                self.ep.respond(now, id, response);
                // Disable and Bootstrap-Request Trigger act after their 2.04.
                self.run_pending(now);
            }
            Outcome::Observe {
                response,
                path,
                composite,
                format,
            } => {
                if self.observations.len() >= self.config.max_observations {
                    self.ep.respond(now, id, response);
                    return;
                }
                let payload = response.payload.clone();
                let node = self.read_node_as(who.viewer(), &path).ok();
                let last_value = node.as_ref().and_then(numeric);
                let last_bool = node.as_ref().and_then(boolean);
                if let Some(obs) = self.ep.respond_observe(now, id, response) {
                    self.observations.insert(
                        obs,
                        Observation {
                            ssid: who.ssid,
                            viewer: who.viewer(),
                            path,
                            composite,
                            format,
                            last_sent: now,
                            last_payload: payload,
                            last_value,
                            last_eval: now,
                            last_bool,
                            dirty: false,
                            stored: None,
                        },
                    );
                    self.poll_observed(now);
                }
            }
        }
    }

    fn dispatch(&mut self, now: Instant, who: Requester, request: &Request) -> Outcome {
        let path = match request_path(request) {
            Ok(p) => p,
            Err(r) => return r.into(),
        };
        if matches!(path.object_id(), Some(SECURITY | OSCORE)) {
            return error(Code::UNAUTHORIZED).into();
        }
        let mut queries = Vec::new();
        for q in request.options.get_all(number::URI_QUERY) {
            match core::str::from_utf8(q) {
                Ok(s) => queries.push(s),
                Err(_) => return error(Code::BAD_REQUEST).into(),
            }
        }
        let content_format = request.options.uint(number::CONTENT_FORMAT);
        let accept = request.options.uint(number::ACCEPT);
        let depth = path.depth();
        if let Err(r) = self.check_access(who, request, &path) {
            return r.into();
        }
        match request.code {
            Code::GET if accept == Some(u32::from(ContentFormat::LINK_FORMAT.0)) => {
                self.discover(who, &path).into()
            }
            Code::GET => {
                let observe = request.options.uint(number::OBSERVE) == Some(0);
                match self.read(who, &path, accept) {
                    Ok((format, response)) if observe => Outcome::Observe {
                        response,
                        path,
                        composite: Vec::new(),
                        format,
                    },
                    Ok((_, response)) => response.into(),
                    Err(response) => response.into(),
                }
            }
            Code::PUT if request.payload.is_empty() && content_format.is_none() => {
                if queries.is_empty() {
                    error(Code::BAD_REQUEST).into()
                } else {
                    self.write_attributes(who.ssid, &path, &queries).into()
                }
            }
            Code::PUT => self
                .write(now, &path, content_format, &request.payload, true)
                .into(),
            Code::POST if depth == 1 => self
                .create(now, who, &path, content_format, &request.payload)
                .into(),
            Code::POST if depth == 2 => self
                .write(now, &path, content_format, &request.payload, false)
                .into(),
            Code::POST if depth == 3 => self.execute(now, &path, &request.payload).into(),
            Code::DELETE if depth == 2 => self.delete(now, &path).into(),
            Code::FETCH if depth == 0 => {
                let observe = request.options.uint(number::OBSERVE) == Some(0);
                let read = self.composite_request(content_format, accept, &request.payload);
                let read = read.and_then(|(paths, format)| {
                    let payload = self
                        .composite_payload(who.viewer(), &paths, format)
                        .map_err(error)?;
                    let response = Response::new(Code::CONTENT).with_payload(format.0, payload);
                    Ok((paths, format, response))
                });
                match read {
                    Ok((paths, format, response)) if observe => Outcome::Observe {
                        response,
                        path: Path::Root,
                        composite: paths,
                        format,
                    },
                    Ok((_, _, response)) | Err(response) => response.into(),
                }
            }
            Code::IPATCH if depth == 0 => self
                .write_composite(now, who, content_format, &request.payload)
                .into(),
            _ => error(Code::METHOD_NOT_ALLOWED).into(),
        }
    }

    /// The object, checked to have instance `instance` if given.
    fn find(&self, object: u16, instance: Option<u16>) -> Result<&dyn Object, DmError> {
        let o = self.objects.get(&object).ok_or(DmError::NotFound)?;
        if let Some(i) = instance {
            if !o.instances().contains(&i) {
                return Err(DmError::NotFound);
            }
        }
        Ok(&**o)
    }

    /// The model of a resource that exists in an existing instance.
    fn find_resource(&self, o: u16, i: u16, r: u16) -> Result<ResourceModel, DmError> {
        let obj = self.find(o, Some(i))?;
        let model = obj.model().resource(r).ok_or(DmError::NotFound)?;
        if !obj.resources(i).contains(&r) {
            return Err(DmError::NotFound);
        }
        Ok(model.clone())
    }

    fn read_instance(obj: &dyn Object, i: u16) -> Result<Instance, DmError> {
        let mut inst = Instance {
            id: i,
            resources: BTreeMap::new(),
        };
        for r in obj.resources(i) {
            let readable = obj
                .model()
                .resource(r)
                .is_some_and(|m| m.operations.readable());
            if !readable {
                continue;
            }
            match obj.read(i, r) {
                Ok(value) => {
                    inst.resources.insert(r, Resource { id: r, value });
                }
                // Optional resources the object does not implement.
                Err(DmError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(inst)
    }

    /// The node at `path`, for Read and notifications.
    fn read_node(&self, path: &Path) -> Result<Node, DmError> {
        self.read_node_as(None, path)
    }

    /// Like [`Client::read_node`]; an object read as `viewer` leaves out
    /// the instances it may not read.
    fn read_node_as(&self, viewer: Option<u16>, path: &Path) -> Result<Node, DmError> {
        match *path {
            Path::Root => Err(DmError::MethodNotAllowed),
            Path::Object(o) => {
                let obj = self.find(o, None)?;
                let mut node = ObjectNode {
                    id: o,
                    instances: BTreeMap::new(),
                };
                for i in obj.instances() {
                    if !self.may(viewer, o, i, rights::READ) {
                        continue;
                    }
                    node.instances.insert(i, Self::read_instance(obj, i)?);
                }
                Ok(Node::Object(node))
            }
            Path::Instance(o, i) => {
                let obj = self.find(o, Some(i))?;
                Ok(Node::Instance(Self::read_instance(obj, i)?))
            }
            Path::Resource(o, i, r) => {
                let model = self.find_resource(o, i, r)?;
                if !model.operations.readable() {
                    return Err(DmError::MethodNotAllowed);
                }
                let value = self.find(o, Some(i))?.read(i, r)?;
                Ok(Node::Resource(Resource { id: r, value }))
            }
            Path::ResourceInstance(o, i, r, ri) => {
                let model = self.find_resource(o, i, r)?;
                if !model.operations.readable() {
                    return Err(DmError::MethodNotAllowed);
                }
                if !model.multiple {
                    return Err(DmError::NotFound);
                }
                match self.find(o, Some(i))?.read(i, r)? {
                    ResourceValue::Multiple(mut map) => {
                        let value = map.remove(&ri).ok_or(DmError::NotFound)?;
                        Ok(Node::ResourceInstance { id: ri, value })
                    }
                    ResourceValue::Single(_) => Err(DmError::NotFound),
                }
            }
        }
    }

    /// The format a Read answers in without Accept.
    fn default_format(&self, version: Version, node: &Node) -> ContentFormat {
        let single = match node {
            Node::Resource(Resource {
                value: ResourceValue::Single(v),
                ..
            })
            | Node::ResourceInstance { value: v, .. } => Some(v),
            _ => None,
        };
        match single {
            Some(Value::Opaque(_)) => ContentFormat::OPAQUE,
            Some(_) => ContentFormat::TEXT,
            // An LwM2M 1.0 server may know TLV only (JSON was optional).
            None if version < Version::new(1, 1) => ContentFormat::TLV,
            None => self
                .config
                .preferred_format
                .filter(|f| MULTI_VALUE_FORMATS.contains(f))
                // LwM2M CBOR came with 1.2.
                .filter(|&f| f != ContentFormat::LWM2M_CBOR || version >= Version::new(1, 2))
                .unwrap_or(ContentFormat::SENML_CBOR),
        }
    }

    /// Read: the format used and a 2.05 response, or the error response.
    fn read(
        &self,
        who: Requester,
        path: &Path,
        accept: Option<u32>,
    ) -> Result<(ContentFormat, Response), Response> {
        let node = self.read_node_as(who.viewer(), path)?;
        let format = match accept {
            None => self.default_format(who.version, &node),
            Some(a) => match u16::try_from(a) {
                Ok(a) => ContentFormat(a),
                Err(_) => return Err(error(Code::NOT_ACCEPTABLE)),
            },
        };
        let mut out = Vec::new();
        match format::encode(format, &node, path, &mut out) {
            Ok(()) => Ok((
                format,
                Response::new(Code::CONTENT).with_payload(format.0, out),
            )),
            // The format cannot carry this node (text/plain for an
            // instance) or is unknown: the Accept cannot be satisfied.
            Err(FormatError::UnsupportedFormat(_) | FormatError::NotRepresentable(_)) => {
                Err(error(Code::NOT_ACCEPTABLE))
            }
            Err(_) => Err(error(Code::INTERNAL_SERVER_ERROR)),
        }
    }

    fn discover(&self, who: Requester, path: &Path) -> Response {
        match self.discover_entries(who, path) {
            Ok(entries) => {
                let mut out = Vec::new();
                match encode_discover(&entries, &mut out) {
                    Ok(()) => {
                        Response::new(Code::CONTENT).with_payload(ContentFormat::LINK_FORMAT.0, out)
                    }
                    Err(_) => error(Code::INTERNAL_SERVER_ERROR),
                }
            }
            Err(e) => e.into(),
        }
    }

    fn attached(&self, ssid: u16, path: &Path) -> Attributes {
        self.attributes
            .get(&(ssid, *path))
            .cloned()
            .unwrap_or_default()
    }

    fn resource_entry(
        &self,
        obj: &dyn Object,
        path: Path,
        i: u16,
        r: u16,
        attrs: Attributes,
    ) -> DiscoverEntry {
        let mut attributes = attrs;
        if obj
            .model()
            .resource(r)
            .is_some_and(|m| m.multiple && m.operations.readable())
        {
            if let Ok(ResourceValue::Multiple(map)) = obj.read(i, r) {
                attributes.dim = u16::try_from(map.len()).ok();
            }
        }
        DiscoverEntry { path, attributes }
    }

    fn discover_entries(&self, who: Requester, path: &Path) -> Result<Vec<DiscoverEntry>, DmError> {
        let ssid = who.ssid;
        let mut entries = Vec::new();
        let instance_entries =
            |this: &Self, obj: &dyn Object, o: u16, i: u16, out: &mut Vec<DiscoverEntry>| {
                let ip = Path::Instance(o, i);
                out.push(DiscoverEntry {
                    path: ip,
                    attributes: this.attached(ssid, &ip),
                });
                let mut rs = obj.resources(i);
                rs.sort_unstable();
                for r in rs {
                    let rp = Path::Resource(o, i, r);
                    out.push(this.resource_entry(obj, rp, i, r, this.attached(ssid, &rp)));
                }
            };
        match *path {
            Path::Object(o) => {
                let obj = self.find(o, None)?;
                let mut attributes = self.attached(ssid, path);
                let version = obj.model().version.as_str();
                if version != "1.0" {
                    attributes.ver = version.parse().ok();
                }
                entries.push(DiscoverEntry {
                    path: *path,
                    attributes,
                });
                let mut is = obj.instances();
                is.sort_unstable();
                for i in is {
                    if !self.may(who.viewer(), o, i, rights::READ) {
                        continue;
                    }
                    instance_entries(self, obj, o, i, &mut entries);
                }
            }
            Path::Instance(o, i) => {
                let obj = self.find(o, Some(i))?;
                instance_entries(self, obj, o, i, &mut entries);
            }
            Path::Resource(o, i, r) => {
                self.find_resource(o, i, r)?;
                let obj = self.find(o, Some(i))?;
                // A resource's Discover reports the attributes in effect,
                // inherited from the object and instance levels.
                let attrs = self.effective_attributes(ssid, path);
                entries.push(self.resource_entry(obj, *path, i, r, attrs));
            }
            Path::Root | Path::ResourceInstance(..) => return Err(DmError::MethodNotAllowed),
        }
        Ok(entries)
    }

    fn write_attributes(&mut self, ssid: u16, path: &Path, queries: &[&str]) -> Response {
        let model = match *path {
            Path::Root => return error(Code::METHOD_NOT_ALLOWED),
            Path::Object(o) => self.find(o, None).map(|_| None),
            Path::Instance(o, i) => self.find(o, Some(i)).map(|_| None),
            Path::Resource(o, i, r) => self.find_resource(o, i, r).map(Some),
            // Attributes attach to resource instances that exist only:
            // otherwise the server could grow the attribute table without
            // bound.
            Path::ResourceInstance(..) => self.read_node(path).and_then(|_| match *path {
                Path::ResourceInstance(o, i, r, _) => self.find_resource(o, i, r).map(Some),
                _ => Err(DmError::NotFound),
            }),
        };
        let model = match model {
            Ok(m) => m,
            Err(e) => return e.into(),
        };
        let current = self.attached(ssid, path);
        match write_attributes(&current, queries.iter().copied(), path, model.as_ref()) {
            Ok(next) => {
                if next.is_empty() {
                    self.attributes.remove(&(ssid, *path));
                } else {
                    self.attributes.insert((ssid, *path), next);
                }
                Response::new(Code::CHANGED)
            }
            Err(e) => {
                let (c, d) = e.coap_code();
                error(Code::new(c, d))
            }
        }
    }

    fn decode(&self, cf: Option<u32>, payload: &[u8], path: &Path) -> Result<Node, Response> {
        // A write without Content-Format cannot be decoded: the request
        // itself is incomplete (4.00), unlike a format we do not know (4.15).
        let cf = cf.ok_or_else(|| error(Code::BAD_REQUEST))?;
        let cf = u16::try_from(cf).map_err(|_| error(Code::UNSUPPORTED_CONTENT_FORMAT))?;
        format::decode(ContentFormat(cf), payload, path, &Models(&self.objects))
            .map_err(|e| error(format_code(&e)))
    }

    /// Checks a resource value about to be written: known, writable and of
    /// the right multiplicity.
    fn check_writable(&self, o: u16, i: u16, res: &Resource) -> Result<ResourceModel, DmError> {
        let model = self.find_resource(o, i, res.id)?;
        if !model.operations.writable() {
            return Err(DmError::MethodNotAllowed);
        }
        match (&res.value, model.multiple) {
            (ResourceValue::Single(_), false) | (ResourceValue::Multiple(_), true) => Ok(model),
            _ => Err(DmError::BadRequest),
        }
    }

    fn write(
        &mut self,
        now: Instant,
        path: &Path,
        cf: Option<u32>,
        payload: &[u8],
        replace: bool,
    ) -> Response {
        let (o, i) = match *path {
            Path::Instance(o, i) | Path::Resource(o, i, _) | Path::ResourceInstance(o, i, _, _) => {
                (o, i)
            }
            Path::Root | Path::Object(_) => return error(Code::METHOD_NOT_ALLOWED),
        };
        // Existence and permissions first: a write to an unknown or
        // read-only resource fails the same way whatever the payload.
        if let Err(e) = self.find(o, Some(i)) {
            return e.into();
        }
        if let Path::Resource(_, _, r) | Path::ResourceInstance(_, _, r, _) = *path {
            match self.find_resource(o, i, r) {
                Ok(m) if !m.operations.writable() => return error(Code::METHOD_NOT_ALLOWED),
                Ok(m) if path.depth() == 4 && !m.multiple => return error(Code::NOT_FOUND),
                Ok(_) => {}
                Err(e) => return e.into(),
            }
        }
        let node = match self.decode(cf, payload, path) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let writes: Vec<Resource> = match (node, *path) {
            (Node::Resource(res), Path::Resource(_, _, r)) if res.id == r => alloc::vec![res],
            (Node::ResourceInstance { id, value }, Path::ResourceInstance(_, _, r, ri))
                if id == ri =>
            {
                let mut map = match self.find(o, Some(i)).and_then(|obj| obj.read(i, r)) {
                    Ok(ResourceValue::Multiple(map)) => map,
                    _ => BTreeMap::new(),
                };
                map.insert(ri, value);
                alloc::vec![Resource::multiple(r, map)]
            }
            (Node::Instance(inst), Path::Instance(..)) if inst.id == i => {
                inst.resources.into_values().collect()
            }
            _ => return error(Code::BAD_REQUEST),
        };
        if o == ACCESS_CONTROL && self.acl_enforced() && writes.iter().any(|r| r.id != ACL_RESOURCE)
        {
            // Only the ACL resource is the owner's to change.
            return error(Code::UNAUTHORIZED);
        }
        for res in &writes {
            if let Err(e) = self.check_writable(o, i, res) {
                return e.into();
            }
        }
        for mut res in writes {
            // A partial update adds to a multiple resource's instances
            // instead of replacing them (TS Core §5.4.3).
            if let (false, ResourceValue::Multiple(new)) = (replace, &res.value) {
                if let Ok(ResourceValue::Multiple(mut old)) =
                    self.find(o, Some(i)).and_then(|obj| obj.read(i, res.id))
                {
                    old.extend(new.clone());
                    res.value = ResourceValue::Multiple(old);
                }
            }
            let r = res.id;
            let Some(obj) = self.objects.get_mut(&o) else {
                return error(Code::NOT_FOUND);
            };
            if let Err(e) = obj.write(i, r, res.value) {
                return e.into();
            }
            self.after_write(now, o, i, r);
        }
        self.mark_changed(path);
        self.evaluate_observations(now);
        Response::new(Code::CHANGED)
    }

    /// Parses a Read-Composite / Observe-Composite request (FETCH `/` with
    /// a path list): the paths and the answer's format (the format of the
    /// path list unless Accept asks otherwise).
    fn composite_request(
        &self,
        cf: Option<u32>,
        accept: Option<u32>,
        payload: &[u8],
    ) -> Result<(Vec<Path>, ContentFormat), Response> {
        let cf = cf.ok_or_else(|| error(Code::BAD_REQUEST))?;
        let cf = u16::try_from(cf).map_err(|_| error(Code::UNSUPPORTED_CONTENT_FORMAT))?;
        let paths =
            format::decode_paths(ContentFormat(cf), payload).map_err(|e| error(format_code(&e)))?;
        // Without Accept, answer in the format the request's path list came in.
        let format = match accept.map(u16::try_from) {
            None => ContentFormat(cf),
            Some(Ok(a)) => ContentFormat(a),
            Some(Err(_)) => return Err(error(Code::NOT_ACCEPTABLE)),
        };
        Ok((paths, format))
    }

    /// The values of every listed path that exists, encoded in `format`.
    /// Paths that do not exist are left out (TS Core 1.1 §6.3.8 answers
    /// with what is there); any other error fails the whole read.
    fn composite_payload(
        &self,
        viewer: Option<u16>,
        paths: &[Path],
        format: ContentFormat,
    ) -> Result<Vec<u8>, Code> {
        let mut values = Vec::new();
        let mut denied = 0;
        for path in paths {
            if matches!(path.object_id(), Some(SECURITY | OSCORE)) {
                return Err(Code::UNAUTHORIZED);
            }
            // With access control, paths the server may not read are left
            // out like missing ones; if none is readable, 4.01.
            if let (Some(o), Some(i)) = (path.object_id(), path.instance_id()) {
                if self.find(o, Some(i)).is_ok() && !self.may(viewer, o, i, rights::READ) {
                    denied += 1;
                    continue;
                }
            }
            match self.read_node_as(viewer, path) {
                Ok(node) => flatten(*path, &node, &mut values),
                Err(DmError::NotFound) => {}
                Err(e) => return Err(e.code()),
            }
        }
        if denied > 0 && denied == paths.len() {
            return Err(Code::UNAUTHORIZED);
        }
        let mut out = Vec::new();
        match format::encode_values(format, &values, &mut out) {
            Ok(()) => Ok(out),
            Err(FormatError::UnsupportedFormat(_) | FormatError::NotRepresentable(_)) => {
                Err(Code::NOT_ACCEPTABLE)
            }
            Err(_) => Err(Code::INTERNAL_SERVER_ERROR),
        }
    }

    /// Write-Composite (iPATCH `/` with SenML values): every value is
    /// checked (exists, writable, right multiplicity) before anything is
    /// written, so a refused request changes nothing. Resource instances
    /// are merged into their resource's current instances.
    fn write_composite(
        &mut self,
        now: Instant,
        who: Requester,
        cf: Option<u32>,
        payload: &[u8],
    ) -> Response {
        let Some(cf) = cf else {
            return error(Code::BAD_REQUEST);
        };
        let Ok(cf) = u16::try_from(cf) else {
            return error(Code::UNSUPPORTED_CONTENT_FORMAT);
        };
        let values = match format::decode_values(ContentFormat(cf), payload, &Models(&self.objects))
        {
            Ok(v) => v,
            Err(e) => return error(format_code(&e)),
        };
        let mut plan: BTreeMap<(u16, u16, u16), ResourceValue> = BTreeMap::new();
        for v in values {
            if matches!(v.path.object_id(), Some(SECURITY | OSCORE)) {
                return error(Code::UNAUTHORIZED);
            }
            let (o, i, r, ri) = match v.path {
                Path::Resource(o, i, r) => (o, i, r, None),
                Path::ResourceInstance(o, i, r, ri) => (o, i, r, Some(ri)),
                _ => return error(Code::BAD_REQUEST),
            };
            let model = match self.find_resource(o, i, r) {
                Ok(m) => m,
                Err(e) => return e.into(),
            };
            let guarded = o == ACCESS_CONTROL && who.acl && r != ACL_RESOURCE;
            if guarded || !self.may(who.viewer(), o, i, rights::WRITE) {
                return error(Code::UNAUTHORIZED);
            }
            if !model.operations.writable() {
                return error(Code::METHOD_NOT_ALLOWED);
            }
            match (ri, model.multiple) {
                (None, false) => {
                    plan.insert((o, i, r), ResourceValue::Single(v.value));
                }
                (Some(ri), true) => {
                    let entry = match plan.entry((o, i, r)) {
                        alloc::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        alloc::collections::btree_map::Entry::Vacant(e) => {
                            let current = match self.find(o, Some(i)).and_then(|obj| obj.read(i, r))
                            {
                                Ok(ResourceValue::Multiple(map)) => map,
                                _ => BTreeMap::new(),
                            };
                            e.insert(ResourceValue::Multiple(current))
                        }
                    };
                    if let ResourceValue::Multiple(map) = entry {
                        map.insert(ri, v.value);
                    }
                }
                // A whole multiple resource cannot be a single SenML
                // record, and a single resource has no instances.
                _ => return error(Code::BAD_REQUEST),
            }
        }
        for ((o, i, r), value) in plan {
            let Some(obj) = self.objects.get_mut(&o) else {
                return error(Code::NOT_FOUND);
            };
            if let Err(e) = obj.write(i, r, value) {
                return e.into();
            }
            self.after_write(now, o, i, r);
            self.mark_changed(&Path::Resource(o, i, r));
        }
        self.evaluate_observations(now);
        Response::new(Code::CHANGED)
    }

    /// Reacts to writes to the Server object that concern the engine.
    fn after_write(&mut self, now: Instant, o: u16, i: u16, r: u16) {
        if o != SERVER || r != SERVER_LIFETIME {
            return;
        }
        let Some(lt) = self
            .server_resource_u32(i, SERVER_LIFETIME)
            .filter(|&lt| lt > 0)
        else {
            return;
        };
        let Some(k) = self.slot_of_instance(i) else {
            return;
        };
        if k == 0 {
            self.config.lifetime = lt;
        }
        let s = &mut self.slots[k];
        if lt != s.lifetime {
            s.lifetime = lt;
            s.send_lifetime = true;
            s.update_now = true;
            self.drive_registration(now);
        }
    }

    /// Access control applies: more than one LwM2M server account and an
    /// Access Control object (TS Core 1.1 §E.1.3).
    fn acl_enforced(&self) -> bool {
        self.objects.contains_key(&ACCESS_CONTROL) && self.dm_accounts().len() > 1
    }

    /// The Access Control instance governing `/o/i`.
    fn acl_instance(&self, o: u16, i: u16) -> Option<u16> {
        let acl = self.objects.get(&ACCESS_CONTROL)?;
        acl.instances()
            .into_iter()
            .filter(|&x| {
                self.int_value(ACCESS_CONTROL, x, 0) == Some(i64::from(o))
                    && self.int_value(ACCESS_CONTROL, x, 1) == Some(i64::from(i))
            })
            .min()
    }

    /// The rights of server `ssid` on `/o/i`: its own ACL entry; else,
    /// for the owner, every right but Create (Create too on the
    /// `/o/65535` instance); else the default entry (ACL instance 0); else
    /// none. No Access Control instance: no rights.
    fn rights(&self, ssid: u16, o: u16, i: u16) -> u16 {
        let Some(x) = self.acl_instance(o, i) else {
            return 0;
        };
        let acl = match self
            .objects
            .get(&ACCESS_CONTROL)
            .and_then(|a| a.read(x, ACL_RESOURCE).ok())
        {
            Some(ResourceValue::Multiple(map)) => map,
            _ => BTreeMap::new(),
        };
        let bits = |v: &Value| match *v {
            Value::Integer(b) => u16::try_from(b).unwrap_or(0),
            Value::UnsignedInteger(b) => u16::try_from(b).unwrap_or(0),
            _ => 0,
        };
        if let Some(v) = acl.get(&ssid) {
            return bits(v);
        }
        if self.int_value(ACCESS_CONTROL, x, ACL_OWNER) == Some(i64::from(ssid)) {
            return if i == CREATE_INSTANCE {
                rights::FULL | rights::CREATE
            } else {
                rights::FULL
            };
        }
        acl.get(&0).map_or(0, bits)
    }

    /// Whether `viewer` (`None`: no access control) may do `right` on
    /// `/o/i`. On the Access Control object itself only an instance's
    /// owner may read it and write its ACL resource.
    fn may(&self, viewer: Option<u16>, o: u16, i: u16, right: u16) -> bool {
        let Some(ssid) = viewer else {
            return true;
        };
        if o == ACCESS_CONTROL {
            return matches!(right, rights::READ | rights::WRITE)
                && self.int_value(ACCESS_CONTROL, i, ACL_OWNER) == Some(i64::from(ssid));
        }
        self.rights(ssid, o, i) & right != 0
    }

    /// Access control of a device-management request (4.01 if refused).
    /// Targets that do not exist are let through to get their 4.04.
    fn check_access(&self, who: Requester, request: &Request, path: &Path) -> Result<(), Response> {
        let Some(ssid) = who.viewer() else {
            return Ok(());
        };
        let depth = path.depth();
        let no_payload =
            request.payload.is_empty() && request.options.uint(number::CONTENT_FORMAT).is_none();
        let right = match request.code {
            Code::GET => rights::READ,
            // Write-Attributes needs the Read right.
            Code::PUT if no_payload => rights::READ,
            Code::PUT => rights::WRITE,
            Code::POST if depth == 1 => rights::CREATE,
            Code::POST if depth == 2 => rights::WRITE,
            Code::POST => rights::EXECUTE,
            Code::DELETE => rights::DELETE,
            // Composite operations check each path themselves.
            _ => return Ok(()),
        };
        let allowed = match *path {
            Path::Root => true,
            Path::Object(o) => match self.find(o, None) {
                Err(_) => true,
                Ok(_) if o == ACCESS_CONTROL && right == rights::CREATE => false,
                Ok(_) if right == rights::CREATE => {
                    self.rights(ssid, o, CREATE_INSTANCE) & rights::CREATE != 0
                }
                // An object-level read shows the readable instances; with
                // instances but none readable, 4.01.
                Ok(obj) if right == rights::READ => {
                    let is = obj.instances();
                    is.is_empty() || is.iter().any(|&i| self.may(Some(ssid), o, i, right))
                }
                Ok(_) => true,
            },
            Path::Instance(o, i) | Path::Resource(o, i, _) | Path::ResourceInstance(o, i, ..) => {
                self.find(o, Some(i)).is_err()
                    || (!(o == ACCESS_CONTROL && right == rights::DELETE)
                        && self.may(Some(ssid), o, i, right))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(error(Code::UNAUTHORIZED))
        }
    }

    /// After a Create by `owner` under access control: an Access Control
    /// instance for `/o/i` owned by it, without ACL entries.
    fn create_acl_instance(&mut self, o: u16, i: u16, owner: u16) {
        let Some(acl) = self.objects.get_mut(&ACCESS_CONTROL) else {
            return;
        };
        let existing = acl.instances();
        let Some(x) = (0..lwm2m_core::model::MAX_ID).find(|x| !existing.contains(x)) else {
            return;
        };
        let single = |id: u16, v: u16| Resource {
            id,
            value: ResourceValue::Single(Value::Integer(i64::from(v))),
        };
        let resources = alloc::vec![single(0, o), single(1, i), single(ACL_OWNER, owner)];
        if acl.create(x, resources).is_ok() {
            self.mark_changed(&Path::Object(ACCESS_CONTROL));
        }
    }

    /// The registration of the account whose Server object instance is `j`.
    fn slot_of_instance(&self, j: u16) -> Option<usize> {
        let ssid = self.int_value(SERVER, j, 0)?;
        self.slots
            .iter()
            .position(|s| !s.bootstrap && i64::from(s.ssid) == ssid)
    }

    /// The Server object instance of the account `ssid`.
    fn server_instance(&self, ssid: u16) -> Option<u16> {
        let srv = self.objects.get(&SERVER)?;
        srv.instances()
            .into_iter()
            .filter(|&j| self.int_value(SERVER, j, 0) == Some(i64::from(ssid)))
            .min()
    }

    fn server_resource_u32(&self, instance: u16, r: u16) -> Option<u32> {
        let obj = self.objects.get(&SERVER)?;
        match obj.read(instance, r).ok()? {
            ResourceValue::Single(Value::Integer(v)) => u32::try_from(v).ok(),
            ResourceValue::Single(Value::UnsignedInteger(v)) => u32::try_from(v).ok(),
            _ => None,
        }
    }

    /// A default period of server `ssid`'s Server object instance (the
    /// first instance when the client has no account for `ssid`).
    fn server_default(&self, ssid: u16, r: u16) -> Option<u32> {
        let j = self.server_instance(ssid).or_else(|| {
            let obj = self.objects.get(&SERVER)?;
            obj.instances().into_iter().min()
        })?;
        self.server_resource_u32(j, r)
    }

    fn execute(&mut self, now: Instant, path: &Path, payload: &[u8]) -> Response {
        let Path::Resource(o, i, r) = *path else {
            return error(Code::METHOD_NOT_ALLOWED);
        };
        match self.find_resource(o, i, r) {
            Ok(m) if !m.operations.executable() => return error(Code::METHOD_NOT_ALLOWED),
            Ok(_) => {}
            Err(e) => return e.into(),
        }
        let Ok(args) = core::str::from_utf8(payload) else {
            return error(Code::BAD_REQUEST);
        };
        if o == SERVER && r == SERVER_BOOTSTRAP_TRIGGER && self.bootstrap_peer().is_none() {
            // No Bootstrap-Server account (or none reachable): the
            // operation is not available on this client.
            return error(Code::METHOD_NOT_ALLOWED);
        }
        let Some(obj) = self.objects.get_mut(&o) else {
            return error(Code::NOT_FOUND);
        };
        if let Err(e) = obj.execute(i, r, args) {
            return e.into();
        }
        if o == SERVER && r == SERVER_DISABLE {
            if let Some(k) = self.slot_of_instance(i) {
                let ssid = self.slots[k].ssid;
                self.pending_disable.push(ssid);
            }
        }
        if o == SERVER && r == SERVER_BOOTSTRAP_TRIGGER {
            self.pending_bootstrap = true;
        }
        if o == SERVER && r == SERVER_UPDATE_TRIGGER {
            // An Update to the server of that instance only.
            if let Some(k) = self.slot_of_instance(i) {
                self.slots[k].update_now = true;
                self.drive_registration(now);
            }
        }
        Response::new(Code::CHANGED)
    }

    fn create(
        &mut self,
        now: Instant,
        who: Requester,
        path: &Path,
        cf: Option<u32>,
        payload: &[u8],
    ) -> Response {
        let Path::Object(o) = *path else {
            return error(Code::METHOD_NOT_ALLOWED);
        };
        let existing = match self.find(o, None) {
            Ok(obj) => obj.instances(),
            Err(e) => return e.into(),
        };
        let free = (0..=lwm2m_core::model::MAX_ID).find(|i| !existing.contains(i));
        let (id, resources) = if payload.is_empty() {
            match free {
                Some(id) => (Some(id), Vec::new()),
                None => return error(Code::BAD_REQUEST),
            }
        } else {
            // The payload either names the new instance (TLV object
            // instance, SenML `/O/I/R` names) or only holds its resources.
            match self.decode(cf, payload, path) {
                Ok(Node::Object(mut on)) if on.instances.len() == 1 => {
                    match on.instances.pop_first() {
                        Some((id, inst)) => (Some(id), inst.resources.into_values().collect()),
                        None => return error(Code::BAD_REQUEST),
                    }
                }
                Ok(_) => return error(Code::BAD_REQUEST),
                Err(first_error) => {
                    let Some(id) = free else {
                        return error(Code::BAD_REQUEST);
                    };
                    match self.decode(cf, payload, &Path::Instance(o, id)) {
                        Ok(Node::Instance(inst)) => {
                            (Some(id), inst.resources.into_values().collect())
                        }
                        _ => return first_error,
                    }
                }
            }
        };
        let Some(id) = id else {
            return error(Code::BAD_REQUEST);
        };
        if existing.contains(&id) {
            return error(Code::BAD_REQUEST);
        }
        let Some(obj) = self.objects.get_mut(&o) else {
            return error(Code::NOT_FOUND);
        };
        if let Err(e) = obj.create(id, resources) {
            return e.into();
        }
        if let Some(owner) = who.viewer() {
            self.create_acl_instance(o, id, owner);
        }
        self.mark_changed(path);
        self.objects_changed(now);
        let mut response = Response::new(Code::CREATED);
        response
            .options
            .push(number::LOCATION_PATH, o.to_string().into_bytes());
        response
            .options
            .push(number::LOCATION_PATH, id.to_string().into_bytes());
        response
    }

    fn delete(&mut self, now: Instant, path: &Path) -> Response {
        let Path::Instance(o, i) = *path else {
            return error(Code::METHOD_NOT_ALLOWED);
        };
        if let Err(e) = self.find(o, Some(i)) {
            return e.into();
        }
        let Some(obj) = self.objects.get_mut(&o) else {
            return error(Code::NOT_FOUND);
        };
        if let Err(e) = obj.delete(i) {
            return e.into();
        }
        self.attributes.retain(|(_, p), _| !path.is_prefix_of(p));
        // Its Access Control instance goes with it.
        if let Some(x) = self.acl_instance(o, i) {
            if let Some(acl) = self.objects.get_mut(&ACCESS_CONTROL) {
                let _ = acl.delete(x);
            }
            self.mark_changed(&Path::Instance(ACCESS_CONTROL, x));
        }
        // Observations of the instance end with 4.04 (RFC 7641 §4.2: a
        // non-2.xx notification ends the observation).
        let gone: Vec<ObservationId> = self
            .observations
            .iter()
            .filter(|(_, ob)| path.is_prefix_of(&ob.path))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.observations.remove(&id);
            self.ep
                .notify(now, id, Response::new(Code::NOT_FOUND), false);
        }
        self.mark_changed(&Path::Object(o));
        self.objects_changed(now);
        Response::new(Code::DELETED)
    }

    // ------------------------------------------------------------------
    // Bootstrap (client-initiated, TS Core 1.1 §6.1.1 / §5.2.7)
    // ------------------------------------------------------------------

    fn send_bootstrap_request(&mut self, now: Instant, k: usize) {
        let s = &mut self.slots[k];
        if let Some(id) = s.reg.in_flight() {
            self.ep.cancel_request(now, id);
        }
        s.location = None;
        s.next_update = None;
        let req = Request::new(Code::POST)
            .with_path("/bs")
            .with_query(&format!("ep={}", self.config.endpoint));
        match self.ep.send_request(now, s.peer.clone(), req) {
            Ok(id) => s.reg = Reg::Bootstrapping(id),
            Err(_) => self.register_failed(now, k, None),
        }
    }

    /// A single value of instance `i` of object `o`.
    fn value(&self, o: u16, i: u16, r: u16) -> Option<Value> {
        match self.objects.get(&o)?.read(i, r).ok()? {
            ResourceValue::Single(v) => Some(v),
            ResourceValue::Multiple(_) => None,
        }
    }

    fn int_value(&self, o: u16, i: u16, r: u16) -> Option<i64> {
        match self.value(o, i, r)? {
            Value::Integer(v) => Some(v),
            Value::UnsignedInteger(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    fn is_bootstrap_account(&self, i: u16) -> bool {
        matches!(self.value(SECURITY, i, 1), Some(Value::Boolean(true)))
    }

    /// The Security instance of the Bootstrap-Server account.
    fn bootstrap_account(&self) -> Option<u16> {
        let sec = self.objects.get(&SECURITY)?;
        sec.instances()
            .into_iter()
            .find(|&i| self.is_bootstrap_account(i))
    }

    /// The LwM2M server accounts, by Security instance id: (Short Server
    /// ID, server URI, Server object instance).
    fn dm_accounts(&self) -> Vec<(u16, String, u16)> {
        let mut out = Vec::new();
        let (Some(sec), Some(srv)) = (self.objects.get(&SECURITY), self.objects.get(&SERVER))
        else {
            return out;
        };
        let mut accounts = sec.instances();
        accounts.sort_unstable();
        let mut servers = srv.instances();
        servers.sort_unstable();
        for i in accounts {
            if self.is_bootstrap_account(i) {
                continue;
            }
            let Some(ssid) = self
                .int_value(SECURITY, i, 10)
                .and_then(|v| u16::try_from(v).ok())
            else {
                continue;
            };
            let Some(Value::String(uri)) = self.value(SECURITY, i, 0) else {
                continue;
            };
            if out.iter().any(|(s, _, _)| *s == ssid) {
                continue;
            }
            if let Some(&j) = servers
                .iter()
                .find(|&&j| self.int_value(SERVER, j, 0) == Some(i64::from(ssid)))
            {
                out.push((ssid, uri, j));
            }
        }
        out
    }

    /// Requests from the Bootstrap-Server while bootstrapping.
    fn bootstrap_request(&mut self, now: Instant, id: IncomingId, request: &Request) {
        let is_finish = request.code == Code::POST
            && request.options.get_all(number::URI_PATH).eq([&b"bs"[..]]);
        if is_finish {
            self.bootstrap_finish(now, id);
            return;
        }
        let path = match request_path(request) {
            Ok(p) => p,
            Err(r) => {
                self.ep.respond(now, id, r);
                return;
            }
        };
        let cf = request.options.uint(number::CONTENT_FORMAT);
        let accept = request.options.uint(number::ACCEPT);
        let response = match (request.code, path) {
            (Code::PUT, Path::Object(_) | Path::Instance(..) | Path::Resource(..)) => {
                self.bootstrap_write(&path, cf, &request.payload)
            }
            (Code::DELETE, Path::Root | Path::Object(_) | Path::Instance(..)) => {
                self.bootstrap_delete(&path)
            }
            (Code::GET, Path::Root | Path::Object(_))
                if accept == Some(u32::from(ContentFormat::LINK_FORMAT.0)) =>
            {
                self.bootstrap_discover(&path)
            }
            // Bootstrap-Read (1.1) reaches the Server and Access Control objects only.
            (Code::GET, p) if matches!(p.object_id(), Some(1 | 2)) => {
                let who = Requester {
                    ssid: 0,
                    version: self.config.lwm2m_version,
                    acl: false,
                };
                match self.read(who, &p, accept) {
                    Ok((_, r)) | Err(r) => r,
                }
            }
            (Code::GET, _) => error(Code::UNAUTHORIZED),
            _ => error(Code::METHOD_NOT_ALLOWED),
        };
        self.ep.respond(now, id, response);
    }

    /// Bootstrap-Write: like Write, but creates missing instances and may
    /// write read-only resources (Short Server ID...), and reaches the
    /// Security object.
    fn bootstrap_write(&mut self, path: &Path, cf: Option<u32>, payload: &[u8]) -> Response {
        let o = path.object_id().unwrap_or(0);
        if !self.objects.contains_key(&o) {
            return error(Code::NOT_FOUND);
        }
        let node = match self.decode(cf, payload, path) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let items: Vec<(u16, Vec<Resource>)> = match (node, *path) {
            (Node::Object(on), Path::Object(_)) => on
                .instances
                .into_values()
                .map(|i| (i.id, i.resources.into_values().collect()))
                .collect(),
            (Node::Instance(inst), Path::Instance(_, i)) if inst.id == i => {
                alloc::vec![(i, inst.resources.into_values().collect())]
            }
            (Node::Resource(res), Path::Resource(_, i, r)) if res.id == r => {
                alloc::vec![(i, alloc::vec![res])]
            }
            _ => return error(Code::BAD_REQUEST),
        };
        let Some(obj) = self.objects.get_mut(&o) else {
            return error(Code::NOT_FOUND);
        };
        for (i, resources) in items {
            let executable = resources.iter().any(|r| {
                obj.model()
                    .resource(r.id)
                    .is_some_and(|m| m.operations.executable())
            });
            if executable {
                return error(Code::BAD_REQUEST);
            }
            let result = if obj.instances().contains(&i) {
                resources
                    .into_iter()
                    .try_for_each(|r| obj.write(i, r.id, r.value))
            } else {
                obj.create(i, resources)
            };
            if let Err(e) = result {
                return e.into();
            }
        }
        Response::new(Code::CHANGED)
    }

    /// Bootstrap-Delete of `/`, `/O` or `/O/I`. The Bootstrap-Server's own
    /// account and the Device object are kept (TS Core 1.1 §5.2.7.5);
    /// objects that cannot delete instances keep theirs.
    fn bootstrap_delete(&mut self, path: &Path) -> Response {
        let mut targets = Vec::new();
        for (&o, obj) in &self.objects {
            if path.object_id().is_some_and(|p| p != o) || o == 3 {
                continue;
            }
            for i in obj.instances() {
                if path.instance_id().is_some_and(|p| p != i) {
                    continue;
                }
                if o == SECURITY && self.is_bootstrap_account(i) {
                    continue;
                }
                targets.push((o, i));
            }
        }
        for (o, i) in targets {
            if let Some(obj) = self.objects.get_mut(&o) {
                // Objects without Delete (fixed instances) keep them.
                let _ = obj.delete(i);
            }
            let gone = Path::Instance(o, i);
            self.attributes.retain(|(_, p), _| !gone.is_prefix_of(p));
        }
        Response::new(Code::DELETED)
    }

    /// Bootstrap-Discover of `/` or `/O`: objects (with `ver`) and
    /// instances, Security instances with `ssid` and `uri`, Server
    /// instances with `ssid`.
    fn bootstrap_discover(&self, path: &Path) -> Response {
        let mut entries = Vec::new();
        for (&o, obj) in &self.objects {
            if path.object_id().is_some_and(|p| p != o) {
                continue;
            }
            let version = obj.model().version.as_str();
            let mut instances = obj.instances();
            instances.sort_unstable();
            if version != "1.0" || instances.is_empty() {
                let mut attributes = Attributes::new();
                if version != "1.0" {
                    attributes.ver = version.parse().ok();
                }
                entries.push(DiscoverEntry {
                    path: Path::Object(o),
                    attributes,
                });
            }
            for i in instances {
                let mut attributes = Attributes::new();
                match o {
                    SECURITY if !self.is_bootstrap_account(i) => {
                        attributes.ssid =
                            self.int_value(o, i, 10).and_then(|v| u16::try_from(v).ok());
                        if let Some(Value::String(uri)) = self.value(o, i, 0) {
                            attributes.uri = Some(uri);
                        }
                    }
                    SERVER => {
                        attributes.ssid =
                            self.int_value(o, i, 0).and_then(|v| u16::try_from(v).ok());
                    }
                    _ => {}
                }
                entries.push(DiscoverEntry {
                    path: Path::Instance(o, i),
                    attributes,
                });
            }
        }
        if entries.is_empty() && path.depth() == 1 {
            return error(Code::NOT_FOUND);
        }
        let discover = BootstrapDiscover {
            lwm2m: Some(self.config.lwm2m_version),
            entries,
        };
        let mut out = Vec::new();
        match discover.encode(&mut out) {
            Ok(()) => Response::new(Code::CONTENT).with_payload(ContentFormat::LINK_FORMAT.0, out),
            Err(_) => error(Code::INTERNAL_SERVER_ERROR),
        }
    }

    /// Bootstrap-Finish: 2.04 and Register with the configured server if
    /// there is a usable account, 4.06 otherwise (TS Core 1.1 §5.2.7.6:
    /// the configuration is inconsistent; the Bootstrap-Server may fix it).
    fn bootstrap_finish(&mut self, now: Instant, id: IncomingId) {
        let slots = self.build_slots(false);
        let Some(first) = slots.first() else {
            self.ep.respond(now, id, error(Code::NOT_ACCEPTABLE));
            return;
        };
        self.ep.respond(now, id, Response::new(Code::CHANGED));
        self.config.lifetime = first.lifetime;
        self.config.binding = first.binding.clone();
        self.server = first.peer.clone();
        self.slots = slots;
        self.event(None, ClientEvent::Bootstrapped);
        self.advance_chain(now);
    }

    // ------------------------------------------------------------------
    // Observations
    // ------------------------------------------------------------------

    /// The attributes in effect at `path`, with the Server object's default
    /// periods where no level sets them.
    fn effective_attributes(&self, ssid: u16, path: &Path) -> Attributes {
        let mut levels = Vec::new();
        let mut p = *path;
        while p != Path::Root {
            levels.push(self.attached(ssid, &p));
            p = p.parent();
        }
        levels.reverse();
        let refs: Vec<&Attributes> = levels.iter().collect();
        let mut eff = Attributes::inherit(&refs);
        if eff.pmin.is_none() {
            eff.pmin = self.server_default(ssid, SERVER_DEFAULT_PMIN);
        }
        if eff.pmax.is_none() {
            eff.pmax = self.server_default(ssid, SERVER_DEFAULT_PMAX);
        }
        eff
    }

    fn observation_due(&self, o: &Observation) -> Option<Instant> {
        let attrs = self.effective_attributes(o.ssid, &o.path);
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        // A change is looked at no earlier than pmin after the last
        // notification and epmin after the last evaluation.
        let mut due = o.dirty.then(|| {
            (o.last_sent + secs(attrs.pmin.unwrap_or(0)))
                .max(o.last_eval + secs(attrs.epmin.unwrap_or(0)))
        });
        // epmax: evaluate at least that often even if nobody reported a change.
        if let Some(epmax) = attrs.epmax.filter(|&e| e > 0) {
            let at = o.last_eval + secs(epmax);
            due = Some(due.map_or(at, |d| d.min(at)));
        }
        if let Some(pmax) = attrs.effective_pmax() {
            let at = o.last_sent + secs(pmax);
            due = Some(due.map_or(at, |d| d.min(at)));
        }
        due
    }

    fn mark_changed(&mut self, path: &Path) {
        let related = |p: &Path| p.is_prefix_of(path) || path.is_prefix_of(p);
        for o in self.observations.values_mut() {
            let hit = if o.composite.is_empty() {
                related(&o.path)
            } else {
                o.composite.iter().any(related)
            };
            if hit {
                o.dirty = true;
            }
        }
    }

    fn evaluate_observations(&mut self, now: Instant) {
        let ids: Vec<ObservationId> = self.observations.keys().copied().collect();
        for id in ids {
            let Some(o) = self.observations.get(&id) else {
                continue;
            };
            if self.observation_due(o).is_none_or(|d| d > now) {
                continue;
            }
            let attrs = self.effective_attributes(o.ssid, &o.path);
            let pmax_due = attrs
                .effective_pmax()
                .is_some_and(|p| now >= o.last_sent + Duration::from_secs(u64::from(p)));
            let epmax_due = attrs
                .epmax
                .filter(|&e| e > 0)
                .is_some_and(|e| now >= o.last_eval + Duration::from_secs(u64::from(e)));
            let (path, format) = (o.path, o.format);
            let dirty = o.dirty || epmax_due;
            let confirmable = attrs.con.unwrap_or(false);
            let encoded = if o.composite.is_empty() {
                self.read_node_as(o.viewer, &path)
                    .and_then(|node| {
                        let mut out = Vec::new();
                        format::encode(format, &node, &path, &mut out)
                            .map(|()| (out, numeric(&node), boolean(&node)))
                            .map_err(|_| DmError::Internal)
                    })
                    .map_err(DmError::code)
            } else {
                self.composite_payload(o.viewer, &o.composite, format)
                    .map(|out| (out, None, None))
            };
            match encoded {
                Ok((payload, value, flag)) => {
                    let send = pmax_due
                        || (dirty
                            && self.observations.get(&id).is_some_and(|o| {
                                // With edge the transition since the last
                                // evaluation is the change: the value may
                                // equal the last one sent (the opposite
                                // transition in between was not notified).
                                let edge = attrs.edge.is_some() && flag.is_some();
                                (edge || o.last_payload != payload)
                                    && passes_thresholds(&attrs, o.last_value, value)
                                    && passes_edge(attrs.edge, o.last_bool, flag)
                            }));
                    let ssid = self.observations.get(&id).map_or(0, |o| o.ssid);
                    let stored = if !send {
                        None
                    } else if self.reachable(ssid) {
                        let response =
                            Response::new(Code::CONTENT).with_payload(format.0, payload.clone());
                        self.ep.notify(now, id, response, confirmable);
                        None
                    } else if self.notification_storing(ssid) {
                        // Away: keep the newest, send it after Register.
                        Some(payload.clone())
                    } else {
                        // Away without storing: dropped.
                        None
                    };
                    if let Some(o) = self.observations.get_mut(&id) {
                        if stored.is_some() {
                            o.stored = stored;
                        }
                        o.dirty = false;
                        o.last_eval = now;
                        o.last_bool = flag;
                        if send {
                            o.last_sent = now;
                            o.last_payload = payload;
                            o.last_value = value;
                        }
                    }
                }
                Err(e) => {
                    // The observed path is gone or unreadable now: tell the
                    // observer (if it is there to hear it), which ends the
                    // observation.
                    let ssid = self.observations.remove(&id).map_or(0, |o| o.ssid);
                    if self.reachable(ssid) {
                        self.ep.notify(now, id, Response::new(e), confirmable);
                    } else {
                        self.ep.remove_observation(id);
                    }
                }
            }
        }
    }
}

impl<P, R> Debug for Client<P, R>
where
    P: Debug,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.config.endpoint)
            .field("server", &self.server)
            .field("registrations", &self.slots)
            .field("objects", &self.objects.keys().collect::<Vec<_>>())
            .field("observations", &self.observations.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_doubles_within_a_sequence_then_waits_between_sequences() {
        let p = RetryPolicy {
            retry_count: 3,
            retry_timer: Duration::from_secs(10),
            sequence_delay: Duration::from_secs(1_000),
            sequence_retry_count: 2,
        };
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
        assert_eq!(secs(p.next_delay(1, 0)), Some(10));
        assert_eq!(secs(p.next_delay(2, 0)), Some(20));
        // Third failure ends the first sequence: wait the sequence delay.
        assert_eq!(secs(p.next_delay(3, 0)), Some(1_000));
        assert_eq!(secs(p.next_delay(1, 1)), Some(10));
        // End of the second (last) sequence: give up.
        assert_eq!(secs(p.next_delay(3, 1)), None);
    }

    #[test]
    fn retry_delay_saturates_instead_of_overflowing() {
        let p = RetryPolicy {
            retry_count: u32::MAX,
            retry_timer: Duration::from_secs(u64::MAX / 2),
            ..RetryPolicy::default()
        };
        assert_eq!(p.next_delay(200, 0), Some(Duration::MAX));
        assert_eq!(
            RetryPolicy {
                retry_count: 0,
                ..RetryPolicy::default()
            }
            .next_delay(1, 0),
            None
        );
    }

    #[test]
    fn edges() {
        // Rising.
        assert!(passes_edge(Some(true), Some(false), Some(true)));
        assert!(!passes_edge(Some(true), Some(true), Some(false)));
        assert!(!passes_edge(Some(true), Some(true), Some(true)));
        // Falling.
        assert!(passes_edge(Some(false), Some(true), Some(false)));
        assert!(!passes_edge(Some(false), Some(false), Some(true)));
        // Unknown previous value: no transition seen.
        assert!(!passes_edge(Some(true), None, Some(true)));
        // No edge, or not a boolean: anything passes.
        assert!(passes_edge(None, Some(true), Some(false)));
        assert!(passes_edge(Some(true), Some(true), None));
    }

    #[test]
    fn thresholds() {
        let a = Attributes {
            gt: Some(50.0),
            lt: Some(10.0),
            st: Some(15.0),
            ..Attributes::new()
        };
        assert!(!passes_thresholds(&a, Some(5.0), Some(8.0)));
        assert!(passes_thresholds(&a, Some(8.0), Some(12.0)));
        assert!(passes_thresholds(&a, Some(51.0), Some(50.0)));
        assert!(passes_thresholds(&a, Some(20.0), Some(5.0)));
        assert!(!passes_thresholds(&a, Some(20.0), Some(34.0)));
        // Non-numeric values and no conditions: any change.
        assert!(passes_thresholds(&a, None, Some(1.0)));
        assert!(passes_thresholds(&Attributes::new(), Some(1.0), Some(1.5)));
    }
}
