//! RecordIO, the framing of Mesos' streaming responses (scheduler and operator SUBSCRIBE):
//! each record is its length in bytes as ASCII decimal, a line feed, then exactly that many
//! bytes (a JSON document here). There is no separator after a record.
//!
//! ```text
//! 20\n{"type":"HEARTBEAT"}20\n{"type":"HEARTBEAT"}
//! ```
//!
//! HTTP chunk boundaries carry no meaning; [`Decoder`] takes bytes in whatever pieces they
//! arrive and hands back whole records.

use serde::Serialize;
use thiserror::Error;

/// The longest length header accepted: `u64::MAX` has 20 digits.
const MAX_HEADER_DIGITS: usize = 20;

/// The default ceiling on a single record, so a corrupt or hostile length cannot make the
/// decoder buffer without bound. Mesos' largest events (big OFFERS, operator SUBSCRIBED
/// snapshots) stay well below it.
pub const DEFAULT_MAX_RECORD_LEN: u64 = 256 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecordIoError {
    #[error("invalid record length header {header:?}: {reason}")]
    InvalidLength { header: String, reason: &'static str },
    #[error("record length {len} exceeds the limit of {max} bytes")]
    TooLong { len: u64, max: u64 },
    #[error("stream ended inside a record ({buffered} bytes of it received)")]
    Truncated { buffered: usize },
}

/// Frames one record.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 8);
    encode_into(record, &mut out);
    out
}

/// Appends one framed record to `out`.
pub fn encode_into(record: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(record);
}

/// Serializes `value` as compact JSON and frames it.
pub fn encode_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(value).map(|json| encode(&json))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Reading length digits; `digits` seen so far in the buffer from the record start.
    Header { digits: usize },
    /// Reading `len` bytes of record body.
    Body { len: usize },
}

/// An incremental RecordIO decoder: feed it bytes, get whole records back.
///
/// A malformed length (not decimal digits, too many digits, larger than the limit) is an
/// error, and the decoder stays failed afterwards: a byte stream cannot be resynchronised
/// once its framing is lost.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    expect: Expect,
    max_record_len: u64,
    failed: Option<RecordIoError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::with_max_record_len(DEFAULT_MAX_RECORD_LEN)
    }

    /// A decoder that rejects records longer than `max` bytes.
    pub fn with_max_record_len(max: u64) -> Self {
        Decoder {
            buf: Vec::new(),
            expect: Expect::Header { digits: 0 },
            max_record_len: max,
            failed: None,
        }
    }

    /// Feeds the next bytes of the stream; returns the records they complete, in order.
    pub fn decode(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, RecordIoError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.buf.extend_from_slice(chunk);
        let result = self.drain_records();
        if let Err(err) = &result {
            self.failed = Some(err.clone());
            self.buf.clear();
        }
        result
    }

    fn drain_records(&mut self) -> Result<Vec<Vec<u8>>, RecordIoError> {
        let mut records = Vec::new();
        let mut pos = 0;
        loop {
            match self.expect {
                Expect::Header { digits } => {
                    let start = pos + digits;
                    let mut newline = None;
                    for (i, &b) in self.buf[start..].iter().enumerate() {
                        if b == b'\n' {
                            newline = Some(start + i);
                            break;
                        }
                        let header_len = start + i + 1 - pos;
                        if !b.is_ascii_digit() {
                            return Err(invalid(&self.buf[pos..start + i + 1], "not a decimal number"));
                        }
                        if header_len > MAX_HEADER_DIGITS {
                            return Err(invalid(&self.buf[pos..start + i + 1], "too many digits"));
                        }
                    }
                    let Some(nl) = newline else {
                        self.expect = Expect::Header {
                            digits: self.buf.len() - pos,
                        };
                        break;
                    };
                    let header = &self.buf[pos..nl];
                    if header.is_empty() {
                        return Err(invalid(header, "empty"));
                    }
                    // Only ASCII digits got here, at most 20 of them.
                    let text = std::str::from_utf8(header).expect("ascii digits");
                    let len: u64 = text.parse().map_err(|_| invalid(header, "does not fit in 64 bits"))?;
                    if len > self.max_record_len {
                        return Err(RecordIoError::TooLong {
                            len,
                            max: self.max_record_len,
                        });
                    }
                    let len = usize::try_from(len).map_err(|_| RecordIoError::TooLong {
                        len,
                        max: usize::MAX as u64,
                    })?;
                    pos = nl + 1;
                    self.expect = Expect::Body { len };
                }
                Expect::Body { len } => {
                    if self.buf.len() - pos < len {
                        break;
                    }
                    records.push(self.buf[pos..pos + len].to_vec());
                    pos += len;
                    self.expect = Expect::Header { digits: 0 };
                }
            }
        }
        self.buf.drain(..pos);
        Ok(records)
    }

    /// Bytes received that do not yet form a whole record.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Ends the stream: an error if it stopped in the middle of a record.
    pub fn finish(self) -> Result<(), RecordIoError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        if self.buf.is_empty() && self.expect == (Expect::Header { digits: 0 }) {
            Ok(())
        } else {
            Err(RecordIoError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }
}

fn invalid(header: &[u8], reason: &'static str) -> RecordIoError {
    const SHOWN: usize = 32;
    let shown = &header[..header.len().min(SHOWN)];
    RecordIoError::InvalidLength {
        header: String::from_utf8_lossy(shown).into_owned(),
        reason,
    }
}
