//! SRTP and SRTCP (RFC 3711) with the two profiles SDES offers (RFC 4568):
//! AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32, and the SDP
//! `a=crypto` attribute that carries their keys.
//!
//! One [`SrtpContext`] protects or unprotects one direction under one
//! master key (with SDES each side sends under its own key). It keeps per
//! SSRC the rollover counter (RFC 3711 3.3.1, Appendix A) and, receiving,
//! a 64-packet replay window (3.3.2). Key derivation rate 0, no MKI.
//!
//! AES-CM and HMAC-SHA1 come from RustCrypto (`aes`, `ctr`, `hmac`,
//! `sha1`); this module only arranges them as RFC 3711 says.

use std::collections::HashMap;
use std::fmt;

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine;
use hmac::{Hmac, Mac};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type HmacSha1 = Hmac<sha1::Sha1>;

const KEY_LEN: usize = 16;
const SALT_LEN: usize = 14;
const AUTH_KEY_LEN: usize = 20;
const REPLAY_WINDOW: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("too short for an SRTP packet")]
    TooShort,
    #[error("not an RTP/RTCP packet")]
    Malformed,
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("a replayed packet")]
    Replayed,
    #[error("older than the replay window")]
    TooOld,
}

/// The crypto suites of RFC 4568 we run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl SrtpProfile {
    pub const ALL: [SrtpProfile; 2] = [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpProfile::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    pub fn parse(s: &str) -> Option<SrtpProfile> {
        SrtpProfile::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Bytes of the SRTP authentication tag. SRTCP always uses 10
    /// (RFC 4568 6.2: the _32 suite shortens only the SRTP tag).
    pub fn tag_len(self) -> usize {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => 10,
            SrtpProfile::AesCm128HmacSha1_32 => 4,
        }
    }
}

/// A master key and salt (30 bytes). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub key: [u8; KEY_LEN],
    pub salt: [u8; SALT_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(b: &[u8]) -> Option<MasterKey> {
        if b.len() != KEY_LEN + SALT_LEN {
            return None;
        }
        let mut key = [0u8; KEY_LEN];
        let mut salt = [0u8; SALT_LEN];
        key.copy_from_slice(&b[..KEY_LEN]);
        salt.copy_from_slice(&b[KEY_LEN..]);
        Some(MasterKey { key, salt })
    }

    /// A fresh random key from the system's generator.
    pub fn random() -> Result<MasterKey, getrandom::Error> {
        let mut b = [0u8; KEY_LEN + SALT_LEN];
        getrandom::fill(&mut b)?;
        Ok(MasterKey::from_bytes(&b).expect("30 bytes make a master key"))
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.key.to_vec();
        v.extend_from_slice(&self.salt);
        v
    }
}

/// RFC 3711 4.3.1 with a key derivation rate of 0: AES-CM of the master
/// salt, with `label` in its key id, under the master key.
fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..SALT_LEN].copy_from_slice(&master.salt);
    iv[7] ^= label;
    out.fill(0);
    let mut c = Aes128Ctr::new(&master.key.into(), &iv.into());
    c.apply_keystream(out);
}

/// The session keys of one direction: cipher key, salt, auth key.
#[derive(Clone)]
struct SessionKeys {
    cipher: [u8; KEY_LEN],
    salt: [u8; SALT_LEN],
    auth: HmacSha1,
}

impl SessionKeys {
    fn new(master: &MasterKey, rtcp: bool) -> SessionKeys {
        let base = if rtcp { 3 } else { 0 };
        let mut cipher = [0u8; KEY_LEN];
        let mut salt = [0u8; SALT_LEN];
        let mut auth = [0u8; AUTH_KEY_LEN];
        derive(master, base, &mut cipher);
        derive(master, base + 1, &mut auth);
        derive(master, base + 2, &mut salt);
        SessionKeys {
            cipher,
            salt,
            auth: HmacSha1::new_from_slice(&auth).expect("HMAC takes any key length"),
        }
    }

