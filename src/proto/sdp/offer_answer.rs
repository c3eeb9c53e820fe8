//! The offer/answer rules of RFC 3264 that do not depend on the media type:
//! answer directions, refused streams, the shape an answer and a new offer
//! must keep, `o=` version numbering, and the MSRP connection roles of
//! RFC 6135 / RFC 4145.

use super::model::{Direction, MediaDescription, SessionDescription, Setup};
use super::SdpError;

/// The direction to answer with, given what was offered and what the
/// answerer wants (RFC 3264 6.1): it can only narrow the offer, mirrored.
pub fn answer_direction(offered: Direction, wanted: Direction) -> Direction {
    Direction::from_flags(
        offered.receives() && wanted.sends(),
        offered.sends() && wanted.receives(),
    )
}

/// The direction our offer carries for the hold state (RFC 3264 8.4): on
/// hold by us we stop receiving (sendonly); on hold by the peer we do not
/// send (recvonly); both, inactive.
pub fn hold_direction(local_hold: bool, remote_hold: bool) -> Direction {
    Direction::from_flags(!remote_hold, !local_hold)
}

/// The answer's line for a stream we refuse: port 0, same media type,
/// protocol and formats, nothing else (RFC 3264 6).
pub fn refuse(offered: &MediaDescription) -> MediaDescription {
    let mut m = MediaDescription::new(&offered.media, 0, &offered.proto, &[]);
    m.formats = offered.formats.clone();
    if m.formats.is_empty() {
        m.formats.push("*".into());
    }
    m
}

/// An answer must have as many media sections as the offer, with the same
/// media type at each position (RFC 3264 6).
pub fn check_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<(), SdpError> {
    if offer.media.len() != answer.media.len() {
        return Err(SdpError {
            line: 0,
            reason: format!(
                "the answer has {} media sections, the offer {}",
                answer.media.len(),
                offer.media.len()
            ),
        });
    }
    for (i, (o, a)) in offer.media.iter().zip(&answer.media).enumerate() {
        if o.media != a.media && !a.is_rejected() {
            return Err(SdpError {
                line: 0,
                reason: format!(
                    "media section {} was offered as {} and answered as {}",
                    i + 1,
                    o.media,
                    a.media
                ),
            });
        }
        if o.is_rejected() && !a.is_rejected() {
            return Err(SdpError {
                line: 0,
                reason: format!("media section {} was refused in the offer", i + 1),
            });
        }
    }
    Ok(())
}

/// A new offer in an existing session keeps every media section, in order
/// (RFC 3264 8): it may add sections at the end, refuse one (port 0) or
/// reuse a refused one for new media, and must come from the same origin.
pub fn check_reoffer(
    previous: &SessionDescription,
    offer: &SessionDescription,
) -> Result<(), SdpError> {
    let fail = |reason: String| Err(SdpError { line: 0, reason });
    if offer.origin.session_id != previous.origin.session_id
        || offer.origin.username != previous.origin.username
    {
        return fail("o= names a different session than before".into());
    }
    if offer.media.len() < previous.media.len() {
        return fail(format!(
            "the new offer has {} media sections, fewer than the {} before",
            offer.media.len(),
            previous.media.len()
        ));
    }
    for (i, (p, o)) in previous.media.iter().zip(&offer.media).enumerate() {
        if !p.is_rejected() && !o.is_rejected() && p.media != o.media {
            return fail(format!(
                "media section {} changed from {} to {} without being refused first",
                i + 1,
                p.media,
                o.media
            ));
        }
    }
    Ok(())
}

/// Whether a new description from the peer changed anything but `o=`
/// (RFC 3264 8: an unchanged version means an unchanged description).
pub fn same_content(a: &SessionDescription, b: &SessionDescription) -> bool {
    let mut b2 = b.clone();
    b2.origin = a.origin.clone();
    *a == b2
}

