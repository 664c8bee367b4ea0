//! The Deployments and Services the operator owns, as its watch last saw
//! them, and what it last applied to each: a reconcile reads replicas from
//! here instead of a GET, and skips an apply that would change nothing.
//!
//! Why: every ChatCluster is reconciled again every `lagPollInterval`; with
//! a GET and a server-side apply per object each time, 1,000 ChatClusters
//! made about 100 apiserver writes a second that changed nothing.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::Stream;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::workloads::SECRET_VERSIONS_ANNOTATION;

/// Readers of the owned objects' caches.
#[derive(Clone)]
pub struct OwnedStores {
    pub deployments: Store<DeploymentView>,
    pub services: Store<Service>,
}

impl OwnedStores {
    /// Whether both caches have completed their first list within `wait`.
    pub async fn ready_within(&self, wait: std::time::Duration) -> bool {
        let both = async {
            self.deployments.wait_until_ready().await.is_ok() && self.services.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(wait, both).await.unwrap_or(false)
    }
}

/// Watch the owned Deployments and Services into caches. The returned
/// streams must be polled (the controller does, as its `owns` triggers);
/// they carry only changes a reconcile must answer (see [`Triggers`]).
pub fn watch(
    deployments: Api<DeploymentView>,
    services: Api<Service>,
    config: watcher::Config,
    applied: Arc<AppliedMemory>,
) -> (
    OwnedStores,
    impl Stream<Item = Result<DeploymentView, watcher::Error>> + Send + 'static,
    impl Stream<Item = Result<Service, watcher::Error>> + Send + 'static,
) {
    let (deploy_reader, deploy_writer) = reflector::store();
    let (svc_reader, svc_writer) = reflector::store();
    let deploy_triggers = Triggers::new(applied.clone());
    let deploys = watcher(deployments, config.clone())
        .default_backoff()
        .modify(DeploymentView::slim)
        .reflect(deploy_writer)
        .filter_map(move |event| futures::future::ready(deploy_triggers.pass(event)));
    let svc_triggers = Triggers::new(applied);
    let svcs = watcher(services, config)
        .default_backoff()
        .modify(slim_service)
        .reflect(svc_writer)
        .filter_map(move |event| futures::future::ready(svc_triggers.pass(event)));
    (OwnedStores { deployments: deploy_reader, services: svc_reader }, deploys, svcs)
}

/// What the operator keeps of a Deployment it owns: identity, owner,
/// generation, and the replicas wanted and ready. The watch decodes into it
/// directly. Why: a `Deployment` is 2,448 bytes before any of its strings;
/// 1,000 ChatClusters own 3,000 of them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct DeploymentView {
    pub metadata: ObjectMeta,
    pub spec: Option<ReplicasSpec>,
    pub status: Option<ReadyStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ReplicasSpec {
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateView>,
}

/// Of the pod template, only its annotations (after [`DeploymentView::slim`],
/// only the Secret versions the operator set).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TemplateView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMeta>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TemplateMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl DeploymentView {
    /// Drop what no reconcile reads: managed fields, annotations, and the
    /// pod template's annotations but the Secret versions.
    pub fn slim(&mut self) {
        self.managed_fields_mut().clear();
        self.annotations_mut().clear();
        let annotations = self.spec.as_mut().and_then(|s| s.template.as_mut()?.metadata.as_mut()?.annotations.as_mut());
        if let Some(annotations) = annotations {
            annotations.retain(|k, _| k == SECRET_VERSIONS_ANNOTATION);
        }
    }

