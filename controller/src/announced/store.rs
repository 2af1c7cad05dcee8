//! Where records are kept: a file beside a file inventory's state file, or
//! one ConfigMap per BGP router in the controller's namespace.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::RecordError;
use super::form::{Kept, KeptFile};
use crate::inventory::state::write_atomically;

/// The label that marks the ConfigMaps kept here, naming the router.
const ROUTER_LABEL: &str = "nativeroute.io/bgp-router";

/// The ConfigMap annotation that says when its router's session was last
/// seen established.
const CONFIRMED_AT: &str = "nativeroute.io/confirmed-at";

pub enum Store {
    File(PathBuf),
    ConfigMaps {
        // Boxed: far larger than a path.
        api: Box<Api<ConfigMap>>,
        namespace: String,
        /// Each router's ConfigMap is named `{stem}-bgp-{router}`.
        stem: String,
    },
}

/// What a store holds: each router's record, and when it was confirmed.
#[derive(Default)]
pub struct Contents {
    pub records: BTreeMap<String, Kept>,
    pub confirmed_at: BTreeMap<String, String>,
}

/// One write: every router's record as it should be kept, which of them
/// changed, and the new confirmation times (of routers seen established).
pub struct Write<'a> {
    pub records: &'a BTreeMap<String, Kept>,
    pub changed: &'a [String],
    pub confirmed_at: &'a BTreeMap<String, String>,
    pub confirmed_now: &'a [String],
}

impl Store {
    pub fn describe(&self) -> String {
        match self {
            Store::File(path) => path.display().to_string(),
            Store::ConfigMaps {
                namespace, stem, ..
            } => format!("ConfigMaps {namespace}/{stem}-bgp-<router>"),
        }
    }

    /// Where one router's record is, as an operator finds it.
    pub fn place_of(&self, router: &str) -> String {
        match self {
            Store::File(path) => format!("{} (router {router})", path.display()),
            Store::ConfigMaps {
                namespace, stem, ..
            } => format!("ConfigMap {namespace}/{}", config_map_name(stem, router)),
        }
    }

    /// The records of `routers` (a file gives every router's).
    pub async fn read(&self, routers: &[String]) -> Result<Contents, RecordError> {
        match self {
            Store::File(path) => {
                let path = path.clone();
                let text = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || std::fs::read_to_string(path)
                })
                .await
                .map_err(|err| RecordError::Read {
                    path: path.clone(),
                    source: std::io::Error::other(err),
                })?;
                let text = match text {
                    Ok(text) => text,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        return Ok(Contents::default());
                    }
                    Err(source) => return Err(RecordError::Read { path, source }),
                };
                let file: KeptFile = serde_json::from_str(&text)
                    .map_err(|source| RecordError::CorruptFile { path, source })?;
                Ok(Contents {
                    records: file.routers,
                    confirmed_at: file.confirmed_at,
                })
            }
            Store::ConfigMaps {
                api,
                namespace,
                stem,
            } => {
                let mut contents = Contents::default();
                for router in routers {
                    let name = config_map_name(stem, router);
                    let Some(map) = api
                        .get_opt(&name)
                        .await
                        .map_err(RecordError::api(namespace, &name))?
                    else {
                        continue;
                    };
                    if let Some(at) = map
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|annotations| annotations.get(CONFIRMED_AT))
                    {
                        contents.confirmed_at.insert(router.clone(), at.clone());
                    }
                    let data = map.data.unwrap_or_default();
                    let field = |key: &str| data.get(key).cloned();
                    contents.records.insert(
                        router.clone(),
                        Kept {
                            address: field("address").unwrap_or_default(),
                            netns: field("netns"),
                            routes: field("routes").unwrap_or_default(),
                        },
                    );
                }
                Ok(contents)
            }
        }
    }

    pub async fn write(&self, write: Write<'_>) -> Result<(), RecordError> {
        match self {
            Store::File(path) => {
                let mut text = serde_json::to_vec_pretty(&KeptFile {
                    confirmed_at: write.confirmed_at.clone(),
                    routers: write.records.clone(),
                })
                .map_err(|err| RecordError::Write {
                    path: path.clone(),
                    source: std::io::Error::other(err),
                })?;
                text.push(b'\n');
                let written = tokio::task::spawn_blocking({
                    let path = path.clone();
                    move || write_atomically(&path, &text)
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|written| written);
                written.map_err(|source| RecordError::Write {
                    path: path.clone(),
                    source,
                })
            }
            Store::ConfigMaps {
                api,
                namespace,
                stem,
            } => {
                let stamp = |router: &String| {
                    write
                        .confirmed_now
                        .contains(router)
                        .then(|| write.confirmed_at.get(router))
                        .flatten()
                };
                for router in write.changed {
                    let Some(kept) = write.records.get(router) else {
                        continue;
                    };
                    let name = config_map_name(stem, router);
                    write_config_map(api, &name, router, kept, stamp(router))
                        .await
                        .map_err(RecordError::api(namespace, &name))?;
                }
                let only_confirmed = write
                    .confirmed_now
                    .iter()
                    .filter(|router| !write.changed.contains(router));
                for router in only_confirmed {
                    let (Some(kept), Some(at)) = (write.records.get(router), stamp(router)) else {
                        continue;
                    };
                    let name = config_map_name(stem, router);
                    let patch = serde_json::json!({
                        "metadata": {"annotations": {CONFIRMED_AT: at}},
                    });
                    let patched = api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                    match patched {
                        // Deleted by someone: written again whole.
                        Err(kube::Error::Api(status)) if status.code == 404 => {
                            write_config_map(api, &name, router, kept, Some(at))
                                .await
                                .map_err(RecordError::api(namespace, &name))?;
                        }
                        other => {
                            other.map_err(RecordError::api(namespace, &name))?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

pub fn config_map_name(stem: &str, router: &str) -> String {
    format!("{stem}-bgp-{router}")
}

/// Creates or updates one router's ConfigMap; its confirmation time is
/// changed only when given.
async fn write_config_map(
    api: &Api<ConfigMap>,
    name: &str,
    router: &str,
    kept: &Kept,
    confirmed_at: Option<&String>,
) -> Result<(), kube::Error> {
    let mut metadata = serde_json::json!({"labels": {ROUTER_LABEL: router}});
    if let Some(at) = confirmed_at {
        metadata["annotations"] = serde_json::json!({CONFIRMED_AT: at});
    }
    let mut data = serde_json::json!({
        "address": kept.address,
        "routes": kept.routes,
        "netns": kept.netns,
    });
    let patch = serde_json::json!({"metadata": metadata, "data": data});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 404 => {
            // A merge patch's null removes a key; a new object has none.
            if let Some(map) = data.as_object_mut() {
                map.retain(|_, value| !value.is_null());
            }
            metadata["name"] = serde_json::json!(name);
            let map: ConfigMap =
                serde_json::from_value(serde_json::json!({"metadata": metadata, "data": data}))
                    .map_err(kube::Error::SerdeError)?;
            api.create(&PostParams::default(), &map).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}
