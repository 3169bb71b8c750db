//! `agentcast --help` and each subcommand's `--help`, from the real binary: every subcommand
//! lists exactly the flags it uses (server flags belong to `serve` alone), and the older
//! command-line forms (no subcommand, key flags before `bench`) still parse.

use std::collections::BTreeSet;
use std::path::Path;

use agentcast_tests::BinaryServer;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_agentcast"))
}

/// The stdout of `agentcast <args>`, which must exit 0.
fn help(args: &[&str]) -> String {
    let (status, out, err) = BinaryServer::run_to_exit(bin(), args, &[]);
    assert!(
        status.success(),
        "agentcast {args:?}: {status}\n{out}\n{err}"
    );
    out
}

/// Every `--long-flag` a help text lists.
fn flags(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Flags only the server uses; none may appear outside `serve`.
const SERVER_ONLY: &[&str] = &[
    "--listen",
    "--heartbeat-ms",
    "--idle-timeout-ms",
    "--max-connections",
    "--webhook-url",
    "--log-level",
    "--log-format",
    "--jwt-public-key",
    "--jwt-leeway-secs",
];

#[test]
fn top_level_help_lists_the_subcommands_and_says_serve_is_the_default() {
    let out = help(&["--help"]);
    for sub in ["serve", "token", "bench"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(sub)),
            "no `{sub}` in:\n{out}"
        );
    }
    assert!(out.contains("runs `serve`"), "{out}");
    for f in SERVER_ONLY {
        assert!(!out.contains(f), "top-level help lists {f}:\n{out}");
    }
}

#[test]
fn token_help_lists_only_the_claims_and_the_signing_settings() {
    let out = help(&["token", "--help"]);
    assert_eq!(
        flags(&out),
        set(&[
            "--user",
            "--tier",
            "--ttl",
            "--channels",
            "--config",
            "--jwt-secret",
            "--jwt-audience",
            "--jwt-issuer",
            "--help",
        ]),
        "token --help:\n{out}"
    );
}

#[test]
fn bench_help_lists_its_load_flags_and_the_servers_keys_but_no_server_settings() {
    let out = help(&["bench", "--help"]);
    let listed = flags(&out);
    for f in [
        "--url",
        "--connections",
        "--users",
        "--scenario",
        "--rate",
        "--duration",
        "--procs",
        "--json",
        "--jwt-secret",
        "--api-key",
    ] {
        assert!(listed.contains(f), "bench --help lacks {f}:\n{out}");
    }
    for f in SERVER_ONLY {
        assert!(!listed.contains(*f), "bench --help lists {f}:\n{out}");
    }
    // The load flags come first, then the keys under their own heading.
    let keys = out.find("The server's keys:").expect("a keys heading");
    assert!(out.find("--connections").unwrap() < keys, "{out}");
    assert!(out.find("--api-key").unwrap() > keys, "{out}");
}

#[test]
fn serve_help_lists_every_server_flag() {
    let out = help(&["serve", "--help"]);
    let listed = flags(&out);
    for f in SERVER_ONLY
        .iter()
        .chain(&["--config", "--jwt-secret", "--api-key"])
    {
        assert!(listed.contains(*f), "serve --help lacks {f}:\n{out}");
    }
}

#[test]
fn key_flags_before_the_subcommand_still_reach_it() {
    let secret = "a-secret-that-is-long-enough-for-hs256-0123";
    // `agentcast --jwt-secret S token …` signs with S, exactly as `token --jwt-secret S` does.
    let (status, before, err) = BinaryServer::run_to_exit(
        bin(),
        &[
            "--jwt-secret",
            secret,
            "token",
            "--user",
            "u1",
            "--ttl",
            "60",
        ],
        &[],
    );
    assert!(status.success(), "{err}");
    let token = before.trim();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {before}");
    // A server flag given to `token` is refused, naming it.
    let (status, _, err) = BinaryServer::run_to_exit(
        bin(),
        &["--heartbeat-ms", "5", "token", "--user", "u1"],
        &[("AGENTCAST_JWT_SECRET", secret)],
    );
    assert!(!status.success(), "token accepted --heartbeat-ms");
    assert!(err.contains("--heartbeat-ms"), "{err}");
}

#[test]
fn no_subcommand_runs_serve_with_the_flags_given() {
    let server = BinaryServer::spawn(
        bin(),
        &["--listen", "127.0.0.1:0", "--log-level", "info"],
        &[
            (
                "AGENTCAST_JWT_SECRET",
                "a-secret-that-is-long-enough-for-hs256-0123",
            ),
            ("AGENTCAST_API_KEY", "k"),
        ],
    );
    assert!(server.addr.port() != 0, "{}", server.log());
}
