//! Firmware Update state machine: any sequence of server operations,
//! downloader and installer reports never panics and always leaves a
//! (State, Update Result) pair the TS allows; refused operations change
//! nothing.
//!
//! Input: a stream of operations, each an opcode byte followed by its
//! parameters (lengths are taken modulo small bounds; running out of bytes
//! ends the run).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::model::Value;
use lwm2m_core::time::{Duration, Instant};
use lwm2m_objects::firmware::*;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.byte()? % 32).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(b)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.byte()? % 5 {
            0 => Value::Opaque(self.bytes()?.to_vec()),
            1 => Value::String(String::from_utf8_lossy(self.bytes()?).into_owned()),
            2 => Value::Integer(i64::from(self.byte()? as i8)),
            3 => Value::UnsignedInteger(u64::from(self.byte()?) << (self.byte()? % 64)),
            _ => Value::Boolean(self.byte()? & 1 == 1),
        })
    }
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

fn config() -> FirmwareConfig {
    FirmwareConfig {
        protocols: Protocol::ALL.to_vec(),
        max_defer_period: 30,
        ..FirmwareConfig::default()
    }
}

fn run(data: &[u8]) -> Option<()> {
    let mut input = Input(data);
    let mut now = Instant::ZERO;
    let mut m = FirmwareUpdate::new(config(), VecStorage::new(256), now);
    loop {
        let before = (m.state(), m.result());
        m.take_changed();
        let got = match input.byte()? % 16 {
            0 => {
                let offset = u64::from(input.byte()?);
                let last = input.byte()? & 1 == 1;
                m.package_chunk(offset, input.bytes()?, last, now)
            }
            1 => {
                let offset = u64::from(input.byte()?);
                m.download_chunk(offset, input.bytes()?, now)
            }
            2 => {
                let offset = m.resume_offset().unwrap_or(0);
                m.download_chunk(offset, input.bytes()?, now)
            }
            3 => m.download_complete(now),
            4 => {
                let e = DL_ERRORS[usize::from(input.byte()? % 7)];
                m.download_failed(e, now)
            }
            5 => {
                let r = u16::from(input.byte()? % 16);
                let v = input.value()?;
                m.write(r, v, now)
            }
            6 => {
                let r = u16::from(input.byte()? % 16);
                let args = input.bytes()?;
                m.execute(r, args, now)
            }
            7 => m.read(u16::from(input.byte()? % 16)).map(|_| ()),
            8 => m.start_update(now),
            9 => m.defer_update(now).map(|_| ()),
            10 => m.update_succeeded(now),
            11 => {
                let f = UPD_FAILURES[usize::from(input.byte()? % 4)];
                m.update_failed(f, now)
            }
            12 => {
                now = now + Duration::from_secs(u64::from(input.byte()?));
                m.tick(now);
                Ok(())
            }
            13 => {
                let digest = input.bytes()?;
                m.set_expected_sha256(digest.try_into().ok());
                Ok(())
            }
            14 => {
                let snap = m.snapshot();
                m = FirmwareUpdate::restore(config(), m.into_storage(), snap, now);
                Ok(())
            }
            _ => {
                // A Package URI made of arbitrary text.
                let uri = String::from_utf8_lossy(input.bytes()?).into_owned();
                let _ = check_uri(&uri);
                m.write(
                    lwm2m_objects::firmware_update::PACKAGE_URI,
                    Value::String(uri),
                    now,
                )
            }
        };
        while m.poll_event().is_some() {}
        let after = (m.state(), m.result());
        assert!(is_allowed(after.0, after.1), "{after:?}");
        if let Err(e) = got {
            if !matches!(e, FwError::DownloadFailed(_)) {
                assert_eq!(after, before, "refused {e:?} changed the state");
                assert!(
                    m.take_changed().is_empty(),
                    "refused {e:?} changed resources"
                );
            }
        }
        if matches!(after.0, State::Downloaded | State::Updating) {
            assert!(m.storage().image().is_some());
        }
        if let Some(offset) = m.resume_offset() {
            assert_eq!(offset, m.storage().data().len() as u64);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
