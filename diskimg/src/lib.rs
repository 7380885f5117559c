// SPDX-License-Identifier: MIT OR Apache-2.0
//! Raw disk images: partition tables, NTFS file lookup and extents, volume safety checks,
//! copy ranges, a patch journal and streaming copies.
#![deny(missing_docs)]

pub mod error;
pub mod io;

pub use error::{Error, Result};
pub use io::ReadAt;
pub mod copy;
pub mod disk;
pub mod journal;
pub mod ntfs;
pub mod partition;
pub mod patch;
pub mod range;
