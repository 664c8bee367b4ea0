//! `run --install-crd`: server-side apply the ChatCluster CRD built into this
//! binary at start. Helm installs `crds/` once and never upgrades it, so
//! without this a `helm upgrade` would run a new operator against an old
//! schema.
//!
//! A replica never downgrades the CRD: an older operator (a stale replica
//! during a rollout, or a rollback) leaves a newer CRD alone, because the
//! older schema could prune fields the newer operator wrote.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use tracing::{info, warn};

use crate::context::MANAGER;
use crate::crd::ChatCluster;
use crate::{Error, Result};

/// Annotation recording which operator version applied the CRD.
pub const VERSION_ANNOTATION: &str = "parley.dev/operator-version";

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The cluster has a CRD from a newer operator (that version).
    KeptNewer(String),
}

/// The CRD this binary applies: the generated one, stamped with our version.
pub fn desired() -> CustomResourceDefinition {
    let mut crd = ChatCluster::crd();
    crd.annotations_mut().insert(VERSION_ANNOTATION.to_owned(), VERSION.to_owned());
    crd
}

/// `major.minor.patch` of a version string; pre-release and build suffixes
/// are ignored. `None` when it is not a version.
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Whether the installed CRD came from an operator newer than `ours`. An
/// unreadable annotation does not block: the CRD is then ours to fix.
pub fn installed_is_newer(installed: Option<&str>, ours: &str) -> bool {
    match (installed.and_then(parse_version), parse_version(ours)) {
        (Some(installed), Some(ours)) => installed > ours,
        _ => false,
    }
}

/// Apply the CRD (unless a newer operator's is installed) and wait until the
/// apiserver serves it.
pub async fn install(client: &Client, timeout: Duration) -> Result<Outcome> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = desired();
    let name = crd.name_any();
    let installed = api.get_opt(&name).await.map_err(Error::CrdInstall)?;
    if let Some(installed) = &installed {
        let theirs = installed.annotations().get(VERSION_ANNOTATION);
        if installed_is_newer(theirs.map(String::as_str), VERSION) {
            let theirs = theirs.cloned().unwrap_or_default();
            warn!(crd = %name, installed = %theirs, ours = VERSION, "a newer operator installed the CRD; leaving it");
            return Ok(Outcome::KeptNewer(theirs));
        }
    }
    // Forced: the CRD may have been created by Helm (crds/) or kubectl under
    // another field manager; this binary's types are the authority.
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd)).await.map_err(Error::CrdInstall)?;
    wait_established(&api, &name, timeout).await?;
    info!(crd = %name, version = VERSION, "applied the ChatCluster CRD");
    Ok(Outcome::Applied)
}

/// Poll until the `Established` condition is true; a `NamesAccepted=False`
/// (a name clash with another CRD) fails at once with the apiserver's reason.
async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let crd = api.get(name).await.map_err(Error::CrdInstall)?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        let find = |t: &str| conditions.iter().find(|c| c.type_ == t);
        if let Some(c) = find("NamesAccepted").filter(|c| c.status == "False") {
            return Err(Error::CrdNotEstablished(format!(
                "names not accepted: {}",
                c.message.clone().unwrap_or_default()
            )));
        }
        if find("Established").is_some_and(|c| c.status == "True") {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::CrdNotEstablished(format!("not Established after {}s", timeout.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("0.1.0"), Some((0, 1, 0)));
        assert_eq!(parse_version("v1.2.3-rc.1+abc"), Some((1, 2, 3)));
        assert_eq!(parse_version("1.2"), None);
        assert_eq!(parse_version("1.2.3.4"), None);
        assert_eq!(parse_version("latest"), None);
    }

    #[test]
    fn never_downgrades_but_replaces_older_or_unknown() {
        assert!(installed_is_newer(Some("0.2.0"), "0.1.9"));
        assert!(installed_is_newer(Some("1.0.0"), "0.99.99"));
        assert!(!installed_is_newer(Some("0.1.0"), "0.1.0"));
        assert!(!installed_is_newer(Some("0.0.9"), "0.1.0"));
        assert!(!installed_is_newer(None, "0.1.0"));
        assert!(!installed_is_newer(Some("garbage"), "0.1.0"));
    }

    #[test]
    fn desired_crd_carries_our_version() {
        let crd = desired();
        assert_eq!(crd.name_any(), "chatclusters.parley.dev");
        assert_eq!(crd.annotations().get(VERSION_ANNOTATION).map(String::as_str), Some(VERSION));
    }
}
