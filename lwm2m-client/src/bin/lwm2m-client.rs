//! Demo LwM2M device: registers to one or more servers with Security (0),
//! Server (1), Access Control (2, with several servers), Device (3), Connectivity Monitoring (4), Firmware Update (5), Location
//! (6) and Connectivity Statistics (7) objects and serves it until Ctrl-C,
//! which De-registers.
//!
//! ```text
//! cargo run -p lwm2m-client -- --endpoint NAME --server coap://127.0.0.1:5683 \
//!     [--lifetime SECONDS] [--lwm2m-version 1.0|1.1|1.2] [--queue] \
//!     [--format tlv|senml-json|senml-cbor|lwm2m-cbor] [--bind ADDR] \
//!     [--https-ca PEM-FILE] [--firmware-state FILE]
//! cargo run -p lwm2m-client -- --endpoint NAME --server coap+tcp://127.0.0.1:5683
//! cargo run -p lwm2m-client -- --endpoint NAME --bootstrap coap://127.0.0.1:5783
//! cargo run -p lwm2m-client -- --endpoint NAME --server coaps://127.0.0.1:5684 \
//!     --psk-identity NAME --psk-key 000102030405060708090a0b0c0d0e0f
//! cargo run -p lwm2m-client -- --endpoint NAME --server coaps://127.0.0.1:5684 \
//!     --cert client.pem --key client-key.pem --server-cert server.pem [--certificate-usage 3]
//! cargo run -p lwm2m-client -- --endpoint NAME --server coaps://127.0.0.1:5684 \
//!     --rpk-key client-key.pem --server-public-key server-public.pem
//! ```
//! DTLS credentials for `coaps://` servers: `--psk-identity ID --psk-key
//! HEX` (Security Mode 0), or `--cert FILE --key FILE --server-cert FILE`
//! (Mode 2; PEM or DER files, stored as DER in Security resources 3, 5
//! and 4) with `--certificate-usage 3` (the default: the server's
//! certificate must equal `--server-cert`) or `2` (`--server-cert` is the
//! trust anchor its chain must lead to), or `--rpk-key FILE
//! --server-public-key FILE` (Mode 1, Raw Public Key: the device's private
//! key, its public half in resource 3, and the server's public key, PEM or
//! DER SubjectPublicKeyInfo, in resource 4). They apply to every `coaps://`
//! account, `--server`s and `--bootstrap`, alike (one device identity);
//! `coap://` accounts stay NoSec. A `coaps://` URI without credentials,
//! or credentials without a `coaps://` URI, is an error.
//! `--server` may be given several times: the n-th server gets Short Server
//! ID n, and the client registers with each (priority in the order given).
//! With several servers the Access Control object grants every server Read,
//! Write and Execute on every instance (its default entry); server 1 owns
//! the instances, each server its own Server object instance.
//! With `--bootstrap` the client starts without a server account and asks
//! the Bootstrap-Server for one. `--queue` registers in queue mode (awake
//! 93 s after each transmission). `--format` picks the format of
//! multi-value reads when the server sends no Accept (default SenML CBOR;
//! always TLV with an LwM2M 1.0 server; LwM2M CBOR needs 1.2). A server
//! that refuses the announced version (4.00 / 4.12) gets a lower one.
//! `--bind` is the local UDP address (default `0.0.0.0:0`, `[::]:0`
//! towards an IPv6 server). `--https-ca` adds a CA certificate file to the
//! system trust store for `https://` firmware downloads. `--firmware-state`
//! keeps the Firmware Update state in FILE and the image in FILE.image, so
//! that a restart resumes a download or keeps a downloaded package (without
//! it both are in memory). An installed image becomes the Device's
//! Firmware Version (/3/0/3): the first 16 hex digits of its SHA-256 (in
//! memory only: a restart reports the demo's own version again).
//! `--firmware-update-fails` makes every update fail (Update Result 8, the
//! image discarded), to try a server's failure handling. With
//! `--firmware-state FILE` the version is kept in FILE.version, and
//! `--firmware-reboot` makes an update "reboot" the device: the process
//! exits (without De-register) right after answering Execute Update, still
//! Updating; started again with the same FILE it finishes the update
//! (Update Result 1) and registers anew.
//!
//! Simulated parts: a firmware update (push, or pull from a `coap://`,
//! `http://` or `https://` URI) is kept in memory or in a file and
//! "installed" by logging a reboot; the location follows a loop around a
//! few waypoints; the statistics count the host's network interfaces (`/proc/net/dev`) where there is one.
//! Log level from `RUST_LOG` (default `info`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;

