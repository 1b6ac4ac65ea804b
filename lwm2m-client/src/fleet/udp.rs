//! A [`Fleet`] over real UDP sockets against a server at a
//! `coap://` address: one socket per device (the server tells its peers
//! apart by address and port), bound to port 0 on a list of local
//! addresses in turn (`127.0.0.1`, `127.0.0.2`, ... spread the load over
//! more source addresses than one). One task per socket forwards what it
//! receives to the fleet's single task, which owns the state and the timers.
//! A process may hold only so many open files, so the device count is
//! bounded by `ulimit -n`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant as StdInstant;

use lwm2m_core::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{Completed, Fleet, FleetStats, Phase};

/// What [`run`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpRun {
    /// The server's CoAP address.
    pub server: SocketAddr,
    /// Local addresses the device sockets are bound to, in turn.
    pub bind: Vec<IpAddr>,
    /// How long the devices stay registered (Updating at lifetime/2)
    /// after the last one registered, before they De-register.
    pub hold: Duration,
    /// Longest wait for all devices to register and, at the end, to
    /// De-register.
    pub phase_timeout: Duration,
    /// De-registers are spread over this time.
    pub deregister_spread: Duration,
}

/// Round-trip percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Of `samples` (sorted in place).
    pub fn of(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        let at = |q: usize| -> u64 {
            if samples.is_empty() {
                0
            } else {
                samples[((samples.len() - 1) * q) / 100]
            }
        };
        Percentiles {
            count: samples.len(),
            p50: at(50),
            p90: at(90),
            p99: at(99),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

/// What a [`run`] measured.
#[derive(Debug, Clone)]
pub struct UdpReport {
    /// Devices that registered at least once.
    pub registered: usize,
    /// From the first Register sent to the last device registered.
    pub register_time: std::time::Duration,
    /// Register round trips (from the last transmission).
    pub register_rtt: Percentiles,
    /// Update round trips (from the last transmission).
    pub update_rtt: Percentiles,
    /// Devices that ended De-registered (answered) or gave up.
    pub done: usize,
    /// The fleet's counters.
    pub stats: FleetStats,
}

/// Binds one socket per device of `fleet` and runs it against `run.server`:
/// all register, stay registered for `run.hold`, De-register.
pub async fn run(mut fleet: Fleet, run: UdpRun) -> std::io::Result<UdpReport> {
    let n = fleet.len();
    let clock = StdInstant::now();
    let now = |c: StdInstant| Instant::from_millis(c.elapsed().as_millis() as u64);
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, Vec<u8>)>();
    let mut sockets = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for i in 0..n {
        let ip = run.bind[i % run.bind.len().max(1)];
        let sock = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await?);
        let (s, tx) = (sock.clone(), tx.clone());
        let idx = i as u32;
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((len, _)) = s.recv_from(&mut buf).await {
                if tx.send((idx, buf[..len].to_vec())).is_err() {
                    break;
                }
            }
        }));
        sockets.push(sock);
    }
    drop(tx);
    let mut tally = Tally {
        sent_at: vec![StdInstant::now(); n],
        register_rtt: Vec::new(),
        update_rtt: Vec::new(),
        registered_once: vec![false; n],
        registered: 0,
        all_registered: None,
        hold_until: None,
    };
    let mut first_sent: Option<StdInstant> = None;
    let mut deregistering_since: Option<StdInstant> = None;
    let hold = std::time::Duration::from_millis(run.hold.as_millis() as u64);
    let phase_timeout = std::time::Duration::from_millis(run.phase_timeout.as_millis() as u64);
    loop {
        // Send what is queued.
        while let Some(t) = fleet.poll_transmit() {
            let is_request = t.bytes.get(1).is_some_and(|c| *c != 0 && *c >> 5 == 0);
            if is_request {
                tally.sent_at[t.device as usize] = StdInstant::now();
                first_sent.get_or_insert_with(StdInstant::now);
            }
            // A full socket buffer loses the datagram, as a network would;
            // the retransmission timer covers it.
            let _ = sockets[t.device as usize]
                .send_to(&t.bytes, run.server)
                .await;
        }
        if deregistering_since.is_some_and(|s| fleet_done(&fleet) || s.elapsed() > phase_timeout) {
            break;
        }
        if tally.all_registered.is_none() && clock.elapsed() > phase_timeout {
            break;
        }
        let hold_over = tally.hold_until.is_some_and(|h| StdInstant::now() >= h);
        if hold_over && deregistering_since.is_none() {
            fleet.deregister_all(now(clock), run.deregister_spread);
            deregistering_since = Some(StdInstant::now());
            continue;
        }
        let wake = fleet
            .poll_timeout()
            .map(|t| clock + std::time::Duration::from_millis(t.as_millis()))
            .into_iter()
            .chain(tally.hold_until.filter(|_| deregistering_since.is_none()))
            .min()
            .unwrap_or_else(|| StdInstant::now() + std::time::Duration::from_millis(100));
        tokio::select! {
            got = rx.recv() => {
                let Some(first) = got else { break };
                // Take everything else already received before sending.
                let mut next = Some(first);
                while let Some((i, bytes)) = next {
                    let completed = fleet.handle_datagram(now(clock), i, &bytes);
                    tally.record(i as usize, completed, hold);
                    next = rx.try_recv().ok();
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                fleet.handle_timeout(now(clock));
            }
        }
    }
    for r in readers {
        r.abort();
    }
    let register_time = match (first_sent, tally.all_registered) {
        (Some(a), Some(b)) => b - a,
        _ => clock.elapsed(),
    };
    Ok(UdpReport {
        registered: tally.registered,
        register_time,
        register_rtt: Percentiles::of(&mut tally.register_rtt),
        update_rtt: Percentiles::of(&mut tally.update_rtt),
        done: (0..n as u32)
            .filter(|i| fleet.phase(*i) == Some(Phase::Done))
            .count(),
        stats: fleet.stats(),
    })
}

/// The driver's bookkeeping of completed exchanges.
struct Tally {
    /// When each device last sent a request.
    sent_at: Vec<StdInstant>,
    register_rtt: Vec<u64>,
    update_rtt: Vec<u64>,
    registered_once: Vec<bool>,
    registered: usize,
    all_registered: Option<StdInstant>,
    hold_until: Option<StdInstant>,
}

impl Tally {
    fn record(&mut self, i: usize, completed: Option<Completed>, hold: std::time::Duration) {
        let rtt = || self.sent_at[i].elapsed().as_micros() as u64;
        match completed {
            Some(Completed::Registered) => {
                let us = rtt();
                self.register_rtt.push(us);
                if !self.registered_once[i] {
                    self.registered_once[i] = true;
                    self.registered += 1;
                    if self.registered == self.sent_at.len() {
                        self.all_registered = Some(StdInstant::now());
                        self.hold_until = Some(StdInstant::now() + hold);
                    }
                }
            }
            Some(Completed::Updated) => {
                let us = rtt();
                self.update_rtt.push(us);
            }
            _ => {}
        }
    }
}

fn fleet_done(fleet: &Fleet) -> bool {
    fleet.registered() == 0 && (0..fleet.len() as u32).all(|i| fleet.phase(i) == Some(Phase::Done))
}
