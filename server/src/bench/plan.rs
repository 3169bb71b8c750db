//! The bench's flags ([`BenchArgs`]) and the validated [`Plan`] they make: which server,
//! how many connections and users, how receivers split over processes, the publishing
//! schedule. Every refusal names the flag to fix.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::client::ReceiverPlan;
use super::floor::FloorPlan;
use super::payload;
use super::procfs;
use super::publisher::PublishPlan;
use crate::config::Config;

/// What is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `--rate` events per second, each to one user drawn at random; every device of that
    /// user must receive it.
    PerUser,
    /// One broadcast every `--interval-ms`; every connection must receive it.
    Broadcast,
    /// AI answers streamed token by token: `--runs` runs × `--tokens-per-sec` tokens, one
    /// receiver per run, which must rebuild the exact text (see `bench/tokens.rs`).
    Tokens,
}

/// How the tokens scenario publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenPublish {
    /// NDJSON lines over streaming publish connections (`POST /api/v1/publish/stream`).
    Stream,
    /// One `POST /api/v1/publish` per event over keep-alive connections (for comparison).
    Requests,
}

impl TokenPublish {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TokenPublish::Stream => "stream",
            TokenPublish::Requests => "requests",
        }
    }
}

impl Scenario {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scenario::PerUser => "per-user",
            Scenario::Broadcast => "broadcast",
            Scenario::Tokens => "tokens",
        }
    }
}

/// `agentcast bench`'s load flags. The server's `--jwt-secret` (to mint a token per simulated
/// user) and `--api-key` (to publish) are `bench`'s key flags ([`crate::cli::BenchKeys`]; or
/// `AGENTCAST_JWT_SECRET` and `AGENTCAST_API_KEY`).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Server base URL: `http://host:port` (or `ws://`; no TLS). Cluster mode: several,
    /// comma-separated; receiver group `i` connects to node `i % n`, publisher connection
    /// `j` publishes to node `j % n`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// WebSocket connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Distinct users; each has connections / users devices (default: one per connection).
    #[arg(long)]
    pub users: Option<usize>,
    /// What to publish.
    #[arg(long, value_enum, default_value_t = Scenario::PerUser)]
    pub scenario: Scenario,
    /// Events per second (per-user scenario).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Concurrent runs, one receiver each (tokens scenario).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Tokens per second of each run (tokens scenario).
    #[arg(long, default_value_t = 20.0)]
    pub tokens_per_sec: f64,
    /// WebSocket receivers per run, like a user's open tabs (tokens scenario).
    #[arg(long, default_value_t = 1)]
    pub tabs: usize,
    /// Runs that get one more receiver, stalled until every token is published (tokens
    /// scenario): its deltas merge in the server's ring.
    #[arg(long, default_value_t = 0)]
    pub stalled: usize,
    /// How the tokens scenario publishes: `stream` (one NDJSON line per event) or `requests`
    /// (one HTTP request per event).
    #[arg(long, value_enum, default_value_t = TokenPublish::Stream)]
    pub token_publish: TokenPublish,
    /// Milliseconds between two broadcasts (broadcast scenario).
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Size of each event's `data` JSON, bytes (at least 128).
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up before the window, seconds (events sent, not measured).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Child processes holding the connections (0: this process), each bound to source
    /// address 127.0.0.(2+i) when the server is on loopback.
    #[arg(long, default_value_t = 0)]
    pub procs: usize,
    /// Most new connections per second, over all processes.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Concurrent keep-alive HTTP connections publishing (a broadcast that is still being
    /// answered does not delay the next one).
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
    /// After publishing, wait at most this many seconds for in-flight deliveries.
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
    /// The server's pid, for its CPU time and memory (default: the process listening on the
    /// URL's port, found through /proc). Cluster mode: several, comma-separated; CPU and RSS
    /// are summed over them and also reported per pid.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Receivers whose connection closes unexpectedly reconnect with `?last_seq=` (the
    /// last seq they saw; full-jitter backoff, 50 ms doubling up to 2 s) and count it, so a
    /// node killed under load is measured: loss stays exact, since the resume replays what
    /// the connection missed.
    #[arg(long)]
    pub reconnect: bool,
    /// Broadcast scenario: after the run, measure the loopback floor in this process with
    /// the same connections, rounds and interval, writing the measured frame's size (one
    /// plain `write` per socket per round from one thread, an epoll reader in a child; see
    /// `bench/floor.rs`), and print it next to the server's CPU per delivery. Adds
    /// `--warmup` + `--duration` seconds to the run.
    #[arg(long)]
    pub floor: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Internal: run as receiver child `i` of a parent bench.
    #[arg(long, hide = true)]
    pub child_index: Option<usize>,
    /// Internal: the parent's run id (hex).
    #[arg(long, hide = true)]
    pub run_id: Option<String>,
    /// Internal: run as the `--floor` reader, connecting `--connections` sockets here.
    #[arg(long, hide = true)]
    pub floor_reader: Option<String>,
}

