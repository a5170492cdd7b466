"""The metrics service: rolling performance, anomalies, graduation assessments and the dashboard."""