    /// RFC 3711 4.1.1: IV = salt * 2^16 XOR SSRC * 2^64 XOR index * 2^16.
    fn crypt(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..SALT_LEN].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        let idx = index.to_be_bytes();
        for i in 0..6 {
            iv[8 + i] ^= idx[2 + i];
        }
        let mut c = Aes128Ctr::new(&self.cipher.into(), &iv.into());
        c.apply_keystream(data);
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut m = self.auth.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

/// Constant-time comparison of tags.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a receiver knows of one source.
#[derive(Debug, Clone, Copy)]
struct Inbound {
    roc: u32,
    /// The highest sequence number authenticated (s_l).
    seq: u16,
    /// Highest packet index and the window below it.
    highest: u64,
    window: u64,
}

/// What a sender knows of one of its sources.
#[derive(Debug, Clone, Copy)]
struct Outbound {
    roc: u32,
    seq: u16,
    /// SRTCP index of the next RTCP packet.
    rtcp_index: u32,
}

/// Length of the RTP header (fixed part, CSRCs, extension).
fn rtp_header_len(p: &[u8]) -> Result<usize, SrtpError> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let mut len = 12 + 4 * (p[0] & 0x0f) as usize;
    if p[0] & 0x10 != 0 {
        if p.len() < len + 4 {
            return Err(SrtpError::Malformed);
        }
        len += 4 + 4 * u16::from_be_bytes([p[len + 2], p[len + 3]]) as usize;
    }
    if p.len() < len {
        return Err(SrtpError::Malformed);
    }
    Ok(len)
}

fn ssrc_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// One direction of SRTP and SRTCP under one master key.
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    outbound: HashMap<u32, Outbound>,
    inbound: HashMap<u32, Inbound>,
    rtcp_inbound: HashMap<u32, (u32, u64)>,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .finish()
    }
}

/// Sources tracked at most, per direction.
const MAX_SOURCES: usize = 64;

impl SrtpContext {
    pub fn new(profile: SrtpProfile, master: &MasterKey) -> SrtpContext {
        SrtpContext {
            profile,
            rtp: SessionKeys::new(master, false),
            rtcp: SessionKeys::new(master, true),
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            rtcp_inbound: HashMap::new(),
        }
    }

    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Encrypt and authenticate an RTP packet.
    pub fn protect(&mut self, rtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let hl = rtp_header_len(rtp)?;
        let ssrc = ssrc_at(rtp, 8);
        let seq = u16::from_be_bytes([rtp[2], rtp[3]]);
        if self.outbound.len() >= MAX_SOURCES && !self.outbound.contains_key(&ssrc) {
            self.outbound.clear();
        }
        let s = self.outbound.entry(ssrc).or_insert(Outbound {
            roc: 0,
            seq,
            rtcp_index: 0,
        });
        // A sequence number far below the last one wrapped.
        if seq < s.seq && s.seq - seq > 0x8000 {
            s.roc = s.roc.wrapping_add(1);
        }
        s.seq = seq;
        let roc = s.roc;
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let mut out = Vec::with_capacity(rtp.len() + self.profile.tag_len());
        out.extend_from_slice(rtp);
        self.rtp.crypt(ssrc, index, &mut out[hl..]);
        let tag = self.rtp.tag(&[&out, &roc.to_be_bytes()]);
        out.extend_from_slice(&tag[..self.profile.tag_len()]);
        Ok(out)
    }

    /// Check and decrypt an SRTP packet.
    pub fn unprotect(&mut self, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let tl = self.profile.tag_len();
        if srtp.len() < 12 + tl {
            return Err(SrtpError::TooShort);
        }
        let (body, tag) = srtp.split_at(srtp.len() - tl);
        let hl = rtp_header_len(body)?;
        let ssrc = ssrc_at(body, 8);
        let seq = u16::from_be_bytes([body[2], body[3]]);
        let known = self.inbound.get(&ssrc).copied();
        // RFC 3711 Appendix A: the rollover counter this packet belongs to.
        let v = match known {
            None => 0,
            Some(s) => {
                if s.seq < 0x8000 {
                    if seq > s.seq && seq - s.seq > 0x8000 {
                        s.roc.wrapping_sub(1)
                    } else {
                        s.roc
                    }
                } else if s.seq - 0x8000 > seq {
                    s.roc.wrapping_add(1)
                } else {
                    s.roc
                }
            }
        };
        let index = (u64::from(v) << 16) | u64::from(seq);
        if let Some(s) = known {
            if index <= s.highest {
                let delta = s.highest - index;
                if delta >= REPLAY_WINDOW {
                    return Err(SrtpError::TooOld);
                }
                if s.window & (1 << delta) != 0 {
                    return Err(SrtpError::Replayed);
                }
            }
        }
        let want = self.rtp.tag(&[body, &v.to_be_bytes()]);
        if !same(&want[..tl], tag) {
            return Err(SrtpError::AuthenticationFailed);
        }
        let mut out = body.to_vec();
        self.rtp.crypt(ssrc, index, &mut out[hl..]);
        if known.is_none() && self.inbound.len() >= MAX_SOURCES {
            self.inbound.clear();
        }
        let s = self.inbound.entry(ssrc).or_insert(Inbound {
            roc: v,
            seq,
            highest: index,
            window: 0,
        });
        if known.is_none() || index > s.highest {
            let shift = if known.is_none() {
                0
            } else {
                index - s.highest
            };
            s.window = if shift >= REPLAY_WINDOW {
                0
            } else {
                s.window << shift
            } | 1;
            s.highest = index;
            s.roc = v;
            s.seq = seq;
        } else {
            s.window |= 1 << (s.highest - index);
        }
        Ok(out)
    }

