//! Firmware pull over `http://` and `https://` (feature `http`): the
//! Firmware object hands the download to the host, the tokio fetcher runs it
//! against a local HTTP(S) server on real sockets. The server honours (or
//! ignores) `Range`, can drop the connection after K body bytes and can
//! redirect chosen paths.
#![cfg(feature = "http")]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use lwm2m_client::http_fetch::{Fetcher, HttpConfig};
use lwm2m_client::objects::{DownloadHost, Firmware, FirmwareHandle, ResumePolicy, UpdateOutcome};
use lwm2m_client::Object;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::BlockValue;
use lwm2m_core::model::{ResourceValue, Value};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_objects::firmware::{
    FileStateStore, FileStorage, FirmwareConfig, FirmwareStateStore, FirmwareStorage, Protocol,
    State, UpdateResult, VecStorage,
};
use openssl::ssl::{SslAcceptor, SslMethod};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 509) as u8).collect()
}

/// How the test server answers.
#[derive(Clone, Default)]
struct Behaviour {
    body: Vec<u8>,
    /// Answer 206 to `Range: bytes=N-` (else 200 with the whole body).
    honour_range: bool,
    /// Per connection, in order: close after this many body bytes.
    drop_after: VecDeque<usize>,
    /// Answer this status (no body) instead.
    status: Option<u16>,
    /// Chunked transfer coding instead of Content-Length.
    chunked: bool,
    /// Request path (with query) → redirect status and `Location` (none:
    /// no header). Redirects do not use up `drop_after`.
    redirects: HashMap<String, (u16, Option<String>)>,
}

impl Behaviour {
    /// Also answers `path` with `code` and `Location: location`.
    fn redirect(mut self, path: &str, code: u16, location: Option<&str>) -> Behaviour {
        self.redirects
            .insert(path.into(), (code, location.map(Into::into)));
        self
    }
}

/// Shared with a running server, to change how it answers.
type SharedBehaviour = Arc<Mutex<Behaviour>>;

/// Request heads the server received.
type Seen = Arc<Mutex<Vec<String>>>;

/// The request target of a request head (`/fw.bin?v=1`).
fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or_default()
}

fn range_of(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("Range: bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
}

/// One answer on `stream`.
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    b: &Mutex<Behaviour>,
    seen: &Seen,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    seen.lock().unwrap().push(head.clone());
    let redirect = b.lock().unwrap().redirects.get(path_of(&head)).cloned();
    if let Some((code, location)) = redirect {
        let location = location.map_or(String::new(), |l| format!("Location: {l}\r\n"));
        let answer = format!("HTTP/1.1 {code} Moved\r\n{location}Content-Length: 5\r\n\r\nmoved");
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let (b, limit) = {
        let mut b = b.lock().unwrap();
        let limit = b.drop_after.pop_front();
        (b.clone(), limit)
    };
    let mut out = Vec::new();
    let body: &[u8];
    if let Some(code) = b.status {
        out.extend_from_slice(
            format!("HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        body = &[];
    } else {
        match range_of(&head).filter(|_| b.honour_range) {
            Some(from) => {
                body = &b.body[from.min(b.body.len())..];
                out.extend_from_slice(
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\n",
                        b.body.len() - 1,
                        b.body.len()
                    )
                    .as_bytes(),
                );
            }
            None => {
                body = &b.body;
                out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            }
        }
        if b.chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        } else {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        }
    }
    let sent = &body[..limit.unwrap_or(body.len()).min(body.len())];
    if b.chunked && b.status.is_none() {
        for piece in sent.chunks(1000) {
            out.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        if limit.is_none() {
            out.extend_from_slice(b"0\r\nTrailer: x\r\n\r\n");
        }
    } else {
        out.extend_from_slice(sent);
    }
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// A plain HTTP server with behaviour `b` on a free port.
async fn http_server(b: Behaviour) -> (SocketAddr, Seen) {
    let (addr, seen, _) = shared_http_server(b).await;
    (addr, seen)
}

/// [`http_server`], with its behaviour to change once addresses are known.
async fn shared_http_server(b: Behaviour) -> (SocketAddr, Seen, SharedBehaviour) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let b = Arc::new(Mutex::new(b));
    let shared = b.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            serve(stream, &b, &s).await;
        }
    });
    (addr, seen, shared)
}

