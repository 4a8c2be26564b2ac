//! The names the operator shares with the cluster: field managers, labels, annotations and
//! finalizers. A leaf: it imports nothing of the crate, and anything may import it.

// Field managers.
/// The one field manager of every server-side apply the operator sends.
pub const FIELD_MANAGER: &str = "blocksight-operator";
/// `app.kubernetes.io/managed-by` value on every child.
pub const MANAGED_BY: &str = "blocksight-operator";
/// Field manager of the one-off apply that hands an autoscaled Deployment's `spec.replicas`
/// over before the operator's own apply drops the field (see `controller::shared::apply`).
pub const REPLICAS_HANDOVER_MANAGER: &str = "blocksight-operator-handover";

// Labels.
/// The BlockSight a backup Job belongs to (the instance label, repeated for selectors).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// What a backup Job does; also its label value.
pub const PURPOSE_LABEL: &str = "blocksight.live/purpose";
/// On Jobs made for one BlockSightBackup (on demand, safety, delete): its name.
pub const BACKUP_LABEL: &str = "blocksight.live/backup";
/// On Jobs made for one BlockSightRestore: its name.
pub const RESTORE_LABEL: &str = "blocksight.live/restore";
/// Why a BlockSightBackup exists: Scheduled, OnDemand (no label) or Safety.
pub const TRIGGER_LABEL: &str = "blocksight.live/trigger";
/// Marks the snapshots the operator schedules (and selects its watch).
pub const SCHEDULED_LABEL: &str = "blocksight.live/scheduled-snapshot";
/// The label the Job controller puts on a Job's pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

// Annotations.
/// Hash of the applied object; tells the controller whether the cluster already matches.
pub const SPEC_HASH_ANNOTATION: &str = "blocksight.live/spec-hash";
/// Hash of a pod's configuration; a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "blocksight.live/config-hash";
/// Annotation on a BlockSight: set (or change) it to rotate the generated credentials.
pub const ROTATE_ANNOTATION: &str = "blocksight.live/rotate-credentials";
/// Annotation on generated Secrets and on their consumers' pod templates: the rotation they
/// carry (a new value rolls the pods onto the new credentials).
pub const ROTATION_ANNOTATION: &str = "blocksight.live/credentials-rotation";
/// The schedule slot (RFC 3339, UTC) a snapshot was taken for.
pub const SLOT_ANNOTATION: &str = "blocksight.live/snapshot-slot";

// Finalizers.
/// Kept on every BlockSightBackup until its data is deleted.
pub const FINALIZER: &str = "blocksight.live/backup-data";
