//! The server's clock: [`ServerClock`], fed by an SDK interceptor with the
//! `Date` header of every response, and the conversions between chrono and
//! SDK times that retain-until dates go through.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use chrono::{DateTime, Utc};

/// Clock skew worth a warning (S3 itself refuses requests beyond 15 minutes).
const SKEW_WARN_SECS: i64 = 60;

/// The server's clock as seen in the `Date` header of its responses.
#[derive(Debug, Default)]
pub(super) struct ServerClock {
    /// Server minus local clock, in milliseconds.
    offset_ms: AtomicI64,
    seen: AtomicBool,
    warned: AtomicBool,
}

impl ServerClock {
    fn observe(&self, date: &str) {
        let Ok(server) = aws_smithy_types::DateTime::from_str(date, aws_smithy_types::date_time::Format::HttpDate)
        else {
            return;
        };
        let Some(server) = DateTime::<Utc>::from_timestamp(server.secs(), server.subsec_nanos()) else {
            return;
        };
        // The header has whole seconds: the server's time lies in [date, date + 1 s).
        let offset = (server - Utc::now()).num_milliseconds() + 500;
        self.offset_ms.store(offset, Ordering::Relaxed);
        self.seen.store(true, Ordering::Release);
        if offset.abs() > SKEW_WARN_SECS * 1000 && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the S3 server's clock differs from this machine's by {:.0} s; \
                 retention dates are computed from the server's clock",
                offset as f64 / 1000.0
            );
        }
    }

    pub(super) fn offset(&self) -> Option<chrono::Duration> {
        self.seen
            .load(Ordering::Acquire)
            .then(|| chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed)))
    }
}

/// Records the `Date` header of every HTTP response (errors and retries too).
#[derive(Debug)]
pub(super) struct ClockInterceptor {
    pub(super) clock: Arc<ServerClock>,
}

impl Intercept for ClockInterceptor {
    fn name(&self) -> &'static str {
        "lifeboat-server-clock"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            self.clock.observe(date);
        }
        Ok(())
    }
}

pub(super) fn to_smithy_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

pub(super) fn from_smithy_time(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Rounds up to a whole second: servers keep retain-until dates in seconds,
/// and rounding down could make a retention a little shorter than asked.
pub(super) fn ceil_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_clock_from_date_header() {
        let c = ServerClock::default();
        assert!(c.offset().is_none());
        let in_an_hour = Utc::now() + chrono::Duration::hours(1);
        c.observe(&in_an_hour.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        let off = c.offset().unwrap();
        assert!((off - chrono::Duration::hours(1)).num_seconds().abs() <= 1, "{off}");
        c.observe("not a date");
        assert!(c.offset().is_some());
    }
}