/// Validated settings of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The server.
    pub addr: SocketAddr,
    /// Its `Host` header.
    pub host: String,
    /// Every node of `--url` (the first is `addr`).
    pub nodes: Vec<(SocketAddr, String)>,
    /// Connections.
    pub connections: usize,
    /// Users.
    pub users: usize,
    /// Receiver groups: `procs`, or 1 in-process.
    pub groups: usize,
    /// Run id.
    pub run: u32,
    /// The publish API key.
    pub api_key: String,
    /// Publishing schedule.
    pub publish: PublishPlan,
    /// `--floor`: the floor to measure after the run (its `write_bytes` is a placeholder,
    /// the payload size, until the run measured the frame).
    pub floor: Option<FloorPlan>,
}

impl Plan {
    /// Checks `args` against each other and the configuration. Every refusal says which flag
    /// to fix.
    pub fn new(args: &BenchArgs, cfg: &Config) -> Result<Plan, String> {
        let nodes = args
            .url
            .split(',')
            .map(|u| parse_url(u.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let (addr, host) = nodes[0].clone();
        let n = args.connections;
        if n == 0 {
            return Err("--connections must be at least 1".into());
        }
        let users = args.users.unwrap_or(n);
        if users == 0 || users > n || n % users != 0 {
            return Err(format!(
                "--users must divide --connections ({n}) so every user has the same number of devices"
            ));
        }
        if u32::try_from(users).is_err() {
            return Err("--users is too large".into());
        }
        let secs = |v: f64, name: &str, min: f64| {
            if v.is_finite() && v >= min && v <= 86_400.0 {
                Ok(v)
            } else {
                Err(format!(
                    "--{name} must be a number of seconds in [{min}, 86400]"
                ))
            }
        };
        let duration = secs(args.duration, "duration", 0.1)?;
        let warmup = secs(args.warmup, "warmup", 0.0)?;
        secs(args.drain, "drain", 0.0)?;
        if !(args.payload_bytes >= payload::MIN_PAYLOAD_BYTES && args.payload_bytes <= 512 * 1024) {
            return Err(format!(
                "--payload-bytes must be in [{}, 524288]",
                payload::MIN_PAYLOAD_BYTES
            ));
        }
        if args.procs > 253 {
            return Err("--procs must be at most 253 (source addresses 127.0.0.2..=254)".into());
        }
        if !(args.connect_rate.is_finite() && args.connect_rate >= 1.0) {
            return Err("--connect-rate must be at least 1".into());
        }
        if !(1..=256).contains(&args.publishers) {
            return Err("--publishers must be in [1, 256]".into());
        }
        let (period, users_opt) = match args.scenario {
            Scenario::PerUser => {
                if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1e6) {
                    return Err("--rate must be in (0, 1000000] events/s".into());
                }
                (Duration::from_secs_f64(1.0 / args.rate), Some(users))
            }
            Scenario::Tokens => {
                super::tokens::validate(args, cfg)?;
                (
                    Duration::from_secs_f64(1.0 / args.tokens_per_sec),
                    Some(users),
                )
            }
            Scenario::Broadcast => {
                if args.interval_ms == 0 {
                    return Err("--interval-ms must be at least 1".into());
                }
                (Duration::from_millis(args.interval_ms), None)
            }
        };
        let groups = args.procs.max(1);
        if let Some(limit) = procfs::open_files_limit() {
            let per_group = n.div_ceil(groups) as u64;
            if per_group + 64 > limit {
                return Err(format!(
                    "{per_group} connections per process exceed the open-files limit of {limit}: \
                     use --procs {} or more",
                    (n as u64).div_ceil(limit.saturating_sub(64).max(1))
                ));
            }
        }
        let api_key = cfg
            .api_key
            .clone()
            .ok_or("the server's publish key is needed: --api-key or AGENTCAST_API_KEY")?;
        if cfg.jwt_secret.is_none() {
            return Err(
                "the server's HS256 secret is needed to mint tokens: --jwt-secret or AGENTCAST_JWT_SECRET"
                    .into(),
            );
        }
        let run = match &args.run_id {
            Some(r) => u32::from_str_radix(r, 16).map_err(|_| "--run-id must be hex")?,
            None => rand::random(),
        };
        let per_sec = 1.0 / period.as_secs_f64();
        let warmup_events = (warmup * per_sec).round() as u64;
        let measured_events = ((duration * per_sec).round() as u64).max(1);
        let floor = if args.floor {
            if args.scenario != Scenario::Broadcast {
                return Err(
                    "--floor measures one write per connection per broadcast: use it with --scenario broadcast"
                        .into(),
                );
            }
            let f = FloorPlan {
                connections: n,
                warmup_rounds: warmup_events,
                rounds: measured_events,
                interval: period,
                write_bytes: args.payload_bytes,
            };
            f.check().map_err(|e| format!("--floor: {e}"))?;
            Some(f)
        } else {
            None
        };
        Ok(Plan {
            publish: PublishPlan {
                addr,
                host: host.clone(),
                nodes: nodes.clone(),
                api_key: api_key.clone(),
                run,
                users: users_opt,
                period,
                warmup_events,
                measured_events,
                payload_bytes: args.payload_bytes,
                connections: args.publishers,
            },
            addr,
            host,
            nodes,
            connections: n,
            users,
            groups,
            run,
            api_key,
            floor,
        })
    }

    /// The receivers of group `i`: an even share of the connections and of the connect rate,
    /// bound to 127.0.0.(2+i) when children talk to a loopback IPv4 server.
    pub fn receivers(&self, i: usize, args: &BenchArgs) -> ReceiverPlan {
        let first = self.connections * i / self.groups;
        let end = self.connections * (i + 1) / self.groups;
        let (addr, host) = self.nodes[i % self.nodes.len()].clone();
        let source_ip = match addr.ip() {
            IpAddr::V4(ip) if args.procs > 0 && ip.is_loopback() => {
                Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8)))
            }
            _ => None,
        };
        ReceiverPlan {
            addr,
            host,
            source_ip,
            first,
            count: end - first,
            users: self.users,
            run: self.run,
            connect_rate: args.connect_rate / self.groups as f64,
            reconnect: args.reconnect,
        }
    }
}

