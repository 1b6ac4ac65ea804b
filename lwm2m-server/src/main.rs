//! The LwM2M server binary.
//!
//! ```text
//! lwm2m-server [--coap ADDR] [--bootstrap ADDR|none] [--data-dir DIR]
//! ```
//! `--coap` (env `LWM2M_COAP`, default `0.0.0.0:5683`): UDP address for CoAP.
//! `--bootstrap` (env `LWM2M_BOOTSTRAP`, default `0.0.0.0:5783`): UDP address
//! of the bootstrap server, `none` to run without it. Its configurations come
//! from `bootstrap.json` in the data directory, if present (README).
//! `--data-dir` (env `LWM2M_DATA_DIR`, default `./lwm2m-data`): where the
//! registration database lives. Flags win over environment variables.
//! Logs go to stderr; `RUST_LOG`-style filtering is not wired in, the level is
//! `info` (`--verbose` for `debug`).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use lwm2m_server::bootstrap::driver::BootstrapServer;
use lwm2m_server::bootstrap::{BootstrapFile, BootstrapServerConfig, MemoryConfigStore};
use lwm2m_server::{Server, ServerConfig, SqliteStore};

const USAGE: &str =
    "usage: lwm2m-server [--coap ADDR] [--bootstrap ADDR|none] [--data-dir DIR] [--verbose]
  --coap ADDR      UDP address for CoAP (env LWM2M_COAP, default 0.0.0.0:5683)
  --bootstrap ADDR UDP address of the bootstrap server, or none (env LWM2M_BOOTSTRAP,
                   default 0.0.0.0:5783); configurations from DIR/bootstrap.json
  --data-dir DIR   registration database directory (env LWM2M_DATA_DIR, default ./lwm2m-data)
  --verbose        debug logging";

#[derive(Debug, PartialEq)]
struct Args {
    coap: SocketAddr,
    bootstrap: Option<SocketAddr>,
    data_dir: PathBuf,
    verbose: bool,
}

/// Three flags do not justify clap's build time on every developer and CI
/// machine; this parser accepts `--flag VALUE` and `--flag=VALUE`.
fn parse_args(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Args, String> {
    let mut coap = env("LWM2M_COAP");
    let mut data_dir = env("LWM2M_DATA_DIR");
    let mut bootstrap = env("LWM2M_BOOTSTRAP");
    let mut verbose = false;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        match flag.as_str() {
            "--coap" | "--data-dir" | "--bootstrap" => {
                let value = match inline {
                    Some(v) => v,
                    None => it.next().ok_or(format!("{flag} needs a value"))?,
                };
                if flag == "--coap" {
                    coap = Some(value);
                } else if flag == "--bootstrap" {
                    bootstrap = Some(value);
                } else {
                    data_dir = Some(value);
                }
            }
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => return Err(String::new()),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    let coap = coap.unwrap_or_else(|| "0.0.0.0:5683".into());
    let coap = coap
        .parse()
        .map_err(|_| format!("--coap {coap:?} is not an address like 0.0.0.0:5683"))?;
    let bootstrap = match bootstrap.as_deref().unwrap_or("0.0.0.0:5783") {
        "none" => None,
        b => Some(b.parse().map_err(|_| {
            format!("--bootstrap {b:?} is not an address like 0.0.0.0:5783 (or none)")
        })?),
    };
    Ok(Args {
        coap,
        bootstrap,
        data_dir: PathBuf::from(data_dir.unwrap_or_else(|| "./lwm2m-data".into())),
        verbose,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1), |k| std::env::var(k).ok()) {
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

async fn serve(args: Args) -> ExitCode {
    let stop = StopSignal::install();
    let store = match SqliteStore::open(&args.data_dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e} ({})", args.data_dir.display());
            return ExitCode::FAILURE;
        }
    };
    let models = Box::new(lwm2m_objects::Registry::standard());
    let server =
        match Server::start(args.coap, ServerConfig::default(), Box::new(store), models).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
    tracing::info!(
        coap = %server.local_addr(),
        data_dir = %args.data_dir.display(),
        "LwM2M server listening"
    );
    let bootstrap = match args.bootstrap {
        Some(addr) => match start_bootstrap(addr, &args.data_dir).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!("{e}");
                server.shutdown().await;
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    stop.wait().await;
    tracing::info!("shutting down");
    if let Some(b) = bootstrap {
        b.shutdown().await;
    }
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Starts the bootstrap server with the configurations of
/// `data_dir/bootstrap.json` (none if the file does not exist).
async fn start_bootstrap(
    addr: SocketAddr,
    data_dir: &std::path::Path,
) -> Result<BootstrapServer, String> {
    let path = data_dir.join("bootstrap.json");
    let file = match std::fs::read_to_string(&path) {
        Ok(text) => {
            BootstrapFile::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BootstrapFile::default(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let count = file.endpoints.len();
    let store = Box::new(MemoryConfigStore::from(file));
    let bs = BootstrapServer::start(addr, BootstrapServerConfig::default(), store)
        .await
        .map_err(|e| format!("bootstrap server: {e}"))?;
    tracing::info!(
        bootstrap = %bs.local_addr(),
        configurations = count,
        "LwM2M bootstrap server listening"
    );
    Ok(bs)
}

/// Ctrl-C (SIGINT) or, on Unix, SIGTERM (what service managers and
/// container runtimes send). Created before the servers start, so a signal
/// that arrives while they start up is not lost to the default action
/// (which would kill the process without a clean shutdown).
struct StopSignal {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignal {
    fn install() -> StopSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!("cannot wait for SIGTERM/SIGINT: {e}");
                    None
                }
            };
            StopSignal { signals }
        }
        #[cfg(not(unix))]
        StopSignal {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot wait for Ctrl-C: {e}");
            // Nothing can stop the server cleanly; keep serving.
            std::future::pending::<()>().await;
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
        assert_eq!(a.data_dir, PathBuf::from("./lwm2m-data"));
        assert_eq!(a.bootstrap, Some("0.0.0.0:5783".parse().unwrap()));
        assert!(!a.verbose);
    }

    #[test]
    fn flags_override_env() {
        let env = [("LWM2M_COAP", "127.0.0.1:1"), ("LWM2M_DATA_DIR", "/e")];
        let a = parse(&[], &env).unwrap();
        assert_eq!(a.coap, "127.0.0.1:1".parse().unwrap());
        assert_eq!(a.data_dir, PathBuf::from("/e"));
        let a = parse(&["--coap", "[::1]:5684", "--data-dir=/f", "-v"], &env).unwrap();
        assert_eq!(a.coap, "[::1]:5684".parse().unwrap());
        assert_eq!(a.data_dir, PathBuf::from("/f"));
        assert!(a.verbose);
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
    fn errors() {
        assert!(parse(&["--coap"], &[])
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&["--coap", "localhost"], &[])
            .unwrap_err()
            .contains("not an address"));
        assert!(parse(&["--port", "1"], &[])
            .unwrap_err()
            .contains("unknown argument"));
        assert_eq!(parse(&["--help"], &[]), Err(String::new()));
    }
}
