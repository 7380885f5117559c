// SPDX-License-Identifier: MIT OR Apache-2.0
//! imgprep: prepare Windows disk images offline for diskless iSCSI boot.
//!
//! The library behind the `imgprep` command, for provisioning systems and imaging pipelines.
//!
//! # Getting started
//!
//! 1. Open the image: [`image::WindowsImage::open`] finds the partition holding
//!    `Windows\System32\config\SYSTEM`.
//! 2. Read the hive: [`image::WindowsImage::hive`] gives its bytes, its extents on the disk and
//!    its transaction logs.
//! 3. Inspect: [`prepare::safety`] (hibernation, Fast Startup, dirty volume or hive, file
//!    layout) and [`windows::read_system`] (control sets, NICs, filters, services).
//! 4. Plan and prepare: [`prepare::prepare`] plans the registry edits ([`plan::plan`]), performs
//!    them on an in-memory copy of the hive without growing it, and maps the changed bytes to
//!    disk patches. It returns a [`error::Refused`] error when the image is not safe to edit.
//! 5. Apply in place through the undo journal ([`prepare::apply_in_place`]) or stream a
//!    prepared copy ([`export::build_job`] + [`export::run`]).
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("hda.img");
//! # let gz = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sample/win7-mbr.img.gz"))?;
//! # std::io::copy(&mut flate2::read::GzDecoder::new(gz), &mut std::fs::File::create(&path)?)?;
//! use imgprep::image::{OpenOptions, WindowsImage};
//! use imgprep::prepare::{self, ApplyInPlace, PrepareOptions};
//!
//! let img = WindowsImage::open(&path, OpenOptions::default())?;
//! let hive = img.hive("SYSTEM")?;
//! assert!(prepare::safety(&img, &hive, false).is_safe());
//!
//! let prepared = prepare::prepare(&img, hive, &PrepareOptions::default())?;
//! for change in &prepared.plan.changes {
//!     println!("{}: {} -> {}", change.path, change.old, change.new);
//! }
//! assert!(prepared.plan.blockers.is_empty());
//! drop(img);
//!
//! // Write only the changed bytes, through the undo journal, verified by reading back.
//! let report = prepare::apply_in_place(
//!     &path,
//!     "SYSTEM",
//!     &prepared.edit,
//!     &ApplyInPlace::default(),
//!     OpenOptions::default(),
//! )?;
//! assert_eq!(report.bytes_written, prepared.edit.bytes_changed());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod error;
pub mod export;
pub mod image;
pub mod plan;
pub mod prepare;
pub mod windows;
