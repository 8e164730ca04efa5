-- Migration 5: when a gateway refund that failed may be asked again. NULL: whenever the retry
-- job runs next (a refund the gateway accepted and is confirming, or one never refused).
ALTER TABLE refund ADD COLUMN next_attempt TEXT;
