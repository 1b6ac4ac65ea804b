//! Firmware Update (object 5) through the client engine: push (Block1
//! Write of Package), pull (Package URI, Block2 GET from a CoAP file
//! server in the simulated network), the update hook, failure results and
//! notifications of State.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use lwm2m_client::objects::{Firmware, FirmwareHandle, UpdateOutcome};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, RequestId};
use lwm2m_core::model::Path;
use lwm2m_core::sim::SimAddr;
use lwm2m_core::time::Duration;
use lwm2m_objects::firmware::VecStorage;
use sha2::{Digest, Sha256};

/// The CoAP file server the Package URIs point at.
const FILES: SimAddr = 2;
/// An address nobody listens on.
const NOWHERE: SimAddr = 9;

/// What the update hook saw.
type Installed = Rc<RefCell<Vec<Vec<u8>>>>;

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A registered client with the Firmware object (hook: records the image,
/// answers `outcome`) and a file server serving `/fw.bin`.
fn setup(
    seed: u64,
    outcome: UpdateOutcome,
    served: &[u8],
) -> (Harness, FirmwareHandle<VecStorage>, Installed) {
    let mut h = Harness::new(seed, 0, 86_400);
    let installed: Installed = Rc::default();
    let seen = installed.clone();
    let fw = Firmware::new(VecStorage::new(64 * 1024), move |s: &mut VecStorage| {
        seen.borrow_mut()
            .push(s.image().unwrap_or_default().to_vec());
        outcome
    });
    let handle = fw.handle();
    h.client().add_object(Box::new(fw));
    h.client().set_resolver(|uri| {
        if uri.starts_with("coap://files.example") {
            Some(FILES)
        } else if uri.starts_with("coap://nowhere.example") {
            Some(NOWHERE)
        } else {
            None
        }
    });
    let mut files = server_app(seed ^ 0xF11E);
    files.files.insert("/fw.bin".into(), served.to_vec());
    assert_eq!(h.net.add(SimPeer::Server(Box::new(files))), FILES);
    h.register();
    (h, handle, installed)
}

fn read_text(h: &mut Harness, path: &str) -> String {
    let r = h.request(get(path));
    assert_eq!(r.code, Code::CONTENT, "read {path}");
    String::from_utf8(r.payload).unwrap()
}

fn observe(h: &mut Harness, path: &str) -> RequestId {
    let now = h.now();
    let id = h
        .server()
        .ep
        .send_request(now, CLIENT, get(path).with_uint_option(number::OBSERVE, 0))
        .unwrap();
    h.run_until(Duration::from_secs(60), |net, _| match net.node(SERVER) {
        SimPeer::Server(s) => s.responses.contains_key(&id),
        SimPeer::Client(_) => unreachable!(),
    });
    let first = h
        .server()
        .responses
        .get(&id)
        .cloned()
        .expect("observe answer");
    assert_eq!(first.code, Code::CONTENT);
    id
}

fn notified(h: &mut Harness, id: RequestId) -> Vec<String> {
    h.server()
        .notifications
        .iter()
        .filter(|(_, n, _)| *n == id)
        .map(|(_, _, r)| String::from_utf8(r.payload.clone()).unwrap())
        .collect()
}

fn write_uri(h: &mut Harness, uri: &str) {
    let req = Request::new(Code::PUT)
        .with_path("/5/0/1")
        .with_payload(0, uri.as_bytes().to_vec());
    assert_eq!(h.request(req).code, Code::CHANGED, "write {uri}");
}

#[test]
fn push_block1_then_update_with_hook_and_success_report() {
    let (mut h, handle, installed) = setup(11, UpdateOutcome::Pending, b"");
    let state = observe(&mut h, "/5/0/3");
    let pkg = image(20 * 1024);
    let put = Request::new(Code::PUT)
        .with_path("/5/0/0")
        .with_payload(42, pkg.clone());
    assert_eq!(h.request(put).code, Code::CHANGED);
    // The PUT went block-wise: 20 Block1 requests of about 1 KiB.
    let blocks = h
        .net
        .trace()
        .iter()
        .filter(|t| t.from == SERVER && t.to == CLIENT && t.bytes.len() > 1000)
        .count();
    assert!(blocks >= 20, "expected Block1 requests, got {blocks}");
    assert_eq!(read_text(&mut h, "/5/0/3"), "2");
    assert_eq!(read_text(&mut h, "/5/0/5"), "0");
    assert!(installed.borrow().is_empty());

    let exec = Request::new(Code::POST).with_path("/5/0/2");
    assert_eq!(h.request(exec).code, Code::CHANGED);
    assert_eq!(*installed.borrow(), vec![pkg]);
    assert_eq!(read_text(&mut h, "/5/0/3"), "3");

    // The device rebooted into the new image and reports it.
    let now = h.now();
    handle.update_succeeded(now).unwrap();
    h.client().changed(now, Path::Object(5));
    h.run_for(Duration::from_secs(5));
    assert_eq!(read_text(&mut h, "/5/0/5"), "1");
    assert_eq!(read_text(&mut h, "/5/0/3"), "0");
    // Downloaded, Updating, Idle: one notification per state change
    // (Downloading lasts only inside the reassembled Write).
    assert_eq!(notified(&mut h, state), ["2", "3", "0"]);
}

#[test]
fn hook_reporting_success_at_once_sets_result_1() {
    let (mut h, _handle, installed) = setup(12, UpdateOutcome::Succeeded, b"");
    let result = observe(&mut h, "/5/0/5");
    let put = Request::new(Code::PUT)
        .with_path("/5/0/0")
        .with_payload(42, image(3000));
    assert_eq!(h.request(put).code, Code::CHANGED);
    let exec = Request::new(Code::POST).with_path("/5/0/2");
    assert_eq!(h.request(exec).code, Code::CHANGED);
    assert_eq!(installed.borrow().len(), 1);
    assert_eq!(read_text(&mut h, "/5/0/5"), "1");
    h.run_for(Duration::from_secs(2));
    assert_eq!(notified(&mut h, result), ["1"]);
}

#[test]
fn update_outside_downloaded_is_refused() {
    let (mut h, _handle, installed) = setup(13, UpdateOutcome::Succeeded, b"");
    let exec = Request::new(Code::POST).with_path("/5/0/2");
    assert_eq!(h.request(exec).code, Code::METHOD_NOT_ALLOWED);
    assert!(installed.borrow().is_empty());
}

#[test]
fn pull_over_coap_block2_with_sha256_check() {
    let pkg = image(20 * 1024);
    let (mut h, handle, _installed) = setup(21, UpdateOutcome::Pending, &pkg);
    handle.set_expected_sha256(Some(Sha256::digest(&pkg).into()));
    let state = observe(&mut h, "/5/0/3");
    write_uri(&mut h, "coap://files.example/fw.bin");
    h.run_for(Duration::from_secs(60));
    assert_eq!(read_text(&mut h, "/5/0/3"), "2");
    assert_eq!(read_text(&mut h, "/5/0/5"), "0");
    assert_eq!(read_text(&mut h, "/5/0/1"), "coap://files.example/fw.bin");
    let stored = handle.with(|f| f.storage().image().map(<[u8]>::to_vec));
    assert_eq!(stored, Some(pkg));
    // One GET reached the file server's application; its endpoint served
    // the body block-wise (20 blocks of 1024 bytes, no datagram larger).
    let gets = h
        .server_at(FILES)
        .rd_requests
        .iter()
        .filter(|(_, r)| r.code == Code::GET)
        .count();
    assert_eq!(gets, 1);
    let blocks: Vec<usize> = h
        .net
        .trace()
        .iter()
        .filter(|t| t.from == FILES && t.to == CLIENT)
        .map(|t| t.bytes.len())
        .collect();
    assert!(
        blocks.len() >= 20,
        "expected Block2 responses, got {blocks:?}"
    );
    assert!(blocks.iter().all(|&n| n < 1100), "{blocks:?}");
    assert_eq!(notified(&mut h, state), ["1", "2"]);
}

#[test]
fn pull_with_wrong_digest_fails_integrity_check() {
    let pkg = image(5000);
    let (mut h, handle, _installed) = setup(22, UpdateOutcome::Pending, &pkg);
    handle.set_expected_sha256(Some([0xAB; 32]));
    write_uri(&mut h, "coap://files.example/fw.bin");
    h.run_for(Duration::from_secs(60));
    assert_eq!(read_text(&mut h, "/5/0/3"), "0");
    assert_eq!(read_text(&mut h, "/5/0/5"), "5");
}

#[test]
fn bad_uris_give_result_7() {
    let (mut h, _handle, _installed) = setup(31, UpdateOutcome::Pending, b"x");
    // Not a URI with a host.
    write_uri(&mut h, "coap:/no-host");
    assert_eq!(read_text(&mut h, "/5/0/5"), "7");
    // A host the resolver does not know.
    write_uri(&mut h, "coap://unknown.example/fw.bin");
    h.run_for(Duration::from_secs(5));
    assert_eq!(read_text(&mut h, "/5/0/3"), "0");
    assert_eq!(read_text(&mut h, "/5/0/5"), "7");
    // The server has no such file: 4.04.
    write_uri(&mut h, "coap://files.example/missing.bin");
    h.run_for(Duration::from_secs(30));
    assert_eq!(read_text(&mut h, "/5/0/3"), "0");
    assert_eq!(read_text(&mut h, "/5/0/5"), "7");
}

#[test]
fn unsupported_schemes_give_result_9() {
    let (mut h, _handle, _installed) = setup(32, UpdateOutcome::Pending, b"x");
    for uri in [
        "http://files.example/fw.bin",
        "https://files.example/fw.bin",
        "coaps://files.example/fw.bin",
        "ftp://files.example/fw.bin",
    ] {
        write_uri(&mut h, uri);
        h.run_for(Duration::from_secs(2));
        assert_eq!(read_text(&mut h, "/5/0/3"), "0", "{uri}");
        assert_eq!(read_text(&mut h, "/5/0/5"), "9", "{uri}");
        // Reset between attempts (empty URI): Result back to 0.
        write_uri(&mut h, "");
        assert_eq!(read_text(&mut h, "/5/0/5"), "0");
    }
}

#[test]
fn lost_connection_gives_result_4() {
    let (mut h, _handle, _installed) = setup(33, UpdateOutcome::Pending, b"x");
    let state = observe(&mut h, "/5/0/3");
    write_uri(&mut h, "coap://nowhere.example/fw.bin");
    assert_eq!(read_text(&mut h, "/5/0/3"), "1");
    // CoAP gives up after its retransmissions (about 93 s); the object
    // retries 3 times (ResumePolicy::default(), 2 s, 4 s, 6 s apart), still
    // Downloading, then gives up.
    h.run_for(Duration::from_secs(300));
    assert_eq!(read_text(&mut h, "/5/0/3"), "1");
    h.run_for(Duration::from_secs(200));
    assert_eq!(read_text(&mut h, "/5/0/3"), "0");
    assert_eq!(read_text(&mut h, "/5/0/5"), "4");
    assert_eq!(notified(&mut h, state), ["1", "0"]);
}

#[test]
fn cancel_during_pull_gives_result_10_and_ignores_the_late_answer() {
    let (mut h, _handle, _installed) = setup(34, UpdateOutcome::Pending, b"x");
    let t0 = h.now();
    write_uri(&mut h, "coap://nowhere.example/a.bin");
    assert_eq!(read_text(&mut h, "/5/0/3"), "1");
    let cancel = Request::new(Code::POST).with_path("/5/0/10");
    assert_eq!(h.request(cancel).code, Code::CHANGED);
    assert_eq!(read_text(&mut h, "/5/0/3"), "0");
    assert_eq!(read_text(&mut h, "/5/0/5"), "10");
    // A second pull 50 s later. The abandoned GET gives up 62..93 s after
    // t0 (CoAP retransmissions): that failure must not end the second
    // download, which gives up (after 3 retries) 4 × 62..93 s after its
    // own start only.
    h.run_for(Duration::from_secs(50));
    write_uri(&mut h, "coap://nowhere.example/b.bin");
    let until = t0 + Duration::from_secs(100);
    h.run_for(until - h.now());
    assert_eq!(read_text(&mut h, "/5/0/3"), "1", "still downloading b");
    assert_eq!(read_text(&mut h, "/5/0/5"), "0");
    h.run_for(Duration::from_secs(500));
    assert_eq!(read_text(&mut h, "/5/0/3"), "0");
    assert_eq!(read_text(&mut h, "/5/0/5"), "4");
}

#[test]
fn a_new_pull_after_a_failure_downloads_again() {
    let pkg = image(4096);
    let (mut h, handle, _installed) = setup(35, UpdateOutcome::Pending, &pkg);
    write_uri(&mut h, "coap://files.example/missing.bin");
    h.run_for(Duration::from_secs(30));
    assert_eq!(read_text(&mut h, "/5/0/5"), "7");
    write_uri(&mut h, "coap://files.example/fw.bin");
    h.run_for(Duration::from_secs(30));
    assert_eq!(read_text(&mut h, "/5/0/3"), "2");
    assert_eq!(read_text(&mut h, "/5/0/5"), "0");
    let stored = handle.with(|f| f.storage().image().map(<[u8]>::to_vec));
    assert_eq!(stored, Some(pkg));
}

/// Block2 numbers of the GETs the client sent to the file server from
/// trace entry `from` on (retransmissions included).
fn block2_requests(h: &Harness, from: usize) -> Vec<u32> {
    h.net.trace()[from..]
        .iter()
        .filter(|t| t.from == CLIENT && t.to == FILES)
        .filter_map(|t| {
            let m = lwm2m_core::coap::Message::parse(&t.bytes).ok()?;
            (m.code == Code::GET).then(|| m.block2().map_or(0, |b| b.num))
        })
        .collect()
}

#[test]
fn coap_pull_cut_mid_transfer_resumes_at_the_next_block() {
    let pkg = image(20 * 1024);
    let (mut h, handle, _installed) = setup(41, UpdateOutcome::Pending, &pkg);
    handle.set_expected_sha256(Some(Sha256::digest(&pkg).into()));
    write_uri(&mut h, "coap://files.example/fw.bin");
    let probe = handle.clone();
    h.run_until(Duration::from_secs(60), |_, _| {
        probe.with(|f| f.resume_offset()).unwrap_or(0) >= 8 * 1024
    });
    let stored = handle.with(|f| f.resume_offset()).unwrap();
    assert_eq!(stored % 1024, 0, "whole blocks are stored as they arrive");
    // The network goes down for 100 s: the block request in flight gives up
    // (about 93 s), the retry 2 s later goes out once the link is back.
    let cut = h.net.trace().len();
    h.net.set_link(lwm2m_core::sim::LinkConfig::lossy(100));
    h.run_for(Duration::from_secs(100));
    h.net.set_link(lwm2m_core::sim::LinkConfig::default());
    h.run_for(Duration::from_secs(120));
    assert_eq!(read_text(&mut h, "/5/0/3"), "2");
    assert_eq!(read_text(&mut h, "/5/0/5"), "0");
    let image = handle.with(|f| f.storage().image().map(<[u8]>::to_vec));
    assert_eq!(image, Some(pkg));
    let nums = block2_requests(&h, cut);
    let next = (stored / 1024) as u32;
    assert_eq!(nums.first(), Some(&next), "{nums:?}");
    assert!(
        nums.iter().all(|&n| n >= next),
        "never back to block 0: {nums:?}"
    );
    assert_eq!(nums.last(), Some(&19));
}

#[test]
fn coap_resume_falls_back_to_block_0_when_the_server_lost_the_body() {
    let pkg = image(10 * 1024);
    let (mut h, handle, _installed) = setup(42, UpdateOutcome::Pending, &pkg);
    handle.set_expected_sha256(Some(Sha256::digest(&pkg).into()));
    write_uri(&mut h, "coap://files.example/fw.bin");
    let probe = handle.clone();
    h.run_until(Duration::from_secs(60), |_, _| {
        probe.with(|f| f.resume_offset()).unwrap_or(0) >= 4 * 1024
    });
    let stored = handle.with(|f| f.resume_offset()).unwrap();
    // Down longer than the file server keeps the body for Block2 (247 s):
    // the resumed request for block N gets 4.08, the object starts over.
    let cut = h.net.trace().len();
    h.net.set_link(lwm2m_core::sim::LinkConfig::lossy(100));
    h.run_for(Duration::from_secs(260));
    h.net.set_link(lwm2m_core::sim::LinkConfig::default());
    h.run_for(Duration::from_secs(200));
    assert_eq!(read_text(&mut h, "/5/0/3"), "2");
    let image = handle.with(|f| f.storage().image().map(<[u8]>::to_vec));
    assert_eq!(image, Some(pkg));
    let nums = block2_requests(&h, cut);
    let next = (stored / 1024) as u32;
    let restart = nums
        .iter()
        .position(|&n| n == 0)
        .expect("a restart at block 0");
    assert!(nums[..restart].iter().all(|&n| n == next), "{nums:?}");
    assert_eq!(nums.last(), Some(&9));
}
