"""Reading Evidently 0.7.23's DataDriftPreset results; shared by the drift parity tests and the drift benchmark.

From `Report([DataDriftPreset()], include_tests=True).run(cur, ref).dict()`:
- metrics of type ``evidently:metric_v2:ValueDrift``: config.column / config.method (stattest display name) and
  ``value`` = drift score, i.e. the p-value for KS / chi-square / Z and the distance for Wasserstein / JS
  (Evidently exposes no separate KS or Z statistic);
- tests bound by ``ValueDriftBoundTest``: status FAIL <=> the column drifted (metric_config.params.column);
- metric ``DriftedColumnsCount``: value.count / value.share, and its ``lt(drift_share)`` test:
  status FAIL <=> share >= drift_share, i.e. dataset drift.
"""

from __future__ import annotations

# engine test name -> Evidently stattest display name (ValueDrift config.method)
EVIDENTLY_METHOD = {
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
}


def read_drift_snapshot(snapshot: dict) -> tuple[dict[str, dict], dict]:
    """({column: {method, threshold, value, drifted}}, {count, share, drift_share, drifted})."""
    columns: dict[str, dict] = {}
    dataset: dict = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"] == "evidently:metric_v2:ValueDrift":
            columns[config["column"]] = {
                "method": config["method"],
                "threshold": config["threshold"],
                "value": metric["value"],
            }
        elif config["type"] == "evidently:metric_v2:DriftedColumnsCount":
            dataset.update(
                count=metric["value"]["count"], share=metric["value"]["share"], drift_share=config["drift_share"]
            )
    for test in snapshot["tests"]:
        params = test["metric_config"]["params"]
        if test["bound_test"]["type"] == "evidently:bound_test:ValueDriftBoundTest":
            columns[params["column"]]["drifted"] = test["status"] == "FAIL"
        elif params["type"] == "evidently:metric_v2:DriftedColumnsCount":
            dataset["drifted"] = test["status"] == "FAIL"
    return columns, dataset
