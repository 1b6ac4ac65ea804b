//! Firmware Update (object 5) state machine: transitions, results, storage,
//! integrity, resume, deferral and the resource interface.

use std::collections::BTreeSet;

use lwm2m_core::coap::Code;
use lwm2m_core::model::{ResourceValue, Value};
use lwm2m_core::time::Instant;
use lwm2m_objects::firmware::*;
use lwm2m_objects::firmware_update as fw;

fn t(secs: u64) -> Instant {
    Instant::from_millis(secs * 1000)
}

const URI: &str = "coap://fw.example/image";

/// A storage whose next calls can be told to fail, counting aborts.
#[derive(Debug, Default)]
struct TestStorage {
    inner: VecStorage,
    fail_begin: Option<StorageError>,
    fail_write: Option<StorageError>,
    fail_finish: Option<StorageError>,
    aborts: usize,
}

impl TestStorage {
    fn new() -> TestStorage {
        TestStorage {
            inner: VecStorage::new(1 << 16),
            ..TestStorage::default()
        }
    }
}

impl FirmwareStorage for TestStorage {
    fn begin(&mut self) -> Result<(), StorageError> {
        match self.fail_begin.take() {
            Some(e) => Err(e),
            None => self.inner.begin(),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        match self.fail_write.take() {
            Some(e) => Err(e),
            None => self.inner.write(offset, data),
        }
    }

    fn finish(&mut self) -> Result<(), StorageError> {
        match self.fail_finish.take() {
            Some(e) => Err(e),
            None => self.inner.finish(),
        }
    }

    fn abort(&mut self) {
        self.aborts += 1;
        self.inner.abort();
    }
}

type Fw = FirmwareUpdate<TestStorage>;

fn config() -> FirmwareConfig {
    FirmwareConfig {
        protocols: vec![
            Protocol::Coap,
            Protocol::Coaps,
            Protocol::Http,
            Protocol::Https,
        ],
        max_defer_period: 60,
        ..FirmwareConfig::default()
    }
}

fn new_fw() -> Fw {
    FirmwareUpdate::new(config(), TestStorage::new(), t(0))
}

fn sha256_abc() -> [u8; 32] {
    // FIPS 180-2 appendix B.1: SHA-256("abc").
    parse_sha256_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").unwrap()
}

/// Where a table row starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Idle,
    /// Downloading by push, 4 bytes stored.
    PushDownloading,
    /// Downloading by pull, 4 bytes stored.
    PullDownloading,
    Downloaded,
    /// Downloaded, Update executed and deferred at t = 0 (deadline t = 60).
    Deferred,
    Updating,
    /// Idle with Result 4 after a pull lost its connection with 4 bytes stored.
    IdleAfterPullLost,
}

const STARTS: [Start; 7] = [
    Start::Idle,
    Start::PushDownloading,
    Start::PullDownloading,
    Start::Downloaded,
    Start::Deferred,
    Start::Updating,
    Start::IdleAfterPullLost,
];

fn drive(start: Start) -> Fw {
    let mut m = new_fw();
    let now = t(0);
    match start {
        Start::Idle => {}
        Start::PushDownloading => m.package_chunk(0, b"abcd", false, now).unwrap(),
        Start::PullDownloading | Start::IdleAfterPullLost => {
            m.write(fw::PACKAGE_URI, Value::String(URI.into()), now)
                .unwrap();
            m.download_chunk(0, b"abcd", now).unwrap();
            if start == Start::IdleAfterPullLost {
                m.download_failed(DownloadError::ConnectionLost, now)
                    .unwrap();
            }
        }
        Start::Downloaded | Start::Deferred | Start::Updating => {
            m.write(fw::PACKAGE, Value::Opaque(b"image".to_vec()), now)
                .unwrap();
            if start == Start::Deferred {
                m.execute(fw::UPDATE, b"", now).unwrap();
                m.defer_update(now).unwrap();
            }
            if start == Start::Updating {
                m.start_update(now).unwrap();
            }
        }
    }
    while m.poll_event().is_some() {}
    m.take_changed();
    m
}

