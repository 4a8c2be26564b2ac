//! Status step: conditions, phase and component readiness, computed (purely) from what was
//! applied and what the workloads report, then written only when something changed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::chain::Observation;
use crate::controller::error::StatusError;
use crate::controller::shared::child_cache::{ClaimTemplate, VolumeClaimMeta, WorkloadMeta};
use crate::controller::shared::conditions;
use crate::crd::ConditionType;
use crate::crd::{BlockSight, BlockSightStatus, ComponentStatus, Phase, VolumeStatus};
use crate::desired::Child;
use crate::names::FIELD_MANAGER;
use crate::validate::InvalidSpec;

/// What one workload reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadState {
    pub component: String,
    pub image: String,
    pub desired: i32,
    pub ready: i32,
    /// The controller has seen the latest spec and every replica runs it.
    pub rolled_out: bool,
    /// The workload exists in the cluster (the cache has it).
    pub exists: bool,
}

/// How the reconciliation went, as far as status is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Invalid(InvalidSpec),
    Paused,
    Applied {
        workloads: Vec<WorkloadState>,
        failure: Option<(String, String)>,
        volumes: Vec<VolumeStatus>,
    },
}

/// The PVCs of each desired StatefulSet (`<template>-<statefulset>-<ordinal>`), as the
/// cache has them, against the size their template asks for now.
pub fn observe_volumes(
    children: &[Child],
    stateful_set: impl Fn(&str) -> Option<WorkloadMeta>,
    volume: impl Fn(&str) -> Option<VolumeClaimMeta>,
) -> Vec<VolumeStatus> {
    let mut volumes = Vec::new();
    for child in children {
        let Child::StatefulSet(sts) = child else {
            continue;
        };
        let name = sts.metadata.name.as_deref().unwrap_or_default();
        let replicas = sts
            .spec
            .replicas
            .unwrap_or(1)
            .max(stateful_set(name).and_then(|w| w.replicas).unwrap_or(0));
        let component = component_of(sts.metadata.labels.as_ref());
        for template in sts.spec.volume_claim_templates.iter().flatten() {
            let template = ClaimTemplate::of(template);
            let requested = template.storage.as_deref().unwrap_or_default().to_owned();
            for ordinal in 0..replicas.max(0) {
                let pvc = format!("{}-{name}-{ordinal}", template.name);
                let Some(live) = volume(&pvc) else {
                    continue;
                };
                let want = crate::validate::parse_quantity(&requested);
                let has = live
                    .capacity
                    .as_deref()
                    .and_then(crate::validate::parse_quantity);
                let phase = match (&live.resizing, has) {
                    (_, None) => "Pending",
                    (Some(condition), _) => condition,
                    (None, Some(has)) if want.is_some_and(|w| has < w) => "Resizing",
                    (None, Some(_)) => "Bound",
                };
                volumes.push(VolumeStatus {
                    name: pvc,
                    component: component.clone(),
                    requested: requested.clone(),
                    capacity: live.capacity.as_deref().map(str::to_owned),
                    phase: phase.to_owned(),
                });
            }
        }
    }
    volumes
}

fn component_of(labels: Option<&BTreeMap<String, String>>) -> String {
    labels
        .and_then(|l| l.get("app.kubernetes.io/component"))
        .cloned()
        .unwrap_or_default()
}

