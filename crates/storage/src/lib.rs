//! Berth storage: one small [`StorageDriver`] trait that every backend implements (filesystem,
//! in-memory, and later S3), the registry:2 path layout in [`paths`], and a [`conformance`]
//! suite that every driver must pass.
//!
//! The trait is deliberately the shape of registry:2's driver interface so that its on-disk
//! layout maps one to one, and deliberately weak in what it promises so that an object store can
//! implement it: no atomic rename over an existing file, no listing order.

mod cached_read;
pub mod conformance;
mod driver;
mod error;
mod filesystem;
mod instrumented;
mod memory;
pub mod paths;
mod read_buffers;
pub mod s3;
mod upload_file;
mod write_pacing;

pub use driver::{
    walk_by_listing, ByteStream, FileInfo, FileWriter, LocalFile, StorageDriver, UploadFile,
    WalkEntry,
};
pub use error::StorageError;
pub use filesystem::FilesystemDriver;
pub use instrumented::Instrumented;
pub use memory::InMemoryDriver;
