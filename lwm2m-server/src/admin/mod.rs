//! The admin HTTP API, Server-Sent Events, Prometheus metrics and web UI,
//! on top of a running [`crate::Server`]'s [`ServerHandle`].
//!
//! Routes (see [`ROUTES`] and `GET /api/openapi.json` for the full contract):
//!
//! | Route | What |
//! |---|---|
//! | `GET /api/clients` | registrations (Leshan's JSON shape) |
//! | `GET /api/clients/{ep}` | one registration |
//! | `GET /api/clients/{ep}/{path}` | Read (`format=`, `timeout=` s) |
//! | `PUT /api/clients/{ep}/{path}` | Write a JSON node (`replace=true` PUT / `false` POST, `format=`) |
//! | `POST /api/clients/{ep}/{path}` | Execute (text body = arguments) on a resource, Create (JSON instance) on an object |
//! | `DELETE /api/clients/{ep}/{path}` | Delete |
//! | `GET /api/clients/{ep}/{path}/discover` | Discover |
//! | `PUT /api/clients/{ep}/{path}/attributes?pmin=..` | Write-Attributes (bare `name` unsets) |
//! | `POST`/`DELETE /api/clients/{ep}/{path}/observe` | Observe / cancel |
//! | `GET /api/clients/{ep}/composite?paths=/3/0/9,/1/0/1` | Read-Composite (`format=`: path list and answer, default SenML CBOR) |
//! | `PUT /api/clients/{ep}/composite` | Write-Composite (body `{"/1/0/1":300,...}`) |
//! | `POST`/`DELETE /api/clients/{ep}/composite?paths=..` | Observe-Composite / cancel |
//! | `GET /api/bootstrap` | every bootstrap configuration, as a `bootstrap.json` |
//! | `GET`/`PUT`/`DELETE /api/bootstrap/{ep}` | one bootstrap configuration (a `bootstrap.json` entry) |
//! | `GET /api/security/clients` | every client's security credentials (PSK keys never shown) |
//! | `GET`/`PUT`/`DELETE /api/security/clients/{ep}` | one client's credentials: `{"psk":{"identity":..,"key":"hex"}}`, `{"rpk":{"key":"hex"}}` or `{"x509":true}` |
//! | `GET`/`POST /api/firmware?name=&version=` | firmware packages: list, upload (raw body, 413 beyond the size limit) |
//! | `GET`/`DELETE /api/firmware/{id}` | one firmware package |
//! | `GET /fw/{id}` | a package's bytes over HTTP for devices pulling `http://` (`Range`: 206/416) |
//! | `POST /api/clients/{ep}/firmware` | firmware update job `{"package":ID,"delivery":"push"\|"coap"\|"http"}` (202) |
//! | `GET /api/jobs`, `GET /api/jobs/{id}` | firmware update jobs and their status |
//! | `GET`/`POST /api/campaigns`, `GET /api/campaigns/{id}` | firmware update campaigns in waves, per-device status |
//! | `POST /api/campaigns/{id}/pause\|resume\|cancel` | control a campaign |
//! | `GET`/`POST /api/alerts/rules`, `GET`/`DELETE /api/alerts/rules/{id}` | alert rules (`threshold`, `offline`, `firmware_failed`) |
//! | `GET /api/alerts[?all=true]`, `POST /api/alerts/{id}/ack` | active (and cleared) alerts, acknowledge |
//! | `GET /api/events[?ep=]` | SSE: `ALERT`, `FIRMWARE` (job status), `CAMPAIGN`, `REGISTRATION`, `UPDATED`, `DEREGISTRATION`, `NOTIFICATION`, `SEND`, `REQUEST_RESULT`, `AWAKE`, `SLEEPING` |
//! | `GET /api/objectspecs` | object models (names of objects and resources) |
//! | `GET /api/openapi.json` | OpenAPI 3 document |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /` | web UI |
//!
//! Answers to device-management requests: HTTP 200 with the device's answer,
//! success or not, as `{"status":"CONTENT","code":"2.05","success":true,
//! "content":{node}}` or `{"status":"NOT_FOUND","code":"4.04","success":false}`
//! (as Leshan's demo does, so a device's 4.04 is never confused with the API's
//! own 404 for an unknown client). API errors are `{"error":"..."}` with 404
//! (unknown client), 400 (bad path, query or body), 504 (no answer within
//! `timeout`, default 5 s), 503 (server stopped or request queue full), 502
//! (undecodable answer), 410 (the client deregistered before answering) or
//! 405 (e.g. GET on `.../attributes`).
//!
//! Every device-management request gets a `requestId` (in its answer) and its
//! result is also published as a `REQUEST_RESULT` event on `/api/events`.
//! Queue mode: a request for a queue-mode client that is asleep (no Register
//! or Update within the server's awake time) is answered `202 Accepted` with
//! `{"requestId":"r1","status":"QUEUED"}` at once; the driver holds the request
//! until the client is next heard from, and the answer arrives as that
//! `REQUEST_RESULT` event. After a 504 (the caller's `timeout`), a late answer
//! arrives the same way. Metrics count each request once, with the outcome
//! the driver reports (a caller's shorter `timeout` does not change it).
//!
//! No authentication: bind `--http` to a trusted interface (the default
//! 0.0.0.0:8080 is for lab use) or put an authenticating proxy in front.
//!
//! Decisions: the default Write/Create format is TLV for LwM2M 1.0 and 1.1
//! clients (mandatory for them) and SenML CBOR for 1.2 (TLV is optional
//! there). Create needs the instance `id` in the body: the driver always names
//! the new instance. An observation is cancelled by path: the admin API keeps
//! the newest observation per (endpoint, path).

mod alerts;
mod campaigns;
mod firmware;
mod json;
mod metrics;
mod openapi;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, RawQuery, State};
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lwm2m_core::coap::endpoint::RequestError;
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{AttributeUpdate, ModelLookup, Path, Version};
use lwm2m_objects::Registry;
use serde_json::{json, Value as JsonValue};
use tokio::sync::broadcast;

use crate::bootstrap::driver::BootstrapHandle;
use crate::bootstrap::{BootstrapConfig, BootstrapFile, ConfigError};
use crate::driver::ServerHandle;
use crate::engine::{DmError, DmRequestId, DmResponse, ServerEvent, WriteMode};
use crate::security::{Credentials, SecurityError, SecurityInfo, SecurityStore};
use crate::{Registration, ServerConfig};

