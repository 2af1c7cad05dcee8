//! The `nativeroute` binary: parses the command line, starts logging, and
//! hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nativeroute::config::Config;
use nativeroute::leader::LeaseSettings;
use nativeroute::telemetry::{self, LogFormat};
use nativeroute::{check, cluster_status, lab, plan, run, signals, withdraw};

/// jemalloc instead of glibc's malloc: at 5,000 nodes it halves the time of
/// a reconcile (node created → route p99 23 ms → 14 ms), and configured with
/// one arena and quick page return (.cargo/config.toml) it keeps resident
/// memory lower than glibc's per-thread arenas do (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "nativeroute",
    version,
    about = "Native container routing: a subnet per node, a route per subnet on every router"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t, global = true)]
    log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace), or a filter such as
    /// "info,nativeroute=debug"; default: RUST_LOG, else info.
    #[arg(long, global = true, value_parser = telemetry::parse_level)]
    log_level: Option<tracing_subscriber::EnvFilter>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Where /metrics, /healthz and /readyz listen ("off" for nowhere).
        #[arg(long, default_value = "0.0.0.0:9763", value_parser = parse_listen_address)]
        metrics_address: ListenAddress,
        /// The cluster to watch (nodes.source: kubernetes); default: in-cluster,
        /// then KUBECONFIG (a list of files is merged), then ~/.kube/config.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        #[command(flatten)]
        lease: LeaseArgs,
    },
    /// Show per router what a sync would add, replace and remove; change nothing.
    Plan {
        #[arg(long, short)]
        config: PathBuf,
        /// The cluster (nodes.source: kubernetes), as for `run`.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        #[arg(long, short, value_enum, default_value_t)]
        output: plan::PlanFormat,
        /// Exit 0 when nothing would change, 2 when changes are pending (or
        /// withdrawals are held), 1 on an error (as `terraform plan`).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Validate the config, list the nodes and reach every router.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// The cluster (nodes.source: kubernetes), as for `run`.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// The nodes, their subnets and per-router state, the leader, and each
    /// router's standing, read from the cluster.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// The cluster, as for `run`.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Where the controller's Lease is.
        #[arg(long, default_value = "nativeroute")]
        lease_namespace: String,
        #[arg(long, default_value = "nativeroute")]
        lease_name: String,
        #[arg(long, short, value_enum, default_value_t)]
        output: cluster_status::StatusFormat,
    },
    /// Remove nativeroute's own routes from routers (the uninstall path):
    /// shows them, and removes them only with --yes. Stop the controller first.
    Withdraw {
        #[arg(long, short)]
        config: PathBuf,
        /// The router to withdraw from.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        router: Option<String>,
        /// Withdraw from every router in the config.
        #[arg(long)]
        all: bool,
        /// Remove the routes shown; without it nothing changes.
        #[arg(long)]
        yes: bool,
    },
    /// Let through the withdrawals the removal guard holds back now, on every
    /// router (signals the running controller with SIGUSR1).
    Release {
        /// The controller's process id; default: every `nativeroute run`
        /// process on this machine (in a container, the one in it).
        #[arg(long)]
        pid: Option<i32>,
    },
    /// The seed topology in network namespaces on this machine (needs root).
    #[command(subcommand)]
    Lab(lab::LabCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_writer = telemetry::init(cli.log_format, cli.log_level.as_ref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::Failure) => ExitCode::FAILURE,
        Ok(Exit::ChangesPending) => ExitCode::from(2),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// How a command ended, beyond an error.
enum Exit {
    Success,
    /// A check failed or a router could not be reached (exit 1).
    Failure,
    /// `plan --detailed-exitcode` found changes to make (exit 2).
    ChangesPending,
}

impl From<bool> for Exit {
    fn from(success: bool) -> Self {
        if success {
            Exit::Success
        } else {
            Exit::Failure
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Run {
            config,
            metrics_address,
            kubeconfig,
            lease,
        } => {
            let config_path = config;
            let config = Config::load(&config_path)?;
            let signals = signals::listen()?;
            let home = lease.home();
            let options = run::RunOptions {
                metrics_address: metrics_address.0,
                kubeconfig,
                lease: lease.settings(),
                release: signals.release,
                config_path: Some(config_path),
                home,
            };
            run::run(config, options, signals.shutdown).await?;
            Ok(Exit::Success)
        }
        Command::Plan {
            config,
            kubeconfig,
            output,
            detailed_exitcode,
        } => {
            let outcome =
                plan::print_plan(Config::load(&config)?, kubeconfig.as_deref(), output).await?;
            Ok(match outcome {
                plan::PlanOutcome {
                    all_reached: false, ..
                } => Exit::Failure,
                plan::PlanOutcome {
                    changes_pending: true,
                    ..
                } if detailed_exitcode => Exit::ChangesPending,
                _ => Exit::Success,
            })
        }
        Command::Check { config, kubeconfig } => match Config::load(&config) {
            Ok(config) => Ok(check::run_checks(config, kubeconfig.as_deref())
                .await
                .into()),
            Err(err) => {
                println!("config: FAILED: {err}");
                Ok(Exit::Failure)
            }
        },
        Command::Status {
            config,
            kubeconfig,
            lease_namespace,
            lease_name,
            output,
        } => {
            let lease = cluster_status::LeaseName {
                namespace: &lease_namespace,
                name: &lease_name,
            };
            let config = Config::load(&config)?;
            Ok(
                cluster_status::print_status(&config, kubeconfig.as_deref(), lease, output)
                    .await?
                    .into(),
            )
        }
        Command::Withdraw {
            config,
            router,
            all: _,
            yes,
        } => {
            let which = router.map_or(withdraw::Routers::All, withdraw::Routers::Named);
            Ok(withdraw::withdraw(Config::load(&config)?, which, yes)
                .await?
                .into())
        }
        Command::Release { pid } => signals::request_release(pid).map(|()| Exit::Success),
        Command::Lab(command) => lab::run(command).await.map(|()| Exit::Success),
    }
}

/// Leader election (nodes.source: kubernetes): one Lease, one leader.
#[derive(clap::Args)]
struct LeaseArgs {
    /// Elect one leader among the running instances through a Lease. Turn
    /// off only when exactly one instance runs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// The Lease's namespace; default: the pod's namespace (POD_NAMESPACE or
    /// the service account's), else "default".
    #[arg(long)]
    lease_namespace: Option<String>,
    #[arg(long, default_value = "nativeroute")]
    lease_name: String,
    /// This instance's name in the Lease; default: POD_NAME, else the host
    /// name and a random suffix.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[command(flatten)]
    timing: LeaseTimingArgs,
}

impl LeaseArgs {
    /// The Lease's namespace and name, also when no leader is elected: the
    /// controller's other objects are kept beside it.
    fn home(&self) -> run::Home {
        let namespace = self
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|text| text.trim().to_owned())
            })
            .filter(|namespace| !namespace.is_empty())
            .unwrap_or_else(|| "default".into());
        run::Home {
            namespace,
            stem: self.lease_name.clone(),
        }
    }

    fn settings(self) -> Option<LeaseSettings> {
        if !self.leader_election {
            return None;
        }
        let home = self.home();
        let identity = self
            .identity
            .filter(|identity| !identity.is_empty())
            .unwrap_or_else(LeaseSettings::default_identity);
        Some(LeaseSettings::new(home.namespace, home.stem, identity).with_timing(self.timing.0))
    }
}

