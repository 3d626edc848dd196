-- The scheduler rewrites the state of every user it claims and logs every decision. As
-- jsonb, PostgreSQL parsed and compressed each ~2.5 KB state and ~1 KB decision on every
-- write (about 100 ms and 90 ms per 500-user tick, docs/BENCHMARKS.md); as json, stored
-- uncompressed, it checks and copies the text. Nothing queries inside these documents.
alter table push_state alter column state type json using state::json,
    alter column state set storage external;
alter table decisions alter column decision type json using decision::json,
    alter column decision set storage external;