pub use json::{node_json, parse_node};
pub use metrics::Metrics;
pub use openapi::openapi;

/// Settings of the admin API.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// How long a queue-mode client listens after Register/Update (the
    /// server's [`ServerConfig::awake_time`]): outside it, requests get 202.
    pub awake_time: Duration,
    /// Request timeout when the caller gives no `timeout=`.
    pub default_timeout: Duration,
    /// The bootstrap server whose configurations `/api/bootstrap` manages;
    /// `None`: those routes answer 503.
    pub bootstrap: Option<BootstrapHandle>,
    /// The credentials store `/api/security/clients` manages; `None`: those
    /// routes answer 503.
    pub security: Option<SharedSecurityStore>,
    /// The firmware packages `/api/firmware` manages and `/fw/{id}`
    /// serves; `None`: those routes answer 503.
    pub firmware: Option<SharedFirmwareStore>,
    /// Largest firmware package upload, bytes (413 beyond).
    pub max_firmware_size: usize,
    /// Where devices pull packages from (Package URI bases).
    pub firmware_uris: FirmwareUris,
    /// Where `/api/campaigns` keeps campaigns (empty: in memory).
    pub campaign_store: CampaignStoreSlot,
    /// Directory whose `alerts.sqlite3` keeps the alert rules (`None`: in memory).
    pub alerts_dir: Option<std::path::PathBuf>,
}

pub use crate::firmware::SharedFirmwareStore;
pub use crate::fota::FirmwareUris;
pub use crate::security::SharedSecurityStore;
pub use campaigns::CampaignStoreSlot;

/// Default [`AdminConfig::max_firmware_size`]: 16 MiB, what the demo
/// client keeps and the CoAP endpoint's default `max_body_size`.
pub const DEFAULT_MAX_FIRMWARE_SIZE: usize = 16 << 20;

impl AdminConfig {
    /// Settings matching the server's configuration, 5 s default timeout.
    pub fn for_server(config: &ServerConfig) -> AdminConfig {
        AdminConfig {
            awake_time: config.awake_time,
            default_timeout: Duration::from_secs(5),
            bootstrap: None,
            security: None,
            firmware: None,
            max_firmware_size: DEFAULT_MAX_FIRMWARE_SIZE,
            firmware_uris: FirmwareUris::default(),
            campaign_store: CampaignStoreSlot::default(),
            alerts_dir: None,
        }
    }

    /// These settings with `/api/firmware` managing `store`.
    pub fn with_firmware(mut self, store: SharedFirmwareStore) -> AdminConfig {
        self.firmware = Some(store);
        self
    }

    /// These settings with `/api/bootstrap` managing `bootstrap`'s configurations.
    pub fn with_bootstrap(mut self, bootstrap: BootstrapHandle) -> AdminConfig {
        self.bootstrap = Some(bootstrap);
        self
    }

    /// These settings with `/api/security/clients` managing `store`.
    pub fn with_security(mut self, store: SharedSecurityStore) -> AdminConfig {
        self.security = Some(store);
        self
    }
}

/// Every route of [`router`] as (method, OpenAPI path); the OpenAPI
/// document lists exactly these (a test checks both ways).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/app.js"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
    ("get", "/api/objectspecs"),
    ("get", "/api/events"),
    ("get", "/api/clients"),
    ("get", "/api/clients/{endpoint}"),
    ("get", "/api/clients/{endpoint}/{path}"),
    ("put", "/api/clients/{endpoint}/{path}"),
    ("post", "/api/clients/{endpoint}/{path}"),
    ("delete", "/api/clients/{endpoint}/{path}"),
    ("get", "/api/clients/{endpoint}/{path}/discover"),
    ("put", "/api/clients/{endpoint}/{path}/attributes"),
    ("post", "/api/clients/{endpoint}/{path}/observe"),
    ("delete", "/api/clients/{endpoint}/{path}/observe"),
    ("get", "/api/clients/{endpoint}/composite"),
    ("put", "/api/clients/{endpoint}/composite"),
    ("post", "/api/clients/{endpoint}/composite"),
    ("delete", "/api/clients/{endpoint}/composite"),
    ("get", "/api/bootstrap"),
    ("get", "/api/bootstrap/{endpoint}"),
    ("put", "/api/bootstrap/{endpoint}"),
    ("delete", "/api/bootstrap/{endpoint}"),
    ("get", "/api/security/clients"),
    ("get", "/api/security/clients/{endpoint}"),
    ("put", "/api/security/clients/{endpoint}"),
    ("delete", "/api/security/clients/{endpoint}"),
    ("get", "/api/firmware"),
    ("post", "/api/firmware"),
    ("get", "/api/firmware/{id}"),
    ("delete", "/api/firmware/{id}"),
    ("get", "/fw/{id}"),
    ("post", "/api/clients/{endpoint}/firmware"),
    ("get", "/api/jobs"),
    ("get", "/api/jobs/{id}"),
    ("get", "/api/campaigns"),
    ("post", "/api/campaigns"),
    ("get", "/api/campaigns/{id}"),
    ("post", "/api/campaigns/{id}/pause"),
    ("post", "/api/campaigns/{id}/resume"),
    ("post", "/api/campaigns/{id}/cancel"),
    ("get", "/api/alerts/rules"),
    ("post", "/api/alerts/rules"),
    ("get", "/api/alerts/rules/{id}"),
    ("delete", "/api/alerts/rules/{id}"),
    ("get", "/api/alerts"),
    ("post", "/api/alerts/{id}/ack"),
];

#[derive(Clone, Debug)]
struct Broadcast {
    name: &'static str,
    endpoint: String,
    data: String,
}