use lwm2m_client::http_fetch::{Fetcher, HttpConfig};
use lwm2m_client::objects::{
    rights, AccessControl, AclInstance, ConnectivityMonitoring, ConnectivityStatistics, Device,
    DeviceInfo, DownloadHost, Firmware, Location, Security, SecurityInstance, Server, ServerConfig,
    TrafficCounters, UpdateOutcome,
};
use lwm2m_client::security::{is_coap_tcp, is_coaps};
use lwm2m_client::tokio_driver::resolve_coap_uri;
use lwm2m_client::{Client, ClientConfig};
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{ResourceValue, Value, Version};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Duration;
use lwm2m_objects::firmware::{
    FileStateStore, FileStorage, FirmwareConfig, Protocol, UpdateFailure, VecStorage,
};
use sha2::Digest;
use tokio::net::UdpSocket;
use tracing::{error, info, warn};

const USAGE: &str =
    "usage: lwm2m-client --endpoint NAME (--server coap[+tcp]://HOST:PORT [--server ...] \
| --bootstrap coap://HOST:PORT) \
[--lifetime SECONDS] [--lwm2m-version 1.0|1.1|1.2] [--queue] \
[--format tlv|senml-json|senml-cbor|lwm2m-cbor] [--bind ADDR] [--https-ca PEM-FILE] [--firmware-state FILE [--firmware-reboot]] [--firmware-update-fails] \
[--psk-identity ID --psk-key HEX | --cert FILE --key FILE --server-cert FILE [--certificate-usage 2|3] \
| --rpk-key FILE --server-public-key FILE]";

