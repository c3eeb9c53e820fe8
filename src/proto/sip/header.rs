//! Header names: case-insensitive, with the compact forms of RFC 3261 section 7.3.3
//! and its extensions mapped to one canonical spelling.

use std::fmt;

macro_rules! header_names {
    ($( $variant:ident = $canon:literal $(, $compact:literal)? ; )*) => {
        /// A header name. Known names compare by identity whatever their case or
        /// form on the wire; `Other` keeps the spelling it arrived with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $variant, )*
            /// Any other header; its name is kept in the message.
            Other,
        }

        impl HeaderName {
            /// The canonical (long) spelling, e.g. "Call-ID". `Other` gives "".
            pub fn as_str(self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other => "",
                }
            }

            /// Look a name up, case-insensitively, long or compact.
            pub fn parse(name: &str) -> HeaderName {
                let b = name.as_bytes();
                if b.len() == 1 {
                    let c = b[0].to_ascii_lowercase();
                    $( $( if c == $compact { return HeaderName::$variant; } )? )*
                    return HeaderName::Other;
                }
                $( if b.eq_ignore_ascii_case($canon.as_bytes()) { return HeaderName::$variant; } )*
                HeaderName::Other
            }
        }
    };
}

header_names! {
    Accept = "Accept";
    AcceptEncoding = "Accept-Encoding";
    AcceptLanguage = "Accept-Language";
    AlertInfo = "Alert-Info";
    Allow = "Allow";
    AllowEvents = "Allow-Events", b'u';
    AuthenticationInfo = "Authentication-Info";
    Authorization = "Authorization";
    CallId = "Call-ID", b'i';
    CallInfo = "Call-Info";
    Contact = "Contact", b'm';
    ContentDisposition = "Content-Disposition";
    ContentEncoding = "Content-Encoding", b'e';
    ContentLanguage = "Content-Language";
    ContentLength = "Content-Length", b'l';
    ContentType = "Content-Type", b'c';
    CSeq = "CSeq";
    Date = "Date";
    ErrorInfo = "Error-Info";
    Event = "Event", b'o';
    Expires = "Expires";
    From = "From", b'f';
    InReplyTo = "In-Reply-To";
    MaxForwards = "Max-Forwards";
    MinExpires = "Min-Expires";
    MinSE = "Min-SE";
    MimeVersion = "MIME-Version";
    Organization = "Organization";
    Path = "Path";
    Priority = "Priority";
    ProxyAuthenticate = "Proxy-Authenticate";
    ProxyAuthorization = "Proxy-Authorization";
    ProxyRequire = "Proxy-Require";
    RAck = "RAck";
    RecordRoute = "Record-Route";
    ReferTo = "Refer-To", b'r';
    ReferredBy = "Referred-By", b'b';
    ReplyTo = "Reply-To";
    Require = "Require";
    RetryAfter = "Retry-After";
    Route = "Route";
    RSeq = "RSeq";
    Server = "Server";
    SessionExpires = "Session-Expires", b'x';
    SipEtag = "SIP-ETag";
    SipIfMatch = "SIP-If-Match";
    Subject = "Subject", b's';
    SubscriptionState = "Subscription-State";
    Supported = "Supported", b'k';
    Timestamp = "Timestamp";
    To = "To", b't';
    Unsupported = "Unsupported";
    UserAgent = "User-Agent";
    Via = "Via", b'v';
    Warning = "Warning";
    WwwAuthenticate = "WWW-Authenticate";
}

impl HeaderName {
    /// Headers whose value is one item (a comma is not a list separator; more
    /// than one header line is an error).
    pub fn is_single(self) -> bool {
        matches!(
            self,
            HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::From
                | HeaderName::To
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Expires
                | HeaderName::MinExpires
                | HeaderName::RSeq
                | HeaderName::RAck
                | HeaderName::SessionExpires
                | HeaderName::MinSE
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True for RFC 3261 `token` characters.
pub fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True if `s` is a non-empty RFC 3261 token.
#[inline]
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("V"), HeaderName::Via);
        assert_eq!(HeaderName::parse("vIa"), HeaderName::Via);
        assert_eq!(HeaderName::parse("i"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("CALL-id"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::parse("m"), HeaderName::Contact);
        assert_eq!(HeaderName::parse("f"), HeaderName::From);
        assert_eq!(HeaderName::parse("t"), HeaderName::To);
        assert_eq!(HeaderName::parse("c"), HeaderName::ContentType);
        assert_eq!(HeaderName::parse("C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::parse("q"), HeaderName::Other);
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
    }
}