struct Shared {
    server: ServerHandle,
    models: Arc<Registry>,
    config: AdminConfig,
    metrics: Metrics,
    sse: broadcast::Sender<Broadcast>,
    /// Live observations: id → (endpoint, path).
    observations: Mutex<HashMap<DmRequestId, (String, Path)>>,
    /// Live Observe-Composite observations: id → (endpoint, sorted paths).
    composite_observations: Mutex<HashMap<DmRequestId, (String, Vec<Path>)>>,
    next_request: AtomicU64,
    /// Firmware update jobs.
    jobs: Mutex<firmware::Jobs>,
    /// Firmware update campaigns (set once the router is made; unset
    /// without a firmware store).
    campaigns: std::sync::OnceLock<crate::campaign::CampaignManager>,
    /// Alert rules and alerts.
    alerts: Mutex<alerts::Alerts>,
}

type AppState = Arc<Shared>;

impl Shared {
    fn publish(&self, name: &'static str, endpoint: &str, data: &JsonValue) {
        // No subscriber is fine.
        let _ = self.sse.send(Broadcast {
            name,
            endpoint: endpoint.to_string(),
            data: data.to_string(),
        });
    }

    fn observations(&self) -> std::sync::MutexGuard<'_, HashMap<DmRequestId, (String, Path)>> {
        self.observations.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn composite_observations(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<DmRequestId, (String, Vec<Path>)>> {
        self.composite_observations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn sleeping(&self, r: &Registration<SocketAddr>) -> bool {
        let now = now_ms();
        let awake_until = r
            .last_update
            .as_millis()
            .saturating_add(u64::try_from(self.config.awake_time.as_millis()).unwrap_or(u64::MAX));
        r.queue_mode && now >= awake_until
    }

    fn registration_json(&self, r: &Registration<SocketAddr>) -> JsonValue {
        json::registration_json(r, self.sleeping(r))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The admin router for `server`. Spawns a task (on the current tokio
/// runtime) that turns server events into SSE events and metrics; it ends
/// when the router and its clones are dropped and the next event arrives.
pub fn router(server: ServerHandle, models: Arc<Registry>, config: AdminConfig) -> Router {
    let (sse, _) = broadcast::channel(1024);
    let events = server.events();
    let upload_limit = axum::extract::DefaultBodyLimit::max(config.max_firmware_size);
    let alerts = match &config.alerts_dir {
        #[cfg(feature = "sqlite")]
        Some(dir) => alerts::Alerts::open(dir).unwrap_or_else(|e| {
            tracing::error!("alert rules kept in memory only: {e}");
            alerts::Alerts::default()
        }),
        _ => alerts::Alerts::default(),
    };
    let shared = Arc::new(Shared {
        server,
        models,
        config,
        metrics: Metrics::default(),
        sse,
        observations: Mutex::new(HashMap::new()),
        composite_observations: Mutex::new(HashMap::new()),
        next_request: AtomicU64::new(1),
        jobs: Mutex::new(firmware::Jobs::default()),
        campaigns: std::sync::OnceLock::new(),
        alerts: Mutex::new(alerts),
    });
    campaigns::start(&shared);
    tokio::spawn(forward_events(events, Arc::downgrade(&shared)));
    Router::new()
        .route("/", get(ui_index))
        .route("/app.js", get(ui_js))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/objectspecs", get(objectspecs))
        .route("/api/events", get(events_sse))
        .route("/api/clients", get(list_clients))
        .route("/api/clients/{ep}", get(get_client))
        .route("/api/bootstrap", get(list_bootstrap))
        .route(
            "/api/bootstrap/{ep}",
            get(get_bootstrap)
                .put(put_bootstrap)
                .delete(delete_bootstrap),
        )
        .route("/api/security/clients", get(list_security))
        .route(
            "/api/security/clients/{ep}",
            get(get_security).put(put_security).delete(delete_security),
        )
        .route(
            "/api/firmware",
            get(firmware::list).post(firmware::upload.layer(upload_limit)),
        )
        .route(
            "/api/firmware/{id}",
            get(firmware::get_one).delete(firmware::delete_one),
        )
        .route("/fw/{id}", get(firmware::download))
        .route(
            "/api/clients/{ep}/firmware",
            axum::routing::post(firmware::start_job),
        )
        .route(
            "/api/campaigns",
            get(campaigns::list).post(campaigns::create),
        )
        .route("/api/campaigns/{id}", get(campaigns::get_one))
        .route(
            "/api/campaigns/{id}/{action}",
            axum::routing::post(campaigns::control),
        )
        .route(
            "/api/alerts/rules",
            get(alerts::list_rules).post(alerts::create_rule),
        )
        .route(
            "/api/alerts/rules/{id}",
            get(alerts::get_rule).delete(alerts::delete_rule),
        )
        .route("/api/alerts", get(alerts::list))
        .route("/api/alerts/{id}/ack", axum::routing::post(alerts::ack))
        .route("/api/jobs", get(firmware::list_jobs))
        .route("/api/jobs/{id}", get(firmware::get_job))
        .route(
            "/api/clients/{ep}/{*rest}",
            get(dm).put(dm).post(dm).delete(dm),
        )
        .fallback(no_route)
        .with_state(shared)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn forward_events(
    mut events: broadcast::Receiver<ServerEvent<SocketAddr>>,
    shared: Weak<Shared>,
) {
    use metrics::RegistrationEvent as R;
    // Observations the server restored from its store at start: known here
    // too, so their notifications name the path and they can be cancelled.
    if let Some(s) = shared.upgrade() {
        let restored = s.server.observations().await;
        let mut obs = s.observations();
        for (id, ep, path) in restored {
            obs.entry(id).or_insert((ep, path));
        }
    }
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("admin API missed {n} server events");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(s) = shared.upgrade() else { return };
        match ev {
            ServerEvent::Registered { registration, .. } => {
                s.metrics.registration(R::Registered);
                let data = s.registration_json(&registration);
                s.publish("REGISTRATION", &registration.endpoint, &data);
                alerts::on_presence(&s, &registration.endpoint, false);
                watch_sleep(&s, &registration);
            }
            ServerEvent::Updated { registration } => {
                s.metrics.registration(R::Updated);
                let data = s.registration_json(&registration);
                s.publish("UPDATED", &registration.endpoint, &data);
                watch_sleep(&s, &registration);
            }
            ServerEvent::Deregistered { registration } => {
                s.metrics.registration(R::Deregistered);
                deregistered(&s, &registration, false);
            }
            ServerEvent::Expired { registration } => {
                s.metrics.registration(R::Expired);
                deregistered(&s, &registration, true);
                alerts::on_presence(&s, &registration.endpoint, true);
            }
            ServerEvent::Notification {
                id,
                endpoint,
                result,
            } => {
                s.metrics.notification();
                let path = s.observations().get(&id).map(|(_, p)| p.to_string());
                // An Observe-Composite names its paths, comma-separated.
                let path = path.or_else(|| {
                    s.composite_observations()
                        .get(&id)
                        .map(|(_, ps)| paths_string(ps))
                });
                let mut data = json!({"ep": endpoint, "res": path});
                match &result {
                    Ok(r) => {
                        let r = json::response_json(r);
                        data["val"] = r
                            .get("content")
                            .or_else(|| r.get("values"))
                            .cloned()
                            .unwrap_or(JsonValue::Null);
                        data["status"] = r["status"].clone();
                        data["code"] = r["code"].clone();
                    }
                    Err(e) => data["error"] = json!(e.to_string()),
                }
                s.publish("NOTIFICATION", &endpoint, &data);
                // After the NOTIFICATION, so a watcher sees the value before its alert.
                if let (Ok(_), Some(p)) = (&result, &path) {
                    alerts::on_value(&s, &endpoint, p, &data["val"]);
                }
            }
            ServerEvent::Send {
                endpoint,
                content_format,
                values,
            } => {
                s.metrics.send();
                let data = json!({
                    "ep": endpoint,
                    "contentFormat": content_format.0,
                    "values": json::values_json(&values),
                });
                s.publish("SEND", &endpoint, &data);
                for v in data["values"].as_array().into_iter().flatten() {
                    if let Some(p) = v["path"].as_str() {
                        alerts::on_value(&s, &endpoint, p, &v["value"]);
                    }
                }
            }
            ServerEvent::Response { .. } | ServerEvent::StoreFailed { .. } => {}
        }
    }
}

/// A queue-mode client is awake after Register/Update: AWAKE now, and
/// SLEEPING once the awake time has passed without another Update (as
/// Leshan's demo reports them). The timer asks the driver for the
/// registration, so a newer Update or a deregistration cancels it.
fn watch_sleep(s: &Arc<Shared>, r: &Registration<SocketAddr>) {
    if !r.queue_mode {
        return;
    }
    let data = json!({"ep": r.endpoint});
    s.publish("AWAKE", &r.endpoint, &data);
    let weak = Arc::downgrade(s);
    let (endpoint, last_update) = (r.endpoint.clone(), r.last_update);
    let awake = s.config.awake_time;
    tokio::spawn(async move {
        tokio::time::sleep(awake).await;
        let Some(s) = weak.upgrade() else { return };
        let current = s.server.registration(&endpoint).await;
        if current.is_some_and(|c| c.last_update == last_update) {
            s.publish("SLEEPING", &endpoint, &data);
        }
    });
}

/// Leshan sends DEREGISTRATION for both ends of a registration; `expired`
/// tells them apart. The client's observations end with it.
fn deregistered(s: &Shared, registration: &Registration<SocketAddr>, expired: bool) {
    s.observations()
        .retain(|_, (ep, _)| *ep != registration.endpoint);
    s.composite_observations()
        .retain(|_, (ep, _)| *ep != registration.endpoint);
    let mut data = s.registration_json(registration);
    if let Some(o) = data.as_object_mut() {
        o.insert("expired".into(), json!(expired));
    }
    s.publish("DEREGISTRATION", &registration.endpoint, &data);
}

// ---------------------------------------------------------------------------
// Errors

#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn unknown_client(ep: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no client registered as {ep:?}"),
    )
}

// ---------------------------------------------------------------------------
// Security credentials
//
// Decision: answers never carry a PSK key (Leshan's demo returns it): the key
// is set through the API and read only by the DTLS layer, so a leaked admin
// answer or browser history does not leak it. Raw public keys are not secret
// and are returned. Store calls are short (a local SQLite statement or one
// Redis round trip with a timeout), run under the store's lock on the
// handler's task.

fn security_of(s: &Shared) -> Result<std::sync::MutexGuard<'_, Box<dyn SecurityStore>>, ApiError> {
    let store = s.config.security.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no security store is configured".into(),
        )
    })?;
    Ok(store.lock().unwrap_or_else(|e| e.into_inner()))
}

