//! Hashing for the pooler's private maps: statements (ids counted up from 1, xxh3 hashes of
//! statement text, client-chosen names), pools by database and user, clients by id. std's
//! SipHash (about 150 instructions per lookup; three lookups per extended-protocol transaction,
//! four per login) buys HashDoS resistance, which these maps do not need: clients cannot insert
//! into the pool or client maps, and a client whose statement names collide slows only its own
//! lookups.

use std::hash::{BuildHasher, Hasher};

/// Multiplier of Fibonacci hashing (2^64 / φ, odd): spreads consecutive integers over both the
/// low bits a table indexes by and the top 7 bits hashbrown keeps as tags.
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

/// The [`BuildHasher`] of the private maps ([`KeyHasher`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Keys;

impl BuildHasher for Keys {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// Integers are folded in with one multiplication; byte strings through xxh3 seeded with the
/// state so far.
#[derive(Debug)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(SPREAD);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
}

/// An LRU map hashed with [`Keys`].
pub type Lru<K, V> = lru::LruCache<K, V, Keys>;

/// A hash map hashed with [`Keys`].
pub type Map<K, V> = std::collections::HashMap<K, V, Keys>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hash<T: std::hash::Hash + ?Sized>(v: &T) -> u64 {
        Keys.hash_one(v)
    }

    #[test]
    fn consecutive_ids_differ_in_index_bits_and_tags() {
        let hashes: Vec<u64> = (1..=4096u64).map(|i| hash(&i)).collect();
        // Index bits of a 4096-bucket table: all distinct (the multiplier is odd).
        let low: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        assert_eq!(low.len(), 4096);
        // hashbrown's 7-bit tags: every value is used.
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert_eq!(tags.len(), 128);
    }

    #[test]
    fn byte_strings_hash_by_content_and_length() {
        let a: Box<[u8]> = b"stmt_1".as_slice().into();
        let b: Box<[u8]> = b"stmt_1".as_slice().into();
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(b"stmt_2".as_slice()));
        assert_ne!(hash(b"".as_slice()), hash(b"\0".as_slice()));
    }

    #[test]
    fn maps_find_what_they_hold() {
        let mut m: Lru<u64, u64> = Lru::unbounded_with_hasher(Keys);
        for i in 0..1000 {
            m.put(i * 7, i);
        }
        assert_eq!(m.get(&693), Some(&99));
        assert_eq!(m.get(&694), None);
    }
}