#[path = "support/pki.rs"]
mod pki;
use pki::{pki, Pki};

/// An HTTPS server presenting `pki`'s server certificate.
async fn https_server(b: Behaviour, pki: &Pki) -> (SocketAddr, Seen) {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_private_key(&pki.key).unwrap();
    acceptor.set_certificate(&pki.cert).unwrap();
    let acceptor = Arc::new(acceptor.build());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let b = Arc::new(Mutex::new(b));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
            let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
            if std::pin::Pin::new(&mut tls).accept().await.is_ok() {
                serve(tls, &b, &s).await;
            }
        }
    });
    (addr, seen)
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("lwm2m-fw-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The object with HTTP and HTTPS in Protocol Support, retrying at once.
fn object() -> (Firmware<VecStorage>, FirmwareHandle<VecStorage>) {
    let config = FirmwareConfig {
        protocols: vec![Protocol::Coap, Protocol::Http, Protocol::Https],
        ..FirmwareConfig::default()
    };
    let fw = Firmware::with_config(config, VecStorage::new(1 << 20), |_: &mut VecStorage| {
        UpdateOutcome::Succeeded
    })
    .with_resume_policy(ResumePolicy {
        attempts: 3,
        delay: Duration::ZERO,
    });
    let handle = fw.handle();
    (fw, handle)
}

fn write_uri(obj: &mut dyn Object, uri: &str) {
    obj.write(0, 1, ResourceValue::Single(Value::String(uri.into())))
        .unwrap();
}

/// Runs the fetcher until the object leaves Downloading (10 s at most).
async fn download<S: FirmwareStorage + 'static>(
    obj: &mut Firmware<S>,
    handle: &FirmwareHandle<S>,
    config: HttpConfig,
) -> (State, UpdateResult) {
    let mut fetcher = Fetcher::new(handle, config).unwrap();
    let start = tokio::time::Instant::now();
    let now = || Instant::from_millis(start.elapsed().as_millis() as u64);
    loop {
        obj.tick(now());
        fetcher.pump();
        let state = handle.with(|f| f.state());
        if state != State::Downloading {
            return (state, handle.with(|f| f.result()));
        }
        assert!(
            start.elapsed() < StdDuration::from_secs(10),
            "download hangs at {:?}",
            handle.with(|f| f.resume_offset())
        );
        tokio::select! {
            Some((id, r)) = fetcher.next() => fetcher.deliver(id, r, now()),
            () = tokio::time::sleep(StdDuration::from_millis(20)) => {}
        }
    }
}

fn stored(handle: &FirmwareHandle<VecStorage>) -> Option<Vec<u8>> {
    handle.with(|f| f.storage().image().map(<[u8]>::to_vec))
}

/// What a pull from an HTTP server answering as `b` gave.
struct Pull {
    outcome: (State, UpdateResult),
    image: Option<Vec<u8>>,
    /// The request heads the server saw.
    heads: Vec<String>,
    addr: SocketAddr,
}

impl Pull {
    /// The `Range` start of each request.
    fn ranges(&self) -> Vec<Option<usize>> {
        self.heads.iter().map(|h| range_of(h)).collect()
    }

    /// The request target of each request.
    fn paths(&self) -> Vec<&str> {
        self.heads.iter().map(|h| path_of(h)).collect()
    }
}

fn sha(bytes: &[u8]) -> Option<[u8; 32]> {
    Some(Sha256::digest(bytes).into())
}

/// Pulls `http://ADDR/fw.bin?v=1` from a server answering as `b`, with
/// `digest` expected.
async fn pull(b: Behaviour, digest: Option<[u8; 32]>) -> Pull {
    let (addr, seen) = http_server(b).await;
    let (mut obj, handle) = object();
    handle.set_expected_sha256(digest);
    write_uri(&mut obj, &format!("http://{addr}/fw.bin?v=1"));
    let outcome = download(&mut obj, &handle, HttpConfig::default()).await;
    let heads = seen.lock().unwrap().clone();
    Pull {
        outcome,
        image: stored(&handle),
        heads,
        addr,
    }
}

const DOWNLOADED: (State, UpdateResult) = (State::Downloaded, UpdateResult::Initial);

