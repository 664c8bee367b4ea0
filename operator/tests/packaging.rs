//! The images, the chart and the binary agree on names and versions: the
//! chart's appVersion is the operator's version (the default image tag), the
//! chart's default gateway/consumer images are the operator's own defaults,
//! and the Dockerfile builds a non-root image for each binary. (The images
//! themselves cannot be built on a machine without a container engine.)

use std::path::PathBuf;

use clap::Parser;
use parley_operator::cli::{Cli, Command};

fn read(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn chart_app_version_is_the_operator_version() {
    let chart: serde_yaml::Value = serde_yaml::from_str(&read("charts/parley/Chart.yaml")).expect("Chart.yaml");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "bump charts/parley/Chart.yaml appVersion with the workspace version"
    );
}

#[test]
fn chart_workload_images_default_to_the_operators_defaults() {
    let Command::Run(args) = Cli::try_parse_from(["parley-operator", "run"]).expect("parse").command else {
        panic!("not run");
    };
    let template = read("charts/parley/templates/deployment.yaml");
    for image in [&args.gateway_image, &args.consumer_image] {
        let (repo, tag) = image.rsplit_once(':').expect("image:tag");
        assert_eq!(tag, env!("CARGO_PKG_VERSION"));
        assert!(template.contains(&format!("\"{repo}:%s\"")), "chart default for {repo} differs from the operator's");
    }
    let values = read("charts/parley/values.yaml");
    assert!(values.contains("repository: ghcr.io/parley-chat/parley-operator"));
}

#[test]
fn dockerfile_builds_a_non_root_image_per_binary() {
    let dockerfile = read("Dockerfile");
    for bin in ["parley-operator", "parley-gateway", "parley-consumer"] {
        assert!(dockerfile.contains(&format!("FROM runtime AS {bin}\n")), "no {bin} target");
        assert!(
            dockerfile.contains(&format!("COPY --from=binaries /out/{bin} /usr/local/bin/{bin}")),
            "{bin} not copied"
        );
        assert!(dockerfile.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")));
    }
    assert!(dockerfile.contains("USER 65532:65532"), "runtime must not be root");
    // The chart's pod security context runs as that same user.
    assert!(read("charts/parley/templates/deployment.yaml").contains("runAsUser: 65532"));
}
