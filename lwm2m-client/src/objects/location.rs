//! Location object (6, version 1.0): fixes from an integrator hook (a GNSS
//! receiver) or a simulated track, sampled at a fixed interval. Each new
//! fix is reported to the engine as changed, so observers of `/6/0` or of
//! one coordinate are notified (with their `pmin`/`gt`/`lt`/`st` rules).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use lwm2m_core::model::{ObjectModel, Path, ResourceValue, Value};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_objects::location::v1_0 as loc;

use crate::object::{DmError, Object};

/// One position measurement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fix {
    /// Latitude, decimal degrees (WGS 84).
    pub latitude: f64,
    /// Longitude, decimal degrees (WGS 84).
    pub longitude: f64,
    /// Altitude, metres above sea level.
    pub altitude: Option<f64>,
    /// Uncertainty radius, metres.
    pub radius: Option<f64>,
    /// Velocity as 3GPP TS 23.032 encodes it (see [`horizontal_velocity`]).
    pub velocity: Option<Vec<u8>>,
    /// Speed, m/s.
    pub speed: Option<f64>,
    /// When the fix was taken, Unix seconds.
    pub timestamp: i64,
}

/// The 3GPP TS 23.032 §8.12 "Horizontal Velocity" encoding (velocity type
/// 0): bearing in degrees from north (0..=359) and horizontal speed in
/// km/h, four octets.
///
/// ```
/// use lwm2m_client::objects::horizontal_velocity;
/// assert_eq!(horizontal_velocity(270, 50), vec![0x01, 0x0E, 0x00, 0x32]);
/// ```
pub fn horizontal_velocity(bearing_degrees: u16, speed_kmh: u16) -> Vec<u8> {
    let bearing = bearing_degrees % 360;
    let [hi, lo] = bearing.to_be_bytes();
    let [s_hi, s_lo] = speed_kmh.to_be_bytes();
    // Octet 1: velocity type 0 in the high nibble, bearing bit 9 in bit 1.
    vec![hi & 0x01, lo, s_hi, s_lo]
}

type Source = Box<dyn FnMut(Instant) -> Option<Fix>>;

/// The Location object with one instance (0).
///
/// ```
/// use lwm2m_client::objects::{Fix, Location};
/// use lwm2m_client::Object;
/// use lwm2m_core::model::{ResourceValue, Value};
/// use lwm2m_core::time::{Duration, Instant};
/// let mut l = Location::from_hook(Duration::from_secs(10), |_| {
///     Some(Fix { latitude: 48.85, longitude: 2.35, timestamp: 1_700_000_000, ..Fix::default() })
/// });
/// l.tick(Instant::ZERO);
/// assert_eq!(l.read(0, 0), Ok(ResourceValue::Single(Value::Float(48.85))));
/// ```
pub struct Location {
    model: ObjectModel,
    fix: Fix,
    source: Source,
    interval: Duration,
    next_sample: Option<Instant>,
    changed: Vec<Path>,
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("fix", &self.fix)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Location {
    /// Fixes from `source`, asked every `interval` (at least 1 ms) with the
    /// engine's time; `None` keeps the last fix. Until the first fix the
    /// object reads (0, 0) at time 0.
    pub fn from_hook(
        interval: Duration,
        source: impl FnMut(Instant) -> Option<Fix> + 'static,
    ) -> Location {
        Location {
            model: loc::MODEL.to_model(),
            fix: Fix::default(),
            source: Box::new(source),
            interval: interval.max(Duration::from_millis(1)),
            next_sample: None,
            changed: Vec::new(),
        }
    }

    /// A simulated device moving along `waypoints` (latitude, longitude,
    /// altitude), `leg` per segment, back to the first after the last, at
    /// constant speed on each leg; sampled every `interval`. Timestamps are
    /// `unix_time_at_zero` plus the engine's time; radius 5 m.
    pub fn track(
        waypoints: Vec<(f64, f64, f64)>,
        leg: Duration,
        interval: Duration,
        unix_time_at_zero: i64,
    ) -> Location {
        let leg_ms = u64::try_from(leg.as_millis()).unwrap_or(u64::MAX).max(1);
        Location::from_hook(interval, move |now| {
            let n = waypoints.len() as u64;
            let (first, _) = waypoints.split_first()?;
            let t = now.as_millis();
            let index = (t / leg_ms) % n;
            let a = waypoints.get(index as usize).unwrap_or(first);
            let b = waypoints.get(((index + 1) % n) as usize).unwrap_or(first);
            let f = (t % leg_ms) as f64 / leg_ms as f64;
            let lerp = |x: f64, y: f64| x + (y - x) * f;
            let secs = i64::try_from(t / 1000).unwrap_or(i64::MAX);
            Some(Fix {
                latitude: lerp(a.0, b.0),
                longitude: lerp(a.1, b.1),
                altitude: Some(lerp(a.2, b.2)),
                radius: Some(5.0),
                velocity: None,
                speed: None,
                timestamp: unix_time_at_zero.saturating_add(secs),
            })
        })
    }

    /// The current fix.
    pub fn fix(&self) -> &Fix {
        &self.fix
    }
}

fn float(v: f64) -> ResourceValue {
    ResourceValue::Single(Value::Float(v))
}

impl Object for Location {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        vec![0]
    }

    fn resources(&self, _instance: u16) -> Vec<u16> {
        let f = &self.fix;
        let mut r = vec![loc::LATITUDE, loc::LONGITUDE];
        if f.altitude.is_some() {
            r.push(loc::ALTITUDE);
        }
        if f.radius.is_some() {
            r.push(loc::RADIUS);
        }
        if f.velocity.is_some() {
            r.push(loc::VELOCITY);
        }
        r.push(loc::TIMESTAMP);
        if f.speed.is_some() {
            r.push(loc::SPEED);
        }
        r
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        let f = &self.fix;
        Ok(match resource {
            loc::LATITUDE => float(f.latitude),
            loc::LONGITUDE => float(f.longitude),
            loc::ALTITUDE => float(f.altitude.ok_or(DmError::NotFound)?),
            loc::RADIUS => float(f.radius.ok_or(DmError::NotFound)?),
            loc::VELOCITY => {
                ResourceValue::Single(Value::Opaque(f.velocity.clone().ok_or(DmError::NotFound)?))
            }
            loc::TIMESTAMP => ResourceValue::Single(Value::Time(f.timestamp)),
            loc::SPEED => float(f.speed.ok_or(DmError::NotFound)?),
            _ => return Err(DmError::NotFound),
        })
    }

    fn tick(&mut self, now: Instant) {
        if self.next_sample.is_some_and(|at| now < at) {
            return;
        }
        self.next_sample = Some(now + self.interval);
        if let Some(fix) = (self.source)(now) {
            if fix != self.fix {
                // Which resources changed matters little: the instance is
                // marked and each observation compares its own value.
                self.fix = fix;
                self.changed.push(Path::Instance(loc::MODEL.id, 0));
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_sample
    }

    fn take_changed(&mut self) -> Vec<Path> {
        core::mem::take(&mut self.changed)
    }
}
