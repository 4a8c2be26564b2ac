//! Leader election on the real server: two operator processes, one Lease; exactly one acts,
//! and when it is stopped (SIGTERM, as in a rolling update) the standby takes over. The
//! takeover time is printed (docs/deploy.md quotes it).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use crate::converge::wait_for_children;
use crate::kit::{self, Operator};

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref()?.holder_identity.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_acts_and_a_standby_takes_over_on_sigterm() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "leader").await;
    let lease_name = format!("lease-{ns}");
    let args = |_: &str| {
        vec![
            "--namespace".to_owned(),
            ns.clone(),
            "--leader-election=true".to_owned(),
            format!("--lease-name={lease_name}"),
            "--probe-interval=5s".to_owned(),
        ]
    };
    let spawn = |identity: &str| {
        let args = args(identity);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Operator::spawn(identity, &refs)
    };
    let mut first = spawn("operator-a");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "blocksight-system");
    kit::eventually(
        "operator-a holding the Lease",
        Duration::from_secs(60),
        || async {
            let lease = leases.get_opt(&lease_name).await.ok()??;
            (holder(&lease).as_deref() == Some("operator-a")).then_some(())
        },
    )
    .await;
    let mut second = spawn("operator-b");
    crate::apply_blocksight(&client, &ns, crate::REGTEST).await;
    wait_for_children(&client, &ns, crate::REGTEST).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(first.log().contains("applied"), "the leader acts");
    assert!(
        !second.log().contains("applied"),
        "the standby writes nothing:\n{}",
        second.log()
    );
    assert!(second.is_running());
    // The candidates hold the Lease under field managers of their own, so the
    // server-side-apply lock can conflict.
    let lease = leases.get(&lease_name).await.unwrap();
    let managers: Vec<String> = lease
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert!(
        managers.iter().all(|m| m != "blocksight-operator"),
        "no shared field manager on the Lease: {managers:?}"
    );

    let stopped = Instant::now();
    first.terminate();
    let status = first
        .wait_exit(Duration::from_secs(30))
        .expect("the leader exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", first.log());
    kit::eventually(
        "operator-b holding the Lease",
        Duration::from_secs(60),
        || async {
            let lease = leases.get_opt(&lease_name).await.ok()??;
            (holder(&lease).as_deref() == Some("operator-b")).then_some(())
        },
    )
    .await;
    let takeover = stopped.elapsed();
    eprintln!(
        "leader election: the standby held the Lease {:.1} s after SIGTERM to the leader",
        takeover.as_secs_f64()
    );
    kit::eventually("operator-b acting", Duration::from_secs(30), || async {
        second.log().contains("acquired leadership").then_some(())
    })
    .await;
    assert!(
        takeover < Duration::from_secs(15),
        "takeover took {takeover:?}: a released Lease should be taken at once"
    );
    second.terminate();
    second.wait_exit(Duration::from_secs(30));
    kit::delete_namespace(&client, &ns).await;
}
