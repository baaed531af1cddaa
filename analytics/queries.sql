-- The README's example queries over the analytics tables. Each runs unchanged in Athena (over the tables of
-- athena.sql) and in DuckDB (python -m analytics.query, over views of the same names). Standard SQL only: no
-- engine-specific functions or casts. Feature columns (mileage) are the car-price model's.

-- name: drifted_features
-- Which features drifted, when, and by how much: every violated feature of every monitoring run.
SELECT monitored_at, target, feature, check_type, ROUND(distance, 4) AS distance, threshold
FROM drift_results
WHERE violated
ORDER BY monitored_at, target, feature;

-- name: drift_over_time
-- Drift per feature and day, over all targets: the largest distance, its threshold, violating runs of all runs.
SELECT feature, dt AS day, ROUND(MAX(distance), 4) AS max_distance, MAX(threshold) AS threshold,
       SUM(CASE WHEN violated THEN 1 ELSE 0 END) AS violating_runs, COUNT(*) AS runs
FROM drift_results
GROUP BY feature, dt
ORDER BY feature, day;

-- name: drift_alert_records
-- From a drift alert to the records behind it: the scored records of the batch (or window) whose mileage drifted,
-- highest mileage first.
SELECT d.run_id AS monitoring_run, d.target, ROUND(d.distance, 4) AS distance, s.record_id, s.model, s.mileage,
       ROUND(s.prediction, 2) AS prediction
FROM drift_results d
JOIN scored_records s
  ON s.target = d.target
 AND (d.window_start IS NULL OR s.scored_at >= d.window_start)
 AND (d.window_end IS NULL OR s.scored_at <= d.window_end)
WHERE d.violated AND d.feature = 'mileage'
ORDER BY s.mileage DESC, s.record_id
LIMIT 10;

-- name: mileage_by_batch
-- The drifted batch against the others: records, mean mileage and prediction per scored batch, and whether its
-- monitoring run flagged mileage.
WITH flagged AS (
  SELECT target, MAX(CASE WHEN violated THEN 1 ELSE 0 END) AS drifted
  FROM drift_results
  WHERE feature = 'mileage'
  GROUP BY target
)
SELECT s.target, s.model, COUNT(*) AS records, ROUND(AVG(s.mileage), 0) AS mean_mileage,
       ROUND(AVG(s.prediction), 0) AS mean_prediction, COALESCE(MAX(f.drifted), 0) = 1 AS mileage_drifted
FROM scored_records s
LEFT JOIN flagged f ON f.target = s.target
GROUP BY s.target, s.model
ORDER BY s.target, s.model;

-- name: prediction_trend
-- Prediction trend per model per day.
SELECT model, dt AS day, COUNT(*) AS records, ROUND(AVG(prediction), 0) AS mean_prediction,
       ROUND(MIN(prediction), 0) AS min_prediction, ROUND(MAX(prediction), 0) AS max_prediction
FROM scored_records
GROUP BY model, dt
ORDER BY model, day;

-- name: model_quality_per_run
-- Model-quality metrics per run with ground truth, against their thresholds.
SELECT monitored_at, target, run_id, metric, ROUND(value, 4) AS value, ROUND(threshold, 4) AS threshold,
       comparison_operator, violated
FROM model_quality
ORDER BY target, monitored_at, metric;
