//! Backups (pure): the backup CronJob `<name>-backup`, the restore-drill CronJob
//! `<name>-verify`, the ServiceAccount `<name>-backup` their pods run as (pod identity for
//! S3), the backup volume `<name>-backups`, and the one Job builder every backup, drill,
//! restore and delete Job comes from, so the CronJobs' Jobs and the operator's cannot drift.
//!
//! Pod shape: an init container from the operator's image installs the `blocksight`
//! binary into an emptyDir; the main container runs the BlockSight's PostgreSQL image (so
//! pg_dump is the server's major version) and execs `blocksight backup ...`, which writes
//! its JSON result to /dev/termination-log, where the controller reads it from the Pod.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ServiceAccount, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::meta;
use super::secrets::{self, key};
use super::workload::{container, empty_dir, env, env_from_secret, mount, non_empty};
use super::{BuildSettings, Child, postgres};
use crate::crd::defaults;
use crate::names::{BACKUP_LABEL, INSTANCE_LABEL, MANAGED_BY, PURPOSE_LABEL, RESTORE_LABEL};
use crate::validate::{Backup, BackupTarget, Postgres, ValidBlockSight};

/// The component label value of every backup object.
pub const COMPONENT: &str = "backup";
/// Where the init container installs the binary.
pub const BINARY: &str = "/opt/blocksight/blocksight";
/// Mount point of the backup volume.
pub const VOLUME_MOUNT: &str = "/backups";
/// The official PostgreSQL image's `postgres` user.
const UID: i64 = 999;

/// Why a backup Job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    Backup,
    Verify,
    Restore,
    Delete,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Verify => "verify",
            Self::Restore => "restore",
            Self::Delete => "delete",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Backup, Self::Verify, Self::Restore, Self::Delete]
            .into_iter()
            .find(|p| p.as_str() == text)
    }

    /// (backoffLimit, activeDeadlineSeconds). A dump, drill or restore is not retried in
    /// place: a retry would find a half-written folder or a half-replaced database; the
    /// next schedule or a new object is the retry. Deleting is idempotent.
    fn limits(self) -> (i32, i64) {
        match self {
            Self::Backup => (0, 6 * 3600),
            Self::Verify => (0, 6 * 3600),
            Self::Restore => (0, 12 * 3600),
            Self::Delete => (3, 1800),
        }
    }
}

/// What one Job runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Task {
    /// Dump the database into a backup named after the Job (downward API), so a CronJob's
    /// Job and its BlockSightBackup share one name.
    Dump,
    /// Restore drill of a backup, or of the newest one.
    Verify { backup: Option<String> },
    /// Replace the database with `backup`, taken from the BlockSight `from`; with
    /// `only_if_empty` (spec.postgres.restoreFrom) only a database with no table.
    Restore {
        backup: String,
        from: String,
        only_if_empty: bool,
    },
    /// Delete the data of `backup`, taken from the BlockSight `from`.
    Delete { backup: String, from: String },
}

impl Task {
    pub fn purpose(&self) -> Purpose {
        match self {
            Self::Dump => Purpose::Backup,
            Self::Verify { .. } => Purpose::Verify,
            Self::Restore { .. } => Purpose::Restore,
            Self::Delete { .. } => Purpose::Delete,
        }
    }
}

pub fn cron_job_name(bs: &ValidBlockSight) -> String {
    format!("{}-backup", bs.name)
}

/// `<name>-verify`: `-backup-verify` would not fit: CronJob names are at most 52
/// characters and BlockSight names 40.
pub fn verify_cron_job_name(bs: &ValidBlockSight) -> String {
    format!("{}-verify", bs.name)
}

pub fn service_account_name(bs: &ValidBlockSight) -> String {
    format!("{}-backup", bs.name)
}

pub fn volume_claim_name(blocksight: &str) -> String {
    format!("{blocksight}-backups")
}

/// Name of the Job that deletes a backup's data.
pub fn delete_job_name(backup: &str) -> String {
    format!("{backup}-del")
}