fn security_error(e: SecurityError) -> ApiError {
    match e {
        SecurityError::PskIdentityInUse { .. } => ApiError(StatusCode::CONFLICT, e.to_string()),
        SecurityError::Invalid(_) => bad_request(e.to_string()),
        SecurityError::Store(_) => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn no_security_info(ep: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no security credentials for {ep:?}"),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(what: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let bad = || bad_request(format!("{what}: expected an even number of hex digits"));
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(bad());
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// The API's JSON of `info`, without a PSK key.
fn security_json(info: &SecurityInfo) -> JsonValue {
    let mut j = json!({"endpoint": info.endpoint});
    match &info.credentials {
        Credentials::Psk { identity, .. } => j["psk"] = json!({"identity": identity}),
        Credentials::Rpk { public_key } => j["rpk"] = json!({"key": hex(public_key)}),
        Credentials::X509 => j["x509"] = json!(true),
    }
    j
}

/// Parses a PUT body: exactly one of `psk`, `rpk`, `x509`; an `endpoint`
/// field, if any, must name the URL's endpoint.
fn parse_security(ep: &str, body: &[u8]) -> Result<SecurityInfo, ApiError> {
    let j: JsonValue =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("security JSON: {e}")))?;
    let obj = j
        .as_object()
        .ok_or_else(|| bad_request("security JSON: expected an object"))?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "endpoint" | "psk" | "rpk" | "x509") {
            return Err(bad_request(format!("security JSON: unknown field {key:?}")));
        }
    }
    if let Some(e) = obj.get("endpoint") {
        if e.as_str() != Some(ep) {
            return Err(bad_request(format!(
                "security JSON: endpoint must be {ep:?}, the one in the URL"
            )));
        }
    }
    let kinds = ["psk", "rpk", "x509"]
        .iter()
        .filter(|k| obj.contains_key(**k))
        .count();
    if kinds != 1 {
        return Err(bad_request(
            "security JSON: expected exactly one of psk, rpk, x509",
        ));
    }
    let text = |v: Option<&JsonValue>, what: &str| {
        v.and_then(JsonValue::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad_request(format!("security JSON: {what} must be a string")))
    };
    let credentials = if let Some(psk) = obj.get("psk") {
        Credentials::Psk {
            identity: text(psk.get("identity"), "psk.identity")?,
            key: parse_hex("psk.key", &text(psk.get("key"), "psk.key")?)?,
        }
    } else if let Some(rpk) = obj.get("rpk") {
        Credentials::Rpk {
            public_key: parse_hex("rpk.key", &text(rpk.get("key"), "rpk.key")?)?,
        }
    } else if obj.get("x509") == Some(&json!(true)) {
        Credentials::X509
    } else {
        return Err(bad_request("security JSON: x509 must be true"));
    };
    Ok(SecurityInfo {
        endpoint: ep.to_string(),
        credentials,
    })
}

