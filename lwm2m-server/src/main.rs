//! The LwM2M server binary.
//!
//! ```text
//! lwm2m-server [--coap ADDR] [--coap-tcp ADDR|none] [--coaps ADDR|none] [--coaps-tcp ADDR|none]
//!              [--dtls-cert PEM --dtls-key PEM --dtls-ca PEM]
//!              [--dtls-rpk-key PEM] [--bootstrap ADDR|none] [--bootstrap-coaps ADDR|none]
//!              [--http ADDR] [--data-dir DIR] [--redis URL]
//!              [--max-registrations N] [--max-registrations-per-address N] [...limits]
//! ```
//! `--coap` (env `LWM2M_COAP`, default `0.0.0.0:5683`): UDP address for CoAP.
//! `--coap-tcp` (env `LWM2M_COAP_TCP`, default `none`): TCP address for
//! CoAP over TCP (RFC 8323, LwM2M binding `T`), e.g. `0.0.0.0:5683`.
//! `--coaps` (env `LWM2M_COAPS`, default `0.0.0.0:5684`, the IANA coaps
//! port): UDP address for CoAP over DTLS 1.2, `none` to run without it. PSK
//! keys come from the credentials store (`/api/security/clients`), which
//! also decides who may register which endpoint name, on both sockets (an
//! endpoint with credentials must use them over DTLS: 4.03 otherwise).
//! `--dtls-cert`, `--dtls-key`, `--dtls-ca` (env `LWM2M_DTLS_CERT`,
//! `LWM2M_DTLS_KEY`, `LWM2M_DTLS_CA`): PEM files of the server certificate,
//! its key and the CA that signs client certificates, all three or none;
//! without them DTLS is PSK only.
//! `--coaps-tcp` (env `LWM2M_COAPS_TCP`, default `none`): TCP address for
//! CoAP over TLS 1.2/1.3 (RFC 8323 `coaps+tcp`, conventionally port 5684),
//! authenticating and authorizing devices exactly as the coaps socket does
//! (PSK from the credentials store, the `--dtls-*` certificate and raw
//! public key files). `--dtls-rpk-key` (env
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
//! `--bootstrap-coaps` (env `LWM2M_BOOTSTRAP_COAPS`, default `0.0.0.0:5784`,
//! Leshan's bootstrap coaps port): UDP address of the bootstrap server's
//! CoAP over DTLS 1.2 socket, `none` without it. PSK identities and keys
//! come from the bootstrap-server account of each endpoint's bootstrap
//! configuration, which also decides who may bootstrap it (README); the
//! `--dtls-*` certificate and raw public key flags apply to this socket too.
//! `--http` (env `LWM2M_HTTP`, default `0.0.0.0:8080`): TCP address of the
//! admin API, events, metrics and web UI ([`lwm2m_server::admin`]).
//! `--data-dir` (env `LWM2M_DATA_DIR`, default `./lwm2m-data`): where the
//! registration database lives, and `security.sqlite3`: the clients' security
//! credentials (managed with `/api/security/clients`; it holds PSK keys, keep
//! the directory private). `--redis` (env `LWM2M_REDIS`): keep
//! registrations, observations, security credentials, bootstrap
//! configurations, firmware packages and campaigns in that Redis instead
//! (`redis://host[:port][/db]`), shared with every server node given the
//! same URL; the data directory is then only read for `bootstrap.json`
//! (which seeds Redis as it seeds SQLite).
//! The registration limits of [`ServerConfig`] each have a flag and an
//! environment variable (`--help`, the `LIMITS` table).
//! Firmware packages (`/api/firmware`) live in `firmware.sqlite3` and
//! `firmware/<id>` files in the data directory (in Redis with `--redis`).
//! Devices pull them from `GET /fw/{id}` on the CoAP and CoAPS sockets
//! (block-wise) and the HTTP server (`Range`); `--firmware-coap-uri`,
//! `--firmware-coaps-uri`, `--firmware-http-uri` (env
//! `LWM2M_FIRMWARE_COAP_URI` ...) set the `scheme://HOST:PORT` written into
//! Package URI (default: the bound address; for 0.0.0.0 the local address
//! routed towards each device). `--max-firmware-size` (env
//! `LWM2M_MAX_FIRMWARE_SIZE`, default 16777216): largest upload, bytes.
//! Packages being pulled are cached in memory (64 MiB, in 64 KiB segments;
//! metadata asked of the store again every 5 s, so with `--redis` a package
//! deleted through another node stays downloadable here for up to 5 s).
//! Campaigns (`/api/campaigns`) live in `campaigns.sqlite3` there (in
//! Redis with `--redis`); a restart resumes those that were running or
//! paused. With `--redis` each campaign runs on one node at a time, the
//! one holding its lease (see [`lwm2m_server::campaign`]).
//! Alert rules (`/api/alerts/rules`) live in `alerts.sqlite3` there (with
//! `--redis`, in each node's memory only).
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
use lwm2m_server::firmware::SqliteFirmwareStore;
use lwm2m_server::{
    RegistrationStore, SecurityOptions, SecurityStore, Server, ServerConfig, SharedSecurityStore,
    SqliteSecurityStore, SqliteStore, TcpOptions, TlsOptions,
};

