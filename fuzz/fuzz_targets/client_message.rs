//! Client messages: any bytes parse to a message or a named error; never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = agentcast_engine::ClientMessage::parse(data);
});
