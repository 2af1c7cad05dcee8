//! The manifests as `kubectl apply -k` sees them: every install (the
//! default netlink gateway in `manifests/`, `overlays/ssh-ha`,
//! `overlays/plugin`) and `monitoring/` rendered by `kubectl kustomize`,
//! every object parsed into its Kubernetes type, each config accepted by the
//! controller in the file layout the pod gets, each Namespace labelled with
//! the Pod Security level its pod needs. (manifests.rs holds them against
//! the running controller: its requests and its metrics.)
//!
//! kubectl must be installed: without it these tests fail, they never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PodSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use nativeroute::config::Config;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");

/// What `kubectl apply -k` installs, as folders under manifests/.
const NETLINK_GATEWAY: &str = "";
const SSH_HA: &str = "overlays/ssh-ha";
const PLUGIN: &str = "overlays/plugin";
const INSTALLS: [&str; 3] = [NETLINK_GATEWAY, SSH_HA, PLUGIN];
const MONITORING: &str = "monitoring";

/// The rendered objects of one folder.
struct Rendered {
    folder: String,
    objects: Vec<Value>,
}

/// `kubectl kustomize manifests/<folder>`.
fn render(folder: &str) -> Rendered {
    render_at(&Path::new(MANIFESTS).join(folder))
}

fn render_at(dir: &Path) -> Rendered {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run kubectl ({err}): these tests render the manifests with \
                 `kubectl kustomize`; install kubectl"
            )
        });
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kubectl prints UTF-8");
    let objects = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("kubectl prints valid YAML"))
        .filter(|value| !value.is_null())
        .collect();
    Rendered {
        folder: dir.display().to_string(),
        objects,
    }
}

impl Rendered {
    fn of_kind<T: DeserializeOwned + Serialize>(&self, kind: &str) -> Vec<T> {
        self.objects
            .iter()
            .filter(|object| object["kind"].as_str() == Some(kind))
            .map(typed)
            .collect()
    }

    fn one<T: DeserializeOwned + Serialize>(&self, kind: &str) -> T {
        let mut all = self.of_kind(kind);
        assert_eq!(
            all.len(),
            1,
            "{} renders {} {kind}s",
            self.folder,
            all.len()
        );
        all.remove(0)
    }

    fn raw(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|object| object["kind"].as_str() == Some(kind))
            .collect()
    }

    fn pod_spec(&self) -> PodSpec {
        let deployment: Deployment = self.one("Deployment");
        deployment
            .spec
            .and_then(|spec| spec.template.spec)
            .expect("the Deployment has a pod spec")
    }

    fn deployment_spec(&self) -> k8s_openapi::api::apps::v1::DeploymentSpec {
        let deployment: Deployment = self.one("Deployment");
        deployment.spec.expect("the Deployment has a spec")
    }

    fn config_map(&self, name: &str) -> ConfigMap {
        self.of_kind::<ConfigMap>("ConfigMap")
            .into_iter()
            .find(|map| map.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{} renders no ConfigMap {name}", self.folder))
    }
}

