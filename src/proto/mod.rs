//! Sans-IO protocol cores: parsers, printers and state machines. No sockets, no
//! threads, no clocks: time is an argument.
pub mod codec;
pub mod cpim;
pub mod imdn;
pub mod iscomposing;
pub mod msrp;
pub mod rtp;
pub mod sdp;
pub mod sip;
pub mod ua;
pub mod xml;
