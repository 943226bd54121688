//! The request's metrics in CloudWatch Embedded Metric Format: one JSON object on its own log
//! line, from which CloudWatch makes the metrics (no API call, nothing to wait for). Namespace
//! `Adiuva`, dimensions `function` and `route` (the matched route template), metrics `Latency`
//! (milliseconds), `Errors5xx` (1 for a 5xx answer) and `ColdStart` (1 on the first request an
//! instance serves). `status` and `request_id` ride along as properties (searchable in Logs
//! Insights, not metrics).
//!
//! Each value is published under two dimension sets: `function` and `route`, and `function`
//! alone. CloudWatch alarms cannot add up a metric over the values of a dimension, so the
//! per-function alarms of `infra/` (the 5xx ratio: `Errors5xx` over `Latency`'s sample count)
//! read the second set; the webhook alarm reads the first.
//!
//! Written only in Lambda (the request carries [`Gateway`](crate::Gateway)): the local server
//! has no CloudWatch, and its logs stay readable.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The namespace of every metric.
pub const NAMESPACE: &str = "Adiuva";

/// The route dimension of an answer no route matched (404): the client's path would make a
/// metric per path anyone cares to try.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// One request's measurements.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured<'a> {
    pub function: &'a str,
    /// The matched route template; `None` when no route matched.
    pub route: Option<&'a str>,
    pub status: u16,
    pub latency_ms: f64,
    pub cold_start: bool,
    pub request_id: &'a str,
}

impl Measured<'_> {
    /// The EMF object, its timestamp `now` (milliseconds since the epoch).
    pub(crate) fn emf(&self, now: u64) -> Value {
        json!({
            "_aws": {
                "Timestamp": now,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["function", "route"], ["function"]],
                    "Metrics": [
                        {"Name": "Latency", "Unit": "Milliseconds"},
                        {"Name": "Errors5xx", "Unit": "Count"},
                        {"Name": "ColdStart", "Unit": "Count"},
                    ],
                }],
            },
            "function": self.function,
            "route": self.route.unwrap_or(UNMATCHED_ROUTE),
            // Microsecond resolution is plenty, and keeps the line short.
            "Latency": (self.latency_ms * 1000.0).round() / 1000.0,
            "Errors5xx": u8::from(self.status >= 500),
            "ColdStart": u8::from(self.cold_start),
            "status": self.status,
            "request_id": self.request_id,
        })
    }

    /// Writes the line (see adiuva-config's logging: the object alone on its line).
    pub(crate) fn emit(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        let line = self.emf(now).to_string();
        tracing::info!(target: adiuva_config::logging::METRICS_TARGET, emf = line.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(status: u16, cold_start: bool) -> Measured<'static> {
        Measured {
            function: "storage",
            route: Some("/api/v1/storage/records/{id}"),
            status,
            latency_ms: 1.23456,
            cold_start,
            request_id: "req-1",
        }
    }

    #[test]
    fn the_object_declares_the_namespace_dimensions_and_units() {
        let emf = measured(200, true).emf(1_700_000_000_123);
        assert_eq!(emf["_aws"]["Timestamp"], 1_700_000_000_123_u64);
        let declaration = &emf["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declaration["Namespace"], "Adiuva");
        assert_eq!(
            declaration["Dimensions"],
            json!([["function", "route"], ["function"]])
        );
        assert_eq!(
            declaration["Metrics"],
            json!([
                {"Name": "Latency", "Unit": "Milliseconds"},
                {"Name": "Errors5xx", "Unit": "Count"},
                {"Name": "ColdStart", "Unit": "Count"},
            ])
        );
        assert_eq!(emf["function"], "storage");
        assert_eq!(emf["route"], "/api/v1/storage/records/{id}");
        assert_eq!(emf["Latency"], 1.235);
        assert_eq!(emf["Errors5xx"], 0);
        assert_eq!(emf["ColdStart"], 1);
        assert_eq!(emf["status"], 200);
    }

    #[test]
    fn a_5xx_counts_an_error_and_an_unmatched_route_is_one_dimension_value() {
        for (status, errors) in [(500, 1), (503, 1), (499, 0), (404, 0)] {
            let emf = measured(status, false).emf(0);
            assert_eq!(emf["Errors5xx"], errors, "{status}");
            assert_eq!(emf["ColdStart"], 0);
        }
        let unmatched = Measured {
            route: None,
            ..measured(404, false)
        };
        assert_eq!(unmatched.emf(0)["route"], "unmatched");
    }
}