/// Parses an object into its type, and refuses fields the type does not
/// know: the types skip them silently, so a misspelt field would otherwise
/// pass here and be dropped (or refused) by the API server.
fn typed<T: DeserializeOwned + Serialize>(object: &Value) -> T {
    let name = format!(
        "{} {}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    );
    let parsed: T = serde_yaml_ng::from_value(object.clone())
        .unwrap_or_else(|err| panic!("{name} does not parse: {err}"));
    let original = serde_json::to_value(object).expect("YAML converts to JSON");
    let known = serde_json::to_value(&parsed).expect("a parsed object serialises");
    assert_eq!(
        known, original,
        "{name} has fields its type does not know (left: what the type kept)"
    );
    parsed
}

fn container(spec: &PodSpec) -> &Container {
    assert_eq!(spec.containers.len(), 1, "one container");
    &spec.containers[0]
}

#[test]
fn every_install_and_monitoring_render_into_objects_of_known_types() {
    for folder in INSTALLS.into_iter().chain([MONITORING]) {
        let rendered = render(folder);
        assert!(!rendered.objects.is_empty(), "{folder} renders nothing");
        for object in &rendered.objects {
            let kind = object["kind"].as_str().unwrap_or_default();
            match kind {
                "Namespace" => drop(typed::<Namespace>(object)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(object)),
                "ClusterRole" => drop(typed::<ClusterRole>(object)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(object)),
                "Role" => drop(typed::<Role>(object)),
                "RoleBinding" => drop(typed::<RoleBinding>(object)),
                "ConfigMap" => drop(typed::<ConfigMap>(object)),
                "Secret" => drop(typed::<Secret>(object)),
                "Deployment" => drop(typed::<Deployment>(object)),
                "Service" => drop(typed::<Service>(object)),
                "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(object)),
                "PriorityClass" => drop(typed::<PriorityClass>(object)),
                // The Prometheus Operator's kinds, which k8s-openapi lacks;
                // their queries are checked against /metrics in manifests.rs.
                "ServiceMonitor" | "PrometheusRule" => assert_eq!(
                    object["apiVersion"].as_str(),
                    Some("monitoring.coreos.com/v1"),
                    "{folder}: {kind}"
                ),
                other => panic!("{folder} renders a {other:?}, a kind this test does not know"),
            }
        }
    }
}

#[test]
fn the_monitoring_objects_are_not_part_of_any_install() {
    // They need the Prometheus Operator's CRDs: an install that held them
    // would fail on a cluster without the operator.
    for folder in INSTALLS {
        let rendered = render(folder);
        for object in &rendered.objects {
            assert_ne!(
                object["apiVersion"].as_str(),
                Some("monitoring.coreos.com/v1"),
                "{folder} holds {:?}",
                object["kind"]
            );
        }
    }
}

#[test]
fn every_install_grants_the_same_rbac() {
    // The RBAC test (manifests.rs) checks the default install's rules
    // against the controller's requests; that covers the others only while
    // they are the same.
    let rbac = |folder: &str| -> Vec<serde_json::Value> {
        let rendered = render(folder);
        let mut objects: Vec<serde_json::Value> = [
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ServiceAccount",
        ]
        .iter()
        .flat_map(|kind| rendered.raw(kind))
        .map(|object| serde_json::to_value(object).expect("YAML converts to JSON"))
        .collect();
        objects.sort_by_key(|object| object.to_string());
        objects
    };
    let default = rbac(NETLINK_GATEWAY);
    assert!(!default.is_empty());
    for folder in [SSH_HA, PLUGIN] {
        assert_eq!(
            rbac(folder),
            default,
            "{folder} grants other RBAC than manifests/"
        );
    }
}

/// `--config=PATH` or `--config PATH` among the container's arguments.
fn config_path(container: &Container) -> String {
    let args = container.args.clone().unwrap_or_default();
    args.iter()
        .enumerate()
        .find_map(|(i, arg)| match arg.strip_prefix("--config") {
            Some(rest) if rest.starts_with('=') => Some(rest[1..].to_owned()),
            Some("") => args.get(i + 1).cloned(),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no --config among {args:?}"))
}

/// A pod's files as the controller would see them, under a temporary root:
/// each volume mount filled from the rendered ConfigMap or Secret (or, for a
/// Secret the user creates, a placeholder under each key the volume names),
/// plus `image_files` (placeholders for what the image holds).
fn pod_files(rendered: &Rendered, image_files: &[String]) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("a temporary folder");
    let spec = rendered.pod_spec();
    let volumes = spec.volumes.clone().unwrap_or_default();
    for mount in container(&spec).volume_mounts.clone().unwrap_or_default() {
        let volume = volumes
            .iter()
            .find(|volume| volume.name == mount.name)
            .unwrap_or_else(|| panic!("the mount {} names no volume", mount.name));
        // The files the volume holds: name → content.
        let files: BTreeMap<String, String> = if let Some(source) = &volume.config_map {
            let map = rendered.config_map(&source.name);
            let data = map.data.clone().unwrap_or_default();
            match &source.items {
                Some(items) => items
                    .iter()
                    .map(|item| (item.path.clone(), data[&item.key].clone()))
                    .collect(),
                None => data,
            }
        } else if let Some(source) = &volume.secret {
            let name = source
                .secret_name
                .clone()
                .expect("a secret volume names its Secret");
            let rendered_secret = rendered
                .of_kind::<Secret>("Secret")
                .into_iter()
                .find(|secret| secret.metadata.name.as_deref() == Some(name.as_str()));
            let keys: Vec<(String, String)> = match (&source.items, rendered_secret) {
                (Some(items), _) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                (None, Some(secret)) => secret
                    .data
                    .unwrap_or_default()
                    .into_keys()
                    .map(|key| (key.clone(), key))
                    .collect(),
                (None, None) => panic!(
                    "the Secret {name} is created by the user: name its keys in the volume's items, \
                     so that the config's paths can be checked against them"
                ),
            };
            keys.into_iter()
                .map(|(key, path)| (path, format!("placeholder for the Secret's key {key}\n")))
                .collect()
        } else if volume.empty_dir.is_some() {
            BTreeMap::new()
        } else {
            panic!("volume {} is of a kind this test cannot fill", volume.name)
        };
        let target = root.path().join(mount.mount_path.trim_start_matches('/'));
        match &mount.sub_path {
            Some(sub_path) => {
                let content = files
                    .get(sub_path)
                    .unwrap_or_else(|| panic!("volume {} holds no {sub_path}", volume.name));
                write_file(&target, content);
            }
            None => {
                std::fs::create_dir_all(&target).expect("the mount's folder");
                for (name, content) in files {
                    write_file(&target.join(name), &content);
                }
            }
        }
    }
    for file in image_files {
        write_file(
            &root.path().join(file.trim_start_matches('/')),
            "placeholder\n",
        );
    }
    root
}

fn write_file(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("a file has a folder"))
        .expect("the file's folder");
    std::fs::write(path, content)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

/// The config with every absolute path moved under `root`.
fn rooted(value: &Value, root: &Path) -> Value {
    match value {
        Value::String(text) if text.starts_with('/') => Value::String(
            root.join(text.trim_start_matches('/'))
                .display()
                .to_string(),
        ),
        Value::Sequence(items) => Value::Sequence(items.iter().map(|v| rooted(v, root)).collect()),
        Value::Mapping(map) => Value::Mapping(
            map.iter()
                .map(|(key, v)| (key.clone(), rooted(v, root)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The config file the pod's container reads, from the pod's files.
fn pod_config(rendered: &Rendered, root: &Path) -> Value {
    let spec = rendered.pod_spec();
    let path = config_path(container(&spec));
    let file = root.join(path.trim_start_matches('/'));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|err| {
        panic!(
            "{}: the container reads its config from {path}, which no ConfigMap mount provides ({err})",
            rendered.folder
        )
    });
    serde_yaml_ng::from_str(&text).expect("the config is YAML")
}

/// What the plugin overlay's image adds: each absolute path in a plugin
/// router's command, checked against plugin/Containerfile.
fn plugin_image_files(config: &Value) -> Vec<String> {
    let containerfile_path = Path::new(MANIFESTS).join(PLUGIN).join("Containerfile");
    let containerfile =
        std::fs::read_to_string(&containerfile_path).expect("plugin/Containerfile is readable");
    let final_stage = containerfile
        .rsplit_once("\nFROM ")
        .expect("Containerfile has stages")
        .1;
    let copied: Vec<&str> = final_stage
        .lines()
        .filter(|line| line.starts_with("COPY "))
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    let routers = config["routers"].as_sequence().expect("routers");
    let commands: Vec<String> = routers
        .iter()
        .filter(|router| router["driver"].as_str() == Some("plugin"))
        .flat_map(|router| router["command"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|arg| arg.as_str().map(str::to_owned))
        .filter(|arg| arg.starts_with('/'))
        .collect();
    assert!(
        !commands.is_empty(),
        "the plugin overlay's config runs no plugin"
    );
    for path in &commands {
        // Copied by the last stage, or staged by the interpreter stage,
        // whose /stage tree the last stage copies to /.
        assert!(
            copied.contains(&path.as_str()) || containerfile.contains(&format!("/stage{path};")),
            "the plugin router runs {path}, which plugin/Containerfile does not install"
        );
    }
    commands
}

#[test]
fn each_install_reads_its_generated_config_and_the_controller_accepts_it_in_the_pods_files() {
    for folder in INSTALLS {
        let rendered = render(folder);
        // The Deployment mounts the generated ConfigMap (its hashed name).
        let maps = rendered.of_kind::<ConfigMap>("ConfigMap");
        assert_eq!(maps.len(), 1, "{folder}: one ConfigMap");
        let generated = maps[0].metadata.name.clone().expect("a name");
        assert!(
            generated.starts_with("nativeroute-config-")
                && generated.len() > "nativeroute-config-".len(),
            "{folder}: the ConfigMap's name {generated} carries no content hash"
        );
        let spec = rendered.pod_spec();
        let mounted: Vec<String> = spec
            .volumes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|volume| volume.config_map.map(|source| source.name))
            .collect();
        assert_eq!(mounted, [generated], "{folder}: the pod mounts {mounted:?}");

        let image_files = if folder == PLUGIN {
            plugin_image_files(&pod_config(&rendered, pod_files(&rendered, &[]).path()))
        } else {
            Vec::new()
        };
        let root = pod_files(&rendered, &image_files);
        let config = pod_config(&rendered, root.path());
        let text = serde_yaml_ng::to_string(&rooted(&config, root.path())).expect("YAML");
        if let Err(problems) = Config::parse(&text) {
            panic!("{folder}: the controller refuses the config as the pod sees it: {problems}");
        }
    }
}

#[test]
fn the_netlink_gateway_runs_as_root_on_the_host_network_adding_only_net_admin() {
    let rendered = render(NETLINK_GATEWAY);
    let deployment = rendered.deployment_spec();
    assert_eq!(deployment.replicas, Some(1));
    assert_eq!(
        deployment.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate"),
        "one host port: the old pod must go before the new one starts"
    );
    let spec = rendered.pod_spec();
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(
        spec.node_selector
            .clone()
            .unwrap_or_default()
            .get("nativeroute.io/router")
            .map(String::as_str),
        Some("true")
    );
    let pod_security = spec
        .security_context
        .clone()
        .expect("a pod security context");
    assert_eq!(
        pod_security.run_as_user,
        Some(0),
        "NET_ADMIN takes effect for root only"
    );
    let security = container(&spec)
        .security_context
        .clone()
        .expect("a container security context");
    let capabilities = security.capabilities.clone().expect("capabilities");
    assert_eq!(capabilities.add, Some(vec!["NET_ADMIN".to_owned()]));
    assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(security.privileged, None);
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
}

#[test]
fn the_ssh_ha_overlay_runs_two_replicas_on_two_nodes_without_privilege() {
    let rendered = render(SSH_HA);
    let deployment = rendered.deployment_spec();
    assert_eq!(deployment.replicas, Some(2));
    let spec = rendered.pod_spec();
    assert_ne!(spec.host_network, Some(true));
    let pod_security = spec
        .security_context
        .clone()
        .expect("a pod security context");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    let security = container(&spec)
        .security_context
        .clone()
        .expect("a container security context");
    let capabilities = security.capabilities.clone().expect("capabilities");
    assert_eq!(capabilities.add, None, "no capability added");
    assert_eq!(security.read_only_root_filesystem, Some(true));

    // Anti-affinity on the node, for the Deployment's own pods.
    let labels = deployment
        .selector
        .match_labels
        .clone()
        .expect("a selector");
    let terms = spec
        .affinity
        .clone()
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.required_during_scheduling_ignored_during_execution)
        .expect("required pod anti-affinity");
    assert!(terms.iter().any(|term| {
        term.topology_key == "kubernetes.io/hostname"
            && term
                .label_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
                == Some(labels.clone())
    }));

    // A budget that keeps one of the Deployment's pods through a drain.
    let budget: PodDisruptionBudget = rendered.one("PodDisruptionBudget");
    let budget = budget.spec.expect("a budget spec");
    assert_eq!(
        budget.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(budget.selector.and_then(|s| s.match_labels), Some(labels));

    // The key and known_hosts from a Secret, read-only; and nothing may try
    // to write known_hosts there.
    let ssh_mounts: Vec<_> = container(&spec)
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|mount| {
            spec.volumes
                .iter()
                .flatten()
                .any(|v| v.name == mount.name && v.secret.is_some())
        })
        .collect();
    assert_eq!(ssh_mounts.len(), 1, "one Secret mount");
    assert_eq!(ssh_mounts[0].read_only, Some(true));
    let config = pod_config(&rendered, pod_files(&rendered, &[]).path());
    for router in config["routers"].as_sequence().expect("routers") {
        if router["driver"].as_str() == Some("ssh") {
            assert_ne!(
                router["trustOnFirstUse"].as_bool(),
                Some(true),
                "trustOnFirstUse writes known_hosts, which is on a read-only Secret"
            );
            let known_hosts = router["knownHostsFile"].as_str().expect("knownHostsFile");
            assert!(
                known_hosts.starts_with(&format!("{}/", ssh_mounts[0].mount_path)),
                "{known_hosts}"
            );
        }
    }
}

/// The Pod Security Standards' checks that a Deployment like these can
/// trip, as the API server's admission applies them to the pod template.
fn baseline_violations(spec: &PodSpec) -> Vec<String> {
    const BASELINE_CAPABILITIES: [&str; 13] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    let mut found = Vec::new();
    for (field, on) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        if on == Some(true) {
            found.push(field.to_owned());
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if volume.host_path.is_some() {
            found.push(format!("hostPath volume {}", volume.name));
        }
    }
    for container in &spec.containers {
        let security = container.security_context.clone().unwrap_or_default();
        if security.privileged == Some(true) {
            found.push("privileged".into());
        }
        for added in security
            .capabilities
            .and_then(|c| c.add)
            .unwrap_or_default()
        {
            if !BASELINE_CAPABILITIES.contains(&added.as_str()) {
                found.push(format!("capability {added}"));
            }
        }
        for port in container.ports.iter().flatten() {
            if port.host_port.is_some_and(|p| p != 0) {
                found.push("hostPort".into());
            }
        }
    }
    found
}

fn restricted_violations(spec: &PodSpec) -> Vec<String> {
    const VOLUME_KINDS: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut found = baseline_violations(spec);
    for volume in spec.volumes.iter().flatten() {
        let as_json = serde_json::to_value(volume).expect("a volume serialises");
        let kinds = as_json
            .as_object()
            .expect("an object")
            .keys()
            .filter(|k| *k != "name");
        for kind in kinds {
            if !VOLUME_KINDS.contains(&kind.as_str()) {
                found.push(format!("{kind} volume {}", volume.name));
            }
        }
    }
    let pod = spec.security_context.clone().unwrap_or_default();
    for container in &spec.containers {
        let security = container.security_context.clone().unwrap_or_default();
        if security.allow_privilege_escalation != Some(false) {
            found.push("allowPrivilegeEscalation not false".into());
        }
        if security.run_as_non_root.or(pod.run_as_non_root) != Some(true) {
            found.push("runAsNonRoot not true".into());
        }
        if security.run_as_user.or(pod.run_as_user) == Some(0) {
            found.push("runAsUser 0".into());
        }
        let seccomp = security
            .seccomp_profile
            .or(pod.seccomp_profile.clone())
            .map(|profile| profile.type_);
        if !matches!(seccomp.as_deref(), Some("RuntimeDefault" | "Localhost")) {
            found.push(format!("seccompProfile {seccomp:?}"));
        }
        let capabilities = security.capabilities.unwrap_or_default();
        if !capabilities
            .drop
            .unwrap_or_default()
            .iter()
            .any(|c| c == "ALL")
        {
            found.push("capabilities not dropping ALL".into());
        }
        for added in capabilities.add.unwrap_or_default() {
            if added != "NET_BIND_SERVICE" {
                found.push(format!("capability {added}"));
            }
        }
    }
    found
}

#[test]
fn each_namespace_is_labelled_with_the_pod_security_level_its_pod_needs() {
    for folder in INSTALLS {
        let rendered = render(folder);
        let namespace: Namespace = rendered.one("Namespace");
        let spec = rendered.pod_spec();
        // The strictest level the pod meets: anything looser opens the
        // namespace for no reason, anything stricter refuses the pod.
        let needs = if restricted_violations(&spec).is_empty() {
            "restricted"
        } else if baseline_violations(&spec).is_empty() {
            "baseline"
        } else {
            "privileged"
        };
        let labels = namespace.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some(needs),
            "{folder}: the pod needs {needs} ({:?} beyond restricted)",
            restricted_violations(&spec)
        );
        let deployment: Deployment = rendered.one("Deployment");
        assert_eq!(
            deployment.metadata.namespace, namespace.metadata.name,
            "{folder}"
        );
    }
    // The point of the overlays: only the gateway needs the host.
    assert!(restricted_violations(&render(SSH_HA).pod_spec()).is_empty());
    assert!(restricted_violations(&render(PLUGIN).pod_spec()).is_empty());
}

#[test]
fn every_install_runs_at_the_priority_class_it_creates() {
    for folder in INSTALLS {
        let rendered = render(folder);
        let class: PriorityClass = rendered.one("PriorityClass");
        assert_eq!(
            rendered.pod_spec().priority_class_name,
            class.metadata.name,
            "{folder}"
        );
        // Above the default of 0, below the classes reserved for the system.
        assert!(
            class.value > 0 && class.value <= 1_000_000_000,
            "{}",
            class.value
        );
        assert_ne!(class.global_default, Some(true));
    }
}

/// A copy of manifests/ to change and render.
fn manifests_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("a folder in the copy");
        for entry in std::fs::read_dir(from).expect("a readable folder") {
            let entry = entry.expect("a folder entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("a file type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("a copied file");
            }
        }
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    copy(Path::new(MANIFESTS), &dir.path().join("manifests"));
    dir
}

fn image(rendered: &Rendered) -> String {
    container(&rendered.pod_spec())
        .image
        .clone()
        .expect("an image")
}

#[test]
fn the_image_is_set_in_one_place_for_every_install() {
    let copy = manifests_copy();
    let manifests = copy.path().join("manifests");
    let base = manifests.join("base/kustomization.yaml");
    let text = std::fs::read_to_string(&base).expect("base/kustomization.yaml");
    let edited = text
        .replace(
            "newName: localhost/nativeroute",
            "newName: registry.example/ops/nativeroute",
        )
        .replace("newTag: 0.1.0", "newTag: 9.9.9");
    assert_ne!(
        edited, text,
        "base/kustomization.yaml has no images: entry to edit"
    );
    std::fs::write(&base, edited).expect("the edited kustomization");
    for folder in [NETLINK_GATEWAY, SSH_HA] {
        assert_eq!(
            image(&render_at(&manifests.join(folder))),
            "registry.example/ops/nativeroute:9.9.9",
            "{folder}"
        );
    }
    // The plugin overlay runs the image built from its Containerfile, named
    // by its own images: entry.
    assert_eq!(
        image(&render_at(&manifests.join(PLUGIN))),
        "localhost/nativeroute-myvendor:0.1.0"
    );
    assert_eq!(
        image(&render(NETLINK_GATEWAY)),
        "localhost/nativeroute:0.1.0",
        "scripts/build-image.sh's tag"
    );
}

#[test]
fn the_documented_secret_generator_renders_a_secret_the_pods_mount() {
    // ssh-ha's kustomization carries the generator commented out; a user
    // removes the comment marks and puts the two files beside it.
    let copy = manifests_copy();
    let overlay = copy.path().join("manifests").join(SSH_HA);
    let kustomization = overlay.join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).expect("ssh-ha/kustomization.yaml");
    let (before, commented) = text
        .split_once("# secretGenerator:")
        .expect("ssh-ha/kustomization.yaml documents a secretGenerator");
    let uncommented: String = format!("# secretGenerator:{commented}")
        .lines()
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&kustomization, format!("{before}{uncommented}\n"))
        .expect("the edited kustomization");
    std::fs::write(overlay.join("id_ed25519"), "a key\n").expect("a key file");
    std::fs::write(overlay.join("known_hosts"), "10.1.1.1 ssh-ed25519 AAAA\n")
        .expect("a known_hosts file");

    let rendered = render_at(&overlay);
    let secret: Secret = rendered.one("Secret");
    let name = secret.metadata.name.clone().expect("a name");
    assert!(
        name.starts_with("nativeroute-ssh-"),
        "{name}: a content hash, so a new key rolls the pods"
    );
    let spec = rendered.pod_spec();
    let mounted: Vec<String> = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
        .collect();
    assert_eq!(mounted, [name]);
    let keys: BTreeSet<String> = secret.data.unwrap_or_default().into_keys().collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id_ed25519".to_owned(), "known_hosts".to_owned()])
    );
    // And the controller accepts its config with these files.
    let root = pod_files(&rendered, &[]);
    let config = pod_config(&rendered, root.path());
    let text = serde_yaml_ng::to_string(&rooted(&config, root.path())).expect("YAML");
    if let Err(problems) = Config::parse(&text) {
        panic!("the config is refused with the generated Secret: {problems}");
    }
}

