//! Fleet monitoring: alert rules and the alerts they raise
//! (`/api/alerts/rules`, `/api/alerts`, `POST /api/alerts/{id}/ack`).
//!
//! A `threshold` rule is evaluated on every notification and Send value of
//! its path; an `offline` rule raises when a registration expires (no
//! De-register). An alert is raised once per (rule, endpoint) while its
//! condition holds and cleared when it stops holding (a threshold value back
//! on the good side, an offline device registering again). Every change is
//! an `ALERT` event on `/api/events`, and POSTed to the rule's `webhook`
//! (raised/cleared). Rules persist in `alerts.sqlite3` when
//! [`super::AdminConfig::alerts_dir`] is set; alerts are kept in memory.

use std::collections::{BTreeMap, VecDeque};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::Json;
use lwm2m_core::model::Path;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as JsonValue};

use super::{bad_request, now_ms, ApiError, AppState, Shared};

/// Cleared alerts kept for `?all=true`, newest first.
const HISTORY: usize = 1000;
/// Most rules (each is evaluated on every notification).
const MAX_RULES: usize = 1000;

/// A comparison of a threshold rule: the alert condition is `value OP limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
        }
    }
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleKind {
    /// A numeric resource compared with a limit on each reported value.
    Threshold {
        /// The resource, e.g. `/3/0/9`.
        path: String,
        /// The comparison that raises the alert.
        op: Op,
        /// The limit.
        value: f64,
    },
    /// A registration that expired without De-register.
    Offline,
    /// A firmware update (one-device job or campaign device) that ended in
    /// failure; cleared by the endpoint's next successful update.
    FirmwareFailed,
}

impl RuleKind {
    /// The kind's name in the API and the metrics.
    fn name(&self) -> &'static str {
        match self {
            RuleKind::Threshold { .. } => "threshold",
            RuleKind::Offline => "offline",
            RuleKind::FirmwareFailed => "firmware_failed",
        }
    }
}

/// A rule as posted (without id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// Only endpoints whose name starts with this.
    #[serde(default)]
    pub endpoint_prefix: Option<String>,
    /// `http://host:port/path` to POST each raised/cleared alert to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// The condition.
    #[serde(flatten)]
    pub kind: RuleKind,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// `rule1`, `rule2`, ...
    pub id: String,
    /// The rule as posted.
    #[serde(flatten)]
    pub spec: RuleSpec,
}

/// Why a rule body was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleError {
    /// Not the JSON expected.
    Json(String),
    /// `path` is not a resource path.
    Path(String),
    /// `value` is NaN or infinite.
    Value,
    /// `webhook` is not `http://host:port/path`.
    Webhook(String),
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleError::Json(e) => write!(
                f,
                "rule JSON: {e}; expected {{\"kind\":\"threshold\",\"path\":\"/3/0/9\",\"op\":\"<\"|\"<=\"|\">\"|\">=\",\"value\":20}} or {{\"kind\":\"offline\"}} or {{\"kind\":\"firmware_failed\"}}, optional \"name\", \"endpoint_prefix\""
            ),
            RuleError::Path(p) => write!(
                f,
                "rule path {p:?}: expected a resource path like /3/0/9"
            ),
            RuleError::Value => f.write_str("rule value: expected a finite number"),
            RuleError::Webhook(w) => write!(
                f,
                "rule webhook {w:?}: expected http://host:port/path (https is not supported)"
            ),
        }
    }
}

/// Parses and checks a rule body.
pub fn parse_rule(body: &[u8]) -> Result<RuleSpec, RuleError> {
    let spec: RuleSpec =
        serde_json::from_slice(body).map_err(|e| RuleError::Json(e.to_string()))?;
    if let RuleKind::Threshold { path, value, .. } = &spec.kind {
        match path.parse::<Path>() {
            Ok(Path::Resource(..)) | Ok(Path::ResourceInstance(..)) => {}
            _ => return Err(RuleError::Path(path.clone())),
        }
        if !value.is_finite() {
            return Err(RuleError::Value);
        }
    }
    if let Some(w) = &spec.webhook {
        if split_url(w).is_none() {
            return Err(RuleError::Webhook(w.clone()));
        }
    }
    Ok(spec)
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    let path_ok = path.chars().all(|c| c.is_ascii_graphic());
    (!authority.is_empty() && authority.chars().all(ok) && path_ok && url.len() <= 2048)
        .then_some((authority, path))
}

