//! Running the real `kubectl` the environment built, as a user would.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Outcome of one kubectl call.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new("kubectl");
    cmd.env("KUBECONFIG", crate::env::kubeconfig()).args(args);
    cmd
}

/// `kubectl ARGS...`.
pub fn run(args: &[&str]) -> Run {
    command(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start kubectl (is the environment's bin dir on PATH?): {e}"))
        .into()
}

/// `kubectl ARGS...` with `stdin` piped in (for `apply -f -`).
pub fn run_with_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start kubectl: {e}"));
    child.stdin.take().expect("stdin is piped").write_all(stdin.as_bytes()).expect("write kubectl stdin");
    child.wait_with_output().expect("wait for kubectl").into()
}

/// Like [`run`], panicking with kubectl's output when it fails.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.success, "kubectl {args:?} failed:\n{}{}", out.stdout, out.stderr);
    out.stdout
}

/// Like [`run_with_stdin`], panicking with kubectl's output when it fails.
pub fn ok_with_stdin(args: &[&str], stdin: &str) -> String {
    let out = run_with_stdin(args, stdin);
    assert!(out.success, "kubectl {args:?} failed:\n{}{}", out.stdout, out.stderr);
    out.stdout
}

/// Split kubectl's table output into `(header, cells)` per column, cutting
/// each row at the header's offsets (cells can be empty).
pub fn table(output: &str) -> Vec<(String, Vec<String>)> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    // A column starts after two or more spaces (kubectl pads columns by
    // three), so a header of two words (`STORAGE DESIRED`) is one column.
    let bytes = header.as_bytes();
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || (i >= 2 && bytes[i - 1] == b' ' && bytes[i - 2] == b' ')))
        .map(|(i, _)| i)
        .collect();
    let rows: Vec<&str> = lines.collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, &start)| {
            let end = starts.get(n + 1).copied();
            let slice = |line: &str| {
                let end = end.unwrap_or(line.len()).min(line.len());
                line.get(start.min(end)..end).unwrap_or_default().trim().to_owned()
            };
            (slice(header), rows.iter().map(|r| slice(r)).collect())
        })
        .collect()
}
