//! A kubeconfig for the server: plain http on loopback, no credentials,
//! in the form `kubectl` and `kube::Config::from_custom_kubeconfig` read.

use std::path::Path;

use anyhow::Context as _;

pub(crate) const CONTEXT: &str = "nativeroute-test";

pub(crate) fn render(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {url}
users:
- name: {CONTEXT}
  user: {{}}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {CONTEXT}
    namespace: default
current-context: {CONTEXT}
preferences: {{}}
"
    )
}

pub(crate) fn write(path: &Path, url: &str) -> anyhow::Result<()> {
    std::fs::write(path, render(url))
        .with_context(|| format!("cannot write the kubeconfig {}", path.display()))
}
