//! Running the real `parley-operator` binary as a child process, where a
//! cluster would run its pod.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub use parley_testkit::http::{http_get, try_http_get};
pub use parley_testkit::process::free_port;

/// The operator binary next to this test's binary (same target dir).
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("PARLEY_OPERATOR_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("own binary path");
    // Tests live in target/<profile>/deps/, binaries in target/<profile>/.
    let dir = exe.parent().expect("binary dir");
    let candidates = [dir.join("parley-operator"), dir.parent().expect("target dir").join("parley-operator")];
    let found = candidates.iter().find(|p| p.exists()).cloned();
    found.unwrap_or_else(|| {
        panic!("parley-operator not found next to {}: `cargo build -p parley-operator`", exe.display())
    })
}

/// Where the operator started with `identity` logs.
pub fn log_path(identity: &str) -> PathBuf {
    std::env::temp_dir().join(format!("parley-operator-{identity}.log"))
}

/// A running operator; killed when dropped.
pub struct Operator {
    pub child: Child,
    pub http_port: u16,
    pub identity: String,
}

impl Operator {
    /// Start `parley-operator run` watching `namespace`, with `extra` args.
    pub fn start(namespace: &str, identity: &str, extra: &[&str]) -> Self {
        let mut args = vec!["run", "--namespace", namespace, "--identity", identity];
        args.extend(["--kafka-timeout-seconds", "3", "--backoff-max-seconds", "5"]);
        args.extend(extra);
        let kubeconfig = crate::env::kubeconfig();
        Self::start_with(
            std::path::Path::new(&kubeconfig),
            &args,
            &[("PARLEY_LOG".into(), "info,parley_operator=debug".into())],
            identity,
        )
    }

    /// Start the binary with exactly `args` (plus `--http` on a free
    /// loopback port), `env` and `kubeconfig`; stderr goes to
    /// [`Operator::log_path`].
    pub fn start_with(kubeconfig: &std::path::Path, args: &[&str], env: &[(String, String)], identity: &str) -> Self {
        let http_port = free_port();
        let log = std::fs::File::create(log_path(identity)).expect("operator log file");
        let child = Command::new(binary())
            .args(args)
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start parley-operator");
        Self { child, http_port, identity: identity.to_owned() }
    }

    /// What the operator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.identity)).unwrap_or_default()
    }

    /// SIGTERM, then wait: a graceful stop that releases the Lease at once.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    pub fn metrics(&self) -> String {
        http_get(self.http_port, "/metrics")
    }

    /// SIGKILL: no graceful release of anything, like a crashed pod.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
