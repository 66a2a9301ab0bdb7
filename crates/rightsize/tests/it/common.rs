//! Running the real `rightsize` binary, as every test file here does.

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_rightsize");

/// `rightsize <args>` with `env` added to its environment: (exit 0, stdout, stderr).
pub fn rightsize_env(args: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("run rightsize");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rightsize <args>`: (exit 0, stdout, stderr).
pub fn rightsize(args: &[&str]) -> (bool, String, String) {
    rightsize_env(args, &[])
}

/// `rightsize <args>`: (exit 0, stdout then stderr).
pub fn rightsize_merged(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().expect("run rightsize");
    (out.status.success(), merged(&out))
}

/// A finished process's stdout then stderr.
pub fn merged(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
