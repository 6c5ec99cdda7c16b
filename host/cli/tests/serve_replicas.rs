//! Scale-out: three `serve` replicas over one data directory share six
//! tenants by rendezvous hash — each tenant is run by exactly one of them —
//! and after one replica is killed and the set resized to two, every tenant
//! runs again and Tableau ends equal to Oracle for all six, nothing lost or
//! doubled.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::serve::{Server, every_minute};
use support::{World, oracle_invoices, tableau_invoices};

const TENANTS: [&str; 6] = [
    "t-alpha",
    "t-bravo",
    "t-charlie",
    "t-delta",
    "t-echo",
    "t-foxtrot",
];

/// The tenants a replica runs (its status document).
async fn running(server: &Server) -> BTreeSet<String> {
    server.status().await["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["status"]["state"] == "running")
        .filter_map(|t| t["tenant"].as_str().map(str::to_owned))
        .collect()
}

async fn all_equal(world: &World) -> bool {
    let oracle = oracle_invoices(world);
    for t in TENANTS {
        if world
            .tableau
            .datasource_id(&format!("{t} invoices"))
            .is_none()
            || tableau_invoices(world, t).await != oracle
        {
            return false;
        }
    }
    true
}

/// Waits until the replicas together run every tenant, each exactly once,
/// and Tableau equals Oracle for all.
async fn until_shared(servers: &[Server], world: &World, what: &str) {
    servers[0]
        .wait_for(Duration::from_secs(120), what, || async {
            let mut seen = Vec::new();
            for s in servers {
                seen.extend(running(s).await);
            }
            let distinct: BTreeSet<&String> = seen.iter().collect();
            (seen.len() == TENANTS.len()
                && distinct.len() == TENANTS.len()
                && all_equal(world).await)
                .then_some(())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_tenants_and_take_over_a_lost_one() {
    let world = World::start(
        SandboxConfig {
            seed: 41,
            invoices: 40,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    for t in TENANTS {
        world.setup_tenant_with(
            t,
            &[("invoices", "invoices", "invoices.toml")],
            every_minute,
        );
    }
    let three: Vec<Server> = (0..3)
        .map(|i| world.serve(0, &["--replica", &i.to_string(), "--replicas", "3"]))
        .collect();
    until_shared(&three, &world, "three replicas to share six tenants").await;
    for (i, s) in three.iter().enumerate() {
        let mine = running(s).await;
        for t in &mine {
            assert_eq!(
                mlc_serve::scheduler::owner(t, 3),
                i as u32,
                "replica {i} runs {t}, which the hash gives to another"
            );
        }
        eprintln!("replica {i} of 3 runs {mine:?}");
    }

    // Replica 2 dies; the set is resized to two (as a StatefulSet scale-down
    // restarts its pods with the new count) while Oracle keeps changing.
    let mut three = three.into_iter();
    let (first, second, third) = (
        three.next().expect("replica 0"),
        three.next().expect("replica 1"),
        three.next().expect("replica 2"),
    );
    let killed = third.kill9();
    assert!(killed.killed, "{}", killed.stderr);
    world.oracle.mutate(8, 4);
    for s in [first, second] {
        let (ended, _) = s.terminate();
        assert!(ended.status.success(), "{}", ended.stderr);
    }
    let two: Vec<Server> = (0..2)
        .map(|i| world.serve(0, &["--replica", &i.to_string(), "--replicas", "2"]))
        .collect();
    until_shared(&two, &world, "two replicas to run all six tenants again").await;
    world.oracle.mutate(5, 2);
    until_shared(&two, &world, "the last changes on two replicas").await;
    for (i, s) in two.iter().enumerate() {
        eprintln!("replica {i} of 2 runs {:?}", running(s).await);
    }
}