/// Labels of every backup object of `bs`; `purpose` on Jobs and their pods.
pub fn labels(bs: &ValidBlockSight, purpose: Option<Purpose>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), COMPONENT.to_owned()),
        (INSTANCE_LABEL.to_owned(), bs.name.clone()),
        (
            "app.kubernetes.io/component".to_owned(),
            COMPONENT.to_owned(),
        ),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "blocksight".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
    ]);
    if let Some(purpose) = purpose {
        labels.insert(PURPOSE_LABEL.to_owned(), purpose.as_str().to_owned());
    }
    labels
}

/// Folder of a BlockSight's backups at the destination: the explicit prefix, else
/// `blocksight/<namespace>/<blocksight>/`, so several BlockSights can share a bucket and
/// all stay under the `blocksight/` prefix the Terraform backup role is scoped to.
pub fn prefix(bs: &ValidBlockSight, target: &BackupTarget, blocksight: &str) -> String {
    match target {
        BackupTarget::S3 {
            prefix: Some(prefix),
            ..
        } => prefix.clone(),
        _ => format!("blocksight/{}/{blocksight}/", bs.namespace),
    }
}

/// The `--s3-*` / `--local-dir` and `--prefix` arguments.
fn destination_args(bs: &ValidBlockSight, target: &BackupTarget, blocksight: &str) -> Vec<String> {
    let mut args = Vec::new();
    match target {
        BackupTarget::Volume(_) => {
            args.extend(["--local-dir".to_owned(), VOLUME_MOUNT.to_owned()]);
        }
        BackupTarget::S3 {
            bucket,
            region,
            endpoint,
            force_path_style,
            ..
        } => {
            args.extend(["--s3-bucket".to_owned(), bucket.clone()]);
            if let Some(region) = region {
                args.extend(["--s3-region".to_owned(), region.clone()]);
            }
            if let Some(endpoint) = endpoint {
                args.extend(["--s3-endpoint".to_owned(), endpoint.clone()]);
            }
            if *force_path_style {
                args.push("--s3-force-path-style".to_owned());
            }
        }
    }
    args.extend(["--prefix".to_owned(), prefix(bs, target, blocksight)]);
    args
}

/// The command of the main container.
fn command(bs: &ValidBlockSight, backup: &Backup, task: &Task) -> Vec<String> {
    let database = match &bs.postgres {
        Postgres::InCluster { database, .. } | Postgres::External { database, .. } => database,
    };
    let mut cmd: Vec<String> = [BINARY, "backup", "--result-file", "/dev/termination-log"]
        .map(String::from)
        .to_vec();
    let work = ["--work-dir".to_owned(), "/work".to_owned()];
    match task {
        Task::Dump => {
            cmd.extend(
                ["dump", "--database", database, "--name", "$(BACKUP_NAME)"].map(String::from),
            );
            cmd.extend(destination_args(bs, &backup.target, &bs.name));
            cmd.extend(work);
        }
        Task::Verify { backup: which } => {
            cmd.push("verify".to_owned());
            match which {
                Some(name) => cmd.extend(["--backup".to_owned(), name.clone()]),
                None => cmd.push("--latest".to_owned()),
            }
            cmd.extend(destination_args(bs, &backup.target, &bs.name));
            cmd.extend(work);
        }
        Task::Restore {
            backup: name,
            from,
            only_if_empty,
        } => {
            cmd.extend(
                [
                    "restore",
                    "--backup",
                    name,
                    "--target-database",
                    database,
                    "--drop-existing",
                ]
                .map(String::from),
            );
            if *only_if_empty {
                cmd.push("--only-if-empty".to_owned());
            }
            cmd.extend(["--owner".to_owned(), secrets::APP_DB_USER.to_owned()]);
            cmd.extend(destination_args(bs, &backup.target, from));
            cmd.extend(work);
        }
        Task::Delete { backup: name, from } => {
            cmd.extend(["delete", "--name", name].map(String::from));
            cmd.extend(destination_args(bs, &backup.target, from));
        }
    }
    cmd
}