/// One input of the table.
#[derive(Debug, Clone, Copy)]
enum Input {
    PushFirst,
    PushNext,
    PushLast,
    PushWhole,
    PushGap,
    PushNextStorageFails(StorageError),
    PushFirstBeginFails(StorageError),
    PushWholeFinishFails(StorageError),
    PushWholeDigest { good: bool },
    Uri(&'static str),
    DlChunk,
    DlComplete,
    DlCompleteDigest { good: bool },
    DlFail(DownloadError),
    ExecUpdate,
    ExecCancel,
    StartUpdate,
    Defer,
    Tick(u64),
    UpdOk,
    UpdFail(UpdateFailure),
}

fn apply(m: &mut Fw, input: Input) -> Result<(), FwError> {
    let now = t(1);
    let whole = |m: &mut Fw| m.write(fw::PACKAGE, Value::Opaque(b"abc".to_vec()), now);
    match input {
        Input::PushFirst => m.package_chunk(0, b"abcd", false, now),
        Input::PushNext => m.package_chunk(4, b"efgh", false, now),
        Input::PushLast => m.package_chunk(4, b"efgh", true, now),
        Input::PushWhole => whole(m),
        Input::PushGap => m.package_chunk(100, b"x", false, now),
        Input::PushNextStorageFails(e) => {
            m.storage_mut().fail_write = Some(e);
            m.package_chunk(4, b"efgh", false, now)
        }
        Input::PushFirstBeginFails(e) => {
            m.storage_mut().fail_begin = Some(e);
            m.package_chunk(0, b"abcd", false, now)
        }
        Input::PushWholeFinishFails(e) => {
            m.storage_mut().fail_finish = Some(e);
            whole(m)
        }
        Input::PushWholeDigest { good } => {
            let mut d = sha256_abc();
            if !good {
                d[31] ^= 1;
            }
            m.set_expected_sha256(Some(d));
            whole(m)
        }
        Input::Uri(u) => m.write(fw::PACKAGE_URI, Value::String(u.into()), now),
        Input::DlChunk => m.download_chunk(4, b"efgh", now),
        Input::DlComplete => m.download_complete(now),
        Input::DlCompleteDigest { good } => {
            // Stored so far: "abcd"; its SHA-256.
            let mut d = parse_sha256_hex(
                "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589",
            )
            .unwrap();
            if !good {
                d[0] ^= 0x80;
            }
            m.set_expected_sha256(Some(d));
            m.download_complete(now)
        }
        Input::DlFail(e) => m.download_failed(e, now),
        Input::ExecUpdate => m.execute(fw::UPDATE, b"", now),
        Input::ExecCancel => m.execute(fw::CANCEL, b"", now),
        Input::StartUpdate => m.start_update(now),
        Input::Defer => m.defer_update(now).map(|_| ()),
        Input::Tick(s) => {
            m.tick(t(s));
            Ok(())
        }
        Input::UpdOk => m.update_succeeded(now),
        Input::UpdFail(f) => m.update_failed(f, now),
    }
}

use DownloadError as De;
use Input as I;
use Start as S;
use State::{Downloaded, Downloading, Idle, Updating};
use StorageError as Se;
use UpdateFailure as Uf;

const OK: Option<Code> = None;
const E405: Option<Code> = Some(Code::METHOD_NOT_ALLOWED);
const E400: Option<Code> = Some(Code::BAD_REQUEST);
const E408: Option<Code> = Some(Code::REQUEST_ENTITY_INCOMPLETE);
const E413: Option<Code> = Some(Code::REQUEST_ENTITY_TOO_LARGE);
const E500: Option<Code> = Some(Code::INTERNAL_SERVER_ERROR);

/// (start, input) → (error code or OK, state, result).
#[rustfmt::skip]
const TABLE: &[(Start, Input, Option<Code>, State, u8)] = &[
    // Idle
    (S::Idle, I::PushFirst, OK, Downloading, 0),
    (S::Idle, I::PushWhole, OK, Downloaded, 0),
    (S::Idle, I::PushWholeDigest { good: true }, OK, Downloaded, 0),
    (S::Idle, I::PushWholeDigest { good: false }, E400, Idle, 5),
    (S::Idle, I::PushWholeFinishFails(Se::UnsupportedPackageType), E400, Idle, 6),
    (S::Idle, I::PushWholeFinishFails(Se::OutOfStorage), E413, Idle, 2),
    (S::Idle, I::PushFirstBeginFails(Se::OutOfMemory), E500, Idle, 3),
    (S::Idle, I::Uri(URI), OK, Downloading, 0),
    (S::Idle, I::Uri("https://fw.example/image"), OK, Downloading, 0),
    (S::Idle, I::Uri("coap//fw.example/image"), OK, Idle, 7),
    (S::Idle, I::Uri("coap://fw example/image"), OK, Idle, 7),
    (S::Idle, I::Uri("coap:///image"), OK, Idle, 7),
    (S::Idle, I::Uri("ftp://fw.example/image"), OK, Idle, 9),
    (S::Idle, I::Uri("coaps+tcp://fw.example/image"), OK, Idle, 9),
    (S::Idle, I::PushGap, E408, Idle, 0),
    (S::Idle, I::PushNext, E408, Idle, 0),
    (S::Idle, I::ExecUpdate, E405, Idle, 0),
    (S::Idle, I::ExecCancel, E405, Idle, 0),
    (S::Idle, I::StartUpdate, E405, Idle, 0),
    (S::Idle, I::Defer, E405, Idle, 0),
    (S::Idle, I::UpdOk, E405, Idle, 0),
    (S::Idle, I::UpdFail(Uf::KeepImage), E405, Idle, 0),
    (S::Idle, I::DlChunk, E405, Idle, 0),
    (S::Idle, I::DlComplete, E405, Idle, 0),
    (S::Idle, I::DlFail(De::ConnectionLost), E405, Idle, 0),
    (S::Idle, I::Tick(1000), OK, Idle, 0),
    // Downloading by push
    (S::PushDownloading, I::PushNext, OK, Downloading, 0),
    (S::PushDownloading, I::PushLast, OK, Downloaded, 0),
    (S::PushDownloading, I::PushFirst, OK, Downloading, 0),
    (S::PushDownloading, I::PushGap, E408, Downloading, 0),
    (S::PushDownloading, I::PushNextStorageFails(Se::OutOfStorage), E413, Idle, 2),
    (S::PushDownloading, I::PushNextStorageFails(Se::OutOfMemory), E500, Idle, 3),
    (S::PushDownloading, I::PushNextStorageFails(Se::UnsupportedPackageType), E400, Idle, 6),
    (S::PushDownloading, I::DlFail(De::ConnectionLost), OK, Idle, 4),
    (S::PushDownloading, I::ExecCancel, OK, Idle, 10),
    (S::PushDownloading, I::Uri(URI), E405, Downloading, 0),
    (S::PushDownloading, I::ExecUpdate, E405, Downloading, 0),
    (S::PushDownloading, I::DlChunk, E405, Downloading, 0),
    (S::PushDownloading, I::DlComplete, E405, Downloading, 0),
    (S::PushDownloading, I::StartUpdate, E405, Downloading, 0),
    (S::PushDownloading, I::Defer, E405, Downloading, 0),
    (S::PushDownloading, I::UpdOk, E405, Downloading, 0),
    (S::PushDownloading, I::UpdFail(Uf::DiscardImage), E405, Downloading, 0),
    // Downloading by pull
    (S::PullDownloading, I::DlChunk, OK, Downloading, 0),
    (S::PullDownloading, I::DlComplete, OK, Downloaded, 0),
    (S::PullDownloading, I::DlCompleteDigest { good: true }, OK, Downloaded, 0),
    (S::PullDownloading, I::DlCompleteDigest { good: false }, E400, Idle, 5),
    (S::PullDownloading, I::DlFail(De::ConnectionLost), OK, Idle, 4),
    (S::PullDownloading, I::DlFail(De::OutOfStorage), OK, Idle, 2),
    (S::PullDownloading, I::DlFail(De::OutOfMemory), OK, Idle, 3),
    (S::PullDownloading, I::DlFail(De::IntegrityCheckFailure), OK, Idle, 5),
    (S::PullDownloading, I::DlFail(De::UnsupportedPackageType), OK, Idle, 6),
    (S::PullDownloading, I::DlFail(De::InvalidUri), OK, Idle, 7),
    (S::PullDownloading, I::DlFail(De::UnsupportedProtocol), OK, Idle, 9),
    (S::PullDownloading, I::ExecCancel, OK, Idle, 10),
    (S::PullDownloading, I::PushFirst, E405, Downloading, 0),
    (S::PullDownloading, I::PushNext, E405, Downloading, 0),
    (S::PullDownloading, I::Uri(URI), E405, Downloading, 0),
    (S::PullDownloading, I::ExecUpdate, E405, Downloading, 0),
    (S::PullDownloading, I::StartUpdate, E405, Downloading, 0),
    (S::PullDownloading, I::UpdOk, E405, Downloading, 0),
    // Downloaded
    (S::Downloaded, I::ExecUpdate, OK, Downloaded, 0),
    (S::Downloaded, I::StartUpdate, OK, Updating, 0),
    (S::Downloaded, I::Defer, OK, Downloaded, 11),
    (S::Downloaded, I::ExecCancel, OK, Idle, 10),
    (S::Downloaded, I::PushFirst, E405, Downloaded, 0),
    (S::Downloaded, I::PushWhole, E405, Downloaded, 0),
    (S::Downloaded, I::Uri(URI), E405, Downloaded, 0),
    (S::Downloaded, I::DlChunk, E405, Downloaded, 0),
    (S::Downloaded, I::DlComplete, E405, Downloaded, 0),
    (S::Downloaded, I::DlFail(De::ConnectionLost), E405, Downloaded, 0),
    (S::Downloaded, I::UpdOk, E405, Downloaded, 0),
    (S::Downloaded, I::UpdFail(Uf::KeepImage), E405, Downloaded, 0),
    (S::Downloaded, I::Tick(1000), OK, Downloaded, 0),
    // Downloaded, deferred at t = 0 with a 60 s maximum
    (S::Deferred, I::StartUpdate, OK, Updating, 0),
    (S::Deferred, I::ExecUpdate, OK, Downloaded, 11),
    (S::Deferred, I::Defer, OK, Downloaded, 11),
    (S::Deferred, I::ExecCancel, OK, Idle, 10),
    (S::Deferred, I::Tick(59), OK, Downloaded, 11),
    (S::Deferred, I::Tick(60), OK, Updating, 0),
    (S::Deferred, I::PushFirst, E405, Downloaded, 11),
    (S::Deferred, I::UpdOk, E405, Downloaded, 11),
    // Updating
    (S::Updating, I::UpdOk, OK, Idle, 1),
    (S::Updating, I::UpdFail(Uf::KeepImage), OK, Downloaded, 8),
    (S::Updating, I::UpdFail(Uf::DiscardImage), OK, Idle, 8),
    (S::Updating, I::UpdFail(Uf::IntegrityCheckFailure), OK, Idle, 5),
    (S::Updating, I::UpdFail(Uf::UnsupportedPackageType), OK, Idle, 6),
    (S::Updating, I::ExecCancel, E405, Updating, 0),
    (S::Updating, I::ExecUpdate, E405, Updating, 0),
    (S::Updating, I::StartUpdate, E405, Updating, 0),
    (S::Updating, I::Defer, E405, Updating, 0),
    (S::Updating, I::PushFirst, E405, Updating, 0),
    (S::Updating, I::PushWhole, E405, Updating, 0),
    (S::Updating, I::Uri(URI), E405, Updating, 0),
    (S::Updating, I::DlChunk, E405, Updating, 0),
    (S::Updating, I::DlFail(De::ConnectionLost), E405, Updating, 0),
    // Idle after a pull lost its connection
    (S::IdleAfterPullLost, I::Uri(URI), OK, Downloading, 0),
    (S::IdleAfterPullLost, I::Uri("coap://other.example/image"), OK, Downloading, 0),
    (S::IdleAfterPullLost, I::PushFirst, OK, Downloading, 0),
    (S::IdleAfterPullLost, I::DlChunk, E405, Idle, 4),
    (S::IdleAfterPullLost, I::ExecCancel, E405, Idle, 4),
];

#[test]
fn transition_table() {
    let mut seen_results = BTreeSet::new();
    let mut seen_transitions = BTreeSet::new();
    for &(start, input, code, state, result) in TABLE {
        let mut m = drive(start);
        let (state0, result0) = (m.state(), m.result());
        let got = apply(&mut m, input);
        let ctx = format!("{start:?} + {input:?}");
        assert_eq!(got.map_err(|e| e.coap_code()).err(), code, "{ctx}: {got:?}");
        assert_eq!(m.state(), state, "{ctx}: state");
        assert_eq!(m.result().as_u8(), result, "{ctx}: result");
        assert!(is_allowed(m.state(), m.result()), "{ctx}");
        let changed = m.take_changed();
        match got {
            // A refusal changes nothing at all.
            Err(e) if !matches!(e, FwError::DownloadFailed(_)) => {
                assert_eq!((m.state(), m.result()), (state0, result0), "{ctx}");
                assert!(changed.is_empty(), "{ctx}: {changed:?}");
            }
            _ => {
                // The notification hint covers every value that changed. (A
                // download that fails inside the call goes Idle → Downloading →
                // Idle: State did change meanwhile, and so did its time.)
                if state != state0 {
                    assert!(changed.contains(fw::STATE), "{ctx}");
                }
                if m.result() != result0 {
                    assert!(changed.contains(fw::UPDATE_RESULT), "{ctx}");
                }
                assert_eq!(
                    changed.contains(fw::STATE),
                    changed.contains(fw::LAST_STATE_CHANGE_TIME),
                    "{ctx}"
                );
                let call_time = match input {
                    I::Tick(s) => s as i64,
                    _ => 1,
                };
                let lsct = if changed.contains(fw::STATE) {
                    call_time
                } else {
                    0
                };
                assert_eq!(
                    m.read(fw::LAST_STATE_CHANGE_TIME),
                    Ok(ResourceValue::Single(Value::Time(lsct))),
                    "{ctx}"
                );
            }
        }
        seen_results.insert(result);
        seen_transitions.insert((state0, state));
    }
    let all: BTreeSet<u8> = (0..=11).collect();
    assert_eq!(seen_results, all, "every Update Result is reachable");
    for pair in [
        (Idle, Downloading),
        (Idle, Downloaded),
        (Downloading, Downloaded),
        (Downloading, Idle),
        (Downloaded, Updating),
        (Downloaded, Idle),
        (Updating, Idle),
        (Updating, Downloaded),
    ] {
        assert!(
            seen_transitions.contains(&pair),
            "transition {pair:?} tested"
        );
    }
}

#[test]
fn reset_from_every_state() {
    type Reset = fn(&mut Fw) -> Result<(), FwError>;
    let resets: [(&str, Reset); 4] = [
        ("empty Package", |m| {
            m.write(fw::PACKAGE, Value::Opaque(vec![]), t(5))
        }),
        ("\\0 Package", |m| {
            m.write(fw::PACKAGE, Value::Opaque(vec![0]), t(5))
        }),
        ("empty Package block", |m| {
            m.package_chunk(0, b"", true, t(5))
        }),
        ("empty Package URI", |m| {
            m.write(fw::PACKAGE_URI, Value::String(String::new()), t(5))
        }),
    ];
    for start in STARTS {
        for (name, reset) in resets {
            let mut m = drive(start);
            m.set_package_info("fw", "1.2.3");
            let busy = m.state() != Idle;
            reset(&mut m).unwrap_or_else(|e| panic!("{start:?} {name}: {e}"));
            assert_eq!(
                (m.state(), m.result()),
                (Idle, UpdateResult::Initial),
                "{start:?} {name}"
            );
            assert!(
                !m.storage().inner.is_open(),
                "{start:?} {name}: image discarded"
            );
            assert_eq!(m.package_uri(), "", "{start:?} {name}");
            assert_eq!(m.resume_offset(), None, "{start:?} {name}");
            assert_eq!(
                m.read(fw::PKG_NAME),
                Ok(ResourceValue::Single(Value::String(String::new())))
            );
            let events: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
            assert_eq!(events.contains(&FwEvent::Abort), busy, "{start:?} {name}");
        }
    }
}

#[test]
fn single_nul_resets_but_longer_package_is_data() {
    let mut m = new_fw();
    m.write(fw::PACKAGE, Value::Opaque(vec![0, 0]), t(0))
        .unwrap();
    assert_eq!(m.state(), Downloaded);
    assert_eq!(m.storage().inner.image(), Some(&[0u8, 0][..]));
    // A block-wise package whose first block is a single 0 byte is data too.
    let mut m = new_fw();
    m.package_chunk(0, &[0], false, t(0)).unwrap();
    assert_eq!(m.state(), Downloading);
}

#[test]
fn push_blockwise_with_retransmission() {
    let mut m = new_fw();
    m.package_chunk(0, b"abcd", false, t(0)).unwrap();
    // An overlapping block contributes its tail, a repeated one nothing.
    m.package_chunk(2, b"cdef", false, t(0)).unwrap();
    m.package_chunk(4, b"ef", false, t(0)).unwrap();
    assert_eq!(
        m.package_chunk(7, b"h", false, t(0)),
        Err(FwError::UnexpectedOffset {
            expected: 6,
            got: 7
        })
    );
    m.package_chunk(6, b"gh", true, t(0)).unwrap();
    assert_eq!(m.state(), Downloaded);
    assert_eq!(m.storage().inner.image(), Some(&b"abcdefgh"[..]));
}

#[test]
fn push_restart_at_offset_zero() {
    let mut m = new_fw();
    m.package_chunk(0, b"old-", false, t(0)).unwrap();
    m.package_chunk(4, b"data", false, t(0)).unwrap();
    // The server starts the transfer again: the old bytes are dropped.
    m.package_chunk(0, b"new", true, t(0)).unwrap();
    assert_eq!(m.storage().inner.image(), Some(&b"new"[..]));
}

#[test]
fn sha256_integrity_check() {
    // Pass: "abc" in two blocks, digest from FIPS 180-2.
    let mut m = new_fw();
    m.set_expected_sha256(Some(sha256_abc()));
    m.package_chunk(0, b"a", false, t(0)).unwrap();
    m.package_chunk(1, b"bc", true, t(0)).unwrap();
    assert_eq!((m.state(), m.result()), (Downloaded, UpdateResult::Initial));
    assert_eq!(m.storage().inner.image(), Some(&b"abc"[..]));

    // Fail: same digest, one byte of the package changed.
    let mut m = new_fw();
    m.set_expected_sha256(Some(sha256_abc()));
    m.package_chunk(0, b"a", false, t(0)).unwrap();
    assert_eq!(
        m.package_chunk(1, b"bd", true, t(0)),
        Err(FwError::DownloadFailed(UpdateResult::IntegrityCheckFailure))
    );
    assert_eq!(
        (m.state(), m.result()),
        (Idle, UpdateResult::IntegrityCheckFailure)
    );
    assert_eq!(m.storage().inner.image(), None);
    assert_eq!(m.storage().aborts, 1);

    // The digest was used up: the next package needs no digest.
    m.write(fw::PACKAGE, Value::Opaque(b"abd".to_vec()), t(0))
        .unwrap();
    assert_eq!(m.state(), Downloaded);

    // No digest given: no check.
    let mut m = new_fw();
    m.write(fw::PACKAGE, Value::Opaque(b"anything".to_vec()), t(0))
        .unwrap();
    assert_eq!(m.state(), Downloaded);
}

#[test]
fn parse_sha256_hex_cases() {
    assert_eq!(sha256_abc()[0], 0xba);
    assert_eq!(sha256_abc()[31], 0xad);
    let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
    assert_eq!(parse_sha256_hex(upper), Some(sha256_abc()));
    assert_eq!(parse_sha256_hex(&upper[..62]), None);
    assert_eq!(parse_sha256_hex(&format!("{upper}00")), None);
    assert_eq!(parse_sha256_hex(&upper.replace('B', "g")), None);
    // 64 bytes but not 64 ASCII hex digits.
    assert_eq!(parse_sha256_hex(&"é".repeat(32)), None);
    // Signs are not hex digits.
    assert_eq!(parse_sha256_hex(&format!("+a{}", &upper[2..])), None);
}

#[test]
fn pull_resume_after_connection_lost() {
    let mut m = new_fw();
    // SHA-256("abcdefgh"), checked across the interruption.
    m.set_expected_sha256(parse_sha256_hex(
        "9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab",
    ));
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(0))
        .unwrap();
    assert_eq!(
        m.poll_event(),
        Some(FwEvent::Download {
            uri: URI.into(),
            resume_from: 0
        })
    );
    m.download_chunk(0, b"abc", t(1)).unwrap();
    m.download_chunk(3, b"de", t(2)).unwrap();
    assert_eq!(m.resume_offset(), Some(5));
    m.download_failed(DownloadError::ConnectionLost, t(3))
        .unwrap();
    assert_eq!(
        (m.state(), m.result()),
        (Idle, UpdateResult::ConnectionLost)
    );
    assert_eq!(m.resume_offset(), Some(5));
    assert_eq!(m.storage().aborts, 0, "partial image kept");

