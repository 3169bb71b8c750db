//! The `agentcast` binary: parses the command line and calls [`agentcast_server::run`].

use std::process::ExitCode;

use agentcast_server::auth::Authenticator;
use agentcast_server::cli::{Cli, Command};
use agentcast_server::config::Config;
use anyhow::Context as _;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse_args();
    let cfg = cli.config()?;
    match cli.command {
        Command::Serve(_) => serve(cfg),
        Command::Token { token: t, .. } => {
            let auth = Authenticator::from_config(&cfg)?;
            println!("{}", auth.mint(&t.user, t.tier, t.ttl, &t.channels)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { bench, .. } => agentcast_server::bench::main(&bench, &cfg),
    }
}

fn serve(mut cfg: Config) -> anyhow::Result<ExitCode> {
    agentcast_server::logging::init(&cfg).map_err(|e| anyhow::anyhow!("logging: {e}"))?;
    let dev = match cfg
        .needs_dev_mode()
        .then(|| cfg.enter_dev_mode())
        .transpose()
    {
        Ok(dev) => dev,
        Err(refused) => {
            eprintln!("error: {refused}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.io_threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match agentcast_server::listener::raise_open_files_limit() {
        Ok(l) => tracing::info!(
            soft = l.soft,
            hard = l.hard,
            was = l.before,
            "open files limit (each connection holds one; raise the hard limit with LimitNOFILE)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open files limit"),
    }
    rt.block_on(async move {
        let listener = agentcast_server::listener::bind(&cfg)
            .with_context(|| format!("binding {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        if let Some((secret, key)) = &dev {
            eprintln!(
                "{}",
                agentcast_server::cli::dev_banner(&cfg, addr, secret, key)
            );
        }
        agentcast_server::run(listener, cfg, shutdown_signal()).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
