//! Prometheus metrics in the text exposition format (version 0.0.4).
//!
//! Hand-written rather than with `prometheus-client`: five metric families
//! with fixed label sets are a few dozen lines, the exposition format is
//! stable and tested here line by line, and the server keeps one dependency
//! (and its registry/encoder API) fewer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram: CoAP exchanges
/// take milliseconds on a LAN and up to ~93 s with retransmissions.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    /// Count per bucket (not cumulative; summed when written).
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Inner {
    registrations: u64,
    updates: u64,
    deregistrations: u64,
    expirations: u64,
    notifications: u64,
    sends: u64,
    /// (operation, outcome) → count.
    requests: BTreeMap<(&'static str, String), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    /// (delivery, outcome) → finished firmware updates.
    firmware_updates: BTreeMap<(&'static str, &'static str), u64>,
    /// outcome → finished campaigns.
    campaigns: BTreeMap<&'static str, u64>,
}

/// The admin server's counters.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A registration event to count.
#[derive(Debug, Clone, Copy)]
pub enum RegistrationEvent {
    /// Register.
    Registered,
    /// Update.
    Updated,
    /// De-register.
    Deregistered,
    /// Lifetime ran out.
    Expired,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock cannot leave counters inconsistent
        // in a way that matters: keep counting.
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Counts a registration event.
    pub fn registration(&self, e: RegistrationEvent) {
        self.with(|m| match e {
            RegistrationEvent::Registered => m.registrations += 1,
            RegistrationEvent::Updated => m.updates += 1,
            RegistrationEvent::Deregistered => m.deregistrations += 1,
            RegistrationEvent::Expired => m.expirations += 1,
        });
    }

    /// Counts a notification.
    pub fn notification(&self) {
        self.with(|m| m.notifications += 1);
    }

    /// Counts a Send (values a client reported unasked).
    pub fn send(&self) {
        self.with(|m| m.sends += 1);
    }

    /// A firmware update of one device finished (`outcome`: succeeded or failed).
    pub fn firmware_update(&self, delivery: &'static str, outcome: &'static str) {
        self.with(|m| *m.firmware_updates.entry((delivery, outcome)).or_insert(0) += 1);
    }

    /// A campaign ended (`outcome`: completed, halted or cancelled).
    pub fn campaign_finished(&self, outcome: &'static str) {
        self.with(|m| *m.campaigns.entry(outcome).or_insert(0) += 1);
    }

    /// Counts a finished device-management request: `outcome` is `success`,
    /// the CoAP code of a device error (`4.04`), `timeout` or `error`.
    pub fn request(&self, operation: &'static str, outcome: &str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        self.with(|m| {
            *m.requests
                .entry((operation, outcome.to_string()))
                .or_default() += 1;
            let h = m.latency.entry(operation).or_default();
            if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
                if let Some(c) = h.counts.get_mut(i) {
                    *c += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        });
    }

    /// The exposition text; `registered` is the current number of clients.
    pub fn render(&self, registered: usize) -> String {
        let mut o = String::new();
        self.with(|m| {
            // Writing to a String cannot fail.
            let _ = write_all(&mut o, m, registered);
        });
        o
    }
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) -> std::fmt::Result {
    writeln!(o, "# HELP {name} {help}")?;
    writeln!(o, "# TYPE {name} counter")?;
    writeln!(o, "{name} {v}")
}

