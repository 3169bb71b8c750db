//! The web assets compiled into the binary (`include_str!` of `web/` and `sdk/js/src/`): the
//! demo page at `/`, the operator dashboard at `/dashboard`, and the browser client at
//! `/client.js` (with its server-sent events transport at `/sse.js` and its streamed-message
//! assembly at `/messages.js`, which `client.js` imports as `./sse.js` and `./messages.js`).
//! The client is the JavaScript package's own source (`sdk/js/src/*.js`): the pages and the
//! package use the same modules, not copies.
//!
//! The OpenAPI document of the HTTP API (`docs/openapi.json`) is compiled in the same way and
//! served at `/api/v1/openapi.json` ([`OPENAPI`]).
//!
//! No file is read at run time and nothing is fetched from elsewhere (no CDN): the binary
//! alone serves a working UI, also on a machine without internet.
//!
//! # Caching
//!
//! Asset names are not versioned, so every response says `Cache-Control: no-cache` (the
//! browser may keep a copy but must revalidate) and carries a strong `ETag` computed from the
//! content at compile time; a request whose `If-None-Match` names it gets `304 Not Modified`
//! with no body. A new binary therefore takes effect on the next page load.
//!
//! # Headers
//!
//! Each asset has its exact content type (`text/html`, `text/javascript`, `text/css`, all
//! UTF-8) and `X-Content-Type-Options: nosniff`. Pages also get a Content-Security-Policy
//! allowing only same-origin scripts, styles, `fetch`, server-sent events and WebSocket.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use super::Body;

/// One compiled-in file.
#[derive(Debug)]
pub(crate) struct Asset {
    /// The request path that serves it.
    pub(crate) path: &'static str,
    /// The `Content-Type`.
    pub(crate) content_type: &'static str,
    /// The file.
    pub(crate) body: &'static str,
    /// The quoted `ETag` (FNV-1a 64 of `body`).
    pub(crate) etag: &'static str,
}

/// What pages may load: their own origin only.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

macro_rules! assets {
    ($( $path:literal => $file:literal, $ctype:literal; )*) => {
        /// Every asset, by path.
        static ASSETS: &[Asset] = &[
            $( Asset {
                path: $path,
                content_type: $ctype,
                body: include_str!(concat!("../../../", $file)),
                etag: {
                    const HEX: [u8; 18] = etag_of(include_str!(concat!("../../../", $file)));
                    match std::str::from_utf8(&HEX) {
                        Ok(s) => s,
                        Err(_) => panic!("etag is ASCII"),
                    }
                },
            }, )*
        ];
    };
}

assets! {
    "/" => "web/demo.html", "text/html; charset=utf-8";
    "/dashboard" => "web/dashboard.html", "text/html; charset=utf-8";
    "/client.js" => "sdk/js/src/client.js", "text/javascript; charset=utf-8";
    "/sse.js" => "sdk/js/src/sse.js", "text/javascript; charset=utf-8";
    "/messages.js" => "sdk/js/src/messages.js", "text/javascript; charset=utf-8";
    "/demo.js" => "web/demo.js", "text/javascript; charset=utf-8";
    "/dashboard.js" => "web/dashboard.js", "text/javascript; charset=utf-8";
    "/style.css" => "web/style.css", "text/css; charset=utf-8";
}

/// The OpenAPI 3.1 document of the HTTP API (`docs/openapi.json`), at `GET /api/v1/openapi.json`.
/// Served like the web assets (`no-cache`, `ETag`, 304), but routed by [`super::route`] itself:
/// it is an API description, not part of the pages.
pub(crate) static OPENAPI: Asset = Asset {
    path: "/api/v1/openapi.json",
    content_type: "application/json",
    body: include_str!("../../../docs/openapi.json"),
    etag: {
        const HEX: [u8; 18] = etag_of(include_str!("../../../docs/openapi.json"));
        match std::str::from_utf8(&HEX) {
            Ok(s) => s,
            Err(_) => panic!("etag is ASCII"),
        }
    },
};

/// `"` + 16 hex digits of FNV-1a 64 of `s` + `"`, at compile time.
const fn etag_of(s: &str) -> [u8; 18] {
    let bytes = s.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut d = 0;
    while d < 16 {
        out[1 + d] = digits[((h >> (60 - 4 * d)) & 0xf) as usize];
        d += 1;
    }
    out
}

/// The asset served at `path`, if any. O(number of assets).
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Answers a `GET` of an asset path (200 with the file, or 304); 404 for any other path.
pub(crate) fn serve<B>(req: &Request<B>) -> Response<Body> {
    match find(req.uri().path()) {
        Some(asset) => serve_asset(req, asset),
        None => super::error_response(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Answers a `GET` of `asset`: 200 with it, or 304 when `If-None-Match` names its `ETag`.
pub(crate) fn serve_asset<B>(req: &Request<B>, asset: &Asset) -> Response<Body> {
    let fresh = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == asset.etag
        });
    let mut r = if fresh {
        let mut r = Response::new(Body::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Body::new(Bytes::from_static(asset.body.as_bytes())))
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_quoted_hex_etag() {
        for a in ASSETS {
            assert_eq!(a.etag.len(), 18, "{}", a.path);
            assert!(a.etag.starts_with('"') && a.etag.ends_with('"'));
            assert!(a.etag[1..17].bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(!a.body.is_empty(), "{} is empty", a.path);
        }
        let mut tags: Vec<_> = ASSETS.iter().map(|a| a.etag).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[test]
    fn a_matching_if_none_match_gets_304_and_another_gets_the_file() {
        let a = find("/client.js").expect("client.js is an asset");
        let req = Request::get("/client.js")
            .header(header::IF_NONE_MATCH, a.etag)
            .body(())
            .expect("request");
        assert_eq!(serve(&req).status(), StatusCode::NOT_MODIFIED);
        let req = Request::get("/client.js")
            .header(header::IF_NONE_MATCH, "\"0000000000000000\"")
            .body(())
            .expect("request");
        let r = serve(&req);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
    }
}
