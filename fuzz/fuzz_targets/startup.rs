//! Startup packets: decode never panics; a decoded StartupMessage re-encodes to bytes that
//! decode to the same message.
#![no_main]
use doorman_wire::startup::{StartupPacket, decode, packet_len, write_startup};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = packet_len(data) {
        if data.len() >= len {
            if let Ok(StartupPacket::Startup(m)) = decode(&data[..len]) {
                if m.minor == 0 && m.protocol_options.is_empty() {
                    let params: Vec<(&str, &str)> = m.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let mut out = bytes::BytesMut::new();
                    write_startup(&mut out, &params);
                    assert_eq!(decode(&out), Ok(StartupPacket::Startup(m)));
                }
            }
        }
    }
});
