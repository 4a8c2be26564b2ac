//! Status step: conditions, phase and component readiness, computed (purely) from what was
//! applied and what the workloads report, then written only when something changed.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::error::StatusError;
use crate::build::{Child, FIELD_MANAGER};
use crate::crd::{BlockSight, BlockSightStatus, ComponentStatus, Phase};
use crate::validate::InvalidSpec;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const PAUSED: &str = "Paused";
pub const INVALID_SPEC: &str = "InvalidSpec";

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
    },
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
    stateful_set: impl Fn(&str) -> Option<std::sync::Arc<StatefulSet>>,
    deployment: impl Fn(&str) -> Option<std::sync::Arc<Deployment>>,
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
                let generation = have
                    .as_ref()
                    .and_then(|h| h.metadata.generation)
                    .unwrap_or(0);
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
                    .or_else(|| have.as_ref().and_then(|h| h.spec.replicas))
                    .unwrap_or(1);
                let status = have
                    .as_ref()
                    .and_then(|h| h.status.clone())
                    .unwrap_or_default();
                let generation = have
                    .as_ref()
                    .and_then(|h| h.metadata.generation)
                    .unwrap_or(0);
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
    kind: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: kind.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The status for `outcome`. `previous` keeps each condition's lastTransitionTime unless its
