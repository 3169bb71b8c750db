//! The command line of the `agentcast` binary: `serve` (the default), `token`, `bench`.
//!
//! Configuration flags are global (they work before or after the subcommand) and each also
//! reads its `AGENTCAST_*` environment variable; see [`crate::config`].

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::auth::Authenticator;
pub use crate::bench::BenchArgs;
use crate::config::{Config, Overrides};
use crate::tier::Tier;

/// agentcast: real-time event gateway for AI-agent products.
#[derive(Debug, Parser)]
#[command(name = "agentcast", version, about)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration overrides.
    #[command(flatten)]
    pub overrides: Overrides,
}

/// A subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and WebSocket on one port (the default).
    Serve,
    /// Mint a client JWT with the configured HS256 secret.
    Token(TokenArgs),
    /// Load generator: connections, publish load, latency, loss, leaks, CPU and memory.
    Bench(BenchArgs),
}

/// `agentcast token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    pub user: String,
    /// The tier: free, early, mid or enterprise.
    #[arg(long, default_value = "free", value_parser = parse_tier)]
    pub tier: Tier,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// Channels the token may subscribe to, comma-separated (`job:*` is a prefix pattern).
    #[arg(long, value_delimiter = ',')]
    pub channels: Vec<String>,
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("unknown tier `{s}`: use free, early, mid or enterprise"))
}

/// The dev-mode banner: the generated secret and key, and a ready WebSocket URL and curl.
pub fn dev_banner(cfg: &Config, addr: SocketAddr, secret: &str, api_key: &str) -> String {
    let token = Authenticator::from_config(cfg)
        .ok()
        .and_then(|a| {
            a.mint("dev-user", Tier::Free, 24 * 3600, &["*".to_owned()])
                .ok()
        })
        .unwrap_or_default();
    format!(
        "\n\
         ================================================================\n\
         DEV MODE: no jwt_secret or api_key configured; generated fresh ones.\n\
         Do not use dev mode in production (set AGENTCAST_JWT_SECRET and AGENTCAST_API_KEY).\n\
         \n\
         jwt secret : {secret}\n\
         api key    : {api_key}\n\
         \n\
         demo page  : http://{addr}/   (dashboard: http://{addr}/dashboard)\n\
         connect    : ws://{addr}/ws?token={token}\n\
         publish    : curl -s -H 'Authorization: Bearer {api_key}' \\\n\
         \x20            -d '{{\"user_id\":\"dev-user\",\"type\":\"agent_started\",\"run_id\":\"r1\",\"data\":{{}}}}' \\\n\
         \x20            http://{addr}/api/v1/publish\n\
         ================================================================\n"
    )
}
