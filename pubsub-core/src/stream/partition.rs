//! Super streams: which partition a partition key goes to, and what partitions are named.

/// The seed of the hash that picks a partition (that of RabbitMQ's stream clients'
/// hash routing strategy).
const SEED: u32 = 104_729;

/// The name of partition `index` of super stream `stream`: `{stream}-{index}` (RabbitMQ's
/// default for a super stream created with a partition count).
pub(crate) fn partition_name(stream: &str, index: u16) -> String {
    format!("{stream}-{index}")
}

/// The partition (of `partitions`) that `key` goes to: MurmurHash3 (x86, 32 bits, seed
/// 104729) of its UTF-8 bytes, modulo the partition count, as RabbitMQ's stream clients
/// route (`HashRoutingMurmurStrategy`), so that the in-memory broker and the broker agree.
pub(crate) fn partition_of(key: &str, partitions: u16) -> u16 {
    let count = u32::from(partitions.max(1));
    u16::try_from(murmur3_32(key.as_bytes(), SEED) % count).unwrap_or(0)
}

/// MurmurHash3, x86 32-bit.
fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut hash = seed;
    let blocks = data.chunks_exact(4);
    let tail = blocks.remainder();
    for block in blocks {
        let k = u32::from_le_bytes(block.try_into().unwrap_or([0; 4]));
        hash ^= mix(k);
        hash = hash
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }
    if !tail.is_empty() {
        let k = tail
            .iter()
            .enumerate()
            .fold(0u32, |k, (i, byte)| k | u32::from(*byte) << (8 * i));
        hash ^= mix(k);
    }
    hash ^= data.len() as u32;
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

#[cfg(test)]
mod tests {
    use super::{murmur3_32, partition_of};

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!", 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    #[test]
    fn a_key_always_goes_to_one_partition_and_keys_spread() {
        let mut used = [0u32; 3];
        for n in 0..300 {
            let key = format!("order-{n}");
            let partition = partition_of(&key, 3);
            assert_eq!(partition, partition_of(&key, 3));
            used[usize::from(partition)] += 1;
        }
        assert!(used.iter().all(|&count| count > 50), "{used:?}");
        assert_eq!(partition_of("anything", 0), 0);
    }
}
