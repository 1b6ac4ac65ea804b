//! Firmware packages in the admin API (`/api/firmware`) and their HTTP
//! download (`GET /fw/{id}` with `Range`, for devices pulling over
//! `http://`).
//!
//! Decisions: an upload is the raw body (`application/octet-stream` or
//! anything else), at most [`AdminConfig::max_firmware_size`] bytes (413
//! beyond); the server names it with 16 random hex digits. The HTTP
//! download answers one `Range: bytes=` range (`N-`, `N-M`, `-N`) with 206
//! and `Content-Range`, a range that starts past the end with 416, and
//! anything it does not understand (several ranges, other units) with the
//! whole package (RFC 9110 lets a server ignore `Range`). The body is
//! streamed from the store in chunks, never held whole.
//!
//! Jobs: `POST /api/clients/{ep}/firmware` `{"package":ID,"delivery":
//! "push"|"coap"|"http"[,"timeout":SECONDS]}` answers 202 with a job
//! (`j1`, ...) that runs [`update_device`] in a task; `GET /api/jobs[/{id}]`
//! shows its status (pending, delivering, downloaded, updating, succeeded,
//! failed with a reason) and each change is a `FIRMWARE` event on
//! `/api/events`. One job per device at a time (409 otherwise). Jobs live
//! in memory: a restart forgets them (the device keeps its own state).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value as JsonValue};

use super::{bad_request, now_ms, ApiError, AppState};
use crate::firmware::{FirmwarePackage, FirmwareStoreError, SharedFirmwareStore};
use crate::fota::{update_device, Delivery, Phase, UpdatePlan};

/// Bytes read from the store per chunk of an HTTP download.
const HTTP_CHUNK: usize = 64 * 1024;

pub(super) fn store_of(s: &super::Shared) -> Result<&SharedFirmwareStore, ApiError> {
    s.config.firmware.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no firmware store is configured".into(),
        )
    })
}

pub(super) fn store_error(e: FirmwareStoreError) -> ApiError {
    match e {
        FirmwareStoreError::InvalidId(_) => bad_request(e.to_string()),
        FirmwareStoreError::Exists(_) => ApiError(StatusCode::CONFLICT, e.to_string()),
        FirmwareStoreError::Database(_) | FirmwareStoreError::Io(_) => {
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

fn no_package(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no firmware package {id:?}"))
}

/// The package `id`, or 404.
pub(super) fn package(s: &super::Shared, id: &str) -> Result<FirmwarePackage, ApiError> {
    store_of(s)?
        .get(id)
        .map_err(store_error)?
        .ok_or_else(|| no_package(id))
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    lwm2m_core::rng::RandomSource::fill_bytes(&mut crate::driver::OsRandom, &mut b);
    super::hex(&b)
}

pub(super) async fn upload(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<(StatusCode, Json<FirmwarePackage>), ApiError> {
    let store = store_of(&s)?;
    let name = q.get("name").cloned().unwrap_or_default();
    let version = q.get("version").cloned().unwrap_or_default();
    if name.is_empty() || version.is_empty() {
        return Err(bad_request(
            "give the package's name and version: POST /api/firmware?name=..&version=.. with the image as body",
        ));
    }
    if body.is_empty() {
        return Err(bad_request("the body (the firmware image) is empty"));
    }
    let package = FirmwarePackage::describe(&random_id(), &name, &version, &body, now_ms());
    store.put(&package, &body).map_err(store_error)?;
    tracing::info!(id = %package.id, name = %package.name, version = %package.version, size = package.size, "firmware package stored");
    Ok((StatusCode::CREATED, Json(package)))
}

pub(super) async fn list(State(s): State<AppState>) -> Result<Json<JsonValue>, ApiError> {
    let all = store_of(&s)?.list().map_err(store_error)?;
    Ok(Json(json!(all)))
}

pub(super) async fn get_one(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<FirmwarePackage>, ApiError> {
    Ok(Json(package(&s, &id)?))
}

pub(super) async fn delete_one(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    if store_of(&s)?.delete(&id).map_err(store_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_package(&id))
    }
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// No usable range: the whole body.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// A range that selects nothing (416).
    Unsatisfiable,
}

fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // A suffix: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => RangeAsk::Unsatisfiable,
            Ok(n) if size > 0 => RangeAsk::Part(size.saturating_sub(n), size - 1),
            Ok(_) => RangeAsk::Unsatisfiable,
            Err(_) => RangeAsk::Whole,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeAsk::Whole;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match last.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return RangeAsk::Whole,
        }
    };
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(start, end.min(size - 1))
}

/// `GET /fw/{id}`: the package over HTTP, with `Range`.
pub(super) async fn download(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let package = package(&s, &id)?;
    let store = store_of(&s)?.clone();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, start, end) = match parse_range(range.as_deref(), package.size) {
        RangeAsk::Whole => (StatusCode::OK, 0, package.size),
        RangeAsk::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        RangeAsk::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{}", package.size))],
            )
                .into_response())
        }
    };
    let stream = futures_util::stream::unfold(start, move |at| {
        let store = store.clone();
        let id = id.clone();
        async move {
            if at >= end {
                return None;
            }
            let want = usize::try_from(end - at)
                .unwrap_or(usize::MAX)
                .min(HTTP_CHUNK);
            match store.read_range(&id, at, want) {
                Ok(Some(b)) if !b.is_empty() => {
                    let next = at + b.len() as u64;
                    Some((Ok::<_, std::io::Error>(Bytes::from(b)), next))
                }
                // Deleted or truncated while being downloaded: end the
                // body short, the client sees fewer bytes than announced.
                Ok(_) => Some((Err(std::io::Error::other("package gone")), end)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), end)),
            }
        }
    });
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{}\"", package.sha256));
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", end - 1, package.size),
        );
    }
    resp.body(Body::from_stream(stream))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

