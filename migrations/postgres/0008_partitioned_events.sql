-- The behaviour log partitioned by day (UTC) of the event time, so that retention drops whole
-- days (a partition) instead of deleting rows (src/store/postgres/partitions.rs creates a
-- day's partition before the first insert into it, and drops the expired ones).
--
-- A unique key on a partitioned table must contain the partition key, so the idempotency key
-- moves to its own table: `event_ids` holds every stored event's id once, whatever its day
-- (an event re-sent without `ts` is stamped with another time, and must still be a repeat).
-- Its rows expire with the events (by `ts`).
--
-- The index by `ts` alone goes: a time range is now a range of partitions.

alter table events rename to events_unpartitioned;
drop index events_by_user_ts;
drop index events_by_item_ts;
drop index events_by_seq;
drop index events_by_ts;

create table event_ids (
    event_id uuid primary key,
    ts       timestamptz not null
);
create index event_ids_by_ts on event_ids (ts);

create table events (
    seq         bigint generated always as identity,
    event_id    uuid not null,
    user_id     text not null,
    item_id     text,
    kind        text not null,
    ts          timestamptz not null,
    received_at timestamptz not null default now(),
    device      text,
    platform    text,
    country     text,
    region      text,
    timezone    text,
    network     text,
    session_id  text,
    price       double precision,
    quantity    integer,
    query       text
) partition by range (ts);
-- profile: a user's events inside the horizon, newest first
create index events_by_user_ts on events (user_id, ts);
-- per-item history (popularity, co-occurrence back-fills)
create index events_by_item_ts on events (item_id, ts) where item_id is not null;
-- incremental consumers read "everything after seq N"
create index events_by_seq on events (seq);

-- One partition per day that holds events, named events_pYYYYMMDD (the name the service uses).
do $$
declare
    d date;
begin
    for d in select distinct (ts at time zone 'UTC')::date from events_unpartitioned loop
        execute format('create table %I partition of events for values from (%L) to (%L)',
            'events_p' || to_char(d, 'YYYYMMDD'), d::timestamp at time zone 'UTC', (d + 1)::timestamp at time zone 'UTC');
    end loop;
end $$;

insert into events (seq, event_id, user_id, item_id, kind, ts, received_at, device, platform, country, region,
                    timezone, network, session_id, price, quantity, query)
overriding system value
select seq, event_id, user_id, item_id, kind, ts, received_at, device, platform, country, region,
       timezone, network, session_id, price, quantity, query
from events_unpartitioned order by seq;
insert into event_ids (event_id, ts) select event_id, ts from events_unpartitioned;
-- The log's numbering goes on where it stopped.
select setval(pg_get_serial_sequence('events', 'seq'), coalesce((select max(seq) from events_unpartitioned), 0) + 1, false);
drop table events_unpartitioned;
