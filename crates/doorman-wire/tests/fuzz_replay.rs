//! The fuzz targets' deterministic CI twin for the client message families: each family's
//! check (`doorman_wire::checks`) runs over a corpus of valid frames and seeded mutations of
//! them (bit flips, cut or grown bodies, changed counts), plus random bodies. Every input must
//! end in a value that round-trips byte for byte or a typed error, never a panic.

use doorman_wire::checks::{FAMILIES, client_message};

/// xorshift64*: reproducible input without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid bodies of each type (the seeds the mutations start from).
fn seeds(t: u8) -> Vec<&'static [u8]> {
    match t {
        b'P' => vec![
            b"\0SELECT 1\0\0\0",
            b"s1\0SELECT $1, $2\0\0\x02\0\0\0\x17\0\0\0\x19",
            b"DOORMAN_7\0INSERT INTO t VALUES ($1)\0\0\x01\0\0\0\0",
        ],
        b'B' => vec![
            b"\0\0\0\0\0\0\0\0",
            b"p1\0s1\0\0\x01\0\x01\0\x02\0\0\0\x04\0\0\0\x2a\xff\xff\xff\xff\0\x01\0\x01",
            b"\0DOORMAN_12\0\0\0\0\x01\0\0\0\x03abc\0\0",
        ],
        b'D' | b'C' => vec![b"S\0", b"Ss1\0", b"Pportal\0"],
        b'E' => vec![b"\0\0\0\0\0", b"p1\0\0\0\0\x64"],
        b'Q' => vec![b"SELECT 1\0", b"BEGIN; SELECT 2; COMMIT\0", b"\0"],
        b'd' => vec![b"", b"1\t2\n"],
        b'c' => vec![b""],
        b'f' => vec![b"\0", b"aborted by user\0"],
        b'F' => vec![
            b"\0\0\x04\xd2\0\0\0\0\0\0",
            b"\0\0\x04\xd2\0\x01\0\x01\0\x02\0\0\0\x01a\xff\xff\xff\xff\0\x01",
        ],
        _ => vec![b""],
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => b.truncate(rng.below(b.len())),
            2 => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
            3 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = [0, 0xff, 1, 0x7f][rng.below(4)];
            }
            4 if !b.is_empty() => {
                let i = rng.below(b.len());
                b.remove(i);
            }
            _ => b.extend((0..rng.below(6)).map(|_| rng.next() as u8)),
        }
    }
    b
}

/// Inputs per family; seven families make 1.05 million.
const PER_FAMILY: usize = 150_000;

#[test]
fn client_message_families_survive_a_million_inputs() {
    let started = std::time::Instant::now();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let mut total = 0usize;
    for (name, types) in FAMILIES {
        let (mut ok, mut bad) = (0usize, 0usize);
        for i in 0..PER_FAMILY {
            let t = types[i % types.len()];
            let body = if i % 4 == 3 {
                (0..rng.below(48)).map(|_| rng.next() as u8).collect()
            } else {
                let s = seeds(t);
                let seed = s[rng.below(s.len())];
                if i % 16 == 0 {
                    seed.to_vec()
                } else {
                    mutate(&mut rng, seed)
                }
            };
            if client_message(t, &body) {
                ok += 1;
            } else {
                bad += 1;
            }
        }
        total += ok + bad;
        // Both outcomes must be reached, or the corpus tests nothing.
        assert!(ok > PER_FAMILY / 100, "{name}: only {ok} inputs decoded");
        assert!(
            bad > PER_FAMILY / 100,
            "{name}: only {bad} inputs were refused"
        );
        eprintln!("{name}: {ok} decoded and round-tripped, {bad} refused");
    }
    eprintln!("{total} inputs in {:?}", started.elapsed());
    assert!(total >= 1_000_000);
}