    // The server writes the same URI again: the download resumes at byte 5.
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(4))
        .unwrap();
    assert_eq!(
        (m.state(), m.result()),
        (Downloading, UpdateResult::Initial)
    );
    assert_eq!(
        m.poll_event(),
        Some(FwEvent::Download {
            uri: URI.into(),
            resume_from: 5
        })
    );
    // A downloader restarting its CoAP block at byte 4 sends a byte we have.
    assert_eq!(
        m.download_chunk(6, b"g", t(5)),
        Err(FwError::UnexpectedOffset {
            expected: 5,
            got: 6
        })
    );
    m.download_chunk(4, b"efgh", t(5)).unwrap();
    m.download_complete(t(6)).unwrap();
    assert_eq!(m.state(), Downloaded);
    assert_eq!(m.storage().inner.image(), Some(&b"abcdefgh"[..]));
}

#[test]
fn restart_download_discards_the_stored_bytes() {
    let mut m = drive(Start::PullDownloading);
    m.set_expected_sha256(Some(sha256_abc()));
    let aborts = m.storage().aborts;
    // The server ignored the resume request and sends everything again.
    m.restart_download(t(1)).unwrap();
    assert_eq!(
        (m.state(), m.result()),
        (Downloading, UpdateResult::Initial)
    );
    assert_eq!(m.resume_offset(), Some(0));
    assert_eq!(m.storage().aborts, aborts + 1);
    m.download_chunk(0, b"abc", t(2)).unwrap();
    // The digest covers the new bytes only.
    m.download_complete(t(3)).unwrap();
    assert_eq!(m.storage().inner.image(), Some(&b"abc"[..]));
    // Not a pull in progress: refused, nothing changes.
    for start in [Start::Idle, Start::PushDownloading, Start::Downloaded] {
        let mut m = drive(start);
        let before = (m.state(), m.result());
        assert!(matches!(
            m.restart_download(t(1)),
            Err(FwError::InvalidState { .. })
        ));
        assert_eq!((m.state(), m.result()), before);
    }
    // A storage that cannot begin again ends the download with its result.
    let mut m = drive(Start::PullDownloading);
    m.storage_mut().fail_begin = Some(StorageError::OutOfStorage);
    assert_eq!(
        m.restart_download(t(1)),
        Err(FwError::DownloadFailed(UpdateResult::NotEnoughFlash))
    );
    assert_eq!(
        (m.state(), m.result()),
        (Idle, UpdateResult::NotEnoughFlash)
    );
}

