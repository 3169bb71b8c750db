//! Dev endpoints answer only local requests: a `Host` that is not a loopback name and a
//! foreign `Origin` are refused with 403 and a JSON error; loopback names and the page's own
//! origin work.

use agentcast_tests::{TestServer, token};
use serde_json::{Value, json};

async fn dev_server() -> TestServer {
    TestServer::start_with(|c| c.dev_mode = true).await
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_on_every_dev_route() {
    let server = dev_server().await;
    let body = json!({"user_id": "victim"}).to_string();
    for host in [
        "evil.example",
        "evil.example:8080",
        "10.0.0.1",
        "localhost.evil.example",
        "test",
    ] {
        for (method, path) in [
            ("GET", "/api/v1/dev/token?user=victim"),
            ("POST", "/api/v1/dev/simulate"),
            ("POST", "/api/v1/dev/disconnect"),
        ] {
            let (status, resp) = server
                .http_with_headers(method, path, &[("Host", host)], body.as_bytes())
                .await;
            assert_eq!(status, 403, "{host} {method} {path}: {resp}");
            assert!(error_of(&resp).contains("Host"), "{resp}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_host_names_are_served() {
    let server = dev_server().await;
    let port = server.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
        "127.0.0.2".to_owned(),
    ] {
        let (status, resp) = server
            .http_with_headers("GET", "/api/v1/dev/token?user=u", &[("Host", &host)], b"")
            .await;
        assert_eq!(status, 200, "{host}: {resp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_post_is_refused_and_closes_nothing() {
    let server = dev_server().await;
    let mut victim = server.connect(&token("victim")).await;
    let body = json!({"user_id": "victim"}).to_string();
    for origin in [
        "https://evil.example",
        "http://evil.example:80",
        "null",
        "file://",
    ] {
        for path in ["/api/v1/dev/disconnect", "/api/v1/dev/simulate"] {
            let (status, resp) = server
                .http_with_headers("POST", path, &[("Origin", origin)], body.as_bytes())
                .await;
            assert_eq!(status, 403, "{origin} {path}: {resp}");
            assert!(error_of(&resp).contains("Origin"), "{resp}");
        }
        let (status, _) = server
            .http_with_headers("GET", "/api/v1/dev/token", &[("Origin", origin)], b"")
            .await;
        assert_eq!(status, 403, "{origin} token");
    }
    // Neither disconnected nor sent a simulated run.
    assert!(victim.sync().await.is_empty());

    // The page's own origin is served.
    let own = format!("http://127.0.0.1:{}", server.addr.port());
    let (status, resp) = server
        .http_with_headers(
            "POST",
            "/api/v1/dev/disconnect",
            &[("Origin", &own)],
            body.as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(victim.closed().await, Some(1012));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_built_in_code_cannot_run_dev_mode_on_a_public_listener() {
    let mut cfg = agentcast_server::Config::default();
    cfg.dev_mode = true;
    cfg.jwt_secret = Some(agentcast_tests::SECRET.into());
    cfg.api_key = Some(agentcast_tests::API_KEY.into());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let run = agentcast_server::run(listener, cfg, std::future::pending());
    let err = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("dev mode on 0.0.0.0 must be refused, not served")
        .expect_err("dev mode on 0.0.0.0 must be refused");
    assert!(err.to_string().contains("not a loopback"), "{err}");
}
