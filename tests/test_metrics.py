"""The HTTP request metrics, through the cached children."""

from __future__ import annotations

from exobrain.metrics import Metrics


def test_requests_are_counted_and_timed_per_method_route_and_status() -> None:
    metrics = Metrics()
    metrics.observe_request("GET", "/api/journal", 200, 0.003)
    metrics.observe_request("GET", "/api/journal", 200, 0.2)
    metrics.observe_request("GET", "/api/journal", 401, 0.001)
    text = metrics.render().decode()
    assert 'http_requests_total{method="GET",route="/api/journal",status="200"} 2.0' in text
    assert 'http_requests_total{method="GET",route="/api/journal",status="401"} 1.0' in text
    latency = 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/journal"}'
    assert f"{latency} 2.0" in text
    assert 'http_request_duration_seconds_count{method="GET",route="/api/journal"} 3.0' in text
