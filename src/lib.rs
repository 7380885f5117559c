// SPDX-License-Identifier: MIT OR Apache-2.0
//! imgprep: prepare Windows disk images offline for diskless iSCSI boot.
#![deny(missing_docs)]

pub mod plan;
pub mod windows;