/// POSTs `body` to `url` (HTTP/1.1, one request per connection, 5 s for
/// the whole exchange): whether a 2xx status came back.
async fn post_webhook(url: &str, body: &str) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (authority, path) = split_url(url).ok_or("not an http:// URL")?;
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        // The status line is all we need; bound what the peer can send.
        let mut head = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let m = conn
                .read(&mut head[n..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if m == 0 {
                break;
            }
            n += m;
        }
        let line = String::from_utf8_lossy(&head[..n]).into_owned();
        match line.get(9..10) {
            Some("2") if line.starts_with("HTTP/1.") => Ok(()),
            _ => Err(format!(
                "answer {:?}, expected a 2xx status",
                line.lines().next().unwrap_or("")
            )),
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
}

impl RuleSpec {
    fn applies_to(&self, endpoint: &str) -> bool {
        self.endpoint_prefix
            .as_deref()
            .is_none_or(|p| endpoint.starts_with(p))
    }

    /// For a threshold rule on `path`: whether `value` is on the alert side
    /// (`None`: the rule does not watch this endpoint and path).
    pub fn evaluate(&self, endpoint: &str, path: &str, value: f64) -> Option<bool> {
        match &self.kind {
            RuleKind::Threshold {
                path: p,
                op,
                value: limit,
            } if same_path(p, path) && self.applies_to(endpoint) => Some(op.holds(value, *limit)),
            _ => None,
        }
    }
}

fn same_path(a: &str, b: &str) -> bool {
    match (a.parse::<Path>(), b.parse::<Path>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// `a1`, `a2`, ...
    pub id: String,
    /// The rule that raised it.
    pub rule: String,
    /// `threshold` or `offline`.
    pub kind: &'static str,
    /// The device.
    pub endpoint: String,
    /// The value that raised it (threshold).
    pub value: Option<f64>,
    /// `active` or `cleared`.
    pub state: &'static str,
    /// Acknowledged by an operator.
    pub acked: bool,
    /// Unix ms.
    pub raised_at: u64,
    /// Unix ms.
    pub cleared_at: Option<u64>,
}

/// Rules, active alerts and the history of cleared ones.
#[derive(Debug, Default)]
pub struct Alerts {
    next_rule: u64,
    next_alert: u64,
    rules: BTreeMap<String, Rule>,
    /// (rule id, endpoint) → alert.
    active: BTreeMap<(String, String), Alert>,
    cleared: VecDeque<Alert>,
    raised_total: u64,
    /// Webhook POSTs that failed (counted from their tasks).
    webhook_failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Where rules persist (`alerts.sqlite3`); `None`: memory only.
    #[cfg(feature = "sqlite")]
    db: Option<rusqlite::Connection>,
}

/// The rules file in a data directory.
#[cfg(feature = "sqlite")]
pub const ALERTS_FILE: &str = "alerts.sqlite3";

impl Alerts {
    /// Rules kept in `dir/alerts.sqlite3` (created if missing), loaded now.
    #[cfg(feature = "sqlite")]
    pub fn open(dir: &std::path::Path) -> Result<Alerts, String> {
        let db = rusqlite::Connection::open(dir.join(ALERTS_FILE))
            .map_err(|e| format!("{}: {e}", dir.join(ALERTS_FILE).display()))?;
        db.execute(
            "CREATE TABLE IF NOT EXISTS rules (n INTEGER PRIMARY KEY AUTOINCREMENT, json TEXT NOT NULL)",
            [],
        )
        .map_err(|e| format!("alert rules table: {e}"))?;
        let mut alerts = Alerts::default();
        {
            let mut st = db
                .prepare("SELECT n, json FROM rules ORDER BY n")
                .map_err(|e| format!("alert rules: {e}"))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| format!("alert rules: {e}"))?;
            for row in rows {
                let (n, text) = row.map_err(|e| format!("alert rules: {e}"))?;
                // A row this version cannot read is skipped, not fatal.
                match parse_rule(text.as_bytes()) {
                    Ok(spec) => {
                        let n = u64::try_from(n).unwrap_or(0);
                        let id = format!("rule{n}");
                        alerts.rules.insert(id.clone(), Rule { id, spec });
                        alerts.next_rule = alerts.next_rule.max(n);
                    }
                    Err(e) => tracing::warn!("alert rule {n} skipped: {e}"),
                }
            }
        }
        // AUTOINCREMENT keeps the highest number ever used: a deleted
        // rule's id is not handed out again after a restart.
        let seq: Option<i64> = db
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'rules'",
                [],
                |r| r.get(0),
            )
            .ok();
        let seq = seq.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        alerts.next_rule = alerts.next_rule.max(seq);
        alerts.db = Some(db);
        Ok(alerts)
    }

    fn persist(&self, n: u64, spec: Option<&RuleSpec>) {
        #[cfg(feature = "sqlite")]
        if let Some(db) = &self.db {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            let r = match spec {
                Some(spec) => db.execute(
                    "INSERT OR REPLACE INTO rules (n, json) VALUES (?1, ?2)",
                    rusqlite::params![n, json!(spec).to_string()],
                ),
                None => db.execute("DELETE FROM rules WHERE n = ?1", [n]),
            };
            if let Err(e) = r {
                tracing::error!("alert rule {n} not saved: {e}");
            }
        }
        #[cfg(not(feature = "sqlite"))]
        let _ = (n, spec);
    }
}