/// `(socket address, Host header)` of an `http://` or `ws://` base URL.
pub(crate) fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "ws") => {}
        Some(s) => {
            return Err(format!(
                "--url: scheme {s} is not supported (use http:// or ws://)"
            ));
        }
        None => return Err("--url needs a scheme, e.g. http://127.0.0.1:8080".into()),
    }
    let host = uri.host().ok_or("--url needs a host")?;
    let port = uri.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url: {host} has no address"))?;
    Ok((addr, format!("{host}:{port}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(extra: &[&str]) -> (BenchArgs, Config) {
        let mut argv = vec![
            "agentcast",
            "--jwt-secret",
            "bench-test-secret-of-at-least-32-bytes",
            "--api-key",
            "k",
            "bench",
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_args(argv).unwrap();
        let cfg = cli.config().unwrap();
        match cli.command {
            Command::Bench { bench, .. } => (bench, cfg),
            other => panic!("{other:?}"),
        }
    }

    fn plan(extra: &[&str]) -> Result<Plan, String> {
        let (a, c) = parse(extra);
        Plan::new(&a, &c)
    }

    #[test]
    fn defaults_make_a_valid_plan() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.users, 1000);
        assert_eq!(p.groups, 1);
        assert_eq!(p.publish.warmup_events, 2000);
        assert_eq!(p.publish.measured_events, 10_000);
    }

    #[test]
    fn tokens_flags_are_checked_and_name_themselves() {
        let (a, c) = parse(&["--scenario", "tokens", "--token-publish", "requests"]);
        assert_eq!(a.token_publish, TokenPublish::Requests);
        assert!(Plan::new(&a, &c).is_ok());
        for (flags, needle) in [
            (&["--runs", "0"][..], "--runs"),
            (&["--tokens-per-sec", "0"][..], "--tokens-per-sec"),
            (
                &["--tokens-per-sec", "10000", "--duration", "7"][..],
                "tokens per run",
            ),
        ] {
            let mut f = vec!["--scenario", "tokens"];
            f.extend_from_slice(flags);
            let e = plan(&f).unwrap_err();
            assert!(e.contains(needle), "{flags:?}: {e}");
        }
    }

    #[test]
    fn bad_flags_name_themselves() {
        for (flags, needle) in [
            (&["--connections", "0"][..], "--connections"),
            (&["--connections", "10", "--users", "3"], "--users"),
            (&["--connections", "10", "--users", "11"], "--users"),
            (&["--rate", "0"], "--rate"),
            (
                &["--scenario", "broadcast", "--interval-ms", "0"],
                "--interval-ms",
            ),
            (&["--payload-bytes", "10"], "--payload-bytes"),
            (&["--duration", "0"], "--duration"),
            (&["--procs", "300"], "--procs"),
            (&["--url", "https://x:1"], "https"),
            (&["--url", "nope"], "--url"),
            (&["--connect-rate", "0"], "--connect-rate"),
        ] {
            let err = plan(flags).unwrap_err();
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
    }

    #[test]
    fn keys_are_required() {
        let cli = Cli::try_parse_args(["agentcast", "bench"]).unwrap();
        let Command::Bench { bench: b, .. } = cli.command else {
            panic!()
        };
        let err = Plan::new(&b, &Config::default()).unwrap_err();
        assert!(err.contains("--api-key"), "{err}");
    }

    #[test]
    fn groups_split_connections_and_source_addresses() {
        let (a, c) = parse(&["--connections", "15000", "--users", "7500", "--procs", "2"]);
        let p = Plan::new(&a, &c).unwrap();
        let g0 = p.receivers(0, &a);
        let g1 = p.receivers(1, &a);
        assert_eq!(
            (g0.first, g0.count, g1.first, g1.count),
            (0, 7500, 7500, 7500)
        );
        assert_eq!(g0.source_ip, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(g1.source_ip, Some("127.0.0.3".parse().unwrap()));
        assert_eq!(g1.connect_rate, 1000.0);
        let (a, c) = parse(&["--connections", "10"]);
        assert_eq!(Plan::new(&a, &c).unwrap().receivers(0, &a).source_ip, None);
    }

    #[test]
    fn several_server_pids_and_reconnect_reach_the_plan() {
        let (a, c) = parse(&["--server-pid", "11,12,13", "--reconnect", "--procs", "2"]);
        assert_eq!(a.server_pid, vec![11, 12, 13]);
        let p = Plan::new(&a, &c).unwrap();
        assert!(p.receivers(0, &a).reconnect && p.receivers(1, &a).reconnect);
        let (a, c) = parse(&[]);
        assert!(a.server_pid.is_empty());
        assert!(!Plan::new(&a, &c).unwrap().receivers(0, &a).reconnect);
    }

    #[test]
    fn floor_follows_the_broadcast_schedule_and_only_broadcast() {
        let p = plan(&[
            "--scenario",
            "broadcast",
            "--connections",
            "5000",
            "--interval-ms",
            "100",
            "--duration",
            "10",
            "--warmup",
            "3",
            "--floor",
        ])
        .unwrap();
        let f = p.floor.unwrap();
        assert_eq!(
            (f.connections, f.warmup_rounds, f.rounds, f.interval),
            (5000, 30, 100, Duration::from_millis(100))
        );
        assert!(plan(&["--scenario", "broadcast"]).unwrap().floor.is_none());
        let e = plan(&["--floor"]).unwrap_err();
        assert!(e.contains("--floor") && e.contains("broadcast"), "{e}");
        let (a, _) = parse(&["--floor-reader", "127.0.0.1:9", "--connections", "7"]);
        assert_eq!(
            (a.floor_reader.as_deref(), a.connections),
            (Some("127.0.0.1:9"), 7)
        );
    }

    #[test]
    fn broadcast_schedule_follows_the_interval() {
        let p = plan(&[
            "--scenario",
            "broadcast",
            "--interval-ms",
            "100",
            "--duration",
            "30",
            "--warmup",
            "1",
        ])
        .unwrap();
        assert_eq!(p.publish.users, None);
        assert_eq!(p.publish.measured_events, 300);
        assert_eq!(p.publish.warmup_events, 10);
    }
}
