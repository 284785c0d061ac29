//! Peer-link frames: versioned, size-bounded, authenticated with the pair key (HMAC-SHA256),
//! and replay-protected per connection. Each side opens a connection with a [`Hello`] carrying
//! a fresh random nonce; the session is both nonces, so a frame recorded on one connection is
//! worthless on another, and within a connection sequence numbers only go up. Neither the key
//! nor any hash of it is ever sent; no clock is trusted.
//!
//! Wire format (big-endian), each frame preceded on the stream by its length (`u32`):
//! - hello: `"DUET" version=1 kind=1 name_len:u8 name nonce:[16] mac:[32]`, the MAC over all
//!   before it;
//! - data: `"DUET" version=1 kind=2 seq:u64 len:u32 payload mac:[32]`, the MAC over the session
//!   id, the sender's direction and all before it.

#![warn(clippy::too_many_lines)]

use hmac::{KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

/// The frame format's version.
pub const VERSION: u8 = 1;
/// The largest frame accepted or sent.
pub const MAX_FRAME: usize = 256 * 1024;

const MAGIC: &[u8; 4] = b"DUET";
const KIND_HELLO: u8 = 1;
const KIND_DATA: u8 = 2;
const MAC_LEN: usize = 32;
const NONCE_LEN: usize = 16;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why a frame was rejected. Every rejection is counted by the caller; none changes state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("truncated frame")]
    Truncated,
    #[error("not a duet frame")]
    BadMagic,
    #[error("frame version {0} is not supported (this agent speaks {VERSION})")]
    Version(u8),
    #[error("unexpected frame kind {0}")]
    Kind(u8),
    #[error("authentication failed: pair key mismatch, or a forged or garbled frame")]
    BadMac,
    #[error("replayed or reordered frame: sequence {seq} after {last}")]
    Replay { seq: u64, last: u64 },
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// The pair key shared by both agents' configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct PairKey(Vec<u8>);

impl PairKey {
    /// A key from the configured secret.
    pub fn new(secret: &[u8]) -> Self {
        PairKey(secret.to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKey(..)")
    }
}

/// The first frame on a connection, from each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The sender's agent name.
    pub agent: String,
    /// A fresh random nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl Hello {
    /// A hello with a fresh random nonce.
    pub fn new(agent: &str) -> anyhow::Result<Self> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| anyhow::anyhow!("failed to read random bytes: {e}"))?;
        Ok(Hello {
            agent: agent.to_string(),
            nonce,
        })
    }

    /// The authenticated hello frame.
    pub fn seal(&self, key: &PairKey) -> Vec<u8> {
        let name = self.agent.as_bytes();
        let name = &name[..name.len().min(255)];
        let mut out = Vec::with_capacity(7 + name.len() + NONCE_LEN + MAC_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, KIND_HELLO, name.len() as u8]);
        out.extend_from_slice(name);
        out.extend_from_slice(&self.nonce);
        let mut mac = key.mac();
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// Checks a hello frame against each of `keys` (during a key rotation an agent accepts
    /// two), returning the hello and the key it was sealed with: the session's frames from
    /// its sender are checked with that key.
    pub fn open_any<'k>(
        keys: &'k [PairKey],
        frame: &[u8],
    ) -> Result<(Hello, &'k PairKey), FrameError> {
        for key in keys {
            match Hello::open(key, frame) {
                Ok(hello) => return Ok((hello, key)),
                // Only a wrong key is worth another try: anything else fails the same way.
                Err(FrameError::BadMac) => {}
                Err(e) => return Err(e),
            }
        }
        Err(FrameError::BadMac)
    }

    /// Checks and reads a hello frame.
    pub fn open(key: &PairKey, frame: &[u8]) -> Result<Hello, FrameError> {
        let body = header(frame, KIND_HELLO)?;
        let (&name_len, rest) = body.split_first().ok_or(FrameError::Truncated)?;
        let name_len = usize::from(name_len);
        if rest.len() != name_len + NONCE_LEN + MAC_LEN {
            return Err(if rest.len() < name_len + NONCE_LEN + MAC_LEN {
                FrameError::Truncated
            } else {
                FrameError::Malformed("trailing bytes")
            });
        }
        let signed = &frame[..frame.len() - MAC_LEN];
        let mut mac = key.mac();
        mac.update(signed);
        mac.verify_slice(&frame[frame.len() - MAC_LEN..])
            .map_err(|_| FrameError::BadMac)?;
        let agent = std::str::from_utf8(&rest[..name_len])
            .map_err(|_| FrameError::Malformed("agent name is not UTF-8"))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&rest[name_len..name_len + NONCE_LEN]);
        Ok(Hello {
            agent: agent.to_string(),
            nonce,
        })
    }
}