    /// The Secret versions the pods were last rolled with.
    pub fn secret_versions(&self) -> Option<&str> {
        let template = self.spec.as_ref()?.template.as_ref()?;
        template.metadata.as_ref()?.annotations.as_ref()?.get(SECRET_VERSIONS_ANNOTATION).map(String::as_str)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReadyStatus {
    pub ready_replicas: Option<i32>,
}

impl k8s_openapi::Resource for DeploymentView {
    const API_VERSION: &'static str = <Deployment as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Deployment as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Deployment as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Deployment as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Deployment as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Deployment as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for DeploymentView {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl From<Deployment> for DeploymentView {
    fn from(d: Deployment) -> Self {
        let mut view = Self {
            spec: d.spec.map(|s| ReplicasSpec {
                replicas: s.replicas,
                template: Some(TemplateView {
                    metadata: s.template.metadata.map(|m| TemplateMeta { annotations: m.annotations }),
                }),
            }),
            status: d.status.map(|s| ReadyStatus { ready_replicas: s.ready_replicas }),
            metadata: d.metadata,
        };
        view.slim();
        view
    }
}

/// What about an owned object a reconcile answers: who it is, its spec
/// (generation), and for Deployments the replicas wanted and ready.
/// Status noise (observedGeneration, conditions) and the operator's own
/// creates need no reconcile; each used to cost several per ChatCluster.
pub trait Relevant: Versioned<DynamicType = ()> {
    fn relevant(&self) -> u64;
}

impl Relevant for DeploymentView {
    fn relevant(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.metadata.uid.hash(&mut hasher);
        self.metadata.generation.hash(&mut hasher);
        self.spec.as_ref().and_then(|s| s.replicas).hash(&mut hasher);
        self.status.as_ref().and_then(|s| s.ready_replicas).hash(&mut hasher);
        hasher.finish()
    }
}

impl Relevant for Service {
    /// Edits by others are repaired at the next periodic reconcile, which
    /// sees the changed resourceVersion.
    fn relevant(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.metadata.uid.hash(&mut hasher);
        hasher.finish()
    }
}

/// Filters an owned-object watch down to the events that need a reconcile.
pub struct Triggers {
    seen: Mutex<HashMap<(String, String), u64>>,
    applied: Arc<AppliedMemory>,
}

impl Triggers {
    pub fn new(applied: Arc<AppliedMemory>) -> Self {
        Self { seen: Mutex::default(), applied }
    }

    pub fn pass<K: Relevant>(&self, event: Result<Event<K>, watcher::Error>) -> Option<Result<K, watcher::Error>> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Err(err) => Some(Err(err)),
            Ok(Event::Init | Event::InitDone) => None,
            // A deleted child is recreated by its owner's reconcile.
            Ok(Event::Delete(obj)) => {
                seen.remove(&(obj.namespace().unwrap_or_default(), obj.name_any()));
                Some(Ok(obj))
            }
            Ok(Event::Apply(obj) | Event::InitApply(obj)) => {
                let fingerprint = obj.relevant();
                let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                let previous = seen.insert(key, fingerprint);
                let own_create = previous.is_none() && self.applied.is_own_write(&obj);
                (previous != Some(fingerprint) && !own_create).then_some(Ok(obj))
            }
        }
    }
}

/// A Service's spec is never read from the cache; managed fields are most
/// of the rest.
fn slim_service(s: &mut Service) {
    s.managed_fields_mut().clear();
    s.annotations_mut().clear();
    s.spec = None;
}

/// How an owned object was left by this process's last apply.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    uid: String,
    /// The owning ChatCluster's uid, to forget the entry once it is gone.
    owner: Option<String>,
    /// Hash of the object this process applied.
    desired: u64,
    /// `metadata.generation` (Deployments) or `resourceVersion` (Services,
    /// which have no generation) the apply returned: a change by anyone
    /// else moves it, and the next reconcile applies again.
    version: String,
}

/// What this process last applied, per owned object.
#[derive(Default)]
pub struct AppliedMemory {
    entries: Mutex<HashMap<(&'static str, String, String), Applied>>,
}

/// The version marker compared between the apply response and the cache,
/// on the objects as the cache keeps them.
pub trait Versioned: Resource + k8s_openapi::Resource {
    fn version(&self) -> Option<String>;
}

impl Versioned for DeploymentView {
    fn version(&self) -> Option<String> {
        self.metadata.generation.map(|g| g.to_string())
    }
}

impl Versioned for k8s_openapi::api::networking::v1::NetworkPolicy {
    fn version(&self) -> Option<String> {
        self.metadata.resource_version.clone()
    }
}

impl Versioned for Service {
    fn version(&self) -> Option<String> {
        self.metadata.resource_version.clone()
    }
}

/// Stable within a process, which is all the memory needs.
pub fn fingerprint(desired: &impl Serialize) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(desired).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

fn key<K: Resource + k8s_openapi::Resource>(obj: &K) -> (&'static str, String, String) {
    (K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

impl AppliedMemory {
    /// The cached object, if applying `desired` again would change nothing:
    /// this process applied the same object last, and nobody changed it
    /// since (same uid, same generation or resourceVersion).
    pub fn unchanged<C, K>(&self, cached: Option<&C>, desired: &K, hash: u64) -> bool
    where
        C: Versioned<DynamicType = ()>,
        K: Resource<DynamicType = ()> + k8s_openapi::Resource,
    {
        let Some(cached) = cached else { return false };
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&key(desired)).is_some_and(|applied| {
            applied.desired == hash
                && Some(&applied.uid) == cached.uid().as_ref()
                && Some(&applied.version) == cached.version().as_ref()
        })
    }

    /// Whether the last object of `desired`'s kind, namespace and name this
    /// process applied hashed to `hash` (for kinds it does not watch).
    pub fn applied_same<K: Resource<DynamicType = ()> + k8s_openapi::Resource>(&self, desired: &K, hash: u64) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&key(desired)).is_some_and(|applied| applied.desired == hash)
    }