async fn list_security(State(s): State<AppState>) -> Result<Json<JsonValue>, ApiError> {
    let all = security_of(&s)?.all().map_err(security_error)?;
    Ok(Json(all.iter().map(security_json).collect()))
}

async fn get_security(
    State(s): State<AppState>,
    UrlPath(ep): UrlPath<String>,
) -> Result<Json<JsonValue>, ApiError> {
    match security_of(&s)?
        .get_by_endpoint(&ep)
        .map_err(security_error)?
    {
        Some(info) => Ok(Json(security_json(&info))),
        None => Err(no_security_info(&ep)),
    }
}

/// Adds or replaces an endpoint's credentials; answers them (without a PSK key).
async fn put_security(
    State(s): State<AppState>,
    UrlPath(ep): UrlPath<String>,
    body: Bytes,
) -> Result<Json<JsonValue>, ApiError> {
    let info = parse_security(&ep, &body)?;
    let answer = security_json(&info);
    security_of(&s)?.put(info).map_err(security_error)?;
    Ok(Json(answer))
}

async fn delete_security(
    State(s): State<AppState>,
    UrlPath(ep): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    match security_of(&s)?.remove(&ep).map_err(security_error)? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(no_security_info(&ep)),
    }
}

// ---------------------------------------------------------------------------
// Bootstrap configurations

fn bootstrap_of(s: &Shared) -> Result<&BootstrapHandle, ApiError> {
    s.config.bootstrap.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no bootstrap server runs with this server".into(),
        )
    })
}

fn config_error(e: ConfigError) -> ApiError {
    match e {
        ConfigError::Stopped | ConfigError::Store(_) => {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        ConfigError::PskIdentityInUse { .. } => ApiError(StatusCode::CONFLICT, e.to_string()),
        _ => bad_request(e.to_string()),
    }
}

fn no_bootstrap_config(ep: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no bootstrap configuration for {ep:?}"),
    )
}

/// Every configuration, as a whole `bootstrap.json` (`{"endpoints":{..}}`).
async fn list_bootstrap(State(s): State<AppState>) -> Result<Json<BootstrapFile>, ApiError> {
    let bs = bootstrap_of(&s)?;
    let mut file = BootstrapFile::default();
    for ep in bs.endpoints().await.map_err(config_error)? {
        // One removed between the two calls is simply not listed.
        if let Some(c) = bs.config(&ep).await.map_err(config_error)? {
            file.endpoints.insert(ep, c);
        }
    }
    Ok(Json(file))
}

async fn get_bootstrap(
    State(s): State<AppState>,
    UrlPath(ep): UrlPath<String>,
) -> Result<Json<BootstrapConfig>, ApiError> {
    let bs = bootstrap_of(&s)?;
    match bs.config(&ep).await.map_err(config_error)? {
        Some(c) => Ok(Json(c)),
        None => Err(no_bootstrap_config(&ep)),
    }
}

/// Adds or replaces a configuration: the body is one entry of
/// `bootstrap.json`'s `endpoints`, validated; answers the stored configuration
/// (defaults filled in).
async fn put_bootstrap(
    State(s): State<AppState>,
    UrlPath(ep): UrlPath<String>,
    body: Bytes,
) -> Result<Json<BootstrapConfig>, ApiError> {
    let bs = bootstrap_of(&s)?;
    let config: BootstrapConfig = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("bootstrap configuration JSON: {e}")))?;
    bs.put_config(&ep, config).await.map_err(config_error)?;
    match bs.config(&ep).await.map_err(config_error)? {
        Some(c) => Ok(Json(c)),
        None => Err(no_bootstrap_config(&ep)),
    }
}

async fn delete_bootstrap(
    State(s): State<AppState>,
    UrlPath(ep): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let bs = bootstrap_of(&s)?;
    if bs.remove_config(&ep).await.map_err(config_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_bootstrap_config(&ep))
    }
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no route {method} {} (see /api/openapi.json)", uri.path()),
    )
}

/// The HTTP status and metrics outcome of a failed request.
fn dm_error(e: &DmError) -> (StatusCode, &'static str) {
    match e {
        DmError::UnknownEndpoint => (StatusCode::NOT_FOUND, "error"),
        DmError::Request(RequestError::Timeout) | DmError::QueueTimeout => {
            (StatusCode::GATEWAY_TIMEOUT, "timeout")
        }
        DmError::Encode(_) => (StatusCode::BAD_REQUEST, "error"),
        DmError::Deregistered => (StatusCode::GONE, "error"),
        DmError::QueueFull | DmError::ServerStopped | DmError::Send(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "error")
        }
        DmError::Request(_) | DmError::Decode { .. } => (StatusCode::BAD_GATEWAY, "error"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "error"),
    }
}

fn dm_error_json(e: &DmError) -> JsonValue {
    let mut j = json!({"error": e.to_string()});
    if let DmError::Decode { code, .. } = e {
        j["status"] = json!(json::code_name(*code));
        j["code"] = json!(code.to_string());
    }
    j
}

// ---------------------------------------------------------------------------
// Static and informational routes

async fn ui_index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("ui/index.html"),
    )
}

async fn ui_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("ui/app.js"),
    )
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let registered = s.server.registration_count().await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(registered) + &alerts::render_metrics(&s),
    )
}

async fn openapi_json() -> Json<JsonValue> {
    Json(openapi())
}