const USAGE: &str =
    "usage: lwm2m-server [--coap ADDR] [--coap-tcp ADDR|none] [--coaps ADDR|none] [--coaps-tcp ADDR|none]
                    [--dtls-cert PEM --dtls-key PEM --dtls-ca PEM]
                    [--dtls-rpk-key PEM] [--bootstrap ADDR|none] [--bootstrap-coaps ADDR|none]
                    [--http ADDR] [--data-dir DIR] [--redis URL] [--verbose]
  --coap ADDR      UDP address for CoAP (env LWM2M_COAP, default 0.0.0.0:5683)
  --coap-tcp ADDR  TCP address for CoAP over TCP (RFC 8323, binding T), or none
                   (env LWM2M_COAP_TCP, default none)
  --coaps ADDR     UDP address for CoAP over DTLS 1.2, or none (env LWM2M_COAPS, default 0.0.0.0:5684);
                   PSK keys from the credentials store (/api/security/clients)
  --coaps-tcp ADDR TCP address for CoAP over TLS 1.2/1.3 (RFC 8323 coaps+tcp), or none
                   (env LWM2M_COAPS_TCP, default none; conventional port 5684); credentials
                   as for --coaps, the --dtls-* files serve it too
  --dtls-cert PEM  server certificate (chain) for X.509 clients (env LWM2M_DTLS_CERT)
  --dtls-key PEM   its private key (env LWM2M_DTLS_KEY)
  --dtls-ca PEM    CA certificates trusted for client certificates (env LWM2M_DTLS_CA);
                   the three go together; without them DTLS and TLS are PSK only
  --dtls-rpk-key PEM private key presented to raw public key clients (env LWM2M_DTLS_RPK_KEY);
                   clients' keys from the credentials store (rpk credentials, hex DER)
  --bootstrap ADDR UDP address of the bootstrap server, or none (env LWM2M_BOOTSTRAP,
                   default 0.0.0.0:5783); configurations from DIR/bootstrap.json
  --bootstrap-coaps ADDR  the bootstrap server's CoAP over DTLS 1.2 address, or none
                   (env LWM2M_BOOTSTRAP_COAPS, default 0.0.0.0:5784); PSK identity and key
                   from the bootstrap-server account of each endpoint's configuration;
                   --dtls-cert/--dtls-key/--dtls-ca/--dtls-rpk-key serve it too
  --http ADDR      TCP address of the admin API and web UI (env LWM2M_HTTP, default 0.0.0.0:8080)
  --data-dir DIR   where registrations, credentials, bootstrap configurations, firmware packages
                   and campaigns are kept (env LWM2M_DATA_DIR, default ./lwm2m-data)
  --redis URL      keep registrations, credentials, bootstrap configurations, firmware packages
                   and campaigns in Redis instead, shared by the server nodes given the same URL
                   (env LWM2M_REDIS, e.g. redis://127.0.0.1:6379/0)
  --firmware-coap-uri URI   coap://HOST:PORT devices pull packages from (env LWM2M_FIRMWARE_COAP_URI,
                            default the --coap address; for 0.0.0.0 the local address towards the device)
  --firmware-coaps-uri URI  coaps://HOST:PORT for devices registered over DTLS (env LWM2M_FIRMWARE_COAPS_URI)
  --firmware-http-uri URI   http://HOST:PORT for http pulls (env LWM2M_FIRMWARE_HTTP_URI, default --http)
  --max-firmware-size BYTES largest firmware upload (env LWM2M_MAX_FIRMWARE_SIZE, default 16777216)
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
    /// The CoAP-over-TCP listener, `None` with `--coap-tcp none` (the default).
    coap_tcp: Option<SocketAddr>,
    /// The coaps socket, `None` with `--coaps none`.
    coaps: Option<SocketAddr>,
    /// The CoAP-over-TLS listener, `None` with `--coaps-tcp none` (the default).
    coaps_tcp: Option<SocketAddr>,
    /// Certificate, key and CA for X.509 clients.
    x509: Option<X509Files>,
    /// The server's private key for raw public key clients.
    rpk_key: Option<PathBuf>,
    bootstrap: Option<SocketAddr>,
    /// The bootstrap server's coaps socket, `None` with `--bootstrap-coaps none`.
    bootstrap_coaps: Option<SocketAddr>,
    http: SocketAddr,
    data_dir: PathBuf,
    /// Redis URL: selects RedisStore over SqliteStore.
    redis: Option<String>,
    verbose: bool,
    /// Package URI bases (`--firmware-*-uri`; the bound addresses are
    /// filled in once bound).
    firmware_uris: lwm2m_server::fota::FirmwareUris,
    /// Largest firmware upload, bytes.
    max_firmware_size: usize,
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
    let mut coap_tcp = env("LWM2M_COAP_TCP").filter(|v| !v.is_empty());
    let mut coaps = env("LWM2M_COAPS").filter(|v| !v.is_empty());
    let mut coaps_tcp = env("LWM2M_COAPS_TCP").filter(|v| !v.is_empty());
    let mut dtls_cert = env("LWM2M_DTLS_CERT").filter(|v| !v.is_empty());
    let mut dtls_key = env("LWM2M_DTLS_KEY").filter(|v| !v.is_empty());
    let mut dtls_ca = env("LWM2M_DTLS_CA").filter(|v| !v.is_empty());
    let mut dtls_rpk_key = env("LWM2M_DTLS_RPK_KEY").filter(|v| !v.is_empty());
    let mut http = env("LWM2M_HTTP");
    let mut bootstrap = env("LWM2M_BOOTSTRAP");
    let mut bootstrap_coaps = env("LWM2M_BOOTSTRAP_COAPS").filter(|v| !v.is_empty());
    let mut data_dir = env("LWM2M_DATA_DIR");
    let mut redis = env("LWM2M_REDIS").filter(|v| !v.is_empty());
    let mut fw_coap = env("LWM2M_FIRMWARE_COAP_URI").filter(|v| !v.is_empty());
    let mut fw_coaps = env("LWM2M_FIRMWARE_COAPS_URI").filter(|v| !v.is_empty());
    let mut fw_http = env("LWM2M_FIRMWARE_HTTP_URI").filter(|v| !v.is_empty());
    let mut fw_max = env("LWM2M_MAX_FIRMWARE_SIZE").filter(|v| !v.is_empty());
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
                    | "--coap-tcp"
                    | "--coaps"
                    | "--coaps-tcp"
                    | "--dtls-cert"
                    | "--dtls-key"
                    | "--dtls-ca"
                    | "--dtls-rpk-key"
                    | "--bootstrap"
                    | "--bootstrap-coaps"
                    | "--http"
                    | "--data-dir"
                    | "--redis"
                    | "--firmware-coap-uri"
                    | "--firmware-coaps-uri"
                    | "--firmware-http-uri"
                    | "--max-firmware-size"
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
            ("--coap-tcp", _) => &mut coap_tcp,
            ("--coaps", _) => &mut coaps,
            ("--coaps-tcp", _) => &mut coaps_tcp,
            ("--dtls-cert", _) => &mut dtls_cert,
            ("--dtls-key", _) => &mut dtls_key,
            ("--dtls-ca", _) => &mut dtls_ca,
            ("--dtls-rpk-key", _) => &mut dtls_rpk_key,
            ("--http", _) => &mut http,
            ("--bootstrap", _) => &mut bootstrap,
            ("--bootstrap-coaps", _) => &mut bootstrap_coaps,
            ("--redis", _) => &mut redis,
            ("--data-dir", _) => &mut data_dir,
            ("--firmware-coap-uri", _) => &mut fw_coap,
            ("--firmware-coaps-uri", _) => &mut fw_coaps,
            ("--firmware-http-uri", _) => &mut fw_http,
            ("--max-firmware-size", _) => &mut fw_max,
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
    let coap_tcp = address_or_none("--coap-tcp", coap_tcp, "0.0.0.0:5683")?;
    let coaps_tcp = address_or_none("--coaps-tcp", coaps_tcp, "0.0.0.0:5684")?;
    // Without a bootstrap server there is no bootstrap coaps socket either.
    let bootstrap_coaps = match bootstrap_coaps.as_deref().unwrap_or("0.0.0.0:5784") {
        "none" => None,
        c => Some(c.parse().map_err(|_| {
            format!("--bootstrap-coaps {c:?} is not an address like 0.0.0.0:5784 (or none)")
        })?),
    }
    .filter(|_| bootstrap.is_some());
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
    if (x509.is_some() || dtls_rpk_key.is_some())
        && coaps.is_none()
        && bootstrap_coaps.is_none()
        && coaps_tcp.is_none()
    {
        return Err(
            "--dtls-cert/--dtls-key/--dtls-ca/--dtls-rpk-key need a coaps socket \
             (not --coaps none, or a bootstrap server with --bootstrap-coaps, or --coaps-tcp)"
                .into(),
        );
    }
    for (flag, uri, scheme) in [
        ("--firmware-coap-uri", &fw_coap, "coap://"),
        ("--firmware-coaps-uri", &fw_coaps, "coaps://"),
        ("--firmware-http-uri", &fw_http, "http://"),
    ] {
        if let Some(u) = uri {
            let host = u.strip_prefix(scheme).unwrap_or("");
            if host.is_empty() || host.contains('?') || host.contains('#') {
                return Err(format!(
                    "{flag} {u:?} is not a base URI like {scheme}HOST:PORT"
                ));
            }
        }
    }
    let max_firmware_size = match fw_max {
        None => lwm2m_server::admin::DEFAULT_MAX_FIRMWARE_SIZE,
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or(format!(
            "--max-firmware-size {v:?} is not a positive number of bytes"
        ))?,
    };
    let mut server = ServerConfig::default();
    for (l, value) in LIMITS.iter().zip(&limits) {
        if let Some(v) = value {
            l.apply(&mut server, v)?;
        }
    }
    Ok(Args {
        coap,
        coap_tcp,
        coaps,
        coaps_tcp,
        x509,
        rpk_key: dtls_rpk_key.map(PathBuf::from),
        bootstrap,
        bootstrap_coaps,
        http,
        data_dir: PathBuf::from(data_dir.unwrap_or_else(|| "./lwm2m-data".into())),
        redis,
        verbose,
        firmware_uris: lwm2m_server::fota::FirmwareUris {
            coap: fw_coap,
            coaps: fw_coaps,
            http: fw_http,
            ..Default::default()
        },
        max_firmware_size,
        server,
    })
}

