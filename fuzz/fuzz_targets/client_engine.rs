//! The LwM2M client engine fed by a server endpoint sending requests built
//! from the input (method, path, options, payload), raw datagrams, time
//! passing and value changes. Nothing may panic.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use lwm2m_client::objects::{
    rights, AccessControl, AclInstance, Device, DeviceInfo, Security, SecurityInstance, Server,
    ServerConfig,
};
use lwm2m_client::{Client, ClientConfig, DmError, Object};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::model::{ObjectModel, Path, Resource, ResourceValue, Value};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::{Duration, Instant};

const CLIENT: u8 = 0;
const SERVER: u8 = 1;

/// A multi-instance object storing whatever is written, with the model of
/// Connectivity Statistics (7) made multi-instance: typed resources of
/// several kinds for the decoders, Create and Delete for the engine.
struct Bag {
    model: ObjectModel,
    instances: BTreeMap<u16, BTreeMap<u16, ResourceValue>>,
}

impl Object for Bag {
    fn model(&self) -> &ObjectModel {
        &self.model
    }
    fn instances(&self) -> Vec<u16> {
        self.instances.keys().copied().collect()
    }
    fn read(&self, i: u16, r: u16) -> Result<ResourceValue, DmError> {
        self.instances
            .get(&i)
            .and_then(|m| m.get(&r))
            .cloned()
            .ok_or(DmError::NotFound)
    }
    fn write(&mut self, i: u16, r: u16, v: ResourceValue) -> Result<(), DmError> {
        self.instances
            .get_mut(&i)
            .ok_or(DmError::NotFound)?
            .insert(r, v);
        Ok(())
    }
    fn execute(&mut self, _i: u16, _r: u16, _args: &str) -> Result<(), DmError> {
        Ok(())
    }
    fn create(&mut self, i: u16, resources: Vec<Resource>) -> Result<(), DmError> {
        if self.instances.len() >= 8 {
            return Err(DmError::Internal);
        }
        self.instances
            .insert(i, resources.into_iter().map(|r| (r.id, r.value)).collect());
        Ok(())
    }
    fn delete(&mut self, i: u16) -> Result<(), DmError> {
        self.instances
            .remove(&i)
            .map(|_| ())
            .ok_or(DmError::NotFound)
    }
}

const IDS: [&str; 11] = ["0", "1", "3", "4", "7", "5", "13", "11", "65534", "x", "bs"];
const FORMATS: [u32; 9] = [0, 40, 42, 60, 110, 112, 11542, 11543, 9999];
const QUERIES: [&str; 8] = [
    "pmin=1", "pmax=3", "con=1", "gt=3", "pmin", "st=0.5", "lt=1", "ep=x",
];

fn request(spec: &[u8]) -> Request {
    let byte = |i: usize| spec.get(i).copied().unwrap_or(0);
    let code = [
        Code::GET,
        Code::POST,
        Code::PUT,
        Code::DELETE,
        Code::FETCH,
        Code::IPATCH,
    ][usize::from(byte(0) % 6)];
    let mut req = Request::new(code);
    for k in 0..usize::from(byte(1) % 5) {
        let seg = IDS[usize::from(byte(2 + k)) % IDS.len()];
        req.options.push(number::URI_PATH, seg.as_bytes().to_vec());
    }
    let flags = byte(6);
    if flags & 1 != 0 {
        req.options.set_uint(
            number::CONTENT_FORMAT,
            FORMATS[usize::from(byte(7)) % FORMATS.len()],
        );
    }
    if flags & 2 != 0 {
        req.options.set_uint(
            number::ACCEPT,
            FORMATS[usize::from(byte(8)) % FORMATS.len()],
        );
    }
    if flags & 4 != 0 {
        req.options
            .set_uint(number::OBSERVE, u32::from(byte(9) & 1));
    }
    for k in 0..usize::from((flags >> 3) % 3) {
        let q = QUERIES[usize::from(byte(10 + k)) % QUERIES.len()];
        req.options.push(number::URI_QUERY, q.as_bytes().to_vec());
    }
    req.payload = spec.get(12..).unwrap_or_default().to_vec();
    req
}

