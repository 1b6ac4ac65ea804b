//! Firmware update campaigns in the admin API (`/api/campaigns`), over
//! [`crate::campaign::CampaignManager`]: create, list, show with
//! per-device status, pause, resume, cancel. Every change is a `CAMPAIGN`
//! event on `/api/events`; finished campaigns are counted by outcome in
//! `lwm2m_campaigns_total`, their devices in `lwm2m_firmware_updates_total`.

use std::sync::{Arc, Mutex, Weak};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value as JsonValue};

use super::{bad_request, ApiError, AppState, Shared};
use crate::campaign::{
    Campaign, CampaignChange, CampaignError, CampaignManager, CampaignSpec, CampaignStore,
    MemoryCampaignStore,
};

/// The campaign store the admin router's [`CampaignManager`] takes (once),
/// and, once it runs, that manager: a clone of the slot kept by whoever
/// built the router stops its campaigns at shutdown ([`CampaignStoreSlot::stop`]).
#[derive(Clone, Default)]
pub struct CampaignStoreSlot {
    store: Arc<Mutex<Option<Box<dyn CampaignStore>>>>,
    manager: Arc<std::sync::OnceLock<CampaignManager>>,
}

impl std::fmt::Debug for CampaignStoreSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CampaignStoreSlot")
    }
}

impl CampaignStoreSlot {
    /// A slot holding `store`.
    pub fn new(store: Box<dyn CampaignStore>) -> CampaignStoreSlot {
        CampaignStoreSlot {
            store: Arc::new(Mutex::new(Some(store))),
            manager: Arc::default(),
        }
    }

    fn take(&self) -> Option<Box<dyn CampaignStore>> {
        self.store.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Stops running the campaigns of the router this slot went to
    /// ([`CampaignManager::stop`]): with a shared Redis their leases are
    /// released at once, so another node takes them over without waiting
    /// for the leases to expire. For a node's graceful shutdown; nothing
    /// happens if no manager runs.
    pub fn stop(&self) {
        if let Some(m) = self.manager.get() {
            m.stop();
        }
    }
}

/// Starts the campaign manager of the router whose state is `shared`
/// (needs a firmware store; without one the campaign routes answer 503).
pub(super) fn start(shared: &Arc<Shared>) {
    let Some(firmware) = shared.config.firmware.clone() else {
        return;
    };
    let store = shared
        .config
        .campaign_store
        .take()
        .unwrap_or_else(|| Box::new(MemoryCampaignStore::default()));
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let listener = Box::new(move |c: &Campaign, change: CampaignChange| {
        if let Some(s) = weak.upgrade() {
            changed(&s, c, change);
        }
    });
    match CampaignManager::start(
        shared.server.clone(),
        firmware,
        shared.config.firmware_uris.clone(),
        store,
        listener,
    ) {
        Ok(m) => {
            let _ = shared.config.campaign_store.manager.set(m.clone());
            let _ = shared.campaigns.set(m);
        }
        Err(e) => tracing::error!("campaigns not loaded: {e}"),
    }
}

/// Publishes a change as a `CAMPAIGN` event (a device's change under its
/// endpoint name, so `/api/events?ep=` shows it).
fn changed(s: &Shared, c: &Campaign, change: CampaignChange) {
    let mut data = summary(c);
    let mut endpoint = "";
    match change {
        CampaignChange::Created => data["change"] = json!("created"),
        CampaignChange::Status => {
            data["change"] = json!("status");
            if c.info.status.is_final() {
                s.metrics.campaign_finished(c.info.status.name());
            }
        }
        CampaignChange::Device(i) => {
            data["change"] = json!("device");
            if let Some(d) = c.devices.get(i) {
                endpoint = &d.endpoint;
                data["device"] = json!(d);
                if d.status.is_final() {
                    s.metrics
                        .firmware_update(c.info.delivery.name(), d.status.name());
                }
            }
        }
    }
    s.publish("CAMPAIGN", endpoint, &data);
    if let CampaignChange::Device(i) = change {
        if let Some(d) = c.devices.get(i) {
            super::alerts::on_firmware(s, &d.endpoint, d.status);
        }
    }
}

/// The campaign without its device list, with counts per status.
fn summary(c: &Campaign) -> JsonValue {
    let mut v = json!(c.info);
    v["counts"] = json!(c.counts());
    v["in_flight"] = json!(c.in_flight());
    v
}

fn manager(s: &Shared) -> Result<&CampaignManager, ApiError> {
    s.campaigns.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "campaigns need a firmware store, and none is configured".into(),
        )
    })
}

fn campaign_error(e: CampaignError) -> ApiError {
    match e {
        CampaignError::Invalid(m) => bad_request(m),
        CampaignError::Unknown(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
        CampaignError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
        CampaignError::Store(_) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn full(c: &Campaign) -> JsonValue {
    let mut v = summary(c);
    v["devices"] = json!(c.devices);
    v
}

pub(super) async fn create(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<JsonValue>), ApiError> {
    let spec: CampaignSpec = serde_json::from_slice(&body).map_err(|e| {
        bad_request(format!(
            "body: {e}; expected {{\"name\",\"package\",\"delivery\":\"push\"|\"coap\"|\"http\",\"targets\":[..],\"waves\":[2,\"50%\"],\"max_concurrent\",\"failure_threshold\"}}"
        ))
    })?;
    let c = manager(&s)?.create(spec).map_err(campaign_error)?;
    Ok((StatusCode::CREATED, Json(full(&c))))
}

pub(super) async fn list(State(s): State<AppState>) -> Result<Json<JsonValue>, ApiError> {
    let all: Vec<JsonValue> = manager(&s)?.list().iter().map(summary).collect();
    Ok(Json(json!(all)))
}

pub(super) async fn get_one(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let c = manager(&s)?
        .get(&id)
        .ok_or_else(|| campaign_error(CampaignError::Unknown(id)))?;
    Ok(Json(full(&c)))
}

pub(super) async fn control(
    State(s): State<AppState>,
    UrlPath((id, action)): UrlPath<(String, String)>,
) -> Result<Json<JsonValue>, ApiError> {
    let m = manager(&s)?;
    let c = match action.as_str() {
        "pause" => m.pause(&id),
        "resume" => m.resume(&id),
        "cancel" => m.cancel(&id),
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no campaign action {other:?}: pause, resume or cancel"),
            ))
        }
    }
    .map_err(campaign_error)?;
    Ok(Json(full(&c)))
}