    /// Encrypt and authenticate an RTCP compound packet (RFC 3711 3.4):
    /// everything after the first 8 bytes is encrypted; E flag and index
    /// and a 10-byte tag follow.
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if rtcp.len() < 8 || rtcp[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let ssrc = ssrc_at(rtcp, 4);
        if self.outbound.len() >= MAX_SOURCES && !self.outbound.contains_key(&ssrc) {
            self.outbound.clear();
        }
        let s = self.outbound.entry(ssrc).or_insert(Outbound {
            roc: 0,
            seq: 0,
            rtcp_index: 0,
        });
        let index = s.rtcp_index & 0x7fff_ffff;
        s.rtcp_index = (index + 1) & 0x7fff_ffff;
        let mut out = Vec::with_capacity(rtcp.len() + 14);
        out.extend_from_slice(rtcp);
        self.rtcp.crypt(ssrc, u64::from(index), &mut out[8..]);
        out.extend_from_slice(&(index | 0x8000_0000).to_be_bytes());
        let tag = self.rtcp.tag(&[&out]);
        out.extend_from_slice(&tag[..10]);
        Ok(out)
    }

    /// Check and decrypt an SRTCP packet.
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if srtcp.len() < 8 + 4 + 10 {
            return Err(SrtpError::TooShort);
        }
        let (signed, tag) = srtcp.split_at(srtcp.len() - 10);
        let (body, e_index) = signed.split_at(signed.len() - 4);
        if body[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let want = self.rtcp.tag(&[signed]);
        if !same(&want[..10], tag) {
            return Err(SrtpError::AuthenticationFailed);
        }
        let word = u32::from_be_bytes([e_index[0], e_index[1], e_index[2], e_index[3]]);
        let (encrypted, index) = (word & 0x8000_0000 != 0, word & 0x7fff_ffff);
        let ssrc = ssrc_at(body, 4);
        let (highest, window) = self.rtcp_inbound.get(&ssrc).copied().unwrap_or((0, 0));
        let seen = self.rtcp_inbound.contains_key(&ssrc);
        if seen && index <= highest {
            let delta = u64::from(highest - index);
            if delta >= REPLAY_WINDOW {
                return Err(SrtpError::TooOld);
            }
            if window & (1 << delta) != 0 {
                return Err(SrtpError::Replayed);
            }
        }
        let mut out = body.to_vec();
        if encrypted {
            self.rtcp.crypt(ssrc, u64::from(index), &mut out[8..]);
        }
        if !seen && self.rtcp_inbound.len() >= MAX_SOURCES {
            self.rtcp_inbound.clear();
        }
        let next = if !seen {
            (index, 1)
        } else if index > highest {
            let shift = u64::from(index - highest);
            let w = if shift >= REPLAY_WINDOW {
                0
            } else {
                window << shift
            };
            (index, w | 1)
        } else {
            (highest, window | (1 << (highest - index)))
        };
        self.rtcp_inbound.insert(ssrc, next);
        Ok(out)
    }
}

/// `a=crypto:<tag> <suite> inline:<key||salt base64>[|<lifetime>]`
/// (RFC 4568 9.1). Keys with an MKI or session parameters are not ours
/// to run and do not parse.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    pub profile: SrtpProfile,
    pub key: MasterKey,
}

