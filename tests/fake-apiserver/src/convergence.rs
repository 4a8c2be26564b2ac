//! What "converged" means for a BlockSight in the fake, judged with the operator's own pure
//! builders: every child it should apply exists with the content hash the builders give,
//! nothing else carries its instance label, its credentials exist, and its status describes
//! the current generation with every workload ready.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::FakeApiServer;
use blocksight_operator::crd::BlockSight;
use blocksight_operator::desired::{self, BuildSettings, Cache, ChildKind, Gates};
use blocksight_operator::names::SPEC_HASH_ANNOTATION;
use blocksight_operator::validate;

/// The REST resource (plural) of a child kind, from the operator's child table.
pub fn plural(kind: ChildKind) -> &'static str {
    kind.info().plural
}

/// One child the operator should have applied.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedChild {
    pub resource: &'static str,
    pub name: String,
    pub hash: String,
}

/// What the operator should make for a stored BlockSight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub children: Vec<ExpectedChild>,
    /// Generated credentials (created once, never applied).
    pub secrets: BTreeSet<String>,
}

impl Expected {
    /// The children whose content differs from `before` (changed, added or no longer
    /// built), as (resource, name).
    pub fn changed_since(&self, before: &Expected) -> BTreeSet<(&'static str, String)> {
        let old: BTreeSet<&ExpectedChild> = before.children.iter().collect();
        let new: BTreeSet<&ExpectedChild> = self.children.iter().collect();
        old.symmetric_difference(&new)
            .map(|c| (c.resource, c.name.clone()))
            .collect()
    }
}

/// The children and credentials of `blocksight` (as stored, with its uid) with the API held
/// at zero replicas: what the operator builds while its chain probes have not reported a
/// ready database and cache (always, with --no-probes).
pub fn expected(blocksight: &Value, settings: &BuildSettings) -> Result<Expected, String> {
    let bs: BlockSight = serde_json::from_value(blocksight.clone()).map_err(|e| e.to_string())?;
    let valid = validate::validate(&bs).map_err(|e| e.to_string())?;
    let desired = desired::build_gated(&valid, settings, Gates { api_serving: false });
    let children = desired
        .children
        .iter()
        .map(|c| ExpectedChild {
            resource: plural(c.kind()),
            name: c.name().to_owned(),
            hash: c.spec_hash().to_owned(),
        })
        .collect();
    let secrets = desired::secrets::generate(&valid, &mut rand::rng())
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    Ok(Expected { children, secrets })
}

/// Child resources the operator may write for a BlockSight (the child table's rows but the
/// `Custom` ones: the fake serves no prometheus-operator by default).
pub static CHILD_RESOURCES: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| {
        ChildKind::ALL
            .iter()
            .filter(|k| k.info().cache != Cache::Custom)
            .map(|k| k.info().plural)
            .collect()
    });

/// Ok when the BlockSight `name` is converged, else what is still missing.
pub fn check(
    fake: &FakeApiServer,
    namespace: &str,
    name: &str,
    expected: &Expected,
) -> Result<(), String> {
    check_state(fake, namespace, name, expected)?;
    let extra = unexpected_children(fake, namespace, name, expected);
    if !extra.is_empty() {
        return Err(format!("{name}: unexpected children {extra:?}"));
    }
    Ok(())
}

/// [`check`] without looking for unexpected children (which lists every child: too slow
/// to poll for thousands of BlockSights; the benchmark counts objects once instead).
pub fn check_state(
    fake: &FakeApiServer,
    namespace: &str,
    name: &str,
    expected: &Expected,
) -> Result<(), String> {
    let bs = fake
        .get("blocksights", namespace, name)
        .ok_or_else(|| format!("BlockSight {name} does not exist"))?;
    let generation = bs["metadata"]["generation"].as_i64();
    let status = &bs["status"];
    if status["observedGeneration"].as_i64() != generation {
        return Err(format!(
            "{name}: status.observedGeneration {} != generation {generation:?}",
            status["observedGeneration"]
        ));
    }
    for child in &expected.children {
        let object = fake
            .get(child.resource, namespace, &child.name)
            .ok_or_else(|| format!("{} {} missing", child.resource, child.name))?;
        let hash = object["metadata"]["annotations"][SPEC_HASH_ANNOTATION].as_str();
        if hash != Some(child.hash.as_str()) {
            return Err(format!(
                "{} {}: spec hash {hash:?}, builders say {}",
                child.resource, child.name, child.hash
            ));
        }
    }
    for secret in &expected.secrets {
        if fake.get("secrets", namespace, secret).is_none() {
            return Err(format!("secret {secret} missing"));
        }
    }
    let components = status["components"]
        .as_object()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| format!("{name}: no status.components"))?;
    for (component, state) in components {
        if state["readyReplicas"] != state["desiredReplicas"] {
            return Err(format!("{name}: {component} not ready: {state}"));
        }
    }
    Ok(())
}

/// Objects labeled as `name`'s children that the builders do not produce.
pub fn unexpected_children(
    fake: &FakeApiServer,
    namespace: &str,
    name: &str,
    expected: &Expected,
) -> Vec<(&'static str, String)> {
    let mut extra = Vec::new();
    for resource in CHILD_RESOURCES.iter().chain(&["secrets"]) {
        for object in fake.list(resource, Some(namespace)) {
            let labels = &object["metadata"]["labels"];
            if labels["app.kubernetes.io/instance"].as_str() != Some(name) {
                continue;
            }
            let child = object["metadata"]["name"].as_str().unwrap_or_default();
            let known = if *resource == "secrets" {
                expected.secrets.contains(child)
            } else {
                expected
                    .children
                    .iter()
                    .any(|c| c.resource == *resource && c.name == child)
            };
            if !known {
                extra.push((*resource, child.to_owned()));
            }
        }
    }
    extra
}
