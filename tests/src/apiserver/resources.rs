//! The resources this server serves, and how a request path names one.
//!
//! Core Events and events.k8s.io Events are two views of one stored kind,
//! as on the real server: an Event written through either API is visible
//! through both.

use super::store::Storage;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ResourceType {
    Nodes,
    CoreEvents,
    Events,
    Leases,
    ConfigMaps,
}

impl ResourceType {
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Nodes,
        ResourceType::CoreEvents,
        ResourceType::Events,
        ResourceType::Leases,
        ResourceType::ConfigMaps,
    ];

    pub fn group(self) -> &'static str {
        match self {
            ResourceType::Nodes | ResourceType::CoreEvents | ResourceType::ConfigMaps => "",
            ResourceType::Events => "events.k8s.io",
            ResourceType::Leases => "coordination.k8s.io",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            ResourceType::Nodes | ResourceType::CoreEvents | ResourceType::ConfigMaps => "v1",
            ResourceType::Events => "events.k8s.io/v1",
            ResourceType::Leases => "coordination.k8s.io/v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            ResourceType::Nodes => "Node",
            ResourceType::CoreEvents | ResourceType::Events => "Event",
            ResourceType::Leases => "Lease",
            ResourceType::ConfigMaps => "ConfigMap",
        }
    }

    pub fn list_kind(self) -> &'static str {
        match self {
            ResourceType::Nodes => "NodeList",
            ResourceType::CoreEvents | ResourceType::Events => "EventList",
            ResourceType::Leases => "LeaseList",
            ResourceType::ConfigMaps => "ConfigMapList",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            ResourceType::Nodes => "nodes",
            ResourceType::CoreEvents | ResourceType::Events => "events",
            ResourceType::Leases => "leases",
            ResourceType::ConfigMaps => "configmaps",
        }
    }

    /// "leases.coordination.k8s.io", as error messages name a resource.
    pub fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_string(),
            group => format!("{}.{group}", self.plural()),
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, ResourceType::Nodes)
    }

    pub fn storage(self) -> Storage {
        match self {
            ResourceType::Nodes => Storage::Nodes,
            ResourceType::CoreEvents | ResourceType::Events => Storage::Events,
            ResourceType::Leases => Storage::Leases,
            ResourceType::ConfigMaps => Storage::ConfigMaps,
        }
    }

    pub fn has_status(self) -> bool {
        matches!(self, ResourceType::Nodes)
    }

    /// Events may be created by PUT (the real eventStrategy allows it);
    /// Nodes, Leases and ConfigMaps answer 404.
    pub fn create_on_update(self) -> bool {
        matches!(self, ResourceType::CoreEvents | ResourceType::Events)
    }

    /// Field selectors the real server accepts for the kind, beyond
    /// metadata.name and metadata.namespace.
    pub fn selectable_fields(self) -> &'static [&'static str] {
        match self {
            ResourceType::Nodes => &["spec.unschedulable"],
            ResourceType::CoreEvents => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ResourceType::Events => &[
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "regarding.apiVersion",
                "regarding.resourceVersion",
                "regarding.fieldPath",
                "reason",
                "reportingController",
                "type",
            ],
            ResourceType::Leases | ResourceType::ConfigMaps => &[],
        }
    }

    /// The stored (core/v1) name of a selectable field of this API.
    pub fn stored_field(self, field: &str) -> String {
        match (self, field) {
            (ResourceType::Events, "reportingController") => "reportingComponent".to_string(),
            (ResourceType::Events, f) if f.starts_with("regarding.") => {
                f.replacen("regarding.", "involvedObject.", 1)
            }
            (_, f) => f.to_string(),
        }
    }

    fn lookup(group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        ResourceType::ALL
            .into_iter()
            .find(|rt| rt.group() == group && version == "v1" && rt.plural() == plural)
    }
}

/// What a request path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub resource: ResourceType,
    /// None for cluster-scoped resources and for lists across namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: bool,
}

impl Target {
    /// The namespace as stored: "" for cluster-scoped objects.
    pub fn namespace_key(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

/// `/api/v1/...` or `/apis/{group}/{version}/...`, then
/// `[namespaces/{ns}/]{plural}[/{name}[/status]]`.
pub(crate) fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some(name.to_string()), false),
        [plural, name, "status"] => (*plural, Some(name.to_string()), true),
        _ => return None,
    };
    let resource = ResourceType::lookup(group, version, plural)?;
    let scoped_right = match (resource.namespaced(), &namespace, &name) {
        (false, Some(_), _) => false,
        // A namespaced object is addressed inside its namespace; only the
        // collection may be read across all of them.
        (true, None, Some(_)) => false,
        _ => true,
    };
    let names_ok = namespace.as_deref().is_none_or(|n| !n.is_empty())
        && name.as_deref().is_none_or(|n| !n.is_empty());
    if !scoped_right || !names_ok || (status && !resource.has_status()) {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_status_and_namespaced_lease_paths_parse() {
        let t = parse_path("/api/v1/nodes/n1/status").expect("node status path");
        assert_eq!(
            (t.resource, t.name.as_deref(), t.status),
            (ResourceType::Nodes, Some("n1"), true)
        );
        let t = parse_path("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l")
            .expect("lease path");
        assert_eq!(t.resource, ResourceType::Leases);
        assert_eq!(t.namespace.as_deref(), Some("kube-system"));
        assert!(parse_path("/apis/events.k8s.io/v1/events").is_some());
    }

    #[test]
    fn config_maps_are_core_and_namespaced_without_status() {
        let t = parse_path("/api/v1/namespaces/default/configmaps/cm").expect("config map path");
        assert_eq!(
            (t.resource, t.namespace.as_deref(), t.name.as_deref()),
            (ResourceType::ConfigMaps, Some("default"), Some("cm"))
        );
        let all = parse_path("/api/v1/configmaps").expect("every namespace's config maps");
        assert_eq!(
            (all.resource, all.namespace),
            (ResourceType::ConfigMaps, None)
        );
        assert!(parse_path("/api/v1/configmaps/cm").is_none());
        assert!(parse_path("/api/v1/namespaces/default/configmaps/cm/status").is_none());
        assert!(parse_path("/apis/coordination.k8s.io/v1/namespaces/x/configmaps").is_none());
        assert_eq!(ResourceType::ConfigMaps.qualified(), "configmaps");
        assert!(!ResourceType::ConfigMaps.create_on_update());
    }

    #[test]
    fn misplaced_scopes_and_unknown_subresources_are_not_found() {
        assert!(parse_path("/api/v1/namespaces/default/nodes").is_none());
        assert!(parse_path("/apis/coordination.k8s.io/v1/leases/l").is_none());
        assert!(parse_path("/apis/coordination.k8s.io/v1/namespaces/x/leases/l/status").is_none());
        assert!(parse_path("/api/v1/pods").is_none());
    }
}
