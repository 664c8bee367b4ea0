//! The report's three outputs pinned byte for byte. Each directory under
//! tests/fixtures/report/ is a results directory: the scenario files as
//! input and the README.md, report.json and plot that `report` wrote from
//! them as the expected output (`full`: the committed bench/results with
//! operator.json cut down; `sparse`: old-format rate runs below the goal's
//! rate, an idle error, an operator run that gave up; `empty`: nothing run).
//! After an intended change to the report, rewrite them with
//! `cargo run -p parley-bench -- report --dir bench/tests/fixtures/report/<name>`.
//! The committed bench/results/ is held to the same: its report must be
//! what its result files render to.

use std::path::{Path, PathBuf};

use parley_bench::report::{
    self, GROUPS, IDLE, KAFKA_BASELINE, OPERATOR, PLOT, RATE_KAFKA, RATE_STANDALONE, STORAGE, STORM,
};

const INPUTS: [&str; 8] = [IDLE, RATE_STANDALONE, RATE_KAFKA, STORAGE, STORM, GROUPS, KAFKA_BASELINE, OPERATOR];
const OUTPUTS: [&str; 3] = ["README.md", "report.json", PLOT];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report").join(name)
}

/// Render the fixture's inputs in a scratch directory (so the fixture is
/// never rewritten by the test) and compare every output with the fixture's.
fn renders_as_pinned(name: &str) {
    let rewrite = format!("`cargo run -p parley-bench -- report --dir bench/tests/fixtures/report/{name}`");
    renders_as_committed(name, &fixture(name), &rewrite);
}

/// `from`'s inputs rendered in a scratch directory against `from`'s outputs;
/// a difference names the output and the command that rewrites it.
fn renders_as_committed(name: &str, from: &Path, rewrite: &str) {
    let dir = std::env::temp_dir().join(format!("parley-report-golden-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for input in INPUTS {
        if from.join(input).exists() {
            std::fs::copy(from.join(input), dir.join(input)).unwrap();
        }
    }
    report::write(&dir).unwrap();
    for output in OUTPUTS {
        let want = std::fs::read_to_string(from.join(output)).unwrap();
        let got = std::fs::read_to_string(dir.join(output)).unwrap();
        if got != want {
            let first = got.lines().zip(want.lines()).position(|(g, w)| g != w);
            let shown = if output == "README.md" { got.as_str() } else { "(see the file kept)" };
            panic!(
                "{name}/{output} is not what its result files render to (first differing line {first:?}); \
                 rewrite it with {rewrite}; got:\n{shown}\n(kept in {})",
                dir.display()
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Drift between the committed report and the committed result files, as
/// the CRD and reference-page tests do for theirs: a result file changed
/// without `scripts/bench.sh report`, or a report change without its rerun.
#[test]
fn committed_report_is_what_the_committed_results_render_to() {
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    renders_as_committed(
        "committed",
        &results,
        "`scripts/bench.sh report` (or `cargo run -p parley-bench -- report` from the repository root)",
    );
}

#[test]
fn full_results_render_as_pinned() {
    renders_as_pinned("full");
}

#[test]
fn sparse_results_render_as_pinned() {
    renders_as_pinned("sparse");
}

#[test]
fn no_results_render_as_pinned() {
    renders_as_pinned("empty");
}
