//! Chunked transfer coding (RFC 9112 §7.1), strictly: a scanner that follows a chunked body
//! through a proxy byte by byte to find exactly where it ends, and can take the framing off.

use bytes::BytesMut;

/// Where a [`ChunkedScanner`] is in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the size's hex digits (how many so far).
    Size(u8),
    /// Whitespace after the size, before `;` or CR.
    SizeSpace,
    /// Chunk extensions, until CR.
    Extension,
    /// The LF ending a size line.
    SizeLf,
    Data,
    /// CR LF after a chunk's data.
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line starts (or the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        last: bool,
    },
    Done,
}

/// Follows a chunked body as it passes through, to find exactly where it ends, refusing
/// anything but strict framing (RFC 9112 §7.1). Bytes pass through verbatim.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: Chunk,
    size: u64,
    /// Bytes of extensions on the current size line, or of the trailer section.
    extra: usize,
}

/// Extensions on one size line beyond this are refused (hyper allows 16 KiB per body).
const MAX_EXTENSION: usize = 4 * 1024;
/// The trailer section beyond this is refused.
const MAX_TRAILERS: usize = 16 * 1024;

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self {
            state: Chunk::Size(0),
            size: 0,
            extra: 0,
        }
    }
}

/// A chunked body that is not strictly valid chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked framing: {0}")]
pub struct InvalidChunk(pub &'static str);

impl ChunkedScanner {
    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Consumes `bytes`; returns how many belong to the body and whether it ended there.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<(usize, bool), InvalidChunk> {
        self.scan(bytes, |_| {})
    }

    /// [`ChunkedScanner::advance`], appending the chunks' data (without their framing) to
    /// `data`: for a peer that frames bodies its own way (HTTP/2).
    pub fn decode(
        &mut self,
        bytes: &[u8],
        data: &mut BytesMut,
    ) -> Result<(usize, bool), InvalidChunk> {
        self.scan(bytes, |range| data.extend_from_slice(&bytes[range]))
    }

    fn scan(
        &mut self,
        bytes: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<(usize, bool), InvalidChunk> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                Chunk::Size(digits) => match (b as char).to_digit(16) {
                    Some(digit) if digits < 16 => {
                        self.size = (self.size << 4) | u64::from(digit);
                        self.state = Chunk::Size(digits + 1);
                    }
                    Some(_) => return Err(InvalidChunk("chunk size over 16 hex digits")),
                    None if digits == 0 => return Err(InvalidChunk("chunk size missing")),
                    None => match b {
                        b'\r' => self.state = Chunk::SizeLf,
                        b';' => self.state = Chunk::Extension,
                        b' ' | b'\t' => self.state = Chunk::SizeSpace,
                        _ => return Err(InvalidChunk("invalid character after chunk size")),
                    },
                },
                Chunk::SizeSpace => match b {
                    b' ' | b'\t' => {}
                    b';' => self.state = Chunk::Extension,
                    _ => return Err(InvalidChunk("whitespace after chunk size not before `;`")),
                },
                Chunk::Extension => {
                    self.extra += 1;
                    if self.extra > MAX_EXTENSION {
                        return Err(InvalidChunk("chunk extensions too long"));
                    }
                    match b {
                        b'\r' => self.state = Chunk::SizeLf,
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
                        _ => return Err(InvalidChunk("control character in chunk extension")),
                    }
                }
                Chunk::SizeLf => {
                    if b != b'\n' {
                        return Err(InvalidChunk("chunk size line not ended by CRLF"));
                    }
                    self.extra = 0;
                    self.state = if self.size == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data
                    };
                }
                Chunk::Data => {
                    let take =
                        (bytes.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    data(i..i + take);
                    i += take;
                    self.size -= take as u64;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr => {
                    if b != b'\r' {
                        return Err(InvalidChunk("chunk data not followed by CRLF"));
                    }
                    self.state = Chunk::DataLf;
                }
                Chunk::DataLf => {
                    if b != b'\n' {
                        return Err(InvalidChunk("chunk data not followed by CRLF"));
                    }
                    self.state = Chunk::Size(0);
                }
                Chunk::TrailerStart => match b {
                    b'\r' => self.state = Chunk::TrailerLf { last: true },
                    b' ' | b'\t' => return Err(InvalidChunk("folded trailer line")),
                    b'\n' => return Err(InvalidChunk("bare LF in trailers")),
                    _ => {
                        self.state = Chunk::TrailerLine;
                        self.trailer_byte()?;
                    }
                },
                Chunk::TrailerLine => {
                    self.trailer_byte()?;
                    match b {
                        b'\r' => self.state = Chunk::TrailerLf { last: false },
                        b'\n' => return Err(InvalidChunk("bare LF in trailers")),
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
                        _ => return Err(InvalidChunk("control character in trailers")),
                    }
                }
                Chunk::TrailerLf { last } => {
                    if b != b'\n' {
                        return Err(InvalidChunk("bare CR in trailers"));
                    }
                    if last {
                        self.state = Chunk::Done;
                        return Ok((i + 1, true));
                    }
                    self.state = Chunk::TrailerStart;
                }
                Chunk::Done => return Ok((i, true)),
            }
            i += 1;
        }
        Ok((i, self.state == Chunk::Done))
    }

    fn trailer_byte(&mut self) -> Result<(), InvalidChunk> {
        self.extra += 1;
        if self.extra > MAX_TRAILERS {
            return Err(InvalidChunk("trailers too long"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_scanner_finds_the_end_across_any_split() {
        let body = b"5;ext=1;q=\"a b\"\r\nhello\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let mut scanner = ChunkedScanner::default();
            let (used, done) = scanner.advance(&body[..split]).unwrap();
            if done {
                assert_eq!(used, end);
                continue;
            }
            assert_eq!(used, split);
            let (rest, done) = scanner.advance(&body[split..]).unwrap();
            assert!(done);
            assert_eq!(split + rest, end);
        }
        let mut scanner = ChunkedScanner::default();
        assert_eq!(scanner.advance(b"0\r\n\r\n").unwrap(), (5, true));
        assert_eq!(
            ChunkedScanner::default()
                .advance(b"A \t;x\r\n0123456789\r\n0\r\n\r\n")
                .unwrap(),
            (24, true)
        );
    }

    #[test]
    fn chunked_decoding_keeps_only_the_data_across_any_split() {
        let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut scanner = ChunkedScanner::default();
            let mut data = BytesMut::new();
            let (used, done) = scanner.decode(&body[..split], &mut data).unwrap();
            if !done {
                let (_, done) = scanner.decode(&body[used..], &mut data).unwrap();
                assert!(done, "split at {split}");
            }
            assert_eq!(&data[..], b"hello, world", "split at {split}");
        }
    }

    #[test]
    fn chunked_scanner_refuses_lenient_framing() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"0x5\r\nhello\r\n",
            b"-5\r\n",
            b" 5\r\nhello\r\n",
            b"5 x\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n",
            b"5;a\x00\r\nhello\r\n",
            b"11111111111111111\r\n",
            b"0\r\nx: 1\n\r\n",
            b"0\r\n x: 1\r\n\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                ChunkedScanner::default().advance(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long_extension = b"1;".to_vec();
        long_extension.resize(MAX_EXTENSION + 10, b'a');
        assert!(ChunkedScanner::default().advance(&long_extension).is_err());
    }
}
