//! Leader election: two operators, one reconciles; kill the leader and the
//! standby takes over and reconciles. How long the takeover takes is a
//! benchmark figure (`scripts/bench.sh failover`), not asserted here.

use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use parley_operator::crd::ChatCluster;
use parley_tests::kube::{client, setup_namespace, teardown_namespace};
use parley_tests::manifest::Manifest;
use parley_tests::operator::Operator;
use parley_tests::{env, kubectl, wait};

fn manifest(name: &str, prefix: &str) -> Manifest {
    Manifest::new(name).prefix(prefix).partitions(3)
}

#[tokio::test]
async fn standby_takes_over_when_the_leader_is_killed() {
    let ns = setup_namespace("parley-leader");
    let lease_name = format!("{ns}-lease");
    let args = ["--leader-election=true", "--lease-namespace", &ns, "--lease-name", &lease_name];
    let mut a = Operator::start(&ns, "op-a", &args);
    let mut b = Operator::start(&ns, "op-b", &args);
    let client = client().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder = || async {
        let lease = leases.get_opt(&lease_name).await.map_err(|e| e.to_string())?;
        lease.and_then(|l| l.spec?.holder_identity).filter(|h| !h.is_empty()).ok_or_else(|| "no holder".to_owned())
    };
    let first = wait::until("a leader", 30, holder).await;
    assert!(first == "op-a" || first == "op-b", "holder {first}");

    // Only the leader reconciles: one ChatCluster gets its children.
    let api: Api<ChatCluster> = Api::namespaced(client.clone(), &ns);
    let prefix = env::unique("leader").replace('-', "_");
    manifest("chat", &prefix).apply(&ns);
    wait::until("status from the leader", 60, || async {
        let cc = api.get("chat").await.map_err(|e| e.to_string())?;
        cc.status.map(|_| ()).ok_or_else(|| "no status".to_owned())
    })
    .await;
    let (leader, standby) = if first == "op-a" { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let leader_metrics = leader.metrics();
    let standby_metrics = standby.metrics();
    assert!(leader_metrics.contains("parley_operator_leader 1"), "{leader_metrics}");
    assert!(standby_metrics.contains("parley_operator_leader 0"), "{standby_metrics}");
    assert!(
        standby_metrics.contains("parley_operator_reconciles_total 0"),
        "the standby must not reconcile: {standby_metrics}"
    );

    let killed = Instant::now();
    leader.kill();
    let next = wait::until("the standby holding the lease", 30, || async {
        let h = holder().await?;
        if h == standby.identity { Ok(h) } else { Err(h) }
    })
    .await;
    eprintln!("failover to {next} took {:?}", killed.elapsed());

    // The new leader reconciles: a change made after the kill is acted on.
    kubectl::ok(&["scale", "-n", &ns, "chatcluster/chat", "--replicas=4"]);
    wait::until("gateway status replicas 4 from the new leader", 30, || async {
        let cc = api.get("chat").await.map_err(|e| e.to_string())?;
        let r = cc.status.and_then(|s| s.gateway).map(|g| g.replicas);
        if r == Some(4) { Ok(()) } else { Err(format!("{r:?}")) }
    })
    .await;
    teardown_namespace(&ns);
}
