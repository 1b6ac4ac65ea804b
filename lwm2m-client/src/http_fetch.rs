//! Firmware downloads over `http://` and `https://` for the tokio driver
//! (feature `http`).
//!
//! The Firmware object stays sans-IO: it hands [`DownloadCommand`]s to its
//! host ([`DownloadHost`]); a [`Fetcher`] runs each download as a tokio task
//! and feeds the bytes back. The HTTP/1.1 client is in-house and small:
//! `GET` with `Host`, `Range: bytes=N-` when resuming, `Connection: close`;
//! the body framed by `Content-Length`, chunked transfer coding or the end
//! of the connection. TLS is OpenSSL ([`HttpConfig::extra_ca_file`] adds a
//! CA to the system trust store; the host name, or IP address, is
//! verified).
//!
//! Redirects (301, 302, 303, 307, 308) are followed, at most
//! [`MAX_REDIRECTS`] hops, with a `GET` and the same `Range` header. The
//! `Location` is an absolute `http://` / `https://` URI or a reference
//! (`//host/path`, `/path`, `path`, `?query`) resolved against the URI that
//! answered. Refused, with Update Result 7 ([`FetchError::BadRedirect`],
//! [`FetchError::TooManyRedirects`]): no `Location`, another scheme, a
//! redirect from `https://` to `http://` (the package would travel
//! unauthenticated after the device asked for TLS; `http://` to `https://`
//! is fine), a URI already visited (a loop) and a sixth redirect.
//!
//! A download resumed after an interruption (a retry, or the same URI
//! written again, or a reboot) starts again from the **original** Package
//! URI, follows the redirects anew and sends `Range: bytes=N-` on every hop:
//! redirect targets such as pre-signed object-store links expire, and the
//! original URI is the one the LwM2M server gave and the Firmware object
//! keeps.
//!
//! Answers and their Update Result ([`FetchError::download_error`]):
//!
//! | Answer | Result | Retried |
//! |---|---|---|
//! | 200 to a resume request | download restarts at 0 | — |
//! | 206 with a `Content-Range` not starting at the resume offset | 4 | no |
//! | 416 to a resume request | download restarts at 0 without `Range` | — |
//! | 301, 302, 303, 307, 308 with a usable `Location` | followed (at most 5 hops) | — |
//! | redirect without `Location`, to another scheme, from https to http, in a loop, or a 6th one | 7 | no |
//! | other 3xx, 4xx (404, 403, ...) but 408 and 429 | 7 | no |
//! | 408, 429, 5xx | 4 | yes |
//! | unknown host | 7 | no |
//! | refused, reset, timeout, closed before the end | 4 | yes |
//! | certificate not trusted | 4 | no (the same certificate would come back) |
//! | malformed answer, header larger than the limit | 4 | yes |
//!
//! "Retried" is the Firmware object's [`ResumePolicy`](crate::objects::ResumePolicy).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lwm2m_core::time::Instant;
use lwm2m_objects::firmware::DownloadError;
use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::X509VerifyResult;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::objects::{DownloadCommand, DownloadHost, DownloadJob};

/// Settings of the HTTP(S) downloads.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// A PEM file of CA certificates trusted for `https://` on top of the
    /// system trust store.
    pub extra_ca_file: Option<PathBuf>,
    /// Limit for the TCP connection and the TLS handshake. Default 30 s.
    pub connect_timeout: Duration,
    /// Longest wait for bytes from the server. Default 30 s.
    pub read_timeout: Duration,
    /// Largest response head (status line and headers). Default 16 KiB.
    pub max_header_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            extra_ca_file: None,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Longest chunk-size line or trailer line of a chunked body.
