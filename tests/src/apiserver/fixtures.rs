//! Nodes as a kubelet registers them on a cloud VM: the labels, annotations,
//! addresses, capacity, conditions, node info and cached images a real one
//! carries, so one serialises to roughly 9 KB, as real Nodes do. No
//! podCIDR: assigning subnets is the controller's job.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// Images a node of a typical cluster has pulled: (repository, tag, MB).
const IMAGES: &[(&str, &str, u64)] = &[
    ("registry.k8s.io/kube-proxy", "v1.35.0", 31),
    ("registry.k8s.io/pause", "3.10.1", 1),
    ("registry.k8s.io/coredns/coredns", "v1.12.4", 22),
    (
        "registry.k8s.io/metrics-server/metrics-server",
        "v0.8.0",
        20,
    ),
    ("registry.k8s.io/ingress-nginx/controller", "v1.13.3", 118),
    (
        "registry.k8s.io/ingress-nginx/kube-webhook-certgen",
        "v1.6.3",
        24,
    ),
    (
        "registry.k8s.io/sig-storage/csi-node-driver-registrar",
        "v2.14.0",
        13,
    ),
    ("registry.k8s.io/sig-storage/livenessprobe", "v2.16.0", 12),
    ("registry.k8s.io/sig-storage/csi-provisioner", "v5.3.0", 31),
    ("registry.k8s.io/sig-storage/csi-attacher", "v4.9.0", 29),
    ("registry.k8s.io/sig-storage/csi-resizer", "v1.14.0", 30),
    ("registry.k8s.io/sig-storage/csi-snapshotter", "v8.3.0", 28),
    (
        "registry.k8s.io/provider-aws/aws-ebs-csi-driver",
        "v1.48.0",
        61,
    ),
    (
        "registry.k8s.io/kube-state-metrics/kube-state-metrics",
        "v2.16.0",
        19,
    ),
    (
        "registry.k8s.io/node-problem-detector/node-problem-detector",
        "v0.8.21",
        48,
    ),
    ("quay.io/prometheus/node-exporter", "v1.9.1", 12),
    ("quay.io/prometheus/prometheus", "v3.5.0", 140),
    ("quay.io/prometheus/alertmanager", "v0.28.1", 38),
    (
        "quay.io/prometheus-operator/prometheus-config-reloader",
        "v0.85.0",
        6,
    ),
    (
        "quay.io/prometheus-operator/prometheus-operator",
        "v0.85.0",
        17,
    ),
    ("docker.io/grafana/grafana", "12.1.1", 210),
    ("quay.io/kiwigrid/k8s-sidecar", "1.30.9", 43),
    ("docker.io/grafana/loki", "3.5.3", 42),
    ("docker.io/grafana/promtail", "3.5.3", 77),
    ("quay.io/jetstack/cert-manager-controller", "v1.18.2", 21),
    ("quay.io/jetstack/cert-manager-webhook", "v1.18.2", 18),
    ("quay.io/jetstack/cert-manager-cainjector", "v1.18.2", 16),
    ("docker.io/library/nginx", "1.29.1", 72),
    ("docker.io/library/busybox", "1.37.0", 2),
    ("ghcr.io/fluxcd/source-controller", "v1.6.2", 40),
    ("ghcr.io/fluxcd/kustomize-controller", "v1.6.1", 36),
    ("docker.io/fluent/fluent-bit", "4.0.9", 33),
];

/// A cheap deterministic mix (SplitMix64), so each node's IDs differ and
/// stay the same from run to run.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn seed(text: &str) -> u64 {
    text.bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| mix(h ^ u64::from(b)))
}

fn hex(seed: u64, digits: usize) -> String {
    let mut out = String::new();
    let mut state = seed;
    while out.len() < digits {
        state = mix(state);
        out.push_str(&format!("{state:016x}"));
    }
    out.truncate(digits);
    out
}