/// One connection's authenticated channel, after both hellos. Each side seals with its own
/// signing key and checks the other's frames with the key that opened the other's hello, so
/// the two may differ while a pair rotates its key.
pub struct Session {
    key: PairKey,
    /// The key the other side seals with.
    theirs: PairKey,
    id: [u8; 32],
    /// This side's direction byte (the initiator sends 0, the responder 1).
    direction: u8,
    next_send: u64,
    last_received: u64,
}

impl Session {
    /// The session of a connection: `initiator` is true on the side that connected.
    pub fn new(key: PairKey, ours: &Hello, theirs: &Hello, initiator: bool) -> Self {
        Session::with_keys(key.clone(), key, ours, theirs, initiator)
    }

    /// A session sealing with `key` and checking with `their_key` (the key that opened the
    /// other side's hello: [`Hello::open_any`]).
    pub fn with_keys(
        key: PairKey,
        their_key: PairKey,
        ours: &Hello,
        theirs: &Hello,
        initiator: bool,
    ) -> Self {
        let (first, second) = if initiator {
            (ours, theirs)
        } else {
            (theirs, ours)
        };
        let mut id = Sha256::new();
        id.update(first.nonce);
        id.update(second.nonce);
        Session {
            key,
            theirs: their_key,
            id: id.finalize().into(),
            direction: u8::from(!initiator),
            next_send: 1,
            last_received: 0,
        }
    }

    /// The key this side seals with and the key the other side's frames are checked with.
    pub fn keys(&self) -> (&PairKey, &PairKey) {
        (&self.key, &self.theirs)
    }

    /// Seals a payload into the next data frame.
    pub fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        let total = 6 + 8 + 4 + payload.len() + MAC_LEN;
        if total > MAX_FRAME {
            return Err(FrameError::TooLarge(total));
        }
        let seq = self.next_send;
        self.next_send += 1;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, KIND_DATA]);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        let tag = self.tag(self.direction, &out);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Checks a data frame from the other side and returns its payload.
    pub fn open(&mut self, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        let body = header(frame, KIND_DATA)?;
        if body.len() < 12 + MAC_LEN {
            return Err(FrameError::Truncated);
        }
        let seq = u64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
        if body.len() != 12 + len + MAC_LEN {
            return Err(FrameError::Malformed("length does not match"));
        }
        let signed = &frame[..frame.len() - MAC_LEN];
        let mut mac = self.theirs.mac();
        mac.update(&self.id);
        mac.update(&[1 - self.direction]);
        mac.update(signed);
        mac.verify_slice(&frame[frame.len() - MAC_LEN..])
            .map_err(|_| FrameError::BadMac)?;
        // Only after authentication: a forged frame must not move the replay window.
        if seq <= self.last_received {
            return Err(FrameError::Replay {
                seq,
                last: self.last_received,
            });
        }
        self.last_received = seq;
        Ok(body[12..12 + len].to_vec())
    }

    fn tag(&self, direction: u8, signed: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.key.mac();
        mac.update(&self.id);
        mac.update(&[direction]);
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }
}

/// Checks magic, version and kind; returns what follows them.
fn header(frame: &[u8], kind: u8) -> Result<&[u8], FrameError> {
    if frame.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(frame.len()));
    }
    if frame.len() < 6 {
        return Err(FrameError::Truncated);
    }
    if &frame[..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if frame[4] != VERSION {
        return Err(FrameError::Version(frame[4]));
    }
    if frame[5] != kind {
        return Err(FrameError::Kind(frame[5]));
    }
    Ok(&frame[6..])
}

