//! The pure builders through `render`: snapshots of the examples, every component on every
//! network, Pod Security "restricted", secrets kept out of plain objects, determinism.

use std::collections::BTreeSet;

use blocksight_operator::crd::{BlockSight, Network};
use blocksight_operator::desired::{self, BuildSettings, Child};
use blocksight_operator::render::{self, OutputFormat};
use blocksight_operator::validate::{self, ValidBlockSight};
use serde_json::Value;

const REGTEST: &str = include_str!("../../examples/regtest.yaml");
const MAINNET: &str = include_str!("../../examples/mainnet.yaml");

fn render(yaml: &str) -> String {
    render::render(yaml, OutputFormat::Yaml, false, &BuildSettings::default()).expect("renders")
}

fn valid(yaml: &str) -> ValidBlockSight {
    let bs: BlockSight = serde_yaml::from_str(yaml).expect("YAML");
    validate::validate(&bs).expect("valid")
}

fn objects(yaml: &str) -> Vec<Value> {
    desired::build(&valid(yaml), &BuildSettings::default())
        .children
        .iter()
        .map(Child::to_value)
        .collect()
}

fn on(network: Network) -> String {
    format!(
        "apiVersion: blocksight.live/v1alpha1\nkind: BlockSight\nmetadata: {{name: n, namespace: ns}}\nspec: {{network: {network}}}\n"
    )
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn pod_specs(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter_map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap().to_owned();
            match o["kind"].as_str() {
                Some("StatefulSet" | "Deployment") => Some((name, &o["spec"]["template"]["spec"])),
                Some("CronJob") => {
                    Some((name, &o["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
                }
                _ => None,
            }
        })
        .collect()
}

/// The example snapshots keep the files they had when this module was a test binary of its
/// own, tests/snapshots/render__<name>.snap (insta's default here would be
/// tests/offline/snapshots/offline__render__<name>.snap).
fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[test]
fn regtest_example_snapshot() {
    let _snapshots = snapshot_settings().bind_to_scope();
    insta::assert_snapshot!("render__regtest", render(REGTEST));
}

#[test]
fn mainnet_example_snapshot() {
    let _snapshots = snapshot_settings().bind_to_scope();
    insta::assert_snapshot!("render__mainnet", render(MAINNET));
}

#[test]
fn render_is_deterministic_and_json_matches_yaml() {
    assert_eq!(render(MAINNET), render(MAINNET));
    let json = render::render(
        MAINNET,
        OutputFormat::Json,
        false,
        &BuildSettings::default(),
    )
    .unwrap();
    let list: Value = serde_json::from_str(&json).unwrap();
    let from_yaml: Vec<Value> = serde_yaml::Deserializer::from_str(&render(MAINNET))
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap(), &from_yaml);
}

#[test]
fn every_network_gets_its_ports_chain_and_sizes() {
    let expectations = [
        (Network::Mainnet, "main", 8332, 8333, "bitcoin", "1Ti"),
        (Network::Testnet, "test", 18332, 18333, "testnet", "300Gi"),
        (
            Network::Testnet4,
            "testnet4",
            48332,
            48333,
            "testnet4",
            "100Gi",
        ),
        (Network::Signet, "signet", 38332, 38333, "signet", "50Gi"),
        (Network::Regtest, "regtest", 18443, 18444, "regtest", "5Gi"),
    ];
    for (network, chain, rpc, p2p, electrs_network, size) in expectations {
        let objects = objects(&on(network));
        let conf = find(&objects, "ConfigMap", "n-bitcoind-config")["data"]["bitcoin.conf"]
            .as_str()
            .unwrap();
        assert!(
            conf.contains(&format!("chain={chain}\n")),
            "{network}: {conf}"
        );
        assert!(
            conf.contains(&format!("[{chain}]\n")),
            "{network}: options in the network section"
        );
        assert!(
            conf.contains(&format!("rpcport={rpc}\n"))
                && conf.contains(&format!("bind=0.0.0.0:{p2p}\n"))
        );
        assert!(
            conf.contains("rpcworkqueue=64\n")
                && conf.contains("zmqpubrawblock=tcp://0.0.0.0:28332\n")
        );

        let service = find(&objects, "Service", "n-bitcoind");
        let ports: BTreeSet<i64> = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_i64().unwrap())
            .collect();
        assert_eq!(
            ports,
            BTreeSet::from([rpc, p2p, 28332, 28333, 28334]),
            "{network}"
        );

        let bitcoind = find(&objects, "StatefulSet", "n-bitcoind");
        assert_eq!(
            bitcoind["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            size
        );
        assert!(
            bitcoind["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap()
                >= 600
        );
        let container = &bitcoind["spec"]["template"]["spec"]["containers"][0];
        assert!(
            container["startupProbe"]["failureThreshold"]
                .as_i64()
                .unwrap()
                * container["startupProbe"]["periodSeconds"].as_i64().unwrap()
                >= 3600,
            "startup probe tolerates a long index load"
        );

        let electrs = find(&objects, "StatefulSet", "n-electrs");
        let env = electrs["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned().unwrap();
        assert_eq!(var("ELECTRS_NETWORK")["value"], electrs_network);
        assert_eq!(
            var("ELECTRS_DAEMON_RPC_ADDR")["value"],
            format!("n-bitcoind:{rpc}")
        );
        assert_eq!(
            var("ELECTRS_AUTH")["valueFrom"]["secretKeyRef"]["name"],
            "n-bitcoind-rpc"
        );

        let api = find(&objects, "Deployment", "n-api");
        let env = api["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let names: BTreeSet<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
        for wired in [
            "DATABASE_URL",
            "REDIS_URL",
            "ELECTRUM_URL",
            "BITCOIN_RPC_URL",
            "BITCOIN_RPC_USER",
            "BITCOIN_RPC_PASSWORD",
            "ZMQ_RAWBLOCK_URL",
            "ZMQ_RAWTX_URL",
            "ZMQ_HASHBLOCK_URL",
            "BLOCKSIGHT_NETWORK",
        ] {
            assert!(names.contains(wired), "{network}: API lacks {wired}");
        }
    }
}

#[test]
fn mainnet_memory_is_sized_above_dbcache_and_regtest_fits_a_laptop() {
    use blocksight_operator::validate::parse_quantity;
    let memory = |v: &ValidBlockSight, which: &str| {
        let r = &v.bitcoind.resources;
        let map = if which == "limit" {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        };
        parse_quantity(&map.unwrap()["memory"].0).unwrap()
    };
    let mainnet = valid(&on(Network::Mainnet));
    assert_eq!(mainnet.bitcoind.dbcache_mib, 4096);
    assert!(memory(&mainnet, "request") > 4096.0 * 1024.0 * 1024.0 * 1.25);
    assert!(memory(&mainnet, "limit") > memory(&mainnet, "request"));
    let regtest = valid(&on(Network::Regtest));
    let total_requests: f64 = desired::build(&regtest, &BuildSettings::default())
        .children
        .iter()
        .map(Child::to_value)
        .filter(|o| o["kind"] == "StatefulSet" || o["kind"] == "Deployment")
        .flat_map(|o| {
            o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|c| parse_quantity(c["resources"]["requests"]["memory"].as_str().unwrap()).unwrap())
        .sum();
    assert!(
        total_requests < 3.0 * 1024.0 * 1024.0 * 1024.0,
        "regtest requests {total_requests} bytes"
    );
}

/// Pod Security Standard "restricted", checked on every pod the operator renders.
#[test]
fn every_pod_passes_the_restricted_pod_security_standard() {
    for yaml in [
        REGTEST.to_owned(),
        MAINNET.to_owned(),
        on(Network::Testnet),
        on(Network::Signet),
    ] {
        for (name, pod) in pod_specs(&objects(&yaml)) {
            let pod_sc = &pod["securityContext"];
            assert_eq!(pod_sc["runAsNonRoot"], true, "{name}");
            assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
            assert!(pod_sc["runAsUser"].as_i64().unwrap() > 0, "{name}");
            assert_eq!(
                pod["automountServiceAccountToken"], false,
                "{name}: no API token where none is needed"
            );
            assert!(
                pod.get("hostNetwork").is_none()
                    && pod.get("hostPID").is_none()
                    && pod.get("hostIPC").is_none()
            );
            for volume in pod["volumes"].as_array().into_iter().flatten() {
                assert!(volume.get("hostPath").is_none(), "{name}");
            }
            let init = pod["initContainers"].as_array().into_iter().flatten();
            for container in pod["containers"].as_array().unwrap().iter().chain(init) {
                let sc = &container["securityContext"];
                let cname = container["name"].as_str().unwrap();
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}/{cname}");
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{name}/{cname}"
                );
                assert!(sc["capabilities"].get("add").is_none(), "{name}/{cname}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}/{cname}");
                assert!(
                    sc.get("privileged").is_none_or(|p| p == false),
                    "{name}/{cname}"
                );
                let resources = &container["resources"];
                for key in ["cpu", "memory"] {
                    assert!(
                        resources["requests"].get(key).is_some()
                            && resources["limits"].get(key).is_some(),
                        "{name}/{cname}: {key}"
                    );
                }
            }
        }
    }
}

/// Secrets never appear in ConfigMaps, args, env values or annotations: every generated value
/// is searched for in every non-Secret object.
#[test]
fn generated_secret_values_appear_only_in_secrets() {
    for yaml in [REGTEST, MAINNET] {
        let valid = valid(yaml);
        let secrets = desired::secrets::generate(&valid, &mut rand::rng());
        let values: Vec<String> = secrets
            .iter()
            .flat_map(|s| s.string_data.clone().unwrap_or_default().into_values())
            .flat_map(|v| {
                // Each value and each password inside a URL or config line.
                let mut parts = vec![v.clone()];
                parts.extend(
                    v.split([':', '@', '$', ' ', '\n', '/'])
                        .filter(|p| p.len() >= 20)
                        .map(str::to_owned),
                );
                parts
            })
            .filter(|v| v.len() >= 20)
            .collect();
        assert!(values.len() >= 6, "found the generated passwords");
        let rendered =
            render::render(yaml, OutputFormat::Json, true, &BuildSettings::default()).unwrap();
        let list: Value = serde_json::from_str(&rendered).unwrap();
        let plain: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] != "Secret")
            .map(|o| o.to_string())
            .collect();
        // The render draws its own values: check those, not only ours.
        let rendered_values: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "Secret")
            .flat_map(|o| {
                o["stringData"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|v| v.len() >= 20)
            .collect();
        assert!(!rendered_values.is_empty());
        for value in values.iter().chain(&rendered_values) {
            for object in &plain {
                assert!(
                    !object.contains(value.as_str()),
                    "a secret value leaked into {object:.80}"
                );
            }
        }
    }
}

#[test]
fn the_rpcauth_line_verifies_the_generated_password() {
    let valid = valid(REGTEST);
    let secrets = desired::secrets::generate(&valid, &mut rand::rng());
    let rpc = secrets[0].string_data.as_ref().unwrap();
    let line = rpc["rpcauth.conf"].trim().strip_prefix("rpcauth=").unwrap();
    let (user, rest) = line.split_once(':').unwrap();
    let (salt, _) = rest.split_once('$').unwrap();
    assert_eq!(user, rpc["rpc-user"]);
    assert_eq!(
        desired::secrets::rpcauth(user, &rpc["rpc-password"], salt),
        line
    );
    assert_eq!(
        rpc["electrs-auth"],
        format!("{user}:{}", rpc["rpc-password"])
    );
}

#[test]
fn disabled_components_and_external_postgres_are_not_built() {
    let yaml = "apiVersion: blocksight.live/v1alpha1\nkind: BlockSight\nmetadata: {name: n}\nspec:\n  network: signet\n  electrs: {enabled: false}\n  postgres: {external: {secretRef: {name: db, key: uri}}}\n  monitoring: {prometheus: {enabled: false}, grafana: {enabled: false}}\n";
    let objects = objects(yaml);
    let names: BTreeSet<String> = objects
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    for gone in [
        "n-electrs",
        "n-postgres",
        "n-prometheus",
        "n-grafana",
        "n-postgres-init",
    ] {
        assert!(!names.contains(gone), "{gone} should not exist");
    }
    let api = find(&objects, "Deployment", "n-api");
    let env = api["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    let db = env.iter().find(|e| e["name"] == "DATABASE_URL").unwrap();
    assert_eq!(
        db["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "db", "key": "uri"})
    );
    assert!(!env.iter().any(|e| e["name"] == "ELECTRUM_URL"));
}

#[test]
fn autoscaling_hands_replicas_to_the_hpa_and_user_env_overrides_wiring() {
    let mainnet = objects(MAINNET);
    let api = find(&mainnet, "Deployment", "mainnet-api");
    assert!(
        api["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    let hpa = find(&mainnet, "HorizontalPodAutoscaler", "mainnet-api");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    let ingress = find(&mainnet, "Ingress", "mainnet-api");
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt-production"
    );
    assert_eq!(
        ingress["spec"]["tls"][0]["secretName"],
        "blocksight-api-tls"
    );

    let yaml = "apiVersion: blocksight.live/v1alpha1\nkind: BlockSight\nmetadata: {name: n}\nspec:\n  network: regtest\n  api:\n    env: [{name: REDIS_URL, value: redis://elsewhere:6379}, {name: X, value: a}, {name: X, value: b}]\n";
    let custom = objects(yaml);
    let env =
        find(&custom, "Deployment", "n-api")["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .clone();
    let redis: Vec<&Value> = env.iter().filter(|e| e["name"] == "REDIS_URL").collect();
    assert_eq!(redis.len(), 1);
    assert_eq!(redis[0]["value"], "redis://elsewhere:6379");
    let x: Vec<&Value> = env.iter().filter(|e| e["name"] == "X").collect();
    assert_eq!(
        x.len(),
        1,
        "duplicate names would be rejected by the API server"
    );
    assert_eq!(x[0]["value"], "b");
}

#[test]
fn deletion_policy_decides_what_outlives_the_blocksight() {
    let retain = valid(&format!(
        "{}  deletionPolicy: Retain\n",
        on(Network::Signet).replace("spec: {network: signet}", "spec:\n  network: signet")
    ));
    let mut uid_bs: BlockSight = serde_yaml::from_str(&on(Network::Signet)).unwrap();
    uid_bs.metadata.uid = Some("u".into());
    let with_owner = validate::validate(&uid_bs).unwrap();
    assert!(with_owner.owner.is_some());
    // Retain: PVCs kept, credentials not owned (a recreated BlockSight adopts both).
    let objects: Vec<Value> = desired::build(&with_owner, &BuildSettings::default())
        .children
        .iter()
        .map(Child::to_value)
        .collect();
    let bitcoind = find(&objects, "StatefulSet", "n-bitcoind");
    assert_eq!(
        bitcoind["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    assert_eq!(
        bitcoind["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
        "Retain"
    );
    assert!(bitcoind["metadata"]["ownerReferences"][0]["uid"] == "u");
    let secrets = desired::secrets::generate(&with_owner, &mut rand::rng());
    assert!(
        secrets
            .iter()
            .all(|s| s.metadata.owner_references.is_none())
    );
    assert_eq!(
        retain.deletion_policy,
        blocksight_operator::crd::DeletionPolicy::Retain
    );

    uid_bs.spec.deletion_policy = blocksight_operator::crd::DeletionPolicy::Delete;
    let delete = validate::validate(&uid_bs).unwrap();
    let objects: Vec<Value> = desired::build(&delete, &BuildSettings::default())
        .children
        .iter()
        .map(Child::to_value)
        .collect();
    assert_eq!(
        find(&objects, "StatefulSet", "n-bitcoind")["spec"]["persistentVolumeClaimRetentionPolicy"]
            ["whenDeleted"],
        "Delete"
    );
    let secrets = desired::secrets::generate(&delete, &mut rand::rng());
    assert!(secrets.iter().all(|s| {
        s.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o[0].uid == "u")
    }));
}

#[test]
fn config_changes_roll_pods_and_nothing_else_does() {
    let base = objects(&on(Network::Signet));
    let hash = |objects: &[Value], kind: &str, name: &str| {
        find(objects, kind, name)["spec"]["template"]["metadata"]["annotations"]["blocksight.live/config-hash"].clone()
    };
    let bigger = objects(&on(Network::Signet).replace(
        "spec: {network: signet}",
        "spec: {network: signet, bitcoind: {dbcache: 2048}}",
    ));
    assert_ne!(
        hash(&base, "StatefulSet", "n-bitcoind"),
        hash(&bigger, "StatefulSet", "n-bitcoind"),
        "dbcache is in bitcoin.conf"
    );
    assert_eq!(
        hash(&base, "StatefulSet", "n-redis"),
        hash(&bigger, "StatefulSet", "n-redis")
    );
}

#[test]
fn the_operator_rbac_covers_every_kind_it_applies() {
    let plural = |kind: &str| match kind {
        "ConfigMap" => ("", "configmaps"),
        "Service" => ("", "services"),
        "StatefulSet" => ("apps", "statefulsets"),
        "Deployment" => ("apps", "deployments"),
        "HorizontalPodAutoscaler" => ("autoscaling", "horizontalpodautoscalers"),
        "PodDisruptionBudget" => ("policy", "poddisruptionbudgets"),
        "Ingress" => ("networking.k8s.io", "ingresses"),
        "NetworkPolicy" => ("networking.k8s.io", "networkpolicies"),
        "ServiceAccount" => ("", "serviceaccounts"),
        "PersistentVolumeClaim" => ("", "persistentvolumeclaims"),
        "CronJob" => ("batch", "cronjobs"),
        other => panic!("unmapped kind {other}"),
    };
    let kinds: BTreeSet<String> = objects(MAINNET)
        .iter()
        .chain(objects(REGTEST).iter())
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.len() >= 7);
    for kind in kinds {
        let (group, resource) = plural(&kind);
        for verb in ["list", "watch", "patch", "delete"] {
            assert!(
                blocksight_operator::rbac::allows(group, resource, verb),
                "RBAC lacks {verb} {group}/{resource}"
            );
        }
    }
    for verb in ["list", "watch", "create"] {
        assert!(blocksight_operator::rbac::allows("", "secrets", verb));
    }
    assert!(blocksight_operator::rbac::allows(
        "blocksight.live",
        "blocksights/status",
        "patch"
    ));
    assert!(blocksight_operator::rbac::allows(
        "events.k8s.io",
        "events",
        "create"
    ));
    assert!(
        !blocksight_operator::rbac::allows("", "pods", "delete"),
        "least privilege"
    );
}

#[test]
fn prometheus_operator_objects_follow_the_mode_and_the_cluster() {
    let kinds = |yaml: &str, crds: bool| -> Vec<(String, String)> {
        let settings = BuildSettings {
            prometheus_operator_crds: crds,
            ..Default::default()
        };
        desired::build(&valid(yaml), &settings)
            .children
            .iter()
            .map(Child::to_value)
            .filter(|o| o["apiVersion"] == "monitoring.coreos.com/v1")
            .map(|o| {
                (
                    o["kind"].as_str().unwrap().to_owned(),
                    o["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let auto = on(Network::Signet);
    assert_eq!(
        kinds(&auto, false),
        vec![],
        "auto without the CRDs: nothing"
    );
    let expected: Vec<(String, String)> = [
        ("ServiceMonitor", "n-redis"),
        ("ServiceMonitor", "n-electrs"),
        ("ServiceMonitor", "n-postgres"),
        ("ServiceMonitor", "n-grafana"),
        ("PodMonitor", "n-api"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(kinds(&auto, true), expected);
    let enabled = auto.replace(
        "spec: {network: signet}",
        "spec: {network: signet, monitoring: {prometheusOperator: enabled}}",
    );
    assert_eq!(
        kinds(&enabled, false),
        expected,
        "enabled: even before the CRDs exist"
    );
    let disabled = auto.replace(
        "spec: {network: signet}",
        "spec: {network: signet, monitoring: {prometheusOperator: disabled}}",
    );
    assert_eq!(kinds(&disabled, true), vec![]);

    let objects: Vec<Value> = desired::build(
        &valid(&auto),
        &BuildSettings {
            prometheus_operator_crds: true,
            ..Default::default()
        },
    )
    .children
    .iter()
    .map(Child::to_value)
    .collect();
    let postgres = find(&objects, "ServiceMonitor", "n-postgres");
    assert_eq!(postgres["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        postgres["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "postgres"
    );
    assert_eq!(
        postgres["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "blocksight-operator"
    );
    // The scraped port exists on the Service the monitor selects.
    let service = find(&objects, "Service", "n-postgres");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics")
    );
}

#[test]
fn user_managed_credentials_replace_generated_ones_everywhere() {
    let yaml = "apiVersion: blocksight.live/v1alpha1\nkind: BlockSight\nmetadata: {name: n, namespace: ns}\nspec:\n  network: signet\n  credentials:\n    bitcoindRpc: {secretName: vault-rpc}\n    postgres: {secretName: vault-pg}\n    redis: {secretName: vault-redis}\n    grafana: {secretName: vault-grafana}\n";
    let provided = valid(yaml);
    assert_eq!(
        desired::secrets::generated_names(&provided),
        Vec::<String>::new()
    );
    assert!(
        desired::secrets::generate(&provided, &mut rand::rng()).is_empty(),
        "nothing to generate"
    );
    let objects = objects(yaml);
    let text = serde_json::to_string(&objects).unwrap();
    for generated in [
        "n-bitcoind-rpc",
        "n-postgres-credentials",
        "n-redis-credentials",
        "n-grafana-credentials",
    ] {
        assert!(!text.contains(generated), "{generated} is still referenced");
    }
    for (kind, name, secret) in [
        ("StatefulSet", "n-bitcoind", "vault-rpc"),
        ("StatefulSet", "n-electrs", "vault-rpc"),
        ("StatefulSet", "n-postgres", "vault-pg"),
        ("StatefulSet", "n-redis", "vault-redis"),
        ("Deployment", "n-api", "vault-redis"),
        ("Deployment", "n-grafana", "vault-grafana"),
    ] {
        assert!(
            find(&objects, kind, name)
                .to_string()
                .contains(&format!("\"{secret}\"")),
            "{kind} {name} reads {secret}"
        );
    }
    // Only one provided: the rest is generated as usual.
    let partly = valid(&yaml.replace("    postgres: {secretName: vault-pg}\n    redis: {secretName: vault-redis}\n    grafana: {secretName: vault-grafana}\n", ""));
    let names: Vec<String> = desired::secrets::generate(&partly, &mut rand::rng())
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "n-postgres-credentials",
            "n-redis-credentials",
            "n-grafana-credentials"
        ]
    );
}

/// Strings that a YAML 1.1 reader (kubectl's sigs.k8s.io/yaml, go-yaml v2; PyYAML) or a YAML
/// 1.2 reader would resolve to something else than the string, or that are YAML syntax:
/// `render` must quote (or block-quote) every one of them, in keys as in values.
#[rustfmt::skip]
const TRICKY_STRINGS: &[&str] = &[
    // YAML 1.1 booleans (and their capitalisations), YAML 1.2 booleans, nulls.
    "yes", "no", "on", "off", "y", "n", "Y", "N", "Yes", "NO", "On", "OFF", "true", "False",
    "TRUE", "null", "Null", "NULL", "~", "",
    // Numbers: integers, floats, exponents, bases (1.1 and 1.2 spellings), sexagesimal,
    // infinities, NaN, underscores, signs.
    "1", "0", "-1", "+1", "1.0", "1e3", "1E3", "-2E+05", ".5", "1.", "0x1F", "0o17", "012",
    "0b101", "1_000", "190:20:30", "1:20", "-1:20", ".inf", "-.inf", "+.INF", ".nan",
    ".NaN", "inf", "nan", "8000", "5432",
    // Timestamps, merge key, value key.
    "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "<<", "=",
    // Indicators and syntax.
    "-", "- x", "--", "---", "--- x", "...", "?", "? x", ":", "::/0", "a: b", "a:",
    "key: value", "#", "#x", "a #b", "a#b", "*", "*alias", "&anchor", "!tag", "!!str",
    "%YAML", "@daily", "`cmd`", "{", "{a: 1}", "[", "[a]", "]", "}", ",", ",x", "|", "|-",
    ">", ">-", "'", "''", "\"", "\"x\"", "\\", "a\\nb", "50%", "x,y", "[::]:8332",
    // Whitespace.
    " ", "  ", " leading", "trailing ", "\t", "tab\there", " both ",
    // Multi-line: literal blocks (trailing newline, none, several; leading spaces and blank
    // lines; trailing spaces on a line; CRLF, which a block cannot hold).
    "line1\nline2\n", "line1\nline2", "line1\n\n\n", "\nleading newline",
    "  indented\nnext\n", "trailing spaces   \nnext", "crlf\r\nline", "yes\nno\n",
    "# comment\nkey: value\n", "---\n...\n", " \n", "\n",
    // Unicode and control characters.
    "é", "日本", "\u{feff}bom", "nul\0byte", "bell\u{7}", "nel\u{85}x", "ls\u{2028}x",
];

/// The YAML 1.1 spellings kubectl reads as booleans or null: never plain in the output.
#[rustfmt::skip]
const YAML11_NON_STRINGS: &[&str] = &[
    "yes", "no", "on", "off", "y", "n", "Y", "N", "Yes", "NO", "On", "OFF", "true", "False",
    "TRUE", "null", "Null", "NULL", "~",
];

fn tricky_map() -> std::collections::BTreeMap<String, String> {
    TRICKY_STRINGS
        .iter()
        .map(|s| ((*s).to_owned(), (*s).to_owned()))
        .collect()
}

#[test]
fn every_string_that_would_read_back_as_another_type_is_quoted() {
    let map = tricky_map();
    assert_eq!(map.len(), TRICKY_STRINGS.len(), "no duplicates");
    // The same strings as keys and values of a map, items of a list, and inside a typed
    // Kubernetes object (ConfigMap data, labels, an env value, args) as render prints them.
    let list: Vec<&str> = TRICKY_STRINGS.to_vec();
    let config_map = k8s_openapi::api::core::v1::ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("tricky".into()),
            labels: Some(map.clone()),
            annotations: Some(map.clone()),
            ..Default::default()
        },
        data: Some(map.clone()),
        ..Default::default()
    };
    let mut text = String::new();
    desired::write_yaml(&mut text, &map);
    let back: std::collections::BTreeMap<String, String> =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, map, "{text}");
    // As strings, not merely equal after a conversion: every value is a YAML string.
    let back: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for (key, value) in back.as_mapping().unwrap() {
        assert!(key.is_string() && value.is_string(), "{key:?}: {value:?}");
    }

    let mut listed = String::new();
    desired::write_yaml(&mut listed, &list);
    let back: Vec<String> = serde_yaml::from_str(&listed).unwrap();
    assert_eq!(back, list, "{listed}");

    let mut object = String::new();
    desired::write_yaml(&mut object, &config_map);
    let back: k8s_openapi::api::core::v1::ConfigMap = serde_yaml::from_str(&object).unwrap();
    assert_eq!(back, config_map, "{object}");

    // YAML 1.1 (kubectl): serde_yaml reads YAML 1.2, where `yes` is a string anyway, so look
    // at the text: no YAML 1.1 boolean or null is plain, as a key or as a value.
    for s in YAML11_NON_STRINGS {
        let quoted = [format!("\"{s}\""), format!("'{s}'")];
        assert!(
            text.lines()
                .any(|l| quoted.iter().any(|q| *l == format!("{q}: {q}"))),
            "{s:?} is not quoted as a key and a value:\n{text}"
        );
        assert!(
            listed
                .lines()
                .any(|l| quoted.iter().any(|q| *l == format!("- {q}"))),
            "{s:?} is not quoted in a list:\n{listed}"
        );
        assert_eq!(
            object
                .lines()
                .filter(|l| quoted.iter().any(|q| l.trim_start() == format!("{q}: {q}")))
                .count(),
            3,
            "{s:?} is not quoted in the labels, annotations and data:\n{object}"
        );
    }
    // Multi-line strings are literal blocks (readable ConfigMap files), not escaped lines.
    assert!(
        text.contains("\"# comment\\nkey: value\\n\": |\n  # comment\n  key: value\n"),
        "{text}"
    );
}

/// The reader that matters most, when it is installed: kubectl itself (sigs.k8s.io/yaml,
/// go-yaml v2 with YAML 1.1 booleans), offline (`label --local`), on a ConfigMap whose data
/// keys and values are the tricky strings. A `yes` read as a boolean would come back as
/// `true`, a key `on` as "true".
#[test]
fn kubectl_reads_the_tricky_strings_back_as_the_same_strings() {
    let Ok(version) = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        eprintln!("SKIPPED: kubectl is not installed");
        return;
    };
    assert!(version.status.success());
    let map = tricky_map();
    let config_map = k8s_openapi::api::core::v1::ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("tricky".into()),
            annotations: Some(map.clone()),
            ..Default::default()
        },
        data: Some(map.clone()),
        ..Default::default()
    };
    let mut text = String::new();
    desired::write_yaml(&mut text, &config_map);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tricky.yaml");
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new("kubectl")
        .args(["label", "--local", "-o", "json", "-f"])
        .arg(&file)
        .arg("checked=true")
        .env("KUBECONFIG", dir.path().join("none"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = serde_json::to_value(&map).unwrap();
    assert_eq!(read["data"], expected, "{text}");
    assert_eq!(read["metadata"]["annotations"], expected, "{text}");
}

/// Every child of every example (examples/*.yaml, with and without the prometheus-operator
/// CRDs) read back from its YAML is exactly the object the controller applies.
#[test]
fn every_rendered_child_reads_back_as_the_applied_object() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2);
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            let bs: BlockSight = serde_json::from_value(value).unwrap();
            let valid = validate::validate(&bs).unwrap();
            for prometheus_operator_crds in [false, true] {
                let settings = BuildSettings {
                    prometheus_operator_crds,
                    ..Default::default()
                };
                for child in desired::build(&valid, &settings).children {
                    let yaml = child.to_yaml();
                    let back: Value = serde_yaml::from_str(&yaml)
                        .unwrap_or_else(|e| panic!("{}: {e}\n{yaml}", file.display()));
                    assert_eq!(
                        back,
                        child.to_value(),
                        "{}: {} {}",
                        file.display(),
                        child.kind(),
                        child.name()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 100, "{checked} children");
}

/// A file of `count` BlockSights (both examples, renamed, with empty documents between some)
/// as `render -f` reads it.
fn many_blocksights(count: usize) -> String {
    (0..count)
        .map(|i| {
            let (example, name) = if i % 3 == 2 {
                (MAINNET, "name: mainnet\n")
            } else {
                (REGTEST, "name: dev\n")
            };
            let doc = example.replace(name, &format!("name: bs-{i:03}\n"));
            let empty = if i % 7 == 3 { "---\n" } else { "" };
            format!("---\n{doc}{empty}")
        })
        .collect()
}

fn rendering(text: &str, output: OutputFormat, threads: usize) -> String {
    let settings = BuildSettings::default();
    let mut out = Vec::new();
    let options = render::RenderOptions {
        output,
        with_secrets: false,
        backup_jobs: true,
        threads,
    };
    render::Rendering::new(text, options, &settings)
        .unwrap()
        .write_to(&mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// Documents are rendered on every core, a few at a time: the output is the same, byte for
/// byte, on any number of threads, and it is each document's output in file order; the JSON
/// List is what serde_json prints for the whole List at once.
#[test]
fn parallel_render_prints_the_sequential_output_byte_for_byte() {
    let settings = BuildSettings::default();
    let text = many_blocksights(23);
    for output in [OutputFormat::Yaml, OutputFormat::Json] {
        let sequential = rendering(&text, output, 1);
        for threads in [2, 3, 8] {
            assert!(
                rendering(&text, output, threads) == sequential,
                "{output:?} on {threads} threads differs from one thread"
            );
        }
        assert!(render::render_with(&text, output, false, true, &settings).unwrap() == sequential);

        // Each document alone, in file order.
        let alone: Vec<String> = text
            .split("---\n")
            .filter(|doc| !doc.trim().is_empty())
            .map(|doc| render::render_with(doc, output, false, true, &settings).unwrap())
            .collect();
        assert_eq!(alone.len(), 23);
        match output {
            OutputFormat::Yaml => assert!(alone.concat() == sequential),
            OutputFormat::Json => {
                let items: Vec<Value> = alone
                    .iter()
                    .flat_map(|list| {
                        let list: Value = serde_json::from_str(list).unwrap();
                        list["items"].as_array().unwrap().clone()
                    })
                    .collect();
                let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
                let whole = format!("{}\n", serde_json::to_string_pretty(&list).unwrap());
                assert!(whole == sequential, "the List as serde_json prints it");
            }
        }
    }
}

/// Validation runs on every core too, but the error is the one a sequential read meets
/// first: the first bad document in file order, numbered as in the file.
#[test]
fn the_first_bad_document_of_a_large_file_is_named() {
    let settings = BuildSettings::default();
    let docs: Vec<String> = many_blocksights(30)
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let bad_network = |i: usize| {
        docs[i]
            .replace("network: regtest", "network: bitcoincash")
            .replace("network: mainnet", "network: bitcoincash")
    };
    let file = |replace: &[(usize, String)]| -> String {
        docs.iter()
            .enumerate()
            .map(|(i, doc)| {
                let doc = replace
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map_or(doc.as_str(), |(_, d)| d.as_str());
                format!("---\n{doc}")
            })
            .collect()
    };
    let error = |text: &str| {
        render::render(text, OutputFormat::Yaml, false, &settings)
            .unwrap_err()
            .to_string()
    };
    // Two invalid documents and a broken one after them: the first invalid one is named.
    let text = file(&[
        (17, bad_network(17)),
        (25, bad_network(25)),
        (28, "kind: [\n".into()),
    ]);
    let message = error(&text);
    assert!(
        message.starts_with("document 18 (BlockSight bs-017): invalid: spec.network"),
        "{message}"
    );
    // A document that is not a BlockSight before an invalid one.
    let text = file(&[(9, "kind: Deployment\n".into()), (20, bad_network(20))]);
    assert_eq!(
        error(&text),
        "document 10: kind \"Deployment\" is not BlockSight"
    );
    // An invalid document before one that is not YAML.
    let text = file(&[(5, bad_network(5)), (10, "kind: [\n".into())]);
    assert!(
        error(&text).starts_with("document 6 (BlockSight bs-005): invalid"),
        "{}",
        error(&text)
    );
    // Only the broken one: named with its number.
    let text = file(&[(10, "kind: [\n".into())]);
    assert!(
        error(&text).starts_with("document 11: not YAML"),
        "{}",
        error(&text)
    );
}
