//! Connectivity Statistics object (7): traffic counters collected between
//! Start and Stop (TS Core appendix E / object 7 definition).
//!
//! The integrator supplies cumulative counters ([`TrafficCounters`], since
//! boot, say) through a hook. Start (`/7/0/6`) takes a baseline and starts
//! collecting: resources 0–5 then read as the difference from the
//! baseline (they read 0 right after Start, which is the TS's "reset to
//! 0"). Stop (`/7/0/7`) freezes them. With a Collection Period (`/7/0/8`)
//! other than 0, collection stops by itself that many seconds after Start.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use lwm2m_core::model::{ObjectModel, Path, ResourceValue};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_objects::connectivity_statistics as cs;

use super::{as_int, int};
use crate::object::{DmError, Object};

/// Cumulative traffic counters, as the host counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficCounters {
    /// SMS sent.
    pub sms_tx: u64,
    /// SMS received.
    pub sms_rx: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Messages (datagrams) sent and received.
    pub messages: u64,
    /// Largest message sent or received, bytes. A maximum cannot be
    /// windowed by difference: the object reports the hook's value as is.
    pub max_message_size: u64,
}

type Source = Box<dyn FnMut() -> TrafficCounters>;

/// The Connectivity Statistics object with one instance (0).
pub struct ConnectivityStatistics {
    model: ObjectModel,
    source: Source,
    /// Counters at Start.
    baseline: TrafficCounters,
    /// What reads return: collected so far (refreshed at every tick while
    /// collecting), frozen at Stop.
    values: TrafficCounters,
    collecting: bool,
    /// Collection Period, seconds (0: until Stop).
    period: u32,
    stop_at: Option<Instant>,
    now: Instant,
    changed: Vec<Path>,
}

impl fmt::Debug for ConnectivityStatistics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectivityStatistics")
            .field("collecting", &self.collecting)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl ConnectivityStatistics {
    /// Counters from `source`; not collecting until Start.
    pub fn new(source: impl FnMut() -> TrafficCounters + 'static) -> ConnectivityStatistics {
        ConnectivityStatistics {
            model: cs::MODEL.to_model(),
            source: Box::new(source),
            baseline: TrafficCounters::default(),
            values: TrafficCounters::default(),
            collecting: false,
            period: 0,
            stop_at: None,
            now: Instant::ZERO,
            changed: Vec::new(),
        }
    }

    /// Whether the object is collecting (between Start and Stop).
    pub fn is_collecting(&self) -> bool {
        self.collecting
    }

    /// The counters collected (as of the last tick while collecting).
    pub fn collected(&self) -> TrafficCounters {
        self.values
    }

    /// While collecting, takes the current values from the hook: `read`
    /// takes `&self` and the hook is `FnMut`, so reads see the values of
    /// the last tick (the engine ticks at every entry point, before
    /// dispatching a request).
    fn refresh(&mut self) {
        if self.collecting {
            self.values = diff((self.source)(), self.baseline);
        }
    }

    fn stop(&mut self) {
        if self.collecting {
            self.refresh();
            self.collecting = false;
            self.stop_at = None;
            self.changed.push(Path::Instance(cs::ID, 0));
        }
    }
}

fn diff(now: TrafficCounters, base: TrafficCounters) -> TrafficCounters {
    TrafficCounters {
        sms_tx: now.sms_tx.saturating_sub(base.sms_tx),
        sms_rx: now.sms_rx.saturating_sub(base.sms_rx),
        tx_bytes: now.tx_bytes.saturating_sub(base.tx_bytes),
        rx_bytes: now.rx_bytes.saturating_sub(base.rx_bytes),
        messages: now.messages.saturating_sub(base.messages),
        max_message_size: now.max_message_size,
    }
}

fn clamp(v: u64) -> ResourceValue {
    int(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Object for ConnectivityStatistics {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        vec![0]
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        if resource == cs::COLLECTION_PERIOD {
            return Ok(int(i64::from(self.period)));
        }
        let c = self.values;
        Ok(match resource {
            cs::SMS_TX_COUNTER => clamp(c.sms_tx),
            cs::SMS_RX_COUNTER => clamp(c.sms_rx),
            // Tx Data and Rx Data are in kilobytes.
            cs::TX_DATA => clamp(c.tx_bytes / 1024),
            cs::RX_DATA => clamp(c.rx_bytes / 1024),
            cs::MAX_MESSAGE_SIZE => clamp(c.max_message_size),
            cs::AVERAGE_MESSAGE_SIZE => clamp(
                (c.tx_bytes.saturating_add(c.rx_bytes))
                    .checked_div(c.messages)
                    .unwrap_or(0),
            ),
            _ => return Err(DmError::NotFound),
        })
    }

    fn write(&mut self, instance: u16, resource: u16, value: ResourceValue) -> Result<(), DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        if resource != cs::COLLECTION_PERIOD {
            return Err(DmError::MethodNotAllowed);
        }
        self.period = u32::try_from(as_int(&value)?).map_err(|_| DmError::BadRequest)?;
        Ok(())
    }

    fn execute(&mut self, instance: u16, resource: u16, _args: &str) -> Result<(), DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        match resource {
            cs::START => {
                self.baseline = (self.source)();
                self.values = TrafficCounters::default();
                self.collecting = true;
                self.stop_at = (self.period > 0)
                    .then(|| self.now + Duration::from_secs(u64::from(self.period)));
                self.refresh();
                self.changed.push(Path::Instance(cs::ID, 0));
                Ok(())
            }
            cs::STOP => {
                self.stop();
                Ok(())
            }
            _ => Err(DmError::MethodNotAllowed),
        }
    }

    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.stop_at.is_some_and(|at| now >= at) {
            self.stop();
        }
        self.refresh();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.stop_at
    }

    fn take_changed(&mut self) -> Vec<Path> {
        core::mem::take(&mut self.changed)
    }
}
