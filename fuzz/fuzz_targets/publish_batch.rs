//! Publish batches: any bytes give per-item results or one error; never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    let _ = agentcast_engine::PublishRequest::parse_batch(&body, 1_000);
});