/// A change to publish.
pub type Change = (&'static str, Alert);

impl Alerts {
    /// Adds a rule.
    pub fn add_rule(&mut self, spec: RuleSpec) -> Option<Rule> {
        if self.rules.len() >= MAX_RULES {
            return None;
        }
        self.next_rule += 1;
        let rule = Rule {
            id: format!("rule{}", self.next_rule),
            spec,
        };
        self.rules.insert(rule.id.clone(), rule.clone());
        self.persist(self.next_rule, Some(&rule.spec));
        Some(rule)
    }

    /// Removes a rule and its active alerts (cleared).
    pub fn remove_rule(&mut self, id: &str) -> Option<(Rule, Vec<Change>)> {
        let rule = self.rules.remove(id)?;
        if let Some(n) = id.strip_prefix("rule").and_then(|n| n.parse().ok()) {
            self.persist(n, None);
        }
        let keys: Vec<_> = self.active.keys().filter(|k| k.0 == id).cloned().collect();
        let changes = keys.into_iter().filter_map(|k| self.clear(&k)).collect();
        Some((rule, changes))
    }

    fn raise(&mut self, rule: &Rule, endpoint: &str, value: Option<f64>) -> Option<Change> {
        let key = (rule.id.clone(), endpoint.to_string());
        if self.active.contains_key(&key) {
            return None;
        }
        self.next_alert += 1;
        self.raised_total += 1;
        let alert = Alert {
            id: format!("a{}", self.next_alert),
            rule: rule.id.clone(),
            kind: rule.spec.kind.name(),
            endpoint: endpoint.to_string(),
            value,
            state: "active",
            acked: false,
            raised_at: now_ms(),
            cleared_at: None,
        };
        self.active.insert(key, alert.clone());
        Some(("raised", alert))
    }

    fn clear(&mut self, key: &(String, String)) -> Option<Change> {
        let mut alert = self.active.remove(key)?;
        alert.state = "cleared";
        alert.cleared_at = Some(now_ms());
        self.cleared.push_front(alert.clone());
        self.cleared.truncate(HISTORY);
        Some(("cleared", alert))
    }

    /// A value of `path` reported by `endpoint`.
    pub fn value(&mut self, endpoint: &str, path: &str, value: f64) -> Vec<Change> {
        // Evaluated before cloning: a notification usually concerns none
        // of the rules, and it comes for every notified value.
        let hits: Vec<(Rule, bool)> = self
            .rules
            .values()
            .filter_map(|r| {
                let holds = r.spec.evaluate(endpoint, path, value)?;
                Some((r.clone(), holds))
            })
            .collect();
        hits.iter()
            .filter_map(|(r, holds)| match holds {
                true => self.raise(r, endpoint, Some(value)),
                false => self.clear(&(r.id.clone(), endpoint.to_string())),
            })
            .collect()
    }

    /// `endpoint`'s registration expired (`true`) or it registered (`false`).
    pub fn offline(&mut self, endpoint: &str, offline: bool) -> Vec<Change> {
        self.condition(&RuleKind::Offline, endpoint, offline)
    }

    /// A firmware update of `endpoint` ended: failed (`true`) or succeeded.
    pub fn firmware(&mut self, endpoint: &str, failed: bool) -> Vec<Change> {
        self.condition(&RuleKind::FirmwareFailed, endpoint, failed)
    }

    /// Raises (`holds`) or clears the alerts of the rules of `kind` that
    /// apply to `endpoint`.
    fn condition(&mut self, kind: &RuleKind, endpoint: &str, holds: bool) -> Vec<Change> {
        let rules: Vec<Rule> = self
            .rules
            .values()
            .filter(|r| r.spec.kind == *kind && r.spec.applies_to(endpoint))
            .cloned()
            .collect();
        rules
            .iter()
            .filter_map(|r| match holds {
                true => self.raise(r, endpoint, None),
                false => self.clear(&(r.id.clone(), endpoint.to_string())),
            })
            .collect()
    }

    /// Acknowledges an active alert.
    pub fn ack(&mut self, id: &str) -> Option<Change> {
        let a = self.active.values_mut().find(|a| a.id == id)?;
        a.acked = true;
        Some(("acked", a.clone()))
    }

    /// Active alerts per kind (for the metrics).
    pub fn active_by_kind(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::from([("firmware_failed", 0), ("offline", 0), ("threshold", 0)]);
        for a in self.active.values() {
            *m.entry(a.kind).or_insert(0) += 1;
        }
        m
    }

    /// Alerts raised since start.
    pub fn raised_total(&self) -> u64 {
        self.raised_total
    }
}

/// Numeric values in a notification's content (a single resource's `value`).
fn number(v: &JsonValue) -> Option<f64> {
    v.as_f64()
}

fn alerts(s: &Shared) -> std::sync::MutexGuard<'_, Alerts> {
    s.alerts.lock().unwrap_or_else(|e| e.into_inner())
}

