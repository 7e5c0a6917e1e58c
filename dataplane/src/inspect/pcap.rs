//! Classic pcap files (the libpcap format Wireshark and tcpdump read):
//! a 24-byte file header with nanosecond timestamps (magic `a1b23c4d`) or,
//! for replay tools that want them, microsecond ones (magic `a1b2c3d4`),
//! version 2.4, LINKTYPE_ETHERNET, then one 16-byte record header and the
//! captured bytes per packet. Little-endian, as the magic tells readers.
//! weirctl capture and the perf harness's scenario files both write it.
//! Also the hex form captured bytes travel in over the management socket.

use std::io::{self, Write};

/// The nanosecond-resolution pcap magic number.
pub const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// The classic, microsecond-resolution one.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const FILE_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;

/// Writes a pcap stream to `W`.
pub struct PcapWriter<W: Write> {
    out: W,
    snaplen: u32,
    micros: bool,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header (nanosecond timestamps); records will hold at
    /// most `snaplen` bytes.
    pub fn new(out: W, snaplen: u32) -> io::Result<Self> {
        Self::with_resolution(out, snaplen, false)
    }

    /// [`new`](Self::new) with microsecond timestamps.
    pub fn micros(out: W, snaplen: u32) -> io::Result<Self> {
        Self::with_resolution(out, snaplen, true)
    }

    fn with_resolution(mut out: W, snaplen: u32, micros: bool) -> io::Result<Self> {
        let mut h = Vec::with_capacity(FILE_HEADER_LEN);
        h.extend_from_slice(&if micros { MAGIC_MICROS } else { MAGIC_NS }.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone: UTC
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, snaplen, micros })
    }

    /// One packet seen at `time_ns` (since the Unix epoch), `orig_len`
    /// bytes long on the wire, of which `data` were kept (cut to the snap
    /// length here if longer).
    pub fn write(&mut self, time_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        let mut h = [0u8; RECORD_HEADER_LEN];
        let frac = time_ns % 1_000_000_000;
        h[0..4].copy_from_slice(&((time_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(if self.micros { frac / 1000 } else { frac } as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(D[usize::from(x >> 4)]));
        s.push(char::from(D[usize::from(x & 15)]));
    }
    s
}

/// The bytes of a hex string.
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("hex of odd length {}", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()).ok_or_else(|| format!("not hex at offset {i}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_record_headers_are_libpcaps() {
        let mut w = PcapWriter::new(Vec::new(), 64).unwrap();
        let frame: Vec<u8> = (0..100u8).collect();
        w.write(1_700_000_000_123_456_789, 100, &frame).unwrap();
        w.write(1_700_000_001_000_000_001, 20, &frame[..20]).unwrap();
        let b = w.into_inner();
        // File header (pcap-savefile(5)): magic, 2.4, zone, sigfigs, snaplen, linktype.
        assert_eq!(&b[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(&b[4..8], &[2, 0, 4, 0]);
        assert_eq!(&b[8..16], &[0; 8]);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 64);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        // First record: seconds, nanoseconds, kept 64 (the snap length), wire 100.
        let r = &b[24..];
        let word = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
        assert_eq!((word(0), word(4), word(8), word(12)), (1_700_000_000, 123_456_789, 64, 100));
        assert_eq!(&r[16..16 + 64], &frame[..64]);
        let r = &r[16 + 64..];
        let word = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
        assert_eq!((word(0), word(4), word(8), word(12)), (1_700_000_001, 1, 20, 20));
        assert_eq!(&r[16..], &frame[..20]);
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let b: Vec<u8> = (0..=255u8).collect();
        assert_eq!(unhex(&hex(&b)).unwrap(), b);
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
        assert!(unhex("é1").is_err());
    }
}