struct Args {
    endpoint: String,
    /// The `--server` URIs in order (Short Server IDs 1, 2, ...).
    servers: Vec<String>,
    bootstrap: Option<String>,
    lifetime: u32,
    version: Version,
    queue: bool,
    format: Option<ContentFormat>,
    bind: Option<SocketAddr>,
    https_ca: Option<std::path::PathBuf>,
    firmware_state: Option<std::path::PathBuf>,
    firmware_update_fails: bool,
    firmware_reboot: bool,
    psk_identity: Option<String>,
    psk_key: Option<Vec<u8>>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
    server_cert: Option<std::path::PathBuf>,
    certificate_usage: Option<i64>,
    rpk_key: Option<std::path::PathBuf>,
    server_public_key: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        endpoint: String::new(),
        servers: Vec::new(),
        bootstrap: None,
        lifetime: 300,
        version: Version::new(1, 1),
        queue: false,
        format: None,
        bind: None,
        https_ca: None,
        firmware_state: None,
        firmware_update_fails: false,
        firmware_reboot: false,
        psk_identity: None,
        psk_key: None,
        cert: None,
        key: None,
        server_cert: None,
        certificate_usage: None,
        rpk_key: None,
        server_public_key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        if flag == "--queue" {
            args.queue = true;
            continue;
        }
        if flag == "--firmware-update-fails" {
            args.firmware_update_fails = true;
            continue;
        }
        if flag == "--firmware-reboot" {
            args.firmware_reboot = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--endpoint" => args.endpoint = value,
            "--server" => args.servers.push(value),
            "--bootstrap" => args.bootstrap = Some(value),
            "--https-ca" => args.https_ca = Some(value.into()),
            "--firmware-state" => args.firmware_state = Some(value.into()),
            "--psk-identity" => args.psk_identity = Some(value),
            "--psk-key" => {
                args.psk_key = Some(hex(&value).ok_or_else(|| {
                    format!("--psk-key: expected an even number of hex digits, got {value:?}")
                })?)
            }
            "--cert" => args.cert = Some(value.into()),
            "--key" => args.key = Some(value.into()),
            "--server-cert" => args.server_cert = Some(value.into()),
            "--rpk-key" => args.rpk_key = Some(value.into()),
            "--server-public-key" => args.server_public_key = Some(value.into()),
            "--certificate-usage" => {
                args.certificate_usage = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|u| matches!(u, 2 | 3))
                        .ok_or_else(|| {
                            format!("--certificate-usage: expected 2 or 3, got {value:?}")
                        })?,
                )
            }
            "--bind" => {
                args.bind = Some(value.parse().map_err(|_| {
                    format!("--bind: expected a socket address such as 127.0.0.1:0, got {value:?}")
                })?)
            }
            "--lifetime" => {
                args.lifetime = value
                    .parse()
                    .ok()
                    .filter(|&l| l > 0)
                    .ok_or_else(|| format!("--lifetime: expected seconds > 0, got {value:?}"))?
            }
            "--lwm2m-version" => {
                args.version = match value.as_str() {
                    "1.0" => Version::new(1, 0),
                    "1.1" => Version::new(1, 1),
                    "1.2" => Version::new(1, 2),
                    _ => {
                        return Err(format!(
                            "--lwm2m-version: expected 1.0, 1.1 or 1.2, got {value:?}"
                        ))
                    }
                }
            }
            "--format" => {
                args.format = Some(match value.as_str() {
                    "tlv" => ContentFormat::TLV,
                    "senml-json" => ContentFormat::SENML_JSON,
                    "senml-cbor" => ContentFormat::SENML_CBOR,
                    "lwm2m-cbor" => ContentFormat::LWM2M_CBOR,
                    _ => {
                        return Err(format!(
                            "--format: expected tlv, senml-json, senml-cbor or lwm2m-cbor, \
got {value:?}"
                        ))
                    }
                })
            }
            _ => return Err(format!("unknown flag {flag:?}\n{USAGE}")),
        }
    }
    if args.endpoint.is_empty() {
        return Err(format!("--endpoint is required\n{USAGE}"));
    }
    if args.servers.is_empty() {
        args.servers.push("coap://127.0.0.1:5683".into());
    }
    if args.servers.len() > 65_534 {
        return Err(format!("at most 65534 --server flags\n{USAGE}"));
    }
    Ok(args)
}

/// `HEX` digits to bytes.
fn hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The DTLS credentials the flags give.
enum Credentials {
    None,
    Psk {
        identity: Vec<u8>,
        key: Vec<u8>,
    },
    Certificate {
        certificate: Vec<u8>,
        private_key: Vec<u8>,
        server_certificate: Vec<u8>,
        usage: Option<i64>,
    },
    RawPublicKey {
        public_key: Vec<u8>,
        private_key: Vec<u8>,
        server_public_key: Vec<u8>,
    },
}