#[tokio::test]
async fn http_full_download_with_sha256_check() {
    let pkg = image(100_000);
    let body = Behaviour {
        body: pkg.clone(),
        ..Behaviour::default()
    };
    let p = pull(body, sha(&pkg)).await;
    assert_eq!((p.outcome, p.image), (DOWNLOADED, Some(pkg)));
    assert_eq!(p.heads.len(), 1);
    let head = &p.heads[0];
    assert!(head.starts_with("GET /fw.bin?v=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nHost: {}\r\n", p.addr)),
        "{head}"
    );
    assert!(!head.contains("Range:"));
}

#[tokio::test]
async fn http_wrong_digest_gives_result_5() {
    let body = Behaviour {
        body: image(3000),
        ..Behaviour::default()
    };
    let p = pull(body, Some([7; 32])).await;
    assert_eq!(
        p.outcome,
        (State::Idle, UpdateResult::IntegrityCheckFailure)
    );
}

#[tokio::test]
async fn http_chunked_body_is_decoded() {
    let pkg = image(12_345);
    let body = Behaviour {
        body: pkg.clone(),
        chunked: true,
        ..Behaviour::default()
    };
    let p = pull(body, sha(&pkg)).await;
    assert_eq!((p.outcome, p.image), (DOWNLOADED, Some(pkg)));
}

#[tokio::test]
async fn interrupted_download_resumes_with_a_range_request() {
    let pkg = image(50_000);
    let body = Behaviour {
        body: pkg.clone(),
        honour_range: true,
        drop_after: [20_000, 10_000].into(),
        ..Behaviour::default()
    };
    let p = pull(body, sha(&pkg)).await;
    assert_eq!((p.outcome, p.image.as_ref()), (DOWNLOADED, Some(&pkg)));
    assert_eq!(p.ranges(), [None, Some(20_000), Some(30_000)]);
}

#[tokio::test]
async fn chunked_download_interrupted_resumes_too() {
    let pkg = image(9000);
    let body = Behaviour {
        body: pkg.clone(),
        honour_range: true,
        chunked: true,
        drop_after: [4000].into(),
        ..Behaviour::default()
    };
    let p = pull(body, sha(&pkg)).await;
    assert_eq!((p.outcome, p.image.as_ref()), (DOWNLOADED, Some(&pkg)));
    assert_eq!(p.ranges(), [None, Some(4000)]);
}

#[tokio::test]
async fn server_ignoring_range_restarts_from_zero() {
    let pkg = image(30_000);
    let body = Behaviour {
        body: pkg.clone(),
        honour_range: false,
        drop_after: [12_000].into(),
        ..Behaviour::default()
    };
    let p = pull(body, sha(&pkg)).await;
    // The 200 answer replaced the stored bytes: the image is the package,
    // not its first 12000 bytes twice.
    assert_eq!((p.outcome, p.image.as_ref()), (DOWNLOADED, Some(&pkg)));
    assert_eq!(p.ranges(), [None, Some(12_000)]);
}

