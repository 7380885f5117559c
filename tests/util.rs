// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// Root of the repository.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Decompresses `fixtures/sample/NAME.img.gz` into `dir/NAME.img` and returns the path.
/// Committed files are never touched.
pub fn sample(dir: &Path, name: &str) -> PathBuf {
    let gz = repo()
        .join("fixtures/sample")
        .join(format!("{name}.img.gz"));
    let f = std::fs::File::open(&gz).unwrap_or_else(|e| panic!("{}: {e}", gz.display()));
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut data)
        .expect("gunzip sample");
    let out = dir.join(format!("{name}.img"));
    std::fs::write(&out, data).expect("write sample");
    out
}

/// Runs the imgprep binary.
pub fn imgprep<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_imgprep"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run imgprep")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status (panics on a signal).
pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exit status")
}

/// Asserts the exit status, showing the output when it differs.
#[track_caller]
pub fn assert_code(o: &Output, want: i32) {
    assert_eq!(
        code(o),
        want,
        "exit status\n--- stdout\n{}\n--- stderr\n{}",
        stdout(o),
        stderr(o)
    );
}

/// SHA-256 of a file, hex.
pub fn sha256(path: &Path) -> String {
    let data = std::fs::read(path).expect("read for hash");
    Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the opt-in interop suite runs (IMGPREP_INTEROP=1).
pub fn interop() -> bool {
    std::env::var_os("IMGPREP_INTEROP").is_some_and(|v| v == "1")
}

/// The hive corpus folder, if the opt-in corpus suite runs.
pub fn corpus() -> Option<PathBuf> {
    std::env::var_os("IMGPREP_HIVE_CORPUS").map(PathBuf::from)
}

/// A temp dir.
pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}
