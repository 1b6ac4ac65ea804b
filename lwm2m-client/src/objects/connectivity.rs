//! Connectivity Monitoring object (4), minimal: bearer, signal strength and
//! IP addresses supplied by the integrator (the demo takes the address of
//! the socket it talks to the server through).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use lwm2m_core::model::{ObjectModel, ResourceValue, Value};
use lwm2m_objects::connectivity_monitoring as cm;

use super::int;
use crate::object::{DmError, Object};

/// Network Bearer value for Ethernet (TS Core Appendix E.5, resource 0).
pub const BEARER_ETHERNET: i64 = 41;

/// The Connectivity Monitoring object with one read-only instance (0).
#[derive(Debug, Clone)]
pub struct ConnectivityMonitoring {
    model: ObjectModel,
    /// Network Bearer (resource 0).
    pub network_bearer: i64,
    /// Available Network Bearers (resource 1).
    pub available_bearers: Vec<i64>,
    /// Radio Signal Strength in dBm (resource 2; mandatory, 0 on wired links).
    pub radio_signal_strength: i64,
    /// IP Addresses (resource 4).
    pub ip_addresses: Vec<String>,
    /// Router IP Addresses (resource 5), listed only when not empty.
    pub router_ip_addresses: Vec<String>,
}

impl ConnectivityMonitoring {
    /// An Ethernet connection with these IP addresses.
    pub fn ethernet(ip_addresses: Vec<String>) -> ConnectivityMonitoring {
        ConnectivityMonitoring {
            model: cm::MODEL.to_model(),
            network_bearer: BEARER_ETHERNET,
            available_bearers: vec![BEARER_ETHERNET],
            radio_signal_strength: 0,
            ip_addresses,
            router_ip_addresses: Vec::new(),
        }
    }
}

fn multiple<T: Clone>(items: &[T], f: fn(T) -> Value) -> ResourceValue {
    let map: BTreeMap<u16, Value> = (0u16..).zip(items.iter().cloned().map(f)).collect();
    ResourceValue::Multiple(map)
}

impl Object for ConnectivityMonitoring {
    fn model(&self) -> &ObjectModel {
        &self.model
    }

    fn instances(&self) -> Vec<u16> {
        vec![0]
    }

    fn resources(&self, _instance: u16) -> Vec<u16> {
        let mut r = vec![
            cm::NETWORK_BEARER,
            cm::AVAILABLE_NETWORK_BEARER,
            cm::RADIO_SIGNAL_STRENGTH,
            cm::IP_ADDRESSES,
        ];
        if !self.router_ip_addresses.is_empty() {
            r.push(cm::ROUTER_IP_ADDRESSES);
        }
        r
    }

    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        if instance != 0 {
            return Err(DmError::NotFound);
        }
        Ok(match resource {
            cm::NETWORK_BEARER => int(self.network_bearer),
            cm::AVAILABLE_NETWORK_BEARER => multiple(&self.available_bearers, Value::Integer),
            cm::RADIO_SIGNAL_STRENGTH => int(self.radio_signal_strength),
            cm::IP_ADDRESSES => multiple(&self.ip_addresses, Value::String),
            cm::ROUTER_IP_ADDRESSES if !self.router_ip_addresses.is_empty() => {
                multiple(&self.router_ip_addresses, Value::String)
            }
            _ => return Err(DmError::NotFound),
        })
    }
}