fn publish(s: &Shared, changes: Vec<Change>) {
    for (change, alert) in changes {
        let mut data = json!(alert);
        data["change"] = json!(change);
        if change != "acked" {
            let (hook, failures) = {
                let a = alerts(s);
                let hook = a
                    .rules
                    .get(&alert.rule)
                    .and_then(|r| r.spec.webhook.clone());
                (hook, a.webhook_failures.clone())
            };
            if let Some(url) = hook {
                // Its own task: a slow or dead receiver never holds up events.
                let body = data.to_string();
                tokio::spawn(async move {
                    if let Err(e) = post_webhook(&url, &body).await {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!("alert webhook {url}: {e}");
                    }
                });
            }
        }
        s.publish("ALERT", &alert.endpoint, &data);
    }
}

/// A notification of `path` (its content as the API's JSON node) or a Send value.
pub(super) fn on_value(s: &Shared, endpoint: &str, path: &str, node: &JsonValue) {
    let value = node.get("value").and_then(number).or_else(|| number(node));
    if let Some(v) = value {
        let changes = alerts(s).value(endpoint, path, v);
        publish(s, changes);
    }
}

/// A registration expired (`true`) or registered (`false`).
pub(super) fn on_presence(s: &Shared, endpoint: &str, offline: bool) {
    let changes = alerts(s).offline(endpoint, offline);
    publish(s, changes);
}

/// A firmware update of `endpoint` reached `phase` (only a final phase
/// matters: failed raises, succeeded clears).
pub(super) fn on_firmware(s: &Shared, endpoint: &str, phase: crate::fota::Phase) {
    use crate::fota::Phase;
    let failed = match phase {
        Phase::Failed => true,
        Phase::Succeeded => false,
        _ => return,
    };
    let changes = alerts(s).firmware(endpoint, failed);
    publish(s, changes);
}

/// The metrics lines.
pub(super) fn render_metrics(s: &Shared) -> String {
    let a = alerts(s);
    let mut o = String::from(
        "# HELP lwm2m_alerts_active Alerts active right now, by rule kind.\n# TYPE lwm2m_alerts_active gauge\n",
    );
    for (kind, n) in a.active_by_kind() {
        o.push_str(&format!("lwm2m_alerts_active{{kind=\"{kind}\"}} {n}\n"));
    }
    o.push_str(&format!(
        "# HELP lwm2m_alerts_raised_total Alerts raised.\n# TYPE lwm2m_alerts_raised_total counter\nlwm2m_alerts_raised_total {}\n",
        a.raised_total()
    ));
    o.push_str(&format!(
        "# HELP lwm2m_alert_webhook_failures_total Alert webhook POSTs that failed.\n# TYPE lwm2m_alert_webhook_failures_total counter\nlwm2m_alert_webhook_failures_total {}\n",
        a.webhook_failures.load(std::sync::atomic::Ordering::Relaxed)
    ));
    o
}

fn no_rule(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no alert rule {id:?}"))
}

pub(super) async fn create_rule(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<JsonValue>), ApiError> {
    let spec = parse_rule(&body).map_err(|e| bad_request(e.to_string()))?;
    let rule = alerts(&s).add_rule(spec).ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            format!("at most {MAX_RULES} alert rules"),
        )
    })?;
    Ok((StatusCode::CREATED, Json(json!(rule))))
}

pub(super) async fn list_rules(State(s): State<AppState>) -> Json<JsonValue> {
    Json(json!(alerts(&s).rules.values().collect::<Vec<_>>()))
}