const MAX_LINE: usize = 1024;
/// Largest trailer section of a chunked body.
const MAX_TRAILER: usize = 8 * 1024;
/// Bytes read (and reported) at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 4;
/// Redirects followed for one download; one more is
/// [`FetchError::TooManyRedirects`].
pub const MAX_REDIRECTS: usize = 5;

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URI is not `http(s)://host[:port][/path]` (user info, bad port,
    /// another scheme).
    BadUri {
        /// The URI.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve.
    UnknownHost {
        /// The host.
        host: String,
        /// The resolver's error.
        error: String,
    },
    /// No TCP connection (refused, unreachable, timed out).
    Connect {
        /// `host:port`.
        target: String,
        /// The system's error.
        error: String,
    },
    /// The server's certificate failed verification.
    CertificateNotTrusted {
        /// OpenSSL's verification error.
        reason: String,
    },
    /// The TLS handshake failed for another reason.
    Tls {
        /// OpenSSL's error.
        error: String,
    },
    /// The CA file could not be loaded (when building the [`Fetcher`]).
    CaFile {
        /// The file.
        path: PathBuf,
        /// OpenSSL's error.
        error: String,
    },
    /// Nothing arrived for [`HttpConfig::read_timeout`].
    Timeout,
    /// Reading or writing the connection failed.
    Io {
        /// The system's error.
        error: String,
    },
    /// The connection ended before the end of the body.
    Closed {
        /// Body bytes received in this response.
        received: u64,
        /// Body bytes announced (`Content-Length`), if any.
        expected: Option<u64>,
    },
    /// The response head is larger than [`HttpConfig::max_header_bytes`].
    HeaderTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The response is not HTTP/1.x as expected.
    Malformed {
        /// What was wrong.
        what: &'static str,
    },
    /// A final status other than 200 and 206 (or 206 without a request for a
    /// range).
    Status {
        /// The status code.
        code: u16,
    },
    /// A 206 answer whose `Content-Range` does not start where we asked.
    BadContentRange {
        /// The header value.
        got: String,
        /// The first byte asked for.
        expected_start: u64,
    },
    /// A redirect not followed: no `Location`, another scheme, `https://`
    /// to `http://`, a URI already visited, or a `Location` that is not a
    /// usable URI.
    BadRedirect {
        /// The status code of the redirect.
        code: u16,
        /// The `Location` value (resolved when it was a reference), if any.
        location: Option<String>,
        /// Why it is refused.
        reason: &'static str,
    },
    /// More than [`MAX_REDIRECTS`] redirects.
    TooManyRedirects {
        /// The limit.
        limit: usize,
    },
}

impl FetchError {
    /// The Firmware object's failure (and so the Update Result).
    pub fn download_error(&self) -> DownloadError {
        match self {
            FetchError::BadUri { .. }
            | FetchError::UnknownHost { .. }
            | FetchError::BadRedirect { .. }
            | FetchError::TooManyRedirects { .. } => DownloadError::InvalidUri,
            FetchError::Status { code } if !retryable_status(*code) => DownloadError::InvalidUri,
            _ => DownloadError::ConnectionLost,
        }
    }

    /// Whether trying again (from the bytes stored) may help.
    pub fn retryable(&self) -> bool {
        match self {
            FetchError::Connect { .. }
            | FetchError::Tls { .. }
            | FetchError::Timeout
            | FetchError::Io { .. }
            | FetchError::Closed { .. }
            | FetchError::HeaderTooLarge { .. }
            | FetchError::Malformed { .. } => true,
            FetchError::Status { code } => retryable_status(*code),
            FetchError::BadUri { .. }
            | FetchError::UnknownHost { .. }
            | FetchError::CertificateNotTrusted { .. }
            | FetchError::CaFile { .. }
            | FetchError::BadContentRange { .. }
            | FetchError::BadRedirect { .. }
            | FetchError::TooManyRedirects { .. } => false,
        }
    }
}

/// 408 Request Timeout, 429 Too Many Requests and server errors.
fn retryable_status(code: u16) -> bool {
    matches!(code, 408 | 429 | 500..=599)
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::BadUri { uri, reason } => write!(
                f,
                "bad package URI {uri:?}: {reason}; expected http(s)://host[:port][/path]"
            ),
            FetchError::UnknownHost { host, error } => {
                write!(f, "cannot resolve host {host:?}: {error}")
            }
            FetchError::Connect { target, error } => {
                write!(f, "cannot connect to {target}: {error}")
            }
            FetchError::CertificateNotTrusted { reason } => write!(
                f,
                "server certificate not trusted ({reason}); expected one signed by a CA of the \
                 system trust store or of the extra CA file"
            ),
            FetchError::Tls { error } => write!(f, "TLS handshake failed: {error}"),
            FetchError::CaFile { path, error } => {
                write!(f, "cannot load CA file {}: {error}", path.display())
            }
            FetchError::Timeout => f.write_str("no data from the server within the read timeout"),
            FetchError::Io { error } => write!(f, "connection error: {error}"),
            FetchError::Closed { received, expected } => match expected {
                Some(n) => write!(
                    f,
                    "connection closed after {received} of {n} body bytes announced"
                ),
                None => write!(f, "connection closed after {received} body bytes"),
            },
            FetchError::HeaderTooLarge { limit } => {
                write!(f, "response head larger than {limit} bytes")
            }
            FetchError::Malformed { what } => {
                write!(f, "malformed HTTP response: {what}")
            }
            FetchError::Status { code } => write!(
                f,
                "HTTP status {code}; expected 200, or 206 to a range request"
            ),
            FetchError::BadContentRange {
                got,
                expected_start,
            } => write!(
                f,
                "Content-Range {got:?} does not start at byte {expected_start} as requested"
            ),
            FetchError::BadRedirect {
                code,
                location: Some(location),
                reason,
            } => write!(f, "redirect ({code}) to {location:?} refused: {reason}"),
            FetchError::BadRedirect {
                code,
                location: None,
                reason,
            } => write!(f, "redirect ({code}) refused: {reason}"),
            FetchError::TooManyRedirects { limit } => {
                write!(f, "too many redirects (more than {limit})")
            }
        }
    }
}