    /// Whether this process applied the object `ns`/`name` of kind `K`.
    pub fn has<K: k8s_openapi::Resource>(&self, ns: &str, name: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.contains_key(&(K::KIND, ns.to_owned(), name.to_owned()))
    }

    /// Whether `obj` is exactly what this process's last apply returned.
    pub fn is_own_write<K: Versioned<DynamicType = ()>>(&self, obj: &K) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&key(obj))
            .is_some_and(|a| Some(&a.uid) == obj.uid().as_ref() && Some(&a.version) == obj.version().as_ref())
    }

    /// Remember the object an apply returned, as the cache keeps it.
    pub fn record<K: Versioned<DynamicType = ()>>(&self, returned: &K, hash: u64) {
        let (Some(uid), Some(version)) = (returned.uid(), returned.version()) else { return };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let owner = returned.owner_references().first().map(|o| o.uid.clone());
        entries.insert(key(returned), Applied { uid, owner, desired: hash, version });
    }

    /// Forget the object `ns`/`name` of kind `K` (deleted by this process).
    pub fn forget<K: k8s_openapi::Resource>(&self, ns: &str, name: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&(K::KIND, ns.to_owned(), name.to_owned()));
    }

    /// Forget objects whose owner uid `live` rejects (owner deleted).
    pub fn retain_owners(&self, mut live: impl FnMut(&str) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, applied| applied.owner.as_deref().is_some_and(&mut live));
    }
}

/// The cached object `name` in namespace `ns`.
pub fn cached<K>(store: &Store<K>, ns: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store.get(&ObjectRef::new(name).within(ns))
}

