//! The named timers of RFC 3261 section 17 and RFC 6026, and their base values.

use std::time::Duration;

/// Transaction timers. Each fires once per arming; a transaction re-arms the
/// retransmission timers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE client: request retransmission, T1 doubling (17.1.1.2). Unreliable transports only.
    A,
    /// INVITE client: transaction timeout in Calling, 64*T1 (17.1.1.2).
    B,
    /// INVITE client: wait for response retransmissions in Completed, 32 s unreliable, 0 reliable (17.1.1.2).
    D,
    /// Non-INVITE client: request retransmission, T1 doubling up to T2 (17.1.2.2). Unreliable only.
    E,
    /// Non-INVITE client: transaction timeout, 64*T1 (17.1.2.2).
    F,
    /// INVITE server: final response retransmission, T1 doubling up to T2 (17.2.1); in Accepted
    /// it paces the 2xx retransmissions the UA core owes until the ACK (13.3.1.4). Unreliable only.
    G,
    /// INVITE server: wait for ACK after a non-2xx final, 64*T1 (17.2.1).
    H,
    /// INVITE server: absorb ACK retransmissions in Confirmed, T4 unreliable, 0 reliable (17.2.1).
    I,
    /// Non-INVITE server: absorb request retransmissions in Completed, 64*T1 unreliable, 0 reliable (17.2.2).
    J,
    /// Non-INVITE client: absorb response retransmissions in Completed, T4 unreliable, 0 reliable (17.1.2.2).
    K,
    /// INVITE server: leave Accepted after 64*T1 (RFC 6026 section 8.7).
    L,
    /// INVITE client: leave Accepted after 64*T1 (RFC 6026 section 8.4).
    M,
}

/// T1, T2 and T4 (RFC 3261 table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
    /// Timer D: at least 32 s on unreliable transports.
    pub fn timer_d(&self) -> Duration {
        Duration::from_secs(32).max(self.t1x64())
    }
}
