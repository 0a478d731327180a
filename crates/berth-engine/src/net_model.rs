//! A container's network model: what it asks of a network
//! (`EndpointConfig`), what it holds on one while it runs (`Endpoint`),
//! its published ports (`PortBinding`) and a network as it joins one
//! (`NetInfo`). A leaf: plain data, so the
//! container model embeds it without depending on network.rs.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// One host side of a published port, as Docker writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A container's place on a network while it runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    /// The network's name and id.
    pub network: String,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// eth0, eth1, ... inside; the veth's host end outside.
    pub interface: String,
    pub host_if: String,
    pub ip_address: String,
    pub ip_prefix_len: u8,
    pub gateway: String,
    pub mac_address: String,
    pub aliases: Vec<String>,
    /// The network has the embedded resolver (user networks).
    pub dns: bool,
    pub internal: bool,
}

/// What a container asks of one network (Docker's EndpointSettings).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(
        rename = "IPv4Address",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_address: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// A network as a container joins it.
#[derive(Debug, Clone)]
pub(crate) struct NetInfo {
    pub id: String,
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub internal: bool,
    /// Has the embedded resolver (user networks, as Docker's).
    pub dns: bool,
}