impl std::error::Error for FetchError {}

fn io_error(e: io::Error) -> FetchError {
    FetchError::Io {
        error: e.to_string(),
    }
}

/// Where an `http(s)://` URI points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// Host for DNS and certificate verification (no brackets).
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Path and query, at least `/`.
    path: String,
}

fn parse_uri(uri: &str) -> Result<Target, FetchError> {
    let bad = |reason| FetchError::BadUri {
        uri: uri.to_string(),
        reason,
    };
    let (scheme, rest) = uri.split_once("://").ok_or(bad("no scheme"))?;
    let tls = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return Err(bad("not an http or https URI"));
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad("user information is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(bad("unclosed IPv6 literal"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None | Some("") => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(p) => p
            .parse()
            .map_err(|_| bad("port is not a number up to 65535"))?,
    };
    if path.bytes().any(|c| c <= b' ' || c >= 0x7f) {
        return Err(bad("spaces, controls or non-ASCII in the path"));
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Ok(Target {
        tls,
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path,
    })
}

impl Target {
    fn uri(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

/// `path` (from `/`, without query) without `.` and `..` segments
/// (RFC 3986, 5.2.4).
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// `path` (with query) with its dot segments removed.
fn normalize(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(at) => path_and_query.split_at(at),
        None => (path_and_query, ""),
    };
    format!("{}{query}", remove_dot_segments(path))
}

/// Where the redirect `code` with `location` from `base` goes; refuses
/// another scheme and `https://` to `http://`.
fn redirect_target(base: &Target, code: u16, location: Option<&str>) -> Result<Target, FetchError> {
    let Some(location) = location else {
        return Err(FetchError::BadRedirect {
            code,
            location: None,
            reason: "no Location header",
        });
    };
    let refuse = |location: &str, reason| FetchError::BadRedirect {
        code,
        location: Some(location.to_string()),
        reason,
    };
    let reference = location.split('#').next().unwrap_or_default();
    if reference.is_empty() {
        return Err(refuse(location, "empty Location"));
    }
    // RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":".
    let scheme = reference.find(':').map(|at| &reference[..at]).filter(|s| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    });
    let base_scheme = if base.tls { "https" } else { "http" };
    let absolute = match scheme {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
            reference.to_string()
        }
        Some(_) => return Err(refuse(location, "not an http or https URI")),
        None if reference.starts_with("//") => format!("{base_scheme}:{reference}"),
        None => {
            let path = if reference.starts_with('/') {
                normalize(reference)
            } else if reference.starts_with('?') {
                let base_path = base.path.split('?').next().unwrap_or_default();
                format!("{base_path}{reference}")
            } else {
                let base_path = base.path.split('?').next().unwrap_or_default();
                let dir = &base_path[..base_path.rfind('/').map_or(0, |at| at + 1)];
                normalize(&format!("{dir}{reference}"))
            };
            format!("{base_scheme}://{}{path}", base.authority)
        }
    };
    let next = parse_uri(&absolute).map_err(|e| match e {
        FetchError::BadUri { reason, .. } => refuse(&absolute, reason),
        other => other,
    })?;
    if base.tls && !next.tls {
        return Err(refuse(&absolute, "https to http downgrade refused"));
    }
    Ok(next)
}

/// What a download task reports.
#[derive(Debug)]
enum Report {
    /// The server sends the whole package: start again at 0.
    Restart,
    /// Bytes at this offset of the package.
    Data(u64, Vec<u8>),
    /// The package is complete.
    Done,
    /// The download failed.
    Failed(FetchError),
}

