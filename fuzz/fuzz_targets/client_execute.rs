//! Client execute messages: decode never panics; what decodes re-encodes to the same
//! bytes (`doorman_wire::checks`).
#![no_main]
use doorman_wire::checks::{FAMILIES, family};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = family(FAMILIES[3].1, data);
});