/// Numbers our own descriptions: one session id for the session's life, a
/// version that goes up by one each time the content changes.
#[derive(Debug, Clone)]
pub struct Versioner {
    session_id: u64,
    version: u64,
    last: Option<SessionDescription>,
}

impl Versioner {
    /// `seed` is the initial session id and version (NTP-style seconds or
    /// a random number).
    pub fn new(seed: u64) -> Versioner {
        // Leave room to count up without overflow.
        let seed = seed % (1 << 62);
        Versioner {
            session_id: seed,
            version: seed,
            last: None,
        }
    }

    /// Stamp `o=` on a description we are about to send.
    pub fn stamp(&mut self, sd: &mut SessionDescription) {
        sd.origin.session_id = self.session_id.to_string();
        if let Some(last) = &self.last {
            sd.origin.session_version = self.version;
            if !same_content(last, sd) {
                self.version += 1;
            }
        }
        sd.origin.session_version = self.version;
        self.last = Some(sd.clone());
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The last description sent.
    pub fn last(&self) -> Option<&SessionDescription> {
        self.last.as_ref()
    }
}

/// The `a=setup` of an answer to `offered` (RFC 4145 4.1, RFC 6135 4.2):
/// an offer with actpass or passive gets active (we connect, which also
/// works from behind a NAT); an offer without the attribute follows RFC
/// 4975, where the offerer is active, so we answer passive.
pub fn answer_setup(offered: Option<Setup>) -> Setup {
    match offered {
        Some(Setup::ActPass) | Some(Setup::Passive) => Setup::Active,
        None | Some(Setup::Active) => Setup::Passive,
        Some(Setup::HoldConn) => Setup::HoldConn,
    }
}

/// Whether the side that sent `ours` opens the connection, given the
/// other side's role. Without a=setup the offerer connects (RFC 4975
/// section 5.4; RFC 6135 section 5 keeps that for peers without a=setup).
pub fn opens_connection(ours: Option<Setup>, theirs: Option<Setup>, we_answered: bool) -> bool {
    match (ours, theirs) {
        (Some(Setup::Active), _) => true,
        (Some(Setup::Passive), _) | (Some(Setup::HoldConn), _) => false,
        (Some(Setup::ActPass), Some(Setup::Active)) => false,
        (Some(Setup::ActPass), Some(Setup::Passive)) => true,
        (None, Some(Setup::Active)) => false,
        (None, Some(Setup::Passive)) => true,
        _ => !we_answered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sdp::model::{Attribute, MediaDescription};

    fn sd(media: &[(&str, u16)]) -> SessionDescription {
        let mut s = SessionDescription::new("-", 7, [127, 0, 0, 1].into(), "test");
        for (m, p) in media {
            s.media
                .push(MediaDescription::new(m, *p, "RTP/AVP", &["0"]));
        }
        s
    }

    #[test]
    fn answer_directions_mirror_and_narrow() {
        use Direction::*;
        let table = [
            (SendRecv, SendRecv, SendRecv),
            (SendOnly, SendRecv, RecvOnly),
            (RecvOnly, SendRecv, SendOnly),
            (Inactive, SendRecv, Inactive),
            (SendRecv, SendOnly, SendOnly),
            (SendRecv, Inactive, Inactive),
            (SendOnly, SendOnly, Inactive),
            (RecvOnly, RecvOnly, Inactive),
        ];
        for (offered, wanted, answer) in table {
            assert_eq!(
                answer_direction(offered, wanted),
                answer,
                "{offered:?} {wanted:?}"
            );
        }
    }

    #[test]
    fn hold_offers() {
        assert_eq!(hold_direction(false, false), Direction::SendRecv);
        assert_eq!(hold_direction(true, false), Direction::SendOnly);
        assert_eq!(hold_direction(false, true), Direction::RecvOnly);
        assert_eq!(hold_direction(true, true), Direction::Inactive);
    }

    #[test]
    fn refused_stream_keeps_shape_only() {
        let mut m = MediaDescription::new("message", 2855, "TCP/MSRP", &["*"]);
        m.push_attribute(Attribute::value("path", "msrp://x"));
        let r = refuse(&m);
        assert_eq!(r.port, 0);
        assert_eq!(r.media, "message");
        assert_eq!(r.proto, "TCP/MSRP");
        assert_eq!(r.formats, vec!["*"]);
        assert!(r.attributes.is_empty());
    }

    #[test]
    fn answer_shape() {
        let offer = sd(&[("audio", 4000), ("message", 2855)]);
        assert!(check_answer(&offer, &sd(&[("audio", 5000), ("message", 0)])).is_ok());
        assert!(check_answer(&offer, &sd(&[("audio", 5000)])).is_err());
        assert!(check_answer(&offer, &sd(&[("message", 5000), ("audio", 1)])).is_err());
        let refused = sd(&[("audio", 0), ("message", 2855)]);
        assert!(check_answer(&refused, &sd(&[("audio", 4), ("message", 1)])).is_err());
    }

    #[test]
    fn reoffer_shape() {
        let prev = sd(&[("audio", 4000), ("message", 2855)]);
        assert!(
            check_reoffer(&prev, &sd(&[("audio", 4000), ("message", 0), ("video", 1)])).is_ok()
        );
        assert!(check_reoffer(&prev, &sd(&[("audio", 4000)])).is_err());
        assert!(check_reoffer(&prev, &sd(&[("audio", 4000), ("video", 1)])).is_err());
        let reused = sd(&[("audio", 4000), ("message", 0)]);
        assert!(check_reoffer(&reused, &sd(&[("audio", 4000), ("video", 1)])).is_ok());
        let mut other = sd(&[("audio", 4000), ("message", 2855)]);
        other.origin.session_id = "8".into();
        assert!(check_reoffer(&prev, &other).is_err());
    }

    #[test]
    fn versions_bump_only_on_change() {
        let mut v = Versioner::new(1000);
        let mut a = sd(&[("audio", 4000)]);
        v.stamp(&mut a);
        assert_eq!(a.origin.session_version, 1000);
        assert_eq!(a.origin.session_id, "1000");
        let mut same = sd(&[("audio", 4000)]);
        v.stamp(&mut same);
        assert_eq!(same.origin.session_version, 1000);
        let mut held = sd(&[("audio", 4000)]);
        held.media[0].set_direction(Direction::SendOnly);
        v.stamp(&mut held);
        assert_eq!(held.origin.session_version, 1001);
        let mut back = sd(&[("audio", 4000)]);
        v.stamp(&mut back);
        assert_eq!(back.origin.session_version, 1002);
    }

    #[test]
    fn setup_roles() {
        assert_eq!(answer_setup(None), Setup::Passive);
        assert_eq!(answer_setup(Some(Setup::ActPass)), Setup::Active);
        assert_eq!(answer_setup(Some(Setup::Active)), Setup::Passive);
        assert_eq!(answer_setup(Some(Setup::Passive)), Setup::Active);
        // Offerer with actpass, answerer active: the answerer connects.
        assert!(!opens_connection(
            Some(Setup::ActPass),
            Some(Setup::Active),
            false
        ));
        assert!(opens_connection(
            Some(Setup::Active),
            Some(Setup::ActPass),
            true
        ));
        // Neither says: RFC 4975 has the offerer connect.
        assert!(!opens_connection(None, None, true));
        assert!(opens_connection(None, None, false));
        // A legacy answerer (no a=setup) to our actpass offer: we offered,
        // so we are the RFC 4975 active side.
        assert!(opens_connection(Some(Setup::ActPass), None, false));
        // Our legacy answer to an active offer: the offerer connects.
        assert!(!opens_connection(None, Some(Setup::Active), true));
    }
}