#[test]
fn pull_with_another_uri_starts_over() {
    let mut m = drive(Start::IdleAfterPullLost);
    let aborts = m.storage().aborts;
    m.write(
        fw::PACKAGE_URI,
        Value::String("coaps://other.example/fw".into()),
        t(1),
    )
    .unwrap();
    assert_eq!(m.resume_offset(), Some(0));
    assert_eq!(m.storage().aborts, aborts + 1);
    assert_eq!(
        m.poll_event(),
        Some(FwEvent::Download {
            uri: "coaps://other.example/fw".into(),
            resume_from: 0
        })
    );
}

#[test]
fn resume_offset_is_only_for_pull() {
    assert_eq!(drive(Start::PullDownloading).resume_offset(), Some(4));
    assert_eq!(drive(Start::PushDownloading).resume_offset(), None);
    assert_eq!(drive(Start::Downloaded).resume_offset(), None);
    assert_eq!(drive(Start::Idle).resume_offset(), None);
    // A pull that failed for another reason keeps nothing.
    let mut m = drive(Start::PullDownloading);
    m.download_failed(DownloadError::OutOfStorage, t(1))
        .unwrap();
    assert_eq!(m.resume_offset(), None);
    assert!(!m.storage().inner.is_open());
}

#[test]
fn deferral_is_bounded_by_maximum_defer_period() {
    let mut m = drive(Start::Downloaded);
    m.execute(fw::UPDATE, b"", t(10)).unwrap();
    assert_eq!(
        m.poll_event(),
        Some(FwEvent::UpdateRequested {
            severity: Severity::Mandatory,
            may_defer: true
        })
    );
    assert_eq!(m.defer_update(t(10)), Ok(t(70)));
    assert_eq!(m.result(), UpdateResult::Deferred);
    assert_eq!(m.next_deadline(), Some(t(70)));
    // Deferring again does not push the deadline out.
    assert_eq!(m.defer_update(t(40)), Ok(t(70)));
    m.tick(t(69));
    assert_eq!(m.state(), Downloaded);
    assert_eq!(m.poll_event(), None);
    // The server asks again after the period: no more deferral.
    m.execute(fw::UPDATE, b"", t(70)).unwrap();
    assert_eq!(
        m.poll_event(),
        Some(FwEvent::UpdateRequested {
            severity: Severity::Mandatory,
            may_defer: false
        })
    );
    assert_eq!(m.defer_update(t(70)), Err(FwError::DeferPeriodExpired));
    assert_eq!(m.result(), UpdateResult::Deferred);
    m.tick(t(70));
    assert_eq!((m.state(), m.result()), (Updating, UpdateResult::Initial));
    assert_eq!(m.poll_event(), Some(FwEvent::StartUpdate));
    assert_eq!(m.next_deadline(), None);
    m.update_succeeded(t(80)).unwrap();
    assert_eq!((m.state(), m.result()), (Idle, UpdateResult::Success));
}

#[test]
fn shortened_defer_period_applies_at_once() {
    let mut m = drive(Start::Deferred); // deferred at t = 0, deadline 60
    m.write(fw::MAXIMUM_DEFER_PERIOD, Value::UnsignedInteger(5), t(1))
        .unwrap();
    assert_eq!(m.next_deadline(), Some(t(5)));
    m.tick(t(5));
    assert_eq!(m.state(), Updating);
}