fn write_all(o: &mut String, m: &Inner, registered: usize) -> std::fmt::Result {
    writeln!(
        o,
        "# HELP lwm2m_registered_clients Clients registered right now."
    )?;
    writeln!(o, "# TYPE lwm2m_registered_clients gauge")?;
    writeln!(o, "lwm2m_registered_clients {registered}")?;
    counter(
        o,
        "lwm2m_registrations_total",
        "Register requests accepted.",
        m.registrations,
    )?;
    counter(
        o,
        "lwm2m_registration_updates_total",
        "Registration updates accepted.",
        m.updates,
    )?;
    counter(
        o,
        "lwm2m_deregistrations_total",
        "De-register requests accepted.",
        m.deregistrations,
    )?;
    counter(
        o,
        "lwm2m_registration_expirations_total",
        "Registrations whose lifetime ran out.",
        m.expirations,
    )?;
    counter(
        o,
        "lwm2m_notifications_total",
        "Observe notifications received.",
        m.notifications,
    )?;
    counter(
        o,
        "lwm2m_sends_total",
        "Send (POST /dp) requests accepted from registered clients.",
        m.sends,
    )?;
    writeln!(
        o,
        "# HELP lwm2m_dm_requests_total Device-management requests made through the admin API, by operation and outcome (success, a CoAP error code, timeout, error)."
    )?;
    writeln!(o, "# TYPE lwm2m_dm_requests_total counter")?;
    for ((op, outcome), v) in &m.requests {
        writeln!(
            o,
            "lwm2m_dm_requests_total{{operation=\"{op}\",outcome=\"{outcome}\"}} {v}"
        )?;
    }
    writeln!(
        o,
        "# HELP lwm2m_dm_request_duration_seconds Time from the admin API request to the device's answer."
    )?;
    writeln!(o, "# TYPE lwm2m_dm_request_duration_seconds histogram")?;
    for (op, h) in &m.latency {
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(h.counts) {
            cumulative += c;
            writeln!(
                o,
                "lwm2m_dm_request_duration_seconds_bucket{{operation=\"{op}\",le=\"{b}\"}} {cumulative}"
            )?;
        }
        writeln!(
            o,
            "lwm2m_dm_request_duration_seconds_bucket{{operation=\"{op}\",le=\"+Inf\"}} {}",
            h.count
        )?;
        writeln!(
            o,
            "lwm2m_dm_request_duration_seconds_sum{{operation=\"{op}\"}} {}",
            h.sum
        )?;
        writeln!(
            o,
            "lwm2m_dm_request_duration_seconds_count{{operation=\"{op}\"}} {}",
            h.count
        )?;
    }
    writeln!(
        o,
        "# HELP lwm2m_firmware_updates_total Firmware updates of one device finished, by delivery (push, coap, http) and outcome (succeeded, failed), of jobs and campaigns."
    )?;
    writeln!(o, "# TYPE lwm2m_firmware_updates_total counter")?;
    for ((delivery, outcome), v) in &m.firmware_updates {
        writeln!(
            o,
            "lwm2m_firmware_updates_total{{delivery=\"{delivery}\",outcome=\"{outcome}\"}} {v}"
        )?;
    }
    writeln!(
        o,
        "# HELP lwm2m_campaigns_total Firmware update campaigns ended, by outcome (completed, halted, cancelled)."
    )?;
    writeln!(o, "# TYPE lwm2m_campaigns_total counter")?;
    for (outcome, v) in &m.campaigns {
        writeln!(o, "lwm2m_campaigns_total{{outcome=\"{outcome}\"}} {v}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = Metrics::default();
        m.registration(RegistrationEvent::Registered);
        m.registration(RegistrationEvent::Registered);
        m.notification();
        m.send();
        m.request("read", "success", Duration::from_millis(20));
        m.request("read", "4.04", Duration::from_millis(3));
        m.request("read", "timeout", Duration::from_secs(60));
        let t = m.render(7);
        assert!(t.contains("# TYPE lwm2m_registered_clients gauge\nlwm2m_registered_clients 7\n"));
        assert!(t.contains("\nlwm2m_registrations_total 2\n"));
        assert!(t.contains("\nlwm2m_notifications_total 1\n"));
        assert!(t.contains("# TYPE lwm2m_sends_total counter\nlwm2m_sends_total 1\n"));
        assert!(t.contains("lwm2m_dm_requests_total{operation=\"read\",outcome=\"4.04\"} 1\n"));
        assert!(t.contains(
            "lwm2m_dm_request_duration_seconds_bucket{operation=\"read\",le=\"0.005\"} 1\n"
        ));
        assert!(t.contains(
            "lwm2m_dm_request_duration_seconds_bucket{operation=\"read\",le=\"0.025\"} 2\n"
        ));
        // 60 s is beyond the last finite bucket: only +Inf counts it.
        assert!(t.contains(
            "lwm2m_dm_request_duration_seconds_bucket{operation=\"read\",le=\"30\"} 2\n"
        ));
        assert!(t.contains(
            "lwm2m_dm_request_duration_seconds_bucket{operation=\"read\",le=\"+Inf\"} 3\n"
        ));
        assert!(t.contains("lwm2m_dm_request_duration_seconds_count{operation=\"read\"} 3\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
