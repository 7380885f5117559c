// SPDX-License-Identifier: MIT OR Apache-2.0
//! imgprep: prepare Windows disk images offline for diskless iSCSI boot.
