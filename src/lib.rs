// SPDX-License-Identifier: MIT OR Apache-2.0
//! imgprep: prepare Windows disk images offline for diskless iSCSI boot.
#![deny(missing_docs)]

pub mod error;
pub mod export;
pub mod image;
pub mod plan;
pub mod prepare;
pub mod windows;
