//! The report's three outputs pinned byte for byte. Each directory under
//! tests/fixtures/report/ is a results directory: the scenario files as
//! input and the README.md, report.json and plot that `report` wrote from
//! them as the expected output (`full`: the committed bench/results with
//! operator.json cut down; `sparse`: old-format rate runs below the goal's
//! rate, an idle error, an operator run that gave up; `empty`: nothing run).
//! After an intended change to the report, rewrite them with
//! `cargo run -p parley-bench -- report --dir bench/tests/fixtures/report/<name>`.

use std::path::{Path, PathBuf};

use parley_bench::report::{self, IDLE, OPERATOR, PLOT, RATE_KAFKA, RATE_STANDALONE, STORAGE};

const INPUTS: [&str; 5] = [IDLE, RATE_STANDALONE, RATE_KAFKA, STORAGE, OPERATOR];
const OUTPUTS: [&str; 3] = ["README.md", "report.json", PLOT];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report").join(name)
}

/// Render the fixture's inputs in a scratch directory (so the fixture is
/// never rewritten by the test) and compare every output with the fixture's.
fn renders_as_pinned(name: &str) {
    let from = fixture(name);
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
            panic!(
                "{name}/{output} differs (first differing line {first:?}); got:\n{got}\n(kept in {})",
                dir.display()
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
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
