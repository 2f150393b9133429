"""What runstate hands to other tools: Prometheus metrics and rules, dashboards, timelines.

This layer sits above the reports and the live monitors; nothing below imports it.
"""