/// Runs the Firmware object's host downloads (`http`, `https`) as tokio
/// tasks; see the [module documentation](self). The tokio driver calls it
/// ([`run_with_fetcher`](crate::tokio_driver::run_with_fetcher)).
pub struct Fetcher<'a> {
    host: &'a dyn DownloadHost,
    client: Arc<HttpClient>,
    tx: mpsc::Sender<(u32, Report)>,
    rx: mpsc::Receiver<(u32, Report)>,
    tasks: HashMap<u32, JoinHandle<()>>,
}

impl fmt::Debug for Fetcher<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("downloads", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

struct HttpClient {
    config: HttpConfig,
    tls: SslConnector,
}

/// The host's CA bundle file (Debian's /etc/ssl/certs/ca-certificates.crt,
/// Fedora's, Alpine's…, or what `SSL_CERT_FILE` names), if there is one.
fn system_ca_bundle() -> Option<PathBuf> {
    openssl_probe::probe().cert_file
}

impl<'a> Fetcher<'a> {
    /// A fetcher for the downloads `host` asks for. Fails if the extra CA
    /// file cannot be loaded.
    pub fn new(host: &'a dyn DownloadHost, config: HttpConfig) -> Result<Fetcher<'a>, FetchError> {
        let tls_error = |e: openssl::error::ErrorStack| FetchError::Tls {
            error: e.to_string(),
        };
        // The builder verifies the peer and trusts OpenSSL's default paths;
        // the host's own bundle is added because a statically linked
        // OpenSSL's default paths are under its build prefix, not /etc/ssl.
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls_error)?;
        if let Some(bundle) = system_ca_bundle() {
            // A bundle the host cannot parse leaves OpenSSL's defaults.
            if let Err(e) = builder.set_ca_file(&bundle) {
                warn!(path = %bundle.display(), error = %e, "system CA bundle not loaded");
            }
        }
        if let Some(path) = &config.extra_ca_file {
            builder.set_ca_file(path).map_err(|e| FetchError::CaFile {
                path: path.clone(),
                error: e.to_string(),
            })?;
        }
        let (tx, rx) = mpsc::channel(8);
        Ok(Fetcher {
            host,
            client: Arc::new(HttpClient {
                config,
                tls: builder.build(),
            }),
            tx,
            rx,
            tasks: HashMap::new(),
        })
    }

    /// Starts and stops downloads as the object asks: call it after every
    /// call into the engine (the driver does).
    pub fn pump(&mut self) {
        self.tasks.retain(|_, t| !t.is_finished());
        while let Some(command) = self.host.poll_download() {
            match command {
                DownloadCommand::Start(job) => {
                    info!(id = job.id, uri = %job.uri, resume_from = job.resume_from, "firmware download");
                    let client = self.client.clone();
                    let tx = self.tx.clone();
                    let id = job.id;
                    let task = tokio::spawn(async move {
                        let report = match client.fetch(&job, &tx).await {
                            Ok(()) => Report::Done,
                            Err(e) => Report::Failed(e),
                        };
                        let _ = tx.send((job.id, report)).await;
                    });
                    self.tasks.insert(id, task);
                }
                DownloadCommand::Stop(id) => self.stop(id),
            }
        }
    }

    fn stop(&mut self, id: u32) {
        if let Some(task) = self.tasks.remove(&id) {
            debug!(id, "firmware download stopped");
            task.abort();
        }
    }

    /// The next report of a download task (pending while there is none),
    /// to give to [`Fetcher::deliver`].
    pub async fn next(&mut self) -> Option<(u32, FetchReport)> {
        self.rx.recv().await.map(|(id, r)| (id, FetchReport(r)))
    }

    /// Gives a report to the object (then let the engine see the changes,
    /// [`Client::handle_timeout`](crate::Client::handle_timeout)).
    pub fn deliver(&mut self, id: u32, report: FetchReport, now: Instant) {
        let keep_going = match report.0 {
            Report::Restart => self.host.download_restart(id, now),
            Report::Data(offset, bytes) => self.host.download_data(id, offset, &bytes, now),
            Report::Done => {
                info!(id, "firmware download complete");
                self.host.download_done(id, now);
                true
            }
            Report::Failed(e) => {
                warn!(id, error = %e, "firmware download failed");
                self.host
                    .download_failed(id, e.download_error(), e.retryable(), now);
                true
            }
        };
        if !keep_going {
            self.stop(id);
        }
    }
}

impl Drop for Fetcher<'_> {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

/// A report of a download task, from [`Fetcher::next`] for
/// [`Fetcher::deliver`].
#[derive(Debug)]
pub struct FetchReport(Report);

/// Reads with the configured timeout.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<usize, FetchError> {
    match tokio::time::timeout(timeout, stream.read(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(io_error(e)),
        Err(_) => Err(FetchError::Timeout),
    }
}

/// A buffered reader over the connection, bounded in what it buffers.
struct Reader<S> {
    stream: S,
    buf: Vec<u8>,
    timeout: Duration,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Reads more bytes into the buffer; `false` at the end of the stream.
    async fn fill(&mut self) -> Result<bool, FetchError> {
        let mut chunk = [0u8; 4096];
        let n = read_some(&mut self.stream, &mut chunk, self.timeout).await?;
        self.buf
            .extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n > 0)
    }

    /// The bytes up to the first `delim` (consumed with it), reading at most
    /// `limit` bytes; `Err(too_long)` past it, `Ok(None)` at the end of the
    /// stream.
    async fn until(
        &mut self,
        delim: &[u8],
        limit: usize,
        too_long: FetchError,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        loop {
            if let Some(at) = self.buf.windows(delim.len()).position(|w| w == delim) {
                let rest = self.buf.split_off(at + delim.len());
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.truncate(at);
                return Ok(Some(line));
            }
            if self.buf.len() > limit {
                return Err(too_long);
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Up to `max` bytes of the body (buffered first); empty at the end.
    async fn some(&mut self, max: usize) -> Result<Vec<u8>, FetchError> {
        if self.buf.is_empty() {
            let mut chunk = vec![0u8; max.min(READ_CHUNK)];
            let n = read_some(&mut self.stream, &mut chunk, self.timeout).await?;
            chunk.truncate(n);
            return Ok(chunk);
        }
        let n = self.buf.len().min(max);
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }
}

/// A parsed response head.
#[derive(Debug, Default)]
struct Head {
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    content_range: Option<String>,
    location: Option<String>,
}

fn parse_head(head: &[u8]) -> Result<Head, FetchError> {
    let malformed = |what| FetchError::Malformed { what };
    let text = std::str::from_utf8(head).map_err(|_| malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(malformed("status line does not start with HTTP/1.x"));
    }
    let status = parts
        .next()
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or(malformed("status code is not 3 digits"))?;
    let mut h = Head {
        status,
        ..Head::default()
    };
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(malformed("header line without ':'"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| malformed("Content-Length is not a number"))?;
            if h.content_length.is_some_and(|m| m != n) {
                return Err(malformed("conflicting Content-Length headers"));
            }
            h.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The request sends no TE header, so only plain chunked may
            // come back: "gzip, chunked" would need the gzip coding undone
            // too, and storing it as is would corrupt the package.
            h.chunked = value.eq_ignore_ascii_case("chunked");
            if !h.chunked {
                return Err(malformed("transfer coding other than chunked alone"));
            }
        } else if name.eq_ignore_ascii_case("content-range") {
            h.content_range = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("location") {
            if h.location.as_deref().is_some_and(|l| l != value) {
                return Err(malformed("conflicting Location headers"));
            }
            h.location = Some(value.to_string());
        }
    }
    Ok(h)
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/TOTAL` value.
fn range_start(value: &str) -> Option<u64> {
    let spec = value.strip_prefix("bytes ")?.trim_start();
    let (first, _) = spec.split_once('-')?;
    first.parse().ok()
}

impl HttpClient {
    /// Downloads `job`, sending its bytes to `tx`.
    async fn fetch(
        &self,
        job: &DownloadJob,
        tx: &mpsc::Sender<(u32, Report)>,
    ) -> Result<(), FetchError> {
        let mut target = parse_uri(&job.uri)?;
        let mut resume_from = job.resume_from;
        let mut visited = vec![target.clone()];
        // Another round after a redirect, or after 416 to a range request
        // (then without `Range`, so a second 416 is an error).
        loop {
            let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| FetchError::UnknownHost {
                    host: target.host.clone(),
                    error: "no address".into(),
                })?;
            let connect =
                tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr));
            let tcp = match connect.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(FetchError::Connect {
                        target: addr.to_string(),
                        error: e.to_string(),
                    })
                }
                Err(_) => {
                    return Err(FetchError::Connect {
                        target: addr.to_string(),
                        error: "timed out".into(),
                    })
                }
            };
            let outcome = if target.tls {
                let stream = self.handshake(&target, tcp).await?;
                self.exchange(stream, &target, job.id, resume_from, tx)
                    .await?
            } else {
                self.exchange(tcp, &target, job.id, resume_from, tx).await?
            };
            match outcome {
                Exchange::Complete => return Ok(()),
                Exchange::RangeNotSatisfiable => {
                    send(tx, job.id, Report::Restart).await?;
                    resume_from = 0;
                }
                Exchange::Redirect { code, location } => {
                    let next = redirect_target(&target, code, location.as_deref())?;
                    if visited.contains(&next) {
                        return Err(FetchError::BadRedirect {
                            code,
                            location: Some(next.uri()),
                            reason: "redirect loop (URI already visited)",
                        });
                    }
                    if visited.len() > MAX_REDIRECTS {
                        return Err(FetchError::TooManyRedirects {
                            limit: MAX_REDIRECTS,
                        });
                    }
                    info!(id = job.id, code, to = %next.uri(), "firmware download redirected");
                    visited.push(next.clone());
                    target = next;
                }
            }
        }
    }

    async fn handshake(
        &self,
        target: &Target,
        tcp: TcpStream,
    ) -> Result<tokio_openssl::SslStream<TcpStream>, FetchError> {
        let tls_error = |e: openssl::error::ErrorStack| FetchError::Tls {
            error: e.to_string(),
        };
        // Sets SNI and host name (or IP address) verification.
        let ssl = self
            .tls
            .configure()
            .map_err(tls_error)?
            .into_ssl(&target.host)
            .map_err(tls_error)?;
        let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(tls_error)?;
        let handshake =
            tokio::time::timeout(self.config.connect_timeout, Pin::new(&mut stream).connect());
        match handshake.await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => {
                let verify = stream.ssl().verify_result();
                if verify != X509VerifyResult::OK {
                    Err(FetchError::CertificateNotTrusted {
                        reason: verify.error_string().to_string(),
                    })
                } else {
                    Err(FetchError::Tls {
                        error: e.to_string(),
                    })
                }
            }
            Err(_) => Err(FetchError::Tls {
                error: "handshake timed out".into(),
            }),
        }
    }

    /// One request and its response on `stream`.
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        target: &Target,
        id: u32,
        resume_from: u64,
        tx: &mpsc::Sender<(u32, Report)>,
    ) -> Result<Exchange, FetchError> {
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lwm2m-rs\r\nAccept: */*\r\n\
             Connection: close\r\n",
            target.path, target.authority
        );
        if resume_from > 0 {
            request.push_str(&format!("Range: bytes={resume_from}-\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(io_error)?;
        stream.flush().await.map_err(io_error)?;
        let mut reader = Reader {
            stream,
            buf: Vec::new(),
            timeout: self.config.read_timeout,
        };
        let limit = self.config.max_header_bytes;
        let mut head = None;
        for _ in 0..=MAX_INTERIM {
            let raw = reader
                .until(b"\r\n\r\n", limit, FetchError::HeaderTooLarge { limit })
                .await?
                .ok_or(FetchError::Malformed {
                    what: "connection closed before the end of the response head",
                })?;
            let h = parse_head(&raw)?;
            if h.status >= 200 {
                head = Some(h);
                break;
            }
        }
        let head = head.ok_or(FetchError::Malformed {
            what: "too many interim (1xx) responses",
        })?;
        let mut offset = match head.status {
            200 => {
                if resume_from > 0 {
                    send(tx, id, Report::Restart).await?;
                }
                0
            }
            206 if resume_from > 0 => {
                let got = head.content_range.clone().unwrap_or_default();
                if range_start(&got) != Some(resume_from) {
                    return Err(FetchError::BadContentRange {
                        got,
                        expected_start: resume_from,
                    });
                }
                resume_from
            }
            416 if resume_from > 0 => return Ok(Exchange::RangeNotSatisfiable),
            // The body of the redirect is not read: the connection closes.
            code @ (301 | 302 | 303 | 307 | 308) => {
                return Ok(Exchange::Redirect {
                    code,
                    location: head.location,
                })
            }
            code => return Err(FetchError::Status { code }),
        };
        if head.chunked {
            loop {
                let line = reader
                    .until(
                        b"\r\n",
                        MAX_LINE,
                        FetchError::Malformed {
                            what: "chunk size line too long",
                        },
                    )
                    .await?
                    .ok_or(FetchError::Closed {
                        received: offset,
                        expected: None,
                    })?;
                let size = std::str::from_utf8(&line)
                    .ok()
                    .map(|l| l.split(';').next().unwrap_or_default().trim())
                    .filter(|s| {
                        (1..=15).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_hexdigit())
                    })
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or(FetchError::Malformed {
                        what: "chunk size is not a hexadecimal number",
                    })?;
                if size == 0 {
                    reader
                        .until(
                            b"\r\n\r\n",
                            MAX_TRAILER,
                            FetchError::Malformed {
                                what: "trailer section too large",
                            },
                        )
                        .await
                        .ok();
                    return Ok(Exchange::Complete);
                }
                offset = body(&mut reader, id, offset, size, None, tx).await?;
                let crlf = reader
                    .until(
                        b"\r\n",
                        2,
                        FetchError::Malformed {
                            what: "chunk not followed by CRLF",
                        },
                    )
                    .await?;
                if crlf.is_none_or(|c| !c.is_empty()) {
                    return Err(FetchError::Malformed {
                        what: "chunk not followed by CRLF",
                    });
                }
            }
        }
        match head.content_length {
            Some(n) => {
                body(&mut reader, id, offset, n, Some(n), tx).await?;
            }
            None => loop {
                let bytes = reader.some(READ_CHUNK).await?;
                if bytes.is_empty() {
                    break;
                }
                let len = bytes.len() as u64;
                send(tx, id, Report::Data(offset, bytes)).await?;
                offset += len;
            },
        }
        Ok(Exchange::Complete)
    }
}

enum Exchange {
    Complete,
    RangeNotSatisfiable,
    /// A redirect, with its `Location` if any.
    Redirect {
        code: u16,
        location: Option<String>,
    },
}

/// Reads `len` body bytes and reports them from `offset`; returns the new
/// offset. `expected` is the announced length for the error message.
async fn body<S: AsyncRead + Unpin>(
    reader: &mut Reader<S>,
    id: u32,
    mut offset: u64,
    len: u64,
    expected: Option<u64>,
    tx: &mpsc::Sender<(u32, Report)>,
) -> Result<u64, FetchError> {
    let mut left = len;
    while left > 0 {
        let bytes = reader
            .some(usize::try_from(left).unwrap_or(usize::MAX))
            .await?;
        if bytes.is_empty() {
            return Err(FetchError::Closed {
                received: len - left,
                expected,
            });
        }
        let n = bytes.len() as u64;
        send(tx, id, Report::Data(offset, bytes)).await?;
        offset += n;
        left -= n;
    }
    Ok(offset)
}

/// Sends a report; the driver gone is like a cancelled download.
async fn send(tx: &mpsc::Sender<(u32, Report)>, id: u32, report: Report) -> Result<(), FetchError> {
    tx.send((id, report)).await.map_err(|_| FetchError::Io {
        error: "the driver stopped".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_ca_bundle_is_trusted_whichever_openssl_is_linked() {
        // Debian's bundle (ca-certificates) is on every machine this runs on;
        // elsewhere the probe may find another one or none.
        let debian = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
        if !debian.exists() {
            return;
        }
        let bundle = system_ca_bundle().expect("the probe finds Debian's bundle");
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_ca_file(&bundle).unwrap();
        // Debian ships well over a hundred roots.
        let connector = b.build();
        assert!(connector.context().cert_store().all_certificates().len() > 100);
    }

    #[test]
    fn uris_parse_with_default_ports() {
        let t = parse_uri("http://example.org/fw.bin?v=2#x").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (false, "example.org", 80, "/fw.bin?v=2")
        );
        let t = parse_uri("HTTPS://[::1]:8443").unwrap();
        assert_eq!(
            (
                t.tls,
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            (true, "::1", 8443, "[::1]:8443", "/")
        );
        assert!(parse_uri("http://user@host/").is_err());
        assert!(parse_uri("http://host:99999/").is_err());
        assert!(parse_uri("coap://host/").is_err());
        assert!(parse_uri("http:///x").is_err());
    }

    #[test]
    fn heads_parse_and_reject_garbage() {
        let h = parse_head(
            b"HTTP/1.1 206 Partial\r\nContent-Length: 5\r\ncontent-range: bytes 10-14/15",
        )
        .unwrap();
        assert_eq!((h.status, h.content_length), (206, Some(5)));
        assert_eq!(range_start(h.content_range.as_deref().unwrap()), Some(10));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked").unwrap();
        assert!(h.chunked);
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 200 OK\r\nno colon",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked",
            b"\xff\xfe",
        ] {
            assert!(parse_head(bad).is_err(), "{bad:?}");
        }
    }

    /// Heads stitched from pieces of real ones, and raw bytes: parsing
    /// never panics, and what parses has a status in 100..600 and a
    /// Content-Range only as given.
    #[test]
    fn arbitrary_heads_never_panic() {
        use lwm2m_core::rng::{RandomSource, SplitMix64};
        const PIECES: [&[u8]; 16] = [
            b"HTTP/1.1 ",
            b"HTTP/1.0 ",
            b"200",
            b"206 Partial",
            b"999",
            b"\r\n",
            b"Content-Length:",
            b" 18446744073709551615",
            b" 12",
            b"Transfer-Encoding: chunked",
            b"Content-Range: bytes ",
            b"5-9/10",
            b":",
            b" ",
            b"\xc3\x28",
            b"\xff",
        ];
        let mut rng = SplitMix64::new(0x4854_5450);
        for _ in 0..20_000 {
            let mut head = Vec::new();
            for _ in 0..rng.below(12) {
                if rng.below(4) == 0 {
                    head.push(rng.next_u64() as u8);
                } else {
                    head.extend_from_slice(PIECES[rng.below(PIECES.len() as u64) as usize]);
                }
            }
            if let Ok(h) = parse_head(&head) {
                assert!((100..600).contains(&h.status), "{head:?}");
                if let Some(range) = &h.content_range {
                    let _ = range_start(range);
                }
            }
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_current_uri() {
        let base = parse_uri("https://cdn.example:8443/a/b/fw.bin?v=1").unwrap();
        let to = |location: &str| redirect_target(&base, 302, Some(location)).map(|t| t.uri());
        for (location, expected) in [
            ("https://other.example/x", "https://other.example/x"),
            ("HTTPS://other.example", "https://other.example/"),
            ("//mirror.example/fw.bin", "https://mirror.example/fw.bin"),
            (
                "/store/fw.bin?sig=1#frag",
                "https://cdn.example:8443/store/fw.bin?sig=1",
            ),
            ("c.bin", "https://cdn.example:8443/a/b/c.bin"),
            ("../c.bin?x", "https://cdn.example:8443/a/c.bin?x"),
            ("./../../../c.bin", "https://cdn.example:8443/c.bin"),
            ("d/.", "https://cdn.example:8443/a/b/d/"),
            ("?v=2", "https://cdn.example:8443/a/b/fw.bin?v=2"),
        ] {
            assert_eq!(to(location).as_deref(), Ok(expected), "{location}");
        }
        for (location, reason) in [
            (
                "http://cdn.example/fw.bin",
                "https to http downgrade refused",
            ),
            ("ftp://cdn.example/fw.bin", "not an http or https URI"),
            ("coap://cdn.example/fw.bin", "not an http or https URI"),
            ("", "empty Location"),
            ("/a b", "spaces, controls or non-ASCII in the path"),
        ] {
            match to(location) {
                Err(FetchError::BadRedirect { reason: r, .. }) => {
                    assert_eq!(r, reason, "{location}")
                }
                other => panic!("{location}: {other:?}"),
            }
        }
        // From http, https and http are both fine.
        let base = parse_uri("http://h/x/y").unwrap();
        let up = redirect_target(&base, 301, Some("https://h/z")).unwrap();
        assert!(up.tls);
        assert_eq!(
            redirect_target(&base, 307, None),
            Err(FetchError::BadRedirect {
                code: 307,
                location: None,
                reason: "no Location header"
            })
        );
        let h = parse_head(b"HTTP/1.1 302 Found\r\nLocation: /next").unwrap();
        assert_eq!(h.location.as_deref(), Some("/next"));
        assert!(parse_head(b"HTTP/1.1 302 Found\r\nLocation: /a\r\nLocation: /b").is_err());
    }

    #[test]
    fn redirect_errors_give_result_7_without_retries() {
        let e = FetchError::TooManyRedirects {
            limit: MAX_REDIRECTS,
        };
        assert_eq!(
            (e.download_error(), e.retryable()),
            (DownloadError::InvalidUri, false)
        );
        assert!(e.to_string().contains("too many redirects"), "{e}");
        let e = FetchError::BadRedirect {
            code: 302,
            location: Some("http://h/".into()),
            reason: "https to http downgrade refused",
        };
        assert_eq!(
            (e.download_error(), e.retryable()),
            (DownloadError::InvalidUri, false)
        );
        assert!(e.to_string().contains("downgrade"), "{e}");
    }

    #[test]
    fn errors_map_to_update_results() {
        let e = FetchError::Status { code: 404 };
        assert_eq!(
            (e.download_error(), e.retryable()),
            (DownloadError::InvalidUri, false)
        );
        let e = FetchError::Status { code: 503 };
        assert_eq!(
            (e.download_error(), e.retryable()),
            (DownloadError::ConnectionLost, true)
        );
        let e = FetchError::CertificateNotTrusted { reason: "x".into() };
        assert_eq!(
            (e.download_error(), e.retryable()),
            (DownloadError::ConnectionLost, false)
        );
    }
}
