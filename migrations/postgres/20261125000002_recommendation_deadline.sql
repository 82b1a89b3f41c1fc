-- The deadline a recommendation was due by (fan-out stage timeout), so that
-- timeliness judges late replies against their own deadline.
ALTER TABLE agent_recommendations ADD COLUMN deadline_ms bigint;
