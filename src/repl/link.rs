//! The frames on a replication connection.
//!
//! ```text
//! len: u32 LE | crc32: u32 LE | flags: u8 | payload[len - 1]
//! ```
//!
//! `len` counts the bytes after the 8-byte head (flags and payload); the crc
//! covers exactly those bytes, as sent. Flags bit 0 says the payload is lz4
//! compressed with its uncompressed size prepended (u32 LE), which cross-zone
//! links turn on; the other bits are reserved and must be zero.
//!
//! The write records inside already carry crcs of their own, but the frame's
//! crc is checked first so that damage is caught before lz4 runs over it and
//! before the messages inside are parsed.

use futures::io::{AsyncRead, AsyncReadExt};
use lz4_flex::block;

/// The largest `len` accepted, and the largest decompressed payload: a bound
/// on what a damaged or hostile head can make a reader buffer or allocate.
pub const MAX_FRAME: usize = 64 << 20;

/// Bytes of `len | crc32` before every frame.
const HEAD: usize = 8;

/// Flags bit 0: the payload is lz4 compressed, its size prepended.
const COMPRESSED: u8 = 1;

/// Bytes of the uncompressed size before lz4 data.
const SIZE_PREFIX: usize = 4;

/// The most output one byte of lz4 data can make.
const LZ4_MAX_RATIO: usize = 255;

/// Payloads shorter than this are sent raw: lz4 rarely wins on them and the
/// attempt costs more than the bytes it could save.
const MIN_COMPRESS: usize = 64;

/// Frames sent or received, for INFO and for judging whether compression pays.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    pub frames_raw: u64,
    pub frames_compressed: u64,
    /// Payload bytes before compression (after decompression, on receipt).
    pub payload_bytes: u64,
    /// Bytes on the wire, heads included.
    pub wire_bytes: u64,
    /// Frames (counted above too) sent as another link of the same kind
    /// had encoded them: neither encoded nor compressed again.
    pub frames_shared: u64,
}

