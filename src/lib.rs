//! phivault: an encrypted, versioned FUSE filesystem for shares that hold
//! protected health information. See DESIGN.md for the layering:
//! `fs` (FUSE adapter) and `cli` on top of `vault` (the engine), which uses
//! `catalog`, `store` and `crypto`.

pub mod audit;
pub mod catalog;
pub mod cli;
pub mod crypto;
pub mod fs;
pub mod replicate;
pub mod store;
pub mod vault;