/// Reads one length-prefixed frame; refuses a length over [`MAX_FRAME`] before reading it.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Result<Vec<u8>, FrameError>> {
    use tokio::io::AsyncReadExt as _;
    let len = reader.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Ok(Err(FrameError::TooLarge(len)));
    }
    let mut frame = vec![0u8; len];
    reader.read_exact(&mut frame).await?;
    Ok(Ok(frame))
}

/// Reads one length-prefixed frame like [`read_frame`], but judges what a sender wrote before
/// closing: `Ok(None)` when the stream ends between frames (nothing was sent), a
/// [`FrameError::Truncated`] when it ends inside one (a length prefix or a body cut short).
/// Other I/O errors stay errors.
pub async fn read_frame_or_end<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Result<Vec<u8>, FrameError>>> {
    use tokio::io::AsyncReadExt as _;
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        match reader.read(&mut prefix[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Ok(Some(Err(FrameError::Truncated))),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Ok(Some(Err(FrameError::TooLarge(len))));
    }
    let mut frame = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match reader.read(&mut frame[got..]).await? {
            0 => return Ok(Some(Err(FrameError::Truncated))),
            n => got += n,
        }
    }
    Ok(Some(Ok(frame)))
}

/// Writes one length-prefixed frame.
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    writer.write_u32(frame.len() as u32).await?;
    writer.write_all(frame).await?;
    writer.flush().await
}

/// Feeds arbitrary bytes to every decoder, as an attacker on the wire could: as a hello, as a
/// data frame of a live session, and as a length-prefixed stream. Panics if a decoder panics,
/// accepts bytes that were not sealed with the key, or would read past [`MAX_FRAME`]. The fuzz
/// target (`fuzz/fuzz_targets/frame.rs`) and the seeded mutation test both run it.
#[doc(hidden)]
pub fn check_decoders(data: &[u8]) {
    let (key, ours, theirs) = fixed_hellos();
    // Only a sealed hello may open; these bytes were not sealed by us unless they equal one.
    if let Ok(h) = Hello::open(&key, data) {
        assert_eq!(
            h.seal(&key),
            data,
            "a hello opened that was not sealed with the key"
        );
    }
    let mut session = Session::new(key.clone(), &ours, &theirs, true);
    let mut peer = Session::new(key, &theirs, &ours, false);
    if let Ok(payload) = session.open(data) {
        // Then it must be exactly what the peer seals first.
        assert_eq!(
            peer.seal(&payload).ok().as_deref(),
            Some(data),
            "a data frame opened that the peer never sealed"
        );
    }
    let mut stream = data;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        while let Ok(frame) = read_frame(&mut stream).await {
            if let Ok(frame) = frame {
                assert!(frame.len() <= MAX_FRAME);
            } else {
                break;
            }
        }
        let mut stream = data;
        while let Ok(Some(frame)) = read_frame_or_end(&mut stream).await {
            if let Ok(frame) = frame {
                assert!(frame.len() <= MAX_FRAME);
            } else {
                break;
            }
        }
    });
}

