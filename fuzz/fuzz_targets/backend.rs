//! Backend message decoders and frame splitting never panic on arbitrary bytes.
#![no_main]
use doorman_wire::{backend, fields, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = frame::complete_frame(data, frame::MAX_MESSAGE_LEN);
    let _ = backend::parse_auth(data);
    let _ = backend::parse_parameter_status(data);
    let _ = backend::parse_backend_key_data(data);
    let _ = fields::parse_error_body(data);
    let _ = doorman_wire::frontend::parse_sasl_initial_response(data);
    let _ = doorman_wire::frontend::parse_password(data);
});
