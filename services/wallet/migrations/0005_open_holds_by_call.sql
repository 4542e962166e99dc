-- Settling a call releases its open holds (`WHERE call_id = $1 AND state = 'open'`). With statistics taken
-- before a burst of new holds, the planner answered that from reservations_open, reading every open hold of
-- every contractor (0.44 ms a call with 20,000 open, measured in the RateCalls benchmark), and a PL/pgSQL
-- function keeps that generic plan for the connection's life. An index that is both partial on 'open' and
-- keyed by call is the cheapest answer whatever the statistics say.
CREATE INDEX reservations_open_by_call ON wallet.reservations (call_id) WHERE state = 'open';
