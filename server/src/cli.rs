//! The command line of the `agentcast` binary: `serve` (the default), `token`, `bench`.
//!
//! Each subcommand has only the flags it uses, and each flag also reads its `AGENTCAST_*`
//! environment variable (precedence: flag, then environment, then the `--config` file; see
//! [`crate::config`]):
//!
//! - `serve`: every server setting ([`Overrides`]).
//! - `token`: `--config` and the signing settings ([`SigningArgs`]: `--jwt-secret`,
//!   `--jwt-audience`, `--jwt-issuer`), plus the token's claims ([`TokenArgs`]).
//! - `bench`: the signing settings and `--api-key` ([`BenchKeys`]), plus the load
//!   ([`BenchArgs`]).
//!
//! Two older forms keep working, because [`Cli::try_parse_args`] rewrites them before clap
//! sees them: no subcommand means `serve` (`agentcast --listen 0.0.0.0:8080`), and flags given
//! before the subcommand belong to it (`agentcast --jwt-secret S --api-key K bench …` is
//! `agentcast bench --jwt-secret S --api-key K …`). A flag the subcommand does not have is
//! refused by clap, naming it.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::auth::Authenticator;
pub use crate::bench::BenchArgs;
use crate::config::{Config, ConfigError, Overrides};
use crate::tier::Tier;

/// agentcast: real-time event gateway for AI-agent products.
#[derive(Debug, Parser)]
#[command(
    name = "agentcast",
    version,
    about,
    override_usage = "agentcast [COMMAND] [OPTIONS]",
    after_help = "With no command, `agentcast [OPTIONS]` runs `serve`, and options given before a \
                  command are passed to it.\n`agentcast <COMMAND> --help` lists a command's options."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A subcommand.
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of `Serve(Overrides)` costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve HTTP and WebSocket on one port (the default).
    Serve(Overrides),
    /// Mint a client JWT with the configured HS256 secret.
    Token {
        /// The token's claims.
        #[command(flatten)]
        token: TokenArgs,
        /// The key that signs it.
        #[command(flatten)]
        signing: SigningArgs,
    },
    /// Load generator: connections, publish load, latency, loss, leaks, CPU and memory.
    Bench {
        /// The load.
        #[command(flatten)]
        bench: BenchArgs,
        /// The server's keys.
        #[command(flatten)]
        keys: BenchKeys,
    },
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

/// What signs a client token the server accepts: the server's HS256 secret and the `aud` /
/// `iss` it checks (used by `token` and `bench`). Each is read from its flag, else its
/// environment variable, else the `--config` file.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "The server's keys")]
pub struct SigningArgs {
    /// TOML configuration file of the server; its `jwt_secret`, `jwt_audience` and
    /// `jwt_issuer` are used.
    #[arg(long, env = "AGENTCAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// The server's HS256 secret for client JWTs.
    #[arg(long, env = "AGENTCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The `aud` claim the server requires.
    #[arg(long, env = "AGENTCAST_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The `iss` claim the server requires.
    #[arg(long, env = "AGENTCAST_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
}

/// `agentcast bench`'s keys: the signing settings, to mint a token per simulated user, and the
/// publish API key.
#[derive(Debug, Clone, Args)]
pub struct BenchKeys {
    /// Signing settings.
    #[command(flatten)]
    pub signing: SigningArgs,
    /// The server's publish API key.
    #[arg(long, env = "AGENTCAST_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl SigningArgs {
    /// These settings as configuration overrides (everything else unset).
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            jwt_secret: self.jwt_secret.clone(),
            jwt_audience: self.jwt_audience.clone(),
            jwt_issuer: self.jwt_issuer.clone(),
            ..Overrides::default()
        }
    }
}