/// Server-side apply `desired` unless this process already applied exactly
/// it and nobody changed it since; either way, the object as it now is, as
/// the cache keeps it (`C`: the cached one when the apply was skipped).
pub async fn apply_unless_unchanged<K, C>(
    api: &Api<K>,
    pp: &PatchParams,
    store: &Store<C>,
    applied: &AppliedMemory,
    desired: &K,
) -> kube::Result<Arc<C>>
where
    K: Resource<DynamicType = ()> + k8s_openapi::Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    C: Versioned<DynamicType = ()> + Clone + From<K>,
{
    let (_, ns, name) = key(desired);
    let hash = fingerprint(desired);
    let current = cached(store, &ns, &name);
    if let Some(current) = current.filter(|c| applied.unchanged(Some(&**c), desired, hash)) {
        return Ok(current);
    }
    let returned: C = api.patch(&name, pp, &Patch::Apply(desired)).await?.into();
    applied.record(&returned, hash);
    Ok(Arc::new(returned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn view(uid: &str, generation: i64, replicas: i32) -> DeploymentView {
        deployment(uid, generation, replicas).into()
    }

    fn deployment(uid: &str, generation: i64, replicas: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("demo-storage".into()),
                namespace: Some("chat".into()),
                uid: Some(uid.into()),
                generation: Some(generation),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec { replicas: Some(replicas), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn skips_only_what_this_process_applied_and_nobody_changed() {
        let memory = AppliedMemory::default();
        let desired = deployment("", 0, 3);
        let hash = fingerprint(&desired);
        let mut cached = DeploymentView::from(deployment("u1", 2, 3));
        cached.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            uid: "owner-1".into(),
            ..Default::default()
        }]);
        assert!(!memory.unchanged(Some(&cached), &desired, hash), "never applied: apply");
        assert!(!memory.has::<Deployment>("chat", "demo-storage"));
        memory.record(&cached, hash);
        assert!(memory.has::<Deployment>("chat", "demo-storage"), "applied, whether or not a cache shows it yet");
        assert!(!memory.has::<Service>("chat", "demo-storage"), "another kind");
        assert!(!memory.has::<Deployment>("other", "demo-storage"), "another namespace");
        assert!(memory.unchanged(Some(&cached), &desired, hash));
        assert!(!memory.unchanged(None::<&DeploymentView>, &desired, hash), "deleted: apply again");
        assert!(!memory.unchanged(Some(&view("u1", 3, 3)), &desired, hash), "someone edited it");
        assert!(!memory.unchanged(Some(&view("u2", 2, 3)), &desired, hash), "recreated by someone");
        let other = deployment("", 0, 4);
        assert!(!memory.unchanged(Some(&cached), &other, fingerprint(&other)), "we want something else");
        memory.forget::<Service>("chat", "demo-storage");
        assert!(memory.has::<Deployment>("chat", "demo-storage"), "another kind stays");
        memory.retain_owners(|uid| uid == "owner-1");
        assert!(memory.unchanged(Some(&cached), &desired, hash), "its owner is still there");
        memory.retain_owners(|_| false);
        assert!(!memory.unchanged(Some(&cached), &desired, hash), "forgotten after its owner went");
    }

    #[test]
    fn triggers_pass_changes_that_matter_and_deletions_only() {
        let applied = Arc::new(AppliedMemory::default());
        let triggers = Triggers::new(applied.clone());
        let pass = |e: Event<DeploymentView>| triggers.pass(Ok(e)).is_some();
        let mine = view("u1", 1, 3);
        applied.record(&mine, 7);
        assert!(!pass(Event::Apply(mine.clone())), "the operator's own create");
        let mut noise = mine.clone();
        noise.status = Some(ReadyStatus::default());
        assert!(!pass(Event::Apply(noise.clone())), "status noise");
        let mut ready = noise.clone();
        ready.status.as_mut().unwrap().ready_replicas = Some(3);
        assert!(pass(Event::Apply(ready.clone())), "pods became ready");
        assert!(pass(Event::Apply(view("u1", 2, 3))), "someone edited the spec");
        assert!(pass(Event::Delete(ready)), "deleted: recreate");
        assert!(pass(Event::Apply(view("u2", 1, 3))), "created by someone else after the delete");
        assert!(!pass(Event::InitDone));
    }

    #[test]
    fn the_view_keeps_what_reconcile_reads_whether_decoded_or_converted() {
        let mut d = deployment("u1", 2, 3);
        d.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            uid: "owner-1".into(),
            ..Default::default()
        }]);
        let annotations = [(SECRET_VERSIONS_ANNOTATION, "db@4"), ("kubectl.kubernetes.io/restartedAt", "now")];
        d.spec.as_mut().unwrap().template.metadata = Some(ObjectMeta {
            name: Some("t".into()),
            annotations: Some(annotations.map(|(k, v)| (k.to_owned(), v.to_owned())).into()),
            ..Default::default()
        });
        d.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            ready_replicas: Some(2),
            observed_generation: Some(2),
            ..Default::default()
        });
        // The watch decodes the apiserver's JSON; an apply's response is converted.
        let mut decoded: DeploymentView = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        decoded.slim();
        let converted = DeploymentView::from(d);
        assert_eq!(decoded, converted);
        assert_eq!(decoded.secret_versions(), Some("db@4"), "the only template annotation kept");
        assert_eq!(
            decoded
                .spec
                .as_ref()
                .unwrap()
                .template
                .as_ref()
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(decoded.spec.as_ref().and_then(|s| s.replicas), Some(3));
        assert_eq!(decoded.status.as_ref().and_then(|s| s.ready_replicas), Some(2));
        assert_eq!(decoded.metadata.generation, Some(2));
        assert_eq!(decoded.metadata.uid.as_deref(), Some("u1"));
        assert!(
            decoded.metadata.owner_references.is_some(),
            "owner references route the watch event to the ChatCluster"
        );
        assert_eq!(decoded.version(), Some("2".to_owned()));
    }
}
