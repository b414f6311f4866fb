//! Deterministic random-input checks of every decoder (the fuzz targets' CI twin): arbitrary
//! bytes produce a value or a typed error, never a panic; valid messages survive a round trip.

use doorman_wire::{backend, fields, frame, frontend, startup};

/// xorshift64*: reproducible bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn decoders_never_panic_on_random_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut errors = 0usize;
    for _ in 0..50_000 {
        let data = rng.bytes(64);
        // Bias towards plausible headers: a valid tag and a small length.
        let mut framed = data.clone();
        if framed.len() >= 5 {
            let len = (framed.len() - 1) as u32;
            framed[1..5].copy_from_slice(&len.to_be_bytes());
        }
        for d in [&data, &framed] {
            errors += frame::complete_frame(d, frame::MAX_MESSAGE_LEN).is_err() as usize;
            errors += backend::parse_auth(d).is_err() as usize;
            errors += backend::parse_parameter_status(d).is_err() as usize;
            errors += fields::parse_error_body(d).is_err() as usize;
            errors += frontend::parse_sasl_initial_response(d).is_err() as usize;
            if let Ok(Some(len)) = startup::packet_len(d)
                && d.len() >= len
            {
                errors += startup::decode(&d[..len]).is_err() as usize;
            }
        }
    }
    // Random bytes are mostly invalid: the decoders must have said so (and not panicked).
    assert!(errors > 100_000, "only {errors} errors");
}

#[test]
fn random_startup_parameters_round_trip() {
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let params: Vec<(String, String)> = (0..(rng.next() % 5))
            .map(|i| {
                let k: String = (0..1 + rng.next() % 8)
                    .map(|_| (b'a' + (rng.next() % 26) as u8) as char)
                    .collect();
                let v: String = (0..rng.next() % 12)
                    .map(|_| (b' ' + (rng.next() % 94) as u8) as char)
                    .collect();
                (format!("{k}{i}"), v)
            })
            .collect();
        let refs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut out = bytes::BytesMut::new();
        startup::write_startup(&mut out, &refs);
        let startup::StartupPacket::Startup(m) = startup::decode(&out).unwrap() else {
            panic!("not a startup packet")
        };
        assert_eq!(m.params, params);
    }
}
