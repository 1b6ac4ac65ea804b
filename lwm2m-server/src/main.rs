//! The LwM2M server binary.
//!
//! ```text
//! lwm2m-server [--coap ADDR] [--coaps ADDR|none] [--dtls-cert PEM --dtls-key PEM --dtls-ca PEM]
//!              [--dtls-rpk-key PEM] [--bootstrap ADDR|none] [--http ADDR] [--data-dir DIR] [--redis URL]
//!              [--max-registrations N] [--max-registrations-per-address N] [...limits]
//! ```
//! `--coap` (env `LWM2M_COAP`, default `0.0.0.0:5683`): UDP address for CoAP.
//! `--coaps` (env `LWM2M_COAPS`, default `0.0.0.0:5684`, the IANA coaps
//! port): UDP address for CoAP over DTLS 1.2, `none` to run without it. PSK
//! keys come from the credentials store (`/api/security/clients`), which
//! also decides who may register which endpoint name, on both sockets (an
//! endpoint with credentials must use them over DTLS: 4.03 otherwise).
//! `--dtls-cert`, `--dtls-key`, `--dtls-ca` (env `LWM2M_DTLS_CERT`,
//! `LWM2M_DTLS_KEY`, `LWM2M_DTLS_CA`): PEM files of the server certificate,
//! its key and the CA that signs client certificates, all three or none;
//! without them DTLS is PSK only. `--dtls-rpk-key` (env
//! `LWM2M_DTLS_RPK_KEY`): the server's private key (PEM) for raw public key
//! clients (RFC 7250, Security Mode 1; with `--dtls-key` it must be that
//! same key); their keys are stored as `{"rpk":{"key":..}}` credentials.
//! Files that do not load are refused at start (exit 2), as bad flag
//! values are.
//! `--bootstrap` (env `LWM2M_BOOTSTRAP`, default `0.0.0.0:5783`): UDP address
//! of the bootstrap server, `none` to run without it. Its configurations live
//! in `bootstrap.sqlite3` in the data directory (managed with the admin API's
//! `/api/bootstrap`); `bootstrap.json` there, if present, seeds the endpoints
//! the database does not have yet: the database wins, so changes made through
//! the API survive a restart (README).
//! `--http` (env `LWM2M_HTTP`, default `0.0.0.0:8080`): TCP address of the
//! admin API, events, metrics and web UI ([`lwm2m_server::admin`]).
//! `--data-dir` (env `LWM2M_DATA_DIR`, default `./lwm2m-data`): where the
//! registration database lives, and `security.sqlite3`: the clients' security
//! credentials (managed with `/api/security/clients`; it holds PSK keys, keep
//! the directory private). `--redis` (env `LWM2M_REDIS`): keep
//! registrations, observations, security credentials and bootstrap
//! configurations in that Redis instead (`redis://host[:port][/db]`), shared
//! with every server node given the same URL; the data directory is then
//! only read for `bootstrap.json` (which seeds Redis as it seeds SQLite).
//! The registration limits of [`ServerConfig`] each have a flag and an
//! environment variable (`--help`, the `LIMITS` table).
//! Flags win over environment variables.
//! Logs go to stderr; `RUST_LOG`-style filtering is not wired in, the level is
//! `info` (`--verbose` for `debug`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use lwm2m_server::admin::{self, AdminConfig};
use lwm2m_server::bootstrap::driver::BootstrapServer;
use lwm2m_server::bootstrap::{
    BootstrapConfigStore, BootstrapFile, BootstrapServerConfig, SqliteConfigStore,
};
use lwm2m_server::dtls::{DtlsConfig, DtlsServer, X509Files};
use lwm2m_server::{
    RegistrationStore, SecurityOptions, SecurityStore, Server, ServerConfig, SharedSecurityStore,
    SqliteSecurityStore, SqliteStore,
};

