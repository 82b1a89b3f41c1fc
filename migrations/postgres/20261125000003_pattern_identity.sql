-- Patterns keep their identity across learning cycles (pattern_key), the
-- data they were discovered on (discovered_through: newest evaluation time
-- mined), and how many cycles in a row they failed to re-appear (misses).
ALTER TABLE recommendation_patterns ADD COLUMN pattern_key text NOT NULL DEFAULT '';
ALTER TABLE recommendation_patterns ADD COLUMN discovered_through timestamptz;
ALTER TABLE recommendation_patterns ADD COLUMN misses integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX idx_patterns_key ON recommendation_patterns(workspace_id, pattern_key);