/// The lease timing flags, checked against each other while the command
/// line is parsed, so that a bad combination is a usage error naming the
/// flags before anything starts.
struct LeaseTimingArgs(nativeroute::leader::LeaseTiming);

#[derive(clap::Args)]
struct RawLeaseTiming {
    /// How long a Lease lasts without renewal before another instance may
    /// take it (whole seconds).
    #[arg(long = "leader-elect-lease-duration", value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: std::time::Duration,
    /// A leader that could not renew for this long stops leading; shorter
    /// than the lease duration.
    #[arg(long = "leader-elect-renew-deadline", value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    renew_deadline: std::time::Duration,
    /// How often a leader renews and a follower tries to take the Lease.
    #[arg(long = "leader-elect-retry-period", value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    retry_period: std::time::Duration,
}

impl clap::FromArgMatches for LeaseTimingArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let raw = RawLeaseTiming::from_arg_matches(matches)?;
        nativeroute::leader::LeaseTiming::new(
            raw.lease_duration,
            raw.renew_deadline,
            raw.retry_period,
        )
        .map(LeaseTimingArgs)
        .map_err(|err| clap::Error::raw(clap::error::ErrorKind::ValueValidation, err.to_string()))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for LeaseTimingArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        RawLeaseTiming::augment_args(command)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        RawLeaseTiming::augment_args_for_update(command)
    }
}

#[derive(Clone, Debug)]
struct ListenAddress(Option<SocketAddr>);

fn parse_listen_address(text: &str) -> Result<ListenAddress, String> {
    if text == "off" {
        return Ok(ListenAddress(None));
    }
    text.parse()
        .map(|address| ListenAddress(Some(address)))
        .map_err(|_| format!("{text:?} is not an address:port like 0.0.0.0:9763, or off"))
}
