-- scheduler: a tick releases the claims it did not write by its token (without this index,
-- a scan of every push state per tick)
create index push_state_by_claim on push_state (claim_token) where claim_token is not null;
-- scheduler: open pushes past their expiry (without it, a scan of every open push per tick)
create index pushes_open_by_expiry on pushes (expires_at) where status in ('planned', 'leased');
