//! Publish bodies: any bytes parse to a request or a named error, and an accepted `data`
//! is always valid JSON that re-validates.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    if let Ok(req) = agentcast_engine::PublishRequest::parse(&body) {
        assert!(agentcast_engine::Data::from_json(req.event.data.as_bytes().to_vec()).is_ok());
    }
});
