//! The `latchkey` binary: parse the command line and hand over to the library.

use clap::{Parser, Subcommand};
use latchkey::config::{PolicyArgs, StoreArgs, open_vault};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Self-hosted, agent-native secret vault (REST + MCP)"
)]
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
        /// (e.g. https://vault.example.com); its host and origin are allowed on /mcp.
        #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Operator commands for tenants.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("LATCHKEY_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {}", e.public_message_with_cause());
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> latchkey::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            public_url,
            store,
            policy,
        } => {
            let vault = open_vault(&store, &policy).await?;
            let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
                latchkey::Error::InvalidRequest(format!("cannot listen on {listen}: {e}"))
            })?;
            let addr = listener.local_addr().map_err(latchkey::Error::internal)?;
            tracing::info!(%addr, backend = vault.store().backend(), "latchkey listening");
            // One line on stdout so scripts and tests learn the port when listening on :0.
            println!("latchkey listening on http://{addr}");
            let allowed = latchkey::mcp::http::Allowed::new(public_url.as_deref());
            latchkey::server::serve(
                listener,
                vault,
                allowed,
                latchkey::server::shutdown_signal(),
            )
            .await
            .map_err(latchkey::Error::internal)
        }
        Command::Tenant {
            action: TenantAction::SetPlan { tenant, plan },
            store,
        } => {
            let vault = open_vault(&store, &PolicyArgs::defaults()).await?;
            vault.set_plan(&tenant, &plan).await?;
            vault.store().close().await;
            println!("tenant {tenant} is now on plan {plan}");
            Ok(())
        }
    }
}
