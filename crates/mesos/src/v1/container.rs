//! Containers: images, volumes, networks, and the container status reported back.

use serde::{Deserialize, Serialize};

use super::{ContainerId, Labels, Parameter, Parameters, Secret};

open_enum! {
    pub enum ContainerType {
        Docker = "DOCKER",
        Mesos = "MESOS",
    }
}

/// How to containerize a task or executor. tepui runs `MESOS` containers with an OCI image
/// (`mesos.image.docker.name`); `DOCKER` is accepted for compatibility.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    #[serde(rename = "type")]
    pub kind: ContainerType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos: Option<MesosInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<NetworkInfo>,
    /// Opaque: capabilities, seccomp, IPC and shm options (`LinuxInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_info: Option<serde_json::Value>,
    /// Opaque: POSIX rlimits (`RLimitInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlimit_info: Option<serde_json::Value>,
    /// Opaque: TTY settings (`TTYInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty_info: Option<serde_json::Value>,
}

impl ContainerInfo {
    /// A `MESOS` container running the given Docker/OCI image reference.
    pub fn mesos_docker_image(name: impl Into<String>) -> Self {
        ContainerInfo {
            kind: ContainerType::Mesos,
            volumes: Vec::new(),
            hostname: None,
            docker: None,
            mesos: Some(MesosInfo {
                image: Some(Image::docker(name)),
            }),
            network_infos: Vec::new(),
            linux_info: None,
            rlimit_info: None,
            tty_info: None,
        }
    }

    /// The image reference, whichever container type names it.
    pub fn image_name(&self) -> Option<&str> {
        if let Some(img) = self.mesos.as_ref().and_then(|m| m.image.as_ref()) {
            if let Some(d) = &img.docker {
                return Some(&d.name);
            }
            if let Some(a) = &img.appc {
                return Some(&a.name);
            }
        }
        self.docker.as_ref().map(|d| d.image.as_str())
    }
}

open_enum! {
    pub enum DockerNetwork {
        Host = "HOST",
        Bridge = "BRIDGE",
        None = "NONE",
        User = "USER",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerInfo {
    pub image: String,
    /// Mesos' default: HOST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<DockerNetwork>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_pull_image: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_driver: Option<String>,
}

/// Host-to-container port mapping (Docker and CNI networks share this shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u32,
    pub container_port: u32,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MesosInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
}

open_enum! {
    pub enum ImageType {
        Appc = "APPC",
        Docker = "DOCKER",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "type")]
    pub kind: ImageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appc: Option<AppcImage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerImage>,
    /// Mesos' default: true (use a cached copy if present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
}

impl Image {
    pub fn docker(name: impl Into<String>) -> Self {
        Image {
            kind: ImageType::Docker,
            appc: None,
            docker: Some(DockerImage {
                name: name.into(),
                credential: None,
                config: None,
            }),
            cached: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppcImage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerImage {
    /// `[REGISTRY[:PORT]/]REPOSITORY[:TAG|@DIGEST]`.
    pub name: String,
    /// Deprecated since Mesos 1.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// A Docker config JSON with registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Secret>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

open_enum! {
    pub enum VolumeMode {
        Rw = "RW",
        Ro = "RO",
    }
}

/// A mount inside the container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub mode: VolumeMode,
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<VolumeSource>,
}

open_enum! {
    pub enum VolumeSourceType {
        DockerVolume = "DOCKER_VOLUME",
        HostPath = "HOST_PATH",
        SandboxPath = "SANDBOX_PATH",
        Secret = "SECRET",
        CsiVolume = "CSI_VOLUME",
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeSource {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<VolumeSourceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_volume: Option<DockerVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_path: Option<SandboxPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Opaque: CSI volume parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_volume: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerVolume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_options: Option<Parameters>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPathSource {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_propagation: Option<MountPropagation>,
}

open_enum! {
    pub enum MountPropagationMode {
        HostToContainer = "HOST_TO_CONTAINER",
        Bidirectional = "BIDIRECTIONAL",
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPropagation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<MountPropagationMode>,
}

open_enum! {
    pub enum SandboxPathType {
        SelfContainer = "SELF",
        Parent = "PARENT",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPath {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SandboxPathType>,
    pub path: String,
}

open_enum! {
    /// `NetworkInfo.Protocol`; note the mixed-case names.
    pub enum NetworkProtocol {
        IPv4 = "IPv4",
        IPv6 = "IPv6",
    }
}

/// A network a container joins (request) or the addresses it got (in `ContainerStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<NetworkProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// What the agent learned while setting the container up (addresses, cgroups, pid).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<NetworkInfo>,
    /// Opaque: cgroup details (`CgroupInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_pid: Option<u32>,
}
