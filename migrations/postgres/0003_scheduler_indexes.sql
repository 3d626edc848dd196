-- scheduler: open pushes past their expiry (without it, a scan of every open push per tick)
create index pushes_open_by_expiry on pushes (expires_at) where status in ('planned', 'leased');
-- Room on each page for a new version of a row: a scheduler claim sets only the unindexed
-- claim columns, so it can then be a HOT update that writes no index entry.
alter table push_state set (fillfactor = 70);
