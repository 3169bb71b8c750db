//! The `GET /sse` request: any request head that an HTTP/1.1 parser accepts gives an answer
//! (a resume point, a token and channels, or a 400/405 refusal); never a panic; the same
//! answer twice; what it extracts is consistent with the request.
#![no_main]

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
    let Some(req) = request(data) else {
        return;
    };
    let out = agentcast_server::fuzzing::sse_request(&req);
    assert_eq!(out, agentcast_server::fuzzing::sse_request(&req));
    match out {
        Ok((_, _, channels)) => {
            assert_eq!(req.method(), http::Method::GET);
            assert!(channels.iter().all(|c| !c.is_empty() && c.len() <= 128));
        }
        Err((status, message)) => {
            assert!(matches!(status, 400 | 405), "{status}");
            assert!(!message.is_empty());
        }
    }
});
