//! The gateway: how the outside world reaches services (L7: HTTP and HTTPS routed by host and
//! path, from Marathon-LB's app labels) and how services reach each other (L4: virtual IPs).
//!
//! The leader builds one [`GatewayTable`] from the replicated state (pure: [`build`], from
//! [`endpoints`] and [`labels`]) and sends it to every agent; agents where the gateway is
//! turned on serve it ([`proxy`]) and keep their virtual IP rules in step with it ([`vip`]),
//! and keep serving the last table they have while no server is reachable.

pub mod build;
pub mod certs;
#[cfg(feature = "control")]
pub mod control;
pub mod endpoints;
pub mod labels;
pub mod proxy;
pub mod table;
pub mod vip;

pub use table::{Backend, Balance, Certificate, GatewayTable, HttpRoute, Problem, Vip, VipBackend};