// ---------------------------------------------------------------------------
// Update jobs: one device, one package

/// Finished jobs kept for `GET /api/jobs` (the oldest go first).
const KEPT_JOBS: usize = 1000;

/// One device's firmware update as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Job {
    id: String,
    endpoint: String,
    package: String,
    delivery: Delivery,
    status: Phase,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Milliseconds since the Unix epoch.
    created: u64,
    updated: u64,
}

/// The jobs, by id (ids count up, so the map is in creation order).
#[derive(Debug, Default)]
pub(super) struct Jobs {
    next: u64,
    all: BTreeMap<u64, Job>,
}

fn jobs(s: &super::Shared) -> std::sync::MutexGuard<'_, Jobs> {
    s.jobs.lock().unwrap_or_else(|e| e.into_inner())
}

fn job_number(id: &str) -> Option<u64> {
    id.strip_prefix('j')?.parse().ok()
}

/// Sets job `n`'s phase (and reason) and publishes it as a `FIRMWARE` event.
fn set_phase(s: &super::Shared, n: u64, phase: Phase, reason: Option<String>) {
    let job = {
        let mut j = jobs(s);
        let Some(job) = j.all.get_mut(&n) else { return };
        job.status = phase;
        job.reason = reason;
        job.updated = now_ms();
        job.clone()
    };
    if phase.is_final() {
        s.metrics.firmware_update(job.delivery.name(), phase.name());
    }
    s.publish("FIRMWARE", &job.endpoint, &json!(job));
    super::alerts::on_firmware(s, &job.endpoint, phase);
}

#[derive(serde::Deserialize)]
pub(super) struct UpdateBody {
    package: String,
    delivery: String,
    /// Seconds for each of download and update (default 600).
    timeout: Option<u64>,
}

/// `POST /api/clients/{ep}/firmware`: starts a job, answers 202 with it.
pub(super) async fn start_job(
    State(s): State<AppState>,
    UrlPath(ep): UrlPath<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<JsonValue>), ApiError> {
    let body: UpdateBody = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "body: {e}; expected {{\"package\":ID,\"delivery\":\"push\"|\"coap\"|\"http\"}}"
        ))
    })?;
    let delivery = Delivery::parse(&body.delivery).ok_or_else(|| {
        bad_request(format!(
            "delivery {:?}: expected push, coap or http",
            body.delivery
        ))
    })?;
    let package = package(&s, &body.package)?;
    if s.server.registration(&ep).await.is_none() {
        return Err(super::unknown_client(&ep));
    }
    let mut plan = UpdatePlan::new(&ep, package, delivery);
    if let Some(t) = body.timeout {
        let t = std::time::Duration::from_secs(t.clamp(1, 86_400));
        plan.download_timeout = t;
        plan.update_timeout = t;
    }
    let (n, job) = {
        let mut j = jobs(&s);
        if j.all
            .values()
            .any(|job| job.endpoint == ep && !job.status.is_final())
        {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("a firmware update of {ep:?} is already running"),
            ));
        }
        j.next += 1;
        let n = j.next;
        let job = Job {
            id: format!("j{n}"),
            endpoint: ep.clone(),
            package: plan.package.id.clone(),
            delivery,
            status: Phase::Pending,
            reason: None,
            created: now_ms(),
            updated: now_ms(),
        };
        j.all.insert(n, job.clone());
        while j.all.len() > KEPT_JOBS {
            let oldest_done = j
                .all
                .iter()
                .find(|(_, job)| job.status.is_final())
                .map(|(k, _)| *k);
            match oldest_done {
                Some(k) => j.all.remove(&k),
                None => break,
            };
        }
        (n, job)
    };
    s.publish("FIRMWARE", &ep, &json!(job));
    let weak = Arc::downgrade(&s);
    let store = store_of(&s)?.clone();
    let server = s.server.clone();
    let uris = s.config.firmware_uris.clone();
    tokio::spawn(async move {
        let progress = |phase| {
            if let Some(s) = weak.upgrade() {
                set_phase(&s, n, phase, None);
            }
        };
        let r = update_device(&server, store.as_ref(), &uris, &plan, progress).await;
        if let (Err(e), Some(s)) = (r, weak.upgrade()) {
            tracing::warn!(endpoint = %plan.endpoint, "firmware update failed: {e}");
            set_phase(&s, n, Phase::Failed, Some(e.to_string()));
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!(job))))
}

pub(super) async fn list_jobs(State(s): State<AppState>) -> Json<JsonValue> {
    let all: Vec<Job> = jobs(&s).all.values().cloned().collect();
    Json(json!(all))
}

pub(super) async fn get_job(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Job>, ApiError> {
    job_number(&id)
        .and_then(|n| jobs(&s).all.get(&n).cloned())
        .map(Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no firmware job {id:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=2-"), 10), RangeAsk::Part(2, 9));
        assert_eq!(parse_range(Some("bytes=2-4"), 10), RangeAsk::Part(2, 4));
        assert_eq!(parse_range(Some("bytes=2-40"), 10), RangeAsk::Part(2, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeAsk::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=1-2,4-5"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=1-2"), 10), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeAsk::Whole);
    }
}
