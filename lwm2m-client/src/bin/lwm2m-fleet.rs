//! `lwm2m-fleet`: many simulated LwM2M devices against a server.
//!
//! ```text
//! lwm2m-fleet --in-process N [options]     server engine and devices in this process
//! lwm2m-fleet --server coap://HOST:PORT --devices N [options]   real UDP
//! ```
//!
//! Options: `--lifetime S` (registration lifetime, default 3600 in process,
//! 20 over UDP), `--spread S` (first Registers spread over S seconds),
//! `--hold S` (over UDP: how long to stay registered), `--sample K` (in
//! process: devices read in the read sweep), `--latency-ms MS` (in process:
//! one-way virtual latency), `--bind-addrs K` (over UDP: sockets bound on
//! 127.0.0.1 ..= 127.0.0.K), `--prefix P` (endpoint names P0, P1, ...).
//! See README.md, "Fleet simulator".
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Instant as WallClock;

use lwm2m_client::fleet::in_process::{sim_server, InProcess, Memory};
use lwm2m_client::fleet::udp::{self, UdpRun};
use lwm2m_client::fleet::{Fleet, FleetConfig, SharedObjects};
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::Path;
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::ServerConfig;

/// Parsed command line.
#[derive(Debug)]
struct Args {
    in_process: Option<u32>,
    server: Option<SocketAddr>,
    devices: u32,
    lifetime: Option<u32>,
    spread: Option<u64>,
    hold: u64,
    sample: u32,
    latency_ms: u64,
    bind_addrs: u8,
    prefix: String,
}

