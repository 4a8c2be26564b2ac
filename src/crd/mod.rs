//! The project's custom resources: the `blocksight.live/v1alpha1` API.
//!
//! Everything the API server can enforce (enums, required fields, CEL cross-field and
//! transition rules) is declared here, so `blocksight crd` and `blocksight render` share it.

// clippy reads each `printcolumn(type_ = "string", ...)` of kube's derive as a repeated
// attribute; they are separate columns.
#![allow(clippy::duplicated_attributes)]

mod backup;
mod blocksight;
mod common;
pub mod defaults;
mod snapshots;
mod status;

pub use backup::*;
pub use blocksight::*;
pub use common::*;
pub use snapshots::*;
pub use status::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every BlockSight kind.
pub const GROUP: &str = "blocksight.live";

/// Longest BlockSight name: child objects append suffixes such as `-prometheus` and
/// `-backup-verify`, and Service and StatefulSet pod names must stay DNS labels (63).
pub const BLOCKSIGHT_NAME_MAX: usize = 40;
/// Longest BlockSightBackup name: its Jobs append a suffix such as `-delete`.
pub const BACKUP_NAME_MAX: usize = 56;
/// Longest BlockSightRestore name: its Jobs and safety backup append a suffix such as `-restore`.
pub const RESTORE_NAME_MAX: usize = 48;

/// A BlockSight's name becomes the prefix of Service names: an RFC 1035 label.
pub const DNS_1035_LABEL: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// Backups and restores name Jobs and pods only: an RFC 1123 label.
pub const DNS_1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Every CRD the operator ships, in the order `blocksight crd` prints them.
///
/// Each declares a root `metadata` schema limiting `name` (length and shape), the one
/// restriction of metadata the API server allows in a CRD. (A CEL rule with
/// `fieldPath: .metadata.name` at a root without that schema makes the API server reject
/// the whole CRD: `cel.ValidFieldPath` resolves field paths against the schema as written.)
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        restrict_name(BlockSight::crd(), BLOCKSIGHT_NAME_MAX, DNS_1035_LABEL),
        restrict_name(BlockSightBackup::crd(), BACKUP_NAME_MAX, DNS_1123_LABEL),
        restrict_name(BlockSightRestore::crd(), RESTORE_NAME_MAX, DNS_1123_LABEL),
    ]
}

fn restrict_name(
    mut crd: CustomResourceDefinition,
    max: usize,
    pattern: &str,
) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
    let name = JSONSchemaProps {
        type_: Some("string".into()),
        max_length: Some(max as i64),
        pattern: Some(pattern.into()),
        ..Default::default()
    };
    let metadata = JSONSchemaProps {
        type_: Some("object".into()),
        properties: Some([("name".to_owned(), name)].into()),
        ..Default::default()
    };
    for version in &mut crd.spec.versions {
        if let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            root.properties
                .get_or_insert_with(Default::default)
                .insert("metadata".to_owned(), metadata.clone());
            drop_unknown_formats(root);
        }
    }
    crd
}

/// Formats the API server knows (apiextensions-apiserver's `supportedFormats`). schemars
/// writes `uint32`/`uint64` for unsigned integers, which the server ignores with a warning
/// on every `kubectl apply` of the CRDs; the `minimum: 0` next to them says the same.
const KNOWN_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

fn drop_unknown_formats(
    props: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray;
    if props
        .format
        .as_deref()
        .is_some_and(|f| !KNOWN_FORMATS.contains(&f))
    {
        props.format = None;
    }
    for child in props.properties.iter_mut().flat_map(|p| p.values_mut()) {
        drop_unknown_formats(child);
    }
    match props.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => drop_unknown_formats(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            items.iter_mut().for_each(drop_unknown_formats)
        }
        None => {}
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(extra)) =
        props.additional_properties.as_mut()
    {
        drop_unknown_formats(extra);
    }
    for group in [&mut props.all_of, &mut props.any_of, &mut props.one_of] {
        group.iter_mut().flatten().for_each(drop_unknown_formats);
    }
}

/// Why `name` cannot name an object of a kind with these limits, or None when it can:
/// what the API server's schema for `metadata.name` refuses, in words.
pub fn name_problem(name: &str, max: usize, dns_1035: bool) -> Option<String> {
    let shape_ok = |first_ok: bool| {
        first_ok
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.ends_with('-')
    };
    let first = name.bytes().next();
    if name.len() > max {
        Some(format!(
            "must be at most {max} characters: child objects append a suffix such as -prometheus"
        ))
    } else if dns_1035 && !shape_ok(first.is_some_and(|b| b.is_ascii_lowercase())) {
        Some(
            "must be an RFC 1035 label (lower-case letters, digits and '-', starting with a letter and ending with a letter or digit): it prefixes Service names"
                .into(),
        )
    } else if !dns_1035 && !shape_ok(first.is_some_and(|b| b.is_ascii_alphanumeric())) {
        Some("must be an RFC 1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit)".into())
    } else {
        None
    }
}
