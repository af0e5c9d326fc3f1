//! Response bodies: the framings a proxy must follow (RFC 9112 §6), relayed verbatim to an
//! HTTP/1 client or handed out piece by piece, chunk framing taken off, to an HTTP/2 one.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use platform_http::framing::ChunkedScanner;

use super::UpstreamConnection;

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a 204, a 304 or the answer to a `HEAD`.
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`, relayed with its chunk framing.
    Chunked,
    /// Until the upstream closes (HTTP/1.0 style): the client connection closes too.
    UntilClose,
}

/// Where [`UpstreamConnection::poll_data`] is in a response body.
#[derive(Debug)]
pub enum BodyReader {
    /// Bytes left.
    Length(u64),
    /// In a chunked body; the scanner knows where the current chunk ends.
    Chunked(ChunkedScanner),
    /// Until the upstream closes.
    UntilClose,
    /// Read to its end.
    Done,
}

impl BodyReader {
    /// At the start of a body framed as `framing`; an empty one is `Done` at once.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyReader::Done,
            Framing::Length(n) => BodyReader::Length(n),
            Framing::Chunked => BodyReader::Chunked(ChunkedScanner::default()),
            Framing::UntilClose => BodyReader::UntilClose,
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        matches!(self, BodyReader::Done)
    }

    /// Bytes left, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            BodyReader::Length(n) => Some(*n),
            BodyReader::Done => Some(0),
            BodyReader::Chunked(_) | BodyReader::UntilClose => None,
        }
    }
}

/// A relay that broke, and whether the client had been sent any of the answer (if not, it
/// can still be answered with an error).
#[derive(Debug)]
pub struct RelayError {
    /// What failed: a write to the client or a read from the upstream.
    pub error: std::io::Error,
    /// Part of the answer reached the client: it can no longer be sent an error, only closed.
    pub sent: bool,
}

impl UpstreamConnection {
    /// Copies the response to `client`: `out` (the rewritten head) first, then the body as
    /// `framing` delimits it. `Err` when the client went away or the upstream broke mid-body
    /// (neither connection can be used again); it says whether the client was sent anything.
    pub async fn relay<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        framing: Framing,
        out: &mut Vec<u8>,
        client: &mut W,
    ) -> Result<(), RelayError> {
        let mut sent = false;
        self.relay_body(framing, out, client, &mut sent)
            .await
            .map_err(|error| RelayError { error, sent })
    }

    async fn relay_body<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        framing: Framing,
        out: &mut Vec<u8>,
        client: &mut W,
        sent: &mut bool,
    ) -> std::io::Result<()> {
        match framing {
            Framing::Empty => {
                *sent = true;
                client.write_all(out).await?;
            }
            Framing::Length(mut left) => loop {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                out.extend_from_slice(&self.buf[..take]);
                self.buf.advance(take);
                left -= take as u64;
                *sent = true;
                client.write_all(out).await?;
                out.clear();
                if left == 0 {
                    break;
                }
                self.fill().await?;
            },
            Framing::Chunked => {
                let mut scanner = ChunkedScanner::default();
                loop {
                    let (used, done) = scanner
                        .advance(&self.buf)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    out.extend_from_slice(&self.buf[..used]);
                    self.buf.advance(used);
                    *sent = true;
                    client.write_all(out).await?;
                    out.clear();
                    if done {
                        break;
                    }
                    self.fill().await?;
                }
            }
            Framing::UntilClose => {
                *sent = true;
                client.write_all(out).await?;
                out.clear();
                loop {
                    client.write_all(&self.buf).await?;
                    self.buf.clear();
                    if self.stream.read_buf(&mut self.buf).await? == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The next piece of the response body as `body` delimits it, with any chunk framing
    /// taken off (for a client that frames bodies its own way: HTTP/2); `None` at its end.
    /// `body` is [`BodyReader::Done`] as soon as the last piece has been returned.
    pub fn poll_data(
        &mut self,
        cx: &mut std::task::Context<'_>,
        body: &mut BodyReader,
    ) -> std::task::Poll<std::io::Result<Option<Bytes>>> {
        use std::task::Poll;
        loop {
            match body {
                BodyReader::Done => return Poll::Ready(Ok(None)),
                BodyReader::Length(left) => {
                    if !self.buf.is_empty() {
                        let take = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(self.buf.len());
                        *left -= take as u64;
                        if *left == 0 {
                            *body = BodyReader::Done;
                        }
                        return Poll::Ready(Ok(Some(self.buf.split_to(take).freeze())));
                    }
                }
                BodyReader::Chunked(scanner) => {
                    let mut data = BytesMut::new();
                    let (used, done) = scanner
                        .decode(&self.buf, &mut data)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                    self.buf.advance(used);
                    if done {
                        *body = BodyReader::Done;
                    }
                    if !data.is_empty() {
                        return Poll::Ready(Ok(Some(data.freeze())));
                    }
                    if done {
                        return Poll::Ready(Ok(None));
                    }
                }
                BodyReader::UntilClose => {
                    if !self.buf.is_empty() {
                        return Poll::Ready(Ok(Some(self.buf.split().freeze())));
                    }
                }
            }
            // Nothing buffered to hand out: read more.
            self.buf.reserve(16 * 1024);
            let read = match self.stream.try_read_buf(&mut self.buf) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    match self.stream.poll_read_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(ready) => {
                            ready?;
                            continue;
                        }
                    }
                }
                read => read?,
            };
            if read == 0 {
                if matches!(body, BodyReader::UntilClose) {
                    *body = BodyReader::Done;
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(16 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}
