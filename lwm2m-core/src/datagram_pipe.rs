//! A datagram-preserving in-memory transport for a security layer
//! (DTLS) that expects `std::io::Read` + `Write` underneath.
//!
//! A TLS library driven through a stream adapter (OpenSSL's `SslStream`,
//! for one) reads and writes its records through `Read`/`Write`. For DTLS
//! every `write` must become exactly one datagram and every `read` must
//! return exactly one datagram, never parts of two: record boundaries are
//! datagram boundaries. [`DatagramPipe`] keeps those boundaries so a
//! sans-IO security session can sit between a driver's socket and the CoAP
//! codec: the driver pushes what the socket received with
//! [`DatagramPipe::push_incoming`], the library reads it, and what the
//! library wrote is taken out with [`DatagramPipe::pop_outgoing`] and sent.
//! Nothing blocks: an empty inbox answers `WouldBlock`, which the library
//! turns into "want read".
//!
//! Only with the `std` feature (it implements `std::io` traits).
//!
//! ```
//! use std::io::{Read, Write};
//! use lwm2m_core::datagram_pipe::DatagramPipe;
//!
//! let mut pipe = DatagramPipe::new(4);
//! pipe.push_incoming(b"first".to_vec());
//! pipe.push_incoming(b"second".to_vec());
//! let mut buf = [0u8; 64];
//! assert_eq!(pipe.read(&mut buf).unwrap(), 5); // one datagram per read
//! assert_eq!(pipe.read(&mut buf).unwrap(), 6);
//! assert_eq!(
//!     pipe.read(&mut buf).unwrap_err().kind(),
//!     std::io::ErrorKind::WouldBlock
//! );
//! pipe.write_all(b"record").unwrap();
//! assert_eq!(pipe.pop_outgoing().as_deref(), Some(&b"record"[..]));
//! ```

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use std::io;

/// Two queues of whole datagrams: received ones waiting to be read and
/// written ones waiting to be sent.
#[derive(Debug, Default)]
pub struct DatagramPipe {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
    max_incoming: usize,
}

impl DatagramPipe {
    /// A pipe holding at most `max_incoming` unread datagrams (a peer
    /// controls how many arrive; more are dropped, as a full socket buffer
    /// would drop them, and DTLS retransmission recovers).
    pub fn new(max_incoming: usize) -> DatagramPipe {
        DatagramPipe {
            incoming: VecDeque::new(),
            outgoing: VecDeque::new(),
            max_incoming: max_incoming.max(1),
        }
    }

    /// Queues a received datagram for the next `read`. Returns `false`
    /// (and drops it) when the inbox is full.
    pub fn push_incoming(&mut self, datagram: Vec<u8>) -> bool {
        if self.incoming.len() >= self.max_incoming {
            return false;
        }
        self.incoming.push_back(datagram);
        true
    }

    /// The oldest datagram the library wrote, to be sent.
    pub fn pop_outgoing(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    /// How many received datagrams are still unread.
    pub fn incoming_len(&self) -> usize {
        self.incoming.len()
    }
}

impl io::Read for DatagramPipe {
    /// One whole datagram, or `WouldBlock` when none is queued. A datagram
    /// longer than `buf` is truncated, as `recv` truncates: the library
    /// then sees a bad record and drops it.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(datagram) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = datagram.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), datagram.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
}

impl io::Write for DatagramPipe {
    /// Each call is one datagram.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::DatagramPipe;
    use std::io::{ErrorKind, Read, Write};

    #[test]
    fn reads_keep_datagram_boundaries_and_truncate_like_recv() {
        let mut pipe = DatagramPipe::new(8);
        assert!(pipe.push_incoming(vec![1, 2, 3, 4, 5]));
        assert!(pipe.push_incoming(vec![6]));
        let mut small = [0u8; 3];
        assert_eq!(pipe.read(&mut small).unwrap(), 3);
        assert_eq!(small, [1, 2, 3]);
        // The rest of the first datagram is gone, as with recv().
        let mut buf = [0u8; 8];
        assert_eq!(pipe.read(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 6);
        assert_eq!(
            pipe.read(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }

    #[test]
    fn a_full_inbox_drops_further_datagrams() {
        let mut pipe = DatagramPipe::new(2);
        assert!(pipe.push_incoming(vec![1]));
        assert!(pipe.push_incoming(vec![2]));
        assert!(!pipe.push_incoming(vec![3]));
        assert_eq!(pipe.incoming_len(), 2);
    }

    #[test]
    fn every_write_is_one_outgoing_datagram_in_order() {
        let mut pipe = DatagramPipe::new(1);
        pipe.write_all(b"a").unwrap();
        pipe.write_all(b"bc").unwrap();
        pipe.flush().unwrap();
        assert_eq!(pipe.pop_outgoing(), Some(b"a".to_vec()));
        assert_eq!(pipe.pop_outgoing(), Some(b"bc".to_vec()));
        assert_eq!(pipe.pop_outgoing(), None);
    }
}