fn time(ago: SignedDuration) -> String {
    let at = Timestamp::now()
        .checked_sub(ago)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn images() -> Value {
    let list: Vec<Value> = IMAGES
        .iter()
        .map(|(repo, tag, mb)| {
            json!({
                "names": [format!("{repo}@sha256:{}", hex(seed(repo), 64)), format!("{repo}:{tag}")],
                "sizeBytes": mb * 1_048_576 + seed(tag) % 1_000_000,
            })
        })
        .collect();
    Value::Array(list)
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": kind,
        "status": status,
        "lastHeartbeatTime": time(SignedDuration::from_secs(7)),
        "lastTransitionTime": time(SignedDuration::from_hours(71)),
        "reason": reason,
        "message": message,
    })
}

/// A Node named `name` with `internal_ip`, as a kubelet on an EC2 VM with
/// node-problem-detector would have it (4 kubelet conditions and NPD's
/// KernelDeadlock; no NetworkUnavailable, which the route controller owns).
pub fn realistic_node(name: &str, internal_ip: IpAddr) -> Node {
    let s = seed(name);
    let zone = ["eu-west-1a", "eu-west-1b", "eu-west-1c"][(s % 3) as usize];
    let instance = format!("i-0{}", hex(s, 16));
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/instance-type": "m6i.xlarge",
                "beta.kubernetes.io/os": "linux",
                "failure-domain.beta.kubernetes.io/region": "eu-west-1",
                "failure-domain.beta.kubernetes.io/zone": zone,
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "m6i.xlarge",
                "topology.ebs.csi.aws.com/zone": zone,
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": zone,
            },
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": internal_ip.to_string(),
                "csi.volume.kubernetes.io/nodeid": format!("{{\"ebs.csi.aws.com\":\"{instance}\"}}"),
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"providerID": format!("aws:///{zone}/{instance}")},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": internal_ip.to_string()},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {
                "cpu": "4", "ephemeral-storage": "101430960Ki", "hugepages-1Gi": "0",
                "hugepages-2Mi": "0", "memory": "16181656Ki", "pods": "110",
            },
            "allocatable": {
                "cpu": "3920m", "ephemeral-storage": "93478772582", "hugepages-1Gi": "0",
                "hugepages-2Mi": "0", "memory": "15164824Ki", "pods": "110",
            },
            "conditions": [
                condition("KernelDeadlock", "False", "KernelHasNoDeadlock", "kernel has no deadlock"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": uuid(s ^ 1),
                "containerRuntimeVersion": "containerd://2.1.4",
                "kernelVersion": "6.8.0-1035-aws",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.35.0",
                "machineID": hex(s ^ 2, 32),
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.3 LTS",
                "systemUUID": format!("ec2{}", &uuid(s ^ 3)[3..]),
            },
            "images": images(),
            "features": {"supplementalGroupsPolicy": true},
            "runtimeHandlers": [
                {"name": "runc", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
                {"name": "", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
            ],
        },
    });
    serde_json::from_value(node).expect("the Node fixture matches the Node schema")
}

fn uuid(seed: u64) -> String {
    let h = hex(seed, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `count` realistic nodes named node-00000, node-00001, ... with internal
/// IPs 10.64.0.1, 10.64.0.2, ...
pub fn realistic_nodes(count: usize) -> Vec<Node> {
    (0..count)
        .map(|i| {
            let offset = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)).wrapping_add(offset));
            realistic_node(&format!("node-{i:05}"), IpAddr::V4(ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_node_is_as_large_as_a_real_one() {
        let node = realistic_node(
            "ip-10-0-1-17.eu-west-1.compute.internal",
            "10.0.1.17".parse().expect("ip"),
        );
        let size = serde_json::to_vec(&node).expect("serialises").len();
        assert!((5_000..=10_000).contains(&size), "{size} bytes");
        let status = node.status.expect("status");
        assert_eq!(status.conditions.expect("conditions").len(), 5);
        assert_eq!(status.images.expect("images").len(), IMAGES.len());
    }
}
