// SPDX-License-Identifier: MIT OR Apache-2.0
//! Windows registry hives (REGF): read, validate, edit in place, replay transaction logs,
//! import and export `.reg` files.
#![deny(missing_docs)]

pub mod base;
pub mod error;
pub mod upcase;

pub use base::BaseBlock;
pub use error::{Error, Result};
pub mod hive;

pub use hive::{Data, Hive, Key, RawName, Storage, Value};
pub mod check;
pub mod edit;
pub mod export;
pub mod log;
pub mod marvin;
pub mod regfile;