pub(super) async fn get_rule(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let a = alerts(&s);
    let r = a.rules.get(&id).ok_or_else(|| no_rule(&id))?;
    Ok(Json(json!(r)))
}

pub(super) async fn delete_rule(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let removed = alerts(&s).remove_rule(&id);
    let (_, changes) = removed.ok_or_else(|| no_rule(&id))?;
    publish(&s, changes);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    all: bool,
}

pub(super) async fn list(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Json<JsonValue> {
    let a = alerts(&s);
    let mut out: Vec<&Alert> = a.active.values().collect();
    out.sort_by_key(|a| std::cmp::Reverse(a.raised_at));
    if q.all {
        out.extend(a.cleared.iter());
    }
    Json(json!(out))
}

pub(super) async fn ack(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let change = alerts(&s)
        .ack(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no active alert {id:?}")))?;
    let data = json!(change.1);
    publish(&s, vec![change]);
    Ok(Json(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn battery() -> RuleSpec {
        parse_rule(
            br#"{"kind":"threshold","path":"/3/0/9","op":"<","value":20,"endpoint_prefix":"dev"}"#,
        )
        .unwrap()
    }

    #[test]
    fn parse_refuses_bad_rules() {
        assert!(matches!(parse_rule(b"{}"), Err(RuleError::Json(_))));
        assert!(matches!(
            parse_rule(br#"{"kind":"threshold","path":"/3/0","op":"<","value":1}"#),
            Err(RuleError::Path(_))
        ));
        assert!(matches!(
            parse_rule(br#"{"kind":"threshold","path":"/3/0/9","op":"!=","value":1}"#),
            Err(RuleError::Json(_))
        ));
        assert_eq!(
            parse_rule(br#"{"kind":"offline"}"#).unwrap().kind,
            RuleKind::Offline
        );
    }

    #[test]
    fn evaluation() {
        let r = battery();
        assert_eq!(r.evaluate("dev1", "/3/0/9", 10.0), Some(true));
        assert_eq!(r.evaluate("dev1", "/3/0/9", 20.0), Some(false));
        assert_eq!(r.evaluate("dev1", "/3/0/8", 10.0), None);
        assert_eq!(r.evaluate("other", "/3/0/9", 10.0), None);
        assert!(Op::Le.holds(20.0, 20.0) && !Op::Gt.holds(20.0, 20.0) && Op::Ge.holds(20.0, 20.0));
    }

    #[test]
    fn raised_once_then_cleared() {
        let mut a = Alerts::default();
        a.add_rule(battery()).unwrap();
        assert!(a.value("dev1", "/3/0/9", 50.0).is_empty());
        let c = a.value("dev1", "/3/0/9", 10.0);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "raised");
        assert!(a.value("dev1", "/3/0/9", 5.0).is_empty(), "raised once");
        assert!(a.ack(&c[0].1.id).unwrap().1.acked);
        let c = a.value("dev1", "/3/0/9", 60.0);
        assert_eq!(c[0].0, "cleared");
        assert!(a.active.is_empty());
        assert_eq!(a.cleared.len(), 1);
        assert_eq!(a.raised_total(), 1);
    }

    #[test]
    fn offline_raised_and_cleared() {
        let mut a = Alerts::default();
        a.add_rule(parse_rule(br#"{"kind":"offline"}"#).unwrap())
            .unwrap();
        assert_eq!(a.offline("d", true)[0].0, "raised");
        assert_eq!(a.active_by_kind()["offline"], 1);
        assert_eq!(a.offline("d", false)[0].0, "cleared");
    }

    #[test]
    fn firmware_failed_raised_by_a_failure_and_cleared_by_a_success() {
        let mut a = Alerts::default();
        let spec = parse_rule(br#"{"kind":"firmware_failed","endpoint_prefix":"fw-"}"#).unwrap();
        assert_eq!(spec.kind, RuleKind::FirmwareFailed);
        a.add_rule(spec).unwrap();
        assert!(a.firmware("other", true).is_empty(), "prefix filter");
        assert!(a.firmware("fw-1", false).is_empty(), "nothing to clear");
        let c = a.firmware("fw-1", true);
        assert_eq!((c[0].0, c[0].1.kind), ("raised", "firmware_failed"));
        assert!(a.firmware("fw-1", true).is_empty(), "raised once");
        assert!(a.offline("fw-1", false).is_empty(), "other kinds untouched");
        assert_eq!(a.active_by_kind()["firmware_failed"], 1);
        assert_eq!(a.firmware("fw-1", false)[0].0, "cleared");
        assert_eq!(a.active_by_kind()["firmware_failed"], 0);
    }
}