/// status flips, so an unchanged cluster yields an identical status (and no write).
pub fn compute(
    previous: Option<&BlockSightStatus>,
    generation: Option<i64>,
    outcome: &Outcome,
    now: Time,
) -> BlockSightStatus {
    let previous_components = previous.map(|p| &p.components);
    let mut components = BTreeMap::new();
    let (phase, conditions) = match outcome {
        Outcome::Invalid(invalid) => (
            Phase::Pending,
            vec![
                condition(
                    INVALID_SPEC,
                    true,
                    "InvalidSpec",
                    invalid.to_string(),
                    generation,
                    &now,
                ),
                condition(
                    READY,
                    false,
                    "InvalidSpec",
                    "the spec is invalid; nothing was changed".into(),
                    generation,
                    &now,
                ),
                condition(PAUSED, false, "NotPaused", String::new(), generation, &now),
            ],
        ),
        Outcome::Paused => (
            Phase::Paused,
            vec![
                condition(
                    PAUSED,
                    true,
                    "PausedBySpec",
                    "spec.paused is true: children are not changed".into(),
                    generation,
                    &now,
                ),
                condition(
                    INVALID_SPEC,
                    false,
                    "Valid",
                    String::new(),
                    generation,
                    &now,
                ),
            ],
        ),
        Outcome::Applied { workloads, failure } => {
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
            let ready = not_ready.is_empty() && failure.is_none();
            let degraded = match failure {
                Some((reason, message)) => {
                    condition(DEGRADED, true, reason, message.clone(), generation, &now)
                }
                None if !lost.is_empty() => condition(
                    DEGRADED,
                    true,
                    "ReplicasLost",
                    lost.join(", "),
                    generation,
                    &now,
                ),
                None => condition(
                    DEGRADED,
                    false,
                    "AsExpected",
                    String::new(),
                    generation,
                    &now,
                ),
            };
            let is_degraded = degraded.status == "True";
            let phase = if is_degraded {
                Phase::Degraded
            } else if ready {
                Phase::Ready
            } else {
                Phase::Provisioning
            };
            (
                phase,
                vec![
                    if ready {
                        condition(
                            READY,
                            true,
                            "AllComponentsReady",
                            "every component is rolled out and ready".into(),
                            generation,
                            &now,
                        )
                    } else {
                        condition(
                            READY,
                            false,
                            "ComponentsNotReady",
                            not_ready.join(", "),
                            generation,
                            &now,
                        )
                    },
                    if ready {
                        condition(
                            PROGRESSING,
                            false,
                            "Complete",
                            String::new(),
                            generation,
                            &now,
                        )
                    } else {
                        condition(
                            PROGRESSING,
                            true,
                            "RollingOut",
                            not_ready.join(", "),
                            generation,
                            &now,
                        )
                    },
                    degraded,
                    condition(PAUSED, false, "NotPaused", String::new(), generation, &now),
                    condition(
                        INVALID_SPEC,
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
    let conditions = conditions
        .into_iter()
        .map(|mut c| {
            if let Some(old) =
                previous.and_then(|p| p.conditions.iter().find(|o| o.type_ == c.type_))
                && old.status == c.status
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
            c
        })
        .collect();
    // In the paused and invalid cases the last known component state is kept.
    if !matches!(outcome, Outcome::Applied { .. })
        && let Some(previous) = previous_components
    {
        components = previous.clone();
    }
    BlockSightStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions,
        components,
        chain: previous.and_then(|p| p.chain.clone()),
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

/// Write `status` with server-side apply on the status subresource.
pub async fn write(
    api: &Api<BlockSight>,
    name: &str,
    status: &BlockSightStatus,
) -> Result<(), StatusError> {
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
    .map(|_| ())
    .map_err(StatusError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::FieldError;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
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
        }
    }

    fn get<'a>(status: &'a BlockSightStatus, kind: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn ready_when_every_workload_is_rolled_out_and_ready() {
        let s = compute(
            None,
            Some(3),
            &applied(vec![
                workload("bitcoind", 1, 1, true),
                workload("api", 2, 2, true),
            ]),
            at(10),
        );
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, PROGRESSING).status, "False");
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
    }

    #[test]
    fn provisioning_names_what_is_not_ready() {
        let s = compute(
            None,
            Some(1),
            &applied(vec![
                workload("bitcoind", 1, 0, true),
                workload("api", 2, 2, false),
            ]),
            at(10),
        );
        assert_eq!(s.phase, Some(Phase::Provisioning));
        assert_eq!(get(&s, READY).message, "bitcoind 0/1 ready, api 2/2 ready");
        assert_eq!(get(&s, PROGRESSING).status, "True");
        assert_eq!(get(&s, DEGRADED).status, "False");
    }

    #[test]
    fn an_unchanged_outcome_yields_an_identical_status_and_transitions_keep_their_time() {
        let outcome = applied(vec![workload("bitcoind", 1, 1, true)]);
        let first = compute(None, Some(1), &outcome, at(10));
        let again = compute(Some(&first), Some(1), &outcome, at(99));
        assert_eq!(again, first, "no write when nothing changed");

        let degraded = compute(
            Some(&first),
            Some(1),
            &applied(vec![workload("bitcoind", 1, 0, true)]),
            at(50),
        );
        assert_eq!(
            get(&degraded, READY).last_transition_time,
            at(50),
            "Ready flipped"
        );
        assert_eq!(
            get(&degraded, PAUSED).last_transition_time,
            at(10),
            "Paused did not flip"
        );
    }

    #[test]
    fn losing_replicas_after_being_ready_is_degraded_but_a_rollout_is_not() {
        let ready = compute(
            None,
            Some(1),
            &applied(vec![workload("postgres", 1, 1, true)]),
            at(10),
        );
        let lost = compute(
            Some(&ready),
            Some(1),
            &applied(vec![workload("postgres", 1, 0, true)]),
            at(20),
        );
        assert_eq!(lost.phase, Some(Phase::Degraded));
        assert_eq!(get(&lost, DEGRADED).reason, "ReplicasLost");
        let rolling = compute(
            Some(&ready),
            Some(2),
            &applied(vec![workload("postgres", 1, 0, false)]),
            at(20),
        );
        assert_eq!(rolling.phase, Some(Phase::Provisioning));
    }

    #[test]
    fn failures_invalid_specs_and_pauses() {
        let failed = Outcome::Applied {
            workloads: vec![],
            failure: Some(("ApplyFailed".into(), "boom".into())),
        };
        let s = compute(None, Some(1), &failed, at(1));
        assert_eq!(
            (s.phase, get(&s, DEGRADED).reason.as_str()),
            (Some(Phase::Degraded), "ApplyFailed")
        );

        let ready = compute(
            None,
            Some(1),
            &applied(vec![workload("api", 1, 1, true)]),
            at(1),
        );
        let invalid = InvalidSpec(vec![FieldError {
            field: "spec.x".into(),
            reason: "bad".into(),
        }]);
        let s = compute(Some(&ready), Some(2), &Outcome::Invalid(invalid), at(2));
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(get(&s, INVALID_SPEC).message, "spec.x: bad");
        assert_eq!(
            s.components, ready.components,
            "the last known component state is kept"
        );

        let s = compute(Some(&ready), Some(3), &Outcome::Paused, at(3));
        assert_eq!(s.phase, Some(Phase::Paused));
        assert_eq!(get(&s, PAUSED).status, "True");
    }
}
