"""The orchestrator on the platform it builds: the Dagster instance in the platform's Postgres, Dagster's webserver
and daemon as supervised services, and the watchdog that restarts what Dagster itself cannot."""