/// Read the state of each desired workload from the cached StatefulSets and Deployments.
pub fn observe(
    children: &[Child],
    stateful_set: impl Fn(&str) -> Option<WorkloadMeta>,
    deployment: impl Fn(&str) -> Option<WorkloadMeta>,
) -> Vec<WorkloadState> {
    let image = |spec: Option<&k8s_openapi::api::core::v1::PodSpec>| {
        spec.and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    children
        .iter()
        .filter_map(|child| match child {
            Child::StatefulSet(want) => {
                let spec = &want.spec;
                let have = stateful_set(child.name());
                let desired = spec.replicas.unwrap_or(1);
                let status = have
                    .as_ref()
                    .and_then(|h| h.status.clone())
                    .unwrap_or_default();
                let generation = have.as_ref().and_then(|h| h.generation).unwrap_or(0);
                Some(WorkloadState {
                    component: component_of(want.metadata.labels.as_ref()),
                    image: image(spec.template.spec.as_ref()),
                    desired,
                    ready: status.ready_replicas.unwrap_or(0),
                    rolled_out: have.is_some()
                        && status.observed_generation.unwrap_or(0) >= generation
                        && status.updated_replicas.unwrap_or(0) >= desired
                        && status.current_revision == status.update_revision,
                    exists: have.is_some(),
                })
            }
            Child::Deployment(want) => {
                let spec = &want.spec;
                let have = deployment(child.name());
                // Under autoscaling the HPA sets replicas: read them back from the cluster.
                let desired = spec
                    .replicas
                    .or_else(|| have.as_ref().and_then(|h| h.replicas))
                    .unwrap_or(1);
                let status = have
                    .as_ref()
                    .and_then(|h| h.status.clone())
                    .unwrap_or_default();
                let generation = have.as_ref().and_then(|h| h.generation).unwrap_or(0);
                Some(WorkloadState {
                    component: component_of(want.metadata.labels.as_ref()),
                    image: image(spec.template.spec.as_ref()),
                    desired,
                    ready: status.ready_replicas.unwrap_or(0),
                    rolled_out: have.is_some()
                        && status.observed_generation.unwrap_or(0) >= generation
                        && status.updated_replicas.unwrap_or(0) >= desired
                        && status.replicas.unwrap_or(0) == desired,
                    exists: have.is_some(),
                })
            }
            _ => None,
        })
        .collect()
}

fn condition(
    kind: ConditionType,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    conditions::condition(
        kind,
        conditions::status_of(status),
        reason,
        message,
        generation,
        now,
    )
}

/// The status for `outcome` and what the chain probes last published (`chain`; None when
/// the spec could not be validated). `previous` keeps each condition's lastTransitionTime
/// unless its status flips, so an unchanged cluster yields an identical status (and no write).
pub fn compute(
    previous: Option<&BlockSightStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    chain: Option<&Observation>,
    now: Time,
) -> BlockSightStatus {
    let previous_components = previous.map(|p| &p.components);
    let mut components = BTreeMap::new();
    let (phase, mut conditions) = match outcome {
        Outcome::Invalid(invalid) => (
            Phase::Pending,
            vec![
                condition(
                    ConditionType::InvalidSpec,
                    true,
                    "InvalidSpec",
                    invalid.to_string(),
                    generation,
                    &now,
                ),
                condition(
                    ConditionType::Ready,
                    false,
                    "InvalidSpec",
                    "the spec is invalid; nothing was changed".into(),
                    generation,
                    &now,
                ),
                condition(
                    ConditionType::Paused,
                    false,
                    "NotPaused",
                    String::new(),
                    generation,
                    &now,
                ),
            ],
        ),
        Outcome::Paused => (
            Phase::Paused,
            vec![
                condition(
                    ConditionType::Paused,
                    true,
                    "PausedBySpec",
                    "spec.paused is true: children are not changed".into(),
                    generation,
                    &now,
                ),
                condition(
                    ConditionType::InvalidSpec,
                    false,
                    "Valid",
                    String::new(),
                    generation,
                    &now,
                ),
            ],
        ),
        Outcome::Applied {
            workloads, failure, ..
        } => {
            for w in workloads {
                components.insert(
                    w.component.clone(),
                    ComponentStatus {
                        desired_replicas: w.desired,
                        ready_replicas: w.ready,
                        image: w.image.clone(),
                    },
                );
            }
            let not_ready: Vec<String> = workloads
                .iter()
                .filter(|w| !w.rolled_out || w.ready < w.desired)
                .map(|w| format!("{} {}/{} ready", w.component, w.ready, w.desired))
                .collect();
            // A component that was fully ready and lost replicas without a rollout is degraded.
            let lost: Vec<String> = workloads
                .iter()
                .filter(|w| {
                    w.rolled_out
                        && w.ready < w.desired
                        && previous_components
                            .and_then(|c| c.get(&w.component))
                            .is_some_and(|p| {
                                p.desired_replicas > 0 && p.ready_replicas >= p.desired_replicas
                            })
                })
                .map(|w| {
                    format!(
                        "{} lost replicas ({}/{} ready)",
                        w.component, w.ready, w.desired
                    )
                })
                .collect();
            let lost_services = chain.map(Observation::lost_services).unwrap_or_default();
            // What the chain and the data services still lack, by condition name.
            let waiting: Vec<&str> = match chain {
                None => vec![
                    ConditionType::ChainSynced.as_str(),
                    ConditionType::IndexSynced.as_str(),
                    ConditionType::DatabaseReady.as_str(),
                    ConditionType::CacheReady.as_str(),
                ],
                Some(o) => [
                    (ConditionType::ChainSynced.as_str(), o.chain_synced()),
                    (ConditionType::IndexSynced.as_str(), o.index_synced()),
                    (ConditionType::DatabaseReady.as_str(), o.database_ready()),
                    (ConditionType::CacheReady.as_str(), o.cache_ready()),
                ]
                .into_iter()
                .filter(|(_, ok)| !ok)
                .map(|(name, _)| name)
                .collect(),
            };
            let rolled_out = not_ready.is_empty();
            let ready = rolled_out && waiting.is_empty() && failure.is_none();
            let degraded = match failure {
                Some((reason, message)) => condition(
                    ConditionType::Degraded,
                    true,
                    reason,
                    message.clone(),
                    generation,
                    &now,
                ),
                None if !lost.is_empty() => condition(
                    ConditionType::Degraded,
                    true,
                    "ReplicasLost",
                    lost.join(", "),
                    generation,
                    &now,
                ),
                None if !lost_services.is_empty() => condition(
                    ConditionType::Degraded,
                    true,
                    "ServiceUnreachable",
                    format!("stopped answering: {}", lost_services.join(", ")),
                    generation,
                    &now,
                ),
                None => condition(
                    ConditionType::Degraded,
                    false,
                    "AsExpected",
                    String::new(),
                    generation,
                    &now,
                ),
            };
            let phase = if degraded.status == "True" {
                Phase::Degraded
            } else if ready {
                Phase::Ready
            } else if rolled_out {
                Phase::Syncing
            } else {
                Phase::Provisioning
            };
            let (ready_condition, progressing) = if ready {
                (
                    condition(
                        ConditionType::Ready,
                        true,
                        "AllComponentsReady",
                        "every component is rolled out, synced and ready".into(),
                        generation,
                        &now,
                    ),
                    condition(
                        ConditionType::Progressing,
                        false,
                        "Complete",
                        String::new(),
                        generation,
                        &now,
                    ),
                )
            } else if !rolled_out {
                (
                    condition(
                        ConditionType::Ready,
                        false,
                        "ComponentsNotReady",
                        not_ready.join(", "),
                        generation,
                        &now,
                    ),
                    condition(
                        ConditionType::Progressing,
                        true,
                        "RollingOut",
                        not_ready.join(", "),
                        generation,
                        &now,
                    ),
                )
            } else {
                let message = format!("waiting for {}", waiting.join(", "));
                (
                    condition(
                        ConditionType::Ready,
                        false,
                        "Syncing",
                        message.clone(),
                        generation,
                        &now,
                    ),
                    condition(
                        ConditionType::Progressing,
                        true,
                        "Syncing",
                        message,
                        generation,
                        &now,
                    ),
                )
            };
            (
                phase,
                vec![
                    ready_condition,
                    progressing,
                    degraded,
                    condition(
                        ConditionType::Paused,
                        false,
                        "NotPaused",
                        String::new(),
                        generation,
                        &now,
                    ),
                    condition(
                        ConditionType::InvalidSpec,
                        false,
                        "Valid",
                        String::new(),
                        generation,
                        &now,
                    ),
                ],
            )
        }
    };
    if let Some(chain) = chain {
        conditions.extend(chain.conditions(generation, &now));
    }
    let conditions =
        conditions::keep_transition_times(previous.iter().flat_map(|p| &p.conditions), conditions);
    // In the paused and invalid cases the last known component state is kept.
    if !matches!(outcome, Outcome::Applied { .. })
        && let Some(previous) = previous_components
    {
        components = previous.clone();
    }
    // Chain fields: the newest report, else the last known.
    let (chain_status, electrs, database) =
        chain.map(Observation::status_fields).unwrap_or_default();
    BlockSightStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions,
        components,
        chain: chain_status.or_else(|| previous.and_then(|p| p.chain.clone())),
        electrs: electrs.or_else(|| previous.and_then(|p| p.electrs.clone())),
        database: database.or_else(|| previous.and_then(|p| p.database.clone())),
        // The snapshot step replaces these when it runs; otherwise the last known stay.
        volume_snapshots: previous
            .map(|p| p.volume_snapshots.clone())
            .unwrap_or_default(),
        backup: previous.and_then(|p| p.backup.clone()),
        volumes: match outcome {
            Outcome::Applied { volumes, .. } => volumes.clone(),
            _ => previous.map(|p| p.volumes.clone()).unwrap_or_default(),
        },
    }
}