impl LinkStats {
    pub(crate) fn count(&mut self, compressed: bool, payload: usize, wire: usize) {
        if compressed {
            self.frames_compressed += 1;
        } else {
            self.frames_raw += 1;
        }
        self.payload_bytes += payload as u64;
        self.wire_bytes += wire as u64;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("frame crc mismatch")]
    Crc,
    #[error("frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("bad frame flags {0:#x}")]
    Flags(u8),
    #[error("cannot decompress frame: {0}")]
    Decompress(String),
    /// A frame or a message inside one is not what its reader expected.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

// ---------------------------------------------------------------- encoding

/// Appends one frame carrying `payload` to `out`. With `compress`, the
/// payload is lz4-compressed when that makes it smaller (payloads under 64
/// bytes are never compressed); otherwise it is sent raw. Counts into `stats`.
///
/// `payload` must be shorter than [`MAX_FRAME`]: callers batch records into
/// frames well below it, and a peer refuses anything larger.
pub fn encode_frame(out: &mut Vec<u8>, payload: &[u8], compress: bool, stats: &mut LinkStats) {
    debug_assert!(
        payload.len() < MAX_FRAME,
        "link payload of {} bytes",
        payload.len()
    );
    let at = out.len();
    out.extend_from_slice(&[0; HEAD]);
    let compressed = compress && payload.len() >= MIN_COMPRESS && push_compressed(out, payload);
    if !compressed {
        out.push(0);
        out.extend_from_slice(payload);
    }
    let body = &out[at + HEAD..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    out[at + 4..at + HEAD].copy_from_slice(&crc.to_le_bytes());
    stats.count(compressed, payload.len(), out.len() - at);
}

/// Appends the flags and the compressed payload to `out` if they come out
/// smaller than the raw payload; otherwise leaves `out` as it was. Compresses
/// straight into `out` to save a copy per frame.
fn push_compressed(out: &mut Vec<u8>, payload: &[u8]) -> bool {
    let at = out.len();
    out.push(COMPRESSED);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let data = out.len();
    out.resize(data + block::get_maximum_output_size(payload.len()), 0);
    match block::compress_into(payload, &mut out[data..]) {
        Ok(n) if SIZE_PREFIX + n < payload.len() => {
            out.truncate(data + n);
            true
        }
        _ => {
            out.truncate(at);
            false
        }
    }
}

// ---------------------------------------------------------------- decoding

/// One frame taken off the front of a buffer.
struct Decoded {
    payload: Vec<u8>,
    /// Bytes of the buffer the frame took, head included.
    consumed: usize,
    compressed: bool,
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when more bytes are
/// needed; `Ok(Some((payload, consumed)))` otherwise.
///
/// The length is checked against [`MAX_FRAME`] before waiting for the bytes
/// it announces, the crc before decompressing, and the decompressed size
/// before allocating for it.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, LinkError> {
    Ok(decode(buf)?.map(|d| (d.payload, d.consumed)))
}

fn decode(buf: &[u8]) -> Result<Option<Decoded>, LinkError> {
    let Some(head) = buf.get(..HEAD) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_FRAME {
        return Err(LinkError::TooLarge(len));
    }
    let Some(body) = buf.get(HEAD..HEAD + len) else {
        return Ok(None);
    };
    if crc32fast::hash(body) != crc {
        return Err(LinkError::Crc);
    }
    // Only a sender that wrote a zero length over an empty body gets here.
    let (&flags, data) = body
        .split_first()
        .ok_or(LinkError::Malformed("frame without flags"))?;
    if flags & !COMPRESSED != 0 {
        return Err(LinkError::Flags(flags));
    }
    let compressed = flags & COMPRESSED != 0;
    let payload = if compressed {
        decompress(data)?
    } else {
        data.to_vec()
    };
    Ok(Some(Decoded {
        payload,
        consumed: HEAD + len,
        compressed,
    }))
}

fn decompress(data: &[u8]) -> Result<Vec<u8>, LinkError> {
    let (size, lz4) =
        block::uncompressed_size(data).map_err(|e| LinkError::Decompress(e.to_string()))?;
    if size > MAX_FRAME {
        return Err(LinkError::TooLarge(size));
    }
    // No lz4 block makes more than 255 bytes of one (a match grows by 255
    // per byte of length): a size beyond that is refused before it is
    // allocated, or a 13-byte frame could make a reader allocate 64 MiB.
    if size > lz4.len().saturating_mul(LZ4_MAX_RATIO) {
        return Err(LinkError::Decompress(format!(
            "{size} bytes announced for {} of lz4 data",
            lz4.len()
        )));
    }
    let mut out = vec![0; size];
    let n =
        block::decompress_into(lz4, &mut out).map_err(|e| LinkError::Decompress(e.to_string()))?;
    if n != size {
        return Err(LinkError::Decompress(format!(
            "{n} bytes where {size} were announced"
        )));
    }
    Ok(out)
}

// ---------------------------------------------------------------- reading

/// Bytes asked of the stream per read, at least.
const READ_CHUNK: usize = 64 << 10;

/// A buffer grown past this for one large frame is given back once empty.
const KEEP_BUF: usize = 1 << 20;

/// Reads frames from a stream, buffering partial input.
///
/// [`FrameReader::next`] is cancel safe: bytes read before its future is
/// dropped stay buffered for the next call.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Initialized throughout: reads land in `buf[end..]`, so the buffer is
    /// zeroed once when it grows, not on every read.
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    stats: LinkStats,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next frame's payload. [`LinkError::Closed`] when the stream ends
    /// cleanly between frames, `Io(UnexpectedEof)` when it ends inside one.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Vec<u8>, LinkError> {
        loop {
            if let Some(d) = decode(&self.buf[self.start..self.end])? {
                self.consume(d.consumed);
                self.stats.count(d.compressed, d.payload.len(), d.consumed);
                return Ok(d.payload);
            }
            self.make_room();
            match r.read(&mut self.buf[self.end..]).await {
                Ok(0) if self.start == self.end => return Err(LinkError::Closed),
                Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether a whole frame is already buffered (the next `next` will not
    /// read): a backup acks once per burst, not once per frame.
    pub fn has_frame(&self) -> bool {
        let have = &self.buf[self.start..self.end];
        have.len() >= 8
            && u32::from_le_bytes([have[0], have[1], have[2], have[3]]) as usize + 8 <= have.len()
    }

    /// What this reader has received so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUF {
                self.buf.truncate(READ_CHUNK);
                self.buf.shrink_to_fit();
            }
        }
    }

    /// Makes room for a read of a useful size. Only called when the buffer
    /// holds no whole frame, so compacting moves at most one partial frame.
    fn make_room(&mut self) {
        if self.buf.len() - self.end >= READ_CHUNK / 4 {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < READ_CHUNK / 4 {
            let grow = self.buf.len().max(READ_CHUNK);
            self.buf.resize(self.buf.len() + grow, 0);
        }
    }
}

// ---------------------------------------------------------------- messages

/// Appends `v` as 8 bytes LE.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends `b` with its length as a u32 LE before it.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Reads back what [`put_u64`] and [`put_bytes`] wrote: every read checks the
/// remaining length first, so a short message is an error, never a panic.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], LinkError> {
        if n > self.b.len() {
            return Err(LinkError::Malformed("message ends early"));
        }
        let (v, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(v)
    }

    pub fn u8(&mut self) -> Result<u8, LinkError> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, LinkError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], LinkError> {
        let mut a = [0; 4];
        a.copy_from_slice(self.take(4)?);
        self.take(u32::from_le_bytes(a) as usize)
    }

