//! Firmware object (5) state across reboots (state store), update deferral
//! through the decision hook, and Cancel, driven through the `Object`
//! interface the engine uses.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use lwm2m_client::objects::{Firmware, FirmwareHandle, UpdateDecision, UpdateOutcome};
use lwm2m_client::Object;
use lwm2m_core::model::{ResourceValue, Value};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_objects::firmware::{
    FirmwareConfig, FirmwareSnapshot, FirmwareStateStore, Severity, State, StateStoreError,
    UpdateFailure, UpdateResult, VecStorage,
};

/// A store in memory, shared between the object before and after a
/// "reboot".
#[derive(Clone, Default)]
struct MemStore {
    saved: Rc<RefCell<Option<FirmwareSnapshot>>>,
    saves: Rc<Cell<usize>>,
    fail_load: bool,
}

impl FirmwareStateStore for MemStore {
    fn load(&mut self) -> Result<Option<FirmwareSnapshot>, StateStoreError> {
        if self.fail_load {
            return Err(StateStoreError::Io {
                message: "flash read error".into(),
            });
        }
        Ok(self.saved.borrow().clone())
    }

    fn save(&mut self, snapshot: &FirmwareSnapshot) -> Result<(), StateStoreError> {
        self.saves.set(self.saves.get() + 1);
        *self.saved.borrow_mut() = Some(snapshot.clone());
        Ok(())
    }
}

impl MemStore {
    fn state(&self) -> (State, UpdateResult) {
        let s = self.saved.borrow();
        let s = s.as_ref().expect("a saved state");
        (s.state, s.result)
    }
}

fn config(max_defer_period: u32) -> FirmwareConfig {
    FirmwareConfig {
        max_defer_period,
        ..FirmwareConfig::default()
    }
}

fn boot(
    store: &MemStore,
    storage: VecStorage,
    outcome: UpdateOutcome,
    on_boot: UpdateOutcome,
) -> (Firmware<VecStorage>, FirmwareHandle<VecStorage>) {
    let fw = Firmware::with_state_store(
        config(0),
        storage,
        store.clone(),
        move |_: &mut VecStorage| outcome,
        move |_: &mut VecStorage| on_boot,
    );
    let handle = fw.handle();
    (fw, handle)
}

fn int(obj: &dyn Object, resource: u16) -> i64 {
    match obj.read(0, resource) {
        Ok(ResourceValue::Single(Value::Integer(i))) => i,
        other => panic!("/5/0/{resource}: {other:?}"),
    }
}

fn push(obj: &mut dyn Object, bytes: &[u8]) {
    obj.write(0, 0, ResourceValue::Single(Value::Opaque(bytes.to_vec())))
        .unwrap();
}

fn storage_of(handle: &FirmwareHandle<VecStorage>) -> VecStorage {
    handle.with(|f| f.storage().clone())
}

/// First boot with `store`: push an image, execute Update, the hook says
/// pending (the device reboots into it). Returns the storage that survives.
fn update_then_reboot(store: &MemStore) -> VecStorage {
    let (mut fw, handle) = boot(
        store,
        VecStorage::new(1024),
        UpdateOutcome::Pending,
        UpdateOutcome::Pending,
    );
    push(&mut fw, b"image");
    fw.execute(0, 2, "").unwrap();
    assert_eq!(int(&fw, 3), 3);
    assert_eq!(store.state(), (State::Updating, UpdateResult::Initial));
    storage_of(&handle)
}

#[test]
fn first_boot_starts_idle_and_saves_each_change() {
    let store = MemStore::default();
    let (mut fw, _) = boot(
        &store,
        VecStorage::new(1024),
        UpdateOutcome::Pending,
        UpdateOutcome::Pending,
    );
    assert_eq!((int(&fw, 3), int(&fw, 5)), (0, 0));
    push(&mut fw, b"image");
    assert_eq!(store.state(), (State::Downloaded, UpdateResult::Initial));
    fw.execute(0, 2, "").unwrap();
    assert_eq!(store.state(), (State::Updating, UpdateResult::Initial));
    let saves = store.saves.get();
    // Reads and unchanged ticks save nothing.
    int(&fw, 3);
    fw.tick(Instant::from_millis(5));
    assert_eq!(store.saves.get(), saves);
}