/// Object models in the shape of Leshan's `/api/objectspecs` (without the
/// description texts, which would make the answer hundreds of kilobytes).
async fn objectspecs(State(s): State<AppState>) -> Json<JsonValue> {
    use lwm2m_core::model::Operations;
    let instancetype = |multiple: bool| if multiple { "multiple" } else { "single" };
    let specs: Vec<JsonValue> = s
        .models
        .defaults()
        .map(|o| {
            let resources: Vec<JsonValue> = o
                .resources
                .values()
                .map(|r| {
                    let ops = match r.operations {
                        Operations::None => "NONE",
                        Operations::Read => "R",
                        Operations::Write => "W",
                        Operations::ReadWrite => "RW",
                        Operations::Execute => "E",
                    };
                    json!({
                        "id": r.id, "name": r.name, "operations": ops,
                        "instancetype": instancetype(r.multiple), "mandatory": r.mandatory,
                        "type": json::type_name(r.resource_type).to_ascii_lowercase(),
                        "range": r.range, "units": r.units,
                    })
                })
                .collect();
            json!({
                "id": o.id, "name": o.name, "instancetype": instancetype(o.multiple),
                "mandatory": o.mandatory, "version": o.version,
                "lwm2mversion": o.lwm2m_version, "resourcedefs": resources,
            })
        })
        .collect();
    Json(JsonValue::Array(specs))
}

async fn list_clients(State(s): State<AppState>) -> Json<JsonValue> {
    let regs = s.server.registrations().await;
    Json(JsonValue::Array(
        regs.iter().map(|r| s.registration_json(r)).collect(),
    ))
}

async fn find(s: &Shared, ep: &str) -> Result<Registration<SocketAddr>, ApiError> {
    s.server
        .registration(ep)
        .await
        .ok_or_else(|| unknown_client(ep))
}

async fn get_client(
    State(s): State<AppState>,
    UrlPath(ep): UrlPath<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let r = find(&s, &ep).await?;
    Ok(Json(s.registration_json(&r)))
}

async fn events_sse(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let filter = q.get("ep").cloned();
    let rx = s.sse.subscribe();
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let filter = filter.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(b) => {
                        if filter.as_ref().is_some_and(|f| *f != b.endpoint) {
                            continue;
                        }
                        let ev = SseEvent::default().event(b.name).data(b.data);
                        return Some((Ok::<_, std::convert::Infallible>(ev), rx));
                    }
                    // A slow browser misses events rather than stalling others.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// ---------------------------------------------------------------------------
// Device management

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Plain,
    Discover,
    Attributes,
    Observe,
    Composite,
}

fn parse_target(rest: &str) -> Result<(Path, Action), ApiError> {
    let mut segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if segs == ["composite"] {
        // Composite operations target the client's root.
        return Ok((Path::Root, Action::Composite));
    }
    let action = match segs.last().copied() {
        Some("discover") => Action::Discover,
        Some("attributes") => Action::Attributes,
        Some("observe") => Action::Observe,
        _ => Action::Plain,
    };
    if action != Action::Plain {
        segs.pop();
    }
    let path = Path::from_segments(segs.iter().copied()).map_err(|e| {
        bad_request(format!(
            "bad LwM2M path /{rest}: {e} (expected /O[/I[/R[/RI]]] with ids 0..=65534)"
        ))
    })?;
    Ok((path, action))
}

fn parse_format(name: &str) -> Result<ContentFormat, ApiError> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "TEXT" | "PLAIN" => ContentFormat::TEXT,
        "OPAQUE" | "OCTET_STREAM" => ContentFormat::OPAQUE,
        "CBOR" => ContentFormat::CBOR,
        "TLV" => ContentFormat::TLV,
        "JSON" | "LWM2M_JSON" => ContentFormat::LWM2M_JSON,
        "SENML_JSON" => ContentFormat::SENML_JSON,
        "SENML_CBOR" => ContentFormat::SENML_CBOR,
        "LWM2M_CBOR" => ContentFormat::LWM2M_CBOR,
        other => match other.parse::<u16>() {
            Ok(n) => ContentFormat(n),
            Err(_) => {
                return Err(bad_request(format!(
                    "unknown format {name:?} (expected TEXT, OPAQUE, CBOR, TLV, JSON, SENML_JSON, SENML_CBOR, LWM2M_CBOR or a content-format number)"
                )))
            }
        },
    })
}

struct Params {
    format: Option<ContentFormat>,
    timeout: Duration,
    replace: bool,
}

fn parse_params(
    q: &HashMap<String, String>,
    default_timeout: Duration,
) -> Result<Params, ApiError> {
    let format = q.get("format").map(|f| parse_format(f)).transpose()?;
    let timeout = match q.get("timeout") {
        None => default_timeout,
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0 && *t <= 3600.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| bad_request(format!("timeout={t:?}: expected seconds in (0, 3600]")))?,
    };
    let replace = match q.get("replace").map(String::as_str) {
        None | Some("true") => true,
        Some("false") => false,
        Some(o) => {
            return Err(bad_request(format!(
                "replace={o:?}: expected true or false"
            )))
        }
    };
    Ok(Params {
        format,
        timeout,
        replace,
    })
}

/// The `paths=/3/0/9,/1/0/1` of a composite request, sorted and without
/// duplicates (so a cancel finds its observation whatever the order).
fn parse_paths(q: &HashMap<String, String>) -> Result<Vec<Path>, ApiError> {
    let raw = q
        .get("paths")
        .ok_or_else(|| bad_request("missing paths= (expected paths=/3/0/9,/1/0/1)"))?;
    let mut paths = raw
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<Path>().map_err(|e| {
                bad_request(format!(
                    "bad LwM2M path {p:?} in paths=: {e} (expected /O[/I[/R[/RI]]])"
                ))
            })
        })
        .collect::<Result<Vec<Path>, ApiError>>()?;
    if paths.is_empty() {
        return Err(bad_request(
            "paths= is empty (expected paths=/3/0/9,/1/0/1)",
        ));
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

fn paths_string(paths: &[Path]) -> String {
    paths
        .iter()
        .map(Path::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_json(body: &[u8]) -> Result<JsonValue, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("body is not JSON: {e}")))
}

