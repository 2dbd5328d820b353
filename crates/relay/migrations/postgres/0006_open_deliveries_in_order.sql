-- The open deliveries of a route in stream order: the claim walks it from the oldest and
-- stops once it has found enough subject heads, instead of grouping every open delivery
-- of the route on every claim (which cost seconds per claim with a million in the outbox).
CREATE INDEX deliveries_open_by_seq ON deliveries (route, change_seq) WHERE state IN ('pending', 'failed');