/// The pod template every backup Job runs: restricted Pod Security, no service account
/// token (IRSA and EKS Pod Identity inject their own), secrets only through secretKeyRef.
pub fn pod_template(
    bs: &ValidBlockSight,
    backup: &Backup,
    settings: &BuildSettings,
    task: &Task,
) -> PodTemplateSpec {
    let postgres_image = match &bs.postgres {
        Postgres::InCluster { image, .. } => image.as_str(),
        Postgres::External { .. } => defaults::image::POSTGRES,
    };
    let mut environment = vec![
        env("PGHOST", format!("{}-postgres", bs.name)),
        env("PGPORT", postgres::PORT.to_string()),
        env("PGUSER", "postgres"),
        env_from_secret(
            "PGPASSWORD",
            &secrets::postgres_secret_name(bs),
            key::SUPERUSER_PASSWORD,
        ),
        env("TMPDIR", "/work"),
    ];
    if *task == Task::Dump {
        environment.push(EnvVar {
            name: "BACKUP_NAME".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.labels['batch.kubernetes.io/job-name']".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if let BackupTarget::S3 {
        credentials: Some(secret),
        ..
    } = &backup.target
    {
        environment.push(env_from_secret(
            "AWS_ACCESS_KEY_ID",
            secret,
            "AWS_ACCESS_KEY_ID",
        ));
        environment.push(env_from_secret(
            "AWS_SECRET_ACCESS_KEY",
            secret,
            "AWS_SECRET_ACCESS_KEY",
        ));
    }
    let mut mounts = vec![
        mount("bin", "/opt/blocksight", true),
        mount("work", "/work", false),
    ];
    let mut volumes = vec![empty_dir("bin"), empty_dir("work")];
    if let BackupTarget::Volume(_) = &backup.target {
        // Backups of another BlockSight (restoreFrom, or after a rename) live on its volume.
        let from = match task {
            Task::Restore { from, .. } | Task::Delete { from, .. } => from.as_str(),
            _ => bs.name.as_str(),
        };
        mounts.push(mount("backups", VOLUME_MOUNT, false));
        volumes.push(Volume {
            name: "backups".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: volume_claim_name(from),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let install = Container {
        args: Some(["copy-self", "--to", BINARY].map(String::from).to_vec()),
        volume_mounts: Some(vec![mount("bin", "/opt/blocksight", false)]),
        ..container(
            "install-blocksight",
            &settings.operator_image,
            &defaults::resources("installer", bs.network, 0),
        )
    };
    let main = Container {
        command: Some(command(bs, backup, task)),
        env: Some(environment),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("File".to_owned()),
        ..container(
            task.purpose().as_str(),
            postgres_image,
            &defaults::resources("backup", bs.network, 0),
        )
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(bs, Some(task.purpose()))),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            init_containers: Some(vec![install]),
            containers: vec![main],
            restart_policy: Some("Never".to_owned()),
            service_account_name: Some(service_account_name(bs)),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(meta::pod_security(UID)),
            volumes: Some(volumes),
            ..Default::default()
        }),
    }
}

/// The one Job spec: what the CronJobs template and the operator's Jobs share.
pub fn job_spec(
    bs: &ValidBlockSight,
    backup: &Backup,
    settings: &BuildSettings,
    task: &Task,
) -> JobSpec {
    let (backoff_limit, deadline) = task.purpose().limits();
    JobSpec {
        backoff_limit: Some(backoff_limit),
        active_deadline_seconds: Some(deadline),
        // Long enough for the controller to read the result, short enough not to pile up.
        ttl_seconds_after_finished: Some(86_400),
        template: pod_template(bs, backup, settings, task),
        ..Default::default()
    }
}

/// A Job the operator creates (on-demand, safety and delete backups, restores), owned by
/// the object it serves (`owner`: a BlockSightBackup or BlockSightRestore), labelled with
/// it.
pub fn job(
    bs: &ValidBlockSight,
    backup: &Backup,
    settings: &BuildSettings,
    name: &str,
    task: &Task,
    owner: Option<OwnerReference>,
    extra_labels: &[(&str, &str)],
) -> Job {
    let mut labels = labels(bs, Some(task.purpose()));
    for (k, v) in extra_labels {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    let mut spec = job_spec(bs, backup, settings, task);
    if let Some(template) = spec.template.metadata.as_mut() {
        template.labels = Some(labels.clone());
    }
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(bs.namespace.clone()),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    }
}

fn cron_job(
    bs: &ValidBlockSight,
    backup: &Backup,
    settings: &BuildSettings,
    name: String,
    schedule: &str,
    task: &Task,
) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            labels: Some(labels(bs, Some(task.purpose()))),
            ..meta::owned(bs, super::Component::Postgres, name)
        },
        spec: CronJobSpec {
            schedule: schedule.to_owned(),
            // Kubernetes reads the schedule in the controller manager's zone unless told.
            time_zone: Some("Etc/UTC".to_owned()),
            concurrency_policy: Some("Forbid".to_owned()),
            // A slot missed by more than an hour (control plane down) is skipped, not run late.
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(bs, Some(task.purpose()))),
                    ..Default::default()
                }),
                spec: Some(job_spec(bs, backup, settings, task)),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The backup children of `bs`: nothing without a destination.
