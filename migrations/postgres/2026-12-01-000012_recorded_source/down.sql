-- Which uploads a gate recorded is not kept apart from the others (the gate's audit event names
-- them): nothing to undo.
SELECT 1;
