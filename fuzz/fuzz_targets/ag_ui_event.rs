//! AG-UI events: any bytes parse to an event or a named error; an accepted event maps to a
//! native event (or a named error) whose `data` is valid JSON, and its frame translates back
//! to valid JSON.
#![no_main]
use agentcast_engine::ag_ui::{AgUiEvent, to_ag_ui, to_native};
use agentcast_engine::frame::{EventFields, Origin, encode_event};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(ev) = AgUiEvent::parse(data) else {
        return;
    };
    let Ok(native) = to_native(&ev, None) else {
        return;
    };
    assert!(agentcast_engine::Data::from_json(native.data.as_bytes().to_vec()).is_ok());
    let frame = encode_event(&EventFields {
        kind: &native.kind,
        origin: Origin::User { seq: 7 },
        run_id: native.run_id.as_deref(),
        ts_ms: 0,
        priority: native.kind.default_priority(),
        data: native.data.as_bytes(),
        extra: None,
    });
    assert!(agentcast_engine::Data::from_json(to_ag_ui(frame.payload())).is_ok());
});