/// Condition `kind`'s status string in `status`, if present.
pub fn condition_status<'a>(status: Option<&'a BlockSightStatus>, kind: &str) -> Option<&'a str> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.as_str())
}

/// Write `status` with server-side apply on the status subresource; returns the
/// BlockSight's resourceVersion after the write.
pub async fn write(
    api: &Api<BlockSight>,
    name: &str,
    status: &BlockSightStatus,
) -> Result<Option<String>, StatusError> {
    let patch = json!({
        "apiVersion": "blocksight.live/v1alpha1",
        "kind": "BlockSight",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|o| o.metadata.resource_version)
    .map_err(StatusError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ServiceState;
    use crate::probe::{BitcoindReport, ElectrsReport, PostgresReport, RedisReport};
    use crate::validate::FieldError;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn up<T>(report: T) -> ServiceState<T> {
        let mut state = ServiceState::default();
        state.record(Ok(report));
        state
    }

    fn bitcoind(blocks: u64, headers: u64, ibd: bool) -> BitcoindReport {
        BitcoindReport {
            blocks,
            headers,
            verification_progress: blocks as f64 / headers as f64,
            initial_block_download: ibd,
            size_on_disk_bytes: 1,
            pruned: false,
            tip_time: 0,
            version: "/Satoshi:28.1.0/".into(),
            peers: 8,
            txindex_synced: Some(!ibd),
            mempool_transactions: 0,
        }
    }

    /// Every service up, chain and index synced.
    fn synced() -> Observation {
        Observation {
            bitcoind: up(bitcoind(100, 100, false)),
            electrs: Some(up(ElectrsReport {
                indexed_height: 100,
            })),
            postgres: up(PostgresReport {
                version: "17.2".into(),
                database_size_bytes: 1,
            }),
            redis: up(RedisReport {
                used_memory_bytes: 1,
            }),
            database_bootstrapped: true,
        }
    }

    fn workload(component: &str, desired: i32, ready: i32, rolled_out: bool) -> WorkloadState {
        WorkloadState {
            component: component.into(),
            image: "img:1".into(),
            desired,
            ready,
            rolled_out,
            exists: true,
        }
    }

    fn applied(workloads: Vec<WorkloadState>) -> Outcome {
        Outcome::Applied {
            workloads,
            failure: None,
            volumes: vec![],
        }
    }

    fn get<'a>(status: &'a BlockSightStatus, kind: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn ready_when_every_workload_is_ready_and_the_chain_is_synced() {
        let outcome = applied(vec![
            workload("bitcoind", 1, 1, true),
            workload("api", 2, 2, true),
        ]);
        let s = compute(None, Some(3), &outcome, Some(&synced()), at(10));
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(s.observed_generation, Some(3));
        for kind in [
            ConditionType::Ready.as_str(),
            ConditionType::ChainSynced.as_str(),
            ConditionType::IndexSynced.as_str(),
            ConditionType::DatabaseReady.as_str(),
            ConditionType::CacheReady.as_str(),
        ] {
            assert_eq!(get(&s, kind).status, "True", "{kind}");
        }
        assert_eq!(get(&s, ConditionType::Progressing.as_str()).status, "False");
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(
            s.components["api"],
            ComponentStatus {
                desired_replicas: 2,
                ready_replicas: 2,
                image: "img:1".into()
            }
        );
        assert_eq!(s.chain.as_ref().unwrap().blocks, 100);
        assert_eq!(s.electrs.as_ref().unwrap().lag_blocks, Some(0));
        assert_eq!(s.database.as_ref().unwrap().version, "17.2");
    }

    #[test]
    fn syncing_while_the_chain_or_the_index_catches_up() {
        let mut chain = synced();
        chain.bitcoind = up(bitcoind(500, 800_000, true));
        let s = compute(
            None,
            Some(1),
            &applied(vec![workload("bitcoind", 1, 1, true)]),
            Some(&chain),
            at(10),
        );
        assert_eq!(s.phase, Some(Phase::Syncing));
        assert_eq!(get(&s, ConditionType::ChainSynced.as_str()).status, "False");
        assert_eq!(
            get(&s, ConditionType::ChainSynced.as_str()).reason,
            "InitialBlockDownload"
        );
        assert_eq!(
            get(&s, ConditionType::Ready.as_str()).message,
            "waiting for ChainSynced, IndexSynced"
        );

        let mut chain = synced();
        chain.electrs = Some(up(ElectrsReport { indexed_height: 90 }));
        let s = compute(None, Some(1), &applied(vec![]), Some(&chain), at(10));
        assert_eq!(s.phase, Some(Phase::Syncing));
        assert_eq!(
            get(&s, ConditionType::IndexSynced.as_str()).message,
            "10 blocks behind bitcoind"
        );
    }

    #[test]
    fn a_probe_that_cannot_answer_makes_its_condition_unknown_with_the_error() {
        let mut chain = synced();
        chain.redis = ServiceState::default();
        chain.redis.record(Err("connection refused".into()));
        let s = compute(None, Some(1), &applied(vec![]), Some(&chain), at(10));
        assert_eq!(
            get(&s, ConditionType::CacheReady.as_str()).status,
            "Unknown"
        );
        assert!(
            get(&s, ConditionType::CacheReady.as_str())
                .message
                .contains("connection refused")
        );
        assert_eq!(
            s.phase,
            Some(Phase::Syncing),
            "never answered: not degraded yet"
        );

        // A service that was up and stays unreachable for several polls: Degraded.
        let mut chain = synced();
        for _ in 0..crate::chain::UNREACHABLE_AFTER {
            chain.postgres.record(Err("timeout".into()));
        }
        let s = compute(None, Some(1), &applied(vec![]), Some(&chain), at(10));
        assert_eq!(s.phase, Some(Phase::Degraded));
        assert_eq!(
            get(&s, ConditionType::Degraded.as_str()).reason,
            "ServiceUnreachable"
        );
        assert_eq!(
            get(&s, ConditionType::DatabaseReady.as_str()).reason,
            "Unreachable"
        );
        assert_eq!(
            s.database.as_ref().unwrap().version,
            "17.2",
            "last known state kept"
        );
    }

    #[test]
    fn provisioning_names_what_is_not_ready() {
        let outcome = applied(vec![
            workload("bitcoind", 1, 0, true),
            workload("api", 2, 2, false),
        ]);
        let s = compute(None, Some(1), &outcome, Some(&synced()), at(10));
        assert_eq!(s.phase, Some(Phase::Provisioning));
        assert_eq!(
            get(&s, ConditionType::Ready.as_str()).message,
            "bitcoind 0/1 ready, api 2/2 ready"
        );
        assert_eq!(get(&s, ConditionType::Progressing.as_str()).status, "True");
        assert_eq!(get(&s, ConditionType::Degraded.as_str()).status, "False");
    }

    #[test]
    fn an_unchanged_outcome_yields_an_identical_status_and_transitions_keep_their_time() {
        let outcome = applied(vec![workload("bitcoind", 1, 1, true)]);
        let first = compute(None, Some(1), &outcome, Some(&synced()), at(10));
        let again = compute(Some(&first), Some(1), &outcome, Some(&synced()), at(99));
        assert_eq!(again, first, "no write when nothing changed");

        let lost = applied(vec![workload("bitcoind", 1, 0, true)]);
        let degraded = compute(Some(&first), Some(1), &lost, Some(&synced()), at(50));
        assert_eq!(
            get(&degraded, ConditionType::Ready.as_str()).last_transition_time,
            at(50),
            "Ready flipped"
        );
        assert_eq!(
            get(&degraded, ConditionType::Paused.as_str()).last_transition_time,
            at(10),
            "Paused did not flip"
        );
    }

    #[test]
    fn losing_replicas_after_being_ready_is_degraded_but_a_rollout_is_not() {
        let chain = synced();
        let ready = compute(
            None,
            Some(1),
            &applied(vec![workload("postgres", 1, 1, true)]),
            Some(&chain),
            at(10),
        );
        let lost = compute(
            Some(&ready),
            Some(1),
            &applied(vec![workload("postgres", 1, 0, true)]),
            Some(&chain),
            at(20),
        );
        assert_eq!(lost.phase, Some(Phase::Degraded));
        assert_eq!(
            get(&lost, ConditionType::Degraded.as_str()).reason,
            "ReplicasLost"
        );
        let rolling = compute(
            Some(&ready),
            Some(2),
            &applied(vec![workload("postgres", 1, 0, false)]),
            Some(&chain),
            at(20),
        );
        assert_eq!(rolling.phase, Some(Phase::Provisioning));
    }

    #[test]
    fn failures_invalid_specs_and_pauses() {
        let failed = Outcome::Applied {
            workloads: vec![],
            failure: Some(("ApplyFailed".into(), "boom".into())),
            volumes: vec![],
        };
        let s = compute(None, Some(1), &failed, Some(&synced()), at(1));
        assert_eq!(
            (
                s.phase,
                get(&s, ConditionType::Degraded.as_str()).reason.as_str()
            ),
            (Some(Phase::Degraded), "ApplyFailed")
        );

        let ready = compute(
            None,
            Some(1),
            &applied(vec![workload("api", 1, 1, true)]),
            Some(&synced()),
            at(1),
        );
        let invalid = InvalidSpec(vec![FieldError {
            field: "spec.x".into(),
            reason: "bad".into(),
        }]);
        let s = compute(
            Some(&ready),
            Some(2),
            &Outcome::Invalid(invalid),
            None,
            at(2),
        );
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(
            get(&s, ConditionType::InvalidSpec.as_str()).message,
            "spec.x: bad"
        );
        assert_eq!(
            s.components, ready.components,
            "the last known component state is kept"
        );
        assert_eq!(s.chain, ready.chain);

        let s = compute(Some(&ready), Some(3), &Outcome::Paused, None, at(3));
        assert_eq!(s.phase, Some(Phase::Paused));
        assert_eq!(get(&s, ConditionType::Paused.as_str()).status, "True");
    }
}