impl Credentials {
    /// Reads and checks the credential flags against the URIs in use.
    fn from_args(args: &Args) -> Result<Credentials, String> {
        let psk = args.psk_identity.is_some() || args.psk_key.is_some();
        let cert = args.cert.is_some()
            || args.key.is_some()
            || args.server_cert.is_some()
            || args.certificate_usage.is_some();
        let rpk = args.rpk_key.is_some() || args.server_public_key.is_some();
        if usize::from(psk) + usize::from(cert) + usize::from(rpk) > 1 {
            return Err(
                "give one of --psk-identity/--psk-key, --cert/--key/--server-cert \
or --rpk-key/--server-public-key"
                    .into(),
            );
        }
        if rpk {
            return match (&args.rpk_key, &args.server_public_key) {
                (Some(k), Some(s)) => {
                    let (public_key, private_key) = read_key_pair(k)?;
                    let creds = Credentials::RawPublicKey {
                        public_key,
                        private_key,
                        server_public_key: read_public_key(s)?,
                    };
                    creds.check_uris(args)
                }
                _ => Err("--rpk-key and --server-public-key go together".into()),
            };
        }
        let creds = match (psk, cert) {
            (false, false) => Credentials::None,
            (true, false) => match (&args.psk_identity, &args.psk_key) {
                (Some(id), Some(key)) => Credentials::Psk {
                    identity: id.clone().into_bytes(),
                    key: key.clone(),
                },
                _ => return Err("--psk-identity and --psk-key go together".into()),
            },
            // (true, true) was refused above.
            (_, true) => match (&args.cert, &args.key, &args.server_cert) {
                (Some(c), Some(k), Some(s)) => Credentials::Certificate {
                    certificate: read_certificate(c)?,
                    private_key: read_private_key(k)?,
                    server_certificate: read_certificate(s)?,
                    usage: args.certificate_usage,
                },
                _ => return Err("--cert, --key and --server-cert go together".into()),
            },
        };
        creds.check_uris(args)
    }

    /// These credentials if they fit the URIs: a `coaps://` URI needs
    /// some, and credentials need a `coaps://` URI.
    fn check_uris(self, args: &Args) -> Result<Credentials, String> {
        let uris = args.servers.iter().chain(args.bootstrap.as_ref());
        let secure = uris.filter(|u| is_coaps(u)).count();
        match (&self, secure) {
            (Credentials::None, n) if n > 0 => Err("a coaps:// server needs credentials: \
--psk-identity ID --psk-key HEX, --cert FILE --key FILE --server-cert FILE, \
or --rpk-key FILE --server-public-key FILE"
                .into()),
            (Credentials::None, _) => Ok(self),
            (_, 0) => Err("DTLS credentials given but no coaps:// --server or --bootstrap".into()),
            _ => Ok(self),
        }
    }

    /// `instance` with these credentials if its URI is `coaps://`.
    fn apply(&self, instance: SecurityInstance) -> SecurityInstance {
        if !is_coaps(&instance.server_uri) {
            return instance;
        }
        match self {
            Credentials::None => instance,
            Credentials::Psk { identity, key } => instance.with_psk(identity, key),
            Credentials::Certificate {
                certificate,
                private_key,
                server_certificate,
                usage,
            } => instance.with_certificate(certificate, private_key, server_certificate, *usage),
            Credentials::RawPublicKey {
                public_key,
                private_key,
                server_public_key,
            } => instance.with_raw_public_key(public_key, private_key, server_public_key),
        }
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A certificate file (PEM or DER) as DER.
fn read_certificate(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = read_file(path)?;
    let cert = openssl::x509::X509::from_pem(&bytes)
        .or_else(|_| openssl::x509::X509::from_der(&bytes))
        .map_err(|_| {
            format!(
                "{}: expected a PEM or DER X.509 certificate",
                path.display()
            )
        })?;
    cert.to_der()
        .map_err(|e| format!("{}: cannot encode the certificate: {e}", path.display()))
}

/// A private key file (PEM or DER, PKCS#8 or the algorithm's own form) as
/// PKCS#8 DER.
fn read_private_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = read_file(path)?;
    let key = openssl::pkey::PKey::private_key_from_pem(&bytes)
        .or_else(|_| openssl::pkey::PKey::private_key_from_der(&bytes))
        .map_err(|_| {
            format!(
                "{}: expected an unencrypted PEM or DER private key",
                path.display()
            )
        })?;
    key.private_key_to_pkcs8()
        .map_err(|e| format!("{}: cannot encode the key: {e}", path.display()))
}

/// A private key file (PEM or DER) as (its public half as DER
/// SubjectPublicKeyInfo, the key as PKCS#8 DER).
fn read_key_pair(path: &std::path::Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    let private_key = read_private_key(path)?;
    let key = openssl::pkey::PKey::private_key_from_der(&private_key)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let public_key = key
        .public_key_to_der()
        .map_err(|e| format!("{}: cannot encode the public key: {e}", path.display()))?;
    Ok((public_key, private_key))
}

/// A public key file (PEM `PUBLIC KEY` or DER SubjectPublicKeyInfo) as DER.
fn read_public_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = read_file(path)?;
    let key = openssl::pkey::PKey::public_key_from_pem(&bytes)
        .or_else(|_| openssl::pkey::PKey::public_key_from_der(&bytes))
        .map_err(|_| {
            format!(
                "{}: expected a PEM or DER public key (SubjectPublicKeyInfo)",
                path.display()
            )
        })?;
    key.public_key_to_der()
        .map_err(|e| format!("{}: cannot encode the public key: {e}", path.display()))
}