#[test]
fn the_service_monitor_scrapes_the_services_metrics_port() {
    let monitoring = render(MONITORING);
    let monitor = monitoring.raw("ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    let monitor = monitor[0];
    let install = render(NETLINK_GATEWAY);
    let service: Service = install.one("Service");
    assert_eq!(
        monitor["metadata"]["namespace"].as_str(),
        service.metadata.namespace.as_deref()
    );
    let labels = service.metadata.labels.clone().unwrap_or_default();
    let wanted = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    for (key, value) in wanted {
        assert_eq!(
            labels
                .get(key.as_str().expect("a label key"))
                .map(String::as_str),
            value.as_str(),
            "the ServiceMonitor selects on a label the Service lacks"
        );
    }
    let ports: Vec<String> = service
        .spec
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    for endpoint in monitor["spec"]["endpoints"]
        .as_sequence()
        .expect("endpoints")
    {
        let port = endpoint["port"].as_str().expect("a port name");
        assert!(
            ports.iter().any(|p| p == port),
            "{port} is not among {ports:?}"
        );
        assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    }
    // And the Service reaches the container's metrics port.
    let spec = install.pod_spec();
    let container_ports: Vec<String> = container(&spec)
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.clone())
        .collect();
    assert!(container_ports.contains(&"metrics".to_owned()));
}