#[tokio::test]
async fn not_found_gives_result_7_without_retries() {
    let p = pull(
        Behaviour {
            status: Some(404),
            ..Behaviour::default()
        },
        None,
    )
    .await;
    assert_eq!(p.outcome, (State::Idle, UpdateResult::InvalidUri));
    assert_eq!(p.heads.len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_give_result_4() {
    let p = pull(
        Behaviour {
            status: Some(503),
            ..Behaviour::default()
        },
        None,
    )
    .await;
    assert_eq!(p.outcome, (State::Idle, UpdateResult::ConnectionLost));
    assert_eq!(p.heads.len(), 4);
}

#[tokio::test]
async fn too_many_interruptions_give_result_4_and_keep_the_bytes() {
    let pkg = image(10_000);
    // Every connection closes before sending anything: no progress.
    let (addr, seen) = http_server(Behaviour {
        body: pkg.clone(),
        honour_range: true,
        drop_after: [1000, 0, 0, 0, 0, 0].into(),
        ..Behaviour::default()
    })
    .await;
    let (mut obj, handle) = object();
    let uri = format!("http://{addr}/fw.bin");
    write_uri(&mut obj, &uri);
    let outcome = download(&mut obj, &handle, HttpConfig::default()).await;
    assert_eq!(outcome, (State::Idle, UpdateResult::ConnectionLost));
    // The first attempt stored 1000 bytes, then 3 retries without progress.
    assert_eq!(seen.lock().unwrap().len(), 4);
    assert_eq!(handle.with(|f| f.resume_offset()), Some(1000));
    // Writing the same URI again resumes from there.
    write_uri(&mut obj, &uri);
    let outcome = download(&mut obj, &handle, HttpConfig::default()).await;
    assert_eq!(outcome, (State::Downloaded, UpdateResult::Initial));
    assert_eq!(stored(&handle), Some(pkg));
    assert_eq!(range_of(seen.lock().unwrap().last().unwrap()), Some(1000));
}

#[tokio::test]
async fn refused_connection_gives_result_4() {
    // A port nobody listens on (bound then closed).
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (mut obj, handle) = object();
    write_uri(&mut obj, &format!("http://{addr}/fw.bin"));
    let outcome = download(&mut obj, &handle, HttpConfig::default()).await;
    assert_eq!(outcome, (State::Idle, UpdateResult::ConnectionLost));
}

#[tokio::test]
async fn garbage_answers_do_not_panic_and_give_result_4() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"[..],
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nabcde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX",
        &[b'A'; 40_000][..],
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = answer.to_vec();
        let served = answer.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&served).await;
            }
        });
        let (mut obj, handle) = object();
        write_uri(&mut obj, &format!("http://{addr}/fw.bin"));
        let outcome = download(&mut obj, &handle, HttpConfig::default()).await;
        assert_eq!(
            outcome,
            (State::Idle, UpdateResult::ConnectionLost),
            "{:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(60)])
        );
    }
}

#[tokio::test]
async fn https_with_the_test_ca_downloads() {
    let pki = pki();
    let pkg = image(40_000);
    let (addr, seen) = https_server(
        Behaviour {
            body: pkg.clone(),
            honour_range: true,
            drop_after: [15_000].into(),
            ..Behaviour::default()
        },
        &pki,
    )
    .await;
    let ca = temp_file("ca.pem", &pki.ca_pem);
    let (mut obj, handle) = object();
    handle.set_expected_sha256(Some(Sha256::digest(&pkg).into()));
    write_uri(&mut obj, &format!("https://{addr}/fw.bin"));
    let config = HttpConfig {
        extra_ca_file: Some(ca.clone()),
        ..HttpConfig::default()
    };
    let outcome = download(&mut obj, &handle, config).await;
    std::fs::remove_file(ca).ok();
    assert_eq!(outcome, (State::Downloaded, UpdateResult::Initial));
    assert_eq!(stored(&handle), Some(pkg));
    let ranges: Vec<Option<usize>> = seen.lock().unwrap().iter().map(|h| range_of(h)).collect();
    assert_eq!(ranges, [None, Some(15_000)]);
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_fails_without_retries() {
    let pki = pki();
    let (addr, seen) = https_server(
        Behaviour {
            body: image(1000),
            ..Behaviour::default()
        },
        &pki,
    )
    .await;
    let (mut obj, handle) = object();
    write_uri(&mut obj, &format!("https://{addr}/fw.bin"));
    // No extra CA: the test CA is not in the system trust store.
    let outcome = download(&mut obj, &handle, HttpConfig::default()).await;
    assert_eq!(outcome, (State::Idle, UpdateResult::ConnectionLost));
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request after a failed handshake"
    );
    assert_eq!(stored(&handle), None);
}