/// The address of an `ADDR|none` flag (`none` when not given): `Err` says
/// which flag was not an address like `example`.
fn address_or_none(
    flag: &str,
    value: Option<String>,
    example: &str,
) -> Result<Option<SocketAddr>, String> {
    match value.as_deref().unwrap_or("none") {
        "none" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{flag} {v:?} is not an address like {example} (or none)")),
    }
}

/// The CoAP-over-TLS listener's settings: the `--dtls-*` files.
fn tls_options(args: &Args, addr: SocketAddr) -> TlsOptions {
    TlsOptions {
        x509: args.x509.clone(),
        rpk_private_key: args.rpk_key.clone(),
        ..TlsOptions::new(addr)
    }
}

/// The DTLS settings of both coaps sockets (registration and bootstrap).
fn dtls_config(args: &Args) -> DtlsConfig {
    DtlsConfig {
        x509: args.x509.clone(),
        rpk_private_key: args.rpk_key.clone(),
        ..DtlsConfig::default()
    }
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
        coaps: args.coaps.map(|addr| (addr, dtls_config(&args))),
        coaps_tcp: args.coaps_tcp.map(|addr| tls_options(&args, addr)),
    };
    let server = match Server::start_with_tcp(
        args.coap,
        config.clone(),
        store,
        Box::new((*models).clone()),
        options,
        args.coap_tcp.map(TcpOptions::new),
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
    let firmware = match open_firmware(&args) {
        // Devices pulling block by block read from memory (one store read
        // per 64 KiB segment per node; see CachedFirmwareStore).
        Ok(s) => Arc::new(lwm2m_server::firmware::CachedFirmwareStore::new(
            s,
            FIRMWARE_CACHE_BYTES,
            std::time::Duration::from_secs(5),
        )) as lwm2m_server::firmware::SharedFirmwareStore,
        Err(e) => {
            tracing::error!("{e}");
            server.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    server
        .handle()
        .set_firmware_store(Some(firmware.clone()))
        .await;
    let mut admin_config = AdminConfig::for_server(&config);
    admin_config = admin_config.with_security(security).with_firmware(firmware);
    admin_config.max_firmware_size = args.max_firmware_size;
    let campaigns = match open_campaigns(&args) {
        Ok(s) => admin::CampaignStoreSlot::new(s),
        Err(e) => {
            tracing::error!("{e}");
            server.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    admin_config.campaign_store = campaigns.clone();
    // Alert rules are kept in the data directory; with --redis, which
    // writes nothing there, they stay in this node's memory (no Redis
    // store for them yet).
    admin_config.alerts_dir = args.redis.is_none().then(|| args.data_dir.clone());
    admin_config.firmware_uris = lwm2m_server::fota::FirmwareUris {
        coap_addr: Some(server.local_addr()),
        coaps_addr: server.secure_addr(),
        http_addr: Some(http_addr),
        ..args.firmware_uris.clone()
    };
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
    let coap_tcp = server
        .tcp_addr()
        .map_or("none".to_string(), |a| a.to_string());
    let coaps_tcp = server
        .tls_addr()
        .map_or("none".to_string(), |a| a.to_string());
    tracing::info!(
        coap = %server.local_addr(),
        coap_tcp = %coap_tcp,
        coaps = %coaps,
        coaps_tcp = %coaps_tcp,
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
    // Campaign leases go now (another node sharing Redis takes the
    // campaigns over at once, not when the leases expire).
    campaigns.stop();
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

/// Memory for the firmware packages devices are pulling (all nodes' blocks
/// of a campaign's package fit many times over).
const FIRMWARE_CACHE_BYTES: usize = 64 << 20;

/// The firmware package store: Redis with `--redis`, else
/// `firmware.sqlite3` and `firmware/` in the data directory.
fn open_firmware(args: &Args) -> Result<lwm2m_server::firmware::SharedFirmwareStore, String> {
    if let Some(url) = &args.redis {
        #[cfg(feature = "redis")]
        return match lwm2m_server::firmware::RedisFirmwareStore::open(url) {
            // An upload of --max-firmware-size bytes must fit in the
            // timeout (a block read is small).
            Ok(s) => Ok(Arc::new(s.with_timeout(std::time::Duration::from_secs(30)))),
            Err(e) => Err(format!("{e} ({})", redacted(url))),
        };
        #[cfg(not(feature = "redis"))]
        return Err(no_redis(url));
    }
    match SqliteFirmwareStore::open(&args.data_dir) {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) => Err(format!("{e} ({})", args.data_dir.display())),
    }
}

/// The campaign store: Redis with `--redis` (campaigns then run under
/// leases, one node each), else `campaigns.sqlite3` in the data directory.
fn open_campaigns(args: &Args) -> Result<Box<dyn lwm2m_server::campaign::CampaignStore>, String> {
    if let Some(url) = &args.redis {
        #[cfg(feature = "redis")]
        return match lwm2m_server::campaign::RedisCampaignStore::open(url) {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(format!("{e} ({})", redacted(url))),
        };
        #[cfg(not(feature = "redis"))]
        return Err(no_redis(url));
    }
    match lwm2m_server::campaign::SqliteCampaignStore::open(&args.data_dir) {
        Ok(s) => Ok(Box::new(s)),
        Err(e) => Err(format!("{e} ({})", args.data_dir.display())),
    }
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
    let store = open_bootstrap_store(args)?;
    let coaps = args.bootstrap_coaps.map(|a| (a, dtls_config(args)));
    let bs = BootstrapServer::start_secured(addr, BootstrapServerConfig::default(), store, coaps)
        .await
        .map_err(|e| format!("bootstrap server: {e}"))?;
    // Seeded through the server, so a file's configurations pass the same
    // checks (unique PSK identities) as the admin API's.
    let known = bs.endpoints().await.map_err(|e| e.to_string())?;
    let mut seeded = 0;
    for (ep, c) in file.endpoints {
        if !known.contains(&ep) {
            if let Err(e) = bs.put_config(&ep, c).await {
                let e = format!("{}: endpoint {ep:?}: {e}", path.display());
                bs.shutdown().await;
                return Err(e);
            }
            seeded += 1;
        }
    }
    let count = known.len() + seeded;
    let coaps = bs
        .secure_addr()
        .map_or("none".to_string(), |a| a.to_string());
    tracing::info!(
        bootstrap = %bs.local_addr(),
        bootstrap_coaps = %coaps,
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
        assert_eq!(a.coap_tcp, None);
        assert_eq!(a.coaps_tcp, None);
        assert_eq!(a.x509, None);
        assert!(!a.verbose);
        assert_eq!(a.firmware_uris, Default::default());
        assert_eq!(a.max_firmware_size, 16 << 20);
    }

    #[test]
    fn coap_tcp_flag() {
        let a = parse(&["--coap-tcp", "127.0.0.1:5683"], &[]).unwrap();
        assert_eq!(a.coap_tcp, Some("127.0.0.1:5683".parse().unwrap()));
        let a = parse(&["--coap-tcp=none"], &[("LWM2M_COAP_TCP", "0.0.0.0:5683")]).unwrap();
        assert_eq!(a.coap_tcp, None);
        let a = parse(&[], &[("LWM2M_COAP_TCP", "0.0.0.0:5685")]).unwrap();
        assert_eq!(a.coap_tcp, Some("0.0.0.0:5685".parse().unwrap()));
        let err = parse(&["--coap-tcp", "tcp"], &[]).unwrap_err();
        assert!(
            err.contains("--coap-tcp \"tcp\" is not an address"),
            "{err}"
        );
    }

    #[test]
    fn coaps_tcp_flag() {
        let a = parse(&["--coaps-tcp", "127.0.0.1:5684"], &[]).unwrap();
        assert_eq!(a.coaps_tcp, Some("127.0.0.1:5684".parse().unwrap()));
        let a = parse(
            &["--coaps-tcp=none"],
            &[("LWM2M_COAPS_TCP", "0.0.0.0:5684")],
        )
        .unwrap();
        assert_eq!(a.coaps_tcp, None);
        let a = parse(&[], &[("LWM2M_COAPS_TCP", "0.0.0.0:5686")]).unwrap();
        assert_eq!(a.coaps_tcp, Some("0.0.0.0:5686".parse().unwrap()));
        let err = parse(&["--coaps-tcp", "tls"], &[]).unwrap_err();
        assert!(
            err.contains("--coaps-tcp \"tls\" is not an address like 0.0.0.0:5684"),
            "{err}"
        );
        // The certificate files serve a coaps+tcp listener alone too.
        let files = [
            "--coaps=none",
            "--bootstrap=none",
            "--dtls-cert=c.pem",
            "--dtls-key=k.pem",
            "--dtls-ca=ca.pem",
        ];
        assert!(parse(&files, &[]).is_err(), "no socket for the files");
        let mut with_tls = files.to_vec();
        with_tls.push("--coaps-tcp=127.0.0.1:5684");
        let a = parse(&with_tls, &[]).unwrap();
        let tls = tls_options(&a, a.coaps_tcp.unwrap());
        assert_eq!(tls.x509, a.x509);
        assert_eq!(tls.tcp.addr, "127.0.0.1:5684".parse().unwrap());
    }

    #[test]
    fn firmware_flags() {
        let a = parse(
            &[
                "--firmware-coap-uri",
                "coap://fw.example:5683",
                "--max-firmware-size=1000",
            ],
            &[("LWM2M_FIRMWARE_HTTP_URI", "http://fw.example:80")],
        )
        .unwrap();
        assert_eq!(
            a.firmware_uris.coap.as_deref(),
            Some("coap://fw.example:5683")
        );
        assert_eq!(
            a.firmware_uris.http.as_deref(),
            Some("http://fw.example:80")
        );
        assert_eq!(a.max_firmware_size, 1000);
        let err = parse(&["--firmware-http-uri", "coap://x"], &[]).unwrap_err();
        assert!(err.contains("like http://HOST:PORT"), "{err}");
        assert!(parse(&["--max-firmware-size", "0"], &[]).is_err());
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
                "--bootstrap=none",
                "--dtls-cert=a",
                "--dtls-key=b",
                "--dtls-ca=c",
            ],
            &[],
        )
        .unwrap_err();
        assert!(err.contains("need a coaps socket"), "{err}");
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
    fn bootstrap_coaps_address_env_or_none() {
        let a = parse(&[], &[]).unwrap();
        assert_eq!(a.bootstrap_coaps, Some("0.0.0.0:5784".parse().unwrap()));
        let env = [("LWM2M_BOOTSTRAP_COAPS", "127.0.0.1:7")];
        let a = parse(&[], &env).unwrap();
        assert_eq!(a.bootstrap_coaps, Some("127.0.0.1:7".parse().unwrap()));
        let a = parse(&["--bootstrap-coaps", "127.0.0.1:8"], &env).unwrap();
        assert_eq!(a.bootstrap_coaps, Some("127.0.0.1:8".parse().unwrap()));
        assert_eq!(
            parse(&["--bootstrap-coaps=none"], &env)
                .unwrap()
                .bootstrap_coaps,
            None
        );
        // No bootstrap server, no bootstrap coaps socket.
        assert_eq!(
            parse(&["--bootstrap", "none"], &env)
                .unwrap()
                .bootstrap_coaps,
            None
        );
        assert!(parse(&["--bootstrap-coaps", "x"], &[])
            .unwrap_err()
            .contains("not an address like 0.0.0.0:5784"));
        // Certificates may serve the bootstrap socket alone.
        let certs = [
            "--coaps",
            "none",
            "--dtls-cert",
            "c",
            "--dtls-key",
            "k",
            "--dtls-ca",
            "a",
        ];
        assert!(parse(&certs, &[]).is_ok());
        let mut no_socket = certs.to_vec();
        no_socket.extend(["--bootstrap-coaps", "none"]);
        assert!(parse(&no_socket, &[])
            .unwrap_err()
            .contains("need a coaps socket"));
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