fuzz_target!(|data: &[u8]| {
    let mut config = ClientConfig::new("fuzz");
    config.lifetime = 60;
    let mut client: Client<u8, SplitMix64> = Client::new(config, SERVER, SplitMix64::new(1));
    let server_config = ServerConfig {
        default_pmin: Some(1),
        default_pmax: Some(5),
        ..ServerConfig::new(60)
    };
    // An odd first byte: start with only a Bootstrap-Server account, so the
    // input drives a bootstrap session (Finish needs "/bs" from IDS).
    let bootstrap = data.first().is_some_and(|b| b & 1 == 1);
    if bootstrap {
        client.add_object(Box::new(Security::bootstrap("coap://bs")));
        client.add_object(Box::new(Server::empty()));
        client.set_resolver(|_| Some(SERVER));
    } else if data.first().is_some_and(|b| b & 2 == 2) {
        // Two LwM2M server accounts at the same peer (requests count as the
        // first one's) and an Access Control object: access control applies.
        let mut security = Security::empty();
        let mut servers = Server::empty();
        for ssid in [1u16, 2] {
            security.insert(ssid - 1, SecurityInstance::server("coap://s", ssid));
            servers.insert(
                ssid - 1,
                ServerConfig {
                    short_server_id: ssid,
                    registration_priority: Some(u32::from(ssid)),
                    ..server_config.clone()
                },
            );
        }
        client.add_object(Box::new(security));
        client.add_object(Box::new(servers));
        client.add_object(Box::new(
            AccessControl::new()
                .with(AclInstance::new(3, 0, 2).grant(0, rights::READ))
                .with(AclInstance::new(7, 0, 1))
                .with(AclInstance::new(7, 65_535, 2).grant(1, rights::CREATE))
                .with(AclInstance::new(1, 0, 1).grant(2, rights::READ | rights::WRITE)),
        ));
        client.set_resolver(|_| Some(SERVER));
    } else {
        client.add_object(Box::new(Server::new(server_config)));
    }
    client.add_object(Box::new(
        Device::new(DeviceInfo::default()).on_reboot(|| {}),
    ));
    let mut model = lwm2m_objects::connectivity_statistics::MODEL.to_model();
    model.multiple = true;
    client.add_object(Box::new(Bag {
        model,
        instances: BTreeMap::from([(
            0,
            BTreeMap::from([(0, ResourceValue::Single(Value::Integer(1)))]),
        )]),
    }));
    let mut server: Endpoint<u8, SplitMix64> =
        Endpoint::new(EndpointConfig::default(), SplitMix64::new(2));
    let mut now = Instant::ZERO;
    client.start(now);
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        match op % 6 {
            0 => client.handle_datagram(now, SERVER, chunk),
            1 | 2 => {
                let _ = server.send_request(now, CLIENT, request(chunk));
            }
            3 => {
                now = now
                    + Duration::from_millis(u64::from(chunk.first().copied().unwrap_or(0)) * 250);
                client.handle_timeout(now);
                server.handle_timeout(now);
            }
            4 => {
                let path = Path::Resource(7, 0, u16::from(chunk.first().copied().unwrap_or(0) % 4));
                client.changed(now, path);
            }
            _ => match chunk.first().copied().unwrap_or(0) % 3 {
                0 => {
                    client.deregister(now);
                }
                1 => client.objects_changed(now),
                _ => client.start(now),
            },
        }
        // Deliver everything both ways; the server answers the registration
        // interface so the client gets registered.
        for _ in 0..8 {
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                server.handle_datagram(now, CLIENT, &t.bytes);
                moved = true;
            }
            while let Some(e) = server.poll_event() {
                if let Event::Request { id, request, .. } = e {
                    let bs = request.path() == "/bs";
                    let mut resp = Response::new(match request.code {
                        Code::POST if bs => Code::CHANGED,
                        Code::POST => Code::CREATED,
                        _ => Code::DELETED,
                    });
                    resp.options.push(number::LOCATION_PATH, b"rd".to_vec());
                    resp.options.push(number::LOCATION_PATH, b"1".to_vec());
                    server.respond(now, id, resp);
                }
            }
            while let Some(t) = server.poll_transmit() {
                client.handle_datagram(now, SERVER, &t.bytes);
                moved = true;
            }
            while client.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    }
});