const USAGE: &str =
    "usage: lwm2m-server [--coap ADDR] [--coaps ADDR|none] [--dtls-cert PEM --dtls-key PEM --dtls-ca PEM]
                    [--dtls-rpk-key PEM] [--bootstrap ADDR|none] [--http ADDR] [--data-dir DIR] [--redis URL] [--verbose]
  --coap ADDR      UDP address for CoAP (env LWM2M_COAP, default 0.0.0.0:5683)
  --coaps ADDR     UDP address for CoAP over DTLS 1.2, or none (env LWM2M_COAPS, default 0.0.0.0:5684);
                   PSK keys from the credentials store (/api/security/clients)
  --dtls-cert PEM  server certificate (chain) for X.509 clients (env LWM2M_DTLS_CERT)
  --dtls-key PEM   its private key (env LWM2M_DTLS_KEY)
  --dtls-ca PEM    CA certificates trusted for client certificates (env LWM2M_DTLS_CA);
                   the three go together; without them DTLS is PSK only
  --dtls-rpk-key PEM private key presented to raw public key clients (env LWM2M_DTLS_RPK_KEY);
                   clients' keys from the credentials store (rpk credentials, hex DER)
  --bootstrap ADDR UDP address of the bootstrap server, or none (env LWM2M_BOOTSTRAP,
                   default 0.0.0.0:5783); configurations from DIR/bootstrap.json
  --http ADDR      TCP address of the admin API and web UI (env LWM2M_HTTP, default 0.0.0.0:8080)
  --data-dir DIR   registration database directory (env LWM2M_DATA_DIR, default ./lwm2m-data)
  --redis URL      keep registrations, credentials and bootstrap configurations in Redis
                   instead, shared by the server nodes given the same URL
                   (env LWM2M_REDIS, e.g. redis://127.0.0.1:6379/0)
  --verbose        debug logging
registration limits (each also from its env variable, e.g. LWM2M_MAX_REGISTRATIONS):
  --max-registrations N             registrations at once (default 1000000)
  --max-registrations-per-address N registrations from one source ip:port (default 1000)
  --max-queued-requests N           requests held for one sleeping queue-mode client (default 16)
  --queued-request-timeout SECS     how long such a request is held (default 600)
  --awake-time SECS                 how long a queue-mode client listens after Register/Update (default 93)
  --lifetime-grace SECS             time after the lifetime before a registration expires (default 15)
  --max-requests-per-client N       requests to one client queued behind the one in flight (default 64)
  --max-pending-incoming N          requests from clients not answered yet, over all (default 1024)
  a Register beyond a registration limit is answered 5.03 Service Unavailable";

#[derive(Debug, PartialEq)]
struct Args {
    coap: SocketAddr,
    /// The coaps socket, `None` with `--coaps none`.
    coaps: Option<SocketAddr>,
    /// Certificate, key and CA for X.509 clients.
    x509: Option<X509Files>,
    /// The server's private key for raw public key clients.
    rpk_key: Option<PathBuf>,
    bootstrap: Option<SocketAddr>,
    http: SocketAddr,
    data_dir: PathBuf,
    /// Redis URL: selects RedisStore over SqliteStore.
    redis: Option<String>,
    verbose: bool,
    /// The engine's configuration, with the limits the flags set.
    server: ServerConfig,
}

/// A flag that sets one of [`ServerConfig`]'s limits.
struct LimitFlag {
    flag: &'static str,
    env: &'static str,
    /// Smallest value that makes sense.
    min: u64,
    /// Seconds (a duration) rather than a count.
    seconds: bool,
    set: fn(&mut ServerConfig, u64),
}

/// A count that fits `usize` on every target that runs the server.
fn count(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn secs(v: u64) -> lwm2m_core::time::Duration {
    lwm2m_core::time::Duration::from_secs(v)
}

/// The limit flags, in `--help`'s order.
const LIMITS: &[LimitFlag] = &[
    LimitFlag {
        flag: "--max-registrations",
        env: "LWM2M_MAX_REGISTRATIONS",
        min: 1,
        seconds: false,
        set: |c, v| c.max_registrations = count(v),
    },
    LimitFlag {
        flag: "--max-registrations-per-address",
        env: "LWM2M_MAX_REGISTRATIONS_PER_ADDRESS",
        min: 1,
        seconds: false,
        set: |c, v| c.max_registrations_per_address = count(v),
    },
    LimitFlag {
        flag: "--max-queued-requests",
        env: "LWM2M_MAX_QUEUED_REQUESTS",
        min: 0,
        seconds: false,
        set: |c, v| c.max_queued_requests = count(v),
    },
    LimitFlag {
        flag: "--queued-request-timeout",
        env: "LWM2M_QUEUED_REQUEST_TIMEOUT",
        min: 1,
        seconds: true,
        set: |c, v| c.queued_request_timeout = secs(v),
    },
    LimitFlag {
        flag: "--awake-time",
        env: "LWM2M_AWAKE_TIME",
        min: 1,
        seconds: true,
        set: |c, v| c.awake_time = secs(v),
    },
    LimitFlag {
        flag: "--lifetime-grace",
        env: "LWM2M_LIFETIME_GRACE",
        min: 0,
        seconds: true,
        set: |c, v| c.lifetime_grace = secs(v),
    },
    LimitFlag {
        flag: "--max-requests-per-client",
        env: "LWM2M_MAX_REQUESTS_PER_CLIENT",
        min: 1,
        seconds: false,
        set: |c, v| c.coap.max_queued_per_peer = count(v),
    },
    LimitFlag {
        flag: "--max-pending-incoming",
        env: "LWM2M_MAX_PENDING_INCOMING",
        min: 1,
        seconds: false,
        set: |c, v| c.coap.max_pending_incoming = count(v),
    },
];

impl LimitFlag {
    /// Sets the limit from `value`, or says what was expected.
    fn apply(&self, config: &mut ServerConfig, value: &str) -> Result<(), String> {
        let what = if self.seconds {
            "a whole number of seconds"
        } else {
            "a whole number"
        };
        let v: u64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v| *v >= self.min)
            .ok_or_else(|| {
                format!(
                    "{} {value:?} is not {what} of at least {} (from {} or the flag)",
                    self.flag, self.min, self.env
                )
            })?;
        (self.set)(config, v);
        Ok(())
    }
}

/// A few flags do not justify clap's build time on every developer and CI
/// machine; this parser accepts `--flag VALUE` and `--flag=VALUE`.
fn parse_args(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Args, String> {
    let mut coap = env("LWM2M_COAP");
    let mut coaps = env("LWM2M_COAPS").filter(|v| !v.is_empty());
    let mut dtls_cert = env("LWM2M_DTLS_CERT").filter(|v| !v.is_empty());
    let mut dtls_key = env("LWM2M_DTLS_KEY").filter(|v| !v.is_empty());
    let mut dtls_ca = env("LWM2M_DTLS_CA").filter(|v| !v.is_empty());
    let mut dtls_rpk_key = env("LWM2M_DTLS_RPK_KEY").filter(|v| !v.is_empty());
    let mut http = env("LWM2M_HTTP");
    let mut bootstrap = env("LWM2M_BOOTSTRAP");
    let mut data_dir = env("LWM2M_DATA_DIR");
    let mut redis = env("LWM2M_REDIS").filter(|v| !v.is_empty());
    let mut verbose = false;
    // Environment first, flags over it; checked once both are known.
    let mut limits: Vec<Option<String>> = LIMITS
        .iter()
        .map(|l| env(l.env).filter(|v| !v.is_empty()))
        .collect();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let limit = LIMITS.iter().position(|l| l.flag == flag);
        let takes_value = limit.is_some()
            || matches!(
                flag.as_str(),
                "--coap"
                    | "--coaps"
                    | "--dtls-cert"
                    | "--dtls-key"
                    | "--dtls-ca"
                    | "--dtls-rpk-key"
                    | "--bootstrap"
                    | "--http"
                    | "--data-dir"
                    | "--redis"
            );
        let value = match (takes_value, inline) {
            (false, _) => None,
            (true, Some(v)) => Some(v),
            (true, None) => Some(it.next().ok_or(format!("{flag} needs a value"))?),
        };
        let slot = match (flag.as_str(), limit) {
            ("--verbose" | "-v", _) => {
                verbose = true;
                continue;
            }
            ("--help" | "-h", _) => return Err(String::new()),
            ("--coap", _) => &mut coap,
            ("--coaps", _) => &mut coaps,
            ("--dtls-cert", _) => &mut dtls_cert,
            ("--dtls-key", _) => &mut dtls_key,
            ("--dtls-ca", _) => &mut dtls_ca,
            ("--dtls-rpk-key", _) => &mut dtls_rpk_key,
            ("--http", _) => &mut http,
            ("--bootstrap", _) => &mut bootstrap,
            ("--redis", _) => &mut redis,
            ("--data-dir", _) => &mut data_dir,
            (_, Some(i)) => &mut limits[i],
            _ => return Err(format!("unknown argument {arg:?}")),
        };
        *slot = value;
    }
    let coap = coap.unwrap_or_else(|| "0.0.0.0:5683".into());
    let coap = coap
        .parse()
        .map_err(|_| format!("--coap {coap:?} is not an address like 0.0.0.0:5683"))?;
    let http = http.unwrap_or_else(|| "0.0.0.0:8080".into());
    let http = http
        .parse()
        .map_err(|_| format!("--http {http:?} is not an address like 0.0.0.0:8080"))?;
    let bootstrap = match bootstrap.as_deref().unwrap_or("0.0.0.0:5783") {
        "none" => None,
        b => Some(b.parse().map_err(|_| {
            format!("--bootstrap {b:?} is not an address like 0.0.0.0:5783 (or none)")
        })?),
    };
    let coaps =
        match coaps.as_deref().unwrap_or("0.0.0.0:5684") {
            "none" => None,
            c => Some(c.parse().map_err(|_| {
                format!("--coaps {c:?} is not an address like 0.0.0.0:5684 (or none)")
            })?),
        };
    let x509 = match (dtls_cert, dtls_key, dtls_ca) {
        (None, None, None) => None,
        (Some(cert), Some(key), Some(ca)) => Some(X509Files {
            certificate: PathBuf::from(cert),
            private_key: PathBuf::from(key),
            ca: PathBuf::from(ca),
        }),
        _ => {
            return Err(
                "--dtls-cert, --dtls-key and --dtls-ca go together: give all three \
                 (X.509 clients) or none (PSK only)"
                    .into(),
            )
        }
    };
    if (x509.is_some() || dtls_rpk_key.is_some()) && coaps.is_none() {
        return Err(
            "--dtls-cert/--dtls-key/--dtls-ca/--dtls-rpk-key need the coaps socket (not --coaps none)"
                .into(),
        );
    }
    let mut server = ServerConfig::default();
    for (l, value) in LIMITS.iter().zip(&limits) {
        if let Some(v) = value {
            l.apply(&mut server, v)?;
        }
    }
    Ok(Args {
        coap,
        coaps,
        x509,
        rpk_key: dtls_rpk_key.map(PathBuf::from),
        bootstrap,
        http,
        data_dir: PathBuf::from(data_dir.unwrap_or_else(|| "./lwm2m-data".into())),
        redis,
        verbose,
        server,
    })
}

/// Loads the certificate files once, so a file that does not load is a
/// usage error (exit 2) rather than a failed start.
fn check_x509(args: &Args) -> Result<(), String> {
    if args.x509.is_none() && args.rpk_key.is_none() {
        return Ok(());
    }
    let config = DtlsConfig {
        x509: args.x509.clone(),
        rpk_private_key: args.rpk_key.clone(),
        ..DtlsConfig::default()
    };
    DtlsServer::new(config, Arc::new(|_: &str| None), [0; 32])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = parse_args(std::env::args().skip(1), |k| std::env::var(k).ok())
        .and_then(|a| check_x509(&a).map(|()| a));
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("lwm2m-server: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(if args.verbose {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

/// The Redis store if `--redis` was given, else SQLite in the data directory.
fn open_store(args: &Args) -> Result<(Box<dyn RegistrationStore<SocketAddr>>, String), String> {
    if let Some(url) = &args.redis {
        #[cfg(feature = "redis")]
        return match lwm2m_server::RedisStore::open(url) {
            Ok(s) => Ok((Box::new(s), format!("redis {}", redacted(url)))),
            Err(e) => Err(format!("{e} ({})", redacted(url))),
        };
        #[cfg(not(feature = "redis"))]
        return Err(no_redis(url));
    }
    match SqliteStore::open(&args.data_dir) {
        Ok(s) => Ok((Box::new(s), args.data_dir.display().to_string())),
        Err(e) => Err(format!("{e} ({})", args.data_dir.display())),
    }
}

/// What a build without the `redis` feature says to `--redis`.
#[cfg(not(feature = "redis"))]
fn no_redis(url: &str) -> String {
    format!(
        "--redis {:?}: this build has no Redis support (feature `redis`)",
        redacted(url)
    )
}

/// The URL without its password, for logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!(
                "{}://***{}",
                url.get(..scheme).unwrap_or(""),
                url.get(at..).unwrap_or("")
            )
        }
        _ => url.to_string(),
    }
}