/// A key and two hellos with fixed nonces, for [`check_decoders`] and its seeds.
fn fixed_hellos() -> (PairKey, Hello, Hello) {
    let hello = |agent: &str, n: u8| Hello {
        agent: agent.into(),
        nonce: [n; NONCE_LEN],
    };
    (
        PairKey::new(b"fuzzing-pair-key"),
        hello("a", 1),
        hello("b", 2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key_a: &[u8], key_b: &[u8]) -> (Session, Session) {
        let (ha, hb) = (Hello::new("a").unwrap(), Hello::new("b").unwrap());
        (
            Session::new(PairKey::new(key_a), &ha, &hb, true),
            Session::new(PairKey::new(key_b), &hb, &ha, false),
        )
    }

    #[test]
    fn frames_round_trip_both_ways() {
        let (mut a, mut b) = pair(b"k", b"k");
        let f = a.seal(b"report 1").unwrap();
        assert_eq!(b.open(&f).unwrap(), b"report 1");
        let g = b.seal(b"answer").unwrap();
        assert_eq!(a.open(&g).unwrap(), b"answer");
        let hello = Hello::new("agent-a").unwrap();
        assert_eq!(
            Hello::open(&PairKey::new(b"k"), &hello.seal(&PairKey::new(b"k"))).unwrap(),
            hello
        );
    }

    #[test]
    fn a_wrong_pair_key_is_rejected() {
        let hello = Hello::new("agent-a").unwrap().seal(&PairKey::new(b"right"));
        assert_eq!(
            Hello::open(&PairKey::new(b"wrong"), &hello),
            Err(FrameError::BadMac)
        );
        let (mut a, mut b) = pair(b"right", b"wrong");
        assert_eq!(b.open(&a.seal(b"x").unwrap()), Err(FrameError::BadMac));
    }

    #[test]
    fn during_a_rotation_each_side_seals_with_its_key_and_checks_with_the_one_it_accepted() {
        let (old, new) = (PairKey::new(b"old-key"), PairKey::new(b"new-key"));
        let (ha, hb) = (Hello::new("a").unwrap(), Hello::new("b").unwrap());
        // a already signs with the new key, b still with the old; both accept both.
        let accepted = [old.clone(), new.clone()];
        let (from_a, key_a) = Hello::open_any(&accepted, &ha.seal(&new)).unwrap();
        let (from_b, key_b) = Hello::open_any(&accepted, &hb.seal(&old)).unwrap();
        assert_eq!((&from_a, key_a), (&ha, &new));
        assert_eq!((&from_b, key_b), (&hb, &old));
        let mut a = Session::with_keys(new.clone(), key_b.clone(), &ha, &from_b, true);
        let mut b = Session::with_keys(old.clone(), key_a.clone(), &hb, &from_a, false);
        assert_eq!(b.open(&a.seal(b"report").unwrap()).unwrap(), b"report");
        assert_eq!(a.open(&b.seal(b"answer").unwrap()).unwrap(), b"answer");
        // Once b dropped the old key, a hello sealed with it opens no more.
        assert_eq!(
            Hello::open_any(std::slice::from_ref(&new), &hb.seal(&old)),
            Err(FrameError::BadMac)
        );
        assert_eq!(
            Hello::open_any(&accepted, b"DUET\x09\x01"),
            Err(FrameError::Version(9)),
            "not a key problem: no other key is tried"
        );
    }

    #[test]
    fn replayed_reflected_and_cross_session_frames_are_rejected() {
        let (mut a, mut b) = pair(b"k", b"k");
        let f1 = a.seal(b"one").unwrap();
        let f2 = a.seal(b"two").unwrap();
        b.open(&f2).unwrap();
        assert_eq!(
            b.open(&f1),
            Err(FrameError::Replay { seq: 1, last: 2 }),
            "reordered"
        );
        assert_eq!(
            b.open(&f2),
            Err(FrameError::Replay { seq: 2, last: 2 }),
            "replayed"
        );
        assert_eq!(
            a.open(&f2),
            Err(FrameError::BadMac),
            "reflected back to its sender"
        );
        let (_, mut other) = pair(b"k", b"k");
        assert_eq!(
            other.open(&a.seal(b"three").unwrap()),
            Err(FrameError::BadMac),
            "from another connection"
        );
    }

    #[test]
    fn every_garbled_or_truncated_frame_is_rejected_without_moving_the_window() {
        let (mut a, mut b) = pair(b"k", b"k");
        let f = a.seal(b"status report").unwrap();
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x41;
            assert!(b.open(&g).is_err(), "byte {i} flipped");
            assert!(b.open(&f[..i]).is_err(), "truncated at {i}");
        }
        assert_eq!(
            b.open(&f).unwrap(),
            b"status report",
            "the genuine frame still opens"
        );
    }

    #[test]
    fn versions_sizes_and_random_garbage() {
        let (mut a, mut b) = pair(b"k", b"k");
        let mut f = a.seal(b"x").unwrap();
        f[4] = 9;
        assert_eq!(b.open(&f), Err(FrameError::Version(9)));
        assert!(matches!(
            a.seal(&vec![0; MAX_FRAME]),
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(
            b.open(&vec![0; MAX_FRAME + 1]),
            Err(FrameError::TooLarge(_))
        ));
        // Seeded random garbage, with and without a valid header: never a panic, never accepted.
        let mut x: u64 = 0x5EED;
        for n in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (x >> 33) as usize % 200;
            let mut g: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            if n % 2 == 0 && g.len() >= 6 {
                g[..4].copy_from_slice(MAGIC);
                g[4] = VERSION;
                g[5] = if n % 4 == 0 { KIND_DATA } else { KIND_HELLO };
            }
            assert!(b.open(&g).is_err());
            assert!(Hello::open(&PairKey::new(b"k"), &g).is_err());
        }
    }

    /// The fuzz target's body over seeded mutations of valid frames (bit flips, truncations,
    /// insertions, splices, length lies): the stable-Rust stand-in for `cargo fuzz run frame`.
    #[test]
    fn mutated_frames_never_panic_or_open() {
        let (key, ours, theirs) = fixed_hellos();
        let mut peer = Session::new(key.clone(), &theirs, &ours, false);
        let seeds = [
            theirs.seal(&key),
            peer.seal(br#"{"report":{}}"#).unwrap(),
            peer.seal(&[7; 300]).unwrap(),
        ];
        let mut x: u64 = 0xF022;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let seed = &seeds[(next() % 3) as usize];
            let mut g = seed.clone();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % g.len().max(1);
                match next() % 5 {
                    0 => g[at] ^= 1 << (next() % 8),
                    1 => g.truncate(at),
                    2 => g.insert(at, next() as u8),
                    3 => g.extend_from_slice(&seeds[(next() % 3) as usize]),
                    _ => {
                        // A length prefix, true or not, in front.
                        let len = (next() % 2 == 0).then_some(g.len() as u32);
                        let mut p = len.unwrap_or(next() as u32).to_be_bytes().to_vec();
                        p.extend_from_slice(&g);
                        g = p;
                    }
                }
                if g.is_empty() {
                    break;
                }
            }
            if &g != seed {
                check_decoders(&g);
            }
        }
    }

    #[tokio::test]
    async fn what_arrived_before_the_end_of_the_stream_is_judged() {
        // A whole frame, then the end: the frame, then "nothing more".
        let mut stream: &[u8] = &[0, 0, 0, 2, b'h', b'i'];
        assert_eq!(
            read_frame_or_end(&mut stream).await.unwrap(),
            Some(Ok(b"hi".to_vec()))
        );
        assert_eq!(read_frame_or_end(&mut stream).await.unwrap(), None);
        // Cut inside the body, or inside the length prefix: truncated, not a silent close.
        let mut stream: &[u8] = &[0, 0, 0, 9, b'h', b'i'];
        assert_eq!(
            read_frame_or_end(&mut stream).await.unwrap(),
            Some(Err(FrameError::Truncated))
        );
        let mut stream: &[u8] = &[0, 0];
        assert_eq!(
            read_frame_or_end(&mut stream).await.unwrap(),
            Some(Err(FrameError::Truncated))
        );
        // Too large is refused before the body is read.
        let big = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let mut stream: &[u8] = &big;
        assert_eq!(
            read_frame_or_end(&mut stream).await.unwrap(),
            Some(Err(FrameError::TooLarge(MAX_FRAME + 1)))
        );
    }

    #[tokio::test]
    async fn stream_framing_refuses_oversized_lengths_before_reading() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        write_frame(&mut client, b"hello").await.unwrap();
        assert_eq!(read_frame(&mut server).await.unwrap().unwrap(), b"hello");
        tokio::io::AsyncWriteExt::write_u32(&mut client, (MAX_FRAME + 1) as u32)
            .await
            .unwrap();
        assert!(matches!(
            read_frame(&mut server).await.unwrap(),
            Err(FrameError::TooLarge(_))
        ));
    }
}