#[test]
fn zero_defer_period_forbids_deferral() {
    let mut m = FirmwareUpdate::new(FirmwareConfig::default(), TestStorage::new(), t(0));
    m.write(fw::PACKAGE, Value::Opaque(b"x".to_vec()), t(0))
        .unwrap();
    m.write(fw::SEVERITY, Value::Integer(0), t(0)).unwrap();
    m.execute(fw::UPDATE, b"", t(0)).unwrap();
    assert_eq!(
        m.poll_event(),
        Some(FwEvent::UpdateRequested {
            severity: Severity::Critical,
            may_defer: false
        })
    );
    assert_eq!(m.defer_update(t(0)), Err(FwError::DeferNotAllowed));
    assert_eq!((m.state(), m.result()), (Downloaded, UpdateResult::Initial));
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn deferral_window_restarts_for_a_new_image() {
    let mut m = drive(Start::Deferred);
    m.execute(fw::CANCEL, b"", t(30)).unwrap();
    m.write(fw::PACKAGE, Value::Opaque(b"v2".to_vec()), t(100))
        .unwrap();
    assert_eq!(m.defer_update(t(100)), Ok(t(160)));
}

#[test]
fn failed_update_keeping_image_can_be_retried() {
    let mut m = drive(Start::Updating);
    m.update_failed(UpdateFailure::KeepImage, t(1)).unwrap();
    assert_eq!(
        (m.state(), m.result()),
        (Downloaded, UpdateResult::UpdateFailed)
    );
    assert_eq!(m.storage().inner.image(), Some(&b"image"[..]));
    m.execute(fw::UPDATE, b"", t(2)).unwrap();
    m.start_update(t(2)).unwrap();
    assert_eq!((m.state(), m.result()), (Updating, UpdateResult::Initial));
}

#[test]
fn delivery_method_restrictions() {
    let pull_only = FirmwareConfig {
        delivery: DeliveryMethod::Pull,
        ..FirmwareConfig::default()
    };
    let mut m = FirmwareUpdate::new(pull_only, TestStorage::new(), t(0));
    assert_eq!(
        m.write(fw::PACKAGE, Value::Opaque(b"x".to_vec()), t(0)),
        Err(FwError::PushNotSupported)
    );
    assert_eq!(m.state(), Idle);
    // The reset still works.
    m.write(fw::PACKAGE, Value::Opaque(vec![]), t(0)).unwrap();
    assert_eq!(
        m.read(fw::FIRMWARE_UPDATE_DELIVERY_METHOD),
        Ok(ResourceValue::Single(Value::Integer(0)))
    );

    let push_only = FirmwareConfig {
        delivery: DeliveryMethod::Push,
        ..FirmwareConfig::default()
    };
    let mut m = FirmwareUpdate::new(push_only, TestStorage::new(), t(0));
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(0))
        .unwrap();
    assert_eq!(
        (m.state(), m.result()),
        (Idle, UpdateResult::UnsupportedProtocol)
    );
    assert_eq!(m.poll_event(), None);
}

#[test]
fn storage_begin_failure_on_pull_is_reported_in_result() {
    let mut m = new_fw();
    m.storage_mut().fail_begin = Some(StorageError::OutOfStorage);
    // TS: the Write succeeds, the failure shows in Update Result.
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(0))
        .unwrap();
    assert_eq!(
        (m.state(), m.result()),
        (Idle, UpdateResult::NotEnoughFlash)
    );
    assert_eq!(m.poll_event(), None);
}

#[test]
fn vec_storage_capacity() {
    let mut m = FirmwareUpdate::new(FirmwareConfig::default(), VecStorage::new(4), t(0));
    m.package_chunk(0, b"abcd", false, t(0)).unwrap();
    assert_eq!(
        m.package_chunk(4, b"e", true, t(0)),
        Err(FwError::DownloadFailed(UpdateResult::NotEnoughFlash))
    );
    assert_eq!(
        (m.state(), m.result()),
        (Idle, UpdateResult::NotEnoughFlash)
    );
    assert!(!m.storage().is_open());
}

#[test]
fn reads() {
    let m = FirmwareUpdate::new(
        FirmwareConfig {
            unix_time_at_zero: 1_700_000_000,
            ..config()
        },
        TestStorage::new(),
        t(42),
    );
    let single = |v| Ok(ResourceValue::Single(v));
    assert_eq!(m.read(fw::STATE), single(Value::Integer(0)));
    assert_eq!(m.read(fw::UPDATE_RESULT), single(Value::Integer(0)));
    assert_eq!(
        m.read(fw::PACKAGE_URI),
        single(Value::String(String::new()))
    );
    assert_eq!(m.read(fw::PKG_NAME), single(Value::String(String::new())));
    assert_eq!(
        m.read(fw::PKG_VERSION),
        single(Value::String(String::new()))
    );
    assert_eq!(
        m.read(fw::FIRMWARE_UPDATE_PROTOCOL_SUPPORT),
        Ok(ResourceValue::Multiple(
            [0, 1, 2, 3]
                .into_iter()
                .map(|i| (i, Value::Integer(i64::from(i))))
                .collect()
        ))
    );
    assert_eq!(
        m.read(fw::FIRMWARE_UPDATE_DELIVERY_METHOD),
        single(Value::Integer(2))
    );
    assert_eq!(m.read(fw::SEVERITY), single(Value::Integer(1)));
    assert_eq!(
        m.read(fw::LAST_STATE_CHANGE_TIME),
        single(Value::Time(1_700_000_042))
    );
    assert_eq!(
        m.read(fw::MAXIMUM_DEFER_PERIOD),
        single(Value::UnsignedInteger(60))
    );
    for r in [fw::PACKAGE, fw::UPDATE, fw::CANCEL] {
        assert_eq!(m.read(r), Err(FwError::OperationNotAllowed { resource: r }));
    }
    for r in [4, 14, 15, 16, 1000] {
        assert_eq!(m.read(r), Err(FwError::NotFound { resource: r }));
    }
    for &r in RESOURCES {
        let readable = ![fw::PACKAGE, fw::UPDATE, fw::CANCEL].contains(&r);
        assert_eq!(m.read(r).is_ok(), readable, "resource {r}");
    }
}

#[test]
fn writes_and_executes_validate() {
    let mut m = new_fw();
    let now = t(0);
    let bad = |r| Err(FwError::BadValue { resource: r });
    assert_eq!(
        m.write(fw::SEVERITY, Value::Integer(3), now),
        bad(fw::SEVERITY)
    );
    assert_eq!(
        m.write(fw::SEVERITY, Value::Integer(-1), now),
        bad(fw::SEVERITY)
    );
    assert_eq!(
        m.write(fw::SEVERITY, Value::String("0".into()), now),
        bad(fw::SEVERITY)
    );
    m.write(fw::SEVERITY, Value::UnsignedInteger(2), now)
        .unwrap();
    assert_eq!(m.severity(), Severity::Optional);
    assert_eq!(
        m.write(fw::MAXIMUM_DEFER_PERIOD, Value::Integer(-1), now),
        bad(fw::MAXIMUM_DEFER_PERIOD)
    );
    assert_eq!(
        m.write(fw::MAXIMUM_DEFER_PERIOD, Value::Integer(1 << 32), now),
        bad(fw::MAXIMUM_DEFER_PERIOD)
    );
    m.write(fw::MAXIMUM_DEFER_PERIOD, Value::Integer(3600), now)
        .unwrap();
    assert_eq!(m.max_defer_period(), 3600);
    assert_eq!(
        m.write(fw::PACKAGE, Value::String("x".into()), now),
        bad(fw::PACKAGE)
    );
    assert_eq!(
        m.write(fw::PACKAGE_URI, Value::Opaque(vec![]), now),
        bad(fw::PACKAGE_URI)
    );
    let long = format!("coap://h/{}", "a".repeat(247));
    assert_eq!(long.len(), 256);
    assert_eq!(
        m.write(fw::PACKAGE_URI, Value::String(long), now),
        bad(fw::PACKAGE_URI)
    );
    assert_eq!(m.result(), UpdateResult::Initial);
    for r in [
        fw::STATE,
        fw::UPDATE_RESULT,
        fw::UPDATE,
        fw::CANCEL,
        fw::LAST_STATE_CHANGE_TIME,
    ] {
        assert_eq!(
            m.write(r, Value::Integer(0), now),
            Err(FwError::OperationNotAllowed { resource: r })
        );
    }
    assert_eq!(
        m.write(4, Value::Integer(0), now),
        Err(FwError::NotFound { resource: 4 })
    );
    assert_eq!(
        m.execute(fw::STATE, b"", now),
        Err(FwError::OperationNotAllowed {
            resource: fw::STATE
        })
    );
    assert_eq!(
        m.execute(99, b"", now),
        Err(FwError::NotFound { resource: 99 })
    );
    assert_eq!(
        m.take_changed().iter().collect::<Vec<_>>(),
        [fw::SEVERITY, fw::MAXIMUM_DEFER_PERIOD]
    );
}