const USAGE: &str = "usage: lwm2m-fleet --in-process N [--lifetime S] [--spread S] [--sample K] [--latency-ms MS] [--prefix P]\n       lwm2m-fleet --server coap://HOST:PORT --devices N [--lifetime S] [--spread S] [--hold S] [--bind-addrs K] [--prefix P]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        in_process: None,
        server: None,
        devices: 0,
        lifetime: None,
        spread: None,
        hold: 30,
        sample: 10_000,
        latency_ms: 10,
        bind_addrs: 4,
        prefix: "urn:dev:sim-".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag} expects a number, got {v:?}"))
        }
        match flag.as_str() {
            "--in-process" => a.in_process = Some(num(&flag, value()?)?),
            "--server" => {
                let v = value()?;
                let hostport = v
                    .strip_prefix("coap://")
                    .ok_or_else(|| format!("--server expects coap://HOST:PORT, got {v:?}"))?;
                a.server = Some(
                    hostport
                        .to_socket_addrs()
                        .map_err(|e| format!("--server {v}: {e}"))?
                        .next()
                        .ok_or_else(|| format!("--server {v}: no address"))?,
                );
            }
            "--devices" => a.devices = num(&flag, value()?)?,
            "--lifetime" => a.lifetime = Some(num(&flag, value()?)?),
            "--spread" => a.spread = Some(num(&flag, value()?)?),
            "--hold" => a.hold = num(&flag, value()?)?,
            "--sample" => a.sample = num(&flag, value()?)?,
            "--latency-ms" => a.latency_ms = num(&flag, value()?)?,
            "--bind-addrs" => a.bind_addrs = num(&flag, value()?)?,
            "--prefix" => a.prefix = value()?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match (args.in_process, args.server) {
        (Some(n), None) => in_process(&args, n),
        (None, Some(server)) => over_udp(&args, server),
        _ => Err(format!(
            "give either --in-process N or --server URI\n{USAGE}"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lwm2m-fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn rate(count: u64, wall: std::time::Duration) -> f64 {
    count as f64 / wall.as_secs_f64().max(1e-9)
}

/// `n` devices with `lifetime`, registering over `--spread` seconds or
/// `default_spread`.
fn build_fleet(args: &Args, n: u32, lifetime: u32, default_spread: u64) -> Fleet {
    let config = FleetConfig {
        endpoint_prefix: args.prefix.clone(),
        lifetime,
        register_spread: Duration::from_secs(args.spread.unwrap_or(default_spread)),
        ..FleetConfig::default()
    };
    Fleet::new(config, SharedObjects::standard(lifetime), n, Instant::ZERO)
}

fn in_process(args: &Args, n: u32) -> Result<(), String> {
    // An hour's lifetime and a thousand Registers per virtual second:
    // the first Updates come after the last Register, so the registration
    // rate is of Registers alone.
    let lifetime = args.lifetime.unwrap_or(3600);
    let latency = Duration::from_millis(args.latency_ms);
    let m0 = Memory::now().unwrap_or_default();
    let fleet = build_fleet(args, n, lifetime, u64::from(n / 1000).max(10));
    let fleet_heap = fleet.heap_bytes();
    let m1 = Memory::now().unwrap_or_default();
    let server_config = ServerConfig {
        max_registrations: (n as usize).max(1_000_000),
        ..ServerConfig::default()
    };
    let mut run = InProcess::new(fleet, sim_server(server_config, 1), latency);
    println!(
        "devices: {n}, lifetime {lifetime} s, one-way latency {} ms",
        args.latency_ms
    );
    println!(
        "simulator: {} bytes per device state (+16 per timer entry); fleet structures {:.1} MiB; RSS grew {:.1} MiB building the fleet",
        Fleet::DEVICE_BYTES,
        mib(fleet_heap as u64),
        mib(m1.rss.saturating_sub(m0.rss))
    );

    // Registration.
    let wall = WallClock::now();
    let limit = Instant::ZERO + Duration::from_secs(86_400);
    let all = n as usize;
    run.run_while(limit, |r| r.fleet.registered() < all);
    let register_wall = wall.elapsed();
    let m2 = Memory::now().unwrap_or_default();
    let server_growth = m2.rss.saturating_sub(m1.rss);
    println!(
        "registered: {} devices (server holds {}) in {:.2} s wall, {:.0} registrations/s, virtual {:.1} s",
        run.fleet.registered(),
        run.server.registration_count(),
        register_wall.as_secs_f64(),
        rate(u64::from(n), register_wall),
        run.now().as_millis() as f64 / 1000.0
    );
    println!(
        "server: RSS grew {:.1} MiB while registering = {} bytes per registration",
        mib(server_growth),
        server_growth / u64::from(n.max(1))
    );
    if run.fleet.registered() != all {
        return Err(format!(
            "only {} of {n} devices registered: {:?}",
            run.fleet.registered(),
            run.fleet.stats()
        ));
    }

    // A lifetime of Updates (two per device).
    let updates_before = run.fleet.stats().updates;
    let wall = WallClock::now();
    let until = run.now() + Duration::from_secs(u64::from(lifetime));
    run.run_until(until);
    let update_wall = wall.elapsed();
    let updates = run.fleet.stats().updates - updates_before;
    let m3 = Memory::now().unwrap_or_default();
    println!(
        "updates: {updates} in {:.2} s wall over {lifetime} s virtual, {:.0} updates/s; registered {}; RSS after {:.1} MiB (server part {} bytes per registration)",
        update_wall.as_secs_f64(),
        rate(updates, update_wall),
        run.server.registration_count(),
        mib(m3.rss),
        m3.rss.saturating_sub(m1.rss) / u64::from(n.max(1)),
    );

    // Read sweep over a sample: Read /3/0 (TLV), Read /3/0/0, Discover /3/0 in turn.
    let sample = args.sample.min(n);
    let step = (n / sample.max(1)).max(1);
    let wall = WallClock::now();
    let mut ids = Vec::new();
    for k in 0..sample {
        let i = k * step;
        let (path, accept) = match k % 3 {
            0 => (Path::Instance(3, 0), None),
            1 => (Path::Resource(3, 0, 0), Some(ContentFormat::SENML_JSON)),
            _ => (Path::Instance(3, 0), Some(ContentFormat::LINK_FORMAT)),
        };
        match run.start_read(i, path, accept) {
            Ok(id) => ids.push(id),
            Err(e) => return Err(format!("read of device {i} refused: {e:?}")),
        }
    }
    let want = ids.len();
    let limit = run.now() + Duration::from_secs(600);
    run.run_while(limit, |r| r.responses_waiting() < want);
    let read_wall = wall.elapsed();
    let mut ok = 0;
    let mut first_failure = None;
    for id in &ids {
        match run.take_response(*id) {
            Some(Ok(r)) if r.code == lwm2m_core::coap::Code::CONTENT => ok += 1,
            other => {
                first_failure.get_or_insert(other);
            }
        }
    }
    if let Some(f) = first_failure {
        println!("read sweep: first failure: {f:?}");
    }
    println!(
        "read sweep: {ok} of {want} answered 2.05 in {:.3} s wall, {:.0} reads/s",
        read_wall.as_secs_f64(),
        rate(want as u64, read_wall)
    );

    // De-register.
    let wall = WallClock::now();
    let now = run.now();
    run.fleet.deregister_all(now, Duration::from_secs(10));
    let limit = now + Duration::from_secs(3_600);
    run.run_while(limit, |r| r.fleet.registered() > 0);
    let deregister_wall = wall.elapsed();
    println!(
        "deregistered: {} in {:.2} s wall; server holds {}",
        run.fleet.stats().deregistrations,
        deregister_wall.as_secs_f64(),
        run.server.registration_count()
    );
    let stats = run.fleet.stats();
    println!("fleet counters: {stats:?}");
    println!("server counters: {:?}", run.server_counts());
    let m4 = Memory::now().unwrap_or_default();
    println!(
        "peak RSS (VmHWM) {:.1} MiB; RSS at the end {:.1} MiB",
        mib(m4.hwm),
        mib(m4.rss)
    );
    drop(run);

    // Baseline: the same Register datagrams fed straight into a fresh engine.
    let base_n = n.min(100_000);
    let mut maker = Fleet::new(
        FleetConfig {
            endpoint_prefix: args.prefix.clone(),
            lifetime,
            register_spread: Duration::ZERO,
            ..FleetConfig::default()
        },
        SharedObjects::standard(lifetime),
        base_n,
        Instant::ZERO,
    );
    maker.handle_timeout(Instant::ZERO);
    let datagrams: Vec<_> = std::iter::from_fn(|| maker.poll_transmit()).collect();
    let mut engine = sim_server(ServerConfig::default(), 2);
    let wall = WallClock::now();
    for (k, t) in datagrams.iter().enumerate() {
        engine.handle_datagram(Instant::from_millis(k as u64 / 100), t.device, &t.bytes);
        while engine.poll_transmit().is_some() {}
        while engine.poll_event().is_some() {}
    }
    let base_wall = wall.elapsed();
    let base_rate = rate(u64::from(base_n), base_wall);
    let sim_rate = rate(u64::from(n), register_wall);
    println!(
        "baseline: {} Registers fed straight into an engine in {:.2} s, {:.0}/s; the simulated run registered at {:.2} x that rate",
        engine.registration_count(),
        base_wall.as_secs_f64(),
        base_rate,
        sim_rate / base_rate
    );
    Ok(())
}

/// `Max open files` of this process, if known.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn over_udp(args: &Args, server: SocketAddr) -> Result<(), String> {
    let n = args.devices;
    if n == 0 {
        return Err("--devices N (at least 1) is needed with --server".into());
    }
    if let Some(limit) = open_file_limit() {
        if u64::from(n) + 64 > limit {
            return Err(format!(
                "{n} devices need {n} sockets but this process may open {limit} files (ulimit -n)"
            ));
        }
    }
    let lifetime = args.lifetime.unwrap_or(20);
    let fleet = build_fleet(args, n, lifetime, u64::from(n / 2000).max(1));
    let bind = (1..=args.bind_addrs.max(1))
        .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k)))
        .collect();
    let run = UdpRun {
        server,
        bind,
        hold: Duration::from_secs(args.hold),
        phase_timeout: Duration::from_secs(120),
        deregister_spread: Duration::from_secs(u64::from(n / 2000).max(1)),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let report = rt
        .block_on(udp::run(fleet, run))
        .map_err(|e| format!("sockets: {e}"))?;
    println!(
        "registered: {} of {n} in {:.2} s, {:.0} registrations/s",
        report.registered,
        report.register_time.as_secs_f64(),
        rate(report.registered as u64, report.register_time)
    );
    println!("register round trip (us): {:?}", report.register_rtt);
    println!("update round trip (us): {:?}", report.update_rtt);
    println!("done (de-registered): {}", report.done);
    println!("fleet counters: {:?}", report.stats);
    if report.registered != n as usize {
        return Err(format!(
            "only {} of {n} devices registered",
            report.registered
        ));
    }
    Ok(())
}
