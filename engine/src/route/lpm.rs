//! Longest-prefix match over one address family: one hash map per distinct prefix length,
//! searched longest first.
//!
//! Contract: [`Lpm::lookup`] does one masked hash probe per distinct prefix length present
//! (flannel uses one subnet length, so usually one probe, plus one for a default route) and
//! never allocates. Keys are addresses as integers (`u32` for IPv4, `u128` for IPv6). The
//! hasher is a multiply-fold ([`FoldHasher`]): keys are masked addresses chosen by whoever
//! writes the peers file or the lease store, not by the network, so a seeded hash buys nothing
//! here and SipHash would cost most of the lookup budget.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::model::prefix::{mask_v4, mask_v6};

/// An address as an integer, maskable to a prefix.
pub(crate) trait Key: Copy + Eq + Hash {
    /// The most bits a prefix has (32 or 128).
    const BITS: u8;
    /// The key with only its first `len` bits kept.
    fn masked(self, len: u8) -> Self;
}

impl Key for u32 {
    const BITS: u8 = 32;
    #[inline]
    fn masked(self, len: u8) -> u32 {
        self & mask_v4(len)
    }
}

impl Key for u128 {
    const BITS: u8 = 128;
    #[inline]
    fn masked(self, len: u8) -> u128 {
        self & mask_v6(len)
    }
}

/// A multiply-fold hasher for integer keys: a 64x64->128 multiply by an odd constant, folded,
/// so that every input bit reaches the low bits the table indexes with (masked prefixes have
/// zero low bits, which a plain multiply would leave zero).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FoldHasher(u64);

const FOLD_K: u64 = 0x9e37_79b9_7f4a_7c15;
const FOLD_K2: u64 = 0xe703_7ed1_a0b4_28db;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for FoldHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_ne_bytes(w));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = fold_mul(self.0 ^ n, FOLD_K);
    }

    #[inline]
    fn write_u128(&mut self, n: u128) {
        // One multiply for both halves (wyhash's "mum" of the two words, each keyed).
        self.0 = fold_mul(self.0 ^ (n as u64) ^ FOLD_K, ((n >> 64) as u64) ^ FOLD_K2);
    }
}

/// The `BuildHasher` of the route maps.
pub(crate) type FoldBuild = BuildHasherDefault<FoldHasher>;

#[derive(Debug, Clone)]
struct Level<K, V> {
    len: u8,
    map: HashMap<K, V, FoldBuild>,
}

/// Longest-prefix match from keys of type `K` to values `V`.
#[derive(Debug, Clone)]
pub(crate) struct Lpm<K, V> {
    /// One level per distinct prefix length, longest first.
    levels: Vec<Level<K, V>>,
}

impl<K: Key, V> Default for Lpm<K, V> {
    fn default() -> Self {
        Lpm { levels: Vec::new() }
    }
}

impl<K: Key, V> Lpm<K, V> {
    /// Inserts `prefix/len` (masked here), replacing and returning an equal prefix's value.
    pub(crate) fn insert(&mut self, prefix: K, len: u8, value: V) -> Option<V> {
        let len = len.min(K::BITS);
        let key = prefix.masked(len);
        let at = match self.levels.iter().position(|l| l.len <= len) {
            Some(i) if self.levels[i].len == len => i,
            Some(i) => {
                self.levels.insert(
                    i,
                    Level {
                        len,
                        map: HashMap::default(),
                    },
                );
                i
            }
            None => {
                self.levels.push(Level {
                    len,
                    map: HashMap::default(),
                });
                self.levels.len() - 1
            }
        };
        self.levels[at].map.insert(key, value)
    }

    /// The value of the longest prefix holding `addr`.
    #[inline]
    pub(crate) fn lookup(&self, addr: K) -> Option<&V> {
        self.levels
            .iter()
            .find_map(|level| level.map.get(&addr.masked(level.len)))
    }

    /// The number of prefixes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.levels.iter().map(|l| l.map.len()).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_and_replace() {
        let mut t: Lpm<u32, &str> = Lpm::default();
        assert_eq!(t.lookup(1), None);
        t.insert(0x0a00_0000, 8, "8");
        t.insert(0x0af4_0100, 24, "24");
        t.insert(0, 0, "default");
        t.insert(0x0af4_0000, 16, "16");
        assert_eq!(t.insert(0x0af4_01ff, 24, "24b"), Some("24"));
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup(0x0af4_0105), Some(&"24b"));
        assert_eq!(t.lookup(0x0af4_0205), Some(&"16"));
        assert_eq!(t.lookup(0x0a01_0205), Some(&"8"));
        assert_eq!(t.lookup(0x0b01_0205), Some(&"default"));
        let lens: Vec<u8> = t.levels.iter().map(|l| l.len).collect();
        assert_eq!(lens, [24, 16, 8, 0]);
    }

    #[test]
    fn hasher_spreads_masked_keys() {
        // /24 prefixes differ only above bit 8: their hashes must differ in the low bits.
        let low = |k: u32| {
            let mut h = FoldHasher::default();
            h.write_u32(k);
            h.finish() & 0xff
        };
        let distinct: std::collections::HashSet<u64> =
            (0..256u32).map(|i| low(0x0af4_0000 | i << 8)).collect();
        assert!(distinct.len() > 128, "{}", distinct.len());
        // The same for /64 IPv6 prefixes (low 64 bits zero).
        let low6 = |k: u128| {
            let mut h = FoldHasher::default();
            h.write_u128(k);
            h.finish() & 0xff
        };
        let distinct6: std::collections::HashSet<u64> = (0..256u128)
            .map(|i| low6(0xfd00_0010_0244_0000u128 << 64 | i << 64))
            .collect();
        assert!(distinct6.len() > 128, "{}", distinct6.len());
    }
}