#[test]
fn notification_hint() {
    let mut m = new_fw();
    assert!(m.take_changed().is_empty());
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(3))
        .unwrap();
    assert_eq!(
        m.take_changed().iter().collect::<Vec<_>>(),
        [fw::PACKAGE_URI, fw::STATE, fw::LAST_STATE_CHANGE_TIME]
    );
    assert!(m.take_changed().is_empty());
    m.download_chunk(0, b"abc", t(4)).unwrap();
    assert!(
        m.take_changed().is_empty(),
        "progress is not a resource change"
    );
    m.download_failed(DownloadError::InvalidUri, t(5)).unwrap();
    assert_eq!(
        m.take_changed().iter().collect::<Vec<_>>(),
        [fw::STATE, fw::UPDATE_RESULT, fw::LAST_STATE_CHANGE_TIME]
    );
    m.set_package_info("app", "2.0");
    m.set_package_info("app", "2.0");
    assert_eq!(
        m.take_changed().iter().collect::<Vec<_>>(),
        [fw::PKG_NAME, fw::PKG_VERSION]
    );
}

#[test]
fn coap_codes() {
    assert_eq!(
        FwError::NotFound { resource: 4 }.coap_code(),
        Code::NOT_FOUND
    );
    assert_eq!(
        FwError::InvalidState { state: Idle }.coap_code(),
        Code::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        FwError::BadValue { resource: 11 }.coap_code(),
        Code::BAD_REQUEST
    );
    assert_eq!(
        FwError::PushNotSupported.coap_code(),
        Code::METHOD_NOT_ALLOWED
    );
    let msg = FwError::UnexpectedOffset {
        expected: 4,
        got: 9,
    }
    .to_string();
    assert!(
        msg.contains("offset 9") && msg.contains("expected offset 4"),
        "{msg}"
    );
}

#[test]
fn uri_syntax() {
    for (uri, want) in [
        ("coap://fw.example/image", Ok(Protocol::Coap)),
        ("COAPS://fw.example:5684/a/b?x=1#frag", Ok(Protocol::Coaps)),
        ("http://user:pw@10.0.0.1:8080/fw.bin", Ok(Protocol::Http)),
        ("https://fw.example", Ok(Protocol::Https)),
        ("coap+tcp://[2001:db8::1]:5683/fw", Ok(Protocol::CoapTcp)),
        ("coaps+tcp://[::1]/fw", Ok(Protocol::CoapTls)),
        ("coap://fw.example:/fw%20v2", Ok(Protocol::Coap)),
        ("ftp://fw.example/fw", Err(UriError::UnknownScheme)),
        ("coap+ws://fw.example/fw", Err(UriError::UnknownScheme)),
        ("fw.example/fw", Err(UriError::Invalid)),
        ("coap:fw.example", Err(UriError::Invalid)),
        ("coap://", Err(UriError::Invalid)),
        ("coap://:5683/fw", Err(UriError::Invalid)),
        ("coap://fw.example:99999/fw", Err(UriError::Invalid)),
        ("coap://fw.example:56a3/fw", Err(UriError::Invalid)),
        ("coap://[]/fw", Err(UriError::Invalid)),
        ("coap://[::1/fw", Err(UriError::Invalid)),
        ("coap://[::1]x/fw", Err(UriError::Invalid)),
        ("coap://fw.example/a b", Err(UriError::Invalid)),
        ("coap://fw.example/%zz", Err(UriError::Invalid)),
        ("coap://fw.example/%4", Err(UriError::Invalid)),
        ("coap://fw.example/a#b#c", Err(UriError::Invalid)),
        ("coap://fw.éxample/fw", Err(UriError::Invalid)),
        ("1coap://fw.example/fw", Err(UriError::Invalid)),
        ("://fw.example/fw", Err(UriError::Invalid)),
        ("", Err(UriError::Invalid)),
    ] {
        assert_eq!(check_uri(uri), want, "{uri}");
    }
}

#[test]
fn enum_values_match_the_ts() {
    for (i, s) in State::ALL.into_iter().enumerate() {
        assert_eq!(usize::from(s.as_u8()), i);
        assert_eq!(State::from_u8(s.as_u8()), Some(s));
    }
    assert_eq!(State::from_u8(4), None);
    for (i, r) in UpdateResult::ALL.into_iter().enumerate() {
        assert_eq!(usize::from(r.as_u8()), i);
        assert_eq!(UpdateResult::from_u8(r.as_u8()), Some(r));
    }
    assert_eq!(UpdateResult::from_u8(12), None);
    assert_eq!(UpdateResult::Deferred.as_u8(), 11);
    assert_eq!(Protocol::CoapTls as u8, 5);
    assert_eq!(Protocol::from_scheme("coaps+tcp"), Some(Protocol::CoapTls));
    // The allowed combinations.
    let allowed: Vec<(u8, u8)> = State::ALL
        .into_iter()
        .flat_map(|s| UpdateResult::ALL.into_iter().map(move |r| (s, r)))
        .filter(|&(s, r)| is_allowed(s, r))
        .map(|(s, r)| (s.as_u8(), r.as_u8()))
        .collect();
    let mut want: Vec<(u8, u8)> = (0..=10).map(|r| (0, r)).collect();
    want.extend([(1, 0), (2, 0), (2, 8), (2, 11), (3, 0)]);
    assert_eq!(allowed, want);
}

/// A reboot: snapshot, storage kept, a new object restored at `now`.
fn reboot(m: Fw, now: Instant) -> Fw {
    let snap = m.snapshot();
    FirmwareUpdate::restore(config(), m.into_storage(), snap, now)
}

#[test]
fn reboot_while_updating_then_report_success() {
    let mut m = drive(Start::Updating);
    m.set_package_info("app", "2.0");
    let mut m = reboot(m, t(100));
    assert_eq!((m.state(), m.result()), (Updating, UpdateResult::Initial));
    assert_eq!(
        m.read(fw::PKG_VERSION),
        Ok(ResourceValue::Single(Value::String("2.0".into())))
    );
    // Last State Change Time survives (it was t = 0).
    assert_eq!(
        m.read(fw::LAST_STATE_CHANGE_TIME),
        Ok(ResourceValue::Single(Value::Time(0)))
    );
    m.update_succeeded(t(101)).unwrap();
    assert_eq!((m.state(), m.result()), (Idle, UpdateResult::Success));
}

#[test]
fn reboot_while_updating_then_failure_keeps_image() {
    let m = reboot(drive(Start::Updating), t(100));
    let mut m = m;
    m.update_failed(UpdateFailure::KeepImage, t(101)).unwrap();
    assert_eq!(
        (m.state(), m.result()),
        (Downloaded, UpdateResult::UpdateFailed)
    );
    assert_eq!(m.storage().inner.image(), Some(&b"image"[..]));
    // The restored image is still ours to discard.
    m.execute(fw::CANCEL, b"", t(102)).unwrap();
    assert!(!m.storage().inner.is_open());
}

#[test]
fn reboot_while_deferred_restarts_the_defer_window() {
    let m = reboot(drive(Start::Deferred), t(1000));
    assert_eq!(
        (m.state(), m.result()),
        (Downloaded, UpdateResult::Deferred)
    );
    assert_eq!(m.next_deadline(), Some(t(1060)));
    assert_eq!(m.snapshot().image_len, 5);
}

#[test]
fn reboot_while_downloading_is_a_lost_connection() {
    for start in [Start::PushDownloading, Start::PullDownloading] {
        let m = reboot(drive(start), t(50));
        assert_eq!(
            (m.state(), m.result()),
            (Idle, UpdateResult::ConnectionLost)
        );
        assert_eq!(m.resume_offset(), None);
        assert!(!m.storage().inner.is_open(), "{start:?}");
        assert_eq!(
            m.read(fw::LAST_STATE_CHANGE_TIME),
            Ok(ResourceValue::Single(Value::Time(50)))
        );
    }
}

#[test]
fn restore_repairs_a_disallowed_pair() {
    let mut snap = drive(Start::Updating).snapshot();
    snap.result = UpdateResult::Deferred;
    let m = FirmwareUpdate::restore(config(), TestStorage::new(), snap.clone(), t(0));
    assert_eq!((m.state(), m.result()), (Updating, UpdateResult::Initial));
    snap.state = Idle;
    let m = FirmwareUpdate::restore(config(), TestStorage::new(), snap, t(0));
    assert_eq!((m.state(), m.result()), (Idle, UpdateResult::Initial));
}