    /// Everything not read yet; the cursor is empty afterwards.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Bytes that do not compress (xorshift).
    fn noise(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    /// Bytes that compress well, like a batch of similar records.
    fn text(n: usize) -> Vec<u8> {
        let mut s = String::new();
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(
                r#"{{"user":{i},"name":"user-{i}","active":true}},"#
            ));
            i += 1;
        }
        let mut b = s.into_bytes();
        b.truncate(n);
        b
    }

    fn frame(payload: &[u8], compress: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, payload, compress, &mut LinkStats::default());
        out
    }

    /// A frame with the given flags and body bytes and a correct crc.
    fn raw_frame(flags: u8, data: &[u8]) -> Vec<u8> {
        let mut body = vec![flags];
        body.extend_from_slice(data);
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn payloads() -> Vec<Vec<u8>> {
        vec![
            Vec::new(),
            b"x".to_vec(),
            text(63),
            text(64),
            text(5000),
            noise(5000, 7),
            text(300 << 10),
        ]
    }

    #[test]
    fn frames_round_trip_raw_and_compressed() {
        for compress in [false, true] {
            let mut out = Vec::new();
            let mut stats = LinkStats::default();
            for p in payloads() {
                encode_frame(&mut out, &p, compress, &mut stats);
            }
            let mut at = 0;
            for p in payloads() {
                let (got, n) = decode_frame(&out[at..]).unwrap().unwrap();
                assert_eq!(got, p);
                at += n;
            }
            assert_eq!(at, out.len());
            assert_eq!(stats.wire_bytes, out.len() as u64);
            assert_eq!(stats.frames_raw + stats.frames_compressed, 7);
            // Three of the texts are long enough to compress.
            assert_eq!(stats.frames_compressed, if compress { 3 } else { 0 });
        }
    }

    #[test]
    fn compression_is_used_only_when_smaller() {
        let mut stats = LinkStats::default();
        let mut out = Vec::new();
        let random = noise(4096, 1);
        encode_frame(&mut out, &random, true, &mut stats);
        assert_eq!(out.len(), HEAD + 1 + random.len());
        assert_eq!(out[HEAD], 0, "random bytes went out compressed");
        assert_eq!((stats.frames_raw, stats.frames_compressed), (1, 0));

        let json = text(4096);
        let mut stats = LinkStats::default();
        let mut out = Vec::new();
        encode_frame(&mut out, &json, true, &mut stats);
        assert_eq!(out[HEAD], COMPRESSED);
        assert_eq!((stats.frames_raw, stats.frames_compressed), (0, 1));
        assert_eq!(stats.payload_bytes, json.len() as u64);
        assert_eq!(stats.wire_bytes, out.len() as u64);
        assert!(stats.wire_bytes < stats.payload_bytes / 2, "{stats:?}");

        // Small payloads stay raw however well they would compress.
        let small = vec![b'a'; MIN_COMPRESS - 1];
        let mut stats = LinkStats::default();
        encode_frame(&mut Vec::new(), &small, true, &mut stats);
        assert_eq!((stats.frames_raw, stats.frames_compressed), (1, 0));
    }

    #[test]
    fn truncated_frames_need_more_bytes() {
        for p in [text(64), text(2000), noise(300, 3), Vec::new()] {
            for compress in [false, true] {
                let f = frame(&p, compress);
                for cut in 0..f.len() {
                    assert!(matches!(decode_frame(&f[..cut]), Ok(None)), "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn oversized_lengths_are_refused_before_their_bytes_arrive() {
        let mut head = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        head.extend_from_slice(&[0; 4]);
        assert!(matches!(decode_frame(&head), Err(LinkError::TooLarge(n)) if n == MAX_FRAME + 1));

        // The reader gives up on the head alone rather than waiting for more.
        let mut r = futures::io::Cursor::new(head);
        let e = block_on(FrameReader::new().next(&mut r)).unwrap_err();
        assert!(matches!(e, LinkError::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn oversized_decompressed_sizes_are_refused() {
        let mut data = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        data.extend_from_slice(&[0x10, b'a']);
        let e = decode_frame(&raw_frame(COMPRESSED, &data)).unwrap_err();
        assert!(
            matches!(e, LinkError::TooLarge(n) if n == MAX_FRAME + 1),
            "{e:?}"
        );
    }

    /// Found by the fuzz target (tests/fuzz/repl_frames.rs): a damaged size
    /// prefix made the reader allocate whatever it announced, up to 64 MiB.
    #[test]
    fn sizes_lz4_cannot_reach_are_refused_and_the_best_ratios_pass() {
        for n in [64, 1000, 70_000, 1 << 20, 4 << 20] {
            let zeros = vec![0u8; n];
            let f = frame(&zeros, true);
            assert_eq!(f[HEAD], COMPRESSED);
            let lz4 = f.len() - HEAD - 1 - SIZE_PREFIX;
            assert!(n <= lz4 * LZ4_MAX_RATIO, "{n} bytes from {lz4}");
            assert_eq!(decode_frame(&f).unwrap().unwrap().0, zeros);
        }
        let mut data = (1u32 << 20).to_le_bytes().to_vec();
        data.extend_from_slice(&[0x1f, 0, 1, 0, 0xff, 0xff]);
        let e = decode_frame(&raw_frame(COMPRESSED, &data)).unwrap_err();
        assert!(matches!(e, LinkError::Decompress(_)), "{e:?}");
    }

    #[test]
    fn bad_flags_and_bad_lz4_are_refused() {
        let e = decode_frame(&raw_frame(2, b"abc")).unwrap_err();
        assert!(matches!(e, LinkError::Flags(2)), "{e:?}");

        // lz4 data that ends before the size it announced.
        let mut data = 100u32.to_le_bytes().to_vec();
        data.extend_from_slice(&[0x50, b'a', b'b', b'c', b'd', b'e']);
        let e = decode_frame(&raw_frame(COMPRESSED, &data)).unwrap_err();
        assert!(matches!(e, LinkError::Decompress(_)), "{e:?}");

        // Not even room for the size.
        let e = decode_frame(&raw_frame(COMPRESSED, &[1, 2])).unwrap_err();
        assert!(matches!(e, LinkError::Decompress(_)), "{e:?}");

        // A zero length with the crc of nothing.
        let mut empty = 0u32.to_le_bytes().to_vec();
        empty.extend_from_slice(&crc32fast::hash(&[]).to_le_bytes());
        assert!(matches!(decode_frame(&empty), Err(LinkError::Malformed(_))));
    }

    proptest! {
        /// A flipped bit never yields a payload: the crc catches it, or the
        /// damaged head is refused or waits for bytes that never come.
        #[test]
        fn flipped_bits_never_yield_a_payload(
            len in 0usize..400,
            compressible in any::<bool>(),
            compress in any::<bool>(),
            pos in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let p = if compressible { text(len) } else { noise(len, len as u64 + 1) };
            let mut f = frame(&p, compress);
            let pos = pos.index(f.len());
            // A second frame behind it, as on a live stream.
            f.extend_from_slice(&frame(b"next", false));
            f[pos] ^= 1 << bit;
            match decode_frame(&f) {
                Err(LinkError::Crc) => {}
                Err(LinkError::TooLarge(_) | LinkError::Malformed(_)) | Ok(None) if pos < 4 => {}
                r => prop_assert!(false, "flip at {}: {:?}", pos, r),
            }
        }
    }

    /// Yields one byte per successful poll, and `Pending` before each.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        ready: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.ready = false;
            let Some(&b) = self.data.get(self.at) else {
                return Poll::Ready(Ok(0));
            };
            buf[0] = b;
            self.at += 1;
            Poll::Ready(Ok(1))
        }
    }

    fn trickle(data: Vec<u8>) -> Trickle {
        Trickle {
            data,
            at: 0,
            ready: false,
        }
    }

    #[test]
    fn reader_reassembles_frames_from_single_bytes() {
        let mut wire = Vec::new();
        let mut sent = LinkStats::default();
        let payloads = [text(100), Vec::new(), noise(3000, 9), text(200 << 10)];
        for (i, p) in payloads.iter().enumerate() {
            encode_frame(&mut wire, p, i % 2 == 0, &mut sent);
        }
        reads_back(trickle(wire), &payloads, sent);
    }

    /// Reads every payload back from `r` in order, then a clean end, and
    /// counts what was sent.
    fn reads_back<R: AsyncRead + Unpin>(mut r: R, payloads: &[Vec<u8>], sent: LinkStats) {
        let mut reader = FrameReader::new();
        for p in payloads {
            assert_eq!(&block_on(reader.next(&mut r)).unwrap(), p);
        }
        assert!(matches!(
            block_on(reader.next(&mut r)),
            Err(LinkError::Closed)
        ));
        assert_eq!(reader.stats(), sent);
    }

    #[test]
    fn reader_reads_many_frames_from_large_reads() {
        let mut wire = Vec::new();
        let mut sent = LinkStats::default();
        let payloads: Vec<_> = (0..500).map(|i| text(i * 37 % 5000)).collect();
        for p in &payloads {
            encode_frame(&mut wire, p, true, &mut sent);
        }
        reads_back(futures::io::Cursor::new(wire), &payloads, sent);
    }

    #[test]
    fn reader_tells_eof_inside_a_frame_from_eof_between_frames() {
        let mut wire = frame(b"whole", false);
        let second = frame(&text(500), true);
        wire.extend_from_slice(&second[..second.len() / 2]);
        let mut r = trickle(wire);
        let mut reader = FrameReader::new();
        assert_eq!(block_on(reader.next(&mut r)).unwrap(), b"whole");
        match block_on(reader.next(&mut r)) {
            Err(LinkError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
            r => panic!("{r:?}"),
        }

        let mut empty = futures::io::Cursor::new(Vec::new());
        assert!(matches!(
            block_on(FrameReader::new().next(&mut empty)),
            Err(LinkError::Closed)
        ));
    }

    #[test]
    fn messages_round_trip_and_short_ones_are_refused() {
        let mut m = Vec::new();
        m.push(7);
        put_u64(&mut m, u64::MAX - 1);
        put_bytes(&mut m, b"key");
        put_bytes(&mut m, b"");
        m.extend_from_slice(b"tail");
        let mut c = Cursor::new(&m);
        assert_eq!(c.u8().unwrap(), 7);
        assert_eq!(c.u64().unwrap(), u64::MAX - 1);
        assert_eq!(c.bytes().unwrap(), b"key");
        assert_eq!(c.bytes().unwrap(), b"");
        assert_eq!(c.rest(), b"tail");
        assert!(c.rest().is_empty());
        assert!(matches!(c.u8(), Err(LinkError::Malformed(_))));

        for cut in 0..m.len() - 4 {
            let mut c = Cursor::new(&m[..cut]);
            let r = (|| {
                c.u8()?;
                c.u64()?;
                c.bytes()?;
                c.bytes()
            })();
            assert!(matches!(r, Err(LinkError::Malformed(_))), "cut at {cut}");
        }
        // A length that runs past the end.
        let mut c = Cursor::new(&[9, 0, 0, 0, 1, 2]);
        assert!(matches!(c.bytes(), Err(LinkError::Malformed(_))));
    }
}