#[tokio::test]
async fn a_missing_ca_file_is_reported() {
    let (_obj, handle) = object();
    let config = HttpConfig {
        extra_ca_file: Some("/nonexistent/ca.pem".into()),
        ..HttpConfig::default()
    };
    let err = Fetcher::new(&handle, config).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn cancel_stops_the_download() {
    let pkg = image(200_000);
    let (addr, _) = http_server(Behaviour {
        body: pkg,
        ..Behaviour::default()
    })
    .await;
    let (mut obj, handle) = object();
    write_uri(&mut obj, &format!("http://{addr}/fw.bin"));
    let mut fetcher = Fetcher::new(&handle, HttpConfig::default()).unwrap();
    fetcher.pump();
    // The first bytes arrive, then the server cancels.
    let (id, r) = fetcher.next().await.unwrap();
    fetcher.deliver(id, r, Instant::ZERO);
    obj.execute(0, 10, "").unwrap();
    fetcher.pump();
    assert_eq!(
        handle.with(|f| (f.state(), f.result())),
        (State::Idle, UpdateResult::Cancelled)
    );
    // Whatever the aborted task had already queued is ignored.
    while let Ok(Some((id, r))) =
        tokio::time::timeout(StdDuration::from_millis(200), fetcher.next()).await
    {
        fetcher.deliver(id, r, Instant::ZERO);
    }
    assert_eq!(
        handle.with(|f| (f.state(), f.result())),
        (State::Idle, UpdateResult::Cancelled)
    );
    assert_eq!(stored(&handle), None);
}

#[tokio::test]
async fn a_download_cut_by_a_reboot_resumes_from_the_saved_state() {
    let pkg = image(300_000);
    let (addr, seen) = http_server(Behaviour {
        body: pkg.clone(),
        honour_range: true,
        ..Behaviour::default()
    })
    .await;
    let dir = std::env::temp_dir().join(format!("lwm2m-fw-reboot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (image_path, state_path) = (dir.join("fw.image"), dir.join("fw.state"));
    let boot = || {
        let config = FirmwareConfig {
            protocols: vec![Protocol::Http],
            ..FirmwareConfig::default()
        };
        let fw = Firmware::with_state_store(
            config,
            FileStorage::new(&image_path, 1 << 20),
            FileStateStore::new(&state_path),
            |_: &mut FileStorage| UpdateOutcome::Succeeded,
            |_: &mut FileStorage| UpdateOutcome::Succeeded,
        );
        let handle = fw.handle();
        (fw, handle)
    };
    let (mut fw, handle) = boot();
    handle.set_expected_sha256(Some(Sha256::digest(&pkg).into()));
    write_uri(&mut fw, &format!("http://{addr}/fw.bin"));
    // Download until 150 kB are stored, then "lose power".
    {
        let mut fetcher = Fetcher::new(&handle, HttpConfig::default()).unwrap();
        while handle.with(|f| f.resume_offset()).unwrap_or(0) < 150_000 {
            fw.tick(Instant::ZERO);
            fetcher.pump();
            let (id, r) = fetcher.next().await.unwrap();
            fetcher.deliver(id, r, Instant::ZERO);
        }
        fw.tick(Instant::ZERO);
    }
    drop(fw);
    drop(handle);
    let saved = FileStateStore::new(&state_path).load().unwrap().unwrap();
    assert_eq!(saved.state, State::Downloading);
    assert!(
        (64 * 1024..150_000 + 64 * 1024).contains(&saved.image_len),
        "saved every 64 KiB: {}",
        saved.image_len
    );
    // After the reboot the download goes on by itself from the saved length,
    // and the digest still covers the whole package.
    let (mut fw, handle) = boot();
    assert_eq!(handle.with(|f| f.state()), State::Downloading);
    let outcome = download(&mut fw, &handle, HttpConfig::default()).await;
    assert_eq!(outcome, (State::Downloaded, UpdateResult::Initial));
    assert_eq!(std::fs::read(&image_path).unwrap(), pkg);
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(range_of(&last), Some(saved.image_len as usize));
    let saved = FileStateStore::new(&state_path).load().unwrap().unwrap();
    assert_eq!((saved.state, saved.image_len), (State::Downloaded, 300_000));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn coap_over_tcp_gives_result_9_even_when_listed_and_coaps_is_fetched_like_coap() {
    let config = FirmwareConfig {
        protocols: Protocol::ALL.to_vec(),
        ..FirmwareConfig::default()
    };
    let mut fw = Firmware::with_config(config, VecStorage::new(1024), |_: &mut VecStorage| {
        UpdateOutcome::Succeeded
    });
    let handle = fw.handle();
    for uri in [
        "coap+tcp://127.0.0.1/fw.bin",
        "coaps+tcp://127.0.0.1/fw.bin",
    ] {
        write_uri(&mut fw, uri);
        assert_eq!(
            handle.with(|f| (f.state(), f.result())),
            (State::Idle, UpdateResult::UnsupportedProtocol),
            "{uri}"
        );
        assert_eq!(handle.poll_download(), None, "nothing for the host: {uri}");
        write_uri(&mut fw, "");
    }
    // coaps: a Block2 GET for the engine (which sends it over DTLS), not a
    // download for the host.
    write_uri(&mut fw, "coaps://127.0.0.1:5684/fw/image.bin");
    assert_eq!(handle.with(|f| f.state()), State::Downloading);
    assert_eq!(handle.poll_download(), None);
    let r = fw.poll_request().expect("a block request");
    assert_eq!(r.uri, "coaps://127.0.0.1:5684/fw/image.bin");
    let path: Vec<&[u8]> = r.request.options.get_all(number::URI_PATH).collect();
    assert_eq!(path, [&b"fw"[..], &b"image.bin"[..]]);
    assert_eq!(
        r.request.options.uint(number::BLOCK2),
        Some(BlockValue::new(0, false, 1024).unwrap().encode())
    );
}

/// An LwM2M server on `socket`: answers Register, observes /5/0/3, writes
/// `uri` to /5/0/1, signals `downloaded` at the State notification "2",
/// answers De-register; returns the State values it was told.
async fn firmware_server(
    socket: tokio::net::UdpSocket,
    uri: String,
    downloaded: tokio::sync::oneshot::Sender<()>,
) -> Vec<String> {
    use lwm2m_core::coap::option::number;
    use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
    let start = tokio::time::Instant::now();
    let now = || Instant::from_millis(start.elapsed().as_millis() as u64);
    let mut ep: Endpoint<SocketAddr, _> = Endpoint::new(
        EndpointConfig::default(),
        lwm2m_core::rng::SplitMix64::new(9),
    );
    let mut states = Vec::new();
    let mut downloaded = Some(downloaded);
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(t) = ep.poll_transmit() {
            socket.send_to(&t.bytes, t.peer).await.unwrap();
        }
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        ep.handle_datagram(now(), from, &buf[..n]);
        while let Some(e) = ep.poll_event() {
            match e {
                Event::Request { id, request, .. } if request.code == Code::POST => {
                    let mut resp = Response::new(Code::CREATED);
                    resp.options.push(number::LOCATION_PATH, b"rd".to_vec());
                    resp.options.push(number::LOCATION_PATH, b"f1".to_vec());
                    ep.respond(now(), id, resp);
                    let observe = Request::new(Code::GET)
                        .with_path("/5/0/3")
                        .with_uint_option(number::OBSERVE, 0);
                    ep.send_request(now(), from, observe).unwrap();
                    let write = Request::new(Code::PUT)
                        .with_path("/5/0/1")
                        .with_payload(0, uri.clone().into_bytes());
                    ep.send_request(now(), from, write).unwrap();
                }
                Event::Request { id, request, .. } => {
                    let code = if request.code == Code::DELETE {
                        Code::DELETED
                    } else {
                        Code::NOT_FOUND
                    };
                    ep.respond(now(), id, Response::new(code));
                    if code == Code::DELETED {
                        while let Some(t) = ep.poll_transmit() {
                            socket.send_to(&t.bytes, t.peer).await.unwrap();
                        }
                        return states;
                    }
                }
                Event::Response { response, .. } | Event::Notification { response, .. } => {
                    if response.code != Code::CONTENT {
                        continue;
                    }
                    let state = String::from_utf8_lossy(&response.payload).into_owned();
                    if state == "2" {
                        if let Some(tx) = downloaded.take() {
                            let _ = tx.send(());
                        }
                    }
                    states.push(state);
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn the_tokio_driver_runs_an_http_pull_and_notifies_the_server() {
    use lwm2m_client::objects::{Server, ServerConfig};
    use lwm2m_client::{Client, ClientConfig};
    let pkg = image(70_000);
    let (http_addr, _) = http_server(Behaviour {
        body: pkg.clone(),
        honour_range: true,
        drop_after: [30_000].into(),
        ..Behaviour::default()
    })
    .await;
    let server_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server_socket.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(firmware_server(
        server_socket,
        format!("http://{http_addr}/fw.bin"),
        tx,
    ));
    let mut client = Client::new(
        ClientConfig::new("fw-dev"),
        server_addr,
        lwm2m_core::rng::SplitMix64::new(5),
    );
    client.add_object(Box::new(Server::new(ServerConfig::new(300))));
    let (fw, handle) = object();
    handle.set_expected_sha256(sha(&pkg));
    client.add_object(Box::new(fw));
    let mut fetcher = Fetcher::new(&handle, HttpConfig::default()).unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let shutdown = async {
        rx.await.unwrap();
    };
    let run = lwm2m_client::tokio_driver::run_with_fetcher(
        &mut client,
        &socket,
        shutdown,
        |_| {},
        &mut fetcher,
    );
    tokio::time::timeout(StdDuration::from_secs(20), run)
        .await
        .expect("driver finished")
        .unwrap();
    assert_eq!(server.await.unwrap(), ["0", "1", "2"]);
    assert_eq!(stored(&handle), Some(pkg));
}

#[tokio::test]
async fn redirect_302_to_a_relative_path_is_followed() {
    let pkg = image(20_000);
    let b = Behaviour {
        body: pkg.clone(),
        ..Behaviour::default()
    }
    .redirect(
        "/fw.bin?v=1",
        302,
        Some("./store/../store/fw-1.bin?sig=abc"),
    );
    let p = pull(b, sha(&pkg)).await;
    assert_eq!((p.outcome, p.image.as_ref()), (DOWNLOADED, Some(&pkg)));
    assert_eq!(p.paths(), ["/fw.bin?v=1", "/store/fw-1.bin?sig=abc"]);
    assert!(
        p.heads[1].contains(&format!("\r\nHost: {}\r\n", p.addr)),
        "{}",
        p.heads[1]
    );
}

#[tokio::test]
async fn redirect_chain_301_307_across_two_servers_is_followed() {
    let pkg = image(30_000);
    let (a, seen_a, b_a) = shared_http_server(Behaviour {
        body: pkg.clone(),
        ..Behaviour::default()
    })
    .await;
    let (b, seen_b) = http_server(Behaviour::default().redirect(
        "/hop",
        307,
        Some(&format!("http://{a}/final.bin")),
    ))
    .await;
    {
        let mut shared = b_a.lock().unwrap();
        let location = format!("http://{b}/hop");
        *shared = shared.clone().redirect("/fw.bin", 301, Some(&location));
    }
    let (mut obj, handle) = object();
    handle.set_expected_sha256(sha(&pkg));
    write_uri(&mut obj, &format!("http://{a}/fw.bin"));
    let outcome = download(&mut obj, &handle, HttpConfig::default()).await;
    assert_eq!((outcome, stored(&handle)), (DOWNLOADED, Some(pkg)));
    let paths = |seen: &Seen| -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|h| path_of(h).to_string())
            .collect()
    };
    assert_eq!(paths(&seen_a), ["/fw.bin", "/final.bin"]);
    assert_eq!(paths(&seen_b), ["/hop"]);
    assert!(seen_b.lock().unwrap()[0].contains(&format!("\r\nHost: {b}\r\n")));
}

/// A server redirecting `/r0` → `/r1` → … → `/r{hops}`, which is the package.
async fn pull_through_redirects(hops: usize) -> Pull {
    let pkg = image(5000);
    let mut b = Behaviour {
        body: pkg.clone(),
        ..Behaviour::default()
    };
    for i in 0..hops {
        b = b.redirect(&format!("/r{i}"), 308, Some(&format!("/r{}", i + 1)));
    }
    let (addr, seen) = http_server(b).await;
    let (mut obj, handle) = object();
    handle.set_expected_sha256(sha(&pkg));
    write_uri(&mut obj, &format!("http://{addr}/r0"));
    let outcome = download(&mut obj, &handle, HttpConfig::default()).await;
    let heads = seen.lock().unwrap().clone();
    Pull {
        outcome,
        image: stored(&handle),
        heads,
        addr,
    }
}

#[tokio::test]
async fn five_redirects_are_followed_a_sixth_gives_result_7() {
    let p = pull_through_redirects(5).await;
    assert_eq!((p.outcome, p.image.is_some()), (DOWNLOADED, true));
    assert_eq!(p.heads.len(), 6);
    let p = pull_through_redirects(6).await;
    assert_eq!(p.outcome, (State::Idle, UpdateResult::InvalidUri));
    // The sixth redirect (answer to /r5) is not followed, nor retried.
    assert_eq!(p.paths(), ["/r0", "/r1", "/r2", "/r3", "/r4", "/r5"]);
    assert_eq!(p.image, None);
}

#[tokio::test]
async fn a_redirect_loop_gives_result_7() {
    let b = Behaviour {
        body: image(100),
        ..Behaviour::default()
    }
    .redirect("/fw.bin?v=1", 302, Some("/b"))
    .redirect("/b", 303, Some("/fw.bin?v=1"));
    let p = pull(b, None).await;
    assert_eq!(p.outcome, (State::Idle, UpdateResult::InvalidUri));
    // Seen at the second visit of /fw.bin?v=1, before asking for it again.
    assert_eq!(p.paths(), ["/fw.bin?v=1", "/b"]);
}

#[tokio::test]
async fn a_302_without_location_gives_result_7_without_retries() {
    let b = Behaviour {
        body: image(100),
        ..Behaviour::default()
    }
    .redirect("/fw.bin?v=1", 302, None);
    let p = pull(b, None).await;
    assert_eq!(p.outcome, (State::Idle, UpdateResult::InvalidUri));
    assert_eq!(p.heads.len(), 1);
}

#[tokio::test]
async fn a_redirect_to_another_scheme_gives_result_7() {
    let b = Behaviour {
        body: image(100),
        ..Behaviour::default()
    }
    .redirect("/fw.bin?v=1", 301, Some("ftp://127.0.0.1/fw.bin"));
    let p = pull(b, None).await;
    assert_eq!(p.outcome, (State::Idle, UpdateResult::InvalidUri));
    assert_eq!(p.heads.len(), 1);
}

#[tokio::test]
async fn an_https_to_http_redirect_is_refused() {
    let pki = pki();
    let pkg = image(8000);
    let (plain, seen_plain) = http_server(Behaviour {
        body: pkg.clone(),
        ..Behaviour::default()
    })
    .await;
    // /fw.bin redirects to http, any other path is the package.
    let (secure, seen_secure) = https_server(
        Behaviour {
            body: pkg.clone(),
            ..Behaviour::default()
        }
        .redirect("/fw.bin", 302, Some(&format!("http://{plain}/fw.bin"))),
        &pki,
    )
    .await;
    let ca = temp_file("redirect-ca.pem", &pki.ca_pem);
    let config = HttpConfig {
        extra_ca_file: Some(ca.clone()),
        ..HttpConfig::default()
    };
    let (mut obj, handle) = object();
    write_uri(&mut obj, &format!("https://{secure}/fw.bin"));
    let outcome = download(&mut obj, &handle, config.clone()).await;
    assert_eq!(outcome, (State::Idle, UpdateResult::InvalidUri));
    assert_eq!(seen_secure.lock().unwrap().len(), 1, "not retried");
    assert!(
        seen_plain.lock().unwrap().is_empty(),
        "nothing asked over http"
    );
    assert_eq!(stored(&handle), None);
    // The other way, http → https, is followed.
    let (up, _) = http_server(Behaviour::default().redirect(
        "/fw.bin",
        301,
        Some(&format!("https://{secure}/pkg")),
    ))
    .await;
    let (mut obj, handle) = object();
    handle.set_expected_sha256(sha(&pkg));
    write_uri(&mut obj, &format!("http://{up}/fw.bin"));
    let outcome = download(&mut obj, &handle, config).await;
    assert_eq!((outcome, stored(&handle)), (DOWNLOADED, Some(pkg)));
    assert_eq!(path_of(&seen_secure.lock().unwrap()[1]), "/pkg");
    std::fs::remove_file(ca).ok();
}

#[tokio::test]
async fn an_interrupted_download_after_a_redirect_resumes_from_the_original_uri() {
    let pkg = image(50_000);
    let b = Behaviour {
        body: pkg.clone(),
        honour_range: true,
        drop_after: [20_000].into(),
        ..Behaviour::default()
    }
    .redirect("/fw.bin?v=1", 307, Some("/signed/fw.bin?exp=1"));
    let p = pull(b, sha(&pkg)).await;
    assert_eq!((p.outcome, p.image.as_ref()), (DOWNLOADED, Some(&pkg)));
    // The retry asks the original URI again, and the Range goes along to
    // the redirect target.
    assert_eq!(
        p.paths(),
        [
            "/fw.bin?v=1",
            "/signed/fw.bin?exp=1",
            "/fw.bin?v=1",
            "/signed/fw.bin?exp=1"
        ]
    );
    assert_eq!(p.ranges(), [None, None, Some(20_000), Some(20_000)]);
}