mod prop {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[derive(Debug, Clone)]
    enum Op {
        Chunk {
            offset: u64,
            data: Vec<u8>,
            last: bool,
        },
        /// A Package block at the next offset the test expects.
        ChunkNext {
            data: Vec<u8>,
            last: bool,
        },
        DlChunk {
            offset: u64,
            data: Vec<u8>,
        },
        /// Pull bytes at the resume offset.
        DlNext {
            data: Vec<u8>,
        },
        DlComplete,
        DlFail(u8),
        Write(u16, Value),
        Exec(u16),
        Read(u16),
        Start,
        Defer,
        UpdOk,
        UpdFail(u8),
        Tick(u64),
        Digest(Option<[u8; 32]>),
        StorageFails(u8, u8),
        /// Snapshot, keep the storage, restore.
        Reboot,
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..6).prop_map(Value::Opaque),
            prop_oneof![
                Just(String::new()),
                Just(URI.to_string()),
                Just("https://fw.example/x".to_string()),
                Just("ftp://fw.example/x".to_string()),
                Just("coap//bad".to_string()),
                ".{0,20}",
            ]
            .prop_map(Value::String),
            any::<i64>().prop_map(Value::Integer),
            (0i64..4).prop_map(Value::Integer),
            any::<u64>().prop_map(Value::UnsignedInteger),
            any::<bool>().prop_map(Value::Boolean),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let data = || proptest::collection::vec(any::<u8>(), 0..8);
        let resource = || {
            prop_oneof![
                Just(fw::PACKAGE),
                Just(fw::PACKAGE_URI),
                Just(fw::SEVERITY),
                Just(fw::MAXIMUM_DEFER_PERIOD),
                0u16..16,
            ]
        };
        prop_oneof![
            (prop_oneof![Just(0u64), 0u64..24], data(), any::<bool>())
                .prop_map(|(offset, data, last)| Op::Chunk { offset, data, last }),
            (data(), any::<bool>()).prop_map(|(data, last)| Op::ChunkNext { data, last }),
            (0u64..24, data()).prop_map(|(offset, data)| Op::DlChunk { offset, data }),
            data().prop_map(|data| Op::DlNext { data }),
            Just(Op::DlComplete),
            (0u8..7).prop_map(Op::DlFail),
            (resource(), value()).prop_map(|(r, v)| Op::Write(r, v)),
            prop_oneof![Just(fw::UPDATE), Just(fw::CANCEL), 0u16..16].prop_map(Op::Exec),
            (0u16..16).prop_map(Op::Read),
            Just(Op::Start),
            Just(Op::Defer),
            Just(Op::UpdOk),
            (0u8..4).prop_map(Op::UpdFail),
            (0u64..40).prop_map(Op::Tick),
            proptest::option::of(any::<[u8; 32]>()).prop_map(Op::Digest),
            (0u8..3, 0u8..4).prop_map(|(w, e)| Op::StorageFails(w, e)),
            Just(Op::Reboot),
        ]
    }

    const DL_ERRORS: [DownloadError; 7] = [
        DownloadError::ConnectionLost,
        DownloadError::OutOfStorage,
        DownloadError::OutOfMemory,
        DownloadError::IntegrityCheckFailure,
        DownloadError::UnsupportedPackageType,
        DownloadError::InvalidUri,
        DownloadError::UnsupportedProtocol,
    ];
    const UPD_FAILURES: [UpdateFailure; 4] = [
        UpdateFailure::KeepImage,
        UpdateFailure::DiscardImage,
        UpdateFailure::IntegrityCheckFailure,
        UpdateFailure::UnsupportedPackageType,
    ];
    const STORAGE_ERRORS: [StorageError; 3] = [
        StorageError::OutOfStorage,
        StorageError::OutOfMemory,
        StorageError::UnsupportedPackageType,
    ];

    /// The machine, the test's clock and the next push offset it expects.
    struct Harness {
        m: Fw,
        now: Instant,
        push_next: u64,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                m: FirmwareUpdate::new(config(), TestStorage::new(), t(0)),
                now: t(0),
                push_next: 0,
            }
        }

        fn chunk(&mut self, offset: u64, data: &[u8], last: bool) -> Result<(), FwError> {
            let got = self.m.package_chunk(offset, data, last, self.now);
            if got.is_ok() {
                let end = offset + data.len() as u64;
                self.push_next = if offset == 0 {
                    end
                } else {
                    self.push_next.max(end)
                };
            }
            got
        }

        fn run(&mut self, op: Op) -> Result<(), FwError> {
            if let Op::Reboot = op {
                let snap = self.m.snapshot();
                let blank = FirmwareUpdate::new(config(), TestStorage::new(), self.now);
                let old = std::mem::replace(&mut self.m, blank);
                self.m = FirmwareUpdate::restore(config(), old.into_storage(), snap, self.now);
                return Ok(());
            }
            let m = &mut self.m;
            let now = self.now;
            match op {
                Op::Chunk { offset, data, last } => self.chunk(offset, &data, last),
                Op::ChunkNext { data, last } => self.chunk(self.push_next, &data, last),
                Op::DlChunk { offset, data } => m.download_chunk(offset, &data, now),
                Op::DlNext { data } => {
                    let offset = m.resume_offset().unwrap_or(0);
                    m.download_chunk(offset, &data, now)
                }
                Op::DlComplete => m.download_complete(now),
                Op::DlFail(i) => m.download_failed(DL_ERRORS[usize::from(i)], now),
                Op::Write(r, v) => m.write(r, v, now),
                Op::Exec(r) => m.execute(r, b"", now),
                Op::Read(r) => m.read(r).map(|_| ()),
                Op::Start => m.start_update(now),
                Op::Defer => m.defer_update(now).map(|_| ()),
                Op::UpdOk => m.update_succeeded(now),
                Op::UpdFail(i) => m.update_failed(UPD_FAILURES[usize::from(i)], now),
                Op::Tick(s) => {
                    self.now = now + lwm2m_core::time::Duration::from_secs(s);
                    m.tick(self.now);
                    Ok(())
                }
                Op::Digest(d) => {
                    m.set_expected_sha256(d);
                    Ok(())
                }
                Op::StorageFails(which, e) => {
                    let e = STORAGE_ERRORS.get(usize::from(e)).copied();
                    let s = m.storage_mut();
                    match which {
                        0 => s.fail_begin = e,
                        1 => s.fail_write = e,
                        _ => s.fail_finish = e,
                    }
                    Ok(())
                }
                Op::Reboot => Ok(()),
            }
        }
    }

    fn check(h: &mut Harness, op: Op) -> Result<(), TestCaseError> {
        let before = (h.m.state(), h.m.result());
        h.m.take_changed();
        let got = h.run(op);
        let m = &mut h.m;
        let (state, result) = (m.state(), m.result());
        prop_assert!(is_allowed(state, result), "({:?}, {:?})", state, result);
        prop_assert_eq!(
            m.read(fw::STATE),
            Ok(ResourceValue::Single(Value::Integer(i64::from(
                state.as_u8()
            ))))
        );
        prop_assert_eq!(
            m.read(fw::UPDATE_RESULT),
            Ok(ResourceValue::Single(Value::Integer(i64::from(
                result.as_u8()
            ))))
        );
        if let Err(e) = got {
            if !matches!(e, FwError::DownloadFailed(_)) {
                prop_assert_eq!((state, result), before, "refusal {:?} changed state", e);
                prop_assert!(m.take_changed().is_empty());
            }
        }
        if matches!(state, State::Downloaded | State::Updating) {
            prop_assert!(m.storage().inner.image().is_some());
        }
        if state == State::Downloading {
            prop_assert!(m.storage().inner.is_open());
            prop_assert!(m.storage().inner.image().is_none());
        }
        if let Some(offset) = m.resume_offset() {
            prop_assert_eq!(offset, m.storage().inner.data().len() as u64);
        }
        if m.next_deadline().is_some() {
            prop_assert_eq!(result, UpdateResult::Deferred);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn random_inputs_keep_ts_allowed_state(ops in proptest::collection::vec(op(), 0..60)) {
            let mut h = Harness::new();
            for op in ops {
                check(&mut h, op)?;
            }
        }
    }

    /// The random sequences above do reach every allowed (State, Result)
    /// pair, so the property covers the whole machine.
    #[test]
    fn random_inputs_reach_every_allowed_pair() {
        let mut runner = TestRunner::deterministic();
        let mut seen = BTreeSet::new();
        for _ in 0..96 {
            let ops = proptest::collection::vec(op(), 60)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            let mut h = Harness::new();
            for op in ops {
                check(&mut h, op).unwrap();
                seen.insert((h.m.state(), h.m.result()));
            }
        }
        let allowed: BTreeSet<_> = State::ALL
            .into_iter()
            .flat_map(|s| UpdateResult::ALL.into_iter().map(move |r| (s, r)))
            .filter(|&(s, r)| is_allowed(s, r))
            .collect();
        let missing: Vec<_> = allowed.difference(&seen).collect();
        assert!(missing.is_empty(), "never reached: {missing:?}");
    }
}

