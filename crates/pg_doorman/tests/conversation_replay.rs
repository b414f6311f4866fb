//! The `conversation` fuzz target's deterministic CI twin: seeded random message streams, cut
//! into random reads, driven through the real client and server scans of one backend
//! conversation (statement rewriting on, backend cache of 2) in front of a model PostgreSQL.
//! The backend must end reusable; how many streams got exactly PostgreSQL's replies is counted
//! (`pg_doorman::relay::stream_check`).

/// xorshift64*: reproducible input without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const STREAMS: usize = 200_000;

#[test]
fn random_pipelines_get_postgres_replies_through_the_conversation() {
    let started = std::time::Instant::now();
    let mut rng = Rng(0xc0ff_ee00_1234_5678);
    let (mut messages, mut same) = (0, 0);
    for _ in 0..STREAMS {
        let len = 2 + (rng.next() % 48) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let o = pg_doorman::relay::stream_check::check(&data);
        messages += o.messages;
        same += usize::from(o.same_replies);
    }
    eprintln!(
        "{STREAMS} streams, {messages} client messages in {:?}; {same} got exactly PostgreSQL's replies",
        started.elapsed()
    );
    // All but the known differences (an error that makes the backend skip what the pooler
    // already answered) must match: 99.8 % at this seed.
    assert!(
        same * 100 >= STREAMS * 99,
        "only {same} of {STREAMS} matched"
    );
    assert!(messages > STREAMS * 10);
}
