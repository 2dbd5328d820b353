-- Retention removes a change once no delivery refers to it: this finds whether one does.
CREATE INDEX deliveries_by_change ON deliveries (change_seq);