async fn run(args: Args) -> Result<(), String> {
    let uri = args.bootstrap.as_deref().unwrap_or(&args.servers[0]);
    for uri in &args.servers {
        if resolve_coap_uri(uri).is_none() {
            return Err(format!(
                "cannot resolve {uri:?}: expected coap://HOST[:PORT], coap+tcp://HOST[:PORT] or coaps://HOST[:PORT]"
            ));
        }
    }
    let server: SocketAddr = resolve_coap_uri(uri).ok_or_else(|| {
        format!("cannot resolve {uri:?}: expected coap://HOST[:PORT], coap+tcp://HOST[:PORT] or coaps://HOST[:PORT]")
    })?;
    let credentials = Credentials::from_args(&args)?;
    let bind: SocketAddr = match args.bind {
        Some(b) => b,
        None if server.is_ipv4() => "0.0.0.0:0".parse().unwrap_or_else(|_| unreachable!()),
        None => "[::]:0".parse().unwrap_or_else(|_| unreachable!()),
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot bind UDP socket: {e}"))?;
    // Connecting a UDP socket picks the local address used towards the
    // server: that is the device's IP address for object 4.
    let probe = std::net::UdpSocket::bind(bind).and_then(|s| s.connect(server).map(|()| s));
    let ip = probe
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();

    let mut config = ClientConfig::new(&args.endpoint);
    config.lifetime = args.lifetime;
    config.lwm2m_version = args.version;
    config.preferred_format = args.format;
    if args.queue {
        // MAX_TRANSMIT_WAIT, the awake time the TS recommends.
        config.queue_mode = Some(lwm2m_core::time::Duration::from_secs(93));
    }
    // Current Time and Memory Free change by themselves: re-read observed
    // values every second so observations of them notify.
    config.poll_observed = Some(lwm2m_core::time::Duration::from_secs(1));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(32);
    let mut client = Client::new(config, server, SplitMix64::new(seed));
    client.set_resolver(resolve_coap_uri);
    match &args.bootstrap {
        Some(bs) => {
            let mut security = Security::empty();
            security.insert(0, credentials.apply(SecurityInstance::bootstrap(bs)));
            client.add_object(Box::new(security));
            client.add_object(Box::new(Server::empty()));
        }
        None => {
            let mut security = Security::empty();
            let mut servers = Server::empty();
            for (n, uri) in args.servers.iter().enumerate() {
                // At most 65534 servers (checked by parse_args).
                let id = u16::try_from(n).unwrap_or(u16::MAX - 1);
                let ssid = id + 1;
                security.insert(id, credentials.apply(SecurityInstance::server(uri, ssid)));
                servers.insert(
                    id,
                    ServerConfig {
                        short_server_id: ssid,
                        registration_priority: Some(u32::from(id)),
                        // The driver carries coap+tcp:// over TCP.
                        binding: if is_coap_tcp(uri) { "T" } else { "U" }.into(),
                        ..ServerConfig::new(args.lifetime)
                    },
                );
            }
            client.add_object(Box::new(security));
            client.add_object(Box::new(servers));
        }
    }
    let info = DeviceInfo {
        manufacturer: "lwm2m-rs".into(),
        model_number: "demo".into(),
        serial_number: args.endpoint.clone(),
        firmware_version: env!("CARGO_PKG_VERSION").into(),
        // UDP, and TCP for coap+tcp:// servers.
        supported_binding: "UT".into(),
    };
    if args.firmware_reboot && args.firmware_state.is_none() {
        return Err(
            "--firmware-reboot needs --firmware-state FILE (the update finishes after the restart)"
                .into(),
        );
    }
    // What the installed image says it is (see `install`), kept beside
    // the firmware state if there is one.
    let version_file = args.firmware_state.as_ref().map(|state| {
        let mut f = state.clone().into_os_string();
        f.push(".version");
        std::path::PathBuf::from(f)
    });
    let stored_version = version_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok());
    let installed_version = Rc::new(RefCell::new(
        stored_version.unwrap_or_else(|| info.firmware_version.clone()),
    ));
    let version = installed_version.clone();
    let device = Device::new(info)
        .with_host_sources()
        .with_firmware_version(move || version.borrow().clone())
        .on_reboot(|| info!("Reboot executed (the demo only logs it)"))
        .on_factory_reset(|| info!("Factory Reset executed (the demo only logs it)"));
    client.add_object(Box::new(device));
    let ips = if ip.is_empty() { Vec::new() } else { vec![ip] };
    client.add_object(Box::new(ConnectivityMonitoring::ethernet(ips)));
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0);
    let mut protocols = vec![Protocol::Coap, Protocol::Http, Protocol::Https];
    // The driver carries coaps:// block requests over DTLS.
    if cfg!(feature = "dtls") {
        protocols.push(Protocol::Coaps);
    }
    let firmware_config = FirmwareConfig {
        protocols,
        // The engine's clock starts about now: Last State Change Time is
        // then a Unix time, comparable across restarts (--firmware-state).
        unix_time_at_zero: unix_now,
        ..FirmwareConfig::default()
    };
    let fails = args.firmware_update_fails;
    let firmware_handle: Box<dyn DownloadHost> = match &args.firmware_state {
        None => {
            let firmware =
                Firmware::with_config(firmware_config, VecStorage::new(FIRMWARE_CAPACITY), {
                    let version = installed_version.clone();
                    move |storage: &mut VecStorage| {
                        install(storage.image().unwrap_or_default(), fails, &version)
                    }
                });
            let handle = firmware.handle();
            client.add_object(Box::new(firmware));
            Box::new(handle)
        }
        Some(state) => {
            let mut image = state.clone().into_os_string();
            image.push(".image");
            let firmware = Firmware::with_state_store(
                firmware_config,
                FileStorage::new(image, FIRMWARE_CAPACITY as u64),
                FileStateStore::new(state),
                {
                    let version = installed_version.clone();
                    let version_file = version_file.clone();
                    let reboot = args.firmware_reboot;
                    move |storage: &mut FileStorage| {
                        let image = std::fs::read(storage.path()).unwrap_or_default();
                        let outcome = install(&image, fails, &version);
                        if outcome != UpdateOutcome::Succeeded {
                            return outcome;
                        }
                        if let Some(f) = &version_file {
                            if let Err(e) = std::fs::write(f, version.borrow().as_bytes()) {
                                warn!("cannot keep the firmware version in {}: {e}", f.display());
                            }
                        }
                        if reboot {
                            reboot_soon();
                            return UpdateOutcome::Pending;
                        }
                        outcome
                    }
                },
                // Still Updating at start: the simulated install was cut
                // short; the demo's image always "runs".
                |_: &mut FileStorage| UpdateOutcome::Succeeded,
            );
            let handle = firmware.handle();
            if let Some(e) = handle.store_error() {
                warn!("{e}; starting with a fresh firmware state");
            }
            client.add_object(Box::new(firmware));
            Box::new(handle)
        }
    };
    let http = HttpConfig {
        extra_ca_file: args.https_ca.clone(),
        ..HttpConfig::default()
    };
    let mut fetcher =
        Fetcher::new(firmware_handle.as_ref(), http).map_err(|e| format!("--https-ca: {e}"))?;
    client.add_object(Box::new(Location::track(
        vec![
            (48.8584, 2.2945, 35.0),
            (48.8606, 2.3376, 40.0),
            (48.8530, 2.3499, 38.0),
        ],
        Duration::from_secs(600),
        Duration::from_secs(10),
        unix_now,
    )));
    client.add_object(Box::new(ConnectivityStatistics::new(host_traffic)));
    if args.bootstrap.is_none() && args.servers.len() > 1 {
        let acl = demo_access_control(&client);
        client.add_object(Box::new(acl));
    }

    info!(endpoint = %args.endpoint, servers = ?args.servers, lifetime = args.lifetime, "starting");
    let shutdown = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling available: run until killed.
            std::future::pending::<()>().await;
        }
    };
    lwm2m_client::tokio_driver::run_with_fetcher(
        &mut client,
        &socket,
        shutdown,
        |_| {},
        &mut fetcher,
    )
    .await
    .map_err(|e| format!("socket error: {e}"))
}