impl fmt::Debug for CryptoAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoAttribute")
            .field("tag", &self.tag)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl CryptoAttribute {
    /// None for what we cannot run (another suite, an MKI, session
    /// parameters, several keys) or cannot read.
    pub fn parse(value: &str) -> Option<CryptoAttribute> {
        let mut parts = value.split_ascii_whitespace();
        let tag: u32 = parts.next()?.parse().ok().filter(|t| *t < 1_000_000_000)?;
        let profile = SrtpProfile::parse(parts.next()?)?;
        let key_params = parts.next()?;
        if parts.next().is_some() || key_params.contains(';') {
            return None;
        }
        let inline = key_params.strip_prefix("inline:")?;
        let mut fields = inline.split('|');
        let b64 = fields.next()?;
        if let Some(lifetime) = fields.next() {
            // 2^n or a number; anything shorter than a call is useless.
            let ok = match lifetime.strip_prefix("2^") {
                Some(n) => n.parse::<u32>().is_ok_and(|n| (20..=48).contains(&n)),
                None => lifetime.parse::<u64>().is_ok_and(|n| n >= 1 << 20),
            };
            if !ok {
                return None;
            }
        }
        if fields.next().is_some() {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        Some(CryptoAttribute {
            tag,
            profile,
            key: MasterKey::from_bytes(&raw)?,
        })
    }

    pub fn to_value(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.profile.name(),
            base64::engine::general_purpose::STANDARD.encode(self.key.to_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The master key and salt of RFC 3711 B.3.
    fn rfc_master() -> MasterKey {
        MasterKey::from_bytes(&hex(
            "E1F97A0D3E018BE0D64FA32C06DE4139 0EC675AD498AFEEBB6960B3AABE6",
        ))
        .unwrap()
    }

    #[test]
    fn key_derivation_matches_rfc_3711_b3() {
        let m = rfc_master();
        let mut k = [0u8; 16];
        derive(&m, 0, &mut k);
        assert_eq!(k.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        derive(&m, 2, &mut s);
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut a = [0u8; 20];
        derive(&m, 1, &mut a);
        assert_eq!(a.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    #[test]
    fn the_aes_cm_keystream_matches_rfc_3711_b2() {
        let keys = SessionKeys {
            cipher: hex("2B7E151628AED2A6ABF7158809CF4F3C").try_into().unwrap(),
            salt: hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap(),
            auth: HmacSha1::new_from_slice(&[0; 20]).unwrap(),
        };
        let mut stream = vec![0u8; 48];
        keys.crypt(0, 0, &mut stream);
        assert_eq!(
            stream,
            hex("E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
    }

    #[test]
    fn the_reference_packet_protects_to_the_known_bytes() {
        // SSRC 0xCAFEBABE, sequence 0x1234, sixteen bytes of 0xAB, under
        // the RFC 3711 B.3 master key: the packet SRTP implementations
        // check each other with.
        let plain = hex("800f1234 decafbad cafebabe abababab abababab abababab abababab");
        let protected = hex(
            "800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402 b78d6acc 99ea179b 8dbb",
        );
        let mut tx = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &rfc_master());
        assert_eq!(tx.protect(&plain).unwrap(), protected);
        let mut rx = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &rfc_master());
        assert_eq!(rx.unprotect(&protected).unwrap(), plain);
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 160]);
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn tampered_replayed_old_and_foreign_packets_are_refused() {
        for profile in SrtpProfile::ALL {
            let key = MasterKey::random().unwrap();
            let mut tx = SrtpContext::new(profile, &key);
            let mut rx = SrtpContext::new(profile, &key);
            let p = tx.protect(&rtp(7, b"hello")).unwrap();
            assert_eq!(p.len(), 12 + 5 + profile.tag_len());
            assert_ne!(&p[12..17], b"hello");
            let mut bad = p.clone();
            bad[13] ^= 1;
            assert_eq!(rx.unprotect(&bad), Err(SrtpError::AuthenticationFailed));
            assert_eq!(rx.unprotect(&p).unwrap(), rtp(7, b"hello"));
            assert_eq!(rx.unprotect(&p), Err(SrtpError::Replayed));
            // 100 packets later, the first is outside the window.
            for s in 8..108 {
                rx.unprotect(&tx.protect(&rtp(s, b"x")).unwrap()).unwrap();
            }
            assert_eq!(rx.unprotect(&p), Err(SrtpError::TooOld));
            let other = SrtpContext::new(profile, &MasterKey::random().unwrap())
                .protect(&rtp(200, b"y"))
                .unwrap();
            assert_eq!(rx.unprotect(&other), Err(SrtpError::AuthenticationFailed));
            assert_eq!(rx.unprotect(&[0x80; 10]), Err(SrtpError::TooShort));
            assert_eq!(rx.unprotect(&[0x00; 40]), Err(SrtpError::Malformed));
        }
    }

    #[test]
    fn the_rollover_counter_follows_wraps_and_late_packets() {
        let key = MasterKey::random().unwrap();
        let mut tx = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &key);
        let mut rx = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_80, &key);
        let mut seq: u16 = 65_530;
        let mut sent = Vec::new();
        for n in 0..20u8 {
            sent.push((seq, tx.protect(&rtp(seq, &[n; 4])).unwrap()));
            seq = seq.wrapping_add(1);
        }
        // Out of order around the wrap: the late one before the wrap
        // still decrypts under the old rollover count.
        let order = [0usize, 1, 2, 3, 5, 6, 7, 4, 8, 9, 10, 11];
        for i in order {
            let (s, p) = &sent[i];
            assert_eq!(rx.unprotect(p).unwrap(), rtp(*s, &[i as u8; 4]), "seq {s}");
        }
        assert_eq!(rx.unprotect(&sent[4].1), Err(SrtpError::Replayed));
        assert_eq!(tx.outbound[&0x1234_5678].roc, 1);
        assert_eq!(rx.inbound[&0x1234_5678].roc, 1);
    }

    #[test]
    fn srtcp_round_trips_and_refuses_tampering_and_replays() {
        let key = MasterKey::random().unwrap();
        let mut tx = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_32, &key);
        let mut rx = SrtpContext::new(SrtpProfile::AesCm128HmacSha1_32, &key);
        // A receiver report with one block.
        let mut rr = vec![0x81, 201, 0, 7, 0x12, 0x34, 0x56, 0x78];
        rr.extend_from_slice(&[0xaa; 24]);
        let p = tx.protect_rtcp(&rr).unwrap();
        assert_eq!(p.len(), rr.len() + 14);
        assert_ne!(&p[8..32], &rr[8..]);
        let mut bad = p.clone();
        bad[9] ^= 4;
        assert_eq!(
            rx.unprotect_rtcp(&bad),
            Err(SrtpError::AuthenticationFailed)
        );
        assert_eq!(rx.unprotect_rtcp(&p).unwrap(), rr);
        assert_eq!(rx.unprotect_rtcp(&p), Err(SrtpError::Replayed));
        let q = tx.protect_rtcp(&rr).unwrap();
        assert_eq!(rx.unprotect_rtcp(&q).unwrap(), rr);
    }

    #[test]
    fn crypto_attributes_parse_print_and_refuse_what_we_cannot_run() {
        let value =
            "1 AES_CM_128_HMAC_SHA1_80 inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm|2^20";
        let a = CryptoAttribute::parse(value).unwrap();
        assert_eq!(a.tag, 1);
        assert_eq!(a.profile, SrtpProfile::AesCm128HmacSha1_80);
        assert_eq!(a.key, rfc_master());
        assert_eq!(CryptoAttribute::parse(&a.to_value()).unwrap(), a);
        assert!(!format!("{a:?}").contains("4fl6"), "keys never print");
        // The SDK's own example lines.
        assert!(CryptoAttribute::parse(
            "1 AES_CM_128_HMAC_SHA1_80 inline:esI6DbLY1+Aceu0JNswN9Z10DcFx5cZwqJcu91jb"
        )
        .is_some());
        assert!(CryptoAttribute::parse(
            "2 AES_CM_128_HMAC_SHA1_32 inline:SHuEMm1BYJqOF4udKl73EaCwnsI57pO86bYKsg70"
        )
        .is_some());
        for bad in [
            "",
            "1",
            "x AES_CM_128_HMAC_SHA1_80 inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm",
            "1 F8_128_HMAC_SHA1_80 inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm",
            "1 AES_CM_128_HMAC_SHA1_80 inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm|2^20|1:4",
            "1 AES_CM_128_HMAC_SHA1_80 inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm KDR=1",
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
            "1 AES_CM_128_HMAC_SHA1_80 key:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm",
            "1 AES_CM_128_HMAC_SHA1_80 inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm|2^3",
        ] {
            assert!(CryptoAttribute::parse(bad).is_none(), "{bad}");
        }
    }
}
