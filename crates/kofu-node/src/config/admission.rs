//! Admission control settings (issue 11): per-kiosk request rate and open sessions, the
//! kiosk listener's in-flight cap, `Retry-After`, and slow-client timeouts on every HTTP
//! listener. Defaults are sized for the nationwide model; README "Admission control"
//! says why each value. Kept apart from the rest of `ServeConfig` so that other
//! settings merge around it.

use std::time::Duration;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct AdmissionConfig {
    /// Requests per second a kiosk may sustain on this node (token bucket); `0` turns
    /// the limit off (benchmarks). Over it: `429 too_many_requests`.
    #[arg(long, env = "KOFU_KIOSK_RATE", default_value_t = 5.0)]
    pub kiosk_rate: f64,
    /// Requests a kiosk may send at once above its rate (the bucket's size).
    #[arg(long, env = "KOFU_KIOSK_BURST", default_value_t = 20)]
    pub kiosk_burst: u32,
    /// Open sessions a kiosk may hold on this node; `0` turns the limit off.
    #[arg(long, env = "KOFU_KIOSK_MAX_SESSIONS", default_value_t = 3)]
    pub kiosk_max_sessions: u32,
    /// Requests the kiosk listener handles at once; beyond it `503 unavailable`.
    #[arg(long, env = "KOFU_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: u32,
    /// Typical `Retry-After` of `503` and `429 too_many_requests`, in seconds; each answer
    /// carries a value drawn from ±50 % of it, so refused kiosks do not retry in step.
    #[arg(long, env = "KOFU_RETRY_AFTER_S", default_value_t = 2)]
    pub retry_after_s: u32,
    /// Time a client has to send a request's headers after connecting or after its
    /// previous request (slow clients are cut off: `408`, then the connection closes).
    #[arg(long, env = "KOFU_HTTP_HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub http_header_timeout_ms: u64,
    /// Time a client has to send a request's body once its headers arrived.
    #[arg(long, env = "KOFU_HTTP_BODY_TIMEOUT_MS", default_value_t = 5_000)]
    pub http_body_timeout_ms: u64,
    /// Time a closing connection may take to be shut down by the client.
    #[arg(long, env = "KOFU_HTTP_DISCONNECT_TIMEOUT_MS", default_value_t = 1_000)]
    pub http_disconnect_timeout_ms: u64,
    /// Connections a listener keeps open at once (split over its workers); beyond it
    /// new connections wait in the backlog.
    #[arg(long, env = "KOFU_HTTP_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub http_max_connections: u32,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AdmissionError {
    #[error("--kiosk-rate must be 0 (off) or between 0.01 and 1000000 requests/s, got {0}")]
    Rate(f64),
    #[error("--kiosk-burst must be between 1 and 1000000, got {0}")]
    Burst(u32),
    #[error("--max-in-flight must be between 1 and 1000000, got {0}")]
    InFlight(u32),
    #[error("--retry-after-s must be between 2 and 3600, got {0}")]
    RetryAfter(u32),
    #[error("--{0} must be between 100 and 600000 ms, got {1}")]
    Timeout(&'static str, u64),
    #[error("--http-max-connections must be between 16 and 10000000, got {0}")]
    Connections(u32),
}

impl AdmissionConfig {
    pub fn validate(&self) -> Result<(), AdmissionError> {
        let rate = self.kiosk_rate;
        if !(rate == 0.0 || (0.01..=1_000_000.0).contains(&rate)) {
            return Err(AdmissionError::Rate(rate));
        }
        if !(1..=1_000_000).contains(&self.kiosk_burst) {
            return Err(AdmissionError::Burst(self.kiosk_burst));
        }
        if !(1..=1_000_000).contains(&self.max_in_flight) {
            return Err(AdmissionError::InFlight(self.max_in_flight));
        }
        if !(2..=3600).contains(&self.retry_after_s) {
            return Err(AdmissionError::RetryAfter(self.retry_after_s));
        }
        for (name, ms) in [
            ("http-header-timeout-ms", self.http_header_timeout_ms),
            ("http-body-timeout-ms", self.http_body_timeout_ms),
            (
                "http-disconnect-timeout-ms",
                self.http_disconnect_timeout_ms,
            ),
        ] {
            if !(100..=600_000).contains(&ms) {
                return Err(AdmissionError::Timeout(name, ms));
            }
        }
        if !(16..=10_000_000).contains(&self.http_max_connections) {
            return Err(AdmissionError::Connections(self.http_max_connections));
        }
        Ok(())
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.http_header_timeout_ms)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.http_body_timeout_ms)
    }

    pub fn disconnect_timeout(&self) -> Duration {
        Duration::from_millis(self.http_disconnect_timeout_ms)
    }

    /// Connections per worker of a listener with `workers` workers.
    pub fn connections_per_worker(&self, workers: usize) -> usize {
        (self.http_max_connections as usize / workers.max(1)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        admission: AdmissionConfig,
    }

    fn parse(args: &[&str]) -> AdmissionConfig {
        let mut all = vec!["kofu"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").admission
    }

    #[test]
    fn defaults_are_valid_and_every_limit_is_checked() {
        let defaults = parse(&[]);
        assert_eq!(defaults.validate(), Ok(()));
        assert_eq!(
            (
                defaults.kiosk_rate,
                defaults.kiosk_burst,
                defaults.kiosk_max_sessions
            ),
            (5.0, 20, 3)
        );
        assert_eq!(parse(&["--kiosk-rate", "0"]).validate(), Ok(()));
        assert_eq!(parse(&["--kiosk-max-sessions", "0"]).validate(), Ok(()));
        for bad in [
            &["--kiosk-rate=-1"][..],
            &["--kiosk-rate", "0.001"],
            &["--kiosk-rate", "NaN"],
            &["--kiosk-burst", "0"],
            &["--max-in-flight", "0"],
            &["--retry-after-s", "1"],
            &["--http-header-timeout-ms", "10"],
            &["--http-body-timeout-ms", "0"],
            &["--http-disconnect-timeout-ms", "700000"],
            &["--http-max-connections", "2"],
        ] {
            assert!(parse(bad).validate().is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse(&[]).connections_per_worker(2), 25_000);
    }
}
