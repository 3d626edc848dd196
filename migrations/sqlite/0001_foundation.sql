-- Append-only behaviour log. event_id (uuid text) is the idempotency key.
-- Times are integer microseconds since the Unix epoch (UTC): compact and ordered.
create table events (
    seq         integer primary key autoincrement,
    event_id    text not null unique,
    user_id     text not null,
    item_id     text,
    kind        text not null,
    ts          integer not null,
    received_at integer not null,
    device      text,
    platform    text,
    country     text,
    region      text,
    timezone    text,
    network     text,
    session_id  text,
    price       real,
    quantity    integer,
    query       text
);
-- profile: a user's events inside the horizon
create index events_by_user_ts on events (user_id, ts);
-- per-item history
create index events_by_item_ts on events (item_id, ts) where item_id is not null;
-- retention pruning
create index events_by_ts on events (ts);

-- Catalog. category is the path joined with '/'; tags is a JSON array.
create table items (
    item_id    text primary key,
    category   text not null,
    brand      text,
    price      real,
    tags       text not null default '[]',
    available  integer not null default 1,
    title      text,
    created_at integer,
    updated_at integer not null
);
create index items_by_updated_at on items (updated_at);

create table users (
    user_id      text primary key,
    timezone     text not null,
    push_consent integer not null,
    quiet_start  integer,
    quiet_end    integer,
    locale       text,
    updated_at   integer not null
);