fn default_write_format(r: &Registration<SocketAddr>) -> ContentFormat {
    if r.lwm2m_version >= Version::new(1, 2) {
        ContentFormat::SENML_CBOR
    } else {
        ContentFormat::TLV
    }
}

/// Percent-decodes one query item (`+` is a space, as in forms).
fn percent_decode(item: &str) -> Result<String, ApiError> {
    let bad = || bad_request(format!("bad percent-encoding in query item {item:?}"));
    let mut out = Vec::with_capacity(item.len());
    let mut bytes = item.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().ok_or_else(bad)?;
                let lo = bytes.next().ok_or_else(bad)?;
                let hex = [hi, lo];
                let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// The decoded items of a raw query string, in order (Write-Attributes
/// needs the bare `name` items that unset, which a map would lose).
fn query_items(raw: &str) -> Result<Vec<String>, ApiError> {
    raw.split('&')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn dm(
    State(s): State<AppState>,
    method: Method,
    UrlPath((ep, rest)): UrlPath<(String, String)>,
    RawQuery(raw): RawQuery,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (path, action) = parse_target(&rest)?;
    let reg = find(&s, &ep).await?;
    let server = s.server.clone();
    let epc = ep.clone();
    type Fut = std::pin::Pin<Box<dyn Future<Output = Result<DmResponse, DmError>> + Send>>;
    let (op, params, fut): (&'static str, Params, Fut) = match (method.clone(), action) {
        (Method::GET, Action::Plain) => {
            let p = parse_params(&q, s.config.default_timeout)?;
            let f = p.format;
            (
                "read",
                p,
                Box::pin(async move { server.read_as(&epc, path, f).await }),
            )
        }
        (Method::GET, Action::Discover) => {
            let p = parse_params(&q, s.config.default_timeout)?;
            (
                "discover",
                p,
                Box::pin(async move { server.discover(&epc, path).await }),
            )
        }
        (Method::PUT, Action::Plain) => {
            let p = parse_params(&q, s.config.default_timeout)?;
            let node = json::parse_node(&parse_json(&body)?, &path, &*s.models as &dyn ModelLookup)
                .map_err(bad_request)?;
            let mode = if p.replace {
                WriteMode::Replace
            } else {
                WriteMode::Partial
            };
            let f = p.format.unwrap_or_else(|| default_write_format(&reg));
            (
                "write",
                p,
                Box::pin(async move { server.write(&epc, path, mode, f, node).await }),
            )
        }
        (Method::PUT, Action::Attributes) => {
            let items = query_items(raw.as_deref().unwrap_or(""))?;
            // format/timeout/replace are the API's own parameters.
            let attrs: Vec<&str> = items
                .iter()
                .map(String::as_str)
                .filter(|i| {
                    let name = i.split('=').next().unwrap_or("");
                    !matches!(name, "timeout" | "format" | "replace")
                })
                .collect();
            let update = AttributeUpdate::from_query(attrs)
                .map_err(|e| bad_request(format!("bad attributes: {e}")))?;
            let p = parse_params(&q, s.config.default_timeout)?;
            (
                "write-attributes",
                p,
                Box::pin(async move { server.write_attributes(&epc, path, update).await }),
            )
        }
        (Method::POST, Action::Plain) => {
            let p = parse_params(&q, s.config.default_timeout)?;
            match path {
                Path::Object(o) => {
                    let inst = json::parse_instance(
                        &parse_json(&body)?,
                        o,
                        None,
                        &*s.models as &dyn ModelLookup,
                    )
                    .map_err(bad_request)?;
                    let f = p.format.unwrap_or_else(|| default_write_format(&reg));
                    (
                        "create",
                        p,
                        Box::pin(async move { server.create(&epc, o, f, inst).await }),
                    )
                }
                Path::Resource(..) => {
                    let args = String::from_utf8(body.to_vec())
                        .map_err(|_| bad_request("execute arguments must be UTF-8 text"))?;
                    (
                        "execute",
                        p,
                        Box::pin(async move {
                            let a = Some(args.as_str()).filter(|a| !a.is_empty());
                            server.execute(&epc, path, a).await
                        }),
                    )
                }
                _ => {
                    return Err(bad_request(format!(
                        "POST {path}: Execute needs a resource path, Create an object path"
                    )))
                }
            }
        }
        (Method::DELETE, Action::Plain) => {
            let p = parse_params(&q, s.config.default_timeout)?;
            (
                "delete",
                p,
                Box::pin(async move { server.delete(&epc, path).await }),
            )
        }
        (Method::POST, Action::Observe) => {
            let p = parse_params(&q, s.config.default_timeout)?;
            let f = p.format;
            let shared = s.clone();
            (
                "observe",
                p,
                Box::pin(async move {
                    let (id, r) = server.observe(&epc, path, f).await?;
                    if r.code.is_success() {
                        let mut obs = shared.observations();
                        // Keep one observation per path: the newest.
                        obs.retain(|_, (e, p)| !(*e == epc && *p == path));
                        obs.insert(id, (epc, path));
                    }
                    Ok(r)
                }),
            )
        }
        (Method::DELETE, Action::Observe) => {
            let p = parse_params(&q, s.config.default_timeout)?;
            let id = {
                let mut obs = s.observations();
                let id = obs
                    .iter()
                    .find(|(_, (e, p))| *e == ep && *p == path)
                    .map(|(id, _)| *id)
                    .ok_or_else(|| {
                        ApiError(
                            StatusCode::NOT_FOUND,
                            format!("no observation of {path} on {ep:?}"),
                        )
                    })?;
                obs.remove(&id);
                id
            };
            (
                "cancel-observe",
                p,
                Box::pin(async move { server.cancel_observe(id).await }),
            )
        }
        (Method::GET, Action::Composite) => {
            let paths = parse_paths(&q)?;
            let p = parse_params(&q, s.config.default_timeout)?;
            let f = p.format.unwrap_or(ContentFormat::SENML_CBOR);
            (
                "read-composite",
                p,
                Box::pin(async move { server.read_composite(&epc, paths, f, Some(f)).await }),
            )
        }
        (Method::PUT, Action::Composite) => {
            let p = parse_params(&q, s.config.default_timeout)?;
            let values = json::parse_values(&parse_json(&body)?, &*s.models as &dyn ModelLookup)
                .map_err(bad_request)?;
            let f = p.format.unwrap_or(ContentFormat::SENML_CBOR);
            (
                "write-composite",
                p,
                Box::pin(async move { server.write_composite(&epc, values, f).await }),
            )
        }
        (Method::POST, Action::Composite) => {
            let paths = parse_paths(&q)?;
            let p = parse_params(&q, s.config.default_timeout)?;
            let f = p.format.unwrap_or(ContentFormat::SENML_CBOR);
            let shared = s.clone();
            (
                "observe-composite",
                p,
                Box::pin(async move {
                    let (id, r) = server
                        .observe_composite(&epc, paths.clone(), f, Some(f))
                        .await?;
                    if r.code.is_success() {
                        let mut obs = shared.composite_observations();
                        // Keep one observation per path list: the newest.
                        obs.retain(|_, (e, ps)| !(*e == epc && *ps == paths));
                        obs.insert(id, (epc, paths));
                    }
                    Ok(r)
                }),
            )
        }
        (Method::DELETE, Action::Composite) => {
            let paths = parse_paths(&q)?;
            let p = parse_params(&q, s.config.default_timeout)?;
            let id = {
                let mut obs = s.composite_observations();
                let id = obs
                    .iter()
                    .find(|(_, (e, ps))| *e == ep && *ps == paths)
                    .map(|(id, _)| *id)
                    .ok_or_else(|| {
                        ApiError(
                            StatusCode::NOT_FOUND,
                            format!(
                                "no composite observation of {} on {ep:?}",
                                paths_string(&paths)
                            ),
                        )
                    })?;
                obs.remove(&id);
                id
            };
            (
                "cancel-observe-composite",
                p,
                Box::pin(async move { server.cancel_observe(id).await }),
            )
        }
        (m, a) => {
            return Err(ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{m} is not allowed on {}", describe(a)),
            ))
        }
    };

    // Every request has an id and runs in its own task, which counts it and
    // publishes its result as a REQUEST_RESULT event whenever the driver
    // has it: for a sleeping client after its wake-up, for a caller whose
    // `timeout` passed when the device answers late (an Observe answered
    // late is still recorded, so it can be cancelled by path).
    let request_id = format!("r{}", s.next_request.fetch_add(1, Ordering::Relaxed));
    let task = tokio::spawn(run_request(
        s.clone(),
        request_id.clone(),
        ep.clone(),
        path,
        op,
        fut,
    ));
    if s.sleeping(&reg) {
        let body = json!({"requestId": request_id, "status": "QUEUED"});
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let (status, mut body) = match tokio::time::timeout(params.timeout, task).await {
        Ok(Err(join)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("{op} {path} failed: {join}")}),
        ),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            json!({"error": format!(
                "{ep:?} did not answer {op} {path} within {:?} (a later answer comes as a REQUEST_RESULT event)",
                params.timeout
            )}),
        ),
        Ok(Ok((status, body))) => (status, body),
    };
    body["requestId"] = json!(request_id);
    Ok((status, Json(body)).into_response())
}