/// Access Control for several servers: every instance of the objects
/// readable, writable and executable by every server (default entry 0),
/// owned by server 1 but for the Server object instances, each owned by
/// its own server.
fn demo_access_control<P, R>(client: &Client<P, R>) -> AccessControl
where
    P: Clone + Ord + std::fmt::Debug,
    R: lwm2m_core::rng::RandomSource,
{
    let everyone = rights::READ | rights::WRITE | rights::EXECUTE;
    let mut acl = AccessControl::new();
    for o in [1, 3, 4, 5, 6, 7] {
        let Some(object) = client.object(o) else {
            continue;
        };
        for i in object.instances() {
            let owner = match o {
                1 => match object.read(i, 0) {
                    Ok(ResourceValue::Single(Value::Integer(ssid))) => {
                        u16::try_from(ssid).unwrap_or(1)
                    }
                    _ => 1,
                },
                _ => 1,
            };
            acl = acl.with(AclInstance::new(o, i, owner).grant(0, everyone));
        }
    }
    acl
}

/// The demo's "installation" of a firmware `image`: the Firmware Version
/// becomes the first 16 hex digits of its SHA-256 (or the update fails,
/// with `--firmware-update-fails`).
fn install(image: &[u8], fails: bool, version: &RefCell<String>) -> UpdateOutcome {
    if fails {
        warn!(
            bytes = image.len(),
            "firmware update: failing as --firmware-update-fails asks"
        );
        return UpdateOutcome::Failed(UpdateFailure::DiscardImage);
    }
    let digest: String = sha2::Sha256::digest(image)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    info!(
        bytes = image.len(),
        "firmware update: installing the image and rebooting (simulated)"
    );
    *version.borrow_mut() = digest.clone();
    info!(version = %digest, "firmware update: running the new image (simulated reboot done)");
    UpdateOutcome::Succeeded
}

/// The simulated reboot of `--firmware-reboot`: the process exits (no
/// De-register) once the answer to Execute Update has gone out.
fn reboot_soon() {
    info!("firmware update: rebooting into the new image (the process exits)");
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(500));
        std::process::exit(0);
    });
}

/// Largest firmware image the demo keeps (in memory, or in the image file).
const FIRMWARE_CAPACITY: usize = 16 << 20;

/// The host's interface counters from `/proc/net/dev` (all interfaces
/// summed; zeros where the file does not exist).
fn host_traffic() -> TrafficCounters {
    let mut c = TrafficCounters::default();
    let Ok(text) = std::fs::read_to_string("/proc/net/dev") else {
        return c;
    };
    for line in text.lines().skip(2) {
        let Some((_, fields)) = line.split_once(':') else {
            continue;
        };
        let n: Vec<u64> = fields
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets ...
        let get = |i: usize| n.get(i).copied().unwrap_or(0);
        c.rx_bytes = c.rx_bytes.saturating_add(get(0));
        c.tx_bytes = c.tx_bytes.saturating_add(get(8));
        c.messages = c.messages.saturating_add(get(1)).saturating_add(get(9));
    }
    c
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            error!("{msg}");
            ExitCode::FAILURE
        }
    }
}
