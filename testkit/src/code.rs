//! Which code a benchmark run measured, so a result file can keep every
//! run of the same code and drop runs of older code. The identity is the
//! git commit, with a digest of the uncommitted changes when there are
//! any; changes under bench/results/ do not count, since every run writes
//! there.

use std::path::Path;
use std::process::Command;

/// Pathspecs of the whole tree except the result files.
const PATHS: [&str; 3] = ["--", ":(top)", ":(top,exclude)bench/results"];

/// The code checked out around `dir`: `<commit>` for a clean tree,
/// `<commit>+dirty.<digest of the diff>` otherwise; None without git.
pub fn here(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "HEAD"])?;
    let diff = git(dir, &[&["diff", "HEAD", "--binary"][..], &PATHS[..]].concat())?;
    Some(identity(commit.trim(), &diff))
}

/// Pure part of [`here`]: two trees with the same commit and the same
/// uncommitted diff are the same code.
pub fn identity(commit: &str, diff: &str) -> String {
    if diff.is_empty() { commit.to_owned() } else { format!("{commit}+dirty.{:016x}", fnv1a(diff.as_bytes())) }
}

/// A digest that stays the same across builds and toolchains (the std
/// hasher does not promise that).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_tree_is_its_commit_and_a_dirty_one_carries_its_diff() {
        assert_eq!(identity("abc", ""), "abc");
        let a = identity("abc", "diff a");
        assert!(a.starts_with("abc+dirty."), "{a}");
        assert_eq!(a, identity("abc", "diff a"), "same diff, same code");
        assert_ne!(a, identity("abc", "diff b"), "another diff is other code");
    }
}
