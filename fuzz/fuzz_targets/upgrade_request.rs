//! The `GET /ws` upgrade request: any request head that an HTTP/1.1 parser accepts gives the
//! handshake's answer (an upgrade with a key, `last_seq` and token, or a 400/405/426 refusal);
//! never a panic; what it extracts is consistent with the request.
#![no_main]
use base64::Engine as _;

fn request(data: &[u8]) -> Option<http::Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(data).ok()?;
    let mut b = http::Request::builder().method(req.method?).uri(req.path?);
    for h in req.headers.iter() {
        b = b.header(h.name, h.value);
    }
    b.body(()).ok()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(q) = std::str::from_utf8(data) {
        // The query decoder alone, on any string.
        let _ = agentcast_server::fuzzing::query_param(q, "token");
    }
    let Some(req) = request(data) else {
        return;
    };
    let out = agentcast_server::fuzzing::upgrade_request(&req);
    assert_eq!(out, agentcast_server::fuzzing::upgrade_request(&req));
    let query = req.uri().query().unwrap_or("");
    match out {
        Ok((key, last_seq, token)) => {
            assert_eq!(req.method(), http::Method::GET);
            let raw = base64::engine::general_purpose::STANDARD.decode(&key);
            assert_eq!(raw.map(|k| k.len()).ok(), Some(16));
            let param = agentcast_server::fuzzing::query_param(query, "last_seq");
            assert_eq!(last_seq, param.map(|p| p.parse::<u64>().expect("accepted")));
            let from_query = agentcast_server::fuzzing::query_param(query, "token");
            let header = req.headers().get(http::header::AUTHORIZATION);
            assert!(
                header.is_some() || token == from_query.unwrap_or_default(),
                "token not from the query"
            );
        }
        Err((status, message)) => {
            assert!(matches!(status, 400 | 405 | 426), "{status}");
            assert!(!message.is_empty());
        }
    }
});