/// Runs one device-management request to its end: counts it, publishes
/// its result as a REQUEST_RESULT event and returns the HTTP status and
/// body it maps to.
async fn run_request(
    shared: AppState,
    request_id: String,
    ep: String,
    path: Path,
    op: &'static str,
    fut: impl Future<Output = Result<DmResponse, DmError>>,
) -> (StatusCode, JsonValue) {
    let start = std::time::Instant::now();
    let (status, body) = match fut.await {
        Ok(r) => {
            shared.metrics.request(op, &outcome_of(&r), start.elapsed());
            (StatusCode::OK, json::response_json(&r))
        }
        Err(e) => {
            let (status, outcome) = dm_error(&e);
            shared.metrics.request(op, outcome, start.elapsed());
            (status, dm_error_json(&e))
        }
    };
    let data = json!({
        "requestId": request_id, "ep": ep, "path": path.to_string(),
        "operation": op, "result": body,
    });
    shared.publish("REQUEST_RESULT", &ep, &data);
    (status, body)
}

fn outcome_of(r: &DmResponse) -> String {
    if r.code.is_success() {
        "success".into()
    } else {
        r.code.to_string()
    }
}

fn describe(a: Action) -> &'static str {
    match a {
        Action::Plain => "a client path (GET read, PUT write, POST execute/create, DELETE delete)",
        Action::Discover => ".../discover (GET only)",
        Action::Attributes => ".../attributes (PUT only)",
        Action::Observe => ".../observe (POST observe, DELETE cancel)",
        Action::Composite => ".../composite (GET read, PUT write, POST observe, DELETE cancel)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("3/0/1").unwrap(),
            (Path::Resource(3, 0, 1), Action::Plain)
        );
        assert_eq!(
            parse_target("3/0/discover").unwrap(),
            (Path::Instance(3, 0), Action::Discover)
        );
        assert_eq!(
            parse_target("3/observe").unwrap(),
            (Path::Object(3), Action::Observe)
        );
        assert!(parse_target("3/x").is_err());
        assert!(parse_target("3/65535").is_err());
        assert!(parse_target("1/2/3/4/5").is_err());
    }

    #[test]
    fn query_items_are_percent_decoded() {
        assert_eq!(
            query_items("pmin=10&gt%3D2.5&&lt").unwrap(),
            ["pmin=10", "gt=2.5", "lt"]
        );
        assert!(query_items("pmin=%4").is_err());
        assert!(query_items("pmin=%zz").is_err());
        assert!(query_items("pmin=%ff").is_err(), "not UTF-8");
    }

    #[test]
    fn formats_and_params() {
        assert_eq!(parse_format("tlv").unwrap(), ContentFormat::TLV);
        assert_eq!(
            parse_format("SENML_CBOR").unwrap(),
            ContentFormat::SENML_CBOR
        );
        assert_eq!(parse_format("11544").unwrap(), ContentFormat::LWM2M_CBOR);
        assert!(parse_format("XML").is_err());
        let q: HashMap<String, String> = [("timeout".to_string(), "0".to_string())].into();
        assert!(parse_params(&q, Duration::from_secs(5)).is_err());
        let q: HashMap<String, String> = [("replace".to_string(), "no".to_string())].into();
        assert!(parse_params(&q, Duration::from_secs(5)).is_err());
    }
}
