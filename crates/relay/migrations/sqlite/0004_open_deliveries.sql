-- The open deliveries of a route by subject: what the claim reads to find each subject's
-- oldest undelivered change, without touching the delivered ones (which only grow).
CREATE INDEX deliveries_open ON deliveries (route, subject, change_seq) WHERE state IN ('pending', 'failed');
