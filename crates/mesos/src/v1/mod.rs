//! Common messages of the `mesos.v1` package, as JSON.
//!
//! Names follow Rust style (`FrameworkId` for Mesos' `FrameworkID`); field names on the wire
//! are exactly Mesos' own. Only the fields tepui can fill or use are typed; everything else in
//! a message is ignored on input.

mod container;
mod framework;
mod ids;
mod offer;
mod resources;
mod status;
mod task;
mod values;

pub use container::*;
pub use framework::*;
pub use ids::*;
pub use offer::*;
pub use resources::*;
pub use status::*;
pub use task::*;
pub use values::*;