async fn serve(args: Args) -> ExitCode {
    // Signal handlers first: a SIGTERM that arrives while the servers start
    // (a test or service manager stopping a server that just started) must
    // stop them cleanly, not kill the process.
    let stop = wait_for_stop_signal();
    let (store, store_name) = match open_store(&args) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Credentials for the DTLS work: managed through /api/security/clients,
    // in Redis with --redis (shared by the nodes), else in the data directory.
    let security = match open_security(&args) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let security: SharedSecurityStore = Arc::new(std::sync::Mutex::new(security));
    let models = Arc::new(lwm2m_objects::Registry::standard());
    let config = args.server.clone();
    let http = match tokio::net::TcpListener::bind(args.http).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot bind the HTTP socket {}: {e}", args.http);
            return ExitCode::FAILURE;
        }
    };
    let http_addr = http.local_addr().unwrap_or(args.http);
    let options = SecurityOptions {
        store: Some(security.clone()),
        coaps: args.coaps.map(|addr| {
            let dtls = DtlsConfig {
                x509: args.x509.clone(),
                rpk_private_key: args.rpk_key.clone(),
                ..DtlsConfig::default()
            };
            (addr, dtls)
        }),
    };
    let server = match Server::start_secured(
        args.coap,
        config.clone(),
        store,
        Box::new((*models).clone()),
        options,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let bootstrap = match args.bootstrap {
        Some(addr) => match start_bootstrap(addr, &args).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!("{e}");
                server.shutdown().await;
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let mut admin_config = AdminConfig::for_server(&config);
    admin_config = admin_config.with_security(security);
    if let Some(b) = &bootstrap {
        admin_config = admin_config.with_bootstrap(b.handle());
    }
    let router = admin::router(server.handle(), models, admin_config);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut http_task = tokio::spawn(admin::serve(http, router, async {
        let _ = http_stopped.await;
    }));
    let coaps = server
        .secure_addr()
        .map_or("none".to_string(), |a| a.to_string());
    tracing::info!(
        coap = %server.local_addr(),
        coaps = %coaps,
        x509 = args.x509.is_some(),
        rpk = args.rpk_key.is_some(),
        http = %http_addr,
        store = %store_name,
        "LwM2M server listening"
    );
    tokio::select! {
        () = stop => {}
        r = &mut http_task => tracing::error!("HTTP server ended: {r:?}"),
    }
    tracing::info!("shutting down");
    let _ = stop_http.send(());
    // Event streams (SSE) never end by themselves: give requests in flight
    // a moment, then close what is left.
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut http_task)
        .await
        .is_err()
    {
        http_task.abort();
    }
    if let Some(b) = bootstrap {
        b.shutdown().await;
    }
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// The security credentials store: Redis with `--redis`, else
/// `security.sqlite3` in the data directory.
fn open_security(args: &Args) -> Result<Box<dyn SecurityStore>, String> {
    if let Some(url) = &args.redis {
        #[cfg(feature = "redis")]
        return match lwm2m_server::RedisSecurityStore::open(url) {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(format!("{e} ({})", redacted(url))),
        };
        #[cfg(not(feature = "redis"))]
        return Err(no_redis(url));
    }
    match SqliteSecurityStore::open(&args.data_dir) {
        Ok(s) => Ok(Box::new(s)),
        Err(e) => Err(format!("{e} ({})", args.data_dir.display())),
    }
}

/// The bootstrap configuration store: Redis with `--redis`, else
/// `bootstrap.sqlite3` in the data directory.
fn open_bootstrap_store(args: &Args) -> Result<Box<dyn BootstrapConfigStore>, String> {
    if let Some(url) = &args.redis {
        #[cfg(feature = "redis")]
        return match lwm2m_server::bootstrap::RedisConfigStore::open(url) {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(format!("{e} ({})", redacted(url))),
        };
        #[cfg(not(feature = "redis"))]
        return Err(no_redis(url));
    }
    match SqliteConfigStore::open(&args.data_dir) {
        Ok(s) => Ok(Box::new(s)),
        Err(e) => Err(format!("{}: {e}", args.data_dir.display())),
    }
}

/// Starts the bootstrap server with the configurations of its store (see
/// [`open_bootstrap_store`]), first adding the endpoints of
/// `data_dir/bootstrap.json` (if the file exists) that the store does not
/// have: the store wins, so what the admin API changed stays changed, and
/// a new endpoint added to the file is picked up at the next start.
async fn start_bootstrap(addr: SocketAddr, args: &Args) -> Result<BootstrapServer, String> {
    let path = args.data_dir.join("bootstrap.json");
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => {
            BootstrapFile::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BootstrapFile::default(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut store = open_bootstrap_store(args)?;
    let known = store.endpoints().map_err(|e| e.to_string())?;
    let mut seeded = 0;
    for (ep, c) in file.endpoints {
        if !known.contains(&ep) {
            store
                .put(&ep, c)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            seeded += 1;
        }
    }
    let count = known.len() + seeded;
    let bs = BootstrapServer::start(addr, BootstrapServerConfig::default(), store)
        .await
        .map_err(|e| format!("bootstrap server: {e}"))?;
    tracing::info!(
        bootstrap = %bs.local_addr(),
        configurations = count,
        seeded_from_file = seeded,
        "LwM2M bootstrap server listening"
    );
    Ok(bs)
}

/// Ctrl-C (SIGINT) or, on Unix, SIGTERM (what service managers and
/// container runtimes send). The SIGTERM handler is installed when this is
/// called, not when the future is first polled, so a SIGTERM that arrives
/// right after the "listening" line is not lost.
fn wait_for_stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        #[cfg(unix)]
        match term {
            Ok(mut term) => {
                tokio::select! {
                    r = tokio::signal::ctrl_c() => {
                        if let Err(e) = r {
                            // Keep serving; SIGTERM still stops the server.
                            tracing::error!("cannot wait for Ctrl-C: {e}");
                            term.recv().await;
                        }
                    }
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::error!("cannot wait for SIGTERM: {e}"),
        }
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot wait for Ctrl-C: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Args, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_args(args.iter().map(|s| s.to_string()), move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults() {
        let a = parse(&[], &[]).unwrap();
        assert_eq!(a.coap, "0.0.0.0:5683".parse().unwrap());
        assert_eq!(a.http, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(a.data_dir, PathBuf::from("./lwm2m-data"));
        assert_eq!(a.redis, None);
        assert_eq!(a.bootstrap, Some("0.0.0.0:5783".parse().unwrap()));
        assert_eq!(a.coaps, Some("0.0.0.0:5684".parse().unwrap()));
        assert_eq!(a.x509, None);
        assert!(!a.verbose);
    }

    #[test]
    fn coaps_and_certificate_flags() {
        let a = parse(&["--coaps=none"], &[("LWM2M_COAPS", "127.0.0.1:9")]).unwrap();
        assert_eq!(a.coaps, None);
        let a = parse(&[], &[("LWM2M_COAPS", "127.0.0.1:9")]).unwrap();
        assert_eq!(a.coaps, Some("127.0.0.1:9".parse().unwrap()));
        let err = parse(&["--coaps", "5684"], &[]).unwrap_err();
        assert_eq!(
            err,
            "--coaps \"5684\" is not an address like 0.0.0.0:5684 (or none)"
        );
        let a = parse(
            &["--dtls-cert", "s.pem", "--dtls-key=s.key"],
            &[("LWM2M_DTLS_CA", "ca.pem")],
        )
        .unwrap();
        assert_eq!(
            a.x509,
            Some(X509Files {
                certificate: "s.pem".into(),
                private_key: "s.key".into(),
                ca: "ca.pem".into(),
            })
        );
        let err = parse(&["--dtls-cert", "s.pem"], &[]).unwrap_err();
        assert!(err.contains("go together"), "{err}");
        let err = parse(
            &[
                "--coaps=none",
                "--dtls-cert=a",
                "--dtls-key=b",
                "--dtls-ca=c",
            ],
            &[],
        )
        .unwrap_err();
        assert!(err.contains("need the coaps socket"), "{err}");
        // A file that does not load is refused before the server starts.
        let err = check_x509(&a).unwrap_err();
        assert!(err.contains("s.pem"), "{err}");
        assert!(err.contains("expected a readable PEM file"), "{err}");
    }

    #[test]
    fn flags_override_env() {
        let env = [
            ("LWM2M_COAP", "127.0.0.1:1"),
            ("LWM2M_DATA_DIR", "/e"),
            ("LWM2M_HTTP", "127.0.0.1:2"),
        ];
        let a = parse(&[], &env).unwrap();
        assert_eq!(a.coap, "127.0.0.1:1".parse().unwrap());
        assert_eq!(a.http, "127.0.0.1:2".parse().unwrap());
        let a = parse(&["--http=[::1]:80"], &env).unwrap();
        assert_eq!(a.http, "[::1]:80".parse().unwrap());
        assert_eq!(a.data_dir, PathBuf::from("/e"));
        let a = parse(&["--coap", "[::1]:5684", "--data-dir=/f", "-v"], &env).unwrap();
        assert_eq!(a.coap, "[::1]:5684".parse().unwrap());
        assert_eq!(a.data_dir, PathBuf::from("/f"));
        assert!(a.verbose);
    }

    #[test]
    fn redis_from_flag_or_env() {
        let env = [("LWM2M_REDIS", "redis://env:6379/")];
        assert_eq!(
            parse(&[], &env).unwrap().redis.as_deref(),
            Some("redis://env:6379/")
        );
        let a = parse(&["--redis=redis://flag/1"], &env).unwrap();
        assert_eq!(a.redis.as_deref(), Some("redis://flag/1"));
        // An empty variable is unset (as shells and compose files leave it).
        assert_eq!(parse(&[], &[("LWM2M_REDIS", "")]).unwrap().redis, None);
        assert!(parse(&["--redis"], &[])
            .unwrap_err()
            .contains("needs a value"));
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redacted("redis://user:secret@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redacted("redis://db:6379/0"), "redis://db:6379/0");
    }

    #[test]
    fn bootstrap_address_or_none() {
        let a = parse(&[], &[("LWM2M_BOOTSTRAP", "127.0.0.1:9")]).unwrap();
        assert_eq!(a.bootstrap, Some("127.0.0.1:9".parse().unwrap()));
        let a = parse(&["--bootstrap=none"], &[("LWM2M_BOOTSTRAP", "127.0.0.1:9")]).unwrap();
        assert_eq!(a.bootstrap, None);
        assert!(parse(&["--bootstrap", "bs"], &[])
            .unwrap_err()
            .contains("not an address"));
    }

    #[test]
    fn limits_from_flags_or_env() {
        let a = parse(&[], &[]).unwrap();
        assert_eq!(a.server, ServerConfig::default());
        let env = [
            ("LWM2M_MAX_REGISTRATIONS_PER_ADDRESS", "7"),
            ("LWM2M_AWAKE_TIME", "30"),
            ("LWM2M_MAX_QUEUED_REQUESTS", ""),
        ];
        let a = parse(
            &[
                "--max-registrations",
                "10",
                "--max-registrations-per-address=2",
                "--max-queued-requests",
                "0",
                "--queued-request-timeout=60",
                "--lifetime-grace",
                "0",
                "--max-requests-per-client",
                "3",
                "--max-pending-incoming=99",
            ],
            &env,
        )
        .unwrap();
        let s = &a.server;
        assert_eq!(s.max_registrations, 10);
        assert_eq!(s.max_registrations_per_address, 2, "the flag wins");
        assert_eq!(s.max_queued_requests, 0);
        assert_eq!(s.queued_request_timeout.as_millis(), 60_000);
        assert_eq!(s.awake_time.as_millis(), 30_000, "from the environment");
        assert_eq!(s.lifetime_grace.as_millis(), 0);
        assert_eq!(s.coap.max_queued_per_peer, 3);
        assert_eq!(s.coap.max_pending_incoming, 99);
        // Untouched limits keep their defaults.
        assert_eq!(s.coap.nstart, ServerConfig::default().coap.nstart);
        // Every limit is in --help.
        for l in LIMITS {
            assert!(USAGE.contains(l.flag), "{} not in --help", l.flag);
        }
    }

    #[test]
    fn bad_limits_say_what_was_expected() {
        let err = parse(&["--max-registrations-per-address", "many"], &[]).unwrap_err();
        assert_eq!(
            err,
            "--max-registrations-per-address \"many\" is not a whole number of at least 1 \
             (from LWM2M_MAX_REGISTRATIONS_PER_ADDRESS or the flag)"
        );
        let err = parse(&["--max-registrations=0"], &[]).unwrap_err();
        assert!(err.contains("at least 1"), "{err}");
        let err = parse(&["--awake-time", "1.5"], &[]).unwrap_err();
        assert!(err.contains("whole number of seconds"), "{err}");
        let err = parse(&["--lifetime-grace", "-1"], &[]).unwrap_err();
        assert!(
            err.contains("whole number of seconds of at least 0"),
            "{err}"
        );
        let err = parse(&[], &[("LWM2M_MAX_PENDING_INCOMING", "x")]).unwrap_err();
        assert!(err.contains("LWM2M_MAX_PENDING_INCOMING"), "{err}");
        assert!(parse(&["--max-queued-requests"], &[])
            .unwrap_err()
            .contains("needs a value"));
        // A bad environment value is overridden by a good flag.
        let a = parse(
            &["--max-pending-incoming", "5"],
            &[("LWM2M_MAX_PENDING_INCOMING", "x")],
        )
        .unwrap();
        assert_eq!(a.server.coap.max_pending_incoming, 5);
    }

    #[test]
    fn errors() {
        assert!(parse(&["--coap"], &[])
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&["--coap", "localhost"], &[])
            .unwrap_err()
            .contains("not an address"));
        assert!(parse(&["--http", "8080"], &[])
            .unwrap_err()
            .contains("not an address"));
        assert!(parse(&["--port", "1"], &[])
            .unwrap_err()
            .contains("unknown argument"));
        assert_eq!(parse(&["--help"], &[]), Err(String::new()));
    }
}