#[test]
fn reboot_into_the_new_firmware_reports_result_1() {
    let store = MemStore::default();
    let storage = update_then_reboot(&store);
    // The device restarts into the new image; the boot check says it runs.
    let (mut fw, _) = boot(
        &store,
        storage,
        UpdateOutcome::Pending,
        UpdateOutcome::Succeeded,
    );
    assert_eq!((int(&fw, 3), int(&fw, 5)), (0, 1));
    assert_eq!(store.state(), (State::Idle, UpdateResult::Success));
    // The observers learn it.
    let changed = fw.take_changed();
    assert!(
        changed.contains(&lwm2m_core::model::Path::Resource(5, 0, 5)),
        "{changed:?}"
    );
}

#[test]
fn reboot_into_the_old_firmware_reports_result_8() {
    let store = MemStore::default();
    let storage = update_then_reboot(&store);
    let (fw, handle) = boot(
        &store,
        storage,
        UpdateOutcome::Pending,
        UpdateOutcome::Failed(UpdateFailure::KeepImage),
    );
    assert_eq!((int(&fw, 3), int(&fw, 5)), (2, 8));
    assert_eq!(
        store.state(),
        (State::Downloaded, UpdateResult::UpdateFailed)
    );
    assert_eq!(storage_of(&handle).image(), Some(&b"image"[..]));
    // Discarding the image instead: Idle, 8.
    let (_, handle2) = boot(
        &MemStore {
            saved: Rc::new(RefCell::new(Some(FirmwareSnapshot {
                state: State::Updating,
                ..handle.with(|f| f.snapshot())
            }))),
            ..MemStore::default()
        },
        storage_of(&handle),
        UpdateOutcome::Pending,
        UpdateOutcome::Failed(UpdateFailure::DiscardImage),
    );
    assert_eq!(
        handle2.with(|f| (f.state(), f.result())),
        (State::Idle, UpdateResult::UpdateFailed)
    );
}

#[test]
fn still_updating_after_a_reboot_waits_for_the_report() {
    let store = MemStore::default();
    let storage = update_then_reboot(&store);
    let (mut fw, handle) = boot(
        &store,
        storage,
        UpdateOutcome::Pending,
        UpdateOutcome::Pending,
    );
    assert_eq!(int(&fw, 3), 3);
    handle.update_succeeded(Instant::from_millis(10)).unwrap();
    fw.take_changed();
    assert_eq!(store.state(), (State::Idle, UpdateResult::Success));
}

#[test]
fn a_store_that_cannot_load_starts_fresh_and_says_why() {
    let store = MemStore {
        fail_load: true,
        ..MemStore::default()
    };
    let (fw, handle) = boot(
        &store,
        VecStorage::new(1024),
        UpdateOutcome::Pending,
        UpdateOutcome::Pending,
    );
    assert_eq!((int(&fw, 3), int(&fw, 5)), (0, 0));
    let e = handle.store_error().expect("load error kept");
    assert!(e.to_string().contains("flash read error"), "{e}");
}

/// What the decision hook was asked: (severity, may_defer).
type Asked = Rc<RefCell<Vec<(Severity, bool)>>>;

