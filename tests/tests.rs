// SPDX-License-Identifier: MIT OR Apache-2.0
//! imgprep's integration tests: one binary, modules per topic (see tests/util.rs for helpers).
//! tier1 runs everywhere; interop and corpus are opt-in (IMGPREP_INTEROP, IMGPREP_HIVE_CORPUS).

mod corpus;
mod e2e_util;
mod interop;
mod tier1;
mod util;
