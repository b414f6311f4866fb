//! The server side of SCRAM never panics on arbitrary client messages.
#![no_main]
use doorman_wire::auth::scram::{Exchange, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let v = Verifier::from_password("pw", b"saltsaltsaltsalt", 1);
    let (first, last) = data.split_at(data.len() / 2);
    if let Ok((ex, _)) = Exchange::start(&v, first) {
        let _ = ex.finish(&v, last);
    }
});
