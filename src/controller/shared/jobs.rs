//! What a backup Job says (pure): its state from the Job's status and conditions, and its
//! result from the termination message its pod wrote (`blocksight backup ... --result-file
//! /dev/termination-log`).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::Value;

use crate::names::JOB_NAME_LABEL;

/// A Job's state, as far as a backup, drill, restore or delete is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    /// Created; no pod runs yet.
    Pending,
    Running {
        started: Option<Time>,
    },
    Succeeded {
        started: Option<Time>,
        finished: Option<Time>,
        /// The JSON the program wrote, when a pod is still there to read it from.
        result: Option<Value>,
    },
    Failed {
        started: Option<Time>,
        finished: Option<Time>,
        /// Why, in words: the program's error when it wrote one, else the Job's condition.
        reason: String,
        result: Option<Value>,
    },
}

impl JobState {
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Succeeded { .. } | Self::Failed { .. })
    }
}

/// The newest termination message of container `container` among `pods` of the Job, parsed.
pub fn termination_result<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    container: &str,
) -> Option<Value> {
    let mut pods: Vec<&Pod> = pods.into_iter().collect();
    pods.sort_by_key(|p| p.creation_timestamp().map(|t| t.0));
    pods.iter().rev().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        let status = statuses.iter().find(|s| s.name == container)?;
        let terminated = status
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| {
                status
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
            })?;
        serde_json::from_str(terminated.message.as_deref()?).ok()
    })
}

/// The state of `job`, whose pods are `pods`, running its program in container `container`.
pub fn job_state<'a>(
    job: &Job,
    pods: impl IntoIterator<Item = &'a Pod>,
    container: &str,
) -> JobState {
    let status = job.status.clone().unwrap_or_default();
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .cloned()
    };
    let started = status.start_time.clone();
    if condition("Complete").is_some() {
        return JobState::Succeeded {
            started,
            finished: status
                .completion_time
                .clone()
                .or_else(|| condition("Complete").and_then(|c| c.last_transition_time)),
            result: termination_result(pods, container),
        };
    }
    if let Some(failed) = condition("Failed") {
        let result = termination_result(pods, container);
        let program_error = result
            .as_ref()
            .and_then(|r| r.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let job_reason = format!(
            "{}: {}",
            failed.reason.as_deref().unwrap_or("Failed"),
            failed.message.as_deref().unwrap_or("the Job failed")
        );
        return JobState::Failed {
            started,
            finished: failed.last_transition_time.clone(),
            reason: match program_error {
                Some(e) => format!("{e} ({job_reason})"),
                None => job_reason,
            },
            result,
        };
    }
    if status.active.unwrap_or(0) > 0 || started.is_some() {
        JobState::Running { started }
    } else {
        JobState::Pending
    }
}

/// The pods of Job `name` among `pods`.
pub fn pods_of<'a>(pods: &'a [std::sync::Arc<Pod>], name: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| p.labels().get(JOB_NAME_LABEL).map(String::as_str) == Some(name))
        .map(|p| p.as_ref())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use kube::api::ObjectMeta;

    pub fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    pub fn job(name: &str, status: JobStatus) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            status: Some(status),
            ..Default::default()
        }
    }

    pub fn finished(kind: &str, reason: &str, at: &str) -> JobStatus {
        JobStatus {
            start_time: Some(time("2026-01-01T03:00:00Z")),
            completion_time: (kind == "Complete").then(|| time(at)),
            conditions: Some(vec![JobCondition {
                type_: kind.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(format!("{reason} happened")),
                last_transition_time: Some(time(at)),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    pub fn pod(job: &str, container: &str, message: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("{job}-x1")),
                namespace: Some("ns".into()),
                labels: Some([(JOB_NAME_LABEL.to_owned(), job.to_owned())].into()),
                creation_timestamp: Some(time("2026-01-01T03:00:00Z")),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: container.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            message: Some(message.into()),
                            exit_code: 0,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_complete_job_reads_its_result_from_the_termination_message() {
        let j = job(
            "b1",
            finished("Complete", "CompletionsReached", "2026-01-01T03:05:00Z"),
        );
        let p = pod("b1", "backup", r#"{"name":"b1","sizeBytes":42}"#);
        let JobState::Succeeded {
            finished, result, ..
        } = job_state(&j, [&p], "backup")
        else {
            panic!("succeeded")
        };
        assert_eq!(finished, Some(time("2026-01-01T03:05:00Z")));
        assert_eq!(result.unwrap()["sizeBytes"], 42);
        // Another container's message is not ours.
        let JobState::Succeeded { result, .. } = job_state(&j, [&p], "verify") else {
            panic!("succeeded")
        };
        assert_eq!(result, None);
    }

    #[test]
    fn a_failed_job_says_why_with_the_programs_error_first() {
        let j = job(
            "b1",
            finished("Failed", "DeadlineExceeded", "2026-01-01T09:00:00Z"),
        );
        let JobState::Failed { reason, .. } = job_state(&j, [], "backup") else {
            panic!("failed")
        };
        assert_eq!(reason, "DeadlineExceeded: DeadlineExceeded happened");
        let p = pod(
            "b1",
            "backup",
            r#"{"error":"pg_dump: connection refused","category":"unreachable"}"#,
        );
        let JobState::Failed { reason, .. } = job_state(&j, [&p], "backup") else {
            panic!("failed")
        };
        assert!(
            reason.starts_with("pg_dump: connection refused (DeadlineExceeded"),
            "{reason}"
        );
    }

    #[test]
    fn running_and_pending() {
        let running = job(
            "b1",
            JobStatus {
                active: Some(1),
                start_time: Some(time("2026-01-01T03:00:00Z")),
                ..Default::default()
            },
        );
        assert_eq!(
            job_state(&running, [], "backup"),
            JobState::Running {
                started: Some(time("2026-01-01T03:00:00Z"))
            }
        );
        assert_eq!(
            job_state(&job("b1", JobStatus::default()), [], "backup"),
            JobState::Pending
        );
    }
}
