-- scheduler: open pushes past their expiry (without it, a scan of every open push per tick)
create index pushes_open_by_expiry on pushes (expires_at) where status in ('planned', 'leased');