/// An object with Maximum Defer Period 60 s whose decision hook answers
/// `decision` and records what it was asked; the counter counts installs.
fn deferring(
    decision: UpdateDecision,
) -> (
    Firmware<VecStorage>,
    FirmwareHandle<VecStorage>,
    Asked,
    Rc<Cell<usize>>,
) {
    let asked: Asked = Rc::default();
    let installs: Rc<Cell<usize>> = Rc::default();
    let (a, i) = (asked.clone(), installs.clone());
    let fw = Firmware::with_config(
        config(60),
        VecStorage::new(1024),
        move |_: &mut VecStorage| {
            i.set(i.get() + 1);
            UpdateOutcome::Succeeded
        },
    )
    .on_update_requested(move |severity, may_defer| {
        a.borrow_mut().push((severity, may_defer));
        decision
    });
    let handle = fw.handle();
    (fw, handle, asked, installs)
}

#[test]
fn the_decision_hook_defers_with_result_11_until_the_period_ends() {
    let (mut fw, _handle, asked, installs) = deferring(UpdateDecision::Defer);
    push(&mut fw, b"image");
    fw.execute(0, 2, "").unwrap();
    assert_eq!((int(&fw, 3), int(&fw, 5)), (2, 11));
    assert_eq!(installs.get(), 0);
    assert_eq!(
        fw.poll_timeout(),
        Some(Instant::ZERO + Duration::from_secs(60))
    );
    // Update again within the period: asked again, deferred again.
    fw.tick(Instant::from_millis(30_000));
    fw.execute(0, 2, "").unwrap();
    assert_eq!((int(&fw, 3), int(&fw, 5)), (2, 11));
    assert_eq!(
        *asked.borrow(),
        [(Severity::Mandatory, true), (Severity::Mandatory, true)]
    );
    // The period (counted from the first deferral) ends: the update runs.
    fw.tick(Instant::from_millis(60_000));
    assert_eq!((int(&fw, 3), int(&fw, 5)), (0, 1));
    assert_eq!(installs.get(), 1);
}

#[test]
fn defer_is_not_honoured_when_the_period_is_0() {
    let (mut fw, _handle, asked, installs) = deferring(UpdateDecision::Defer);
    fw.write(0, 13, ResourceValue::Single(Value::UnsignedInteger(0)))
        .unwrap();
    push(&mut fw, b"image");
    fw.execute(0, 2, "").unwrap();
    assert_eq!(*asked.borrow(), [(Severity::Mandatory, false)]);
    assert_eq!((int(&fw, 3), int(&fw, 5)), (0, 1));
    assert_eq!(installs.get(), 1);
}

#[test]
fn install_decision_updates_at_once() {
    let (mut fw, _handle, asked, installs) = deferring(UpdateDecision::Install);
    push(&mut fw, b"image");
    fw.execute(0, 2, "").unwrap();
    assert_eq!(asked.borrow().len(), 1);
    assert_eq!((int(&fw, 3), int(&fw, 5)), (0, 1));
    assert_eq!(installs.get(), 1);
}

#[test]
fn cancel_of_a_deferred_update_gives_result_10() {
    let (mut fw, handle, _asked, installs) = deferring(UpdateDecision::Defer);
    push(&mut fw, b"image");
    fw.execute(0, 2, "").unwrap();
    assert_eq!(int(&fw, 5), 11);
    fw.execute(0, 10, "").unwrap();
    assert_eq!((int(&fw, 3), int(&fw, 5)), (0, 10));
    assert_eq!(storage_of(&handle).image(), None);
    assert_eq!(fw.poll_timeout(), None, "no deferred update left to start");
    fw.tick(Instant::from_millis(120_000));
    assert_eq!(installs.get(), 0);
    // Cancel in Idle is refused.
    assert!(fw.execute(0, 10, "").is_err());
}

#[test]
fn cancel_of_a_downloaded_package_gives_result_10_and_is_saved() {
    let store = MemStore::default();
    let (mut fw, _) = boot(
        &store,
        VecStorage::new(1024),
        UpdateOutcome::Pending,
        UpdateOutcome::Pending,
    );
    push(&mut fw, b"image");
    fw.execute(0, 10, "").unwrap();
    assert_eq!(store.state(), (State::Idle, UpdateResult::Cancelled));
}
