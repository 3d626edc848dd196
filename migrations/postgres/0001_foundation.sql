-- Append-only behaviour log. event_id is the idempotency key: a repeat is a no-op.
-- seq orders events for incremental consumers (stats refresh); ts is the event time.
create table events (
    seq         bigint generated always as identity,
    event_id    uuid primary key,
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
);
-- profile: a user's events inside the horizon, newest first
create index events_by_user_ts on events (user_id, ts);
-- per-item history (popularity, co-occurrence back-fills)
create index events_by_item_ts on events (item_id, ts) where item_id is not null;
-- incremental consumers read "everything after seq N"
create index events_by_seq on events (seq);
-- retention pruning
create index events_by_ts on events (ts);

-- Catalog. category is the path joined with '/', e.g. electronics/phones/android.
create table items (
    item_id    text primary key,
    category   text not null,
    brand      text,
    price      double precision,
    tags       text[] not null default '{}',
    available  boolean not null default true,
    title      text,
    created_at timestamptz,
    updated_at timestamptz not null default now()
);
-- catalog refresh across replicas: "items changed since T"
create index items_by_updated_at on items (updated_at);

-- Users' push settings.
create table users (
    user_id      text primary key,
    timezone     text not null,
    push_consent boolean not null,
    quiet_start  smallint,
    quiet_end    smallint,
    locale       text,
    updated_at   timestamptz not null
);
