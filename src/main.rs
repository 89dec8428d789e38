//! The `latchkey` binary: parse the command line and hand over to the library.

use std::io::Write;

use clap::{Parser, Subcommand};
use latchkey::config::{PolicyArgs, StoreArgs, open_vault};

/// glibc's allocator spent a sixth of a loaded server's CPU in malloc and
/// free (consolidating fragments between requests); mimalloc's per-thread
/// pages make those calls cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "Self-hosted, agent-native secret vault (REST + MCP)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve REST under /api, MCP at /mcp, /llms.txt and /healthz.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8200")]
        listen: String,
        /// The URL clients use to reach this server when it is not loopback
        /// (e.g. https://vault.example.com); its host is accepted in Host and Origin.
        #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
        public_url: Option<String>,
        /// Another name clients reach this server by (a load balancer's, a
        /// container's); repeatable, or comma-separated in the variable.
        /// Requests whose Host is not loopback, the listen address, the public
        /// URL's host or one of these are refused (DNS rebinding).
        #[arg(long = "allowed-host", value_name = "NAME", env = "LATCHKEY_ALLOWED_HOSTS", value_delimiter = ',')]
        allowed_hosts: Vec<String>,
        /// A proxy (address or CIDR) whose X-Forwarded-For names the client;
        /// repeatable. From anyone else the header is ignored, so a client
        /// cannot pick the address a token's ipAllowlist sees.
        #[arg(long = "trusted-proxy", value_name = "CIDR", env = "LATCHKEY_TRUSTED_PROXIES", value_delimiter = ',')]
        trusted_proxies: Vec<String>,
        /// Most client connections open at once; further clients wait to be
        /// accepted. Default: what the open-file limit leaves room for.
        #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: Option<u32>,
        /// Address of a second listener that serves only `GET /metrics`
        /// (Prometheus text). Off unless set; the public listener never serves it.
        #[arg(long, env = "LATCHKEY_METRICS_LISTEN", value_name = "ADDR")]
        metrics_listen: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Speak MCP over stdio (stdout carries only JSON-RPC; logs go to stderr).
    /// Acts for the tenant of LATCHKEY_API_KEY, or for a local tenant created on first use.
    Mcp {
        /// The local tenant to act for when LATCHKEY_API_KEY is not set.
        #[arg(long, env = "LATCHKEY_TENANT", default_value = latchkey::vault::tenants::LOCAL_TENANT)]
        tenant: String,
        /// Print the tool catalog (names, descriptions, schemas) as JSON and exit.
        #[arg(long)]
        print_tools: bool,
        /// A directory (absolute) where write_env_file may also write, besides
        /// the one this server starts in; repeatable.
        #[arg(long = "env-file-dir", value_name = "DIR", env = "LATCHKEY_ENV_FILE_DIRS", value_delimiter = ',')]
        env_file_dirs: Vec<std::path::PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Run a command with secrets as environment variables, its output
    /// redacted: `latchkey run [--project P] [--environment E] [--only NAME…] -- CMD ARGS…`.
    /// Without --url it uses the local database as `latchkey mcp` does (all
    /// exposure modes); with --url and LATCHKEY_API_KEY, a server (reveal only).
    Run(latchkey::run::RunArgs),
    /// An environment's secrets as a .env file: `latchkey env pull` prints or
    /// writes them, `push FILE` stores a file's, `promote --from E1 --to E2`
    /// copies one environment into another. Against a server with --url and
    /// LATCHKEY_API_KEY, or the local database as `latchkey run` opens it.
    Env(latchkey::envcli::EnvArgs),
    /// Operator commands for the tenants' human owners.
    Owner {
        #[command(subcommand)]
        action: OwnerAction,
    },
    /// Operator commands for approval requests (list, approve, deny).
    Approvals {
        #[command(subcommand)]
        action: ApprovalAction,
    },
    /// Operator commands for a tenant's approval policy.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Rewraps every tenant's data key under a new master key
    /// (`LATCHKEY_NEW_MASTER_KEY` or `LATCHKEY_NEW_PASSPHRASE` beside the
    /// current one; with a key file and neither, a new key file is made).
    /// The order of steps with running replicas is in docs/operations.md.
    RotateMasterKey {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Operator commands for the audit trail: `latchkey audit verify --tenant T`
    /// walks the tenant's hash chain (progress on stderr, the report as JSON
    /// on stdout); exit code 0 when verified, 1 when broken, 2 on an error.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Operator commands for tenants.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The operator's backup of the whole server (every tenant): a
    /// consistent copy while servers run, restored only into an empty data
    /// directory or database. The master key is not in it: keep it.
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
}

#[derive(Subcommand)]
enum BackupAction {
    /// Writes the backup to FILE (which must not exist).
    Create {
        file: std::path::PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Restores FILE into an empty data directory (SQLite) or an empty database (PostgreSQL).
    Restore {
        file: std::path::PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Verify a tenant's audit chain.
    Verify {
        /// The tenant's id (`''` for entries without a tenant).
        #[arg(long)]
        tenant: String,
        /// RFC 3339 time or YYYY-MM-DD: the first entry reported.
        #[arg(long)]
        start_date: Option<String>,
        /// RFC 3339 time or YYYY-MM-DD (whole day): the last entry reported.
        #[arg(long)]
        end_date: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// What the operator does with approval requests; each decision is audited
/// as the CLI (actor `operator`, how `cli`).
#[derive(Subcommand)]
enum ApprovalAction {
    /// List approval requests as JSON, newest first.
    List {
        /// Only this tenant's (default: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// Only requests in this state: pending, approved, denied, expired, used.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Approve a pending request: the requester may read the secret `--uses`
    /// times within `--ttl`.
    Approve {
        /// The request's id (`latchkey approvals list`, or the end of its approval URL).
        id: String,
        /// How long the grant lasts (e.g. 15m, 1h, 90s).
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// How many reads it allows.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Deny a pending request, saying why (the requester reads it).
    Deny {
        /// The request's id.
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Change which tiers need approval (critical always does).
    Set {
        #[arg(long)]
        tenant: String,
        /// Whether reading a `sensitive` secret needs approval.
        #[arg(long, value_parser = ["on", "off"])]
        sensitive: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum OwnerAction {
    /// Add a human owner to a tenant; prints a one-time sign-in link (24 h)
    /// and the owner token (shown once).
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// The URL browsers reach the server by (as `serve --public-url`);
        /// default http://localhost:8200.
        #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum TenantAction {
    /// Move a tenant to another plan (free, pro, unlimited).
    SetPlan { tenant: String, plan: String },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    latchkey::telemetry::logs::init();
    match Cli::parse().command {
        // `latchkey run` exits as its child did; its own failures name their code.
        Command::Run(args) => latchkey::run::run(args).await.map(std::process::ExitCode::from).unwrap_or_else(|e| {
            eprintln!("latchkey run: {}: {}", e.code(), e.public_message_with_cause());
            std::process::ExitCode::FAILURE
        }),
        Command::Env(args) => latchkey::envcli::main(args).await,
        Command::Audit { action: AuditAction::Verify { tenant, start_date, end_date, store } } => {
            let done = async {
                let vault = open_vault(&store, &PolicyArgs::defaults()).await?;
                let report =
                    latchkey::vault::audit_verify::operator_verify(&vault, &tenant, start_date.as_deref(), end_date.as_deref()).await;
                vault.store().close().await;
                report
            };
            match done.await {
                Ok(report) => {
                    let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                    std::process::ExitCode::from(if report.verified { 0 } else { 1 })
                }
                Err(e) => {
                    eprintln!("latchkey: {}", e.public_message_with_cause());
                    std::process::ExitCode::from(2)
                }
            }
        }
        command => match run(command).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("latchkey: {}", e.public_message_with_cause());
                std::process::ExitCode::FAILURE
            }
        },
    }
}

async fn run(command: Command) -> latchkey::Result<()> {
    match command {
        Command::Serve { listen, public_url, allowed_hosts, trusted_proxies, max_connections, metrics_listen, store, policy } => {
            let max_connections = latchkey::server::connection_cap(max_connections);
            let vault = open_vault(&store, &policy).await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| latchkey::Error::InvalidRequest(format!("cannot listen on {listen}: {e}")))?;
            let addr = listener.local_addr().map_err(latchkey::Error::internal)?;
            let allowed = latchkey::edge::Allowed::new(public_url.as_deref(), &allowed_hosts, Some(addr))?.trusting(&trusted_proxies)?;
            vault.set_site(latchkey::vault::owners::Site::new(public_url.as_deref(), Some(addr))?);
            let shutdown = latchkey::server::shutdown_signal();
            tracing::info!(%addr, backend = vault.store().backend(), max_connections, "latchkey listening");
            if !addr.ip().is_loopback() {
                tracing::info!(hosts = %allowed.describe(), "listening beyond loopback: requests are served for these Host names only");
            }
            let metrics = match metrics_listen {
                Some(at) => Some(start_metrics(&at, vault.clone()).await?),
                None => None,
            };
            // One line on stdout so scripts and tests learn the port when listening on :0.
            println!("latchkey listening on http://{addr}");
            let served = latchkey::server::serve(listener, vault, allowed, max_connections, shutdown).await;
            if let Some((stop, task)) = metrics {
                stop.cancel();
                let _ = task.await;
            }
            served.map_err(latchkey::Error::internal)
        }
        Command::Mcp { print_tools: true, .. } => {
            let text = serde_json::to_string_pretty(&latchkey::mcp::LatchkeyMcp::tool_catalog()).map_err(latchkey::Error::internal)?;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{text}");
            Ok(())
        }
        Command::Mcp { tenant, env_file_dirs, store, policy, .. } => {
            // Resolved before anything else, so a bad directory is refused at start.
            let workdir = latchkey::mcp::Workdir::here(&env_file_dirs)?;
            let vault = open_vault(&store, &policy).await?;
            let api_key = std::env::var("LATCHKEY_API_KEY").ok().filter(|k| !k.is_empty());
            latchkey::mcp::serve_stdio(vault, api_key.as_deref(), &tenant, workdir).await
        }
        Command::Run(_) | Command::Env(_) | Command::Audit { .. } => unreachable!("handled in main"),
        Command::Owner { action: OwnerAction::Add { tenant, name, public_url, store } } => {
            let vault = open_vault(&store, &PolicyArgs::defaults()).await?;
            vault.set_site(latchkey::vault::owners::Site::new(public_url.as_deref(), None)?);
            let owner = vault.add_owner_as_operator(&tenant, &name).await?;
            vault.store().close().await;
            println!("owner {} ({}) added to tenant {tenant}", owner.name, owner.owner_id);
            println!("sign-in link (one use, 24 h): {}", owner.signin_url);
            println!("owner token (shown once): {}", owner.token);
            Ok(())
        }
        Command::Approvals { action } => {
            let (store, command) = action.split();
            let vault = open_vault(&store, &PolicyArgs::defaults()).await?;
            let done = latchkey::vault::approvals::operator_command(&vault, command).await;
            vault.store().close().await;
            println!("{}", done?);
            Ok(())
        }
        Command::Policy { action: PolicyAction::Set { tenant, sensitive, store } } => {
            let vault = open_vault(&store, &PolicyArgs::defaults()).await?;
            let command = latchkey::vault::approvals::OperatorCommand::SetSensitive { tenant, on: sensitive == "on" };
            let done = latchkey::vault::approvals::operator_command(&vault, command).await;
            vault.store().close().await;
            println!("{}", done?);
            Ok(())
        }
        Command::RotateMasterKey { store } => {
            let bar = indicatif::ProgressBar::new_spinner().with_message("reading tenants' keys");
            let rotated = latchkey::config::rotate_master_key(&store, &|n| bar.set_message(format!("{n} tenants' keys read"))).await;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string(&rotated?).map_err(latchkey::Error::internal)?);
            Ok(())
        }
        Command::Backup { action: BackupAction::Create { file, store } } => {
            let done = latchkey::dump::create(&file, &store).await?;
            println!("wrote {}: {done}", file.display());
            eprintln!("note: {}", latchkey::dump::MASTER_KEY_NOTE);
            Ok(())
        }
        Command::Backup { action: BackupAction::Restore { file, store } } => {
            let done = latchkey::dump::restore(&file, &store).await?;
            println!("restored {}: {done}", file.display());
            eprintln!("note: {}", latchkey::dump::MASTER_KEY_NOTE);
            Ok(())
        }
        Command::Tenant { action: TenantAction::SetPlan { tenant, plan }, store } => {
            let vault = open_vault(&store, &PolicyArgs::defaults()).await?;
            vault.set_plan(&tenant, &plan).await?;
            vault.store().close().await;
            println!("tenant {tenant} is now on plan {plan}");
            Ok(())
        }
    }
}

/// Binds `--metrics-listen`, installs the recorder before the first request
/// is served, and serves `/metrics` until the returned token is cancelled.
async fn start_metrics(
    at: &str,
    vault: std::sync::Arc<latchkey::Vault>,
) -> latchkey::Result<(tokio_util::sync::CancellationToken, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| latchkey::Error::InvalidRequest(format!("cannot listen on {at} (--metrics-listen): {e}")))?;
    let addr = listener.local_addr().map_err(latchkey::Error::internal)?;
    latchkey::telemetry::install()?;
    tracing::info!(%addr, "metrics listening: GET /metrics");
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(latchkey::telemetry::listener::serve(listener, vault, stop.clone()));
    let task = tokio::spawn(async move {
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    });
    Ok((stop, task))
}

impl ApprovalAction {
    fn split(self) -> (StoreArgs, latchkey::vault::approvals::OperatorCommand) {
        use latchkey::vault::approvals::OperatorCommand as C;
        match self {
            ApprovalAction::List { tenant, status, store } => (store, C::List { tenant, status }),
            ApprovalAction::Approve { id, ttl, uses, store } => (store, C::Approve { id, ttl, uses }),
            ApprovalAction::Deny { id, reason, store } => (store, C::Deny { id, reason }),
        }
    }
}
