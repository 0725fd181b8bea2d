//! When a client tries again, and which refusals end its attempts: one policy for
//! `petrel pub`/`sub`, bridges and the gateway's uplink.

use mqtt_proto::ReasonCode;

/// Exponential back-off between connection attempts: `min_ms` after the first failure,
/// doubled per further failure up to `max_ms`, back to `min_ms` once a connection got
/// through ([`Backoff::reset`]). The shell adds jitter ([`Backoff::jittered`]) so that
/// clients cut off together do not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min_ms: u32,
    max_ms: u32,
    next_ms: u32,
    attempts: u32,
}

impl Backoff {
    /// A back-off from `min_ms` to `max_ms` (at least `min_ms`).
    pub const fn new(min_ms: u32, max_ms: u32) -> Self {
        let min_ms = if min_ms == 0 { 1 } else { min_ms };
        let max_ms = if max_ms < min_ms { min_ms } else { max_ms };
        Self {
            min_ms,
            max_ms,
            next_ms: min_ms,
            attempts: 0,
        }
    }

    /// The delay before the next attempt, which counts as one more failure.
    pub fn next_delay(&mut self) -> u32 {
        let d = self.next_ms;
        self.next_ms = self.next_ms.saturating_mul(2).min(self.max_ms);
        self.attempts = self.attempts.saturating_add(1);
        d
    }

    /// After a refusal that is final ([`refusal_is_final`]) for a client that must go on
    /// trying (a gateway's uplink): wait the longest delay from now on.
    pub fn give_up_hurrying(&mut self) {
        self.next_ms = self.max_ms;
    }

    /// A connection got through: the next failure waits `min_ms` again.
    pub fn reset(&mut self) {
        self.next_ms = self.min_ms;
        self.attempts = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// "Full jitter" between half and all of `delay_ms`, from a random number the shell
    /// draws (the core has no randomness).
    pub fn jittered(delay_ms: u32, random: u32) -> u32 {
        let half = delay_ms / 2;
        delay_ms - half + random % (half + 1)
    }
}

/// Whether a CONNACK refusal is final: trying again with the same credentials and client
/// cannot succeed, so a one-shot client stops and an unattended one slows down.
pub fn refusal_is_final(code: ReasonCode) -> bool {
    matches!(
        code,
        ReasonCode::BadUserNameOrPassword
            | ReasonCode::NotAuthorized
            | ReasonCode::Banned
            | ReasonCode::BadAuthenticationMethod
            | ReasonCode::ClientIdentifierNotValid
            | ReasonCode::UnsupportedProtocolVersion
    )
}

/// An owned CONNACK summary for shells that print errors.
pub fn describe_refusal(code: ReasonCode) -> &'static str {
    match code {
        ReasonCode::BadUserNameOrPassword => "bad user name or password",
        ReasonCode::NotAuthorized => "not authorized",
        ReasonCode::ClientIdentifierNotValid => "client identifier not valid",
        ReasonCode::UnsupportedProtocolVersion => "unsupported protocol version",
        ReasonCode::ServerUnavailable => "server unavailable",
        ReasonCode::Banned => "banned",
        ReasonCode::BadAuthenticationMethod => "bad authentication method",
        _ => code.description(),
    }
}

/// What else a refusal with `code` may mean, for a person reading it: Mosquitto 2.0
/// answers a wrong password with "not authorized" (3.1.1 return code 5, MQTT 5 0x87), not
/// "bad user name or password".
pub fn refusal_hint(code: ReasonCode) -> Option<&'static str> {
    (code == ReasonCode::NotAuthorized)
        .then_some("a wrong user name or password, or a client the broker does not admit")
}

/// A SUBACK failure in words. A 3.1.1 broker can only say 0x80 (read as "unspecified
/// error"), which is most often an ACL refusal.
pub fn describe_subscribe_refusal(code: ReasonCode) -> &'static str {
    match code {
        ReasonCode::NotAuthorized | ReasonCode::UnspecifiedError => "not authorized (or refused)",
        _ => code.description(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(100, 1000);
        let d: [u32; 6] = core::array::from_fn(|_| b.next_delay());
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.next_delay(), 100);
        b.give_up_hurrying();
        assert_eq!(b.next_delay(), 1000);
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        for r in [0, 1, 49, 50, 51, 1000, u32::MAX] {
            let j = Backoff::jittered(100, r);
            assert!((50..=100).contains(&j), "{r} -> {j}");
        }
        assert_eq!(Backoff::jittered(0, 7), 0);
    }

    #[test]
    fn only_refusals_that_retrying_cannot_fix_are_final() {
        assert!(refusal_is_final(ReasonCode::NotAuthorized));
        assert!(refusal_is_final(ReasonCode::BadUserNameOrPassword));
        assert!(!refusal_is_final(ReasonCode::ServerUnavailable));
        assert!(!refusal_is_final(ReasonCode::ServerBusy));
        assert!(!refusal_is_final(ReasonCode::QuotaExceeded));
    }
}
