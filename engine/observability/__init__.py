"""Observability of the runtime: Prometheus metrics, structured logs, OpenTelemetry traces.

A layer of its own between the processes (orchestration, edges, api) and the state and
replay layers: the processes call its small functions at clear points (one line each), it
knows the history model but never calls back into them. The replay engine stays pure: it
only counts cache hits in plain integers, which ``metrics`` reads at scrape time.
"""