#[test]
fn reboot_during_a_pull_resumes_when_the_storage_can() {
    // VecStorage supports resume (TestStorage does not: see
    // reboot_while_downloading_is_a_lost_connection).
    let mut m = FirmwareUpdate::new(config(), VecStorage::new(1024), t(0));
    // SHA-256("abcdefgh"), checked across the reboot.
    let digest =
        parse_sha256_hex("9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab");
    m.set_expected_sha256(digest);
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(0))
        .unwrap();
    while m.poll_event().is_some() {}
    m.download_chunk(0, b"abcde", t(1)).unwrap();
    let snap = m.snapshot();
    assert_eq!(snap.image_len, 5);
    assert_eq!(snap.expected_sha256, digest);
    assert!(snap.pull_hash_state.is_some());
    // More bytes reached the storage after the snapshot: dropped at restore.
    m.download_chunk(5, b"XY", t(2)).unwrap();
    let mut m = FirmwareUpdate::restore(config(), m.into_storage(), snap, t(10));
    assert_eq!(
        (m.state(), m.result()),
        (Downloading, UpdateResult::Initial)
    );
    assert_eq!(
        m.poll_event(),
        Some(FwEvent::Download {
            uri: URI.into(),
            resume_from: 5
        })
    );
    m.download_chunk(5, b"fgh", t(11)).unwrap();
    m.download_complete(t(12)).unwrap();
    assert_eq!(m.state(), Downloaded);
    assert_eq!(m.storage().image(), Some(&b"abcdefgh"[..]));
}

#[test]
fn reboot_after_a_lost_pull_keeps_the_bytes_for_the_same_uri() {
    let mut m = FirmwareUpdate::new(config(), VecStorage::new(1024), t(0));
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(0))
        .unwrap();
    m.download_chunk(0, b"abc", t(1)).unwrap();
    m.download_failed(DownloadError::ConnectionLost, t(2))
        .unwrap();
    let snap = m.snapshot();
    let mut m = FirmwareUpdate::restore(config(), m.into_storage(), snap, t(10));
    assert_eq!(
        (m.state(), m.result()),
        (Idle, UpdateResult::ConnectionLost)
    );
    assert_eq!(m.resume_offset(), Some(3));
    while m.poll_event().is_some() {}
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(11))
        .unwrap();
    assert_eq!(
        m.poll_event(),
        Some(FwEvent::Download {
            uri: URI.into(),
            resume_from: 3
        })
    );
}

#[test]
fn a_bad_hash_state_falls_back_to_a_lost_download() {
    let mut m = FirmwareUpdate::new(config(), VecStorage::new(1024), t(0));
    m.write(fw::PACKAGE_URI, Value::String(URI.into()), t(0))
        .unwrap();
    m.download_chunk(0, b"abc", t(1)).unwrap();
    let mut snap = m.snapshot();
    snap.pull_hash_state = Some(vec![1, 2, 3]);
    let m = FirmwareUpdate::restore(config(), m.into_storage(), snap, t(10));
    assert_eq!(
        (m.state(), m.result()),
        (Idle, UpdateResult::ConnectionLost)
    );
    assert_eq!(m.resume_offset(), None);
}

#[test]
fn snapshots_encode_and_decode() {
    let mut m = drive(Start::PullDownloading);
    m.set_package_info("app\nname\\x", "2.0=beta");
    m.set_expected_sha256(Some(sha256_abc()));
    let snap = m.snapshot();
    let text = snap.encode();
    assert!(text.starts_with("lwm2m-fw-state 1\n"), "{text}");
    assert_eq!(FirmwareSnapshot::decode(&text), Ok(snap.clone()));
    let snap = drive(Start::Deferred).snapshot();
    assert_eq!(FirmwareSnapshot::decode(&snap.encode()), Ok(snap));
    // Unknown keys are ignored (a later version may add some).
    let text = drive(Start::Idle).snapshot().encode() + "future=1\n";
    assert!(FirmwareSnapshot::decode(&text).is_ok());
}

#[test]
fn corrupt_snapshots_are_refused_with_a_reason() {
    let good = drive(Start::Downloaded).snapshot().encode();
    let with = |key: &str, value: &str| {
        good.lines()
            .map(|l| {
                if l.starts_with(&format!("{key}=")) {
                    format!("{key}={value}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        FirmwareSnapshot::decode("nonsense"),
        Err(SnapshotError::BadHeader)
    );
    assert_eq!(
        FirmwareSnapshot::decode(&good.replace("image_len=", "no_len=")),
        Err(SnapshotError::Missing { key: "image_len" })
    );
    assert_eq!(
        FirmwareSnapshot::decode(&(good.clone() + "garbage\n")),
        Err(SnapshotError::BadLine { line: 13 })
    );
    for (key, value) in [
        ("state", "4"),
        ("state", "-1"),
        ("result", "12"),
        ("severity", "3"),
        ("uri", "bad\\escape"),
        ("max_defer_period", "x"),
        ("last_state_change", "1e9"),
        ("image_len", "-5"),
        ("expected_sha256", "abc"),
        ("pull_hash_state", "zz"),
    ] {
        let e = FirmwareSnapshot::decode(&with(key, value)).unwrap_err();
        assert!(
            matches!(e, SnapshotError::BadValue { key: k, .. } if k == key),
            "{key}={value}: {e}"
        );
        assert!(e.to_string().contains(key), "{e}");
    }
    let long = with("uri", &"a".repeat(300));
    assert!(FirmwareSnapshot::decode(&long).is_err());
}

#[test]
fn file_state_store_round_trip() {
    let dir = std::env::temp_dir().join(format!("lwm2m-fw-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fw.state");
    let _ = std::fs::remove_file(&path);
    let mut store = FileStateStore::new(&path);
    assert_eq!(store.load(), Ok(None));
    let snap = drive(Start::PullDownloading).snapshot();
    store.save(&snap).unwrap();
    assert_eq!(FileStateStore::new(&path).load(), Ok(Some(snap)));
    std::fs::write(&path, "lwm2m-fw-state 1\nstate=9\n").unwrap();
    assert!(matches!(store.load(), Err(StateStoreError::Corrupt(_))));
    std::fs::write(&path, vec![b'x'; 20_000]).unwrap();
    assert!(matches!(store.load(), Err(StateStoreError::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_storage_writes_resumes_and_aborts() {
    let dir = std::env::temp_dir().join(format!("lwm2m-fw-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fw.image");
    let mut s = FileStorage::new(&path, 10);
    s.begin().unwrap();
    s.write(0, b"abcdef").unwrap();
    assert_eq!(s.write(3, b"x"), Err(StorageError::OutOfStorage), "a gap");
    assert_eq!(
        s.write(6, b"12345"),
        Err(StorageError::OutOfStorage),
        "capacity"
    );
    drop(s);
    // A new process: 4 bytes were counted in the saved state.
    let mut s = FileStorage::new(&path, 10);
    assert_eq!(
        s.resume(7),
        Err(StorageError::OutOfStorage),
        "more than on disk"
    );
    s.resume(4).unwrap();
    s.write(4, b"XY").unwrap();
    s.finish().unwrap();
    assert_eq!(s.read_image().unwrap(), b"abcdXY");
    s.abort();
    assert!(!path.exists());
    assert_eq!(s.resume(0), Err(StorageError::OutOfStorage));
    std::fs::remove_dir_all(&dir).unwrap();
}
