//! A package catalog as DC/OS had it: Universe's repositories and packages, read as they are,
//! and Cosmos's API to search, describe, install, list, upgrade and uninstall them.
//!
//! The decisions are pure and tested without a cluster: `universe` reads package definitions
//! (a Universe tree on disk, or a repository index), `catalog` merges repositories as Cosmos
//! does and searches them, `schema` takes a package's options schema (defaults, and every
//! violation with the field's path), `mustache` renders Universe's templates as Cosmos does,
//! and `render` turns a package and options into the apps and jobs it deploys, with Cosmos's
//! labels. `fetch` reads repositories (the leader's disk, or HTTP); `api` serves Cosmos's
//! routes, records installs in the replicated state and deploys through `backend`: the
//! server's own `/v2/apps` and `/v1/jobs` routes, called as the caller, so a package can do
//! no more than its installer's token. This crate knows nothing of how apps and jobs are run.

pub mod api;
pub mod backend;
pub mod catalog;
pub mod fetch;
pub mod mustache;
pub mod render;
pub mod schema;
pub mod universe;

pub use backend::Backend;
