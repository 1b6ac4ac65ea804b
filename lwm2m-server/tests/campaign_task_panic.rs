//! A device update task that panics (here: the firmware store does) fails
//! that device and frees its slot, so the campaign ends instead of waiting
//! for the device for ever.

use std::sync::Arc;
use std::time::Duration;

use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_server::campaign::{CampaignManager, CampaignStatus, MemoryCampaignStore};
use lwm2m_server::firmware::{
    FirmwarePackage, FirmwareStore, FirmwareStoreError, MemoryFirmwareStore,
};
use lwm2m_server::fota::Phase;
use lwm2m_server::{MemoryStore, Server, ServerConfig};

#[path = "support/udp_client.rs"]
mod udp_client;
use udp_client::UdpClient;

/// A store whose package bytes cannot be read: `read_range` panics.
#[derive(Debug)]
struct PanickingStore(MemoryFirmwareStore);

impl FirmwareStore for PanickingStore {
    fn put(&self, package: &FirmwarePackage, bytes: &[u8]) -> Result<(), FirmwareStoreError> {
        self.0.put(package, bytes)
    }
    fn list(&self) -> Result<Vec<FirmwarePackage>, FirmwareStoreError> {
        self.0.list()
    }
    fn get(&self, id: &str) -> Result<Option<FirmwarePackage>, FirmwareStoreError> {
        self.0.get(id)
    }
    fn delete(&self, id: &str) -> Result<bool, FirmwareStoreError> {
        self.0.delete(id)
    }
    fn read_range(
        &self,
        _id: &str,
        _offset: u64,
        _len: usize,
    ) -> Result<Option<Vec<u8>>, FirmwareStoreError> {
        panic!("the test store cannot read packages");
    }
}

/// The device refuses every request of the server (so observing the
/// firmware object fails at once and the update goes on to its push).
fn not_found(_: &Request) -> Response {
    Response::new(Code::NOT_FOUND)
}

#[tokio::test]
async fn a_panicking_update_task_fails_its_device_and_the_campaign_ends() {
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        Box::new(MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .await
    .unwrap();
    let device = UdpClient::spawn(7, not_found).await;
    let register = Request::new(Code::POST)
        .with_path("/rd")
        .with_query("ep=panic-dev")
        .with_query("lt=60")
        .with_payload(40, b"</3/0>,</5/0>".to_vec());
    assert_eq!(
        device.send(server.local_addr(), register).await.code,
        Code::CREATED
    );

    let store = PanickingStore(MemoryFirmwareStore::new());
    let bytes = b"image".to_vec();
    store
        .put(
            &FirmwarePackage::describe("00112233aabbccdd", "fw", "2", &bytes, 0),
            &bytes,
        )
        .unwrap();
    let manager = CampaignManager::start(
        server.handle(),
        Arc::new(store),
        Default::default(),
        Box::new(MemoryCampaignStore::default()),
        Box::new(|_, _| {}),
    )
    .unwrap();
    let spec = serde_json::from_value(serde_json::json!({
        "name": "panics",
        "package": "00112233aabbccdd",
        "delivery": "push",
        "targets": ["panic-dev"],
        "failure_threshold": 0,
        "timeout": 30,
    }))
    .unwrap();
    let id = manager.create(spec).unwrap().info.id;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let campaign = loop {
        let c = manager.get(&id).unwrap();
        if c.info.status.is_final() {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the campaign did not end: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(campaign.info.status, CampaignStatus::Halted, "{campaign:?}");
    let d = &campaign.devices[0];
    assert_eq!(d.status, Phase::Failed, "{d:?}");
    let reason = d.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("the update task failed"), "{reason}");
    server.shutdown().await;
}
