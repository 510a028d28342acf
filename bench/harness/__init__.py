"""The kingpost benchmark harness: cases, servers, wrk driver, process accounting, report.

Entry point: bench/run.py. Nothing here is part of the kingpost package or its test suite.
"""
