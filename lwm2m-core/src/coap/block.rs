//! Block1/Block2 option values (RFC 7959 §2.2).

/// A decoded Block1 or Block2 option: block number, more flag and size exponent.
///
/// ```
/// use lwm2m_core::coap::BlockValue;
/// let b = BlockValue::new(3, true, 1024).unwrap();
/// assert_eq!(b.encode(), (3 << 4) | 0x08 | 6);
/// assert_eq!(BlockValue::decode(b.encode()), Some(b));
/// assert_eq!(b.offset(), 3 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockValue {
    /// Block number (20 bits).
    pub num: u32,
    /// More blocks follow.
    pub more: bool,
    /// Size exponent: block size is 2^(szx + 4), 0 ≤ szx ≤ 6.
    pub szx: u8,
}

/// Largest block number (20 bits).
pub const MAX_BLOCK_NUM: u32 = (1 << 20) - 1;

impl BlockValue {
    /// A block value for `size` (16..=1024, a power of two).
    pub fn new(num: u32, more: bool, size: usize) -> Option<BlockValue> {
        let szx = size_to_szx(size)?;
        (num <= MAX_BLOCK_NUM).then_some(BlockValue { num, more, szx })
    }

    /// Block size in bytes.
    pub fn size(&self) -> usize {
        1usize << (self.szx + 4)
    }

    /// Byte offset of this block in the whole body.
    pub fn offset(&self) -> usize {
        self.num as usize * self.size()
    }

    /// Decodes a uint option value; `None` for values over 24 bits or the
    /// reserved size exponent 7 (BERT, RFC 8323, is not used here).
    pub fn decode(v: u32) -> Option<BlockValue> {
        if v >= 1 << 24 {
            return None;
        }
        let szx = (v & 0x07) as u8;
        if szx == 7 {
            return None;
        }
        Some(BlockValue {
            num: v >> 4,
            more: v & 0x08 != 0,
            szx,
        })
    }

    /// The uint option value.
    pub fn encode(&self) -> u32 {
        (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx)
    }
}

/// Size exponent for a block size of 16..=1024 bytes.
pub fn size_to_szx(size: usize) -> Option<u8> {
    if !(16..=1024).contains(&size) || !size.is_power_of_two() {
        return None;
    }
    Some((size.trailing_zeros() - 4) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size_to_szx(16), Some(0));
        assert_eq!(size_to_szx(1024), Some(6));
        assert_eq!(size_to_szx(2048), None);
        assert_eq!(size_to_szx(100), None);
        assert_eq!(BlockValue::decode(7), None);
        assert_eq!(BlockValue::decode(1 << 24), None);
        let b = BlockValue::decode(0x000f_fffe).unwrap();
        assert_eq!((b.num, b.more, b.size()), (0xffff, true, 1024));
        assert!(BlockValue::new(MAX_BLOCK_NUM + 1, false, 16).is_none());
    }
}
