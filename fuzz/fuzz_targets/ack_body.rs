//! The `POST /api/v1/ack` body: any bytes give a seq or a 400, never a panic; a seq is
//! only ever the body's own `seq` member.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match agentcast_server::fuzzing::ack_body(data) {
        Ok(seq) => {
            let v: serde_json::Value = serde_json::from_slice(data).expect("accepted is JSON");
            assert_eq!(v["seq"].as_u64(), Some(seq));
        }
        Err((status, message)) => {
            assert_eq!(status, 400);
            assert!(!message.is_empty());
        }
    }
});
