//! The world a chaos run breaks: the test API server, the netlink router's
//! namespace, FRR behind sshd, and the controller config that names both
//! routers. Dropped in field order: the SSH router (sshd, FRR, namespace),
//! then the netlink router's namespace, then the API server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use nativeroute_tests::apiserver::ApiServer;
use nativeroute_tests::sshd::KeyKind;

use super::frr_router::FrrRouter;
use super::kernel_router::KernelRouter;
use super::model::LABEL;
use super::observe::RESERVED;

/// The controller's periodic full compare with each router: how soon a
/// router that lost routes on its own (FRR restarted) gets them back.
pub const RESYNC: Duration = Duration::from_secs(5);
/// removalGuard.window: short, so that legitimate churn the guard holds
/// goes through within the run by itself.
pub const GUARD_WINDOW: Duration = Duration::from_secs(20);

pub struct World {
    pub frr: FrrRouter,
    pub kernel: KernelRouter,
    pub api: Arc<ApiServer>,
    pub config: PathBuf,
    pub kubeconfig: PathBuf,
}

impl World {
    /// Builds everything under `dir` (config, kubeconfig); the routers keep
    /// their own directories.
    pub async fn build(dir: &Path) -> Result<World> {
        let kernel_name = format!("nrc{}-rtr", std::process::id() % 100_000);
        let kernel = KernelRouter::create(&kernel_name)?;
        let frr = tokio::task::block_in_place(FrrRouter::start)?;
        let api = Arc::new(ApiServer::start().await?);
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)?;
        let config = dir.join("config.yaml");
        std::fs::write(&config, config_text(&kernel, &frr)?)
            .with_context(|| format!("writing {}", config.display()))?;
        Ok(World {
            frr,
            kernel,
            api,
            config,
            kubeconfig,
        })
    }
}

fn config_text(kernel: &KernelRouter, frr: &FrrRouter) -> Result<String> {
    let router = &frr.router;
    let key = router.key(KeyKind::Ed25519).private_key_path().display();
    let known_hosts = router.known_hosts_file()?;
    let cli = router.frr()?.vtysh_command();
    Ok(format!(
        "pool: {{cidrs: [11.11.0.0/16], nodeMaskV4: 24, reserved: [{reserved}]}}\n\
         ipam: allocate\n\
         nodes: {{source: kubernetes, selector: \"{LABEL}=yes\"}}\n\
         manageNodeCondition: true\n\
         resyncInterval: {resync}\n\
         removalGuard: {{maxShare: 0.5, minRoutes: 10, window: {window}}}\n\
         routers:\n\
         \x20 - {{name: kernel, driver: netlink, netns: {kernel_netns}, nodeNetworks: [192.168.2.0/24, 192.168.3.0/24]}}\n\
         \x20 - name: frr\n\
         \x20   driver: ssh\n\
         \x20   vendor: frr\n\
         \x20   netns: {frr_netns}\n\
         \x20   address: {address}\n\
         \x20   username: {user}\n\
         \x20   privateKeyFile: {key}\n\
         \x20   knownHostsFile: {known_hosts}\n\
         \x20   cliCommand: \"{cli}\"\n\
         \x20   connectTimeout: 3s\n\
         \x20   commandTimeout: 20s\n\
         \x20   nodeNetworks: [192.168.2.0/24, 192.168.3.0/24]\n",
        reserved = RESERVED.join(", "),
        resync = humantime::format_duration(RESYNC),
        window = humantime::format_duration(GUARD_WINDOW),
        kernel_netns = kernel.name(),
        frr_netns = frr.netns(),
        address = router.address(),
        user = router.user(),
        known_hosts = known_hosts.display(),
    ))
}