pub fn build(bs: &ValidBlockSight, settings: &BuildSettings) -> Vec<Child> {
    let Some(backup) = &bs.backup else {
        return vec![];
    };
    let mut children = vec![Child::ServiceAccount(ServiceAccount {
        metadata: ObjectMeta {
            labels: Some(labels(bs, None)),
            annotations: non_empty(backup.service_account_annotations.clone()),
            ..meta::owned(bs, super::Component::Postgres, service_account_name(bs))
        },
        // The pods mount no token; the cloud identity webhooks project their own.
        automount_service_account_token: Some(false),
        ..Default::default()
    })];
    if let BackupTarget::Volume(volume) = &backup.target {
        // Backups outlive the BlockSight: owned only under deletionPolicy Delete.
        children.push(Child::PersistentVolumeClaim(PersistentVolumeClaim {
            metadata: ObjectMeta {
                labels: Some(labels(bs, None)),
                ..meta::retained(bs, super::Component::Postgres, volume_claim_name(&bs.name))
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                storage_class_name: volume.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_owned(), volume.size.clone())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    if backup.scheduled {
        children.push(Child::CronJob(Box::new(cron_job(
            bs,
            backup,
            settings,
            cron_job_name(bs),
            backup.schedule.as_str(),
            &Task::Dump,
        ))));
    }
    if let Some(verify) = &backup.verify_schedule {
        children.push(Child::CronJob(Box::new(cron_job(
            bs,
            backup,
            settings,
            verify_cron_job_name(bs),
            verify.as_str(),
            &Task::Verify { backup: None },
        ))));
    }
    children
}

/// One Job of each kind the operator creates, with example names (`render --backup-jobs`).
pub fn example_jobs(bs: &ValidBlockSight, settings: &BuildSettings) -> Vec<Job> {
    let Some(backup) = &bs.backup else {
        return vec![];
    };
    let example = format!("{}-example", bs.name);
    let restore = format!("{example}-restore");
    vec![
        job(
            bs,
            backup,
            settings,
            &example,
            &Task::Dump,
            None,
            &[(BACKUP_LABEL, &example)],
        ),
        job(
            bs,
            backup,
            settings,
            &format!("{}-drill", bs.name),
            &Task::Verify {
                backup: Some(example.clone()),
            },
            None,
            &[],
        ),
        job(
            bs,
            backup,
            settings,
            &restore,
            &Task::Restore {
                backup: example.clone(),
                from: bs.name.clone(),
                only_if_empty: false,
            },
            None,
            &[(RESTORE_LABEL, &example)],
        ),
        job(
            bs,
            backup,
            settings,
            &delete_job_name(&example),
            &Task::Delete {
                backup: example.clone(),
                from: bs.name.clone(),
            },
            None,
            &[(BACKUP_LABEL, &example)],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::BlockSight;

    fn valid(yaml: &str, uid: bool) -> ValidBlockSight {
        let mut bs: BlockSight = serde_yaml::from_str(yaml).unwrap();
        bs.metadata.namespace = Some("ns".into());
        if uid {
            bs.metadata.uid = Some("u".into());
        }
        crate::validate::validate(&bs).unwrap()
    }

    const S3: &str = "
apiVersion: blocksight.live/v1alpha1
kind: BlockSight
metadata: {name: main}
spec:
  network: signet
  backup:
    enabled: true
    destination:
      s3: {bucket: bkt, region: eu-west-1, endpoint: 'http://minio:9000', forcePathStyle: true, credentialsSecretRef: {secretName: s3-keys}}
    verify: {schedule: '@weekly'}
";

    const VOLUME: &str = "
apiVersion: blocksight.live/v1alpha1
kind: BlockSight
metadata: {name: main}
spec:
  network: regtest
  deletionPolicy: DELETION
  backup:
    enabled: true
    destination: {volume: {size: 5Gi, storageClassName: fast}}
";

    fn cron_jobs(children: &[Child]) -> Vec<&CronJob> {
        children
            .iter()
            .filter_map(|c| match c {
                Child::CronJob(c) => Some(c.as_ref()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn cron_jobs_and_operator_jobs_share_one_job_builder() {
        let bs = valid(S3, true);
        let settings = BuildSettings::default();
        let children = build(&bs, &settings);
        let crons = cron_jobs(&children);
        assert_eq!(
            crons
                .iter()
                .map(|c| c.metadata.name.clone().unwrap())
                .collect::<Vec<_>>(),
            ["main-backup", "main-verify"]
        );
        let backup = bs.backup.as_ref().unwrap();
        let template = crons[0].spec.job_template.spec.as_ref().unwrap();
        assert_eq!(template, &job_spec(&bs, backup, &settings, &Task::Dump));
        // An on-demand Job differs only by the labels naming its BlockSightBackup.
        let on_demand = job(
            &bs,
            backup,
            &settings,
            "b1",
            &Task::Dump,
            None,
            &[(BACKUP_LABEL, "b1")],
        );
        let mut spec = on_demand.spec.unwrap();
        assert_eq!(
            spec.template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap()[BACKUP_LABEL],
            "b1"
        );
        spec.template.metadata = template.template.metadata.clone();
        assert_eq!(&spec, template);
        let cron = &crons[0].spec;
        assert_eq!(cron.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(cron.schedule, "0 3 * * *");
        assert!(cron.starting_deadline_seconds.is_some());
        assert!(
            cron.successful_jobs_history_limit.is_some()
                && cron.failed_jobs_history_limit.is_some()
        );
        assert_eq!(crons[1].spec.schedule, "@weekly");
        for purpose_spec in [template, crons[1].spec.job_template.spec.as_ref().unwrap()] {
            assert!(purpose_spec.backoff_limit.is_some());
            assert!(purpose_spec.active_deadline_seconds.is_some());
            assert!(purpose_spec.ttl_seconds_after_finished.is_some());
            let pod = purpose_spec.template.spec.as_ref().unwrap();
            assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
            assert_eq!(pod.service_account_name.as_deref(), Some("main-backup"));
        }
    }

    #[test]
    fn s3_keys_come_from_secret_key_refs_and_flags_from_the_spec() {
        let bs = valid(S3, true);
        let backup = bs.backup.as_ref().unwrap();
        let pod = pod_template(&bs, backup, &BuildSettings::default(), &Task::Dump)
            .spec
            .unwrap();
        let main = &pod.containers[0];
        let env = main.env.as_ref().unwrap();
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"] {
            let var = env
                .iter()
                .find(|e| e.name == name)
                .unwrap_or_else(|| panic!("{name}"));
            assert!(var.value.is_none(), "{name} must not be a plain value");
            assert!(
                var.value_from.as_ref().unwrap().secret_key_ref.is_some(),
                "{name}"
            );
        }
        let command = main.command.as_ref().unwrap().join(" ");
        assert!(command.starts_with("/opt/blocksight/blocksight backup --result-file /dev/termination-log dump --database blocksight --name $(BACKUP_NAME)"), "{command}");
        assert!(command.contains("--s3-bucket bkt --s3-region eu-west-1 --s3-endpoint http://minio:9000 --s3-force-path-style --prefix blocksight/ns/main/"), "{command}");
        assert_eq!(
            main.image.as_deref(),
            Some(defaults::image::POSTGRES),
            "pg_dump of the server's own image"
        );
        let init = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            init.image.as_deref(),
            Some(crate::desired::DEFAULT_OPERATOR_IMAGE)
        );
    }

    #[test]
    fn pod_identity_without_a_secret_and_annotations_on_the_service_account() {
        let yaml = S3.replace(", credentialsSecretRef: {secretName: s3-keys}", "").replace(
            "    verify: {schedule: '@weekly'}",
            "    serviceAccountAnnotations: {eks.amazonaws.com/role-arn: 'arn:aws:iam::1:role/r'}",
        );
        let bs = valid(&yaml, true);
        let children = build(&bs, &BuildSettings::default());
        let Child::ServiceAccount(sa) = &children[0] else {
            panic!("a ServiceAccount first")
        };
        assert_eq!(sa.metadata.name.as_deref(), Some("main-backup"));
        assert_eq!(
            sa.metadata.annotations.as_ref().unwrap()["eks.amazonaws.com/role-arn"],
            "arn:aws:iam::1:role/r"
        );
        let pod = pod_template(
            &bs,
            bs.backup.as_ref().unwrap(),
            &BuildSettings::default(),
            &Task::Dump,
        )
        .spec
        .unwrap();
        assert!(
            !pod.containers[0]
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name.starts_with("AWS_"))
        );
        assert_eq!(
            cron_jobs(&children).len(),
            1,
            "no drill without verify.schedule"
        );
    }

    #[test]
    fn the_backup_volume_outlives_the_blocksight_unless_deletion_policy_is_delete() {
        let pvc = |yaml: &str| {
            build(&valid(yaml, true), &BuildSettings::default())
                .into_iter()
                .find_map(|c| match c {
                    Child::PersistentVolumeClaim(p) => Some(p),
                    _ => None,
                })
                .expect("a backup volume")
        };
        let retained = pvc(&VOLUME.replace("DELETION", "Retain"));
        assert_eq!(retained.metadata.name.as_deref(), Some("main-backups"));
        assert!(retained.metadata.owner_references.is_none());
        let spec = retained.spec.unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
        let deleted = pvc(&VOLUME.replace("DELETION", "Delete"));
        assert_eq!(deleted.metadata.owner_references.unwrap()[0].uid, "u");
    }

    #[test]
    fn restore_and_delete_read_the_backups_of_the_blocksight_they_came_from() {
        let bs = valid(&VOLUME.replace("DELETION", "Retain"), true);
        let backup = bs.backup.as_ref().unwrap();
        let settings = BuildSettings::default();
        let restore = Task::Restore {
            only_if_empty: false,
            backup: "old-1".into(),
            from: "old".into(),
        };
        let pod = pod_template(&bs, backup, &settings, &restore).spec.unwrap();
        let command = pod.containers[0].command.as_ref().unwrap().join(" ");
        assert!(command.contains("restore --backup old-1 --target-database blocksight --drop-existing --owner blocksight --local-dir /backups --prefix blocksight/ns/old/"), "{command}");
        let claim = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "backups")
            .unwrap();
        assert_eq!(
            claim.persistent_volume_claim.unwrap().claim_name,
            "old-backups"
        );
        let delete = job(
            &bs,
            backup,
            &settings,
            "old-1-del",
            &Task::Delete {
                backup: "old-1".into(),
                from: "old".into(),
            },
            None,
            &[],
        );
        let spec = delete.spec.unwrap();
        assert_eq!(
            spec.backoff_limit,
            Some(3),
            "deleting is idempotent: retried"
        );
        let command = spec.template.spec.unwrap().containers[0]
            .command
            .clone()
            .unwrap()
            .join(" ");
        assert!(
            command
                .contains("delete --name old-1 --local-dir /backups --prefix blocksight/ns/old/"),
            "{command}"
        );
        assert_eq!(delete.metadata.labels.unwrap()[PURPOSE_LABEL], "delete");
    }

    #[test]
    fn nothing_without_a_destination_and_no_cron_job_when_disabled() {
        let none = valid(
            "{apiVersion: blocksight.live/v1alpha1, kind: BlockSight, metadata: {name: n}, spec: {network: regtest}}",
            false,
        );
        assert!(build(&none, &BuildSettings::default()).is_empty());
        let off = valid(&S3.replace("enabled: true", "enabled: false"), false);
        let children = build(&off, &BuildSettings::default());
        assert_eq!(cron_jobs(&children).len(), 1, "only the drill");
        assert_eq!(
            cron_jobs(&children)[0].metadata.name.as_deref(),
            Some("main-verify")
        );
    }
}