impl Cli {
    /// Parses the process's arguments (see [`Cli::try_parse_args`]); prints help, the version
    /// or the error and exits as clap does.
    pub fn parse_args() -> Cli {
        Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses a command line, after [`normalize`] has made its older forms explicit: with no
    /// subcommand `serve` is inserted, and flags before the subcommand are moved after it.
    pub fn try_parse_args<I, T>(argv: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = Cli::command();
        let argv = normalize(&command, argv.into_iter().map(Into::into).collect());
        let matches = command.try_get_matches_from_mut(argv)?;
        Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }

    /// The configuration this command line names: the `--config` file (if any), overridden by
    /// the environment, overridden by flags, and validated.
    pub fn config(&self) -> Result<Config, ConfigError> {
        match &self.command {
            Command::Serve(o) => Config::load(o),
            Command::Token { signing, .. } => Config::load(&signing.overrides()),
            Command::Bench { keys, .. } => {
                let mut o = keys.signing.overrides();
                o.api_key.clone_from(&keys.api_key);
                Config::load(&o)
            }
        }
    }
}

/// Rewrites `argv` so that clap sees an explicit subcommand: `agentcast [FLAGS]` becomes
/// `agentcast serve [FLAGS]`, and `agentcast FLAGS sub REST` becomes `agentcast sub FLAGS REST`.
/// Top-level help and version (`agentcast --help`, `agentcast -V`) are left alone, and so is
/// anything else it does not recognise (clap then reports it). Whether a leading `--flag`
/// takes the next argument as its value is looked up in the subcommands' definitions.
pub fn normalize(command: &clap::Command, argv: Vec<OsString>) -> Vec<OsString> {
    let Some((program, rest)) = argv.split_first() else {
        return argv;
    };
    let takes_value = |long: &str| {
        command.get_subcommands().any(|sub| {
            sub.get_arguments()
                .any(|a| a.get_long() == Some(long) && a.get_action().takes_values())
        })
    };
    let mut leading = 0;
    while let Some(arg) = rest.get(leading).and_then(|a| a.to_str()) {
        if arg == "--" || !arg.starts_with('-') || arg == "-" {
            break;
        }
        leading += 1;
        if let Some(long) = arg.strip_prefix("--") {
            if !long.contains('=') && takes_value(long) {
                leading += 1;
            }
        }
    }
    let leading = leading.min(rest.len());
    let (flags, tail) = rest.split_at(leading);
    let is_meta = |a: &OsString| matches!(a.to_str(), Some("-h" | "--help" | "-V" | "--version"));
    let names: Vec<&str> = command
        .get_subcommands()
        .map(clap::Command::get_name)
        .chain(["help"])
        .collect();
    let sub = tail
        .first()
        .and_then(|a| a.to_str())
        .filter(|a| names.contains(a));
    let mut out = vec![program.clone()];
    match sub {
        Some(_) if flags.is_empty() => return argv,
        Some(_) => {
            out.push(tail[0].clone());
            out.extend_from_slice(flags);
            out.extend_from_slice(&tail[1..]);
        }
        None if tail.is_empty() && !flags.is_empty() && flags.iter().all(is_meta) => return argv,
        None if tail.is_empty() => {
            out.push("serve".into());
            out.extend_from_slice(flags);
        }
        None => return argv,
    }
    out
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("unknown tier `{s}`: use free, early, mid or enterprise"))
}

/// The user of the dev-mode banner's connect URL and curl: the demo page's default user (see
/// `web/demo.js` and `GET /api/v1/dev/token`), so the printed curl shows on the printed page.
pub const DEV_USER: &str = "demo-user";

/// The dev-mode banner: the generated secret and key, and a ready WebSocket URL and curl, both
/// for [`DEV_USER`].
pub fn dev_banner(cfg: &Config, addr: SocketAddr, secret: &str, api_key: &str) -> String {
    let token = Authenticator::from_config(cfg)
        .ok()
        .and_then(|a| {
            a.mint(DEV_USER, Tier::Free, 24 * 3600, &["*".to_owned()])
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
         \x20            -d '{{\"user_id\":\"{DEV_USER}\",\"type\":\"agent_started\",\"run_id\":\"r1\",\"data\":{{}}}}' \\\n\
         \x20            http://{addr}/api/v1/publish\n\
         ================================================================\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Command {
        Cli::try_parse_args(argv.iter().copied())
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
            .command
    }

    #[test]
    fn no_subcommand_is_serve_with_the_flags_given() {
        let Command::Serve(o) = parse(&["agentcast", "--listen=0.0.0.0:9", "--log-level", "warn"])
        else {
            panic!("not serve")
        };
        assert_eq!(o.listen, Some("0.0.0.0:9".parse().unwrap()));
        assert_eq!(o.log_level.as_deref(), Some("warn"));
        assert!(matches!(parse(&["agentcast"]), Command::Serve(_)));
    }

    #[test]
    fn help_after_server_flags_is_serves_help() {
        let err =
            Cli::try_parse_args(["agentcast", "--listen", "0.0.0.0:9", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(err.to_string().contains("agentcast serve"), "{err}");
        let err = Cli::try_parse_args(["agentcast", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(err.to_string().contains("Commands:"), "{err}");
    }

    #[test]
    fn flags_before_the_subcommand_belong_to_it() {
        // The README's benchmark lines.
        let Command::Serve(o) = parse(&[
            "agentcast",
            "--jwt-secret",
            "s",
            "--api-key",
            "k",
            "--log-level",
            "warn",
            "serve",
        ]) else {
            panic!("not serve")
        };
        assert_eq!(o.jwt_secret.as_deref(), Some("s"));
        assert_eq!(o.log_level.as_deref(), Some("warn"));
        let Command::Bench { keys, bench } = parse(&[
            "agentcast",
            "--jwt-secret",
            "s",
            "--api-key",
            "k",
            "bench",
            "--connections",
            "7",
        ]) else {
            panic!("not bench")
        };
        assert_eq!(keys.signing.jwt_secret.as_deref(), Some("s"));
        assert_eq!(keys.api_key.as_deref(), Some("k"));
        assert_eq!(bench.connections, 7);
    }

    #[test]
    fn a_flag_value_that_names_a_subcommand_is_still_a_value() {
        let Command::Token { signing, token } =
            parse(&["agentcast", "--jwt-secret", "bench", "token", "--user", "u"])
        else {
            panic!("not token")
        };
        assert_eq!(signing.jwt_secret.as_deref(), Some("bench"));
        assert_eq!(token.user, "u");
    }

    #[test]
    fn server_flags_are_refused_by_token_and_bench() {
        for argv in [
            &["agentcast", "token", "--user", "u", "--heartbeat-ms", "5"][..],
            &["agentcast", "--max-connections", "5", "bench"],
        ] {
            let err = Cli::try_parse_args(argv.iter().copied()).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{argv:?}"
            );
        }
    }
}
